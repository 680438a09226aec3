"""What the enforcer keeps per switch, and the vocabulary it shares with the shell.

`SwitchChannel` is how a switch is reached (os-ken's `OsKenChannel`, or a fake in the tests);
`SwitchState` what the enforcer knows of one connected switch; `ReconcileReport` what a
reconcile did; the timing constants say how long a restart or a reconnect is waited out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from controller.core.diff import SwitchPlan
from controller.core.flows import Flow, Group, Meter
from controller.core.topology import PortRef


class ApplyError(Exception):
    """A switch refused part of a change; nothing is assumed installed."""


class ConnectionLost(ApplyError):
    """The switch's connection closed under a request: nothing can be said about its tables."""


class SwitchChannel(Protocol):
    dpid: int

    def read_flows(self) -> list[Flow]: ...

    def read_meters(self) -> list[Meter]: ...

    def read_groups(self) -> list[Group]: ...

    def send(self, plan: SwitchPlan) -> None:
        """Send the changes and return once a barrier confirms them; raise ApplyError on refusal."""


@dataclass
class SwitchState:
    channel: SwitchChannel
    installed: frozenset[Flow] | None = None  # None until read from the switch
    meters: dict[int, Meter] = field(default_factory=dict)
    groups: dict[int, Group] = field(default_factory=dict)
    programmed: bool = False
    connected_at: float = 0.0
    expected_trunks: frozenset[int] = frozenset()  # trunk ports its own flows show, read at connect
    last_plan: str = ""
    failures: int = 0
    enforces: int = -1  # the policy serial this switch was last brought to (-1: not yet)
    unreadable: bool = False  # its flows could not be read: the next reconcile rewrites it whole
    # The compiled tables it was last brought to exactly, and what it held then: while both are
    # the same objects, a reconcile has nothing to diff (the incremental compiler returns the
    # same SwitchTables for a switch nothing changed on). Any re-read clears it.
    synced_to: object = None
    synced_installed: object = None


@dataclass(frozen=True)
class ReconcileReport:
    seconds: float
    plans: dict[int, str]  # dpid -> "+a ~m -d"
    flow_mods: int
    errors: dict[int, str]
    deferred_deletes: int = 0  # held back during the start-up grace; applied by a later reconcile
    waiting: tuple[int, ...] = ()  # switches left alone until their trunk links are rediscovered


# After a switch connects, links are not known until LLDP has crossed them (about one
# LLDP period). Reconciling before that would compile paths without those links and
# delete flows that carry live traffic (fatal after a controller restart), so the
# enforcer lets the topology settle first.
SETTLE_SECONDS = 2.0
# A restarted controller sees switches reconnect one by one (Open vSwitch backs off up to
# 8 s between attempts). Until they are all back, paths through a missing switch look
# gone; deleting their flows would cut live traffic. So for a while after start, flows are
# only added or changed, and deletions wait for the topology to be complete.
STARTUP_GRACE_SECONDS = 10.0
# A switch that reconnects with tables tells us which of its ports were trunks (their TRANSIT
# rules). It is left alone until those links are rediscovered, at most this long.
TRUNK_WAIT_SECONDS = 6.0


@dataclass(frozen=True)
class Binding:
    """Where an unpinned asset was learned, and by which MAC (a push that changes the MAC drops it)."""

    where: PortRef
    mac: str
