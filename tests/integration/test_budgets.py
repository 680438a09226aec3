"""Table budgets on real Open vSwitch: a push that would overflow a switch's max_flows is
refused whole (422, located, with contributors) and no bridge changes; one that fits applies."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from controller.core.compiler import compile_tables
from controller.io.files import load_lab, load_policy
from tests.integration.conftest import ROOT, Scenario, api, dump, dump_groups, running

A = (ROOT / "policies" / "linear.yaml").read_bytes()
WIDER = A.replace(b"services: [modbus, icmp]", b"services: [modbus, icmp, dnp3, s7comm, opcua, snmp]")


@pytest.fixture(scope="module")
def budgeted(workdir: Path) -> Iterator[Scenario]:
    policy = load_policy(ROOT / "policies" / "linear.yaml")
    lab = load_lab(ROOT / "topologies" / "linear.yaml", policy)
    need = len(compile_tables(policy, lab.to_topology(policy))[2].flows)
    text = (ROOT / "topologies" / "linear.yaml").read_text().replace(
        "  s2: 2\n", f"  s2: {{dpid: 2, max_flows: {need + 2}}}\n")
    topology = workdir / "linear-budget.yaml"
    topology.write_text(text)
    yield from running(str(topology), "linear.yaml", workdir, announce=True)


def _post(scenario: Scenario, body: bytes) -> tuple[int, Any]:
    return api(scenario, "POST", "/v1/policy", body)


def test_a_push_over_budget_is_refused_and_no_bridge_changes(budgeted: Scenario) -> None:
    assert WIDER != A
    assert budgeted.converged() == []
    before = {name: dump(budgeted.lab.switch_node(name)) + dump_groups(budgeted.lab.switch_node(name))
              for name, _ in budgeted.description.switches}
    code, answer = _post(budgeted, WIDER)
    assert code == 422, answer
    [error] = answer["errors"]
    assert "switch s2 (dpid 0x2): would hold" in error and "over its budget" in error
    assert "largest contributors: " in error and "conduit '" in error
    after = {name: dump(budgeted.lab.switch_node(name)) + dump_groups(budgeted.lab.switch_node(name))
             for name, _ in budgeted.description.switches}
    assert after == before
    code, answer = _post(budgeted, A)  # the policy in force fits: nothing to change
    assert code == 200 and answer["flow_mods"] == 0
