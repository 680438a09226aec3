"""The plant on real Open vSwitch: enforcement matrix, installed flows, packet-ins, restarts.

One controller process and one Mininet plant serve every check of this module, in order.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from controller.lab.verify import Outcome, Verifier
from tests.integration.conftest import Scenario, dump, dump_groups, dump_with_counters, reference_dump


@pytest.fixture(scope="module")
def plant(workdir: Path) -> Iterator[Scenario]:
    scenario = Scenario("plant.yaml", "plant.yaml", workdir)
    scenario.start()
    try:
        yield scenario
    finally:
        scenario.stop()


@pytest.fixture(scope="module")
def first_run(plant: Scenario) -> Outcome:
    return Verifier(plant.lab, plant.policy, plant.controller.status, str(plant.workdir / "agents")).run()


def _all_programmed(status: dict) -> bool:  # type: ignore[type-arg]
    return bool(status["switches"]) and all(s["programmed"] for s in status["switches"].values())


def test_every_pair_service_and_attack_behaves_as_the_policy_says(first_run: Outcome) -> None:
    assert len(first_run.probes) > 2000
    assert not first_run.mismatches, "\n".join(
        f"{p.source}->{p.target} {p.label}: expected {p.expected} observed {p.observed}" for p in first_run.mismatches)


def test_installed_flows_equal_the_compiler_output(plant: Scenario, first_run: Outcome) -> None:
    for dpid, tables in sorted(plant.expected_tables().items()):
        bridge = plant.switch_name(dpid)
        assert dump(bridge) + dump_groups(bridge) == reference_dump(tables), f"switch {bridge}"


def _controller_bound_packets(plant: Scenario) -> int:
    """Packets that hit a flow sending to the controller, LLDP excluded (OVS's own counters)."""
    total = 0
    for name, _ in plant.description.switches:
        for line in dump_with_counters(plant.lab.switch_node(name)):
            if "CONTROLLER" in line and "0x88cc" not in line:
                total += int(line.split("n_packets=")[1].split(",")[0])
    return total


def test_allowed_traffic_never_reaches_the_controller(plant: Scenario, first_run: Outcome) -> None:
    before = _controller_bound_packets(plant)
    allowed = Verifier(plant.lab, plant.policy, plant.controller.status, str(plant.workdir / "allowed")).run(
        select=lambda p: p.category == "pair" and bool(p.expected))
    assert len(allowed.probes) > 50 and not allowed.mismatches
    assert _controller_bound_packets(plant) == before
    status = plant.controller.status() or {}
    assert status["packet_ins"].get("allowed-traffic", 0) == 0


def test_a_reconnecting_switch_is_rediscovered_and_left_intact(plant: Scenario, first_run: Outcome) -> None:
    bridge = plant.lab.switch_node("ring-2")
    before = dump(bridge)
    subprocess.run(["ovs-vsctl", "del-controller", bridge], check=True)
    plant.controller.wait_for(lambda s: "0xc" not in s["switches"], 20, "ring-2 to leave")
    subprocess.run(["ovs-vsctl", "set-controller", bridge, "tcp:127.0.0.1:6653"], check=True)
    plant.controller.wait_for(lambda s: s["switches"].get("0xc", {}).get("programmed"), 30, "ring-2 to return")
    assert dump(bridge) == before


def test_sigkilled_controller_restarts_without_touching_the_tables(plant: Scenario, first_run: Outcome) -> None:
    before = {name: dump(plant.lab.switch_node(name)) for name, _ in plant.description.switches}
    plant.controller.kill()
    time.sleep(1)
    plant.controller.start()
    links = len(plant.description.links)
    status = plant.controller.wait_for(
        lambda s: len(s["switches"]) == len(plant.description.switches) and _all_programmed(s)
        and len(s["links"]) == links and s["last_apply"] is not None, 60, "all switches reconciled after restart")
    assert status["last_apply"]["flow_mods_since_start"] == 0, plant.controller.log_text()[-3000:]
    assert not status["assets"]["unlocated"]  # bindings adopted from the switches' flows
    after = {name: dump(plant.lab.switch_node(name)) for name, _ in plant.description.switches}
    assert after == before
    again = Verifier(plant.lab, plant.policy, plant.controller.status, str(plant.workdir / "after-restart")).run(
        select=lambda p: p.category == "pair")
    assert not again.mismatches, plant.controller.log_text()[-3000:]
    final = plant.controller.status() or {}
    assert final["last_apply"]["flow_mods_since_start"] == 0, plant.controller.log_text()[-3000:]
