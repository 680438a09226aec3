"""Lower one switch's full-pipeline tables to what its profile can do: pure, deterministic.

Passes, in this order (each a function of SwitchTables):
- `without_meters`: no meter instructions and no meters. Samples to the controller become
  plain drops (the per-port samples vanish: the table miss drops too); denied traffic is
  still dropped and counted by its entry; trusted LLDP on trunk ports still reaches the
  controller, unmetered (links must be verified); untrusted LLDP is dropped.
- `without_tcp_flags`: the tcp_flags match is removed (a loss `profiles.losses` names, and
  `otseg validate` lists the conduits it affects). Two entries that become one key with
  different effects would be a compiler bug: LoweringError, never a silent choice.
- `folded`: the four tables and their metadata as one table (see `fold`).
Fast-failover groups are not lowered here: the compiler leaves out the protections of a
switch without them (`Context.protections`), so that its backup paths are never computed.

Invariant (tested by walking every example's allow/deny matrix and attack probes through
lowered tables, and by the independent verifier): a lowered switch forwards exactly what
the full one does, except for the losses its profile names.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from typing import Iterable

from controller.core.flows import (
    CONTROLLER_PORT, Action, ApplyActions, ClearActions, Conntrack, Field, Flow, GotoTable, Instruction,
    MeterInstruction, Output, PopVlan, PushVlan, SetField, SwitchTables, Value, WriteActions, WriteMetadata,
    make_flow,
)
from controller.core.pipeline import FRAG_LATER, PORT_SECURITY, TABLE_IDS, TABLES
from controller.core.profiles import FULL, Profile

MAX_PRIORITY = 0xFFFF


class LoweringError(ValueError):
    """The tables cannot be lowered to the profile exactly (a compiler bug, never user input)."""


def lower(tables: SwitchTables, profile: Profile) -> SwitchTables:
    if profile == FULL or (profile.meters and profile.tcp_flags and not profile.single_table):
        return tables
    if not profile.meters:
        tables = without_meters(tables)
    if not profile.tcp_flags:
        tables = without_tcp_flags(tables)
    if profile.single_table:
        tables = folded(tables)
    return tables


def lower_all(tables: dict[int, SwitchTables], profiles: dict[int, Profile],
              memo: dict[int, tuple[SwitchTables, Profile, SwitchTables]] | None = None) -> dict[int, SwitchTables]:
    """Every switch lowered to its profile; `memo` (kept by the caller) returns the same object
    for a switch whose tables and profile did not change, so that unchanged switches stay unchanged."""
    result: dict[int, SwitchTables] = {}
    for dpid, full in tables.items():
        profile = profiles.get(dpid, FULL)
        if profile == FULL:
            result[dpid] = full
            continue
        cached = memo.get(dpid) if memo is not None else None
        if cached is not None and cached[0] is full and cached[1] == profile:
            result[dpid] = cached[2]
            continue
        result[dpid] = lower(full, profile)
        if memo is not None:
            memo[dpid] = (full, profile, result[dpid])
    if memo is not None:
        for dpid in set(memo) - set(tables):
            del memo[dpid]
    return result


# -- meters ---------------------------------------------------------------------------------
def without_meters(tables: SwitchTables) -> SwitchTables:
    flows: set[Flow] = set()
    for flow in tables.flows:
        if not any(isinstance(i, MeterInstruction) for i in flow.instructions):
            flows.add(flow)
            continue
        lldp_trunk = flow.field("eth_type") is not None and flow.field("in_port") is not None and any(
            isinstance(i, ApplyActions) and i.actions == (Output(CONTROLLER_PORT),) for i in flow.instructions)
        if lldp_trunk:
            kept = tuple(i for i in flow.instructions if not isinstance(i, MeterInstruction))
        else:
            # Whatever it sent to the controller is dropped instead; the entry stays where it
            # shadows entries below it (its counters keep counting).
            kept = tuple(i for i in flow.instructions if not isinstance(i, (MeterInstruction, ApplyActions)))
            if flow.table == PORT_SECURITY and flow.field("in_port") is not None and len(flow.match) == 1:
                continue  # a per-port sample: the table miss drops the same frames
            if flow.table != PORT_SECURITY and not any(isinstance(i, ClearActions) for i in kept):
                kept = kept + (ClearActions(),)
        flows.add(replace(flow, instructions=kept))
    return replace(tables, flows=frozenset(flows), meters=frozenset())


# -- tcp_flags ------------------------------------------------------------------------------
def without_tcp_flags(tables: SwitchTables) -> SwitchTables:
    stripped = (replace(flow, match=tuple(f for f in flow.match if f.name != "tcp_flags"))
                if flow.field("tcp_flags") is not None else flow for flow in sorted(tables.flows))
    return replace(tables, flows=_one_per_key(stripped, "without tcp_flags, two entries become one"))


def _one_per_key(flows: Iterable[Flow], what: str) -> frozenset[Flow]:
    """One entry per key (a switch holds one), the lowest cookie, as the compiler's merge does; two
    entries of one key with different effects would be a compiler bug."""
    by_key: dict[tuple[object, ...], Flow] = {}
    for flow in flows:
        other = by_key.get(flow.key)
        if other is not None and other.instructions != flow.instructions:
            raise LoweringError(f"{what} with different effects: {other} / {flow}")
        if other is None or flow.cookie < other.cookie:
            by_key[flow.key] = flow
    return frozenset(by_key.values())


# -- folding into one table -----------------------------------------------------------------
_FIELD_BITS = {"eth_src": 48, "eth_dst": 48, "arp_sha": 48, "ipv4_src": 32, "ipv4_dst": 32, "arp_spa": 32,
               "arp_tpa": 32}


def _to_int(name: str, value: Value) -> int:
    if isinstance(value, int):
        return value
    if _FIELD_BITS.get(name) == 48:
        return int(value.replace(":", ""), 16)
    return int(IPv4Address(value))


def _from_int(name: str, value: int, like: Value) -> Value:
    if isinstance(like, int):
        return value
    if _FIELD_BITS.get(name) == 48:
        text = f"{value:012x}"
        return ":".join(text[i:i + 2] for i in range(0, 12, 2))
    return str(IPv4Address(value))


def _full_mask(name: str) -> int:
    return (1 << _FIELD_BITS.get(name, 64)) - 1


MatchMap = dict[str, tuple[Value, Value | None]]


def _intersect(acc: MatchMap, fields: Iterable[Field]) -> MatchMap | None:
    """The match of both, or None when no packet matches both."""
    result = dict(acc)
    for item in fields:
        if item.name == "metadata":
            continue
        have = result.get(item.name)
        if have is None:
            result[item.name] = (item.value, item.mask)
            continue
        if have == (item.value, item.mask):
            continue
        full = _full_mask(item.name)
        v1, m1 = _to_int(item.name, have[0]), full if have[1] is None else _to_int(item.name, have[1])
        v2, m2 = _to_int(item.name, item.value), full if item.mask is None else _to_int(item.name, item.mask)
        if (v1 ^ v2) & m1 & m2:
            return None
        value, mask = (v1 & m1) | (v2 & m2), m1 | m2
        result[item.name] = (_from_int(item.name, value, item.value),
                             None if mask == full else _from_int(item.name, mask, item.value))
    return result


L4_FIELDS = ("tcp_src", "tcp_dst", "udp_src", "udp_dst", "tcp_flags", "icmpv4_type", "icmpv4_code")


def _later_fragment_ports(match: MatchMap | None) -> MatchMap | None:
    """A later fragment carries no L4 header: Open vSwitch reads its ports, flags, ICMP type and
    code as 0, and refuses a flow that matches them together with nw_frag=later (BAD_PREREQ).
    So on a path that only later fragments take, an L4 condition that 0 meets is dropped, and
    one that 0 fails makes the path impossible."""
    if match is None or "ip_frag" not in match:
        return match
    value, mask = match["ip_frag"]
    if not (int(value) & int(mask if mask is not None else 0xFF) & FRAG_LATER):
        return match
    result = dict(match)
    for name in L4_FIELDS:
        if name in result:
            field_value, field_mask = result.pop(name)
            bits = _full_mask(name) if field_mask is None else _to_int(name, field_mask)
            if _to_int(name, field_value) & bits:
                return None
    return result


def _metadata_ok(metadata: int, flow: Flow) -> bool:
    item = flow.field("metadata")
    if item is None:
        return True
    mask = 0xFFFF_FFFF_FFFF_FFFF if item.mask is None else int(item.mask)
    return metadata & mask == int(item.value) & mask


@dataclass
class _Path:
    match: MatchMap
    metadata: int
    applied: tuple[Action, ...]
    action_set: dict[object, Action]
    meter: int | None
    ranks: tuple[int, ...]
    modified: frozenset[str]
    cookie: int


def _action_kind(action: Action) -> object:
    if isinstance(action, SetField):
        return ("set_field", action.name)
    return type(action)


_SET_ORDER = {PopVlan: 0, PushVlan: 1, SetField: 2, Conntrack: 3}


def _ordered_set(action_set: dict[object, Action]) -> tuple[Action, ...]:
    """The action set in the order a switch executes it (OpenFlow 1.3.5 section 5.10); ours
    writes at most a push, set-fields, a group or an output, in that order."""
    return tuple(sorted(action_set.values(), key=lambda a: (_SET_ORDER.get(type(a), 9), str(a))))


def folded(tables: SwitchTables) -> SwitchTables:
    """The pipeline as one table: every path a packet can take through the four tables becomes one
    entry of table 0 that matches what all its entries match (metadata resolved along the way, so
    the entry needs none) and does what they do together.

    Priorities are the path's priorities in lexicographic order (table 0's first), encoded by
    their rank in each table: the highest entry a packet matches is then exactly the path the
    pipeline takes for it. Within the band of one table-0 entry, a path whose effect equals a
    lower path's that covers it is left out when nothing kept in between overlaps it, and paths
    below the first one that covers the whole band are dead: so drops are not multiplied."""
    by_table: dict[str, list[Flow]] = {t.name: [] for t in TABLES}
    for flow in tables.flows:
        by_table[flow.table].append(flow)
    ranks: dict[str, dict[int, int]] = {}
    for name, flows in by_table.items():
        flows.sort(key=lambda f: (-f.priority, f.match, f.instructions, f.cookie))
        ranks[name] = {p: i for i, p in enumerate(sorted({f.priority for f in flows} | {0}))}
    sizes = [len(ranks[t.name]) for t in TABLES]
    weights = [1] * len(sizes)
    for i in range(len(sizes) - 2, -1, -1):
        weights[i] = weights[i + 1] * sizes[i + 1]
    if weights[0] * sizes[0] > MAX_PRIORITY + 1:
        raise LoweringError(f"{weights[0] * sizes[0]} priority levels do not fit one table")
    # Two conduits may yield the same path: one entry per key.
    paths = (flow for first in by_table[PORT_SECURITY]
             for flow in _pruned(list(_paths(first, by_table, ranks)), first, weights))
    return replace(tables, flows=_one_per_key(paths, "two paths fold into one entry"))


def _paths(first: Flow, by_table: dict[str, list[Flow]], ranks: dict[str, dict[int, int]]) -> Iterable[_Path]:
    start = _Path({}, 0, (), {}, None, (), frozenset(), first.cookie)
    stack = [(start, first)]
    while stack:
        path, flow = stack.pop()
        step = _step(path, flow, ranks)
        if step is None:
            continue
        path, goto = step
        if goto is None:
            yield path
            continue
        candidates = [f for f in by_table[goto] if _metadata_ok(path.metadata, f)]
        for candidate in _relevant(candidates, path, by_table, goto):
            stack.append((path, candidate))


def _relevant(candidates: list[Flow], path: _Path, by_table: dict[str, list[Flow]], table: str) -> list[Flow]:
    """The entries of `table` worth following for this path, highest first.

    Below the first entry that matches every packet still here, nothing is reached. And an
    entry that only writes metadata no entry after it can read (for this path's metadata) and
    then goes where the entries below it go behaves as they do: from the bottom up, such
    entries are left out (the client-port marks, for a source and destination that no reply
    rule joins)."""
    chosen: list[Flow] = []
    for flow in candidates:
        chosen.append(flow)
        if all(f.name == "metadata" for f in flow.match):
            break
    if len(chosen) < 2:
        return chosen
    written = 0
    for flow in chosen:
        for i in flow.instructions:
            if isinstance(i, WriteMetadata):
                written |= i.mask
    read = 0
    for later in TABLES[TABLE_IDS[table] + 1:]:
        for flow in by_table[later.name]:
            item = flow.field("metadata")
            if item is not None:
                mask = 0xFFFF_FFFF_FFFF_FFFF if item.mask is None else int(item.mask)
                if (path.metadata ^ int(item.value)) & mask & ~written == 0:
                    read |= mask
    floor = chosen[-1]
    plain = tuple(i for i in floor.instructions if not (isinstance(i, WriteMetadata) and i.mask & read == 0))
    kept: list[Flow] = []
    skipping = True
    for flow in reversed(chosen[:-1]):
        same = tuple(i for i in flow.instructions if not (isinstance(i, WriteMetadata) and i.mask & read == 0))
        if skipping and same == plain:
            continue
        skipping = False
        kept.append(flow)
    return list(reversed(kept)) + [floor]


def _step(path: _Path, flow: Flow, ranks: dict[str, dict[int, int]]) -> tuple[_Path, str | None] | None:
    for item in flow.match:
        if item.name in path.modified:
            raise LoweringError(f"{flow} matches {item.name} after an earlier table changed it")
    match = _later_fragment_ports(_intersect(path.match, flow.match))
    if match is None:
        return None
    applied, action_set, meter, metadata = path.applied, dict(path.action_set), path.meter, path.metadata
    modified = set(path.modified)
    goto: str | None = None
    for instruction in flow.instructions:
        if isinstance(instruction, MeterInstruction):
            if meter is not None and meter != instruction.meter_id:
                raise LoweringError(f"two meters on one path: {flow}")
            meter = instruction.meter_id
        elif isinstance(instruction, ApplyActions):
            applied += instruction.actions
            modified |= {a.name if isinstance(a, SetField) else "vlan_vid" for a in instruction.actions
                         if isinstance(a, (SetField, PopVlan, PushVlan))}
        elif isinstance(instruction, ClearActions):
            action_set = {}
        elif isinstance(instruction, WriteActions):
            for action in instruction.actions:
                action_set[_action_kind(action)] = action
        elif isinstance(instruction, WriteMetadata):
            metadata = (metadata & ~instruction.mask) | (instruction.value & instruction.mask)
        elif isinstance(instruction, GotoTable):
            goto = instruction.table
    return _Path(match, metadata, applied, action_set, meter, path.ranks + (ranks[flow.table][flow.priority],),
                 frozenset(modified), flow.cookie), goto


def _effect(path: _Path) -> tuple[Instruction, ...]:
    """One apply-actions: the applied actions in order, then the action set as the switch would run
    it at the end of the pipeline. In a single table nothing comes between, and switches that do
    not execute write-actions (Zodiac FX) still forward."""
    instructions: list[Instruction] = []
    if path.meter is not None:
        instructions.append(MeterInstruction(path.meter))
    actions = path.applied + _ordered_set(path.action_set)
    if actions:
        instructions.append(ApplyActions(actions))
    return tuple(instructions)


def _overlap(a: MatchMap, b: MatchMap) -> bool:
    fields = [Field(name, value, mask) for name, (value, mask) in b.items()]
    return _intersect(a, fields) is not None


def _pruned(band: list[_Path], first: Flow, weights: list[int]) -> list[Flow]:
    band.sort(key=lambda p: p.ranks + (0,) * (len(weights) - len(p.ranks)), reverse=True)
    covering = len(band)
    whole = _intersect({}, first.match) or {}
    for index, path in enumerate(band):
        if path.match == whole:
            covering = index
            break
    if covering == len(band):
        raise LoweringError(f"no path covers every packet of {first}")
    floor = band[covering]
    floor_effect = _effect(floor)
    kept: list[_Path] = [floor]
    for path in reversed(band[:covering]):  # upward from the floor
        if _effect(path) == floor_effect and not any(_overlap(path.match, k.match) for k in kept[1:]):
            continue
        kept.append(path)
    flows = []
    for path in kept:
        ranks = path.ranks + (0,) * (len(weights) - len(path.ranks))
        priority = sum(r * w for r, w in zip(ranks, weights))
        match = {name: (value if mask is None else (value, mask)) for name, (value, mask) in path.match.items()}
        cookie = first.cookie if path is floor else path.cookie
        flows.append(make_flow(PORT_SECURITY, priority, match, list(_effect(path)), cookie))  # type: ignore[arg-type]
    return flows
