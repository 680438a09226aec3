"""What the policy allows, as sets of packets: the reference semantics, read from the policy.

Role: `Allowed(space, policy, located, topology)` gives, for every port where an asset is
bound, the set of (origin x header) that must leave there (`at(port)`), and the connection
sets stateful conduits open. It is written from `controller.core.reference.judge` and
`controller.core.verdict.decide` (the policy contract), never from the compiler: the tables
are compared with it, so it must not share their blind spots. tests/test_verify.py checks it
against `judge` on random frames and on every probe of the walk matrix.

How `judge` maps onto the header space, step by step:
1. well formed, not LLDP, tags right for the source (`o_vlan`: untagged, or exactly one VLAN
   header with the source's VID; a second tag shows as a TPID ethertype);
2. the source is the asset bound at the origin port (`o_sw`, `o_port`): its MAC, its IPv4
   address for IPv4, its addresses as ARP sender;
3. the destination: unicast to an asset's MAC (`o_eth_dst`, as sent) whose address is the IPv4
   destination or ARP target, or an ARP broadcast for its address; a group address (not ARP)
   goes to the L2 service receivers, and IPv4 to it only when the IPv4 destination is one of
   a conduit's groups and `o_eth_dst` that group's own MAC (`Packets.group`); it leaves with
   the receiver's MAC and the receiver's tag (PCP 0) or none;
4. `decide` delivers it. Connection state is the `oracle` field: `established` is an
   established reply (`ORACLE_EST_REPLY`), `related` a related reply that is an ICMP
   destination unreachable. The oracle's `domain` says which states a packet can have at
   all: a connection is established only if a stateful conduit tracks it (`tracked`).

Sources and receivers are grouped in classes of assets the verdict cannot tell apart (zone,
its name if a conduit names it, whether it has an address), so the sets cost
O(assets + classes^2 x services), never O(assets^2).
"""

from __future__ import annotations

from typing import Iterable, Mapping

from controller.core.model import Asset, Conduit, Intra, Policy, ServiceMatch
from controller.core.topology import PortRef, Topology
from controller.core.verdict import is_member
from controller.verify.network import switch_index
from controller.verify.space import VLAN_PRESENT, Function, Space, ip_int, mac_int, universe
from controller.verify.tracker import (
    ORACLE_EST, ORACLE_EST_REPLY, ORACLE_INVALID, ORACLE_NEW, ORACLE_REL, ORACLE_REL_OTHER, ORACLE_REL_REPLY,
)

ETH_IPV4, ETH_ARP, ETH_LLDP = 0x0800, 0x0806, 0x88CC
TAG_TPIDS = (0x8100, 0x88A8, 0x9100)
BROADCAST = 0xFFFF_FFFF_FFFF
GROUP_BIT = 0x0100_0000_0000
PROTOCOL_NUMBER = {"icmp": 1, "tcp": 6, "udp": 17}

SourceClass = tuple[str, str | None, bool]


def group_mac_int(group: str) -> int:
    """The MAC of an IPv4 group (01:00:5e, then the low 23 bits of the address), as an integer."""
    return 0x01005E000000 | (ip_int(group) & 0x7FFFFF)


class Packets:
    """Predicates on the policy-relevant fields (the `Packet` of `controller.core.verdict`)."""

    def __init__(self, space: Space) -> None:
        s = self.s = space
        self.ipv4, self.arp = s.eq("eth_type", ETH_IPV4), s.eq("eth_type", ETH_ARP)
        self.later, self.first, self.whole = s.eq("frag", 3), s.eq("frag", 1), s.eq("frag", 0)
        self.ack = s.masked("tcp_flags", 0x010, 0x010)
        self.established = s.eq("oracle", ORACLE_EST_REPLY)
        self.unreachable = s.eq("nw_proto", 1) & s.eq("tp_src", 3)
        self.related = s.eq("oracle", ORACLE_REL_REPLY) & self.unreachable & self.whole

    def proto(self, number: int) -> Function:
        return self.s.eq("nw_proto", number)

    def forward(self, match: ServiceMatch, multicast: bool) -> Function:
        s = self.s
        if match.protocol == "ethertype":
            return s.eq("eth_type", match.low)
        if multicast:
            return s.false
        number = PROTOCOL_NUMBER[match.protocol]
        if match.protocol == "icmp":
            whole = self.proto(1) & s.eq("tp_src", 8)
        else:
            whole = self.proto(number) & s.in_range("tp_dst", match.low, match.high)
        return self.ipv4 & ((self.later & self.proto(number)) | (~self.later & whole))

    def group(self, match: ServiceMatch, groups: tuple[str, ...]) -> Function:
        """`verdict._group_match`: whole UDP datagrams to one of `groups`, sent to its own MAC."""
        s = self.s
        if match.protocol != "udp" or not groups:
            return s.false
        addressed = s.false
        for group in groups:
            addressed |= s.eq("nw_dst", ip_int(group)) & s.eq("o_eth_dst", group_mac_int(group))
        return self.ipv4 & self.whole & self.proto(17) & s.in_range("tp_dst", match.low, match.high) & addressed

    def reply(self, match: ServiceMatch, multicast: bool) -> Function:
        s = self.s
        if multicast or match.protocol == "ethertype":
            return s.false
        number = PROTOCOL_NUMBER[match.protocol]
        if match.protocol == "icmp":
            whole = self.proto(1) & s.eq("tp_src", 0)
        else:
            clients = s.false
            for low, high in match.clients:
                clients |= s.in_range("tp_dst", low, high)
            ports = s.in_range("tp_src", match.low, match.high) & clients
            kind = self.proto(6) & self.ack if match.protocol == "tcp" else self.proto(17)
            whole = self.unreachable | (ports & kind)
        return self.ipv4 & ((self.later & self.proto(number)) | (~self.later & whole))

    def stateful_reply(self, match: ServiceMatch, multicast: bool) -> Function:
        s = self.s
        if multicast:
            return s.false
        number = PROTOCOL_NUMBER[match.protocol]
        kind = self.proto(6) & self.ack if match.protocol == "tcp" else self.proto(17)
        whole = ((self.unreachable & self.related)
                 | (~self.unreachable & self.established & s.in_range("tp_src", match.low, match.high) & kind))
        return self.ipv4 & ((self.later & self.proto(number)) | (self.whole & whole))

    def allows(self, matches: list[ServiceMatch], forward: bool, backward: bool, src: Asset, dst: Asset,
               multicast: bool, stateful: bool = False, groups: tuple[str, ...] = ()) -> Function:
        """`controller.core.verdict._allows`."""
        s = self.s
        if not (forward or backward):
            return s.false
        other_groups = s.false
        if multicast and forward and dst.ip is not None:
            for match in matches:
                other_groups |= self.group(match, groups)
        arp = self.arp if any(m.is_ip for m in matches) and src.ip is not None and dst.ip is not None else s.false
        other = s.false
        for match in matches:
            if forward:
                other |= self.forward(match, multicast)
            if backward and stateful and match.protocol in ("tcp", "udp"):
                other |= self.stateful_reply(match, multicast)
            elif backward:
                other |= self.reply(match, multicast)
        if multicast:  # IPv4 to a group: its own pieces only (`forward` gives none for IP)
            other = (~self.ipv4 & other) | other_groups
        return arp | (~self.arp & other)


def _matches(policy: Policy, names: Iterable[str]) -> list[ServiceMatch]:
    return [m for name in names for m in policy.service(name).matches]


def _roles(conduit: Conduit) -> list[tuple[tuple[object, ...], tuple[object, ...]]]:
    roles = [(conduit.sources, conduit.destinations)]
    if conduit.bidirectional:
        roles.append((conduit.destinations, conduit.sources))
    return roles  # type: ignore[return-value]


class Verdicts:
    """`decide` as sets of packets, per pair of assets (`of`), from pieces cached per conduit
    role and flags: two pairs the verdict treats alike share their BDDs."""

    def __init__(self, packets: Packets, policy: Policy) -> None:
        self.packets, self.policy = packets, policy
        self.roles = [(conduit, _matches(policy, conduit.services), initiators, responders)
                      for conduit in policy.conduits for initiators, responders in _roles(conduit)]
        self._pieces: dict[tuple[int, bool, bool, bool, bool, bool], Function] = {}
        self._sides: dict[str, tuple[frozenset[int], frozenset[int]]] = {}

    def _sides_of(self, asset: Asset) -> tuple[frozenset[int], frozenset[int]]:
        """The roles in which `asset` is an initiator, and those in which it is a responder."""
        found = self._sides.get(asset.name)
        if found is None:
            initiator = frozenset(i for i, (_, _, ini, _) in enumerate(self.roles) if any(is_member(asset, e) for e in ini))
            responder = frozenset(i for i, (_, _, _, res) in enumerate(self.roles) if any(is_member(asset, e) for e in res))
            found = self._sides[asset.name] = (initiator, responder)
        return found

    def of(self, src: Asset, dst: Asset, multicast: bool) -> Function:
        """The packets `decide(policy, src, dst, .)` delivers (allowed, by monitor, would-deny)."""
        s, policy = self.packets.s, self.policy
        across_isolation = src.zone != dst.zone and (policy.zone(src.zone).isolated or policy.zone(dst.zone).isolated)
        if not multicast and policy.zone_forwards(src.zone) and not across_isolation:
            return s.true  # an isolated zone's border: only conduits cross it (controller.core.model.Zone)
        if src.zone == dst.zone and policy.zone(src.zone).intra is Intra.ALLOW and not multicast:
            return s.true
        src_initiates, src_responds = self._sides_of(src)
        dst_initiates, dst_responds = self._sides_of(dst)
        result = s.false
        for index in sorted((src_initiates & dst_responds) | (src_responds & dst_initiates)):
            forward, backward = index in src_initiates and index in dst_responds, index in src_responds and index in dst_initiates
            key = (index, forward, backward, src.ip is not None, dst.ip is not None, multicast)
            piece = self._pieces.get(key)
            if piece is None:
                conduit, matches, _, _ = self.roles[index]
                piece = self._pieces[key] = self.packets.allows(matches, forward, backward, src, dst, multicast,
                                                                conduit.stateful, conduit.groups)
            result |= piece
        if src.zone == dst.zone and policy.zone(src.zone).intra is Intra.SERVICES:
            result |= self.packets.allows(_matches(policy, policy.zone(src.zone).intra_services), True, True, src,
                                          dst, multicast)
        return result


def verdict_set(packets: Packets, policy: Policy, src: Asset, dst: Asset, multicast: bool) -> Function:
    """The packets `decide(policy, src, dst, .)` delivers (one pair; `Verdicts` for many)."""
    return Verdicts(packets, policy).of(src, dst, multicast)


class Allowed:
    def __init__(self, space: Space, policy: Policy, located: Mapping[str, PortRef], topology: Topology) -> None:
        self.s, self.policy, self.located = space, policy, dict(located)
        self.packets = Packets(space)
        self.verdicts = Verdicts(self.packets, policy)
        self.index = switch_index(topology)
        s = space
        self.named = {e.name for c in policy.conduits for e in (*c.sources, *c.destinations) if e.kind == "asset"}
        self.by_port: dict[PortRef, list[Asset]] = {}
        for name, where in sorted(self.located.items()):
            self.by_port.setdefault(where, []).append(policy.asset(name))
        self.classes: dict[SourceClass, list[Asset]] = {}
        for name in sorted(self.located):
            asset = policy.asset(name)
            self.classes.setdefault(self.class_of(asset), []).append(asset)
        self.source_sets = {key: self._sources(members) for key, members in self.classes.items()}
        self._from: dict[tuple[SourceClass, bool], Function] = {}
        self.tracked = self._tracked(reverse=False)
        self.tracked_reply = self._tracked(reverse=True)
        # the reference's connection state: only connections it opened (tracked ones) count
        self.packets.established &= self.tracked_reply
        self.packets.related &= self._pairs(True)
        self.domain = self._domain() & universe(space)
        self.commit_allowed = self.tracked & s.eq("oracle", ORACLE_NEW) & self._bound_ipv4_source()

    def class_of(self, asset: Asset) -> SourceClass:
        return (asset.zone, asset.name if asset.name in self.named else None, asset.ip is not None)

    # ---- sources ------------------------------------------------------------------------------

    def origin(self, where: PortRef) -> Function:
        return self.s.eq("o_sw", self.index[where.dpid]) & self.s.eq("o_port", where.port)

    def source(self, asset: Asset) -> Function:
        """Frames `asset` may send from its port (steps 1 and 2 of judge)."""
        s, p = self.s, self.packets
        where = self.located[asset.name]
        tags = (s.eq("o_vlan", 0) & s.eq("o_pcp", 0)) if asset.vlan is None else s.eq("o_vlan", VLAN_PRESENT | asset.vlan)
        result = self.origin(where) & s.eq("eth_src", mac_int(asset.mac)) & tags
        result &= ~s.one_of("eth_type", (*TAG_TPIDS, ETH_LLDP))
        if asset.ip is None:
            result &= ~p.ipv4 & ~p.arp
        else:
            ip = s.eq("nw_src", ip_int(asset.ip))
            result &= (~p.ipv4 | ip) & (~p.arp | (ip & s.eq("arp_sha", mac_int(asset.mac))))
        return result

    def _sources(self, members: list[Asset]) -> Function:
        result = self.s.false
        for asset in members:
            result |= self.source(asset)
        return result

    def _bound_ipv4_source(self) -> Function:
        result = self.s.false
        for name in self.located:
            asset = self.policy.asset(name)
            if asset.ip is not None:
                result |= self.source(asset)
        return result

    # ---- destinations -------------------------------------------------------------------------

    def leaving_for(self, asset: Asset) -> Function:
        """How a frame leaves toward `asset`: its tag (PCP 0) or none."""
        s = self.s
        if asset.vlan is None:
            return s.eq("vlan", 0) & s.eq("pcp", 0)
        return s.eq("vlan", VLAN_PRESENT | asset.vlan) & s.eq("pcp", 0)

    def unicast_to(self, asset: Asset) -> Function:
        s, p = self.s, self.packets
        mac = mac_int(asset.mac)
        if asset.ip is None:
            sent = s.eq("o_eth_dst", mac) & ~p.ipv4 & ~p.arp
        else:
            ip = s.eq("nw_dst", ip_int(asset.ip))
            sent = ((s.eq("o_eth_dst", mac) & (~p.ipv4 | ip) & (~p.arp | ip))
                    | (s.eq("o_eth_dst", BROADCAST) & p.arp & ip))
        return sent & s.eq("eth_dst", mac) & self.leaving_for(asset)

    def group_to(self, asset: Asset) -> Function:
        """Sent to a group address (not ARP) and leaving as sent; which IPv4 may is the verdict's
        business (`Packets.group`: a conduit's group at its own MAC)."""
        s, p = self.s, self.packets
        return (s.masked("o_eth_dst", GROUP_BIT, GROUP_BIT) & ~p.arp & s.same("eth_dst", "o_eth_dst")
                & self.leaving_for(asset))

    def senders_to(self, receiver: Asset, multicast: bool) -> Function:
        """Origins x headers whose verdict delivers to `receiver` (cached per receiver class)."""
        key = (self.class_of(receiver), multicast)
        cached = self._from.get(key)
        if cached is None:
            cached = self.s.false
            for source_class, members in self.classes.items():
                verdict = self.verdicts.of(members[0], receiver, multicast)
                if verdict != self.s.false:
                    cached |= verdict & self.source_sets[source_class]
            self._from[key] = cached
        return cached

    def at(self, where: PortRef, unicast_only: bool = False, origins: Function | None = None,
           domain: Function | None = None) -> Function:
        """Everything that must leave at port `where` (nothing where no asset is bound), among
        the packets of `domain` (default: the oracle's)."""
        s = self.s
        result = s.false
        for receiver in self.by_port.get(where, []):
            result |= self.unicast_to(receiver) & self.senders_to(receiver, False)
            if not unicast_only:
                result |= self.group_to(receiver) & self.senders_to(receiver, True)
        result &= ~self.origin(where) & (self.domain if domain is None else domain)
        return result & origins if origins is not None else result

    # ---- connection state ---------------------------------------------------------------------

    def _ips(self, endpoints: Iterable[object], field: str) -> Function:
        s = self.s
        result = s.false
        for endpoint in endpoints:
            for asset in self.policy.members(endpoint):  # type: ignore[arg-type]
                if asset.ip is not None:
                    result |= s.eq(field, ip_int(asset.ip))
        return result

    def _tracked(self, reverse: bool) -> Function:
        """5-tuples a stateful conduit tracks (`verdict.tracks`), or (reverse) their replies."""
        s, p = self.s, self.packets
        src_field, dst_field = ("nw_dst", "nw_src") if reverse else ("nw_src", "nw_dst")
        result = s.false
        for conduit in self.policy.conduits:
            if not conduit.stateful:
                continue
            matches = [m for m in _matches(self.policy, conduit.services) if m.protocol in ("tcp", "udp")]
            if not matches:
                continue
            for initiators, responders in _roles(conduit):
                service = s.false
                for match in matches:
                    ports = s.in_range("tp_src" if reverse else "tp_dst", match.low, match.high)
                    service |= p.proto(PROTOCOL_NUMBER[match.protocol]) & ports
                result |= self._ips(initiators, src_field) & self._ips(responders, dst_field) & service
        return result & p.ipv4 & p.whole

    def _pairs(self, reverse: bool) -> Function:
        """Address pairs with a tracked connection (initiator -> responder, or reversed)."""
        s = self.s
        result = s.false
        src_field, dst_field = ("nw_dst", "nw_src") if reverse else ("nw_src", "nw_dst")
        for conduit in self.policy.conduits:
            if conduit.stateful and any(m.protocol in ("tcp", "udp") for m in _matches(self.policy, conduit.services)):
                for initiators, responders in _roles(conduit):
                    result |= self._ips(initiators, src_field) & self._ips(responders, dst_field)
        return result

    def _domain(self) -> Function:
        """The connection states a packet can have: established only if its connection is
        tracked (in its direction, or it is the reply), related only if its addresses are a
        tracked pair; non-IPv4 packets are never tracked (state "new")."""
        s, p = self.s, self.packets
        icmp = p.ipv4 & p.proto(1)
        return ((~p.ipv4 & s.eq("oracle", ORACLE_NEW))
                | (p.ipv4 & (s.eq("oracle", ORACLE_NEW) | s.eq("oracle", ORACLE_INVALID)
                             | (s.eq("oracle", ORACLE_EST) & self.tracked)
                             | (s.eq("oracle", ORACLE_EST_REPLY) & self.tracked_reply)
                             | (s.eq("oracle", ORACLE_REL) & icmp & self._ends(initiator=False))
                             | (s.eq("oracle", ORACLE_REL_REPLY) & icmp & self._pairs(True))
                             | (s.eq("oracle", ORACLE_REL_OTHER) & icmp & self._related_other()))))

    def _related_other(self) -> Function:
        """ICMP errors a sender can make a tracker relate to another connection of their
        destination: to an initiator I from any S such that I has a tracked connection to a
        responder other than S (the error quotes that one)."""
        s = self.s
        responders: dict[str, set[str]] = {}
        for conduit in self.policy.conduits:
            if not conduit.stateful or not any(m.protocol in ("tcp", "udp")
                                               for m in _matches(self.policy, conduit.services)):
                continue
            for initiators, others in _roles(conduit):
                peers = {a.ip for e in others for a in self.policy.members(e) if a.ip}  # type: ignore[arg-type]
                for endpoint in initiators:
                    for asset in self.policy.members(endpoint):  # type: ignore[arg-type]
                        if asset.ip:
                            responders.setdefault(asset.ip, set()).update(peers - {asset.ip})
        result = s.false
        for initiator, peers in responders.items():
            if len(peers) >= 2:
                result |= s.eq("nw_dst", ip_int(initiator))
            elif peers:
                result |= s.eq("nw_dst", ip_int(initiator)) & ~s.eq("nw_src", ip_int(next(iter(peers))))
        return result

    def _ends(self, initiator: bool) -> Function:
        """ICMP errors a tracker can call related: an error is related by the header it quotes,
        which its sender chooses, so any source may send one to an initiator (reply) or to a
        responder (forward) of a tracked connection. `judge` relates only errors between the two
        ends of an opened connection: tables that accept the others fail isolation."""
        s = self.s
        ends = s.forget(self._pairs(True), ["nw_src"]) if initiator else s.forget(self._pairs(False), ["nw_src"])
        return ends
