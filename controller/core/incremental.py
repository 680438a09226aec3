"""The incremental compiler: after a change, rerun only the units whose inputs changed.

`IncrementalCompiler.compile(policy, topology)` returns exactly what
`compiler.compile_tables(policy, topology)` returns (tests check it after every change, and the
running controller re-checks it now and then off its event loop), but it works from the
previous inputs:

1. it compares the new inputs with the previous ones part by part (assets by name, zones,
   conduits, attachments, links) and derives which context fields changed, for which keys;
2. it maps those changes to the units that read them, through indexes kept for the purpose
   (endpoint -> relations, zone -> members, switch -> assets attached there);
3. it reruns those units, and replaces their old output in the merged tables: each entry key
   remembers which units yield it, so that removing one unit's entry brings back another's;
4. it rebuilds the SwitchTables of the switches whose entries changed, and returns the others
   unchanged (the same objects).

A new switch set or a different `fast_failover` rebuilds everything (`full_compiles` counts
them). Like OVN's incremental engine, recompute is the fallback, never the reference.
Not thread-safe: one caller at a time (the controller serialises its compiles).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Iterable

from controller.core.compiler import derive, derive_peers, locate_one
from controller.core.flows import SwitchTables
from controller.core.ids import assign_ids
from controller.core.lowering import lower_all
from controller.core.merge import MergedTables, Stats, UnitId
from controller.core.model import Endpoint, Policy
from controller.core.pipeline import SRC_ASSET, SRC_ZONE
from controller.core.ip_multicast import feeds, ip_multicast_unit
from controller.core.relations import Relation, expand, is_l2_multicast
from controller.core.routes import infra_inputs, route_changes
from controller.core.profiles import Profile
from controller.core.topology import PortRef, Topology
from controller.core.units import (
    EMPTY, Context, MulticastKey, UnitOutput, conntrack_unit, denied_unit, destination_unit, endpoint_classes,
    endpoint_hosts, infra_unit, learned_unit, locate_unit, monitor_unit, multicast_receivers, multicast_unit, port_unit,
    relation_endpoints, relation_unit,
)

UNIT_FUNCTIONS: dict[str, Callable[[Context, object], UnitOutput]] = {
    "infra": infra_unit, "port": port_unit, "ct": conntrack_unit, "relation": relation_unit,  # type: ignore[dict-item]
    "monitor": monitor_unit, "locate": locate_unit, "destination": destination_unit,  # type: ignore[dict-item]
    "multicast": multicast_unit, "denied": denied_unit, "learned": learned_unit,  # type: ignore[dict-item]
    "ip-multicast": ip_multicast_unit,  # type: ignore[dict-item]
}
ASSET_UNITS = ("port", "ct", "locate", "destination")


class IncrementalCompiler:
    def __init__(self, fast_failover: bool = True) -> None:
        self.fast_failover = fast_failover
        self.ctx: Context | None = None
        self.full_compiles = 0
        self.stats = Stats()
        self._outputs: dict[UnitId, UnitOutput] = {}
        self.merged = MergedTables()
        self._by_endpoint: dict[Endpoint, list[Relation]] = {}
        self._multicast_endpoints: frozenset[Endpoint] = frozenset()
        self._relation_set: frozenset[Relation] = frozenset()
        self._lowered: dict[int, tuple[SwitchTables, Profile, SwitchTables]] = {}

    def contributions(self, dpids: Iterable[int]) -> dict[int, dict[UnitId, int]]:
        """Per switch: how many entries each unit yields there (for budget reports)."""
        wanted = set(dpids)
        result: dict[int, dict[UnitId, int]] = {dpid: {} for dpid in wanted}
        for unit, output in self._outputs.items():
            for dpid, _ in output.flows:
                if dpid in wanted:
                    counts = result[dpid]
                    counts[unit] = counts.get(unit, 0) + 1
        return result

    def reset(self) -> None:
        """Forget everything: the next compile is a full one."""
        self.ctx = None

    @property
    def tables(self) -> dict[int, SwitchTables]:
        """Each switch's tables, lowered to its profile (the same object while nothing changed)."""
        profiles = dict(self.ctx.topology.profiles) if self.ctx is not None else {}
        return lower_all(self.merged.tables, profiles, self._lowered)

    # -- entry point ----------------------------------------------------------------------
    def compile(self, policy: Policy, topology: Topology) -> dict[int, SwitchTables]:
        old = self.ctx
        if old is not None and old.policy is policy and old.topology is topology:
            self.stats = Stats()
            return self.tables
        if old is None or topology.profiles != old.topology.profiles:
            return self._full(policy, topology)  # a profile changes what every unit yields there
        self.stats = Stats()
        added = topology.switches - old.topology.switches
        removed = old.topology.switches - topology.switches
        for dpid in added:
            self.merged.add_switch(dpid)
        ctx, dirty = self._derive_changes(old, policy, topology)
        self.ctx = ctx
        self._run(ctx, dirty)
        for dpid in removed:  # every unit that yielded entries there was rerun and yields none now
            if not self.merged.remove_switch(dpid):
                return self._full(policy, topology)  # cannot happen; recompute rather than keep a ghost
        self.merged.finish(topology, self.stats)
        return self.tables

    # -- full ---------------------------------------------------------------------------------
    def _full(self, policy: Policy, topology: Topology) -> dict[int, SwitchTables]:
        self.full_compiles += 1
        self.stats = Stats(full=True)
        ctx = derive(policy, topology, self.fast_failover)
        self.ctx = ctx
        self._outputs = {}
        self.merged = MergedTables(topology.switches)
        self._index_relations(ctx)
        dirty: dict[str, set[object]] = {
            "infra": set(topology.switches), "relation": set(ctx.relations), "monitor": set(ctx.monitor_zones),
            "multicast": set(ctx.multicast), "denied": set(ctx.zone_ids), "learned": set(topology.conversations),
            "ip-multicast": set(ctx.feeds),
            **{kind: set(ctx.assets) for kind in ASSET_UNITS},
        }
        self._run(ctx, dirty)
        self.merged.finish(topology, self.stats)
        return self.tables

    # -- what changed -------------------------------------------------------------------------
    def _derive_changes(self, old: Context, policy: Policy, topology: Topology
                        ) -> tuple[Context, dict[str, set[object]]]:
        dirty: dict[str, set[object]] = {kind: set() for kind in UNIT_FUNCTIONS}
        ctx = replace(old, policy=policy, topology=topology)
        # Learn mode: new or dropped conversations; every one when anything they read may have changed.
        before, after = set(old.topology.conversations), set(topology.conversations)
        dirty["learned"] |= before ^ after
        if policy != old.policy or topology.attachments != old.topology.attachments:
            dirty["learned"] |= before | after
        if topology.learn_full != old.topology.learn_full:
            dirty["monitor"] |= set(old.monitor_zones)

        # Assets, zones and ids.
        if policy.assets is old.policy.assets:
            changed: set[str] = set()
        else:
            ctx.assets = {asset.name: asset for asset in policy.assets}
            changed = {name for name in old.assets.keys() | ctx.assets.keys()
                       if (before := old.assets.get(name)) is not (after := ctx.assets.get(name)) and before != after}
            if ctx.assets.keys() != old.assets.keys():
                ctx.asset_ids = assign_ids(ctx.assets, SRC_ASSET.width)
                changed |= {name for name in ctx.asset_ids if old.asset_ids.get(name) != ctx.asset_ids[name]}
        changed_zone_ids: set[str] = set()
        if policy.zones != old.policy.zones:
            ctx.zone_ids = assign_ids((z.name for z in policy.zones), SRC_ZONE.width)
            changed_zone_ids = {zone for zone in old.zone_ids.keys() | ctx.zone_ids.keys()
                                if old.zone_ids.get(zone) != ctx.zone_ids.get(zone)}
        moved_zones: set[str] = set()
        if changed:
            ctx.members = dict(old.members)
            for name in changed:
                before, after = old.assets.get(name), ctx.assets.get(name)
                if before is not None and (after is None or after.zone != before.zone):
                    ctx.members[before.zone] = ctx.members.get(before.zone, set()) - {name}
                    moved_zones.add(before.zone)
                if after is not None and (before is None or after.zone != before.zone):
                    ctx.members[after.zone] = ctx.members.get(after.zone, set()) | {name}
                    moved_zones.add(after.zone)
        for zone in {z.name for z in policy.zones} - ctx.members.keys():
            ctx.members[zone] = set()

        # Where assets are.
        trunks_changed = topology.trunk_ports != old.topology.trunk_ports or topology.switches != old.topology.switches
        if trunks_changed:
            relocate: Iterable[str] = ctx.assets.keys() | old.located.keys()
        else:
            relocate = set(changed)
            if topology.attachments is not old.topology.attachments:
                seen_before, seen_now = set(old.topology.attachments), set(topology.attachments)
                relocate |= {name for name, _ in seen_before ^ seen_now}  # type: ignore[operator]
        seen = topology.attachment_map() if relocate else {}
        located_changes: set[str] = set()
        new_located: dict[str, PortRef] | None = None
        for name in relocate:
            asset = ctx.assets.get(name)
            where = locate_one(asset, seen, topology) if asset is not None else None
            if old.located.get(name) != where:
                if new_located is None:
                    new_located = dict(old.located)
                located_changes.add(name)
                if where is None:
                    new_located.pop(name, None)
                else:
                    new_located[name] = where
        if new_located is not None:
            ctx.located = new_located
        changed |= located_changes

        # Relations and the endpoint classes they imply.
        relations_changed = not (policy.conduits is old.policy.conduits or policy.conduits == old.policy.conduits) \
            or policy.zones != old.policy.zones or policy.services != old.policy.services \
            or policy.mode != old.policy.mode
        added_relations: set[Relation] = set()
        removed_relations: set[Relation] = set()
        if relations_changed:
            ctx.relations = expand(policy)
            before_set, after_set = set(old.relations), set(ctx.relations)
            added_relations = after_set - before_set
            removed_relations = before_set - after_set
            dirty["relation"] |= added_relations | removed_relations
            ctx.l2_senders, ctx.responders, ctx.l2_receivers, ctx.monitor_zones = endpoint_classes(policy, ctx.relations)
            self._index_relations(ctx)
            for kinds, before_class, after_class in ((("port",), old.l2_senders, ctx.l2_senders),
                                                      (("ct",), old.responders, ctx.responders),
                                                      (("destination",), old.l2_receivers, ctx.l2_receivers)):
                for endpoint in before_class ^ after_class:
                    for kind in kinds:
                        dirty[kind] |= self._names(ctx, endpoint)
            dirty["monitor"] |= set(old.monitor_zones) ^ set(ctx.monitor_zones)
            if _isolated(policy) != _isolated(old.policy):  # every monitor zone's unit names the isolated zones
                dirty["monitor"] |= set(ctx.monitor_zones)

        # Hosts of every endpoint: recomputed for the endpoints a changed asset is (or was) in.
        hosts_changed: set[Endpoint] = set()
        if relations_changed or changed or moved_zones:
            endpoints = relation_endpoints(policy, ctx.relations) if relations_changed else old.hosts.keys()
            recheck = {Endpoint("asset", name) for name in changed} | {
                Endpoint("zone", zone) for zone in moved_zones} | {
                Endpoint("zone", old.assets[name].zone) for name in changed if name in old.assets} | {
                Endpoint("zone", ctx.assets[name].zone) for name in changed if name in ctx.assets}
            hosts: dict[Endpoint, frozenset[int]] = {}
            for endpoint in endpoints:
                known = old.hosts.get(endpoint)
                hosts[endpoint] = endpoint_hosts(endpoint, ctx.members, ctx.located) \
                    if known is None or endpoint in recheck else known
            hosts_changed = {e for e in recheck | (hosts.keys() ^ old.hosts.keys())
                             if hosts.get(e) != old.hosts.get(e)}
            ctx.hosts = hosts
        for endpoint in hosts_changed:
            dirty["relation"] |= set(self._by_endpoint.get(endpoint, ()))
            if endpoint.kind == "zone":
                dirty["monitor"].add(endpoint.name)
                dirty["denied"].add(endpoint.name)
        if changed_zone_ids:  # deny counters name every destination zone by its id
            dirty["denied"] |= set(ctx.zone_ids) | changed_zone_ids
            if changed_zone_ids & _isolated(policy):
                dirty["monitor"] |= set(ctx.monitor_zones)
        for zone in changed_zone_ids:
            dirty["relation"] |= set(self._by_endpoint.get(Endpoint("zone", zone), ()))
            dirty["monitor"].add(zone)
            dirty["port"] |= ctx.members.get(zone, set())
            dirty["destination"] |= ctx.members.get(zone, set())
        for name in changed:
            dirty["relation"] |= set(self._by_endpoint.get(Endpoint("asset", name), ()))

        # Peers: who may exchange packets with whom, by switch.
        if relations_changed or hosts_changed:
            derive_peers(ctx)
            if ctx.monitor_hosts != old.monitor_hosts or ctx.everyone_l2 != old.everyone_l2:
                dirty["destination"] |= set(ctx.assets)
                dirty["locate"] |= set(ctx.assets)
            for endpoint in ctx.peer_hosts.keys() | old.peer_hosts.keys():
                if ctx.peer_hosts.get(endpoint) != old.peer_hosts.get(endpoint):
                    names = self._names(ctx, endpoint)
                    dirty["destination"] |= names
                    dirty["locate"] |= names

        # Routes: switches whose forwarding toward a home changed.
        changed_routes: dict[int, set[int]] = {}
        if topology.links != old.topology.links or topology.switches != old.topology.switches:
            changed_routes = route_changes(old, ctx)
            homes = {home: dpids for home, dpids in changed_routes.items() if dpids}
            if homes:
                for name, where in ctx.located.items():
                    dpids = homes.get(where.dpid)
                    if dpids is None:
                        continue
                    unit = self._outputs.get(("destination", name), EMPTY)
                    if not dpids.isdisjoint(unit.served) or not dpids.isdisjoint(ctx.ingress(name)):
                        dirty["destination"].add(name)
        if topology.links != old.topology.links or topology.ports != old.topology.ports \
                or topology.declared_trunks != old.topology.declared_trunks \
                or topology.switches != old.topology.switches:
            for dpid in topology.switches | old.topology.switches:
                if infra_inputs(old.topology, dpid) != infra_inputs(topology, dpid):
                    dirty["infra"].add(dpid)

        # L2 multicast trees: the entries of the sources whose targets may have changed.
        sources = self._multicast_sources(ctx, old, changed) if changed else set()
        if relations_changed:
            for relation in added_relations | removed_relations:
                if is_l2_multicast(relation):
                    sources |= self._names(ctx, relation.source) | self._names(old, relation.source)
        if sources:
            zone_of = {name: ctx.assets[name].zone for name in sources if name in ctx.assets}
            fresh = multicast_receivers(ctx.relations, ctx.members, ctx.located, zone_of, zone_of)
            multicast = {key: value for key, value in old.multicast.items() if key[0] not in sources}
            multicast.update(fresh)
            for key in multicast.keys() | old.multicast.keys():
                if key[0] in sources and multicast.get(key) != old.multicast.get(key):
                    dirty["multicast"].add(key)
            ctx.multicast = multicast
        if changed or changed_routes:
            for key, (targets, _) in ctx.multicast.items():
                if key[0] in changed or not targets.isdisjoint(changed):
                    dirty["multicast"].add(key)
                    continue
                root = ctx.located.get(key[0])
                moved = changed_routes.get(root.dpid) if root is not None else None
                if moved and not moved.isdisjoint(
                        {dpid for dpid, _ in self._outputs.get(("multicast", key), EMPTY).flows}
                        | {ctx.located[t].dpid for t in targets if t in ctx.located} | {root.dpid}):
                    dirty["multicast"].add(key)

        # IP multicast feeds: few (one per source and group), so recomputed whole when their inputs
        # may have changed; a feed is rerun when it changed, a source or receiver moved, or a route did.
        if relations_changed or changed:
            ctx.feeds = feeds(policy, ctx.members, ctx.located)
        for key in ctx.feeds.keys() | old.feeds.keys():
            spans = ctx.feeds.get(key, ())
            if (spans != old.feeds.get(key) or changed_routes or key[0] in changed
                    or any(not targets.isdisjoint(changed) for _, _, targets, _ in spans)):
                dirty["ip-multicast"].add(key)

        for kind in ASSET_UNITS:
            dirty[kind] |= changed
        return ctx, dirty

    def _multicast_sources(self, ctx: Context, old: Context, changed: set[str]) -> set[str]:
        """Sources whose multicast targets may differ: the changed assets, and the members of the
        sources of every multicast relation that delivers to an endpoint a changed asset is (or was) in."""
        endpoints: set[Endpoint] = set()
        for name in changed:
            endpoints.add(Endpoint("asset", name))
            for context in (old, ctx):
                if name in context.assets:
                    endpoints.add(context.zone_endpoint(name))
        sources = set(changed)
        for endpoint in endpoints & self._multicast_endpoints:
            for relation in self._by_endpoint.get(endpoint, ()):
                if is_l2_multicast(relation) and relation.destination == endpoint:
                    sources |= self._names(ctx, relation.source) | self._names(old, relation.source)
        return sources

    def _names(self, ctx: Context, endpoint: Endpoint) -> set[str]:
        if endpoint.kind == "zone":
            return set(ctx.members.get(endpoint.name, ()))
        return {endpoint.name} if endpoint.name in ctx.assets else set()

    def _index_relations(self, ctx: Context) -> None:
        index: dict[Endpoint, list[Relation]] = {}
        multicast: set[Endpoint] = set()
        for relation in ctx.relations:
            index.setdefault(relation.source, []).append(relation)
            if relation.destination != relation.source:
                index.setdefault(relation.destination, []).append(relation)
            if is_l2_multicast(relation):
                multicast |= {relation.source, relation.destination}
        self._by_endpoint = index
        self._relation_set = frozenset(ctx.relations)
        self._multicast_endpoints = frozenset(multicast)

    # -- rerun units and merge -----------------------------------------------------------------
    def _run(self, ctx: Context, dirty: dict[str, set[object]]) -> None:
        order = ("infra", "port", "ct", "locate", "relation", "monitor", "learned", "destination", "multicast",
                 "ip-multicast")
        served = self.merged.served
        served_before = {dpid: frozenset(zones) for dpid, zones in served.items()}
        for kind in order:
            for key in dirty.get(kind, ()):
                self._rerun(ctx, kind, key)
        # Deny counters read the destination zones served on each switch, known only now.
        ctx.destination_zones = {dpid: frozenset(zones) for dpid, zones in served.items() if zones}
        served_changed = {dpid for dpid, zones in served.items()
                          if frozenset(zones) != served_before.get(dpid, frozenset())}
        denied = set(dirty.get("denied", ()))
        for zone in ctx.zone_ids:
            if not ctx.hosts_of(Endpoint("zone", zone)).isdisjoint(served_changed):
                denied.add(zone)
        for zone in denied:
            self._rerun(ctx, "denied", zone)
        self.merged.meters_changed(dirty.get("infra", set()))  # type: ignore[arg-type]

    def _rerun(self, ctx: Context, kind: str, key: object) -> None:
        unit: UnitId = (kind, key)
        self.stats.units_run += 1
        self.stats.by_kind[kind] = self.stats.by_kind.get(kind, 0) + 1
        if kind == "relation" and key not in self._relation_set:
            output = EMPTY  # a relation the policy no longer has
        else:
            output = UNIT_FUNCTIONS[kind](ctx, key)
        previous = self._outputs.get(unit, EMPTY)
        if output == previous:
            return
        self.stats.units_changed += 1
        self.merged.withdraw(unit, previous)
        self.merged.contribute(unit, output)
        if output.flows or output.groups or output.served:
            self._outputs[unit] = output
        else:
            self._outputs.pop(unit, None)


def _isolated(policy: Policy) -> set[str]:
    return {zone.name for zone in policy.zones if zone.isolated}
