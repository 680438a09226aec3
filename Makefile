# otseg: every target sets up what it needs (venv, system packages, Open vSwitch).
# Targets that touch the network (demo, test) need root: they run Open vSwitch and Mininet.
VENV    ?= .venv
FAUCET_VENV ?= .venv-faucet
FAUCET_STAMP := $(FAUCET_VENV)/.installed-stamp
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp
DEMO_TOPOLOGY ?= topologies/plant.yaml

.PHONY: demo demo-ha console test test-fast lint venv system clean bench

venv: $(STAMP)

# The venv is made from Debian's python with system site-packages so that Mininet
# (a Debian package) is importable next to the pip packages.
$(STAMP): setup.cfg pyproject.toml
	test -x /usr/bin/python3 || (apt-get update -qq && apt-get install -y -qq python3 python3-venv)
	/usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

system:
	bash scripts/system-setup.sh

lint: $(STAMP)
	$(VENV)/bin/lint-imports

# Build the plant in Mininet, start the controller, prove the policy with real traffic, clean up.
demo: system $(STAMP)
	mn -c >/dev/null 2>&1 || true
	$(VENV)/bin/otseg lab --topology $(DEMO_TOPOLOGY) --start-controller

# The plant with its controller, kept up for a person: open the console URL it prints; Ctrl-C ends it.
console: system $(STAMP)
	mn -c >/dev/null 2>&1 || true
	$(VENV)/bin/otseg lab --topology $(DEMO_TOPOLOGY) --start-controller --no-mission --keep

# The same plant run by two otseg instances coordinated by etcd: the leader is SIGKILLed under traffic.
demo-ha: system $(STAMP)
	mn -c >/dev/null 2>&1 || true
	$(VENV)/bin/otseg lab --topology $(DEMO_TOPOLOGY) --ha

test-fast: $(STAMP)
	$(PY) -m pytest -m "not integration" -q

test: system $(STAMP) lint
	mn -c >/dev/null 2>&1 || true
	OTSEG_REQUIRE_INTEGRATION=1 $(PY) -m pytest -q

clean:
	rm -rf $(VENV) $(FAUCET_VENV) .pytest_cache .hypothesis build *.egg-info

# FAUCET, the peer the benchmarks compare against, in its own venv (it brings os-ken 3.1.0,
# which must not meet our os-ken 4 in one environment).
$(FAUCET_STAMP):
	/usr/bin/python3 -m venv $(FAUCET_VENV)
	$(FAUCET_VENV)/bin/pip install --quiet faucet==1.10.12
	touch $@

# Benchmarks (not tests): rewrites docs/benchmarks.md and bench/results.json. About 80 minutes.
bench: system $(STAMP) $(FAUCET_STAMP)
	FAUCET_VENV=$(FAUCET_VENV) $(PY) -m bench.run
