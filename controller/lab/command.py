"""`otseg lab`: build a lab in Mininet, verify the policy with real traffic, tear it all down.

Exit 0 when every probe behaved as the policy says, 1 on any mismatch, 2 on invalid input.
Leaves nothing running: the lab's switches and hosts, the agents and (when started here)
the controller are stopped whatever happens.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from controller.io.files import load_lab, load_policy
from controller.lab.network import Lab
from controller.lab.ha import ClusterLab, kill_leader_once
from controller.lab.isolation import run_isolation
from controller.lab.mission import _pushed_policy, _udp_pairs, run_mission
from controller.lab.process import ControllerProcess
from controller.lab.report import render
from controller.lab.scenarios import Scenarios
from controller.lab.verify import Verifier

ROOT = Path(__file__).resolve().parent.parent.parent


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    lab = commands.add_parser("lab", help="verify a policy with real traffic in a Mininet lab (root)")
    lab.add_argument("--topology", default=str(ROOT / "topologies" / "plant.yaml"), metavar="TOPO")
    lab.add_argument("--policy", metavar="FILE", help="default: the policy the topology file names")
    lab.add_argument("--start-controller", action="store_true", help="run `otseg run` for the lab and stop it after")
    lab.add_argument("--controller-port", type=int, default=6653)
    lab.add_argument("--status-file", help="status file of an already running controller")
    lab.add_argument("--workdir", help="where agent logs and the controller log go (default: a new temp folder)")
    lab.add_argument("--no-mission", dest="mission", action="store_false",
                     help="skip the streams through a ring cut, a push and a controller restart after the matrix")
    lab.add_argument("--ha", action="store_true",
                     help="run two otseg instances coordinated by an etcd (started on loopback) and show a takeover: "
                          "the leader is SIGKILLed right after a push, with an allowed and a denied stream running")
    lab.add_argument("--keep", action="store_true",
                     help="after the run, keep the lab and the controller up for a person to look at the console, "
                          "until Ctrl-C (with --start-controller)")
    lab.set_defaults(handler=run_lab)


def policy_for(topology: str, policy: str | None) -> str:
    if policy:
        return policy
    lab = load_lab(topology)
    if not lab.policy:
        raise SystemExit(f"{topology}: names no policy; give --policy")
    return str(ROOT / "policies" / lab.policy)


def run_lab(args: argparse.Namespace) -> int:
    policy_path = policy_for(args.topology, args.policy)
    policy = load_policy(policy_path)
    lab_description = load_lab(args.topology, policy)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="otseg-lab-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.ha:
        return run_ha_lab(lab_description, policy, policy_path, str(args.topology), workdir, args.controller_port)
    controller = None
    if args.start_controller:
        controller = ControllerProcess(policy_path, workdir, args.controller_port, topology=str(args.topology))
        controller.start()
        controller.wait_listening()
        status = controller.status
        print(console_line(controller), flush=True)
    elif args.status_file:
        status = _reader(Path(args.status_file))
    else:
        raise SystemExit("give --start-controller or the --status-file of a running controller")
    for name, _ in lab_description.switches:
        subprocess.run(["ovs-vsctl", "--if-exists", "del-br", Lab.switch_node(name)], check=False)
    lab = Lab(lab_description, policy, args.controller_port)
    started = time.monotonic()
    try:
        print(f"Building lab {lab_description.name!r}: {len(lab_description.switches)} switches, "
              f"{len(lab_description.links)} links, {len(lab_description.hosts)} hosts (Open vSwitch, userspace "
              f"datapath, OpenFlow 1.3, fail-mode secure)", flush=True)
        lab.start()
        outcome = Verifier(lab, policy, status, str(workdir / "agents")).run()
        print(render(outcome, policy))
        breaches = 0
        if controller is not None:
            final = controller.status() or {}
            flows = {name: s["flows"] for name, s in final.get("switches", {}).items()}
            print(f"Flows per switch: {flows}; packet-ins by reason: {final.get('packet_ins')}")
            if args.mission:
                print("Attack scenarios (more than one frame each):")
                for result in Scenarios(lab, policy, controller, workdir / "scenarios").run():
                    print(f"  {result.name:<34} {'held' if result.held else 'FAILED'}: {result.detail}")
                    breaches += 0 if result.held else 1
                steps = run_mission(lab, policy, controller, workdir / "mission")
                breaches += sum(step.denied_received for step in steps)
                breaches += sum(step.breach for step in run_isolation(lab, policy, controller, workdir / "isolation"))
        print(f"Lab run took {time.monotonic() - started:.1f} s; logs in {workdir}")
        if args.keep and controller is not None:
            print(console_line(controller) + "\nThe lab stays up until Ctrl-C.", flush=True)
            _wait_for_interrupt()
        return 0 if not outcome.mismatches and not breaches else 1
    finally:
        lab.stop()
        if controller is not None:
            controller.stop()


def console_line(controller: ControllerProcess) -> str:
    token = controller.state_dir / "api-token"
    return (f"Console: {controller.api_url}/console/ (read-only as it is; to change anything, sign in with the "
            f"API token: the part after the colon in {token})")


def _wait_for_interrupt() -> None:
    import signal  # noqa: PLC0415

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` tears the lab down like Ctrl-C
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        for signum in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the tear-down short
            signal.signal(signum, signal.SIG_IGN)
        print("stopping the lab", flush=True)


def _reader(path: Path):  # type: ignore[no-untyped-def]
    import json  # noqa: PLC0415

    def read() -> dict | None:  # type: ignore[type-arg]
        try:
            return json.loads(path.read_text())  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return None

    return read



def run_ha_lab(description: Any, policy: Any, policy_path: str, topology: str, workdir: Path, port: int) -> int:
    """`otseg lab --ha`: the matrix through a cluster's leader, then a takeover under traffic."""
    for name, _ in description.switches:
        subprocess.run(["ovs-vsctl", "--if-exists", "del-br", Lab.switch_node(name)], check=False)
    lab = Lab(description, policy, port, more_controllers=(port + 1,))
    cluster = ClusterLab(lab, policy_path, topology, workdir, ofp_port=port)
    started = time.monotonic()
    try:
        print(f"Starting etcd ({cluster.etcd.endpoints}) and otseg instances a (leader) and b (follower)", flush=True)
        cluster.start_controllers()
        lab.start()
        outcome = Verifier(lab, policy, cluster.instances["a"].status, str(workdir / "agents")).run()
        print(render(outcome, policy))
        leader, _ = cluster.wait_leader()
        print(f"Leader {leader}: MASTER on every switch, the other instance SLAVE (read from Open vSwitch)")
        allowed, denied = _udp_pairs(policy, lab)
        breaches = 0
        if allowed is not None and denied is not None:
            result = kill_leader_once(cluster, allowed, denied, _pushed_policy(policy_path), workdir / "takeover")
            breaches = result.denied_received
            print(f"Leader SIGKILLed right after a push: a follower holds MASTER everywhere after {result.seconds:.2f} s; "
                  f"allowed stream {allowed[0]} -> {allowed[1]}: {result.allowed_lost} lost of {result.allowed_sent}; "
                  f"denied stream: {result.denied_received} received; the push is "
                  f"{'in force' if result.pushed_in_force else 'NOT in force'}")
            breaches += 0 if result.pushed_in_force else 1
        print(f"Lab run took {time.monotonic() - started:.1f} s; logs in {workdir}")
        if args.keep and controller is not None:
            print(console_line(controller) + "\nThe lab stays up until Ctrl-C.", flush=True)
            _wait_for_interrupt()
        return 0 if not outcome.mismatches and not breaches else 1
    finally:
        lab.stop()
        cluster.stop()
