"""Fast failover: with any one link cut and no recompute, the pre-installed backup paths
still deliver everything the policy allows (where the network still connects the two
assets), nothing denied gets through, and no frame loops."""

from __future__ import annotations

import networkx as nx
import pytest
from hypothesis import given, settings

from controller.core.model import Policy
from controller.core.topology import Link, Topology
from controller.core.reference import Sessions, judge
from controller.core.verdict import ETH_ARP, ETH_IPV4
from tests.conftest import EXAMPLES, load_example
from controller.verify.walk import Network, ovs_key
from tests.strategies import scenarios
from tests.walk import Matrix, frame, probes


def _still_connected(topology: Topology, cut: Link, a: int, b: int) -> bool:
    graph = nx.MultiGraph()
    graph.add_nodes_from(topology.switches)
    graph.add_edges_from((l.a.dpid, l.b.dpid) for l in topology.links if l != cut)
    return nx.has_path(graph, a, b)


def check_single_link_failures(policy: Policy, topology: Topology) -> list[str]:
    matrix = Matrix(policy, topology)
    located = [policy.asset(n) for n in sorted(matrix.located)]
    unicast = [(label, p) for label, p in probes(policy) if not p.multicast]
    problems: list[str] = []
    for cut in sorted(topology.links):
        network = Network(matrix.tables, topology, dead_links=frozenset({cut}))
        sessions = Sessions()  # stateful conduits: the connections opened so far, as the trackers see them
        for src in located:
            for dst in located:
                if src.name == dst.name:
                    continue
                connected = _still_connected(topology, cut, matrix.located[src.name].dpid,
                                             matrix.located[dst.name].dpid)
                for label, packet in unicast:
                    if packet.eth_type in (ETH_IPV4, ETH_ARP) and (src.ip is None or dst.ip is None):
                        continue
                    sent = frame(src, dst, packet)
                    judgement = judge(policy, matrix.located, matrix.located[src.name], sent, sessions)
                    expected = connected and judgement.delivered
                    if connected:
                        sessions.record(policy, judgement, sent)
                    result = network.send(matrix.located[src.name], ovs_key(sent))
                    observed = result.delivered_ports()
                    if observed != ({matrix.located[dst.name]} if expected else set()):
                        problems.append(f"cut {cut}: {src.name}->{dst.name} [{label}] expected {expected}, "
                                        f"left by {sorted(observed)}")
    return problems


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e[0] != "linear.yaml"], ids=lambda e: e[0])
def test_examples_survive_any_single_link_cut(example: tuple[str, str]) -> None:
    problems = check_single_link_failures(*load_example(*example))
    assert not problems, "\n".join(problems[:15])


@settings(max_examples=40, deadline=None)
@given(scenarios())
def test_random_topologies_survive_any_single_link_cut(scenario: tuple[Policy, Topology]) -> None:
    problems = check_single_link_failures(*scenario)
    assert not problems, "\n".join(problems[:15])
