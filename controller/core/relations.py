"""Expand a policy's conduits and intra-zone rules into directed relations.

A relation says: packets from the members of `source` to the members of `destination`
that fit `match` (in `direction`) are allowed. It is the compiler's unit of work: one
relation becomes one policy-table rule per port block, whatever the number of assets,
which is why flow counts do not grow as assets squared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Literal

from controller.core.model import EPHEMERAL_CLIENTS, Conduit, Endpoint, Intra, Mode, Policy, ServiceMatch

Kind = Literal["service", "arp", "any"]
Direction = Literal["forward", "reply"]


@dataclass(frozen=True, order=True)
class Relation:
    source: Endpoint
    destination: Endpoint
    kind: Kind
    match: ServiceMatch | None  # for kind "service"
    direction: Direction
    origin: str  # conduit name, or "intra:<zone>"
    mode: Mode
    stateful: bool = False  # TCP/UDP: replies only within connections the initiator opened


def expand(policy: Policy) -> tuple[Relation, ...]:
    """Every relation of the policy, deduplicated, in a stable order."""
    relations: set[Relation] = set()
    for conduit in policy.conduits:
        relations.update(_conduit_relations(policy, conduit))
    for zone in policy.zones:
        relations.update(_intra_relations(policy, zone.name, zone.intra, zone.intra_services))
    return tuple(sorted(relations, key=_order))


def _order(relation: Relation) -> tuple[object, ...]:
    return (relation.origin, relation.source, relation.destination, relation.kind,
            relation.match or ServiceMatch("icmp"), relation.direction)


def _conduit_relations(policy: Policy, conduit: Conduit) -> Iterator[Relation]:
    mode: Mode = conduit.mode or "enforce"
    matches = sorted({m for name in conduit.services for m in policy.service(name).matches})
    pairs = [(f, t) for f in conduit.sources for t in conduit.destinations]
    if conduit.bidirectional:
        pairs += [(t, f) for f, t in pairs]
    for initiator, responder in pairs:
        yield from _service_relations(initiator, responder, matches, conduit.name, mode, conduit.stateful)


def _service_relations(initiator: Endpoint, responder: Endpoint, matches: list[ServiceMatch],
                       origin: str, mode: Mode, stateful: bool = False) -> Iterator[Relation]:
    has_ip = False
    for match in matches:
        tracked = stateful and match.protocol in ("tcp", "udp")
        yield Relation(initiator, responder, "service", match, "forward", origin, mode, tracked)
        if match.is_ip:
            has_ip = True
            yield Relation(responder, initiator, "service", match, "reply", origin, mode, tracked)
    if has_ip:
        yield Relation(initiator, responder, "arp", None, "forward", origin, mode)
        yield Relation(responder, initiator, "arp", None, "forward", origin, mode)


def _intra_relations(policy: Policy, zone: str, intra: Intra, services: tuple[str, ...]) -> Iterator[Relation]:
    endpoint = Endpoint("zone", zone)
    origin = f"intra:{zone}"
    if intra is Intra.ALLOW:
        yield Relation(endpoint, endpoint, "any", None, "forward", origin, "enforce")
    elif intra is Intra.SERVICES:
        matches = sorted({m for name in services for m in policy.service(name).matches})
        yield from _service_relations(endpoint, endpoint, matches, origin, "enforce")


def is_l2_multicast(relation: Relation) -> bool:
    """Relations whose multicast frames are delivered along a tree to the destination members."""
    return (relation.kind == "service" and relation.match is not None
            and relation.match.protocol == "ethertype" and relation.direction == "forward")


def direction_warnings(policy: Policy) -> list[str]:
    """Conduits whose direction cannot be told from headers: a UDP service whose port is also
    one of its client ports (NTP 123 to 123, BACnet 47808 to 47808). A datagram between two
    such ports may be a request or a reply, so the responder can send to the initiator's own
    service port. TCP is not affected: a responder cannot open a connection (no SYN without ACK)."""
    warnings: list[str] = []
    for conduit in policy.conduits:
        if conduit.bidirectional or conduit.stateful:
            continue
        for name in conduit.services:
            for match in policy.service(name).matches:
                if match.protocol == "udp" and match.clients != EPHEMERAL_CLIENTS and match.ambiguous_direction:
                    warnings.append(
                        f"conduit {conduit.name!r}: {name} ({match.describe()} from client ports "
                        f"{match.describe_clients()}): direction cannot be told from headers, so the "
                        f"responder may also send to the initiator's own {match.describe()} service; set "
                        f"'stateful: true' on the conduit to accept replies only within the initiator's own "
                        f"connections (Open vSwitch connection tracking)")
    return warnings
