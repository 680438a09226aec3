"""Stateful conduits: replies only within connections the initiator opened.

The compiled tables are walked in order (request, then replies) by tests/walk.Matrix, which
keeps the reference's sessions (controller.core.reference.Sessions) beside the simulator's
per-switch connection trackers; each step must deliver exactly what the reference says, and
the steps below say what the reference must say, so neither side can agree on a wrong answer.
"""

from __future__ import annotations

import dataclasses

from controller.core.frames import Frame
from controller.core.model import Asset, Policy
from controller.core.reference import judge
from controller.core.relations import direction_warnings
from controller.core.rules import PRIO_COMMIT, PRIO_CT_LOOKUP, PRIO_TRANSIT_COMMIT
from controller.core.topology import Topology
from tests.conftest import load_example
from tests.walk import Matrix

ETH_IPV4 = 0x0800


def _udp(src: Asset, dst: Asset, sport: int, dport: int) -> Frame:
    return Frame(dst.mac, src.mac, (), ETH_IPV4, ipv4_src=src.ip, ipv4_dst=dst.ip, ip_proto=17, udp_src=sport,
                 udp_dst=dport)


def _tcp(src: Asset, dst: Asset, sport: int, dport: int, flags: int) -> Frame:
    return Frame(dst.mac, src.mac, (), ETH_IPV4, ipv4_src=src.ip, ipv4_dst=dst.ip, ip_proto=6, tcp_src=sport,
                 tcp_dst=dport, tcp_flags=flags)


def _icmp_unreachable(src: Asset, dst: Asset) -> Frame:
    return Frame(dst.mac, src.mac, (), ETH_IPV4, ipv4_src=src.ip, ipv4_dst=dst.ip, ip_proto=1, icmp_type=3,
                 icmp_code=3)


def plant() -> tuple[Policy, Topology]:
    return load_example("plant.yaml", "plant.yaml")


def test_a_stateful_udp_responder_cannot_send_first_and_answers_within_the_exchange() -> None:
    policy, topology = plant()
    matrix = Matrix(policy, topology)
    server, hmi, other = policy.asset("time-server"), policy.asset("hmi-1"), policy.asset("hmi-2")
    assert matrix.located[server.name].dpid != matrix.located[hmi.name].dpid  # the reply is looked up elsewhere
    steps = [
        (_udp(server, hmi, 123, 123), server, False),  # unsolicited: 123 to 123 looks like a reply
        (_icmp_unreachable(server, hmi), server, False),  # an error about no connection
        (_udp(hmi, server, 123, 123), hmi, True),  # the request opens the exchange
        (_udp(server, hmi, 123, 123), server, True),  # its answer
        (_udp(server, hmi, 123, 161), server, False),  # another port of the initiator
        (_udp(server, other, 123, 123), server, False),  # another initiator, who asked nothing
        (_icmp_unreachable(server, hmi), server, True),  # an error about the exchange
    ]
    for sent, sender, delivered in steps:
        assert _verdict(matrix, sent, sender.name) == delivered, (sent, delivered)


def _verdict(matrix: Matrix, sent: Frame, sender: str) -> bool:
    """Walk `sent`; the tables must agree with the reference; return the reference's verdict."""
    expected = bool(judge(matrix.policy, matrix.located, matrix.located[sender], sent, matrix.sessions).receivers)
    mismatch = matrix.check(matrix.located[sender], sent, "step", sender, sent.eth_dst)
    assert mismatch is None, mismatch
    return expected


def _stateful(policy: Policy, name: str) -> Policy:
    conduits = tuple(dataclasses.replace(c, stateful=True) if c.name == name else c for c in policy.conduits)
    return dataclasses.replace(policy, conduits=conduits, _index={})


def test_a_stateful_tcp_responder_answers_any_client_port_of_the_connection_and_nothing_else() -> None:
    base, topology = plant()
    policy = _stateful(base, "hmi-polls-cells")
    matrix = Matrix(policy, topology)
    hmi, plc = policy.asset("hmi-1"), policy.asset("plc-filler-1")
    steps = [
        (_tcp(plc, hmi, 502, 40000, 0x12), plc, False),  # a SYN-ACK nobody asked for
        (_tcp(hmi, plc, 80, 502, 0x02), hmi, True),  # from a privileged port: still a connection
        (_tcp(plc, hmi, 502, 80, 0x12), plc, True),  # stateless, 80 is no client port; here it is the connection's
        (_tcp(plc, hmi, 502, 80, 0x02), plc, False),  # a reverse SYN on the same ports: no ACK
        (_tcp(plc, hmi, 502, 22, 0x18), plc, False),  # the initiator's SSH
        (_tcp(plc, hmi, 502, 40001, 0x10), plc, False),  # another port than the connection's
    ]
    for sent, sender, delivered in steps:
        assert _verdict(matrix, sent, sender.name) == delivered, (sent, delivered)


def test_the_responders_switch_tracks_connections_and_the_initiators_does_not() -> None:
    """Replies are looked up where the responder is attached: the commit must be made there
    (on separate hardware each switch has its own tracker), and nowhere else it is not needed."""
    policy, topology = plant()
    matrix = Matrix(policy, topology)
    server, hmi = policy.asset("time-server"), policy.asset("hmi-1")
    _verdict(matrix, _udp(hmi, server, 123, 123), hmi.name)
    home, initiator_home = matrix.located[server.name].dpid, matrix.located[hmi.name].dpid
    assert matrix.network.conntrack[home] and not matrix.network.conntrack[initiator_home]
    lookups = [f for f in matrix.tables[home].flows if f.priority == PRIO_CT_LOOKUP]
    assert [f.field("ipv4_src").value for f in lookups] == [server.ip]  # type: ignore[union-attr]
    assert any(f.priority == PRIO_TRANSIT_COMMIT for f in matrix.tables[home].flows)
    assert not any(f.priority in (PRIO_COMMIT, PRIO_TRANSIT_COMMIT) for f in matrix.tables[initiator_home].flows)


def test_stateful_conduits_are_not_warned_about() -> None:
    policy, _ = plant()
    warned = " ".join(direction_warnings(policy))
    assert "plant-timing" in warned and "time-sync" not in warned
    stateless = dataclasses.replace(policy, conduits=tuple(
        dataclasses.replace(c, stateful=False) for c in policy.conduits), _index={})
    assert "time-sync" in " ".join(direction_warnings(stateless))
