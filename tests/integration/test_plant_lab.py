"""The plant on real Open vSwitch: enforcement matrix, installed flows, packet-ins, restarts.

One controller process and one Mininet plant serve every check of this module, in order.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from controller.core.pipeline import METER_DENIED_SAMPLE, METER_PORT_BASE
from controller.lab.traffic import Stream
from controller.lab.verify import Outcome, Verifier
from tests.integration.conftest import Scenario, running, dump, dump_groups, dump_with_counters, reference_dump


@pytest.fixture(scope="module")
def plant(workdir: Path) -> Iterator[Scenario]:
    yield from running("plant.yaml", "plant.yaml", workdir, announce=False)


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


def _controller_bound_packets(plant: Scenario) -> dict[str, int]:
    """Per flow sending to the controller, the packets that hit it (OVS's own counters), LLDP
    excluded, and the samples of frames that are dropped because they are denied (meter 3) or
    come from a device no entry of its port admits (the port's own meter): the agents' IGMP joins
    for the conduits' groups are denied (joins subscribe no one) and the rogue laptop's are its
    port's, and the controller judges every sample (status packet_ins "allowed-traffic", below).
    What must not move: the misses, the locate samples, learn copies, untrusted LLDP."""
    counts = {}
    for name, _ in plant.description.switches:
        for line in dump_with_counters(plant.lab.switch_node(name)):
            meter = re.search(r"meter:(\d+),", line)
            sample = meter is not None and (int(meter[1]) == METER_DENIED_SAMPLE or int(meter[1]) >= METER_PORT_BASE)
            if "CONTROLLER" in line and "0x88cc" not in line and not sample:
                rule = re.sub(r"(duration|n_packets|n_bytes|idle_age|hard_age)=[^,]*, ?", "", line)
                counts[f"{name}: {rule}"] = int(line.split("n_packets=")[1].split(",")[0])
    return counts


def test_allowed_traffic_never_reaches_the_controller(plant: Scenario, first_run: Outcome) -> None:
    before = _controller_bound_packets(plant)
    allowed = Verifier(plant.lab, plant.policy, plant.controller.status, str(plant.workdir / "allowed")).run(
        select=lambda p: p.category == "pair" and bool(p.expected))
    assert len(allowed.probes) > 50 and not allowed.mismatches
    after = _controller_bound_packets(plant)
    assert after == before, "\n".join(f"{rule}: {before.get(rule)} -> {n}" for rule, n in after.items()
                                       if before.get(rule) != n)
    status = plant.controller.status() or {}
    assert status["packet_ins"].get("allowed-traffic", 0) == 0


def test_a_reconnecting_switch_is_rediscovered_and_left_intact(plant: Scenario, first_run: Outcome) -> None:
    bridge = plant.lab.switch_node("ring-2")
    before = dump(bridge)
    plant.lab.cut_control("ring-2")
    plant.controller.wait_for(lambda s: "0xc" not in s["switches"], 20, "ring-2 to leave")
    assert dump(bridge) == before  # it keeps its tables meanwhile (fail-mode secure)
    plant.lab.restore_control("ring-2")
    plant.controller.wait_for(lambda s: s["switches"].get("0xc", {}).get("programmed"), 30, "ring-2 to return")
    assert plant.converged() == []
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


def _metric(plant: Scenario, name: str) -> float:
    with urllib.request.urlopen(plant.controller.api_url + "/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):  # name includes its labels, exactly as exposed
                return float(line.split(" ")[-1])
    return 0.0


def test_metrics_count_conduit_and_denied_traffic_from_switch_counters(plant: Scenario, first_run: Outcome) -> None:
    conduit = 'otseg_conduit_packets_total{conduit="hmi-polls-cells"}'
    denied = 'otseg_denied_packets_total{destination_zone="supervisory",source_zone="cell-packaging"}'
    time.sleep(6)  # counters are polled every 5 s
    before = (_metric(plant, conduit), _metric(plant, denied))
    allowed = Stream(plant.lab, "hmi-1", "plc-packer-1", 44818, 1.0, plant.workdir / "metrics", rate=300)
    blocked = Stream(plant.lab, "plc-packer-2", "hmi-2", 44818, 1.0, plant.workdir / "metrics", rate=200)
    allowed.start()
    blocked.start()
    sent_allowed, sent_denied = allowed.result(), blocked.result()
    time.sleep(6)
    after = (_metric(plant, conduit), _metric(plant, denied))
    assert sent_allowed.received == sent_allowed.sent and sent_denied.received == 0
    assert after[0] - before[0] == sent_allowed.sent
    assert after[1] - before[1] == sent_denied.sent
    assert _metric(plant, "otseg_switches_programmed") == len(plant.description.switches)


def test_a_port_scan_gives_bounded_attributed_events_and_monitor_traffic_is_reported(
        plant: Scenario, first_run: Outcome) -> None:
    path = plant.controller.workdir / "events.jsonl"
    deadline = time.monotonic() + 20  # monitor-mode traffic is reported per 5 s counter poll
    while True:
        events = [json.loads(line) for line in path.read_text().splitlines()]
        monitored = [e for e in events if e["verdict"] == "allowed-by-monitor"]
        if any(e["conduit"] == "ews-ping-cells" and e["packets"] > 0 for e in monitored):
            break
        assert time.monotonic() < deadline, "no allowed-by-monitor event for ews-ping-cells"
        time.sleep(1)
    scanner = [e for e in events if e.get("src_asset") == "plc-filler-1" and e["verdict"] == "denied"]
    assert scanner and all(e["src_zone"] == "cell-filling" for e in scanner)
    assert len(scanner) < 150  # 375 scan probes and their retries: the per-source limit held
    assert _metric(plant, "otseg_events_dropped_total") > 0
    # The rogue laptop speaks once the network is quiet (during the matrix its few frames compete
    # with every spoofed frame for the same 10 samples/s per switch).
    rogue = plant.lab.hosts["rogue-laptop"]
    plant.lab.node("rogue-laptop").cmd("ping -c 3 -i 0.3 -W 1 10.0.1.21")
    deadline = time.monotonic() + 15
    while not any(e.get("src_asset") == "unknown" and e["src_mac"] == rogue.mac
                  for e in map(json.loads, path.read_text().splitlines())):
        assert time.monotonic() < deadline, "no event attributes the rogue laptop as an unknown device"
        time.sleep(1)
    assert {"time", "switch", "port", "policy_version", "mode", "service", "dst_asset"} <= scanner[0].keys()


def test_forged_lldp_from_an_unknown_host_does_not_make_a_trunk(plant: Scenario, first_run: Outcome) -> None:
    from os_ken.topology.switches import LLDPPacket  # noqa: PLC0415

    rogue = plant.lab.hosts["rogue-laptop"]
    forged = LLDPPacket.lldp_packet(11, 10, rogue.mac, 120)  # "I am ring-1 port 10"
    code = ("import socket,time;s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW);"
            f"s.bind(({rogue.intf!r},0));f=bytes.fromhex({forged.hex()!r});"
            "[(s.send(f), time.sleep(0.1)) for _ in range(30)]")
    plant.lab.node("rogue-laptop").cmd(f"python3 -c \"{code}\"")
    time.sleep(1)
    status = plant.controller.status() or {}
    assert len(status["links"]) == len(plant.description.links)
    assert not any("0xc:5" in end for link in status["links"] for end in link)


def test_sigterm_stops_the_controller_at_once_and_the_switches_keep_enforcing(plant: Scenario,
                                                                              first_run: Outcome) -> None:
    before = {name: dump(plant.lab.switch_node(name)) for name, _ in plant.description.switches}
    start = time.monotonic()
    code = plant.controller.stop(timeout=10)
    assert code == 0 and time.monotonic() - start < 5, f"exit code {code}: {plant.controller.log_text()[-2000:]}"
    assert {name: dump(plant.lab.switch_node(name)) for name, _ in plant.description.switches} == before
    plant.controller.start()  # the module's teardown stops it again
    plant.controller.wait_for(lambda s: len(s["switches"]) == len(plant.description.switches), 60, "reconnected")
