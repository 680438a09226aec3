"""Verifier benchmarks (section "verify" of `make bench`): one case per process, so that peak
memory is the case's own.

    python -m bench.verify_bench example NAME            the example lab: links up, and each link down
    python -m bench.verify_bench generated N Z C S       a generated plant (links up), and a re-check
                                                         after a one-conduit push (a Verifier kept)

Prints one JSON line. Times are medians of 3 runs (1 at 10,000 assets); nothing is asserted.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

from bench.generate import generated_policy, generated_topology
from controller.core.compiler import compile_tables
from controller.core.model import Conduit
from controller.io.files import load_lab, load_policy
from controller.verify.check import Verifier

ROOT = Path(__file__).resolve().parent.parent


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _median(runs: list[float]) -> float:
    return statistics.median(runs)


def example(name: str) -> dict[str, object]:
    policy = load_policy(ROOT / "policies" / f"{name}.yaml")
    topology = load_lab(ROOT / "topologies" / f"{name}.yaml", policy).to_topology(policy)
    tables = compile_tables(policy, topology)
    result: dict[str, object] = {"example": name, "flows": sum(len(t.flows) for t in tables.values()),
                                 "links": len(topology.links)}
    for label, failures in (("links_up", False), ("with_failures", True)):
        runs, nodes, ok = [], 0, True
        for _ in range(3):
            verifier = Verifier(policy, topology, failures=failures)  # nothing cached between runs
            start = time.perf_counter()
            report = verifier.check(tables)
            runs.append(time.perf_counter() - start)
            nodes, ok = report.nodes, ok and report.ok
        result[label] = {"seconds": _median(runs), "spread": max(runs) - min(runs), "bdd_nodes": nodes, "proved": ok,
                         "scenarios": report.scenarios}
    result["peak_rss_mb"] = _rss_mb()
    return result


def generated(assets: int, zones: int, conduits: int, switches: int) -> dict[str, object]:
    policy = generated_policy(assets, zones, conduits)
    topology = generated_topology(policy, switches, "zone")
    tables = compile_tables(policy, topology)
    repeat = 3 if assets <= 1000 else 1
    runs, report = [], None
    for _ in range(repeat):
        verifier = Verifier(policy, topology, failures=False)
        start = time.perf_counter()
        report = verifier.check(tables)
        runs.append(time.perf_counter() - start)
    assert report is not None
    full_rss = _rss_mb()
    result: dict[str, object] = {
        "assets": assets, "zones": zones, "conduits": conduits, "switches": switches, "flows": report.flows,
        "seconds": _median(runs), "spread": max(runs) - min(runs), "runs": repeat, "proved": report.ok,
        "bdd_nodes": report.nodes, "peak_rss_mb": full_rss}
    if assets > 1000:
        return result  # the push re-check needs two more full checks first: minutes at this size
    # One push: the first conduit's services change. The Verifier is kept (switch models of
    # unchanged tables are reused; the allowed sets follow the new policy) - what
    # `otseg run --verify-pushes` pays per push.
    edited = replace(policy, conduits=(Conduit(**{**policy.conduits[0].__dict__, "services": ("modbus",)}),)
                     + policy.conduits[1:], _index={})
    edited_tables = compile_tables(edited, topology)
    changed = sum(1 for d in tables if edited_tables[d] != tables[d])
    push_runs = []
    kept = Verifier(policy, topology, failures=False)
    kept.check(tables)
    for target, target_tables in ((edited, edited_tables), (policy, tables)) * repeat:
        kept.retarget(target, topology)  # the policy changes; switch models stay
        start = time.perf_counter()
        pushed = kept.check(target_tables)
        push_runs.append(time.perf_counter() - start)
        assert pushed.ok, pushed.counts()
    return result | {"push_recheck_seconds": _median(push_runs[::2]), "push_switches_changed": changed}


def main(argv: list[str]) -> int:
    if argv[0] == "example":
        print(json.dumps(example(argv[1])))
    else:
        print(json.dumps(generated(*(int(a) for a in argv[1:5]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
