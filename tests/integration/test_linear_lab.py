"""The linear lab: the policy matrix, and a policy that allows nothing isolates every host."""

from __future__ import annotations

from pathlib import Path

from controller.lab.verify import Verifier
from tests.integration.conftest import Scenario

DENY_ALL = Path(__file__).resolve().parent / "data" / "linear-deny-all.yaml"


def _verify(scenario: Scenario) -> list:  # type: ignore[type-arg]
    scenario.start()
    try:
        outcome = Verifier(scenario.lab, scenario.policy, scenario.controller.status,
                           str(scenario.workdir / "agents")).run()
        return outcome.probes
    finally:
        scenario.stop()


def test_linear_matrix_matches_the_policy(tmp_path: Path) -> None:
    probes = _verify(Scenario("linear.yaml", "linear.yaml", tmp_path))
    mismatches = [p for p in probes if not p.matches]
    assert probes and not mismatches, mismatches[:10]


def test_a_policy_that_allows_nothing_isolates_every_host(tmp_path: Path) -> None:
    probes = _verify(Scenario("linear.yaml", str(DENY_ALL), tmp_path))
    assert len(probes) > 50
    assert all(not p.expected for p in probes)
    assert all(not p.observed for p in probes), [p.label for p in probes if p.observed][:10]
