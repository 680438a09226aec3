"""Structural properties of the compiled tables: scaling, fail-closed placement, stability."""

from __future__ import annotations

from controller.core.compiler import compile_tables, locate_assets
from controller.core.model import Policy
from controller.core.rules import port_blocks
from controller.core.topology import Link, PortRef, Topology
from controller.io.files import load_policy_text


def _zone_policy(per_zone: int, located: bool = True) -> tuple[Policy, Topology]:
    lines = ["policy: scale", "zones: {hmi: {}, plc: {}}", "assets:"]
    attachments = []
    for zone, octet in (("hmi", 1), ("plc", 2)):
        for i in range(per_zone):
            name = f"{zone}-{i}"
            lines.append(f'  {name}: {{zone: {zone}, mac: "00:00:00:00:{octet:02x}:{i:02x}", ip: 10.{octet}.0.{i + 1}}}')
            attachments.append((name, PortRef(1 if zone == "hmi" else 2, i + 1)))
    lines += ["conduits:", "  - {name: poll, from: hmi, to: plc, services: [modbus, enip, icmp]}"]
    policy = load_policy_text("\n".join(lines).encode(), "scale.yaml")
    topology = Topology(frozenset({1, 2}), frozenset({Link.between(PortRef(1, 100), PortRef(2, 100))}),
                        tuple(sorted(attachments)) if located else ())
    return policy, topology


def _counts(per_zone: int) -> dict[str, int]:
    tables = compile_tables(*_zone_policy(per_zone))
    counts: dict[str, int] = {}
    for switch in tables.values():
        for flow in switch.flows:
            counts[flow.table] = counts.get(flow.table, 0) + 1
    return counts


def test_zone_to_zone_conduit_flows_do_not_grow_with_assets() -> None:
    small, large = _counts(10), _counts(40)
    assert small["policy"] == large["policy"]  # one rule per relation, whatever the zone sizes
    for table in ("port_security", "destination"):  # per-asset tables grow linearly, not squared
        assert large[table] <= 4 * small[table] + 8


def test_unlocated_assets_get_nothing_and_nothing_reaches_them() -> None:
    policy, topology = _zone_policy(3, located=False)
    tables = compile_tables(policy, topology)
    macs = {a.mac for a in policy.assets}
    for switch in tables.values():
        for flow in switch.flows:
            assert not {str(f.value) for f in flow.match} & macs, flow


def test_an_asset_seen_on_a_trunk_port_is_not_bound_there() -> None:
    policy, topology = _zone_policy(1)
    moved = Topology(topology.switches, topology.links, (("hmi-0", PortRef(1, 100)), ("plc-0", PortRef(2, 1))))
    assert set(locate_assets(policy, moved)) == {"plc-0"}


def test_adding_one_asset_changes_only_flows_about_it() -> None:
    policy, topology = _zone_policy(10)
    bigger, bigger_topology = _zone_policy(11)
    before = {f for t in compile_tables(policy, topology).values() for f in t.flows}
    after = {f for t in compile_tables(bigger, bigger_topology).values() for f in t.flows}
    changed = before ^ after
    assert changed and all("0a" in str(f.match) or "10.1.0.11" in str(f.match) or "10.2.0.11" in str(f.match)
                           for f in changed), sorted(changed)[:3]


def test_port_blocks_cover_a_range_exactly() -> None:
    for low, high in [(1, 1), (319, 320), (34962, 34964), (1, 65535), (1000, 2047), (5, 70)]:
        covered = set()
        for value, mask in port_blocks(low, high):
            size = (~mask & 0xFFFF) + 1
            assert value & ~mask & 0xFFFF == 0
            covered.update(range(value, value + size))
        assert covered == set(range(low, high + 1))


def test_compile_cache_returns_the_same_tables_and_evicts_the_oldest() -> None:
    from controller.core.compiler import CompileCache  # noqa: PLC0415

    policy, topology = _zone_policy(3)
    other = Topology(topology.switches, topology.links, ())
    cache = CompileCache(size=1)
    first = cache.tables(policy, topology)
    assert first == compile_tables(policy, topology)
    # an equal value built anew (as every push and every reconcile builds them) hits
    again_policy, _ = _zone_policy(3)
    assert cache.tables(again_policy, Topology(topology.switches, topology.links, topology.attachments)) is first
    assert (cache.hits, cache.misses) == (1, 1)
    assert cache.tables(policy, other) == compile_tables(policy, other)
    assert cache.tables(policy, topology) is not first  # evicted: compiled again
    assert cache.misses == 3
    assert cache.tables(policy, topology, fast_failover=False) == compile_tables(policy, topology, False)
