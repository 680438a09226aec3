"""Pre-computed backup paths, so that a switch reroutes on its own when a link fails.

For traffic toward a destination switch `home`, every other switch S forwards to its tree
parent (the shortest-path tree rooted at `home`). If the link S-parent fails, S switches
to a backup port through an OpenFlow fast-failover group, before any controller knows:

- a parallel link to the same parent, if there is one (nothing else changes);
- else the first hop of the shortest path from S to `home` that avoids the failed link.
  Switches on that path that sit below S in the tree would normally send the traffic
  back up through S, so they get *detour* entries keyed on the port the rerouted traffic
  arrives on; the path rejoins normal forwarding at the first switch outside S's subtree.
  When the backup first hop is a child of S (a ring: the only way round is back where the
  traffic came from), S also gets a U-turn entry for traffic arriving from that child,
  whose group sends it back out of its ingress port (OFPP_IN_PORT).

Single failures are covered; the controller recomputes primary paths right after.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from controller.core.topology import Topology


@dataclass(frozen=True)
class Detour:
    dpid: int
    in_port: int
    out_port: int


@dataclass(frozen=True)
class Protection:
    switch: int
    primary: int  # port toward the tree parent
    backup: int  # port of the backup first hop
    backup_is_child: bool  # the backup neighbour forwards through this switch normally (U-turn needed)
    detours: tuple[Detour, ...]
    rejoin: int  # the switch where the backup path joins normal forwarding


_MEMO: dict[tuple[frozenset[int], frozenset[object], int], dict[int, Protection]] = {}
_MEMO_LIMIT = 8192


def protections(topology: Topology, home: int) -> dict[int, Protection]:
    """A Protection for every switch that can reach `home` around its own uplink (read-only).

    Memoised on the switch graph alone (switches and links): a policy change or an asset
    sighting does not change it, and it is the costliest part of a compile (a shortest-path
    search per switch and destination switch)."""
    key = (topology.switches, frozenset(topology.links), home)
    found = _MEMO.get(key)
    if found is None:
        if len(_MEMO) >= _MEMO_LIMIT:
            _MEMO.clear()
        found = _MEMO[key] = _protections(topology, home)
    return found


def _protections(topology: Topology, home: int) -> dict[int, Protection]:
    parents = topology.parents_toward(home)
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    result: dict[int, Protection] = {}
    for switch, parent in sorted(parents.items()):
        ports = topology.ports_between(switch, parent)
        if len(ports) > 1:
            result[switch] = Protection(switch, ports[0], ports[1], False, (), parent)
            continue
        protection = _around(topology, home, switch, parent, parents, _subtree(switch, children))
        if protection is not None:
            result[switch] = protection
    return result


def _subtree(root: int, children: dict[int, list[int]]) -> set[int]:
    found, stack = {root}, [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def _around(topology: Topology, home: int, switch: int, parent: int, parents: dict[int, int],
            subtree: set[int]) -> Protection | None:
    graph = nx.restricted_view(topology.graph, [], [(switch, parent)])
    try:
        path = nx.shortest_path(graph, switch, home)
    except nx.NetworkXNoPath:
        return None
    detours: list[Detour] = []
    rejoin = home
    for index in range(1, len(path)):
        node = path[index]
        if node not in subtree:
            rejoin = node
            break
        detours.append(Detour(node, topology.port_toward(node, path[index - 1]),
                              topology.port_toward(node, path[index + 1])))
    backup_neighbour = path[1]
    return Protection(switch, topology.port_toward(switch, parent), topology.port_toward(switch, backup_neighbour),
                      parents.get(backup_neighbour) == switch, tuple(detours), rejoin)
