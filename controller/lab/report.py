"""Print the lab's outcome: an asset-by-asset matrix, multicast and attack tables, a summary."""

from __future__ import annotations

from collections import defaultdict

from controller.core.model import Policy
from controller.lab.plan import Probe
from controller.lab.verify import Outcome


def render(outcome: Outcome, policy: Policy) -> str:
    probes = outcome.probes
    names = [a.name for a in policy.assets if any(p.source == a.name for p in probes)]
    index = {name: i + 1 for i, name in enumerate(names)}
    pairs: dict[tuple[str, str], list[Probe]] = defaultdict(list)
    for probe in probes:
        if probe.category == "pair":
            pairs[(probe.source, probe.target)].append(probe)
    width = max(len(n) for n in names) + 2
    zone_width = max(len(policy.asset(n).zone) for n in names) + 2
    lines = [f"Policy {policy.name!r}: {len(names)} assets, {len(probes)} probes in {outcome.seconds:.1f} s",
             "Matrix (row sends to column): number = services allowed and working, . = all denied as the policy "
             "says, X = observed differs from the policy", ""]
    header = " " * (4 + width + zone_width) + "".join(f"{i:>3}" for i in range(1, len(names) + 1))
    lines.append(header)
    for name in names:
        cells = []
        for other in names:
            group = pairs.get((name, other), [])
            if name == other:
                cells.append("  -")
            elif any(not p.matches for p in group):
                cells.append("  X")
            else:
                allowed = sum(1 for p in group if p.expected)
                cells.append(f"{allowed:>3}" if allowed else "  .")
        lines.append(f"{index[name]:>3} {name:<{width}}{policy.asset(name).zone:<{zone_width}}" + "".join(cells))
    lines.append("")
    multicast = [p for p in probes if p.category == "multicast"]
    if multicast:
        lines.append("L2 multicast (sent to a group address; delivered only to the conduit's 'to' assets):")
        for probe in multicast:
            if probe.expected or not probe.matches:
                mark = "ok" if probe.matches else "MISMATCH"
                lines.append(f"  {probe.source:<{width}} {probe.label}: expected {sorted(probe.expected)}, observed "
                             f"{sorted(probe.observed or [])}  {mark}")
        quiet = sum(1 for p in multicast if not p.expected and p.matches)
        lines.append(f"  ({quiet} more multicast probes from assets without an L2 conduit reached nobody, as expected)")
        lines.append("")
    attacks = [p for p in probes if p.category == "attack"]
    if attacks:
        lines.append("Attack probes:")
        kinds: dict[str, list[Probe]] = defaultdict(list)
        for probe in attacks:
            kinds[_attack_kind(probe.label)].append(probe)
        for kind, group in sorted(kinds.items()):
            blocked = sum(1 for p in group if not p.observed)
            allowed_by_policy = sum(1 for p in group if p.expected)
            bad = sum(1 for p in group if not p.matches)
            note = f", {allowed_by_policy} allowed by the policy" if allowed_by_policy else ""
            lines.append(f"  {kind:<34} {len(group):>4} sent, {blocked:>4} blocked{note}"
                         + (f"  {bad} MISMATCHES" if bad else "  ok"))
        lines.append("")
    mismatches = outcome.mismatches
    for probe in mismatches[:40]:
        lines.append(f"MISMATCH {probe.source} -> {probe.target or '*'} [{probe.label}]: expected "
                     f"{_show(probe.expected)}, observed {_show(probe.observed)}")
    if len(mismatches) > 40:
        lines.append(f"... and {len(mismatches) - 40} more mismatches")
    counts = defaultdict(int)
    for probe in probes:
        counts[probe.category] += 1
    lines.append(f"RESULT: {len(probes)} probes ({counts['pair']} pair, {counts['multicast']} multicast, "
                 f"{counts['attack']} attack), {len(mismatches)} mismatches, {outcome.seconds:.1f} s")
    return "\n".join(lines)


def _attack_kind(label: str) -> str:
    for prefix in ("MAC+IP spoof", "IP spoof", "gratuitous ARP", "reverse SYN", "port scan", "unknown host pings",
                   "unknown host ARPs"):
        if label.startswith(prefix):
            return prefix
    return label.split(":", 1)[0]


def _show(value: object) -> str:
    if isinstance(value, frozenset):
        return str(sorted(value)) if value else "nobody"
    return "pass" if value else "blocked"
