"""Walk the whole allow/deny matrix of every example policy through its compiled tables."""

from __future__ import annotations

from controller.core.compiler import compile_tables
from controller.core.model import Policy
from controller.core.topology import PortRef, Topology
from tests.walk import Matrix


def _free_port(topology: Topology, matrix: Matrix) -> PortRef:
    used = set(matrix.located.values()) | set(topology.trunk_ports)
    dpid = min(topology.switches)
    port = next(p for p in range(1, 100) if PortRef(dpid, p) not in used)
    return PortRef(dpid, port)


def test_unicast_matrix_equals_policy(example: tuple[Policy, Topology]) -> None:
    matrix = Matrix(*example)
    mismatches = matrix.check_unicast()
    assert not mismatches, "\n".join(map(str, mismatches[:20]))
    assert matrix.walks > 100


def test_multicast_reaches_exactly_the_to_assets(example: tuple[Policy, Topology]) -> None:
    matrix = Matrix(*example)
    mismatches = matrix.check_multicast()
    assert not mismatches, "\n".join(map(str, mismatches[:20]))


def test_spoofed_and_unknown_frames_reach_nobody(example: tuple[Policy, Topology]) -> None:
    matrix = Matrix(*example)
    mismatches = matrix.check_attacks(_free_port(example[1], matrix))
    assert not mismatches, "\n".join(map(str, mismatches[:20]))


def test_compiling_twice_gives_identical_tables(example: tuple[Policy, Topology]) -> None:
    assert compile_tables(*example) == compile_tables(*example)


def test_every_example_asset_is_located(example: tuple[Policy, Topology]) -> None:
    matrix = Matrix(*example)
    assert set(matrix.located) == {a.name for a in example[0].assets}
