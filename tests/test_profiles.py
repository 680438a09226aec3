"""Capability profiles: every profile's tables walk the allow/deny matrix and the attack probes
as the reference says (but for the losses the profile names), updates without bundles never
show a packet a fate of neither the old nor the new tables, and discovery reads what a
switch reports."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.app.enforcer import Enforcer
from controller.app.switch_profiles import SwitchProfiles
from controller.core.compiler import compile_tables
from controller.core.learning import trunks_in_flows
from controller.core.diff import Plan, apply_plan, diff_flows
from controller.core.fit import refusals, warnings
from controller.core.flows import TCP_ACK, ApplyActions, Conntrack, MeterInstruction, SwitchTables
from controller.core.incremental import IncrementalCompiler
from controller.core.lowering import folded
from controller.core.model import Policy
from controller.core.pipeline import PORT_SECURITY, VERSION
from controller.core.profiles import FULL, PROFILES, Profile, SwitchFeatures, TableFeature, from_features, overridden
from controller.core.reference import judge
from controller.core.staging import installed_version, stages, target, versioned
from controller.core.topology import PortRef, Topology
from controller.verify.check import verify
from controller.verify.walk import Network, ovs_key
from tests.conftest import EXAMPLES, load_example
from tests.test_enforcer import FakeSwitch, enforced_linear
from tests.strategies import scenarios
from tests.test_walk_examples import _free_port
from tests.walk import Matrix, frame, probes

# Profiles whose tables differ from the full ones (no-bundles and no-conntrack compile to the
# full tables: `test_profiles_that_change_nothing_in_the_tables_compile_to_the_full_ones`).
LOSSLESS = ["full", "single-table", "no-fast-failover", "no-meters"]


def everywhere(topology: Topology, profile: Profile) -> Topology:
    return replace(topology, profiles=tuple((dpid, profile) for dpid in sorted(topology.switches)))


@pytest.fixture(params=EXAMPLES, ids=lambda pair: pair[0].removesuffix(".yaml"))
def example(request: pytest.FixtureRequest) -> tuple[Policy, Topology]:
    return load_example(*request.param)


@pytest.mark.parametrize("name", LOSSLESS)
def test_lossless_profiles_walk_the_whole_matrix_as_the_reference_says(example: tuple[Policy, Topology],
                                                                      name: str) -> None:
    policy, topology = example
    matrix = Matrix(policy, everywhere(topology, PROFILES[name]))
    found = matrix.check_unicast() + matrix.check_multicast() + matrix.check_attacks(_free_port(topology, matrix))
    assert not found, "\n".join(map(str, found[:10]))
    assert matrix.walks > 1000


def test_profiles_that_change_nothing_in_the_tables_compile_to_the_full_ones(example: tuple[Policy, Topology]) -> None:
    policy, topology = example
    full = compile_tables(policy, topology)
    for name in ("no-bundles", "no-conntrack"):
        assert compile_tables(policy, everywhere(topology, PROFILES[name])) == full, name


@pytest.mark.parametrize("name", ["no-tcp-flags", "minimal"])
def test_without_tcp_flags_only_flagless_tcp_from_a_service_port_changes(example: tuple[Policy, Topology],
                                                                         name: str) -> None:
    """The loss the profile names, and nothing else: every mismatch is a TCP frame without ACK that
    the reference would deliver if it carried ACK (the reply rule of a conduit admits it)."""
    policy, topology = example
    matrix = Matrix(policy, everywhere(topology, PROFILES[name]))
    found = matrix.check_unicast() + matrix.check_attacks(_free_port(topology, matrix)) + matrix.check_multicast()
    assert found, "the example has TCP conduits: the loss must show"
    assert all(m.probe.startswith(("tcp reverse syn", "tcp fin (no ack)")) for m in found), [str(m) for m in found
                                                                                        if not m.probe.startswith(
                                                                                            ("tcp reverse syn",
                                                                                             "tcp fin (no ack)"))][:5]
    lost = {origin for w in warnings(policy, everywhere(topology, PROFILES[name])) for origin in [w]}
    assert lost, "validate must name the conduits"
    for mismatch in found:
        src, dst = policy.asset(mismatch.source), policy.asset(mismatch.destination)
        label, packet = next((lbl, p) for lbl, p in probes(policy) if lbl == mismatch.probe)
        sent = frame(src, dst, replace(packet, tcp_flags=packet.tcp_flags | TCP_ACK))
        where = matrix.located[src.name]
        assert judge(policy, matrix.located, where, sent).delivered, (label, src.name, dst.name)


@pytest.mark.parametrize("name", ["single-table", "no-meters", "no-fast-failover", "no-bundles"])
def test_the_independent_verifier_proves_each_profile(example: tuple[Policy, Topology], name: str) -> None:
    policy, topology = example
    profiled = everywhere(topology, PROFILES[name])
    report = verify(policy, profiled, compile_tables(policy, profiled), failures=False)
    assert not report.findings, [(f.invariant, f.where) for f in report.findings][:5]


def test_single_table_tables_hold_one_table_and_no_metadata(example: tuple[Policy, Topology]) -> None:
    policy, topology = example
    full = compile_tables(policy, topology)
    single = compile_tables(policy, everywhere(topology, PROFILES["single-table"]))
    for dpid, tables in single.items():
        assert {f.table for f in tables.flows} == {PORT_SECURITY}
        assert not any(f.field("metadata") for f in tables.flows)
        assert all(f.priority <= 0xFFFF for f in tables.flows)
        assert len(tables.flows) >= len([f for f in full[dpid].flows if f.table == PORT_SECURITY])


def test_no_meter_tables_have_no_meters_and_send_only_trunk_lldp(example: tuple[Policy, Topology]) -> None:
    policy, topology = example
    for tables in compile_tables(policy, everywhere(topology, PROFILES["no-meters"])).values():
        assert not tables.meters
        assert not any(isinstance(i, MeterInstruction) for f in tables.flows for i in f.instructions)
        to_controller = [f for f in tables.flows for i in f.instructions if isinstance(i, ApplyActions)
                         and any(getattr(a, "port", None) == 0xFFFFFFFD for a in i.actions)]
        assert all(f.field("eth_type") and f.field("eth_type").value == 0x88CC and f.field("in_port")
                   for f in to_controller), to_controller[:2]


def test_no_fast_failover_leaves_out_groups_and_backup_entries() -> None:
    policy, topology = load_example("plant.yaml", "plant.yaml")
    full = compile_tables(policy, topology)
    assert any(t.groups for t in full.values()), "the plant ring has protected links"
    for tables in compile_tables(policy, everywhere(topology, PROFILES["no-fast-failover"])).values():
        assert not tables.groups
        assert not any(f.priority == 150 for f in tables.flows)


def test_incremental_compiles_with_profiles_equal_full_compiles() -> None:
    policy, topology = load_example("plant.yaml", "plant.yaml")
    engine = IncrementalCompiler()
    mixed = replace(topology, profiles=((1, PROFILES["single-table"]), (2, PROFILES["no-fast-failover"]),
                                        (3, PROFILES["no-meters"])))
    for step in (topology, mixed, replace(mixed, attachments=mixed.attachments[1:]), topology):
        assert engine.compile(policy, step) == compile_tables(policy, step)


def test_refusals_name_the_switch_and_the_reason() -> None:
    policy, topology = load_example("water.yaml", "water.yaml")
    profiled = everywhere(topology, PROFILES["no-conntrack"])
    found = refusals(policy, profiled, compile_tables(policy, profiled), {3: "s3"})
    assert [r.switch for r in found] == ["s3"]
    assert "bms-monitoring" in found[0].describe() and "connection tracking" in found[0].describe()
    unmetered = everywhere(topology, PROFILES["no-meters"])
    assert any("not pinned" in r.reason for r in refusals(policy, unmetered, compile_tables(policy, unmetered)))
    assert not refusals(policy, topology, compile_tables(policy, topology))


# -- updates without bundles --------------------------------------------------------------------
def _fates(network: Network, sends: list[tuple[PortRef, object]]) -> list[frozenset[PortRef]]:
    return [frozenset(network.send(where, key).delivered_ports()) for where, key in sends]  # type: ignore[arg-type]


def _sends(policies: list[Policy], topology: Topology) -> list[tuple[PortRef, object]]:
    from controller.core.topology import locate_assets  # noqa: PLC0415

    sends = []
    for policy in policies:
        located = locate_assets(policy, topology)
        labelled = probes(policy)
        for src in policy.assets:
            for dst in policy.assets:
                if src.name in located and src is not dst:
                    sends += [(located[src.name], ovs_key(frame(src, dst, packet))) for _, packet in labelled]
    return sends


def _transitions(old: dict[int, SwitchTables], new: dict[int, SwitchTables], topology: Topology,
                 folded_tables: bool) -> list[dict[int, SwitchTables]]:
    """Every switch's tables after each stage of the update from `old` to `new`, one switch after the
    other in dpid order, as the enforcer reconciles them."""
    current = {dpid: replace(old[dpid], groups=old[dpid].groups | new[dpid].groups) for dpid in topology.switches}
    result = [dict(current)]
    for dpid in sorted(topology.switches):
        desired = new[dpid] if folded_tables else target(new[dpid], old[dpid].flows)[0]
        installed = old[dpid].flows
        for batch in stages(diff_flows(desired.flows, installed), folded_tables):
            for op, flow in batch:
                installed = apply_plan(installed, Plan(delete=(flow,)) if op == "delete" else Plan(add=(flow,)))
            current[dpid] = replace(current[dpid], flows=installed)
            result.append(dict(current))
        assert installed == desired.flows, (sorted(installed - desired.flows)[:2], sorted(desired.flows - installed)[:2])
    return result


def _mixtures(old: dict[int, SwitchTables], new: dict[int, SwitchTables], topology: Topology,
              every_subset: bool = False) -> list[dict[int, SwitchTables]]:
    """What per-switch atomic updates (bundles) show meanwhile: each switch wholly old or wholly new,
    the first k switches in dpid order new (or, `every_subset`, any of them)."""
    order = sorted(topology.switches)
    chosen = ([set(c) for n in range(len(order) + 1) for c in itertools.combinations(order, n)] if every_subset
              else [set(order[:k]) for k in range(len(order) + 1)])
    return [{d: replace(new[d] if d in done else old[d], groups=old[d].groups | new[d].groups) for d in order}
            for done in chosen]


@settings(max_examples=5, deadline=None)
@given(scenarios(), scenarios())
def test_every_stage_of_an_update_without_bundles_gives_old_or_new_fates(
        first: tuple[Policy, Topology], second: tuple[Policy, Topology]) -> None:
    policy_a, topology = first
    policy_b = second[0]
    sends = _sends([policy_a, policy_b], topology)
    sends = sends[::max(1, len(sends) // 300)]  # a spread of a few hundred: every stage walks them twice
    for profile in (PROFILES["no-bundles"], PROFILES["minimal"]):
        profiled = everywhere(topology, profile)
        old = {d: versioned(t, 0) if not profile.single_table else t
               for d, t in compile_tables(policy_a, profiled).items()}
        new = compile_tables(policy_b, profiled)
        final = new if profile.single_table else {d: target(t, old[d].flows)[0] for d, t in new.items()}
        # The reference: what bundles (atomic per switch, switch after switch) would show meanwhile.
        atomic = [_fates(Network(m, profiled), sends) for m in _mixtures(old, final, profiled)]
        allowed = [frozenset().union(*fates) for fates in zip(*atomic)]
        steady = [fates[0] if all(f == fates[0] for f in fates) else None for fates in zip(*atomic)]
        old_flows = frozenset().union(*(t.flows for t in old.values()))
        prefer_old = lambda a, b: a if a in old_flows else b  # noqa: E731
        prefer_new = lambda a, b: b if a in old_flows else a  # noqa: E731
        for tables, tie in itertools.product(_transitions(old, new, profiled, profile.single_table),
                                             (prefer_old, prefer_new)):
            during = _fates(Network(tables, profiled, tie=tie), sends)
            # Nothing reaches a port that no per-switch atomic update would send it to (safety), and
            # a frame that every such state sends to the same ports reaches them throughout (hitless).
            odd = [i for i, fate in enumerate(during) if not fate <= allowed[i]
                   or (steady[i] is not None and fate != steady[i])]
            assert not odd, (profile.name, sends[odd[0]], allowed[odd[0]], during[odd[0]], steady[odd[0]])


def test_versions_alternate_and_an_unchanged_switch_keeps_its_version() -> None:
    policy, topology = load_example("linear.yaml", "linear.yaml")
    tables = compile_tables(policy, topology)[2]
    first, quarantine = target(tables, frozenset())
    assert installed_version(first.flows) == 0 and not quarantine
    assert target(tables, first.flows) == (first, ())  # nothing changed: nothing to send
    fewer = replace(tables, flows=frozenset(f for f in tables.flows if f.table != "policy" or f.priority != 2000))
    assert target(fewer, first.flows)[0] == versioned(fewer, 0)  # only deletions: in place, no flip
    grown = replace(tables, flows=tables.flows | {replace(next(f for f in tables.flows if f.table == "policy"
                                                                and f.priority == 2000), priority=2001)})
    second = target(grown, first.flows)[0]  # an entry added: the other version
    assert installed_version(second.flows) == 1
    assert all(f.field("metadata") and int(f.field("metadata").mask) & VERSION.mask
               for f in second.flows if f.table in ("destination", "policy") and f.priority > 0)


# -- discovery ------------------------------------------------------------------------------------
OVS_FIELDS = frozenset({"in_port", "eth_src", "eth_dst", "vlan_vid", "eth_type", "ipv4_src", "ipv4_dst", "arp_spa",
                        "arp_tpa", "arp_sha", "ip_frag", "ct_state", "ip_proto", "tcp_src", "tcp_dst", "udp_src",
                        "udp_dst", "icmpv4_type", "tcp_flags", "metadata"})


def _table(table_id: int, fields: frozenset[str] = OVS_FIELDS, size: int = 1_000_000, metadata: int = 2**64 - 1,
           goto: bool = True) -> TableFeature:
    return TableFeature(table_id, size, metadata, metadata, fields, goto, goto)


def test_discovery_of_an_open_vswitch_gives_the_full_profile() -> None:
    features = SwitchFeatures(tuple(_table(i) for i in range(254)), 0xF, 2**32 - 256, 262144, True)
    profile = from_features(features)
    assert profile == replace(FULL, max_entries=4_000_000) and profile.name == "full"


def test_discovery_fails_closed_on_what_a_switch_lacks_or_does_not_say() -> None:
    one_table = SwitchFeatures((_table(0, OVS_FIELDS - {"tcp_flags", "ct_state"}, 2000, 0, False),), 0x1, 0, 0,
                               False)
    profile = from_features(one_table)
    assert profile.name == "minimal" and profile.max_entries == 2000
    assert not from_features(SwitchFeatures(None, None, None, None, None)).fast_failover
    assert from_features(SwitchFeatures(None, None, None, None, None)).single_table
    assert overridden(profile, "override", meters=True).meters


def test_lowering_never_keeps_a_tracker_lookup_on_a_folded_switch_out_of_table_0() -> None:
    policy, topology = load_example("water.yaml", "water.yaml")
    tables = compile_tables(policy, topology)
    for switch in tables.values():
        for flow in folded(switch).flows:
            for i in flow.instructions:
                if isinstance(i, ApplyActions):
                    assert all(a.table in (None, PORT_SECURITY) for a in i.actions if isinstance(a, Conntrack))


# -- the enforcer with profiles (fake switches) ------------------------------------------------------
def _enforced(profiles: SwitchProfiles) -> tuple[Enforcer, dict[int, FakeSwitch], Policy, Topology]:
    return enforced_linear(profiles=profiles)


def test_a_switch_without_bundles_gets_versioned_tables_and_each_change_flips_the_version() -> None:
    enforcer, switches, policy, topology = _enforced(SwitchProfiles({2: PROFILES["no-bundles"],
                                                                     3: PROFILES["single-table"]}))
    enforcer.reconcile()
    expected = compile_tables(policy, enforcer.topology())
    assert switches[2].flows == versioned(expected[2], 0).flows
    assert switches[3].flows == expected[3].flows and switches[1].flows == expected[1].flows
    enforcer.apply_policy(replace(policy, conduits=policy.conduits[1:]))
    changed = compile_tables(enforcer.policy, enforcer.topology())
    assert switches[2].flows == versioned(changed[2], 0).flows  # only deletions: in place
    assert switches[3].flows == changed[3].flows
    enforcer.apply_policy(policy)  # entries added: the other version
    assert switches[2].flows == versioned(expected[2], 1).flows
    assert enforcer.reconcile().flow_mods == 0  # nothing changed: no flip
    assert trunks_in_flows(switches[2].flows) == {p.port for p in topology.live_trunks if p.dpid == 2}


def test_discovery_holds_a_switch_until_it_reports_and_its_profile_is_compiled() -> None:
    enforcer, switches, policy, _ = _enforced(SwitchProfiles({3: PROFILES["no-tcp-flags"]}, discover=True))
    enforcer.reconcile()
    assert not switches[1].flows and not switches[2].flows  # never programmed for capabilities it may not have
    assert switches[3].flows  # stated by the topology document: no need to wait
    enforcer.switch_profile(1, PROFILES["single-table"])
    enforcer.switch_profile(2, replace(FULL, source="discovered"))
    enforcer.reconcile()
    assert {f.table for f in switches[1].flows} == {PORT_SECURITY}
    assert switches[2].flows == compile_tables(policy, enforcer.topology())[2].flows
    assert not any(f.field("tcp_flags") for f in switches[3].flows)


def test_a_refused_switch_keeps_its_tables_and_a_push_that_needs_it_is_refused() -> None:
    enforcer, switches, policy, _ = _enforced(SwitchProfiles({1: PROFILES["no-meters"]}))
    report = enforcer.reconcile()
    assert 1 in report.errors and "not pinned" in report.errors[1]
    assert not switches[1].flows and switches[2].flows


@pytest.mark.parametrize("pair", EXAMPLES, ids=lambda pair: pair[0].removesuffix(".yaml"))
def test_the_matrix_catches_a_fold_that_forgets_its_shadowing_drops(pair: tuple[str, str]) -> None:
    """A mutant of the fold: the drops kept because they shadow a lower allowed entry (a foreign
    destination address above the L2 entry, a spoofed source above the binding) are left out.
    Walking the matrix must show it, or the lossless-profile test above proves nothing."""
    policy, topology = load_example(*pair)
    profiled = everywhere(topology, PROFILES["single-table"])
    tables = compile_tables(policy, profiled)
    mutant = {dpid: replace(t, flows=frozenset(f for f in t.flows if f.instructions or len(f.match) < 3))
              for dpid, t in tables.items()}
    assert mutant != tables
    matrix = Matrix(policy, profiled, mutant)
    assert matrix.check_unicast() + matrix.check_attacks(_free_port(topology, matrix))


@settings(max_examples=4, deadline=None)
@given(scenarios(), scenarios(), st.integers(0, 10_000))
def test_an_interrupted_update_recovers_without_admitting_what_both_policies_deny(
        first: tuple[Policy, Topology], second: tuple[Policy, Topology], cut: int) -> None:
    """An update from A to B stops part-way (a refused flow-mod, a lost connection); the next reconcile
    goes to A (the rollback) or to B again. Whatever state it starts from, no stage of the recovery,
    its quarantine included, lets a frame reach a port that no mixture of switches wholly on A or
    wholly on B sends it to (what bundles, atomic per switch, may show)."""
    policy_a, topology = first
    profiled = everywhere(topology, PROFILES["no-bundles"])
    old = {d: versioned(t, 0) for d, t in compile_tables(policy_a, profiled).items()}
    new = compile_tables(second[0], profiled)
    sends = _sends([policy_a, second[0]], topology)
    sends = sends[::max(1, len(sends) // 300)]
    final_b = {d: target(t, old[d].flows)[0] for d, t in new.items()}
    final_a = {d: versioned(t, v) for d, t in compile_tables(policy_a, profiled).items() for v in (0, 1)
               if v == 1}  # either version: only the fates matter
    mixtures = _mixtures(old, final_b, profiled, every_subset=True) + _mixtures(final_a, final_b, profiled,
                                                                                  every_subset=True)
    allowed = [frozenset().union(*fates) for fates in zip(*(_fates(Network(m, profiled), sends) for m in mixtures))]
    interrupted: dict[int, SwitchTables] = {}
    for dpid in profiled.switches:
        installed = old[dpid].flows
        ops = [op for batch in stages(diff_flows(target(new[dpid], installed)[0].flows, installed), False)
               for op in batch]
        for op, flow in ops[:cut % (len(ops) + 1)]:
            installed = apply_plan(installed, Plan(delete=(flow,)) if op == "delete" else Plan(add=(flow,)))
        interrupted[dpid] = replace(new[dpid], flows=installed, groups=old[dpid].groups | new[dpid].groups)
    for goal in (compile_tables(policy_a, profiled), new):
        states = dict(interrupted)
        steps = [dict(states)]
        for dpid in profiled.switches:
            tables, quarantine = target(goal[dpid], states[dpid].flows)
            installed = apply_plan(states[dpid].flows, Plan(modify=quarantine))
            states[dpid] = replace(states[dpid], flows=installed)
            steps.append(dict(states))
            for batch in stages(diff_flows(tables.flows, installed), False):
                for op, flow in batch:
                    installed = apply_plan(installed, Plan(delete=(flow,)) if op == "delete" else Plan(add=(flow,)))
                states[dpid] = replace(states[dpid], flows=installed)
                steps.append(dict(states))
            assert installed == tables.flows
        for step in steps:
            for tie in (lambda a, b: a, lambda a, b: b):
                during = _fates(Network(step, profiled, tie=tie), sends)
                odd = [i for i, fate in enumerate(during) if not fate <= allowed[i]]
                assert not odd, (sends[odd[0]], allowed[odd[0]], during[odd[0]])
