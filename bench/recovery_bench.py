"""Packets lost on the plant lab while the ring is cut or the controller is down.

A steady 1,000 datagrams/s stream on an allowed conduit whose path crosses the cell ring
(hmi-1 -> plc-packer-1, udp 44818) and, at the same time, one on a denied conduit
(plc-packer-2 -> hmi-2, udp 44818), which must receive nothing.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable

from bench.changes import conduit_yaml, policy_texts
from bench.labrun import LabRun
from controller.io.files import load_lab, load_policy
from controller.lab.network import Lab
from controller.lab.process import ControllerProcess
from controller.lab.traffic import GroupStream, Stream
from controller.lab.verify import Verifier

ROOT = Path(__file__).resolve().parent.parent
ALLOWED = ("hmi-1", "plc-packer-1", 44818)
DENIED = ("plc-packer-2", "hmi-2", 44818)


class PlantBench(LabRun):
    def __init__(self, workdir: Path, fast_failover: bool = True, topology: str | None = None) -> None:
        """`topology`: another topology document of the plant (e.g. one that states switch profiles)."""
        self.policy_path = str(ROOT / "policies" / "plant.yaml")
        self.policy = load_policy(self.policy_path)
        topology = topology or str(ROOT / "topologies" / "plant.yaml")
        self.description = load_lab(topology, self.policy)
        extra = () if fast_failover else ("--no-fast-failover",)
        self.controller = ControllerProcess(self.policy_path, workdir / "controller", extra_args=extra,
                                            topology=topology)
        self.lab = Lab(self.description, self.policy)
        self.workdir = workdir

    def bring_up(self) -> None:
        self.controller.wait_listening()
        self.lab.start()
        Verifier(self.lab, self.policy, self.controller.status, str(self.workdir / "announce")).announce()

    def ready(self) -> None:
        links = len(self.description.links)
        self.controller.wait_for(lambda s: len(s["switches"]) == len(self.description.switches)
                                 and all(v["programmed"] for v in s["switches"].values())
                                 and len(s["links"]) == links and not s["assets"]["unlocated"], 60, "ready")
        time.sleep(1)

    def measure(self, name: str, seconds: float, event: Callable[[], None], after: Callable[[], None]) -> dict:  # type: ignore[type-arg]
        allowed = Stream(self.lab, *ALLOWED, seconds, self.workdir / name)
        denied = Stream(self.lab, *DENIED, seconds, self.workdir / name)
        allowed.start()
        denied.start()
        event()
        moving, blocked = allowed.result(), denied.result()
        after()
        self.ready()
        return {"sent": moving.sent, "lost": moving.lost, "largest_gap": moving.largest_gap,
                "denied_received": blocked.received}


def ring_cut(bench: PlantBench, run: int) -> dict:  # type: ignore[type-arg]
    def event() -> None:
        time.sleep(2)
        bench.lab.set_link("ring-1", "ring-2", up=False)

    return bench.measure(f"cut-{run}", 6, event, lambda: bench.lab.set_link("ring-1", "ring-2", up=True))


GROUP_FEED = ("plc-filler-1", "239.192.1.11", 2222)  # conduit filler-io-multicast
GROUP_ACROSS, GROUP_UNLISTED = "plc-packer-2", ("plc-packer-1", "hmi-1", "ied-1")


def group_ring_cut(bench: PlantBench, run: int) -> dict:  # type: ignore[type-arg]
    """The same cut under the IP multicast I/O stream: its tree toward plc-packer-2 crosses the
    cut link and is recomputed by the controller (multicast branches have no backup buckets);
    every sink has joined the group, the unlisted ones must receive nothing."""
    stream = GroupStream(bench.lab, *GROUP_FEED, [GROUP_ACROSS, *GROUP_UNLISTED], 6, bench.workdir / f"group-{run}")
    stream.start()
    time.sleep(1.5)
    bench.lab.set_link("ring-1", "ring-2", up=False)
    results = stream.results()
    bench.lab.set_link("ring-1", "ring-2", up=True)
    bench.ready()
    across = results[GROUP_ACROSS]
    return {"sent": across.sent, "lost": across.lost, "largest_gap": across.largest_gap,
            "denied_received": max(results[name].received for name in GROUP_UNLISTED)}


def controller_down(bench: PlantBench, run: int) -> dict:  # type: ignore[type-arg]
    def event() -> None:
        time.sleep(1)
        bench.controller.kill()
        time.sleep(10)
        bench.controller.start()

    return bench.measure(f"kill-{run}", 14, event, lambda: None)


# One-conduit changes for the update benchmarks: (label, source, target). The stream
# (hmi-1 -> plc-packer-1) is in neither conduit; the second series changes what its sender
# may do, which in per-port ACL controllers rewrites the ACL the stream passes through.
CHANGES = {"other_devices": ("historian", "time-server"), "stream_sender": ("hmi-1", "office-pc")}


def policy_updates(bench: PlantBench, source: str, target: str, pushes: int = 20) -> dict:  # type: ignore[type-arg]
    """Apply time of one-conduit changes (barrier-confirmed on every switch; each to a policy never
    compiled before) and packets lost on a conduit present in every version, across `pushes` pushes."""
    texts = policy_texts(Path(bench.policy_path).read_bytes(), pushes, lambda k: conduit_yaml(k, source, target))
    stream = Stream(bench.lab, *ALLOWED, pushes * 0.6 + 2, bench.workdir / f"updates-{source}")
    denied = Stream(bench.lab, *DENIED, pushes * 0.6 + 2, bench.workdir / f"updates-{source}")
    stream.start()
    denied.start()
    time.sleep(1)
    seconds, flow_mods = [], []
    for text in texts:
        answer = bench.controller.post("/v1/policy", text, timeout=60)
        seconds.append(answer["seconds"])
        flow_mods.append(answer["flow_mods"])
        time.sleep(0.5)
    result, blocked = stream.result(), denied.result()
    return {"pushes": pushes, "apply_median_s": statistics.median(seconds), "apply_min_s": min(seconds),
            "apply_max_s": max(seconds), "flow_mods_median": statistics.median(flow_mods), "sent": result.sent,
            "lost": result.lost, "change": f"{source} -> {target}", "denied_sent": blocked.sent,
            "denied_received": blocked.received}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _packet_ins(bench: PlantBench) -> float:
    with urllib.request.urlopen(bench.controller.api_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("otseg_packet_ins_total"))


def _window(bench: PlantBench, seconds: float) -> tuple[float, float]:
    pid = bench.controller.pid
    assert pid is not None
    cpu, pins, start = _cpu_seconds(pid), _packet_ins(bench), time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - start
    return (_cpu_seconds(pid) - cpu) / elapsed, (_packet_ins(bench) - pins) / elapsed


def unknown_host_flood(bench: PlantBench, rate: float = 10000, seconds: float = 20, pushes: int = 4,  # type: ignore[type-arg]
                       kind: str = "varied") -> dict:
    """The rogue laptop (no asset) sends `rate` varied frames/s. Measured: controller CPU (share of
    one core) and packet-ins/s, idle and under the flood; one-conduit pushes during the flood; and
    datagrams lost meanwhile by an allowed 1,000/s stream."""
    idle_cpu, idle_pins = _window(bench, 8)
    tracebacks = bench.controller.log_text().count("Traceback")
    info = bench.lab.hosts["rogue-laptop"]
    out = bench.workdir / f"flood-{kind}.json"
    flood = bench.lab.node("rogue-laptop").popen(
        [sys.executable, "-m", "controller.lab.agent", "flood", "--intf", info.intf, "--rate", str(rate),
         "--seconds", str(seconds), "--out", str(out), "--kind", kind], env=dict(os.environ, PYTHONPATH=str(ROOT)))
    stream = Stream(bench.lab, *ALLOWED, seconds - 4, bench.workdir / f"flood-stream-{kind}")
    time.sleep(2)
    stream.start()
    flood_cpu, flood_pins = _window(bench, 6)
    texts = policy_texts(Path(bench.policy_path).read_bytes(), pushes,
                         lambda k: conduit_yaml(k + 50, "historian", "time-server"))
    trips, applied = [], []
    for text in texts:
        start = time.perf_counter()
        applied.append(bench.controller.post("/v1/policy", text, timeout=60)["seconds"])
        trips.append(time.perf_counter() - start)
        time.sleep(0.5)
    result = stream.result()
    flood.wait(timeout=seconds + 30)
    sent = json.loads(out.read_text())
    return {"rate_target": rate, "flood_sent": sent["sent"], "flood_rate": sent["sent"] / sent["seconds"],
            "cpu_idle": idle_cpu, "cpu_flood": flood_cpu, "packet_ins_idle": idle_pins,
            "packet_ins_flood": flood_pins, "push_round_trip_max_s": max(trips),
            "push_round_trip_median_s": statistics.median(trips), "push_apply_median_s": statistics.median(applied),
            "pushes": pushes, "stream_sent": result.sent, "stream_lost": result.lost, "kind": kind,
            "tracebacks": bench.controller.log_text().count("Traceback") - tracebacks}


def summarise(results: list[dict]) -> dict:  # type: ignore[type-arg]
    lost = [r["lost"] for r in results]
    return {"runs": len(results), "lost_median": statistics.median(lost), "lost_min": min(lost),
            "lost_max": max(lost), "sent_median": statistics.median(r["sent"] for r in results),
            "denied_received_max": max(r["denied_received"] for r in results), "raw": results}


def run_all(workdir: Path, runs: int = 3) -> dict[str, dict]:  # type: ignore[type-arg]
    results: dict[str, dict] = {}  # type: ignore[type-arg]
    with PlantBench(workdir / "ff") as bench:
        results["ring_cut_fast_failover"] = summarise([ring_cut(bench, i) for i in range(runs)])
        results["group_ring_cut"] = summarise([group_ring_cut(bench, i) for i in range(runs)])
        results["controller_killed_10s"] = summarise([controller_down(bench, i) for i in range(runs)])
        results["policy_updates"] = policy_updates(bench, *CHANGES["other_devices"])
        results["policy_updates_sender"] = policy_updates(bench, *CHANGES["stream_sender"])
        results["unknown_host_flood"] = unknown_host_flood(bench)
        results["malformed_flood"] = unknown_host_flood(bench, rate=1000, kind="malformed")
    with PlantBench(workdir / "recompute", fast_failover=False) as bench:
        results["ring_cut_controller_only"] = summarise([ring_cut(bench, i) for i in range(runs)])
    return results
