"""`otseg grant|approve|revoke|grants|isolate|island|release|isolations|learn`: temporary access,
isolation and learn mode on a running controller (its control API; see
controller/app/override_control.py and controller/app/learner.py). `learn propose` runs the
pure proposal (controller.core.learn) here, on what the controller recorded."""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable

from controller.client import ClientError, EXIT_INVALID, _call
from controller.core.overrides import MAX_GRANT_SECONDS, format_seconds, parse_duration


def add_parsers(commands: argparse._SubParsersAction, common: Callable[[argparse.ArgumentParser], None]) -> None:  # type: ignore[type-arg]
    def post(parser: argparse.ArgumentParser, path: str, body: Callable[[argparse.Namespace], dict[str, Any]],
             show: Callable[[dict[str, Any]], None]) -> None:
        common(parser)
        parser.set_defaults(handler=lambda a: _call(a, "POST", path, json.dumps(body(a)).encode(), None, show,
                                                    content_type="application/json"))

    grant = commands.add_parser("grant", help="open a temporary conduit (ends by itself; audited)")
    grant.add_argument("source", metavar="FROM", help="zone or asset, or several joined by commas")
    grant.add_argument("destination", metavar="TO", help="zone or asset, or several joined by commas")
    grant.add_argument("services", metavar="SERVICE", help="service name(s) from the policy, joined by commas")
    grant.add_argument("--for", dest="duration", required=True, metavar="DURATION",
                       help="how long: 90s, 45m, 2h, 1d, 1h30m (at most 30 days)")
    grant.add_argument("--reason", required=True, help="why (audited, shown in status and the events)")
    grant.add_argument("--needs-approval", action="store_true",
                       help="take effect only once a different API token approves it (`otseg approve ID`)")
    post(grant, "/v1/grants", lambda a: {"from": _names(a.source), "to": _names(a.destination),
                                          "services": _names(a.services), "seconds": _seconds(a.duration),
                                          "reason": a.reason, "needs_approval": a.needs_approval}, _show_granted)
    approve = commands.add_parser("approve", help="approve a grant that waits for a second token")
    approve.add_argument("id")
    post(approve, "/v1/grants/approve", lambda a: {"id": a.id}, lambda answer: print(f"grant {answer['grant']} "
                                                                                       "approved: in force"))
    revoke = commands.add_parser("revoke", help="end a grant now")
    revoke.add_argument("id")
    post(revoke, "/v1/grants/revoke", lambda a: {"id": a.id},
         lambda answer: print(f"grant {answer['grant']} revoked ({answer['flow_mods']} flow changes)"))
    grants = commands.add_parser("grants", help="the temporary grants, with the time left")
    common(grants)
    grants.set_defaults(handler=lambda a: _call(a, "GET", "/v1/grants", None, None, _show_grants))

    isolate = commands.add_parser("isolate", help="cut a zone or an asset off (essential conduits stay)")
    isolate.add_argument("target", metavar="ZONE|ASSET")
    isolate.add_argument("--asset", action="store_true", help="TARGET is an asset (needed only if a zone has the "
                                                               "same name)")
    isolate.add_argument("--keep", action="append", default=[], metavar="CONDUIT",
                         help="keep this conduit too (besides the ones marked essential); repeatable")
    isolate.add_argument("--reason", required=True, help="why (audited)")
    post(isolate, "/v1/isolations", lambda a: {"kind": "asset" if a.asset else "auto", "target": a.target,
                                               "keep": a.keep, "reason": a.reason}, _show_isolated)
    island = commands.add_parser("island", help="cut Purdue level 3.5 and above off from the levels below")
    island.add_argument("--keep", action="append", default=[], metavar="CONDUIT",
                        help="keep this crossing conduit too (besides the essential ones); repeatable")
    island.add_argument("--reason", required=True, help="why (audited)")
    post(island, "/v1/isolations", lambda a: {"kind": "island", "keep": a.keep, "reason": a.reason}, _show_isolated)
    release = commands.add_parser("release", help="end an isolation (or the island)")
    release.add_argument("id")
    post(release, "/v1/isolations/release", lambda a: {"id": a.id},
         lambda answer: print(f"isolation {answer['isolation']} released ({answer['flow_mods']} flow changes)"))
    isolations = commands.add_parser("isolations", help="the isolations in force")
    common(isolations)
    isolations.set_defaults(handler=lambda a: _call(a, "GET", "/v1/grants", None, None, _show_isolations))


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _seconds(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as error:
        raise ClientError(f"--for: {error}", EXIT_INVALID) from None
    if seconds > MAX_GRANT_SECONDS:
        raise ClientError(f"--for {text}: a grant lasts at most {format_seconds(MAX_GRANT_SECONDS)}; for longer, "
                          "add a conduit to the policy", EXIT_INVALID)
    return seconds


def _show_granted(answer: dict[str, Any]) -> None:
    print(f"{answer['describe']} ({answer['flow_mods']} flow changes)")


def _show_isolated(answer: dict[str, Any]) -> None:
    print(f"{answer['describe']}: {len(answer['conduits_cut'])} conduit(s) cut"
          + (f" ({', '.join(answer['conduits_cut'])})" if answer["conduits_cut"] else "")
          + f"; {answer['flow_mods']} flow changes; `otseg release {answer['isolation']}` undoes it")


def _show_grants(answer: dict[str, Any]) -> None:
    if not answer["grants"]:
        print("no grants")
    for grant in answer["grants"]:
        print(f"{grant['describe']}; by {grant['who']}: {grant['reason']}")


def _show_isolations(answer: dict[str, Any]) -> None:
    if not answer["isolations"]:
        print("no isolations")
    for isolation in answer["isolations"]:
        print(f"{isolation['describe']}; by {isolation['who']}: {isolation['reason']}")


def add_learn_parsers(commands: argparse._SubParsersAction, common: Callable[[argparse.ArgumentParser], None]) -> None:  # type: ignore[type-arg]
    learn = commands.add_parser("learn", help="learn mode: what was seen, and a policy proposed from it")
    actions = learn.add_subparsers(dest="action", metavar="ACTION", required=True)
    report = actions.add_parser("report", help="the conversations recorded (learn-mode zones)")
    common(report)
    report.set_defaults(handler=lambda a: _call(a, "GET", "/v1/learn", None, None, _show_learned))
    propose = actions.add_parser("propose", help="write a policy that allows what was seen (and nothing else)")
    propose.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write the proposed policy")
    common(propose)
    propose.set_defaults(handler=_propose)
    reset = actions.add_parser("reset", help="forget what was recorded (audited)")
    common(reset)
    reset.set_defaults(handler=lambda a: _call(a, "POST", "/v1/learn/reset", b"{}", None,
                                               lambda answer: print(f"forgot {answer['forgotten']} conversations"),
                                               content_type="application/json"))


def _show_learned(answer: dict[str, Any]) -> None:
    zones = ", ".join(answer["zones_learning"]) or "none (no zone is in learn mode)"
    print(f"learning in: {zones}; {len(answer['conversations'])} conversation(s) of a budget of {answer['budget']}"
          + (f"; BUDGET REACHED, {answer['not_recorded']} more not recorded" if answer["full"] else ""))
    for row in answer["conversations"]:
        print(f"  {row['describe']:<50} {row['packets']:>10,} packets  first {_stamp(row['first'])}  "
              f"last {_stamp(row['last'])}")
    for row in answer["unknown_devices"]:
        print(f"  unknown device {row['mac']} on {row['switch']}:{row['port']}: {row['frames']} frame(s) sampled, "
              "dropped (describe it as an asset to learn its traffic)")


def _propose(args: argparse.Namespace) -> int:
    import yaml  # noqa: PLC0415

    from controller.client import request_json  # noqa: PLC0415
    from controller.core.learn import Conversation, Seen, propose  # noqa: PLC0415
    from controller.io.files import load_policy_text, proposal_text  # noqa: PLC0415
    from controller.policy.diagnostics import DocumentError  # noqa: PLC0415

    learned = request_json(args, "GET", "/v1/learn")
    in_force = request_json(args, "GET", "/v1/policy")
    policy = load_policy_text(in_force["text"].encode(), "in-force.yaml")
    seen = {Conversation.from_key(r["key"]): Seen(r["first"], r["last"], r["packets"]) for r in learned["conversations"]}
    text = proposal_text(*propose(yaml.safe_load(in_force["text"]), policy, seen))
    try:
        proposed = load_policy_text(text.encode(), args.output)
    except DocumentError as error:  # an otseg bug: never write a policy that does not load
        raise ClientError("the proposal does not validate (please report it): "
                          + "; ".join(map(str, error.diagnostics[:3])), EXIT_INVALID) from None
    with open(args.output, "w") as stream:
        stream.write(text)
    added = len(proposed.conduits) - len(policy.conduits)
    print(f"wrote {args.output}: {added} conduit(s) proposed from {len(seen)} conversation(s), mode enforce; "
          f"review it, then `otseg diff {args.output}` and `otseg push {args.output}`")
    if learned["full"]:
        print(f"warning: the learn budget was reached: {learned['not_recorded']} conversation(s) were not recorded "
              "and are not in the proposal")
    return 0


def _stamp(seconds: float) -> str:
    import time  # noqa: PLC0415

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
