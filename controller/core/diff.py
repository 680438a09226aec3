"""The reconciler's pure half: desired flows vs installed flows -> a Plan of flow changes.

Keys are (table, priority, match). Installed-not-desired is deleted, desired-not-installed
is added, a key whose instructions differ is modified; a key whose cookie differs is
replaced (sent as an add, which overwrites: an OpenFlow 1.3 modify keeps the old cookie, so a
renamed conduit would never reach the switch). Only flows that carry our cookie prefix are
installed-by-us. Other flows in the tables otseg owns are foreign: deleted when
`remove_foreign` (the default of `otseg run`), else left alone; a foreign flow on a key we
want is overwritten either way (a switch holds one flow per key).
Invariants (tested): applying a plan to `installed` yields `desired`, and re-diffing after
an apply gives an empty plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from controller.core.flows import (
    COOKIE_PREFIX, COOKIE_PREFIX_MASK, GROUP_PREFIX, GROUP_PREFIX_MASK, Flow, Group, Meter, SwitchTables,
)
from controller.core.pipeline import TABLE_BY_NAME

OWNED_TABLES = frozenset(TABLE_BY_NAME)


@dataclass(frozen=True)
class Plan:
    add: tuple[Flow, ...] = ()
    modify: tuple[Flow, ...] = ()  # the new version of a flow whose key is installed (same cookie)
    delete: tuple[Flow, ...] = ()
    replace: tuple[Flow, ...] = ()  # the new version of an installed key with another cookie: sent as an add

    @property
    def empty(self) -> bool:
        return not (self.add or self.modify or self.delete or self.replace)

    def __len__(self) -> int:
        return len(self.add) + len(self.modify) + len(self.delete) + len(self.replace)

    def summary(self) -> str:
        return f"+{len(self.add)} ~{len(self.modify) + len(self.replace)} -{len(self.delete)}"


def is_ours(flow: Flow) -> bool:
    return flow.cookie & COOKIE_PREFIX_MASK == COOKIE_PREFIX


def is_foreign(flow: Flow) -> bool:
    """A flow in a table otseg owns that otseg did not install."""
    return not is_ours(flow) and flow.table in OWNED_TABLES


def diff_flows(desired: Iterable[Flow], installed: Iterable[Flow], remove_foreign: bool = False) -> Plan:
    # Equal flows cancel out first (set difference on cached hashes): a change to a table of
    # thousands of entries touches a few, and only those are matched up by key.
    # Every desired flow carries our cookie, so none equals a foreign one: both sides of the
    # difference come from two C-level set differences, and only the differing flows are scanned.
    wanted = desired if isinstance(desired, (set, frozenset)) else frozenset(desired)
    installed = installed if isinstance(installed, (set, frozenset)) else frozenset(installed)
    missing, extra = wanted - installed, installed - wanted
    want = {flow.key: flow for flow in missing}
    have = {flow.key: flow for flow in extra if is_ours(flow)}
    add = [want[k] for k in want.keys() - have.keys()]
    delete = [have[k] for k in have.keys() - want.keys()]
    common = want.keys() & have.keys()
    modify = [want[k] for k in common if want[k].cookie == have[k].cookie and want[k].instructions != have[k].instructions]
    replace = [want[k] for k in common if want[k].cookie != have[k].cookie]
    if remove_foreign:
        delete += [flow for flow in extra if is_foreign(flow) and flow.key not in want]
    return Plan(tuple(sorted(add)), tuple(sorted(modify)), tuple(sorted(delete)), tuple(sorted(replace)))


def apply_plan(installed: Iterable[Flow], plan: Plan) -> frozenset[Flow]:
    """What a switch holds after executing `plan` (the model the apply step must match)."""
    held = installed if isinstance(installed, (set, frozenset)) else frozenset(installed)
    written = plan.add + plan.modify + plan.replace
    if not written and not plan.delete:
        return frozenset(held)
    keys = {flow.key for flow in written} | {flow.key for flow in plan.delete}
    superseded = [flow for flow in held if flow.key in keys]  # one pass; the set operations are C-level
    return (held - frozenset(superseded)) | frozenset(written)


@dataclass(frozen=True)
class SwitchPlan:
    """Everything to change on one switch. Sent in this order, so nothing refers to a meter or
    group that does not exist yet and no allowed path is removed before its replacement is in:
    meters, new and changed groups, flow adds, flow modifies, flow deletes, group deletes."""

    flows: Plan = Plan()
    meters_add: tuple[Meter, ...] = ()
    meters_modify: tuple[Meter, ...] = ()
    groups_add: tuple[Group, ...] = ()
    groups_modify: tuple[Group, ...] = ()
    groups_delete: tuple[Group, ...] = ()
    atomic: bool = True  # the flow changes go in one ONF bundle; else in `staging.stages`, barrier by barrier
    folded: bool = False  # the switch holds the pipeline folded into one table (lowering.py)

    @property
    def empty(self) -> bool:
        return self.flows.empty and not (self.meters_add or self.meters_modify or self.groups_add
                                         or self.groups_modify or self.groups_delete)

    def __len__(self) -> int:
        return (len(self.flows) + len(self.meters_add) + len(self.meters_modify) + len(self.groups_add)
                + len(self.groups_modify) + len(self.groups_delete))

    def summary(self) -> str:
        groups = len(self.groups_add) + len(self.groups_modify) + len(self.groups_delete)
        return self.flows.summary() + (f" groups {groups}" if groups else "")


def is_our_group(group: Group) -> bool:
    return group.group_id & GROUP_PREFIX_MASK == GROUP_PREFIX


def diff_switch(desired: SwitchTables, flows: frozenset[Flow], meters: dict[int, Meter],
                groups: dict[int, Group], remove_foreign: bool = False) -> SwitchPlan:
    """What to send so that a switch holding flows/meters/groups ends up holding `desired`.

    Meters are only added or modified, never deleted: deleting a meter deletes every flow that
    uses it, including ones we did not install."""
    ours = {gid: g for gid, g in groups.items() if is_our_group(g)}
    wanted = {g.group_id: g for g in desired.groups}
    return SwitchPlan(
        flows=diff_flows(desired.flows, flows, remove_foreign),
        meters_add=tuple(m for m in sorted(desired.meters) if m.meter_id not in meters),
        meters_modify=tuple(m for m in sorted(desired.meters) if m.meter_id in meters and meters[m.meter_id] != m),
        groups_add=tuple(sorted(g for gid, g in wanted.items() if gid not in ours)),
        groups_modify=tuple(sorted(g for gid, g in wanted.items() if gid in ours and ours[gid] != g)),
        groups_delete=tuple(sorted(g for gid, g in ours.items() if gid not in wanted)),
    )
