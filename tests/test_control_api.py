"""The control plane (validate, apply, rollback, history) and its HTTP API, with fake switches."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from controller.app.api import create_api
from controller.app.control import ControlPlane, Refused
from controller.app.store import PolicyStore, version_of
from controller.policy.diagnostics import DocumentError
from tests.conftest import POLICIES
from tests.test_enforcer import _linear

A = (POLICIES / "linear.yaml").read_bytes()
B = A.replace(b"  - name: eng-programs-plcs", b"  - name: eng-programs-plcs-renamed")
INVALID = A.replace(b"services: [modbus, icmp]", b"services: [modbsu, icmp]")


def _control(tmp_path: Path) -> tuple[ControlPlane, dict]:  # type: ignore[type-arg]
    enforcer, switches = _linear()
    enforcer.reconcile()
    store = PolicyStore(tmp_path)
    version = store.save(A)
    store.set_current(version, version)
    return ControlPlane(enforcer, store, threading.Lock(), version, A), switches


def test_store_keeps_versions_by_content_and_an_audit_log(tmp_path: Path) -> None:
    store = PolicyStore(tmp_path)
    version = store.save(A)
    assert version == version_of(A) and store.load(version[:8]) == (version, A)
    with pytest.raises(KeyError):
        store.load("ffff")
    store.audit(who="local", action="apply", to_version=version)
    assert PolicyStore(tmp_path).history()[0]["to_version"] == version


def test_validate_reports_the_change_and_changes_nothing(tmp_path: Path) -> None:
    control, switches = _control(tmp_path)
    before = {d: s.flows for d, s in switches.items()}
    answer = control.validate(B)
    assert answer["change"]["conduits"]["added"] == ["eng-programs-plcs-renamed"]
    assert answer["change"]["conduits"]["removed"] == ["eng-programs-plcs"]
    assert answer["change"]["flow_mods"] > 0
    assert {d: s.flows for d, s in switches.items()} == before


def test_an_invalid_candidate_is_refused_whole(tmp_path: Path) -> None:
    control, switches = _control(tmp_path)
    before = {d: s.flows for d, s in switches.items()}
    with pytest.raises(DocumentError, match="did you mean 'modbus'"):
        control.apply(INVALID, "local")
    assert control.version == version_of(A) and {d: s.flows for d, s in switches.items()} == before


def test_apply_records_versions_and_rollback_restores(tmp_path: Path) -> None:
    control, switches = _control(tmp_path)
    before = {d: s.flows for d, s in switches.items()}
    result = control.apply(B, "alice")
    assert result["version"] == version_of(B) and result["flow_mods"] > 0
    control.rollback(None, "bob")
    assert control.version == version_of(A)
    assert {d: s.flows for d, s in switches.items()} == before
    who = [entry["who"] for entry in control.history()]
    assert who == ["alice", "bob"]


def test_a_candidate_a_switch_refuses_leaves_the_old_policy(tmp_path: Path) -> None:
    control, switches = _control(tmp_path)
    switches[2].refuse = True
    with pytest.raises(Refused):
        control.apply(B, "local")
    assert control.version == version_of(A)
    assert control.history()[-1]["action"] == "refused"


def test_api_requires_the_token_and_maps_errors(tmp_path: Path) -> None:
    control, _ = _control(tmp_path)
    client = create_api(control, lambda: {"ok": True}, ("ops", "s3cret")).test_client()
    assert client.get("/v1/status").status_code == 401
    auth = {"Authorization": "Bearer s3cret"}
    assert client.get("/v1/status", headers=auth).json == {"ok": True}
    refused = client.post("/v1/policy", data=INVALID, headers=auth)
    assert refused.status_code == 422 and "did you mean 'modbus'" in refused.json["errors"][0]
    applied = client.post("/v1/policy", data=B, headers=auth)
    assert applied.status_code == 200 and control.history()[-1]["who"] == "ops"
    assert client.post("/v1/rollback", json={"version": "0000"}, headers=auth).status_code == 404
    assert "/v1/policy" in client.get("/v1/openapi.json").json["paths"]


def _local_api(tmp_path: Path) -> tuple[ControlPlane, object]:
    """As `otseg run` serves it with no token configured: a generated one, reads open locally."""
    control, _ = _control(tmp_path)
    return control, create_api(control, lambda: {"ok": True}, ("local", "gen3rated"), reads_need_token=False)


def test_a_web_page_cannot_change_the_policy(tmp_path: Path) -> None:
    """CSRF: a cross-origin text/plain POST (what a page may send without a preflight) and a
    DNS-rebound Host are refused; nothing changes. The local CLI, with the token, can."""
    control, app = _local_api(tmp_path)
    client = app.test_client()  # type: ignore[attr-defined]
    before = control.version
    forged = client.post("/v1/policy", data=B, headers={"Content-Type": "text/plain",
                                                          "Origin": "http://evil.example"})
    assert forged.status_code == 403 and "cross-origin" in forged.json["error"]
    no_token = client.post("/v1/policy", data=B, headers={"Content-Type": "text/plain"})
    assert no_token.status_code == 401 and "token" in no_token.json["error"]
    rebound = client.get("/v1/status", headers={"Host": "evil.example:8181"})
    assert rebound.status_code == 403 and "DNS rebinding" in rebound.json["error"]
    assert control.version == before and len(control.history()) == 0
    assert client.get("/v1/status").json == {"ok": True}  # local reads stay open
    applied = client.post("/v1/policy", data=B, headers={"Authorization": "Bearer gen3rated"})
    assert applied.status_code == 200 and control.version != before


def test_rollback_takes_version_ids_only_and_bad_bodies_are_clear_4xx(tmp_path: Path) -> None:
    control, app = _local_api(tmp_path)
    outside = tmp_path.parent / "secret.yaml"
    outside.write_text("policy: not-yours\n")
    client = app.test_client()  # type: ignore[attr-defined]
    auth = {"Authorization": "Bearer gen3rated"}
    for body in ({"version": "../../secret"}, {"version": "../" + outside.stem}, {"version": 7}, [1, 2], "text"):
        answer = client.post("/v1/rollback", json=body, headers=auth)
        assert answer.status_code == 422, (body, answer.json)
        assert "not-yours" not in answer.get_data(as_text=True)
    huge = client.post("/v1/policy", data=b"x" * (8 * 1024 * 1024 + 1), headers=auth)
    assert huge.status_code == 413 and huge.is_json
    with pytest.raises(KeyError):
        control.store.load("../x")
    garbage = client.post("/v1/policy", data=b"\x00\xff" * 10, headers=auth)
    assert garbage.status_code == 422 and garbage.is_json


def test_an_unexpected_error_is_a_json_4xx_and_changes_nothing(tmp_path: Path) -> None:
    control, _ = _control(tmp_path)

    def broken() -> dict:  # type: ignore[type-arg]
        raise RuntimeError("boom")

    client = create_api(control, broken, ("local", "t"), reads_need_token=False).test_client()
    answer = client.get("/v1/status")
    assert answer.status_code == 400 and answer.is_json and "boom" in answer.json["error"]
    assert "Traceback" not in answer.get_data(as_text=True)


def test_an_empty_or_short_token_secret_is_refused(tmp_path: Path) -> None:
    from controller.app.runner import StartError, read_token  # noqa: PLC0415

    for text in ("ops:", ":", "short"):
        path = tmp_path / "token"
        path.write_text(text)
        with pytest.raises(StartError):
            read_token(str(path))
    control, _ = _control(tmp_path / "p")
    client = create_api(control, lambda: {}, ("ops", "")).test_client()
    assert client.post("/v1/policy", data=B, headers={"Authorization": "Bearer "}).status_code == 401


def test_a_follower_forwards_changes_only_with_the_token_and_answers_reads_itself(tmp_path: Path) -> None:
    control, switches = _control(tmp_path)
    forwarded: list[tuple[str, bytes, str]] = []

    def forward(path: str, body: bytes, headers: dict[str, str]) -> tuple[bytes, int, dict[str, str]]:
        forwarded.append((path, body, headers.get("Authorization", "")))
        return b'{"forwarded": true}', 200, {"Content-Type": "application/json", "X-Otseg-Leader": "a"}

    client = create_api(control, lambda: {"ok": True}, ("ops", "s3cret"), forward=forward).test_client()
    before = {d: s.flows for d, s in switches.items()}
    assert client.post("/v1/policy", data=B).status_code == 401 and forwarded == []  # no token: not even forwarded
    auth = {"Authorization": "Bearer s3cret"}
    answer = client.post("/v1/policy", data=B, headers=auth)
    assert answer.json == {"forwarded": True} and answer.headers["X-Otseg-Leader"] == "a"
    assert forwarded == [("/v1/policy", B, "Bearer s3cret")]
    assert {d: s.flows for d, s in switches.items()} == before and control.version == version_of(A)  # not here
    assert client.post("/v1/rollback", json={}, headers=auth).status_code == 200 and len(forwarded) == 2
    assert client.post("/v1/policy/validate", data=B, headers=auth).json["valid"]  # validated here
    assert client.get("/v1/status", headers=auth).json == {"ok": True} and len(forwarded) == 2
