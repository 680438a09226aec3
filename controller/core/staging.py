"""Updates without bundles: make-before-break, so that every packet meets the old tables or
the new ones, never a mix: pure.

A switch without ONF bundles applies flow-mods one by one, so a plain diff would let a packet
meet, say, a new port-security entry (new asset ids) and an old allow-list rule (old ids): a
frame both policies deny could pass. Two techniques, after Reitblatt et al., "Abstractions
for Network Update" (SIGCOMM 2012):

- Multi-table switches: version tags. The entries of tables 1 and 3 (destination, policy)
  above the table miss match a VERSION bit of metadata, which port_security writes
  (`versioned`). A change installs the other version's entries first (no packet can reach
  them: port_security still writes the current version), then switches port_security over,
  then deletes the old version's entries. The client_ports table and the misses are the same
  in both versions and shared.
- Single-table switches (and port_security itself): writes from the highest priority down,
  then deletes from the lowest priority up, one barrier per priority level. Whichever entry
  a packet meets meanwhile is the one the old table or the new table would give it: every
  entry above a new one is already new, every old entry above a remaining old one remains.

`stages` turns a plan into batches; the switch confirms each with a barrier before the next.
Invariant (tested): after each stage, every packet's fate is its fate in the old tables or in
the new ones.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Iterable

from controller.core.diff import Plan, diff_flows
from controller.core.flows import Field, Flow, SwitchTables, WriteMetadata
from controller.core.pipeline import DESTINATION, POLICY, PORT_SECURITY, VERSION

VERSIONED_TABLES = (DESTINATION, POLICY)
Operation = tuple[str, Flow]  # ("add" | "modify" | "delete", flow)


def versioned(tables: SwitchTables, version: int) -> SwitchTables:
    """The tables with port_security writing `version` and destination/policy entries matching it."""
    bit = VERSION.encode(version)
    flows = set()
    for flow in tables.flows:
        if flow.table == PORT_SECURITY:
            writes = [i for i in flow.instructions if isinstance(i, WriteMetadata)]
            if writes:
                flow = replace(flow, instructions=tuple(
                    WriteMetadata(i.value & ~VERSION.mask | bit, i.mask | VERSION.mask)
                    if isinstance(i, WriteMetadata) else i for i in flow.instructions))
        elif flow.table in VERSIONED_TABLES and flow.priority > 0:
            flow = replace(flow, match=_with_version(flow.match, bit))
        flows.add(flow)
    return replace(tables, flows=frozenset(flows))


def _with_version(match: tuple[Field, ...], bit: int) -> tuple[Field, ...]:
    rest = [f for f in match if f.name != "metadata"]
    current = next((f for f in match if f.name == "metadata"), None)
    value = 0 if current is None else int(current.value)
    mask = 0 if current is None else (0xFFFF_FFFF_FFFF_FFFF if current.mask is None else int(current.mask))
    rest.append(Field("metadata", value & ~VERSION.mask | bit, mask | VERSION.mask))
    return tuple(sorted(rest))


def installed_version(flows: Iterable[Flow]) -> int | None:
    """The version most port_security entries write; None if none writes metadata."""
    votes: Counter[int] = Counter()
    for flow in flows:
        if flow.table == PORT_SECURITY:
            for i in flow.instructions:
                if isinstance(i, WriteMetadata) and i.mask & VERSION.mask:
                    votes[VERSION.decode(i.value)] += 1
    return votes.most_common(1)[0][0] if votes else None


def target(tables: SwitchTables, installed: frozenset[Flow], remove_foreign: bool = False) -> SwitchTables:
    """The versioned tables to install: the current version if nothing changes, else the other one."""
    current = installed_version(installed)
    if current is None:
        return versioned(tables, 0)
    same = versioned(tables, current)
    if diff_flows(same.flows, installed, remove_foreign).empty:
        return same
    return versioned(tables, 1 - current)


def stages(plan: Plan, folded: bool) -> list[list[Operation]]:
    """The plan as batches to confirm one by one (see the module docstring)."""
    writes = [("add", f) for f in plan.add + plan.replace] + [("modify", f) for f in plan.modify]
    deletes = [("delete", f) for f in plan.delete]
    result: list[list[Operation]] = []
    if not folded:
        result.append([op for op in writes if op[1].table != PORT_SECURITY])
    first_writes = [op for op in writes if folded or op[1].table == PORT_SECURITY]
    first_deletes = [op for op in deletes if folded or op[1].table == PORT_SECURITY]
    for priority in sorted({f.priority for _, f in first_writes}, reverse=True):
        result.append([op for op in first_writes if op[1].priority == priority])
    for priority in sorted({f.priority for _, f in first_deletes}):
        result.append([op for op in first_deletes if op[1].priority == priority])
    if not folded:
        result.append([op for op in deletes if op[1].table != PORT_SECURITY])
    return [batch for batch in result if batch]
