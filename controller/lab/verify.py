"""Run the probe plan on a started lab and report expected against observed.

Steps: start an agent in every host; announce every asset (a gratuitous ARP, or an L2
frame for IP-less devices) until the controller reports it located; run all probes of
all hosts in parallel; read what every host sniffed; compare with the policy.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from controller.core.model import Policy
from controller.lab.network import Lab
from controller.lab.plan import Planner, Probe, _arp_frame, _ethernet

ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass
class Outcome:
    probes: list[Probe]
    seconds: float

    @property
    def mismatches(self) -> list[Probe]:
        return [p for p in self.probes if not p.matches]


class Verifier:
    def __init__(self, lab: Lab, policy: Policy, status: Callable[[], dict[str, Any] | None],
                 workdir: str | None = None) -> None:
        self.lab = lab
        self.policy = policy
        self.status = status
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="otseg-lab-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.agents: list[Any] = []

    def _python(self) -> str:
        return sys.executable

    def start_agents(self, tcp_ports: set[int], udp_ports: set[int]) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        ready = []
        for info in self.lab.hosts.values():
            marker = self.workdir / f"{info.name}.sniff.ready"
            marker.unlink(missing_ok=True)
            ready.append((info.name, marker))
            args = [self._python(), "-m", "controller.lab.agent", "serve", "--intf", info.intf,
                    "--log", str(self.workdir / f"{info.name}.sniff"), "--bind", info.ip or "0.0.0.0"]
            if info.ip:
                args += ["--tcp", ",".join(map(str, sorted(tcp_ports))), "--udp", ",".join(map(str, sorted(udp_ports)))]
                groups = sorted({g for conduit in self.policy.conduits for g in conduit.groups})
                if groups:  # every host joins every group: delivery must not depend on joins
                    args += ["--groups", ",".join(groups)]
            process = self.lab.node(info.name).popen(args, env=env, stdout=open(os.devnull, "w"),
                                                     stderr=open(self.workdir / f"{info.name}.agent.err", "w"))
            self.agents.append(process)
        self._await_agents(ready)

    def _await_agents(self, ready: list[tuple[str, Path]], timeout: float = 30.0) -> None:
        """Until every agent has bound its sockets (it writes its marker after that)."""
        deadline = time.monotonic() + timeout
        while waiting := [name for name, marker in ready if not marker.exists()]:
            dead = [name for (name, _), process in zip(ready, self.agents[-len(ready):]) if process.poll() is not None]
            if dead:
                raise RuntimeError(f"probe agents exited before they were ready: {dead}; see "
                                   f"{self.workdir}/<host>.agent.err")
            if time.monotonic() > deadline:
                raise TimeoutError(f"probe agents not ready after {timeout:.0f} s: {waiting}")
            time.sleep(0.05)

    def stop_agents(self) -> None:
        for process in self.agents:
            process.kill()
            process.wait()
        self.agents.clear()

    def announce(self, timeout: float = 60.0) -> None:
        """Every asset speaks until the controller has located it and programmed every switch."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status() or {}
            located = set(status.get("assets", {}).get("located", {}))
            switches = status.get("switches", {})
            wanted_links = len(self.lab.lab.links)
            ready = (len(switches) == len(self.lab.lab.switches) and all(s["programmed"] for s in switches.values())
                     and len(status.get("links", [])) >= wanted_links)
            missing = [i for i in self.lab.hosts.values() if i.asset and i.name not in located]
            if ready and not missing:
                time.sleep(0.3)  # let the last reconcile land everywhere
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"controller not ready after {timeout:.0f} s: unlocated {[i.name for i in missing]}, "
                                   f"switches {switches}, links {len(status.get('links', []))}/{wanted_links}")
            for info in missing:
                frame = (_arp_frame(info.mac, info.ip, info.ip, (b"", ""))[0] if info.ip
                         else _ethernet(info.mac, "ff:ff:ff:ff:ff:ff", 0x88B5, (b"hello", ""))[0])
                self._send_raw(info.name, info.intf, frame)
            time.sleep(0.5)

    def _send_raw(self, host: str, intf: str, frame: bytes) -> None:
        code = ("import socket,sys;s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW);"
                f"s.bind(({intf!r},0));s.send(bytes.fromhex({frame.hex()!r}))")
        self.lab.node(host).cmd(f"{self._python()} -c \"{code}\"")

    def run(self, select: Callable[[Probe], bool] | None = None) -> Outcome:
        """Run the probe plan (or the probes `select` keeps) and fill in what was observed."""
        start = time.monotonic()
        located = {h.name: h.where for h in self.lab.lab.hosts if self.lab.hosts[h.name].asset}
        plan = Planner(self.policy, list(self.lab.hosts.values()), located).build()
        if select is not None:
            plan.probes = [p for p in plan.probes if select(p)]
        self.start_agents(plan.listen_tcp, plan.listen_udp)
        try:
            self.announce()
            by_source: dict[str, list[Probe]] = defaultdict(list)
            for probe in plan.probes:
                by_source[probe.source].append(probe)
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            running = []
            for source, probes in by_source.items():
                spec = self.workdir / f"{source}.spec.json"
                spec.write_text(json.dumps({"timeout": 1.0, "probes": [p.spec() for p in probes]}))
                out = self.workdir / f"{source}.out.json"
                info = self.lab.hosts[source]
                process = self.lab.node(source).popen(
                    [self._python(), "-m", "controller.lab.agent", "probe", "--intf", info.intf, "--spec", str(spec),
                     "--out", str(out)], env=env)
                running.append((process, out, probes))
            for process, out, probes in running:
                process.wait(timeout=300)
                results = json.loads(out.read_text())
                for probe in probes:
                    if probe.kind != "raw":
                        probe.observed = bool(results.get(probe.id))
            time.sleep(0.5)
            received = self._sniffed()
            for probe in plan.probes:
                if probe.kind == "raw":
                    probe.observed = frozenset(received.get(probe.id, set()))
        finally:
            self.stop_agents()
        return Outcome(plan.probes, time.monotonic() - start)

    def _sniffed(self) -> dict[str, set[str]]:
        received: dict[str, set[str]] = defaultdict(set)
        for info in self.lab.hosts.values():
            path = self.workdir / f"{info.name}.sniff"
            if path.exists():
                for token in path.read_text().split():
                    received[token].add(info.name)
        return received
