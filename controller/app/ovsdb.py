"""The OVSDB reader behind `otseg doctor` and the controller's switch-settings check.

It runs one read-only `ovs-vsctl` transaction (Bridge, Controller, Open_vSwitch and Manager
tables: one consistent snapshot), parses the OVSDB JSON encoding ("set", "map", "uuid") and
joins the rows into `controller.app.switch_config.BridgeConfig` values. It never writes. Every
failure (ovs-vsctl missing, no answer within `OVS_VSCTL_TIMEOUT` seconds, non-zero exit,
unexpected JSON) raises `SwitchConfigError` saying what failed and how to fix it.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
from typing import Any, Mapping, Sequence

from controller.app.switch_config import (
    BRIDGE_COLUMNS, CONTROLLER_COLUMNS, MANAGER_COLUMNS, OPEN_VSWITCH_COLUMNS, OVS_VSCTL_TIMEOUT, BridgeConfig,
    ControllerConfig, ManagerConfig, Runner, SwitchConfigError,
)



def ovs_vsctl_argv(db: str | None = None) -> list[str]:
    """The one read-only ovs-vsctl transaction `read_bridges` runs: four `list` commands, one JSON table each."""
    argv = ["ovs-vsctl", f"--timeout={OVS_VSCTL_TIMEOUT}"]
    if db:
        argv.append(f"--db={db}")
    argv.append("--format=json")
    for table, columns in (("Bridge", BRIDGE_COLUMNS), ("Controller", CONTROLLER_COLUMNS),
                           ("Open_vSwitch", OPEN_VSWITCH_COLUMNS), ("Manager", MANAGER_COLUMNS)):
        argv += ["--", f"--columns={','.join(columns)}", "list", table]
    return argv


def run_ovs_vsctl(argv: list[str]) -> str:
    """Run `argv` (starting with "ovs-vsctl") and return its stdout; `SwitchConfigError` on any failure."""
    command = shlex.join(argv)
    db = next((a.removeprefix("--db=") for a in argv if a.startswith("--db=")), None)
    where = f"the OVSDB server at {db}" if db else "the local OVSDB server (unix:/var/run/openvswitch/db.sock)"
    timed_out = SwitchConfigError(
        f"`{command}` got no answer from {where} within {OVS_VSCTL_TIMEOUT} s; fix: start Open vSwitch "
        f"(systemctl start openvswitch-switch, or /usr/share/openvswitch/scripts/ovs-ctl start) or give "
        f"--db the address ovsdb-server listens on (e.g. unix:/var/run/openvswitch/db.sock or "
        f"tcp:SWITCH_IP:6640)")
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=OVS_VSCTL_TIMEOUT + 5, check=False)
    except FileNotFoundError:
        raise SwitchConfigError(
            f"cannot run `{argv[0]}`: it is not installed or not on PATH; fix: install Open vSwitch "
            f"(apt-get install openvswitch-switch) or run on a host that has it, with --db pointing at "
            f"the switch's database (tcp:SWITCH_IP:6640)") from None
    except subprocess.TimeoutExpired:
        raise timed_out from None
    except OSError as error:
        raise SwitchConfigError(f"cannot run `{command}`: {error}") from None
    if done.returncode in (-signal.SIGALRM, 128 + signal.SIGALRM):
        raise timed_out
    if done.returncode != 0:
        stderr = " ".join(done.stderr.split()) or "(no message)"
        hint = "check that ovsdb-server is running and that --db names it"
        if "Permission denied" in stderr:
            hint = "run as root (the database socket is root-only) or give --db a tcp: address"
        elif "No such file" in stderr or "Connection refused" in stderr:
            hint = ("start Open vSwitch (systemctl start openvswitch-switch) or give --db the address "
                    "ovsdb-server listens on (unix:/var/run/openvswitch/db.sock, tcp:SWITCH_IP:6640)")
        raise SwitchConfigError(f"`{command}` failed (exit {done.returncode}): {stderr}; fix: {hint}")
    return done.stdout


def read_bridges(run: Runner = run_ovs_vsctl, db: str | None = None) -> list[BridgeConfig]:
    """Every bridge in the database, sorted by name, with its controllers and the database's managers.

    `run` gets the whole argv (starting with "ovs-vsctl") and returns stdout; it may raise
    `SwitchConfigError`. `db` is passed as `--db=DB` (unix:/var/run/openvswitch/db.sock,
    tcp:127.0.0.1:6640); None means ovs-vsctl's default, the local socket.
    """
    argv = ovs_vsctl_argv(db)
    output = run(argv)
    return parse_bridges(output, source=f"`{shlex.join(argv)}`")


def parse_bridges(output: str, source: str = "ovs-vsctl output") -> list[BridgeConfig]:
    """Parse the four JSON tables `ovs_vsctl_argv` prints (one per line) into bridges."""
    lines = [line for line in output.splitlines() if line.strip()]
    if len(lines) != 4:
        raise SwitchConfigError(f"{source} printed {len(lines)} JSON tables, expected 4 (Bridge, Controller, "
                                f"Open_vSwitch, Manager); fix: use the ovs-vsctl of Open vSwitch 2.x or later")
    try:
        bridges, controllers, switch, managers = (
            _table(json.loads(line), columns) for line, columns in
            zip(lines, (BRIDGE_COLUMNS, CONTROLLER_COLUMNS, OPEN_VSWITCH_COLUMNS[:1], MANAGER_COLUMNS)))
        controller_by_uuid = {_uuid(row["_uuid"]): ControllerConfig(
            target=_string(row["target"]), connection_mode=_optional_string(row["connection_mode"]),
            is_connected=_bool(row["is_connected"]), role=_optional_string(row["role"])) for row in controllers}
        manager_by_uuid = {_uuid(row["_uuid"]): ManagerConfig(
            target=_string(row["target"]), connection_mode=_optional_string(row["connection_mode"]))
            for row in managers}
        manager_refs = [_uuid(u) for row in switch for u in _set(row["manager_options"])]
        vlan_limit = next((_string(v) for row in switch for k, v in _map(row.get("other_config", ["map", []])).items()
                           if _string(k) == "vlan-limit"), None)
        in_use = tuple(sorted((_join(manager_by_uuid, u, "Manager") for u in manager_refs),
                              key=lambda m: m.target))
        result = [BridgeConfig(
            name=_string(row["name"]), dpid=_dpid(row["datapath_id"]),
            fail_mode=_optional_string(row["fail_mode"]),
            protocols=tuple(sorted(_string(p) for p in _set(row["protocols"]))),
            other_config=tuple(sorted((_string(k), _string(v)) for k, v in _map(row["other_config"]).items())),
            controllers=tuple(sorted((_join(controller_by_uuid, _uuid(u), "Controller")
                                      for u in _set(row["controller"])), key=lambda c: c.target)),
            managers=in_use, vlan_limit=vlan_limit) for row in bridges]
    except (ValueError, KeyError, TypeError) as error:
        raise SwitchConfigError(f"{source} printed JSON otseg cannot read ({error}); fix: check that "
                                f"ovs-vsctl and ovsdb-server are Open vSwitch 2.x or later") from None
    return sorted(result, key=lambda b: b.name)


def _table(document: Any, columns: Sequence[str]) -> list[dict[str, Any]]:
    """`{"headings": [...], "data": [[...], ...]}` as one dict per row; every column in `columns` present."""
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise ValueError("a table is not {\"headings\", \"data\"}")
    headings = document.get("headings")
    if not isinstance(headings, list) or not set(columns) <= set(headings):
        raise ValueError(f"table headings {headings!r} lack some of {list(columns)}")
    rows = []
    for values in document["data"]:
        if not isinstance(values, list) or len(values) != len(headings):
            raise ValueError(f"a row {values!r} does not match the headings {headings!r}")
        rows.append(dict(zip(headings, values)))
    return rows


def _set(value: Any) -> list[Any]:
    """An OVSDB set: `["set", [atoms]]`, or a single atom standing for a one-element set."""
    if isinstance(value, list) and len(value) == 2 and value[0] == "set":
        if not isinstance(value[1], list):
            raise ValueError(f"malformed set {value!r}")
        return list(value[1])
    if isinstance(value, list) and (len(value) != 2 or value[0] not in ("uuid", "named-uuid")):
        raise ValueError(f"not an OVSDB set or atom: {value!r}")
    return [value]


def _map(value: Any) -> Mapping[Any, Any]:
    """An OVSDB map: `["map", [[key, value], ...]]`."""
    if not (isinstance(value, list) and len(value) == 2 and value[0] == "map" and isinstance(value[1], list)):
        raise ValueError(f"not an OVSDB map: {value!r}")
    pairs = value[1]
    if not all(isinstance(p, list) and len(p) == 2 for p in pairs):
        raise ValueError(f"malformed map {value!r}")
    return {k: v for k, v in pairs}


def _uuid(value: Any) -> str:
    if isinstance(value, list) and len(value) == 2 and value[0] == "uuid" and isinstance(value[1], str):
        return value[1]
    raise ValueError(f"not an OVSDB uuid: {value!r}")


def _string(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise ValueError(f"not a string: {value!r}")


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"not a boolean: {value!r}")


def _optional_string(value: Any) -> str | None:
    """An optional string column: the empty set is None."""
    atoms = _set(value)
    if len(atoms) > 1:
        raise ValueError(f"more than one value in an optional column: {value!r}")
    return _string(atoms[0]) if atoms else None


def _dpid(value: Any) -> int | None:
    """`datapath_id` is 16 hex digits once ovs-vswitchd has assigned it, the empty set before."""
    text = _optional_string(value)
    if text is None:
        return None
    if not re.fullmatch(r"[0-9a-fA-F]{1,16}", text):
        raise ValueError(f"datapath_id {text!r} is not hexadecimal")
    return int(text, 16)


def _join(rows: Mapping[str, Any], uuid: str, table: str) -> Any:
    if uuid not in rows:
        raise ValueError(f"a row references {table} {uuid}, which the same transaction did not list")
    return rows[uuid]
