"""`otseg verify` (the shell around controller.verify): prove that switch tables do what the policy says, for every header.

    otseg verify POLICY --topology TOPO     the compiled tables, offline (CI pipelines)
    otseg verify --live [--controller URL]  what the running controller's switches hold now

Exit codes: 0 proven (every invariant holds in every scenario), 1 violations found (each with
a counterexample), 2 invalid input (or the controller refused), 3 the controller is unreachable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from controller.core.codec import CodecError, read_live_document
from controller.core.flows import SwitchTables
from controller.core.model import Policy
from controller.core.topology import PortRef, Topology
from controller.verify.check import Report, Verifier

EXIT_VIOLATIONS = 1
EXIT_INVALID = 2


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from controller.client import DEFAULT_URL  # noqa: PLC0415

    parser = commands.add_parser(
        "verify", help="prove the flow tables against the policy over every possible header",
        description="Isolation (nothing beyond the policy leaves any port), availability (everything it allows "
                    "between bound assets is delivered), no loops, no allowed traffic to the controller, no "
                    "ambiguous flows: with every link up and with each single link down (fast failover). Exit 0 "
                    "proven, 1 violations, 2 invalid input (or switches not programmed yet), 3 controller "
                    "unreachable.")
    parser.add_argument("policy", nargs="?", metavar="POLICY", help="the policy file (offline: its compiled tables)")
    parser.add_argument("--topology", metavar="TOPO", help="the topology document (offline)")
    parser.add_argument("--live", action="store_true",
                        help="verify what the running controller's switches hold (read from the switches)")
    parser.add_argument("--controller", default=os.environ.get("OTSEG_CONTROLLER", DEFAULT_URL),
                        help=f"control API URL for --live (default {DEFAULT_URL}, or OTSEG_CONTROLLER)")
    parser.add_argument("--token-file", help="bearer token file for --live (see `otseg status --help`)")
    parser.add_argument("--state-dir", default=os.environ.get("OTSEG_STATE_DIR", "/var/lib/otseg"),
                        help="where the local controller keeps its api-token (default /var/lib/otseg)")
    parser.add_argument("--no-failures", dest="failures", action="store_false",
                        help="only with every link up (skip the single-link-failure scenarios)")
    parser.add_argument("--examples", type=int, default=3, metavar="N",
                        help="counterexamples printed per invariant and scenario (default 3)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.live:
        if args.policy or args.topology:
            print("otseg verify: --live reads policy, topology and tables from the controller; give no POLICY or "
                  "--topology with it", file=sys.stderr)
            return EXIT_INVALID
        from controller.client import request_json  # noqa: PLC0415
        document = request_json(args, "GET", "/v1/tables")
        pending = document.get("pending") or {}
        if pending:
            for dpid, why in sorted(pending.items()):
                print(f"otseg verify: switch {dpid} does not hold the policy in force yet: {why}", file=sys.stderr)
            print("otseg verify: nothing proved; run it again once every switch is programmed", file=sys.stderr)
            return EXIT_INVALID
        try:
            policy, topology, located, tables, names = from_live(document)
        except (CodecError, KeyError, TypeError, ValueError) as error:
            print(f"otseg verify: the controller's answer cannot be read: {error}", file=sys.stderr)
            return EXIT_INVALID
    else:
        if not args.policy or not args.topology:
            print("otseg verify: give POLICY and --topology TOPO (or --live)", file=sys.stderr)
            return EXIT_INVALID
        from controller.core.compiler import compile_tables  # noqa: PLC0415
        from controller.io.files import load_lab, load_policy  # noqa: PLC0415
        policy = load_policy(args.policy)
        lab = load_lab(args.topology, policy)
        topology = lab.to_topology(policy)
        located = None
        tables = compile_tables(policy, topology)
        names = {dpid: name for name, dpid in lab.switches}
    verifier = Verifier(policy, topology, located, failures=args.failures, examples_per_invariant=args.examples)
    verifier.names = names  # type: ignore[attr-defined]
    report = verifier.check(tables)
    if args.json:
        print(json.dumps(report_json(report, names), indent=2))
    else:
        print(render(report, names, policy, "live switches" if args.live else f"{args.policy} on {args.topology}"))
    return 0 if report.ok else EXIT_VIOLATIONS


def from_live(document: dict[str, Any]) -> tuple[Policy, Topology, dict[str, PortRef], dict[int, SwitchTables],
                                                 dict[int, str]]:
    from controller.io.files import load_in_force  # noqa: PLC0415
    policy = load_in_force(document["policy"])
    topology, located, tables, names = read_live_document(document)
    return policy, topology, located, tables, names


def render(report: Report, names: dict[int, str], policy: Policy, what: str) -> str:
    counts = report.counts()
    head = (f"verified {what}: {report.switches} switches, {report.flows} flows, {report.bound} of "
            f"{len(policy.assets)} assets bound, {report.scenarios} scenario(s) "
            f"(all links up{', and each single link down' if report.scenarios > 1 else ''}), "
            f"{report.ports} ports, {report.seconds:.2f} s, {report.nodes} BDD nodes")
    lines = [head]
    for note in report.notes:
        lines.append(f"note: {note}")
    if report.ok:
        lines.append(f"PROVEN: policy {policy.name!r} holds for every header: isolation, availability, no loops, "
                     "no allowed traffic to the controller, no ambiguous flows")
        return "\n".join(lines)
    lines.append("VIOLATIONS: " + ", ".join(f"{n} {k}" for k, n in counts.items() if n))
    for finding in report.findings:
        lines.append(finding.describe(names))
    return "\n".join(lines)


def report_json(report: Report, names: dict[int, str]) -> dict[str, Any]:
    def end(where: PortRef | None) -> str | None:
        return None if where is None else f"{names.get(where.dpid, f'{where.dpid:#x}')}:{where.port}"
    findings = []
    for finding in report.findings:
        item: dict[str, Any] = {"invariant": finding.invariant, "where": end(finding.where), "summary": finding.summary,
                                "scenario": None if finding.scenario is None else
                                [end(finding.scenario.a), end(finding.scenario.b)]}
        example = finding.example
        if example is not None:
            item["counterexample"] = {
                "ingress": end(example.ingress), "egress": end(example.egress), "packet": example.headers,
                "connection": example.connection, "policy": example.policy_says, "receivers": list(example.receivers),
                "path": [{"at": end(h.at), "entries": [{"table": t, "priority": p, "rule": o} for t, p, o in h.entries]}
                         for h in example.hops],
                "replayed": [end(p) for p in example.replayed], "trace": example.trace}
        findings.append(item)
    return {"ok": report.ok, "counts": report.counts(), "scenarios": report.scenarios, "switches": report.switches,
            "bound": report.bound,
            "flows": report.flows, "ports": report.ports, "seconds": round(report.seconds, 3), "bdd_nodes": report.nodes,
            "notes": report.notes, "findings": findings}
