"""The switches composed along their links: every packet any port can send, followed to every
port it can leave by (symbolic reachability over `SwitchModel`s).

Role: `propagate(space, models, topology, dead_links)` injects, at every port of every switch
that is not a live inter-switch link, the set of all packets (any ingress port number, any
header: `universe`), tags each with its origin (`o_sw`, `o_port`) and what it was sent with
(`o_eth_dst`, `o_vlan`, `o_pcp`), and pushes the sets through the tables hop by hop. The
result holds, per port where packets leave the network, the set (origin x header) that leaves
there; per switch the set sent to the controller; the set committed to connection trackers;
and the packets that reach a switch port a second time (a forwarding loop, or a duplicate).

Invariants: every packet is followed until it leaves or is dropped; a packet that enters the
same port of the same switch twice is reported once in `revisits` and followed no further,
so propagation always ends (after at most one pass per port).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.core.flows import SwitchTables
from controller.core.topology import Link, PortRef, Topology
from controller.verify.space import MAX_PORT, Function, ModelError, Space, universe
from controller.verify.switch_model import SwitchModel


@dataclass
class Reach:
    delivered: dict[PortRef, Function] = field(default_factory=dict)
    controller: dict[int, Function] = field(default_factory=dict)
    commits: Function | None = None
    commits_at: dict[int, Function] = field(default_factory=dict)  # per switch: each has its own tracker
    revisits: list[tuple[PortRef, Function]] = field(default_factory=list)
    hops: int = 0


MAX_PHYSICAL_PORT = 0xFEFF  # ports above are reserved (LOCAL, CONTROLLER, ...): no device sends from them


def switch_index(topology: Topology) -> dict[int, int]:
    """The compact number of each switch in `o_sw` (its rank by datapath id)."""
    index = {dpid: number for number, dpid in enumerate(sorted(topology.switches))}
    if len(index) >= 1 << 12:
        raise ModelError("more than 4095 switches")
    return index


def injected(space: Space, topology: Topology, dpid: int, excluded_ports: frozenset[int],
             base: Function) -> Function:
    """Every packet a device on any port of `dpid` but `excluded_ports` can send."""
    s = space
    ports = s.in_range("in_port", 1, MAX_PHYSICAL_PORT)  # OpenFlow's physical port numbers (in 16 bits)
    for port in excluded_ports:
        ports &= ~s.eq("in_port", port)
    origin = (s.same("in_port", "o_port") & s.eq("o_sw", switch_index(topology)[dpid]) & s.same("eth_dst", "o_eth_dst")
              & s.same("vlan", "o_vlan") & s.same("pcp", "o_pcp"))
    return base & ports & origin


def propagate(space: Space, models: dict[int, SwitchModel], topology: Topology,
              dead_links: frozenset[Link] = frozenset(), domain: Function | None = None,
              lookups: dict[int, Function] | None = None) -> Reach:
    """`domain`: a restriction on the injected packets (the connection-state oracle's);
    `lookups`: per switch, what its tracker answers (`SwitchModel.run`)."""
    s = space
    for end in topology.ports | topology.live_trunks:
        if end.port > MAX_PORT:
            raise ModelError(f"port {end.port} of switch {end.dpid:#x} is beyond the modelled 16 bits")
    base = universe(s) & (domain if domain is not None else s.true)
    live = [link for link in topology.links if link not in dead_links]
    peer: dict[PortRef, PortRef] = {}
    for link in live:
        peer[link.a], peer[link.b] = link.b, link.a
    dead_ports: dict[int, frozenset[int]] = {}
    for link in dead_links:
        for end in (link.a, link.b):
            dead_ports[end.dpid] = dead_ports.get(end.dpid, frozenset()) | {end.port}
    for end in topology.ports | topology.live_trunks:
        if end.dpid in models:
            models[end.dpid].know_ports([end.port])
    reach = Reach(commits=s.false)
    arrivals: dict[int, Function] = {}
    for dpid in sorted(models):
        excluded = frozenset(end.port for end in peer if end.dpid == dpid) | dead_ports.get(dpid, frozenset())
        arrivals[dpid] = injected(s, topology, dpid, excluded, base)
    visited: dict[int, Function] = {dpid: s.false for dpid in models}
    while arrivals:
        reach.hops += 1
        following: dict[int, Function] = {}
        for dpid, packets in sorted(arrivals.items()):
            again = packets & visited[dpid]
            if again != s.false:
                reach.revisits.append((PortRef(dpid, s.pick(again)["in_port"]), again))  # type: ignore[index]
                packets &= ~visited[dpid]
            if packets == s.false:
                continue
            visited[dpid] |= packets
            outcome = models[dpid].run(packets, dead_ports.get(dpid, frozenset()),
                                       lookups.get(dpid) if lookups is not None else None)
            reach.commits |= outcome.commits
            if outcome.commits != s.false:
                reach.commits_at[dpid] = reach.commits_at.get(dpid, s.false) | outcome.commits
            if outcome.controller != s.false:
                reach.controller[dpid] = reach.controller.get(dpid, s.false) | outcome.controller
            for port, leaving in outcome.outputs.items():
                if leaving == s.false:
                    continue
                here = PortRef(dpid, port)
                if here in peer:
                    there = peer[here]
                    entering = s.forget(leaving, ["in_port"]) & s.eq("in_port", there.port)
                    following[there.dpid] = following.get(there.dpid, s.false) | entering
                else:
                    reach.delivered[here] = reach.delivered.get(here, s.false) | s.forget(leaving, ["in_port"])
        arrivals = {dpid: p for dpid, p in following.items() if dpid in models}
    return reach


def models_for(space: Space, tables: dict[int, SwitchTables], topology: Topology,
               cache: dict[int, tuple[SwitchTables, SwitchModel]] | None = None) -> dict[int, SwitchModel]:
    """A model per switch of the topology (a switch without tables drops everything);
    `cache` keeps models of unchanged tables between calls (same space only)."""
    models: dict[int, SwitchModel] = {}
    for dpid in sorted(topology.switches):
        switch = tables.get(dpid, SwitchTables(dpid, frozenset(), frozenset()))
        if cache is not None and dpid in cache and (cache[dpid][0] is switch or cache[dpid][0] == switch):
            models[dpid] = cache[dpid][1]
            continue
        models[dpid] = SwitchModel(space, switch)
        if cache is not None:
            cache[dpid] = (switch, models[dpid])
    return models
