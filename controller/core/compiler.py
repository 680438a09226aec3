"""compile_tables(policy, topology) -> {dpid: SwitchTables}: pure, deterministic, fail-closed.

Placement decides which switch needs which rule:
- port-security rules on the switch where an asset is located (its pin, else where seen);
- policy rules only on switches that host members of the relation's source (the ingress);
- destination entries for an asset only on the switches on shortest paths from the
  switches of the assets that may talk to it (either direction) to its own switch; the
  address checks (ipv4_dst, arp_tpa) on its own switch, one exact-match entry elsewhere;
- L2 multicast along a source-rooted shortest-path tree (loop-free on rings), and UDP to a
  conduit's IPv4 groups the same way (controller.core.ip_multicast).
Assets that are not located, or located on a trunk port or unknown switch, get nothing.

The work is split into units (`controller/core/units.py`); this module derives their common
context at once and runs every unit: the reference the incremental compiler is checked against.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

from controller.core.flows import Flow, Meter, SwitchTables
from controller.core.ids import assign_ids
from controller.core.lowering import lower_all
from controller.core.model import Asset, Endpoint, Policy
from controller.core.pipeline import (
    METER_DENIED_SAMPLE, METER_LLDP, METER_LOCATE, METER_MISS_SAMPLE, METER_UNTRUSTED_LLDP, SRC_ASSET, SRC_ZONE,
    check_flow, port_meter,
)
from controller.core.ip_multicast import feeds, ip_multicast_unit
from controller.core.relations import expand
from controller.core.topology import PortRef, Topology, locate_assets, locate_one  # noqa: F401 (re-exported)
from controller.core.units import (
    Context, GroupKey, UnitOutput, conntrack_unit, denied_unit, destination_unit, endpoint_classes, endpoint_hosts,
    infra_unit, learned_unit, locate_unit, make_group, members_by_zone, monitor_unit, multicast_receivers, multicast_unit,
    peer_hosts_of, port_unit, relation_endpoints, relation_unit, trunk_ports_of,
)

PORT_SAMPLE_PPS = 10  # per edge port: enough to bind a device and report an unknown one
METERS = frozenset({Meter(METER_MISS_SAMPLE, rate_pps=10, burst=10), Meter(METER_LLDP, rate_pps=50, burst=50),
                    Meter(METER_DENIED_SAMPLE, rate_pps=20, burst=20),
                    Meter(METER_UNTRUSTED_LLDP, rate_pps=10, burst=10), Meter(METER_LOCATE, rate_pps=20, burst=20)})


def switch_meters(edge_ports: list[int]) -> frozenset[Meter]:
    """The shared meters and one miss-sample meter per edge port."""
    return METERS | {Meter(port_meter(port), rate_pps=PORT_SAMPLE_PPS, burst=PORT_SAMPLE_PPS) for port in edge_ports}


def compile_tables(policy: Policy, topology: Topology, fast_failover: bool = True) -> dict[int, SwitchTables]:
    """Every switch's tables; `fast_failover=False` leaves out backup paths (recompute only)."""
    ctx = derive(policy, topology, fast_failover)
    tables: dict[int, dict[tuple[object, ...], Flow]] = {dpid: {} for dpid in topology.switches}
    groups: dict[int, set[GroupKey]] = {dpid: set() for dpid in topology.switches}
    for output in all_units(ctx):
        for dpid, flow in output.flows:
            table = tables[dpid]
            existing = table.get(flow.key)
            if existing is None or better(flow, existing):
                table[flow.key] = flow
        for dpid, key in output.groups:
            groups[dpid].add(key)
    checked: set[Flow] = set()
    result = {}
    for dpid, table in tables.items():
        for flow in table.values():
            if flow not in checked:
                check_flow(flow)
                checked.add(flow)
        result[dpid] = switch_tables(topology, dpid, frozenset(table.values()), groups[dpid])
    return lower_all(result, dict(topology.profiles))


def better(flow: Flow, existing: Flow) -> bool:
    """Two units may yield the same entry key: keep one, chosen by a stable order."""
    return (flow.cookie, flow.instructions) < (existing.cookie, existing.instructions)


def switch_tables(topology: Topology, dpid: int, flows: frozenset[Flow], groups: set[GroupKey]) -> SwitchTables:
    trunks = trunk_ports_of(topology, dpid)
    return SwitchTables(dpid, flows, switch_meters(topology.edge_ports(dpid)),
                        frozenset(make_group(trunks, key) for key in groups))


def derive(policy: Policy, topology: Topology, fast_failover: bool) -> Context:
    """The units' context, computed from scratch."""
    ctx = Context(policy, topology, fast_failover)
    ctx.assets = {asset.name: asset for asset in policy.assets}
    ctx.zone_ids = assign_ids((z.name for z in policy.zones), SRC_ZONE.width)
    ctx.asset_ids = assign_ids(ctx.assets, SRC_ASSET.width)
    ctx.located = locate_assets(policy, topology)
    ctx.members = members_by_zone(policy)
    ctx.relations = expand(policy)
    ctx.hosts = {e: endpoint_hosts(e, ctx.members, ctx.located) for e in relation_endpoints(policy, ctx.relations)}
    ctx.l2_senders, ctx.responders, ctx.l2_receivers, ctx.monitor_zones = endpoint_classes(policy, ctx.relations)
    derive_peers(ctx)
    ctx.multicast = multicast_receivers(ctx.relations, ctx.members, ctx.located)
    ctx.feeds = feeds(policy, ctx.members, ctx.located)
    return ctx


def derive_peers(ctx: Context) -> None:
    """peer_hosts, monitor_hosts and everyone_l2: from the relations and the hosts."""
    ctx.peer_hosts = peer_hosts_of(ctx.relations, ctx.hosts)
    ctx.monitor_hosts = frozenset().union(*(ctx.hosts_of(Endpoint("zone", z)) for z in ctx.monitor_zones))
    ctx.everyone_l2 = any(ctx.hosts_of(Endpoint("zone", z)) for z in ctx.monitor_zones)


def all_units(ctx: Context) -> Iterator[UnitOutput]:
    """Every unit's output, destinations before the deny counters that depend on them."""
    for dpid in sorted(ctx.topology.switches):
        yield infra_unit(ctx, dpid)
    for name in ctx.assets:
        yield port_unit(ctx, name)
        yield conntrack_unit(ctx, name)
        yield locate_unit(ctx, name)
    for relation in ctx.relations:
        yield relation_unit(ctx, relation)
    for zone in ctx.monitor_zones:
        yield monitor_unit(ctx, zone)
    for conversation in ctx.topology.conversations:
        yield learned_unit(ctx, conversation)
    served: dict[int, set[str]] = {}
    for name in ctx.assets:
        output = destination_unit(ctx, name)
        for dpid in output.served:
            served.setdefault(dpid, set()).add(output.zone)
        yield output
    ctx.destination_zones = {dpid: frozenset(zones) for dpid, zones in served.items()}
    for key in sorted(ctx.multicast):
        yield multicast_unit(ctx, key)
    for feed in sorted(ctx.feeds):
        yield ip_multicast_unit(ctx, feed)
    for zone in ctx.zone_ids:
        yield denied_unit(ctx, zone)


class CompileCache:
    """The last few compilations, by (policy, topology, fast_failover), computed incrementally.

    A policy push compiles the policy in force (to describe the change) and the candidate,
    then reconciles to the candidate: without this, three compiles per push. Policies and
    topologies are immutable values, so a hit is always exact. A miss goes to the incremental
    compiler (one per fast_failover setting), which reruns only what changed since its last
    inputs; `verify` compares its state with a full compile. Not thread-safe: the shell
    serialises calls (its executor runs one compile at a time)."""

    def __init__(self, size: int = 4,
                 executor: Callable[..., dict[int, SwitchTables]] = lambda function, *args: function(*args)) -> None:
        from controller.core.incremental import IncrementalCompiler  # noqa: PLC0415  (it imports this module)
        self.size = size
        self.executor = executor  # runs the compiles; the shell passes one that keeps its event loop live
        self._entries: dict[tuple[Policy, Topology, bool], dict[int, SwitchTables]] = {}
        self.engines = {flag: IncrementalCompiler(flag) for flag in (True, False)}
        self.hits = 0
        self.misses = 0
        self.divergences = 0

    def tables(self, policy: Policy, topology: Topology, fast_failover: bool = True) -> dict[int, SwitchTables]:
        key = (policy, topology, fast_failover)
        tables = self._entries.pop(key, None)
        if tables is None:
            self.misses += 1
            tables = self.executor(self.engines[fast_failover].compile, policy, topology)
            while len(self._entries) >= self.size:
                self._entries.pop(next(iter(self._entries)))
        else:
            self.hits += 1
        self._entries[key] = tables  # most recently used last
        return tables

    def contributions(self, fast_failover: bool, policy: Policy, topology: Topology,
                      dpids: Iterable[int]) -> dict[int, dict[tuple[str, object], int]]:
        """Entries per compiler unit on these switches, for these inputs."""
        engine = self.engines[fast_failover]
        self.executor(engine.compile, policy, topology)
        return engine.contributions(dpids)

    def snapshot(self) -> list[tuple[bool, Policy, Topology, dict[int, SwitchTables]]]:
        """Each incremental compiler's inputs and tables: cheap, taken under the caller's lock."""
        return [(flag, engine.ctx.policy, engine.ctx.topology, engine.tables)
                for flag, engine in self.engines.items() if engine.ctx is not None]

    def diverging(self, snapshot: list[tuple[bool, Policy, Topology, dict[int, SwitchTables]]],
                  executor: Callable[..., dict[int, SwitchTables]] | None = None) -> list[int]:
        """The switches whose incremental tables differ from a full compile of the same inputs.
        Slow (a full compile each), needs no lock: it reads only the immutable snapshot, so the
        caller may pass an executor that does not wait for the compiles in progress."""
        diverged: set[int] = set()
        for flag, policy, topology, mine in snapshot:
            full = (executor or self.executor)(compile_tables, policy, topology, flag)
            diverged |= {dpid for dpid in full.keys() | mine.keys() if full.get(dpid) != mine.get(dpid)}
        return sorted(diverged)

    def reset(self) -> None:
        """After a divergence (a bug): forget the incremental state, so the next compile is a full one."""
        self.divergences += 1
        for engine in self.engines.values():
            engine.reset()
        self._entries.clear()
