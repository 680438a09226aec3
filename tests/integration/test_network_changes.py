"""Continuous enforcement while the plant's network changes (one shared plant, in order).

Streams of 1,000 datagrams/s run on an allowed conduit (hmi-1 -> plc-packer-1, udp 44818,
whose path crosses the cell ring) and on a denied one (plc-packer-2 -> hmi-2, udp 44818)
while links fail, the controller dies, switches restart and a device moves. Loss figures
are measured by `make bench`; these tests check behaviour: traffic carries on, the denied
stream never gets a datagram through, and the tables end equal to the compiler's output.
"""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from controller.core.topology import PortRef
from controller.lab.traffic import GroupStream, Stream
from controller.lab.verify import Verifier
from tests.integration.conftest import Scenario, running, dump, dump_groups

ALLOWED = ("hmi-1", "plc-packer-1", 44818)
DENIED = ("plc-packer-2", "hmi-2", 44818)


@pytest.fixture(scope="module")
def plant(workdir: Path) -> Iterator[Scenario]:
    yield from running("plant.yaml", "plant.yaml", workdir, announce=True)


def _streams(plant: Scenario, seconds: float, name: str) -> tuple[Stream, Stream]:
    allowed = Stream(plant.lab, *ALLOWED, seconds, plant.workdir / name)
    denied = Stream(plant.lab, *DENIED, seconds, plant.workdir / name)
    allowed.start()
    denied.start()
    return allowed, denied


def _ready(plant: Scenario) -> None:
    links = len(plant.description.links)
    plant.controller.wait_for(lambda s: len(s["switches"]) == len(plant.description.switches)
                              and all(v["programmed"] for v in s["switches"].values())
                              and len(s["links"]) == links and not s["assets"]["unlocated"], 60, "plant ready")


def test_fast_failover_reroutes_a_ring_cut_with_no_controller(plant: Scenario) -> None:
    allowed, denied = _streams(plant, 6, "failover")
    time.sleep(1.5)
    plant.controller.kill()  # only the switches' own groups can reroute now
    time.sleep(0.5)
    plant.lab.set_link("ring-1", "ring-2", up=False)
    moving, blocked = allowed.result(), denied.result()
    plant.lab.set_link("ring-1", "ring-2", up=True)
    plant.controller.start()
    _ready(plant)
    assert blocked.received == 0
    assert moving.received > 0.9 * moving.sent, moving  # kept flowing to the end, around the ring


def test_controller_recomputes_paths_after_a_cut_and_after_repair(plant: Scenario) -> None:
    cut = plant.link("ring-2", "ring-3")
    allowed, denied = _streams(plant, 5, "recompute")
    time.sleep(1)
    plant.lab.set_link("ring-2", "ring-3", up=False)
    assert plant.converged(down=frozenset({cut})) == []
    moving, blocked = allowed.result(), denied.result()
    assert blocked.received == 0 and moving.received > 0.9 * moving.sent
    plant.lab.set_link("ring-2", "ring-3", up=True)
    assert plant.converged() == []


def test_an_ip_multicast_tree_is_recomputed_after_a_ring_cut(plant: Scenario) -> None:
    """plc-filler-1 streams its I/O to 239.192.1.11:2222 (conduit filler-io-multicast: to
    plc-filler-2 and plc-packer-2). Every sink joins the group, listed or not. The ring cut
    between ring-1 and ring-2 is on the tree toward plc-packer-2: the controller recomputes it
    the long way round (ring-4, ring-3); the hosts that are not listed never get a datagram."""
    cut = plant.link("ring-1", "ring-2")
    members = ["plc-packer-2", "plc-filler-2", "plc-packer-1", "hmi-1", "ied-1"]
    stream = GroupStream(plant.lab, "plc-filler-1", "239.192.1.11", 2222, members, 6, plant.workdir / "group-cut")
    stream.start()
    time.sleep(2)
    plant.lab.set_link("ring-1", "ring-2", up=False)
    assert plant.converged(down=frozenset({cut})) == []
    results = stream.results()
    plant.lab.set_link("ring-1", "ring-2", up=True)
    assert plant.converged() == []
    print({name: (r.sent, r.received, r.largest_gap) for name, r in results.items()})
    across, local = results["plc-packer-2"], results["plc-filler-2"]
    assert local.received > 0.9 * local.sent, local  # its branch never crossed the cut
    assert across.received > 0.5 * across.sent and across.largest_gap < 0.5 * across.sent, across
    assert all(results[name].received == 0 for name in ("plc-packer-1", "hmi-1", "ied-1")), results


def test_a_silent_link_failure_is_detected_and_treated_as_down(plant: Scenario) -> None:
    cut = plant.link("ring-3", "ring-4")
    ends = [(plant.lab.switch_node("ring-3"), cut.a.port if cut.a.dpid == 13 else cut.b.port),
            (plant.lab.switch_node("ring-4"), cut.a.port if cut.a.dpid == 14 else cut.b.port)]
    links = len(plant.description.links)
    for bridge, port in ends:  # the ports stay up; the link just stops carrying frames
        subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "mod-port", bridge, str(port), "no-forward"], check=True)
    try:
        plant.controller.wait_for(lambda s: len(s["links"]) == links - 1, 15, "the silent link to be declared down")
        assert plant.converged(down=frozenset({cut})) == []
    finally:
        for bridge, port in ends:
            subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "mod-port", bridge, str(port), "forward"], check=True)
    plant.controller.wait_for(lambda s: len(s["links"]) == links, 15, "the link to come back")
    assert plant.converged() == []


def test_an_emptied_switch_is_fully_reprogrammed(plant: Scenario) -> None:
    bridge = plant.lab.switch_node("ring-3")
    before = dump(bridge) + dump_groups(bridge)
    subprocess.run(["ovs-vsctl", "del-controller", bridge], check=True)
    plant.controller.wait_for(lambda s: "0xd" not in s["switches"], 20, "ring-3 to leave")
    subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "del-flows", bridge], check=True)
    subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "del-groups", bridge], check=True)
    assert dump(bridge) == []
    subprocess.run(["ovs-vsctl", "set-controller", bridge, "tcp:127.0.0.1:6653"], check=True)
    plant.controller.wait_for(lambda s: s["switches"].get("0xd", {}).get("programmed"), 30, "ring-3 reprogrammed")
    assert plant.converged() == []
    assert dump(bridge) + dump_groups(bridge) == before


def test_controller_killed_for_ten_seconds_loses_nothing(plant: Scenario) -> None:
    allowed, denied = _streams(plant, 14, "controller-down")
    time.sleep(1)
    plant.controller.kill()
    time.sleep(10)
    plant.controller.start()
    moving, blocked = allowed.result(), denied.result()
    _ready(plant)
    assert blocked.received == 0
    assert moving.lost <= 0.01 * moving.sent, moving  # `make bench` reports the exact count
    assert plant.converged() == []


def test_fifty_random_link_flaps_end_in_the_compiled_state(plant: Scenario) -> None:
    pairs = [(plant.description.switch_name(l.a.dpid), plant.description.switch_name(l.b.dpid))
             for l in plant.description.links]
    rng = random.Random(62443)
    down: set[tuple[str, str]] = set()
    allowed, denied = _streams(plant, 8, "flaps")
    for _ in range(50):
        pair = rng.choice(pairs)
        up = pair in down
        plant.lab.set_link(*pair, up=up)
        (down.discard if up else down.add)(pair)
        time.sleep(rng.uniform(0.0, 0.1))
    blocked = denied.result()
    allowed.result()
    assert blocked.received == 0
    final_down = frozenset(plant.link(*pair) for pair in down)
    assert plant.converged(down=final_down, timeout=40) == []
    for pair in down:
        plant.lab.set_link(*pair, up=True)
    assert plant.converged(timeout=40) == []


def test_a_device_that_moves_is_followed_by_its_policy(plant: Scenario) -> None:
    plant.lab.replug("plc-packer-2", "ring-4", 5)  # unplugged from ring-2 port 2, plugged into ring-4 port 5
    plant.controller.wait_for(lambda s: s["assets"]["located"].get("plc-packer-2") != [12, 2], 15,
                              "the binding at the old port to be dropped")
    verifier = Verifier(plant.lab, plant.policy, plant.controller.status, str(plant.workdir / "moved"))
    verifier.announce()
    status = plant.controller.status() or {}
    assert status["assets"]["located"]["plc-packer-2"] == [14, 5]
    assert plant.converged(moved={"plc-packer-2": PortRef(14, 5)}) == []
    outcome = verifier.run(select=lambda p: "plc-packer-2" in (p.source, p.target) and p.category == "pair")
    assert outcome.probes and not outcome.mismatches
