"""FAUCET 1.10.12 on the same Mininet labs, for the side-by-side rows of `make bench`.

FAUCET runs from its own venv (`make faucet-venv`, default `.venv-faucet`, override with
FAUCET_VENV): it brings os-ken 3.1.0 and its `faucet` command execs `osken-manager`, so the
venv's bin goes first on PATH. It listens on 127.0.0.1 only, like everything here, and its
Prometheus exporter too. Configuration comes from `bench.faucet_config` (the policy
translated into per-port ACLs); a change is applied the way FAUCET users do it: rewrite the
file, send SIGHUP.

What is measured here, always from Open vSwitch itself:
- footprint: entries in every bridge's tables (`ovs-ofctl dump-flows`) once FAUCET has
  programmed the lab and learned every host;
- equivalence: the lab's probe matrix run against FAUCET, mismatches by category (proof the
  translated ACLs say what the policy says, and where FAUCET cannot);
- hitless reloads: datagrams lost on a steady 1,000/s stream of an unaffected conduit
  during 20 configuration changes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from bench.changes import conduit_yaml, policy_texts
from bench.faucet_config import acl_rule_count, faucet_config
from bench.labrun import LabRun, flow_count
from controller.io.files import load_lab, load_policy, load_policy_text
from controller.lab.network import Lab
from controller.lab.plan import _arp_frame
from controller.lab.traffic import Stream
from controller.lab.verify import Verifier
from controller.policy.topology_doc import LabNetwork

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / os.environ.get("FAUCET_VENV", ".venv-faucet")  # relative to the repository, or absolute


def faucet_version() -> str:
    try:
        return subprocess.run([str(VENV / "bin" / "faucet"), "--version"], capture_output=True, text=True,
                              check=False, timeout=60).stdout.strip().splitlines()[-1]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "not installed"


class FaucetProcess:
    def __init__(self, workdir: Path, config: dict[str, Any], port: int = 6653, prometheus_port: int = 9302) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_file = workdir / "faucet.yaml"
        self.config_file.write_text(yaml.safe_dump(config))
        self.port, self.prometheus_port = port, prometheus_port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ, FAUCET_CONFIG=str(self.config_file), FAUCET_LOG=str(self.workdir / "faucet.log"),
                   FAUCET_EXCEPTION_LOG=str(self.workdir / "faucet-exception.log"),
                   FAUCET_PROMETHEUS_ADDR="127.0.0.1", FAUCET_PROMETHEUS_PORT=str(self.prometheus_port),
                   PATH=f"{VENV / 'bin'}:{os.environ.get('PATH', '')}")
        env.pop("PYTHONPATH", None)
        self.process = subprocess.Popen(
            [str(VENV / "bin" / "faucet"), "--ryu-ofp-tcp-listen-port", str(self.port),
             "--ryu-ofp-listen-host", "127.0.0.1"],
            stdout=open(self.workdir / "faucet.out.txt", "ab"), stderr=subprocess.STDOUT, env=env, cwd=self.workdir)

    def reload(self, config: dict[str, Any]) -> None:
        self.config_file.write_text(yaml.safe_dump(config))
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)

    def wait_quiet(self, quiet: float = 5.0, timeout: float = 120.0) -> None:
        """Until FAUCET's log has not grown for `quiet` seconds (it logs every reload it applies)."""
        deadline, last, since = time.monotonic() + timeout, -1, time.monotonic()
        while time.monotonic() < deadline:
            lines = self.log_lines()
            if lines != last:
                last, since = lines, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(0.5)

    def log_lines(self) -> int:
        path = self.workdir / "faucet.log"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def wait_stable(bridges: list[str], quiet: float = 3.0, timeout: float = 120.0) -> dict[str, int]:
    """Until every bridge has flows and no table changed size for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last: dict[str, int] = {}
    since = time.monotonic()
    while time.monotonic() < deadline:
        now = {b: flow_count(b) for b in bridges}
        if now != last or not all(count > 0 for count in now.values()):
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
        time.sleep(0.5)
    raise TimeoutError(f"FAUCET tables did not settle: {last}")


class FaucetLab(LabRun):
    """A lab under FAUCET: config from the policy, Mininet, learned hosts."""

    def __init__(self, policy_path: Path, description: LabNetwork, workdir: Path, settle_timeout: float = 120) -> None:
        self.settle_timeout = settle_timeout
        self.policy_path = policy_path
        self.policy = load_policy(self.policy_path)
        self.description = description
        self.config = faucet_config(self.policy, self.description)
        self.controller = FaucetProcess(workdir / "faucet", self.config)
        self.lab = Lab(self.description, self.policy)
        self.workdir = workdir

    def bring_up(self) -> None:
        time.sleep(3)
        self.lab.start()
        wait_stable(self.bridges, timeout=self.settle_timeout)
        self.learn()

    @property
    def bridges(self) -> list[str]:
        return [Lab.switch_node(name) for name, _ in self.description.switches]

    def learn(self) -> None:
        """Every host speaks once (gratuitous ARP) so that FAUCET learns where it is."""
        verifier = Verifier(self.lab, self.policy, lambda: None, str(self.workdir / "learn"))
        for info in self.lab.hosts.values():
            if info.ip:
                verifier._send_raw(info.name, info.intf, _arp_frame(info.mac, info.ip, info.ip, (b"", ""))[0])
        time.sleep(2)

    def footprint(self) -> dict[str, Any]:
        sizes = wait_stable(self.bridges)
        return {"switches": len(sizes), "flows_total": sum(sizes.values()), "switch_max": max(sizes.values()),
                "acl_rules": acl_rule_count(self.config), "per_switch": sizes}

    def equivalence(self) -> dict[str, Any]:
        """Run the lab's probe matrix against FAUCET; count mismatches per category."""
        ready = {"switches": {n: {"programmed": True} for n, _ in self.description.switches},
                 "links": list(self.description.links),
                 "assets": {"located": {h.name: 1 for h in self.description.hosts}}}
        outcome = Verifier(self.lab, self.policy, lambda: ready, str(self.workdir / "matrix")).run()
        by_category: dict[str, dict[str, int]] = {}
        for probe in outcome.probes:
            row = by_category.setdefault(probe.category, {"probes": 0, "mismatches": 0})
            row["probes"] += 1
            row["mismatches"] += 0 if probe.matches else 1
        examples = sorted({f"{p.category}: {p.source} {p.label} (expected {_seen(p.expected)}, seen {_seen(p.observed)})" for p in outcome.mismatches})[:12]
        return {"probes": len(outcome.probes), "mismatches": len(outcome.mismatches), "by_category": by_category,
                "examples": examples}


def hitless(faucet_lab: FaucetLab, stream_spec: tuple[str, str, int], source: str, target: str,
            changes: int = 20, pause: float = 0.6) -> dict[str, Any]:
    """Datagrams lost on `stream_spec` while FAUCET applies `changes` one-conduit changes (the
    series otseg is pushed), each by rewriting its configuration and SIGHUP."""
    texts = policy_texts(faucet_lab.policy_path.read_bytes(), changes, lambda k: conduit_yaml(k, source, target))
    configs = [faucet_config(load_policy_text(text, str(faucet_lab.policy_path)), faucet_lab.description)
               for text in texts]
    stream = Stream(faucet_lab.lab, *stream_spec, changes * pause + 2, faucet_lab.workdir / f"reload-{source}")
    stream.start()
    time.sleep(1)
    for config in configs:
        faucet_lab.controller.reload(config)
        time.sleep(pause)
    result = stream.result()
    faucet_lab.controller.wait_quiet()  # FAUCET applies reloads asynchronously: none may spill into the next series
    return {"changes": changes, "sent": result.sent, "lost": result.lost, "largest_gap": result.largest_gap,
            "change": f"{source} -> {target}"}


def run_faucet(workdir: Path, stream_spec: tuple[str, str, int], changes: dict[str, tuple[str, str]],
               examples: list[str], progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Footprint and equivalence on every example lab; hitless reloads on the plant."""
    results: dict[str, Any] = {"version": faucet_version(), "footprint": {}, "equivalence": {}, "hitless": {}}
    for name in examples:
        progress(f"FAUCET: {name} lab")
        policy_path = ROOT / "policies" / f"{name}.yaml"
        description = load_lab(ROOT / "topologies" / f"{name}.yaml", load_policy(policy_path))
        with FaucetLab(policy_path, description, workdir / name) as faucet_lab:
            results["footprint"][name] = faucet_lab.footprint()
            results["equivalence"][name] = faucet_lab.equivalence()
            if name == "plant":
                faucet_lab.controller.wait_quiet()
                for label, (source, target) in changes.items():
                    results["hitless"][label] = hitless(faucet_lab, stream_spec, source, target)
            results["footprint"][name]["after_matrix"] = wait_stable(faucet_lab.bridges)
    return results


def generated_footprint(workdir: Path, assets: int, zones: int, conduits: int, switches: int,
                        settle_timeout: float = 600) -> dict[str, Any]:
    """FAUCET's installed entries for a generated policy: every asset a Mininet host on its port."""
    from bench.lab_bench import lab_network, pinned_policy  # noqa: PLC0415

    document, topology = pinned_policy(assets, zones, conduits, switches)
    workdir.mkdir(parents=True, exist_ok=True)
    policy_path = workdir / "policy.yaml"
    policy_path.write_text(yaml.safe_dump(document, sort_keys=False))
    start = time.monotonic()
    with FaucetLab(policy_path, lab_network(topology, hosts=True), workdir, settle_timeout) as faucet_lab:
        result = faucet_lab.footprint()
    edges = {name: count for name, count in result["per_switch"].items() if name not in ("g1", "g2")}
    return {**result, "assets": assets, "zones": zones, "conduits": conduits, "edge_max": max(edges.values()),
            "seconds_to_settle": time.monotonic() - start}


def _seen(value: object) -> str:
    if isinstance(value, frozenset | set):
        return ",".join(sorted(value)) or "nobody"
    return str(value)


def generated_faucet(workdir: Path, assets: int, zones: int, conduits: int, switches: int,
                     settle_timeout: float = 600) -> dict[str, Any]:
    """`generated_footprint`, or what stopped it (FAUCET still loading after `settle_timeout`)."""
    try:
        return generated_footprint(workdir, assets, zones, conduits, switches, settle_timeout)
    except TimeoutError as error:
        rules = sum(1 for line in (workdir / "faucet" / "faucet.yaml").read_text().splitlines() if "rule:" in line)
        return {"assets": assets, "zones": zones, "conduits": conduits, "acl_rules": rules,
                "error": f"FAUCET had not programmed the switches {settle_timeout:.0f} s after start ({rules:,} ACL "
                         f"rules to load): {error}"}
