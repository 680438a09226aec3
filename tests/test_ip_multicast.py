"""IP multicast to listed receivers (controller.core.ip_multicast): the policy syntax and its
errors, the feeds (pure), walks of the compiled plant against the reference (which knows the
group-to-MAC mapping on its own), a ring cut, the incremental compiler, and `otseg multicast`."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from controller.core.compiler import compile_tables
from controller.core.frames import Frame
from controller.core.incremental import IncrementalCompiler
from controller.core.ip_multicast import feeds, trees
from controller.core.reference import judge
from controller.core.topology import PortRef
from controller.core.units import members_by_zone
from controller.io.files import load_policy_text
from controller.policy.diagnostics import DocumentError
from tests.conftest import POLICIES, TOPOLOGIES, load_example
from tests.walk import EPHEMERAL, Matrix, alias, ip_group_probes, mac_of_group

ROOT = Path(__file__).resolve().parent.parent
IO_GROUP = "239.192.1.11"
PTP_GROUP = "224.0.1.129"

BASE = """
policy: mc
zones:
  cell: {level: 1}
  hmi: {level: 2}
assets:
  plc-1: {zone: cell, mac: "00:00:00:00:00:01", ip: 10.0.0.1}
  plc-2: {zone: cell, mac: "00:00:00:00:00:02", ip: 10.0.0.2}
  plc-3: {zone: cell, mac: "00:00:00:00:00:03", ip: 10.0.0.3}
  hmi-1: {zone: hmi, mac: "00:00:00:00:00:04", ip: 10.0.0.4}
  ied-1: {zone: cell, mac: "00:00:00:00:00:05"}
conduits:
"""


def policy_with(conduits: str):  # type: ignore[no-untyped-def]
    return load_policy_text((BASE + conduits).encode(), "mc.yaml")


@pytest.mark.parametrize(("conduit", "message"), [
    ("{name: io, from: plc-1, to: plc-2, services: [enip-io], groups: 10.0.0.9}",
     "mc.yaml:13:69: conduit 'io': 10.0.0.9 is not an IPv4 multicast address"),
    ("{name: io, from: plc-1, to: plc-2, services: [enip-io], groups: [239.1.1.1, 239.1.1.1]}",
     "conduit 'io': group 239.1.1.1 is listed twice"),
    ("{name: io, from: plc-1, to: plc-2, services: [enip-io], groups: [224.0.0.1]}",
     "conduit 'io': group 224.0.0.1 is all systems (IGMP queries)"),
    ("{name: io, from: plc-1, to: plc-2, services: [enip-io], groups: [ff02::1]}",
     "conduit 'io': ff02::1 is not an IPv4 multicast address"),
    ("{name: io, from: plc-1, to: plc-2, services: [enip-io], groups: [not-an-address]}",
     "conduit 'io': invalid group address 'not-an-address'"),
    ("{name: io, from: plc-1, to: plc-2, services: [enip-io], groups: []}", "conduit 'io': 'groups' is empty"),
    ("{name: io, from: plc-1, to: plc-2, services: [modbus], groups: [239.1.1.1]}",
     "conduit 'io': 'groups' carry UDP services, and this conduit has none"),
    ("{name: io, from: plc-1, to: plc-2, services: [ntp], stateful: true, groups: [239.1.1.1]}",
     "conduit 'io': a conduit with 'groups' cannot be 'stateful'"),
])
def test_bad_groups_are_located_errors(conduit: str, message: str) -> None:
    with pytest.raises(DocumentError) as error:
        policy_with(f"  - {conduit}\n")
    assert message in str(error.value), str(error.value)


TWO_CONDUITS = BASE.replace("conduits:\n", """services:
  io: {udp: "2000-2010"}
  one: {udp: 2005}
conduits:
  - {name: a, from: plc-1, to: [plc-2, cell], services: [io], groups: [239.1.1.1]}
  - {name: b, from: plc-1, to: hmi-1, services: [one], groups: [239.1.1.1, 239.1.1.2]}
  - {name: c, from: cell, to: plc-3, services: [io], groups: [239.1.1.2], bidirectional: true}
""")


def test_overlapping_conduits_union_their_receivers_per_port() -> None:
    policy = load_policy_text(TWO_CONDUITS.encode(), "mc.yaml")
    everywhere = {a.name: PortRef(1, i + 1) for i, a in enumerate(policy.assets)}
    found = feeds(policy, members_by_zone(policy), everywhere)
    # 239.1.1.1 from plc-1: 2000-2010 to the cell (not ied-1: no IP, no IP multicast), 2005 also to hmi-1
    assert found[("plc-1", "239.1.1.1")] == (
        (2000, 2004, frozenset({"plc-2", "plc-3"}), "a"), (2005, 2005, frozenset({"plc-2", "plc-3", "hmi-1"}), "a"),
        (2006, 2010, frozenset({"plc-2", "plc-3"}), "a"))
    # 239.1.1.2: conduit b's port 2005 to hmi-1 and conduit c's range to plc-3, merged per port
    assert found[("plc-1", "239.1.1.2")] == (
        (2000, 2004, frozenset({"plc-3"}), "c"), (2005, 2005, frozenset({"plc-3", "hmi-1"}), "b"),
        (2006, 2010, frozenset({"plc-3"}), "c"))
    # bidirectional: plc-3 sends to the cell's members too, never to itself
    assert found[("plc-3", "239.1.1.2")] == ((2000, 2010, frozenset({"plc-1", "plc-2"}), "c"),)
    assert ("ied-1", "239.1.1.2") not in found and ("hmi-1", "239.1.1.1") not in found


def _judged(policy, located, sender: str, sent: Frame) -> set[str]:  # type: ignore[no-untyped-def]
    return set(judge(policy, located, located[sender], sent).receivers)


def _udp(policy, sender: str, group: str, port: int, **changes: object) -> Frame:  # type: ignore[no-untyped-def]
    asset = policy.asset(sender)
    sent = Frame(mac_of_group(group), asset.mac, (), 0x0800, ipv4_src=asset.ip, ipv4_dst=group, ip_proto=17,
                 udp_src=EPHEMERAL, udp_dst=port)
    return replace(sent, **changes)  # type: ignore[arg-type]


def test_the_plant_streams_reach_exactly_the_listed_receivers() -> None:
    policy, topology = load_example("plant.yaml", "plant.yaml")
    matrix = Matrix(policy, topology)
    located = matrix.located
    io = _udp(policy, "plc-filler-1", IO_GROUP, 2222)
    assert _judged(policy, located, "plc-filler-1", io) == {"plc-filler-2", "plc-packer-2"}
    assert matrix.walk(located["plc-filler-1"], io).delivered_ports() == {located["plc-filler-2"],
                                                                           located["plc-packer-2"]}
    ptp = _udp(policy, "grandmaster", PTP_GROUP, 319)
    # every member of the conduit's zones with an address; ied-3 (no ip) gets the L2 PTP only
    assert _judged(policy, located, "grandmaster", ptp) == {"plc-filler-1", "plc-filler-2", "plc-packer-1",
                                                           "plc-packer-2", "ied-1", "ied-2"}
    for refused in (replace(io, eth_dst="01:00:5e:00:00:01"), replace(io, udp_dst=2223),
                    replace(io, ipv4_dst=alias(IO_GROUP)), replace(io, ip_frag="first"),
                    replace(io, eth_dst="ff:ff:ff:ff:ff:ff"), _udp(policy, "plc-filler-2", IO_GROUP, 2222),
                    _udp(policy, "plc-filler-1", PTP_GROUP, 319)):
        assert not _judged(policy, located, refused_sender(refused, policy), refused), refused
        assert not matrix.walk(located[refused_sender(refused, policy)], refused).delivered_ports(), refused
    assert not matrix.check_multicast()


def refused_sender(sent: Frame, policy) -> str:  # type: ignore[no-untyped-def]
    asset = policy.asset_by_mac(sent.eth_src)
    assert asset is not None
    return asset.name


def test_an_igmp_join_subscribes_nobody() -> None:
    """Delivery is the policy's, not IGMP's: a join from an unlisted asset is dropped and the
    stream still reaches only the listed receivers."""
    policy, topology = load_example("plant.yaml", "plant.yaml")
    matrix = Matrix(policy, topology)
    hmi = policy.asset("hmi-1")
    join = Frame("01:00:5e:00:00:16", hmi.mac, (), 0x0800, ipv4_src=hmi.ip, ipv4_dst="224.0.0.22", ip_proto=2)
    assert not matrix.walk(matrix.located["hmi-1"], join).delivered_ports()
    assert not judge(policy, matrix.located, matrix.located["hmi-1"], join).delivered
    labels = {label for label, _ in ip_group_probes(policy, policy.asset("plc-filler-1"))}
    assert f"IGMP join of {IO_GROUP}" in labels
    io = _udp(policy, "plc-filler-1", IO_GROUP, 2222)
    assert located_names(matrix, matrix.walk(matrix.located["plc-filler-1"], io).delivered_ports()) == {
        "plc-filler-2", "plc-packer-2"}


def located_names(matrix: Matrix, ports: set[PortRef]) -> set[str]:
    return {name for name, where in matrix.located.items() if where in ports}


def _cut(topology, a: int, b: int):  # type: ignore[no-untyped-def]
    gone = next(link for link in topology.links if {link.a.dpid, link.b.dpid} == {a, b})
    return replace(topology, links=topology.links - {gone}, _cache={})


def test_a_ring_cut_recomputes_the_tree_and_incremental_equals_full() -> None:
    policy, topology = load_example("plant.yaml", "plant.yaml")
    engine = IncrementalCompiler()
    engine.compile(policy, topology)
    before = trees(policy, topology)
    cut = _cut(topology, 11, 12)  # ring-1 -- ring-2
    tables = engine.compile(policy, cut)
    assert tables == compile_tables(policy, cut)
    assert engine.full_compiles == 1
    matrix = Matrix(policy, cut, tables)
    io = _udp(policy, "plc-filler-1", IO_GROUP, 2222)
    assert located_names(matrix, matrix.walk(matrix.located["plc-filler-1"], io).delivered_ports()) == {
        "plc-filler-2", "plc-packer-2"}
    assert not matrix.check_multicast()
    after = {t["group"]: t for t in trees(policy, cut)}[IO_GROUP]["spans"][0]["switches"]
    assert set(after) == {"0xb", "0xe", "0xd", "0xc"}  # ring-1, then the long way round to ring-2
    assert {t["group"]: t for t in before}[IO_GROUP]["spans"][0]["switches"].keys() == {"0xb", "0xc"}
    # and back: the ring heals, the short tree returns
    assert engine.compile(policy, topology) == compile_tables(policy, topology)


def test_group_edits_are_compiled_incrementally() -> None:
    policy, topology = load_example("plant.yaml", "plant.yaml")
    engine = IncrementalCompiler()
    engine.compile(policy, topology)
    index = next(i for i, c in enumerate(policy.conduits) if c.name == "filler-io-multicast")
    for groups in ((IO_GROUP, "239.192.1.12"), (), ("239.192.1.12",)):
        conduits = list(policy.conduits)
        conduits[index] = replace(conduits[index], groups=groups)
        edited = replace(policy, conduits=tuple(conduits), _index={})
        assert engine.compile(edited, topology) == compile_tables(edited, topology)
        assert engine.full_compiles == 1
        assert {t["group"] for t in trees(edited, topology) if t["source"] == "plc-filler-1"} == set(groups)


def test_an_unreachable_receiver_is_reported_and_the_cli_says_so(tmp_path: Path) -> None:
    policy, topology = load_example("plant.yaml", "plant.yaml")
    split = _cut(_cut(topology, 11, 12), 13, 14)  # ring-2 and ring-3 cut off from ring-1
    io = {t["group"]: t for t in trees(policy, split)}[IO_GROUP]["spans"][0]
    assert io["receivers"] == ["plc-filler-2"] and io["unreachable"] == ["plc-packer-2"]
    result = subprocess.run([sys.executable, "-m", "controller.cli", "multicast", str(POLICIES / "plant.yaml"),
                             "--topology", str(TOPOLOGIES / "plant.yaml")], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"plc-filler-1 -> {IO_GROUP} udp 2222 (conduit filler-io-multicast): plc-filler-2, plc-packer-2" \
        in result.stdout
    as_json = subprocess.run([sys.executable, "-m", "controller.cli", "multicast", str(POLICIES / "plant.yaml"),
                              "--topology", str(TOPOLOGIES / "plant.yaml"), "--json"], capture_output=True, text=True,
                             cwd=ROOT, timeout=120)
    assert {t["group"] for t in json.loads(as_json.stdout)} == {IO_GROUP, PTP_GROUP}

