"""Learn mode (pure): what a forwarded frame says about who talks to whom, and the policy that
would allow exactly what was seen.

A zone in `mode: learn` (or a policy) forwards like monitor mode, and its monitor rule also
copies each frame to the controller. `conversation` turns a frame into a `Conversation`:
initiator asset, responder asset, and service (protocol and service port, ICMP echo, or
ethertype), telling a reply from a request by the service port (a catalog or policy service
port, else the lower port; for TCP also SYN without ACK), so that a session that was open
before learning started is recorded the right way round. The compiler then installs a
counting entry for each conversation (`controller.core.units.learned_unit`): the switch keeps
forwarding it without the controller, and its counters say how much was seen.

`propose` writes a valid policy from what was seen: the same zones, assets and services, every
conduit the policy has, plus one conduit per observed relation no conduit allowed: between
zones where every member pair was seen, else between the assets, with a `reason` giving the
evidence. Nothing that was not observed is proposed.

Invariants: a conversation's entries forward only what the zone's monitor rule forwards (the
initiator's zone forwards, and for the reply entry the responder's zone too; never across an
isolated zone's border), so learning never changes a verdict.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from controller.core.frames import Frame
from controller.core.model import Asset, Policy

ETH_IPV4, ETH_ARP, ETH_LLDP = 0x0800, 0x0806, 0x88CC
TCP_SYN, TCP_ACK = 0x02, 0x10
LearnProtocol = Literal["tcp", "udp", "icmp", "ethertype"]
DEFAULT_BUDGET = 2000  # conversations recorded (each costs two entries on its switches)


@dataclass(frozen=True, order=True)
class Conversation:
    source: str  # the initiator's asset name
    destination: str  # the responder's asset name
    protocol: LearnProtocol
    port: int  # tcp/udp: the service port; icmp: 0 (echo); ethertype: the ethertype

    def describe(self) -> str:
        service = {"icmp": "icmp echo", "ethertype": f"ethertype {self.port:#06x}"}.get(
            self.protocol, f"{self.protocol} {self.port}")
        return f"{self.source} -> {self.destination} {service}"

    @property
    def key(self) -> str:
        return f"{self.source}>{self.destination}:{self.protocol}/{self.port}"

    @staticmethod
    def from_key(key: str) -> "Conversation":
        ends, _, service = key.partition(":")
        source, _, destination = ends.partition(">")
        protocol, _, port = service.partition("/")
        if not (source and destination and protocol in ("tcp", "udp", "icmp", "ethertype") and port.isdigit()):
            raise ValueError(f"{key!r} is not a conversation (SOURCE>DESTINATION:PROTOCOL/PORT)")
        return Conversation(source, destination, protocol, int(port))  # type: ignore[arg-type]


def service_ports(policy: Policy, protocol: str) -> frozenset[int]:
    """The ports of the policy's services (catalog and custom) for tcp or udp."""
    return frozenset(port for service in policy.services for m in service.matches if m.protocol == protocol
                     for port in range(m.low, min(m.high, m.low + 64) + 1))


def conversation(policy: Policy, frame: Frame, src: Asset, dst: Asset) -> Conversation | None:
    """What a unicast frame from `src` to `dst` says was started, or None (ARP, LLDP, a later
    fragment, ICMP other than echo, IP protocols without ports)."""
    if frame.multicast or src.name == dst.name or frame.problem:
        return None
    if frame.eth_type in (ETH_ARP, ETH_LLDP):
        return None
    if frame.eth_type != ETH_IPV4:
        return Conversation(src.name, dst.name, "ethertype", frame.eth_type)
    if frame.ip_frag == "later":
        return None
    if frame.ip_proto == 1:
        if frame.icmp_type == 8:
            return Conversation(src.name, dst.name, "icmp", 0)
        if frame.icmp_type == 0:
            return Conversation(dst.name, src.name, "icmp", 0)
        return None
    if frame.ip_proto == 6 and frame.tcp_src is not None and frame.tcp_dst is not None:
        protocol, sport, dport = "tcp", frame.tcp_src, frame.tcp_dst
    elif frame.ip_proto == 17 and frame.udp_src is not None and frame.udp_dst is not None:
        protocol, sport, dport = "udp", frame.udp_src, frame.udp_dst
    else:
        return None
    known = service_ports(policy, protocol)
    if dport in known and sport not in known:
        forward = True
    elif sport in known and dport not in known:
        forward = False
    elif protocol == "tcp" and frame.tcp_flags is not None and frame.tcp_flags & (TCP_SYN | TCP_ACK) in (
            TCP_SYN, TCP_SYN | TCP_ACK):
        forward = frame.tcp_flags & TCP_ACK == 0
    else:
        forward = dport <= sport  # the service is the lower port
    if forward:
        return Conversation(src.name, dst.name, protocol, dport)  # type: ignore[arg-type]
    return Conversation(dst.name, src.name, protocol, sport)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Seen:
    """What the controller recorded of one conversation."""

    first: float  # wall-clock seconds
    last: float
    packets: int


# -- the proposal -------------------------------------------------------------------------------
def _service_names(policy: Policy, conversation: Conversation) -> list[str]:
    """The policy's (and the catalog's) services that carry this protocol and port: the ones
    that are only that first, then the ones that carry more (headers cannot tell tcp 102 as
    s7comm from tcp 102 as iec61850-mms: the proposal names one and says the others)."""
    exact, wider = [], []
    for service in policy.services:
        matches = [m for m in service.matches if (m.protocol == conversation.protocol and (
            m.low <= conversation.port <= m.high if m.has_ports or m.protocol == "ethertype" else True))]
        if matches:
            (exact if len(service.matches) == 1 and len(matches) == 1 else wider).append(service.name)
    return sorted(exact) + sorted(wider)


def _custom_name(conversation: Conversation) -> str:
    if conversation.protocol == "ethertype":
        return f"learned-ethertype-{conversation.port:04x}"
    return f"learned-{conversation.protocol}-{conversation.port}"


def propose(document: dict[str, Any], policy: Policy, seen: dict[Conversation, Seen],
            now: float | None = None) -> tuple[str, dict[str, Any]]:
    """(a comment line, the policy document) that allows what was seen: `document` (the policy
    in force, as parsed YAML) in enforce mode, with one conduit more per observed relation no
    conduit allowed. `controller.io.files.proposal_text` writes it as YAML."""
    from controller.core.verdict import ETH_IPV4 as IPV4, Packet, decide  # noqa: PLC0415  (verdict imports model only)

    def allowed(conversation: Conversation) -> bool:
        src, dst = policy.asset(conversation.source), policy.asset(conversation.destination)
        if conversation.protocol == "ethertype":
            packet = Packet(conversation.port)
        elif conversation.protocol == "icmp":
            packet = Packet(IPV4, 1, icmp_type=8)
        else:
            packet = Packet(IPV4, 6 if conversation.protocol == "tcp" else 17, 40000, conversation.port,
                            tcp_flags=TCP_SYN if conversation.protocol == "tcp" else 0)
        return decide(policy, src, dst, packet).outcome == "allowed"

    names = {a.name for a in policy.assets}
    fresh = {c: s for c, s in seen.items() if c.source in names and c.destination in names and not allowed(c)}
    services = dict(document.get("services") or {})
    service_of: dict[Conversation, str] = {}
    also: dict[str, list[str]] = {}  # a proposed service name -> other services with the same port
    for conversation in fresh:
        names = _service_names(policy, conversation)
        name = names[0] if names else None
        if name is not None and len(names) > 1:
            also[name] = names[1:]
        if name is None:
            name = _custom_name(conversation)
            spec: Any = ({"ethertype": f"0x{conversation.port:04x}"} if conversation.protocol == "ethertype"
                         else {conversation.protocol: conversation.port})
            services.setdefault(name, spec)
        service_of[conversation] = name
    members: dict[str, list[str]] = {}
    for asset in policy.assets:
        members.setdefault(asset.zone, []).append(asset.name)
    zone_of = {a.name: a.zone for a in policy.assets}
    # (source zone, destination zone, service) -> the asset pairs seen
    pairs: dict[tuple[str, str, str], dict[tuple[str, str], Seen]] = {}
    for conversation, record in fresh.items():
        key = (zone_of[conversation.source], zone_of[conversation.destination], service_of[conversation])
        pairs.setdefault(key, {})[(conversation.source, conversation.destination)] = record
    grouped: dict[tuple[tuple[str, ...], tuple[str, ...]], dict[str, list[Seen]]] = {}
    for (src_zone, dst_zone, service), seen_pairs in sorted(pairs.items()):
        every = {(a, b) for a in members[src_zone] for b in members[dst_zone] if a != b}
        if every and every <= set(seen_pairs) and len(every) > 1:
            ends = ((src_zone,), (dst_zone,))
            grouped.setdefault(ends, {}).setdefault(service, []).extend(seen_pairs.values())
            continue
        by_source: dict[str, list[str]] = {}
        for a, b in sorted(seen_pairs):
            by_source.setdefault(a, []).append(b)
        for source, destinations in sorted(by_source.items()):
            ends = ((source,), tuple(destinations))
            grouped.setdefault(ends, {}).setdefault(service, []).extend(seen_pairs[(source, d)] for d in destinations)
    taken = {c.get("name") for c in document.get("conduits") or [] if isinstance(c, dict)}
    conduits = list(document.get("conduits") or [])
    for (sources, destinations), by_service in sorted(grouped.items()):
        records = [r for rs in by_service.values() for r in rs]
        name = _unique(f"learned-{sources[0]}-to-{destinations[0]}" + ("-and-more" if len(destinations) > 1 else ""),
                       taken)
        conduits.append({
            "name": name,
            "from": sources[0] if len(sources) == 1 else list(sources),
            "to": destinations[0] if len(destinations) == 1 else list(destinations),
            "services": sorted(by_service),
            "reason": f"learned: {sum(r.packets for r in records):,} packets in {len(records)} conversation(s), "
                      f"first {_stamp(min(r.first for r in records))}, last {_stamp(max(r.last for r in records))}"
                      + "".join(f"; {s} has the port of {', '.join(also[s])} too (headers cannot tell them apart)"
                                for s in sorted(by_service) if s in also),
        })
    proposed = dict(document)
    proposed["mode"] = "enforce"
    zones = {}
    for name, body in (document.get("zones") or {}).items():
        body = dict(body or {})
        if body.get("mode") == "learn":
            body.pop("mode")
        zones[name] = body
    proposed["zones"] = zones
    if services:
        proposed["services"] = services
    proposed["conduits"] = conduits
    header = (f"# Proposed by `otseg learn propose` at {_stamp(now if now is not None else time.time())} from "
              f"{len(seen)} recorded conversation(s); review it, then `otseg diff` and `otseg push` it.\n")
    return header, proposed


def _unique(name: str, taken: set[Any]) -> str:
    candidate, number = name, 2
    while candidate in taken:
        candidate = f"{name}-{number}"
        number += 1
    taken.add(candidate)
    return candidate


def _stamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


