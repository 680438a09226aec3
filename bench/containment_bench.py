"""Containment benchmarks: fresh starts of a ring lab, and binding while another port floods.

- Fresh starts: `runs` times, a new controller and a new 3-switch ring lab (topologies/ring3.yaml);
  measured from the moment every switch is connected: every declared link up, and an allowed
  ping across two switches answered (plc-b is silent until then: the ping also has it located). Target: within 5 s every time (the start-up link
  stall of os-ken's discovery, 15 to more than 60 s in 4 of 9 starts, must not come back).
- Bind under flood: the lab's unknown device floods at full rate (varied frames) while an
  unpinned asset on another port of the same switch sends its first frame; measured: time until
  the controller has bound it. Target: under 1 s (each edge port samples on its own meter).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from controller.io.files import load_lab, load_policy
from controller.lab.network import Lab
from controller.lab.process import ControllerProcess
from controller.lab.verify import Verifier

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGY = ROOT / "topologies" / "ring3.yaml"
POLICY = ROOT / "policies" / "linear.yaml"


def _lab_run(workdir: Path) -> tuple[ControllerProcess, Lab, object]:
    policy = load_policy(POLICY)
    description = load_lab(TOPOLOGY, policy)
    for name, _ in description.switches:
        subprocess.run(["ovs-vsctl", "--if-exists", "del-br", Lab.switch_node(name)], check=False)
    controller = ControllerProcess(str(POLICY), workdir, topology=str(TOPOLOGY))
    return controller, Lab(description, policy), policy


def _answered(lab: Lab, source: str, target: str) -> bool:
    """An allowed echo request (scada may ping the field) across two switches, and its reply."""
    return " 1 received" in lab.node(source).cmd(f"ping -c 1 -W 0.3 {lab.hosts[target].ip}")


def fresh_start(workdir: Path) -> dict:  # type: ignore[type-arg]
    controller, lab, policy = _lab_run(workdir)
    controller.start()
    controller.wait_listening()
    try:
        lab.start()
        status = controller.wait_for(lambda s: len(s["switches"]) == 3, 30, "switches connected")
        connected = time.monotonic()
        links_up = None
        answered = None
        deadline = connected + 60
        while time.monotonic() < deadline and (links_up is None or answered is None):
            status = controller.status() or status
            if links_up is None and sum(1 for l in status.get("link_states", {}).get("declared", []) if l["up"]) == 3:
                links_up = time.monotonic() - connected
            if links_up is not None and answered is None and _answered(lab, "scada", "plc-b"):
                answered = time.monotonic() - connected
            time.sleep(0.1)
        return {"links_up_s": links_up, "matrix_s": answered}
    finally:
        lab.stop()
        controller.stop()


def bind_under_flood(workdir: Path, runs: int = 5) -> dict:  # type: ignore[type-arg]
    controller, lab, policy = _lab_run(workdir)
    controller.start()
    controller.wait_listening()
    times = []
    try:
        lab.start()
        controller.wait_for(lambda s: len(s["switches"]) == 3 and all(v["programmed"] for v in s["switches"].values()),
                            30, "programmed")
        intruder = lab.hosts["intruder"]
        flood = lab.node("intruder").popen(
            [sys.executable, "-m", "controller.lab.agent", "flood", "--intf", intruder.intf, "--rate", "200000",
             "--seconds", str(10 + 6 * runs), "--out", str(workdir / "flood.json")],
            env=dict(os.environ, PYTHONPATH=str(ROOT)))
        time.sleep(3)
        verifier = Verifier(lab, policy, controller.status, str(workdir / "agents"))  # type: ignore[arg-type]
        info = lab.hosts["plc-a"]  # on the intruder's switch
        for _ in range(runs):
            lab.node("plc-a").cmd(f"ip link set {info.intf} down")  # unbinds it (port down)
            controller.wait_for(lambda s: "plc-a" not in s["assets"]["located"], 20, "plc-a unbound")
            lab.node("plc-a").cmd(f"ip link set {info.intf} up")
            time.sleep(1.0)
            start = time.monotonic()
            while time.monotonic() - start < 30:
                verifier._send_raw("plc-a", info.intf, bytes.fromhex(  # noqa: SLF001  one gratuitous ARP
                    "ffffffffffff" + info.mac.replace(":", "") + "08060001080006040001" + info.mac.replace(":", "")
                    + "".join(f"{int(x):02x}" for x in (info.ip or "0.0.0.0").split(".")) + "000000000000"
                    + "".join(f"{int(x):02x}" for x in (info.ip or "0.0.0.0").split("."))))
                status = controller.status() or {}
                if "plc-a" in status.get("assets", {}).get("located", {}):
                    times.append(time.monotonic() - start)
                    break
                time.sleep(0.05)
        flood.wait(timeout=120)
        sent = json.loads((workdir / "flood.json").read_text())
        return {"runs": len(times), "bind_median_s": statistics.median(times) if times else None,
                "bind_max_s": max(times) if times else None, "flood_rate": sent["sent"] / sent["seconds"],
                "raw": times}
    finally:
        lab.stop()
        controller.stop()


def run_containment(workdir: Path, starts: int = 30) -> dict:  # type: ignore[type-arg]
    results = [fresh_start(workdir / f"start-{index}") for index in range(starts)]
    links = [r["links_up_s"] for r in results if r["links_up_s"] is not None]
    matrix = [r["matrix_s"] for r in results if r["matrix_s"] is not None]
    return {
        "fresh_starts": {"runs": starts, "links_up_all": len(links), "matrix_all": len(matrix),
                         "links_up_median_s": statistics.median(links) if links else None,
                         "links_up_max_s": max(links) if links else None,
                         "matrix_median_s": statistics.median(matrix) if matrix else None,
                         "matrix_max_s": max(matrix) if matrix else None,
                         "within_5s": sum(1 for r in results if r["matrix_s"] is not None and r["matrix_s"] <= 5),
                         "raw": results},
        "bind_under_flood": bind_under_flood(workdir / "bind-flood"),
    }
