"""The rest of the mission on one screen: streams keep flowing while the network and the controller change.

After the matrix, `otseg lab --start-controller` runs an allowed UDP stream and a denied one
(1,000 datagrams/s each) through a sequence of steps: steady state, a ring link cut, the link
restored, a policy push, the controller SIGKILLed, the controller restarted. For each step it
prints the allowed stream's loss and how many denied datagrams arrived, which must be 0.
The pairs come from the policy's verdicts (an allowed UDP service whose path crosses a ring
link, and a denied one), the ring link from the topology (a link whose loss leaves the
switches connected), so any lab with a ring shows it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import networkx as nx
import yaml

from controller.core.model import Policy
from controller.core.verdict import ETH_IPV4, Packet, decide
from controller.lab.network import Lab
from controller.lab.process import ControllerProcess
from controller.lab.traffic import Stream

STEP_SECONDS = 4.0
EPHEMERAL = 40000


@dataclass
class StepResult:
    name: str
    allowed_sent: int
    allowed_lost: int
    denied_received: int


def _udp_pairs(policy: Policy, lab: Lab) -> tuple[tuple[str, str, int] | None, tuple[str, str, int] | None]:
    """An allowed UDP pair whose path crosses a ring link (else any allowed one), and a denied one."""
    where = {h.name: h.where for h in lab.lab.hosts}
    allowed = denied = None
    ringed = None
    assets = [a for a in policy.assets if a.ip and a.name in where]
    ports = sorted({m.low for s in policy.services for m in s.matches if m.protocol == "udp" and
                    any(s.name in c.services for c in policy.conduits)})
    for port in ports:
        for src in assets:
            for dst in assets:
                if src.name == dst.name or where[src.name].dpid == where[dst.name].dpid:
                    continue
                ok = (decide(policy, src, dst, Packet(ETH_IPV4, 17, EPHEMERAL, port)).delivered
                      and decide(policy, dst, src, Packet(ETH_IPV4, 17, port, EPHEMERAL)).delivered)
                if ok and allowed is None:
                    allowed = (src.name, dst.name, port)
                if ok and ringed is None and _ring_link(lab, src.name, dst.name) is not None:
                    ringed = (src.name, dst.name, port)
                if not ok and denied is None and policy.zone_mode(src.zone) == "enforce":
                    denied = (src.name, dst.name, port)
    return ringed or allowed, denied


def _ring_link(lab: Lab, source: str, target: str) -> tuple[str, str] | None:
    """A link on the allowed stream's path whose loss leaves the two switches connected."""
    names = {dpid: name for name, dpid in lab.lab.switches}
    graph = nx.MultiGraph()
    graph.add_edges_from((names[l.a.dpid], names[l.b.dpid]) for l in lab.lab.links)
    ends = {h.name: names[h.where.dpid] for h in lab.lab.hosts}
    path = nx.shortest_path(graph, ends[source], ends[target])
    for a, b in zip(path, path[1:]):
        cut = nx.MultiGraph(graph)
        cut.remove_edge(a, b)
        if nx.has_path(cut, ends[source], ends[target]):
            return a, b
    return None


def _pushed_policy(path: str) -> bytes:
    """The same policy with one more conduit (its reason says why): a real change to push."""
    document = yaml.safe_load(Path(path).read_text())
    assets = list(document.get("assets", {}))
    document.setdefault("conduits", []).append({"name": "demo-push", "from": assets[0], "to": assets[-1],
                                                "services": ["icmp"], "reason": "pushed by the demo"})
    return yaml.safe_dump(document, sort_keys=False).encode()


def run_mission(lab: Lab, policy: Policy, controller: ControllerProcess, workdir: Path,
                say: Callable[[str], None] = print) -> list[StepResult]:
    allowed, denied = _udp_pairs(policy, lab)
    if allowed is None or denied is None:
        say("Mission: no allowed and denied UDP pair across switches in this policy; skipped")
        return []
    ring = _ring_link(lab, allowed[0], allowed[1])

    def push() -> None:
        controller.post("/v1/policy", _pushed_policy(controller.policy), timeout=60)

    def restart() -> None:
        controller.start()
        controller.wait_listening()

    steps: list[tuple[str, Callable[[], None] | None]] = [("steady state", None)]
    if ring is not None:
        steps += [(f"ring link {ring[0]}-{ring[1]} cut", lambda: lab.set_link(*ring, up=False)),  # type: ignore[misc]
                  (f"ring link {ring[0]}-{ring[1]} restored", lambda: lab.set_link(*ring, up=True))]  # type: ignore[misc]
    steps += [("policy push (one conduit more)", push), ("controller SIGKILLed", controller.kill),
              ("controller restarted", restart)]
    say(f"Mission: allowed stream {allowed[0]} -> {allowed[1]} udp {allowed[2]}, denied stream {denied[0]} -> "
        f"{denied[1]} udp {denied[2]}, 1,000 datagrams/s each, {STEP_SECONDS:.0f} s a step")
    results = []
    for index, (name, action) in enumerate(steps):
        allowed_stream = Stream(lab, *allowed, STEP_SECONDS, workdir / f"mission-{index}")
        denied_stream = Stream(lab, *denied, STEP_SECONDS, workdir / f"mission-{index}")
        allowed_stream.start()
        denied_stream.start()
        time.sleep(1.0)
        if action is not None:
            action()
        good, bad = allowed_stream.result(), denied_stream.result()
        result = StepResult(name, good.sent, good.lost, bad.received)
        results.append(result)
        say(f"  {name:<40} allowed: {result.allowed_lost:>4} lost of {result.allowed_sent:<5} "
            f"denied: {result.denied_received} received" + ("" if result.denied_received == 0 else "  BREACH"))
    return results
