"""The verifier's counterexamples are real on Open vSwitch, and `otseg verify --live` proves (or
refutes) what a running controller's switches hold.

1. For every mutant of tests/test_mutations.py that the verifier refutes, the mutated tables are
   loaded into scratch OVS bridges wired like the lab (patch ports), and `ovs-appctl
   ofproto/trace` runs the counterexample: an isolation counterexample leaves by the port the
   verifier named (and the unmutated tables do not send it there), an availability one does not.
2. A controller runs the linear lab in Mininet; `otseg verify --live` proves its switches; a
   hole added behind its back (one flow, ovs-ofctl) is found with a counterexample whose
   trace commands, run on the lab's bridges, show the packet leaving by the named port.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from controller.lab.replay import Replay
from controller.verify.check import Verifier
from tests.integration.conftest import Scenario, running
from tests.test_mutations import MUTATIONS, example, examples_cheapest_first

PYTHON = sys.executable


def _refuted(name: str):  # type: ignore[no-untyped-def]
    mutation = MUTATIONS[name][0]
    for pair in examples_cheapest_first():
        ex = example(pair)
        mutated = mutation(ex.tables)
        if mutated == ex.tables:
            continue
        report = Verifier(ex.policy, ex.topology, failures=False).check(mutated)
        findings = [f for f in report.findings if f.example is not None and f.invariant in ("isolation", "availability")]
        if findings:
            return ex, mutated, findings[0]
    return None


CAUGHT_WITH_LINKS_UP = [n for n, (_, eq) in MUTATIONS.items() if not eq]


@pytest.mark.parametrize("name", CAUGHT_WITH_LINKS_UP)
def test_mutant_counterexample_replays_on_open_vswitch(name: str) -> None:
    found = _refuted(name)
    assert found is not None, name
    ex, mutated, finding = found
    example_ = finding.example
    assert example_ is not None and finding.where is not None
    extra = frozenset({finding.where, example_.ingress})
    with Replay(mutated, ex.topology, extra) as replay:  # a reply's state is given with --ct-next
        leaving, text = replay.trace(example_)
    if finding.invariant == "isolation":
        assert finding.where in leaving, f"{name}: OVS does not send it to {finding.where}:\n{finding.describe()}\n{text}"
        with Replay(ex.tables, ex.topology, extra) as clean:
            clean_leaving, clean_text = clean.trace(example_)
        assert finding.where not in clean_leaving or example_.leaves_as, f"{name}: the correct tables do it too\n{clean_text}"
    else:
        assert finding.where not in leaving, f"{name}: OVS delivers it after all:\n{finding.describe()}\n{text}"


# ---- live ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lab(workdir: Path) -> Iterator[Scenario]:
    for scenario in running("linear.yaml", "linear.yaml", workdir, announce=True,
                            extra_args=("--audit-seconds", "3600")):
        assert not scenario.converged(), "the lab did not converge"
        yield scenario


def _verify_live(scenario: Scenario) -> tuple[int, dict]:  # type: ignore[type-arg]
    done = subprocess.run([PYTHON, "-m", "controller.cli", "verify", "--live", "--json", "--controller",
                           scenario.controller.api_url, "--state-dir", str(scenario.controller.state_dir)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def _metric(scenario: Scenario, name: str) -> dict[str, float]:
    with urllib.request.urlopen(scenario.controller.api_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
            if line.startswith(name)}


def test_live_switches_are_proved_and_the_metric_says_so(lab: Scenario) -> None:
    code, report = _verify_live(lab)
    assert code == 0 and report["ok"], json.dumps(report["findings"][:2], indent=1)
    assert report["switches"] == 3 and report["flows"] > 100 and report["bound"] == len(lab.policy.assets)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the controller verified after its reconcile
        runs = _metric(lab, "otseg_verify_runs_total")
        if runs.get("otseg_verify_runs_total", 0) >= 1:
            break
        time.sleep(1)
    assert _metric(lab, "otseg_verify_runs_total")["otseg_verify_runs_total"] >= 1
    assert _metric(lab, "otseg_verify_violations")['otseg_verify_violations{invariant="isolation"}'] == 0


def test_a_hole_added_behind_the_controllers_back_is_found_and_replays(lab: Scenario) -> None:
    # the intruder's port on s2 (5) gets a way to plc-a (port 1): what a careless operator might add
    subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "add-flow", "s2",
                    "table=0,priority=5000,cookie=0x1234,in_port=5,actions=output:1"], check=True)
    try:
        code, report = _verify_live(lab)
        assert code == 1
        holes = [f for f in report["findings"] if f["invariant"] == "isolation" and f.get("counterexample")]
        assert holes, report["findings"][:2]
        example_ = holes[0]["counterexample"]
        assert example_["ingress"] == "s2:5" and holes[0]["where"] == "s2:1", holes[0]
        assert example_["path"][0]["entries"][0]["rule"] == "cookie 0x1234"
        traced = subprocess.run(example_["trace"][-1], shell=True, capture_output=True, text=True,
                                check=True).stdout
        assert "output:1" in traced, traced
    finally:
        subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "del-flows", "s2", "cookie=0x1234/-1"], check=True)
    code, report = _verify_live(lab)
    assert code == 0, report["findings"][:1]

