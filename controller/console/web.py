"""The console's Flask blueprint (/console): pages from the running controller, actions as API calls.

Invariants (what holds against a hostile page, a careless operator, an outsider):
- the blueprint lives in the API's own Flask app: its Host and Origin checks (DNS rebinding,
  cross-origin requests) apply to every console request first;
- reads need no sign-in exactly when the API's reads need no token; otherwise every page needs a session;
- every change is a POST that needs a session (signed in with an API token) and that session's
  CSRF token; it is then made as a call of the control API itself, with the session's token
  (internal request through the same app): validation, audit, cluster forwarding and every
  refusal are the API's, never re-implemented here;
- an uploaded candidate is applied only as exactly the bytes that were checked and shown, and
  only from the session that uploaded it;
- every response carries a Content-Security-Policy that allows only this origin's own script and
  style (no inline script, no framing), and is never cached.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from flask import Blueprint, Response, current_app, jsonify, redirect, render_template, request, url_for
from markupsafe import Markup

from controller.console import views
from controller.console.picture import live_svg
from controller.console.sessions import COOKIE, Session, SessionBook
from controller.console.text import annotated_source, iso_utc, locate_errors, parse_iso_utc, policy_diff, utc_text
from controller.core.diagram import to_dot
from controller.core.explain import explain
from controller.core.model import Policy
from controller.io.yamlload import MAX_BYTES

HERE = Path(__file__).resolve().parent
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
PAGES = (("console.zones", "Zones"), ("console.assets", "Assets"), ("console.network", "Network"),
         ("console.events", "Events"), ("console.changes", "Changes"))
MAX_CANDIDATES = 64
MAX_CANDIDATES_PER_SESSION = 4
MAX_APPLIED = 64
VERSION_ID = re.compile(r"[0-9a-f]{4,64}")
SAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")
NEXT_PATH = re.compile(r"/console/(?:[A-Za-z0-9_-][A-Za-z0-9_.-]*/?)*")  # fullmatch: no "..", no newline


@dataclass(frozen=True)
class ConsoleSources:
    """What the console reads from the running controller (each call reads it now)."""

    policy: Callable[[], Policy]  # the policy in force, overrides applied
    version: Callable[[], str]
    text_in_force: Callable[[], bytes]
    status: Callable[[], dict[str, Any]]
    totals: Callable[[], dict[int, tuple[int, int]]]  # switch counters per cookie
    events: Callable[[], list[dict[str, Any]]]  # recent verdict events, oldest first
    sightings: Callable[[], list[dict[str, Any]]]  # unknown devices and conflicts: kind, mac, where
    history: Callable[[], list[dict[str, Any]]]
    load_version: Callable[[str], tuple[str, bytes]]
    clock: Callable[[], float] = time.time


def console_blueprint(sources: ConsoleSources, tokens: Callable[[], list[tuple[str, str]]],
                      reads_need_token: bool) -> Blueprint:
    console = Blueprint("console", __name__, url_prefix="/console", template_folder=str(HERE / "templates"),
                        static_folder=str(HERE / "static"))
    book = SessionBook(tokens)
    notices: dict[str, deque[tuple[str, str]]] = {}
    # id -> (session id, text, file name, the version in force it was checked against)
    candidates: OrderedDict[str, tuple[str, bytes, str, str]] = OrderedDict()
    applied: OrderedDict[str, str] = OrderedDict()  # candidate id -> the version it became (a second submit)
    drawings: OrderedDict[Policy, str] = OrderedDict()  # dot's SVG per policy in force (a few kept)

    def drawing(policy: Policy) -> str:
        """dot's live drawing of `policy` ('' when Graphviz is missing or fails: the tables still say it all)."""
        if policy not in drawings:
            try:
                svg = subprocess.run(["dot", "-Tsvg"], input=to_dot(policy, live=True), capture_output=True,
                                     text=True, timeout=20, check=True).stdout
            except (OSError, subprocess.SubprocessError):
                svg = ""
            drawings[policy] = svg
            while len(drawings) > 4:
                drawings.popitem(last=False)
        return drawings[policy]

    def session() -> Session | None:
        return book.get(request.cookies.get(COOKIE))

    def notify(current: Session, kind: str, message: str) -> None:
        for gone in [key for key in notices if not book.alive(key)]:  # signed out, expired or evicted
            del notices[gone]
        notices.setdefault(current.id, deque(maxlen=8)).append((kind, message))

    @console.before_request
    def readers_sign_in_first() -> Any:
        """With a configured token, nothing is read (not even a refusal's wording) before sign-in."""
        if not reads_need_token or request.method != "GET" or session() is not None:
            return None
        if request.endpoint in ("console.sign_in", "console.static"):
            return None
        if request.endpoint == "console.live":
            return jsonify(error="sign in first"), 401
        return redirect(url_for("console.sign_in", next=request.path))

    @console.errorhandler(413)
    def too_large(error: Exception) -> Any:
        return refused(413, f"the request is over {MAX_BYTES // (1024 * 1024)} MiB, the largest policy the controller "
                            "takes: nothing was checked or changed")

    def page(template: str, endpoint: str, live: bool = False, status: int = 200, **context: Any) -> Any:
        current = session()
        if current is None and reads_need_token and endpoint != "console.sign_in" and status < 400:
            return redirect(url_for("console.sign_in", next=request.path))
        policy = sources.policy()
        pending = context.pop("notices", None) or (list(notices.pop(current.id, ())) if current else [])
        title = context.pop("title", None) or dict(PAGES).get(endpoint, "otseg")
        hidden = current is None and reads_need_token  # the sign-in page tells an outsider nothing
        body = render_template(template, title=title, page=endpoint, pages=PAGES,
                               live=live, signed_in=current is not None, who=current.who if current else "",
                               csrf=current.csrf if current else "", notices=pending, now=sources.clock(),
                               policy_name="" if hidden else policy.name, version="" if hidden else sources.version(),
                               policy_mode="" if hidden else policy.mode,
                               iso_utc=iso_utc, utc_text=utc_text, parse_iso_utc=parse_iso_utc,
                               reads_need_token=reads_need_token, **context)
        return Response(body, status=status, content_type="text/html; charset=utf-8")

    def refused(status: int, message: str) -> Any:
        return page("message.html", "console.refused", status=status, message=message, title="Refused")

    def acting() -> Session | Any:
        """The session of a POST that may act, or the refusal to send back."""
        current = session()
        if current is None:
            return refused(401, "this action needs an API token: sign in first (nothing was changed)")
        if not book.csrf_ok(current, request.form.get("csrf")):
            return refused(403, "the form's CSRF token is missing or wrong: reload the page and try again "
                                "(nothing was changed)")
        return current

    def call_api(current: Session, path: str, body: bytes, content_type: str = "application/json",
                 filename: str | None = None, if_match: str | None = None) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {current.secret}", "Content-Type": content_type}
        if filename:
            headers["X-Otseg-Filename"] = filename
        if if_match:
            headers["If-Match"] = f'"{if_match}"'
        answer = current_app.test_client().post(path, data=body, headers=headers, base_url="http://127.0.0.1")
        try:
            payload = json.loads(answer.get_data() or b"{}")
        except ValueError:
            payload = {"error": answer.get_data(as_text=True)[:500]}
        return answer.status_code, payload if isinstance(payload, dict) else {"result": payload}

    def act(path: str, body: dict[str, Any], done: Callable[[dict[str, Any]], str], back: str) -> Any:
        current = acting()
        if not isinstance(current, Session):
            return current
        code, payload = call_api(current, path, json.dumps(body).encode())
        if code == 200:
            notify(current, "done", done(payload))
        else:
            notify(current, "error", f"{payload.get('error') or payload} (HTTP {code}; nothing was changed)")
        return redirect(url_for(back), code=303)

    @console.after_request
    def headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Cache-Control"] = "no-store"
        return response

    @console.get("/")
    def home() -> Any:
        return redirect(url_for("console.zones"))

    @console.get("/zones")
    def zones() -> Any:
        policy = sources.policy()
        totals = sources.totals()
        svg = drawing(policy)
        return page("zones.html", "console.zones", live=True,
                    picture=Markup(live_svg(svg, views.live_counters(policy, totals))) if svg else "",
                    **views.zones_page(policy, totals))

    @console.get("/live.json")
    def live() -> Any:
        return jsonify(time=sources.clock(), counters=views.live_counters(sources.policy(), sources.totals()))

    @console.get("/assets")
    def assets() -> Any:
        return page("assets.html", "console.assets",
                    **views.assets_page(sources.policy(), sources.status(), sources.sightings()))

    @console.get("/network")
    def network() -> Any:
        return page("network.html", "console.network", **views.network_page(sources.policy(), sources.status()))

    @console.get("/events")
    def events() -> Any:
        return page("events.html", "console.events", **views.events_page(
            sources.policy(), sources.events(), request.args.get("verdict", ""), request.args.get("q", "")))

    @console.get("/explain", endpoint="explain")
    def explain_view() -> Any:
        policy = sources.policy()
        src, dst, service = (request.args.get(k, "").strip() for k in ("src", "dst", "service"))
        elements, error = None, ""
        if src or dst or service:
            names = {s.name for s in policy.services}
            service_name = service if service in names else views.service_for(policy, service)
            try:
                if not service_name:
                    raise KeyError(f"no service named {service!r} in policy {policy.name!r}")
                elements = explain(policy, policy.asset(src), policy.asset(dst), service_name)
                service = service_name
            except KeyError as missing:
                error = str(missing).strip("'\"") + ": pick names from the lists"
        return page("explain.html", "console.explain", **views.explain_page(policy, src, dst, service, elements, error))

    @console.get("/changes")
    def changes() -> Any:
        return page("changes.html", "console.changes", **views.changes_page(
            sources.history(), sources.version(), sources.status().get("overrides"), sources.policy()))

    @console.get("/diff")
    def diff() -> Any:
        a, b = (request.args.get(key, "").strip().lower() for key in ("a", "b"))
        if not (VERSION_ID.fullmatch(a) and VERSION_ID.fullmatch(b)):
            return refused(404, "give two policy versions (4 to 64 hex digits each, as on the Changes page)")
        try:
            (a_full, a_text), (b_full, b_text) = sources.load_version(a), sources.load_version(b)
        except KeyError as missing:
            return refused(404, str(missing).strip("'\""))
        lines = policy_diff(a_text.decode(errors="replace"), b_text.decode(errors="replace"), a_full[:12], b_full[:12])
        return page("diff.html", "console.diff", a=a_full, b=b_full, lines=lines)

    @console.post("/candidate")
    def candidate() -> Any:
        current = acting()
        if not isinstance(current, Session):
            return current
        upload = request.files.get("file")
        if upload is not None and upload.filename:
            data, name = upload.read(), SAFE_FILENAME.sub("_", upload.filename)[:80] or "candidate.yaml"
        else:
            data, name = request.form.get("text", "").encode(), "candidate.yaml"
        if not data.strip():
            return refused(422, "the candidate is empty: choose a policy file or paste its text")
        code, payload = call_api(current, "/v1/policy/validate", data, "application/yaml", name)
        text = data.decode(errors="replace")
        if code != 200:
            messages = payload.get("errors") or [payload.get("error") or str(payload)]
            errors = locate_errors([str(m) for m in messages], name)
            return page("candidate.html", "console.candidate", status=422, valid=False, errors=errors,
                        source=annotated_source(text, errors))
        key = secrets.token_urlsafe(16)
        for gone in [k for k, held in candidates.items() if not book.alive(held[0])]:
            del candidates[gone]
        mine = [k for k, held in candidates.items() if held[0] == current.id]
        for old in mine[:max(0, len(mine) - MAX_CANDIDATES_PER_SESSION + 1)]:  # this session's oldest
            del candidates[old]
        candidates[key] = (current.id, data, name, str(payload.get("in_force", "")))
        while len(candidates) > MAX_CANDIDATES:
            candidates.popitem(last=False)
        lines = policy_diff(sources.text_in_force().decode(errors="replace"), text, "in force", name)
        return page("candidate.html", "console.candidate", valid=True, candidate_version=payload.get("version", ""),
                    name=payload.get("policy", ""), change=payload.get("change", {}), lines=lines, candidate=key)

    @console.post("/apply")
    def apply() -> Any:
        current = acting()
        if not isinstance(current, Session):
            return current
        key = request.form.get("candidate", "")
        held = candidates.get(key)
        if held is None or held[0] != current.id:
            if key in applied and held is None:
                notify(current, "done", f"this candidate was already applied: it became version {applied[key][:12]}")
                return redirect(url_for("console.changes"), code=303)
            return refused(404, "no such candidate in this session (it was replaced or the controller restarted): "
                                "check it again")
        del candidates[key]  # taken before the call: a second submit meanwhile finds it gone, never applies it twice
        _, data, name, base = held
        code, payload = call_api(current, "/v1/policy", data, "application/yaml", name,
                                 if_match=base or None)
        if code == 200:
            applied[key] = str(payload.get("version", ""))
            while len(applied) > MAX_APPLIED:
                applied.popitem(last=False)
            notify(current, "done", f"version {str(payload.get('version', ''))[:12]} is in force "
                                    f"({payload.get('flow_mods', 0)} flow changes)")
        elif code == 412:
            notify(current, "error", f"{payload.get('error')} (HTTP 412)")
        else:
            candidates[key] = held  # it can be applied again once the cause is fixed
            notify(current, "error", f"{payload.get('error') or payload.get('errors') or payload} (HTTP {code}; the "
                                     "policy in force is unchanged)")
        return redirect(url_for("console.changes"), code=303)

    @console.post("/rollback")
    def rollback() -> Any:
        return act("/v1/rollback", {"version": request.form.get("version", "")},
                   lambda p: f"rolled back: version {str(p.get('version', ''))[:12]} is in force", "console.changes")

    @console.post("/links/approve")
    def approve_link() -> Any:
        return act("/v1/links/approve", {"a": request.form.get("a", ""), "b": request.form.get("b", "")},
                   lambda p: f"link {' <-> '.join(p.get('approved', []))} approved", "console.network")

    @console.post("/links/revoke")
    def revoke_link() -> Any:
        return act("/v1/links/revoke", {"a": request.form.get("a", ""), "b": request.form.get("b", "")},
                   lambda p: "link approval revoked", "console.network")

    @console.post("/grants")
    def post_grant() -> Any:
        try:
            seconds = float(request.form.get("hours", "")) * 3600
        except ValueError:
            seconds = -1.0
        body = {"from": _names(request.form.get("from", "")), "to": _names(request.form.get("to", "")),
                "services": _names(request.form.get("service", "")), "seconds": seconds,
                "reason": request.form.get("reason", ""), "needs_approval": request.form.get("needs_approval") == "1"}
        return act("/v1/grants", body, lambda p: f"grant {p.get('id', '')} made", "console.changes")

    @console.post("/grants/approve")
    def approve_grant() -> Any:
        return act("/v1/grants/approve", {"id": request.form.get("id", "")}, lambda p: "grant approved",
                   "console.changes")

    @console.post("/grants/revoke")
    def revoke_grant() -> Any:
        return act("/v1/grants/revoke", {"id": request.form.get("id", "")}, lambda p: "grant revoked",
                   "console.changes")

    @console.post("/isolations")
    def post_isolation() -> Any:
        island = request.form.get("island") == "1"
        body: dict[str, Any] = {"kind": "island" if island else "auto", "reason": request.form.get("reason", "")}
        if not island:
            body["target"] = request.form.get("target", "").strip()
        return act("/v1/isolations", body, lambda p: f"isolation {p.get('id', '')} in force", "console.changes")

    @console.post("/isolations/release")
    def release_isolation() -> Any:
        return act("/v1/isolations/release", {"id": request.form.get("id", "")}, lambda p: "isolation released",
                   "console.changes")

    @console.route("/signin", methods=["GET", "POST"])
    def sign_in() -> Any:
        wanted = request.values.get("next", "")
        target = wanted if NEXT_PATH.fullmatch(wanted) else url_for("console.zones")
        if request.method == "GET":
            return page("signin.html", "console.sign_in", next=target)
        current = book.sign_in(request.form.get("token", ""), replacing=request.cookies.get(COOKIE))
        if current is None:
            return page("signin.html", "console.sign_in", status=401, next=target,
                        notices=[("error", "that is not one of this controller's API tokens")])
        response = redirect(target, code=303)
        response.set_cookie(COOKIE, current.id, httponly=True, samesite="Strict", path="/console")
        return response

    @console.post("/signout")
    def sign_out() -> Any:
        current = acting()
        if not isinstance(current, Session):
            return current
        book.sign_out(current.id)
        notices.pop(current.id, None)
        response = redirect(url_for("console.zones"), code=303)
        response.delete_cookie(COOKIE, path="/console")
        return response

    return console


def _names(text: str) -> list[str]:
    """`a, b c` -> ["a", "b", "c"]: the form's lists of zone, asset or service names."""
    return [name for name in re.split(r"[\s,]+", text.strip()) if name]
