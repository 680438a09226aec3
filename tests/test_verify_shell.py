"""The verifier's shell: tables as JSON both ways (GET /v1/tables, `otseg verify --live`), push
verification in the control plane, and the running controller's table verifier and metrics."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from controller.app.control import ControlPlane
from controller.app.metrics import Metrics
from controller.app.store import PolicyStore
from controller.app.verification import PushVerifier, TableVerifier, switch_tables
from controller.core.codec import CodecError, live_document, read_live_document, tables_from_json, tables_to_json
from controller.core.flows import ApplyActions, Output, make_flow
from controller.core.pipeline import PORT_SECURITY
from controller.core.topology import locate_assets
from controller.policy.diagnostics import DocumentError
from tests.conftest import EXAMPLES, load_example
from tests.test_control_api import A, B
from tests.test_enforcer import _linear
from controller.core.compiler import compile_tables


@pytest.mark.parametrize("pair", EXAMPLES, ids=lambda p: p[0])
def test_tables_survive_json_both_ways(pair: tuple[str, str]) -> None:
    policy, topology = load_example(*pair)
    tables = compile_tables(policy, topology)
    assert tables_from_json(tables_to_json(tables)) == tables
    located = locate_assets(policy, topology)
    names = {dpid: f"s{dpid}" for dpid in topology.switches}
    document = live_document({"name": policy.name, "text": ""}, topology, located, tables, names)
    back_topology, back_located, back_tables, back_names = read_live_document(document)
    assert (back_topology.switches, back_topology.links, back_topology.ports, back_topology.declared_trunks) == (
        topology.switches, topology.links, topology.ports, topology.declared_trunks)
    assert back_located == located and back_tables == tables and back_names == names


@pytest.mark.parametrize(("document", "message"), [
    ({"dpid": 1}, "a list of switches"),
    ([{"dpid": "1"}], "tables[0].dpid: an integer"),
    ([{"dpid": 1, "flows": [{"table": "policy", "priority": 1, "cookie": 1, "match": [],
                             "instructions": [{"type": "os.system", "x": 1}]}]}], "unknown kind 'os.system'"),
    ([{"dpid": 1, "flows": [{"table": "policy", "priority": 1, "cookie": 1, "match": [["in_port"]],
                             "instructions": []}]}], "[name, value, mask]"),
    ([{"dpid": 1, "flows": [{"table": "policy", "priority": 1, "cookie": 1, "match": [],
                             "instructions": [{"type": "Output", "port": 1, "evil": 2}]}]}], "unexpected ['evil']"),
])
def test_a_malformed_tables_document_is_refused_with_where(document: Any, message: str) -> None:
    with pytest.raises(CodecError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        tables_from_json(document)


def _control(tmp_path: Path, verify: Any) -> ControlPlane:
    enforcer, _ = _linear()
    enforcer.reconcile()
    store = PolicyStore(tmp_path)
    version = store.save(A)
    store.set_current(version, version)
    return ControlPlane(enforcer, store, threading.Lock(), version, A, verify=verify)


def test_a_push_is_proved_before_it_is_applied(tmp_path: Path) -> None:
    control = _control(tmp_path, PushVerifier({}))
    assert control.apply(B, "alice")["flow_mods"] > 0


def test_a_push_whose_tables_fail_verification_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    seen: list[int] = []

    def failing(policy: Any, text: bytes, topology: Any, tables: Any) -> list[str]:
        seen.append(len(tables))
        assert text == B
        return ["ISOLATION (all links up): packets the policy does not allow leave at s2:1"]
    control = _control(tmp_path, failing)
    before = control.version
    with pytest.raises(DocumentError, match="an otseg bug; nothing was applied") as refused:
        control.apply(B, "alice")
    assert "ISOLATION" in str(refused.value.diagnostics[0]) and seen == [3]
    assert control.version == before and control.history() == []


class Events:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, key: str, event: dict[str, Any]) -> None:
        self.sent.append((key, event))


def test_the_running_controller_proves_its_tables_and_reports_a_hole() -> None:
    enforcer, switches = _linear()
    enforcer.reconcile()
    metrics, events = Metrics(CollectorRegistry()), Events()
    verifier = TableVerifier(enforcer, threading.Lock(), metrics, events, lambda: None, lambda s: None, 60.0,
                             executor=lambda f, *a: f(*a), wait=lambda t: True, names={2: "s2"},
                             in_force=lambda: {"name": "linear.yaml", "text": A.decode()})
    report = verifier.once()  # in a process of its own (controller.verify_worker)
    assert report is not None and report["ok"], report["findings"][:1]
    assert metrics.verify_runs._value.get() == 1  # type: ignore[attr-defined]
    assert metrics.verify_violations.labels("isolation")._value.get() == 0  # type: ignore[attr-defined]
    # the believed tables of s2 get a hole: the intruder's port to plc-a
    hole = make_flow(PORT_SECURITY, 5000, {"in_port": 5}, [ApplyActions((Output(1),))], 0x1234)
    state = enforcer.switches[2]
    state.installed = frozenset(state.installed or ()) | {hole}
    report = verifier.once()
    assert report is not None and not report["ok"]
    assert metrics.verify_violations.labels("isolation")._value.get() >= 1  # type: ignore[attr-defined]
    assert events.sent and events.sent[-1][0] == "verify-violation" and "s2:5" in events.sent[-1][1]["first"]


def test_tables_are_read_from_the_switches_with_the_auditors_reader() -> None:
    enforcer, switches = _linear()
    enforcer.reconcile()
    read = switch_tables(enforcer, read=True)
    assert set(read) == set(switches)
    assert all(read[d].flows == frozenset(switches[d].read_flows()) for d in switches)
    believed = switch_tables(enforcer, read=False)
    assert {d: t.flows for d, t in believed.items()} == {d: t.flows for d, t in read.items()}
