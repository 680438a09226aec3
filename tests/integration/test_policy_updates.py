"""Runtime policy updates on the running plant, through the control API and the CLI.

A steady 1,000 datagrams/s stream on a conduit present in both A (policies/plant.yaml) and
B (data/plant-b.yaml: one conduit removed, one added) must lose nothing across 20 pushes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from controller.app.enforcer import STARTUP_GRACE_SECONDS
from controller.app.store import version_of
from controller.lab.traffic import Stream
from tests.integration.conftest import ROOT, Scenario, api, dump, dump_groups, running

A = ROOT / "policies" / "plant.yaml"
B = Path(__file__).resolve().parent / "data" / "plant-b.yaml"
CORPUS = sorted((ROOT / "tests" / "corpus").glob("*.yaml"))


@pytest.fixture(scope="module")
def plant(workdir: Path) -> Iterator[Scenario]:
    yield from running("plant.yaml", "plant.yaml", workdir, announce=True)


def _api(plant: Scenario, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    return api(plant, method, path, body)


def _otseg(plant: Scenario, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller.cli", *args, "--controller", plant.controller.api_url,
                           "--state-dir", str(plant.controller.state_dir)], capture_output=True, text=True, cwd=ROOT)


def _everything(plant: Scenario) -> dict[str, list[str]]:
    return {name: dump(plant.lab.switch_node(name)) + dump_groups(plant.lab.switch_node(name))
            for name, _ in plant.description.switches}


def _delivered(plant: Scenario, source: str, target: str, port: int, name: str) -> int:
    stream = Stream(plant.lab, source, target, port, 1.0, plant.workdir / "checks" / name, rate=50)
    stream.start()
    return stream.result().received


def test_invalid_candidates_are_refused_and_nothing_changes(plant: Scenario) -> None:
    before = _everything(plant)
    for path in CORPUS:
        code, answer = _api(plant, "POST", "/v1/policy", path.read_bytes())
        assert code == 422 and answer["errors"], path.name
    cli = _otseg(plant, "push", str(CORPUS[0]))
    assert cli.returncode == 2 and "nothing was applied" in cli.stderr
    assert _everything(plant) == before


def test_pushing_the_policy_in_force_changes_no_flow(plant: Scenario) -> None:
    # Past the start-up grace, deletions it held back have been applied: the switches hold A exactly.
    time.sleep(max(0.0, plant.controller.started_at + STARTUP_GRACE_SECONDS + 2 - time.monotonic()))
    code, answer = _api(plant, "POST", "/v1/policy", A.read_bytes())
    assert code == 200 and answer["flow_mods"] == 0


def test_diff_shows_the_change_without_applying_it(plant: Scenario) -> None:
    before = _everything(plant)
    cli = _otseg(plant, "diff", str(B))
    assert cli.returncode == 0, cli.stderr
    assert "+ historian-checks-time" in cli.stdout and "- events-to-historian" in cli.stdout
    assert _everything(plant) == before


def test_a_pushed_policy_is_what_the_switches_do_once_the_push_returns(plant: Scenario) -> None:
    for index, candidate in enumerate((B, A)):
        code, answer = _api(plant, "POST", "/v1/policy", candidate.read_bytes())
        assert code == 200, answer
        ping = plant.lab.node("historian").cmd("ping -c 1 -W 1 10.0.3.20")  # historian-checks-time: only in B
        syslog = _delivered(plant, "hmi-1", "historian", 514, f"check-{index}")  # events-to-historian: only in A
        if candidate == B:
            assert " 0% packet loss" in ping and syslog == 0, (ping, syslog)
        else:
            assert "100% packet loss" in ping and syslog > 0, (ping, syslog)


def test_twenty_alternating_pushes_lose_no_packet_of_a_shared_conduit(plant: Scenario) -> None:
    tables_a = _everything(plant)
    stream = Stream(plant.lab, "hmi-1", "plc-packer-1", 44818, 16, plant.workdir / "pushes")
    stream.start()
    time.sleep(1)
    durations = []
    for index in range(20):
        candidate = B if index % 2 == 0 else A
        code, answer = _api(plant, "POST", "/v1/policy", candidate.read_bytes())
        assert code == 200, answer
        durations.append(answer["seconds"])
        time.sleep(0.5)
    result = stream.result()
    assert result.sent > 15000 and result.lost == 0, (result, durations)
    after = _everything(plant)
    changed = {name: (sorted(set(tables_a[name]) - set(after[name])), sorted(set(after[name]) - set(tables_a[name])))
               for name in after if after[name] != tables_a[name]}
    assert not changed, (changed, plant.controller.log_text()[-4000:])  # A -> B -> ... -> A restores A


def test_status_history_and_rollback(plant: Scenario) -> None:
    code, answer = _api(plant, "POST", "/v1/policy", B.read_bytes())
    assert code == 200
    status = _otseg(plant, "status")
    assert status.returncode == 0 and version_of(B.read_bytes())[:12] in status.stdout
    history = _otseg(plant, "history")
    assert history.returncode == 0 and history.stdout.count("apply") >= 20
    rollback = _otseg(plant, "rollback")
    assert rollback.returncode == 0, rollback.stderr
    assert (plant.controller.status() or {})["policy"]["version"] == version_of(A.read_bytes())


def test_a_pushed_version_survives_a_controller_kill(plant: Scenario) -> None:
    code, _ = _api(plant, "POST", "/v1/policy", B.read_bytes())
    assert code == 200
    plant.controller.kill()
    plant.controller.start()
    status = plant.controller.wait_for(lambda s: s["policy"]["version"] is not None
                                       and all(v["programmed"] for v in s["switches"].values())
                                       and len(s["switches"]) == len(plant.description.switches), 60, "restart")
    assert status["policy"]["version"] == version_of(B.read_bytes())
    audit = (plant.controller.workdir / "state" / "audit.jsonl").read_text().splitlines()
    assert all({"time", "who", "from_version", "to_version"} <= json.loads(line).keys() for line in audit)
