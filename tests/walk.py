"""The allow/deny matrix: every (source, destination, probe) walked through compiled tables
and compared with the policy's reference verdict (controller.core.verdict.decide).
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.core.compiler import compile_tables, locate_assets
from controller.core.model import Asset, Policy, ServiceMatch
from controller.core.topology import PortRef, Topology
from controller.core.verdict import ETH_ARP, ETH_IPV4, Packet, decide
from tests.sim import Headers, Network, WalkResult

GROUP_MAC = "01:0c:cd:01:00:01"
BROADCAST = "ff:ff:ff:ff:ff:ff"
UNKNOWN_MAC = "02:de:ad:be:ef:01"
EPHEMERAL = 40000


@dataclass(frozen=True)
class Mismatch:
    source: str
    destination: str
    probe: str
    expected: object
    observed: object

    def __str__(self) -> str:
        return f"{self.source} -> {self.destination} [{self.probe}]: expected {self.expected}, observed {self.observed}"


def probes(policy: Policy) -> list[tuple[str, Packet]]:
    """Unicast probes for every service element the policy uses, plus some it does not."""
    matches: set[ServiceMatch] = {ServiceMatch("tcp", 8080, 8080), ServiceMatch("udp", 9999, 9999),
                                  ServiceMatch("icmp"), ServiceMatch("ethertype", 0x9000, 0x9000)}
    for service in policy.services:
        used = any(service.name in c.services for c in policy.conduits) or any(
            service.name in z.intra_services for z in policy.zones)
        if used:
            matches.update(service.matches)
    result: list[tuple[str, Packet]] = [("arp", Packet(ETH_ARP))]
    for match in sorted(matches):
        if match.protocol == "ethertype":
            result.append((match.describe(), Packet(match.low)))
        elif match.protocol == "icmp":
            result.append(("icmp echo request", Packet(ETH_IPV4, 1, icmp_type=8)))
            result.append(("icmp echo reply", Packet(ETH_IPV4, 1, icmp_type=0)))
        else:
            proto = 6 if match.protocol == "tcp" else 17
            for port in sorted({match.low, match.high}):
                if proto == 6:
                    result += [
                        (f"tcp syn to {port}", Packet(ETH_IPV4, 6, EPHEMERAL, port, 0x02)),
                        (f"tcp ack to {port}", Packet(ETH_IPV4, 6, EPHEMERAL, port, 0x10)),
                        (f"tcp syn-ack from {port}", Packet(ETH_IPV4, 6, port, EPHEMERAL, 0x12)),
                        (f"tcp reverse syn from {port}", Packet(ETH_IPV4, 6, port, EPHEMERAL, 0x02)),
                        (f"tcp fin (no ack) from {port}", Packet(ETH_IPV4, 6, port, EPHEMERAL, 0x01)),
                    ]
                else:
                    result += [(f"udp to {port}", Packet(ETH_IPV4, 17, EPHEMERAL, port)),
                               (f"udp from {port}", Packet(ETH_IPV4, 17, port, EPHEMERAL))]
    return result


def multicast_ethertypes(policy: Policy) -> list[int]:
    types = {m.low for s in policy.services for m in s.matches if m.protocol == "ethertype"}
    return sorted(types | {0x9000})


def frame(src: Asset, dst: Asset, packet: Packet) -> Headers:
    headers: Headers = {"eth_src": src.mac, "eth_dst": dst.mac, "eth_type": packet.eth_type}
    if packet.eth_type == ETH_ARP:
        headers.update(eth_dst=BROADCAST, arp_op=1, arp_spa=src.ip, arp_sha=src.mac, arp_tpa=dst.ip)
    elif packet.eth_type == ETH_IPV4:
        headers.update(ipv4_src=src.ip, ipv4_dst=dst.ip, ip_proto=packet.ip_proto)
        if packet.ip_proto == 6:
            headers.update(tcp_src=packet.src_port, tcp_dst=packet.dst_port, tcp_flags=packet.tcp_flags)
        elif packet.ip_proto == 17:
            headers.update(udp_src=packet.src_port, udp_dst=packet.dst_port)
        elif packet.ip_proto == 1:
            headers.update(icmpv4_type=packet.icmp_type)
    if packet.multicast:
        headers["eth_dst"] = GROUP_MAC
    return headers


class Matrix:
    """Compiles once, then answers walks for one policy on one topology."""

    def __init__(self, policy: Policy, topology: Topology) -> None:
        self.policy = policy
        self.topology = topology
        self.tables = compile_tables(policy, topology)
        self.network = Network(self.tables, topology)
        self.located = locate_assets(policy, topology)
        self.at_port: dict[PortRef, list[Asset]] = {}
        for name, where in self.located.items():
            self.at_port.setdefault(where, []).append(policy.asset(name))
        self.walks = 0

    def send(self, src: Asset, headers: Headers, where: PortRef | None = None) -> WalkResult:
        self.walks += 1
        return self.network.send(where or self.located[src.name], headers)

    def receivers(self, result: WalkResult) -> set[str]:
        """Assets that accept a delivered frame (addressed to their MAC, or to a group)."""
        names: set[str] = set()
        for where, headers in result.delivered:
            for asset in self.at_port.get(where, []):
                eth_dst = str(headers["eth_dst"])
                if eth_dst == asset.mac or int(eth_dst[:2], 16) & 1:
                    names.add(asset.name)
        return names

    def check_unicast(self) -> list[Mismatch]:
        mismatches: list[Mismatch] = []
        located = [self.policy.asset(n) for n in sorted(self.located)]
        all_probes = probes(self.policy)
        for src in located:
            for dst in located:
                if src.name == dst.name:
                    continue
                for label, packet in all_probes:
                    is_ip = packet.eth_type in (ETH_IPV4, ETH_ARP)
                    if is_ip and (src.ip is None or dst.ip is None):
                        continue
                    expected = decide(self.policy, src, dst, packet).delivered
                    result = self.send(src, frame(src, dst, packet))
                    observed = dst.name in self.receivers(result)
                    strays = self.receivers(result) - {dst.name}
                    if expected != observed or strays:
                        mismatches.append(Mismatch(src.name, dst.name, label, expected,
                                                   f"{observed}, also to {sorted(strays)}" if strays else observed))
        return mismatches

    def check_multicast(self) -> list[Mismatch]:
        mismatches: list[Mismatch] = []
        located = [self.policy.asset(n) for n in sorted(self.located)]
        for src in located:
            for ethertype in multicast_ethertypes(self.policy):
                packet = Packet(ethertype, multicast=True)
                expected = {d.name for d in located if d.name != src.name
                            and decide(self.policy, src, d, packet).delivered}
                observed = self.receivers(self.send(src, frame(src, src, packet)))
                if expected != observed:
                    mismatches.append(Mismatch(src.name, GROUP_MAC, f"ethertype 0x{ethertype:04x} multicast",
                                               sorted(expected), sorted(observed)))
        return mismatches

    def check_attacks(self, free_port: PortRef | None) -> list[Mismatch]:
        """Spoofed and unknown frames reach nobody, even where the genuine frame would pass.

        Each spoof is derived from a frame the policy allows, so the only reason for it to
        be dropped is the spoofed field itself.
        """
        mismatches: list[Mismatch] = []
        located = [self.policy.asset(n) for n in sorted(self.located)]
        allowed = self._allowed_examples(located)
        for src in located:
            for label, headers, where in self._attacks(src, located, allowed, free_port):
                observed = self.receivers(self.network.send(where, headers))
                if observed:
                    mismatches.append(Mismatch(src.name, str(headers.get("eth_dst")), label, [], sorted(observed)))
        return mismatches

    def _allowed_examples(self, located: list[Asset]) -> dict[str, list[tuple[Asset, Packet]]]:
        """Per source asset: (destination, packet) pairs that the policy delivers."""
        examples: dict[str, list[tuple[Asset, Packet]]] = {}
        all_probes = probes(self.policy)
        for src in located:
            found: list[tuple[Asset, Packet]] = []
            for dst in located:
                if dst.name == src.name:
                    continue
                for _, packet in all_probes:
                    if packet.eth_type in (ETH_IPV4, ETH_ARP) and (src.ip is None or dst.ip is None):
                        continue
                    if decide(self.policy, src, dst, packet).delivered:
                        found.append((dst, packet))
            examples[src.name] = found
        return examples

    def _attacks(self, src: Asset, located: list[Asset], allowed: dict[str, list[tuple[Asset, Packet]]],
                 free_port: PortRef | None) -> list[tuple[str, Headers, PortRef]]:
        home = self.located[src.name]
        attacks: list[tuple[str, Headers, PortRef]] = []
        ip_examples = [(d, p) for d, p in allowed[src.name] if p.eth_type == ETH_IPV4]
        arp_examples = [(d, p) for d, p in allowed[src.name] if p.eth_type == ETH_ARP]
        for victim in located:
            if victim.name == src.name:
                continue
            # The victim's own allowed traffic, sent from the attacker's port with the victim's MAC.
            for dst, packet in _one_per_kind(allowed[victim.name], exclude=src.name):
                attacks.append((f"MAC spoof of {victim.name} ({packet.describe()})", frame(victim, dst, packet), home))
                if free_port is not None:
                    attacks.append((f"{victim.name} frame from a foreign port ({packet.describe()})",
                                    frame(victim, dst, packet), free_port))
            if victim.ip is None:
                continue
            for dst, packet in ip_examples[:2]:
                if dst.name != victim.name:
                    spoof = frame(src, dst, packet)
                    spoof["ipv4_src"] = victim.ip
                    attacks.append((f"IP spoof as {victim.name} ({packet.describe()})", spoof, home))
            for dst, packet in arp_examples[:1]:
                if dst.name == victim.name:
                    continue
                for field, value, what in (("arp_spa", victim.ip, "sender IP"), ("arp_sha", victim.mac, "sender MAC")):
                    spoof = frame(src, dst, packet)
                    spoof[field] = value
                    attacks.append((f"ARP with {victim.name}'s {what}", spoof, home))
                gratuitous = frame(src, dst, packet)
                gratuitous.update(arp_spa=victim.ip, arp_tpa=victim.ip)
                attacks.append((f"gratuitous ARP claiming {victim.name}'s IP", gratuitous, home))
        unknown = {"eth_src": UNKNOWN_MAC, "eth_dst": BROADCAST, "eth_type": ETH_ARP, "arp_op": 1,
                   "arp_spa": "10.255.0.1", "arp_sha": UNKNOWN_MAC, "arp_tpa": src.ip or "10.255.0.2"}
        attacks.append(("unknown MAC on an asset port", unknown, home))
        if free_port is not None:
            attacks.append(("unknown MAC on a free port", unknown, free_port))
        for dst, packet in allowed[src.name][:1]:
            unknown_unicast = frame(src, dst, packet)
            unknown_unicast["eth_src"] = UNKNOWN_MAC
            attacks.append(("unknown MAC, allowed packet otherwise", unknown_unicast, home))
        return attacks


def _one_per_kind(examples: list[tuple[Asset, Packet]], exclude: str) -> list[tuple[Asset, Packet]]:
    """The first allowed example of each frame kind (ARP, IPv4, other ethertypes)."""
    chosen: dict[int, tuple[Asset, Packet]] = {}
    for dst, packet in examples:
        kind = packet.eth_type if packet.eth_type in (ETH_ARP, ETH_IPV4) else 0
        if dst.name != exclude and kind not in chosen:
            chosen[kind] = (dst, packet)
    return list(chosen.values())
