"""The incremental compiler equals a full recompute after every change (OVN's CHECK_AFTER_RECOMPUTE).

Random edit sequences (hypothesis) on random policies and ring topologies, the example labs
under every kind of edit, and a generated plant where a one-asset edit must stay local: it
never calls the full compiler and reruns a handful of units.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.generate import generated_policy, generated_topology
from controller.core import incremental
from controller.core.compiler import compile_tables
from controller.core.incremental import IncrementalCompiler
from controller.core.model import Conduit, Intra, Location, Policy
from controller.core.topology import Link, PortRef, Topology
from controller.io.files import load_lab, load_policy
from tests.strategies import scenarios

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ("plant", "linear", "substation", "water")


def assert_equals_full(engine: IncrementalCompiler, policy: Policy, topology: Topology,
                       fast_failover: bool = True) -> None:
    got = engine.compile(policy, topology)
    want = compile_tables(policy, topology, fast_failover)
    assert got.keys() == want.keys()
    for dpid in want:
        if got[dpid] != want[dpid]:
            missing = sorted(map(str, want[dpid].flows - got[dpid].flows))[:3]
            extra = sorted(map(str, got[dpid].flows - want[dpid].flows))[:3]
            pytest.fail(f"switch {dpid}: incremental differs from a full compile\n missing {missing}\n"
                        f" extra {extra}\n groups equal: {got[dpid].groups == want[dpid].groups}, "
                        f"meters equal: {got[dpid].meters == want[dpid].meters}")


# -- edits: each takes (policy, topology, draw) and returns the changed pair -----------------
def _with_asset(policy: Policy, index: int, **changes: object) -> Policy:
    assets = list(policy.assets)
    assets[index] = replace(assets[index], **changes)  # type: ignore[arg-type]
    return replace(policy, assets=tuple(assets), _index={})


def edit(policy: Policy, topology: Topology, draw: st.DrawFn) -> tuple[Policy, Topology]:
    kind = draw(st.sampled_from(["zone", "vlan", "ip", "pin", "unpin", "remove", "add", "attach", "detach",
                                 "link", "port", "conduit", "conduit-mode", "stateful", "groups", "zone-mode", "intra",
                                 "policy-mode", "switch-up", "switch-down", "nothing"]))
    zones = [z.name for z in policy.zones]
    switches = sorted(topology.switches)
    count = len(policy.assets)
    pick = draw(st.integers(0, max(count - 1, 0)))
    if kind == "zone" and count:
        return _with_asset(policy, pick, zone=draw(st.sampled_from(zones))), topology
    if kind == "vlan" and count:
        return _with_asset(policy, pick, vlan=draw(st.sampled_from([None, 10, 20]))), topology
    if kind == "ip" and count:
        return _with_asset(policy, pick, ip=draw(st.sampled_from([None, f"10.0.1.{pick + 1}"]))), topology
    if kind == "pin" and count:
        where = Location(draw(st.sampled_from(switches)), 40 + pick)
        return _with_asset(policy, pick, location=where), replace(
            topology, ports=topology.ports | {PortRef(where.dpid, where.port)}, _cache={})
    if kind == "unpin" and count:
        return _with_asset(policy, pick, location=None), topology
    if kind == "remove" and count > 1:
        name = policy.assets[pick].name
        conduits = tuple(c for c in policy.conduits
                         if all(e.name != name for e in c.sources + c.destinations))
        return replace(policy, assets=policy.assets[:pick] + policy.assets[pick + 1:], conduits=conduits,
                       _index={}), topology
    if kind == "add":
        names = {a.name for a in policy.assets}
        serial = next(n for n in range(50, 200) if f"n{n}" not in names)  # names (and MACs, IPs) stay unique
        asset = replace(policy.assets[0], name=f"n{serial}", mac=f"00:00:00:00:01:{serial:02x}",
                        ip=f"10.0.2.{serial}", zone=draw(st.sampled_from(zones)), location=None)
        where = PortRef(draw(st.sampled_from(switches)), 60 + serial)
        return replace(policy, assets=policy.assets + (asset,), _index={}), replace(
            topology, attachments=tuple(sorted(topology.attachments + ((asset.name, where),))),
            ports=topology.ports | {where}, _cache={})
    if kind == "attach" and count:
        name = policy.assets[pick].name
        where = PortRef(draw(st.sampled_from(switches)), 80 + pick)
        attachments = tuple(sorted([(n, w) for n, w in topology.attachments if n != name] + [(name, where)]))
        return policy, replace(topology, attachments=attachments, ports=topology.ports | {where}, _cache={})
    if kind == "detach" and topology.attachments:
        attachments = topology.attachments[:pick % len(topology.attachments)] + \
            topology.attachments[pick % len(topology.attachments) + 1:]
        return policy, replace(topology, attachments=attachments, _cache={})
    if kind == "link" and topology.links:
        links = sorted(topology.links)
        gone = links[draw(st.integers(0, len(links) - 1))]
        return policy, replace(topology, links=frozenset(links) - {gone}, declared_trunks=topology.declared_trunks
                               | {gone.a, gone.b}, _cache={})
    if kind == "switch-up":  # a new switch connects, linked to one of the others
        new = max(switches) + 1
        neighbour = draw(st.sampled_from(switches))
        link = Link.between(PortRef(new, 30), PortRef(neighbour, 30 + new))
        return policy, replace(topology, switches=topology.switches | {new}, links=topology.links | {link},
                               ports=topology.ports | {link.a, link.b, PortRef(new, 1)}, _cache={})
    if kind == "switch-down" and len(switches) > 1:  # a switch goes away with its links and ports
        gone = draw(st.sampled_from(switches))
        return policy, replace(topology, switches=topology.switches - {gone},
                               links=frozenset(l for l in topology.links if gone not in (l.a.dpid, l.b.dpid)),
                               ports=frozenset(p for p in topology.ports if p.dpid != gone),
                               declared_trunks=frozenset(p for p in topology.declared_trunks if p.dpid != gone),
                               _cache={})
    if kind == "port" and topology.ports:
        ports = sorted(topology.ports)
        return policy, replace(topology, ports=frozenset(ports) - {ports[pick % len(ports)]}, _cache={})
    if policy.conduits and kind in ("conduit", "conduit-mode", "stateful", "groups"):
        index = draw(st.integers(0, len(policy.conduits) - 1))
        conduit = policy.conduits[index]
        if kind == "conduit":
            changed: Conduit = replace(conduit, services=(draw(st.sampled_from(["modbus", "goose", "ntp", "icmp"])),))
        elif kind == "groups":
            changed = replace(conduit, groups=draw(st.sampled_from([(), ("239.192.0.1",), ("239.192.0.1", "239.192.0.9")])))
        elif kind == "conduit-mode":
            changed = replace(conduit, mode=draw(st.sampled_from([None, "enforce", "monitor"])))
        else:
            changed = replace(conduit, stateful=not conduit.stateful)
        conduits = policy.conduits[:index] + (changed,) + policy.conduits[index + 1:]
        return replace(policy, conduits=conduits, _index={}), topology
    if kind in ("zone-mode", "intra"):
        index = draw(st.integers(0, len(policy.zones) - 1))
        zone = policy.zones[index]
        if kind == "zone-mode":
            zone = replace(zone, mode=draw(st.sampled_from([None, "enforce", "monitor"])))
        else:
            zone = replace(zone, intra=draw(st.sampled_from([Intra.DENY, Intra.ALLOW])), intra_services=())
        return replace(policy, zones=policy.zones[:index] + (zone,) + policy.zones[index + 1:], _index={}), topology
    if kind == "policy-mode":
        return replace(policy, mode="monitor" if policy.mode == "enforce" else "enforce", _index={}), topology
    return policy, topology


@st.composite
def edit_sequences(draw: st.DrawFn) -> tuple[Policy, Topology, list[tuple[Policy, Topology]]]:
    policy, topology = draw(scenarios())
    steps = []
    for _ in range(draw(st.integers(1, 8))):
        policy, topology = edit(policy, topology, draw)
        steps.append((policy, topology))
    return steps[0][0], steps[0][1], steps


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), edit_sequences())
def test_random_edit_sequences_equal_a_full_recompute(first: tuple[Policy, Topology],
                                                      sequence: tuple[Policy, Topology,
                                                                      list[tuple[Policy, Topology]]]) -> None:
    engine = IncrementalCompiler()
    policy, topology = first
    assert_equals_full(engine, policy, topology)
    base_policy, base_topology, steps = sequence
    for policy, topology in steps:
        assert_equals_full(engine, policy, topology)
    # and back to the start: everything an edit added is withdrawn again
    assert_equals_full(engine, first[0], first[1])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edit_sequences())
def test_without_fast_failover_too(sequence: tuple[Policy, Topology, list[tuple[Policy, Topology]]]) -> None:
    engine = IncrementalCompiler(fast_failover=False)
    for policy, topology in sequence[2]:
        assert_equals_full(engine, policy, topology, fast_failover=False)


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_labs_under_every_edit_kind(name: str) -> None:
    policy = load_policy(ROOT / "policies" / f"{name}.yaml")
    topology = load_lab(ROOT / "topologies" / f"{name}.yaml", policy).to_topology(policy)
    engine = IncrementalCompiler()
    assert_equals_full(engine, policy, topology)
    # every link down in turn, then all back: fast-failover groups, detours and trees move
    for link in sorted(topology.links):
        assert_equals_full(engine, policy, replace(topology, links=topology.links - {link}, _cache={}))
    assert_equals_full(engine, policy, topology)
    # every asset moved to the next zone in turn, then all back
    zones = [z.name for z in policy.zones]
    for index, asset in enumerate(policy.assets):
        moved = _with_asset(policy, index, zone=zones[(zones.index(asset.zone) + 1) % len(zones)])
        assert_equals_full(engine, moved, topology)
    assert_equals_full(engine, policy, topology)
    # every conduit removed in turn
    for index in range(len(policy.conduits)):
        fewer = replace(policy, conduits=policy.conduits[:index] + policy.conduits[index + 1:], _index={})
        assert_equals_full(engine, fewer, topology)
    assert_equals_full(engine, policy, topology)
    assert engine.full_compiles == 1


def test_a_switch_that_connects_or_goes_is_compiled_incrementally() -> None:
    policy = load_policy(ROOT / "policies" / "plant.yaml")
    topology = load_lab(ROOT / "topologies" / "plant.yaml", policy).to_topology(policy)
    engine = IncrementalCompiler()
    for gone in sorted(topology.switches):
        without = replace(topology, switches=topology.switches - {gone},
                          links=frozenset(l for l in topology.links if gone not in (l.a.dpid, l.b.dpid)), _cache={})
        assert_equals_full(engine, policy, without)
        assert_equals_full(engine, policy, topology)
    assert engine.full_compiles == 1


def test_a_one_asset_edit_never_calls_the_full_compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = generated_policy(300, 20, 80)
    topology = generated_topology(policy, 12, "zone")
    engine = IncrementalCompiler()
    engine.compile(policy, topology)
    units_total = engine.stats.units_run

    def refuse(*args: object) -> None:
        raise AssertionError("the full compiler was called for a one-asset edit")

    monkeypatch.setattr(incremental, "derive", refuse)
    asset = policy.assets[0]
    other_zone = next(z.name for z in policy.zones if z.name != asset.zone)
    moved = _with_asset(policy, 0, zone=other_zone)
    engine.compile(moved, topology)
    assert not engine.stats.full and engine.stats.units_run < units_total / 10
    assert engine.stats.by_kind.get("destination", 0) < 50, engine.stats.by_kind
    monkeypatch.undo()
    assert_equals_full(engine, moved, topology)


def test_an_unchanged_switch_keeps_its_tables_object() -> None:
    policy = generated_policy(100, 10, 40)
    topology = generated_topology(policy, 8, "zone")
    engine = IncrementalCompiler()
    before = engine.compile(policy, topology)
    after = engine.compile(_with_asset(policy, 0, ip="10.9.9.9"), topology)
    assert 0 < engine.stats.switches_changed < len(topology.switches)
    assert sum(after[dpid] is before[dpid] for dpid in before) == len(before) - engine.stats.switches_changed


def test_the_running_controller_catches_a_divergence_and_recomputes() -> None:
    """CompileVerifier: a corrupted incremental state is found by the periodic full compile,
    counted, reported, and replaced by a full recompute."""
    from contextlib import nullcontext  # noqa: PLC0415

    from prometheus_client import CollectorRegistry  # noqa: PLC0415

    from controller.app.audit import CompileVerifier  # noqa: PLC0415
    from controller.app.enforcer import Enforcer  # noqa: PLC0415
    from controller.app.metrics import Metrics  # noqa: PLC0415

    policy = load_policy(ROOT / "policies" / "plant.yaml")
    topology = load_lab(ROOT / "topologies" / "plant.yaml", policy).to_topology(policy)
    enforcer = Enforcer(policy)
    events: list[tuple[str, dict[str, object]]] = []
    woken: list[bool] = []
    metrics = Metrics(CollectorRegistry())
    verifier = CompileVerifier(enforcer, nullcontext(), metrics, lambda key, event: events.append((key, event)),
                               lambda: woken.append(True), lambda seconds: None, 300.0)
    good = enforcer.compiled.tables(policy, topology)
    assert verifier.once() == [] and not events
    engine = enforcer.compiled.engines[True]
    tables = engine.merged.tables
    dpid = min(tables)
    tables[dpid] = replace(tables[dpid], flows=frozenset(list(tables[dpid].flows)[1:]))
    assert verifier.once() == [dpid]
    assert events and events[0][0] == "compile-divergence" and woken
    assert metrics.compile_divergences._value.get() == 1 and metrics.compile_checks._value.get() == 2
    assert engine.ctx is None  # reset: the next compile is a full one, and right
    assert enforcer.compiled.tables(policy, topology) == good and engine.full_compiles == 2
