"""Random policies on random (ring-containing) topologies: the walk equals the verdict."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from controller.core.compiler import compile_tables
from controller.core.diff import apply_plan, diff_flows
from controller.core.model import Policy
from controller.core.topology import PortRef, Topology
from tests.strategies import scenarios
from tests.walk import Matrix

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(scenarios())
def test_random_policy_walk_equals_verdict(scenario: tuple[Policy, Topology]) -> None:
    policy, topology = scenario
    matrix = Matrix(policy, topology)
    free_port = PortRef(min(topology.switches), 99)
    mismatches = matrix.check_unicast() + matrix.check_multicast() + matrix.check_attacks(free_port)
    assert not mismatches, "\n".join(map(str, mismatches[:10]))


@settings(max_examples=40, deadline=None)
@given(scenarios(), scenarios())
def test_a_b_a_through_the_reconciler_restores_a(first: tuple[Policy, Topology],
                                                 second: tuple[Policy, Topology]) -> None:
    policy_a, topology = first
    policy_b = second[0]
    tables_a = compile_tables(policy_a, topology)
    tables_b = compile_tables(policy_b, topology)
    for dpid in topology.switches:
        installed: frozenset = frozenset()
        for desired in (tables_a[dpid].flows, tables_b[dpid].flows, tables_a[dpid].flows):
            installed = apply_plan(installed, diff_flows(desired, installed))
            assert installed == desired
            assert diff_flows(desired, installed).empty
