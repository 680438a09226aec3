"""compile_tables(policy, topology) -> {dpid: SwitchTables}: pure, deterministic, fail-closed.

Placement decides which switch needs which rule:
- port-security rules on the switch where an asset is located (its pin, else where seen);
- policy rules only on switches that host members of the relation's source (the ingress);
- destination entries for an asset only on the switches on shortest paths from the
  switches of the assets that may talk to it (either direction) to its own switch;
- L2 multicast along a source-rooted shortest-path tree (loop-free on rings).
Assets that are not located, or located on a trunk port or unknown switch, get nothing.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable

from controller.core.failover import Protection, protections
from controller.core.flows import (
    GROUP_PREFIX, IN_PORT, Action, Bucket, Flow, Group, GroupAction, Meter, Output, SwitchTables,
)
from controller.core.ids import assign_ids, stable_hash32
from controller.core.model import Asset, Endpoint, Policy
from controller.core.pipeline import (
    DST_ASSET, DST_ZONE, METER_DENIED_SAMPLE, METER_LLDP, METER_LOCATE, METER_MISS_SAMPLE, METER_UNTRUSTED_LLDP,
    SRC_ASSET, SRC_ZONE, check_flow, port_meter,
)
from controller.core.relations import Relation, expand, is_l2_multicast
from controller.core.rules import (
    arp_request_flow, denied_count_flows, destination_flows, infrastructure_flows, locate_flow, multicast_flow,
    Out, commit_flows, conntrack_lookup_flow, port_security_flows, relation_flows, to_port, unicast_flow,
    zone_monitor_flow,
)
from controller.core.topology import PortRef, Topology

PORT_SAMPLE_PPS = 10  # per edge port: enough to bind a device and report an unknown one
METERS = frozenset({Meter(METER_MISS_SAMPLE, rate_pps=10, burst=10), Meter(METER_LLDP, rate_pps=50, burst=50),
                    Meter(METER_DENIED_SAMPLE, rate_pps=20, burst=20),
                    Meter(METER_UNTRUSTED_LLDP, rate_pps=10, burst=10), Meter(METER_LOCATE, rate_pps=20, burst=20)})


def switch_meters(edge_ports: list[int]) -> frozenset[Meter]:
    """The shared meters and one miss-sample meter per edge port."""
    return METERS | {Meter(port_meter(port), rate_pps=PORT_SAMPLE_PPS, burst=PORT_SAMPLE_PPS) for port in edge_ports}


def compile_tables(policy: Policy, topology: Topology, fast_failover: bool = True) -> dict[int, SwitchTables]:
    """Every switch's tables; `fast_failover=False` leaves out backup paths (recompute only)."""
    return _Compilation(policy, topology, fast_failover).run()


class CompileCache:
    """The last few compilations, by (policy, topology, fast_failover).

    A policy push compiles the policy in force (to describe the change) and the candidate,
    then reconciles to the candidate: without this, three full compiles per push. Policies
    and topologies are immutable values, so a hit is always exact."""

    def __init__(self, size: int = 4,
                 executor: Callable[..., dict[int, SwitchTables]] = lambda function, *args: function(*args)) -> None:
        self.size = size
        self.executor = executor  # runs compile_tables; the shell passes one that keeps its event loop live
        self._entries: dict[tuple[Policy, Topology, bool], dict[int, SwitchTables]] = {}
        self.hits = 0
        self.misses = 0

    def tables(self, policy: Policy, topology: Topology, fast_failover: bool = True) -> dict[int, SwitchTables]:
        key = (policy, topology, fast_failover)
        tables = self._entries.pop(key, None)
        if tables is None:
            self.misses += 1
            tables = self.executor(compile_tables, policy, topology, fast_failover)
            while len(self._entries) >= self.size:
                self._entries.pop(next(iter(self._entries)))
        else:
            self.hits += 1
        self._entries[key] = tables  # most recently used last
        return tables


def locate_assets(policy: Policy, topology: Topology) -> dict[str, PortRef]:
    """Where each asset is bound: its pin, else where it was seen; never a trunk or unknown switch."""
    seen = topology.attachment_map()
    located: dict[str, PortRef] = {}
    for asset in policy.assets:
        where = PortRef(asset.location.dpid, asset.location.port) if asset.location else seen.get(asset.name)
        if where is not None and where.dpid in topology.switches and where not in topology.trunk_ports:
            located[asset.name] = where
    return located


class _Compilation:
    def __init__(self, policy: Policy, topology: Topology, fast_failover: bool = True) -> None:
        self.fast_failover = fast_failover
        self.policy = policy
        self.topology = topology
        self.zone_ids = assign_ids((z.name for z in policy.zones), SRC_ZONE.width)
        self.asset_ids = assign_ids((a.name for a in policy.assets), SRC_ASSET.width)
        self.located = locate_assets(policy, topology)
        self.relations = expand(policy)
        self.flows: dict[int, dict[tuple[object, ...], Flow]] = {dpid: {} for dpid in topology.switches}
        self._hosts_cache: dict[Endpoint, frozenset[int]] = {}
        self._protection_cache: dict[int, dict[int, Protection]] = {}
        self.destination_zones: dict[int, set[str]] = defaultdict(set)
        self.groups: dict[int, dict[tuple[int, int, int], Group]] = {dpid: {} for dpid in topology.switches}

    def run(self) -> dict[int, SwitchTables]:
        for dpid in self.topology.switches:
            live = sorted(p.port for p in self.topology.live_trunks if p.dpid == dpid)
            trunks = sorted(p.port for p in self.topology.trunk_ports if p.dpid == dpid)
            self._add(dpid, infrastructure_flows(live, trunks, self.topology.edge_ports(dpid)))
        self._port_security()
        self._conntrack_lookups()
        self._policy_rules()
        self._destinations()
        self._multicast()
        self._denied_counters()
        result = {}
        checked: set[Flow] = set()
        for dpid, flows in self.flows.items():
            for flow in flows.values():
                if flow not in checked:
                    check_flow(flow)
                    checked.add(flow)
            result[dpid] = SwitchTables(dpid, frozenset(flows.values()), switch_meters(self.topology.edge_ports(dpid)),
                                        frozenset(self.groups[dpid].values()))
        return result

    def _add(self, dpid: int, flows: list[Flow]) -> None:
        table = self.flows[dpid]
        for flow in flows:
            existing = table.get(flow.key)
            # Two origins may yield the same rule; keep one, chosen by a stable order.
            if existing is None or (flow.cookie, flow.instructions) < (existing.cookie, existing.instructions):
                table[flow.key] = flow

    def _members(self, endpoint: Endpoint) -> tuple[Asset, ...]:
        return self.policy.members(endpoint)

    def _hosts(self, endpoint: Endpoint) -> frozenset[int]:
        hosts = self._hosts_cache.get(endpoint)
        if hosts is None:
            hosts = frozenset(self.located[a.name].dpid for a in self._members(endpoint) if a.name in self.located)
            self._hosts_cache[endpoint] = hosts
        return hosts

    def _src_tag(self, endpoint: Endpoint) -> tuple[int, int]:
        if endpoint.kind == "zone":
            return SRC_ZONE.encode(self.zone_ids[endpoint.name]), SRC_ZONE.mask
        return SRC_ASSET.encode(self.asset_ids[endpoint.name]), SRC_ASSET.mask

    def _dst_tag(self, endpoint: Endpoint) -> tuple[int, int]:
        if endpoint.kind == "zone":
            return DST_ZONE.encode(self.zone_ids[endpoint.name]), DST_ZONE.mask
        return DST_ASSET.encode(self.asset_ids[endpoint.name]), DST_ASSET.mask

    def _asset_src_tag(self, asset: Asset) -> int:
        return SRC_ZONE.encode(self.zone_ids[asset.zone]) | SRC_ASSET.encode(self.asset_ids[asset.name])

    def _asset_dst_tag(self, asset: Asset) -> int:
        return DST_ZONE.encode(self.zone_ids[asset.zone]) | DST_ASSET.encode(self.asset_ids[asset.name])

    def _monitor_zones(self) -> list[str]:
        return [z.name for z in self.policy.zones if self.policy.zone_mode(z.name) == "monitor"]

    def _port_security(self) -> None:
        l2_sources: set[str] = set()
        for relation in self.relations:
            if relation.kind == "any" or (relation.kind == "service" and relation.match is not None
                                          and not relation.match.is_ip):
                l2_sources.update(a.name for a in self._members(relation.source))
        for zone in self._monitor_zones():
            l2_sources.update(a.name for a in self._members(Endpoint("zone", zone)))
        for asset in self.policy.assets:
            where = self.located.get(asset.name)
            if where is None:
                continue
            self._add(where.dpid, port_security_flows(
                where.port, asset.mac, asset.ip, self._asset_src_tag(asset), asset.name in l2_sources,
                f"asset:{asset.name}", asset.vlan))

    def _policy_rules(self) -> None:
        for relation in self.relations:
            hosts = self._hosts(relation.source)
            if not hosts or not self._hosts(relation.destination):
                continue
            src_tag, dst_tag = self._src_tag(relation.source), self._dst_tag(relation.destination)
            flows = relation_flows(relation, src_tag, dst_tag)
            for dpid in hosts:
                self._add(dpid, flows)
            if relation.stateful and relation.direction == "forward":
                self._commits(relation, src_tag, dst_tag)
        for zone in self._monitor_zones():
            endpoint = Endpoint("zone", zone)
            for dpid in self._hosts(endpoint):
                self._add(dpid, [zone_monitor_flow(self._src_tag(endpoint), zone)])


    def _commits(self, relation: Relation, src_tag: tuple[int, int], dst_tag: tuple[int, int]) -> None:
        """Commit a stateful conduit's forward packets where each responder is attached (its
        replies are looked up there): from local initiators, and from trunks."""
        sources = self._hosts(relation.source)
        local = commit_flows(relation, src_tag, dst_tag, transit=False)
        transit = commit_flows(relation, src_tag, dst_tag, transit=True)
        for dpid in self._hosts(relation.destination):
            self._add(dpid, transit + (local if dpid in sources else []))

    def _conntrack_lookups(self) -> None:
        """Responders of stateful conduits: their IPv4 goes through the tracker at their port."""
        responders: set[str] = set()
        for relation in self.relations:
            if relation.stateful and relation.direction == "reply":
                responders.update(a.name for a in self._members(relation.source))
        for name in sorted(responders):
            asset = self.policy.asset(name)
            where = self.located.get(name)
            if where is not None and asset.ip is not None:
                self._add(where.dpid, [conntrack_lookup_flow(where.port, asset.mac, asset.ip, f"asset:{name}",
                                                             asset.vlan)])

    def _ingress_switches(self) -> dict[str, set[int]]:
        """Per asset: the switches of every asset that may exchange packets with it."""
        peer_hosts: dict[Endpoint, set[int]] = defaultdict(set)
        for relation in self.relations:
            peer_hosts[relation.destination] |= self._hosts(relation.source)
            peer_hosts[relation.source] |= self._hosts(relation.destination)
        monitor_hosts: set[int] = set()
        for zone in self._monitor_zones():
            monitor_hosts |= self._hosts(Endpoint("zone", zone))
        return {asset.name: (peer_hosts.get(Endpoint("asset", asset.name), set())
                             | peer_hosts.get(Endpoint("zone", asset.zone), set()) | monitor_hosts)
                for asset in self.policy.assets}

    def _l2_destinations(self) -> set[str]:
        """Assets that may receive unicast frames other than IPv4 and ARP: destinations of an
        ethertype service or an intra-allow zone, and everyone once a monitor-mode zone forwards."""
        if any(self._hosts(Endpoint("zone", zone)) for zone in self._monitor_zones()):
            return {a.name for a in self.policy.assets}
        names: set[str] = set()
        for relation in self.relations:
            if _carries_l2(relation):
                names.update(a.name for a in self._members(relation.destination))
        return names

    def _locate_requests(self, ingress: dict[str, set[int]]) -> None:
        """ARP requests for an asset that is not located yet go to the controller (metered), which
        then looks for it: a device that is only polled never speaks first."""
        for asset in self.policy.assets:
            if asset.ip is not None and asset.name not in self.located:
                for dpid in ingress[asset.name]:
                    self._add(dpid, [locate_flow(asset.ip)])

    def _destinations(self) -> None:
        all_ingress = self._ingress_switches()
        self._locate_requests(all_ingress)
        l2_destinations = self._l2_destinations()
        for name, ingress in all_ingress.items():
            if name not in self.located:
                continue
            asset = self.policy.asset(name)
            home = self.located[name]
            parents = self.topology.parents_toward(home.dpid)
            protected = self._protections(home.dpid)
            on_path = self._walk_up(ingress, home.dpid, parents, set())
            rejoins = {protected[s].rejoin for s in on_path if s in protected}
            served = self._walk_up(rejoins, home.dpid, parents, set(on_path))
            tag = self._asset_dst_tag(asset)
            origin = f"asset:{name}"
            for dpid in served:
                self.destination_zones[dpid].add(asset.zone)
                if dpid == home.dpid:
                    out: Out = to_port(home.port, asset.vlan)
                elif dpid in on_path and dpid in protected:
                    out = self._failover(dpid, protected[dpid], asset.mac, tag, origin)
                else:
                    out = Output(self.topology.port_toward(dpid, parents[dpid]))
                flows = destination_flows(asset.mac, asset.ip, tag, out, origin, dpid == home.dpid,
                                          name in l2_destinations)
                if asset.ip is not None and dpid in ingress:
                    flows.append(arp_request_flow(asset.mac, asset.ip, tag, out, origin))
                self._add(dpid, flows)

    @staticmethod
    def _walk_up(starts: set[int], home: int, parents: dict[int, int], seen: set[int]) -> set[int]:
        """`seen` plus every switch on the tree paths from `starts` to `home` (unreachable ones skipped)."""
        on_path = set(seen)
        for start in starts:
            node = start
            while node not in on_path and (node == home or node in parents):
                on_path.add(node)
                if node == home:
                    break
                node = parents[node]
        return on_path

    def _protections(self, home: int) -> dict[int, Protection]:
        if home not in self._protection_cache:
            self._protection_cache[home] = protections(self.topology, home) if self.fast_failover else {}
        return self._protection_cache[home]

    def _failover(self, dpid: int, protection: Protection, mac: str, tag: int, origin: str) -> Action:
        """The fast-failover group for `dpid`'s uplink, plus the U-turn and detour entries it needs."""
        group = self._group(dpid, protection.primary, protection.backup, protection.backup)
        if protection.backup_is_child:
            # Traffic arriving from that child goes back out of its ingress port; watching the
            # child's port is exact: when it is down, nothing arrives from it anyway.
            u_turn = self._group(dpid, protection.primary, IN_PORT, protection.backup)
            self._add(dpid, [unicast_flow(mac, tag, u_turn, origin, in_port=protection.backup)])
        for detour in protection.detours:
            self._add(detour.dpid, [unicast_flow(mac, tag, Output(detour.out_port), origin, in_port=detour.in_port)])
        return group

    def _group(self, dpid: int, primary: int, backup: int, watch: int) -> GroupAction:
        groups = self.groups[dpid]
        key = (primary, backup, watch)
        if key not in groups:
            taken = {g.group_id for g in groups.values()}
            group_id = GROUP_PREFIX | stable_hash32(f"{primary}>{backup}@{watch}") & 0xFFFFFF
            while group_id in taken:
                group_id = GROUP_PREFIX | ((group_id + 1) & 0xFFFFFF)
            groups[key] = Group(group_id, (Bucket(primary, (Output(primary),)), Bucket(watch, (Output(backup),))))
        return GroupAction(groups[key].group_id)

    def _denied_counters(self) -> None:
        for zone in self.policy.zones:
            endpoint = Endpoint("zone", zone.name)
            for dpid in self._hosts(endpoint):
                destinations = [(self._dst_tag(Endpoint("zone", z)), z) for z in sorted(self.destination_zones[dpid])]
                self._add(dpid, denied_count_flows(self._src_tag(endpoint), zone.name, destinations))

    def _multicast(self) -> None:
        receivers: dict[tuple[str, int], set[str]] = defaultdict(set)
        origins: dict[tuple[str, int], str] = {}
        for relation in self.relations:
            if not is_l2_multicast(relation):
                continue
            assert relation.match is not None
            targets = {a.name for a in self._members(relation.destination) if a.name in self.located}
            for source in self._members(relation.source):
                if source.name not in self.located:
                    continue
                key = (source.name, relation.match.low)
                receivers[key] |= targets - {source.name}
                origins[key] = min(origins.get(key, relation.origin), relation.origin)
        for (source_name, ethertype), targets in sorted(receivers.items()):
            if targets:
                self._multicast_tree(self.policy.asset(source_name), ethertype, targets, origins[(source_name, ethertype)])

    def _multicast_tree(self, source: Asset, ethertype: int, targets: set[str], origin: str) -> None:
        root = self.located[source.name]
        parents = self.topology.parents_toward(root.dpid)
        outputs: dict[int, set[int]] = defaultdict(set)
        tagged: dict[int, dict[int, int]] = defaultdict(dict)  # VLAN receivers: dpid -> port -> VID
        for name in sorted(targets):
            where = self.located[name]
            if where.dpid != root.dpid and where.dpid not in parents:
                continue  # not connected to the source: nothing to deliver
            outputs[where.dpid].add(where.port)
            vlan = self.policy.asset(name).vlan
            if vlan is not None:
                tagged[where.dpid][where.port] = vlan
            node = where.dpid
            while node != root.dpid:
                parent = parents[node]
                outputs[parent].add(self.topology.port_toward(parent, node))
                node = parent
        for dpid, ports in outputs.items():
            in_port = root.port if dpid == root.dpid else self.topology.port_toward(dpid, parents[dpid])
            ports.discard(in_port)
            if ports:
                self._add(dpid, [multicast_flow(in_port, source.mac, ethertype, tuple(sorted(ports)), origin,
                                                tuple(sorted(tagged[dpid].items())))])


def _carries_l2(relation: Relation) -> bool:
    return relation.kind == "any" or (relation.kind == "service" and relation.match is not None
                                      and relation.match.protocol == "ethertype")
