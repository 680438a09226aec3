"""High availability: takeovers of a two-instance cluster on the plant lab, and store faults.

Two otseg instances (a, b) on every bridge, etcd on loopback (one member; then three). For
each run: an allowed and a denied stream at 1,000 datagrams/s, a push to the leader, the
leader SIGKILLed at once; measured until one instance holds MASTER on every switch as Open
vSwitch reports it (`ovs-vsctl list controller`), then the killed instance is restarted as
a follower. Also: a ring link cut right after the kill (fast failover only until the new
leader), the leader SIGSTOPped and resumed (its writes refused, roles as the switches say),
etcd killed (pushes refused, the topology still followed), and a three-member etcd losing a
member (pushes still work) then its quorum (refused).

    python -m bench.ha_bench [--runs N]
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ALLOWED = ("hmi-1", "plc-packer-1", 44818)
DENIED = ("plc-packer-2", "hmi-2", 44818)
EVENTS = '''  - name: events-to-historian
    from: supervisory
    to: historian
    services: [syslog]
    reason: "HMI and EWS events are archived by the historian"
'''


def _cluster(workdir: Path, members: int) -> Any:
    sys.path.insert(0, str(ROOT))
    from controller.io.files import load_lab, load_policy  # noqa: PLC0415
    from controller.lab.ha import ClusterLab  # noqa: PLC0415
    from controller.lab.network import Lab  # noqa: PLC0415
    from controller.lab.verify import Verifier  # noqa: PLC0415

    policy_path, topology_path = str(ROOT / "policies" / "plant.yaml"), str(ROOT / "topologies" / "plant.yaml")
    policy = load_policy(policy_path)
    description = load_lab(topology_path, policy)
    for name, _ in description.switches:
        subprocess.run(["ovs-vsctl", "--if-exists", "del-br", Lab.switch_node(name)], check=False)
    lab = Lab(description, policy, 6653, more_controllers=(6654,))
    cluster = ClusterLab(lab, policy_path, topology_path, workdir, etcd_members=members)
    cluster.start_controllers()
    lab.start()
    Verifier(lab, policy, cluster.instances["a"].status, str(workdir / "announce")).announce()
    cluster.restart_ready = _sees(description)  # type: ignore[attr-defined]
    cluster.instances["b"].wait_for(cluster.restart_ready, 60, "b sees the plant")  # type: ignore[attr-defined]
    return cluster


def _sees(description: Any) -> Any:
    links, switches = len(description.links), len(description.switches)
    return lambda s: len(s["switches"]) == switches and len(s["links"]) == links and not s["assets"]["unlocated"]


def _texts() -> tuple[bytes, bytes]:
    plant = (ROOT / "policies" / "plant.yaml").read_text()
    return plant.encode(), plant.replace(EVENTS, "").encode()


def takeovers(cluster: Any, runs: int, workdir: Path, cut: bool = False) -> list[dict[str, Any]]:
    from controller.lab.ha import kill_leader_once  # noqa: PLC0415

    plant, without = _texts()
    rows = []
    for index in range(runs):
        candidate = without if index % 2 == 0 else plant
        leader = cluster.leader()
        action = (lambda: cluster.lab.set_link("ring-1", "ring-2", up=False)) if cut else None
        try:
            result = kill_leader_once(cluster, ALLOWED, DENIED, candidate, workdir / f"kill-{index}", action)
        finally:
            if cut:
                cluster.lab.set_link("ring-1", "ring-2", up=True)
        rows.append(asdict(result))
        print(f"ha: takeover {index + 1}/{runs}{' with a ring cut' if cut else ''}: {result}", flush=True)
        cluster.restart(leader, cluster.restart_ready)
        time.sleep(1.0)
    return rows


def stopped_leader(cluster: Any) -> dict[str, Any]:
    """SIGSTOP the leader until the other one leads, push there, resume: who writes, per the switches."""
    plant, without = _texts()
    leader, _ = cluster.wait_leader()
    other = next(n for n in cluster.running() if n != leader)
    process = cluster.instances[leader].process
    started = time.monotonic()
    os.kill(process.pid, signal.SIGSTOP)
    try:
        _, seconds = cluster.wait_leader(not_=leader, timeout=10)
        code, _, _ = cluster.post(other, "/v1/policy", without)
        cluster.lab.set_link("ring-3", "ring-4", up=False)
        cluster.lab.set_link("ring-3", "ring-4", up=True)
    finally:
        os.kill(process.pid, signal.SIGCONT)
    stopped_for = time.monotonic() - started
    cluster.instances[leader].wait_for(lambda s: s.get("cluster", {}).get("role") == "follower", 15, "deposed")
    time.sleep(3)
    status = cluster.status(leader)["cluster"]
    row = {"takeover_s": seconds, "stopped_s": stopped_for, "push_on_new_leader": code,
           "new_leader_master_everywhere": cluster.settled_on(other), "leader_after": cluster.leader(),
           "writes_refused_as_slave": status["writes_refused_as_slave"]}
    cluster.post(other, "/v1/policy", plant)
    print(f"ha: stopped leader: {row}", flush=True)
    return row


def store_down(cluster: Any) -> dict[str, Any]:
    """etcd killed: pushes refused at once, the topology still followed, then healed."""
    plant, without = _texts()
    leader, _ = cluster.wait_leader()
    follower = next(n for n in cluster.running() if n != leader)
    for index in range(len(cluster.etcd.names)):
        cluster.etcd.stop_member(index)
    time.sleep(3)
    started = time.monotonic()
    leader_code, leader_answer, _ = cluster.post(leader, "/v1/policy", without)
    refusal_s = time.monotonic() - started
    follower_code, _, _ = cluster.post(follower, "/v1/policy", without)
    master_kept = cluster.settled_on(leader)
    flows_before = _flow_count(cluster)
    cluster.lab.set_link("ring-1", "ring-2", up=False)
    time.sleep(3)
    followed = cluster.status(leader).get("links") != []
    cluster.lab.set_link("ring-1", "ring-2", up=True)
    time.sleep(3)
    flows_after = _flow_count(cluster)
    started = time.monotonic()
    for index in range(len(cluster.etcd.names)):
        cluster.etcd.start_member(index, wait=False)
    cluster.etcd.wait_healthy(range(len(cluster.etcd.names)))
    healed, _ = cluster.wait_leader(timeout=30)
    cluster.instances[healed].wait_for(lambda s: s["cluster"]["authoritative"], 30, "the lease renewed")
    healed_s = time.monotonic() - started
    code, _, _ = cluster.post(healed, "/v1/policy", plant)
    row = {"leader_push_code": leader_code, "leader_error": leader_answer.get("error", "")[:160],
           "follower_push_code": follower_code, "refusal_s": refusal_s, "master_kept": master_kept,
           "flows_before": flows_before, "flows_after": flows_after, "topology_followed": followed,
           "healed_s": healed_s, "push_after_heal": code}
    print(f"ha: store down: {row}", flush=True)
    return row


def quorum(cluster: Any) -> dict[str, Any]:
    """Three etcd members: one killed (pushes still work, a takeover still happens), then two (refused)."""
    plant, without = _texts()
    cluster.etcd.stop_member(0)
    cluster.etcd.wait_healthy([1, 2])  # the two left elect an etcd leader (a second or two, if it was member 0)
    leader, _ = cluster.wait_leader()
    cluster.instances[leader].wait_for(lambda s: s["cluster"]["authoritative"], 20, "the lease renewed")
    one_down, _, _ = cluster.post(leader, "/v1/policy", without)
    from controller.lab.ha import kill_leader_once  # noqa: PLC0415

    result = kill_leader_once(cluster, ALLOWED, DENIED, plant, Path(cluster.etcd.workdir) / "quorum-kill")
    cluster.restart(leader, cluster.restart_ready)
    cluster.etcd.stop_member(1)
    time.sleep(3)
    leader = cluster.leader() or leader
    two_down, _, _ = cluster.post(leader, "/v1/policy", without)
    cluster.etcd.start_member(0, wait=False)
    cluster.etcd.start_member(1, wait=False)
    cluster.etcd.wait_healthy([0, 1, 2])
    healed, _ = cluster.wait_leader(timeout=30)
    cluster.instances[healed].wait_for(lambda s: s["cluster"]["authoritative"], 30, "the lease renewed")
    after, _, _ = cluster.post(healed, "/v1/policy", plant)
    row = {"push_one_member_down": one_down, "takeover_one_member_down": asdict(result),
           "push_two_members_down": two_down, "push_after_heal": after}
    print(f"ha: quorum: {row}", flush=True)
    return row


def _flow_count(cluster: Any) -> int:
    from controller.lab.tables import dump  # noqa: PLC0415

    return sum(len(dump(bridge)) for bridge in sorted(cluster.bridges))


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = [row["seconds"] for row in rows]
    return {"runs": len(rows), "takeover_median_s": statistics.median(seconds), "takeover_max_s": max(seconds),
            "allowed_sent": sum(r["allowed_sent"] for r in rows), "allowed_lost": sum(r["allowed_lost"] for r in rows),
            "denied_received": sum(r["denied_received"] for r in rows),
            "pushes_in_force": sum(1 for r in rows if r["pushed_in_force"]), "rows": rows}


def run_ha(workdir: Path, runs: int = 5) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    cluster = _cluster(workdir / "one", 1)
    try:
        results["kill"] = _summary(takeovers(cluster, runs, workdir / "one"))
        results["kill_ring_cut"] = _summary(takeovers(cluster, max(1, runs // 2), workdir / "one", cut=True))
        results["stopped"] = stopped_leader(cluster)
        results["store_down"] = store_down(cluster)
    finally:
        cluster.lab.stop()
        cluster.stop()
    cluster = _cluster(workdir / "three", 3)
    try:
        results["quorum"] = quorum(cluster)
    finally:
        cluster.lab.stop()
        cluster.stop()
    return results


if __name__ == "__main__":
    import argparse  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(run_ha(Path(tempfile.mkdtemp(prefix="otseg-ha-", dir="/var/tmp")), args.runs), indent=1))
