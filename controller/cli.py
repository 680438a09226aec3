"""The `otseg` command line: validate, compile (and, later, run and talk to a controller).

Exit codes: 0 success, 2 invalid input (every error printed to stderr, one per line).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from controller.client import ClientError
from controller.core.budget import HINT, policy_overflows
from controller.core.fit import HINT as FIT_HINT, refusals, warnings as profile_warnings
from controller.core.profiles import losses
from controller.core.compiler import compile_tables, locate_assets
from controller.core.diagram import to_dot
from controller.core.explain import render_explanation
from controller.core.model import Asset, Policy
from controller.core.relations import direction_warnings
from controller.core.render import render_json, render_ovs, render_summary, render_text
from controller.core.topology import Topology
from controller.io.files import load_lab, load_policy, load_policy_text
from controller.policy.diagnostics import Diagnostic, DocumentError, did_you_mean
from controller.policy.topology_doc import LabNetwork

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
    except ClientError as error:
        print(f"otseg: {error}", file=sys.stderr)
        return error.code


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
    explain = commands.add_parser("explain", help="why traffic between two assets is allowed or denied")
    explain.add_argument("source", metavar="SRC", help="asset name, MAC or IP")
    explain.add_argument("destination", metavar="DST", help="asset name, MAC or IP")
    explain.add_argument("service", metavar="SERVICE", help="a service name (catalog or the policy's own)")
    where = explain.add_mutually_exclusive_group(required=True)
    where.add_argument("--policy", metavar="FILE")
    where.add_argument("--controller", metavar="URL", help="ask a running controller for its policy in force")
    explain.set_defaults(handler=_explain)

    diagram = commands.add_parser("diagram", help="draw the zones and conduits (IEC 62443 style) with Graphviz")
    diagram.add_argument("policy", metavar="POLICY")
    diagram.add_argument("-o", "--output", required=True, metavar="FILE.svg|FILE.png|FILE.dot")
    diagram.set_defaults(handler=_diagram)

    run = commands.add_parser("run", help="enforce a policy on OpenFlow 1.3 switches until stopped")
    run.add_argument("--policy", required=True, metavar="FILE")
    run.add_argument("--ofp-host", default="127.0.0.1", help="address to listen on for switches (default 127.0.0.1)")
    run.add_argument("--ofp-port", type=int, default=6653, help="OpenFlow TCP port (default 6653)")
    run.add_argument("--status-file", metavar="PATH", help="write the controller's status here as JSON")
    run.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    run.add_argument("--no-fast-failover", dest="fast_failover", action="store_false",
                     help="do not pre-install backup paths (links are rerouted by the controller only)")
    run.add_argument("--state-dir", default="/var/lib/otseg",
                     help="applied policy versions and the audit log (default /var/lib/otseg)")
    run.add_argument("--api-host", default="127.0.0.1", help="control API address (default 127.0.0.1)")
    run.add_argument("--api-port", type=int, default=8181, help="control API port (default 8181)")
    run.add_argument("--api-token-file", metavar="PATH",
                     help="bearer token for the API, as NAME:SECRET or SECRET (or set OTSEG_API_TOKEN); "
                          "required when --api-host is not loopback")
    run.add_argument("--events", metavar="FILE|-|syslog",
                     help="write attributed verdict events as JSON lines to a file, stdout (-) or syslog")
    run.add_argument("--watch", action="store_true", help="apply the --policy file again whenever it changes "
                     "(SIGHUP does the same on demand)")
    run.add_argument("--topology", metavar="TOPO",
                     help="topology document (topologies/*.yaml): its links are the declared trunks, the only "
                          "ports that may carry traffic between switches; LLDP elsewhere is reported as pending")
    run.add_argument("--ovsdb", default="auto", metavar="DB|auto|none",
                     help="check the switches' Open vSwitch settings (in-band control, fail mode, protocols) in this "
                          "OVSDB (e.g. unix:/var/run/openvswitch/db.sock, tcp:IP:6640); auto: the local one if "
                          "present (default); none: do not check")
    run.add_argument("--grants-need-approval", action="store_true",
                     help="every temporary grant waits until a second, different API token approves it "
                          "(`otseg approve`), whatever its asker says")
    run.add_argument("--learn-budget", type=_learn_budget, default=2000, metavar="N",
                     help="learn mode: record at most N conversations (default 2000; each costs two entries "
                          "on its switches); past it nothing more is learned, and `otseg learn report` says so")
    run.add_argument("--audit-seconds", type=_positive_seconds, default=30.0, metavar="S",
                     help="re-read every switch this often and repair any difference from otseg's tables "
                          "(default 30; also on every reconnect)")
    run.add_argument("--verify-compile-seconds", type=_positive_seconds, default=300.0, metavar="S",
                     help="compare the incremental compiler's tables with a full compile this often, off the "
                          "event loop (default 300); a difference is logged, counted and recomputed")
    run.add_argument("--verify-tables-seconds", type=_seconds_or_off, default=600.0, metavar="S",
                     help="prove what the switches hold against the policy over every header this often (default "
                          "600), and after every reconcile that changed a switch; metric otseg_verify_violations. "
                          "0: never (a verification takes about 30 s of one core at 1,000 assets)")
    run.add_argument("--verify-pushes", action="store_true",
                     help="prove a pushed policy's compiled tables before applying them; a violation refuses the "
                          "push with its counterexample (costs one verification per push: see docs/benchmarks.md)")
    run.add_argument("--cluster", metavar="etcd://HOST:PORT[,...]",
                     help="run as one instance of a cluster coordinated by etcd: one leader (OpenFlow MASTER, "
                          "generation_id from etcd), followers warm (SLAVE); policy versions, the version in force, "
                          "approvals and the audit log live in etcd (the state directory is only a cache)")
    run.add_argument("--cluster-name", default="otseg", metavar="NAME",
                     help="the cluster's name in etcd (several clusters may share one etcd; default otseg)")
    run.add_argument("--instance", metavar="NAME",
                     help="this instance's name in the cluster (default HOSTNAME-APIPORT)")
    run.add_argument("--advertise-api", metavar="URL",
                     help="cluster mode: where the other instances reach this one's control API to forward changes "
                          "(default http://API-HOST:API-PORT; give it when the instances run on different hosts)")
    run.add_argument("--lease-seconds", type=int, default=2, metavar="S",
                     help="the leader's etcd lease (default 2): a follower takes over within about this plus "
                          "a quarter second of the leader's death")
    run.add_argument("--foreign-flows", choices=("remove", "keep"), default="remove",
                     help="flows in otseg's tables (0-3) that otseg did not install: remove them (default) or keep "
                          "them, for a switch shared with another application")
    run.set_defaults(handler=_run)

    from controller.client import add_parsers as add_client_parsers  # noqa: PLC0415
    from controller.doctor import add_parser as add_doctor_parser  # noqa: PLC0415
    from controller.lab.command import add_parser as add_lab_parser  # noqa: PLC0415
    from controller.multicast_cli import add_parser as add_multicast_parser  # noqa: PLC0415
    from controller.verify_cli import add_parser as add_verify_parser  # noqa: PLC0415

    add_client_parsers(commands)
    add_lab_parser(commands)
    add_doctor_parser(commands)
    add_verify_parser(commands)
    add_multicast_parser(commands)
    return parser


def _find_asset(policy: Policy, key: str) -> Asset:
    asset = next((a for a in policy.assets if a.name == key), None) or policy.asset_by_mac(key) or \
        policy.asset_by_ip(key)
    if asset is None:
        hint = did_you_mean(key, [a.name for a in policy.assets])
        raise SystemExit(f"otseg explain: no asset {key!r} in policy {policy.name!r}" + (f" ({hint})" if hint else ""))
    return asset


def _explain(args: argparse.Namespace) -> int:
    if args.controller:
        from controller.client import fetch_policy  # noqa: PLC0415

        policy = load_policy_text(fetch_policy(args.controller), f"{args.controller} (policy in force)")
    else:
        policy = load_policy(args.policy)
    if args.service not in {s.name for s in policy.services}:
        hint = did_you_mean(args.service, [s.name for s in policy.services])
        raise SystemExit(f"otseg explain: unknown service {args.service!r}" + (f" ({hint})" if hint else ""))
    text, delivered = render_explanation(policy, _find_asset(policy, args.source),
                                         _find_asset(policy, args.destination), args.service)
    print(text)
    return 0 if delivered else 1


def _diagram(args: argparse.Namespace) -> int:
    policy = load_policy(args.policy)
    dot = to_dot(policy)
    output = Path(args.output)
    if output.suffix == ".dot":
        output.write_text(dot)
        return 0
    if output.suffix not in (".svg", ".png", ".pdf"):
        raise SystemExit("otseg diagram: the output must end in .svg, .png, .pdf or .dot")
    try:
        subprocess.run(["dot", f"-T{output.suffix[1:]}", "-o", str(output)], input=dot, text=True, check=True)
    except FileNotFoundError:
        raise SystemExit("otseg diagram: Graphviz `dot` is not installed (apt-get install graphviz)") from None
    print(f"{output}: {len(policy.zones)} zones, {len(policy.conduits)} conduits")
    return 0


def _learn_budget(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 100_000:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of conversations from 1 to 100000")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 1 <= value <= 86400:
        raise argparse.ArgumentTypeError(f"{value:g} s is out of range: give 1 to 86400 seconds")
    return value


def _seconds_or_off(text: str) -> float:
    return 0.0 if text.strip() in ("0", "0.0", "off") else _positive_seconds(text)


def _run(args: argparse.Namespace) -> int:
    from controller.app.runner import RunOptions, StartError, run  # noqa: PLC0415  (os-ken loads only here)

    try:
        return run(RunOptions(args.policy, args.ofp_host, args.ofp_port, args.status_file, args.log_level,
                              args.fast_failover, args.state_dir, args.api_host, args.api_port, args.api_token_file,
                              args.watch, args.events, args.topology, args.ovsdb, args.audit_seconds,
                              args.foreign_flows == "remove", args.verify_compile_seconds,
                              args.verify_tables_seconds, args.verify_pushes, args.cluster, args.cluster_name,
                              args.instance, args.lease_seconds, args.advertise_api, args.learn_budget,
                              args.grants_need_approval))
    except (StartError, OSError) as error:
        print(f"otseg run: {error}", file=sys.stderr)
        return EXIT_INVALID


def _validate(args: argparse.Namespace) -> int:
    failed: list[DocumentError] = []
    for file in args.files:
        try:
            policy = load_policy(file)
        except DocumentError as error:
            failed.append(error)
            continue
        topology, lab_file, lab = _lab_for(policy, args.topology, file)
        tables = compile_tables(policy, topology)
        if lab is not None:
            names = {dpid: name for name, dpid in lab.switches}
            over = policy_overflows(policy, topology, dict(lab.budgets), names) if lab.budgets or lab.profiles else []
            refused = refusals(policy, topology, tables, names)
            if over or refused:
                failed.append(DocumentError(
                    [Diagnostic(lab_file, lab.line_of(o.dpid), 1, o.where, o.problem(), HINT) for o in over]
                    + [Diagnostic(lab_file, lab.line_of(r.dpid), 1, r.where, r.problem(), FIT_HINT) for r in refused]))
                continue
            for dpid, profile in lab.profiles:
                print(f"{file}: switch {names[dpid]}: profile {profile.describe()}: {len(tables[dpid].flows)} entries"
                      + "".join(f"\n{file}:   loses: {loss}" for loss in losses(profile)), file=sys.stderr)
            for warning in profile_warnings(policy, topology, names):
                print(f"{file}: warning: {warning}", file=sys.stderr)
        rules = sum(len(t.flows) for t in tables.values())
        located = len(locate_assets(policy, topology))
        print(f"{file}: ok: policy {policy.name!r}, {len(policy.zones)} zones, {len(policy.assets)} assets "
              f"({located} located), {len(policy.conduits)} conduits, {rules} rules on {len(tables)} switches")
        for warning in direction_warnings(policy):
            print(f"{file}: warning: {warning}", file=sys.stderr)
    if failed:
        raise DocumentError([d for error in failed for d in error.diagnostics])
    return 0


def _lab_for(policy: Policy, topology_file: str | None, policy_file: str
             ) -> tuple[Topology, str, LabNetwork | None]:
    """The named lab, or the lab in topologies/ that names this policy, or one switch per pin."""
    if topology_file:
        lab = load_lab(topology_file, policy)
        return lab.to_topology(policy), topology_file, lab
    candidate = Path(policy_file).resolve().parent.parent / "topologies" / Path(policy_file).name
    if candidate.exists():
        lab = load_lab(candidate, policy)
        if lab.policy and Path(lab.policy).name == Path(policy_file).name:
            return lab.to_topology(policy), str(candidate), lab
    pins = {a.location.dpid for a in policy.assets if a.location}
    return Topology(switches=frozenset(pins)), policy_file, None


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
