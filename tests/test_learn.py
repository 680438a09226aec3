"""Learn mode: frames become conversations the right way round, their counting entries never
change a verdict (walked against the reference, which treats learn like monitor), the
incremental compiler equals a full compile as conversations come and go, and the proposal is a
valid policy that allows exactly what was seen."""

from __future__ import annotations

from dataclasses import replace

import pytest
import yaml

from controller.core.compiler import compile_tables
from controller.core.incremental import IncrementalCompiler
from controller.core.learn import Conversation, Seen, conversation, propose
from controller.core.model import Policy
from controller.core.overrides import Isolation, Overrides, effective
from controller.core.rules import PRIO_LEARNED
from controller.core.topology import Topology
from controller.core.verdict import ETH_IPV4, Packet, decide
from controller.io.files import load_policy_text, proposal_text
from controller.policy.diagnostics import DocumentError
from tests.conftest import EXAMPLES, POLICIES, load_example
from tests.walk import Matrix, frame

SYN, SYN_ACK, ACK = 0x02, 0x12, 0x10


def learning(policy: Policy, zones: tuple[str, ...] | None = None) -> Policy:
    """`policy` with every zone (or `zones`) in learn mode and no conduit: nothing is allowed yet."""
    if zones is None:
        return replace(policy, mode="learn", conduits=(), _index={})
    return replace(policy, zones=tuple(replace(z, mode="learn") if z.name in zones else z for z in policy.zones),
                   _index={})


def test_frames_become_conversations_the_right_way_round() -> None:
    policy, _ = load_example("linear.yaml", "linear.yaml")
    scada, plc = policy.asset("scada"), policy.asset("plc-a")

    def of(src, dst, packet):  # type: ignore[no-untyped-def]
        return conversation(policy, frame(src, dst, packet), src, dst)

    modbus = Conversation("scada", "plc-a", "tcp", 502)
    assert of(scada, plc, Packet(ETH_IPV4, 6, 40000, 502, SYN)) == modbus
    assert of(plc, scada, Packet(ETH_IPV4, 6, 502, 40000, SYN_ACK)) == modbus  # a reply
    assert of(plc, scada, Packet(ETH_IPV4, 6, 502, 40000, ACK)) == modbus  # a session older than learning
    assert of(scada, plc, Packet(ETH_IPV4, 6, 40001, 40000, SYN)) == Conversation("scada", "plc-a", "tcp", 40000)
    assert of(plc, scada, Packet(ETH_IPV4, 6, 40000, 40001, SYN_ACK)) == Conversation("scada", "plc-a", "tcp", 40000)
    assert of(scada, plc, Packet(ETH_IPV4, 17, 40000, 162)) == Conversation("scada", "plc-a", "udp", 162)
    assert of(plc, scada, Packet(ETH_IPV4, 17, 162, 40000)) == Conversation("scada", "plc-a", "udp", 162)
    assert of(scada, plc, Packet(ETH_IPV4, 1, icmp_type=8)) == Conversation("scada", "plc-a", "icmp", 0)
    assert of(plc, scada, Packet(ETH_IPV4, 1, icmp_type=0)) == Conversation("scada", "plc-a", "icmp", 0)
    assert of(scada, plc, Packet(0x8892)) == Conversation("scada", "plc-a", "ethertype", 0x8892)
    assert of(scada, plc, Packet(0x0806)) is None
    assert of(scada, plc, Packet(ETH_IPV4, 6, fragment="later")) is None
    assert of(scada, plc, Packet(ETH_IPV4, 1, icmp_type=3)) is None
    assert of(scada, plc, Packet(ETH_IPV4, 17, 40000, 162, multicast=True)) is None
    key = modbus.key
    assert Conversation.from_key(key) == modbus
    with pytest.raises(ValueError, match="not a conversation"):
        Conversation.from_key("scada>plc-a:sctp/1")


def seen_everything(policy: Policy) -> tuple[Conversation, ...]:
    """A conversation of each kind between every pair of IP assets (and an L2 one)."""
    found = []
    ip = [a for a in policy.assets if a.ip]
    for a in ip[:5]:
        for b in ip[:5]:
            if a.name != b.name:
                found += [Conversation(a.name, b.name, "tcp", 502), Conversation(a.name, b.name, "udp", 162),
                          Conversation(a.name, b.name, "icmp", 0)]
    if len(ip) >= 2:
        found.append(Conversation(ip[0].name, ip[1].name, "ethertype", 0x88B5))
    return tuple(sorted(found))


@pytest.mark.parametrize("pair", EXAMPLES, ids=lambda pair: pair[0].removesuffix(".yaml"))
def test_counting_entries_never_change_a_verdict(pair: tuple[str, str]) -> None:
    policy, topology = load_example(*pair)
    first_zone = policy.zones[0].name
    for candidate in (learning(policy), learning(policy, (first_zone,)),
                      effective(learning(policy, (first_zone,)), Overrides(isolations=(
                          Isolation("i1", "zone", policy.zones[-1].name, (), "r", "ops", 0.0),)), 0.0)):
        learned = replace(topology, conversations=seen_everything(policy), _cache={})
        tables = compile_tables(candidate, learned)
        matrix = Matrix(candidate, learned, tables=tables)
        found = matrix.check_unicast() + matrix.check_multicast()
        assert not found, "\n".join(map(str, found[:10]))
    assert any(f.priority == PRIO_LEARNED for s in compile_tables(learning(policy), learned).values() for f in s.flows)


def test_reply_entries_only_where_the_responder_zone_forwards_too() -> None:
    """A mutation that always installs the reply entry admits the responder's traffic back
    from an enforcing zone: the walk catches it."""
    policy, topology = load_example("linear.yaml", "linear.yaml")
    candidate = learning(policy, ("control",))  # field enforces; its alarm conduit gives it a path to scada
    learned = replace(topology, conversations=(Conversation("scada", "plc-a", "tcp", 502),), _cache={})
    tables = compile_tables(candidate, learned)
    assert not Matrix(candidate, learned, tables=tables).check_unicast()
    import controller.core.units as units

    original = units.learned_flows
    try:
        units.learned_flows = lambda c, forward, reply: original(c, forward, reply or (  # type: ignore[assignment]
            forward[0] >> 32 & 0xFFFFFFFF | (forward[0] & 0xFFFFFFFF) << 32, forward[1]))
        mutated = compile_tables(candidate, learned)
    finally:
        units.learned_flows = original
    assert mutated != tables
    assert Matrix(candidate, learned, tables=mutated).check_unicast(), "the walk missed a reply entry it should not have"


def test_incremental_compiles_as_conversations_come_equal_full_compiles() -> None:
    policy, topology = load_example("plant.yaml", "plant.yaml")
    candidate = learning(policy, ("supervisory", "operations"))
    every = seen_everything(policy)
    compiler = IncrementalCompiler()
    for step in (0, 3, 10, len(every), 5):
        learned = replace(topology, conversations=every[:step], _cache={})
        assert compiler.compile(candidate, learned) == compile_tables(candidate, learned)
    full = replace(topology, conversations=every[:5], learn_full=True, _cache={})
    assert compiler.compile(candidate, full) == compile_tables(candidate, full)


def test_the_proposal_is_valid_and_allows_exactly_what_was_seen() -> None:
    text = (POLICIES / "linear.yaml").read_text()
    document = yaml.safe_load(text)
    document["conduits"] = [c for c in document["conduits"] if c["name"] == "eng-programs-plcs"]
    document["mode"] = "learn"
    base = load_policy_text(yaml.safe_dump(document).encode(), "learning.yaml")
    seen = {Conversation(station, member, "tcp", 502): Seen(1000.0, 2000.0, 50) for station in ("scada", "eng")
            for member in ("plc-a", "plc-b", "drive-1")}  # every control -> field pair: one zone conduit
    seen[Conversation("plc-a", "scada", "udp", 162)] = Seen(1500.0, 1600.0, 3)
    seen[Conversation("scada", "plc-b", "tcp", 8080)] = Seen(1500.0, 1600.0, 7)  # no service has 8080
    seen[Conversation("eng", "plc-a", "tcp", 102)] = Seen(1.0, 2.0, 9)  # already allowed: not proposed again
    proposed_text = proposal_text(*propose(document, base, seen, now=3000.0))
    proposed = load_policy_text(proposed_text.encode(), "proposed.yaml")
    assert proposed.mode == "enforce"
    added = {c.name: c for c in proposed.conduits} .keys() - {"eng-programs-plcs"}
    by_name = {c.name: c for c in proposed.conduits}
    zone_wide = [by_name[n] for n in added if [e.name for e in by_name[n].destinations] == ["field"]]
    assert len(zone_wide) == 1 and zone_wide[0].services == ("modbus",) and "300 packets" in zone_wide[0].reason
    assert [e.name for e in zone_wide[0].sources] == ["control"]
    asset_wide = [by_name[n] for n in added if [e.name for e in by_name[n].sources] == ["plc-a"]]
    assert len(asset_wide) == 1 and [e.name for e in asset_wide[0].destinations] == ["scada"]  # not all of field
    assert any("learned-tcp-8080" in by_name[n].services for n in added)
    for c in seen:
        src, dst = proposed.asset(c.source), proposed.asset(c.destination)
        packet = (Packet(ETH_IPV4, 6 if c.protocol == "tcp" else 17, 40000, c.port, SYN if c.protocol == "tcp" else 0))
        assert decide(proposed, src, dst, packet).outcome == "allowed", c
    # nothing that was not seen: no pair, no service more
    unseen = [(proposed.asset("plc-a"), proposed.asset("drive-1"), Packet(ETH_IPV4, 6, 40000, 502, SYN)),
              (proposed.asset("scada"), proposed.asset("plc-a"), Packet(ETH_IPV4, 6, 40000, 8080, SYN)),
              (proposed.asset("scada"), proposed.asset("eng"), Packet(ETH_IPV4, 1, icmp_type=8)),
              (proposed.asset("drive-1"), proposed.asset("scada"), Packet(ETH_IPV4, 17, 40000, 162))]
    assert not [u for u in unseen if decide(proposed, *u).delivered]


def test_a_policy_cannot_put_a_conduit_in_learn_mode() -> None:
    text = (POLICIES / "linear.yaml").read_bytes().replace(b"    services: [s7comm]\n",
                                                           b"    services: [s7comm]\n    mode: learn\n")
    with pytest.raises(DocumentError, match="mode 'learn' is not one of enforce, monitor"):
        load_policy_text(text, "bad.yaml")
    zone = (POLICIES / "linear.yaml").read_bytes().replace(b'field:   {level: 1,', b'field:   {mode: learn, level: 1,')
    assert load_policy_text(zone, "ok.yaml").zone_mode("field") == "learn"


def test_topologies_with_conversations_hash_and_compare_by_them() -> None:
    base = Topology(frozenset({1}))
    one = replace(base, conversations=(Conversation("a", "b", "icmp", 0),), _cache={})
    assert base != one and hash(base) != hash(one)
