"""IP multicast feeds: UDP datagrams a conduit's `from` members send to one of its `groups`.

Sources and receivers are the members that have an IPv4 address (an L2-only device neither
sends nor gets IP).
Role: `feeds` reads the policy's conduits (pure) and says, per located source asset and group,
which located `to` members receive which UDP destination ports; `ip_multicast_unit` turns one
feed into destination-table entries that copy the datagrams along the source's shortest-path
tree (`units.delivery_tree`, loop-free on rings) to exactly those receivers.

Invariants:
- a feed's spans are disjoint and ascending; a port's receivers are the union over every
  conduit (and direction, for a bidirectional one) whose UDP services cover it, so two
  conduits naming the same group never shadow each other;
- the entries match the ingress or tree port, the source MAC, IPv4 UDP, unfragmented, the
  group and the group's own MAC (01:00:5e + low 23 bits): any other group MAC, a fragment, or
  another port misses and is dropped by the destination table's miss, like every undelivered
  frame;
- the tree depends on the topology only, so a ring cut recomputes it like any route
  (no IGMP: delivery never depends on which hosts sent joins, and joins are never forwarded).
"""

from __future__ import annotations

from typing import Iterable

from controller.core.model import Policy
from controller.core.rules import ip_multicast_flows
from controller.core.topology import PortRef, Topology, locate_assets
from controller.core.units import EMPTY, Context, FeedKey, FeedSpan, UnitOutput, delivery_tree, members_by_zone


def feeds(policy: Policy, members: dict[str, set[str]], located: dict[str, PortRef],
          sources: Iterable[str] | None = None) -> dict[FeedKey, tuple[FeedSpan, ...]]:
    """Every feed of the located sources (only those in `sources` when given)."""
    wanted = None if sources is None else set(sources)
    pieces: dict[FeedKey, list[tuple[int, int, frozenset[str], str]]] = {}

    def names(endpoints: tuple) -> set[str]:  # type: ignore[type-arg]
        found: set[str] = set()
        for endpoint in endpoints:
            found |= members.get(endpoint.name, set()) if endpoint.kind == "zone" else {endpoint.name}
        return found

    for conduit in policy.conduits:
        if not conduit.groups:
            continue
        ports = sorted({(m.low, m.high) for name in conduit.services for m in policy.service(name).matches
                        if m.protocol == "udp"})
        roles = [(conduit.sources, conduit.destinations)]
        if conduit.bidirectional:
            roles.append((conduit.destinations, conduit.sources))
        for initiators, responders in roles:
            receivers = {name for name in names(responders) if name in located and policy.asset(name).ip is not None}
            for source in sorted(names(initiators)):
                if source not in located or (wanted is not None and source not in wanted) \
                        or policy.asset(source).ip is None:  # it cannot send IPv4 at all
                    continue
                targets = frozenset(receivers - {source})
                if not targets:
                    continue
                for group in conduit.groups:
                    for low, high in ports:
                        pieces.setdefault((source, group), []).append((low, high, targets, conduit.name))
    return {key: spans for key, found in sorted(pieces.items()) if (spans := _disjoint(found))}


def _disjoint(pieces: list[tuple[int, int, frozenset[str], str]]) -> tuple[FeedSpan, ...]:
    """Overlapping port ranges split at every boundary; adjacent equal spans merged again."""
    cuts = sorted({low for low, _, _, _ in pieces} | {high + 1 for _, high, _, _ in pieces})
    spans: list[FeedSpan] = []
    for low, after in zip(cuts, cuts[1:]):
        covering = [(targets, origin) for lo, hi, targets, origin in pieces if lo <= low and after - 1 <= hi]
        if not covering:
            continue
        targets = frozenset().union(*(t for t, _ in covering))
        origin = min(o for _, o in covering)
        if spans and spans[-1][1] == low - 1 and spans[-1][2] == targets and spans[-1][3] == origin:
            spans[-1] = (spans[-1][0], after - 1, targets, origin)
        else:
            spans.append((low, after - 1, targets, origin))
    return tuple(spans)


def ip_multicast_unit(ctx: Context, key: FeedKey) -> UnitOutput:
    """One feed's copies along the source's tree, span by span."""
    spans = ctx.feeds.get(key)
    source_name, group = key
    source = ctx.assets.get(source_name)
    if not spans or source is None or source_name not in ctx.located:
        return EMPTY
    flows = []
    for low, high, targets, origin in spans:
        for dpid, (in_port, ports, tagged) in delivery_tree(ctx, source_name, targets).items():
            flows += [(dpid, flow) for flow in ip_multicast_flows(in_port, source.mac, group, low, high, ports, origin, tagged)]
    return UnitOutput(tuple(flows))


def trees(policy: Policy, topology: Topology) -> list[dict[str, object]]:
    """What `otseg multicast` and the status show: every feed with its UDP spans, receivers (those
    the tree reaches and those it cannot, not being connected to the source) and its copies per
    switch. Empty when no conduit has groups."""
    if not any(conduit.groups for conduit in policy.conduits):
        return []
    ctx = Context(policy, topology, False, assets={a.name: a for a in policy.assets},
                  located=locate_assets(policy, topology), members=members_by_zone(policy))
    ctx.feeds = feeds(policy, ctx.members, ctx.located)
    described: list[dict[str, object]] = []
    for (source, group), spans in sorted(ctx.feeds.items()):
        rows = []
        for low, high, targets, origin in spans:
            tree = delivery_tree(ctx, source, targets)
            reached = {name for name in targets
                       if (where := ctx.located[name]).dpid in tree and where.port in tree[where.dpid][1]}
            rows.append({"udp": f"{low}" if low == high else f"{low}-{high}", "conduit": origin,
                         "receivers": sorted(reached), "unreachable": sorted(targets - reached),
                         "switches": {f"{dpid:#x}": {"in": entry[0], "out": list(entry[1])}
                                      for dpid, entry in tree.items()}})
        described.append({"source": source, "group": group, "spans": rows})
    return described
