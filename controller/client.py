"""`otseg push|diff|status|history|rollback|links`: talk to a running controller's control API."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8181"
EXIT_REFUSED = 1
EXIT_INVALID = 2
EXIT_UNREACHABLE = 3


class ClientError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def add_parsers(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--controller", default=os.environ.get("OTSEG_CONTROLLER", DEFAULT_URL),
                            help=f"control API URL (default {DEFAULT_URL}, or OTSEG_CONTROLLER)")
        parser.add_argument("--token-file", help="bearer token file (NAME:SECRET or SECRET); or OTSEG_API_TOKEN; "
                                                 "default: the token a local `otseg run` made in --state-dir")
        parser.add_argument("--state-dir", default=os.environ.get("OTSEG_STATE_DIR", "/var/lib/otseg"),
                            help="where the local controller keeps its api-token (default /var/lib/otseg)")
        parser.add_argument("--json", action="store_true", help="print the API's JSON answer")

    push = commands.add_parser("push", help="apply a policy file on the running controller")
    push.add_argument("file")
    common(push)
    push.set_defaults(handler=lambda a: _call(a, "POST", "/v1/policy", _read(a.file), a.file, _show_apply))
    diff = commands.add_parser("diff", help="validate a policy file and show what applying it would change")
    diff.add_argument("file")
    common(diff)
    diff.set_defaults(handler=lambda a: _call(a, "POST", "/v1/policy/validate", _read(a.file), a.file, _show_diff))
    status = commands.add_parser("status", help="what the running controller enforces")
    common(status)
    status.set_defaults(handler=lambda a: _call(a, "GET", "/v1/status", None, None, _show_status))
    history = commands.add_parser("history", help="applied versions and the audit log")
    common(history)
    history.set_defaults(handler=lambda a: _call(a, "GET", "/v1/history", None, None, _show_history))
    rollback = commands.add_parser("rollback", help="apply an earlier version again (default: the previous one)")
    rollback.add_argument("version", nargs="?")
    common(rollback)
    rollback.set_defaults(handler=lambda a: _call(
        a, "POST", "/v1/rollback", json.dumps({"version": a.version} if a.version else {}).encode(), None,
        _show_apply, content_type="application/json"))
    links = commands.add_parser("links", help="declared and pending inter-switch links; approve or revoke one")
    common(links)
    links.set_defaults(handler=lambda a: _call(a, "GET", "/v1/links", None, None, _show_links))
    actions = links.add_subparsers(dest="action", metavar="ACTION")
    for action, text in (("approve", "trust a pending link (stored and audited)"),
                         ("revoke", "withdraw an approval")):
        sub = actions.add_parser(action, help=text)
        sub.add_argument("a", metavar="SWITCH:PORT")
        sub.add_argument("b", metavar="SWITCH:PORT")
        common(sub)
        sub.set_defaults(handler=lambda a, action=action: _call(
            a, "POST", f"/v1/links/{action}", json.dumps({"a": a.a, "b": a.b}).encode(), None,
            lambda answer: print(f"{action}d link {' <-> '.join(answer.get(action + 'd', []))}"),
            content_type="application/json"))
    from controller.override_client import add_learn_parsers, add_parsers as add_override_parsers  # noqa: PLC0415
    add_override_parsers(commands, common)  # (a local import: that module imports this one)
    add_learn_parsers(commands, common)


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ClientError(f"cannot read {path}: {error.strerror}", EXIT_INVALID) from None


def token_secret(token_file: str | None, state_dir: str | None) -> str | None:
    """The API token to send: --token-file, else OTSEG_API_TOKEN, else the local controller's
    generated one (STATE_DIR/api-token), else none."""
    text = ""
    if token_file:
        text = Path(token_file).read_text().strip()
    elif os.environ.get("OTSEG_API_TOKEN"):
        text = os.environ["OTSEG_API_TOKEN"].strip()
    elif state_dir:
        try:
            text = (Path(state_dir) / "api-token").read_text().strip()
        except OSError:
            text = ""
    return text.partition(":")[2] if ":" in text else (text or None)


def _token(args: argparse.Namespace) -> str | None:
    return token_secret(args.token_file, getattr(args, "state_dir", None))


def _call(args: argparse.Namespace, method: str, path: str, body: bytes | None, filename: str | None,
          show: Any, content_type: str = "application/yaml") -> int:
    request = urllib.request.Request(args.controller.rstrip("/") + path, data=body, method=method)
    request.add_header("Content-Type", content_type)
    if filename:
        request.add_header("X-Otseg-Filename", filename)
    token = _token(args)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as error:
        answer = json.loads(error.read() or b"{}")
        if error.code == 422:
            for line in answer.get("errors", []):
                print(line, file=sys.stderr)
            print(f"{len(answer.get('errors', []))} error(s); nothing was applied", file=sys.stderr)
            return EXIT_INVALID
        print(f"otseg: the controller refused ({error.code}): {answer.get('error', error.reason)}", file=sys.stderr)
        return EXIT_REFUSED
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ClientError(f"cannot reach the controller at {args.controller}: {reason} (is `otseg run` running? "
                          "see --controller)", EXIT_UNREACHABLE) from None
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        show(answer)
    return 0


def request_json(args: argparse.Namespace, method: str, path: str) -> Any:
    """One API call's JSON answer; a refusal or an unreachable controller raises ClientError."""
    request = urllib.request.Request(args.controller.rstrip("/") + path, method=method)
    token = _token(args)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        answer = json.loads(error.read() or b"{}")
        raise ClientError(f"the controller refused ({error.code}): {answer.get('error', error.reason)}",
                          EXIT_INVALID) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ClientError(f"cannot reach the controller at {args.controller}: {reason} (is `otseg run` running? "
                          "see --controller)", EXIT_UNREACHABLE) from None


def _change_lines(change: dict[str, Any]) -> list[str]:
    conduits = change["conduits"]
    lines = [f"  conduits: +{len(conduits['added'])} -{len(conduits['removed'])} ~{len(conduits['changed'])}"
             + "".join(f"\n    + {n}" for n in conduits["added"]) + "".join(f"\n    - {n}" for n in conduits["removed"])
             + "".join(f"\n    ~ {n}" for n in conduits["changed"])]
    if change["zones_changed"] or change["assets_changed"]:
        lines.append(f"  zones changed: {', '.join(change['zones_changed']) or '-'}; "
                     f"assets changed: {', '.join(change['assets_changed']) or '-'}")
    flows = change["flows"]
    lines.append(f"  flows: {change['flow_mods']} changes on {len(flows)} switch(es)"
                 + "".join(f"\n    switch {dpid}: {plan}" for dpid, plan in flows.items()))
    return lines


def _show_apply(answer: dict[str, Any]) -> None:
    pending = answer.get("pending") or {}
    where = f" on {len(answer.get('applied_on', []))} switch(es)" if "applied_on" in answer else ""
    print(f"applied policy {answer['policy']!r} version {answer['version'][:12]} (was {answer['previous'][:12]}) "
          f"in {answer['seconds'] * 1000:.0f} ms, {answer['flow_mods']} flow changes{where}")
    for dpid, why in sorted(pending.items()):
        print(f"  NOT YET on switch {dpid}: {why}")
    print("\n".join(_change_lines(answer["change"])))


def _show_diff(answer: dict[str, Any]) -> None:
    print(f"valid: policy {answer['policy']!r} version {answer['version'][:12]} "
          f"(in force: {answer['in_force'][:12]})")
    print("\n".join(_change_lines(answer["change"])))


def _show_status(answer: dict[str, Any]) -> None:
    policy = answer["policy"]
    mode = policy["mode"]
    print(f"policy {policy['name']!r} version {policy['version'][:12]}; mode {mode['policy']}"
          + (f"; zones in monitor: {', '.join(mode['zones_in_monitor'])}" if mode["zones_in_monitor"] else "")
          + (f"; conduits in monitor: {', '.join(mode['conduits_in_monitor'])}" if mode["conduits_in_monitor"] else ""))
    cluster = answer.get("cluster")
    if cluster:
        roles = sorted({held["role"] for held in cluster["switch_roles"].values()})
        print(f"cluster: this instance {cluster['instance']} is the {cluster['role']} (term {cluster['term']}); leader "
              f"{cluster['leader'] or 'none'}; store {cluster['store']}; changes "
              f"{'accepted' if cluster['authoritative'] else 'forwarded to the leader' if cluster['role'] == 'follower' else 'REFUSED (no quorum)'}; "
              f"roles the switches granted it: {', '.join(roles) or 'none yet'}")
    switches = answer["switches"]
    programmed = sum(1 for s in switches.values() if s["programmed"])
    states = answer.get("link_states", {"declared": [], "pending": []})
    print(f"switches: {len(switches)} connected, {programmed} programmed; links: {len(answer['links'])} up of "
          f"{len(states['declared'])} declared, {len(states['pending'])} pending")
    for item in states["pending"]:
        print(f"  PENDING link {item['a']} <-> {item['b']}: {item['reason']} (not used)")
    for switch, state in switches.items():
        capabilities = state.get("capabilities") or {}
        if capabilities.get("profile", "full") != "full":
            print(f"  switch {switch}: profile {capabilities['description']}")
            for loss in capabilities.get("loses", []):
                print(f"    loses: {loss}")
    for a, b in answer.get("links_unprotected", []):
        print(f"  UNPROTECTED link {a} <-> {b}: no fast-failover groups at one end; the controller reroutes")
    for switch, lines in answer.get("switch_safety", {}).items():
        for line in lines:
            print(f"  UNSAFE switch {switch}: {line}")
    assets = answer["assets"]
    print(f"assets: {len(assets['located'])} located, {len(assets['unlocated'])} unlocated"
          + (f" ({', '.join(assets['unlocated'])})" if assets["unlocated"] else ""))
    overrides = answer.get("overrides") or {"grants": [], "isolations": []}
    for isolation in overrides["isolations"]:
        print(f"  ISOLATED {isolation['describe']} (by {isolation['who']}: {isolation['reason']})")
    for grant in overrides["grants"]:
        print(f"  {'GRANT' if grant['active'] else 'GRANT WAITING'} {grant['describe']} (by {grant['who']}: "
              f"{grant['reason']})")
    last = answer.get("last_policy_apply")
    if last:
        print(f"last apply: {last['time']} by {last['who']} ({last['source']}): version {last['to_version'][:12]}, "
              f"{last['flow_mods']} flow changes in {last['seconds'] * 1000:.0f} ms")
    print(f"packet-ins: {answer['packet_ins']}")


def _show_links(answer: dict[str, Any]) -> None:
    for item in answer["declared"]:
        print(f"declared  {item['a']:>14} <-> {item['b']:<14} {'up' if item['up'] else 'DOWN':<5} "
              f"({item.get('source', 'topology')})")
    for item in answer["pending"]:
        print(f"PENDING   {item['a']:>14} <-> {item['b']:<14} not used: {item['reason']}; {item['frames']} LLDP frames "
              f"(approve: otseg links approve {item['a']} {item['b']})")
    if not answer["declared"] and not answer["pending"]:
        print("no links declared or seen")


def _show_history(answer: list[dict[str, Any]]) -> None:
    for entry in answer:
        print(f"{entry['time']}  {entry['action']:<8} {str(entry.get('to_version', ''))[:12]:<12} "
              f"from {str(entry.get('from_version') or '-')[:12]:<12} by {entry.get('who', '-')} "
              f"({entry.get('source', '')})" + (f": {entry['error']}" if entry.get("error") else ""))


def fetch_policy(url: str, token_file: str | None = None) -> bytes:
    """The policy in force on a running controller, as YAML text."""
    request = urllib.request.Request(url.rstrip("/") + "/v1/policy")
    secret = token_secret(token_file, os.environ.get("OTSEG_STATE_DIR", "/var/lib/otseg"))
    if secret:
        request.add_header("Authorization", f"Bearer {secret}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["text"].encode()  # type: ignore[no-any-return]
    except (urllib.error.URLError, OSError) as error:
        raise ClientError(f"cannot get the policy from {url}: {getattr(error, 'reason', error)}",
                          EXIT_UNREACHABLE) from None
