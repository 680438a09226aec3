"""Capability profiles: what each profile costs and loses on the example labs, and updates
without bundles on the plant lab.

Pure part (no lab): per example and profile, the entries per switch, the compile time (median
of 3), the allow/deny matrix and attack probes walked through the tables (mismatches against the
reference; `no-tcp-flags` and `minimal` show their named loss), the independent verifier's
findings, and the switches refused. Lab part: the plant with no switch taking bundles (ring
switches folded into one table, the others version-tagged), 20 pushes of each change of the
recovery benchmark, with a stream on a conduit every version allows and one on a denied conduit.

    python -m bench.profiles_bench [--no-lab]
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ("plant", "linear", "substation", "water")


def profile_rows() -> list[dict]:  # type: ignore[type-arg]
    sys.path.insert(0, str(ROOT))
    from controller.core.compiler import compile_tables  # noqa: PLC0415
    from controller.core.fit import refusals, warnings  # noqa: PLC0415
    from controller.core.profiles import PROFILES  # noqa: PLC0415
    from controller.verify.check import verify  # noqa: PLC0415
    from tests.conftest import load_example  # noqa: PLC0415
    from tests.test_walk_examples import _free_port  # noqa: PLC0415
    from tests.walk import Matrix  # noqa: PLC0415

    rows = []
    for example in EXAMPLES:
        policy, topology = load_example(f"{example}.yaml", f"{example}.yaml")
        for name, profile in PROFILES.items():
            profiled = replace(topology, profiles=tuple((d, profile) for d in sorted(topology.switches)))
            times = []
            for _ in range(3):
                started = time.perf_counter()
                tables = compile_tables(policy, profiled)
                times.append(time.perf_counter() - started)
            matrix = Matrix(policy, profiled, tables)
            unicast, attacks = matrix.check_unicast() + matrix.check_multicast(), matrix.check_attacks(
                _free_port(topology, matrix))
            report = verify(policy, profiled, tables, failures=False)
            rows.append({
                "example": example, "profile": name,
                "entries": {f"{d:#x}": len(t.flows) for d, t in sorted(tables.items())},
                "total": sum(len(t.flows) for t in tables.values()), "compile_s": statistics.median(times),
                "walks": matrix.walks, "matrix_mismatches": len(unicast), "attack_mismatches": len(attacks),
                "mismatch_kinds": sorted({m.probe.split(" from ")[0] for m in unicast + attacks}),
                "verifier_findings": len(report.findings),
                "verifier_invariants": sorted({f.invariant for f in report.findings}),
                "refused": [r.switch for r in refusals(policy, profiled, tables)],
                "warnings": len(warnings(policy, profiled)),
            })
            print(json.dumps(rows[-1]), flush=True)
    return rows


def lab_updates(workdir: Path) -> dict:  # type: ignore[type-arg]
    from bench.recovery_bench import CHANGES, PlantBench, policy_updates  # noqa: PLC0415

    document = yaml.safe_load((ROOT / "topologies" / "plant.yaml").read_text())
    for name in list(document["switches"]):
        single = name.startswith("ring-")
        document["switches"][name] = {"dpid": document["switches"][name], "profile": {
            "base": "single-table" if single else "no-bundles", **({"bundles": False} if single else {})}}
    workdir.mkdir(parents=True, exist_ok=True)
    topology = workdir / "plant-no-bundles.yaml"
    topology.write_text(yaml.safe_dump(document, sort_keys=False))
    results: dict = {}  # type: ignore[type-arg]
    with PlantBench(workdir / "run", topology=str(topology)) as bench:
        for label, (source, target) in CHANGES.items():
            results[label] = policy_updates(bench, source, target)
            print(json.dumps(results[label]), flush=True)
    return results


def run_profiles(workdir: Path, lab: bool = True) -> dict:  # type: ignore[type-arg]
    return {"examples": profile_rows(), "no_bundles": lab_updates(workdir / "no-bundles") if lab else {}}


if __name__ == "__main__":
    import tempfile  # noqa: PLC0415

    out = run_profiles(Path(tempfile.mkdtemp(prefix="otseg-profiles-", dir="/var/tmp")), "--no-lab" not in sys.argv)
    print(json.dumps(out, indent=1))
