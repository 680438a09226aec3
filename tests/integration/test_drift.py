"""Drift repair on real Open vSwitch: what is changed on a switch behind otseg's back comes back.

The controller runs with `--audit-seconds 3`: every 3 s it re-reads each switch, reports each
difference (metric otseg_repairs_total, an event, the log) and repairs it. A renamed conduit
must reach the switch with its new cookie (an OpenFlow 1.3 modify would keep the old one).
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from controller.io.files import load_policy
from tests.integration.conftest import ROOT, Scenario, dump, running

pytestmark = pytest.mark.integration
AUDIT_SECONDS = 3


@pytest.fixture(scope="module")
def linear(workdir: Path) -> Iterator[Scenario]:
    yield from running("linear.yaml", "linear.yaml", workdir, announce=True,
                       extra_args=("--audit-seconds", str(AUDIT_SECONDS)))


def _metric(scenario: Scenario, name: str, labels: str) -> float:
    with urllib.request.urlopen(scenario.controller.api_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    pattern = re.compile(rf"^{name}\{{{labels}\}} (\S+)$", re.M)
    return sum(float(v) for v in pattern.findall(text))


def _push(scenario: Scenario, text: str) -> None:
    scenario.controller.post("/v1/policy", text.encode())


def test_a_deleted_table_and_a_rogue_flow_are_repaired_within_one_audit_period(linear: Scenario) -> None:
    assert linear.converged(timeout=30) == []
    bridge = linear.switch_name(2)
    rogue = "cookie=0x77,table=0,priority=65000,in_port=1,actions=output:10"
    subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "del-flows", bridge, "table=3"], check=True)
    subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "add-flow", bridge, rogue], check=True)
    assert not any("table=3" in line for line in dump(bridge))
    assert linear.converged(timeout=2 * AUDIT_SECONDS + 5) == []  # our tables back, the rogue flow gone
    assert not any("priority=65000" in line for line in dump(bridge))
    switch = f'kind="foreign",switch="{2:#x}"'
    assert _metric(linear, "otseg_repairs_total", switch) == 1
    assert _metric(linear, "otseg_repairs_total", f'kind="missing",switch="{2:#x}"') > 10
    events = [json.loads(line) for line in (linear.workdir / "events.jsonl").read_text().splitlines()]
    drift = [e for e in events if e.get("verdict") == "repaired"]
    # An audit may fall between the two changes: then they are two incidents, not one.
    on_switch = [e for e in drift if e["switch"] == f"{2:#x}"]
    assert sum(e["repairs"].get("missing", 0) for e in on_switch) > 10, drift
    incident = [e for e in on_switch if e["repairs"].get("foreign")]
    assert incident and "65000" in incident[0]["detail"][0], drift  # the foreign flow is named first


def test_a_renamed_conduit_reaches_the_switch_with_its_new_cookie(linear: Scenario) -> None:
    original = (ROOT / "policies" / "linear.yaml").read_text()
    renamed_text = original.replace("name: scada-polls-field", "name: scada-reads-field")
    assert renamed_text != original
    path = linear.workdir / "renamed.yaml"
    path.write_text(renamed_text)
    before = set(dump(linear.switch_name(1)))
    _push(linear, renamed_text)
    policy = linear.policy
    linear.policy = load_policy(str(path))
    try:
        assert linear.converged(timeout=5) == []  # at once: the push returns when the switches hold it
        assert set(dump(linear.switch_name(1))) != before  # the cookies did change on the switch
    finally:
        linear.policy = policy
        _push(linear, original)
    assert linear.converged(timeout=5) == []


def test_a_flow_os_ken_cannot_parse_is_removed_by_an_atomic_rewrite(linear: Scenario) -> None:
    """An ERSPAN match field (an OVS experimenter field os-ken does not know) makes the whole
    flow-stats reply unreadable: the switch is rewritten whole in one bundle, and the flow is gone."""
    assert linear.converged(timeout=30) == []
    bridge = linear.switch_name(3)
    subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "add-flow", bridge,
                    "table=0,priority=65535,tun_erspan_ver=1,actions=NORMAL"], check=True)
    assert any("tun_erspan_ver" in line for line in dump(bridge))
    assert linear.converged(timeout=2 * AUDIT_SECONDS + 30) == []  # a read waits 10 s for its reply
    assert not any("tun_erspan_ver" in line for line in dump(bridge))
    assert _metric(linear, "otseg_repairs_total", f'kind="unreadable",switch="{3:#x}"') >= 1
