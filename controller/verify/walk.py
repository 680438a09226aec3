"""A small OpenFlow 1.3 table interpreter: walks one concrete frame through switch tables.

Role: the concrete semantics beside the symbolic one (`controller.verify.switch_model`): the
tests walk compiled tables with it, and the verifier replays each counterexample through it
to print the path and the entries it hit.

Semantics follow the OpenFlow 1.3.5 specification, section 5: highest-priority match per
table; instructions in the order meter, apply-actions, clear-actions, write-actions,
write-metadata, goto-table; the action set (set-field before group before output) runs
when a flow has no goto; a table without a matching flow drops; output to the ingress
port is dropped. Frames that leave on an inter-switch link enter the peer switch with
fresh metadata. Ambiguity (two different flows of equal priority both matching) is an
error, as it would make a real switch's choice arbitrary.

Connection tracking (Open vSwitch's `ct`) is modelled per switch, as on separate hardware
(in the Mininet lab all bridges share one userspace datapath and so one tracker, which would
hide a commit made on the wrong switch): `commit` records the packet's 5-tuple unless it is
the reply of a recorded one; a lookup (`table`) sets ct_state (+trk, and +new, +est, +est+rpl
or, for ICMP destination-unreachable between the two addresses of a recorded connection,
+rel) and resumes the packet in that table with its metadata and an empty action set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from controller.core.flows import (
    CONTROLLER_PORT, IN_PORT, ApplyActions, ClearActions, Conntrack, Flow, PopVlan, PushVlan, GotoTable, Group, GroupAction, MeterInstruction,
    Output, SetField, SwitchTables, WriteActions, WriteMetadata,
)
from controller.core.frames import Frame
from controller.core.pipeline import (
    CT_ESTABLISHED, CT_NEW, CT_RELATED, CT_REPLY, CT_TRACKED, FRAG_ANY, FRAG_LATER, TABLE_IDS, VID_PRESENT, check_flow,
)
from controller.core.topology import Link, PortRef, Topology

Headers = dict[str, object]
MAX_HOPS = 64
MAX_RECIRCULATIONS = 4
ConnectionKey = tuple[object, object, object, object, object, int]  # src, dst, proto, sport, dport, zone
ETH_IPV4, ETH_ARP = 0x0800, 0x0806
OVS_VLAN_TPIDS = (0x8100, 0x88A8)  # what Open vSwitch parses as a VLAN header (vlan-limit=1: the outer one)


def ovs_key(frame: Frame) -> Headers:
    """The match fields Open vSwitch 3.1 extracts from `frame` (vlan-limit=1, frag handling nx-match, which otseg sets).

    Modelled on the switch, not on otseg: one VLAN header (802.1Q or 802.1ad) is parsed, so
    behind a second tag the ethertype is that tag's TPID and no IP field is visible; 0x9100 is
    no VLAN to it; a later fragment has transport ports, TCP flags and ICMP type of 0."""
    headers: Headers = {"eth_src": frame.eth_src, "eth_dst": frame.eth_dst, "vlan_vid": 0}
    tags = frame.tags
    eth_type = frame.eth_type
    if tags and tags[0][0] in OVS_VLAN_TPIDS:
        headers["vlan_vid"] = VID_PRESENT | (tags[0][1] & 0x0FFF)
        if len(tags) > 1:
            eth_type = tags[1][0]
    elif tags:
        eth_type = tags[0][0]
    headers["eth_type"] = eth_type
    if eth_type != frame.eth_type:
        return headers
    if eth_type == ETH_IPV4 and frame.ipv4_src is not None:
        later = frame.ip_frag == "later"
        headers.update(ipv4_src=frame.ipv4_src, ipv4_dst=frame.ipv4_dst, ip_proto=frame.ip_proto,
                       ip_frag={"no": 0, "first": FRAG_ANY, "later": FRAG_ANY | FRAG_LATER}[frame.ip_frag])
        if frame.ip_proto == 6:
            headers.update(tcp_src=0 if later else frame.tcp_src or 0, tcp_dst=0 if later else frame.tcp_dst or 0,
                           tcp_flags=0 if later else frame.tcp_flags or 0)
        elif frame.ip_proto == 17:
            headers.update(udp_src=0 if later else frame.udp_src or 0, udp_dst=0 if later else frame.udp_dst or 0)
        elif frame.ip_proto == 1:
            headers.update(icmpv4_type=0 if later else frame.icmp_type or 0,
                           icmpv4_code=0 if later else frame.icmp_code or 0)
    elif eth_type == ETH_ARP and frame.arp_spa is not None:
        headers.update(arp_op=frame.arp_op, arp_spa=frame.arp_spa, arp_tpa=frame.arp_tpa, arp_sha=frame.arp_sha,
                       arp_tha=frame.arp_tha)
    return headers


class AmbiguousMatch(AssertionError):
    pass


@dataclass
class WalkResult:
    delivered: list[tuple[PortRef, Headers]] = field(default_factory=list)
    to_controller: list[tuple[PortRef, Headers]] = field(default_factory=list)
    flows_hit: list[tuple[int, Flow]] = field(default_factory=list)
    hops: list[tuple[PortRef, Headers]] = field(default_factory=list)  # where the frame entered each switch, as it was
    hop_starts: list[int] = field(default_factory=list)  # index in flows_hit where each hop's entries begin

    def delivered_ports(self) -> set[PortRef]:
        return {where for where, _ in self.delivered}


def _to_int(value: object) -> int:
    if isinstance(value, int):
        return value
    text = str(value)
    if ":" in text:
        return int(text.replace(":", ""), 16)
    if "." in text:
        a, b, c, d = (int(part) for part in text.split("."))
        return (a << 24) | (b << 16) | (c << 8) | d
    return int(text, 0)


class Network:
    """The compiled tables on the topology's switches; `dead_links` are cut (ports down)."""

    def __init__(self, tables: dict[int, SwitchTables], topology: Topology,
                 dead_links: frozenset[Link] = frozenset(), check: bool = True,
                 tie: Callable[[Flow, Flow], Flow] | None = None) -> None:
        """`check`: refuse flows outside otseg's declared pipeline (off for tables read from a switch).
        `tie`: which of two overlapping flows of equal priority a switch uses (default: AmbiguousMatch;
        tables in the middle of an update without bundles hold such pairs, and either may win)."""
        self.tie = tie
        self.topology = topology
        self.peer: dict[PortRef, PortRef] = {}
        self.dead_ports = {end for link in dead_links for end in (link.a, link.b)}
        self.conntrack: dict[int, set[ConnectionKey]] = {dpid: set() for dpid in tables}
        for link in topology.links:
            self.peer[link.a] = link.b
            self.peer[link.b] = link.a
        self.groups: dict[int, dict[int, Group]] = {
            dpid: {g.group_id: g for g in switch.groups} for dpid, switch in tables.items()}
        self.tables: dict[int, dict[str, list[Flow]]] = {}
        for dpid, switch in tables.items():
            by_table: dict[str, list[Flow]] = {}
            folded = topology.profile(dpid).single_table
            for flow in switch.flows:
                if check:
                    check_flow(flow, folded)
                by_table.setdefault(flow.table, []).append(flow)
            for flows in by_table.values():
                flows.sort(key=lambda f: -f.priority)
            self.tables[dpid] = by_table

    def send(self, where: PortRef, headers: Headers) -> WalkResult:
        """Inject a frame as if a host at `where` transmitted it."""
        result = WalkResult()
        pending = [(where, dict(headers))]
        hops = 0
        while pending:
            at, frame = pending.pop()
            result.hops.append((at, dict(frame)))
            result.hop_starts.append(len(result.flows_hit))
            hops += 1
            if hops > MAX_HOPS:
                raise AssertionError(f"forwarding loop: frame {headers} still travelling after {MAX_HOPS} hops")
            for out_port, out_frame in self._switch(at, frame, result):
                target = PortRef(at.dpid, out_port)
                if target in self.peer:
                    pending.append((self.peer[target], out_frame))
                else:
                    result.delivered.append((target, out_frame))
        return result

    def _switch(self, at: PortRef, frame: Headers, result: WalkResult) -> list[tuple[int, Headers]]:
        packet = dict(frame)
        packet["in_port"] = at.port
        packet["metadata"] = 0
        packet["ct_state"] = 0
        action_set: dict[str, object] = {}
        outputs: list[tuple[int, Headers]] = []
        table = "port_security"
        recirculations = 0
        while True:
            flow = self._lookup(at.dpid, table, packet)
            if flow is None:
                return outputs  # table miss without a miss flow: drop
            result.flows_hit.append((at.dpid, flow))
            next_table = None
            resume: str | None = None
            for instruction in flow.instructions:
                if isinstance(instruction, MeterInstruction):
                    continue  # rate limiting is not modelled
                if isinstance(instruction, ApplyActions):
                    for action in instruction.actions:
                        if isinstance(action, Conntrack):
                            resume = self._conntrack(at.dpid, action, packet) or resume
                        else:
                            self._act(action, packet, at, outputs, result)
                elif isinstance(instruction, ClearActions):
                    action_set.clear()
                elif isinstance(instruction, WriteActions):
                    for action in instruction.actions:
                        key = f"set:{action.name}" if isinstance(action, SetField) else type(action).__name__
                        action_set[key] = action
                elif isinstance(instruction, WriteMetadata):
                    current = int(packet["metadata"])  # type: ignore[arg-type]
                    packet["metadata"] = (current & ~instruction.mask) | (instruction.value & instruction.mask)
                elif isinstance(instruction, GotoTable):
                    if TABLE_IDS[instruction.table] <= TABLE_IDS[table]:
                        raise AssertionError(f"goto must move forward: {flow}")
                    next_table = instruction.table
            if resume is not None:
                # The tracked copy resumes; the untracked original ends here (nothing follows the ct).
                recirculations += 1
                if action_set or next_table is not None or recirculations > MAX_RECIRCULATIONS:
                    raise AssertionError(f"recirculation with a pending action set or a goto: {flow}")
                table = resume
                continue
            if next_table is None:
                if "GroupAction" in action_set:  # OpenFlow 1.3 5.10: the output is ignored with a group
                    action_set.pop("Output", None)
                ordered = sorted(action_set.values(), key=_action_set_rank)
                for action in ordered:
                    self._act(action, packet, at, outputs, result)
                return outputs
            table = next_table

    def _conntrack(self, dpid: int, action: Conntrack, packet: Headers) -> str | None:
        """Run the tracker on `packet`: commit and/or look up; the table to resume in, if any."""
        key = _connection_key(packet, action.zone)
        known = self.conntrack.setdefault(dpid, set())
        if action.table is not None:
            state = CT_TRACKED
            if key is not None and key in known:
                state |= CT_ESTABLISHED
            elif key is not None and _reverse(key) in known:
                state |= CT_ESTABLISHED | CT_REPLY
            elif _is_related(packet, action.zone, known):
                state |= CT_RELATED
            else:
                state |= CT_NEW
            packet["ct_state"] = state
        if action.commit and key is not None and _reverse(key) not in known:
            known.add(key)
        return action.table

    def _act(self, action: object, packet: Headers, at: PortRef, outputs: list[tuple[int, Headers]],
             result: WalkResult) -> None:
        if isinstance(action, SetField):
            if action.name == "vlan_vid" and not packet.get("vlan_vid"):
                return  # OpenFlow: setting a VID needs a tag (pushed first)
            packet[action.name] = action.value
        elif isinstance(action, PushVlan):
            if packet.get("vlan_vid"):
                raise AssertionError(f"a second tag pushed onto {packet}: otseg never stacks tags")
            packet["vlan_vid"] = VID_PRESENT  # VID 0, PCP 0 until a set-field
        elif isinstance(action, PopVlan):
            packet["vlan_vid"] = 0
        elif isinstance(action, Output):
            frame = {k: v for k, v in packet.items() if k not in ("in_port", "metadata")}
            if action.port == CONTROLLER_PORT:
                result.to_controller.append((at, frame))
            elif action.port == IN_PORT:
                outputs.append((at.port, frame))
            elif action.port != at.port and PortRef(at.dpid, action.port) not in self.dead_ports:
                outputs.append((action.port, frame))
        elif isinstance(action, GroupAction):
            group = self.groups[at.dpid][action.group_id]
            for bucket in group.buckets:  # fast failover: the first live bucket
                if PortRef(at.dpid, bucket.watch_port) not in self.dead_ports:
                    for bucket_action in bucket.actions:
                        self._act(bucket_action, dict(packet), at, outputs, result)
                    break

    def _lookup(self, dpid: int, table: str, packet: Headers) -> Flow | None:
        best: Flow | None = None
        for flow in self.tables.get(dpid, {}).get(table, []):
            if best is not None and flow.priority < best.priority:
                break
            if all(_field_matches(item.name, item.value, item.mask, packet) for item in flow.match):
                if best is None:
                    best = flow
                elif best.instructions != flow.instructions and self.tie is not None:
                    best = self.tie(best, flow)
                elif best.instructions != flow.instructions:
                    raise AmbiguousMatch(f"two flows of priority {flow.priority} match {packet}: {best} / {flow}")
        return best


def _field_matches(name: str, value: object, mask: object, packet: Headers) -> bool:
    if name not in packet or packet[name] is None:
        return False
    have = _to_int(packet[name])
    want = _to_int(value)
    if mask is None:
        return have == want
    bits = _to_int(mask)
    return have & bits == want & bits


def _connection_key(packet: Headers, zone: int) -> ConnectionKey | None:
    if packet.get("eth_type") != ETH_IPV4 or packet.get("ip_frag"):
        return None  # fragments are not tracked (no reassembly modelled)
    proto = packet.get("ip_proto")
    if proto == 6:
        return (packet["ipv4_src"], packet["ipv4_dst"], 6, packet["tcp_src"], packet["tcp_dst"], zone)
    if proto == 17:
        return (packet["ipv4_src"], packet["ipv4_dst"], 17, packet["udp_src"], packet["udp_dst"], zone)
    return None


def _reverse(key: ConnectionKey) -> ConnectionKey:
    return (key[1], key[0], key[2], key[4], key[3], key[5])


def _is_related(packet: Headers, zone: int, known: set[ConnectionKey]) -> bool:
    """As Linux (nf_conntrack_inet_error) and Open vSwitch (lib/conntrack.c) decide it: an ICMP
    error is related by the header it quotes, which its sender chooses, so any error to the end
    that sent a tracked connection's packets can be made related; the outer source is free."""
    if packet.get("eth_type") != ETH_IPV4 or packet.get("ip_proto") != 1 or packet.get("icmpv4_type") not in (
            3, 4, 5, 11, 12):
        return False
    return any(k[0] == packet["ipv4_dst"] and k[5] == zone for k in known)


_ACTION_SET_ORDER = {PopVlan: 0, PushVlan: 1, SetField: 2, GroupAction: 3, Output: 4}


def _action_set_rank(action: object) -> int:
    """OpenFlow 1.3 section 5.10: pop, push, set-field, group, output."""
    return _ACTION_SET_ORDER[type(action)]  # type: ignore[index]
