"""Packets lost on the plant lab while the ring is cut or the controller is down.

A steady 1,000 datagrams/s stream on an allowed conduit whose path crosses the cell ring
(hmi-1 -> plc-packer-1, udp 44818) and, at the same time, one on a denied conduit
(plc-packer-2 -> hmi-2, udp 44818), which must receive nothing.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable

from controller.io.files import load_lab, load_policy
from controller.lab.network import Lab
from controller.lab.process import ControllerProcess
from controller.lab.traffic import Stream
from controller.lab.verify import Verifier

ROOT = Path(__file__).resolve().parent.parent
ALLOWED = ("hmi-1", "plc-packer-1", 44818)
DENIED = ("plc-packer-2", "hmi-2", 44818)


class PlantBench:
    def __init__(self, workdir: Path, fast_failover: bool = True) -> None:
        self.policy_path = str(ROOT / "policies" / "plant.yaml")
        self.policy = load_policy(self.policy_path)
        self.description = load_lab(ROOT / "topologies" / "plant.yaml", self.policy)
        extra = () if fast_failover else ("--no-fast-failover",)
        self.controller = ControllerProcess(self.policy_path, workdir / "controller", extra_args=extra)
        self.lab = Lab(self.description, self.policy)
        self.workdir = workdir

    def __enter__(self) -> "PlantBench":
        subprocess.run(["mn", "-c"], capture_output=True, check=False)
        self.controller.start()
        self.controller.wait_listening()
        self.lab.start()
        Verifier(self.lab, self.policy, self.controller.status, str(self.workdir / "announce")).announce()
        return self

    def __exit__(self, *_: object) -> None:
        self.lab.stop()
        self.controller.stop()

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


def controller_down(bench: PlantBench, run: int) -> dict:  # type: ignore[type-arg]
    def event() -> None:
        time.sleep(1)
        bench.controller.kill()
        time.sleep(10)
        bench.controller.start()

    return bench.measure(f"kill-{run}", 14, event, lambda: None)


ONE_CONDUIT = b"""
  - name: bench-extra-conduit
    from: historian
    to: time-server
    services: [icmp]
    reason: "Benchmark: one conduit added and removed"
"""


def policy_updates(bench: PlantBench, pushes: int = 20) -> dict:  # type: ignore[type-arg]
    """Apply time of a one-conduit change (barrier-confirmed on every switch) and packets lost on a
    conduit present in both versions, across `pushes` alternating pushes."""
    import json  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    base = Path(bench.policy_path).read_bytes()
    variants = [base + ONE_CONDUIT, base]
    stream = Stream(bench.lab, *ALLOWED, pushes * 0.6 + 2, bench.workdir / "updates")
    stream.start()
    time.sleep(1)
    seconds = []
    for index in range(pushes):
        request = urllib.request.Request(bench.controller.api_url + "/v1/policy", data=variants[index % 2],
                                         method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            seconds.append(json.loads(response.read())["seconds"])
        time.sleep(0.5)
    result = stream.result()
    return {"pushes": pushes, "apply_median_s": statistics.median(seconds), "apply_min_s": min(seconds),
            "apply_max_s": max(seconds), "sent": result.sent, "lost": result.lost}


def summarise(results: list[dict]) -> dict:  # type: ignore[type-arg]
    lost = [r["lost"] for r in results]
    return {"runs": len(results), "lost_median": statistics.median(lost), "lost_min": min(lost),
            "lost_max": max(lost), "sent_median": statistics.median(r["sent"] for r in results),
            "denied_received_max": max(r["denied_received"] for r in results), "raw": results}


def run_all(workdir: Path, runs: int = 3) -> dict[str, dict]:  # type: ignore[type-arg]
    results: dict[str, dict] = {}  # type: ignore[type-arg]
    with PlantBench(workdir / "ff") as bench:
        results["ring_cut_fast_failover"] = summarise([ring_cut(bench, i) for i in range(runs)])
        results["controller_killed_10s"] = summarise([controller_down(bench, i) for i in range(runs)])
        results["policy_updates"] = policy_updates(bench)
    with PlantBench(workdir / "recompute", fast_failover=False) as bench:
        results["ring_cut_controller_only"] = summarise([ring_cut(bench, i) for i in range(runs)])
    return results
