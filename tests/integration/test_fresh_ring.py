"""A fresh 3-switch ring on real Open vSwitch: links at once, a silent device found when polled,
binding while another port floods.

Nothing is announced here: the lab's hosts stay silent (IPv6 off) until a test makes one speak,
as a polled PLC would.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.integration.conftest import ROOT, Scenario, running

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ring(workdir: Path) -> Iterator[Scenario]:
    yield from running("ring3.yaml", "linear.yaml", workdir, announce=False)


def _declared_up(status: dict) -> int:  # type: ignore[type-arg]
    return sum(1 for item in status.get("link_states", {}).get("declared", []) if item["up"])


def test_every_declared_link_is_up_within_5_s_of_the_switches_connecting(ring: Scenario) -> None:
    ring.controller.wait_for(lambda s: len(s["switches"]) == 3, 30, "switches connected")
    connected = time.monotonic()
    ring.controller.wait_for(lambda s: _declared_up(s) == 3, 5, "all declared links up within 5 s")
    assert time.monotonic() - connected < 5


def test_a_silent_device_is_found_when_polled(ring: Scenario) -> None:
    status = ring.controller.wait_for(lambda s: all(v["programmed"] for v in s["switches"].values())
                                      and _declared_up(s) == 3, 30, "ready")
    assert "plc-b" in status["assets"]["unlocated"]  # it has never sent a frame
    plc = ring.policy.asset("plc-b")
    start = time.monotonic()
    output = ring.lab.node("scada").cmd(f"ping -c 4 -i 0.5 -W 1 {plc.ip}")  # scada may ping the field (conduit)
    assert " 0 received" not in output, output
    status = ring.controller.status() or {}
    assert status["assets"]["located"]["plc-b"] == [3, 1]
    assert status["packet_ins"].get("locate-probe", 0) >= 1
    assert time.monotonic() - start < 4


def test_an_asset_binds_while_another_port_of_its_switch_floods(ring: Scenario) -> None:
    intruder = ring.lab.hosts["intruder"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    flood = ring.lab.node("intruder").popen(
        [sys.executable, "-m", "controller.lab.agent", "flood", "--intf", intruder.intf, "--rate", "200000",
         "--seconds", "8", "--out", str(ring.workdir / "flood.json")], env=env)
    try:
        time.sleep(2)
        plc = ring.policy.asset("plc-a")  # on the intruder's switch, silent so far
        assert plc.name in (ring.controller.status() or {})["assets"]["unlocated"]
        start = time.monotonic()
        ring.lab.node("plc-a").cmd(f"arping -U -c 2 -w 1 -I {ring.lab.hosts['plc-a'].intf} {plc.ip} >/dev/null 2>&1 "
                                   f"|| ping -c 2 -i 0.2 -W 1 {ring.policy.asset('scada').ip}")
        ring.controller.wait_for(lambda s: "plc-a" in s["assets"]["located"], 3, "plc-a bound during the flood")
        assert time.monotonic() - start < 3
    finally:
        flood.wait(timeout=30)


def test_the_demos_multi_frame_attack_scenarios_hold(ring: Scenario) -> None:
    """The scenarios `make demo` prints after the matrix (controller/lab/scenarios.py), on this lab."""
    from controller.lab.scenarios import Scenarios  # noqa: PLC0415
    from controller.lab.verify import Verifier  # noqa: PLC0415

    # As in `make demo`, where the matrix runs first: every device has spoken and is bound, so
    # the quiet-device takeover has a bound, quiet victim.
    Verifier(ring.lab, ring.policy, ring.controller.status, str(ring.workdir / "announce")).announce()
    results = Scenarios(ring.lab, ring.policy, ring.controller, ring.workdir / "scenarios").run()
    assert {r.name for r in results} == {"two-NIC LLDP relay", "LLDP flood during a ring cut", "quiet-device takeover",
                                         "switch loses its control channel", "silent device polled first"}
    assert all(r.held for r in results), [(r.name, r.detail) for r in results if not r.held]
