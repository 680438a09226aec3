"""The reconciler's pure half: desired flows vs installed flows -> a Plan of flow changes.

Keys are (table, priority, match). Installed-not-desired is deleted, desired-not-installed
is added, a key whose instructions or cookie differ is modified. Only flows that carry our
cookie prefix are ever considered installed-by-us: other flows are never touched.
Invariants (tested): applying a plan to `installed` yields `desired`, and re-diffing after
an apply gives an empty plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from controller.core.flows import COOKIE_PREFIX, COOKIE_PREFIX_MASK, Flow


@dataclass(frozen=True)
class Plan:
    add: tuple[Flow, ...] = ()
    modify: tuple[Flow, ...] = ()  # the new version of a flow whose key is installed
    delete: tuple[Flow, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.add or self.modify or self.delete)

    def __len__(self) -> int:
        return len(self.add) + len(self.modify) + len(self.delete)

    def summary(self) -> str:
        return f"+{len(self.add)} ~{len(self.modify)} -{len(self.delete)}"


def is_ours(flow: Flow) -> bool:
    return flow.cookie & COOKIE_PREFIX_MASK == COOKIE_PREFIX


def diff_flows(desired: Iterable[Flow], installed: Iterable[Flow]) -> Plan:
    want = {flow.key: flow for flow in desired}
    have = {flow.key: flow for flow in installed if is_ours(flow)}
    add = [want[k] for k in want.keys() - have.keys()]
    delete = [have[k] for k in have.keys() - want.keys()]
    modify = [want[k] for k in want.keys() & have.keys()
              if (want[k].instructions, want[k].cookie) != (have[k].instructions, have[k].cookie)]
    return Plan(tuple(sorted(add)), tuple(sorted(modify)), tuple(sorted(delete)))


def apply_plan(installed: Iterable[Flow], plan: Plan) -> frozenset[Flow]:
    """What a switch holds after executing `plan` (the model the apply step must match)."""
    table = {flow.key: flow for flow in installed}
    for flow in plan.delete:
        table.pop(flow.key, None)
    for flow in plan.add + plan.modify:
        table[flow.key] = flow
    return frozenset(table.values())
