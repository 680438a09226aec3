"""Mutation tests for the walk harness: deliberate compiler bugs must be caught.

Each mutation is a pure function `{dpid: SwitchTables} -> {dpid: SwitchTables}` that injects
one realistic compiler bug into correctly compiled tables (chosen by reading
`controller/core/rules.py`: its priorities, field names and instruction shapes). For each one
the example policies are tried, cheapest first, until one of them yields a mismatch from
`tests.walk.Matrix(..., tables=mutated)` (multicast, attacks, then the unicast matrix); the
unmutated tables of that example must yield none, and the mutation must have changed the
tables (a no-op proves nothing).

Two mutations are equivalent on Open vSwitch, so no frame can tell them from the compiled
tables; they are kept as strict xfails that document why (see their reasons), each next to a
stronger mutation showing that the constraint they remove does matter once it is not
redundant.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterable

import pytest

from controller.core.flows import (
    ETH_ARP, ETH_IPV4, ApplyActions, ClearActions, Flow, GotoTable, GroupAction, Output, PopVlan, PushVlan, SetField,
    SwitchTables,
    WriteActions, WriteMetadata, make_flow,
)
from controller.core.frames import Frame
from controller.core.model import Policy
from controller.core.pipeline import (
    CLIENT_PORT, CLIENT_PORTS, DESTINATION, DST_MASK, FRAG_LATER, POLICY, PORT_SECURITY, SRC_MASK, TRANSIT, VID_NONE,
    VID_PRESENT,
)
from controller.core.rules import (
    ETH_QINQ_9100, INFRA_COOKIE, PRIO_ARP_REQUEST, PRIO_CT_LOOKUP, PRIO_TRANSIT_COMMIT, PRIO_BOUND_IP, PRIO_CLIENT_PORT, PRIO_DENY_COUNT,
    PRIO_FOREIGN_ADDRESS_DROP, PRIO_MISS, PRIO_MULTICAST, PRIO_PORT_SAMPLE, PRIO_SPOOF_DROP, PRIO_TRUNK, PRIO_UNICAST,
    port_blocks,
)
from controller.core.topology import PortRef, Topology
from tests.conftest import EXAMPLES, load_example
from controller.verify.walk import ovs_key
from tests.walk import Matrix, Mismatch

Tables = dict[int, SwitchTables]
Mutation = Callable[[Tables], Tables]
# A per-flow transform: the flow unchanged, a replacement, several flows, or None (removed).
FlowTransform = Callable[[Flow], "Flow | list[Flow] | None"]
UNUSED_PORT = 99  # no example lab uses it: a copy sent there is a copy to a stranger's port


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------

def _match_dict(flow: Flow) -> dict[str, object]:
    return {f.name: (f.value, f.mask) if f.mask is not None else f.value for f in flow.match}


def _rebuild(flow: Flow, match: dict[str, object] | None = None, instructions: Iterable[object] | None = None,
             priority: int | None = None) -> Flow:
    """`flow` with another match or instructions, in the canonical order `make_flow` gives."""
    return make_flow(flow.table, flow.priority if priority is None else priority,
                     _match_dict(flow) if match is None else match,  # type: ignore[arg-type]
                     list(flow.instructions if instructions is None else instructions),  # type: ignore[arg-type]
                     flow.cookie)


def _without_fields(flow: Flow, *names: str) -> Flow:
    return _rebuild(flow, {k: v for k, v in _match_dict(flow).items() if k not in names})


def _value(flow: Flow, name: str) -> object:
    found = flow.field(name)
    return None if found is None else found.value


def _switch(old: SwitchTables, flows: Iterable[Flow]) -> SwitchTables:
    """Install `flows` the way a switch would: one flow per (table, priority, match), the
    compiler's own tie-break (smallest cookie, then instructions) when a mutation merges two."""
    by_key: dict[tuple[object, ...], Flow] = {}
    for flow in flows:
        kept = by_key.get(flow.key)
        if kept is None or (flow.cookie, flow.instructions) < (kept.cookie, kept.instructions):
            by_key[flow.key] = flow
    return dataclasses.replace(old, flows=frozenset(by_key.values()))


def per_flow(transform: FlowTransform) -> Mutation:
    def mutate(tables: Tables) -> Tables:
        result = {}
        for dpid, switch in tables.items():
            flows: list[Flow] = []
            for flow in switch.flows:
                out = transform(flow)
                if out is None:
                    continue
                flows.extend(out if isinstance(out, list) else [out])
            result[dpid] = _switch(switch, flows)
        return result
    return mutate


def per_switch(transform: Callable[[SwitchTables], Iterable[Flow]]) -> Mutation:
    return lambda tables: {dpid: _switch(switch, transform(switch)) for dpid, switch in tables.items()}


def compose(*mutations: Mutation) -> Mutation:
    def mutate(tables: Tables) -> Tables:
        for mutation in mutations:
            tables = mutation(tables)
        return tables
    return mutate


def _edge_ports(switch: SwitchTables) -> list[int]:
    """The switch's edge ports, as the compiler declared them (each has its own miss sample)."""
    return sorted(int(_value(f, "in_port")) for f in switch.flows  # type: ignore[arg-type]
                  if f.table == PORT_SECURITY and f.priority == PRIO_PORT_SAMPLE and f.field("in_port"))


def _is_binding(flow: Flow) -> bool:
    """A port-security rule that admits an asset's frame with its source tag."""
    return flow.table == PORT_SECURITY and any(
        isinstance(i, WriteMetadata) and i.mask == SRC_MASK for i in flow.instructions)


def _first_host_port(tables: Tables) -> PortRef:
    """The lowest port where some asset is bound (a mutation may hit one port only)."""
    return min(PortRef(dpid, int(_value(f, "in_port")))  # type: ignore[arg-type]
               for dpid, switch in tables.items() for f in switch.flows if _is_binding(f))


def _unicast_out(flow: Flow) -> Output | GroupAction | None:
    for instruction in flow.instructions:
        if isinstance(instruction, WriteActions):
            for action in instruction.actions:
                if isinstance(action, (Output, GroupAction)):
                    return action
    return None


def _stranger_port(switch: SwitchTables, avoid: Iterable[int]) -> int:
    """An edge port of this switch other than `avoid`, else a port nobody is on."""
    skip = set(avoid)
    return next((p for p in _edge_ports(switch) if p not in skip), UNUSED_PORT)


# ---------------------------------------------------------------------------------------------
# The mutations
# ---------------------------------------------------------------------------------------------

def _is_reply_rule(flow: Flow) -> bool:
    # Policy rules with a source port are replies (service port as source); forward rules
    # match the destination port only.
    return flow.table == POLICY and (flow.field("tcp_src") is not None or flow.field("udp_src") is not None)


def reply_rules_lose_client_port(flow: Flow) -> Flow:
    """Replies may go to any port of the initiator (its SSH, RDP, ...), not only client ports."""
    if not _is_reply_rule(flow):
        return flow
    match = _match_dict(flow)
    value, mask = match["metadata"]  # type: ignore[misc]
    match["metadata"] = (value & ~CLIENT_PORT.mask, mask & ~CLIENT_PORT.mask)
    match.pop("tcp_dst", None)
    match.pop("udp_dst", None)
    return _rebuild(flow, match)


def tcp_reply_rules_lose_ack(flow: Flow) -> Flow:
    """A responder may open a connection back (a reverse SYN from the service port)."""
    return _without_fields(flow, "tcp_flags") if flow.table == POLICY and flow.field("tcp_flags") else flow


def checked_ipv4_loses_ipv4_dst(flow: Flow) -> Flow:
    """IPv4 to a peer's MAC passes with any destination IP (relaying, directed broadcast)."""
    if flow.table == DESTINATION and flow.field("ipv4_dst") is not None:
        return _without_fields(flow, "ipv4_dst")
    return flow


def checked_arp_loses_arp_tpa(flow: Flow) -> Flow:
    """Unicast ARP to a peer's MAC passes whatever address it asks for."""
    if flow.table == DESTINATION and flow.priority != PRIO_ARP_REQUEST and flow.field("arp_tpa") is not None \
            and _unicast_out(flow) is not None:
        return _without_fields(flow, "arp_tpa")
    return flow


def host_port_marked_transit(tables: Tables) -> Tables:
    """One host port's bindings also write TRANSIT: its frames skip the policy table."""
    port = _first_host_port(tables)

    def mark(flow: Flow) -> Flow:
        if not (_is_binding(flow) and _value(flow, "in_port") == port.port):
            return flow
        instructions = [WriteMetadata(i.value | TRANSIT.mask, i.mask | TRANSIT.mask)
                        if isinstance(i, WriteMetadata) else i for i in flow.instructions]
        return _rebuild(flow, instructions=instructions)

    return {dpid: _switch(sw, (mark(f) for f in sw.flows)) if dpid == port.dpid else sw for dpid, sw in tables.items()}


def unicast_copy_to_extra_port(switch: SwitchTables) -> list[Flow]:
    """Every unicast destination entry also copies the frame (apply-actions) to another port."""
    flows = []
    for flow in switch.flows:
        out = _unicast_out(flow)
        if flow.table == DESTINATION and out is not None:
            extra = _stranger_port(switch, [out.port] if isinstance(out, Output) else [])
            flow = _rebuild(flow, instructions=[*flow.instructions, ApplyActions((Output(extra),))])
        flows.append(flow)
    return flows


def unicast_write_actions_extra_output(switch: SwitchTables) -> list[Flow]:
    """A second output written into every unicast action set (the switch keeps the last one)."""
    flows = []
    for flow in switch.flows:
        out = _unicast_out(flow)
        if flow.table == DESTINATION and out is not None:
            extra = _stranger_port(switch, [out.port] if isinstance(out, Output) else [])
            instructions = [WriteActions((*i.actions, Output(extra))) if isinstance(i, WriteActions) else i
                            for i in flow.instructions]
            flow = _rebuild(flow, instructions=instructions)
        flows.append(flow)
    return flows


def port_security_loses_untagged(flow: Flow) -> Flow:
    """Tagged frames (802.1Q/802.1ad, VID 0 included) are admitted like untagged ones."""
    return _without_fields(flow, "vlan_vid") if flow.table == PORT_SECURITY and flow.field("vlan_vid") else flow


def qinq_9100_drop_removed(flow: Flow) -> Flow | None:
    """A 0x9100-tagged frame (no VLAN to Open vSwitch) falls through to the L2 binding."""
    if flow.table == PORT_SECURITY and flow.priority == PRIO_SPOOF_DROP and _value(flow, "eth_type") == ETH_QINQ_9100:
        return None
    return flow


def icmp_rules_lose_not_later(flow: Flow) -> Flow:
    """ICMP echo/unreachable rules match later fragments too."""
    if flow.table == POLICY and flow.field("icmpv4_type") is not None:
        return _without_fields(flow, "ip_frag")
    return flow


def later_fragments_unbound(flow: Flow) -> Flow:
    """Later-fragment rules lose their metadata: any later fragment passes between any two assets."""
    frag = flow.field("ip_frag")
    if flow.table == POLICY and frag is not None and frag.value == FRAG_LATER and frag.mask == FRAG_LATER:
        return _without_fields(flow, "metadata")
    return flow


def ip_arp_spoof_drops_removed(flow: Flow) -> Flow | None:
    """Spoofed IPv4/ARP from an L2 sender falls through to its L2 binding (priority 100)."""
    if flow.table == PORT_SECURITY and flow.priority == PRIO_SPOOF_DROP and \
            _value(flow, "eth_type") in (ETH_IPV4, ETH_ARP):
        return None
    return flow


def trunk_transit_on_edge_port(tables: Tables) -> Tables:
    """The live-trunk rule (untagged -> TRANSIT) installed on a host port too."""
    port = _first_host_port(tables)
    trunk = make_flow(PORT_SECURITY, PRIO_TRUNK, {"in_port": port.port, "vlan_vid": VID_NONE},
                      [WriteMetadata(TRANSIT.mask, TRANSIT.mask), GotoTable(DESTINATION)], INFRA_COOKIE)
    return {dpid: _switch(sw, [*sw.flows, trunk]) if dpid == port.dpid else sw for dpid, sw in tables.items()}


def _arp_requests(switch: SwitchTables) -> list[Flow]:
    return sorted((f for f in switch.flows if f.table == DESTINATION and f.priority == PRIO_ARP_REQUEST),
                  key=lambda f: str(_value(f, "arp_tpa")))


def arp_request_to_wrong_asset(switch: SwitchTables) -> list[Flow]:
    """The broadcast-ARP rewrite of each target carries the next target's MAC, tag and port."""
    requests = _arp_requests(switch)
    if len(requests) < 2:
        return list(switch.flows)
    rotated = {flow: _rebuild(flow, instructions=requests[(i + 1) % len(requests)].instructions)
               for i, flow in enumerate(requests)}
    return [rotated.get(f, f) for f in switch.flows]


def arp_request_keeps_broadcast(flow: Flow) -> Flow:
    """The broadcast ARP is forwarded toward its target without the unicast rewrite."""
    if flow.table != DESTINATION or flow.priority != PRIO_ARP_REQUEST:
        return flow
    instructions = [WriteActions(tuple(a for a in i.actions if not isinstance(a, SetField)))
                    if isinstance(i, WriteActions) else i for i in flow.instructions]
    return _rebuild(flow, instructions=instructions)


def arp_request_floods(switch: SwitchTables) -> list[Flow]:
    """A broadcast ARP for a known target is flooded to every edge port, not rewritten to its owner."""
    flows = []
    for flow in switch.flows:
        if flow.table == DESTINATION and flow.priority == PRIO_ARP_REQUEST:
            keep = [i for i in flow.instructions if isinstance(i, (WriteMetadata, GotoTable))]
            flood = ApplyActions(tuple(Output(p) for p in _edge_ports(switch)))
            flow = _rebuild(flow, instructions=[flood, *keep])
        flows.append(flow)
    return flows


def policy_miss_forwards(flow: Flow) -> Flow:
    """The policy-table miss keeps the action set (forwards) instead of clearing it."""
    if flow.table == POLICY and flow.priority == PRIO_MISS and not flow.match:
        return _rebuild(flow, instructions=[])
    return flow


def deny_counters_removed(flow: Flow) -> Flow | None:
    """No per-zone deny counters in the policy table (what drops is left to the miss)."""
    return None if flow.table == POLICY and flow.priority == PRIO_DENY_COUNT else flow


def deny_counters_forward(flow: Flow) -> Flow:
    """The counted drops sample to the controller but forget to clear the action set."""
    if flow.priority == PRIO_DENY_COUNT and flow.table in (POLICY, DESTINATION):
        return _rebuild(flow, instructions=[i for i in flow.instructions if not isinstance(i, ClearActions)])
    return flow


def client_ports_from_1023(switch: SwitchTables) -> list[Flow]:
    """Off by one: the CLIENT_PORT mark starts at 1023, a privileged port."""
    flows = [f for f in switch.flows if not (f.table == CLIENT_PORTS and f.priority == PRIO_CLIENT_PORT)]
    template = next((f for f in switch.flows if f.table == CLIENT_PORTS and f.priority == PRIO_CLIENT_PORT), None)
    if template is None:
        return flows
    for proto, name in ((6, "tcp_dst"), (17, "udp_dst")):
        for value, mask in port_blocks(1023, 65535):
            flows.append(make_flow(CLIENT_PORTS, PRIO_CLIENT_PORT,
                                   {"eth_type": ETH_IPV4, "ip_proto": proto,
                                    name: value if mask == 0xFFFF else (value, mask)},
                                   list(template.instructions), template.cookie))  # type: ignore[arg-type]
    return flows


def bound_ip_loses_ipv4_src(flow: Flow) -> Flow:
    """The IPv4 binding admits the asset's MAC with any source address."""
    if flow.table == PORT_SECURITY and flow.priority == PRIO_BOUND_IP and flow.field("ipv4_src") is not None:
        return _without_fields(flow, "ipv4_src")
    return flow


def bound_arp_loses_arp_sha(flow: Flow) -> Flow:
    """The ARP binding admits any sender hardware address."""
    if flow.table == PORT_SECURITY and flow.priority == PRIO_BOUND_IP and flow.field("arp_sha") is not None:
        return _without_fields(flow, "arp_sha")
    return flow


def port_security_ignores_in_port(flow: Flow) -> Flow:
    """Bindings check the source MAC only: the asset's MAC is admitted on any port of its switch."""
    if flow.table == PORT_SECURITY and flow.field("eth_src") is not None and flow.field("in_port") is not None:
        return _without_fields(flow, "in_port")
    return flow


def foreign_address_drop_removed(flow: Flow) -> Flow | None:
    """IPv4/ARP to an L2 destination's MAC with a foreign address falls to its MAC-only entry."""
    return None if flow.table == DESTINATION and flow.priority == PRIO_FOREIGN_ADDRESS_DROP else flow


def multicast_extra_port(switch: SwitchTables) -> list[Flow]:
    """Each L2 multicast tree entry also sends to one more edge port (a non-receiver)."""
    flows = []
    for flow in switch.flows:
        if flow.table == DESTINATION and flow.priority == PRIO_MULTICAST:
            outs = [a.port for i in flow.instructions if isinstance(i, ApplyActions) for a in i.actions
                    if isinstance(a, Output)]
            extra = _stranger_port(switch, [*outs, int(_value(flow, "in_port"))])  # type: ignore[arg-type]
            flow = _rebuild(flow, instructions=[ApplyActions(tuple(Output(p) for p in sorted({*outs, extra})))])
        flows.append(flow)
    return flows


def _is_ip_multicast(flow: Flow) -> bool:
    return flow.table == DESTINATION and flow.priority == PRIO_MULTICAST and flow.field("ipv4_dst") is not None


def ip_multicast_loses_group_mac(flow: Flow) -> Flow:
    """An IP multicast tree entry accepts the group at any destination MAC."""
    return _without_fields(flow, "eth_dst") if _is_ip_multicast(flow) else flow


def ip_multicast_loses_group(flow: Flow) -> Flow:
    """An IP multicast tree entry matches the group MAC only: the 31 aliases of the group pass."""
    return _without_fields(flow, "ipv4_dst") if _is_ip_multicast(flow) else flow


def ip_multicast_loses_udp_port(flow: Flow) -> Flow:
    """An IP multicast tree entry carries every UDP port (and, with it, any IP protocol's port 0)."""
    return _without_fields(flow, "udp_dst") if _is_ip_multicast(flow) else flow


def ip_multicast_loses_fragment_check(flow: Flow) -> Flow:
    """An IP multicast tree entry also carries fragmented datagrams."""
    return _without_fields(flow, "ip_frag") if _is_ip_multicast(flow) else flow


def arp_relation_loses_eth_type(flow: Flow) -> Flow:
    """The ARP rule of a relation loses its eth_type: everything passes between the peers."""
    if flow.table == POLICY and {f.name for f in flow.match} == {"metadata", "eth_type"} and \
            _value(flow, "eth_type") == ETH_ARP:
        return _without_fields(flow, "eth_type")
    return flow


def vlan_pop_removed(flow: Flow) -> Flow:
    """A VLAN asset's tag is not removed on entry: its frames reach everyone still tagged."""
    if flow.table == PORT_SECURITY and any(isinstance(i, ApplyActions) for i in flow.instructions):
        kept = [i for i in flow.instructions if not (isinstance(i, ApplyActions)
                                                     and all(isinstance(a, PopVlan) for a in i.actions))]
        return _rebuild(flow, instructions=kept)
    return flow


def vlan_push_removed(flow: Flow) -> Flow:
    """Frames for a VLAN asset leave its port untagged (it drops them, or worse, a trunk-style port
    behind it takes them into its default VLAN)."""
    def strip(actions: tuple[object, ...]) -> tuple[object, ...]:
        return tuple(a for a in actions if not isinstance(a, PushVlan)
                     and not (isinstance(a, SetField) and a.name == "vlan_vid"))
    if flow.table != DESTINATION:
        return flow
    rebuilt = [WriteActions(strip(i.actions)) if isinstance(i, WriteActions)  # type: ignore[arg-type]
               else ApplyActions(strip(i.actions)) if isinstance(i, ApplyActions) else i  # type: ignore[arg-type]
               for i in flow.instructions]
    return _rebuild(flow, instructions=rebuilt)


def vlan_asset_admits_any_vid(flow: Flow) -> Flow:
    """A VLAN asset's port admits any VID (only the tag's presence is checked)."""
    found = flow.field("vlan_vid")
    if flow.table == PORT_SECURITY and found is not None and found.value not in (VID_NONE, VID_PRESENT):
        match = _match_dict(flow)
        match["vlan_vid"] = (VID_PRESENT, VID_PRESENT)
        return _rebuild(flow, match)
    return flow


def stateful_replies_lose_ct_state(flow: Flow) -> Flow:
    """Replies of stateful conduits are accepted by ports alone: the responder may send first."""
    if flow.table == POLICY and flow.field("ct_state") is not None:
        return _without_fields(flow, "ct_state")
    return flow


def transit_commits_removed(flow: Flow) -> Flow | None:
    """Only the initiator's switch commits: the responder's switch, where replies are looked up,
    never learns of connections opened from other switches."""
    return None if flow.table == POLICY and flow.priority == PRIO_TRANSIT_COMMIT else flow


def conntrack_lookups_removed(flow: Flow) -> Flow | None:
    """Responders' frames skip the tracker: their ct_state is never +est+rpl."""
    return None if flow.table == PORT_SECURITY and flow.priority == PRIO_CT_LOOKUP else flow


EQUIVALENT_ICMP = (
    "equivalent on Open vSwitch: a later fragment's icmpv4_type reads 0 (controller/verify/walk.ovs_key, OVS nw_frag=later), "
    "so it can only reach the echo-reply rule (type 0), and every relation with an echo-reply rule also has its "
    "ICMP later-fragment rule (same metadata, same priority): nothing new is admitted")
EQUIVALENT_MISS = (
    "equivalent: the policy table's deny counters (priority 1, one per local zone x destination zone present on "
    "the switch) drop every frame a host port can bring to the policy table, so the miss is never reached; see "
    "policy_miss_forwards_without_deny_counters")

MUTATIONS: dict[str, tuple[Mutation, str | None]] = {
    "reply_rules_lose_client_port": (per_flow(reply_rules_lose_client_port), None),
    "tcp_reply_rules_lose_ack": (per_flow(tcp_reply_rules_lose_ack), None),
    "checked_ipv4_loses_ipv4_dst": (per_flow(checked_ipv4_loses_ipv4_dst), None),
    "checked_arp_loses_arp_tpa": (per_flow(checked_arp_loses_arp_tpa), None),
    "host_port_marked_transit": (host_port_marked_transit, None),
    "unicast_copy_to_extra_port": (per_switch(unicast_copy_to_extra_port), None),
    "unicast_write_actions_extra_output": (per_switch(unicast_write_actions_extra_output), None),
    "port_security_loses_untagged": (per_flow(port_security_loses_untagged), None),
    "qinq_9100_drop_removed": (per_flow(qinq_9100_drop_removed), None),
    "icmp_rules_lose_not_later": (per_flow(icmp_rules_lose_not_later), EQUIVALENT_ICMP),
    "later_fragments_unbound": (per_flow(later_fragments_unbound), None),
    "ip_arp_spoof_drops_removed": (per_flow(ip_arp_spoof_drops_removed), None),
    "trunk_transit_on_edge_port": (trunk_transit_on_edge_port, None),
    "arp_request_to_wrong_asset": (per_switch(arp_request_to_wrong_asset), None),
    "arp_request_keeps_broadcast": (per_flow(arp_request_keeps_broadcast), None),
    "arp_request_floods": (per_switch(arp_request_floods), None),
    "policy_miss_forwards": (per_flow(policy_miss_forwards), EQUIVALENT_MISS),
    "policy_miss_forwards_without_deny_counters": (
        compose(per_flow(policy_miss_forwards), per_flow(deny_counters_removed)), None),
    "deny_counters_forward": (per_flow(deny_counters_forward), None),
    "client_ports_from_1023": (per_switch(client_ports_from_1023), None),
    "bound_ip_loses_ipv4_src": (per_flow(bound_ip_loses_ipv4_src), None),
    "bound_arp_loses_arp_sha": (per_flow(bound_arp_loses_arp_sha), None),
    "port_security_ignores_in_port": (per_flow(port_security_ignores_in_port), None),
    "foreign_address_drop_removed": (per_flow(foreign_address_drop_removed), None),
    "multicast_extra_port": (per_switch(multicast_extra_port), None),
    "ip_multicast_loses_group_mac": (per_flow(ip_multicast_loses_group_mac), None),
    "ip_multicast_loses_group": (per_flow(ip_multicast_loses_group), None),
    "ip_multicast_loses_udp_port": (per_flow(ip_multicast_loses_udp_port), None),
    "ip_multicast_loses_fragment_check": (per_flow(ip_multicast_loses_fragment_check), None),
    "arp_relation_loses_eth_type": (per_flow(arp_relation_loses_eth_type), None),
    "vlan_pop_removed": (per_flow(vlan_pop_removed), None),
    "vlan_push_removed": (per_flow(vlan_push_removed), None),
    "vlan_asset_admits_any_vid": (per_flow(vlan_asset_admits_any_vid), None),
    "stateful_replies_lose_ct_state": (per_flow(stateful_replies_lose_ct_state), None),
    "transit_commits_removed": (per_flow(transit_commits_removed), None),
    "conntrack_lookups_removed": (per_flow(conntrack_lookups_removed), None),
}


# ---------------------------------------------------------------------------------------------
# The harness
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Example:
    name: str
    policy: Policy
    topology: Topology
    tables: Tables
    free_port: PortRef


def free_port(topology: Topology, matrix: Matrix) -> PortRef:
    """As tests/test_walk_examples.py chooses it: the first unused port of the lowest switch."""
    used = set(matrix.located.values()) | set(topology.trunk_ports)
    dpid = min(topology.switches)
    return PortRef(dpid, next(p for p in range(1, 100) if PortRef(dpid, p) not in used))


@lru_cache(maxsize=None)
def example(pair: tuple[str, str]) -> Example:
    policy, topology = load_example(*pair)
    matrix = Matrix(policy, topology)
    return Example(pair[0].removesuffix(".yaml"), policy, topology, matrix.tables, free_port(topology, matrix))


def _size(pair: tuple[str, str]) -> int:
    return len(example(pair).policy.assets) * sum(len(s.flows) for s in example(pair).tables.values())


def examples_cheapest_first() -> list[tuple[str, str]]:
    return sorted(EXAMPLES, key=_size)


CHECKS: tuple[tuple[str, Callable[[Matrix, PortRef], list[Mismatch]]], ...] = (
    ("check_multicast", lambda m, port: m.check_multicast()),
    ("check_attacks", lambda m, port: m.check_attacks(port)),
    ("check_unicast", lambda m, port: m.check_unicast()),
)


@lru_cache(maxsize=None)
def baseline_mismatches(pair: tuple[str, str]) -> tuple[Mismatch, ...]:
    ex = example(pair)
    matrix = Matrix(ex.policy, ex.topology, tables=ex.tables)
    return tuple(m for _, run in CHECKS for m in run(matrix, ex.free_port))


@dataclass(frozen=True)
class Catch:
    example: str
    check: str
    mismatches: tuple[Mismatch, ...]


def first_catch(mutation: Mutation) -> tuple[list[str], Catch | None]:
    """The examples the mutation changes (in the order tried) and the first check that catches it."""
    changed: list[str] = []
    for pair in examples_cheapest_first():
        ex = example(pair)
        mutated = mutation(ex.tables)
        assert set(mutated) == set(ex.tables)
        if mutated == ex.tables:
            continue
        changed.append(ex.name)
        matrix = Matrix(ex.policy, ex.topology, tables=mutated)
        for check, run in CHECKS:
            found = run(matrix, ex.free_port)
            if found:
                return changed, Catch(ex.name, check, tuple(found))
    return changed, None


def _params() -> list[object]:
    params = []
    for name, (mutation, equivalent) in MUTATIONS.items():
        marks = [pytest.mark.xfail(strict=True, reason=equivalent)] if equivalent else []
        params.append(pytest.param(name, mutation, id=name, marks=marks))
    return params


def test_at_least_twelve_mutations() -> None:
    assert len([m for m, (_, equivalent) in MUTATIONS.items() if not equivalent]) >= 12


def test_mutations_are_pure() -> None:
    pair = examples_cheapest_first()[0]
    original = example(pair).tables
    snapshot = dict(original)
    for mutation, _ in MUTATIONS.values():
        assert mutation(original) == mutation(original)
    assert original == snapshot


@pytest.mark.parametrize(("name", "mutation"), _params())
def test_mutation_is_caught(name: str, mutation: Mutation, record_property: Callable[[str, object], None]) -> None:
    changed, catch = first_catch(mutation)
    assert changed, f"{name} changes no example's tables: it proves nothing"
    assert catch is not None, f"{name} changed {changed} but no check found a mismatch"
    pair = next(p for p in EXAMPLES if p[0].removesuffix(".yaml") == catch.example)
    assert not baseline_mismatches(pair), "the unmutated tables must walk clean: " + "\n".join(
        map(str, baseline_mismatches(pair)[:5]))
    record_property("caught_by", f"{catch.example}:{catch.check} ({len(catch.mismatches)} mismatches)")
    record_property("first_mismatch", str(catch.mismatches[0]))


# Why the two xfails are equivalent mutants, checked on the compiled examples themselves.

@pytest.mark.parametrize("pair", EXAMPLES, ids=lambda pair: pair[0].removesuffix(".yaml"))
def test_icmp_echo_reply_rules_always_have_a_later_fragment_sibling(pair: tuple[str, str]) -> None:
    """Backs EQUIVALENT_ICMP: a later fragment's key carries icmpv4_type 0, and wherever an
    echo-reply rule (type 0) could admit one, the relation's later-fragment rule already does."""
    later = ovs_key(Frame("00:00:00:00:00:02", "00:00:00:00:00:01", (), ETH_IPV4, ipv4_src="10.0.0.1",
                          ipv4_dst="10.0.0.2", ip_proto=1, ip_frag="later"))
    assert later["icmpv4_type"] == 0
    for switch in example(pair).tables.values():
        policy_flows = [f for f in switch.flows if f.table == POLICY]
        for flow in policy_flows:
            if flow.field("icmpv4_type") is None or _value(flow, "icmpv4_type") != 0:
                continue
            meta = flow.field("metadata")
            assert any(f.priority == flow.priority and f.field("metadata") == meta and _value(f, "ip_proto") == 1
                       and f.field("ip_frag") is not None and _value(f, "ip_frag") == FRAG_LATER
                       for f in policy_flows), flow


@pytest.mark.parametrize("pair", EXAMPLES, ids=lambda pair: pair[0].removesuffix(".yaml"))
def test_deny_counters_shadow_the_policy_miss(pair: tuple[str, str]) -> None:
    """Backs EQUIVALENT_MISS: every (source binding, destination entry) pair that can bring a
    frame from a host port to the policy table of a switch is covered by a deny counter."""
    for switch in example(pair).tables.values():
        sources = {i.value for f in switch.flows if _is_binding(f) for i in f.instructions
                   if isinstance(i, WriteMetadata)}
        # Backup-path entries (with in_port, a trunk) only see TRANSIT frames: the policy table
        # passes those at priority 3000.
        destinations = {i.value for f in switch.flows if f.table == DESTINATION and f.field("in_port") is None
                        and any(isinstance(g, GotoTable) for g in f.instructions)
                        for i in f.instructions if isinstance(i, WriteMetadata) and i.mask == DST_MASK}
        counters = [f.field("metadata") for f in switch.flows if f.table == POLICY and f.priority == PRIO_DENY_COUNT]
        for src in sources:
            for dst in destinations:
                metadata = src | dst
                assert any(metadata & int(c.mask) == int(c.value) for c in counters if c is not None), (
                    switch.dpid, hex(metadata))
