"""Capability profiles on real Open vSwitch: each switch told (by the topology document) to behave
as a profile enforces the whole policy matrix, holds exactly the tables compiled for that
profile, and reports it; updates without bundles lose nothing and let nothing denied through.

Open vSwitch itself reports the full profile (discovery is checked on the same runs).
"""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.lab.tables import dump
from controller.lab.traffic import Stream
from controller.lab.verify import Verifier
from tests.integration.conftest import ROOT, Scenario, api

DATA = Path(__file__).resolve().parent / "data"
B = DATA / "plant-b.yaml"
LINEAR_PINNED = DATA / "linear-pinned.yaml"  # s3's assets pinned: s3 may go without meters

# Every profile on some switch of the linear lab (s3's assets are pinned: it may go without meters).
RUNS = {
    "single-table, no-bundles, minimal": {"s1": "single-table", "s2": "no-bundles", "s3": "minimal"},
    "no-tcp-flags, no-fast-failover, no-meters": {"s1": "no-tcp-flags", "s2": "no-fast-failover", "s3": "no-meters"},
}


def with_profiles(lab_file: str, profiles: dict[str, Any], directory: Path) -> str:
    """A copy of a lab's topology document whose switches state these profiles."""
    document = yaml.safe_load((ROOT / "topologies" / lab_file).read_text())
    for name, profile in profiles.items():
        dpid = document["switches"][name]
        document["switches"][name] = {"dpid": dpid["dpid"] if isinstance(dpid, dict) else dpid, "profile": profile}
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"profiles-{lab_file}"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return str(path)


def _tables_used(switch: str) -> set[int]:
    return {int(m.group(1)) for line in dump(switch) if (m := re.search(r"table=(\d+)", line))}


@pytest.mark.parametrize("run", list(RUNS), ids=lambda r: r.replace(", ", "+"))
def test_each_profile_enforces_the_whole_matrix_on_ovs(tmp_path: Path, run: str) -> None:
    profiles = RUNS[run]
    scenario = Scenario(with_profiles("linear.yaml", profiles, tmp_path), str(LINEAR_PINNED), tmp_path)
    scenario.start()
    try:
        verifier = Verifier(scenario.lab, scenario.policy, scenario.controller.status, str(scenario.workdir / "agents"))
        verifier.announce()  # every host speaks once: the unpinned ones are bound
        assert not scenario.converged(timeout=60), scenario.controller.log_text()[-3000:]
        probes = verifier.run().probes
        mismatches = [p for p in probes if not p.matches]
        assert len(probes) > 50 and not mismatches, mismatches[:10]
        status = scenario.controller.status()
        names = dict(scenario.description.switches)
        for name, profile in profiles.items():
            capabilities = status["switches"][f"{names[name]:#x}"]["capabilities"]
            assert capabilities["profile"] == profile and capabilities["source"] == "override", capabilities
            assert capabilities["discovered"].startswith("full (discovered"), capabilities  # what OVS reports
            node = scenario.switch_name(names[name])
            if profile in ("single-table", "minimal"):
                assert _tables_used(node) == {0}, dump(node)[:5]
            if profile == "no-fast-failover":
                assert [a for a, b in status["links_unprotected"]] or [b for a, b in status["links_unprotected"]]
        with urllib.request.urlopen(scenario.controller.api_url + "/metrics", timeout=30) as response:
            metrics = response.read().decode()
        s3 = f"{names['s3']:#x}"
        assert re.search(r'otseg_switch_capability\{capability="bundles",profile="[^"]+",source="override",'
                         rf'switch="{s3}"\}} 0\.0', metrics) or profiles["s3"] != "minimal", [
            line for line in metrics.splitlines() if "capability" in line][:8]
    finally:
        scenario.stop()


def test_twenty_pushes_without_bundles_lose_nothing_and_admit_nothing_denied(tmp_path: Path) -> None:
    """The plant with no switch taking bundles: ring switches fold their tables into one (ordered by
    priority), the others carry version tags. 20 pushes alternate between A and B."""
    profiles: dict[str, Any] = {name: {"base": "no-bundles"} for name in ("ent", "dmz", "ops", "sup")}
    profiles |= {name: {"base": "single-table", "bundles": False} for name in ("ring-1", "ring-2", "ring-3", "ring-4")}
    plant = Scenario(with_profiles("plant.yaml", profiles, tmp_path), "plant.yaml", tmp_path)
    plant.start()
    try:
        Verifier(plant.lab, plant.policy, plant.controller.status, str(plant.workdir / "announce")).announce()
        assert not plant.converged(timeout=90), plant.controller.log_text()[-3000:]
        before = {name: dump(plant.lab.switch_node(name)) for name, _ in plant.description.switches}
        allowed = Stream(plant.lab, "hmi-1", "plc-packer-1", 44818, 16, plant.workdir / "allowed")
        denied = Stream(plant.lab, "hmi-1", "plc-packer-1", 9999, 16, plant.workdir / "denied", rate=200)
        allowed.start()
        denied.start()
        time.sleep(1)
        seconds = []
        for index in range(20):
            candidate = B if index % 2 == 0 else ROOT / "policies" / "plant.yaml"
            code, answer = api(plant, "POST", "/v1/policy", candidate.read_bytes())
            assert code == 200, answer
            seconds.append(answer["seconds"])
            time.sleep(0.5)
        kept, refused = allowed.result(), denied.result()
        assert kept.sent > 15000 and kept.lost == 0, (kept, seconds)
        assert refused.sent > 2000 and refused.received == 0, refused
        after = {name: dump(plant.lab.switch_node(name)) for name, _ in plant.description.switches}
        assert after == before  # an even number of pushes: A again, in the version it started with
        print(f"20 pushes without bundles: median {sorted(seconds)[10] * 1000:.0f} ms, {kept.sent} datagrams, "
              f"0 lost; {refused.sent} denied, 0 received")
    finally:
        plant.stop()
