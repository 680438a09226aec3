"""The network as the compiler sees it: switches, links and where assets attach.

Built from a lab description (topologies/*.yaml) offline, or from live discovery in the
controller; the compiler cannot tell the difference. Paths are computed with networkx on
a graph built in sorted order, so equal topologies always give equal paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import networkx as nx

from controller.core.profiles import FULL, Profile

if TYPE_CHECKING:
    from controller.core.learn import Conversation
    from controller.core.model import Asset, Policy


@dataclass(frozen=True, order=True)
class PortRef:
    dpid: int
    port: int


@dataclass(frozen=True, order=True)
class Link:
    """An undirected inter-switch link; `a` is always the smaller end."""

    a: PortRef
    b: PortRef

    @staticmethod
    def between(x: PortRef, y: PortRef) -> "Link":
        return Link(min(x, y), max(x, y))


_GRAPH_LIMIT = 64
_GRAPHS: dict[tuple[frozenset[int], frozenset[Link]], nx.Graph] = {}
_PARENTS: dict[tuple[frozenset[int], frozenset[Link], int], dict[int, int]] = {}


@dataclass(frozen=True)
class Topology:
    switches: frozenset[int]
    links: frozenset[Link] = frozenset()
    attachments: tuple[tuple[str, PortRef], ...] = ()  # asset name -> where it was seen (not pins)
    ports: frozenset[PortRef] = frozenset()  # every known port of the switches (trunks included)
    # Ports the operator declared as trunks (both ends of a declared link), up or not. Only a
    # live link (in `links`) forwards and marks TRANSIT; a declared end whose link is down is
    # still no edge port: nothing is bound there and only LLDP is accepted from it.
    declared_trunks: frozenset[PortRef] = frozenset()
    # What each switch can do (controller/core/profiles.py), where it is not the full profile.
    profiles: tuple[tuple[int, Profile], ...] = ()
    # Learn mode (controller/core/learn.py): the conversations recorded so far, each kept
    # forwarding by a counting entry; `learn_full`: the budget is reached, nothing more is sampled.
    conversations: tuple["Conversation", ...] = ()
    learn_full: bool = False
    _cache: dict[str, object] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __hash__(self) -> int:
        if "hash" not in self._cache:  # computed once: topologies key compile caches
            self._cache["hash"] = hash((self.switches, self.links, self.attachments, self.ports, self.declared_trunks,
                                        self.profiles, self.conversations, self.learn_full))
        return self._cache["hash"]  # type: ignore[return-value]

    def profile(self, dpid: int) -> Profile:
        return self._profiles.get(dpid, FULL)

    @cached_property
    def _profiles(self) -> dict[int, Profile]:
        return dict(self.profiles)

    @cached_property
    def live_trunks(self) -> frozenset[PortRef]:
        """Ends of live links: they forward, and frames entering them are marked TRANSIT."""
        return frozenset(end for link in self.links for end in (link.a, link.b))

    @cached_property
    def trunk_ports(self) -> frozenset[PortRef]:
        """Live and declared trunk ends: never an edge port."""
        return self.live_trunks | self.declared_trunks

    def edge_ports(self, dpid: int) -> list[int]:
        """The switch's known ports that are not trunks: where devices attach."""
        return list(self._edge_ports.get(dpid, ()))

    @cached_property
    def _edge_ports(self) -> dict[int, tuple[int, ...]]:
        by_switch: dict[int, list[int]] = {}
        for port in self.ports:
            if port not in self.trunk_ports:
                by_switch.setdefault(port.dpid, []).append(port.port)
        return {dpid: tuple(sorted(ports)) for dpid, ports in by_switch.items()}

    @cached_property
    def graph(self) -> nx.Graph:
        """Switch graph; parallel links are kept on the edge, lowest (port, port) pair first.
        Shared (read-only) by every topology with the same switches and links: an asset sighting
        makes a new Topology, not a new graph."""
        key = (self.switches, self.links)
        graph = _GRAPHS.get(key)
        if graph is None:
            if len(_GRAPHS) >= _GRAPH_LIMIT:
                _GRAPHS.clear()
            graph = _GRAPHS[key] = self._build_graph()
        return graph

    def _build_graph(self) -> nx.Graph:
        graph = nx.Graph()
        graph.add_nodes_from(sorted(self.switches))
        for link in sorted(self.links):
            if link.a.dpid == link.b.dpid or not {link.a.dpid, link.b.dpid} <= self.switches:
                continue
            pair = {link.a.dpid: link.a.port, link.b.dpid: link.b.port}
            if graph.has_edge(link.a.dpid, link.b.dpid):
                graph.edges[link.a.dpid, link.b.dpid]["links"].append(pair)
            else:
                graph.add_edge(link.a.dpid, link.b.dpid, links=[pair])
        return graph

    def port_toward(self, here: int, neighbour: int) -> int:
        """The port that carries traffic from `here` to `neighbour` (the first of parallel links)."""
        return self.ports_between(here, neighbour)[0]

    def ports_between(self, here: int, neighbour: int) -> list[int]:
        links: list[dict[int, int]] = self.graph.edges[here, neighbour]["links"]
        return [pair[here] for pair in links]

    def parents_toward(self, root: int) -> dict[int, int]:
        """For every switch connected to `root`, the next switch on its shortest path to `root` (read-only)."""
        key = f"parents:{root}"
        if key not in self._cache:
            shared = (self.switches, self.links, root)
            parents = _PARENTS.get(shared)
            if parents is None:
                parents = {}
                if root in self.switches:
                    for child, parent in nx.bfs_predecessors(self.graph, root, sort_neighbors=sorted):
                        parents[child] = parent
                if len(_PARENTS) >= _GRAPH_LIMIT * 64:
                    _PARENTS.clear()
                _PARENTS[shared] = parents
            self._cache[key] = parents
        return self._cache[key]  # type: ignore[return-value]

    def attachment_map(self) -> dict[str, PortRef]:
        return dict(self.attachments)


def locate_assets(policy: "Policy", topology: Topology) -> dict[str, PortRef]:
    """Where each asset is bound: its pin, else where it was seen; never a trunk or unknown switch."""
    seen = topology.attachment_map()
    located: dict[str, PortRef] = {}
    for asset in policy.assets:
        where = locate_one(asset, seen, topology)
        if where is not None:
            located[asset.name] = where
    return located


def locate_one(asset: "Asset", seen: dict[str, PortRef], topology: Topology) -> PortRef | None:
    where = PortRef(asset.location.dpid, asset.location.port) if asset.location else seen.get(asset.name)
    if where is not None and where.dpid in topology.switches and where not in topology.trunk_ports:
        return where
    return None
