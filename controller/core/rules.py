"""Flow builders: each returns Flow values for one concern; none decides placement.

Priorities within a table are named here once; see docs/architecture.md for the table.
"""

from __future__ import annotations

import ipaddress

from functools import lru_cache
from typing import TYPE_CHECKING

from controller.core.flows import (
    BROADCAST_MAC, CONTROLLER_PORT, COOKIE_PREFIX, ETH_ARP, ETH_IPV4, ETH_LLDP, IP_PROTO_ICMP,
    IP_PROTO_TCP, IP_PROTO_UDP, MULTICAST_BIT, TCP_ACK, Action, ApplyActions, ClearActions, Conntrack, Flow, GotoTable,
    Instruction, MeterInstruction, Output, PopVlan, PushVlan, SetField, Value, WriteActions, WriteMetadata, make_flow,
)
from controller.core.ids import stable_hash32
from controller.core.model import EPHEMERAL_CLIENTS, ServiceMatch
from controller.core.pipeline import (
    CLIENT_PORT, CLIENT_PORTS, CT_ESTABLISHED, CT_INVALID, CT_RELATED, CT_REPLY, CT_TRACKED, CT_ZONE, DESTINATION,
    DST_MASK, FRAG_ANY, FRAG_LATER, VID_PRESENT, METER_DENIED_SAMPLE, METER_LLDP, METER_LOCATE,
    METER_MISS_SAMPLE, METER_UNTRUSTED_LLDP, POLICY, PORT_SECURITY, SRC_MASK, TRANSIT, VID_NONE, port_meter,
)
from controller.core.relations import Relation

if TYPE_CHECKING:
    from controller.core.learn import Conversation

# port_security
PRIO_LLDP = 1000
PRIO_UNTRUSTED_LLDP = 900
PRIO_CT_LOOKUP = 310
PRIO_BOUND_IP = 300
PRIO_SPOOF_DROP = 200
PRIO_BOUND_L2 = 100
PRIO_TRUNK = 50
PRIO_PORT_SAMPLE = 1
# destination
PRIO_MULTICAST = 300
PRIO_ARP_REQUEST = 200
PRIO_BACKUP_PATH = 150
PRIO_CHECKED_UNICAST = 120
PRIO_FOREIGN_ADDRESS_DROP = 110
PRIO_UNICAST = 100
PRIO_LOCATE = 50
# client_ports
PRIO_CLIENT_PORT = 100
# policy
PRIO_TRANSIT_COMMIT = 3100
PRIO_TRANSIT = 3000
PRIO_COMMIT = 2100
PRIO_ALLOW = 2000
PRIO_ALLOW_MONITOR = 1500
PRIO_ISOLATED = 1200  # above a zone's monitor rule, below every conduit
PRIO_LEARNED = 1100  # a learn-mode zone's recorded conversations: forwarded without a copy to the controller
PRIO_LEARN_COPY = 1020  # a learn-mode zone's frames that can become a conversation: forwarded and copied
PRIO_LEARN_QUIET = 1010  # its ARP and other IPv4: forwarded only
PRIO_ZONE_MONITOR = 1000
PRIO_DENY_COUNT = 1
PRIO_MISS = 0

SAMPLE_BYTES = 128  # what a metered miss sample carries to the controller
# A second tag protocol identifier that Open vSwitch does not parse as a VLAN (so a frame
# tagged with it shows its TPID as the ethertype): dropped with the spoofed IPv4 and ARP.
ETH_QINQ_9100 = 0x9100
ETH_VLAN_TPIDS = (0x8100, 0x88A8)  # an inner tag behind a VLAN asset's own shows as this ethertype
UNTAGGED = {"vlan_vid": VID_NONE}
Out = Action | tuple[Action, ...]  # what a destination entry writes to reach the next hop


def ingress_tag(vlan: int | None) -> dict[str, Value]:
    """The tag an asset's port admits: none, or exactly its declared VID (any PCP)."""
    return UNTAGGED if vlan is None else {"vlan_vid": VID_PRESENT | vlan}


def to_port(port: int, vlan: int | None) -> tuple[Action, ...]:
    """Out of an asset's own port: with its declared VID pushed (PCP 0), or untagged."""
    if vlan is None:
        return (Output(port),)
    return (PushVlan(), SetField("vlan_vid", VID_PRESENT | vlan), Output(port))


def _actions(out: Out) -> tuple[Action, ...]:
    return out if isinstance(out, tuple) else (out,)
NOT_LATER_FRAGMENT = {"ip_frag": (0, FRAG_LATER)}
LATER_FRAGMENT = {"ip_frag": (FRAG_LATER, FRAG_LATER)}
ICMP_ECHO_REQUEST = 8
ICMP_ECHO_REPLY = 0
ICMP_UNREACHABLE = 3
NOT_FRAGMENT = {"ip_frag": (0, FRAG_ANY)}
# Replies of a tracked connection, and ICMP errors that belong to one (ct_state bits with their mask).
CT_UNTRACKED = {"ct_state": (0, CT_TRACKED)}
CT_REPLY_OF_CONNECTION = {"ct_state": (CT_TRACKED | CT_ESTABLISHED | CT_REPLY,
                                       CT_TRACKED | CT_ESTABLISHED | CT_REPLY | CT_INVALID)}
CT_RELATED_TO_CONNECTION = {"ct_state": (CT_TRACKED | CT_RELATED, CT_TRACKED | CT_RELATED | CT_INVALID)}
COMMIT = ApplyActions((Conntrack(CT_ZONE, commit=True),))


@lru_cache(maxsize=None)
def cookie(origin: str) -> int:
    return COOKIE_PREFIX | stable_hash32(origin)


INFRA_COOKIE = cookie("infra")
LOCATE_COOKIE = cookie("locate")
UNTRUSTED_LLDP_COOKIE = cookie("lldp:untrusted")


def infrastructure_flows(live_trunks: list[int], trunk_ports: list[int], edge_ports: list[int]) -> list[Flow]:
    """Flows every switch has: LLDP on trunks, live trunks, each edge port's sample, the misses.

    LLDP is trusted only on declared trunk ports (own meter); LLDP from any other port goes
    to the controller on a meter of its own, to be reported as a pending link, never used.
    Only a live trunk (its LLDP verified both ways) marks frames TRANSIT: a declared trunk
    port whose link is down admits nothing, so a device plugged into it gains nothing."""
    to_controller = ApplyActions((Output(CONTROLLER_PORT, SAMPLE_BYTES),))
    flows = [
        make_flow(PORT_SECURITY, PRIO_UNTRUSTED_LLDP, {"eth_type": ETH_LLDP},
                  [MeterInstruction(METER_UNTRUSTED_LLDP), ApplyActions((Output(CONTROLLER_PORT),))],
                  UNTRUSTED_LLDP_COOKIE),
        make_flow(PORT_SECURITY, PRIO_MISS, {}, [MeterInstruction(METER_MISS_SAMPLE), to_controller], INFRA_COOKIE),
        make_flow(DESTINATION, PRIO_MISS, {}, [ClearActions()], INFRA_COOKIE),
        make_flow(POLICY, PRIO_MISS, {}, [ClearActions()], INFRA_COOKIE),
        make_flow(POLICY, PRIO_TRANSIT, {"metadata": (TRANSIT.mask, TRANSIT.mask)}, [], INFRA_COOKIE),
    ]
    flows += client_port_flows()
    for port in trunk_ports:
        flows.append(make_flow(PORT_SECURITY, PRIO_LLDP, {"in_port": port, "eth_type": ETH_LLDP},
                               [MeterInstruction(METER_LLDP), ApplyActions((Output(CONTROLLER_PORT),))], INFRA_COOKIE))
    for port in live_trunks:
        flows.append(make_flow(PORT_SECURITY, PRIO_TRUNK, {"in_port": port, **UNTAGGED},
                               [WriteMetadata(TRANSIT.mask, TRANSIT.mask), GotoTable(DESTINATION)], INFRA_COOKIE))
    for port in edge_ports:
        flows.append(make_flow(PORT_SECURITY, PRIO_PORT_SAMPLE, {"in_port": port},
                               [MeterInstruction(port_meter(port)), to_controller], INFRA_COOKIE))
    return flows


def client_port_flows() -> list[Flow]:
    """Mark TCP/UDP destination ports of the ephemeral range with the CLIENT_PORT bit."""
    flows = [make_flow(CLIENT_PORTS, PRIO_MISS, {}, [GotoTable(POLICY)], INFRA_COOKIE)]
    mark = [WriteMetadata(CLIENT_PORT.mask, CLIENT_PORT.mask), GotoTable(POLICY)]
    for proto, name in ((IP_PROTO_TCP, "tcp_dst"), (IP_PROTO_UDP, "udp_dst")):
        for low, high in EPHEMERAL_CLIENTS:
            for value, mask in port_blocks(low, high):
                flows.append(make_flow(CLIENT_PORTS, PRIO_CLIENT_PORT,
                                       {"eth_type": ETH_IPV4, "ip_proto": proto, name: _masked(value, mask)},
                                       mark, INFRA_COOKIE))
    return flows


def _masked(value: int, mask: int) -> Value | tuple[Value, Value]:
    return value if mask == 0xFFFF else (value, mask)


def port_security_flows(port: int, mac: str, ip: str | None, src_tag: int, sends_l2: bool,
                        origin: str, vlan: int | None = None) -> list[Flow]:
    """Bind an asset to its port: only its own MAC, IP and ARP sender pass, untagged, tagged with its ids.

    Every admitting rule requires an untagged frame (vlan_vid=none): a VLAN or priority tag
    (802.1Q or 802.1ad, any VID, 0 included) hides the real ethertype from the spoof checks.
    An asset that declares its `vlan` is admitted with that VID only, and the tag is popped at
    once: inside otseg every frame is untagged, whatever its sender's port."""
    tag: list[Instruction] = [WriteMetadata(src_tag, SRC_MASK), GotoTable(DESTINATION)]
    vid = ingress_tag(vlan)
    if vlan is not None:
        tag.append(ApplyActions((PopVlan(),)))
    flows: list[Flow] = []
    owner = cookie(origin)
    if ip is not None:
        flows.append(make_flow(PORT_SECURITY, PRIO_BOUND_IP,
                               {"in_port": port, "eth_src": mac, **vid, "eth_type": ETH_IPV4, "ipv4_src": ip},
                               tag, owner))
        flows.append(make_flow(PORT_SECURITY, PRIO_BOUND_IP,
                               {"in_port": port, "eth_src": mac, **vid, "eth_type": ETH_ARP, "arp_spa": ip,
                                "arp_sha": mac}, tag, owner))
    if sends_l2:
        flows.append(make_flow(PORT_SECURITY, PRIO_BOUND_L2, {"in_port": port, "eth_src": mac, **vid}, tag,
                               owner))
        # Spoofed IP/ARP must not fall through to the L2 rule, nor a tag Open vSwitch does not parse,
        # nor (behind a VLAN asset's own tag) a second tag that would stay on after the pop.
        inner_tags = ETH_VLAN_TPIDS if vlan is not None else ()
        for eth_type in (ETH_IPV4, ETH_ARP, ETH_QINQ_9100, *inner_tags):
            flows.append(make_flow(PORT_SECURITY, PRIO_SPOOF_DROP,
                                   {"in_port": port, "eth_src": mac, "eth_type": eth_type}, [], owner))
    elif ip is None:
        # A receive-only device: nothing it sends is allowed, but the switch must still record
        # where it is bound, so that a restarted controller can adopt the binding.
        flows.append(make_flow(PORT_SECURITY, PRIO_BOUND_L2, {"in_port": port, "eth_src": mac}, [], owner))
    return flows


def conntrack_lookup_flow(port: int, mac: str, ip: str, origin: str, vlan: int | None = None) -> Flow:
    """A responder of a stateful conduit: its unfragmented IPv4 goes through the connection tracker
    once (ct_state=-trk), then resumes in this table with its ct_state known. Here, in the first
    table, the action set is still empty (see `pipeline.check_flow`). Fragments are not tracked:
    without reassembly they carry no ports, so a fragmented reply of a stateful conduit is dropped."""
    return make_flow(PORT_SECURITY, PRIO_CT_LOOKUP,
                     {"in_port": port, "eth_src": mac, **ingress_tag(vlan), "eth_type": ETH_IPV4, "ipv4_src": ip,
                      **NOT_FRAGMENT, **CT_UNTRACKED},
                     [ApplyActions((Conntrack(CT_ZONE, table=PORT_SECURITY),))], cookie(origin))


def destination_flows(mac: str, ip: str | None, dst_tag: int, out: Out, origin: str, home: bool,
                      l2: bool) -> list[Flow]:
    """Toward an asset. On its `home` switch (where it is attached) IPv4 and ARP pass only with its
    own address as destination or target, so a frame sent to its MAC cannot carry another
    destination (relaying through a two-NIC or routing asset, directed broadcasts); other
    ethertypes only where `l2` frames may reach it. Every frame for it passes its home switch,
    whichever switch it entered at, so that one check covers them all.

    Elsewhere one exact-match entry by MAC (an L2-table entry on hardware) classifies and
    forwards it. This admits nothing by itself: at an ingress switch the policy table still
    decides by source and destination, and a frame that passes with a foreign address is
    dropped at the home switch."""
    if not home:
        return [unicast_flow(mac, dst_tag, out, origin)]
    flows: list[Flow] = []
    if ip is not None:
        flows += [_checked_flow(mac, {"eth_type": ETH_IPV4, "ipv4_dst": ip}, dst_tag, out, origin),
                  _checked_flow(mac, {"eth_type": ETH_ARP, "arp_tpa": ip}, dst_tag, out, origin)]
    if l2:
        owner = cookie(origin)
        flows += [make_flow(DESTINATION, PRIO_FOREIGN_ADDRESS_DROP, {"eth_dst": mac, "eth_type": eth_type},
                            [ClearActions()], owner) for eth_type in (ETH_IPV4, ETH_ARP)]
        flows.append(unicast_flow(mac, dst_tag, out, origin))
    return flows


@lru_cache(maxsize=65536)
def _checked_flow_cached(mac: str, fields: tuple[tuple[str, Value], ...], dst_tag: int, out: Out,
                         origin: str) -> Flow:
    return make_flow(DESTINATION, PRIO_CHECKED_UNICAST, {"eth_dst": mac, **dict(fields)},
                     [WriteMetadata(dst_tag, DST_MASK), WriteActions(_actions(out)), GotoTable(CLIENT_PORTS)],
                     cookie(origin))


def _checked_flow(mac: str, fields: dict[str, Value], dst_tag: int, out: Out, origin: str) -> Flow:
    return _checked_flow_cached(mac, tuple(fields.items()), dst_tag, out, origin)


def locate_flow(ip: str) -> Flow:
    """An ARP request for an asset that is not located yet: a sample, so the controller can find it."""
    return make_flow(DESTINATION, PRIO_LOCATE, {"eth_dst": BROADCAST_MAC, "eth_type": ETH_ARP, "arp_tpa": ip},
                     [MeterInstruction(METER_LOCATE), ApplyActions((Output(CONTROLLER_PORT, SAMPLE_BYTES),)),
                      ClearActions()], LOCATE_COOKIE)


@lru_cache(maxsize=65536)  # the same entry recurs on every switch that uses the same port toward the asset
def unicast_flow(mac: str, dst_tag: int, out: Out, origin: str, in_port: int | None = None) -> Flow:
    """Toward an asset; with `in_port`, the entry of a pre-computed backup path (higher priority)."""
    match: dict[str, Value | tuple[Value, Value]] = {"eth_dst": mac}
    if in_port is not None:
        match["in_port"] = in_port
    return make_flow(DESTINATION, PRIO_UNICAST if in_port is None else PRIO_BACKUP_PATH, match,
                     [WriteMetadata(dst_tag, DST_MASK), WriteActions(_actions(out)), GotoTable(CLIENT_PORTS)],
                     cookie(origin))


@lru_cache(maxsize=65536)
def arp_request_flow(mac: str, ip: str, dst_tag: int, out: Out, origin: str) -> Flow:
    """A broadcast ARP request for `ip` goes, as unicast to its owner only: no ARP flooding."""
    return make_flow(DESTINATION, PRIO_ARP_REQUEST, {"eth_dst": BROADCAST_MAC, "eth_type": ETH_ARP, "arp_tpa": ip},
                     [WriteMetadata(dst_tag, DST_MASK),
                      WriteActions((SetField("eth_dst", mac), *_actions(out))), GotoTable(CLIENT_PORTS)],
                     cookie(origin))


def _copies(out_ports: tuple[int, ...], tagged: tuple[tuple[int, int], ...]) -> tuple[Action, ...]:
    """Outputs untagged first, then, for the ports of VLAN assets (`tagged`: port, VID), one
    pushed tag set to each VID in turn."""
    vids = dict(tagged)
    actions: list[Action] = [Output(p) for p in sorted(set(out_ports)) if p not in vids]
    pushed = False
    for vid in sorted(set(vids.values())):
        if not pushed:
            actions.append(PushVlan())
            pushed = True
        actions.append(SetField("vlan_vid", VID_PRESENT | vid))
        actions += [Output(p) for p in sorted(set(out_ports)) if vids.get(p) == vid]
    return tuple(actions)


@lru_cache(maxsize=65536)
def multicast_flow(in_port: int, src_mac: str, ethertype: int, out_ports: tuple[int, ...], origin: str,
                   tagged: tuple[tuple[int, int], ...] = ()) -> Flow:
    """Copies of an L2 multicast frame out of `out_ports` (see `_copies`)."""
    return make_flow(DESTINATION, PRIO_MULTICAST,
                     {"in_port": in_port, "eth_src": src_mac, "eth_type": ethertype,
                      "eth_dst": (MULTICAST_BIT, MULTICAST_BIT)},
                     [ApplyActions(_copies(out_ports, tagged))], cookie(origin))


def ipv4_group_mac(group: str) -> str:
    """The Ethernet address of an IPv4 group: 01:00:5e, then the group's low 23 bits."""
    low = int(ipaddress.IPv4Address(group)) & 0x7FFFFF
    return "01:00:5e:" + ":".join(f"{(low >> shift) & 0xFF:02x}" for shift in (16, 8, 0))


@lru_cache(maxsize=65536)
def ip_multicast_flows(in_port: int, src_mac: str, group: str, low: int, high: int,
                       out_ports: tuple[int, ...], origin: str,
                       tagged: tuple[tuple[int, int], ...] = ()) -> tuple[Flow, ...]:
    """Copies of unfragmented UDP datagrams to `group` (at the group's own MAC) whose destination
    port is in low..high, out of `out_ports`: one entry per port block."""
    base: dict[str, Value | tuple[Value, Value]] = {
        "in_port": in_port, "eth_src": src_mac, "eth_type": ETH_IPV4, "eth_dst": ipv4_group_mac(group),
        "ipv4_dst": group, "ip_proto": IP_PROTO_UDP, **NOT_FRAGMENT}
    actions = [ApplyActions(_copies(out_ports, tagged))]
    return tuple(make_flow(DESTINATION, PRIO_MULTICAST, {**base, "udp_dst": _masked(value, mask)}, actions,
                           cookie(origin)) for value, mask in port_blocks(low, high))


def relation_flows(relation: Relation, src_tag: tuple[int, int], dst_tag: tuple[int, int]) -> list[Flow]:
    """Policy-table rules for one relation; tags are (value, mask) pairs of metadata fields.

    Besides the service rules: later fragments of the relation's IP protocol (their ports are
    unknown, so they are bound to the source and destination only), and for TCP/UDP replies
    ICMP destination-unreachable (port unreachable, fragmentation needed) back to the initiator."""
    metadata = (src_tag[0] | dst_tag[0], src_tag[1] | dst_tag[1])
    priority = PRIO_ALLOW if relation.mode == "enforce" else PRIO_ALLOW_MONITOR
    owner = cookie(relation.origin)
    if relation.kind == "any":
        return [make_flow(POLICY, priority, {"metadata": metadata}, [], owner)]
    if relation.kind == "arp":
        return [make_flow(POLICY, priority, {"metadata": metadata, "eth_type": ETH_ARP}, [], owner)]
    assert relation.match is not None
    flows = []
    if relation.stateful and relation.direction == "reply":
        return [make_flow(POLICY, priority, {"metadata": metadata, **fields}, [], owner)
                for fields in stateful_reply_fields(relation.match)]
    for fields in service_fields(relation.match, relation.direction):
        meta = metadata
        if fields.pop("client_port", None):
            meta = (metadata[0] | CLIENT_PORT.mask, metadata[1] | CLIENT_PORT.mask)
        flows.append(make_flow(POLICY, priority, {"metadata": meta, **fields}, [], owner))
    return flows


def commit_flows(relation: Relation, src_tag: tuple[int, int], dst_tag: tuple[int, int],
                 transit: bool) -> list[Flow]:
    """A stateful conduit's forward packets (unfragmented) are allowed and committed to the
    connection tracker of the switch where the responder is attached, which is where its replies
    enter and are looked up. `transit`: the packets arrive through a trunk (already checked at
    their ingress switch), matched by destination only. Above every allow rule of both modes, so
    that whichever conduit allows a packet, a stateful one that also allows it tracks it."""
    assert relation.match is not None and relation.stateful and relation.direction == "forward"
    if transit:
        metadata = (TRANSIT.mask | dst_tag[0], TRANSIT.mask | dst_tag[1])
        priority = PRIO_TRANSIT_COMMIT
    else:
        metadata = (src_tag[0] | dst_tag[0], src_tag[1] | dst_tag[1])
        priority = PRIO_COMMIT
    owner = cookie(relation.origin)
    return [make_flow(POLICY, priority, {"metadata": metadata, **fields, **NOT_FRAGMENT}, [COMMIT], owner)
            for fields in service_fields(relation.match, "forward") if "ip_frag" not in fields]


def stateful_reply_fields(match: ServiceMatch) -> list[dict[str, Value | tuple[Value, Value]]]:
    """Replies of a stateful conduit: from the service port, within a connection the initiator
    opened (ct_state +est+rpl, whatever its client port); TCP with ACK; ICMP errors only when
    the tracker relates them to such a connection. Later fragments as for any conduit."""
    proto = IP_PROTO_TCP if match.protocol == "tcp" else IP_PROTO_UDP
    result: list[dict[str, Value | tuple[Value, Value]]] = []
    for value, mask in port_blocks(match.low, match.high):
        fields: dict[str, Value | tuple[Value, Value]] = {
            "eth_type": ETH_IPV4, "ip_proto": proto, f"{match.protocol}_src": _masked(value, mask),
            **CT_REPLY_OF_CONNECTION}
        if match.protocol == "tcp":
            fields["tcp_flags"] = (TCP_ACK, TCP_ACK)
        result.append(fields)
    result.append({"eth_type": ETH_IPV4, **LATER_FRAGMENT, "ip_proto": proto})
    result.append({"eth_type": ETH_IPV4, "ip_proto": IP_PROTO_ICMP, **NOT_LATER_FRAGMENT,
                   "icmpv4_type": ICMP_UNREACHABLE, **CT_RELATED_TO_CONNECTION})
    return result


def service_fields(match: ServiceMatch, direction: str) -> list[dict[str, Value | tuple[Value, Value]]]:
    """The match fields of one service element in one direction. A reply toward the default
    (ephemeral) client ports says so with `client_port: 1` (the CLIENT_PORT metadata bit)."""
    if match.protocol == "ethertype":
        return [{"eth_type": match.low}]
    later = {"eth_type": ETH_IPV4, **LATER_FRAGMENT}
    if match.protocol == "icmp":
        icmp_type = ICMP_ECHO_REQUEST if direction == "forward" else ICMP_ECHO_REPLY
        return [{"eth_type": ETH_IPV4, "ip_proto": IP_PROTO_ICMP, **NOT_LATER_FRAGMENT, "icmpv4_type": icmp_type},
                {**later, "ip_proto": IP_PROTO_ICMP}]
    proto = IP_PROTO_TCP if match.protocol == "tcp" else IP_PROTO_UDP
    service, client = (f"{match.protocol}_dst", f"{match.protocol}_src")
    if direction == "reply":
        service, client = client, service
    result: list[dict[str, Value | tuple[Value, Value]]] = []
    client_blocks: list[tuple[int, int] | None] = [None]
    if direction == "reply" and match.clients != EPHEMERAL_CLIENTS:
        client_blocks = [block for low, high in match.clients for block in port_blocks(low, high)]
    for value, mask in port_blocks(match.low, match.high):
        for block in client_blocks:
            fields: dict[str, Value | tuple[Value, Value]] = {"eth_type": ETH_IPV4, "ip_proto": proto}
            fields[service] = _masked(value, mask)
            if direction == "reply":
                if block is None:
                    fields["client_port"] = 1
                else:
                    fields[client] = _masked(*block)
            if match.protocol == "tcp" and direction == "reply":
                fields["tcp_flags"] = (TCP_ACK, TCP_ACK)  # replies carry ACK; a reverse SYN does not
            result.append(fields)
    result.append({**later, "ip_proto": proto})
    if direction == "reply":
        result.append({"eth_type": ETH_IPV4, "ip_proto": IP_PROTO_ICMP, **NOT_LATER_FRAGMENT,
                       "icmpv4_type": ICMP_UNREACHABLE})
    return result


def denied_count_flows(src_zone_tag: tuple[int, int], zone: str,
                       destinations: list[tuple[tuple[int, int], str]]) -> list[Flow]:
    """Drops of traffic from a local zone, counted where they happen: in the destination table (the
    destination is none of this zone's peers) per source zone, and in the policy table per (source
    zone, destination zone). Same verdict as the table misses, but attributable; a metered sample of
    what is dropped goes to the controller for verdict events."""
    drop = [MeterInstruction(METER_DENIED_SAMPLE), ApplyActions((Output(CONTROLLER_PORT, SAMPLE_BYTES),)),
            ClearActions()]
    flows = [make_flow(DESTINATION, PRIO_DENY_COUNT, {"metadata": src_zone_tag}, drop, cookie(f"denied:{zone}>-"))]
    for dst_tag, dst_zone in destinations:
        metadata = (src_zone_tag[0] | dst_tag[0], src_zone_tag[1] | dst_tag[1])
        flows.append(make_flow(POLICY, PRIO_DENY_COUNT, {"metadata": metadata}, drop,
                               cookie(f"denied:{zone}>{dst_zone}")))
    return flows


def isolated_flow(src_zone_tag: tuple[int, int], dst_zone_tag: tuple[int, int], zone: str, isolated: str) -> Flow:
    """Monitor mode of `zone` forwards nothing into an isolated zone: only conduits cross its border."""
    tag = (src_zone_tag[0] | dst_zone_tag[0], src_zone_tag[1] | dst_zone_tag[1])
    return make_flow(POLICY, PRIO_ISOLATED, {"metadata": tag}, [ClearActions()], cookie(f"isolated:{zone}>{isolated}"))


def zone_learn_flows(src_zone_tag: tuple[int, int], zone: str) -> list[Flow]:
    """A learn-mode zone forwards like monitor mode (every flow here matches the monitor rule's
    metadata and forwards) and copies to the controller what can become a conversation: TCP and
    UDP (not later fragments), ICMP echo, and non-IP frames; ARP, other IPv4 and later fragments
    are forwarded without a copy (they never become one, so they would be copied for ever). No
    meter: a meter's drop band would drop the forwarded frame too; the budget bounds learning."""
    origin = cookie(f"monitor:{zone}")
    copy = [ApplyActions((Output(CONTROLLER_PORT, SAMPLE_BYTES),))]
    tag = {"metadata": src_zone_tag}
    ip = {**tag, "eth_type": ETH_IPV4}
    return [make_flow(POLICY, PRIO_ZONE_MONITOR, tag, copy, origin),  # non-IP
            make_flow(POLICY, PRIO_LEARN_QUIET, {**tag, "eth_type": ETH_ARP}, [], origin),
            make_flow(POLICY, PRIO_LEARN_QUIET, ip, [], origin),
            make_flow(POLICY, PRIO_LEARN_COPY, {**ip, "ip_proto": IP_PROTO_TCP, **NOT_LATER_FRAGMENT}, copy, origin),
            make_flow(POLICY, PRIO_LEARN_COPY, {**ip, "ip_proto": IP_PROTO_UDP, **NOT_LATER_FRAGMENT}, copy, origin),
            *(make_flow(POLICY, PRIO_LEARN_COPY, {**ip, "ip_proto": IP_PROTO_ICMP, **NOT_LATER_FRAGMENT,
                                                  "icmpv4_type": kind}, copy, origin) for kind in (0, 8))]


def learned_flows(conversation: "Conversation", forward_tag: tuple[int, int], reply_tag: tuple[int, int] | None
                  ) -> tuple[list[Flow], list[Flow]]:
    """Counting entries of one recorded conversation: (at the initiator's switch, at the
    responder's); the reply entry only when `reply_tag` (the responder's zone forwards too)."""
    origin = cookie(f"learned:{conversation.key}")
    if conversation.protocol == "ethertype":
        return [make_flow(POLICY, PRIO_LEARNED, {"metadata": forward_tag, "eth_type": conversation.port}, [],
                          origin)], []
    if conversation.protocol == "icmp":
        request = {"eth_type": ETH_IPV4, "ip_proto": IP_PROTO_ICMP, "icmpv4_type": 8}
        reply = {"eth_type": ETH_IPV4, "ip_proto": IP_PROTO_ICMP, "icmpv4_type": 0}
    else:
        proto = 6 if conversation.protocol == "tcp" else 17
        request = {"eth_type": ETH_IPV4, "ip_proto": proto, f"{conversation.protocol}_dst": conversation.port}
        reply = {"eth_type": ETH_IPV4, "ip_proto": proto, f"{conversation.protocol}_src": conversation.port}
    forward = [make_flow(POLICY, PRIO_LEARNED, {"metadata": forward_tag, **request}, [], origin)]
    back = [make_flow(POLICY, PRIO_LEARNED, {"metadata": reply_tag, **reply}, [], origin)] if reply_tag else []
    return forward, back


def zone_monitor_flow(src_zone_tag: tuple[int, int], zone: str) -> Flow:
    """Traffic leaving a zone in monitor mode is forwarded even when no conduit allows it."""
    return make_flow(POLICY, PRIO_ZONE_MONITOR, {"metadata": src_zone_tag}, [], cookie(f"monitor:{zone}"))


def port_blocks(low: int, high: int) -> list[tuple[int, int]]:
    """The fewest (value, mask) blocks that cover low..high exactly."""
    blocks: list[tuple[int, int]] = []
    while low <= high:
        size = low & -low if low else 1 << 16
        while size > high - low + 1:
            size >>= 1
        blocks.append((low, 0xFFFF & ~(size - 1)))
        low += size
    return blocks
