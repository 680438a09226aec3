"""The Mininet plant lab: build a lab network, probe it with real traffic, compare with the policy."""
