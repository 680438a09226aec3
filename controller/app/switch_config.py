"""Open vSwitch bridge settings that otseg's enforcement depends on: read them from OVSDB, judge them.

otseg's flows are the only path through a switch only if the switch itself adds none above them
and never forwards without them. Three Open vSwitch settings decide that:

- in-band control (on by default once a controller is set): Open vSwitch installs hidden flows at
  priorities 180000-180008 with action NORMAL for TCP to and from every in-band controller and
  manager address and ARP for them. They sit above every otseg flow, so a frame from any port with
  IPv4 source = the controller's address and TCP source port 6653 is delivered everywhere.
  Off when `other_config:disable-in-band` is true (compared case-insensitively, as
  ovs-vswitchd's smap_get_bool does). Without it, each active `tcp:`/`ssl:` controller not
  `out-of-band` turns it on, and so does each OVSDB manager (`ovs-vsctl set-manager tcp:...`) not
  `out-of-band`: managers add flows for their own address (TCP 6640) on every such bridge, even
  one whose controllers are all out-of-band or that has none. Listener (`ptcp:`) and `unix:`
  controller targets add none. (All seen on Open vSwitch 3.1 with `ovs-appctl bridge/dump-flows`.)
- fail_mode: unset or `standalone` makes the bridge a learning switch whenever no controller is
  connected (about 15 s after losing it: a hidden flow at priority 0xf0f0f0 with action NORMAL,
  above everything); `secure` keeps otseg's flows and nothing else.
- protocols: otseg speaks OpenFlow 1.3 only; without it the switch never connects.

This module holds the model and the decisions:

- `check_bridge` / `check_switches`: pure decisions on a `BridgeConfig` (no I/O, same input, same
  findings). A finding is an `error` when a frame could bypass otseg's flows or otseg cannot
  program the bridge, a `warning` when the setup is fragile or wider than needed. Every finding
  names its bridge and dpid and carries the exact `ovs-vsctl` command that fixes it.
- the OVSDB reader that builds `BridgeConfig` values lives in `controller/app/ovsdb.py`.

Only the standard library is imported here, so the check runs without os-ken.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Literal, Sequence

Severity = Literal["error", "warning"]
Runner = Callable[[list[str]], str]

OVS_VSCTL_TIMEOUT = 5
"""Seconds ovs-vsctl may wait for the database (`--timeout`); the subprocess gets a few more."""

OPENFLOW_VERSION = "OpenFlow13"
OVS_DEFAULT_PROTOCOLS = ("OpenFlow10", "OpenFlow11", "OpenFlow12", "OpenFlow13", "OpenFlow14", "OpenFlow15")
"""What Open vSwitch enables when a bridge's `protocols` column is empty."""

IN_BAND_PRIORITIES = "180000-180008"
FAIL_OPEN_PRIORITY = 15790320
"""The hidden NORMAL flow a standalone bridge adds while no controller is connected (0xf0f0f0)."""

BRIDGE_COLUMNS = ("_uuid", "name", "datapath_id", "fail_mode", "protocols", "other_config", "controller")
CONTROLLER_COLUMNS = ("_uuid", "target", "connection_mode", "is_connected", "role")
OPEN_VSWITCH_COLUMNS = ("manager_options", "other_config")
MANAGER_COLUMNS = ("_uuid", "target", "connection_mode")


class SwitchConfigError(Exception):
    """OVSDB could not be read; the message says what failed and how to fix it."""


@dataclass(frozen=True)
class ControllerConfig:
    """One row of the Controller table as a bridge references it."""

    target: str
    connection_mode: str | None
    is_connected: bool
    role: str | None

    @property
    def out_of_band(self) -> bool:
        return self.connection_mode == "out-of-band"

    @property
    def in_band(self) -> bool:
        """Whether ovs-vswitchd adds in-band flows for it unless the bridge disables in-band: an active
        tcp:/ssl: target not out-of-band (listeners and unix: sockets get none, seen on Open vSwitch 3.1;
        IPv6 targets are counted although 3.1 ignores them)."""
        return not self.out_of_band and self.target.startswith(("tcp:", "ssl:"))

    @property
    def passive(self) -> bool:
        """A listener (`ptcp:`, `pssl:`, `punix:`): the switch accepts controllers instead of dialling one."""
        return self.target.startswith(("ptcp:", "pssl:", "punix:"))


@dataclass(frozen=True)
class ManagerConfig:
    """One OVSDB manager (`ovs-vsctl set-manager`): a row of the Manager table in `manager_options`."""

    target: str
    connection_mode: str | None

    @property
    def in_band(self) -> bool:
        """Whether ovs-vswitchd adds in-band flows for it: an active tcp:/ssl: target not out-of-band."""
        return self.connection_mode != "out-of-band" and self.target.startswith(("tcp:", "ssl:"))


@dataclass(frozen=True)
class BridgeConfig:
    """What OVSDB says about one bridge. `other_config` is sorted (key, value) pairs.

    `managers` are the database's managers; they are global but their in-band flows land on every
    bridge that does not set `disable-in-band`, so every bridge carries them.
    """

    name: str
    dpid: int | None
    fail_mode: str | None
    protocols: tuple[str, ...]
    other_config: tuple[tuple[str, str], ...]
    controllers: tuple[ControllerConfig, ...]
    managers: tuple[ManagerConfig, ...] = ()
    vlan_limit: str | None = None  # the Open_vSwitch table's other_config:vlan-limit (global; unset = 1)

    def other(self, key: str) -> str | None:
        return dict(self.other_config).get(key)

    @property
    def in_band_disabled(self) -> bool:
        """`other_config:disable-in-band` is true, as ovs-vswitchd reads it (case-insensitive "true")."""
        return (self.other("disable-in-band") or "").lower() == "true"

    @property
    def effective_protocols(self) -> tuple[str, ...]:
        return self.protocols or OVS_DEFAULT_PROTOCOLS

    @property
    def label(self) -> str:
        return bridge_label(self.name, self.dpid)


@dataclass(frozen=True)
class Finding:
    """One problem with one bridge. `message` names the bridge and dpid; `fix` is a shell command."""

    bridge: str
    dpid: int | None
    severity: Severity
    code: str
    message: str
    fix: str

    @property
    def label(self) -> str:
        return bridge_label(self.bridge, self.dpid)

    @property
    def detail(self) -> str:
        """The message without its leading "bridge NAME (DPID): "."""
        return self.message.removeprefix(f"{self.label}: ")

    def line(self, db: str | None = None) -> str:
        """`bridge s1 (0x1): error in-band-control: ... fix: ovs-vsctl ...` (fix aimed at `db` when given)."""
        return f"{self.label}: {self.severity} {self.code}: {self.detail} fix: {fix_for_db(self.fix, db)}"

    def to_json(self, db: str | None = None) -> dict[str, Any]:
        return asdict(self) | {"dpid_hex": dpid_hex(self.dpid), "fix": fix_for_db(self.fix, db)}


def dpid_hex(dpid: int | None) -> str | None:
    return None if dpid is None else f"{dpid:#x}"


def bridge_label(name: str, dpid: int | None) -> str:
    """`bridge s1 (0x1)`, or `bridge s1 (no datapath id yet)` before ovs-vswitchd has assigned one."""
    return f"bridge {name} ({dpid_hex(dpid) or 'no datapath id yet'})"


def fix_for_db(fix: str, db: str | None) -> str:
    """The fix with `--db=DB` after every `ovs-vsctl`, so it changes the database that was checked."""
    if not db:
        return fix
    return re.sub(r"\bovs-vsctl ", lambda _: f"ovs-vsctl --db={shlex.quote(db)} ", fix)


# --- pure checks -------------------------------------------------------------------------------


def check_bridge(bridge: BridgeConfig) -> list[Finding]:
    """Every finding for one bridge, errors first; empty when it is safe for otseg."""
    findings = [*_in_band(bridge), *_fail_mode(bridge), *_protocols(bridge), *_controllers(bridge),
                *_vlan_limit(bridge)]
    return sorted(findings, key=lambda f: f.severity != "error")


def check_switches(bridges: Iterable[BridgeConfig]) -> dict[int, list[Finding]]:
    """Findings by dpid, an empty list for a safe bridge. Bridges without a datapath id yet are left out
    (no switch can connect with them); two bridges with one dpid share the entry."""
    by_dpid: dict[int, list[Finding]] = {}
    for bridge in bridges:
        if bridge.dpid is not None:
            by_dpid.setdefault(bridge.dpid, []).extend(check_bridge(bridge))
    return by_dpid


def _vlan_limit(bridge: BridgeConfig) -> list[Finding]:
    """otseg's tag checks assume one parsed VLAN header (the default): with more, a frame behind an
    asset's own tag matches its IPv4 rules by the inner ethertype and keeps its inner tag."""
    if bridge.vlan_limit in (None, "1"):
        return []
    return [_finding(bridge, "error", "vlan-limit",
                     f"other_config:vlan-limit is {bridge.vlan_limit!r}: Open vSwitch parses more than one VLAN "
                     "header, so a double-tagged frame from a VLAN asset could keep its inner tag",
                     "ovs-vsctl remove open_vswitch . other_config vlan-limit")]


def _finding(bridge: BridgeConfig, severity: Severity, code: str, detail: str, fix: str) -> Finding:
    return Finding(bridge.name, bridge.dpid, severity, code, f"{bridge.label}: {detail}", fix)


def _in_band(bridge: BridgeConfig) -> list[Finding]:
    if bridge.in_band_disabled:
        return []
    name = shlex.quote(bridge.name)
    fix = f"ovs-vsctl set bridge {name} other-config:disable-in-band=true"
    controllers = [c.target for c in bridge.controllers if c.in_band]
    managers = [m.target for m in bridge.managers if m.in_band]
    if controllers or managers:
        remotes = ", ".join([f"controller {t}" for t in controllers] + [f"manager {t}" for t in managers])
        example = _remote_example([(t, 6653) for t in controllers] + [(t, 6640) for t in managers])
        return [_finding(
            bridge, "error", "in-band-control",
            f"in-band control is on (other_config:disable-in-band is not true; in-band: {remotes}): "
            f"Open vSwitch installs hidden flows at priorities {IN_BAND_PRIORITIES} with action NORMAL, "
            f"above every otseg flow, for TCP to and from those addresses, ARP for them and for the "
            f"bridge's own port and next hop, so a frame from any port {example} is delivered everywhere, "
            f"bypassing the policy.", fix)]
    return [_finding(
        bridge, "warning", "in-band-not-disabled",
        "no controller or manager turns in-band control on now (none, or out-of-band, listener or unix: "
        "targets), but other_config:disable-in-band is not true: a tcp: controller or an OVSDB manager set "
        "later with the default connection mode turns it (hidden NORMAL flows above otseg's) on.", fix)]


def _remote_example(targets: Sequence[tuple[str, int]]) -> str:
    """`with IPv4 source 10.0.0.5 and TCP source port 6653` for the first tcp:/ssl: IPv4 target."""
    for target, default_port in targets:
        match = re.fullmatch(r"(?:tcp|ssl):(\d+\.\d+\.\d+\.\d+)(?::(\d+))?", target)
        if match:
            return f"with IPv4 source {match.group(1)} and TCP source port {match.group(2) or default_port}"
    return "with a controller's or manager's address and port as source"


def _fail_mode(bridge: BridgeConfig) -> list[Finding]:
    if bridge.fail_mode == "secure":
        return []
    mode = bridge.fail_mode or "unset (Open vSwitch's default, standalone)"
    return [_finding(
        bridge, "error", "fail-mode",
        f"fail_mode is {mode}: whenever no controller is connected (none set, or about 15 s, three "
        f"inactivity probes, after losing or never reaching it) Open vSwitch forwards as a learning switch "
        f"through a hidden flow at priority {FAIL_OPEN_PRIORITY} (0xf0f0f0) with action NORMAL, above "
        f"otseg's, so every zone reaches every other; secure keeps otseg's flows and nothing else.",
        f"ovs-vsctl set-fail-mode {shlex.quote(bridge.name)} secure")]


def _protocols(bridge: BridgeConfig) -> list[Finding]:
    fix = f"ovs-vsctl set bridge {shlex.quote(bridge.name)} protocols={OPENFLOW_VERSION}"
    enabled = bridge.effective_protocols
    shown = ",".join(bridge.protocols) if bridge.protocols else \
        f"empty (Open vSwitch enables {','.join(OVS_DEFAULT_PROTOCOLS)})"
    if OPENFLOW_VERSION not in enabled:
        return [_finding(
            bridge, "error", "protocols",
            f"protocols is {shown}, without {OPENFLOW_VERSION}: otseg speaks OpenFlow 1.3 only, so the "
            f"switch cannot connect and nothing is enforced.", fix)]
    others = [p for p in enabled if p != OPENFLOW_VERSION]
    if others:
        return [_finding(
            bridge, "warning", "protocols",
            f"protocols is {shown}: besides {OPENFLOW_VERSION} it enables {','.join(others)}, which otseg "
            f"never uses; every extra version is more for a peer on the OpenFlow channel to exercise.", fix)]
    return []


def _controllers(bridge: BridgeConfig) -> list[Finding]:
    name = shlex.quote(bridge.name)
    if not bridge.controllers:
        return [_finding(
            bridge, "warning", "no-controller",
            "no controller is set: otseg does not program this bridge (with fail_mode secure it keeps the "
            "flows it holds and drops everything else).", f"ovs-vsctl set-controller {name} tcp:CONTROLLER_IP:6653")]
    exposed = [c.target for c in bridge.controllers if c.passive and not _loopback_listener(c.target)]
    keep = " ".join(shlex.quote(c.target) for c in bridge.controllers if c.target not in exposed) or \
        "tcp:CONTROLLER_IP:6653"
    return [_finding(
        bridge, "warning", "passive-listener",
        f"controller target {target} listens for OpenFlow connections from any address that reaches it; "
        f"whoever connects can rewrite the flow tables beside otseg.",
        f"ovs-vsctl set-controller {name} {keep}") for target in exposed]


def _loopback_listener(target: str) -> bool:
    """`punix:` or a `ptcp:`/`pssl:` listener bound to 127.0.0.0/8 or ::1."""
    if target.startswith("punix:"):
        return True
    parts = target.split(":", 2)
    address = parts[2] if len(parts) == 3 else ""
    return address.startswith("127.") or address.strip("[]") == "::1"
