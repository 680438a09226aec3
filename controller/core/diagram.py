"""An IEC 62443 zone-and-conduit drawing of a policy, as Graphviz DOT (laid out by `dot`).

Zones are grouped in bands by Purdue level (highest level on top); each conduit is an arrow
from its initiators' zone to its responders' zone, labelled with its name, services and,
where the conduit names assets rather than whole zones, those assets. Monitor-mode zones
and conduits are dashed; intra-zone rules are loops.
"""

from __future__ import annotations

from collections import defaultdict

from controller.core.model import Endpoint, Intra, Policy

LEVEL_NAMES = {5: "Enterprise network", 4: "Enterprise / business", 3.5: "Industrial DMZ", 3: "Site operations",
               2: "Supervisory control", 1: "Basic control", 0: "Process"}


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _zone_of(policy: Policy, endpoint: Endpoint) -> str:
    return endpoint.name if endpoint.kind == "zone" else policy.asset(endpoint.name).zone


LIVE_PLACEHOLDER = "0 packets"  # the last label line of each conduit arrow when drawn for the console


def edge_id(conduit: str, index: int) -> str:
    """The SVG id of a conduit's arrow (one per pair of zones it joins) in a live drawing."""
    return f"conduit:{conduit}:{index}"


def to_dot(policy: Policy, live: bool = False) -> str:
    """`live`: each conduit arrow gets an id (edge_id) and a last label line LIVE_PLACEHOLDER, which
    the console replaces by the conduit's counter; isolated zones are marked ISOLATED."""
    lines = ["digraph policy {", '  graph [rankdir=TB, newrank=true, fontname="Helvetica", fontsize=12, nodesep=0.6,',
             '         ranksep=1.1, splines=true,',
             f'         label={_quote(f"Zones and conduits of policy {policy.name!r} (mode {policy.mode})")}, labelloc=t];',
             '  node [fontname="Helvetica", fontsize=11, shape=box, style="rounded,filled", fillcolor="#eef3fb"];',
             '  edge [fontname="Helvetica", fontsize=9, color="#35506b"];']
    levels: dict[float, list[str]] = defaultdict(list)
    for zone in policy.zones:
        levels[zone.level if zone.level is not None else -1].append(zone.name)
    ordered = sorted(levels, reverse=True)
    for index, level in enumerate(ordered):
        title = "Level ?" if level < 0 else f"Level {level:g}: {LEVEL_NAMES.get(level, '')}"
        lines.append(f"  subgraph cluster_level_{index} {{")
        lines.append(f'    label={_quote(title)}; style="filled"; fillcolor="{"#f7f7f7" if index % 2 else "#ffffff"}";'
                     ' color="#bbbbbb"; fontsize=11; labeljust=l; rank=same;')
        for name in sorted(levels[level]):
            zone = policy.zone(name)
            members = [a.name for a in policy.assets if a.zone == name]
            mode = policy.zone_mode(name)
            label = f"{name}\\n{len(members)} asset{'s' if len(members) != 1 else ''}" + (
                f" · SL-T {zone.sl_target}" if zone.sl_target is not None else "") + (
                f"\\n{mode.upper()}" if mode != "enforce" else "") + ("\\nISOLATED" if zone.isolated else "")
            style = ',style="rounded,filled,dashed"' if mode != "enforce" else ""
            if zone.isolated:
                style += ', penwidth=4, color="#a00000"'
            lines.append(f"    {_quote('zone:' + name)} [label={_quote(label).replace(chr(92) * 2 + 'n', chr(92) + 'n')}"
                         f"{style}];")
        lines.append("  }")
    for upper, lower in zip(ordered, ordered[1:]):  # keep bands in level order
        lines.append(f"  {_quote('zone:' + sorted(levels[upper])[0])} -> {_quote('zone:' + sorted(levels[lower])[0])}"
                     " [style=invis, weight=10];")
    for conduit in policy.conduits:
        services = ", ".join(conduit.services)
        pairs: dict[tuple[str, str], set[str]] = defaultdict(set)
        for source in conduit.sources:
            for target in conduit.destinations:
                names = pairs[(_zone_of(policy, source), _zone_of(policy, target))]
                names.update(e.name for e in (source, target) if e.kind == "asset")
        for index, ((source_zone, target_zone), assets) in enumerate(sorted(pairs.items())):
            label = f"{conduit.name}\\n{services}" + (f"\\n({', '.join(sorted(assets))})" if assets else "") + (
                f"\\n{LIVE_PLACEHOLDER}" if live else "")
            attributes = [f"label={_quote(label).replace(chr(92) * 2 + 'n', chr(92) + 'n')}"]
            if live:
                attributes.append(f"id={_quote(edge_id(conduit.name, index))}")
            if conduit.mode in ("monitor", "learn"):
                attributes.append('style=dashed, color="#b36b00"')
            if conduit.bidirectional:
                attributes.append("dir=both")
            lines.append(f"  {_quote('zone:' + source_zone)} -> {_quote('zone:' + target_zone)} "
                         f"[{', '.join(attributes)}];")
    for zone in policy.zones:
        if zone.intra is Intra.ALLOW or zone.intra is Intra.SERVICES:
            label = "intra: all" if zone.intra is Intra.ALLOW else f"intra: {', '.join(zone.intra_services)}"
            lines.append(f"  {_quote('zone:' + zone.name)} -> {_quote('zone:' + zone.name)} "
                         f'[label={_quote(label)}, color="#4d7f4d"];')
    lines.append("}")
    return "\n".join(lines) + "\n"
