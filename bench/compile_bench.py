"""Compile scaling and flow-table footprint (pure; no switches needed).

Run one case per process so that peak memory (ru_maxrss) belongs to that case:
    python -m bench.compile_bench ASSETS ZONES CONDUITS SWITCHES PLACEMENT
prints one JSON line.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from dataclasses import replace

from bench.generate import generated_policy, generated_topology
from controller.core.compiler import compile_tables
from controller.core.diff import diff_flows
from controller.core.model import Conduit, Policy


def naive_rules(policy: Policy, located: set[str]) -> int:
    """Rules a per-pair expansion needs: every (from asset, to asset, service element, direction)."""
    total = 0
    for conduit in policy.conduits:
        sources = {a.name for e in conduit.sources for a in policy.members(e)} & located
        targets = {a.name for e in conduit.destinations for a in policy.members(e)} & located
        pairs = len(sources) * len(targets) * (2 if conduit.bidirectional else 1)
        for name in conduit.services:
            for match in policy.service(name).matches:
                total += pairs * (2 if match.is_ip else 1)
        if any(m.is_ip for n in conduit.services for m in policy.service(n).matches):
            total += 2 * pairs  # ARP both ways
    return total


def _timed(function, repeat: int) -> list[float]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def run_case(assets: int, zones: int, conduits: int, switches: int, placement: str) -> dict[str, object]:
    policy = generated_policy(assets, zones, conduits)
    topology = generated_topology(policy, switches, placement)
    repeat = 3 if assets <= 1000 else 1
    full = _timed(lambda: compile_tables(policy, topology), repeat)
    tables = compile_tables(policy, topology)
    edges = [len(t.flows) for dpid, t in tables.items() if dpid > 2]

    moved_asset = policy.assets[0]
    other_zone = next(z.name for z in policy.zones if z.name != moved_asset.zone)
    moved = replace(policy, assets=(replace(moved_asset, zone=other_zone),) + policy.assets[1:], _index={})
    edited = replace(policy, conduits=(Conduit(**{**policy.conduits[0].__dict__, "services": ("modbus",)}),)
                     + policy.conduits[1:], _index={})

    def change(new_policy: Policy) -> None:
        new_tables = compile_tables(new_policy, topology)
        for dpid, switch in new_tables.items():
            diff_flows(switch.flows, tables[dpid].flows)

    return {
        "assets": assets, "zones": zones, "conduits": conduits, "switches": switches, "placement": placement,
        "compile_s": statistics.median(full), "compile_spread_s": max(full) - min(full), "runs": repeat,
        "asset_move_s": statistics.median(_timed(lambda: change(moved), repeat)),
        "conduit_edit_s": statistics.median(_timed(lambda: change(edited), repeat)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "flows_total": sum(len(t.flows) for t in tables.values()),
        "edge_max": max(edges), "edge_median": statistics.median(edges),
        "naive_total": naive_rules(policy, {n for n, _ in topology.attachments}),
    }


if __name__ == "__main__":
    a, z, c, s, placement = sys.argv[1:6]
    print(json.dumps(run_case(int(a), int(z), int(c), int(s), placement)))
