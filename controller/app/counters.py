"""Counter polling and monitor reporting: read our flows' counters from every programmed switch
into the metrics, and report monitor-mode traffic (forwarded by the switches, never sampled)
as events. Its dependencies are injected: the requests plumbing, the metrics, an event sink
and the hub's sleep."""

from __future__ import annotations

from typing import Any, Callable

from controller.app.enforcer import Enforcer
from controller.app.metrics import Metrics
from controller.app.requests import SwitchRequests
from controller.core.flows import COOKIE_PREFIX, COOKIE_PREFIX_MASK
from controller.core.pipeline import DESTINATION, POLICY, PORT_SECURITY, TABLE_IDS
from controller.core.rules import cookie

DESTINATION_POLL_EVERY = 6  # rounds: the destination table's counters every 30 s
COUNTER_POLL_PERIOD = 5.0  # flow counters behind the per-conduit and denied metrics


class CounterPoller:
    def __init__(self, enforcer: Enforcer, requests: SwitchRequests, metrics: Metrics,
                 emit: Callable[[str, dict[str, Any]], None], sleep: Callable[[float], None]) -> None:
        self.enforcer, self.requests, self.metrics, self.emit, self.sleep = enforcer, requests, metrics, emit, sleep
        self._monitor_seen: dict[str, int] = {}

    def run(self) -> None:
        """The port-security and policy tables (conduits, assets, monitor, most denied counters)
        every COUNTER_POLL_PERIOD; the destination table, which holds an entry per reachable
        destination but only one counter of interest per local zone, every
        DESTINATION_POLL_EVERY rounds: parsing every entry of every switch each 5 s cost a
        1,000-asset network more CPU than everything else the controller does."""
        rounds = 0
        while True:
            self.sleep(COUNTER_POLL_PERIOD)
            tables = [PORT_SECURITY, POLICY] + ([DESTINATION] if rounds % DESTINATION_POLL_EVERY == 0 else [])
            rounds += 1
            for dpid, state in list(self.enforcer.switches.items()):
                if not state.programmed:
                    continue
                for table in tables:
                    counters = self.read(state.channel.datapath, table)  # type: ignore[attr-defined]
                    if counters is None:
                        break
                    self.metrics.counters.update(dpid, counters, table)
            self.report_monitor()

    def read(self, datapath: Any, table: str) -> dict[int, tuple[int, int]] | None:
        ofproto, parser = datapath.ofproto, datapath.ofproto_parser
        bodies = self.requests.request(datapath, parser.OFPFlowStatsRequest(
            datapath, 0, TABLE_IDS[table], ofproto.OFPP_ANY, ofproto.OFPG_ANY, COOKIE_PREFIX,
            COOKIE_PREFIX_MASK, parser.OFPMatch()))
        if bodies is None:
            return None
        counters: dict[int, list[int]] = {}
        for stats in bodies:
            entry = counters.setdefault(stats.cookie, [0, 0])
            entry[0] += stats.packet_count
            entry[1] += stats.byte_count
        return {k: (v[0], v[1]) for k, v in counters.items()}

    def report_monitor(self) -> None:
        """Monitor-mode traffic is forwarded by the switches; report it from their counters."""
        policy = self.enforcer.policy
        totals = self.metrics.counters.totals()
        origins = [(f"monitor:{z.name}", "would-deny", {"source_zone": z.name}) for z in policy.zones
                   if policy.zone_forwards(z.name)]
        origins += [(c.name, "allowed-by-monitor", {"conduit": c.name, "reason": c.reason}) for c in policy.conduits
                    if c.mode == "monitor"]
        for origin, verdict, detail in origins:
            packets = totals.get(cookie(origin), (0, 0))[0]
            delta = packets - self._monitor_seen.get(origin, packets)
            self._monitor_seen[origin] = packets
            if delta > 0:
                self.emit(origin, {"verdict": verdict, "mode": "monitor", "packets": delta,
                                   "period_seconds": COUNTER_POLL_PERIOD, **detail})
