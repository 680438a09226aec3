"""Link discovery of our own: signed LLDP out of every port, verified on the way in.

Replaces os-ken's `switches` app, which parsed every frame of every port with parsers we did
not write (tracebacks on malformed LLDP and IPv6 from host ports), trusted any port that
LLDP crossed both ways (a two-NIC device relaying LLDP made a trunk), and at start-up
sometimes sent no LLDP until a port changed state (its port list was read before the
switch had described its ports): links stayed down for a minute.

Here:
- LLDP goes out of each declared trunk port every `period` (fast liveness) and of every other
  port every `edge_every` periods (to notice undeclared links, which are only reported);
- a switch that connects, or a port that comes up, gets LLDP at once;
- an arriving LLDP is parsed by `controller.core.frames` (total) and must carry our HMAC proof
  with a fresh timestamp; the LinkBook decides whether it verifies a declared link or makes a
  pending one;
- expiry forgives a stalled controller (the loop measures its own lateness: while a
  greenthread computes, no LLDP is processed, so every link would look silent) and holds
  after a reconcile that sent many flow-mods (Open vSwitch digesting thousands of flow-mods
  answered LLDP up to 3 s late in our measurements).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from controller.app.linkbook import LinkBook, PendingLink
from controller.core.frames import Frame, build_lldp, read_lldp
from controller.core.topology import Link, PortRef

log = logging.getLogger("otseg.links")

LLDP_PERIOD = 0.5  # seconds between LLDP rounds on declared trunks
LINK_TIMEOUT = 2.5  # a declared link silent this long (either way) is down
EDGE_EVERY = 10  # rounds: other ports get LLDP every 5 s (pending-link detection)
MAX_LLDP_AGE_MS = 5000  # an LLDP stamped longer ago is a replay
STALL_TOLERANCE = 0.5
HOLD_BASE_SECONDS = 1.0
HOLD_PER_FLOW_MOD = 0.001
HOLD_MAX_SECONDS = 10.0
LLDP_SOURCE_MAC = "0e:5e:00:00:00:01"


@dataclass
class DiscoveryEvents:
    """What discovery tells the rest of the controller (all optional)."""

    link_up: Callable[[Link], None] = lambda link: None
    link_down: Callable[[Link], None] = lambda link: None
    pending: Callable[[PendingLink], None] = lambda pending: None
    rejected: Callable[[str], None] = lambda reason: None


@dataclass
class LinkDiscovery:
    book: LinkBook
    key: bytes
    send: Callable[[int, int, bytes], object]  # (dpid, port, frame): a packet-out
    ports: Callable[[], dict[int, set[int]]]  # connected switches -> their ports
    events: DiscoveryEvents = field(default_factory=DiscoveryEvents)
    clock: Callable[[], float] = time.monotonic
    wall_ms: Callable[[], int] = lambda: int(time.time() * 1000)
    period: float = LLDP_PERIOD
    edge_every: int = EDGE_EVERY
    _rounds: int = 0
    _hold_until: float = 0.0

    # -- sending ----------------------------------------------------------------------------
    def send_round(self) -> int:
        """One LLDP round; returns the number of frames sent."""
        edge_too = self._rounds % self.edge_every == 0
        self._rounds += 1
        trunks = self.book.trunk_ports
        sent = 0
        for dpid, ports in sorted(self.ports().items()):
            for port in sorted(ports):
                if edge_too or PortRef(dpid, port) in trunks:
                    sent += self.send_one(dpid, port)
        return sent

    def send_one(self, dpid: int, port: int) -> int:
        self.send(dpid, port, build_lldp(dpid, port, LLDP_SOURCE_MAC, self.key, self.wall_ms()))
        return 1

    def switch_connected(self, dpid: int) -> None:
        """LLDP at once out of the new switch's ports and its declared peers' ends."""
        self.book.switch_back(dpid, self.clock())
        ports = self.ports()
        for port in sorted(ports.get(dpid, ())):
            self.send_one(dpid, port)
        for link in self.book.declared:
            for near, far in ((link.a, link.b), (link.b, link.a)):
                if far.dpid == dpid and near.dpid != dpid and near.port in ports.get(near.dpid, ()):
                    self.send_one(near.dpid, near.port)

    # -- receiving --------------------------------------------------------------------------
    def lldp_in(self, arrived_at: PortRef, frame: Frame) -> None:
        verified = read_lldp(frame, self.key, self.wall_ms(), MAX_LLDP_AGE_MS)
        if verified is None:
            self.events.rejected("LLDP without a valid otseg proof (foreign, forged, or replayed)")
            return
        sent_from = PortRef(*verified)
        if sent_from == arrived_at:
            return
        up, pending = self.book.lldp(sent_from, arrived_at, self.clock())
        if up is not None:
            self.events.link_up(up)
        if pending is not None:
            log.warning("pending link %s: LLDP crossed it but it is not declared; it is not used "
                        "(declare it, or `otseg links approve`)", pending.describe())
            self.events.pending(pending)

    def port_down(self, where: PortRef) -> None:
        for link in self.book.port_down(where):
            self.events.link_down(link)

    def port_up(self, where: PortRef) -> None:
        self.book.port_up(where)
        self.send_one(where.dpid, where.port)

    def switch_disconnected(self, dpid: int) -> None:
        for link in self.book.switch_gone(dpid):
            self.events.link_down(link)

    # -- expiry -----------------------------------------------------------------------------
    def hold_for_flow_mods(self, flow_mods: int) -> float:
        """After sending `flow_mods` messages, links may not expire for a while; returns the hold."""
        if flow_mods < 100:
            return 0.0
        hold = min(HOLD_MAX_SECONDS, HOLD_BASE_SECONDS + flow_mods * HOLD_PER_FLOW_MOD)
        self._hold_until = max(self._hold_until, self.clock() + hold)
        return hold

    def hold(self, seconds: float) -> None:
        """No link expires from silence for `seconds` (a cluster follower does not send LLDP; a new
        leader needs a few rounds of its own before silence means anything)."""
        self._hold_until = max(self._hold_until, self.clock() + seconds)

    def check(self, due: float) -> list[Link]:
        """Expire silent links; `due` is when this check should have run."""
        now = self.clock()
        stall = now - due
        if stall > STALL_TOLERANCE:
            log.info("controller was busy for %.1f s: link timers paused for that long", stall)
            self.book.forgive(stall)
        if now < self._hold_until:
            self.book.hold(now, self.book.timeout / 2)
        gone = self.book.expire(now)
        for link in gone:
            log.warning("no LLDP over %s for %.1f s: down", link, self.book.timeout)
            self.events.link_down(link)
        return gone

    def run(self, sleep: Callable[[float], None]) -> None:
        """The discovery loop (a greenthread in the shell)."""
        while True:
            due = self.clock() + self.period
            self.send_round()
            sleep(max(0.0, due - self.clock()))
            self.check(due)
