"""`otseg doctor`: check that Open vSwitch is set up so otseg's flows are the only path through it.

Reads the bridges from OVSDB (`controller.app.ovsdb.read_bridges`, read-only) and prints
`check_bridge`'s findings, one line per finding, or `bridge NAME (DPID): ok` for a bridge without
any. Fix commands carry `--db=DB` when --db was given, so they change the database that was checked.

Exit codes: 0 no errors (warnings may have been printed), 1 at least one error, 2 OVSDB could not
be read or a --bridge is not in it (message on stderr). Nothing is ever changed on the switch.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence, TextIO

from controller.app.switch_config import (
    BridgeConfig,
    Finding,
    Runner,
    SwitchConfigError,
    check_bridge,
    dpid_hex,
)
from controller.app.ovsdb import read_bridges, run_ovs_vsctl

EXIT_OK = 0
EXIT_UNSAFE = 1
EXIT_UNREADABLE = 2


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    doctor = commands.add_parser(
        "doctor", help="check the Open vSwitch bridges: in-band control off, fail-mode secure, OpenFlow 1.3",
        description="Read the bridges from OVSDB (never changing them) and report every setting that lets "
                    "traffic bypass otseg's flows. Exit 0 when no errors, 1 when any, 2 when OVSDB "
                    "cannot be read.")
    doctor.add_argument("--db", metavar="DB",
                        help="OVSDB to read, as ovs-vsctl --db takes it (default: the local "
                             "unix:/var/run/openvswitch/db.sock; e.g. tcp:SWITCH_IP:6640)")
    doctor.add_argument("--bridge", action="append", metavar="NAME",
                        help="check only this bridge (repeatable; default every bridge)")
    doctor.add_argument("--format", choices=("text", "json"), default="text",
                        help="text: one line per finding; json: for programs")
    doctor.set_defaults(handler=doctor_command)


def doctor_command(args: argparse.Namespace, run: Runner = run_ovs_vsctl, out: TextIO | None = None,
                   err: TextIO | None = None) -> int:
    """Run the check for parsed `doctor` arguments; `run` is the ovs-vsctl runner (injectable for tests)."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        bridges = read_bridges(run, args.db)
    except SwitchConfigError as error:
        print(f"otseg doctor: cannot read OVSDB: {error}", file=err)
        return EXIT_UNREADABLE
    selected = _select(bridges, args.bridge, err)
    if selected is None:
        return EXIT_UNREADABLE
    results = [(bridge, check_bridge(bridge)) for bridge in selected]
    errors = sum(f.severity == "error" for _, findings in results for f in findings)
    if args.format == "json":
        document = {
            "ok": errors == 0,
            "errors": errors,
            "warnings": sum(f.severity == "warning" for _, findings in results for f in findings),
            "bridges": [_bridge_json(bridge, findings, args.db) for bridge, findings in results],
        }
        out.write(json.dumps(document, indent=2) + "\n")
    else:
        if not results:
            print("otseg doctor: the database has no bridges", file=err)
        for bridge, findings in results:
            for finding in findings:
                print(finding.line(args.db), file=out)
            if not findings:
                print(f"{bridge.label}: ok", file=out)
    return EXIT_UNSAFE if errors else EXIT_OK


def _select(bridges: list[BridgeConfig], names: Sequence[str] | None, err: TextIO) -> list[BridgeConfig] | None:
    """The bridges asked for, in the order asked (every bridge when none); None after reporting unknown names."""
    if not names:
        return bridges
    by_name = {b.name: b for b in bridges}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        known = ", ".join(sorted(by_name)) or "none"
        print(f"otseg doctor: no bridge {', '.join(unknown)} in OVSDB (bridges: {known})", file=err)
        return None
    return [by_name[n] for n in dict.fromkeys(names)]


def _bridge_json(bridge: BridgeConfig, findings: list[Finding], db: str | None) -> dict[str, object]:
    return {
        "name": bridge.name,
        "dpid": bridge.dpid,
        "dpid_hex": dpid_hex(bridge.dpid),
        "ok": not any(f.severity == "error" for f in findings),
        "fail_mode": bridge.fail_mode,
        "protocols": list(bridge.protocols),
        "disable_in_band": bridge.in_band_disabled,
        "controllers": [{"target": c.target, "connection_mode": c.connection_mode, "is_connected": c.is_connected,
                         "role": c.role} for c in bridge.controllers],
        "managers": [{"target": m.target, "connection_mode": m.connection_mode} for m in bridge.managers],
        "findings": [f.to_json(db) for f in findings],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m controller.doctor [--db DB] [--bridge NAME] [--format F]`, until cli.py wires it in."""
    parser = argparse.ArgumentParser(prog="otseg")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_parser(commands)
    args = parser.parse_args(["doctor", *(sys.argv[1:] if argv is None else argv)])
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
