"""Link discovery: declared links verified by signed LLDP, pending links, expiry that forgives stalls."""

from __future__ import annotations

from controller.app.discovery import HOLD_BASE_SECONDS, LinkDiscovery, DiscoveryEvents
from controller.app.linkbook import LinkBook
from controller.core.frames import build_lldp, parse_frame
from controller.core.topology import Link, PortRef

KEY = b"k" * 32
A, B = PortRef(1, 10), PortRef(2, 10)
DECLARED = Link.between(A, B)


class World:
    """Two switches joined by one declared link, plus a free port on each, with a fake clock."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sent: list[tuple[int, int, bytes]] = []
        self.ups: list[Link] = []
        self.downs: list[Link] = []
        self.pending: list[Link] = []
        self.rejected = 0
        self.book = LinkBook(frozenset({DECLARED}))
        self.discovery = LinkDiscovery(
            self.book, KEY, lambda d, p, data: self.sent.append((d, p, data)),
            lambda: {1: {1, 5, 10}, 2: {1, 5, 10}},
            DiscoveryEvents(self.ups.append, self.downs.append, lambda p: self.pending.append(p.link),
                            lambda reason: self._reject()),
            clock=lambda: self.now, wall_ms=lambda: int(self.now * 1000))

    def _reject(self) -> None:
        self.rejected += 1

    def lldp(self, sent_from: PortRef, arrived_at: PortRef, key: bytes = KEY, age: float = 0.0) -> None:
        frame = parse_frame(build_lldp(sent_from.dpid, sent_from.port, "0e:5e:00:00:00:01", key,
                                       int((self.now - age) * 1000)))
        self.discovery.lldp_in(arrived_at, frame)


def test_a_declared_link_is_up_once_lldp_crossed_it_both_ways() -> None:
    world = World()
    world.lldp(A, B)
    assert world.ups == [] and world.book.live() == frozenset()
    world.lldp(B, A)
    assert world.ups == [DECLARED] and world.book.live() == {DECLARED}


def test_a_relay_between_two_free_ports_is_pending_never_up() -> None:
    world = World()
    free_1, free_2 = PortRef(1, 5), PortRef(2, 5)
    world.lldp(free_1, free_2)
    world.lldp(free_2, free_1)
    world.lldp(free_2, free_1)
    assert world.ups == [] and world.book.live() == frozenset()
    assert world.pending == [Link.between(free_1, free_2)]  # reported once
    assert world.book.pending[Link.between(free_1, free_2)].frames == 3


def test_lldp_of_a_declared_trunk_relayed_to_a_free_port_is_a_miswired_pending_link() -> None:
    world = World()
    world.lldp(A, PortRef(2, 5))  # an attacker relays switch 1's trunk LLDP into switch 2's free port
    link = Link.between(A, PortRef(2, 5))
    assert world.pending == [link] and "miswired" in world.book.pending[link].reason
    assert DECLARED not in world.book.live()


def test_forged_and_replayed_lldp_is_rejected() -> None:
    world = World()
    world.lldp(B, A, key=b"x" * 32)  # a device forging LLDP without the key
    world.lldp(B, A, age=60.0)  # a recording replayed a minute later
    assert world.rejected == 2 and world.book.heard == {}


def test_silence_or_a_port_down_takes_a_link_down() -> None:
    world = World()
    world.lldp(A, B)
    world.lldp(B, A)
    world.now += 1.0
    assert world.discovery.check(world.now) == []
    world.now += 2.0
    assert world.discovery.check(world.now) == [DECLARED] and world.downs == [DECLARED]
    world.lldp(A, B)
    world.lldp(B, A)
    world.discovery.port_down(A)
    assert world.downs == [DECLARED, DECLARED] and world.book.live() == frozenset()
    world.lldp(A, B)
    world.lldp(B, A)
    assert world.book.live() == frozenset()  # not while the port is down
    world.discovery.port_up(A)
    world.lldp(A, B)
    world.lldp(B, A)
    assert world.book.live() == {DECLARED}


def test_a_stalled_controller_is_not_a_dead_link() -> None:
    world = World()
    world.lldp(A, B)
    world.lldp(B, A)
    due = world.now + 0.5
    world.now += 4.0  # the check runs 3.5 s late: nothing could be processed meanwhile
    assert world.discovery.check(due) == []
    assert world.book.live() == {DECLARED}


def test_links_are_held_after_a_large_reconcile() -> None:
    world = World()
    world.lldp(A, B)
    world.lldp(B, A)
    hold = world.discovery.hold_for_flow_mods(5000)
    assert hold >= HOLD_BASE_SECONDS
    world.now += 2.0
    world.discovery.check(world.now)
    world.now += 2.0
    assert world.discovery.check(world.now) == []
    assert world.discovery.hold_for_flow_mods(10) == 0.0


def test_lldp_goes_to_trunks_every_round_and_to_other_ports_every_few_rounds() -> None:
    world = World()
    first = world.discovery.send_round()
    assert first == 6
    world.sent.clear()
    world.discovery.send_round()
    assert sorted((d, p) for d, p, _ in world.sent) == [(1, 10), (2, 10)]


def test_a_new_switch_gets_lldp_at_once_on_its_ports_and_its_peers() -> None:
    world = World()
    world.discovery.switch_connected(2)
    assert sorted((d, p) for d, p, _ in world.sent) == [(1, 10), (2, 1), (2, 5), (2, 10)]


def test_approving_a_pending_link_declares_it() -> None:
    world = World()
    free_1, free_2 = PortRef(1, 5), PortRef(2, 5)
    world.lldp(free_1, free_2)
    link = Link.between(free_1, free_2)
    world.book.approve(link)
    assert link in world.book.declared and link not in world.book.pending
    world.lldp(free_1, free_2)
    world.lldp(free_2, free_1)
    assert link in world.book.live()
