"""The enforcer's state machine against a fake switch: read, diff, apply, learn, restart."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from controller.app.enforcer import ApplyError, Enforcer
from controller.core.compiler import compile_tables
from controller.core.diff import Plan, SwitchPlan, is_foreign, is_ours
from controller.core.flows import ClearActions, Flow, Group, Meter, Output, SwitchTables, make_flow
from controller.core.learning import Sighting
from controller.core.topology import Link, PortRef, Topology
from controller.io.files import load_lab, load_policy
from tests.conftest import load_example

FOREIGN = make_flow("port_security", 5, {"in_port": 7}, [], cookie=0x1234)  # somebody else's flow


def ovs_apply(flows: frozenset[Flow], plan: Plan) -> frozenset[Flow]:
    """What Open vSwitch does with the flow-mods OsKenChannel sends for `plan`: adds (and
    replacements, sent as adds) overwrite the whole flow; an OpenFlow 1.3 modify changes the
    instructions and keeps the installed cookie; strict deletes remove by key, any cookie."""
    table = {f.key: f for f in flows}
    for flow in plan.add + plan.replace:
        table[flow.key] = flow
    for flow in plan.modify:
        old = table.get(flow.key)
        table[flow.key] = flow if old is None else replace(flow, cookie=old.cookie)
    for flow in plan.delete:
        table.pop(flow.key, None)
    return frozenset(table.values())


@dataclass
class FakeSwitch:
    dpid: int
    flows: frozenset[Flow] = frozenset()
    meters: list[Meter] = field(default_factory=list)
    groups: dict[int, Group] = field(default_factory=dict)
    sent: list[Plan] = field(default_factory=list)
    refuse: bool = False
    port_numbers: tuple[int, ...] = ()

    def ports(self) -> list[int]:
        return list(self.port_numbers)

    def read_flows(self) -> list[Flow]:
        return [f for f in self.flows if is_ours(f) or is_foreign(f)]  # as OsKenChannel reads them

    def read_meters(self) -> list[Meter]:
        return list(self.meters)

    def read_groups(self) -> list[Group]:
        return list(self.groups.values())

    def send(self, plan: SwitchPlan) -> None:
        if self.refuse:
            raise ApplyError("OpenFlow error type 5 code 6")
        self.sent.append(plan.flows)
        self.flows = ovs_apply(self.flows, plan.flows)
        self.meters = sorted({m.meter_id: m for m in self.meters + list(plan.meters_add + plan.meters_modify)}.values())
        self.groups.update({g.group_id: g for g in plan.groups_add + plan.groups_modify})
        for group in plan.groups_delete:
            del self.groups[group.group_id]


def _linear(remove_foreign: bool = True) -> tuple[Enforcer, dict[int, FakeSwitch]]:
    policy, topology = load_example("linear.yaml", "linear.yaml")
    enforcer = Enforcer(policy, settle_seconds=0, startup_grace=0, declared_links=topology.links,
                        remove_foreign=remove_foreign)
    switches = {dpid: FakeSwitch(dpid, frozenset({FOREIGN}),
                                 port_numbers=tuple(sorted(p.port for p in topology.ports if p.dpid == dpid)))
                for dpid in topology.switches}
    for switch in switches.values():
        enforcer.switch_connected(switch, switch.ports())
    for link in topology.links:
        enforcer.link_up(link)
    for name, where in topology.attachments:
        asset = policy.asset(name)
        assert enforcer.frame_sampled(Sighting(where, asset.mac, asset.ip)).kind == "bind"
    return enforcer, switches


def enforced_linear(**options: Any) -> tuple[Enforcer, dict[int, FakeSwitch], Any, Topology]:
    """An enforcer (with `options`) on the linear lab's fake switches, links up, every asset seen once."""
    policy, topology = load_example("linear.yaml", "linear.yaml")
    enforcer = Enforcer(policy, settle_seconds=0, startup_grace=0, declared_links=topology.links, **options)
    switches = _fakes(topology)
    _connect(enforcer, switches, topology)
    for name, where in topology.attachments:
        asset = policy.asset(name)
        enforcer.frame_sampled(Sighting(where, asset.mac, asset.ip))
    return enforcer, switches, policy, topology


def _fakes(topology: Topology) -> dict[int, FakeSwitch]:
    return {dpid: FakeSwitch(dpid, port_numbers=tuple(sorted(p.port for p in topology.ports if p.dpid == dpid)))
            for dpid in topology.switches}


def _connect(enforcer: Enforcer, switches: dict[int, FakeSwitch], topology: Topology) -> None:
    """Every switch connects, then every link of the topology comes up."""
    for fake in switches.values():
        enforcer.switch_connected(fake, fake.ports())
    for link in topology.links:
        enforcer.link_up(link)


def _restart(enforcer: Enforcer, switches: dict[int, FakeSwitch]) -> Enforcer:
    """A new controller process: same policy, same switches and links, nothing remembered."""
    restarted = Enforcer(enforcer.policy, settle_seconds=0, startup_grace=0, declared_links=enforcer.declared_links)
    for fake in switches.values():
        fake.sent.clear()
        restarted.switch_connected(fake, fake.ports())
    for link in enforcer.links:
        restarted.link_up(link)
    return restarted


@pytest.mark.parametrize("remove_foreign", [True, False], ids=["foreign-removed", "foreign-kept"])
def test_switches_get_exactly_the_compiled_tables_and_foreign_flows_go_unless_kept(remove_foreign: bool) -> None:
    enforcer, switches = _linear(remove_foreign)
    enforcer.reconcile()
    policy, topology = load_example("linear.yaml", "linear.yaml")
    expected = compile_tables(policy, topology)
    for dpid, switch in switches.items():
        assert switch.flows == expected[dpid].flows | (set() if remove_foreign else {FOREIGN})
        assert set(switch.meters) == set(expected[dpid].meters)
        assert set(switch.groups.values()) == set(expected[dpid].groups)


def test_a_second_reconcile_sends_nothing() -> None:
    enforcer, switches = _linear()
    enforcer.reconcile()
    report = enforcer.reconcile()
    assert report.flow_mods == 0


def test_a_restarted_controller_reads_the_switch_and_only_fixes_drift() -> None:
    enforcer, switches = _linear()
    enforcer.reconcile()
    switch = switches[2]
    stale = make_flow("policy", 2000, {"eth_type": 0x0800, "metadata": (1, 1)}, [], cookie=0x0E5E_0000_0000_0001)
    missing = sorted(switch.flows - {FOREIGN})[0]
    switch.flows = (switch.flows - {missing}) | {stale}
    restarted = _restart(enforcer, switches)
    restarted.bound = dict(enforcer.bound)
    restarted.reconcile()
    assert switches[1].sent == [] and switches[3].sent == []
    assert switch.sent == [Plan(add=(missing,), delete=(stale,))]


def test_learning_binds_unknown_is_reported_and_conflict_gets_nothing() -> None:
    enforcer, _ = _linear()
    plc = enforcer.policy.asset("plc-a")
    assert enforcer.frame_sampled(Sighting(PortRef(3, 7), "02:00:00:00:00:99")).kind == "unknown-device"
    assert enforcer.frame_sampled(Sighting(PortRef(3, 7), plc.mac, plc.ip)).kind == "conflict"
    assert enforcer.frame_sampled(Sighting(PortRef(2, 1), plc.mac, "10.9.9.9")).kind == "spoof"
    assert enforcer.bindings()["plc-a"] == PortRef(2, 1)
    assert enforcer.frame_sampled(Sighting(PortRef(1, 10), plc.mac, plc.ip)).kind == "ignore"  # a trunk port


def test_an_asset_may_move_after_its_port_went_down() -> None:
    enforcer, _ = _linear()
    plc = enforcer.policy.asset("plc-a")
    enforcer.port_down(PortRef(2, 1))
    assert enforcer.frame_sampled(Sighting(PortRef(3, 7), plc.mac, plc.ip)).kind == "bind"
    assert enforcer.bindings()["plc-a"] == PortRef(3, 7)


def test_a_binding_its_port_lost_is_not_adopted_back_from_the_switchs_flows() -> None:
    """The switch still holds the old port's binding flows until the next reconcile; a re-read
    of the switch meanwhile (a refused change, an audit) must not bind the asset there again."""
    enforcer, _ = _linear()
    enforcer.reconcile()
    old = enforcer.bindings()["plc-a"]
    enforcer.port_down(old)
    assert "plc-a" not in enforcer.bindings()
    enforcer.switches[old.dpid].installed = None  # read again, as after a refused change
    enforcer.reconcile()
    assert "plc-a" not in enforcer.bindings()


def test_a_refused_change_is_reported_and_the_switch_is_read_again() -> None:
    enforcer, switches = _linear()
    switches[2].refuse = True
    report = enforcer.reconcile()
    assert 2 in report.errors and "error type 5" in report.errors[2]
    assert enforcer.switches[2].installed is None and not enforcer.switches[2].programmed
    switches[2].refuse = False
    enforcer.reconcile()
    assert enforcer.switches[2].programmed


def test_link_loss_recomputes_paths() -> None:
    enforcer, switches = _linear()
    enforcer.reconcile()
    before = switches[1].flows
    enforcer.link_down(Link.between(PortRef(2, 11), PortRef(3, 10)))
    enforcer.reconcile()
    assert switches[1].flows != before  # destinations behind the lost link are gone


@pytest.mark.parametrize("dpid", [1, 2, 3])
def test_a_disconnected_switch_is_left_alone(dpid: int) -> None:
    enforcer, switches = _linear()
    enforcer.switch_disconnected(dpid)
    enforcer.reconcile()
    assert switches[dpid].sent == []


def test_a_restarted_controller_keeps_bindings_the_switches_still_enforce() -> None:
    enforcer, switches = _linear()
    enforcer.reconcile()
    restarted = _restart(enforcer, switches)
    report = restarted.reconcile()  # nobody has spoken since the restart
    assert restarted.learned == enforcer.learned
    assert report.flow_mods == 0 and all(fake.sent == [] for fake in switches.values())


def test_reconciling_waits_for_links_of_a_newly_connected_switch() -> None:
    now = [100.0]
    policy, _ = load_example("linear.yaml", "linear.yaml")
    enforcer = Enforcer(policy, clock=lambda: now[0], settle_seconds=2.0)
    enforcer.switch_connected(FakeSwitch(1))
    assert enforcer.settle_remaining() == 2.0
    now[0] += 2.5
    assert enforcer.settle_remaining() == 0.0


def test_a_switch_of_the_topology_document_settles_only_while_a_declared_link_is_missing() -> None:
    """A new switch named by the topology document: its trunk-LLDP entries only (so that its
    declared links can be verified), then, once they are up, all the rest in one send; the settle
    time ends as soon as every declared link between connected switches is up."""
    now = [100.0]
    policy, topology = load_example("linear.yaml", "linear.yaml")
    enforcer = Enforcer(policy, clock=lambda: now[0], settle_seconds=2.0, startup_grace=0,
                        declared_links=topology.links, known_switches=topology.switches)
    switches = {dpid: FakeSwitch(dpid, port_numbers=tuple(sorted(p.port for p in topology.ports if p.dpid == dpid)))
                for dpid in topology.switches}
    for fake in switches.values():
        enforcer.switch_connected(fake, fake.ports())
    assert enforcer.settle_remaining() == 2.0
    report = enforcer.reconcile()
    assert set(report.waiting) == set(topology.switches)
    for fake in switches.values():
        [first] = fake.sent
        assert first.add and all(f.field("eth_type").value == 0x88CC for f in first.add)  # type: ignore[union-attr]
        assert {f.field("in_port").value for f in first.add} == {  # type: ignore[union-attr]
            end.port for link in topology.links for end in (link.a, link.b) if end.dpid == fake.dpid}
        fake.sent.clear()
    for link in topology.links:
        enforcer.link_up(link)
    assert enforcer.settle_remaining() == 0.0
    report = enforcer.reconcile()
    assert report.waiting == ()
    desired = enforcer.desired()
    for dpid, fake in switches.items():
        assert len(fake.sent) == 1 and fake.flows == desired[dpid].flows


def test_deletions_wait_for_the_start_up_grace() -> None:
    now = [0.0]
    policy, topology = load_example("linear.yaml", "linear.yaml")
    stale = make_flow("destination", 100, {"eth_dst": "02:00:00:00:00:09"}, [], cookie=0x0E5E_0000_0000_0001)
    revoked = make_flow("policy", 2000, {"eth_type": 0x0800, "metadata": (1, 1)}, [], cookie=0x0E5E_0000_0000_0001)
    switch = FakeSwitch(1, frozenset({stale, revoked}))
    enforcer = Enforcer(policy, clock=lambda: now[0], settle_seconds=0, startup_grace=10)
    enforcer.switch_connected(switch)
    report = enforcer.reconcile()
    assert report.deferred_deletes == 1 and stale in switch.flows
    assert revoked not in switch.flows  # an allow rule the policy no longer has goes at once
    now[0] = 11.0
    assert enforcer.reconcile().deferred_deletes == 0 and stale not in switch.flows


def test_a_policy_refused_by_one_switch_is_rolled_back_everywhere() -> None:
    enforcer, switches = _linear()
    enforcer.reconcile()
    before = {dpid: fake.flows for dpid, fake in switches.items()}
    old = enforcer.policy
    new = replace(old, conduits=old.conduits[1:], _index={})
    switches[3].refuse = True
    with pytest.raises(ApplyError, match="switch 0x3"):
        enforcer.apply_policy(new)
    switches[3].refuse = False
    enforcer.reconcile()
    assert enforcer.policy is old
    assert {dpid: fake.flows for dpid, fake in switches.items()} == before


def test_applying_the_policy_in_force_sends_nothing_and_a_b_a_restores_a() -> None:
    enforcer, switches = _linear()
    enforcer.reconcile()
    a = enforcer.policy
    tables_a = {dpid: fake.flows for dpid, fake in switches.items()}
    assert enforcer.apply_policy(a).flow_mods == 0
    b = replace(a, conduits=a.conduits[1:], _index={})
    assert enforcer.apply_policy(b).flow_mods > 0
    enforcer.apply_policy(a)
    assert {dpid: fake.flows for dpid, fake in switches.items()} == tables_a


def test_only_declared_links_are_used() -> None:
    enforcer, _ = _linear()
    forged = Link.between(PortRef(1, 10), PortRef(2, 5))  # a relay between two free ports
    assert not enforcer.link_up(forged)
    assert forged not in enforcer.links and forged not in enforcer.topology().links
    assert PortRef(2, 5) not in enforcer.topology().trunk_ports


def test_a_declared_trunk_port_is_no_edge_port_even_while_its_link_is_down() -> None:
    enforcer, _ = _linear()
    link = Link.between(PortRef(2, 11), PortRef(3, 10))
    enforcer.link_down(link)
    topology = enforcer.topology()
    assert PortRef(2, 11) in topology.trunk_ports and PortRef(2, 11) not in topology.live_trunks
    plc = enforcer.policy.asset("plc-a")
    assert enforcer.frame_sampled(Sighting(PortRef(2, 11), plc.mac, plc.ip)).kind == "ignore"


def test_a_reconnecting_switch_is_left_alone_until_its_trunks_are_back() -> None:
    now = [0.0]
    enforcer, switches = _linear()
    enforcer.reconcile()
    policy = enforcer.policy
    restarted = Enforcer(policy, clock=lambda: now[0], settle_seconds=0, startup_grace=0,
                         declared_links=enforcer.declared_links)
    restarted.bound = dict(enforcer.bound)
    for fake in switches.values():
        fake.sent.clear()
        restarted.switch_connected(fake, fake.ports())
    report = restarted.reconcile()  # no link rediscovered yet
    assert set(report.waiting) == {1, 2, 3} and all(f.sent == [] for f in switches.values())
    for link in enforcer.links:
        restarted.link_up(link)
    report = restarted.reconcile()
    assert report.waiting == () and report.flow_mods == 0


def test_a_quiet_asset_is_not_taken_over_it_moves_only_when_its_port_goes_down() -> None:
    enforcer, _ = _linear()
    plc = enforcer.policy.asset("plc-a")
    home = enforcer.bindings()["plc-a"]
    for _ in range(3):  # however long it has been silent
        assert enforcer.frame_sampled(Sighting(PortRef(3, 7), plc.mac, plc.ip)).kind == "conflict"
    assert enforcer.bindings()["plc-a"] == home
    enforcer.port_down(home)
    assert enforcer.frame_sampled(Sighting(PortRef(3, 7), plc.mac, plc.ip)).kind == "bind"
    assert enforcer.bindings()["plc-a"] == PortRef(3, 7)


def test_a_disconnected_switch_keeps_its_assets_bound() -> None:
    enforcer, switches = _linear()
    plc = enforcer.policy.asset("plc-a")
    home = enforcer.bindings()["plc-a"]
    enforcer.switch_disconnected(home.dpid)
    other = next(d for d in switches if d != home.dpid)
    assert enforcer.frame_sampled(Sighting(PortRef(other, 9), plc.mac, plc.ip)).kind == "conflict"
    enforcer.switch_connected(switches[home.dpid], switches[home.dpid].ports())
    assert enforcer.bindings()["plc-a"] == home


def test_a_push_that_changes_an_assets_mac_drops_its_binding() -> None:
    enforcer, _ = _linear()
    old = enforcer.policy
    plc = old.asset("plc-a")
    changed = replace(old, assets=tuple(replace(a, mac="00:00:00:00:0a:0a") if a.name == "plc-a" else a
                                        for a in old.assets), _index={})
    enforcer.apply_policy(changed)
    assert "plc-a" not in enforcer.bindings()
    assert enforcer.frame_sampled(Sighting(PortRef(3, 7), plc.mac, plc.ip)).kind == "unknown-device"


def test_flows_held_back_in_the_start_up_grace_never_admit_what_the_policy_denies() -> None:
    """Deletions of forwarding entries wait during the start-up grace; what waits must be unable to
    admit an edge frame. Here switch 2 first only carries traffic toward scada from trunks (a
    MAC-only entry), then plc-a binds there: a frame from plc-a to scada's MAC with a foreign IPv4
    destination must still be dropped (at scada's own switch, whatever s2 holds meanwhile)."""
    from controller.core.flows import SwitchTables  # noqa: PLC0415
    from controller.core.frames import Frame  # noqa: PLC0415
    from controller.verify.walk import Network, ovs_key  # noqa: PLC0415

    policy, topology = load_example("linear.yaml", "linear.yaml")
    enforcer = Enforcer(policy, settle_seconds=0, startup_grace=3600, declared_links=topology.links)
    switches = _fakes(topology)
    _connect(enforcer, switches, topology)
    where = dict(topology.attachments)
    for name in ("scada", "plc-b", "plc-a"):
        asset = policy.asset(name)
        enforcer.frame_sampled(Sighting(where[name], asset.mac, asset.ip))
        enforcer.reconcile()
    installed = {dpid: SwitchTables(dpid, frozenset(fake.flows), frozenset(fake.meters),
                                    frozenset(fake.groups.values())) for dpid, fake in switches.items()}
    scada, plc = policy.asset("scada"), policy.asset("plc-a")
    relayed = Frame(scada.mac, plc.mac, (), 0x0800, ipv4_src=plc.ip, ipv4_dst="192.0.2.77", ip_proto=17,
                    udp_src=40000, udp_dst=162)
    assert Network(installed, topology).send(where["plc-a"], ovs_key(relayed)).delivered_ports() == set()


def test_a_restart_with_another_policy_keeps_no_entry_that_classifies_a_mac_by_its_old_zone() -> None:
    """Found by an attacker's review: x moves from zone zx to zq while the controller is down, and
    the new policy lets a (on s2) reach zx. s2 held an entry by x's MAC writing x's *old* ids
    (zx); kept through the start-up grace, a's frame to x would be classified as zx, allowed,
    and delivered. Entries that classify a MAC otherwise than the policy in force must go at once."""
    from controller.core.frames import Frame  # noqa: PLC0415
    from controller.verify.walk import Network, ovs_key  # noqa: PLC0415

    data = Path(__file__).resolve().parent / "data" / "grace"
    old, new = load_policy(data / "old.yaml"), load_policy(data / "new.yaml")
    topology = load_lab(data / "topology.yaml", old).to_topology(old)
    first = Enforcer(old, settle_seconds=0, startup_grace=0, declared_links=topology.links)
    switches = _fakes(topology)
    _connect(first, switches, topology)
    for name, where in topology.attachments:
        first.frame_sampled(Sighting(where, old.asset(name).mac, old.asset(name).ip))
    first.reconcile()
    # the restart, with the new policy: deletions of forwarding entries wait (startup grace)
    restarted = Enforcer(new, settle_seconds=0, startup_grace=3600, declared_links=topology.links)
    _connect(restarted, switches, topology)
    restarted.reconcile()
    installed = {dpid: SwitchTables(dpid, frozenset(fake.flows), frozenset(fake.meters),
                                    frozenset(fake.groups.values())) for dpid, fake in switches.items()}
    a, x = new.asset("a"), new.asset("x")
    syn = Frame(x.mac, a.mac, (), 0x0800, ipv4_src=a.ip, ipv4_dst=x.ip, ip_proto=6, ip_frag="no", tcp_src=40000,
                tcp_dst=502, tcp_flags=2)
    where = dict(topology.attachments)
    assert Network(installed, topology).send(where["a"], ovs_key(syn)).delivered_ports() == set()


def test_stale_entries_may_wait_only_if_they_classify_as_the_policy_in_force() -> None:
    from controller.core.grace import may_wait  # noqa: PLC0415
    from controller.core.rules import unicast_flow  # noqa: PLC0415

    mac = "00:00:00:00:00:04"
    entry = unicast_flow(mac, 0x1234, Output(3), "asset:x")
    assert may_wait(entry, {mac: 0x1234}) and not may_wait(entry, {mac: 0x9999}) and not may_wait(entry, {})
    drop = make_flow("destination", 110, {"eth_dst": mac, "eth_type": 0x0800}, [ClearActions()], 1)
    assert may_wait(drop, {})  # it admits nothing


def test_an_audit_finds_and_repairs_every_kind_of_drift_within_one_period() -> None:
    enforcer, switches = _linear()
    enforcer.reconcile()
    switch = switches[2]
    ours = sorted(f for f in switch.flows if f.table == "policy")
    deleted, changed = ours[0], ours[1]
    rogue = make_flow("port_security", 65000, {"in_port": 3}, [], cookie=0x42)  # another cookie, top priority
    switch.flows = (switch.flows - {deleted, changed}) | {replace(changed, instructions=()), rogue}
    found = enforcer.audit()
    assert set(found) == {2}
    assert sorted(r.kind for r in found[2]) == ["changed", "foreign", "missing"], found
    assert enforcer.repairs == {(2, "changed"): 1, (2, "foreign"): 1, (2, "missing"): 1}
    report = enforcer.reconcile()
    assert set(report.plans) >= {2} and report.flow_mods == 3
    assert switch.flows == enforcer.desired()[2].flows
    assert enforcer.audit() == {}  # repaired: nothing left to find
    assert enforcer.reconcile().flow_mods == 0


def test_a_kept_foreign_flow_is_reported_once_and_left_alone() -> None:
    enforcer, switches = _linear(remove_foreign=False)
    enforcer.reconcile()
    first, second = enforcer.audit(), enforcer.audit()
    assert first == {} and second == {}  # kept foreign flows are no drift to repair
    assert {dpid for dpid, _ in enforcer.kept_foreign} == set(switches)
    enforcer.reconcile()
    assert all(FOREIGN in s.flows for s in switches.values())


def test_a_renamed_conduit_reaches_the_switch_with_its_new_cookie() -> None:
    """Open vSwitch keeps the old cookie on an OpenFlow 1.3 modify (the fake models it): the
    cookie change must be sent as a replacement, and the next diff must be empty."""
    enforcer, switches = _linear()
    enforcer.reconcile()
    policy = enforcer.policy
    renamed = replace(policy, conduits=tuple(replace(c, name=c.name + "-renamed") for c in policy.conduits),
                      _index={})
    enforcer.apply_policy(renamed)
    for dpid, switch in switches.items():
        assert switch.flows == enforcer.desired()[dpid].flows
    assert enforcer.reconcile().flow_mods == 0


def test_a_push_names_the_switches_that_do_not_hold_it_yet() -> None:
    enforcer, switches = _linear()
    enforcer.reconcile()
    assert enforcer.pending_switches() == {}
    # A restarted controller whose switches' trunk links are not verified yet: their own flows say
    # which ports were trunks, so they are left alone for a while, holding the earlier tables.
    restarted = Enforcer(enforcer.policy, settle_seconds=0, startup_grace=0, declared_links=enforcer.declared_links)
    restarted.bound = dict(enforcer.bound)
    for fake in switches.values():
        restarted.switch_connected(fake, fake.ports())
    report = restarted.apply_policy(enforcer.policy)
    pending = restarted.pending_switches()
    assert set(pending) == set(report.waiting) == set(switches), (pending, report.waiting)
    assert all("waiting for its trunk links" in why and "already held" in why for why in pending.values())
    for link in enforcer.links:
        restarted.link_up(link)
    restarted.reconcile()
    assert restarted.pending_switches() == {}


def test_random_source_macs_do_not_grow_the_controllers_memory() -> None:
    enforcer, _ = _linear()
    enforcer.reconcile()
    port = PortRef(1, 9)  # a free edge port
    for index in range(20_000):
        mac = f"02:{index >> 24 & 0xff:02x}:{index >> 16 & 0xff:02x}:{index >> 8 & 0xff:02x}:{index & 0xff:02x}:01"
        assert enforcer.frame_sampled(Sighting(port, mac, None)).kind == "unknown-device"
    assert len(enforcer.reported) == 64 and enforcer.reported.overflowed() == 20_000 - 64
    assert enforcer.events["unknown-device"] == 20_000  # still counted, in one integer


def test_events_from_many_sources_are_bounded_overall() -> None:
    from controller.app.events import BURST_TOTAL, EventLog  # noqa: PLC0415

    now = [0.0]
    events = EventLog(None, clock=lambda: now[0])
    written = sum(events.emit(f"port:{i}", {"verdict": "denied"}) for i in range(10_000))
    assert written == BURST_TOTAL
    now[0] += 1.0
    assert sum(events.emit(f"new:{i}", {"verdict": "denied"}) for i in range(1000)) == 100


def test_a_switch_that_loses_its_control_channel_changes_nothing_elsewhere() -> None:
    """It keeps forwarding with its tables: the others keep their paths and policy rules toward
    its assets (they were deleted, cutting traffic to them until it reconnected)."""
    enforcer, switches = _linear()
    enforcer.reconcile()
    before = {dpid: s.flows for dpid, s in switches.items()}
    enforcer.switch_disconnected(3)
    report = enforcer.reconcile()
    assert report.flow_mods == 0 and enforcer.headless == {3}
    assert {d: s.flows for d, s in switches.items()} == before
    enforcer.switch_connected(switches[3], switches[3].ports())
    assert enforcer.reconcile().flow_mods == 0 and enforcer.headless == set()


def test_a_neighbours_port_going_down_still_takes_a_headless_switchs_link_down() -> None:
    from controller.app.linkbook import LinkBook  # noqa: PLC0415

    _, topology = load_example("linear.yaml", "linear.yaml")
    link = sorted(topology.links)[0]
    book = LinkBook(topology.links)
    for sent, arrived in ((link.a, link.b), (link.b, link.a)):
        book.lldp(sent, arrived, 0.0)
    assert link in book.up
    assert book.switch_gone(link.b.dpid) == []
    assert book.expire(100.0) == []  # no LLDP can cross it: held
    assert book.port_down(link.a) == [link]  # the neighbour's end went down: gone


@pytest.mark.parametrize("resumed", [True, False], ids=["same-policy", "new-policy"])
def test_a_restart_keeps_allow_rules_toward_a_switch_that_has_not_reconnected_yet(resumed: bool) -> None:
    """Restarted with the policy the switches hold, the allow-list toward assets of a switch still
    backing off its reconnect stays (their traffic keeps flowing); with another policy, rules no
    longer desired go at once, as for a push."""
    enforcer, switches = _linear()
    enforcer.reconcile()
    restarted = Enforcer(enforcer.policy, settle_seconds=0, startup_grace=60, declared_links=enforcer.declared_links,
                         resumed=resumed)
    restarted.bound = dict(enforcer.bound)
    for dpid in (1, 2):  # s3 reconnects later
        restarted.switch_connected(switches[dpid], switches[dpid].ports())
    for link in enforcer.links:
        if 3 not in (link.a.dpid, link.b.dpid):
            restarted.link_up(link)
    policy_before = {f for f in switches[1].flows if f.table == "policy"}
    restarted.reconcile()
    policy_after = {f for f in switches[1].flows if f.table == "policy"}
    if resumed:
        assert policy_after >= policy_before
    else:
        assert policy_after < policy_before


def test_a_switch_whose_flows_cannot_be_read_is_rewritten_whole() -> None:
    """A foreign flow os-ken cannot parse makes the flow-stats reply unreadable: the switch is
    then replaced whole in one atomic bundle (the fake models it), and audited as `unreadable`."""
    enforcer, switches = _linear()
    enforcer.reconcile()
    fake = switches[2]
    garbage = make_flow("policy", 65000, {"in_port": 1}, [], cookie=0x99)
    fake.flows = fake.flows | {garbage}
    rewrites: list[int] = []

    def unreadable() -> list[Flow]:
        raise ApplyError("no reply to OFPFlowStatsRequest")

    def rewrite(plan: SwitchPlan) -> None:
        rewrites.append(len(plan.flows.add))
        fake.flows = frozenset(plan.flows.add)

    fake.read_flows = unreadable  # type: ignore[method-assign]
    fake.rewrite = rewrite  # type: ignore[attr-defined]
    found = enforcer.audit()
    assert [r.kind for r in found[2]] == ["unreadable"]
    enforcer.reconcile()
    assert rewrites == [len(enforcer.desired()[2].flows)] and garbage not in fake.flows
    assert fake.flows == enforcer.desired()[2].flows


def test_bindings_are_adopted_from_our_flows_only() -> None:
    from controller.core.learning import bindings_in_flows  # noqa: PLC0415

    enforcer, switches = _linear()
    enforcer.reconcile()
    flows = switches[1].flows
    policy = enforcer.policy
    ours = bindings_in_flows(policy, 1, flows, enforcer.trunk_ports())
    assert ours and all(policy.asset(n).location is None for n in ours)
    forged = frozenset(replace(f, cookie=0x1234) for f in flows)  # the same flows under another cookie
    assert bindings_in_flows(policy, 1, forged, enforcer.trunk_ports()) == {}
