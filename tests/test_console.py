"""The operator console: its pure views, and its pages and actions through the API's own Flask app
(fake switches). The browser tests on Open vSwitch are tests/integration/test_console_browser.py."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape

from controller.app.api import create_api
from controller.app.control import ControlPlane
from controller.app.override_control import OverrideControl
from controller.app.status import snapshot
from controller.app.store import PolicyStore, version_of
from controller.console import views
from controller.console.picture import live_svg
from controller.console.sessions import COOKIE, SessionBook
from controller.console.text import annotated_source, locate_errors, parse_iso_utc, policy_diff, utc_text
from controller.console.web import ConsoleSources
from controller.core.diagram import to_dot
from controller.core.explain import explain
from controller.core.rules import cookie
from controller.io.files import load_policy
from tests.conftest import POLICIES
from tests.test_enforcer import _linear
from tests.test_link_control import DOCUMENTED, RELAYED, _links

A = (POLICIES / "linear.yaml").read_bytes()
B = A.replace(b"  - name: eng-programs-plcs", b"  - name: eng-programs-plcs-renamed")
INVALID = A.replace(b"services: [modbus, icmp]", b"services: [modbsu, icmp]")
TOKEN = "s3cret-s3cret-16"
OTHER = "an0ther-s3cret-16"
EVENT = {"time": "2026-12-02T10:00:00Z", "verdict": "denied", "reason": "no conduit", "src_asset": "plc-a",
         "dst_asset": "eng", "service": "tcp 40000->102 flags 0x02", "switch": "0x2", "port": 1}


class Console:
    def __init__(self, tmp_path: Path, reads_need_token: bool = False, links: Any = None) -> None:
        enforcer, self.switches = _linear()
        enforcer.reconcile()
        store = PolicyStore(tmp_path)
        version = store.save(A)
        store.set_current(version, version)
        store.audit(who="local", source="file linear.yaml", action="start", from_version=None, to_version=version)
        self.control = ControlPlane(enforcer, store, threading.Lock(), version, A)
        self.overrides = OverrideControl(self.control)
        self.totals: dict[int, tuple[int, int]] = {}
        self.events: list[dict[str, Any]] = [EVENT]
        status = lambda: snapshot(enforcer, self.control.version, {}, self.control,  # noqa: E731
                                  {"link_states": links.listing() if links else {"declared": [], "pending": []}})
        sources = ConsoleSources(policy=lambda: enforcer.policy, version=lambda: self.control.version,
                                 text_in_force=lambda: self.control.text, status=status, totals=lambda: self.totals,
                                 events=lambda: self.events, sightings=enforcer.reported.listing,
                                 history=self.control.history, load_version=store.load)
        app = create_api(self.control, status, ("ops", TOKEN), links=links, overrides=self.overrides,
                         more_tokens=(("lead", OTHER),), reads_need_token=reads_need_token, console=sources)
        self.client = app.test_client()

    def sign_in(self, token: str = TOKEN) -> str:
        answer = self.client.post("/console/signin", data={"token": token, "next": "/console/changes"})
        assert answer.status_code == 303, answer.get_data(as_text=True)
        return self.csrf()

    def csrf(self, path: str = "/console/changes") -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.client.get(path).get_data(as_text=True))
        assert found, "no CSRF token on the page"
        return found[1]


# -- pure views ---------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz (scripts/system-setup.sh)")
def test_the_picture_is_dots_drawing_with_a_live_counter_on_every_conduit_arrow() -> None:
    policy = load_policy(POLICIES / "plant.yaml")
    svg = subprocess.run(["dot", "-Tsvg"], input=to_dot(policy, live=True), capture_output=True, text=True,
                         check=True).stdout
    counters = {f"conduit:{c.name}": 1000 + n for n, c in enumerate(policy.conduits)}
    drawn = live_svg(svg, counters)
    assert drawn.startswith('<svg class="zones"') and "<?xml" not in drawn and 'width="' not in drawn[:200]
    shown = dict(re.findall(r'<tspan data-live="conduit:([^"]+)">(\d+)</tspan> packets', drawn))
    crossing = {c.name for c in policy.conduits
                if {zone_of(policy, e) for e in c.sources} != {zone_of(policy, e) for e in c.destinations}}
    assert crossing and set(shown) >= crossing
    assert all(int(value) == counters[f"conduit:{name}"] for name, value in shown.items())
    assert drawn.count("<tspan data-live=") == svg.count(">0 packets</text>")  # every arrow, none left
    isolated = replace(policy, zones=tuple(replace(z, isolated=z.name == "dmz") for z in policy.zones), _index={})
    assert "ISOLATED" in to_dot(isolated, live=True) and "ISOLATED" not in to_dot(policy, live=True)


def zone_of(policy: Any, endpoint: Any) -> str:
    return endpoint.name if endpoint.kind == "zone" else policy.asset(endpoint.name).zone


def test_counters_come_from_the_switch_counters_by_cookie() -> None:
    policy = load_policy(POLICIES / "linear.yaml")
    totals = {cookie("scada-polls-field"): (41, 4100), cookie("denied:field>control"): (7, 700)}
    live = views.live_counters(policy, totals)
    assert live["conduit:scada-polls-field"] == 41 and live["conduit:eng-programs-plcs"] == 0
    assert live["denied:field>control"] == 7 and live["denied:control>-"] == 0
    assert live["denied:control>field"] == 0 and len([k for k in live if k.startswith("denied:")]) == 2 * 3


def test_an_event_links_to_the_service_that_covers_it() -> None:
    policy = load_policy(POLICIES / "linear.yaml")
    assert views.service_for(policy, "tcp 40000->502 flags 0x02") == "modbus"
    assert views.service_for(policy, "tcp 40000->102 flags 0x02") == "s7comm"
    assert views.service_for(policy, "icmp type 8") != ""
    assert views.service_for(policy, "tcp 40000->1 flags 0x02") == ""
    page = views.events_page(policy, [EVENT, {**EVENT, "verdict": "repaired", "src_asset": "unknown"}], "denied")
    assert len(page["events"]) == 1 and page["events"][0]["explain"] == {"src": "plc-a", "dst": "eng",
                                                                         "service": "s7comm"}
    assert page["verdicts"] == ["denied", "repaired"]
    assert views.events_page(policy, [EVENT], text="NOTHING-LIKE-IT")["events"] == []


def test_errors_are_located_on_their_line_and_column() -> None:
    errors = locate_errors(["c.yaml:3:5: conduits[0].services: unknown 'x'", "c.yaml:99:1: far", "other"], "c.yaml")
    assert [(e.line, e.col) for e in errors] == [(3, 5), (99, 1), (0, 0)]
    lines = annotated_source("a\nb\nc\n", errors)
    assert [len(line.errors) for line in lines] == [0, 0, 2]  # beyond the end: on the last line


def test_diffs_and_times() -> None:
    lines = policy_diff("a\nb\n", "a\nc\n", "old", "new")
    assert [(l.kind, l.text) for l in lines if l.kind in ("add", "remove")] == [("remove", "-b"), ("add", "+c")]
    assert utc_text(0) == "1970-01-01 00:00:00 UTC+00:00"
    assert parse_iso_utc("2026-12-02T10:00:00Z") == 1796205600.0 and parse_iso_utc("nonsense") is None


def test_sessions_need_a_real_token_and_expire() -> None:
    clock = [0.0]
    book = SessionBook(lambda: [("ops", TOKEN)], clock=lambda: clock[0], seconds=10)
    assert book.sign_in("wrong") is None and book.sign_in("") is None
    session = book.sign_in(TOKEN)
    assert session is not None and session.who == "ops" and book.get(session.id) == session
    assert book.csrf_ok(session, session.csrf) and not book.csrf_ok(session, "x") and not book.csrf_ok(session, None)
    clock[0] = 11
    assert book.get(session.id) is None


# -- pages and actions --------------------------------------------------------------------------

PAGES = ["/console/zones", "/console/assets", "/console/network", "/console/events", "/console/changes",
         "/console/explain?src=scada&dst=plc-a&service=modbus"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_loads_read_only_with_a_strict_content_security_policy(tmp_path: Path, path: str) -> None:
    console = Console(tmp_path)
    answer = console.client.get(path)
    assert answer.status_code == 200 and answer.content_type.startswith("text/html")
    policy = answer.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe" not in policy
    assert answer.headers["X-Frame-Options"] == "DENY"
    text = answer.get_data(as_text=True)
    assert "<script>" not in text and " style=" not in text and "Sign in" in text


def test_the_pages_show_what_is_in_force(tmp_path: Path) -> None:
    console = Console(tmp_path)
    policy = console.control.enforcer.policy
    console.totals = {cookie("scada-polls-field"): (1234, 1)}
    zones = console.client.get("/console/zones").get_data(as_text=True)
    assert all(c.name in zones for c in policy.conduits) and '<svg class="zones"' in zones
    assert '<tspan data-live="conduit:scada-polls-field">1234</tspan> packets' in zones
    assets = console.client.get("/console/assets").get_data(as_text=True)
    assert all(a.name in assets for a in policy.assets) and "bound" in assets
    network = console.client.get("/console/network").get_data(as_text=True)
    assert all(f"{dpid:#x}" in network for dpid in console.switches)
    events = console.client.get("/console/events").get_data(as_text=True)
    assert "/console/explain?src=plc-a&amp;dst=eng&amp;service=s7comm" in events
    why = console.client.get("/console/explain?src=plc-a&dst=eng&service=s7comm").get_data(as_text=True)
    reference = explain(policy, policy.asset("plc-a"), policy.asset("eng"), "s7comm")
    assert ("allowed" if reference[0].verdict.delivered else "denied") in why and str(escape(reference[0].closest)) in why
    live = console.client.get("/console/live.json").json
    assert live["counters"]["conduit:scada-polls-field"] == 1234


def test_an_action_without_a_session_or_its_csrf_token_is_refused(tmp_path: Path) -> None:
    console = Console(tmp_path)
    before = {d: s.flows for d, s in console.switches.items()}
    assert console.client.post("/console/rollback", data={"version": "0000"}).status_code == 401
    assert console.client.post("/console/isolations", data={"target": "field", "reason": "x"}).status_code == 401
    console.sign_in()
    wrong = console.client.post("/console/isolations", data={"target": "field", "reason": "x", "csrf": "guess"})
    assert wrong.status_code == 403 and "CSRF" in wrong.get_data(as_text=True)
    forged = console.client.post("/console/isolations", data={"target": "field", "reason": "x",
                                                              "csrf": console.csrf()},
                                 headers={"Origin": "http://evil.example"})
    assert forged.status_code == 403  # the API's own cross-origin rule, before the console
    assert console.client.post("/console/signin", data={"token": "guess"}).status_code == 401
    assert {d: s.flows for d, s in console.switches.items()} == before and console.overrides.control.overrides.isolations == ()


def test_a_bad_candidate_shows_its_errors_in_its_text_and_a_good_one_its_diff_then_applies(tmp_path: Path) -> None:
    console = Console(tmp_path)
    csrf = console.sign_in()
    bad = console.client.post("/console/candidate", data={"text": INVALID.decode(), "csrf": csrf})
    text = bad.get_data(as_text=True)
    line = next(n for n, l in enumerate(INVALID.decode().splitlines(), 1) if "modbsu" in l)
    assert bad.status_code == 422 and f'href="#line-{line}"' in text and "did you mean &#39;modbus&#39;" in text
    assert re.search(rf'id="line-{line}" class="has-error">', text)
    assert console.control.version == version_of(A)
    good = console.client.post("/console/candidate", data={"text": B.decode(), "csrf": csrf})
    page = good.get_data(as_text=True)
    assert good.status_code == 200 and "+  - name: eng-programs-plcs-renamed" in page
    assert console.control.version == version_of(A)  # shown, not applied
    candidate = re.search(r'name="candidate" value="([^"]+)"', page)[1]  # type: ignore[index]
    other = Console.__new__(Console)  # a second browser: its own session cannot apply this candidate
    other.client = console.client.application.test_client()
    other_csrf = other.sign_in(OTHER)
    assert other.client.post("/console/apply", data={"candidate": candidate, "csrf": other_csrf}).status_code == 404
    applied = console.client.post("/console/apply", data={"candidate": candidate, "csrf": csrf})
    assert applied.status_code == 303 and console.control.version == version_of(B)
    assert console.control.history()[-1]["who"] == "ops"
    changes = console.client.get("/console/changes").get_data(as_text=True)
    assert "is in force" in changes and version_of(B)[:12] in changes
    diff = console.client.get(f"/console/diff?a={version_of(A)[:12]}&b={version_of(B)[:12]}").get_data(as_text=True)
    assert "-  - name: eng-programs-plcs" in diff and "+  - name: eng-programs-plcs-renamed" in diff


def test_grants_isolations_and_rollback_are_api_calls_audited_as_the_signed_in_operator(tmp_path: Path) -> None:
    console = Console(tmp_path)
    csrf = console.sign_in()
    made = console.client.post("/console/grants", data={"from": "plc-a", "to": "eng", "service": "ssh", "hours": "1",
                                                         "reason": "vendor", "csrf": csrf})
    assert made.status_code == 303 and [g.id for g in console.overrides.control.overrides.grants] == ["g1"]
    typo = console.client.post("/console/grants", data={"from": "plc-a", "to": "eng", "service": "shh", "hours": "1",
                                                         "reason": "vendor", "csrf": csrf})
    assert typo.status_code == 303
    assert "did you mean &#39;ssh&#39;" in console.client.get("/console/changes").get_data(as_text=True)
    console.client.post("/console/grants/revoke", data={"id": "g1", "csrf": csrf})
    assert console.overrides.control.overrides.grants == ()
    console.client.post("/console/isolations", data={"target": "field", "reason": "incident", "csrf": csrf})
    assert console.control.enforcer.policy.zone("field").isolated
    zones = console.client.get("/console/zones").get_data(as_text=True)
    assert "ISOLATED" in zones
    isolation = console.overrides.control.overrides.isolations[0].id
    console.client.post("/console/isolations/release", data={"id": isolation, "csrf": csrf})
    assert not console.control.enforcer.policy.zone("field").isolated
    console.control.apply(B, "ops")
    console.client.post("/console/rollback", data={"version": version_of(A), "csrf": csrf})
    assert console.control.version == version_of(A)
    assert {e["who"] for e in console.control.history() if e["action"] != "start"} == {"ops"}


def test_with_a_configured_token_every_page_needs_a_session(tmp_path: Path) -> None:
    console = Console(tmp_path, reads_need_token=True)
    answer = console.client.get("/console/zones")
    assert answer.status_code == 302 and "/console/signin" in answer.headers["Location"]
    assert console.client.get("/console/live.json").status_code == 401
    sign_in = console.client.get("/console/signin").get_data(as_text=True)
    assert "linear" not in sign_in.split("<main")[0]  # the header tells an outsider nothing
    console.sign_in()
    assert console.client.get("/console/zones").status_code == 200
    assert console.client.get(f"/console/signin?next=//evil.example/x").status_code == 200
    redirected = console.client.post("/console/signin", data={"token": TOKEN, "next": "//evil.example/x"})
    assert redirected.headers["Location"].endswith("/console/zones")  # no open redirect


def test_the_session_cookie_is_http_only_and_same_site_strict(tmp_path: Path) -> None:
    console = Console(tmp_path)
    answer = console.client.post("/console/signin", data={"token": TOKEN})
    header = answer.headers["Set-Cookie"]
    assert header.startswith(f"{COOKIE}=") and "HttpOnly" in header and "SameSite=Strict" in header
    assert TOKEN not in header and TOKEN not in console.client.get("/console/changes").get_data(as_text=True)


def test_a_pending_link_is_approved_and_revoked_from_the_network_page(tmp_path: Path) -> None:
    links, changes = _links(tmp_path / "links")
    console = Console(tmp_path / "console", links=links)
    page = console.client.get("/console/network").get_data(as_text=True)
    assert "Pending links" in page and "0x1 port 5" in page and "Approve" in page
    assert console.client.post("/console/links/approve", data={"a": "0x1:5", "b": "0x2:5"}).status_code == 401
    assert RELAYED not in links.declared()
    csrf = console.sign_in()
    console.client.post("/console/links/approve", data={"a": "0x1:5", "b": "0x2:5", "csrf": csrf})
    assert RELAYED in links.declared() and changes[-1] == {DOCUMENTED, RELAYED}
    page = console.client.get("/console/network").get_data(as_text=True)
    assert "approved" in page and "Revoke approval" in page and "link 0x1:5 &lt;-&gt; 0x2:5 approved" in page
    console.client.post("/console/links/revoke", data={"a": "0x1:5", "b": "0x2:5", "csrf": csrf})
    assert links.declared() == {DOCUMENTED}
    assert [e["who"] for e in PolicyStore(tmp_path / "links").history() if e["action"].startswith("link")] == ["ops", "ops"]


def test_an_isolated_asset_is_shown_quarantined_with_its_isolation_until_released(tmp_path: Path) -> None:
    console = Console(tmp_path)
    csrf = console.sign_in()
    console.client.post("/console/isolations", data={"target": "plc-a", "reason": "incident", "csrf": csrf})
    isolation = console.overrides.control.overrides.isolations[0].id
    model = views.assets_page(console.control.enforcer.policy, {}, [])
    states = {row["name"]: (row["state"], row["quarantine"]) for row in model["assets"]}
    assert states["plc-a"][0] == "quarantined" and isolation in states["plc-a"][1]
    assert {state for name, (state, _) in states.items() if name != "plc-a"} == {"unlocated"}
    assert model["counts"]["quarantined"] == 1
    page = console.client.get("/console/assets").get_data(as_text=True)
    assert "asset-quarantined" in page and "1 quarantined" in page
    console.client.post("/console/isolations/release", data={"id": isolation, "csrf": csrf})
    model = views.assets_page(console.control.enforcer.policy, {}, [])
    assert "quarantined" not in {row["state"] for row in model["assets"]}


# -- what an attacker's review found (each was reproduced before its fix) ------------------------

C = A.replace(b"  - name: eng-programs-plcs", b"  - name: eng-programs-plcs-by-lead")


def _check(console: Console, csrf: str, text: bytes = B) -> str:
    page = console.client.post("/console/candidate", data={"text": text.decode(), "csrf": csrf})
    assert page.status_code == 200, page.get_data(as_text=True)
    return re.search(r'name="candidate" value="([^"]+)"', page.get_data(as_text=True))[1]  # type: ignore[index]


def test_a_candidate_never_overwrites_a_newer_push_made_after_it_was_checked(tmp_path: Path) -> None:
    console = Console(tmp_path)
    csrf = console.sign_in()
    candidate = _check(console, csrf)
    pushed = console.client.post("/v1/policy", data=C, headers={"Authorization": f"Bearer {OTHER}"})
    assert pushed.status_code == 200
    console.client.post("/console/apply", data={"candidate": candidate, "csrf": csrf})
    assert console.control.version == version_of(C)  # the other operator's push stays in force
    assert "another change came first" in console.client.get("/console/changes").get_data(as_text=True)
    again = _check(console, csrf)  # checked against what is in force now: it applies
    console.client.post("/console/apply", data={"candidate": again, "csrf": csrf})
    assert console.control.version == version_of(B)


def test_the_api_applies_only_over_the_version_named_in_if_match(tmp_path: Path) -> None:
    console = Console(tmp_path)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    stale = console.client.post("/v1/policy", data=B, headers={**auth, "If-Match": '"0123abcd"'})
    assert stale.status_code == 412 and stale.json["in_force"] == version_of(A)
    assert console.control.version == version_of(A) and len(console.control.history()) == 1
    fresh = console.client.post("/v1/policy", data=B, headers={**auth, "If-Match": f'"{version_of(A)}"'})
    assert fresh.status_code == 200 and console.control.version == version_of(B)


def test_a_double_submitted_apply_applies_once_and_says_so(tmp_path: Path) -> None:
    console = Console(tmp_path)
    csrf = console.sign_in()
    candidate = _check(console, csrf)
    for _ in range(2):
        assert console.client.post("/console/apply", data={"candidate": candidate, "csrf": csrf}).status_code == 303
    assert [r["action"] for r in console.control.history()] == ["start", "apply"]
    assert "already applied" in console.client.get("/console/changes").get_data(as_text=True)


def test_one_operator_signing_in_again_and_again_signs_nobody_else_out(tmp_path: Path) -> None:
    console = Console(tmp_path)
    csrf = console.sign_in()
    candidate = _check(console, csrf)
    other = Console.__new__(Console)
    other.client = console.client.application.test_client()
    for _ in range(70):
        other_csrf = other.sign_in(OTHER)
    for _ in range(20):  # the other operator's checks fill their own share of candidates only
        _check(other, other_csrf, C)
    assert console.client.post("/console/apply", data={"candidate": candidate, "csrf": csrf}).status_code == 303
    assert console.control.version == version_of(B)


def test_signing_in_again_in_a_browser_ends_its_previous_session(tmp_path: Path) -> None:
    console = Console(tmp_path)
    console.sign_in()
    old = console.client.get_cookie(COOKIE, path="/console").value  # type: ignore[union-attr]
    console.sign_in()
    thief = console.client.application.test_client()
    thief.set_cookie(COOKIE, old, path="/console")
    assert "Sign out" not in thief.get("/console/changes").get_data(as_text=True)
    assert thief.post("/console/grants/revoke", data={"id": "g1", "csrf": "x"}).status_code == 401


def test_with_a_configured_token_no_version_id_can_be_probed_before_sign_in(tmp_path: Path) -> None:
    console = Console(tmp_path, reads_need_token=True)
    for probe in (f"/console/diff?a={version_of(A)[:1]}&b=zz", "/console/diff?a=0&b=zz"):
        answer = console.client.get(probe)
        assert answer.status_code in (302, 303) and "/console/signin" in answer.headers["Location"]
    console.sign_in()
    short = console.client.get(f"/console/diff?a={version_of(A)[:3]}&b={version_of(A)}")
    assert short.status_code == 404 and "4 to 64 hex digits" in short.get_data(as_text=True)


def test_a_large_pasted_policy_is_checked_and_an_oversized_one_gets_a_console_page(tmp_path: Path) -> None:
    console = Console(tmp_path)
    csrf = console.sign_in()
    padded = A + b"#" + b"x" * 600_000 + b"\n"
    assert console.client.post("/console/candidate", data={"text": padded.decode(), "csrf": csrf}).status_code == 200
    huge = console.client.post("/console/candidate", data={"text": (A + b"#" + b"x" * (9 << 20)).decode(),
                                                          "csrf": csrf})
    assert huge.status_code == 413 and "over 8 MiB" in huge.get_data(as_text=True)
    assert huge.headers["Content-Type"].startswith("text/html") and console.control.version == version_of(A)


def test_another_local_origin_and_a_crafted_next_are_refused(tmp_path: Path) -> None:
    console = Console(tmp_path)
    for origin in ("http://localhost:3000", "https://127.0.0.1", "http://127.0.0.1:1"):
        answer = console.client.post("/console/signin", data={"token": TOKEN}, headers={"Origin": origin})
        assert answer.status_code == 403, origin
    same = console.client.post("/console/signin", data={"token": TOKEN}, headers={"Origin": "http://localhost"})
    assert same.status_code == 303  # the test client's own origin
    for wanted in ("/console/zones\n", "/console/../v1/status", "/console/..//evil.example", "//evil", "/console//x"):
        answer = console.client.post("/console/signin", data={"token": TOKEN, "next": wanted})
        assert answer.status_code == 303 and answer.headers["Location"].endswith("/console/zones"), wanted


def test_looking_at_a_session_to_prune_is_not_a_use_of_it() -> None:
    book = SessionBook(lambda: [("ops", TOKEN)], clock=lambda: 0.0)
    first, second = book.sign_in(TOKEN), book.sign_in(TOKEN)
    assert first is not None and second is not None and book.alive(first.id)
    assert list(book.sessions) == [first.id, second.id]  # alive() kept the order; get() moves it last
    book.get(first.id)
    assert list(book.sessions) == [second.id, first.id]
