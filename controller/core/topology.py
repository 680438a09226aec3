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

    @cached_property
    def trunk_ports(self) -> frozenset[PortRef]:
        return frozenset(end for link in self.links for end in (link.a, link.b))

    @cached_property
    def graph(self) -> nx.Graph:
        """Switch graph; for parallel links the lowest (port, port) pair carries traffic."""
        graph = nx.Graph()
        graph.add_nodes_from(sorted(self.switches))
        for link in sorted(self.links):
            if link.a.dpid == link.b.dpid or not {link.a.dpid, link.b.dpid} <= self.switches:
                continue
            if not graph.has_edge(link.a.dpid, link.b.dpid):
                graph.add_edge(link.a.dpid, link.b.dpid, ports={link.a.dpid: link.a.port, link.b.dpid: link.b.port})
        return graph

    def port_toward(self, here: int, neighbour: int) -> int:
        ports: dict[int, int] = self.graph.edges[here, neighbour]["ports"]
        return ports[here]

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
