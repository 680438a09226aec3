"""`otseg explain`: why traffic between two assets is allowed or denied, in words.

For each protocol element of the service, the reference verdict (controller.core.verdict)
decides; the explanation names the conduit (and its reason) that allows it, or, when
denied, the conduit that comes closest and what it lacks.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.core.model import Asset, Conduit, Policy, ServiceMatch
from controller.core.verdict import ETH_IPV4, Packet, Verdict, decide, is_member

EPHEMERAL = 40000


@dataclass(frozen=True)
class ElementVerdict:
    element: str
    verdict: Verdict
    closest: str = ""  # for denied: the nearest conduit and what it lacks


def request_packet(match: ServiceMatch) -> Packet:
    """The packet that opens a session of this service element (a SYN for TCP)."""
    if match.protocol == "ethertype":
        return Packet(match.low)
    if match.protocol == "icmp":
        return Packet(ETH_IPV4, 1, icmp_type=8)
    if match.protocol == "tcp":
        return Packet(ETH_IPV4, 6, EPHEMERAL, match.low, 0x02)
    return Packet(ETH_IPV4, 17, EPHEMERAL, match.low)


def explain(policy: Policy, src: Asset, dst: Asset, service: str) -> list[ElementVerdict]:
    result = []
    for match in policy.service(service).matches:
        if match.is_ip and (src.ip is None or dst.ip is None):
            verdict = Verdict("denied", "", f"{src.name if src.ip is None else dst.name} has no IP address")
            result.append(ElementVerdict(match.describe(), verdict))
            continue
        verdict = decide(policy, src, dst, request_packet(match))
        closest = "" if verdict.delivered and verdict.origin else _closest(policy, src, dst, service)
        result.append(ElementVerdict(match.describe(), verdict, closest))
    return result


def _closest(policy: Policy, src: Asset, dst: Asset, service: str) -> str:
    best: tuple[int, str] | None = None
    for conduit in policy.conduits:
        gaps = _gaps(conduit, src, dst, service)
        score = 3 - len(gaps)
        if best is None or score > best[0]:
            best = (score, f"conduit {conduit.name!r} comes closest but " + "; ".join(gaps))
    return best[1] if best else "the policy has no conduit at all"


def _gaps(conduit: Conduit, src: Asset, dst: Asset, service: str) -> list[str]:
    forward_src = any(is_member(src, e) for e in conduit.sources)
    forward_dst = any(is_member(dst, e) for e in conduit.destinations)
    gaps = []
    if not forward_src and any(is_member(src, e) for e in conduit.destinations) and any(
            is_member(dst, e) for e in conduit.sources):
        replies = ("it is stateful: only replies within connections they opened come back" if conduit.stateful
                   else "only replies come back")
        gaps.append(f"it runs the other way ({_names(conduit.sources)} -> {_names(conduit.destinations)}; "
                    f"{replies}, set bidirectional: true to allow both)")
        forward_src = forward_dst = True
    if not forward_src:
        gaps.append(f"{src.name} (zone {src.zone}) is not in its 'from' ({_names(conduit.sources)})")
    if not forward_dst:
        gaps.append(f"{dst.name} (zone {dst.zone}) is not in its 'to' ({_names(conduit.destinations)})")
    if service not in conduit.services:
        gaps.append(f"it does not list service {service!r} (it has {', '.join(conduit.services)})")
    return gaps


def _names(endpoints: tuple[object, ...]) -> str:
    return ", ".join(e.name for e in endpoints)  # type: ignore[attr-defined]


def render_explanation(policy: Policy, src: Asset, dst: Asset, service: str) -> tuple[str, bool]:
    """Text for people, and whether every element of the service is delivered."""
    lines = [f"{src.name} (zone {src.zone}) -> {dst.name} (zone {dst.zone}), service {service}:"]
    everything = True
    for item in explain(policy, src, dst, service):
        verdict = item.verdict
        everything &= verdict.delivered
        if verdict.outcome in ("allowed", "allowed-by-monitor"):
            why = f"by {'intra-zone rule' if verdict.origin.startswith('intra:') else 'conduit'} " \
                  f"{verdict.origin.removeprefix('intra:')!r}"
            lines.append(f"  {item.element}: {verdict.outcome.upper()} {why}" +
                         (f": {verdict.reason}" if verdict.reason else ""))
        else:
            lines.append(f"  {item.element}: {verdict.outcome.upper()} ({verdict.reason})")
            if item.closest:
                lines.append(f"    {item.closest}")
    return "\n".join(lines), everything
