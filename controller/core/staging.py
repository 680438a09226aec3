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

from controller.core.diff import Plan, diff_flows, is_ours
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
    votes = Counter({version: len(entries) for version, entries in _writers(flows).items() if version is not None})
    return votes.most_common(1)[0][0] if votes else None


def _writers(flows: Iterable[Flow]) -> dict[int | None, list[Flow]]:
    """Our port_security entries that write metadata, by the version they write (None: no version)."""
    found: dict[int | None, list[Flow]] = {0: [], 1: [], None: []}
    for flow in flows:
        if flow.table == PORT_SECURITY and is_ours(flow):
            for i in flow.instructions:
                if isinstance(i, WriteMetadata):
                    found[VERSION.decode(i.value) if i.mask & VERSION.mask else None].append(flow)
    return found


def _later(flows: Iterable[Flow], version: int | None) -> frozenset[Flow]:
    """Our destination and policy entries above the miss that `version` reaches (None: that match no version)."""
    chosen = set()
    for flow in flows:
        if flow.table in VERSIONED_TABLES and flow.priority > 0 and is_ours(flow):
            item = flow.field("metadata")
            tagged = item is not None and (item.mask is None or int(item.mask) & VERSION.mask)
            if (version is None and not tagged) or (tagged and version is not None
                                                    and VERSION.decode(int(item.value)) == version):  # type: ignore[union-attr]
                chosen.add(flow)
    return frozenset(chosen)


def target(tables: SwitchTables, installed: frozenset[Flow], remove_foreign: bool = False
           ) -> tuple[SwitchTables, tuple[Flow, ...]]:
    """The versioned tables to install, and the port_security entries to turn into drops first.

    - One version live (the normal case): that version if the change only deletes entries (done in
      place, lowest priority first), else the other one.
    - Both live (an update was interrupted): a version whose destination and policy entries are
      already the wanted ones (then only port_security changes), else the version fewer entries
      write, after those entries are made drops: its entries can then be rewritten unseen.
    - Entries without version tags (an upgrade, or a switch that stopped taking bundles): every
      port_security entry that writes metadata is made a drop first. That one update is not hitless;
      it fails closed."""
    writers = _writers(installed)
    if writers[None] or (_later(installed, None) and (writers[0] or writers[1])):
        quarantine = tuple(replace(f, instructions=()) for v in (0, 1, None) for f in writers[v])
        return versioned(tables, 0), quarantine
    live = [v for v in (0, 1) if writers[v]]
    if not live:
        return versioned(tables, 0), ()
    if len(live) == 1:
        same = versioned(tables, live[0])
        plan = diff_flows(same.flows, installed, remove_foreign)
        if not (plan.add or plan.modify or plan.replace):
            return same, ()
        return versioned(tables, 1 - live[0]), ()
    for version in (0, 1):
        wanted = versioned(tables, version)
        if _later(wanted.flows, version) == _later(installed, version):
            return wanted, ()
    minority = min((0, 1), key=lambda v: len(writers[v]))
    return versioned(tables, minority), tuple(replace(f, instructions=()) for f in writers[minority])


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
    if not folded:  # lowest priority first: in place (a change that only deletes) this keeps each table old or new
        later = [op for op in deletes if op[1].table != PORT_SECURITY]
        for priority in sorted({f.priority for _, f in later}):
            result.append([op for op in later if op[1].priority == priority])
    return [batch for batch in result if batch]
