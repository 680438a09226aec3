"""What a packet-in means: every sampled frame gets one decision, whatever its bytes.

A packet-in carries bytes that a device on a switch port chose. They are parsed only by our
own total parser (`controller.core.frames`), then:
- LLDP goes to link discovery (trusted on declared trunks only; anything else can at most
  become a pending link);
- an ARP request for an asset that is not located yet, from a peer that may reach it, makes
  the controller look for the asset with ARP probes (RFC 5227: sender address 0.0.0.0, so no
  device's ARP cache is touched) on the edge ports where it could be; its answer is a sample
  from its port and binds it;
- anything else is a sighting: bind, unknown device, spoof, conflict or a denied sample. A
  denied sample that the reference semantics would deliver means the tables and the policy
  disagree: counted as "allowed-traffic" and logged as an error. The judgement uses the same
  keys as the switch (`controller.core.reference.judge`).
Handlers never raise: an unexpected error is counted and logged rate-limited (`ErrorBudget`).
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from controller.app.enforcer import Enforcer
from controller.core.frames import Frame, build_arp, parse_frame
from controller.core.learning import Decision, Sighting
from controller.core.reference import judge, packet_of
from controller.core.rules import LOCATE_COOKIE
from controller.core.topology import PortRef
from controller.core.verdict import ETH_ARP, Packet, decide

log = logging.getLogger("otseg.samples")
ETH_LLDP = 0x88CC
PROBE_MAC = "0e:5e:00:00:00:02"  # the sender of our ARP probes (locally administered)
PROBE_INTERVAL = 1.0  # seconds: at most one probe round per asset this often
REASONS = {"unknown-device": "unknown device (no asset has this MAC)",
           "spoof": "source address does not belong to the asset on this port",
           "conflict": "MAC already bound to another port", "pinned-elsewhere": "asset pinned to another port",
           "denied-sample": "no conduit allows it"}


@dataclass
class ErrorBudget:
    """Unexpected exceptions: the first of each kind with its traceback, then a count a minute."""

    count: Callable[[str], None] = lambda where: None
    clock: Callable[[], float] = time.monotonic
    window: float = 60.0
    _seen: dict[str, tuple[float, int]] = field(default_factory=dict)

    def report(self, where: str, error: BaseException) -> None:
        self.count(where)
        key = f"{where}:{type(error).__name__}"
        now = self.clock()
        first, suppressed = self._seen.get(key, (0.0, -1))
        if suppressed < 0:
            log.error("unexpected error in %s: %s\n%s", where, error,
                      "".join(traceback.format_exception(type(error), error, error.__traceback__)).rstrip())
            self._seen[key] = (now, 0)
        elif now - first >= self.window:
            log.error("unexpected error in %s: %s (%d more like it in the last %.0f s)", where, error,
                      suppressed + 1, now - first)
            self._seen[key] = (now, 0)
        else:
            self._seen[key] = (first, suppressed + 1)


@dataclass
class SampleOutcome:
    kind: str  # the packet-in reason for metrics
    event: dict[str, Any] | None = None  # a verdict event to emit
    source: str = ""  # the event's rate-limit key


@dataclass
class SampleHandler:
    enforcer: Enforcer
    lldp_in: Callable[[PortRef, Frame], None]
    send: Callable[[int, int, bytes], object]  # (dpid, port, frame): a packet-out
    clock: Callable[[], float] = time.monotonic
    learn: Callable[[int, Frame], bool] = lambda cookie, frame: False  # a learn-mode copy, consumed (learner.py)
    unknown: Callable[[str, int, int], None] = lambda mac, dpid, port: None  # an unknown device seen (learn report)
    _probed: dict[str, float] = field(default_factory=dict)

    def handle(self, where: PortRef, cookie: int, data: bytes) -> SampleOutcome:
        frame = parse_frame(data)
        if frame.eth_type == ETH_LLDP and not frame.tags:
            self.lldp_in(where, frame)
            return SampleOutcome("lldp")
        if cookie == LOCATE_COOKIE:
            return SampleOutcome(self._locate(where, frame))
        if self.learn(cookie, frame):
            return SampleOutcome("learn")
        ip = frame.ipv4_src if frame.ipv4_src is not None else frame.arp_spa
        decision = self.enforcer.frame_sampled(Sighting(where, frame.eth_src, ip))
        if decision.kind in ("bind", "ignore"):
            return SampleOutcome(decision.kind)
        if decision.kind == "unknown-device":
            self.unknown(frame.eth_src, where.dpid, where.port)
        if decision.kind == "denied-sample" and judge(self.enforcer.policy, self.enforcer.held_bindings(), where,
                                                      frame).delivered:
            log.error("allowed traffic reached the controller at %#x:%d: %s", where.dpid, where.port, frame)
            return SampleOutcome("allowed-traffic")
        # Rate-limit events per asset, or per port for devices otseg does not know: their MACs are
        # the sender's choice, a port is not.
        source = (f"port:{where.dpid:#x}:{where.port}" if decision.kind == "unknown-device" or decision.asset is None
                  else f"asset:{decision.asset}")
        return SampleOutcome(decision.kind, self._verdict_event(where, frame, decision), source)

    def _locate(self, where: PortRef, frame: Frame) -> str:
        """An ARP request for an unlocated asset: probe for it where it could be."""
        policy = self.enforcer.policy
        target = policy.asset_by_ip(frame.arp_tpa) if frame.arp_tpa else None
        requester = policy.asset_by_mac(frame.eth_src) if frame.eth_src else None
        if target is None or requester is None or target.ip is None or target.name in self.enforcer.held_bindings():
            return "locate-ignored"
        if not decide(policy, requester, target, Packet(ETH_ARP)).delivered:
            return "locate-ignored"
        now = self.clock()
        if now - self._probed.get(target.name, float("-inf")) < PROBE_INTERVAL:
            return "locate-throttled"
        self._probed[target.name] = now
        probe = build_arp(1, PROBE_MAC, "ff:ff:ff:ff:ff:ff", PROBE_MAC, "0.0.0.0", "00:00:00:00:00:00", target.ip,
                          target.vlan)
        candidates = self.enforcer.locate_candidates(target.name)
        for port in candidates:
            self.send(port.dpid, port.port, probe)
        log.info("asset %s is not located yet and %s asks for it: ARP probe on %d edge ports", target.name,
                 requester.name, len(candidates))
        return "locate-probe"

    def _verdict_event(self, where: PortRef, frame: Frame, decision: Decision) -> dict[str, Any]:
        policy = self.enforcer.policy
        source = policy.asset_by_mac(frame.eth_src) if decision.kind != "unknown-device" and frame.eth_src else None
        target = (policy.asset_by_ip(frame.arp_tpa) if frame.eth_type == ETH_ARP and frame.arp_tpa else
                  policy.asset_by_mac(frame.eth_dst) if frame.eth_dst else None)
        return {
            "verdict": "denied", "mode": "enforce", "reason": REASONS.get(decision.kind, decision.kind),
            "switch": f"{where.dpid:#x}", "port": where.port,
            "src_mac": frame.eth_src, "dst_mac": frame.eth_dst,
            "src_ip": frame.ipv4_src or frame.arp_spa, "dst_ip": frame.ipv4_dst or frame.arp_tpa,
            "src_asset": source.name if source else "unknown", "src_zone": source.zone if source else "unknown",
            "dst_asset": target.name if target else "unknown", "dst_zone": target.zone if target else "unknown",
            "service": packet_of(frame).describe() + (" (tagged)" if frame.tags else "")
            + (f" (malformed: {frame.problem})" if frame.problem else ""),
        }
