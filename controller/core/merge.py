"""The incremental compiler's merged tables: which units yield each entry, and the result.

Every entry key of every switch remembers the units that yield it: (unit, flow) when one does
(almost always), else {unit: flow}. The entry installed is the lowest (cookie, instructions),
as in the full compile, so withdrawing one unit's entry brings back another's. Group refcounts
and the zones each switch serves (for the deny counters) are kept the same way. `finish`
rebuilds only the SwitchTables of switches whose entries, groups or meters changed; the others
stay the same objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.core.compiler import better, switch_tables
from controller.core.flows import Flow, SwitchTables
from controller.core.pipeline import check_flow
from controller.core.topology import Topology
from controller.core.units import GroupKey, UnitOutput

Key = tuple[object, ...]
UnitId = tuple[str, object]


@dataclass
class Stats:
    """What the last compile did: for tests (proportional work) and metrics."""

    full: bool = False
    units_run: int = 0
    units_changed: int = 0
    entries_changed: int = 0
    switches_changed: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class MergedTables:
    def __init__(self, switches: frozenset[int] = frozenset()) -> None:
        self.tables: dict[int, SwitchTables] = {}
        self.chosen: dict[int, dict[Key, Flow]] = {}
        self._flowsets: dict[int, set[Flow]] = {}  # the chosen flows of each switch, as a set
        self._sources: dict[int, dict[Key, tuple[UnitId, Flow] | dict[UnitId, Flow]]] = {}
        self.groups: dict[int, dict[GroupKey, int]] = {}  # refcounts
        self.served: dict[int, dict[str, int]] = {}  # dpid -> zone -> destination units serving it
        self._touched: dict[int, set[Key]] = {}
        self._touched_groups: set[int] = set()
        self._meters_dirty: set[int] = set()
        for dpid in switches:
            self.add_switch(dpid)

    def add_switch(self, dpid: int) -> None:
        """A switch that connects: its entries start from nothing."""
        self.chosen[dpid], self._flowsets[dpid], self._sources[dpid] = {}, set(), {}
        self.groups[dpid], self.served[dpid], self._touched[dpid] = {}, {}, set()
        self._touched_groups.add(dpid)
        self._meters_dirty.add(dpid)

    def remove_switch(self, dpid: int) -> bool:
        """A switch that went away; False if some unit still yields entries there (a bug)."""
        if self._sources[dpid] or self.groups[dpid]:
            return False
        for table in (self.chosen, self._flowsets, self._sources, self.groups, self.served, self._touched,
                      self.tables):
            table.pop(dpid, None)  # type: ignore[attr-defined]
        self._touched_groups.discard(dpid)
        self._meters_dirty.discard(dpid)
        return True

    def meters_changed(self, dpids: set[int]) -> None:
        self._meters_dirty |= dpids

    def withdraw(self, unit: UnitId, output: UnitOutput) -> None:
        for dpid, flow in output.flows:
            table = self._sources[dpid]
            key = flow.key
            held = table.get(key)
            if isinstance(held, dict):
                held.pop(unit, None)
                if len(held) == 1:
                    table[key] = next(iter(held.items()))
            elif held is not None and held[0] == unit:
                del table[key]
            self._touched[dpid].add(key)
        for dpid, group in output.groups:
            counts = self.groups[dpid]
            counts[group] -= 1
            if not counts[group]:
                del counts[group]
            self._touched_groups.add(dpid)
        if output.served:
            zone = output.zone
            for dpid in output.served:
                zones = self.served[dpid]
                zones[zone] -= 1
                if not zones[zone]:
                    del zones[zone]

    def contribute(self, unit: UnitId, output: UnitOutput) -> None:
        for dpid, flow in output.flows:
            table = self._sources[dpid]
            key = flow.key
            held = table.get(key)
            if held is None:
                table[key] = (unit, flow)  # one source: the common case, kept small
            elif isinstance(held, dict):
                kept = held.get(unit)
                if kept is None or better(flow, kept):
                    held[unit] = flow
            elif held[0] == unit:
                if better(flow, held[1]):
                    table[key] = (unit, flow)
            else:
                table[key] = {held[0]: held[1], unit: flow}
            self._touched[dpid].add(key)
        for dpid, group in output.groups:
            counts = self.groups[dpid]
            counts[group] = counts.get(group, 0) + 1
            self._touched_groups.add(dpid)
        if output.served:
            zone = output.zone
            for dpid in output.served:
                zones = self.served[dpid]
                zones[zone] = zones.get(zone, 0) + 1

    def finish(self, topology: Topology, stats: Stats) -> None:
        """Choose each touched key's entry, and rebuild the SwitchTables of the switches that changed."""
        rebuilt: set[int] = set()
        for dpid, keys in self._touched.items():
            if not keys or dpid not in topology.switches:
                continue
            chosen = self.chosen[dpid]
            flowset = self._flowsets[dpid]
            sources = self._sources[dpid]
            for key in keys:
                held = sources.get(key)
                current = chosen.get(key)
                if held is None:
                    if current is not None:
                        del chosen[key]
                        flowset.discard(current)
                        stats.entries_changed += 1
                        rebuilt.add(dpid)
                    continue
                best = held[1] if isinstance(held, tuple) else min(
                    held.values(), key=lambda f: (f.cookie, f.instructions))
                if current != best:
                    check_flow(best)
                    chosen[key] = best
                    if current is not None:
                        flowset.discard(current)
                    flowset.add(best)
                    stats.entries_changed += 1
                    rebuilt.add(dpid)
            keys.clear()
        for dpid in (rebuilt | self._touched_groups | self._meters_dirty) & topology.switches:
            previous = self.tables.get(dpid)
            # from a set, frozenset() reuses the stored hashes: no Flow.__hash__ call per entry
            flows = frozenset(self._flowsets[dpid]) if dpid in rebuilt or previous is None else previous.flows
            tables = switch_tables(topology, dpid, flows, set(self.groups[dpid]))
            if dpid in rebuilt or previous is None or tables.groups != previous.groups \
                    or tables.meters != previous.meters:
                self.tables[dpid] = tables
                stats.switches_changed += 1
        self._touched_groups = set()
        self._meters_dirty = set()
