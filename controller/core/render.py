"""Render compiled tables for people (text) and programs (json), in a stable order.

Text output uses table names, OVS-style field names and named ports where known, so a
network engineer can read it next to `ovs-ofctl dump-flows`.
"""

from __future__ import annotations

import json
from typing import Callable

from controller.core.flows import (
    CONTROLLER_PORT, IN_PORT, ApplyActions, ClearActions, Conntrack, Field, Flow, GotoTable, GroupAction, MeterInstruction, Output,
    OtherAction, PopVlan, PushVlan, SetField, SwitchTables, WriteActions, WriteMetadata,
)
from controller.core.budget import is_exact_match
from controller.core.pipeline import TABLE_IDS, TABLES


_CT_STATE_NAMES = ((0x01, "new"), (0x02, "est"), (0x04, "rel"), (0x08, "rpl"), (0x10, "inv"), (0x20, "trk"))
_FRAG_NAMES = {(0, 2): "not_later", (2, 2): "later", (0, 1): "no", (1, 1): "yes", (1, 3): "first"}


def format_field(item: Field) -> str:
    if item.name == "ip_frag":
        return f"ip_frag={_FRAG_NAMES.get((item.value, item.mask), item.value)}"  # type: ignore[arg-type]
    if item.name == "ct_state" and isinstance(item.value, int):
        mask = item.mask if isinstance(item.mask, int) else 0xFF
        flags = "".join(("+" if item.value & bit else "-") + name for bit, name in _CT_STATE_NAMES if mask & bit)
        return f"ct_state={flags}"
    if item.name == "vlan_vid" and item.value == 0 and item.mask is None:
        return "vlan_tci=0x0000/0x1fff"  # untagged only
    value = f"0x{item.value:x}" if item.name in ("metadata", "eth_type", "tcp_flags") else str(item.value)
    if item.mask is None:
        return f"{item.name}={value}"
    mask = f"0x{item.mask:x}" if isinstance(item.mask, int) else item.mask
    return f"{item.name}={value}/{mask}"


def format_action(action: object) -> str:
    if isinstance(action, Output):
        if action.port == CONTROLLER_PORT:
            return "output:CONTROLLER"
        return "in_port" if action.port == IN_PORT else f"output:{action.port}"
    if isinstance(action, SetField):
        return f"set_field:{action.value}->{action.name}"
    if isinstance(action, GroupAction):
        return f"group:{action.group_id}"
    if isinstance(action, Conntrack):
        return _ct(action, action.table)
    if isinstance(action, PushVlan):
        return f"push_vlan:0x{action.ethertype:04x}"
    if isinstance(action, PopVlan):
        return "pop_vlan"
    if isinstance(action, OtherAction):
        return f"<{action.text}>"
    raise TypeError(action)


def _ct(action: Conntrack, table: str | None) -> str:
    words = (["commit"] if action.commit else []) + ([f"table={table}"] if table is not None else [])
    return "ct(" + ",".join(words + [f"zone={action.zone}"]) + ")"


def instruction_parts(flow: Flow, action: Callable[[object], str] = format_action,
                      table: Callable[[str], str] = lambda name: name) -> list[str]:
    """The flow's instructions as OVS-style words, in OpenFlow execution order."""
    parts: list[str] = []
    for instruction in flow.instructions:
        if isinstance(instruction, MeterInstruction):
            parts.append(f"meter:{instruction.meter_id}")
        elif isinstance(instruction, ApplyActions):
            parts.extend(action(a) for a in instruction.actions)
        elif isinstance(instruction, ClearActions):
            parts.append("clear_actions")
        elif isinstance(instruction, WriteActions):
            parts.append("write_actions(" + ",".join(action(a) for a in instruction.actions) + ")")
        elif isinstance(instruction, WriteMetadata):
            parts.append(f"write_metadata:0x{instruction.value:x}/0x{instruction.mask:x}")
        elif isinstance(instruction, GotoTable):
            parts.append(f"goto_table:{table(instruction.table)}")
    return parts


def format_instructions(flow: Flow) -> str:
    parts = instruction_parts(flow)
    return ",".join(parts) if parts else "drop" if flow.table != "policy" or flow.priority == 0 else "allow"


def render_text(tables: dict[int, SwitchTables], switch_name: Callable[[int], str]) -> str:
    lines: list[str] = []
    for dpid in sorted(tables):
        switch = tables[dpid]
        lines.append(f"switch {switch_name(dpid)} (dpid {dpid}): {len(switch.flows)} flows")
        flows = switch.sorted_flows(TABLE_IDS)
        for table in TABLES:
            in_table = [f for f in flows if f.table == table.name]
            lines.append(f"  table {table.table_id} {table.name}: {len(in_table)} flows")
            for flow in in_table:
                match = ",".join(format_field(m) for m in flow.match) or "*"
                lines.append(f"    priority={flow.priority} {match} actions={format_instructions(flow)}"
                             f" cookie=0x{flow.cookie:x}")
        lines.append("")
    return "\n".join(lines)


def render_json(tables: dict[int, SwitchTables], switch_name: Callable[[int], str]) -> str:
    document = []
    for dpid in sorted(tables):
        switch = tables[dpid]
        document.append({
            "dpid": dpid,
            "switch": switch_name(dpid),
            "meters": [{"id": m.meter_id, "rate_pps": m.rate_pps, "burst": m.burst} for m in sorted(switch.meters)],
            "flows": [
                {"table": f.table, "table_id": TABLE_IDS[f.table], "priority": f.priority,
                 "match": {m.name: (m.value if m.mask is None else [m.value, m.mask]) for m in f.match},
                 "actions": format_instructions(f), "cookie": f"0x{f.cookie:x}"}
                for f in switch.sorted_flows(TABLE_IDS)
            ],
        })
    return json.dumps(document, indent=2)


def render_summary(tables: dict[int, SwitchTables], switch_name: Callable[[int], str]) -> str:
    """Flow counts per switch and table, the total, and the split that sizes hardware tables:
    exact-match entries (one exact eth_dst: an L2/MAC-table entry) and wildcard (TCAM-class) ones."""
    names = [t.name for t in TABLES]
    width = max([len(switch_name(d)) for d in tables] + [6])
    lines = [f"{'switch':<{width}}  " + "  ".join(f"{n:>13}" for n in names) + f"  {'total':>6}  {'exact':>6}"
             f"  {'wildcard':>8}"]
    totals = dict.fromkeys(names, 0)
    all_exact = 0
    for dpid in sorted(tables):
        counts = {n: sum(1 for f in tables[dpid].flows if f.table == n) for n in names}
        for n in names:
            totals[n] += counts[n]
        exact = sum(1 for f in tables[dpid].flows if is_exact_match(f))
        all_exact += exact
        total = sum(counts.values())
        lines.append(f"{switch_name(dpid):<{width}}  " + "  ".join(f"{counts[n]:>13}" for n in names)
                     + f"  {total:>6}  {exact:>6}  {total - exact:>8}")
    total = sum(totals.values())
    lines.append(f"{'all':<{width}}  " + "  ".join(f"{totals[n]:>13}" for n in names)
                 + f"  {total:>6}  {all_exact:>6}  {total - all_exact:>8}")
    return "\n".join(lines)


_OVS_FIELD_NAMES = {"icmpv4_type": "icmp_type", "ipv4_src": "nw_src", "ipv4_dst": "nw_dst"}


def _ovs_action(action: object) -> str:
    if isinstance(action, Output) and action.port == CONTROLLER_PORT:
        return f"controller(max_len={action.max_len})"
    if isinstance(action, Conntrack):
        return _ct(action, None if action.table is None else str(TABLE_IDS[action.table]))
    return format_action(action)


def render_ovs(tables: SwitchTables) -> str:
    """One switch's flows in `ovs-ofctl add-flows` syntax (load them with `-O OpenFlow13`)."""
    lines = []
    for flow in tables.sorted_flows(TABLE_IDS):
        match = ",".join(format_field(m).replace(m.name, _OVS_FIELD_NAMES.get(m.name, m.name), 1) for m in flow.match)
        parts = instruction_parts(flow, _ovs_action, lambda name: str(TABLE_IDS[name]))
        head = f"cookie=0x{flow.cookie:x},table={TABLE_IDS[flow.table]},priority={flow.priority}"
        lines.append(f"{head}{',' + match if match else ''},actions={','.join(parts) or 'drop'}")
    return "\n".join(lines)


def render_ovs_groups(tables: SwitchTables) -> str:
    """One switch's groups in `ovs-ofctl add-groups` syntax."""
    lines = []
    for group in sorted(tables.groups):
        buckets = []
        for bucket in group.buckets:
            buckets.append(f"bucket=watch_port:{bucket.watch_port},actions={','.join(_ovs_action(a) for a in bucket.actions)}")
        lines.append(f"group_id={group.group_id},type=ff," + ",".join(buckets))
    return "\n".join(lines)
