"""Which probes the lab sends and what the policy says each must do.

Expectations come from the reference verdict (controller.core.verdict.decide), never from
the compiled tables: the lab checks the whole chain (compiler, controller, switches)
against the policy itself. A connection-style probe (TCP connect, UDP request/reply, ping)
needs both directions, so its expectation is the verdict on the request AND on the reply.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from itertools import count

from os_ken.lib.packet import arp, ethernet, ipv4, packet, tcp

from controller.core.frames import Frame
from controller.core.model import Asset, Policy, ServiceMatch
from controller.core.topology import PortRef
from controller.lab.attacks import containment_attacks
from controller.lab.craft import frame_bytes
from controller.core.verdict import ETH_ARP, ETH_IPV4, Packet, decide, tracks
from controller.lab.network import LabHostInfo

TOKEN = b"OTSEG-PROBE:"
GROUP_MAC = "01:0c:cd:01:00:01"
UNLISTED_GROUP = "239.255.0.99"  # no conduit's group
EPHEMERAL = 40000
SCAN_PORTS = (21, 22, 23, 25, 53, 80, 102, 135, 139, 161, 443, 445, 502, 1883, 2222, 2404, 3389, 4840, 5094,
              5450, 8080, 9600, 20000, 44818, 47808)


@dataclass
class Probe:
    id: str
    source: str
    kind: str  # tcp | udp | icmp | raw
    category: str  # pair | multicast | attack
    label: str
    target: str = ""  # the destination host, for pair probes
    ip: str = ""
    port: int = 0
    frame: bytes = b""
    expected: bool | frozenset[str] = False  # bool for tcp/udp/icmp; receiving hosts for raw
    observed: bool | frozenset[str] | None = None

    @property
    def matches(self) -> bool:
        return self.observed == self.expected

    def spec(self) -> dict[str, object]:
        item: dict[str, object] = {"id": self.id, "kind": self.kind}
        if self.kind == "raw":
            item["frame"] = self.frame.hex()
        else:
            item.update(ip=self.ip, port=self.port, token=self.id)
        return item


@dataclass
class ProbePlan:
    probes: list[Probe] = field(default_factory=list)
    listen_tcp: set[int] = field(default_factory=set)
    listen_udp: set[int] = field(default_factory=set)


class Planner:
    def __init__(self, policy: Policy, hosts: list[LabHostInfo], located: dict[str, PortRef] | None = None) -> None:
        self.policy = policy
        self.located = located or {}
        self.hosts = {h.name: h for h in hosts}
        self.assets = [policy.asset(h.name) for h in hosts if h.asset]
        self.rogues = [h for h in hosts if not h.asset]
        self._ids = count(1)
        self.plan = ProbePlan()

    def build(self) -> ProbePlan:
        for src in self.assets:
            for dst in self.assets:
                if src.name != dst.name:
                    self._pair(src, dst)
            self._multicast(src)
            self._ip_multicast(src)
        self._attacks()
        for attack in containment_attacks(self.policy, self.located):
            payload = self._token_payload()
            self._add_raw(attack.source, "attack", attack.label, (frame_bytes(attack.frame, payload[0]), payload[1]),
                          set(attack.expected), own_tag=False)
        return self.plan

    def _id(self) -> str:
        return f"p{next(self._ids):05d}"

    def _relevant(self, src: Asset, dst: Asset) -> list[ServiceMatch]:
        """Service elements of every conduit or intra rule touching either asset, plus ICMP."""
        names: set[str] = set()
        for conduit in self.policy.conduits:
            sides = conduit.sources + conduit.destinations
            if any(e.name in (src.name, dst.name, src.zone, dst.zone) for e in sides):
                names.update(conduit.services)
        for zone in {src.zone, dst.zone}:
            names.update(self.policy.zone(zone).intra_services)
        matches = {m for n in names for m in self.policy.service(n).matches} | {ServiceMatch("icmp")}
        return sorted(matches)

    def _pair(self, src: Asset, dst: Asset) -> None:
        for match in self._relevant(src, dst):
            if match.protocol == "ethertype":
                allowed = decide(self.policy, src, dst, Packet(match.low)).delivered
                frame = _ethernet(src.mac, dst.mac, match.low, self._token_payload())
                self._add_raw(src.name, "pair", f"{match.describe()} frame", frame, {dst.name} if allowed else set(),
                              dst.name)
                continue
            if src.ip is None or dst.ip is None:
                continue
            if match.protocol == "icmp":
                request, reply = Packet(ETH_IPV4, 1, icmp_type=8), Packet(ETH_IPV4, 1, icmp_type=0)
                kind, port = "icmp", 0
            elif match.protocol == "tcp":
                port = match.low
                request, reply = Packet(ETH_IPV4, 6, EPHEMERAL, port, 0x02), Packet(ETH_IPV4, 6, port, EPHEMERAL, 0x12)
                kind = "tcp"
                self.plan.listen_tcp.add(port)
            else:
                port = match.low
                request, reply = Packet(ETH_IPV4, 17, EPHEMERAL, port), Packet(ETH_IPV4, 17, port, EPHEMERAL)
                kind = "udp"
                self.plan.listen_udp.add(port)
            expected = _round_trip(self.policy, src, dst, request, reply)
            self.plan.probes.append(Probe(self._id(), src.name, kind, "pair", match.describe(), dst.name,
                                          dst.ip, port, expected=expected))

    def _multicast(self, src: Asset) -> None:
        used = {n for c in self.policy.conduits for n in c.services} | {
            n for z in self.policy.zones for n in z.intra_services}
        ethertypes = sorted({m.low for name in used for m in self.policy.service(name).matches
                             if m.protocol == "ethertype"})
        for ethertype in ethertypes:
            packet_ = Packet(ethertype, multicast=True)
            receivers = {d.name for d in self.assets if d.name != src.name
                         and decide(self.policy, src, d, packet_).delivered}
            frame = _ethernet(src.mac, GROUP_MAC, ethertype, self._token_payload())
            self._add_raw(src.name, "multicast", f"ethertype 0x{ethertype:04x} to {GROUP_MAC}", frame, receivers)

    def _ip_multicast(self, src: Asset) -> None:
        """UDP to every group of the policy (and one no conduit names), from every asset with an
        address, to each port a group conduit carries and one it does not; also at a group MAC
        that is not the group's own. Every lab host has joined every group (verify.Verifier)."""
        if src.ip is None:
            return
        groups = sorted({g for c in self.policy.conduits for g in c.groups})
        if not groups:
            return
        ports = sorted({m.low for c in self.policy.conduits if c.groups for n in c.services
                        for m in self.policy.service(n).matches if m.protocol == "udp"} | {9999})
        for group in groups + [UNLISTED_GROUP]:
            for port in ports:
                packet_ = Packet(ETH_IPV4, 17, EPHEMERAL, port, multicast=True, group=group)
                receivers = {d.name for d in self.assets if d.name != src.name
                             and decide(self.policy, src, d, packet_).delivered}
                sent = Frame(_group_mac(group), src.mac, (), ETH_IPV4, ipv4_src=src.ip, ipv4_dst=group, ip_proto=17,
                             udp_src=EPHEMERAL, udp_dst=port)
                payload = self._token_payload()
                self._add_raw(src.name, "multicast", f"udp to group {group}:{port}",
                              (frame_bytes(sent, payload[0]), payload[1]), receivers)
            wrong = Frame(GROUP_MAC, src.mac, (), ETH_IPV4, ipv4_src=src.ip, ipv4_dst=group, ip_proto=17,
                          udp_src=EPHEMERAL, udp_dst=ports[0])
            payload = self._token_payload()
            self._add_raw(src.name, "multicast", f"udp to group {group}:{ports[0]} at {GROUP_MAC} (not its MAC)",
                          (frame_bytes(wrong, payload[0]), payload[1]), set())

    def _attacks(self) -> None:
        ip_assets = [a for a in self.assets if a.ip]
        for attacker in self.assets:
            victim, target, port = self._allowed_tcp_example(exclude=attacker.name)
            if victim is not None and target is not None:
                self._add_raw(attacker.name, "attack", f"MAC+IP spoof as {victim.name} (tcp {port} to {target.name})",
                              _tcp_frame(victim.mac, target.mac, victim.ip, target.ip, EPHEMERAL, port, tcp.TCP_SYN,
                                         self._token_payload()), set())
                if attacker.ip:
                    self._add_raw(attacker.name, "attack", f"IP spoof as {victim.name} (tcp {port} to {target.name})",
                                  _tcp_frame(attacker.mac, target.mac, victim.ip, target.ip, EPHEMERAL, port,
                                             tcp.TCP_SYN, self._token_payload()), set())
            for claimed in ip_assets[:3]:
                if claimed.name != attacker.name:
                    self._add_raw(attacker.name, "attack", f"gratuitous ARP claiming {claimed.name}'s IP",
                                  _arp_frame(attacker.mac, claimed.ip, claimed.ip, self._token_payload()), set())
                    break
        for conduit in self.policy.conduits:
            if conduit.bidirectional:
                continue
            tcp_ports = [m.low for n in conduit.services for m in self.policy.service(n).matches if m.protocol == "tcp"]
            for port in tcp_ports[:1]:
                for initiator in self.policy.members(conduit.sources[0])[:1]:
                    for responder in self.policy.members(conduit.destinations[0])[:1]:
                        if initiator.ip and responder.ip and initiator.name != responder.name:
                            reverse = Packet(ETH_IPV4, 6, port, EPHEMERAL, 0x02)
                            allowed = decide(self.policy, responder, initiator, reverse).delivered
                            self._add_raw(responder.name, "attack",
                                          f"reverse SYN from {responder.name}:{port} to {initiator.name}",
                                          _tcp_frame(responder.mac, initiator.mac, responder.ip, initiator.ip, port,
                                                     EPHEMERAL, tcp.TCP_SYN, self._token_payload()),
                                          {initiator.name} if allowed else set())
        scanner = next((a for a in self.assets if a.ip and "plc" in a.name), None)
        if scanner is not None:
            for target in ip_assets:
                if target.name == scanner.name:
                    continue
                for port in SCAN_PORTS:
                    request = Packet(ETH_IPV4, 6, EPHEMERAL, port, 0x02)
                    reply = Packet(ETH_IPV4, 6, port, EPHEMERAL, 0x12)
                    expected = _round_trip(self.policy, scanner, target, request, reply)
                    self.plan.listen_tcp.add(port)
                    self.plan.probes.append(Probe(self._id(), scanner.name, "tcp", "attack",
                                                  f"port scan {target.name}:{port}", target.name, target.ip or "",
                                                  port, expected=expected))
        for rogue in self.rogues:
            for target in ip_assets:
                self.plan.probes.append(Probe(self._id(), rogue.name, "icmp", "attack",
                                              f"unknown host pings {target.name}", target.name, target.ip or "",
                                              expected=False))
                self._add_raw(rogue.name, "attack", f"unknown host ARPs for {target.name}",
                              _arp_frame(self.hosts[rogue.name].mac, self.hosts[rogue.name].ip or "10.255.0.1",
                                         target.ip or "", self._token_payload()), set())

    def _allowed_tcp_example(self, exclude: str) -> tuple[Asset | None, Asset | None, int]:
        for probe in self.plan.probes:
            if probe.kind == "tcp" and probe.category == "pair" and probe.expected and exclude not in (
                    probe.source, probe.target):
                return self.policy.asset(probe.source), self.policy.asset(probe.target), probe.port
        return None, None, 0

    def _add_raw(self, source: str, category: str, label: str, frame: tuple[bytes, str] | bytes,
                 receivers: set[str], target: str = "", own_tag: bool = True) -> None:
        """A crafted frame the source sends; `own_tag`: as its NIC would, with its declared VLAN
        (the containment attacks choose their tags themselves)."""
        data, token = frame if isinstance(frame, tuple) else (frame, "")
        vlan = self.policy.asset(source).vlan if own_tag and source in self.located else None
        if vlan is not None:
            data = data[:12] + struct.pack("!HH", 0x8100, vlan) + data[12:]
        self.plan.probes.append(Probe(token, source, "raw", category, label, target, frame=data,
                                      expected=frozenset(receivers)))

    def _token_payload(self) -> tuple[bytes, str]:
        token = self._id()
        return TOKEN + token.encode() + b" " + b"\0" * 16, token


def _group_mac(group: str) -> str:
    """RFC 1112: 01:00:5e and the group's low 23 bits (the lab's own copy, not the compiler's)."""
    a, b, c, d = (int(x) for x in group.split("."))
    return f"01:00:5e:{b & 0x7f:02x}:{c:02x}:{d:02x}"


def _serialise(pkt: packet.Packet, payload: tuple[bytes, str]) -> tuple[bytes, str]:
    pkt.add_protocol(payload[0])
    pkt.serialize()
    return bytes(pkt.data), payload[1]


def _ethernet(src: str, dst: str, ethertype: int, payload: tuple[bytes, str]) -> tuple[bytes, str]:
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst=dst, src=src, ethertype=ethertype))
    return _serialise(pkt, payload)


def _tcp_frame(src_mac: str, dst_mac: str, src_ip: str | None, dst_ip: str | None, sport: int, dport: int,
               bits: int, payload: tuple[bytes, str]) -> tuple[bytes, str]:
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst=dst_mac, src=src_mac, ethertype=ETH_IPV4))
    pkt.add_protocol(ipv4.ipv4(src=src_ip or "0.0.0.0", dst=dst_ip or "0.0.0.0", proto=6))
    pkt.add_protocol(tcp.tcp(src_port=sport, dst_port=dport, bits=bits, window_size=1024))
    return _serialise(pkt, payload)


def _arp_frame(src_mac: str, sender_ip: str, target_ip: str, payload: tuple[bytes, str]) -> tuple[bytes, str]:
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst="ff:ff:ff:ff:ff:ff", src=src_mac, ethertype=ETH_ARP))
    pkt.add_protocol(arp.arp(opcode=arp.ARP_REQUEST, src_mac=src_mac, src_ip=sender_ip,
                             dst_mac="00:00:00:00:00:00", dst_ip=target_ip))
    return _serialise(pkt, payload)



def _round_trip(policy: Policy, src: Asset, dst: Asset, request: Packet, reply: Packet) -> bool:
    """A connection-style probe succeeds when the request is delivered and so is its reply; the
    reply belongs to the connection the request opened where a stateful conduit tracks it."""
    if not decide(policy, src, dst, request).delivered:
        return False
    return decide(policy, dst, src, replace(reply, established=tracks(policy, src, dst, request))).delivered
