"""The policy's verdict on one packet, read straight from the conduits (no flow tables).

This is the reference semantics of shared/design/policy-language.md. It is deliberately
written independently of the compiler: tests walk compiled tables with a packet simulator
and require the outcome to equal this verdict for every combination, and `otseg explain`
uses it to tell an operator which conduit decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from controller.core.model import Asset, Conduit, Endpoint, Intra, Policy, ServiceMatch

ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
TCP_ACK = 0x010


Fragment = Literal["no", "first", "later"]
ICMP_ECHO_REQUEST = 8
ICMP_ECHO_REPLY = 0
ICMP_UNREACHABLE = 3


@dataclass(frozen=True)
class Packet:
    """What matters of a frame for the policy. IP fields are ignored unless eth_type is IPv4.

    A later fragment (`fragment="later"`) carries no transport header: its ports, flags and
    ICMP type are unknown, and it is judged by the IP protocol alone."""

    eth_type: int
    ip_proto: int = 0  # 1 icmp, 6 tcp, 17 udp
    src_port: int = 0
    dst_port: int = 0
    tcp_flags: int = 0
    icmp_type: int = 0
    multicast: bool = False  # sent to a group address: L2 services, and UDP to a conduit's IP groups
    fragment: Fragment = "no"
    # Connection state, for stateful conduits: the packet goes the reply way of a connection its
    # destination opened through one (`established`), or is an ICMP error about one (`related`).
    established: bool = False
    related: bool = False
    # IPv4 sent to a group address: the group (dotted) when the frame went to that group's own MAC,
    # else "" (an IPv4 frame to any other group MAC is never delivered)
    group: str = ""

    def describe(self) -> str:
        if self.eth_type == ETH_ARP:
            return "arp"
        if self.eth_type != ETH_IPV4:
            return f"ethertype 0x{self.eth_type:04x}" + (" multicast" if self.multicast else "")
        name = {1: "icmp", 6: "tcp", 17: "udp"}.get(self.ip_proto, f"ip proto {self.ip_proto}")
        if self.multicast:
            name += f" to group {self.group}" if self.group else " to a group MAC"
        if self.fragment == "later":
            return f"{name} later fragment"
        first = " (first fragment)" if self.fragment == "first" else ""
        if self.ip_proto == 1:
            return f"icmp type {self.icmp_type}{first}"
        flags = f" flags 0x{self.tcp_flags:02x}" if self.ip_proto == 6 else ""
        return f"{name} {self.src_port}->{self.dst_port}{flags}{first}"


Outcome = Literal["allowed", "allowed-by-monitor", "would-deny", "denied"]


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    origin: str = ""  # conduit name, "intra:<zone>", or "" when denied / would-deny
    reason: str = ""

    @property
    def delivered(self) -> bool:
        return self.outcome != "denied"


def decide(policy: Policy, src: Asset, dst: Asset, packet: Packet) -> Verdict:
    """The verdict for `packet` from `src` to `dst` (for multicast: is `dst` a receiver?)."""
    enforce: list[str] = []
    monitor: list[str] = []
    for conduit in policy.conduits:
        if _conduit_allows(policy, conduit, src, dst, packet):
            (monitor if conduit.mode == "monitor" else enforce).append(conduit.name)
    if src.zone == dst.zone and _intra_allows(policy, src.zone, src, dst, packet):
        enforce.append(f"intra:{src.zone}")
    if enforce:
        origin = sorted(enforce)[0]
        return Verdict("allowed", origin, _reason(policy, origin))
    if monitor:
        origin = sorted(monitor)[0]
        return Verdict("allowed-by-monitor", origin, _reason(policy, origin))
    for zone in {src.zone, dst.zone}:
        if src.zone != dst.zone and policy.zone(zone).isolated:
            return Verdict("denied", "", f"zone {zone!r} is isolated: only conduits cross its border")
    if not packet.multicast and policy.zone_forwards(src.zone):
        return Verdict("would-deny", "", f"zone {src.zone!r} is in {policy.zone_mode(src.zone)} mode")
    return Verdict("denied", "", "no conduit allows it")


def _reason(policy: Policy, origin: str) -> str:
    if origin.startswith("intra:"):
        return f"intra-zone rule of zone {origin[6:]!r}"
    return next(c.reason for c in policy.conduits if c.name == origin)


def is_member(asset: Asset, endpoint: Endpoint) -> bool:
    return asset.name == endpoint.name if endpoint.kind == "asset" else asset.zone == endpoint.name


def _conduit_allows(policy: Policy, conduit: Conduit, src: Asset, dst: Asset, packet: Packet) -> bool:
    matches = [m for name in conduit.services for m in policy.service(name).matches]
    roles = [(conduit.sources, conduit.destinations)]
    if conduit.bidirectional:
        roles.append((conduit.destinations, conduit.sources))
    for initiators, responders in roles:
        forward = any(is_member(src, i) for i in initiators) and any(is_member(dst, r) for r in responders)
        backward = any(is_member(src, r) for r in responders) and any(is_member(dst, i) for i in initiators)
        if _allows(matches, forward, backward, src, dst, packet, conduit.stateful, conduit.groups):
            return True
    return False


def tracks(policy: Policy, src: Asset, dst: Asset, packet: Packet) -> bool:
    """Does this packet open (or continue) a connection of a stateful conduit? True when a
    stateful conduit allows it in its forward direction as TCP or UDP, unfragmented."""
    if packet.eth_type != ETH_IPV4 or packet.fragment != "no" or packet.ip_proto not in (6, 17):
        return False
    for conduit in policy.conduits:
        if not conduit.stateful:
            continue
        matches = [m for name in conduit.services for m in policy.service(name).matches
                   if m.protocol in ("tcp", "udp")]
        roles = [(conduit.sources, conduit.destinations)]
        if conduit.bidirectional:
            roles.append((conduit.destinations, conduit.sources))
        for initiators, responders in roles:
            if (any(is_member(src, i) for i in initiators) and any(is_member(dst, r) for r in responders)
                    and any(_forward_match(m, packet) for m in matches)):
                return True
    return False


def _intra_allows(policy: Policy, zone_name: str, src: Asset, dst: Asset, packet: Packet) -> bool:
    zone = policy.zone(zone_name)
    if zone.intra is Intra.ALLOW:
        return not packet.multicast  # multicast delivery needs a named L2 service
    if zone.intra is Intra.SERVICES:
        matches = [m for name in zone.intra_services for m in policy.service(name).matches]
        return _allows(matches, True, True, src, dst, packet)
    return False


def _allows(matches: list[ServiceMatch], forward: bool, backward: bool, src: Asset, dst: Asset,
            packet: Packet, stateful: bool = False, groups: tuple[str, ...] = ()) -> bool:
    if not (forward or backward):
        return False
    if packet.eth_type == ETH_ARP:
        return any(m.is_ip for m in matches) and src.ip is not None and dst.ip is not None
    if packet.eth_type == ETH_IPV4 and packet.multicast:
        return forward and dst.ip is not None and any(_group_match(m, packet, groups) for m in matches)
    for match in matches:
        if forward and _forward_match(match, packet):
            return True
        if backward and stateful and match.protocol in ("tcp", "udp"):
            if _stateful_reply_match(match, packet):
                return True
        elif backward and _reply_match(match, packet):
            return True
    return False


_PROTOCOL_NUMBERS = {"icmp": 1, "tcp": 6, "udp": 17}


def _later_fragment_of(match: ServiceMatch, packet: Packet) -> bool:
    """A later fragment belongs to a relation that carries its IP protocol (either direction)."""
    return packet.fragment == "later" and _PROTOCOL_NUMBERS.get(match.protocol) == packet.ip_proto


def _forward_match(match: ServiceMatch, packet: Packet) -> bool:
    if match.protocol == "ethertype":
        return packet.eth_type == match.low
    if packet.eth_type != ETH_IPV4 or packet.multicast:
        return False
    if packet.fragment == "later":
        return _later_fragment_of(match, packet)
    if match.protocol == "icmp":
        return packet.ip_proto == 1 and packet.icmp_type == ICMP_ECHO_REQUEST
    proto = 6 if match.protocol == "tcp" else 17
    return packet.ip_proto == proto and match.low <= packet.dst_port <= match.high


def _group_match(match: ServiceMatch, packet: Packet, groups: tuple[str, ...]) -> bool:
    """A datagram to one of the conduit's groups, sent to the group's own MAC, for one of its UDP
    services, whole (a fragmented multicast datagram is never delivered)."""
    return (match.protocol == "udp" and packet.group != "" and packet.group in groups and packet.fragment == "no"
            and packet.ip_proto == 17 and match.low <= packet.dst_port <= match.high)


def _reply_match(match: ServiceMatch, packet: Packet) -> bool:
    """A reply goes from the service port back to one of the initiator's client ports; TCP
    replies carry ACK. ICMP destination-unreachable from the responder belongs to TCP and UDP
    sessions (port unreachable, fragmentation needed)."""
    if packet.eth_type != ETH_IPV4 or packet.multicast or match.protocol == "ethertype":
        return False
    if packet.fragment == "later":
        return _later_fragment_of(match, packet)
    if match.protocol == "icmp":
        return packet.ip_proto == 1 and packet.icmp_type == ICMP_ECHO_REPLY
    if packet.ip_proto == 1 and packet.icmp_type == ICMP_UNREACHABLE:
        return True
    if not (match.low <= packet.src_port <= match.high and match.client_port(packet.dst_port)):
        return False
    if match.protocol == "tcp":
        return packet.ip_proto == 6 and bool(packet.tcp_flags & TCP_ACK)
    return packet.ip_proto == 17


def _stateful_reply_match(match: ServiceMatch, packet: Packet) -> bool:
    """A reply of a stateful conduit: from the service port within a connection the initiator
    opened, whatever its client port; TCP with ACK. ICMP destination-unreachable only when it
    is about such a connection. Fragments are not tracked: a first fragment is dropped, a later
    one is judged as for any conduit (it cannot be used without its first)."""
    if packet.eth_type != ETH_IPV4 or packet.multicast:
        return False
    if packet.fragment == "later":
        return _later_fragment_of(match, packet)
    if packet.fragment == "first":
        return False
    if packet.ip_proto == 1 and packet.icmp_type == ICMP_UNREACHABLE:
        return packet.related
    if not (packet.established and match.low <= packet.src_port <= match.high):
        return False
    if match.protocol == "tcp":
        return packet.ip_proto == 6 and bool(packet.tcp_flags & TCP_ACK)
    return packet.ip_proto == 17
