"""Approving and revoking links: only pending ones, stored, audited, through the API with clear errors."""

from __future__ import annotations

import threading
from pathlib import Path

from controller.app.api import create_api
from controller.app.link_control import LinkControl, load_approved
from controller.app.linkbook import LinkBook
from controller.app.store import PolicyStore
from controller.core.topology import Link, PortRef
from tests.test_control_api import _control

DOCUMENTED = Link.between(PortRef(1, 10), PortRef(2, 10))
RELAYED = Link.between(PortRef(1, 5), PortRef(2, 5))


def _links(tmp_path: Path) -> tuple[LinkControl, list[frozenset[Link]]]:
    book = LinkBook(frozenset({DOCUMENTED}))
    book.lldp(PortRef(1, 5), PortRef(2, 5), 0.0)  # an undeclared link LLDP crossed: pending
    changes: list[frozenset[Link]] = []
    control = LinkControl(book, PolicyStore(tmp_path), frozenset({DOCUMENTED}), {"s1": 1, "s2": 2}, changes.append,
                          threading.Lock())
    return control, changes


def test_a_pending_link_can_be_approved_and_revoked_and_both_are_audited(tmp_path: Path) -> None:
    links, changes = _links(tmp_path)
    links.approve("s1:5", "0x2:5", "alice")
    assert RELAYED in links.declared() and changes[-1] == {DOCUMENTED, RELAYED}
    assert load_approved(PolicyStore(tmp_path)) == {RELAYED}  # survives a restart
    links.revoke("s2:5", "s1:5", "bob")
    assert links.declared() == {DOCUMENTED} and load_approved(PolicyStore(tmp_path)) == frozenset()
    actions = [(e["action"], e["who"]) for e in PolicyStore(tmp_path).history()]
    assert actions == [("link-approve", "alice"), ("link-revoke", "bob")]


def test_the_api_refuses_what_cannot_be_done_and_says_why(tmp_path: Path) -> None:
    control, _ = _control(tmp_path / "policy")
    links, _ = _links(tmp_path / "links")
    client = create_api(control, lambda: {}, ("local", "t0ken"), None, links, reads_need_token=False).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = "Bearer t0ken"
    listing = client.get("/v1/links").get_json()
    assert listing["pending"][0]["a"] == "0x1:5" and listing["declared"][0]["source"] == "topology"
    for body, fragment in (({"a": "s1:6", "b": "s2:6"}, "is not pending"),
                           ({"a": "s1:10", "b": "s2:10"}, "already declared"),
                           ({"a": "s9:1", "b": "s2:6"}, "unknown switch"),
                           ({"a": "s1", "b": "s2:6"}, "not a link end"),
                           ({"a": 1}, "two ends")):
        answer = client.post("/v1/links/approve", json=body)
        assert answer.status_code == 422 and fragment in answer.get_json()["error"], (body, answer.get_json())
    assert client.post("/v1/links/revoke", json={"a": "s1:10", "b": "s2:10"}).status_code == 422
    assert client.post("/v1/links/approve", json={"a": "s1:5", "b": "s2:5"}).status_code == 200
    assert RELAYED in links.declared()


def test_a_corrupt_approvals_file_trusts_nothing_and_says_so(tmp_path: Path, caplog: object) -> None:
    import logging  # noqa: PLC0415

    store = PolicyStore(tmp_path)
    (tmp_path / "links.json").write_text('[{"a": [1, 5], "b": [2, 5]}, {"a": "x"}]')
    with caplog.at_level(logging.ERROR, logger="otseg.links"):  # type: ignore[attr-defined]
        assert load_approved(store) == {RELAYED}
        (tmp_path / "links.json").write_text("{not json")
        assert load_approved(store) == frozenset()
    messages = " ".join(r.getMessage() for r in caplog.records)  # type: ignore[attr-defined]
    assert "entry 2 is not a link" in messages and "cannot be read" in messages
