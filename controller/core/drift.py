"""Drift: how what a switch actually holds differs from what otseg believes it holds.

Pure. The enforcer re-reads every switch periodically (and on reconnect); each difference
between its belief (the flows, groups and meters it installed and confirmed) and the fresh
read is one Repair, reported as a metric and an event before the reconcile puts it right.
Kinds: `missing` (ours, gone from the switch), `changed` (ours, same key, other instructions
or cookie), `unexpected` (our cookie, but never installed by this process), `foreign` (another
cookie, in a table otseg owns), `group-*` / `meter-*` alike, and `unreadable` (the switch's flows
could not be read at all: it is rewritten whole, in one atomic bundle).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal

from controller.core.diff import is_foreign, is_our_group, is_ours
from controller.core.flows import Flow, Group, Meter

Kind = Literal["missing", "changed", "unexpected", "foreign", "group-missing", "group-changed", "group-unexpected",
               "meter-missing", "meter-changed", "unreadable"]


@dataclass(frozen=True)
class Repair:
    kind: Kind
    what: str  # the table, priority and match, or the group / meter id

    def describe(self) -> str:
        return f"{self.kind}: {self.what}"


def _flow_text(flow: Flow) -> str:
    match = ",".join(f"{f.name}={f.value}" + (f"/{f.mask}" if f.mask is not None else "") for f in flow.match)
    return f"table {flow.table} priority {flow.priority} {match or '*'} cookie {flow.cookie:#x}"


def flow_drift(believed: Iterable[Flow], actual: Iterable[Flow]) -> list[Repair]:
    mine = {f.key: f for f in believed if is_ours(f)}
    held = {f.key: f for f in actual if is_ours(f) or is_foreign(f)}
    repairs: list[Repair] = []
    for key, flow in sorted(mine.items(), key=lambda item: item[1]):
        found = held.get(key)
        if found is None:
            repairs.append(Repair("missing", _flow_text(flow)))
        elif found != flow:
            repairs.append(Repair("foreign" if not is_ours(found) else "changed", _flow_text(found)))
    for key, flow in sorted(held.items(), key=lambda item: item[1]):
        if key not in mine:
            repairs.append(Repair("unexpected" if is_ours(flow) else "foreign", _flow_text(flow)))
    return repairs


def group_drift(believed: dict[int, Group], actual: dict[int, Group]) -> list[Repair]:
    repairs: list[Repair] = []
    for gid, group in sorted(believed.items()):
        if is_our_group(group) and gid not in actual:
            repairs.append(Repair("group-missing", f"group {gid:#x}"))
        elif is_our_group(group) and actual[gid] != group:
            repairs.append(Repair("group-changed", f"group {gid:#x}"))
    for gid, group in sorted(actual.items()):
        if is_our_group(group) and gid not in believed:
            repairs.append(Repair("group-unexpected", f"group {gid:#x}"))
    return repairs


def meter_drift(believed: dict[int, Meter], actual: dict[int, Meter]) -> list[Repair]:
    repairs: list[Repair] = []
    for mid, meter in sorted(believed.items()):
        if mid not in actual:
            repairs.append(Repair("meter-missing", f"meter {mid:#x}"))
        elif actual[mid] != meter:
            repairs.append(Repair("meter-changed", f"meter {mid:#x}"))
    return repairs
