"""What the controller has already reported about devices it saw, bounded per port.

An outsider decides which source MACs it sends: a device that randomises its MAC on every
frame must not grow the controller's memory. Each (kind, MAC) is reported once per port, for
at most MACS_PER_PORT MACs per port; beyond that the port's further MACs are only counted
(one aggregate line per port and minute). Ports are the switches' own, so the whole table is
bounded by ports × MACS_PER_PORT.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

from controller.core.topology import PortRef

MACS_PER_PORT = 64
AGGREGATE_EVERY = 60.0  # seconds between "N more MACs at this port" lines

log = logging.getLogger("otseg.enforcer")


@dataclass
class PortSightings:
    reported: OrderedDict[tuple[str, str], None] = field(default_factory=OrderedDict)  # (kind, mac), oldest first
    overflow: int = 0  # distinct sightings not kept since the last aggregate line
    overflow_total: int = 0
    last_aggregate: float = float("-inf")


class SightingLog:
    def __init__(self, clock: Callable[[], float] = time.monotonic, per_port: int = MACS_PER_PORT) -> None:
        self.clock = clock
        self.per_port = per_port
        self.ports: dict[PortRef, PortSightings] = {}

    def first_time(self, kind: str, mac: str, where: PortRef) -> bool:
        """True if this (kind, MAC) at this port should be reported now (the first time)."""
        port = self.ports.setdefault(where, PortSightings())
        key = (kind, mac)
        if key in port.reported:
            return False
        if len(port.reported) < self.per_port:
            port.reported[key] = None
            return True
        port.overflow += 1
        port.overflow_total += 1
        now = self.clock()
        if now - port.last_aggregate >= AGGREGATE_EVERY:
            log.warning("%d more distinct source MACs at %#x:%d (MAC randomisation or a flood?): not reported one by "
                        "one beyond the first %d", port.overflow, where.dpid, where.port, self.per_port)
            port.overflow, port.last_aggregate = 0, now
        return False

    def listing(self) -> list[dict[str, str]]:
        """Every sighting reported one by one: kind, MAC and port (`0xc:5`), by port."""
        return [{"kind": kind, "mac": mac, "where": f"{where.dpid:#x}:{where.port}"}
                for where, port in sorted(self.ports.items(), key=lambda item: (item[0].dpid, item[0].port))
                for kind, mac in port.reported]

    def count(self, kind: str) -> int:
        """Distinct (MAC, port) sightings of `kind` that were reported one by one."""
        return sum(1 for port in self.ports.values() for k, _ in port.reported if k == kind)

    def overflowed(self) -> int:
        return sum(port.overflow_total for port in self.ports.values())

    def __len__(self) -> int:
        return sum(len(port.reported) for port in self.ports.values())
