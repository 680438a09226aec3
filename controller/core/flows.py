"""Flows as our own frozen values; os-ken message classes appear only at the switch edge.

A Flow's identity on a switch is its key (table, priority, match); its data are the
instructions and the cookie. Match fields use OpenFlow 1.3 OXM names (as os-ken does).
Values: MAC and IPv4 addresses as lower-case text, everything else as int.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

CONTROLLER_PORT = 0xFFFFFFFD
IN_PORT = 0xFFFFFFF8
ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
ETH_LLDP = 0x88CC
IP_PROTO_ICMP = 1
IP_PROTO_TCP = 6
IP_PROTO_UDP = 17
TCP_ACK = 0x010
TCP_SYN = 0x002
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
MULTICAST_BIT = "01:00:00:00:00:00"

# The high 16 bits of every cookie we install; the low 32 identify the conduit (or rule
# family) for counters and for telling our flows from anybody else's.
COOKIE_PREFIX = 0x0E5E_0000_0000_0000
COOKIE_PREFIX_MASK = 0xFFFF_0000_0000_0000

Value = Union[int, str]


@dataclass(frozen=True, order=True)
class Field:
    name: str
    value: Value
    mask: Value | None = None


@dataclass(frozen=True, order=True)
class Output:
    port: int
    max_len: int = 0xFFE5  # OFPCML_NO_BUFFER: send the whole packet to the controller


@dataclass(frozen=True, order=True)
class SetField:
    name: str
    value: Value


@dataclass(frozen=True, order=True)
class GroupAction:
    group_id: int


@dataclass(frozen=True, order=True)
class Conntrack:
    """Open vSwitch connection tracking (an extension action, used by stateful conduits only).

    `commit` records the packet's connection in `zone`; `table` sends the packet through the
    tracker and resumes it in that table with its `ct_state` known (a recirculation: used
    only where the action set is still empty, see docs/architecture.md)."""

    zone: int
    commit: bool = False
    table: str | None = None


@dataclass(frozen=True, order=True)
class PushVlan:
    """Push an 802.1Q header (VID 0, PCP 0); a following SetField("vlan_vid", ...) sets the VID."""

    ethertype: int = 0x8100


@dataclass(frozen=True, order=True)
class PopVlan:
    """Remove the outer VLAN header."""


@dataclass(frozen=True, order=True)
class OtherAction:
    """An action read from a switch that otseg never installs (in a foreign flow): kept as text
    so that the flow compares unequal to any of ours; never sent."""

    text: str


Action = Union[Output, SetField, GroupAction, Conntrack, PushVlan, PopVlan, OtherAction]


@dataclass(frozen=True, order=True)
class ApplyActions:
    actions: tuple[Action, ...]


@dataclass(frozen=True, order=True)
class WriteActions:
    actions: tuple[Action, ...]


@dataclass(frozen=True, order=True)
class ClearActions:
    pass


@dataclass(frozen=True, order=True)
class WriteMetadata:
    value: int
    mask: int


@dataclass(frozen=True, order=True)
class GotoTable:
    table: str


@dataclass(frozen=True, order=True)
class MeterInstruction:
    meter_id: int


Instruction = Union[MeterInstruction, ApplyActions, ClearActions, WriteActions, WriteMetadata, GotoTable]
_INSTRUCTION_ORDER = {MeterInstruction: 0, ApplyActions: 1, ClearActions: 2, WriteActions: 3, WriteMetadata: 4,
                      GotoTable: 5}


@dataclass(frozen=True, order=True)
class Flow:
    table: str
    priority: int
    match: tuple[Field, ...]
    instructions: tuple[Instruction, ...]
    cookie: int

    def __hash__(self) -> int:
        # Flows live in sets and dict keys by the hundred thousand: hash the fields once.
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash((self.table, self.priority, self.match, self.instructions, self.cookie))
            object.__setattr__(self, "_hash", cached)
        return cached  # type: ignore[no-any-return]

    @property
    def key(self) -> tuple[str, int, tuple[Field, ...]]:
        cached = self.__dict__.get("_key")
        if cached is None:  # built once: diffs and merges look keys up by the hundred thousand
            cached = (self.table, self.priority, self.match)
            object.__setattr__(self, "_key", cached)
        return cached  # type: ignore[no-any-return]

    def field(self, name: str) -> Field | None:
        for item in self.match:
            if item.name == name:
                return item
        return None


def make_flow(table: str, priority: int, match: dict[str, Value | tuple[Value, Value]],
              instructions: list[Instruction] | tuple[Instruction, ...], cookie: int) -> Flow:
    """Build a Flow with a canonical field and instruction order (so equal flows compare equal)."""
    fields = []
    for name, value in match.items():
        if isinstance(value, tuple):
            fields.append(Field(name, value[0], value[1]))
        else:
            fields.append(Field(name, value))
    ordered = tuple(sorted(instructions, key=lambda i: _INSTRUCTION_ORDER[type(i)]))
    return Flow(table, priority, tuple(sorted(fields)), ordered, cookie)


@dataclass(frozen=True, order=True)
class Meter:
    """A drop-band meter in packets per second, used to rate-limit what reaches the controller."""

    meter_id: int
    rate_pps: int
    burst: int


@dataclass(frozen=True, order=True)
class Bucket:
    """A fast-failover bucket: used while `watch_port` is live."""

    watch_port: int
    actions: tuple[Action, ...]


@dataclass(frozen=True, order=True)
class Group:
    """A fast-failover group: the switch uses the first bucket whose watch port is live."""

    group_id: int
    buckets: tuple[Bucket, ...]


# Group ids we own carry this prefix (groups have no cookie).
GROUP_PREFIX = 0x0E000000
GROUP_PREFIX_MASK = 0xFF000000


@dataclass(frozen=True)
class SwitchTables:
    """Everything one switch must hold: flows and the meters and groups they refer to."""

    dpid: int
    flows: frozenset[Flow]
    meters: frozenset[Meter]
    groups: frozenset[Group] = frozenset()

    def sorted_flows(self, table_order: dict[str, int]) -> list[Flow]:
        return sorted(self.flows, key=lambda f: (table_order[f.table], -f.priority, f.match, f.instructions))
