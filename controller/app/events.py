"""Attributed verdict events as JSON lines (a file, stdout or syslog), rate-limited per source.

Sources of events: the metered samples that switches send for dropped traffic (denied,
unknown devices, spoofing, conflicts), and the counters of monitor-mode rules (would-deny,
allowed-by-monitor), reported per polling interval. A token bucket per source (MAC or zone)
bounds what any one sender can make the controller write; what it drops is counted.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import time
from collections import deque
from typing import Any, Callable, TextIO

RATE_PER_SOURCE = 2.0  # events per second, per source
BURST_PER_SOURCE = 10
MAX_SOURCES = 10_000  # buckets kept; the oldest are forgotten beyond this
# All sources together: sources an outsider can multiply (ports are bounded, but a forgotten
# bucket comes back full) must not multiply the events either.
RATE_TOTAL = 100.0
BURST_TOTAL = 200
RECENT = 1000  # events kept in memory for the console (the file/syslog keeps them all)


class EventLog:
    def __init__(self, target: str | None, clock: Callable[[], float] = time.monotonic,
                 on_drop: Callable[[], None] = lambda: None) -> None:
        self.clock = clock
        self.on_drop = on_drop
        self.buckets: dict[str, tuple[float, float]] = {}
        self.total: tuple[float, float] = (float(BURST_TOTAL), clock())
        self.written = 0
        self.dropped = 0
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self._stream: TextIO | None = None
        self._syslog: logging.Logger | None = None
        if target == "-":
            self._stream = sys.stdout
        elif target == "syslog":
            self._syslog = logging.getLogger("otseg.events.syslog")
            self._syslog.propagate = False
            self._syslog.addHandler(logging.handlers.SysLogHandler(address="/dev/log"))
        elif target:
            self._stream = open(target, "a", buffering=1)

    def _allow(self, source: str) -> bool:
        now = self.clock()
        tokens, last = self.buckets.pop(source, (float(BURST_PER_SOURCE), now))
        tokens = min(float(BURST_PER_SOURCE), tokens + (now - last) * RATE_PER_SOURCE)
        total, total_last = self.total
        total = min(float(BURST_TOTAL), total + (now - total_last) * RATE_TOTAL)
        allowed = tokens >= 1.0 and total >= 1.0
        self.buckets[source] = (tokens - 1.0 if allowed else tokens, now)
        self.total = (total - 1.0 if allowed else total, now)
        if len(self.buckets) > MAX_SOURCES:
            self.buckets.pop(next(iter(self.buckets)))
        return allowed

    def emit(self, source: str, event: dict[str, Any]) -> bool:
        if not self._allow(source):
            self.dropped += 1
            self.on_drop()
            return False
        self.written += 1
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **event}
        self.recent.append(record)
        line = json.dumps(record, sort_keys=True)
        if self._stream is not None:
            self._stream.write(line + "\n")
        elif self._syslog is not None:
            self._syslog.warning(line)
        return True
