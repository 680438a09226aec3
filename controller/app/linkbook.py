"""Which inter-switch links are trusted and live: declared links verified by LLDP, and pending ones.

A port is a trunk only because the operator said so: a link of the topology document
(`otseg run --topology`) or one approved since (`otseg links approve`). LLDP is only the
liveness check of a declared link: it is up while otseg's own signed LLDP crosses it in both
directions, end to end as declared, and down as soon as either end's port goes down or the
LLDP stops for `timeout` seconds. LLDP seen anywhere else (a free port, a device relaying
LLDP between two of its NICs, a miswired cable) makes a *pending* link: reported, never used.

Invariants: `live()` is a subset of `declared`; a link is live only if both directions were
heard within `timeout` and neither end is down, or it was live when a switch at one end lost
its control channel (no LLDP can cross it then) and neither end has gone down since; pending
links never overlap declared ones.
Pure state with the clock passed in: the shell feeds it LLDP arrivals and port events.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from controller.core.topology import Link, PortRef


@dataclass
class PendingLink:
    link: Link
    first_seen: float  # wall-clock time (for people and audit), not the liveness clock
    last_seen: float
    frames: int = 0
    reason: str = "not declared"

    def describe(self) -> str:
        return f"{_port(self.link.a)} <-> {_port(self.link.b)} ({self.reason}; {self.frames} LLDP frames)"


@dataclass
class LinkBook:
    declared: frozenset[Link]
    timeout: float = 2.5
    heard: dict[tuple[PortRef, PortRef], float] = field(default_factory=dict)  # (sent from, arrived at) -> when
    up: set[Link] = field(default_factory=set)
    pending: dict[Link, PendingLink] = field(default_factory=dict)
    down_ports: set[PortRef] = field(default_factory=set)
    headless: set[int] = field(default_factory=set)  # switches without their control channel: links held
    wall: Callable[[], float] = time.time  # when a pending link was seen, for reports

    @property
    def trunk_ports(self) -> frozenset[PortRef]:
        return frozenset(end for link in self.declared for end in (link.a, link.b))

    def peer(self, port: PortRef) -> PortRef | None:
        for link in self.declared:
            if link.a == port:
                return link.b
            if link.b == port:
                return link.a
        return None

    def live(self) -> frozenset[Link]:
        return frozenset(self.up)

    def lldp(self, sent_from: PortRef, arrived_at: PortRef, now: float) -> tuple[Link | None, PendingLink | None]:
        """Our verified LLDP from `sent_from` arrived at `arrived_at`. Returns (link now up, new pending link)."""
        link = Link.between(sent_from, arrived_at)
        if link not in self.declared:
            return None, self._pending(link, sent_from, arrived_at, now)
        self.heard[(sent_from, arrived_at)] = now
        if link in self.up or not self._fresh(link, now) or {link.a, link.b} & self.down_ports:
            return None, None
        self.up.add(link)
        return link, None

    def _pending(self, link: Link, sent_from: PortRef, arrived_at: PortRef, now: float) -> PendingLink | None:
        entry = self.pending.get(link)
        is_new = entry is None
        if entry is None:
            trunks = self.trunk_ports
            reason = "not declared"
            if sent_from in trunks or arrived_at in trunks:
                declared_peer = self.peer(arrived_at if arrived_at in trunks else sent_from)
                reason = f"miswired: the declared peer is {_port(declared_peer)}" if declared_peer else reason
            entry = self.pending[link] = PendingLink(link, self.wall(), self.wall(), 0, reason)
        entry.last_seen = self.wall()
        entry.frames += 1
        return entry if is_new else None

    def _fresh(self, link: Link, now: float) -> bool:
        return all(now - self.heard.get(key, float("-inf")) <= self.timeout
                   for key in ((link.a, link.b), (link.b, link.a)))

    def expire(self, now: float) -> list[Link]:
        """Links whose LLDP stopped in either direction: down."""
        gone = sorted(link for link in self.up if not self._fresh(link, now)
                      and link.a.dpid not in self.headless and link.b.dpid not in self.headless)
        for link in gone:
            self.up.discard(link)
        return gone

    def forgive(self, seconds: float) -> None:
        """The controller itself was stalled this long: no LLDP could be processed meanwhile."""
        for key in self.heard:
            self.heard[key] += seconds

    def hold(self, now: float, until_fresh_for: float) -> None:
        """Keep every heard direction fresh for at least `until_fresh_for` seconds from now."""
        floor = now + until_fresh_for - self.timeout
        for key, heard in self.heard.items():
            if heard < floor:
                self.heard[key] = floor

    def port_down(self, port: PortRef) -> list[Link]:
        self.down_ports.add(port)
        gone = sorted(link for link in self.up if port in (link.a, link.b))
        for link in gone:
            self.up.discard(link)
            self.heard.pop((link.a, link.b), None)
            self.heard.pop((link.b, link.a), None)
        return gone

    def port_up(self, port: PortRef) -> None:
        self.down_ports.discard(port)

    def switch_gone(self, dpid: int) -> list[Link]:
        """The switch lost its control channel: it keeps forwarding, but no LLDP can cross its
        links now. They are held as they were (a neighbour's port going down still takes one
        down) until the switch is back; returns the links that go down now (none)."""
        self.headless.add(dpid)
        return []

    def switch_back(self, dpid: int, now: float) -> None:
        """The switch reconnected: its held links get one timeout to be verified by LLDP again."""
        if dpid in self.headless:
            self.headless.discard(dpid)
            for link in self.up:
                if dpid in (link.a.dpid, link.b.dpid):
                    self.heard[(link.a, link.b)] = max(self.heard.get((link.a, link.b), now), now)
                    self.heard[(link.b, link.a)] = max(self.heard.get((link.b, link.a), now), now)

    def approve(self, link: Link) -> None:
        self.declared = self.declared | {link}
        self.pending.pop(link, None)

    def declare(self, links: Iterable[Link]) -> None:
        self.declared = frozenset(links)
        self.up &= set(self.declared)
        for link in self.declared:
            self.pending.pop(link, None)

    def summary(self) -> dict[str, list[dict[str, object]]]:
        return {
            "declared": [{"a": _port(l.a), "b": _port(l.b), "up": l in self.up} for l in sorted(self.declared)],
            "pending": [{"a": _port(p.link.a), "b": _port(p.link.b), "reason": p.reason, "frames": p.frames,
                         "first_seen": _utc(p.first_seen), "last_seen": _utc(p.last_seen)}
                        for p in sorted(self.pending.values(), key=lambda p: p.link)],
        }


def _utc(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def _port(where: PortRef | None) -> str:
    return f"{where.dpid:#x}:{where.port}" if where else "-"
