"""The network as the compiler sees it: switches, links and where assets attach.

Built from a lab description (topologies/*.yaml) offline, or from live discovery in the
controller; the compiler cannot tell the difference. Paths are computed with networkx on
a graph built in sorted order, so equal topologies always give equal paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import networkx as nx


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


@dataclass(frozen=True)
class Topology:
    switches: frozenset[int]
    links: frozenset[Link] = frozenset()
    attachments: tuple[tuple[str, PortRef], ...] = ()  # asset name -> where it was seen (not pins)
    _cache: dict[str, object] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __hash__(self) -> int:
        if "hash" not in self._cache:  # computed once: topologies key compile caches
            self._cache["hash"] = hash((self.switches, self.links, self.attachments))
        return self._cache["hash"]  # type: ignore[return-value]

    @cached_property
    def trunk_ports(self) -> frozenset[PortRef]:
        return frozenset(end for link in self.links for end in (link.a, link.b))

    @cached_property
    def graph(self) -> nx.Graph:
        """Switch graph; parallel links are kept on the edge, lowest (port, port) pair first."""
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
        """For every switch connected to `root`, the next switch on its shortest path to `root`."""
        key = f"parents:{root}"
        if key not in self._cache:
            parents: dict[int, int] = {}
            if root in self.switches:
                for child, parent in nx.bfs_predecessors(self.graph, root, sort_neighbors=sorted):
                    parents[child] = parent
            self._cache[key] = parents
        return self._cache[key]  # type: ignore[return-value]

    def attachment_map(self) -> dict[str, PortRef]:
        return dict(self.attachments)
