"""The `otseg` command line: validate, compile (and, later, run and talk to a controller).

Exit codes: 0 success, 2 invalid input (every error printed to stderr, one per line).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from controller.core.compiler import compile_tables, locate_assets
from controller.core.model import Policy
from controller.core.render import render_json, render_ovs, render_summary, render_text
from controller.core.topology import Topology
from controller.io.files import load_lab, load_policy
from controller.policy.diagnostics import DocumentError

EXIT_INVALID = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except DocumentError as error:
        for diagnostic in error.diagnostics:
            print(diagnostic, file=sys.stderr)
        print(f"{len(error.diagnostics)} error(s); nothing was applied", file=sys.stderr)
        return EXIT_INVALID
    except BrokenPipeError:
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otseg", description="Micro-segmentation for industrial networks.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", help="check policy files and summarise them")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.add_argument("--topology", metavar="TOPO",
                          help="lab network to count rules on (default: the lab in topologies/ of the same "
                               "name, else only the switches that pinned assets name)")
    validate.set_defaults(handler=_validate)

    compile_ = commands.add_parser("compile", help="show every switch's flow tables for a policy and topology")
    compile_.add_argument("policy", metavar="POLICY")
    compile_.add_argument("--topology", required=True, metavar="TOPO")
    compile_.add_argument("--format", choices=("text", "json", "summary", "ovs"), default="text",
                          help="text: every flow; json: for programs; summary: flow counts per switch and table; "
                               "ovs: `ovs-ofctl -O OpenFlow13 add-flows` input, one block per switch")
    compile_.set_defaults(handler=_compile)
    run = commands.add_parser("run", help="enforce a policy on OpenFlow 1.3 switches until stopped")
    run.add_argument("--policy", required=True, metavar="FILE")
    run.add_argument("--ofp-host", default="127.0.0.1", help="address to listen on for switches (default 127.0.0.1)")
    run.add_argument("--ofp-port", type=int, default=6653, help="OpenFlow TCP port (default 6653)")
    run.add_argument("--status-file", metavar="PATH", help="write the controller's status here as JSON")
    run.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    run.add_argument("--no-fast-failover", dest="fast_failover", action="store_false",
                     help="do not pre-install backup paths (links are rerouted by the controller only)")
    run.set_defaults(handler=_run)

    from controller.lab.command import add_parser as add_lab_parser  # noqa: PLC0415

    add_lab_parser(commands)
    return parser


def _run(args: argparse.Namespace) -> int:
    from controller.app.runner import run  # noqa: PLC0415  (os-ken loads only for `run`)

    return run(args.policy, args.ofp_host, args.ofp_port, args.status_file, args.log_level, args.fast_failover)


def _validate(args: argparse.Namespace) -> int:
    failed: list[DocumentError] = []
    for file in args.files:
        try:
            policy = load_policy(file)
        except DocumentError as error:
            failed.append(error)
            continue
        topology = _topology_for(policy, args.topology, file)
        tables = compile_tables(policy, topology)
        rules = sum(len(t.flows) for t in tables.values())
        located = len(locate_assets(policy, topology))
        print(f"{file}: ok: policy {policy.name!r}, {len(policy.zones)} zones, {len(policy.assets)} assets "
              f"({located} located), {len(policy.conduits)} conduits, {rules} rules on {len(tables)} switches")
    if failed:
        raise DocumentError([d for error in failed for d in error.diagnostics])
    return 0


def _topology_for(policy: Policy, topology_file: str | None, policy_file: str) -> Topology:
    """The named lab, or the lab in topologies/ that names this policy, or one switch per pin."""
    if topology_file:
        return load_lab(topology_file, policy).to_topology(policy)
    candidate = Path(policy_file).resolve().parent.parent / "topologies" / Path(policy_file).name
    if candidate.exists():
        lab = load_lab(candidate, policy)
        if lab.policy and Path(lab.policy).name == Path(policy_file).name:
            return lab.to_topology(policy)
    pins = {a.location.dpid for a in policy.assets if a.location}
    return Topology(switches=frozenset(pins))


def _compile(args: argparse.Namespace) -> int:
    policy = load_policy(args.policy)
    lab = load_lab(args.topology, policy)
    tables = compile_tables(policy, lab.to_topology(policy))
    if args.format == "ovs":
        for dpid in sorted(tables):
            sys.stdout.write(f"# switch {lab.switch_name(dpid)} (dpid {dpid})\n{render_ovs(tables[dpid])}\n")
        return 0
    render = {"json": render_json, "summary": render_summary, "text": render_text}[args.format]
    sys.stdout.write(render(tables, lab.switch_name) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
