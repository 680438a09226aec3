"""`otseg multicast`: the IP multicast trees of a policy on a lab network, or in force.

Offline (POLICY --topology TOPO) the trees come from `controller.core.ip_multicast.trees` on
the files; with --controller from GET /v1/multicast (the trees of the policy and topology in
force). Text for people, --json for programs; exit 1 when a listed receiver is unreachable.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("multicast", help="the IP multicast trees: per source and group, receivers and copies")
    parser.add_argument("policy", metavar="POLICY", nargs="?")
    parser.add_argument("--topology", metavar="TOPO", help="lab network file (with POLICY)")
    parser.add_argument("--controller", metavar="URL", help="ask a running controller for the trees in force")
    parser.add_argument("--token-file", help="bearer token file, when the controller needs one for reads")
    parser.add_argument("--state-dir", default="/var/lib/otseg")
    parser.add_argument("--json", action="store_true", help="print the trees as JSON")
    parser.set_defaults(handler=_multicast)


def _multicast(args: argparse.Namespace) -> int:
    if args.controller:
        from controller.client import request_json  # noqa: PLC0415

        found = request_json(args, "GET", "/v1/multicast")["trees"]
    elif args.policy and args.topology:
        from controller.core.ip_multicast import trees  # noqa: PLC0415
        from controller.io.files import load_lab, load_policy  # noqa: PLC0415

        policy = load_policy(args.policy)
        found = trees(policy, load_lab(args.topology, policy).to_topology(policy))
    else:
        raise SystemExit("otseg multicast: give POLICY --topology TOPO, or --controller URL")
    sys.stdout.write(json.dumps(found, indent=2) + "\n" if args.json else render(found))
    return 1 if any(span["unreachable"] for tree in found for span in tree["spans"]) else 0


def render(found: list[dict[str, Any]]) -> str:
    if not found:
        return "no IP multicast: no conduit lists groups (docs/policy.md, IP multicast)\n"
    lines: list[str] = []
    for tree in found:
        for span in tree["spans"]:
            lines.append(f"{tree['source']} -> {tree['group']} udp {span['udp']} (conduit {span['conduit']}): "
                         f"{', '.join(span['receivers']) or 'no receiver reached'}")
            if span["unreachable"]:
                lines.append(f"  UNREACHABLE (not connected to the source): {', '.join(span['unreachable'])}")
            for switch, entry in span["switches"].items():
                lines.append(f"  switch {switch}: in port {entry['in']} -> out {', '.join(map(str, entry['out']))}")
    return "\n".join(lines) + "\n"
