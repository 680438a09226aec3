"""Cluster mode without a network: roles gate every write, a follower stays warm and writes
nothing, a takeover diffs what the previous leader left (never a flush), the member steps down
when a switch refuses it, and a follower forwards changes to the leader."""

from __future__ import annotations

import json
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any

import pytest

from controller.app.channel import OsKenChannel
from controller.app.election import Leadership
from controller.app.enforcer import ApplyError, Enforcer
from controller.app.forward import forwarder
from controller.app.ha import ClusterMember
from controller.app.roles import SwitchRoles
from controller.core.compiler import compile_tables
from controller.core.diff import Plan, SwitchPlan
from controller.core.flows import make_flow
from controller.io.files import load_policy
from tests.test_enforcer import FakeSwitch, enforced_linear

from os_ken.ofproto import ofproto_v1_3 as ofproto
from os_ken.ofproto import ofproto_v1_3_parser as parser


class FakeDatapath:
    """Enough of an os-ken datapath for the role requests and the channel's sends."""

    ofproto = ofproto
    ofproto_parser = parser

    def __init__(self, dpid: int) -> None:
        self.id = dpid
        self.sent: list[Any] = []
        self.xid = 0

    def set_xid(self, message: Any) -> None:
        self.xid += 1
        message.xid = self.xid

    def send_msg(self, message: Any) -> bool:
        self.sent.append(message)
        return True


@dataclass
class RoleSwitch:
    """Answers role requests as OpenFlow 1.3 says: a generation older than the last is stale."""

    generation: int | None = None
    master: str | None = None
    requests: list[tuple[int, int]] = field(default_factory=list)

    def call(self, datapath: Any, message: Any) -> tuple[Any | None, str | None]:
        self.requests.append((message.role, message.generation_id))
        if self.generation is not None and message.generation_id - self.generation < 0:
            return None, "OpenFlow error type 11 code 1 on xid 1"  # OFPRRFC_STALE
        self.generation = message.generation_id
        return parser.OFPRoleReply(datapath, message.role, message.generation_id), None


def test_a_single_instance_never_asks_for_a_role_and_always_writes() -> None:
    switch = RoleSwitch()
    roles = SwitchRoles(False, switch.call)
    assert roles.writable(1) and roles.claim(FakeDatapath(1), "master", 5) is None and switch.requests == []


def test_nothing_is_written_before_the_switch_grants_master_and_a_stale_term_is_refused() -> None:
    switch = RoleSwitch()
    lost: list[int] = []
    roles = SwitchRoles(True, switch.call, on_lost=lost.append)
    datapath = FakeDatapath(1)
    assert not roles.writable(1)  # a new connection is EQUAL: we still write nothing
    assert roles.claim(datapath, "master", 7) is None and roles.writable(1)
    other = SwitchRoles(True, switch.call)
    assert other.claim(FakeDatapath(1), "master", 6) is not None and not other.writable(1)  # stale
    assert roles.claim(datapath, "slave", 9) is None and not roles.writable(1)
    assert roles.claim(datapath, "master", 9) is None and roles.writable(1)
    roles.error(1, 1, 10)  # OFPBRC_IS_SLAVE: another instance took the switch
    assert not roles.writable(1) and lost == [1] and roles.refused_writes == 1


def test_the_channel_sends_nothing_while_it_may_not_write() -> None:
    datapath = FakeDatapath(1)
    allowed = [False]
    channel = OsKenChannel(datapath, lambda d, m: [], lambda d, x: [], lambda d, m: (None, "x"),
                           may_write=lambda: allowed[0])
    flow = make_flow("port_security", 5, {"in_port": 1}, [], cookie=0x1)
    with pytest.raises(ApplyError, match="not the switch's OpenFlow master"):
        channel.send(SwitchPlan(Plan(add=(flow,))))
    assert datapath.sent == []
    allowed[0] = True
    channel.send(SwitchPlan(Plan(add=(flow,)), atomic=False))
    assert datapath.sent  # the flow-mod and its barrier


def _cluster_enforcer(writable: dict[int, bool]) -> tuple[Enforcer, dict[int, FakeSwitch], Any, Any]:
    return enforced_linear(writable=lambda dpid: writable.get(dpid, False))


def test_a_follower_stays_warm_and_writes_nothing_then_takes_over_by_diffing() -> None:
    writable: dict[int, bool] = {}
    follower, switches, policy, topology = _cluster_enforcer(writable)
    report = follower.reconcile()
    assert report.flow_mods == 0 and all(not s.sent for s in switches.values())
    assert set(follower.pending_switches().values()) == {
        "this instance is not its OpenFlow master; it enforces no otseg tables yet until then"}
    # The leader (another enforcer, same switches) programs everything.
    leader, _, _, _ = _cluster_enforcer({d: True for d in switches})
    for fake in switches.values():
        leader.switch_connected(fake, fake.ports())
    for link in topology.links:
        leader.link_up(link)
    leader.bound = dict(follower.bound)
    leader.reconcile()
    expected = compile_tables(policy, topology)
    assert all(switches[d].flows == expected[d].flows for d in switches)
    for fake in switches.values():
        fake.sent.clear()
    # The leader dies; the follower takes over: it re-reads and finds nothing to change.
    writable.update({d: True for d in switches})
    follower.take_over()
    assert follower.reconcile().flow_mods == 0 and all(not s.sent for s in switches.values())
    assert follower.pending_switches() == {}


def test_a_follower_adopts_the_leaders_policy_without_writing() -> None:
    follower, switches, policy, topology = _cluster_enforcer({})
    deny_all = load_policy(str(Path(__file__).parent / "integration" / "data" / "linear-deny-all.yaml"))
    serial = follower.policy_serial
    follower.adopt_policy(deny_all)
    assert follower.policy is deny_all and follower.policy_serial == serial + 1
    assert follower.reconcile().flow_mods == 0 and all(not s.sent for s in switches.values())
    assert follower.desired() == compile_tables(deny_all, follower.topology())  # warm: compiled, not sent


@dataclass
class FakeElection:
    instance: str = "b"
    states: list[Leadership] = field(default_factory=list)
    state: Leadership = field(default_factory=Leadership)
    resigned: int = 0
    period: float = 0.25

    def step(self) -> Leadership:
        if self.states:
            self.state = self.states.pop(0)
        return self.state

    def resign(self) -> None:
        self.resigned += 1

    def lease_valid_until(self) -> float:
        return self.state.valid_until

    def lease_error(self) -> str:
        return self.state.store_error


@dataclass
class FakeStore:
    version: str = "v1"
    texts: dict[str, bytes] = field(default_factory=lambda: {"v1": b"one", "v2": b"two"})

    def current(self) -> dict[str, str]:
        return {"version": self.version}

    def load(self, version: str) -> tuple[str, bytes]:
        return version, self.texts[version]


def _member(states: list[Leadership], store: FakeStore | None = None) -> tuple[ClusterMember, dict[str, list[Any]], RoleSwitch]:
    switch = RoleSwitch()
    roles = SwitchRoles(True, switch.call)
    calls: dict[str, list[Any]] = {"elected": [], "deposed": [], "policy": []}
    in_force = ["v1"]
    member = ClusterMember(FakeElection(states=states), store or FakeStore(), roles,  # type: ignore[arg-type]
                           lambda: {1: FakeDatapath(1), 2: FakeDatapath(2)}, calls["elected"].append,
                           lambda: calls["deposed"].append(True),
                           lambda v, d: (calls["policy"].append((v, d)), in_force.__setitem__(0, v)),
                           lambda: in_force[0], lambda s: None, clock=lambda: 100.0)
    roles.on_lost = member.switch_lost
    member.ready.update({1, 2})  # both described themselves
    return member, calls, switch


def test_the_member_claims_master_with_its_term_and_steps_down_when_the_store_says_so() -> None:
    follower = Leadership("a", "http://a", 5, False, 0.0, True)
    leading = Leadership("b", "http://b", 9, True, 102.0, True)
    member, calls, switch = _member([follower, leading, leading, Leadership("c", "http://c", 12, False, 0, True)])
    member.step()
    assert not member.leading and member.forward_to() == "http://a" and member.change_refused() == "not the leader"
    member.step()
    assert member.leading and calls["elected"] == [9] and member.change_refused() is None
    # SLAVE as a follower (the switches were EQUAL), then MASTER with the new term
    assert switch.requests == [(ofproto.OFPCR_ROLE_SLAVE, 5)] * 2 + [(ofproto.OFPCR_ROLE_MASTER, 9)] * 2
    assert member.roles.writable(1)
    member.step()
    assert calls["elected"] == [9]  # still leading: no second takeover
    member.step()
    assert not member.leading and calls["deposed"] == [True] and not member.roles.writable(1)
    assert switch.requests[-1] == (ofproto.OFPCR_ROLE_SLAVE, 12)


def test_a_leader_cut_off_from_the_store_keeps_its_switches_but_refuses_changes() -> None:
    leading = Leadership("b", "http://b", 9, True, 102.0, True)
    cut_off = Leadership("b", "http://b", 9, True, 102.0, False, "etcd unreachable")
    member, calls, switch = _member([leading, cut_off])
    member.step()
    member.step()
    assert member.leading and member.roles.writable(1) and calls["deposed"] == []
    assert (member.change_refused() or "").startswith("no quorum")
    assert member.forward_to() is None


def test_a_switch_refusing_our_writes_makes_the_member_step_down() -> None:
    leading = Leadership("b", "http://b", 9, True, 102.0, True)
    member, calls, _ = _member([leading])
    member.step()
    member.roles.error(1, 1, 10)
    member.step()
    assert not member.leading and member.election.resigned == 1 and calls["deposed"] == [True]  # type: ignore[attr-defined]


def test_a_follower_follows_the_version_in_force() -> None:
    store = FakeStore()
    member, calls, _ = _member([Leadership("a", "http://a", 5, False, 0.0, True)], store)
    member.step()
    assert calls["policy"] == []
    store.version = "v2"
    member.step()
    assert calls["policy"] == [("v2", b"two")]


def test_a_follower_with_no_leader_refuses_changes_with_the_reason() -> None:
    member, _, _ = _member([Leadership(store_up=False, store_error="etcd unreachable")])
    member.step()
    body, code, _ = forwarder(member)("/v1/policy", b"x", {})  # type: ignore[misc]
    assert code == 503 and "no quorum" in json.loads(body)["error"]


def test_a_follower_claims_slave_only_on_switches_that_described_themselves() -> None:
    member, _, switch = _member([Leadership("a", "http://a", 5, False, 0.0, True)])
    member.ready = {2}  # switch 1 is still being probed (a SLAVE could not open its bundle)
    member.step()
    assert switch.requests == [(ofproto.OFPCR_ROLE_SLAVE, 5)] and 1 not in member.roles.held


def test_the_lease_keeper_extends_from_the_send_time_and_notices_expiry() -> None:
    from controller.app.lease_keeper import LeaseKeeper, _dechunk  # noqa: PLC0415

    now = [10.0]
    answers = [{"result": {"TTL": "2"}}, OSError("refused"), {"result": {"TTL": "2"}}, {"result": {}}]

    def post(host: str, port: int, path: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    keeper = LeaseKeeper([("127.0.0.1", 1), ("127.0.0.1", 2)], 7, 2, clock=lambda: now[0], post=post)
    assert keeper.valid_until == 12.0
    now[0] = 11.0
    keeper.keepalive_once()
    assert keeper.valid_until == 13.0 and not keeper.expired
    now[0] = 12.0
    keeper.keepalive_once()  # the first member refuses, the second answers
    assert keeper.valid_until == 14.0
    keeper.keepalive_once()  # no TTL: the lease is gone
    assert keeper.expired and keeper.valid_until == 14.0
    assert _dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n") == b"abcde"


def test_a_master_request_without_answer_is_asked_again_and_nothing_is_written_meanwhile() -> None:
    leading = Leadership("b", "http://b", 9, True, 102.0, True)
    member, calls, switch = _member([leading])
    answers = iter([(None, "no answer to OFPRoleRequest within 10 s")])
    real = switch.call
    member.roles._call = lambda d, m: next(answers, None) or real(d, m)  # noqa: SLF001  (the first one is lost)
    wall = [1000.0]
    member.roles.wall = lambda: wall[0]
    member.step()
    assert member.leading and [member.roles.writable(d) for d in (1, 2)].count(True) == 1
    member.step()  # too soon to ask again
    assert [member.roles.writable(d) for d in (1, 2)].count(True) == 1
    wall[0] += 3
    member.step()
    assert member.roles.writable(1) and member.roles.writable(2)


def test_an_elected_hook_that_fails_is_retried_from_the_start() -> None:
    leading = Leadership("b", "http://b", 9, True, 102.0, True)
    member, calls, _ = _member([leading])
    failures = [RuntimeError("store unreachable during the takeover")]

    def elected(term: int) -> None:
        if failures:
            raise failures.pop()
        calls["elected"].append(term)

    member.on_elected = elected
    with pytest.raises(RuntimeError):
        member.step()
    assert not member.leading and member.takeovers == 0
    member.step()
    assert member.leading and calls["elected"] == [9] and member.takeovers == 1


def test_forwarding_refuses_loops_bad_leader_addresses_and_redirects() -> None:
    from controller.app.forward import valid_api_url  # noqa: PLC0415

    assert valid_api_url("http://10.0.0.2:8181") and valid_api_url("https://[::1]:8181/")
    for bad in ("file:///etc/hostname#", "http://10.0.0.2", "http://h:1/v1/policy", "http://u:p@h:1", "gopher://h:1"):
        assert not valid_api_url(bad), bad
    member, _, _ = _member([Leadership("a", "file:///etc/hostname#", 5, False, 0.0, True)])
    member.step()
    body, code, _ = forwarder(member)("/v1/policy", b"x", {})  # type: ignore[misc]
    assert code == 503 and "advertises" in json.loads(body)["error"]
    member, _, _ = _member([Leadership("a", "http://127.0.0.1:8181", 5, False, 0.0, True)])
    member.step()
    body, code, _ = forwarder(member, "http://127.0.0.1:8182")("/v1/policy", b"x", {"X-Otseg-Forwarded": "1"})  # type: ignore[misc]
    assert code == 503 and "changing leader" in json.loads(body)["error"]  # never forwarded twice
    body, code, _ = forwarder(member, "http://127.0.0.1:8181")("/v1/policy", b"x", {})  # type: ignore[misc]
    assert code == 503  # to itself: refused, not a loop


def test_a_redirecting_leader_does_not_get_the_token_carried_elsewhere() -> None:
    import http.server  # noqa: PLC0415
    import threading  # noqa: PLC0415

    seen: list[str | None] = []

    class Elsewhere(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    elsewhere = http.server.HTTPServer(("127.0.0.1", 0), Elsewhere)

    class Redirecting(Elsewhere):
        def do_POST(self) -> None:  # noqa: N802
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{elsewhere.server_port}/steal")
            self.end_headers()

    leader = http.server.HTTPServer(("127.0.0.1", 0), Redirecting)
    for server in (elsewhere, leader):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        member, _, _ = _member([Leadership("a", f"http://127.0.0.1:{leader.server_port}", 5, False, 0.0, True)])
        member.step()
        _, code, _ = forwarder(member)("/v1/policy", b"x", {"Authorization": "Bearer s3cret"})  # type: ignore[misc]
        assert code == 307 and seen == []  # the redirect is answered as it came, never followed
    finally:
        leader.shutdown()
        elsewhere.shutdown()
