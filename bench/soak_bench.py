"""The controller under an outsider's random MACs, and a long soak of everything at once.

- Random-MAC flood: the lab's unknown device sends `frames` frames (default 1,000,000), each
  from a source MAC never used before, at `rate`/s, while an allowed 1,000/s stream crosses
  the ring. Sampled every 10 s: the controller's RSS and CPU. Targets: RSS flat after warm-up
  (growth under 50 MB), 0 datagrams of the stream lost.
- Soak: for `minutes` (default 10), one random event every few seconds out of: a ring link
  flap, a switch that loses and regains its controller, a push of a one-conduit change, a
  rollback, a bad push (refused), a controller SIGKILL and restart, a 10 s flood. An allowed and
  a denied stream run throughout. At the end every switch's tables (read with ovs-ofctl) must
  equal a fresh compile of the final policy on the full topology (loaded into a scratch bridge).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

from bench.changes import conduit_yaml, policy_texts
from bench.recovery_bench import ALLOWED, DENIED, PlantBench, _cpu_seconds
from controller.core.compiler import compile_tables
from controller.io.files import load_policy_text
from controller.lab.tables import dump, dump_groups, reference_dump
from controller.lab.traffic import Stream

ROOT = Path(__file__).resolve().parent.parent
BAD_POLICY = ROOT / "tests" / "corpus" / "61-alias-chain.yaml"


def _rss_mb(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _flood(bench: PlantBench, kind: str, rate: float, seconds: float, name: str) -> subprocess.Popen[bytes]:
    info = bench.lab.hosts["rogue-laptop"]
    return bench.lab.node("rogue-laptop").popen(
        [sys.executable, "-m", "controller.lab.agent", "flood", "--intf", info.intf, "--rate", str(rate),
         "--seconds", str(seconds), "--out", str(bench.workdir / f"{name}.json"), "--kind", kind],
        env=dict(os.environ, PYTHONPATH=str(ROOT)))


def random_mac_flood(bench: PlantBench, frames: int = 1_000_000, rate: float = 5000) -> dict[str, Any]:
    seconds = frames / rate
    pid = bench.controller.pid
    assert pid is not None
    tracebacks = bench.controller.log_text().count("Traceback")
    stream = Stream(bench.lab, *ALLOWED, seconds + 5, bench.workdir / "macs-stream")
    stream.start()
    time.sleep(2)
    flood = _flood(bench, "macs", rate, seconds, "macs-flood")
    samples: list[dict[str, float]] = []
    start, cpu = time.monotonic(), _cpu_seconds(pid)
    while flood.poll() is None:
        time.sleep(10)
        now, used = time.monotonic(), _cpu_seconds(pid)
        samples.append({"t": round(now - start, 1), "rss_mb": round(_rss_mb(pid), 1),
                        "cpu": round((used - cpu) / 10, 3)})
        cpu = used
    result = stream.result()
    sent = json.loads((bench.workdir / "macs-flood.json").read_text())
    warm = [s["rss_mb"] for s in samples if s["t"] >= 30] or [s["rss_mb"] for s in samples]
    status = bench.controller.status() or {}
    return {"frames_sent": sent["sent"], "flood_rate": sent["sent"] / sent["seconds"], "seconds": sent["seconds"],
            "rss_start_mb": samples[0]["rss_mb"] if samples else None, "rss_after_warmup_mb": warm[0],
            "rss_max_mb": max(warm), "rss_growth_after_warmup_mb": max(warm) - warm[0],
            "cpu_median": statistics.median(s["cpu"] for s in samples), "samples": samples,
            "stream_sent": result.sent, "stream_lost": result.lost,
            "unknown_reported": status.get("events", {}).get("unknown-device"),
            "tracebacks": bench.controller.log_text().count("Traceback") - tracebacks}


class Soak:
    def __init__(self, bench: PlantBench, seed: int) -> None:
        self.bench, self.rng = bench, random.Random(seed)
        self.texts = policy_texts(Path(bench.policy_path).read_bytes(), 40,
                                  lambda k: conduit_yaml(k + 80, "historian", "time-server"))
        self.counts: dict[str, int] = {}
        self.rss: list[tuple[float, float]] = []
        self.failures: list[str] = []
        self.timeline: list[tuple[float, str]] = []  # (seconds from the start, event), to read beside the logs

    def _post(self, path: str, body: bytes, content_type: str = "application/yaml") -> int:
        try:
            self.bench.controller.post(path, body, content_type)
            return 200
        except urllib.error.HTTPError as error:
            return error.code

    def link_flap(self) -> None:
        link = self.rng.choice([l for l in self.bench.description.links])
        names = dict((dpid, name) for name, dpid in self.bench.description.switches)
        self.bench.lab.set_link(names[link.a.dpid], names[link.b.dpid], up=False)
        time.sleep(self.rng.uniform(0.5, 3))
        self.bench.lab.set_link(names[link.a.dpid], names[link.b.dpid], up=True)

    def switch_reconnect(self) -> None:
        name, _ = self.rng.choice(self.bench.description.switches)
        self.bench.lab.cut_control(name)
        time.sleep(self.rng.uniform(1, 4))
        self.bench.lab.restore_control(name)

    def push(self) -> None:
        code = self._post("/v1/policy", self.rng.choice(self.texts))
        if code != 200:
            self.failures.append(f"push answered {code}")

    def rollback(self) -> None:
        code = self._post("/v1/rollback", b"{}", "application/json")
        if code not in (200, 404):
            self.failures.append(f"rollback answered {code}")

    def bad_push(self) -> None:
        code = self._post("/v1/policy", BAD_POLICY.read_bytes())
        if code != 422:
            self.failures.append(f"a bad push answered {code}, not 422")

    def kill_restart(self) -> None:
        self.bench.controller.kill()
        time.sleep(self.rng.uniform(1, 5))
        self.bench.controller.start()
        self.bench.controller.wait_listening()

    def flood(self) -> None:
        _flood(self.bench, self.rng.choice(["varied", "macs", "malformed"]), 2000, 10, "soak-flood").wait(timeout=60)

    def run(self, minutes: float) -> None:
        events: list[Callable[[], None]] = [self.link_flap, self.switch_reconnect, self.push, self.rollback,
                                            self.bad_push, self.kill_restart, self.flood]
        start = time.monotonic()
        while time.monotonic() - start < minutes * 60:
            event = self.rng.choice(events)
            self.counts[event.__name__] = self.counts.get(event.__name__, 0) + 1
            self.timeline.append((round(time.monotonic() - start, 1), event.__name__))
            try:
                event()
            except Exception as error:  # noqa: BLE001  (reported in the results, the soak goes on)
                self.failures.append(f"{event.__name__}: {error}")
            self.rss.append((round(time.monotonic() - start, 1), round(_rss_mb(self.bench.controller.pid), 1)))
            time.sleep(self.rng.uniform(1, 6))


def _final_tables_match(bench: PlantBench, timeout: float = 90) -> tuple[bool, list[str]]:
    """Every switch's tables equal a fresh compile of the policy in force on the full topology."""
    deadline = time.monotonic() + timeout
    differing: list[str] = []
    while time.monotonic() < deadline:
        with urllib.request.urlopen(bench.controller.api_url + "/v1/policy", timeout=30) as response:
            text = json.loads(response.read())["text"].encode()
        policy = load_policy_text(text, "in-force.yaml")
        expected = compile_tables(policy, bench.description.to_topology(policy))
        names = {dpid: name for name, dpid in bench.description.switches}
        differing = [names[d] for d, tables in sorted(expected.items())
                     if dump(bench.lab.switch_node(names[d])) + dump_groups(bench.lab.switch_node(names[d]))
                     != reference_dump(tables)]
        if not differing:
            return True, []
        time.sleep(3)
    return False, differing


def soak(bench: PlantBench, minutes: float = 10, seed: int = 62443) -> dict[str, Any]:
    seconds = minutes * 60 + 30
    allowed = Stream(bench.lab, *ALLOWED, seconds, bench.workdir / "soak-allowed", rate=200)
    denied = Stream(bench.lab, *DENIED, seconds, bench.workdir / "soak-denied", rate=200)
    allowed.start()
    denied.start()
    run = Soak(bench, seed)
    run.run(minutes)
    moving, blocked = allowed.result(), denied.result()
    bench.ready()
    match, differing = _final_tables_match(bench)
    rss = [mb for _, mb in run.rss if mb]
    return {"minutes": minutes, "events": run.counts, "event_failures": run.failures[:20],
            "allowed_sent": moving.sent, "allowed_lost": moving.lost, "allowed_largest_gap": moving.largest_gap,
            "denied_received": blocked.received, "final_tables_equal_fresh_compile": match,
            "differing_switches": differing, "timeline": run.timeline, "rss_mb": run.rss, "rss_min_mb": min(rss) if rss else None,
            "rss_max_mb": max(rss) if rss else None}


def run_soak(workdir: Path, quick: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with PlantBench(workdir / "macs") as bench:
        results["random_mac_flood"] = random_mac_flood(bench, 100_000 if quick else 1_000_000)
    with PlantBench(workdir / "soak") as bench:
        results["soak"] = soak(bench, 2 if quick else 10)
    return results
