"""Pure rules for tables in transition: what a switch that waits for its links gets first, and
which stale entries may stay during the start-up grace.

- `lldp_bootstrap`: a new or emptied switch waiting for its declared links gets only its
  trunk-LLDP entries and their meter, so LLDP can verify the links; the rest follows in one bundle.
- `may_wait`: after a restart with another policy, a stale entry outside port_security and
  policy may wait only if it forwards nothing, or classifies its destination MAC with the ids
  the policy in force gives it (then the allow-list judges it as it would a fresh entry).
"""

from __future__ import annotations

from controller.core.flows import (
    ETH_LLDP,
    ApplyActions, Flow, GroupAction, Output, SetField, SwitchTables, WriteActions, WriteMetadata,
)
from controller.core.pipeline import DESTINATION, DST_MASK, METER_LLDP, PORT_SECURITY


def lldp_bootstrap(tables: SwitchTables) -> SwitchTables:
    # By match, not priority: a switch of the single-table profile holds it at a folded priority.
    lldp = frozenset(f for f in tables.flows if f.table == PORT_SECURITY and f.field("in_port") is not None
                     and (eth_type := f.field("eth_type")) is not None and eth_type.value == ETH_LLDP
                     and len(f.match) == 2)
    return SwitchTables(tables.dpid, lldp, frozenset(m for m in tables.meters if m.meter_id == METER_LLDP))


def may_wait(flow: Flow, tags: dict[str, int]) -> bool:
    """May this stale entry outside port_security and policy stay a while (start-up grace, after a
    restart with another policy)? Only if it forwards nothing, or classifies its destination
    MAC with the ids the policy in force gives it: then the allow-list judges it as a fresh one."""
    outputs = any(isinstance(i, (ApplyActions, WriteActions)) and any(isinstance(a, (Output, GroupAction))
                                                                      for a in i.actions)
                  for i in flow.instructions)
    if not outputs:
        return True
    if flow.table != DESTINATION:
        return False
    written = next((i.value for i in flow.instructions if isinstance(i, WriteMetadata) and i.mask == DST_MASK), None)
    rewritten = next((a.value for i in flow.instructions if isinstance(i, WriteActions) for a in i.actions
                      if isinstance(a, SetField) and a.name == "eth_dst"), None)
    matched = flow.field("eth_dst")
    mac = rewritten if rewritten is not None else (matched.value if matched and matched.mask is None else None)
    return written is not None and mac is not None and tags.get(str(mac)) == written
