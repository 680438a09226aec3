"""The control API served by `otseg run` (Flask on eventlet's WSGI server).

Bound to 127.0.0.1 by default. What holds against a web page in the operator's browser:
- every call that changes state (POST) needs the bearer token, always. With none configured,
  `otseg run` makes one at start in STATE_DIR/api-token (mode 0600), which the CLI reads: a
  page can send a cross-origin POST, but cannot know the token (CSRF);
- the Host header must name the API's own address (or localhost): a DNS-rebound name is
  refused, so a page cannot read the status through its own origin either;
- a request with an Origin header from anywhere else is refused.
Reads (GET) need the token only when the operator configured one. Bodies are limited to
8 MiB (the policy file limit); every failure is a JSON error with a 4xx code, never a
traceback, and leaves the state in force unchanged. The OpenAPI description is at
/v1/openapi.json. The operator console (/console) is registered on the same app, so every
rule above holds for it too.
"""

from __future__ import annotations

import hmac
import logging
import re
from typing import Any, Callable

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from controller.app.cluster_kv import StoreUnavailable
from controller.app.cluster_store import StoreConflict
from controller.app.control import ControlPlane, Refused, StaleBase
from controller.app.link_control import LinkControl, LinkRequestError
from controller.app.override_control import OverrideControl, OverrideError
from controller.console.web import ConsoleSources, console_blueprint
from controller.core.overrides import MAX_GRANT_SECONDS
from controller.io.yamlload import MAX_BYTES
from controller.policy.diagnostics import DocumentError

log = logging.getLogger("otseg.api")
VERSION_ID = re.compile(r"^[0-9a-f]{4,64}$")  # a stored version, or a unique prefix of one
LOCAL_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "otseg control API", "version": "1"},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "security": [{"bearer": []}],
    "paths": {
        "/v1/status": {"get": {"summary": "What is in force: policy, version, mode, switches, links, assets, "
                                          "last apply", "responses": {"200": {"description": "status"}}}},
        "/v1/policy": {
            "get": {"summary": "The policy in force (name, version, YAML text)",
                    "responses": {"200": {"description": "policy"}}},
            "post": {"summary": "Apply a candidate policy (YAML body): validated whole, sent atomically per switch, "
                                "rolled back everywhere if any switch refuses",
                     "parameters": [{"name": "If-Match", "in": "header", "required": False,
                                     "description": "a version that must still be in force (quoted)",
                                     "schema": {"type": "string"}}],
                     "requestBody": {"content": {"application/yaml": {"schema": {"type": "string"}}}},
                     "responses": {"200": {"description": "applied: version, change, duration"},
                                   "412": {"description": "another version is in force than If-Match names; "
                                                          "nothing was changed"},
                                   "422": {"description": "invalid: every error with file:line:col"},
                                   "409": {"description": "a switch refused; the previous policy is in force"}}}},
        "/v1/policy/validate": {"post": {
            "summary": "Validate a candidate and show its change (conduits, flows per switch) without applying",
            "requestBody": {"content": {"application/yaml": {"schema": {"type": "string"}}}},
            "responses": {"200": {"description": "valid, with the change"}, "422": {"description": "invalid"}}}},
        "/v1/multicast": {"get": {"summary": "IP multicast trees in force: per source and group, the UDP ports, "
                                             "receivers, and copies per switch",
                                  "responses": {"200": {"description": "trees"}}}},
        "/v1/history": {"get": {"summary": "Audit log: every apply, refusal and rollback",
                                "responses": {"200": {"description": "entries, oldest first"}}}},
        "/v1/rollback": {"post": {
            "summary": "Apply a stored version again (default: the one before the version in force)",
            "requestBody": {"content": {"application/json": {"schema": {
                "type": "object", "properties": {"version": {"type": "string"}}}}}},
            "responses": {"200": {"description": "applied"}, "404": {"description": "no such version"},
                          "409": {"description": "refused by a switch"}}}},
        "/v1/links": {"get": {"summary": "Declared links (up or down, from the topology document or approved) and "
                                         "pending links (LLDP crossed them; never used until approved)",
                              "responses": {"200": {"description": "declared and pending links"}}}},
        "/v1/links/approve": {"post": {
            "summary": "Trust a pending link (its two ends as SWITCH:PORT); stored and audited",
            "requestBody": {"content": {"application/json": {"schema": {
                "type": "object", "required": ["a", "b"],
                "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}}}},
            "responses": {"200": {"description": "approved"}, "422": {"description": "not pending, or bad ends"}}}},
        "/v1/links/revoke": {"post": {
            "summary": "Withdraw an approval (links of the topology document are changed there)",
            "requestBody": {"content": {"application/json": {"schema": {
                "type": "object", "required": ["a", "b"],
                "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}}}},
            "responses": {"200": {"description": "revoked"}, "422": {"description": "never approved, or bad ends"}}}},
        "/v1/tables": {"get": {"summary": "What every switch holds, read from it now, with the policy in force, the "
                                          "topology and the bindings (for `otseg verify --live`)",
                               "responses": {"200": {"description": "policy, topology, located, tables"}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "security": [],
                             "responses": {"200": {"description": "text exposition format"}}}},
    },
}


def create_api(control: ControlPlane, status: Callable[[], dict[str, Any]], token: tuple[str, str] | None,
               metrics: Callable[[], tuple[bytes, str]] | None = None, links: LinkControl | None = None,
               reads_need_token: bool = True, host: str = "127.0.0.1",
               tables: Callable[[], dict[str, Any]] | None = None,
               forward: Callable[[str, bytes, dict[str, str]], tuple[bytes, int, dict[str, str]] | None] | None = None,
               overrides: OverrideControl | None = None, more_tokens: tuple[tuple[str, str], ...] = (),
               learner: Any = None, wake: Callable[[], None] = lambda: None,
               console: ConsoleSources | None = None) -> Flask:
    """token: (name, secret); None refuses every change (only a test builds that); `more_tokens`:
    other operators' (a grant that needs approval is approved by a token other than its asker's). `reads_need_token`:
    False when the token was generated (not configured), so that local reads stay open. `forward`
    (cluster mode): a change this instance may not make itself goes to the leader (or is refused). `console`:
    the operator console's reads; its pages are served under /console (controller.console.web)."""
    app = Flask("otseg")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BYTES
    app.config["MAX_FORM_MEMORY_SIZE"] = MAX_BYTES  # a policy pasted in the console's form (Flask's default: 500 kB)
    allowed_hosts = {name for name in LOCAL_NAMES} | {host, f"[{host}]"}

    known = [t for t in ([token] if token else []) + list(more_tokens) if t[1]]

    def caller() -> str | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return None
        offered = header[7:].strip().encode()
        found = None
        for name, secret in known:  # every token compared, in constant time each
            if hmac.compare_digest(offered, secret.encode()):
                found = name
        return found

    def _hostname(value: str) -> str:
        value = value.strip().lower()
        if value.startswith("["):  # [::1]:8181
            return value.split("]")[0] + "]"
        return value.rsplit(":", 1)[0] if value.count(":") == 1 else value

    @app.before_request
    def same_origin_only() -> Any:
        if _hostname(request.host or "") not in allowed_hosts:
            return jsonify(error=f"Host {request.host!r} is not this API's address: refused (DNS rebinding "
                                 "protection; call it by its address, e.g. http://127.0.0.1:8181)"), 403
        origin = request.headers.get("Origin")
        # Same origin means the same scheme, host and port: another local service (a dev server on
        # another port) is another origin.
        if origin is not None and origin.strip().rstrip("/").lower() != f"{request.scheme}://{request.host}".lower():
            return jsonify(error=f"cross-origin request from {origin!r} refused (only pages of this API's own "
                                 f"origin, {request.scheme}://{request.host}, may call it)"), 403
        return None

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Any:
        return jsonify(error=f"{error.name}: {error.description}"), error.code or 400

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Any:
        log.exception("API request %s %s failed", request.method, request.path)
        return jsonify(error=f"the request could not be processed ({type(error).__name__}: {error}); nothing was "
                             "changed"), 400

    def guarded(handler: Callable[[str], Any]) -> Callable[[], Any]:
        def wrapper() -> Any:
            who = caller()
            if who is None and (request.method != "GET" or reads_need_token):
                what = "a change" if request.method != "GET" else "this call"
                return jsonify(error=f"missing or wrong bearer token: {what} needs the API token (the CLI reads it "
                                     "from the state directory, or give --token-file)"), 401
            who = who or "local"
            if forward is not None and request.method == "POST" and request.path != "/v1/policy/validate":
                answer = forward(request.path, request.get_data(), dict(request.headers))
                if answer is not None:
                    body, code, headers = answer
                    return Response(body, status=code, headers=headers)
            try:
                return handler(who)
            except DocumentError as error:
                return jsonify(valid=False, errors=[str(d) for d in error.diagnostics]), 422
            except Refused as error:
                return jsonify(error=f"refused by a switch; the previous policy stays in force: {error}"), 409
            except KeyError as error:
                return jsonify(error=str(error).strip("'\"")), 404
            except (LinkRequestError, OverrideError) as error:
                return jsonify(error=str(error)), 422
            except StoreUnavailable as error:
                return jsonify(error=f"no quorum: {error}; nothing was changed, what is in force stays enforced"), 503
            except StoreConflict as error:
                return jsonify(error=f"{error}; nothing was changed: retry"), 409
        wrapper.__name__ = handler.__name__
        return wrapper

    def body_name() -> str:
        return request.headers.get("X-Otseg-Filename", "candidate.yaml")

    @app.get("/v1/status")
    @guarded
    def get_status(who: str) -> Any:
        return jsonify(status())

    @app.get("/v1/multicast")
    @guarded
    def get_multicast(who: str) -> Any:
        return jsonify({"trees": status().get("multicast", [])})

    @app.get("/v1/policy")
    @guarded
    def get_policy(who: str) -> Any:
        return jsonify(control.in_force())

    @app.post("/v1/policy/validate")
    @guarded
    def validate(who: str) -> Any:
        return jsonify(control.validate(request.get_data(), body_name()))

    @app.post("/v1/policy")
    @guarded
    def apply(who: str) -> Any:
        # `If-Match: "VERSION"`: apply only if VERSION is still in force (a candidate checked
        # against it must not overwrite another operator's newer push); 412 otherwise.
        expected = request.headers.get("If-Match", "").strip().strip('"') or None
        try:
            return jsonify(control.apply(request.get_data(), who, "push", body_name(), expected=expected))
        except StaleBase as error:
            return jsonify(error=str(error), in_force=error.in_force), 412

    @app.get("/v1/history")
    @guarded
    def history(who: str) -> Any:
        return jsonify(control.history())

    @app.post("/v1/rollback")
    @guarded
    def rollback(who: str) -> Any:
        body = request.get_json(silent=True) if request.get_data() else {}
        if not isinstance(body, dict) or not isinstance(body.get("version", ""), (str, type(None))):
            return jsonify(error='give the version as JSON: {"version": "HEX"} (or {} for the previous one)'), 422
        version = body.get("version")
        if version is not None and not VERSION_ID.match(version):
            return jsonify(error="a version is 4 to 64 lower-case hex digits (see `otseg history`)"), 422
        return jsonify(control.rollback(version, who))

    if links is not None:
        def ends() -> tuple[str, str]:
            body = request.get_json(silent=True)
            if not isinstance(body, dict) or not isinstance(body.get("a"), str) or not isinstance(body.get("b"), str):
                raise LinkRequestError('give the link\'s two ends as JSON: {"a": "SWITCH:PORT", "b": "SWITCH:PORT"}')
            return body["a"], body["b"]

        @app.get("/v1/links")
        @guarded
        def get_links(who: str) -> Any:
            return jsonify(links.listing())

        @app.post("/v1/links/approve")
        @guarded
        def approve_link(who: str) -> Any:
            return jsonify(links.approve(*ends(), who))

        @app.post("/v1/links/revoke")
        @guarded
        def revoke_link(who: str) -> Any:
            return jsonify(links.revoke(*ends(), who))

    if overrides is not None:
        def body_of(required: dict[str, type], optional: dict[str, type] | None = None) -> dict[str, Any]:
            body = request.get_json(silent=True, force=True)  # JSON whatever the Content-Type (the token guards)
            shape = ", ".join(f'"{k}": {getattr(t, "__name__", "number")}'
                              for k, t in {**required, **(optional or {})}.items())
            if not isinstance(body, dict) or any(not isinstance(body.get(k), t) for k, t in required.items()) or any(
                    k in body and not isinstance(body[k], t) for k, t in (optional or {}).items()):
                raise OverrideError(f"give JSON {{{shape}}}")
            unknown = set(body) - set(required) - set(optional or {})
            if unknown:
                raise OverrideError(f"unknown field(s) {', '.join(sorted(unknown))}: give JSON {{{shape}}}")
            for key, kind in {**required, **(optional or {})}.items():
                if kind is list and key in body and not all(isinstance(item, str) for item in body[key]):
                    raise OverrideError(f'"{key}" is a list of names')
            return body

        @app.get("/v1/grants")
        @guarded
        def get_grants(who: str) -> Any:
            return jsonify(overrides.listing())

        @app.post("/v1/grants")
        @guarded
        def post_grant(who: str) -> Any:
            body = body_of({"from": list, "to": list, "services": list, "seconds": (int, float), "reason": str},  # type: ignore[dict-item]
                           {"needs_approval": bool})
            if not 0 < body["seconds"] <= MAX_GRANT_SECONDS:
                raise OverrideError(f'"seconds" must be above 0 and at most {MAX_GRANT_SECONDS} (30 days)')
            return jsonify(overrides.grant(body["from"], body["to"], body["services"], float(body["seconds"]),
                                           body["reason"], who, bool(body.get("needs_approval", False))))

        @app.post("/v1/grants/approve")
        @guarded
        def approve_grant(who: str) -> Any:
            return jsonify(overrides.approve(body_of({"id": str})["id"], who))

        @app.post("/v1/grants/revoke")
        @guarded
        def revoke_grant(who: str) -> Any:
            return jsonify(overrides.revoke(body_of({"id": str})["id"], who))

        @app.post("/v1/isolations")
        @guarded
        def post_isolation(who: str) -> Any:
            body = body_of({"kind": str, "reason": str}, {"target": str, "keep": list})
            if body["kind"] not in ("zone", "asset", "island", "auto"):
                raise OverrideError('"kind" is zone, asset, island, or auto (a zone if one has that name, else an asset)')
            if (body["kind"] == "island") == bool(body.get("target")):
                raise OverrideError('"target" names the zone or asset to isolate (and is left out for the island)')
            return jsonify(overrides.isolate(body["kind"], body.get("target", ""), body.get("keep", []),
                                             body["reason"], who))

        @app.post("/v1/isolations/release")
        @guarded
        def release_isolation(who: str) -> Any:
            return jsonify(overrides.release(body_of({"id": str})["id"], who))

    if learner is not None:
        @app.get("/v1/learn")
        @guarded
        def get_learned(who: str) -> Any:
            return jsonify(learner.report())

        @app.post("/v1/learn/reset")
        @guarded
        def reset_learned(who: str) -> Any:
            forgotten = learner.forget()
            control.store.audit(who=who, source="learn", action="learn-reset", conversations=forgotten)
            wake()
            return jsonify({"forgotten": forgotten})

    if tables is not None:
        @app.get("/v1/tables")
        @guarded
        def get_tables(who: str) -> Any:
            return jsonify(tables())

    @app.get("/v1/openapi.json")
    def openapi() -> Any:
        return jsonify(OPENAPI)

    if metrics is not None:
        @app.get("/metrics")
        def get_metrics() -> Response:
            body, content_type = metrics()
            return Response(body, content_type=content_type)

    if console is not None:
        app.register_blueprint(console_blueprint(console, lambda: known, reads_need_token))

    return app
