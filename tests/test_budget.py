"""Table budgets: a policy that would overflow a switch is refused whole (validate, push, start,
and a topology change at run time), naming the switch, the count and the largest contributors."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from controller.app.control import ControlPlane
from controller.app.store import PolicyStore, version_of
from controller.core.budget import entry_split, is_exact_match, policy_overflows
from controller.core.compiler import compile_tables
from controller.core.flows import make_flow
from controller.io.files import load_lab, load_policy
from controller.policy.diagnostics import DocumentError
from tests.conftest import POLICIES
from tests.test_enforcer import _linear

ROOT = Path(__file__).resolve().parent.parent
A = (POLICIES / "linear.yaml").read_bytes()


def _budgeted_plant(tmp_path: Path, limits: dict[str, int]) -> Path:
    text = (ROOT / "topologies" / "plant.yaml").read_text()
    for name, limit in limits.items():
        dpid = {"sup": 4, "ring-1": 11}[name]
        text = text.replace(f"  {name}: {dpid}\n", f"  {name}: {{dpid: {dpid}, max_flows: {limit}}}\n")
    path = tmp_path / "plant.yaml"
    path.write_text(text)
    return path


def test_max_flows_is_read_per_switch_and_bad_values_are_located(tmp_path: Path) -> None:
    policy = load_policy(ROOT / "policies" / "plant.yaml")
    lab = load_lab(_budgeted_plant(tmp_path, {"sup": 500, "ring-1": 400}), policy)
    assert dict(lab.budgets) == {4: 500, 11: 400}
    bad = tmp_path / "bad.yaml"
    bad.write_text((tmp_path / "plant.yaml").read_text().replace("max_flows: 500", "max_flow: 500")
                   .replace("max_flows: 400", "max_flows: -3"))
    with pytest.raises(DocumentError) as caught:
        load_lab(bad, policy)
    text = str(caught.value)
    assert "unknown key 'max_flow'" in text and "did you mean 'max_flows'" in text and "max_flows" in text


def test_validate_refuses_an_overflow_naming_switch_count_and_contributors(tmp_path: Path) -> None:
    policy = load_policy(ROOT / "policies" / "plant.yaml")
    tables = compile_tables(policy, load_lab(ROOT / "topologies" / "plant.yaml", policy).to_topology(policy))
    need = len(tables[11].flows)
    topology_file = _budgeted_plant(tmp_path, {"ring-1": need - 1, "sup": len(tables[4].flows)})
    result = subprocess.run([sys.executable, "-m", "controller.cli", "validate", str(ROOT / "policies" / "plant.yaml"),
                             "--topology", str(topology_file)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2, result.stdout + result.stderr
    line = next(i + 1 for i, text in enumerate(topology_file.read_text().splitlines()) if text.startswith("  ring-1:"))
    assert f"{topology_file}:{line}:1: switch ring-1 (dpid 0xb): would hold {need:,} entries, over its budget " \
           f"of {need - 1:,}" in result.stderr
    assert "largest contributors: " in result.stderr and "conduit '" in result.stderr
    assert "switch sup" not in result.stderr  # exactly at its limit: fits
    ok = subprocess.run([sys.executable, "-m", "controller.cli", "validate", str(ROOT / "policies" / "plant.yaml"),
                         "--topology", str(_budgeted_plant(tmp_path, {"ring-1": need}))],
                        capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr


def test_contributors_add_up_and_are_largest_first(tmp_path: Path) -> None:
    policy = load_policy(ROOT / "policies" / "plant.yaml")
    topology = load_lab(ROOT / "topologies" / "plant.yaml", policy).to_topology(policy)
    [overflow] = policy_overflows(policy, topology, {11: 10}, {11: "ring-1"})
    assert overflow.count == len(compile_tables(policy, topology)[11].flows)
    assert sum(count for _, count in overflow.by_kind) >= overflow.count  # an entry two units yield counts twice
    counts = [count for _, count in overflow.contributors]
    assert counts == sorted(counts, reverse=True) and len(counts) == 5


def _control_with_budget(tmp_path: Path, slack: int) -> tuple[ControlPlane, dict, int]:  # type: ignore[type-arg]
    enforcer, switches = _linear()
    enforcer.reconcile()
    busiest = max(switches, key=lambda d: len(switches[d].flows))
    enforcer.budgets = {busiest: len(enforcer.desired()[busiest].flows) + slack}
    enforcer.switch_names = {busiest: "s-busy"}
    store = PolicyStore(tmp_path)
    version = store.save(A)
    store.set_current(version, version)
    return ControlPlane(enforcer, store, threading.Lock(), version, A), switches, busiest


WIDER = A.replace(b"services: [modbus, icmp]", b"services: [modbus, icmp, dnp3, s7comm, opcua, snmp]")


def test_a_push_that_would_overflow_is_refused_and_no_switch_changes(tmp_path: Path) -> None:
    assert WIDER != A
    control, switches, busiest = _control_with_budget(tmp_path, slack=2)
    before = {d: s.flows for d, s in switches.items()}
    with pytest.raises(DocumentError, match=r"switch s-busy \(dpid 0x\d+\): would hold [\d,]+ entries, over its "
                                            r"budget"):
        control.validate(WIDER)
    with pytest.raises(DocumentError, match="largest contributors"):
        control.apply(WIDER, "local")
    assert control.version == version_of(A) and {d: s.flows for d, s in switches.items()} == before
    control.enforcer.budgets = {busiest: 10_000}
    assert control.apply(WIDER, "local")["version"] == version_of(WIDER)


def test_a_switch_whose_tables_no_longer_fit_keeps_what_it_holds(tmp_path: Path) -> None:
    enforcer, switches = _linear()
    enforcer.reconcile()
    busiest = max(switches, key=lambda d: len(switches[d].flows))
    held = switches[busiest].flows
    enforcer.budgets = {busiest: len(enforcer.desired()[busiest].flows) - 1}
    enforcer.policy = load_policy(POLICIES / "linear.yaml")  # same policy, recompiled: one entry too many
    report = enforcer.reconcile()
    assert "over its budget" in report.errors[busiest]
    assert switches[busiest].flows == held


def test_exact_match_entries_are_eth_dst_alone() -> None:
    exact = make_flow("destination", 100, {"eth_dst": "00:00:00:00:00:01"}, [], 1)
    masked = make_flow("destination", 100, {"eth_dst": ("01:00:00:00:00:00", "01:00:00:00:00:00")}, [], 1)
    two = make_flow("destination", 120, {"eth_dst": "00:00:00:00:00:01", "eth_type": 0x0800,
                                         "ipv4_dst": "10.0.0.1"}, [], 1)
    assert is_exact_match(exact) and not is_exact_match(masked) and not is_exact_match(two)
    policy = load_policy(ROOT / "policies" / "plant.yaml")
    tables = compile_tables(policy, load_lab(ROOT / "topologies" / "plant.yaml", policy).to_topology(policy))
    exact_count, wildcard = entry_split(tables[11])
    assert exact_count > 0 and exact_count + wildcard == len(tables[11].flows)


def test_otseg_run_refuses_to_start_with_a_policy_that_does_not_fit(tmp_path: Path) -> None:
    topology_file = _budgeted_plant(tmp_path, {"ring-1": 20})
    result = subprocess.run([sys.executable, "-m", "controller.cli", "run", "--policy", str(ROOT / "policies" / "plant.yaml"),
                             "--topology", str(topology_file), "--state-dir", str(tmp_path / "state"),
                             "--ofp-port", "16653", "--api-port", "18181", "--ovsdb", "none"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "the policy does not fit: switch ring-1 (dpid 0xb) would hold" in result.stderr
    assert "over its budget of 20" in result.stderr


def test_compile_summary_splits_exact_match_from_wildcard_entries() -> None:
    from controller.core.render import render_summary  # noqa: PLC0415

    policy = load_policy(ROOT / "policies" / "plant.yaml")
    tables = compile_tables(policy, load_lab(ROOT / "topologies" / "plant.yaml", policy).to_topology(policy))
    lines = render_summary(tables, str).splitlines()
    assert lines[0].split()[-3:] == ["total", "exact", "wildcard"]
    for line, dpid in zip(lines[1:], sorted(tables)):
        total, exact, wildcard = map(int, line.split()[-3:])
        assert (exact, wildcard) == entry_split(tables[dpid]) and total == exact + wildcard
