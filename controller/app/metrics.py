"""Every Prometheus metric otseg exports, in one place, against an injected registry.

Two kinds: event counters updated as things happen (packet-ins, topology changes, applies),
and a collector that reads the current state at scrape time (policy in force, switches,
links, assets, flows per table, and the per-conduit and denied counters that the poller
read from the switches' own flow statistics — never from packet-ins).
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any, Callable, Iterator

from controller.core.profiles import CAPABILITIES
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from controller.app.status import policy_modes
from controller.core.rules import cookie

if TYPE_CHECKING:
    from controller.app.enforcer import Enforcer


class FlowCounters:
    """The latest packet/byte counters per cookie and switch, as polled from the switches."""

    def __init__(self) -> None:
        # (dpid, table) -> cookie -> (packets, bytes): tables are polled at different rates,
        # and a table not polled this round keeps its last reading (counters never go back).
        self.by_switch: dict[tuple[int, str], dict[int, tuple[int, int]]] = {}

    def update(self, dpid: int, counters: dict[int, tuple[int, int]], table: str = "all") -> None:
        self.by_switch[(dpid, table)] = counters

    def reading(self, dpid: int, table: str = "all") -> dict[int, tuple[int, int]]:
        return self.by_switch.get((dpid, table), {})

    def forget(self, dpid: int) -> None:
        for key in [k for k in self.by_switch if k[0] == dpid]:
            del self.by_switch[key]

    def totals(self) -> dict[int, tuple[int, int]]:
        result: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for counters in self.by_switch.values():
            for key, (packets, octets) in counters.items():
                result[key][0] += packets
                result[key][1] += octets
        return {key: (value[0], value[1]) for key, value in result.items()}


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.packet_ins = Counter("otseg_packet_ins", "Packet-ins received, by reason", ["reason"],
                                  registry=registry)
        self.topology_changes = Counter("otseg_topology_changes", "Switch, link and port events", ["kind"],
                                        registry=registry)
        self.reconcile_flow_mods = Counter("otseg_reconcile_flow_mods", "Flow, group and meter changes sent",
                                           registry=registry)
        self.reconciles = Counter("otseg_reconciles", "Reconcile passes over all switches", registry=registry)
        self.events_dropped = Counter("otseg_events_dropped", "Verdict events not written (per-source rate limit)",
                                      registry=registry)
        self.events_written = Counter("otseg_events_written", "Verdict events written", registry=registry)
        self.apply_seconds = Histogram("otseg_policy_apply_duration_seconds",
                                       "Time to put a pushed policy in force on every switch (barrier-confirmed)",
                                       buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                                       registry=registry)
        self.handler_errors = Counter("otseg_handler_errors", "Unexpected exceptions in event handlers (logged "
                                      "rate-limited)", ["handler"], registry=registry)
        self.lldp_rejected = Counter("otseg_lldp_rejected", "LLDP frames without a valid otseg proof (foreign, forged "
                                     "or replayed)", registry=registry)
        self.repairs = Counter("otseg_repairs", "Differences between a switch and otseg's tables found by the "
                               "periodic audit and repaired, by kind and switch", ["kind", "switch"], registry=registry)
        self.discovery_seconds = Histogram("otseg_capability_discovery_seconds",
                                           "Time to read a connecting switch's table, group and meter features "
                                           "and probe bundles", buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 15),
                                           registry=registry)
        self.audits = Counter("otseg_audits", "Audit passes (every switch re-read and compared)", registry=registry)
        self.compile_checks = Counter("otseg_compile_checks", "Comparisons of the incremental compiler's tables with "
                                      "a full compile of the same inputs", registry=registry)
        self.compile_divergences = Counter("otseg_compile_divergences", "Comparisons where the incremental tables "
                                           "differed from a full compile (a bug: the state is then recomputed)",
                                           registry=registry)
        self.verify_runs = Counter("otseg_verify_runs", "Verifications of the switches' tables against the policy "
                                   "over every header (after reconciles, and periodically)", registry=registry)
        self.verify_violations = Gauge("otseg_verify_violations", "Findings of the last verification, by invariant "
                                       "(isolation, availability, loop, ambiguity, model): 0 when proved",
                                       ["invariant"], registry=registry)
        self.verify_seconds = Gauge("otseg_verify_seconds", "Duration of the last verification", registry=registry)
        self.counters = FlowCounters()

    def install_links(self, summary: Callable[[], dict[str, list[dict[str, object]]]]) -> None:
        """Declared links up and down, and pending (undeclared, never used) links."""
        self.registry.register(_LinksCollector(summary))

    def install_safety(self, findings: Callable[[], dict[int, list[Any]]]) -> None:
        """Unsafe switch settings found in OVSDB (in-band control, fail mode, protocols)."""
        self.registry.register(_SafetyCollector(findings))

    def install_cluster(self, status: Callable[[], dict[str, Any]]) -> None:
        """Cluster mode: this instance's role, term, store reachability, takeovers, switch roles."""
        self.registry.register(_ClusterCollector(status))

    def install_overrides(self, summary: Callable[[], dict[str, Any]]) -> None:
        """Grants (active, waiting for approval; seconds left each) and isolations in force."""
        self.registry.register(_OverridesCollector(summary))

    def install_state(self, enforcer: "Enforcer", version: Callable[[], str], unknown_devices: Callable[[], int]) -> None:
        self.registry.register(_StateCollector(enforcer, version, unknown_devices, self.counters))

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _StateCollector:
    def __init__(self, enforcer: "Enforcer", version: Callable[[], str], unknown_devices: Callable[[], int],
                 counters: FlowCounters) -> None:
        self.enforcer = enforcer
        self.version = version
        self.unknown_devices = unknown_devices
        self.counters = counters

    def describe(self) -> list[Any]:
        return []  # collected at scrape time only

    def collect(self) -> Iterator[Any]:
        enforcer = self.enforcer
        policy = enforcer.policy
        modes = policy_modes(policy)
        info = InfoMetricFamily("otseg_policy", "The policy in force")
        info.add_metric([], {"name": policy.name, "version": self.version()[:12], "mode": str(modes["policy"]),
                             "zones_in_monitor": ",".join(modes["zones_in_monitor"]),  # type: ignore[arg-type]
                             "conduits_in_monitor": ",".join(modes["conduits_in_monitor"])})  # type: ignore[arg-type]
        yield info
        yield GaugeMetricFamily("otseg_switches_connected", "Switches connected", value=len(enforcer.switches))
        yield GaugeMetricFamily("otseg_switches_programmed", "Switches holding their compiled tables",
                                value=sum(1 for s in enforcer.switches.values() if s.programmed))
        yield GaugeMetricFamily("otseg_links_up", "Inter-switch links up", value=len(enforcer.links))
        capability = GaugeMetricFamily("otseg_switch_capability", "1 if the switch's profile has the capability "
                                       "(multi_table, tcp_flags, fast_failover, meters, bundles, conntrack)",
                                       labels=["switch", "capability", "profile", "source"])
        for dpid in sorted(enforcer.switches):
            profile = enforcer.profiles.of(dpid)
            source = str(enforcer.profiles.status(dpid)["source"])
            for name in ("multi_table",) + CAPABILITIES:
                has = not profile.single_table if name == "multi_table" else getattr(profile, name)
                capability.add_metric([f"{dpid:#x}", name, profile.name, source], 1 if has else 0)
        yield capability
        located = enforcer.bindings()
        assets = GaugeMetricFamily("otseg_assets", "Policy assets by location state", labels=["state"])
        assets.add_metric(["located"], len(located))
        assets.add_metric(["unlocated"], len(policy.assets) - len(located))
        yield assets
        yield GaugeMetricFamily("otseg_unknown_devices_seen", "Distinct unknown devices (MAC and port) seen",
                                value=self.unknown_devices())
        flows = GaugeMetricFamily("otseg_flows", "Flows installed by otseg", labels=["switch", "table"])
        for dpid, state in sorted(enforcer.switches.items()):
            per_table: dict[str, int] = defaultdict(int)
            for flow in state.installed or ():
                per_table[flow.table] += 1
            for table, count in sorted(per_table.items()):
                flows.add_metric([f"{dpid:#x}", table], count)
        yield flows
        totals = self.counters.totals()
        packets = CounterMetricFamily("otseg_conduit_packets", "Packets allowed, per conduit (switch counters)",
                                      labels=["conduit"])
        octets = CounterMetricFamily("otseg_conduit_bytes", "Bytes allowed, per conduit (switch counters)",
                                     labels=["conduit"])
        origins = [c.name for c in policy.conduits] + [f"intra:{z.name}" for z in policy.zones] + [
            f"monitor:{z.name}" for z in policy.zones]
        for origin in origins:
            value = totals.get(cookie(origin), (0, 0))
            packets.add_metric([origin], value[0])
            octets.add_metric([origin], value[1])
        yield packets
        yield octets
        denied = CounterMetricFamily("otseg_denied_packets", "Packets dropped because no conduit allows them, by "
                                     "source and destination zone (switch counters; destination '-': none of "
                                     "the source zone's peers)", labels=["source_zone", "destination_zone"])
        zones = [z.name for z in policy.zones]
        for source in zones:
            for destination in zones + ["-"]:
                count = totals.get(cookie(f"denied:{source}>{destination}"))
                if count is not None or destination == "-":
                    denied.add_metric([source, destination], (count or (0, 0))[0])
        yield denied
        would_deny = CounterMetricFamily("otseg_would_deny_packets", "Packets forwarded only because their source "
                                         "zone is in monitor mode (switch counters)", labels=["source_zone"])
        for zone in policy.zones:
            if policy.zone_forwards(zone.name):
                would_deny.add_metric([zone.name], totals.get(cookie(f"monitor:{zone.name}"), (0, 0))[0])
        yield would_deny


class _LinksCollector:
    def __init__(self, summary: Callable[[], dict[str, list[dict[str, object]]]]) -> None:
        self.summary = summary

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        summary = self.summary()
        links = GaugeMetricFamily("otseg_links", "Inter-switch links by state: declared and up, declared and down, "
                                  "pending (LLDP crossed an undeclared link; never used)", labels=["state"])
        declared = summary["declared"]
        links.add_metric(["up"], sum(1 for item in declared if item["up"]))
        links.add_metric(["down"], sum(1 for item in declared if not item["up"]))
        links.add_metric(["pending"], len(summary["pending"]))
        yield links


class _OverridesCollector:
    def __init__(self, summary: Callable[[], dict[str, Any]]) -> None:
        self.summary = summary

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        summary = self.summary()
        grants = GaugeMetricFamily("otseg_grants", "Temporary grants: in force, or waiting for a second token's approval",
                                   labels=["state"])
        grants.add_metric(["active"], sum(1 for g in summary["grants"] if g["active"]))
        grants.add_metric(["pending"], sum(1 for g in summary["grants"] if not g["active"]))
        yield grants
        left = GaugeMetricFamily("otseg_grant_seconds_left", "Seconds until a grant ends by itself", labels=["grant"])
        for grant in summary["grants"]:
            left.add_metric([grant["id"]], grant["seconds_left"])
        yield left
        isolations = GaugeMetricFamily("otseg_isolations", "Isolations in force (a zone, an asset, or the island)",
                                       labels=["isolation", "target"])
        for isolation in summary["isolations"]:
            isolations.add_metric([isolation["id"], isolation["describe"].split(": ", 1)[-1]], 1)
        yield isolations


class _SafetyCollector:
    def __init__(self, findings: Callable[[], dict[int, list[Any]]]) -> None:
        self.findings = findings

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        gauge = GaugeMetricFamily("otseg_switch_unsafe_settings", "Unsafe switch settings found in OVSDB (1 per "
                                  "finding)", labels=["switch", "code", "severity"])
        for dpid, findings in sorted(self.findings().items()):
            for finding in findings:
                gauge.add_metric([f"{dpid:#x}", finding.code, finding.severity], 1)
        yield gauge


class _ClusterCollector:
    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self.status = status

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        status = self.status()
        leader = GaugeMetricFamily("otseg_cluster_leader", "1 while this instance leads the cluster (holds the "
                                   "OpenFlow MASTER role), else 0", labels=["instance"])
        leader.add_metric([status["instance"]], 1 if status["role"] == "leader" else 0)
        yield leader
        term = GaugeMetricFamily("otseg_cluster_term", "The leader's term (the generation_id of its MASTER role "
                                 "requests) as this instance last read it")
        term.add_metric([], status["term"])
        yield term
        store = GaugeMetricFamily("otseg_cluster_store_up", "1 while this instance reaches the etcd quorum")
        store.add_metric([], 1 if status["store"] == "up" else 0)
        yield store
        takeovers = CounterMetricFamily("otseg_cluster_takeovers", "Times this instance became leader")
        takeovers.add_metric([], status["takeovers"])
        yield takeovers
        refused = CounterMetricFamily("otseg_cluster_writes_refused", "Writes a switch refused because this "
                                      "instance was not its master (OFPBRC_IS_SLAVE)")
        refused.add_metric([], status["writes_refused_as_slave"])
        yield refused
        roles = GaugeMetricFamily("otseg_switch_role", "The OpenFlow role each switch granted this instance (1)",
                                  labels=["switch", "role"])
        for switch, held in sorted(status["switch_roles"].items()):
            roles.add_metric([switch, held["role"]], 1)
        yield roles
