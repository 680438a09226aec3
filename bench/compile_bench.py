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
from controller.core.budget import entry_split
from controller.core.compiler import compile_tables
from controller.core.diff import diff_flows
from controller.core.incremental import IncrementalCompiler
from controller.core.model import Conduit, Policy
from controller.core.topology import PortRef


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
    full_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    edges = [len(t.flows) for dpid, t in tables.items() if dpid > 2]
    splits = {dpid: entry_split(t) for dpid, t in tables.items()}
    edge_dpid = max((d for d in tables if d > 2), key=lambda d: len(tables[d].flows))

    moved_asset = policy.assets[0]
    other_zone = next(z.name for z in policy.zones if z.name != moved_asset.zone)
    moved = replace(policy, assets=(replace(moved_asset, zone=other_zone),) + policy.assets[1:], _index={})
    edited = replace(policy, conduits=(Conduit(**{**policy.conduits[0].__dict__, "services": ("modbus",)}),)
                     + policy.conduits[1:], _index={})
    newcomer = replace(moved_asset, name="zz-new", mac="02:ff:00:00:00:01", ip="10.250.0.1")
    added = replace(policy, assets=policy.assets + (newcomer,), _index={})
    with_newcomer = replace(topology, attachments=tuple(sorted(topology.attachments + (
        ("zz-new", PortRef(edge_dpid, 9999)),))), _cache={})
    link = sorted(topology.links)[-1]  # an edge switch's second uplink
    link_down = replace(topology, links=topology.links - {link}, declared_trunks=frozenset({link.a, link.b}), _cache={})

    def change(new_policy: Policy) -> None:
        new_tables = compile_tables(new_policy, topology)
        for dpid, switch in new_tables.items():
            diff_flows(switch.flows, tables[dpid].flows)

    engine = IncrementalCompiler()
    engine.compile(policy, topology)
    incremental: dict[str, dict[str, float]] = {}
    for name, (new_policy, new_topology) in {"asset_move": (moved, topology), "asset_add": (added, with_newcomer),
                                             "conduit_edit": (edited, topology), "link_down": (policy, link_down)}.items():
        runs = []
        for _ in range(repeat):
            for target, back in (((new_policy, new_topology), (policy, topology)),):
                before = engine.tables
                start = time.perf_counter()
                after = engine.compile(*target)
                flow_mods = 0
                for dpid, switch in after.items():
                    if switch is not before.get(dpid):
                        plan = diff_flows(switch.flows, before[dpid].flows if dpid in before else frozenset())
                        flow_mods += len(plan.add) + len(plan.modify) + len(plan.delete) + len(plan.replace)
                seconds = time.perf_counter() - start
                runs.append((seconds, flow_mods, engine.stats.units_run, engine.stats.full))
                engine.compile(*back)
        incremental[name] = {"seconds": statistics.median(r[0] for r in runs), "flow_mods": runs[0][1],
                             "units": runs[0][2], "full": any(r[3] for r in runs)}

    return {
        "assets": assets, "zones": zones, "conduits": conduits, "switches": switches, "placement": placement,
        "compile_s": statistics.median(full), "compile_spread_s": max(full) - min(full), "runs": repeat,
        "asset_move_s": statistics.median(_timed(lambda: change(moved), repeat)),
        "conduit_edit_s": statistics.median(_timed(lambda: change(edited), repeat)),
        "incremental": incremental, "units_total": len(engine._outputs),
        "peak_rss_mb": full_rss,
        "flows_total": sum(len(t.flows) for t in tables.values()),
        "edge_max": max(edges), "edge_median": statistics.median(edges),
        "edge_exact": splits[edge_dpid][0], "edge_wildcard": splits[edge_dpid][1],
        "wildcard_max": max(w for _, w in splits.values()), "exact_max": max(e for e, _ in splits.values()),
        "wildcard_max_switch": max(splits, key=lambda d: splits[d][1]),
        "naive_total": naive_rules(policy, {n for n, _ in topology.attachments}),
    }


if __name__ == "__main__":
    a, z, c, s, placement = sys.argv[1:6]
    print(json.dumps(run_case(int(a), int(z), int(c), int(s), placement)))
