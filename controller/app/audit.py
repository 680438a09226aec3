"""Drift repair's loop: every `period` seconds, re-read every switch (Enforcer.audit), count and
report each difference (metric otseg_repairs_total, one event per switch and audit), then wake
the reconcile worker, which repairs them. Dependencies injected: the lock that serialises the
enforcer, the metrics, an event sink, the worker's wake-up and the hub's sleep."""

from __future__ import annotations

from typing import Any, Callable, ContextManager

from controller.app.enforcer import Enforcer
from controller.app.metrics import Metrics

# Events list the most suspicious differences first (someone else's flow before a lost one).
DRIFT_ORDER = {"unreadable": -1, "foreign": 0, "unexpected": 1, "changed": 2, "group-changed": 3, "meter-changed": 4, "missing": 5}
DETAILS_PER_EVENT = 10


class DriftAuditor:
    def __init__(self, enforcer: Enforcer, lock: ContextManager[Any], metrics: Metrics,
                 emit: Callable[[str, dict[str, Any]], None], wake: Callable[[], None],
                 sleep: Callable[[float], None], period: float) -> None:
        self.enforcer, self.lock, self.metrics, self.emit = enforcer, lock, metrics, emit
        self.wake, self.sleep, self.period = wake, sleep, period

    def run(self) -> None:
        while True:
            self.sleep(self.period)
            self.once()

    def once(self) -> int:
        """One audit; returns the number of differences found."""
        with self.lock:
            found = self.enforcer.audit()
        self.metrics.audits.inc()
        for dpid, repairs in found.items():
            kinds: dict[str, int] = {}
            for repair in repairs:
                self.metrics.repairs.labels(repair.kind, f"{dpid:#x}").inc()
                kinds[repair.kind] = kinds.get(repair.kind, 0) + 1
            # One event per switch and audit: a deleted table is dozens of repairs, one incident.
            worst_first = sorted(repairs, key=lambda r: DRIFT_ORDER.get(r.kind, len(DRIFT_ORDER)))
            self.emit(f"drift:{dpid:#x}", {"verdict": "repaired", "reason": "drift", "switch": f"{dpid:#x}",
                                           "repairs": kinds,
                                           "detail": [r.describe() for r in worst_first[:DETAILS_PER_EVENT]]})
        if found:
            self.wake()
        return sum(len(r) for r in found.values())
