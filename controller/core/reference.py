"""The reference semantics on whole frames: which assets must receive a frame sent from a port.

Written from the policy contract alone (shared/design/policy-language.md, docs/policy.md),
never from the compiler's rules, so that tests which compare the two do not share a blind
spot. The controller judges its sampled frames with the same function, so its "allowed
traffic reached the controller" alarm and the switches can never disagree on keys.

A frame is delivered only if every step holds, in this order:
1. it is well formed and not link discovery (LLDP); untagged, or, when its source MAC is an
   asset that declares a `vlan`, with exactly one VLAN header (802.1Q or 802.1ad: Open vSwitch
   does not tell them apart) carrying that VID, any priority. Whatever it carried, it reaches
   an untagged receiver untagged and a VLAN receiver with that receiver's VID and priority 0;
2. its source is the asset bound at the ingress port: the source MAC, and for IPv4 the source
   address, for ARP the sender addresses, are that asset's own;
3. its destination is one asset: unicast to an asset's MAC, whose own address must be the
   IPv4 destination or ARP target (no relaying through a two-NIC asset, no directed
   broadcast); an ARP broadcast goes to the owner of the target address only; any other group
   address, broadcast included, goes to the receivers of the L2 service; IPv4 to a group goes
   only to an IPv4 multicast address sent to its own group MAC (01:00:5e + its low 23 bits),
   and then to the receivers of the conduits naming that group (never ARP to a group);
4. the policy's verdict (`controller.core.verdict.decide`) delivers it. For stateful conduits
   the verdict needs the connections opened so far: `Sessions` is the reference's own
   connection tracker, fed by the caller with each delivered frame (`Sessions.record`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from controller.core.frames import Frame
from controller.core.model import Asset, Policy
from controller.core.topology import PortRef
from controller.core.verdict import ETH_ARP, ETH_IPV4, Packet, Verdict, decide, tracks

ETH_LLDP = 0x88CC
TAG_TPIDS = frozenset({0x8100, 0x88A8, 0x9100})
VLAN_HEADERS = frozenset({0x8100, 0x88A8})  # what a switch parses as a VLAN header
BROADCAST = "ff:ff:ff:ff:ff:ff"


@dataclass(frozen=True)
class Judgement:
    receivers: frozenset[str]
    reason: str
    source: Asset | None = None
    destination: Asset | None = None
    verdict: Verdict | None = None

    @property
    def delivered(self) -> bool:
        return bool(self.receivers)


ConnectionKey = tuple[str, str, int, int, int]  # initiator IP, responder IP, protocol, ports


@dataclass
class Sessions:
    """Connections opened through stateful conduits: the forward frames that were delivered."""

    opened: set[ConnectionKey] = field(default_factory=set)

    @staticmethod
    def key(frame: Frame) -> ConnectionKey | None:
        if frame.eth_type != ETH_IPV4 or frame.ip_proto not in (6, 17) or frame.ip_frag != "no":
            return None
        ports = (frame.tcp_src, frame.tcp_dst) if frame.ip_proto == 6 else (frame.udp_src, frame.udp_dst)
        return (str(frame.ipv4_src), str(frame.ipv4_dst), frame.ip_proto, ports[0] or 0, ports[1] or 0)

    def established(self, frame: Frame) -> bool:
        key = self.key(frame)
        return key is not None and (key[1], key[0], key[2], key[4], key[3]) in self.opened

    def related(self, frame: Frame) -> bool:
        """An ICMP destination-unreachable from a responder about a connection opened to it (the
        quoted header is not parsed: any connection between the two addresses counts)."""
        return (frame.eth_type == ETH_IPV4 and frame.ip_proto == 1 and frame.icmp_type == 3
                and frame.ip_frag == "no"
                and any(k[0] == frame.ipv4_dst and k[1] == frame.ipv4_src for k in self.opened))

    def record(self, policy: Policy, judgement: "Judgement", frame: Frame) -> None:
        """Remember the connection a delivered frame opens through a stateful conduit."""
        if judgement.source is None or judgement.destination is None or not judgement.delivered:
            return
        key = self.key(frame)
        if key is None or self.established(frame):
            return
        if tracks(policy, judgement.source, judgement.destination, packet_of(frame)):
            self.opened.add(key)


def packet_of(frame: Frame, sessions: Sessions | None = None) -> Packet:
    """The policy's view of a frame: transport fields only where the frame carries them. An ARP
    broadcast is not multicast to the policy: it is delivered, rewritten, to the target only."""
    return Packet(frame.eth_type, frame.ip_proto or 0,
                  frame.tcp_src if frame.tcp_src is not None else (frame.udp_src or 0),
                  frame.tcp_dst if frame.tcp_dst is not None else (frame.udp_dst or 0),
                  frame.tcp_flags or 0, frame.icmp_type or 0, _group(frame),
                  frame.ip_frag if frame.eth_type == ETH_IPV4 else "no",  # type: ignore[arg-type]
                  sessions is not None and sessions.established(frame),
                  sessions is not None and sessions.related(frame),
                  _ip_group(frame))


def judge(policy: Policy, located: Mapping[str, PortRef], ingress: PortRef, frame: Frame,
          sessions: Sessions | None = None) -> Judgement:
    """Which assets must receive `frame`, sent from a device at `ingress`; `located` is where
    each asset is bound (pins and learned bindings); `sessions` the connections opened so far."""
    nobody = frozenset[str]()
    if frame.problem:
        return Judgement(nobody, f"malformed: {frame.problem}")
    claimed = policy.asset_by_mac(frame.eth_src) if frame.eth_src else None
    tag_problem = _tag_problem(frame, claimed.vlan if claimed is not None else None)
    if tag_problem:
        return Judgement(nobody, tag_problem)
    if frame.eth_type == ETH_LLDP:
        return Judgement(nobody, "link discovery: consumed by the controller, never forwarded")
    source = _source(policy, located, ingress, frame)
    if isinstance(source, str):
        return Judgement(nobody, source)
    packet = packet_of(frame, sessions)
    if _group(frame):
        if frame.eth_type == ETH_ARP:
            return Judgement(nobody, "ARP to a group address is not delivered", source)
        if frame.eth_type == ETH_IPV4 and not packet.group:
            return Judgement(nobody, f"IPv4 to group MAC {frame.eth_dst} is not the IP group {frame.ipv4_dst}'s "
                             "own MAC", source)
        receivers = frozenset(a.name for a in policy.assets if a.name in located and a.name != source.name
                              and located[a.name] != ingress and decide(policy, source, a, packet).delivered)
        return Judgement(receivers, "L2 service receivers" if receivers else "no conduit names a receiver", source)
    destination = _destination(policy, located, frame)
    if isinstance(destination, str):
        return Judgement(nobody, destination, source)
    if destination.name == source.name or located[destination.name] == ingress:
        return Judgement(nobody, "addressed to its own port", source, destination)
    verdict = decide(policy, source, destination, packet)
    receivers = frozenset({destination.name}) if verdict.delivered else nobody
    return Judgement(receivers, verdict.reason, source, destination, verdict)


def _tag_problem(frame: Frame, vlan: int | None) -> str:
    """Why a frame's tags are refused ("" when they are right for its claimed source)."""
    if vlan is None:
        if frame.tags or frame.eth_type in TAG_TPIDS:
            return "tagged frame from a host port (its source declares no VLAN)"
        return ""
    if len(frame.tags) != 1 or frame.tags[0][0] not in VLAN_HEADERS or frame.eth_type in TAG_TPIDS:
        return f"its source declares VLAN {vlan}: exactly one VLAN header with VID {vlan} is admitted"
    if frame.tags[0][1] & 0x0FFF != vlan:
        return f"VID {frame.tags[0][1] & 0x0FFF} is not its source's VLAN {vlan}"
    return ""


def _group(frame: Frame) -> bool:
    """Sent to a group address (the broadcast address included), except an ARP broadcast."""
    return frame.multicast and not (frame.eth_dst == BROADCAST and frame.eth_type == ETH_ARP)


def group_mac(group: str) -> str:
    """The MAC an IPv4 group is sent to (RFC 1112: 01:00:5e and the address's low 23 bits)."""
    octets = [int(part) for part in group.split(".")]
    return "01:00:5e:%02x:%02x:%02x" % (octets[1] & 0x7F, octets[2], octets[3])


def _ip_group(frame: Frame) -> str:
    """The IPv4 group of a frame sent to an IPv4 multicast address at that group's own MAC, else ""."""
    if frame.eth_type != ETH_IPV4 or frame.ipv4_dst is None or not _group(frame):
        return ""
    first = int(str(frame.ipv4_dst).split(".")[0])
    if not 224 <= first <= 239 or frame.eth_dst.lower() != group_mac(str(frame.ipv4_dst)):
        return ""
    return str(frame.ipv4_dst)


def _source(policy: Policy, located: Mapping[str, PortRef], ingress: PortRef, frame: Frame) -> Asset | str:
    asset = policy.asset_by_mac(frame.eth_src) if frame.eth_src else None
    if asset is None:
        return "unknown source MAC"
    if located.get(asset.name) != ingress:
        return f"asset {asset.name} is not bound at this port"
    if frame.eth_type == ETH_IPV4 and (asset.ip is None or frame.ipv4_src != asset.ip):
        return f"IPv4 source {frame.ipv4_src} is not {asset.name}'s"
    if frame.eth_type == ETH_ARP and (asset.ip is None or frame.arp_spa != asset.ip or frame.arp_sha != asset.mac):
        return f"ARP sender {frame.arp_spa}/{frame.arp_sha} is not {asset.name}'s"
    return asset


def _destination(policy: Policy, located: Mapping[str, PortRef], frame: Frame) -> Asset | str:
    if frame.eth_dst == BROADCAST:
        if frame.eth_type != ETH_ARP:
            return "broadcast other than ARP"
        target = policy.asset_by_ip(frame.arp_tpa) if frame.arp_tpa else None
        if target is None or target.name not in located:
            return f"ARP for {frame.arp_tpa}: no located asset has it"
        return target
    asset = policy.asset_by_mac(frame.eth_dst)
    if asset is None or asset.name not in located:
        return "destination MAC is no located asset's"
    if frame.eth_type == ETH_IPV4 and (asset.ip is None or frame.ipv4_dst != asset.ip):
        return f"IPv4 destination {frame.ipv4_dst} is not {asset.name}'s address"
    if frame.eth_type == ETH_ARP and (asset.ip is None or frame.arp_tpa != asset.ip):
        return f"ARP target {frame.arp_tpa} is not {asset.name}'s address"
    return asset
