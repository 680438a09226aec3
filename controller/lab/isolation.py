"""The isolation demo of `otseg lab`: a zone is cut off under traffic, its essential conduit kept.

The pairs come from the policy's verdicts: a UDP stream on an `essential: true` conduit that
crosses a zone's border, and a UDP stream on an ordinary conduit across the same border. Three
steps of 1,000 datagrams/s each: the isolation applied mid-step (the essential stream must lose
nothing), the zone isolated (the ordinary stream must deliver nothing), the isolation released
(the ordinary stream flows again). A lab whose policy has no essential UDP conduit skips it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from controller.core.model import Asset, Conduit, Policy
from controller.core.verdict import ETH_IPV4, Packet, decide
from controller.lab.network import Lab
from controller.lab.process import ControllerProcess
from controller.lab.traffic import Stream

STEP_SECONDS = 4.0
EPHEMERAL = 40000
Pair = tuple[str, str, int]


@dataclass
class IsolationStep:
    name: str
    essential_sent: int
    essential_lost: int
    cut_sent: int
    cut_received: int
    breach: bool  # the essential stream lost datagrams, or the cut one got through while isolated


def _udp_ok(policy: Policy, src: Asset, dst: Asset, port: int) -> bool:
    """A one-way stream from an ephemeral port (a stateful conduit's replies need a session)."""
    return decide(policy, src, dst, Packet(ETH_IPV4, 17, EPHEMERAL, port)).delivered


def _udp_ports(policy: Policy, conduit: Conduit) -> list[int]:
    return sorted({m.low for name in conduit.services for m in policy.service(name).matches if m.protocol == "udp"})


def choose(policy: Policy, lab: Lab) -> tuple[str, Pair, Pair] | None:
    """(zone to isolate, essential pair, ordinary pair), both pairs across that zone's border."""
    where = {h.name: h.where for h in lab.lab.hosts}
    assets = [a for a in policy.assets if a.ip and a.name in where]
    essential = [c for c in policy.conduits if c.essential]
    ordinary = [c for c in policy.conduits if not c.essential]
    for conduit in essential:
        for port in _udp_ports(policy, conduit):
            for src in assets:
                for dst in assets:
                    if src.zone == dst.zone or not _udp_ok(policy, src, dst, port):
                        continue
                    for zone in (dst.zone, src.zone):
                        cut = _ordinary_pair(policy, assets, ordinary, zone, (src.name, dst.name, port))
                        if cut is not None:
                            return zone, (src.name, dst.name, port), cut
    return None


def _ordinary_pair(policy: Policy, assets: list[Asset], conduits: list[Conduit], zone: str,
                   essential: Pair) -> Pair | None:
    essential_only = Policy(policy.name, policy.mode, policy.zones, policy.assets, policy.services,
                            tuple(c for c in policy.conduits if c.essential), policy.switch_names)
    for conduit in conduits:
        for port in _udp_ports(policy, conduit):
            for src in assets:
                for dst in assets:
                    if (src.zone == zone) == (dst.zone == zone) or (src.name, dst.name) == essential[:2]:
                        continue
                    if _udp_ok(policy, src, dst, port) and not _udp_ok(essential_only, src, dst, port):
                        return src.name, dst.name, port
    return None


def run_isolation(lab: Lab, policy: Policy, controller: ControllerProcess, workdir: Path,
                  say: Callable[[str], None] = print) -> list[IsolationStep]:
    chosen = choose(policy, lab)
    if chosen is None:
        say("Isolation: no essential UDP conduit across a zone's border in this policy; skipped")
        return []
    zone, essential, cut = chosen
    isolation: dict[str, str] = {}

    def isolate() -> None:
        answer = controller.post("/v1/isolations", json.dumps({"kind": "zone", "target": zone,
                                                               "reason": "otseg lab: isolation demo"}).encode(),
                                 content_type="application/json", timeout=60)
        isolation["id"] = answer["isolation"]
        isolation["cut"] = ", ".join(answer["conduits_cut"])

    def release() -> None:
        controller.post("/v1/isolations/release", json.dumps({"id": isolation["id"]}).encode(),
                        content_type="application/json", timeout=60)

    say(f"Isolation: essential stream {essential[0]} -> {essential[1]} udp {essential[2]}, ordinary stream "
        f"{cut[0]} -> {cut[1]} udp {cut[2]}, across zone {zone!r}'s border, 1,000 datagrams/s each")
    results = []
    for index, (name, action) in enumerate(((f"`otseg isolate {zone}` applied", isolate),
                                            (f"zone {zone} isolated", None),
                                            (f"`otseg release` applied", release))):
        streams = [Stream(lab, *pair, STEP_SECONDS, workdir / f"isolation-{index}") for pair in (essential, cut)]
        for stream in streams:
            stream.start()
        time.sleep(1.0)
        if action is not None:
            action()
        kept, other = (stream.result() for stream in streams)
        breach = kept.lost > 0 or (action is None and other.received > 0)
        results.append(IsolationStep(name, kept.sent, kept.lost, other.sent, other.received, breach))
        say(f"  {name:<40} essential: {kept.lost:>4} lost of {kept.sent:<5} ordinary: {other.received:>5} received "
            f"of {other.sent:<5}" + ("  BREACH" if breach else ""))
        if index == 0:
            say(f"  (conduits cut: {isolation.get('cut') or 'none'})")
    return results
