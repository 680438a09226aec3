"""`otseg doctor` against real Open vSwitch: the documented switch setup is ok, in-band control and
standalone fail mode are errors, and each printed fix makes the bridge ok again.

Every verdict is checked against what ovs-vswitchd really does: its hidden in-band flows (priorities
180005-180008, `ovs-appctl bridge/dump-flows`) are there exactly when doctor says in-band-control.
The bridge (otsegdoc1, a name Mininet never uses) is created the way docs/operations.md tells an
operator, and deleted whatever happens. Its controller target is a port no otseg listens on, so it
never joins a controller another test runs on 6653; the check does not depend on the port.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from typing import Iterator

import pytest

from tests.integration.conftest import ROOT

pytestmark = pytest.mark.integration

BRIDGE = "otsegdoc1"
CONTROLLER = "tcp:127.0.0.1:16653"


def _vsctl(*args: str) -> str:
    return subprocess.run(["ovs-vsctl", "--timeout=5", *args], capture_output=True, text=True, check=True).stdout


def _doctor(*args: str) -> tuple[int, str, str]:
    """`otseg doctor ARGS` as a process: exit code, stdout, stderr."""
    done = subprocess.run([sys.executable, "-m", "controller.doctor", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)
    return done.returncode, done.stdout, done.stderr


def _in_band_flows(bridge: str) -> list[str]:
    text = subprocess.run(["ovs-appctl", "bridge/dump-flows", bridge], capture_output=True, text=True,
                          check=True).stdout
    return [line for line in text.splitlines() if any(f"priority={p}," in line for p in range(180005, 180009))]


def _wait_in_band(bridge: str, present: bool, timeout: float = 5.0) -> list[str]:
    """The hidden in-band flows once they are there (present) or gone (not present); fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        flows = _in_band_flows(bridge)
        if bool(flows) == present or time.monotonic() > deadline:
            assert bool(flows) == present, flows
            return flows
        time.sleep(0.1)


@pytest.fixture
def bridge() -> Iterator[str]:
    """otsegdoc1 set up as the docs say: netdev, fail_mode secure, OpenFlow13 only, in-band disabled."""
    _vsctl("--if-exists", "del-br", BRIDGE)
    try:
        _vsctl("add-br", BRIDGE, "--", "set", "bridge", BRIDGE, "datapath_type=netdev", "fail_mode=secure",
               "protocols=OpenFlow13", "other-config:disable-in-band=true", "--", "set-controller", BRIDGE,
               CONTROLLER)
        yield BRIDGE
    finally:
        _vsctl("--if-exists", "del-br", BRIDGE)


def _label(bridge: str) -> str:
    dpid = int(_vsctl("get", "bridge", bridge, "datapath_id").strip().strip('"'), 16)
    return f"bridge {bridge} ({dpid:#x})"


def _lines(out: str, code: str) -> list[str]:
    return [line for line in out.splitlines() if f" {code}: " in line]


def _apply(fix: str) -> None:
    argv = shlex.split(fix)
    assert argv[0] == "ovs-vsctl", fix
    subprocess.run(argv, check=True, timeout=30)


def test_the_documented_setup_is_ok(bridge: str) -> None:
    assert _doctor("--bridge", bridge) == (0, f"{_label(bridge)}: ok\n", "")
    assert _wait_in_band(bridge, present=False) == []


def test_in_band_control_as_a_default_install_has_it_is_an_error_and_the_fix_works(bridge: str) -> None:
    _vsctl("remove", "bridge", bridge, "other-config", "disable-in-band")
    flows = _wait_in_band(bridge, present=True)
    assert any("tcp,nw_src=127.0.0.1,tp_src=16653,actions=NORMAL" in f for f in flows), flows

    code, out, err = _doctor("--bridge", bridge)
    [line] = _lines(out, "in-band-control")
    assert (code, err) == (1, "")
    assert line.startswith(f"{_label(bridge)}: error in-band-control: in-band control is on ")
    assert "IPv4 source 127.0.0.1 and TCP source port 16653" in line
    fix = line.split(" fix: ", 1)[1]
    assert fix == f"ovs-vsctl set bridge {bridge} other-config:disable-in-band=true"

    _apply(fix)
    assert _wait_in_band(bridge, present=False) == []
    assert _doctor("--bridge", bridge)[:2] == (0, f"{_label(bridge)}: ok\n")


def test_out_of_band_controllers_without_disable_in_band_are_safe_but_warned(bridge: str) -> None:
    _vsctl("remove", "bridge", bridge, "other-config", "disable-in-band", "--",
           "set", "controller", bridge, "connection_mode=out-of-band")
    assert _wait_in_band(bridge, present=False) == []
    code, out, _ = _doctor("--bridge", bridge)
    assert code == 0 and len(_lines(out, "in-band-not-disabled")) == 1 and " error " not in out


def test_standalone_fail_mode_is_an_error_and_the_fix_works(bridge: str) -> None:
    _vsctl("set-fail-mode", bridge, "standalone")
    code, out, _ = _doctor("--bridge", bridge)
    [line] = _lines(out, "fail-mode")
    assert code == 1 and line.startswith(f"{_label(bridge)}: error fail-mode: fail_mode is standalone: ")
    _apply(line.split(" fix: ", 1)[1])
    assert _vsctl("get", "bridge", bridge, "fail_mode").strip() == "secure"
    assert _doctor("--bridge", bridge)[0] == 0


def test_both_errors_at_once_and_json(bridge: str) -> None:
    _vsctl("remove", "bridge", bridge, "other-config", "disable-in-band", "--", "set-fail-mode", bridge, "standalone",
           "--", "set", "bridge", bridge, "protocols=OpenFlow10,OpenFlow13")
    code, out, _ = _doctor("--bridge", bridge, "--format", "json", "--db", "unix:/var/run/openvswitch/db.sock")
    document = json.loads(out)
    assert code == 1 and (document["errors"], document["warnings"]) == (2, 1)
    [checked] = document["bridges"]
    assert checked["name"] == bridge and checked["controllers"][0]["target"] == CONTROLLER
    assert [(f["severity"], f["code"]) for f in checked["findings"]] == [
        ("error", "in-band-control"), ("error", "fail-mode"), ("warning", "protocols")]
    assert checked["findings"][0]["fix"].startswith("ovs-vsctl --db=unix:/var/run/openvswitch/db.sock set bridge ")


def test_an_unreadable_database_or_unknown_bridge_exits_2() -> None:
    code, out, err = _doctor("--db", "unix:/nonexistent/otseg-db.sock")
    assert (code, out) == (2, "")
    assert err.startswith("otseg doctor: cannot read OVSDB: ") and "database connection failed" in err
    assert "fix: " in err
    code, out, err = _doctor("--bridge", "otsegdoc-absent")
    assert (code, out) == (2, "") and err.startswith("otseg doctor: no bridge otsegdoc-absent in OVSDB")
