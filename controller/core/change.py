"""What a policy change changes: conduits added, removed or edited, and flows per switch."""

from __future__ import annotations

from dataclasses import dataclass

from controller.core.diff import diff_switch
from controller.core.flows import SwitchTables
from controller.core.model import Policy


@dataclass(frozen=True)
class PolicyChange:
    conduits_added: tuple[str, ...]
    conduits_removed: tuple[str, ...]
    conduits_changed: tuple[str, ...]
    zones_changed: tuple[str, ...]
    assets_changed: tuple[str, ...]
    flows: dict[int, str]  # dpid -> "+a ~m -d" for switches whose tables change
    flow_mods: int  # flow, group and meter messages the change sends, on all switches

    def as_dict(self) -> dict[str, object]:
        return {"conduits": {"added": list(self.conduits_added), "removed": list(self.conduits_removed),
                             "changed": list(self.conduits_changed)},
                "zones_changed": list(self.zones_changed), "assets_changed": list(self.assets_changed),
                "flows": {f"{dpid:#x}": plan for dpid, plan in sorted(self.flows.items())},
                "flow_mods": self.flow_mods}


def _named(items: tuple[object, ...]) -> dict[str, object]:
    return {item.name: item for item in items}  # type: ignore[attr-defined]


def _delta(old: dict[str, object], new: dict[str, object]) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    added = tuple(sorted(new.keys() - old.keys()))
    removed = tuple(sorted(old.keys() - new.keys()))
    changed = tuple(sorted(name for name in old.keys() & new.keys() if old[name] != new[name]))
    return added, removed, changed


def describe_change(old: Policy, new: Policy, old_tables: dict[int, SwitchTables],
                    new_tables: dict[int, SwitchTables]) -> PolicyChange:
    added, removed, changed = _delta(_named(old.conduits), _named(new.conduits))
    zones = _delta(_named(old.zones), _named(new.zones))
    assets = _delta(_named(old.assets), _named(new.assets))
    flows: dict[int, str] = {}
    flow_mods = 0
    for dpid, tables in new_tables.items():
        previous = old_tables.get(dpid)
        if previous is None or previous is tables:  # the same object: the incremental compiler left it alone
            continue
        plan = diff_switch(tables, previous.flows, {m.meter_id: m for m in previous.meters},
                           {g.group_id: g for g in previous.groups})
        if not plan.empty:
            flows[dpid] = plan.summary()
            flow_mods += len(plan)
    return PolicyChange(added, removed, changed, tuple(sorted(set().union(*zones))),
                        tuple(sorted(set().union(*assets))), flows, flow_mods)
