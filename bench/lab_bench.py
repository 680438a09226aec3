"""Controller benchmarks on generated Mininet networks: change latency, connect-to-programmed.

The generated policies of `bench.generate`, with every asset pinned (`location`) to the port
that `generated_topology` gives it, so that the controller programs the full per-destination
tables without any host having to speak: the networks have switches and links only.

- change latency: a one-conduit change pushed through the control API, barrier-confirmed on
  every switch (the API's own measure, and the client's round trip), at 10 and 30 switches;
- connect to programmed: an edge switch is emptied (flows, groups, meters) and reconnected 5 s
  later, as a replaced or rebooted switch would be; time from `set-controller` until its
  tables hold every entry they held before (polled from OVS), and until the first entry lands.
"""

from __future__ import annotations

import statistics
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from bench.changes import conduit_yaml, policy_texts
from bench.generate import generated_topology, policy_document
from bench.labrun import LabRun, flow_count
from controller.core.topology import Topology
from controller.io.files import load_policy_text
from controller.lab.network import Lab
from controller.lab.process import ControllerProcess
from controller.policy.topology_doc import LabHost, LabNetwork


def pinned_policy(assets: int, zones: int, conduits: int, switches: int,
                  placement: str = "zone") -> tuple[dict[str, Any], Topology]:
    """A generated policy document whose assets are pinned where the generated topology puts them."""
    document = policy_document(assets, zones, conduits)
    policy = load_policy_text(yaml.safe_dump(document).encode(), "generated.yaml")
    topology = generated_topology(policy, switches, placement)
    for name, where in topology.attachments:
        document["assets"][name]["location"] = {"switch": where.dpid, "port": where.port}
    return document, topology


def lab_network(topology: Topology, hosts: bool = False) -> LabNetwork:
    switches = tuple((f"g{dpid}", dpid) for dpid in sorted(topology.switches))
    lab_hosts = tuple(LabHost(name, where) for name, where in topology.attachments) if hosts else ()
    return LabNetwork("generated", None, switches, tuple(sorted(topology.links)), lab_hosts)


def topology_document(lab: LabNetwork) -> dict:  # type: ignore[type-arg]
    """A topology file (topologies/*.yaml form) for a generated lab: switches and links."""
    names = {dpid: name for name, dpid in lab.switches}
    return {"topology": lab.name, "switches": dict(lab.switches),
            "links": [[f"{names[l.a.dpid]}:{l.a.port}", f"{names[l.b.dpid]}:{l.b.port}"] for l in lab.links],
            "hosts": {h.name: {"switch": names[h.where.dpid], "port": h.where.port} for h in lab.hosts}}


def flow_set(bridge: str) -> set[str]:
    out = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "--no-stats", "dump-flows", bridge], capture_output=True,
                         text=True, check=True).stdout
    return {line.strip() for line in out.splitlines() if "actions=" in line}


class GeneratedBench(LabRun):
    def __init__(self, workdir: Path, assets: int, zones: int, conduits: int, switches: int) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.document, self.topology = pinned_policy(assets, zones, conduits, switches)
        self.policy_file = workdir / "policy.yaml"
        self.policy_file.write_text(yaml.safe_dump(self.document, sort_keys=False))
        self.policy = load_policy_text(self.policy_file.read_bytes(), str(self.policy_file))
        self.description = lab_network(self.topology)
        self.topology_file = workdir / "topology.yaml"  # the declared trunks the controller may use
        self.topology_file.write_text(yaml.safe_dump(topology_document(self.description), sort_keys=False))
        self.controller = ControllerProcess(str(self.policy_file), workdir / "controller",
                                            topology=str(self.topology_file))
        self.lab = Lab(self.description, self.policy)
        self.size = {"assets": assets, "zones": zones, "conduits": conduits, "switches": switches}

    def bring_up(self) -> None:
        self.controller.wait_listening(60)
        self.lab.start()
        self.ready()

    def ready(self, timeout: float = 180, quiet: float = 5.0) -> None:
        """Every switch and link known, and no table changed for `quiet` seconds."""
        switches, links = len(self.description.switches), len(self.description.links)
        deadline = time.monotonic() + timeout
        last: object = None
        since = time.monotonic()
        while time.monotonic() < deadline:
            status = self.controller.wait_for(
                lambda s: len(s["switches"]) == switches and len(s["links"]) == links
                and all(v["programmed"] for v in s["switches"].values()), max(1.0, deadline - time.monotonic()),
                "every switch and link")
            tables = {dpid: v["flows"] for dpid, v in status["switches"].items()}
            if tables != last:
                last, since = tables, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(0.5)
        raise TimeoutError(f"tables still changing after {timeout:.0f} s")

    def push(self, data: bytes) -> dict[str, Any]:
        start = time.perf_counter()
        answer: dict[str, Any] = self.controller.post("/v1/policy", data)
        answer["round_trip"] = time.perf_counter() - start
        return answer

    def change_latency(self, pushes: int = 10) -> dict[str, Any]:
        texts = policy_texts(self.policy_file.read_bytes(), pushes, lambda k: conduit_yaml(k, "zone-000", "zone-001", indent=""))
        answers = []
        for text in texts:
            answers.append(self.push(text))
            time.sleep(0.3)
        applied = [a["seconds"] for a in answers]
        trips = [a["round_trip"] for a in answers]
        return {**self.size, "pushes": pushes, "apply_median_s": statistics.median(applied),
                "apply_min_s": min(applied), "apply_max_s": max(applied),
                "round_trip_median_s": statistics.median(trips),
                "flow_mods_median": statistics.median(a["flow_mods"] for a in answers)}

    def connect_to_programmed(self, runs: int = 3) -> dict[str, Any]:
        bridge = Lab.switch_node(self.description.switches[2][0])  # the first edge switch
        before = flow_set(bridge)
        results = []
        for _ in range(runs):
            subprocess.run(["ovs-vsctl", "del-controller", bridge], check=True)
            self.controller.wait_for(lambda s: len(s["switches"]) == len(self.description.switches) - 1, 30,
                                     "switch gone")
            for what in ("del-flows", "del-groups", "del-meters"):
                subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", what, bridge], check=True)
            assert flow_count(bridge) == 0
            time.sleep(5)  # a replaced switch is not back within the controller's 2 s settle time
            start = time.monotonic()
            subprocess.run(["ovs-vsctl", "set-controller", bridge, "tcp:127.0.0.1:6653"], check=True)
            first = full = None
            while time.monotonic() - start < 60:
                count = flow_count(bridge)
                now = time.monotonic() - start
                if first is None and count > 0:
                    first = now
                if count == len(before):
                    full = now
                    break
                time.sleep(0.02)
            identical = flow_set(bridge) == before
            results.append({"first_s": first, "full_s": full, "identical": identical})
            self.ready()
        fulls = [r["full_s"] for r in results if r["full_s"] is not None]
        return {**self.size, "bridge": bridge, "flows": len(before), "runs": runs, "raw": results,
                "full_median_s": statistics.median(fulls) if fulls else None,
                "full_min_s": min(fulls, default=None), "full_max_s": max(fulls, default=None),
                "first_median_s": statistics.median(r["first_s"] for r in results if r["first_s"] is not None),
                "identical": all(r["identical"] for r in results)}


    def reconnect_intact(self, runs: int = 3) -> dict[str, Any]:
        """A switch loses its controller and comes back with its tables: nothing is flushed. The
        bridge's entries are polled every 20 ms throughout; the controller's flow-mod counter says
        what it sent."""
        bridge = Lab.switch_node(self.description.switches[2][0])
        before = flow_set(bridge)
        results = []
        for _ in range(runs):
            sent_before = self._flow_mods()
            subprocess.run(["ovs-vsctl", "set-controller", bridge, "tcp:127.0.0.1:9"], check=True)  # nobody there
            self.controller.wait_for(lambda s: f"{self._edge_dpid():#x}" not in s["switches"], 30, "switch cut off")
            fewest = flow_count(bridge)
            start = time.monotonic()
            subprocess.run(["ovs-vsctl", "set-controller", bridge, "tcp:127.0.0.1:6653"], check=True)
            back = None
            while time.monotonic() - start < 60:
                fewest = min(fewest, flow_count(bridge))
                if back is None and self._programmed(bridge):
                    back = time.monotonic() - start
                if back is not None and time.monotonic() - start > back + 3:
                    break
                time.sleep(0.02)
            results.append({"back_s": back, "fewest_entries": fewest, "entries": len(before),
                            "identical": flow_set(bridge) == before, "flow_mods": self._flow_mods() - sent_before})
        backs = [r["back_s"] for r in results if r["back_s"] is not None]
        return {**self.size, "bridge": bridge, "runs": runs, "raw": results,
                "back_median_s": statistics.median(backs) if backs else None,
                "entries_lost_max": max(r["entries"] - r["fewest_entries"] for r in results),
                "flow_mods_max": max(r["flow_mods"] for r in results),
                "identical": all(r["identical"] for r in results)}

    def _edge_dpid(self) -> int:
        return self.description.switches[2][1]

    def _programmed(self, bridge: str) -> bool:
        status = self.controller.status() or {}
        state = status.get("switches", {}).get(f"{self._edge_dpid():#x}")
        return bool(state and state.get("programmed") and state.get("policy_in_force", True))

    def _flow_mods(self) -> float:
        with urllib.request.urlopen(self.controller.api_url + "/metrics", timeout=10) as response:
            text = response.read().decode()
        return sum(float(line.split()[-1]) for line in text.splitlines()
                   if line.startswith("otseg_reconcile_flow_mods_total"))


def run_generated(workdir: Path, quick: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = {"change_latency": [], "connect": [], "reconnect_intact": []}
    cases = [(100, 10, 50, 10), (100, 10, 50, 30), (1000, 50, 200, 10)]
    for assets, zones, conduits, switches in cases[:2] if quick else cases:
        with GeneratedBench(workdir / f"g-{assets}-{switches}", assets, zones, conduits, switches) as bench:
            results["change_latency"].append(bench.change_latency(6 if quick else 10))
            if assets == 1000:
                results["connect"].append(bench.connect_to_programmed(1 if quick else 3))
                results["reconnect_intact"] = [bench.reconnect_intact(1 if quick else 3)]
    return results
