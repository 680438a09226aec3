"""The allow/deny matrix: frames walked through compiled tables, judged by the reference.

Every frame is built as a real frame would be (`controller.core.frames.Frame`), turned into
the fields Open vSwitch extracts from it (`controller.verify.walk.ovs_key`), walked through the compiled
tables of every switch on its way, and compared with `controller.core.reference.judge`, which
reads the policy alone. A mismatch is any difference between the ports a frame leaves by and
the ports of the assets that must receive it: a frame that also leaves by any other port is
a mismatch, whatever its MAC (a copy to an extra port is caught, not only a wrong receiver).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from controller.core.compiler import compile_tables, locate_assets
from controller.core.frames import Frame
from controller.core.model import Asset, Policy, ServiceMatch
from controller.core.reference import Sessions, judge
from controller.core.topology import PortRef, Topology
from controller.core.verdict import ETH_ARP, ETH_IPV4, Packet
from controller.lab.attacks import TAG_STACKS, vlan_asset_stacks  # the tag stacks an attacker sends
from controller.core.pipeline import VID_PRESENT
from controller.verify.walk import Network, WalkResult, ovs_key

GROUP_MAC = "01:0c:cd:01:00:01"
BROADCAST = "ff:ff:ff:ff:ff:ff"
UNKNOWN_MAC = "02:de:ad:be:ef:01"
EPHEMERAL = 40000
FOREIGN_IP = "192.0.2.77"  # no asset's address
DIRECTED_BROADCAST = "10.255.255.255"
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
    """Probes for every service element the policy uses, plus some it does not: requests,
    replies to client and to non-client ports, reverse SYNs, fragments, ICMP errors."""
    matches: set[ServiceMatch] = {ServiceMatch("tcp", 8080, 8080), ServiceMatch("udp", 9999, 9999),
                                  ServiceMatch("icmp"), ServiceMatch("ethertype", 0x9000, 0x9000)}
    for service in policy.services:
        used = any(service.name in c.services for c in policy.conduits) or any(
            service.name in z.intra_services for z in policy.zones)
        if used:
            matches.update(service.matches)
    result: list[tuple[str, Packet]] = [("arp", Packet(ETH_ARP))]
    for proto in (1, 6, 17):
        result.append((f"ip proto {proto} later fragment", Packet(ETH_IPV4, proto, fragment="later")))
    result += [("icmp unreachable", Packet(ETH_IPV4, 1, icmp_type=3)),
               ("icmp time exceeded", Packet(ETH_IPV4, 1, icmp_type=11)),
               ("gre", Packet(ETH_IPV4, 47))]
    for match in sorted(matches):
        if match.protocol == "ethertype":
            result.append((match.describe(), Packet(match.low)))
        elif match.protocol == "icmp":
            result.append(("icmp echo request", Packet(ETH_IPV4, 1, icmp_type=8)))
            result.append(("icmp echo reply", Packet(ETH_IPV4, 1, icmp_type=0)))
        else:
            proto = 6 if match.protocol == "tcp" else 17
            client = match.clients[0][0] if match.clients[0][0] == match.clients[0][1] else EPHEMERAL
            for port in sorted({match.low, match.high}):
                if proto == 6:
                    result += [
                        (f"tcp syn to {port}", Packet(ETH_IPV4, 6, client, port, 0x02)),
                        (f"tcp syn to {port} (first fragment)", Packet(ETH_IPV4, 6, client, port, 0x02,
                                                                        fragment="first")),
                        (f"tcp ack to {port}", Packet(ETH_IPV4, 6, client, port, 0x10)),
                        (f"tcp syn-ack from {port}", Packet(ETH_IPV4, 6, port, client, 0x12)),
                        (f"tcp reverse syn from {port}", Packet(ETH_IPV4, 6, port, client, 0x02)),
                        (f"tcp fin (no ack) from {port}", Packet(ETH_IPV4, 6, port, client, 0x01)),
                        (f"tcp psh-ack from {port} to 22", Packet(ETH_IPV4, 6, port, 22, 0x18)),
                        (f"tcp syn-ack from {port} to 1023", Packet(ETH_IPV4, 6, port, 1023, 0x12)),
                        (f"tcp syn-ack from {port} to 3389", Packet(ETH_IPV4, 6, port, 3389, 0x12)),
                    ]
                else:
                    result += [(f"udp to {port}", Packet(ETH_IPV4, 17, client, port)),
                               (f"udp from {port}", Packet(ETH_IPV4, 17, port, client)),
                               (f"udp from {port} to 161", Packet(ETH_IPV4, 17, port, 161)),
                               (f"udp from {port} to 1024", Packet(ETH_IPV4, 17, port, 1024))]
    return result


def multicast_ethertypes(policy: Policy) -> list[int]:
    types = {m.low for s in policy.services for m in s.matches if m.protocol == "ethertype"}
    return sorted(types | {0x9000})


FOREIGN_GROUP = "239.255.0.99"  # no conduit's group


def mac_of_group(group: str) -> str:
    """RFC 1112's mapping, written here again (not imported from the code under test)."""
    a, b, c, d = (int(x) for x in group.split("."))
    return f"01:00:5e:{b & 0x7f:02x}:{c:02x}:{d:02x}"


def alias(group: str) -> str:
    """Another group with the same MAC (the mapping drops 5 bits: 32 groups share a MAC)."""
    a, b, c, d = (int(x) for x in group.split("."))
    return f"{224 + (a - 223) % 16}.{b ^ 0x80}.{c}.{d}"


def ip_group_probes(policy: Policy, src: Asset) -> list[tuple[str, Frame]]:
    """IPv4 to every group of the policy (and one no conduit names): UDP to each port the policy
    uses and one it does not, as sent correctly, to a wrong group MAC, to another group's MAC,
    to the broadcast MAC, fragmented, as TCP, and IGMP joins."""
    groups = sorted({g for c in policy.conduits for g in c.groups}) + [FOREIGN_GROUP]
    ports = sorted({p for s in policy.services for m in s.matches if m.protocol == "udp" for p in (m.low, m.high)}
                   | {9999})
    probes: list[tuple[str, Frame]] = []
    for group in groups:
        other = next((g for g in groups if g != group), FOREIGN_GROUP)
        tag = ((0x8100, src.vlan),) if src.vlan is not None else ()
        base = Frame(mac_of_group(group), src.mac, tag, ETH_IPV4, ipv4_src=src.ip, ipv4_dst=group, ip_proto=17,
                     udp_src=EPHEMERAL)
        for port in ports:
            udp = replace(base, udp_dst=port)
            probes += [(f"udp to group {group}:{port}", udp),
                       (f"udp to group {group}:{port} at {GROUP_MAC}", replace(udp, eth_dst=GROUP_MAC)),
                       (f"udp to group {group}:{port} at {other}'s MAC", replace(udp, eth_dst=mac_of_group(other))),
                       (f"udp to group {group}:{port} at the broadcast MAC", replace(udp, eth_dst=BROADCAST)),
                       (f"udp to group {group}:{port} (first fragment)", replace(udp, ip_frag="first")),
                       (f"tcp to group {group}:{port}", replace(base, ip_proto=6, udp_src=None, tcp_src=EPHEMERAL,
                                                               tcp_dst=port, tcp_flags=0x02)),
                       (f"udp to {alias(group)}:{port}, an alias of {group}'s MAC",
                        replace(udp, ipv4_dst=alias(group)))]
        probes.append((f"udp later fragment to group {group}", replace(base, udp_src=None, ip_frag="later")))
        probes.append((f"IGMP join of {group}", replace(base, eth_dst=mac_of_group("224.0.0.22"), ipv4_dst="224.0.0.22",
                                                        ip_proto=2, udp_src=None)))
    return probes


def frame(src: Asset, dst: Asset, packet: Packet) -> Frame:
    """The frame `src` sends to `dst` for `packet` (ARP: a broadcast request for dst's address),
    tagged with its VID when it declares a VLAN."""
    sent = _untagged_frame(src, dst, packet)
    return replace(sent, tags=((0x8100, src.vlan),)) if src.vlan is not None else sent


def _untagged_frame(src: Asset, dst: Asset, packet: Packet) -> Frame:
    eth_dst = GROUP_MAC if packet.multicast else dst.mac
    if packet.eth_type == ETH_ARP:
        return Frame(BROADCAST, src.mac, (), ETH_ARP, arp_op=1, arp_sha=src.mac, arp_spa=src.ip,
                     arp_tha="00:00:00:00:00:00", arp_tpa=dst.ip)
    if packet.eth_type != ETH_IPV4:
        return Frame(eth_dst, src.mac, (), packet.eth_type)
    base = Frame(eth_dst, src.mac, (), ETH_IPV4, ipv4_src=src.ip, ipv4_dst=dst.ip, ip_proto=packet.ip_proto,
                 ip_frag=packet.fragment)
    if packet.fragment == "later":
        return base
    if packet.ip_proto == 6:
        return replace(base, tcp_src=packet.src_port, tcp_dst=packet.dst_port, tcp_flags=packet.tcp_flags)
    if packet.ip_proto == 17:
        return replace(base, udp_src=packet.src_port, udp_dst=packet.dst_port)
    if packet.ip_proto == 1:
        return replace(base, icmp_type=packet.icmp_type, icmp_code=0)
    return base


class Matrix:
    """Compiles once, then answers walks for one policy on one topology."""

    def __init__(self, policy: Policy, topology: Topology, tables: dict | None = None) -> None:  # type: ignore[type-arg]
        self.policy = policy
        self.topology = topology
        self.tables = compile_tables(policy, topology) if tables is None else tables
        self.network = Network(self.tables, topology)
        self.located = locate_assets(policy, topology)
        self.walks = 0
        # Stateful conduits: the reference's connections and the switches' trackers live on
        # across probes, so a reply probe after its request tests the connection's replies.
        self.sessions = Sessions()

    def walk(self, where: PortRef, sent: Frame) -> WalkResult:
        self.walks += 1
        return self.network.send(where, ovs_key(sent))

    def check(self, where: PortRef, sent: Frame, label: str, source: str, target: str) -> Mismatch | None:
        """Walk `sent` from `where`: it must leave exactly by the ports of the reference's receivers."""
        judgement = judge(self.policy, self.located, where, sent, self.sessions)
        self.sessions.record(self.policy, judgement, sent)
        expected = judgement.receivers
        result = self.walk(where, sent)
        observed = result.delivered_ports()
        want = {self.located[name] for name in expected}
        # A frame leaves untagged, or with the declared VID of the VLAN asset it is delivered to.
        vids = {self.located[n]: VID_PRESENT | a.vlan for n in expected
                if (a := self.policy.asset(n)).vlan is not None}
        tagged = [port for port, headers in result.delivered if headers.get("vlan_vid", 0) != vids.get(port, 0)]
        # A unicast (or rewritten ARP) frame must arrive addressed to its receiver's MAC; a frame to a
        # group address arrives as sent.
        group = sent.multicast and not (sent.eth_dst == BROADCAST and sent.eth_type == ETH_ARP)
        owners = {self.located[n]: sent.eth_dst if group else self.policy.asset(n).mac for n in expected}
        misaddressed = [port for port, headers in result.delivered
                        if port in owners and headers["eth_dst"] != owners[port]]
        if observed == want and not tagged and not misaddressed:
            return None
        strays = sorted(f"{p.dpid}:{p.port}" for p in observed - want)
        missing = sorted(expected - {n for n, p in self.located.items() if p in observed})
        detail = {"receivers": sorted(n for n, p in self.located.items() if p in observed)}
        if strays:
            detail["extra ports"] = strays  # type: ignore[assignment]
        if tagged:
            detail["wrongly tagged"] = sorted(f"{p.dpid}:{p.port}" for p in tagged)  # type: ignore[assignment]
        if misaddressed:
            detail["misaddressed"] = sorted(f"{p.dpid}:{p.port}" for p in misaddressed)  # type: ignore[assignment]
        return Mismatch(source, target, label, sorted(expected), detail if strays or tagged or missing else detail)

    def _located_assets(self) -> list[Asset]:
        return [self.policy.asset(n) for n in sorted(self.located)]

    def check_unicast(self) -> list[Mismatch]:
        mismatches: list[Mismatch] = []
        located = self._located_assets()
        all_probes = probes(self.policy)
        for src in located:
            for dst in located:
                if src.name == dst.name:
                    continue
                for label, packet in all_probes:
                    if packet.eth_type in (ETH_IPV4, ETH_ARP) and (src.ip is None or dst.ip is None):
                        continue
                    found = self.check(self.located[src.name], frame(src, dst, packet), label, src.name, dst.name)
                    if found:
                        mismatches.append(found)
        return mismatches

    def check_multicast(self) -> list[Mismatch]:
        mismatches: list[Mismatch] = []
        for src in self._located_assets():
            for ethertype in multicast_ethertypes(self.policy):
                sent = frame(src, src, Packet(ethertype, multicast=True))
                found = self.check(self.located[src.name], sent, f"ethertype 0x{ethertype:04x} multicast", src.name,
                                   GROUP_MAC)
                if found:
                    mismatches.append(found)
        for src in self._located_assets():
            if src.ip is None:
                continue
            for label, sent in ip_group_probes(self.policy, src):
                found = self.check(self.located[src.name], sent, label, src.name, str(sent.ipv4_dst))
                if found:
                    mismatches.append(found)
        return mismatches

    def check_attacks(self, free_port: PortRef | None) -> list[Mismatch]:
        """Spoofed, tagged, misaddressed and unknown frames, each derived from a frame the policy
        delivers, so that the only reason for a drop is the altered field itself."""
        mismatches: list[Mismatch] = []
        for label, sent, where, source in self.attacks(free_port):
            found = self.check(where, sent, label, source, sent.eth_dst)
            if found:
                mismatches.append(found)
        return mismatches

    def allowed_examples(self) -> dict[str, list[tuple[Asset, Packet]]]:
        """Per source asset: (destination, packet) pairs that the reference delivers."""
        examples: dict[str, list[tuple[Asset, Packet]]] = {}
        all_probes = probes(self.policy)
        for src in self._located_assets():
            found: list[tuple[Asset, Packet]] = []
            for dst in self._located_assets():
                if dst.name == src.name:
                    continue
                for _, packet in all_probes:
                    if packet.eth_type in (ETH_IPV4, ETH_ARP) and (src.ip is None or dst.ip is None):
                        continue
                    if judge(self.policy, self.located, self.located[src.name], frame(src, dst, packet)).delivered:
                        found.append((dst, packet))
            examples[src.name] = found
        return examples

    def attacks(self, free_port: PortRef | None) -> list[tuple[str, Frame, PortRef, str]]:
        located = self._located_assets()
        allowed = self.allowed_examples()
        attacks: list[tuple[str, Frame, PortRef, str]] = []
        ips = sorted(a.ip for a in located if a.ip)
        for src in located:
            home = self.located[src.name]
            for dst, packet in _one_per_kind(allowed[src.name], exclude=""):
                genuine = frame(src, dst, packet)
                for what, tags in TAG_STACKS + vlan_asset_stacks(src.vlan):
                    attacks.append((f"{packet.describe()} with {what}", replace(genuine, tags=tags), home, src.name))
                if packet.eth_type == ETH_IPV4:
                    for other in [ip for ip in ips if ip not in (dst.ip, src.ip)][:2] + [FOREIGN_IP,
                                                                                        DIRECTED_BROADCAST]:
                        attacks.append((f"{packet.describe()} to {dst.name}'s MAC but IPv4 {other}",
                                        replace(genuine, ipv4_dst=other), home, src.name))
                if packet.eth_type == ETH_ARP:
                    for other in [ip for ip in ips if ip not in (dst.ip, src.ip)][:1]:
                        unicast = replace(genuine, eth_dst=dst.mac, arp_tpa=other)
                        attacks.append((f"unicast ARP to {dst.name}'s MAC for {other}", unicast, home, src.name))
            for victim in located:
                if victim.name == src.name:
                    continue
                for dst, packet in _one_per_kind(allowed[victim.name], exclude=src.name):
                    attacks.append((f"MAC spoof of {victim.name} ({packet.describe()})", frame(victim, dst, packet),
                                    home, src.name))
                    if free_port is not None:
                        attacks.append((f"{victim.name} frame from a foreign port ({packet.describe()})",
                                        frame(victim, dst, packet), free_port, "free port"))
                if victim.ip is None or src.ip is None:
                    continue
                ip_examples = [(d, p) for d, p in allowed[src.name] if p.eth_type == ETH_IPV4 and d.name != victim.name]
                for dst, packet in ip_examples[:2]:
                    attacks.append((f"IP spoof as {victim.name} ({packet.describe()})",
                                    replace(frame(src, dst, packet), ipv4_src=victim.ip), home, src.name))
                arp_examples = [(d, p) for d, p in allowed[src.name] if p.eth_type == ETH_ARP and d.name != victim.name]
                for dst, packet in arp_examples[:1]:
                    genuine = frame(src, dst, packet)
                    attacks.append((f"ARP with {victim.name}'s sender IP", replace(genuine, arp_spa=victim.ip), home,
                                    src.name))
                    attacks.append((f"ARP with {victim.name}'s sender MAC", replace(genuine, arp_sha=victim.mac), home,
                                    src.name))
                    attacks.append((f"gratuitous ARP claiming {victim.name}'s IP",
                                    replace(genuine, arp_spa=victim.ip, arp_tpa=victim.ip), home, src.name))
            unknown = Frame(BROADCAST, UNKNOWN_MAC, (), ETH_ARP, arp_op=1, arp_sha=UNKNOWN_MAC, arp_spa="10.255.0.1",
                            arp_tha="00:00:00:00:00:00", arp_tpa=src.ip or "10.255.0.2")
            attacks.append(("unknown MAC on an asset port", unknown, home, "unknown"))
            if free_port is not None:
                attacks.append(("unknown MAC on a free port", unknown, free_port, "unknown"))
            for dst, packet in allowed[src.name][:1]:
                attacks.append(("unknown MAC, allowed packet otherwise",
                                replace(frame(src, dst, packet), eth_src=UNKNOWN_MAC), home, "unknown"))
        return attacks


def _one_per_kind(examples: list[tuple[Asset, Packet]], exclude: str) -> list[tuple[Asset, Packet]]:
    """The first allowed example of each frame kind (ARP, IPv4 per protocol, other ethertypes)."""
    chosen: dict[tuple[int, int], tuple[Asset, Packet]] = {}
    for dst, packet in examples:
        kind = (packet.eth_type, packet.ip_proto) if packet.eth_type in (ETH_ARP, ETH_IPV4) else (0, 0)
        if dst.name != exclude and kind not in chosen and packet.fragment == "no":
            chosen[kind] = (dst, packet)
    return list(chosen.values())
