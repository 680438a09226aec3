"""Containment attacks for the lab: frames a device on a switch port crafts to walk around segments.

Each attack is derived from a frame the policy delivers, with one field changed, so that the
only reason for it to be dropped is that field: a VLAN tag (802.1Q, priority tags, 802.1ad,
0x9100), a foreign IPv4 destination behind an allowed peer's MAC (another asset, an address
nobody has, the directed broadcast), a reply from the service port to a port that is not a
client port (the initiator's SSH, telnet or SNMP), a later IP fragment, a unicast ARP for another
address. The expected receivers come from the reference semantics on the frame itself.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator

from controller.core.frames import Frame
from controller.core.model import Asset, Policy
from controller.core.reference import judge
from controller.core.topology import PortRef

TAG_STACKS: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = (
    ("802.1Q VID 0", ((0x8100, 0x0000),)),
    ("802.1Q VID 100 PCP 7", ((0x8100, 0xE064),)),
    ("802.1ad+802.1Q priority tags", ((0x88A8, 0x0000), (0x8100, 0x0000))),
    ("double 802.1Q priority tags", ((0x8100, 0x0000), (0x8100, 0x0000))),
    ("0x9100 tag", ((0x9100, 0x0000),)),
)
FOREIGN_IP = "192.0.2.77"


def vlan_asset_stacks(vlan: int | None) -> tuple[tuple[str, tuple[tuple[int, int], ...]], ...]:
    """What an asset that declares a VLAN may try besides the generic stacks: no tag, its VID at
    top priority, its VID in an 802.1ad header, its VID with a second tag behind it."""
    if vlan is None:
        return ()
    return (("no tag (it declares VLAN)", ()), (f"its VID {vlan} at PCP 7", ((0x8100, 0xE000 | vlan),)),
            (f"its VID {vlan} as 802.1ad", ((0x88A8, vlan),)),
            (f"its VID {vlan} and an inner tag", ((0x8100, vlan), (0x8100, 0x0064))))
EPHEMERAL = 40000


@dataclass(frozen=True)
class Attack:
    label: str  # "<kind>: <detail>"
    source: str  # the host that sends it
    frame: Frame
    expected: frozenset[str]


def own_tags(asset: Asset) -> tuple[tuple[int, int], ...]:
    """The tag an asset's NIC puts on its frames: its declared VLAN, or none."""
    return ((0x8100, asset.vlan),) if asset.vlan is not None else ()


def _tcp(src: Asset, dst: Asset, sport: int, dport: int, flags: int) -> Frame:
    return Frame(dst.mac, src.mac, own_tags(src), 0x0800, ipv4_src=src.ip, ipv4_dst=dst.ip, ip_proto=6, tcp_src=sport,
                 tcp_dst=dport, tcp_flags=flags)


def _udp(src: Asset, dst: Asset, sport: int, dport: int) -> Frame:
    return Frame(dst.mac, src.mac, own_tags(src), 0x0800, ipv4_src=src.ip, ipv4_dst=dst.ip, ip_proto=17, udp_src=sport,
                 udp_dst=dport)


def containment_attacks(policy: Policy, located: dict[str, PortRef]) -> Iterator[Attack]:
    def attack(label: str, source: Asset, frame: Frame) -> Attack:
        return Attack(label, source.name, frame, judge(policy, located, located[source.name], frame).receivers)

    addresses = sorted(a.ip for a in policy.assets if a.ip and a.name in located)
    seen_services: set[tuple[str, str, str]] = set()
    for conduit in policy.conduits:
        if conduit.bidirectional:
            continue
        for initiator in policy.members(conduit.sources[0])[:1]:
            for responder in policy.members(conduit.destinations[0])[:1]:
                if initiator.name == responder.name or not (initiator.ip and responder.ip) or \
                        initiator.name not in located or responder.name not in located:
                    continue
                for match in (m for n in conduit.services for m in policy.service(n).matches if m.has_ports):
                    key = (initiator.name, responder.name, match.protocol)
                    if key in seen_services:
                        continue
                    seen_services.add(key)
                    client = EPHEMERAL if match.client_port(EPHEMERAL) else match.clients[0][0]
                    if match.protocol == "tcp":
                        request = _tcp(initiator, responder, client, match.low, 0x02)
                        replies = [(f"tcp {match.low} -> 22 psh-ack", _tcp(responder, initiator, match.low, 22, 0x18)),
                                   (f"tcp {match.low} -> 23 syn-ack", _tcp(responder, initiator, match.low, 23,
                                                                          0x12))]
                    else:
                        request = _udp(initiator, responder, client, match.low)
                        replies = [(f"udp {match.low} -> 161", _udp(responder, initiator, match.low, 161))]
                    for detail, frame in replies:
                        yield attack(f"responder-initiated: {responder.name} to {initiator.name} {detail}", responder,
                                     frame)
                    yield from _variants(attack, policy, initiator, responder, request, addresses)
                    later = replace(request, eth_dst=initiator.mac, eth_src=responder.mac, tags=own_tags(responder),
                                    ipv4_src=responder.ip,
                                    ipv4_dst=initiator.ip, ip_proto=1, ip_frag="later", tcp_src=None, tcp_dst=None,
                                    tcp_flags=None, udp_src=None, udp_dst=None)
                    yield attack(f"later fragment: icmp from {responder.name} to {initiator.name}", responder, later)


def _variants(attack: object, policy: Policy, initiator: Asset, responder: Asset, request: Frame,
              addresses: list[str]) -> Iterator[Attack]:
    make = attack  # type: ignore[assignment]
    for what, tags in TAG_STACKS + vlan_asset_stacks(initiator.vlan):
        yield make(f"VLAN tag: {initiator.name} to {responder.name} with {what}", initiator,  # type: ignore[operator]
                   replace(request, tags=tags))
    others = [ip for ip in addresses if ip not in (initiator.ip, responder.ip)][:1]
    directed = ".".join((responder.ip or "0.0.0.0").split(".")[:2]) + ".255.255"
    for other in others + [FOREIGN_IP, directed]:
        yield make(f"foreign destination IP: {initiator.name} to {responder.name}'s MAC, IPv4 {other}",  # type: ignore[operator]
                   initiator, replace(request, ipv4_dst=other))
    for other in others:
        arp = Frame(responder.mac, initiator.mac, own_tags(initiator), 0x0806, arp_op=1, arp_sha=initiator.mac,
                    arp_spa=initiator.ip,
                    arp_tha="00:00:00:00:00:00", arp_tpa=other)
        yield make(f"misaddressed ARP: {initiator.name} to {responder.name}'s MAC for {other}", initiator, arp)  # type: ignore[operator]
