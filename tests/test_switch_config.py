"""Switch settings: OVSDB JSON parsing, every finding, the injected ovs-vsctl runner, `otseg doctor` output.

The samples are what `ovs_vsctl_argv()` printed on Open vSwitch 3.1 for throwaway bridges
(otsegdoc0, otsegdoc2) set up as each sample's comment says. No test here starts a process.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import signal
import subprocess
from typing import Any

import pytest

from controller import doctor
from controller.app import switch_config
from controller.app.switch_config import (
    BridgeConfig,
    ControllerConfig,
    Finding,
    ManagerConfig,
    SwitchConfigError,
    check_bridge,
    check_switches,
    fix_for_db,
)
from controller.app import ovsdb
from controller.app.ovsdb import ovs_vsctl_argv, parse_bridges, read_bridges, run_ovs_vsctl

# otsegdoc0 just after `ovs-vsctl add-br otsegdoc0 -- set bridge otsegdoc0 datapath_type=netdev`.
FRESH = r"""{"data":[[["uuid","2ccd55b0-3c83-4054-b0bc-b89f5a5f8c87"],"otsegdoc0","0000b255cd2c5440",["set",[]],["set",[]],["map",[]],["set",[]]]],"headings":["_uuid","name","datapath_id","fail_mode","protocols","other_config","controller"]}
{"data":[],"headings":["_uuid","target","connection_mode","is_connected","role"]}
{"data":[[["set",[]]]],"headings":["manager_options"]}
{"data":[],"headings":["_uuid","target","connection_mode"]}
"""

# otsegdoc0 after `set-controller otsegdoc0 tcp:127.0.0.1:6653 ptcp:6654:127.0.0.1` and
# `set bridge otsegdoc0 fail_mode=standalone protocols=OpenFlow10,OpenFlow13 other-config:datapath-id=000000000000000b`.
STANDALONE = r"""{"data":[[["uuid","2ccd55b0-3c83-4054-b0bc-b89f5a5f8c87"],"otsegdoc0","000000000000000b","standalone",["set",["OpenFlow10","OpenFlow13"]],["map",[["datapath-id","000000000000000b"]]],["set",[["uuid","c5086e5a-51ae-44e4-a5e7-7d4bc911beb1"],["uuid","e2c44814-d8b2-4dfc-984a-be77b00b5c40"]]]]],"headings":["_uuid","name","datapath_id","fail_mode","protocols","other_config","controller"]}
{"data":[[["uuid","e2c44814-d8b2-4dfc-984a-be77b00b5c40"],"tcp:127.0.0.1:6653",["set",[]],false,["set",[]]],[["uuid","c5086e5a-51ae-44e4-a5e7-7d4bc911beb1"],"ptcp:6654:127.0.0.1",["set",[]],false,["set",[]]]],"headings":["_uuid","target","connection_mode","is_connected","role"]}
{"data":[[["set",[]]]],"headings":["manager_options"]}
{"data":[],"headings":["_uuid","target","connection_mode"]}
"""

# otsegdoc0 made safe (fail_mode=secure protocols=OpenFlow13 other-config:disable-in-band=true, both
# controllers connection_mode=out-of-band) with an OpenFlow peer on 127.0.0.1:16653 that had said hello.
CONNECTED = r"""{"data":[[["uuid","2ccd55b0-3c83-4054-b0bc-b89f5a5f8c87"],"otsegdoc0","000000000000000b","secure","OpenFlow13",["map",[["datapath-id","000000000000000b"],["disable-in-band","true"]]],["set",[["uuid","9c3246b4-5fe2-4f17-8d9e-11ce20655f5b"],["uuid","e87e33c8-d40c-4a06-a39e-3e4ae4b7b859"]]]]],"headings":["_uuid","name","datapath_id","fail_mode","protocols","other_config","controller"]}
{"data":[[["uuid","9c3246b4-5fe2-4f17-8d9e-11ce20655f5b"],"ptcp:6654:127.0.0.1","out-of-band",false,["set",[]]],[["uuid","e87e33c8-d40c-4a06-a39e-3e4ae4b7b859"],"tcp:127.0.0.1:16653","out-of-band",true,"other"]],"headings":["_uuid","target","connection_mode","is_connected","role"]}
{"data":[[["set",[]]]],"headings":["manager_options"]}
{"data":[],"headings":["_uuid","target","connection_mode"]}
"""

# Two bridges: otsegdoc0 as above (peer gone), and otsegdoc2 as a default install has it:
# `add-br otsegdoc2 -- set bridge otsegdoc2 datapath_type=netdev -- set-controller otsegdoc2 tcp:127.0.0.1:16653`.
FLEET = r"""{"data":[[["uuid","2ccd55b0-3c83-4054-b0bc-b89f5a5f8c87"],"otsegdoc0","000000000000000b","secure","OpenFlow13",["map",[["datapath-id","000000000000000b"],["disable-in-band","true"]]],["set",[["uuid","9c3246b4-5fe2-4f17-8d9e-11ce20655f5b"],["uuid","e87e33c8-d40c-4a06-a39e-3e4ae4b7b859"]]]],[["uuid","64c89601-6523-4418-8fb0-19a81eacb3e3"],"otsegdoc2","00000296c8641844",["set",[]],["set",[]],["map",[]],["uuid","98a0b78e-7a5d-4c5f-b6fa-9df83aff1af8"]]],"headings":["_uuid","name","datapath_id","fail_mode","protocols","other_config","controller"]}
{"data":[[["uuid","e87e33c8-d40c-4a06-a39e-3e4ae4b7b859"],"tcp:127.0.0.1:16653","out-of-band",false,["set",[]]],[["uuid","9c3246b4-5fe2-4f17-8d9e-11ce20655f5b"],"ptcp:6654:127.0.0.1","out-of-band",false,["set",[]]],[["uuid","98a0b78e-7a5d-4c5f-b6fa-9df83aff1af8"],"tcp:127.0.0.1:16653",["set",[]],false,["set",[]]]],"headings":["_uuid","target","connection_mode","is_connected","role"]}
{"data":[[["set",[]]]],"headings":["manager_options"]}
{"data":[],"headings":["_uuid","target","connection_mode"]}
"""

# The safe otsegdoc0 (listed by name) while `ovs-vsctl set-manager tcp:127.0.0.2:6640` was in force.
MANAGER = r"""{"data":[[["uuid","2ccd55b0-3c83-4054-b0bc-b89f5a5f8c87"],"otsegdoc0","000000000000000b","secure","OpenFlow13",["map",[["datapath-id","000000000000000b"],["disable-in-band","true"]]],["set",[["uuid","9c3246b4-5fe2-4f17-8d9e-11ce20655f5b"],["uuid","e87e33c8-d40c-4a06-a39e-3e4ae4b7b859"]]]]],"headings":["_uuid","name","datapath_id","fail_mode","protocols","other_config","controller"]}
{"data":[[["uuid","e87e33c8-d40c-4a06-a39e-3e4ae4b7b859"],"tcp:127.0.0.1:16653","out-of-band",false,["set",[]]],[["uuid","9c3246b4-5fe2-4f17-8d9e-11ce20655f5b"],"ptcp:6654:127.0.0.1","out-of-band",false,["set",[]]],[["uuid","98a0b78e-7a5d-4c5f-b6fa-9df83aff1af8"],"tcp:127.0.0.1:16653",["set",[]],false,["set",[]]]],"headings":["_uuid","target","connection_mode","is_connected","role"]}
{"data":[[["uuid","126a1721-6a3f-4581-93d5-51893a1b2eac"]]],"headings":["manager_options"]}
{"data":[[["uuid","126a1721-6a3f-4581-93d5-51893a1b2eac"],"tcp:127.0.0.2:6640",["set",[]]]],"headings":["_uuid","target","connection_mode"]}
"""

SAFE_CONTROLLERS = (ControllerConfig("ptcp:6654:127.0.0.1", "out-of-band", False, None),
                    ControllerConfig("tcp:127.0.0.1:16653", "out-of-band", False, None))
SAFE = BridgeConfig("otsegdoc0", 0xB, "secure", ("OpenFlow13",),
                    (("datapath-id", "000000000000000b"), ("disable-in-band", "true")), SAFE_CONTROLLERS)
DEFAULT = BridgeConfig("otsegdoc2", 0x296C8641844, None, (), (),
                       (ControllerConfig("tcp:127.0.0.1:16653", None, False, None),))


def _bridge(**changes: Any) -> BridgeConfig:
    """A safe bridge s1 (dpid 1) with one out-of-band controller, changed as asked."""
    base = BridgeConfig("s1", 1, "secure", ("OpenFlow13",), (("disable-in-band", "true"),),
                        (ControllerConfig("tcp:10.0.0.5:6653", None, True, "other"),))
    return dataclasses.replace(base, **changes)


def _codes(bridge: BridgeConfig) -> list[tuple[str, str]]:
    return [(f.severity, f.code) for f in check_bridge(bridge)]


# --- parsing -----------------------------------------------------------------------------------


def test_a_fleet_parses_into_bridges_joined_with_their_controllers() -> None:
    assert parse_bridges(FLEET) == [SAFE, DEFAULT]


def test_a_fresh_bridge_has_no_controller_and_ovs_defaults() -> None:
    [bridge] = parse_bridges(FRESH)
    assert bridge == BridgeConfig("otsegdoc0", 0xB255CD2C5440, None, (), (), ())
    assert bridge.effective_protocols == switch_config.OVS_DEFAULT_PROTOCOLS


def test_single_atoms_stand_for_one_element_sets_and_connected_controllers_carry_their_role() -> None:
    [bridge] = parse_bridges(CONNECTED)
    assert bridge.protocols == ("OpenFlow13",) and bridge.fail_mode == "secure"
    assert bridge.controllers[1] == ControllerConfig("tcp:127.0.0.1:16653", "out-of-band", True, "other")
    [standalone] = parse_bridges(STANDALONE)
    assert standalone.protocols == ("OpenFlow10", "OpenFlow13") and standalone.fail_mode == "standalone"
    assert [c.target for c in standalone.controllers] == ["ptcp:6654:127.0.0.1", "tcp:127.0.0.1:6653"]
    assert all(c.connection_mode is None and c.role is None for c in standalone.controllers)


def test_a_one_element_set_may_also_come_wrapped() -> None:
    wrapped = CONNECTED.replace('"secure","OpenFlow13"', '["set",["secure"]],["set",["OpenFlow13"]]')
    assert wrapped != CONNECTED and parse_bridges(wrapped) == parse_bridges(CONNECTED)


def test_managers_reach_every_bridge() -> None:
    [bridge] = parse_bridges(MANAGER)
    assert bridge.managers == (ManagerConfig("tcp:127.0.0.2:6640", None),)
    assert check_bridge(bridge) == []  # disable-in-band=true covers managers too


def test_a_bridge_before_ovs_vswitchd_assigned_its_datapath_id_has_none() -> None:
    text = FRESH.replace('"0000b255cd2c5440"', '["set",[]]')
    [bridge] = parse_bridges(text)
    assert bridge.dpid is None
    assert check_bridge(bridge)[0].message.startswith("bridge otsegdoc0 (no datapath id yet): ")
    assert check_switches([bridge]) == {}


@pytest.mark.parametrize("text, reason", [
    ("", "printed 0 JSON tables"),
    (FLEET.replace("\n", "\n\n", 1).rsplit("\n", 2)[0], "printed 3 JSON tables"),
    (FLEET.replace('{"data":[],"headings":["_uuid","target","connection_mode"]}', "not json"), "cannot read"),
    (FLEET.replace('"headings":["manager_options"]', '"headings":["bridges"]'), "lack some of"),
    (FLEET.replace("98a0b78e-7a5d-4c5f-b6fa-9df83aff1af8", "00000000-0000-0000-0000-000000000000", 1),
     "did not list"),
    (FLEET.replace('"00000296c8641844"', '"not-hex"'), "not hexadecimal"),
    (FLEET.replace('["map",[]]', '["set",[]]'), "not an OVSDB map"),
    (FLEET.replace('"out-of-band",false', '"out-of-band","false"', 1), "not a boolean"),
    (FLEET.replace('"secure"', '["set",["secure","standalone"]]'), "more than one value"),
])
def test_unexpected_output_is_a_switch_config_error(text: str, reason: str) -> None:
    with pytest.raises(SwitchConfigError, match=reason):
        parse_bridges(text)


# --- the injected runner -----------------------------------------------------------------------


def test_read_bridges_runs_one_read_only_transaction_through_the_runner() -> None:
    calls: list[list[str]] = []

    def run(argv: list[str]) -> str:
        calls.append(argv)
        return FLEET

    assert read_bridges(run, db="tcp:127.0.0.1:6640") == [SAFE, DEFAULT]
    assert calls == [[
        "ovs-vsctl", "--timeout=5", "--db=tcp:127.0.0.1:6640", "--format=json",
        "--", "--columns=_uuid,name,datapath_id,fail_mode,protocols,other_config,controller", "list", "Bridge",
        "--", "--columns=_uuid,target,connection_mode,is_connected,role", "list", "Controller",
        "--", "--columns=manager_options,other_config", "list", "Open_vSwitch",
        "--", "--columns=_uuid,target,connection_mode", "list", "Manager"]]
    assert "--db" not in " ".join(ovs_vsctl_argv())


def test_the_runners_error_reaches_the_caller() -> None:
    def run(argv: list[str]) -> str:
        raise SwitchConfigError("no database")

    with pytest.raises(SwitchConfigError, match="no database"):
        read_bridges(run)


def _completed(returncode: int, stderr: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess([], returncode, stdout="", stderr=stderr)


@pytest.mark.parametrize("outcome, expected", [
    (FileNotFoundError(2, "No such file"), "not installed or not on PATH; fix: install Open vSwitch"),
    (subprocess.TimeoutExpired("ovs-vsctl", 10), "got no answer from the OVSDB server at unix:/x.sock within 5 s"),
    (_completed(-signal.SIGALRM), "got no answer from the OVSDB server at unix:/x.sock within 5 s"),
    (_completed(142), "within 5 s; fix: start Open vSwitch"),
    (_completed(1, "ovs-vsctl: unix:/x.sock: database connection failed (No such file or directory)\n"),
     r"failed \(exit 1\): ovs-vsctl: unix:/x.sock: database connection failed \(No such file or directory\); "
     r"fix: start Open vSwitch"),
    (_completed(1, "ovs-vsctl: unix:/x.sock: database connection failed (Permission denied)\n"),
     "fix: run as root"),
])
def test_the_default_runner_says_what_failed_and_how_to_fix_it(monkeypatch: pytest.MonkeyPatch, outcome: object,
                                                                expected: str) -> None:
    def fake_run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        assert kwargs["timeout"] > ovsdb.OVS_VSCTL_TIMEOUT and kwargs["capture_output"]
        if isinstance(outcome, BaseException):
            raise outcome
        assert isinstance(outcome, subprocess.CompletedProcess)
        return outcome

    monkeypatch.setattr("controller.app.ovsdb.subprocess.run", fake_run)
    with pytest.raises(SwitchConfigError, match=expected):
        run_ovs_vsctl(ovs_vsctl_argv("unix:/x.sock"))


def test_the_default_runner_returns_stdout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("controller.app.ovsdb.subprocess.run",
                        lambda argv, **_: subprocess.CompletedProcess(argv, 0, stdout=FLEET, stderr=""))
    assert read_bridges() == [SAFE, DEFAULT]


# --- findings ----------------------------------------------------------------------------------


def test_a_safe_bridge_has_no_findings() -> None:
    assert check_bridge(SAFE) == [] and check_bridge(_bridge()) == []


def test_a_default_install_is_in_band_standalone_and_speaks_every_version() -> None:
    findings = check_bridge(DEFAULT)
    assert [(f.severity, f.code) for f in findings] == [
        ("error", "in-band-control"), ("error", "fail-mode"), ("warning", "protocols")]
    in_band, fail_mode, protocols = findings
    assert in_band.message.startswith("bridge otsegdoc2 (0x296c8641844): in-band control is on ")
    assert "controller tcp:127.0.0.1:16653" in in_band.message and "180000-180008" in in_band.message
    assert "IPv4 source 127.0.0.1 and TCP source port 16653" in in_band.message
    assert in_band.fix == "ovs-vsctl set bridge otsegdoc2 other-config:disable-in-band=true"
    assert "unset (Open vSwitch's default, standalone)" in fail_mode.message
    assert fail_mode.fix == "ovs-vsctl set-fail-mode otsegdoc2 secure"
    assert "empty (Open vSwitch enables OpenFlow10" in protocols.message
    assert protocols.fix == "ovs-vsctl set bridge otsegdoc2 protocols=OpenFlow13"


def test_in_band_control_is_an_error_with_the_exact_fix() -> None:
    bridge = _bridge(other_config=())
    [finding] = check_bridge(bridge)
    assert finding == Finding("s1", 1, "error", "in-band-control", finding.message,
                              "ovs-vsctl set bridge s1 other-config:disable-in-band=true")
    assert finding.line().startswith("bridge s1 (0x1): error in-band-control: in-band control is on ")
    assert finding.line().endswith(" fix: ovs-vsctl set bridge s1 other-config:disable-in-band=true")
    assert "IPv4 source 10.0.0.5 and TCP source port 6653" in finding.message


@pytest.mark.parametrize("value, in_band", [("true", False), ("TRUE", False), ("True", False),
                                            ("yes", True), ("1", True), ("false", True), ("", True)])
def test_disable_in_band_is_read_as_ovs_vswitchd_reads_it(value: str, in_band: bool) -> None:
    codes = _codes(_bridge(other_config=(("disable-in-band", value),)))
    assert (("error", "in-band-control") in codes) is in_band


def test_out_of_band_controllers_are_enough_but_fragile() -> None:
    bridge = _bridge(other_config=(), controllers=(ControllerConfig("tcp:10.0.0.5:6653", "out-of-band", True, None),))
    assert _codes(bridge) == [("warning", "in-band-not-disabled")]
    assert check_bridge(bridge)[0].fix == "ovs-vsctl set bridge s1 other-config:disable-in-band=true"
    mixed = dataclasses.replace(bridge, controllers=(*bridge.controllers,
                                                     ControllerConfig("ssl:10.0.0.6:6653", "in-band", False, None)))
    [finding] = check_bridge(mixed)
    assert finding.code == "in-band-control" and "controller ssl:10.0.0.6:6653" in finding.message
    assert "tcp:10.0.0.5" not in finding.message


def test_an_in_band_manager_turns_in_band_control_on_even_with_out_of_band_controllers() -> None:
    [parsed] = parse_bridges(MANAGER)
    bridge = dataclasses.replace(parsed, other_config=(("datapath-id", "000000000000000b"),))
    [finding] = check_bridge(bridge)
    assert (finding.severity, finding.code) == ("error", "in-band-control")
    assert "manager tcp:127.0.0.2:6640" in finding.message and "TCP source port 6640" in finding.message
    without = dataclasses.replace(bridge, controllers=())
    assert ("error", "in-band-control") in _codes(without)
    out_of_band = dataclasses.replace(bridge, managers=(ManagerConfig("tcp:127.0.0.2:6640", "out-of-band"),
                                                         ManagerConfig("ptcp:6640", None)))
    assert _codes(out_of_band) == [("warning", "in-band-not-disabled")]


def test_listener_and_unix_controllers_add_no_in_band_flows() -> None:
    bridge = _bridge(other_config=(), controllers=(ControllerConfig("ptcp:6654:127.0.0.1", None, False, None),
                                                   ControllerConfig("unix:/run/otseg.sock", None, False, None)))
    assert _codes(bridge) == [("warning", "in-band-not-disabled")]


@pytest.mark.parametrize("fail_mode, shown", [(None, "unset (Open vSwitch's default, standalone)"),
                                              ("standalone", "standalone")])
def test_anything_but_secure_fail_mode_is_an_error(fail_mode: str | None, shown: str) -> None:
    [finding] = check_bridge(_bridge(fail_mode=fail_mode))
    assert (finding.severity, finding.code) == ("error", "fail-mode")
    assert finding.message.startswith(f"bridge s1 (0x1): fail_mode is {shown}: ")
    assert "learning switch" in finding.message and "15790320" in finding.message
    assert finding.fix == "ovs-vsctl set-fail-mode s1 secure"


@pytest.mark.parametrize("protocols, expected", [
    (("OpenFlow13",), []),
    (("OpenFlow10", "OpenFlow13"), [("warning", "protocols")]),
    ((), [("warning", "protocols")]),
    (("OpenFlow10",), [("error", "protocols")]),
    (("OpenFlow14", "OpenFlow15"), [("error", "protocols")]),
])
def test_openflow_13_is_required_and_other_versions_are_a_warning(protocols: tuple[str, ...],
                                                                  expected: list[tuple[str, str]]) -> None:
    findings = check_bridge(_bridge(protocols=protocols))
    assert [(f.severity, f.code) for f in findings] == expected
    assert all(f.fix == "ovs-vsctl set bridge s1 protocols=OpenFlow13" for f in findings)
    if expected == [("error", "protocols")]:
        assert "cannot connect" in findings[0].message


def test_no_controller_is_a_warning() -> None:
    [finding] = check_bridge(_bridge(controllers=()))
    assert (finding.severity, finding.code) == ("warning", "no-controller")
    assert finding.fix == "ovs-vsctl set-controller s1 tcp:CONTROLLER_IP:6653"


def test_a_listener_reachable_from_the_network_is_a_warning() -> None:
    controllers = (ControllerConfig("ptcp:6653", None, False, None), ControllerConfig("pssl:6654:10.0.0.1", None,
                                                                                   False, None),
                   ControllerConfig("ptcp:6655:127.0.0.1", None, False, None),
                   ControllerConfig("ptcp:6656:[::1]", None, False, None),
                   ControllerConfig("punix:/run/ovs.sock", None, False, None),
                   ControllerConfig("tcp:10.0.0.5:6653", "out-of-band", True, "other"))
    findings = check_bridge(_bridge(controllers=controllers))
    assert [(f.code, f.message.split("target ")[1].split(" ")[0]) for f in findings] == [
        ("passive-listener", "ptcp:6653"), ("passive-listener", "pssl:6654:10.0.0.1")]
    assert findings[0].fix == ("ovs-vsctl set-controller s1 ptcp:6655:127.0.0.1 'ptcp:6656:[::1]' "
                               "punix:/run/ovs.sock tcp:10.0.0.5:6653")


def test_errors_come_first_and_every_message_names_bridge_and_dpid() -> None:
    bridge = _bridge(fail_mode=None, protocols=(), other_config=(), controllers=())
    findings = check_bridge(bridge)
    assert [(f.severity, f.code) for f in findings] == [
        ("error", "fail-mode"), ("warning", "in-band-not-disabled"), ("warning", "protocols"),
        ("warning", "no-controller")]
    assert all(f.message.startswith("bridge s1 (0x1): ") and f.label == "bridge s1 (0x1)" for f in findings)


def test_fixes_quote_bridge_names_and_follow_db() -> None:
    [finding] = check_bridge(_bridge(name="br 0; rm", fail_mode="standalone"))
    assert finding.fix == "ovs-vsctl set-fail-mode 'br 0; rm' secure"
    assert fix_for_db(finding.fix, "tcp:10.0.0.9:6640") == \
        "ovs-vsctl --db=tcp:10.0.0.9:6640 set-fail-mode 'br 0; rm' secure"
    assert fix_for_db(finding.fix, None) == finding.fix


def test_check_switches_is_keyed_by_dpid() -> None:
    result = check_switches(parse_bridges(FLEET))
    assert sorted(result) == [0xB, 0x296C8641844]
    assert result[0xB] == [] and [f.code for f in result[0x296C8641844]] == ["in-band-control", "fail-mode",
                                                                              "protocols"]


def test_finding_json_has_the_hex_dpid() -> None:
    [finding] = check_bridge(_bridge(fail_mode=None))
    document = finding.to_json("unix:/x.sock")
    assert document["dpid"] == 1 and document["dpid_hex"] == "0x1" and document["code"] == "fail-mode"
    assert document["fix"] == "ovs-vsctl --db=unix:/x.sock set-fail-mode s1 secure"


# --- otseg doctor ------------------------------------------------------------------------------


def _doctor(argv: list[str], output: str | Exception) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="otseg")
    doctor.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["doctor", *argv])

    def run(_: list[str]) -> str:
        if isinstance(output, Exception):
            raise output
        return output

    out, err = io.StringIO(), io.StringIO()
    code = doctor.doctor_command(args, run=run, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_doctor_says_ok_for_safe_bridges() -> None:
    assert _doctor([], CONNECTED) == (0, "bridge otsegdoc0 (0xb): ok\n", "")


def test_doctor_prints_one_line_per_finding_and_exits_1_on_errors() -> None:
    code, out, err = _doctor([], FLEET)
    lines = out.splitlines()
    assert code == 1 and err == ""
    assert lines[0] == "bridge otsegdoc0 (0xb): ok"
    assert lines[1].startswith("bridge otsegdoc2 (0x296c8641844): error in-band-control: in-band control is on")
    assert lines[1].endswith("fix: ovs-vsctl set bridge otsegdoc2 other-config:disable-in-band=true")
    assert lines[2].startswith("bridge otsegdoc2 (0x296c8641844): error fail-mode: ")
    assert lines[3].startswith("bridge otsegdoc2 (0x296c8641844): warning protocols: ")
    assert len(lines) == 4


def test_doctor_exits_0_on_warnings_only() -> None:
    code, out, _ = _doctor([], FRESH)
    assert code == 1  # a fresh bridge is standalone
    warnings_only = FRESH.replace('["set",[]],["set",[]],["map",[]]', '"secure","OpenFlow13",["map",[]]')
    code, out, _ = _doctor([], warnings_only)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2
    assert lines[0].startswith("bridge otsegdoc0 (0xb255cd2c5440): warning in-band-not-disabled: ")
    assert lines[1] == ("bridge otsegdoc0 (0xb255cd2c5440): warning no-controller: no controller is set: "
                        "otseg does not program this bridge (with fail_mode secure it keeps the flows it "
                        "holds and drops everything else). fix: ovs-vsctl set-controller otsegdoc0 "
                        "tcp:CONTROLLER_IP:6653")


def test_doctor_checks_only_the_bridges_asked_for() -> None:
    assert _doctor(["--bridge", "otsegdoc0"], FLEET) == (0, "bridge otsegdoc0 (0xb): ok\n", "")
    code, out, _ = _doctor(["--bridge", "otsegdoc2", "--bridge", "otsegdoc0"], FLEET)
    assert code == 1 and out.splitlines()[-1] == "bridge otsegdoc0 (0xb): ok"
    code, out, err = _doctor(["--bridge", "s9"], FLEET)
    assert (code, out) == (2, "") and err == "otseg doctor: no bridge s9 in OVSDB (bridges: otsegdoc0, otsegdoc2)\n"


def test_doctor_exits_2_when_ovsdb_cannot_be_read() -> None:
    code, out, err = _doctor(["--db", "unix:/x.sock"], SwitchConfigError("database connection failed; fix: ..."))
    assert (code, out) == (2, "")
    assert err == "otseg doctor: cannot read OVSDB: database connection failed; fix: ...\n"
    assert _doctor([], "garbage")[0] == 2


def test_doctor_fixes_name_the_database_that_was_checked() -> None:
    _, out, _ = _doctor(["--db", "tcp:10.0.0.9:6640"], FLEET)
    assert "fix: ovs-vsctl --db=tcp:10.0.0.9:6640 set bridge otsegdoc2 other-config:disable-in-band=true" in out


def test_doctor_json() -> None:
    code, out, _ = _doctor(["--format", "json"], FLEET)
    document = json.loads(out)
    assert code == 1 and document["ok"] is False and (document["errors"], document["warnings"]) == (2, 1)
    safe, unsafe = document["bridges"]
    assert (safe["name"], safe["dpid_hex"], safe["ok"], safe["findings"]) == ("otsegdoc0", "0xb", True, [])
    assert safe["disable_in_band"] is True and safe["controllers"][1]["target"] == "tcp:127.0.0.1:16653"
    assert [f["code"] for f in unsafe["findings"]] == ["in-band-control", "fail-mode", "protocols"]
    assert unsafe["findings"][0]["fix"] == "ovs-vsctl set bridge otsegdoc2 other-config:disable-in-band=true"


def test_more_than_one_parsed_vlan_header_is_an_error() -> None:
    from controller.app.switch_config import BridgeConfig, check_bridge  # noqa: PLC0415

    safe = BridgeConfig("s1", 1, "secure", ("OpenFlow13",), (("disable-in-band", "true"),), ())
    assert not [f for f in check_bridge(safe) if f.code == "vlan-limit"]
    loose = BridgeConfig("s1", 1, "secure", ("OpenFlow13",), (("disable-in-band", "true"),), (), vlan_limit="0")
    found = [f for f in check_bridge(loose) if f.code == "vlan-limit"]
    assert found and found[0].severity == "error" and "vlan-limit" in found[0].fix
