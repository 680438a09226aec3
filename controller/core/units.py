"""The compiler's units of work: each produces the entries that one input is responsible for.

A unit is a pure function of a `Context` (the policy, the topology and values derived from
them) and one key: a switch, an asset, a relation, a zone, a multicast source. Both the full
compiler (`compiler.compile_tables`: every unit) and the incremental one
(`incremental.IncrementalCompiler`: only the units whose inputs changed) run these same
functions, so the two can differ only in *which* units they run, never in what a unit yields;
a test compares them after every change.

Invariants:
- a unit reads the context only through the fields documented on `Context`; the incremental
  compiler marks a unit dirty whenever one of those fields changes for its key;
- a unit's output is a tuple of (dpid, Flow) plus the fast-failover groups its flows use
  (dpid, GroupKey); two units may yield the same flow key, and the merge keeps the lowest
  (cookie, instructions), whatever the order the units ran in;
- group ids depend only on a switch's live trunk ports (`group_ids`), never on which units
  happen to use them, so a unit's flows do not change when another unit starts using a group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Literal

from controller.core.failover import Protection, protections
from controller.core.flows import GROUP_PREFIX, IN_PORT, Action, Bucket, Flow, Group, GroupAction, Output
from controller.core.ids import stable_hash32
from controller.core.model import Asset, Endpoint, Policy
from controller.core.learn import Conversation
from controller.core.pipeline import DST_ASSET, DST_MASK, DST_ZONE, SRC_ASSET, SRC_MASK, SRC_ZONE
from controller.core.relations import Relation, is_l2_multicast
from controller.core.rules import (
    Out, arp_request_flow, commit_flows, conntrack_lookup_flow, denied_count_flows, destination_flows,
    infrastructure_flows, locate_flow, multicast_flow, port_security_flows, relation_flows, to_port, unicast_flow,
    isolated_flow,
    learned_flows,
    zone_learn_flows,
    zone_monitor_flow,
)
from controller.core.topology import PortRef, Topology

GroupKey = tuple[int, int, int]  # (primary port, backup port, watched port)
UnitKind = Literal["infra", "port", "ct", "relation", "monitor", "locate", "destination", "multicast", "denied",
                   "learned", "ip-multicast"]
UnitKey = tuple[str, object]
MulticastKey = tuple[str, int]  # (source asset, ethertype)
FeedKey = tuple[str, str]  # (source asset, IPv4 group): one IP multicast feed (controller.core.ip_multicast)
FeedSpan = tuple[int, int, frozenset[str], str]  # UDP ports low..high, their receivers, the first origin


@dataclass(frozen=True)
class UnitOutput:
    """What one unit yields."""

    flows: tuple[tuple[int, Flow], ...] = ()
    groups: tuple[tuple[int, GroupKey], ...] = ()
    served: frozenset[int] = frozenset()  # destination units: the switches that forward toward the asset
    zone: str = ""  # destination units: the asset's zone (deny counters name the zones served on a switch)


EMPTY = UnitOutput()


@dataclass
class Context:
    """Everything units read. The full compiler derives it at once (`derive`); the incremental
    compiler keeps it up to date field by field."""

    policy: Policy
    topology: Topology
    fast_failover: bool
    assets: dict[str, Asset] = field(default_factory=dict)
    zone_ids: dict[str, int] = field(default_factory=dict)
    asset_ids: dict[str, int] = field(default_factory=dict)
    located: dict[str, PortRef] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)  # zone -> asset names
    relations: tuple[Relation, ...] = ()
    hosts: dict[Endpoint, frozenset[int]] = field(default_factory=dict)  # every endpoint a relation or zone names
    l2_senders: frozenset[Endpoint] = frozenset()  # their members may send frames other than IPv4/ARP
    responders: frozenset[Endpoint] = frozenset()  # sources of stateful replies: tracked at their port
    l2_receivers: frozenset[Endpoint] = frozenset()  # their members may receive other L2 unicast
    everyone_l2: bool = False  # a monitor-mode zone forwards: every asset may receive anything
    monitor_zones: tuple[str, ...] = ()
    peer_hosts: dict[Endpoint, frozenset[int]] = field(default_factory=dict)
    monitor_hosts: frozenset[int] = frozenset()
    multicast: dict[MulticastKey, tuple[frozenset[str], str]] = field(default_factory=dict)  # targets, origin
    feeds: dict[FeedKey, tuple[FeedSpan, ...]] = field(default_factory=dict)  # disjoint port spans, ascending
    destination_zones: dict[int, frozenset[str]] = field(default_factory=dict)  # zones served on a switch

    # -- derived lookups ------------------------------------------------------------------
    def hosts_of(self, endpoint: Endpoint) -> frozenset[int]:
        return self.hosts.get(endpoint, frozenset())

    def zone_endpoint(self, name: str) -> Endpoint:
        return Endpoint("zone", self.assets[name].zone)

    def in_any(self, name: str, endpoints: frozenset[Endpoint]) -> bool:
        return Endpoint("asset", name) in endpoints or self.zone_endpoint(name) in endpoints

    def ingress(self, name: str) -> frozenset[int]:
        """The switches of every asset that may exchange packets with `name`."""
        return (self.peer_hosts.get(Endpoint("asset", name), frozenset())
                | self.peer_hosts.get(self.zone_endpoint(name), frozenset()) | self.monitor_hosts)

    def src_tag(self, endpoint: Endpoint) -> tuple[int, int]:
        if endpoint.kind == "zone":
            return SRC_ZONE.encode(self.zone_ids[endpoint.name]), SRC_ZONE.mask
        return SRC_ASSET.encode(self.asset_ids[endpoint.name]), SRC_ASSET.mask

    def dst_tag(self, endpoint: Endpoint) -> tuple[int, int]:
        if endpoint.kind == "zone":
            return DST_ZONE.encode(self.zone_ids[endpoint.name]), DST_ZONE.mask
        return DST_ASSET.encode(self.asset_ids[endpoint.name]), DST_ASSET.mask

    def asset_src_tag(self, asset: Asset) -> int:
        return SRC_ZONE.encode(self.zone_ids[asset.zone]) | SRC_ASSET.encode(self.asset_ids[asset.name])

    def asset_dst_tag(self, asset: Asset) -> int:
        return DST_ZONE.encode(self.zone_ids[asset.zone]) | DST_ASSET.encode(self.asset_ids[asset.name])

    def protections(self, home: int) -> dict[int, Protection]:
        if not self.fast_failover:
            return {}
        found = protections(self.topology, home)
        if not self.topology.profiles:
            return found
        return {dpid: p for dpid, p in found.items() if self.topology.profile(dpid).fast_failover}


# -- derivations shared by both compilers (pure functions of the policy's parts) ------------
def members_by_zone(policy: Policy) -> dict[str, set[str]]:
    members: dict[str, set[str]] = {zone.name: set() for zone in policy.zones}
    for asset in policy.assets:
        members.setdefault(asset.zone, set()).add(asset.name)
    return members


def endpoint_hosts(endpoint: Endpoint, members: dict[str, set[str]], located: dict[str, PortRef]) -> frozenset[int]:
    names = members.get(endpoint.name, set()) if endpoint.kind == "zone" else {endpoint.name}
    return frozenset(located[name].dpid for name in names if name in located)


def relation_endpoints(policy: Policy, relations: tuple[Relation, ...]) -> set[Endpoint]:
    endpoints = {Endpoint("zone", zone.name) for zone in policy.zones}
    for relation in relations:
        endpoints.add(relation.source)
        endpoints.add(relation.destination)
    return endpoints


def endpoint_classes(policy: Policy, relations: tuple[Relation, ...]
                     ) -> tuple[frozenset[Endpoint], frozenset[Endpoint], frozenset[Endpoint], tuple[str, ...]]:
    """(L2 senders, stateful responders, L2 receivers, monitor-mode zones): which endpoints'
    members need which entries. Depends on the relations and zone modes only."""
    monitor = tuple(z.name for z in policy.zones if policy.zone_forwards(z.name))
    senders: set[Endpoint] = {Endpoint("zone", zone) for zone in monitor}
    responders: set[Endpoint] = set()
    receivers: set[Endpoint] = set()
    for relation in relations:
        if relation.kind == "any" or (relation.kind == "service" and relation.match is not None
                                      and not relation.match.is_ip):
            senders.add(relation.source)
        if relation.stateful and relation.direction == "reply":
            responders.add(relation.source)
        if carries_l2(relation):
            receivers.add(relation.destination)
    return frozenset(senders), frozenset(responders), frozenset(receivers), monitor


def peer_hosts_of(relations: tuple[Relation, ...], hosts: dict[Endpoint, frozenset[int]]
                  ) -> dict[Endpoint, frozenset[int]]:
    peers: dict[Endpoint, set[int]] = {}
    for relation in relations:
        peers.setdefault(relation.destination, set()).update(hosts.get(relation.source, ()))
        peers.setdefault(relation.source, set()).update(hosts.get(relation.destination, ()))
    return {endpoint: frozenset(dpids) for endpoint, dpids in peers.items()}


def multicast_receivers(relations: tuple[Relation, ...], members: dict[str, set[str]],
                        located: dict[str, PortRef], sources: Iterable[str] | None = None,
                        zone_of: dict[str, str] | None = None) -> dict[MulticastKey, tuple[frozenset[str], str]]:
    """Per located source and ethertype of an L2 multicast service: its located targets (not
    itself) and the first origin (conduit) that allows it. With `sources` (and `zone_of`, each
    asset's zone): only those sources' entries."""
    receivers: dict[MulticastKey, set[str]] = {}
    origins: dict[MulticastKey, str] = {}

    def names(endpoint: Endpoint) -> set[str]:
        return members.get(endpoint.name, set()) if endpoint.kind == "zone" else {endpoint.name}

    wanted: set[str] | None = None
    by_source: set[Endpoint] | None = None
    if sources is not None:
        assert zone_of is not None
        wanted = {name for name in sources if name in located}
        by_source = {Endpoint("asset", n) for n in wanted} | {Endpoint("zone", zone_of[n]) for n in wanted}
    for relation in relations:
        if not is_l2_multicast(relation) or (by_source is not None and relation.source not in by_source):
            continue
        assert relation.match is not None
        targets = {name for name in names(relation.destination) if name in located}
        for source in names(relation.source):
            if source not in located or (wanted is not None and source not in wanted):
                continue
            key = (source, relation.match.low)
            receivers.setdefault(key, set()).update(targets - {source})
            origins[key] = min(origins.get(key, relation.origin), relation.origin)
    return {key: (frozenset(targets), origins[key]) for key, targets in receivers.items() if targets}


def carries_l2(relation: Relation) -> bool:
    return relation.kind == "any" or (relation.kind == "service" and relation.match is not None
                                      and relation.match.protocol == "ethertype")


@lru_cache(maxsize=4096)
def group_ids(trunk_ports: tuple[int, ...]) -> dict[GroupKey, int]:
    """Ids of every fast-failover group a switch with these live trunk ports could need: a hash of
    the key, probed in key order on collision. A function of the ports alone."""
    keys = sorted({(primary, backup, backup) for primary in trunk_ports for backup in trunk_ports if primary != backup}
                  | {(primary, IN_PORT, watch) for primary in trunk_ports for watch in trunk_ports if primary != watch})
    taken: set[int] = set()
    ids: dict[GroupKey, int] = {}
    for primary, backup, watch in keys:
        group_id = GROUP_PREFIX | stable_hash32(f"{primary}>{backup}@{watch}") & 0xFFFFFF
        while group_id in taken:
            group_id = GROUP_PREFIX | ((group_id + 1) & 0xFFFFFF)
        taken.add(group_id)
        ids[(primary, backup, watch)] = group_id
    return ids


def trunk_ports_of(topology: Topology, dpid: int) -> tuple[int, ...]:
    key = f"live:{dpid}"
    if key not in topology._cache:
        topology._cache[key] = tuple(sorted(p.port for p in topology.live_trunks if p.dpid == dpid))
    return topology._cache[key]  # type: ignore[return-value]


def make_group(dpid_trunks: tuple[int, ...], key: GroupKey) -> Group:
    primary, backup, watch = key
    return Group(group_ids(dpid_trunks)[key], (Bucket(primary, (Output(primary),)), Bucket(watch, (Output(backup),))))


# -- the units ------------------------------------------------------------------------------
def infra_unit(ctx: Context, dpid: int) -> UnitOutput:
    topology = ctx.topology
    if dpid not in topology.switches:
        return EMPTY
    live = list(trunk_ports_of(topology, dpid))
    trunks = sorted(p.port for p in topology.trunk_ports if p.dpid == dpid)
    return UnitOutput(tuple((dpid, f) for f in infrastructure_flows(live, trunks, topology.edge_ports(dpid))))


def port_unit(ctx: Context, name: str) -> UnitOutput:
    asset = ctx.assets.get(name)
    where = ctx.located.get(name)
    if asset is None or where is None:
        return EMPTY
    flows = port_security_flows(where.port, asset.mac, asset.ip, ctx.asset_src_tag(asset),
                                ctx.in_any(name, ctx.l2_senders), f"asset:{name}", asset.vlan)
    return UnitOutput(tuple((where.dpid, f) for f in flows))


def conntrack_unit(ctx: Context, name: str) -> UnitOutput:
    asset = ctx.assets.get(name)
    where = ctx.located.get(name)
    if asset is None or where is None or asset.ip is None or not ctx.in_any(name, ctx.responders):
        return EMPTY
    return UnitOutput(((where.dpid, conntrack_lookup_flow(where.port, asset.mac, asset.ip, f"asset:{name}",
                                                       asset.vlan)),))


def relation_unit(ctx: Context, relation: Relation) -> UnitOutput:
    sources, destinations = ctx.hosts_of(relation.source), ctx.hosts_of(relation.destination)
    if not sources or not destinations:
        return EMPTY
    src_tag, dst_tag = ctx.src_tag(relation.source), ctx.dst_tag(relation.destination)
    rules = relation_flows(relation, src_tag, dst_tag)
    result = [(dpid, f) for dpid in sorted(sources) for f in rules]
    if relation.stateful and relation.direction == "forward":
        # Committed where each responder is attached (its replies are looked up there).
        local = commit_flows(relation, src_tag, dst_tag, transit=False)
        transit = commit_flows(relation, src_tag, dst_tag, transit=True)
        for dpid in sorted(destinations):
            result += [(dpid, f) for f in transit + (local if dpid in sources else [])]
    return UnitOutput(tuple(result))


def monitor_unit(ctx: Context, zone: str) -> UnitOutput:
    if zone not in ctx.monitor_zones:
        return EMPTY
    endpoint = Endpoint("zone", zone)
    src_tag = ctx.src_tag(endpoint)
    learning = ctx.policy.zone_mode(zone) == "learn" and not ctx.topology.learn_full
    forward = zone_learn_flows if learning else lambda tag, name: [zone_monitor_flow(tag, name)]
    if ctx.policy.zone(zone).isolated:  # it forwards only between its own members
        dst_tag = ctx.dst_tag(endpoint)
        flows = forward((src_tag[0] | dst_tag[0], src_tag[1] | dst_tag[1]), zone)
    else:  # it forwards anywhere but into an isolated zone
        flows = forward(src_tag, zone) + [
            isolated_flow(src_tag, ctx.dst_tag(Endpoint("zone", z.name)), zone, z.name)
            for z in ctx.policy.zones if z.isolated]
    return UnitOutput(tuple((dpid, flow) for dpid in sorted(ctx.hosts_of(endpoint)) for flow in flows))


def learned_unit(ctx: Context, conversation: Conversation) -> UnitOutput:
    """A recorded conversation's counting entries, where its ends are located, while it is one
    the initiator's zone would forward anyway (learn or monitor mode, no isolated border)."""
    policy = ctx.policy
    src, dst = ctx.assets.get(conversation.source), ctx.assets.get(conversation.destination)
    if (src is None or dst is None or conversation not in ctx.topology.conversations
            or not policy.zone_forwards(src.zone) or src.name == dst.name):
        return EMPTY
    if src.zone != dst.zone and (policy.zone(src.zone).isolated or policy.zone(dst.zone).isolated):
        return EMPTY
    forward_tag = (ctx.asset_src_tag(src) | ctx.asset_dst_tag(dst), SRC_MASK | DST_MASK)
    reply_tag = (ctx.asset_src_tag(dst) | ctx.asset_dst_tag(src), SRC_MASK | DST_MASK) \
        if policy.zone_forwards(dst.zone) else None
    forward, back = learned_flows(conversation, forward_tag, reply_tag)
    at_src, at_dst = ctx.located.get(src.name), ctx.located.get(dst.name)  # the policy is decided on entry
    flows = [(at_src.dpid, f) for f in forward] if at_src is not None else []
    flows += [(at_dst.dpid, f) for f in back] if at_dst is not None else []
    return UnitOutput(tuple(flows))


def locate_unit(ctx: Context, name: str) -> UnitOutput:
    """ARP requests for an asset that is not located yet go to the controller (metered), which
    then looks for it: a device that is only polled never speaks first."""
    asset = ctx.assets.get(name)
    if asset is None or asset.ip is None or name in ctx.located:
        return EMPTY
    flow = locate_flow(asset.ip)
    return UnitOutput(tuple((dpid, flow) for dpid in sorted(ctx.ingress(name))))


def destination_unit(ctx: Context, name: str) -> UnitOutput:
    """Toward one asset: along the shortest-path tree toward its switch, from every switch where
    a peer is attached, with fast-failover groups (and their U-turn and detour entries) on the
    way, and the switches the backup paths rejoin."""
    asset = ctx.assets.get(name)
    home = ctx.located.get(name)
    if asset is None or home is None:
        return EMPTY
    ingress = ctx.ingress(name)
    topology = ctx.topology
    parents = topology.parents_toward(home.dpid)
    protected = ctx.protections(home.dpid)
    on_path = _walk_up(ingress, home.dpid, parents, set())
    rejoins = {protected[s].rejoin for s in on_path if s in protected}
    served = _walk_up(rejoins, home.dpid, parents, set(on_path))
    tag = ctx.asset_dst_tag(asset)
    origin = f"asset:{name}"
    l2 = ctx.everyone_l2 or ctx.in_any(name, ctx.l2_receivers)
    flows: list[tuple[int, Flow]] = []
    groups: list[tuple[int, GroupKey]] = []
    for dpid in sorted(served):
        if dpid == home.dpid:
            out: Out = to_port(home.port, asset.vlan)
        elif dpid in on_path and dpid in protected:
            out = _failover(topology, dpid, protected[dpid], asset.mac, tag, origin, flows, groups)
        else:
            out = Output(topology.port_toward(dpid, parents[dpid]))
        entries = destination_flows(asset.mac, asset.ip, tag, out, origin, dpid == home.dpid, l2)
        if asset.ip is not None and dpid in ingress:
            entries.append(arp_request_flow(asset.mac, asset.ip, tag, out, origin))
        flows += [(dpid, f) for f in entries]
    return UnitOutput(tuple(flows), tuple(groups), frozenset(served), asset.zone)


def _walk_up(starts: set[int] | frozenset[int], home: int, parents: dict[int, int], seen: set[int]) -> set[int]:
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


def _failover(topology: Topology, dpid: int, protection: Protection, mac: str, tag: int, origin: str,
              flows: list[tuple[int, Flow]], groups: list[tuple[int, GroupKey]]) -> Action:
    """The fast-failover group for `dpid`'s uplink, plus the U-turn and detour entries it needs."""
    trunks = trunk_ports_of(topology, dpid)
    key = (protection.primary, protection.backup, protection.backup)
    groups.append((dpid, key))
    if protection.backup_is_child:
        # Traffic arriving from that child goes back out of its ingress port; watching the
        # child's port is exact: when it is down, nothing arrives from it anyway.
        u_turn = (protection.primary, IN_PORT, protection.backup)
        groups.append((dpid, u_turn))
        flows.append((dpid, unicast_flow(mac, tag, GroupAction(group_ids(trunks)[u_turn]), origin,
                                         in_port=protection.backup)))
    for detour in protection.detours:
        flows.append((detour.dpid, unicast_flow(mac, tag, Output(detour.out_port), origin, in_port=detour.in_port)))
    return GroupAction(group_ids(trunks)[key])


Tree = dict[int, tuple[int, tuple[int, ...], tuple[tuple[int, int], ...]]]  # dpid -> in port, out ports, tagged


def delivery_tree(ctx: Context, source_name: str, targets: Iterable[str]) -> Tree:
    """The copies a frame from `source_name` needs to reach `targets` along the shortest-path
    tree rooted at the source's switch (loop-free on rings): per switch, the port it arrives by,
    the ports it leaves by, and which of those are VLAN assets' (port, VID). Targets that are not
    connected to the source, or sit on its own port, get nothing."""
    topology = ctx.topology
    root = ctx.located[source_name]
    parents = topology.parents_toward(root.dpid)
    outputs: dict[int, set[int]] = {}
    tagged: dict[int, dict[int, int]] = {}  # VLAN receivers: dpid -> port -> VID
    walked: set[int] = set()  # switches whose path to the root is already in `outputs`
    for name in sorted(targets):
        where = ctx.located[name]
        if where.dpid != root.dpid and where.dpid not in parents:
            continue  # not connected to the source: nothing to deliver
        outputs.setdefault(where.dpid, set()).add(where.port)
        vlan = ctx.assets[name].vlan
        if vlan is not None:
            tagged.setdefault(where.dpid, {})[where.port] = vlan
        node = where.dpid
        while node != root.dpid and node not in walked:
            walked.add(node)
            parent = parents[node]
            outputs.setdefault(parent, set()).add(topology.port_toward(parent, node))
            node = parent
    tree: Tree = {}
    for dpid in sorted(outputs):
        ports = outputs[dpid]
        in_port = root.port if dpid == root.dpid else topology.port_toward(dpid, parents[dpid])
        ports.discard(in_port)
        if ports:
            tree[dpid] = (in_port, tuple(sorted(ports)), tuple(sorted(tagged.get(dpid, {}).items())))
    return tree


def multicast_unit(ctx: Context, key: MulticastKey) -> UnitOutput:
    """Copies of one source's L2 multicast frames along its shortest-path tree to its targets."""
    found = ctx.multicast.get(key)
    source_name, ethertype = key
    source = ctx.assets.get(source_name)
    if found is None or source is None or source_name not in ctx.located:
        return EMPTY
    targets, origin = found
    return UnitOutput(tuple((dpid, multicast_flow(in_port, source.mac, ethertype, ports, origin, tagged))
                            for dpid, (in_port, ports, tagged) in delivery_tree(ctx, source_name, targets).items()))


def denied_unit(ctx: Context, zone: str) -> UnitOutput:
    """Drops of traffic from a local zone, counted per destination zone present on the switch."""
    if zone not in ctx.zone_ids:
        return EMPTY
    endpoint = Endpoint("zone", zone)
    flows: list[tuple[int, Flow]] = []
    for dpid in sorted(ctx.hosts_of(endpoint)):
        destinations = [(ctx.dst_tag(Endpoint("zone", z)), z) for z in sorted(ctx.destination_zones.get(dpid, ()))]
        flows += [(dpid, f) for f in denied_count_flows(ctx.src_tag(endpoint), zone, destinations)]
    return UnitOutput(tuple(flows))
