"""One switch's flow tables as a function on sets of packets (OpenFlow 1.3.5 section 5, as
Open vSwitch runs it), computed with BDDs over `controller.verify.space`.

Role: `SwitchModel(space, tables).run(arrivals, dead_ports)` returns, for a set of packets
entering the switch (any in_port), the set leaving by every port, the set sent to the
controller and the set committed to the connection tracker. It reads the tables only (flows
and groups); nothing here knows how otseg compiles them.

Semantics (the same as the concrete interpreter `controller.verify.walk`):
- per table, the highest-priority matching flow; a table miss drops. Two flows of equal
  priority that overlap with different instructions are reported (`ambiguities`): a real
  switch may choose either;
- instructions in order meter (not modelled: rate limits never let more through), apply-actions,
  clear-actions, write-actions, write-metadata, goto-table; with no goto the action set runs
  (pop, push, set-field, group, output; one action of each kind, the last written wins);
- output to the ingress port is dropped unless it is OFPP_IN_PORT; a fast-failover group uses
  its first bucket whose watch port is live (`dead_ports` are down);
- `ct(table=T)` resumes the packet in T with `ct_state` taken from its connection state (the
  `oracle` field: new, established, established reply, related, related reply, invalid);
  `ct(commit)` records the packet in `commits`. At each switch `metadata`, `ct_state` and the
  action set start empty.

Invariants: exact, never an approximation in the permissive direction. Anything it cannot
model exactly (an unknown field or action, NORMAL, a group of another type, more than
`MAX_RECIRCULATIONS` recirculations) raises `ModelError`: the verifier fails closed.

Cost: flows are grouped by effect (their instructions with metadata and Ethernet-destination
values abstracted into BDD variables), so a table costs one BDD conjunction per effect and
incoming action set, not one per flow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from controller.core.flows import (
    CONTROLLER_PORT, IN_PORT, Action, ApplyActions, ClearActions, Conntrack, Field, Flow, GotoTable, Group,
    GroupAction, MeterInstruction, OtherAction, Output, PopVlan, PushVlan, SetField, SwitchTables, WriteActions,
    WriteMetadata,
)
from controller.core.pipeline import TABLE_IDS, TABLE_NAMES
from controller.verify.space import VLAN_PRESENT, Function, ModelError, Space, to_int
from controller.verify.tracker import ORACLE_CT_STATE

MAX_RECIRCULATIONS = 4
MEMO_SIZE = 256
OFPP_FLOOD, OFPP_ALL, OFPP_NORMAL, OFPP_LOCAL = 0xFFFFFFFB, 0xFFFFFFFC, 0xFFFFFFFA, 0xFFFFFFFE
LOCAL_PORT = 0xFFFE  # where the verifier delivers OFPP_LOCAL (no asset is ever there)
UNLISTED_PORT = 0  # where it delivers OFPP_IN_PORT back out of a port the topology does not list
PENDING = "<pending>"  # the value of an action-set eth_dst held in the pend_eth_dst variables


# OXM field -> (space field, its bits within that field)
FIELD_OF: dict[str, str] = {
    "in_port": "in_port", "eth_dst": "eth_dst", "eth_src": "eth_src", "eth_type": "eth_type",
    "vlan_vid": "vlan", "vlan_pcp": "pcp", "ipv4_src": "nw_src", "ipv4_dst": "nw_dst", "arp_spa": "nw_src",
    "arp_tpa": "nw_dst", "ip_proto": "nw_proto", "arp_op": "nw_proto", "ip_frag": "frag",
    "tcp_src": "tp_src", "udp_src": "tp_src", "icmpv4_type": "tp_src", "tcp_dst": "tp_dst", "udp_dst": "tp_dst",
    "icmpv4_code": "tp_dst", "tcp_flags": "tcp_flags", "arp_sha": "arp_sha", "arp_tha": "arp_tha",
    "ct_state": "ct",
}
META_HI_SHIFT = 32


def field_set(space: Space, item: Field) -> Function:
    """The packets a match field accepts."""
    if item.name == "metadata":
        value = to_int(item.value)
        mask = 0xFFFF_FFFF_FFFF_FFFF if item.mask is None else to_int(item.mask)
        return (space.masked("meta_hi", value >> META_HI_SHIFT, mask >> META_HI_SHIFT)
                & space.masked("meta_lo", value & 0xFFFF_FFFF, mask & 0xFFFF_FFFF))
    name = FIELD_OF.get(item.name)
    if name is None:
        raise ModelError(f"cannot model a match on {item.name}")
    mask = None if item.mask is None else to_int(item.mask)
    return space.masked(name, to_int(item.value), mask)


def match_set(space: Space, flow: Flow) -> Function:
    result = space.true
    for item in flow.match:
        result &= field_set(space, item)
    return result


def set_metadata(space: Space, u: Function, value: int, mask: int) -> Function:
    u = space.forget_bits(u, "meta_hi", mask >> META_HI_SHIFT)
    u = space.forget_bits(u, "meta_lo", mask & 0xFFFF_FFFF)
    return (u & space.masked("meta_hi", value >> META_HI_SHIFT, mask >> META_HI_SHIFT)
            & space.masked("meta_lo", value & 0xFFFF_FFFF, mask & 0xFFFF_FFFF))


def metadata_value(space: Space, value: int, mask: int) -> Function:
    return (space.masked("meta_hi", value >> META_HI_SHIFT, mask >> META_HI_SHIFT)
            & space.masked("meta_lo", value & 0xFFFF_FFFF, mask & 0xFFFF_FFFF))


def metadata_vars(space: Space, mask: int) -> list[str]:
    hi, lo = space.bits("meta_hi"), space.bits("meta_lo")
    chosen = [v for i, v in enumerate(hi.names) if (mask >> (63 - i)) & 1]
    chosen += [v for i, v in enumerate(lo.names) if (mask >> (31 - i)) & 1]
    return chosen


ActionSet = tuple[tuple[str, Action], ...]  # (slot, action), sorted by slot


def _slot(action: Action) -> str:
    return f"set:{action.name}" if isinstance(action, SetField) else type(action).__name__


_RUN_ORDER = {"PopVlan": 0, "PushVlan": 1, "GroupAction": 3, "Output": 4}


def _run_rank(slot: str) -> int:
    return 2 if slot.startswith("set:") else _RUN_ORDER.get(slot, 5)


@dataclass
class Effect:
    """Flows of one table with the same effect: `relation` holds, for each, its effective
    match and (when abstracted) the metadata / pending eth_dst it writes."""

    instructions: tuple[object, ...]  # with abstracted values replaced
    metadata: tuple[int, int] | None  # a concrete (value, mask) to write after matching
    forget: frozenset[str]  # variables the relation overwrites (forgotten in the state first)
    relation: Function
    flows: list[Flow] = field(default_factory=list)


@dataclass
class Ambiguity:
    dpid: int
    table: str
    priority: int
    flows: tuple[Flow, Flow]
    packets: Function


@dataclass
class Outcome:
    outputs: dict[int, Function]
    controller: Function
    commits: Function


class SwitchModel:
    """A switch's tables, compiled to effects once; `run` applies them to sets of packets."""

    def __init__(self, space: Space, tables: SwitchTables) -> None:
        self.space, self.dpid = space, tables.dpid
        self.groups: dict[int, Group] = {g.group_id: g for g in tables.groups}
        self.ambiguities: list[Ambiguity] = []
        by_table: dict[str, list[Flow]] = {}
        for flow in tables.flows:
            by_table.setdefault(flow.table, []).append(flow)
        self.effects: dict[str, list[Effect]] = {name: self._effects(name, flows) for name, flows in by_table.items()}
        # ports OFPP_IN_PORT and FLOOD may send to; the network adds the topology's (`know_ports`)
        self.ports = sorted({int(to_int(f.value)) for flow in tables.flows for f in flow.match if f.name == "in_port"}
                            | {a.port for flow in tables.flows for a in _actions(flow) if isinstance(a, Output)}
                            | {b.watch_port for g in tables.groups for b in g.buckets})
        self.know_ports(())
        # dead ports change what it does only through these (outputs and bucket liveness): a run
        # under a link failure elsewhere is the same run, and is answered from `_memo`
        self.watched = frozenset(self.ports)
        # ports that can be live (the topology's): a bucket watching any other is skipped, as on
        # the switch, where nothing is plugged in there (`know_ports` adds the topology's)
        self.live: frozenset[int] = frozenset()
        self._memo: dict[tuple[object, frozenset[int], object], Outcome] = {}
        # does it ask a connection tracker at all (stateful conduits)?
        self.tracks = any(isinstance(a, Conntrack) and a.table is not None for flow in tables.flows
                          for a in _actions(flow))
        s = space
        self._switch_entry = (s.eq("meta_hi", 0) & s.eq("meta_lo", 0) & s.eq("ct", 0) & s.eq("pend_eth_dst", 0)
                              & s.eq("pend_valid", 0))
        lookup = s.false
        for oracle, state in ORACLE_CT_STATE.items():
            lookup |= s.eq("oracle", oracle) & s.eq("ct", state)
        self._ct_lookup = lookup

    def know_ports(self, ports: Iterable[int]) -> None:
        ports = set(ports)
        self.ports = sorted(p for p in set(self.ports) | ports if p <= 0xFFFF)
        self.watched = frozenset(self.ports)
        self.live = getattr(self, "live", frozenset()) | frozenset(ports)

    # ---- compiling tables -------------------------------------------------------------------

    def _effects(self, table: str, flows: list[Flow]) -> list[Effect]:
        s = self.space
        read_mask = 0
        for flow in flows:
            item = flow.field("metadata")
            if item is not None:
                read_mask |= 0xFFFF_FFFF_FFFF_FFFF if item.mask is None else to_int(item.mask)
        effects: dict[object, Effect] = {}
        higher = s.false
        ordered = sorted(flows, key=lambda f: -f.priority)
        index = 0
        while index < len(ordered):
            priority = ordered[index].priority
            level: list[tuple[Flow, Function]] = []
            while index < len(ordered) and ordered[index].priority == priority:
                level.append((ordered[index], match_set(s, ordered[index])))
                index += 1
            seen = s.false
            for number, (flow, matched) in enumerate(level):
                effective = matched & ~higher
                if effective == s.false:
                    continue
                overlap = effective & seen
                if overlap != s.false:
                    other = next(f for f, m in level[:number] if (m & overlap) != s.false)
                    if other.instructions != flow.instructions:
                        self.ambiguities.append(Ambiguity(self.dpid, table, priority, (other, flow), overlap))
                    effective &= ~seen  # the verifier takes the first; the ambiguity is reported
                seen |= effective
                self._add(effects, flow, effective, read_mask)
            for _, matched in level:
                higher |= matched
        return list(effects.values())

    def _add(self, effects: dict[object, Effect], flow: Flow, effective: Function, read_mask: int) -> None:
        s = self.space
        key_parts: list[object] = []
        relation = effective
        forget: set[str] = set()
        metadata: tuple[int, int] | None = None
        for instruction in flow.instructions:
            if isinstance(instruction, WriteMetadata):
                if instruction.mask & read_mask:
                    metadata = (instruction.value, instruction.mask)
                    key_parts.append(("metadata", instruction.value, instruction.mask))
                else:
                    relation &= metadata_value(s, instruction.value, instruction.mask)
                    forget.update(metadata_vars(s, instruction.mask))
                    key_parts.append(("metadata", instruction.mask))
            elif isinstance(instruction, WriteActions):
                actions: list[Action] = []
                for action in instruction.actions:
                    if isinstance(action, SetField) and action.name == "eth_dst":
                        relation &= s.eq("pend_eth_dst", to_int(action.value)) & s.eq("pend_valid", 1)
                        forget.update(s.bits("pend_eth_dst").names + s.bits("pend_valid").names)
                        action = SetField("eth_dst", PENDING)
                    actions.append(action)
                key_parts.append(WriteActions(tuple(actions)))
            elif isinstance(instruction, MeterInstruction):
                continue
            else:
                key_parts.append(instruction)
        key = (tuple(key_parts), frozenset(forget))
        effect = effects.get(key)
        if effect is None:
            effect = effects[key] = Effect(tuple(key_parts), metadata, frozenset(forget), s.false)
        effect.relation |= relation
        effect.flows.append(flow)

    # ---- running ----------------------------------------------------------------------------

    def run(self, arrivals: Function, dead_ports: frozenset[int] = frozenset(),
            lookup: Function | None = None) -> Outcome:
        """`lookup`: what this switch's tracker answers, a relation of oracle, packet and ct_state
        (default: the oracle's state, as if every connection were known here)."""
        s = self.space
        relevant = frozenset(dead_ports) & self.watched
        memo_key = (arrivals, relevant, lookup if self.tracks else None)  # no lookups here: the tracker is moot
        cached = self._memo.get(memo_key)
        if cached is not None:
            return cached
        outcome = self._run(arrivals, dead_ports, lookup)
        if len(self._memo) >= MEMO_SIZE:
            self._memo.clear()
        self._memo[memo_key] = outcome
        return outcome

    def _run(self, arrivals: Function, dead_ports: frozenset[int], lookup: Function | None) -> Outcome:
        s = self.space
        self._lookup = self._ct_lookup if lookup is None else lookup
        outcome = Outcome({}, s.false, s.false)
        start = s.forget(arrivals, ["meta_hi", "meta_lo", "ct", "pend_eth_dst", "pend_valid"]) & self._switch_entry
        # pending states: (table id, recirculations, action set) -> packets
        pending: dict[tuple[int, int, ActionSet], Function] = {(0, 0, ()): start}
        while pending:
            key = min(pending, key=lambda k: (k[1], k[0]))
            packets = pending.pop(key)
            table_id, recirculations, action_set = key
            name = TABLE_NAMES.get(table_id)
            effects = self.effects.get(name, []) if name is not None else []
            forgotten: dict[frozenset[str], Function] = {frozenset(): packets}
            for effect in effects:
                state = forgotten.get(effect.forget)
                if state is None:
                    state = forgotten[effect.forget] = s.bdd.exist(set(effect.forget), packets)
                hit = state & effect.relation
                if hit == s.false:
                    continue
                self._execute(effect, hit, table_id, recirculations, action_set, pending, outcome, dead_ports)
        return outcome

    def _execute(self, effect: Effect, hit: Function, table_id: int, recirculations: int, action_set: ActionSet,
                 pending: dict[tuple[int, int, ActionSet], Function], outcome: Outcome,
                 dead_ports: frozenset[int]) -> None:
        s = self.space
        current = dict(action_set)
        goto: int | None = None
        resume: int | None = None
        for instruction in effect.instructions:
            if isinstance(instruction, ApplyActions):
                for action in instruction.actions:
                    if isinstance(action, Conntrack):
                        if action.commit:
                            outcome.commits |= _leaving(s, hit)
                        if action.table is not None:
                            resume = TABLE_IDS.get(action.table)
                            if resume is None:
                                raise ModelError(f"ct resumes in unknown table {action.table}")
                    else:
                        hit = self._act(action, hit, outcome, dead_ports)
            elif isinstance(instruction, ClearActions):
                current = {}
                if "pend_valid_0" not in effect.forget:  # else the relation holds the value written after the clear
                    hit = (s.forget(hit, ["pend_eth_dst", "pend_valid"]) & s.eq("pend_valid", 0)
                           & s.eq("pend_eth_dst", 0))
            elif isinstance(instruction, WriteActions):
                for action in instruction.actions:
                    current[_slot(action)] = action
            elif isinstance(instruction, tuple) and instruction and instruction[0] == "metadata":
                if len(instruction) == 3:  # concrete: written after matching
                    hit = set_metadata(s, hit, int(instruction[1]), int(instruction[2]))  # type: ignore[arg-type]
            elif isinstance(instruction, GotoTable):
                goto = TABLE_IDS.get(instruction.table)
                if goto is None:
                    raise ModelError(f"goto to unknown table {instruction.table}")
            else:
                raise ModelError(f"cannot model instruction {instruction!r}")
        if resume is not None:
            if current or goto is not None:
                raise ModelError("a recirculation with a pending action set or a goto")
            if recirculations + 1 > MAX_RECIRCULATIONS:
                raise ModelError(f"more than {MAX_RECIRCULATIONS} recirculations")
            tracked = s.forget(hit, ["ct"]) & self._lookup
            _add_pending(pending, (resume, recirculations + 1, ()), tracked)
            return
        if goto is not None:
            if goto <= table_id:
                raise ModelError(f"goto from table {table_id} back to {goto}")
            _add_pending(pending, (goto, recirculations, tuple(sorted(current.items()))), hit)
            return
        if "GroupAction" in current:
            current.pop("Output", None)  # OpenFlow 1.3 5.10: with a group in the action set, output is ignored
        for slot in sorted(current, key=_run_rank):
            hit = self._act(current[slot], hit, outcome, dead_ports)

    def _act(self, action: Action, packets: Function, outcome: Outcome, dead_ports: frozenset[int]) -> Function:
        """Apply one action; returns the packets as modified (outputs are recorded in outcome)."""
        s = self.space
        if isinstance(action, Output):
            self._output(action.port, packets, outcome, dead_ports)
            return packets
        if isinstance(action, SetField):
            if action.name == "eth_dst" and action.value == PENDING:
                applied = s.move(packets & s.eq("pend_valid", 1), "pend_eth_dst", "eth_dst")
                return s.forget(applied, ["pend_valid"]) & s.eq("pend_valid", 0) & s.eq("pend_eth_dst", 0)
            if action.name == "vlan_vid":
                tagged = packets & s.masked("vlan", VLAN_PRESENT, VLAN_PRESENT)
                untagged = packets & s.eq("vlan", 0)
                return s.assign(tagged, "vlan", to_int(action.value) & 0x0FFF, 0x0FFF) | untagged
            if action.name == "vlan_pcp":
                tagged = packets & s.masked("vlan", VLAN_PRESENT, VLAN_PRESENT)
                return s.assign(tagged, "pcp", to_int(action.value) & 7) | (packets & s.eq("vlan", 0))
            if action.name == "eth_dst":
                return s.assign(packets, "eth_dst", to_int(action.value))
            # Only the destination MAC and the tag keep what the packet was sent with (o_eth_dst,
            # o_vlan): a rewrite of any other field could turn a denied packet into an allowed-looking
            # one, which the comparison at the egress could not tell. Refuse rather than guess.
            raise ModelError(f"set_field {action.name}: rewrites of this field are not verified (only eth_dst "
                             "and the VLAN tag)")
        if isinstance(action, PushVlan):
            untagged = packets & s.eq("vlan", 0)
            tagged = packets & ~s.eq("vlan", 0)
            pushed = s.assign(s.assign(untagged, "vlan", VLAN_PRESENT), "pcp", 0)
            # a second tag: the next switch sees the old tag's TPID as ethertype and no L3 header
            stacked = s.forget(tagged, ["nw_src", "nw_dst", "nw_proto", "frag", "tp_src", "tp_dst", "tcp_flags",
                                        "arp_sha", "arp_tha", "eth_type"])
            stacked = stacked & s.eq("eth_type", action.ethertype if action.ethertype != 0x88A8 else 0x8100)
            for name in ("nw_src", "nw_dst", "nw_proto", "frag", "tp_src", "tp_dst", "tcp_flags", "arp_sha", "arp_tha"):
                stacked &= s.eq(name, 0)
            stacked = s.assign(s.assign(stacked, "vlan", VLAN_PRESENT), "pcp", 0)
            return pushed | stacked
        if isinstance(action, PopVlan):
            tagged = packets & ~s.eq("vlan", 0)
            single = tagged & ~s.one_of("eth_type", (0x8100, 0x88A8))
            inner_tag = tagged & s.one_of("eth_type", (0x8100, 0x88A8))
            popped = s.assign(s.assign(single, "vlan", 0), "pcp", 0)
            # an inner tag becomes the outer one: what it carried is unknown (any key)
            exposed = s.forget(inner_tag, ["vlan", "pcp", "eth_type", "nw_src", "nw_dst", "nw_proto", "frag", "tp_src",
                                           "tp_dst", "tcp_flags", "arp_sha", "arp_tha"])
            return popped | exposed | (packets & s.eq("vlan", 0))
        if isinstance(action, GroupAction):
            group = self.groups.get(action.group_id)
            if group is None:
                return packets  # a group the switch does not hold: OpenFlow refuses such a flow
            for bucket in group.buckets:
                if bucket.watch_port not in dead_ports and bucket.watch_port in self.live:
                    copy = packets
                    for bucket_action in bucket.actions:
                        copy = self._act(bucket_action, copy, outcome, dead_ports)
                    break
            return packets
        if isinstance(action, Conntrack):
            raise ModelError("connection tracking in an action set")
        if isinstance(action, OtherAction):
            raise ModelError(f"cannot model action {action.text!r}")
        raise ModelError(f"cannot model action {action!r}")

    def _output(self, port: int, packets: Function, outcome: Outcome, dead_ports: frozenset[int]) -> None:
        s = self.space
        if port == CONTROLLER_PORT:
            outcome.controller |= _leaving(s, packets)
            return
        if port == OFPP_NORMAL:
            raise ModelError("output to NORMAL (the switch's own L2 learning) cannot be modelled")
        if port == OFPP_LOCAL:
            _emit(outcome, LOCAL_PORT, _leaving(s, packets))
            return
        if port in (OFPP_FLOOD, OFPP_ALL):
            for target in self.ports:
                if target not in dead_ports:
                    _emit(outcome, target, _leaving(s, packets & ~s.eq("in_port", target)))
            _emit(outcome, UNLISTED_PORT, _leaving(s, packets))  # and every port nobody listed
            _emit(outcome, LOCAL_PORT, _leaving(s, packets))
            return
        if port == IN_PORT:
            rest = packets
            for target in self.ports:
                here = rest & s.eq("in_port", target)
                if here != s.false:
                    if target not in dead_ports:
                        _emit(outcome, target, _leaving(s, here))
                    rest &= ~s.eq("in_port", target)
            if rest != s.false:
                # back out of ports nobody listed (a device's own port): one pseudo port for them all
                _emit(outcome, UNLISTED_PORT, _leaving(s, rest))
            return
        if port > 0xFFFF:
            raise ModelError(f"output to port {port:#x}")
        if port in dead_ports:
            return
        _emit(outcome, port, _leaving(s, packets & ~s.eq("in_port", port)))


def _actions(flow: Flow) -> Iterable[Action]:
    for instruction in flow.instructions:
        if isinstance(instruction, (ApplyActions, WriteActions)):
            yield from instruction.actions


def _leaving(space: Space, packets: Function) -> Function:
    """The packets as they leave the switch: what is local to it is forgotten."""
    return space.forget(packets, ["meta_hi", "meta_lo", "ct", "pend_eth_dst", "pend_valid"])


def _emit(outcome: Outcome, port: int, packets: Function) -> None:
    if port in outcome.outputs:
        outcome.outputs[port] |= packets
    else:
        outcome.outputs[port] = packets


def _add_pending(pending: dict[tuple[int, int, ActionSet], Function], key: tuple[int, int, ActionSet],
                 packets: Function) -> None:
    if key in pending:
        pending[key] |= packets
    else:
        pending[key] = packets
