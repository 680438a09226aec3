"""The zone/conduit picture for the console (pure): Graphviz's SVG of `to_dot(policy, live=True)`
(controller.core.diagram, the drawing `otseg diagram` makes), made live.

Invariants: the output is the one <svg> element dot drew, without its XML prolog and fixed size
(it scales to the page); each conduit arrow's placeholder line becomes `<tspan data-live=
"conduit:NAME">N</tspan> packets`, N its counter now, which the page's script keeps current.
Nothing else of dot's output is changed; dot escapes every label it draws.
"""

from __future__ import annotations

import html
import re

from controller.core.diagram import LIVE_PLACEHOLDER

EDGE = re.compile(r'<g id="(?P<id>conduit:[^"]+)" class="edge">(?P<body>.*?)</g>', re.S)
PLACEHOLDER = re.compile(rf">{re.escape(LIVE_PLACEHOLDER)}</text>")
ROOT = re.compile(r'<svg width="[^"]*" height="[^"]*"')


def conduit_of(edge_id: str) -> str:
    """`conduit:NAME:INDEX` (as dot writes it, escaped) -> NAME."""
    return html.unescape(edge_id).split(":", 1)[1].rsplit(":", 1)[0]


def live_svg(svg: str, counters: dict[str, int]) -> str:
    start = svg.find("<svg")
    if start < 0:
        raise ValueError("not an SVG drawing")
    svg = ROOT.sub('<svg class="zones" role="img" aria-label="Zones by Purdue level and the conduits between them"',
                   svg[start:], count=1)

    def fill(edge: re.Match[str]) -> str:
        name = conduit_of(edge["id"])
        key = f"conduit:{name}"
        value = f'><tspan data-live="{html.escape(key)}">{counters.get(key, 0)}</tspan> packets</text>'
        body = edge["body"]
        spots = list(PLACEHOLDER.finditer(body))
        if spots:
            last = spots[-1]
            body = body[:last.start()] + value + body[last.end():]
        return f'<g id="{edge["id"]}" class="edge">{body}</g>'

    return EDGE.sub(fill, svg)
