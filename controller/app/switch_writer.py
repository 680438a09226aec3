"""Writing one switch: read what it holds, then send it the difference to the compiled tables.

Role: the per-switch half of the enforcer (controller/app/enforcer.py decides *which* switches
get *which* tables and when; this module does one switch's read and write).

Invariants:
- `state.installed` is what the switch holds as far as we know: it is set from a read, and
  changed only after the switch took a plan (a refused plan raises ApplyError and leaves it);
- a switch whose flows cannot be read is never diffed: it gets the desired tables whole, atomically;
- without bundles (and with more than one table) the tables carry a version bit (core/staging.py):
  an update never mixes two versions in one lookup;
- `state.synced_to` records tables the switch holds entirely (nothing held back), so the next
  reconcile with the same inputs sends nothing.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Callable

from controller.app.switch_state import ApplyError, ConnectionLost, SwitchState
from controller.core.diff import Plan, SwitchPlan, apply_plan, diff_switch
from controller.core.flows import SwitchTables
from controller.core.grace import lldp_bootstrap
from controller.core.staging import target

log = logging.getLogger("otseg.enforcer")

# Given a switch's plan, the same plan without what must wait (deletions during the start-up
# grace); it returns the very plan it was given when nothing waits.
HoldBack = Callable[[SwitchPlan], SwitchPlan]


def read_tables(state: SwitchState) -> None:
    """Read the switch's flows (ours, and foreign flows in our tables), meters and groups."""
    try:
        state.installed = frozenset(state.channel.read_flows())
        state.unreadable = False
    except ApplyError as error:
        if not hasattr(state.channel, "rewrite") or isinstance(error, ConnectionLost):
            raise
        # Nothing it holds can be trusted or diffed: it gets the desired tables whole, atomically.
        log.error("switch %s: its flows cannot be read (%s): they will be replaced whole, in one bundle",
                  _dpid(state.channel.dpid), error)
        state.installed, state.unreadable = frozenset(), True
    state.meters = {m.meter_id: m for m in state.channel.read_meters()}
    state.groups = {g.group_id: g for g in state.channel.read_groups()}


def send_bootstrap(state: SwitchState, tables: SwitchTables, atomic: bool) -> int:
    """A new or emptied switch waiting for its declared links gets only what lets LLDP verify
    them (the trunk-LLDP entries and their meter), so that the rest of its tables can follow in
    one bundle once the links are known. Nothing it admits carries traffic. Returns messages sent."""
    assert state.installed is not None
    plan = diff_switch(lldp_bootstrap(tables), state.installed, state.meters, state.groups, False)
    plan = replace(plan, flows=replace(plan.flows, delete=()), groups_delete=(), atomic=atomic)  # add only
    if plan.empty:
        return 0
    try:
        state.channel.send(plan)
    except ApplyError as error:
        log.warning("switch %s refused its LLDP entries: %s", _dpid(state.channel.dpid), error)
        state.installed = None
        return 0
    state.installed = apply_plan(state.installed, plan.flows)
    state.meters.update({m.meter_id: m for m in plan.meters_add + plan.meters_modify})
    log.info("switch %s: LLDP entries first (%s); its tables follow once its declared links are up",
             _dpid(state.channel.dpid), plan.summary())
    return len(plan)


def write_tables(state: SwitchState, tables: SwitchTables, *, atomic: bool, single_table: bool,
                 remove_foreign: bool, serial: int, hold_back: HoldBack) -> tuple[int, bool]:
    """Send the switch (already read) what it lacks of `tables`, and remove what it holds beyond
    them, except what `hold_back` keeps for later. Returns (messages sent, whether the switch is a
    full rewrite that needs counting as a repair). Raises ApplyError when the switch refuses."""
    assert state.installed is not None
    if tables is state.synced_to and state.installed is state.synced_installed and not state.unreadable:
        state.enforces = serial
        return 0, False
    compiled = tables
    if not atomic and not single_table:
        # Without bundles the tables carry a version bit, flipped by each change (staging.py).
        tables, quarantine = target(tables, state.installed, remove_foreign)
        if quarantine:
            log.warning("switch %s holds tables from an interrupted update or without version tags: %d entries "
                        "drop their frames until this update completes", _dpid(state.channel.dpid), len(quarantine))
            state.channel.send(SwitchPlan(Plan(modify=quarantine), atomic=False))
            state.installed = apply_plan(state.installed, Plan(modify=quarantine))
    plan = replace(diff_switch(tables, state.installed, state.meters, state.groups, remove_foreign),
                   atomic=atomic, folded=single_table)
    if state.unreadable:
        state.channel.rewrite(plan)  # type: ignore[attr-defined]
        state.installed, state.unreadable, state.programmed = tables.flows, False, True
        _took(state, plan)
        state.enforces = serial
        log.warning("switch %s rewritten whole: %d flows", _dpid(state.channel.dpid), len(tables.flows))
        return len(tables.flows), True
    held = hold_back(plan)
    complete = held is plan
    plan = held
    state.last_plan = plan.summary()
    state.enforces = serial
    if plan.empty:
        state.programmed = True
        if complete:
            state.synced_to, state.synced_installed = compiled, state.installed
        return 0, False
    state.channel.send(plan)
    state.installed = apply_plan(state.installed, plan.flows)
    _took(state, plan)
    for group in plan.groups_delete:
        state.groups.pop(group.group_id, None)
    if not state.programmed:
        log.info("switch %s programmed: %d flows (%s)", _dpid(state.channel.dpid), len(tables.flows), plan.summary())
    else:
        log.info("switch %s updated: %s", _dpid(state.channel.dpid), plan.summary())
    state.programmed = True
    if complete:
        state.synced_to, state.synced_installed = compiled, state.installed
    return len(plan), False


def _took(state: SwitchState, plan: SwitchPlan) -> None:
    state.meters.update({m.meter_id: m for m in plan.meters_add + plan.meters_modify})
    state.groups.update({g.group_id: g for g in plan.groups_add + plan.groups_modify})


def _dpid(dpid: int) -> str:
    return f"{dpid:#x}"
