"""Grants and isolations on real Open vSwitch, judged at the receivers' interfaces.

The linear lab, with its field-to-SCADA alarm conduit marked `essential`: an isolation of the
field zone loses none of a 1,000 datagram/s alarm stream while it is applied, and afterwards
the whole probe matrix (every pair, every service, the attack frames) is what the reference
says of the policy *with* the isolation; released, it is the policy again. A grant opens
exactly its service, survives a SIGKILL of the controller, and ends on time after it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest

from controller.core.overrides import Isolation, Overrides, effective
from controller.io.files import load_policy
from controller.lab.traffic import Stream
from controller.lab.verify import Verifier
from tests.integration.conftest import ROOT, Scenario, api, running

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def linear(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    workdir = tmp_path_factory.mktemp("overrides")
    text = (ROOT / "policies" / "linear.yaml").read_text()
    marked = text.replace("  - name: field-reports-alarms\n", "  - name: field-reports-alarms\n    essential: true\n")
    assert marked != text
    policy = workdir / "linear-essential.yaml"
    policy.write_text(marked)
    yield from running("linear.yaml", str(policy), workdir, announce=True)


def matrix_mismatches(scenario: Scenario, overrides: Overrides, name: str) -> list[str]:
    policy = effective(load_policy(scenario.policy_path), overrides, time.time())
    outcome = Verifier(scenario.lab, policy, scenario.controller.status, str(scenario.workdir / name)).run()
    assert len(outcome.probes) > 50
    return [f"{p.source} -> {p.target} {p.label}: expected {sorted(p.expected) or 'nothing'}, "
            f"observed {sorted(p.observed) if not isinstance(p.observed, bool) else p.observed}"
            for p in outcome.probes if not p.matches]


def ping(scenario: Scenario, source: str, target: str) -> bool:
    ip = scenario.lab.hosts[target].ip
    return " 0% packet loss" in scenario.lab.node(source).cmd(f"ping -c 2 -i 0.3 -W 1 {ip}")


def test_an_isolation_keeps_the_essential_conduit_and_cuts_the_rest(linear: Scenario) -> None:
    stream = Stream(linear.lab, "plc-a", "scada", 162, 6.0, linear.workdir / "stream")
    stream.start()
    time.sleep(2.0)
    code, answer = api(linear, "POST", "/v1/isolations",
                       b'{"kind": "auto", "target": "field", "reason": "integration test"}')
    assert code == 200, answer
    assert answer["conduits_cut"] == ["eng-programs-plcs", "scada-polls-field"], answer
    result = stream.result()
    assert result.sent > 4000 and result.lost == 0, result  # the essential conduit lost nothing
    isolated = Overrides(isolations=(Isolation("i1", "zone", "field", (), "integration test", "local", 0.0),))
    mismatches = matrix_mismatches(linear, isolated, "isolated")
    assert not mismatches, mismatches[:10]
    status = linear.controller.status() or {}
    assert [i["id"] for i in status["overrides"]["isolations"]] == ["i1"]
    code, answer = api(linear, "POST", "/v1/isolations/release", b'{"id": "i1"}')
    assert code == 200, answer
    assert not linear.converged(), "released, the switches hold the policy's own tables again"


def test_a_grant_opens_its_service_survives_a_restart_and_ends_on_time(linear: Scenario) -> None:
    assert not ping(linear, "eng", "plc-a")  # the policy lets eng speak s7comm to plc-a, nothing else
    code, answer = api(linear, "POST", "/v1/grants", b'{"from": ["eng"], "to": ["plc-a"], "services": ["icmp"], '
                                                     b'"seconds": 25, "reason": "integration test"}')
    assert code == 200, answer
    granted_at = time.time()
    grant = answer["grant"]
    assert ping(linear, "eng", "plc-a") and not ping(linear, "eng", "plc-b")
    linear.controller.kill()
    time.sleep(1)
    linear.controller.start()
    linear.controller.wait_for(lambda s: s["last_apply"] is not None and all(
        sw["programmed"] for sw in s["switches"].values()) and len(s["switches"]) == 3, 60, "restarted")
    status = linear.controller.status() or {}
    assert [g["id"] for g in status["overrides"]["grants"]] == [grant]
    assert ping(linear, "eng", "plc-a")  # still in force after the restart
    while time.time() < granted_at + 25.0 - 0.5:
        time.sleep(0.2)
    assert ping(linear, "eng", "plc-a") or time.time() >= granted_at + 25.0  # in force until its expiry
    time.sleep(3.0)  # checked every second, applied in milliseconds
    assert not ping(linear, "eng", "plc-a")
    code, history = api(linear, "GET", "/v1/history")
    actions = [(entry["action"], entry.get("grant", {}).get("id")) for entry in history if entry.get("source") == "override"]
    assert ("grant", grant) in actions and ("expire", grant) in actions, actions
    assert not linear.converged(), "expired, the switches hold the policy's own tables again"
