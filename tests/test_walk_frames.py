"""Hypothesis builds attacker frames by itself; the walked tables must equal the reference.

Unlike `tests.walk.Matrix`'s hand-written probes, the frames here are drawn field by field
from what an attacker on a host port (or on a free port) can send: its own or another
asset's or an unknown MAC, any asset's MAC / broadcast / a group MAC / an IPv4 group's MAC as
destination (UDP of a conduit with groups often aimed at one of them), VLAN and
QinQ tags, IPv4/ARP/the policy's ethertypes/any ethertype, addresses of assets, a foreign
one and a directed broadcast, ports from the policy's services and client ranges plus a few
classic targets, TCP flags, ICMP types and fragments. Each field prefers the consistent value
(the sender's own address, the addressed asset's own IP) so that frames often get deep into
the pipeline, where a wrong field is the only reason for a drop.

The second half runs the same search against deliberately broken tables (mutations from
`tests.test_mutations`) and requires hypothesis alone, deterministically, to find a frame
that exposes each one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

from controller.core.frames import Frame
from controller.core.model import EPHEMERAL_CLIENTS, Asset, Endpoint, Intra, Policy, ServiceMatch
from controller.core.reference import Judgement, judge
from controller.core.topology import PortRef
from tests.conftest import EXAMPLES, load_example
from tests.test_mutations import MUTATIONS, free_port
from tests.walk import (
    BROADCAST, DIRECTED_BROADCAST, EPHEMERAL, FOREIGN_IP, GROUP_MAC, UNKNOWN_MAC, Matrix, alias, mac_of_group,
)

ETH_IPV4, ETH_ARP = 0x0800, 0x0806
TAGS: tuple[tuple[tuple[int, int], ...], ...] = (
    (), ((0x8100, 0x0000),), ((0x8100, 0xE064),), ((0x88A8, 0x0000), (0x8100, 0x0000)), ((0x9100, 0x0000),))
CLASSIC_PORTS = (22, 161, 1023, 1024, 3389, 40000)
TCP_FLAGS = (0x002, 0x010, 0x012, 0x018, 0x001, 0x000)  # SYN, ACK, SYN|ACK, PSH|ACK, FIN, none
ICMP_TYPES = (0, 3, 8, 11)
IP_PROTOS = (1, 6, 17, 47)
ZERO_MAC = "00:00:00:00:00:00"
PROTOCOL_NUMBERS = {"icmp": 1, "tcp": 6, "udp": 17}


@dataclass(frozen=True)
class Link:
    """`peer` may talk with the sender over `match` (None: anything), the sender as `role`."""

    peer: str
    match: ServiceMatch | None
    role: str  # "initiator" | "responder" | "any"
    groups: tuple[str, ...] = ()  # the conduit's IPv4 groups (initiators may send to them)


@dataclass(frozen=True)
class Scene:
    """What the strategy draws from, for one example policy on its lab."""

    name: str
    matrix: Matrix
    assets: tuple[Asset, ...]  # the located ones
    free_port: PortRef
    ethertypes: tuple[int, ...]
    ports: tuple[int, ...]
    links: dict[str, tuple[Link, ...]]  # by sender: read from the conduits, only to aim the frames


def _links(policy: Policy) -> dict[str, tuple[Link, ...]]:
    found: dict[str, set[Link]] = {a.name: set() for a in policy.assets}

    def add(initiators: tuple[Endpoint, ...], responders: tuple[Endpoint, ...], matches: list[ServiceMatch],
            groups: tuple[str, ...] = ()) -> None:
        for i in (a for e in initiators for a in policy.members(e)):
            for r in (a for e in responders for a in policy.members(e)):
                if i.name != r.name:
                    for match in matches:
                        found[i.name].add(Link(r.name, match, "initiator", groups if match.protocol == "udp" else ()))
                        found[r.name].add(Link(i.name, match, "responder"))

    for conduit in policy.conduits:
        matches = [m for name in conduit.services for m in policy.service(name).matches]
        add(conduit.sources, conduit.destinations, matches, conduit.groups)
        if conduit.bidirectional:
            add(conduit.destinations, conduit.sources, matches, conduit.groups)
    for zone in policy.zones:
        zone_end = (Endpoint("zone", zone.name),)
        if zone.intra is Intra.SERVICES:
            add(zone_end, zone_end, [m for name in zone.intra_services for m in policy.service(name).matches])
        elif zone.intra is Intra.ALLOW:
            for a in policy.members(zone_end[0]):
                found[a.name] |= {Link(b.name, None, "any") for b in policy.members(zone_end[0]) if b != a}
    return {name: tuple(sorted(links, key=str)) for name, links in found.items()}


@lru_cache(maxsize=None)
def scene(pair: tuple[str, str]) -> Scene:
    policy, topology = load_example(*pair)
    matrix = Matrix(policy, topology)
    assets = tuple(policy.asset(n) for n in sorted(matrix.located))
    matches = [m for s in policy.services for m in s.matches]
    ethertypes = sorted({m.low for m in matches if m.protocol == "ethertype"})
    ports: set[int] = set(CLASSIC_PORTS)
    for match in matches:
        if match.has_ports:
            ports |= {match.low, match.high}
            ports |= {p for low, high in match.clients for p in (low, high) if high - low < 100}
    return Scene(pair[0].removesuffix(".yaml"), matrix, assets, free_port(topology, matrix), tuple(ethertypes),
                 tuple(sorted(ports)), _links(policy))


def _altered(draw: st.DrawFn) -> bool:
    """About one field in four is altered (and shrinking goes back to the unaltered value)."""
    return draw(st.integers(0, 3)) == 3


def _prefer(draw: st.DrawFn, preferred: object, pool: list[object] | tuple[object, ...]) -> object:
    """The preferred value, unless altered to any of the pool (or no preference)."""
    if preferred is None:
        return draw(st.sampled_from(pool))
    return draw(st.sampled_from([preferred, *pool])) if _altered(draw) else preferred


def _client_port(match: ServiceMatch) -> int:
    return EPHEMERAL if match.clients == EPHEMERAL_CLIENTS else match.clients[0][0]


@st.composite
def attacker_frames(draw: st.DrawFn, sc: Scene) -> tuple[PortRef, Frame, str, str, str]:
    """(ingress, frame, label, source, target): the arguments of `Matrix.check`.

    The sender is an asset at its own port or someone at a free port impersonating one; the
    frame is usually aimed at one of the claimed asset's policy peers over one of their
    services (as a request or as a reply), and every field may be replaced by any value of
    its pool."""
    sender: Asset | None = draw(st.sampled_from([*sc.assets, None]))
    where = sc.matrix.located[sender.name] if sender else sc.free_port
    claimed: Asset = sender or draw(st.sampled_from(sc.assets))  # whom a frame from the free port impersonates
    links = [ln for ln in sc.links[claimed.name] if ln.peer in sc.matrix.located]
    link: Link | None = draw(st.sampled_from(links)) if links and not _altered(draw) else None
    peer: Asset = sc.matrix.policy.asset(link.peer) if link else draw(st.sampled_from(sc.assets))
    match = link.match if link else None
    macs = [a.mac for a in sc.assets]
    groups = sorted({g for c in sc.matrix.policy.conduits for g in c.groups})
    group_macs = [mac_of_group(g) for g in groups]
    ips = [a.ip for a in sc.assets if a.ip] + [FOREIGN_IP, DIRECTED_BROADCAST] + groups + [alias(g) for g in groups]
    aimed = None
    if match is not None:  # an L2 service, or an IP one (whose peers resolve each other by ARP)
        aimed = "ethertype" if match.protocol == "ethertype" else draw(st.sampled_from(["ipv4", "ipv4", "arp"]))
    kind = _prefer(draw, aimed, ["ipv4", "ipv4", "arp", "ethertype", "random"])
    # ARP requests are broadcast, L2 services mostly sent to a group address.
    aimed_dst = {"arp": [BROADCAST, peer.mac], "ethertype": [GROUP_MAC, peer.mac]}.get(kind, [peer.mac])
    # UDP of a conduit with groups: often to one of them, at its own MAC.
    group = draw(st.sampled_from([*link.groups, None])) if kind == "ipv4" and link and link.groups else None
    if group:
        aimed_dst = [mac_of_group(group)]
    eth_src = _prefer(draw, claimed.mac, [*macs, UNKNOWN_MAC])
    eth_dst = _prefer(draw, draw(st.sampled_from(aimed_dst)), [*macs, BROADCAST, GROUP_MAC, *group_macs])
    tags = draw(st.sampled_from(TAGS)) if _altered(draw) else ()
    if kind == "ipv4":
        ipv4_src = _prefer(draw, claimed.ip, ips)
        ipv4_dst = _prefer(draw, group or peer.ip, ips)
        proto = _prefer(draw, None if match is None else PROTOCOL_NUMBERS.get(match.protocol), IP_PROTOS)
        fragment = draw(st.sampled_from(["no", "no", "first", "later"]))
        sent = Frame(eth_dst, eth_src, tags, ETH_IPV4, ipv4_src=ipv4_src, ipv4_dst=ipv4_dst,  # type: ignore[arg-type]
                     ip_proto=proto, ip_frag=fragment)  # type: ignore[arg-type]
        if fragment != "later" and proto in (6, 17):
            service = client = None
            if match is not None and match.has_ports:
                service, client = draw(st.sampled_from(sorted({match.low, match.high}))), _client_port(match)
            src_port, dst_port = (client, service) if link and link.role == "initiator" else (service, client)
            src_port, dst_port = _prefer(draw, src_port, sc.ports), _prefer(draw, dst_port, sc.ports)
            if proto == 6:
                sent = replace(sent, tcp_src=src_port, tcp_dst=dst_port, tcp_flags=draw(st.sampled_from(TCP_FLAGS)))
            else:
                sent = replace(sent, udp_src=src_port, udp_dst=dst_port)
        elif fragment != "later" and proto == 1:
            echo = None if link is None or match is None or match.protocol != "icmp" else (
                8 if link.role == "initiator" else 0)
            sent = replace(sent, icmp_type=_prefer(draw, echo, ICMP_TYPES), icmp_code=0)
    elif kind == "arp":
        sent = Frame(eth_dst, eth_src, tags, ETH_ARP, arp_op=_prefer(draw, 1 if eth_dst == BROADCAST else 2, [1, 2]),
                     arp_sha=_prefer(draw, claimed.mac, macs),  # type: ignore[arg-type]
                     arp_spa=_prefer(draw, claimed.ip, ips),  # type: ignore[arg-type]
                     arp_tha=_prefer(draw, ZERO_MAC if eth_dst == BROADCAST else peer.mac, [ZERO_MAC, peer.mac]),
                     arp_tpa=_prefer(draw, peer.ip, ips))  # type: ignore[arg-type]
    elif kind == "ethertype":
        aimed_type = match.low if match is not None and match.protocol == "ethertype" else None
        ethertype = _prefer(draw, aimed_type, sc.ethertypes or (0x9000,))
        sent = Frame(eth_dst, eth_src, tags, ethertype)  # type: ignore[arg-type]
    else:
        sent = Frame(eth_dst, eth_src, tags, draw(st.integers(0x0600, 0xFFFF)))  # type: ignore[arg-type]
    source = sender.name if sender else "free port"
    return where, sent, _describe(sent), source, sent.eth_dst


def _describe(sent: Frame) -> str:
    shown = {k: v for k, v in vars(sent).items() if v not in (None, (), "", "no")}
    return ", ".join(f"{k}={hex(v) if k in ('eth_type', 'tcp_flags') else v}" for k, v in shown.items())


IDS = [pair[0].removesuffix(".yaml") for pair in EXAMPLES]


@pytest.mark.parametrize("pair", EXAMPLES, ids=IDS)
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_attacker_frames_walk_as_the_reference_says(pair: tuple[str, str], data: st.DataObject) -> None:
    sc = scene(pair)
    where, sent, label, source, target = data.draw(attacker_frames(sc), label="frame")
    mismatch = sc.matrix.check(where, sent, label, source, target)
    assert mismatch is None, f"{mismatch}\nsent from {where}: {sent}"


# What this search found first (shrunk): an L2 service frame sent to ff:ff:ff:ff:ff:ff. The
# multicast tree entry matches the group bit only (01:00:00:00:00:00/01:00:00:00:00:00), so the
# tables delivered it to the service's receivers while the reference then said "broadcast
# other than ARP: nobody". The reference now treats a non-ARP broadcast as a group address
# (commit bed0dd5); these frames pin that the two agree, and that the broadcast does reach
# the receivers (not merely nobody on both sides).
BROADCAST_FINDINGS = [
    ("linear.yaml", PortRef(3, 1), "00:00:00:00:0b:02", 0x8892),  # plc-b, profinet-rt -> plc-a, drive-1
    ("substation.yaml", PortRef(2, 1), "00:00:00:10:02:01", 0x88B8),  # ied-bay1-prot, goose
    ("substation.yaml", PortRef(3, 3), "00:00:00:10:03:02", 0x88BA),  # mu-bay2, sv -> ied-bay2-prot
    ("substation.yaml", PortRef(1, 4), "00:00:00:10:04:01", 0x88F7),  # station-clock, ptp -> 8 assets
    ("plant.yaml", PortRef(13, 1), "00:00:00:00:05:01", 0x88B8),  # ied-1, goose -> ied-2, ied-3
]


@pytest.mark.parametrize(("policy_file", "where", "mac", "ethertype"), BROADCAST_FINDINGS,
                         ids=[f"{p.removesuffix('.yaml')}-0x{t:04x}" for p, _, _, t in BROADCAST_FINDINGS])
def test_l2_service_broadcast_walks_like_a_group_address(policy_file: str, where: PortRef, mac: str,
                                                         ethertype: int) -> None:
    sc = scene(next(p for p in EXAMPLES if p[0] == policy_file))
    assert sc.matrix.located[sc.matrix.policy.asset_by_mac(mac).name] == where  # type: ignore[union-attr]
    sent = Frame(BROADCAST, mac, (), ethertype)
    assert sc.matrix.check(where, sent, "l2 service to broadcast", mac, BROADCAST) is None
    group = replace(sent, eth_dst=GROUP_MAC)
    receivers = judge(sc.matrix.policy, sc.matrix.located, where, sent).receivers
    assert receivers and receivers == judge(sc.matrix.policy, sc.matrix.located, where, group).receivers


def _stage(judgement: Judgement, sent: Frame) -> str:
    """Where the reference decides a frame's fate."""
    if judgement.delivered:
        return "delivered"
    if judgement.source is None:
        return "tagged" if judgement.reason.startswith("tagged") else "source"
    if sent.multicast and sent.eth_dst != BROADCAST:
        return "group"
    return "destination" if judgement.destination is None else "policy"


def test_the_strategy_reaches_deep_into_the_pipeline() -> None:
    """Not only early drops: frames must be decided at every stage of the reference, and a good
    share delivered, or the searches in this file prove little."""
    sc = scene(next(p for p in EXAMPLES if p[0] == "linear.yaml"))
    stages: dict[str, int] = {}

    def record(args: tuple[PortRef, Frame, str, str, str]) -> bool:
        stage = _stage(judge(sc.matrix.policy, sc.matrix.located, args[0], args[1]), args[1])
        stages[stage] = stages.get(stage, 0) + 1
        return False

    with pytest.raises(NoSuchExample):  # the condition never holds: find() only samples
        find(attacker_frames(sc), record, settings=settings(max_examples=500, derandomize=True, database=None,
                                                            phases=[Phase.generate]))
    assert set(stages) == {"delivered", "tagged", "source", "group", "destination", "policy"}, stages
    assert stages["delivered"] >= sum(stages.values()) // 10, stages


SEARCH = settings(max_examples=3000, derandomize=True, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck))
# mutation -> the example it is searched on (where the derandomized search finds it soonest).
# Not in the list: client_ports_from_1023 (a reply from a service port to exactly port 1023,
# with ACK: not found in 3000 frames on any example; the hand-written probes catch it), and
# the two equivalent mutants (icmp_rules_lose_not_later, policy_miss_forwards), and
# ip_multicast_loses_group_mac / ip_multicast_loses_udp_port (a frame from one of the plant's
# two group senders, aimed at its group, with the MAC or the port altered: not found in 3000
# frames; the hand-written group probes and the verifier catch both).
FOUND_BY_SEARCH = {
    "checked_ipv4_loses_ipv4_dst": "water.yaml",
    "reply_rules_lose_client_port": "linear.yaml",
    "tcp_reply_rules_lose_ack": "water.yaml",
    "checked_arp_loses_arp_tpa": "water.yaml",
    "host_port_marked_transit": "linear.yaml",
    "unicast_copy_to_extra_port": "linear.yaml",
    "unicast_write_actions_extra_output": "linear.yaml",
    "port_security_loses_untagged": "linear.yaml",
    "qinq_9100_drop_removed": "water.yaml",
    "later_fragments_unbound": "water.yaml",
    "ip_arp_spoof_drops_removed": "substation.yaml",
    "trunk_transit_on_edge_port": "substation.yaml",
    "arp_request_to_wrong_asset": "water.yaml",
    "arp_request_keeps_broadcast": "water.yaml",
    "arp_request_floods": "substation.yaml",
    "policy_miss_forwards_without_deny_counters": "water.yaml",
    "deny_counters_forward": "water.yaml",
    "bound_ip_loses_ipv4_src": "water.yaml",
    "bound_arp_loses_arp_sha": "substation.yaml",
    "port_security_ignores_in_port": "linear.yaml",
    "foreign_address_drop_removed": "water.yaml",
    "multicast_extra_port": "linear.yaml",
    "arp_relation_loses_eth_type": "water.yaml",
    "ip_multicast_loses_group": "plant.yaml",
    "ip_multicast_loses_fragment_check": "plant.yaml",
}


@pytest.mark.parametrize(("mutation", "policy_file"), FOUND_BY_SEARCH.items(), ids=list(FOUND_BY_SEARCH))
def test_the_search_alone_finds_the_mutation(mutation: str, policy_file: str) -> None:
    """No hand-written probe: hypothesis, derandomized, must find a frame that the mutated
    tables mishandle and the real ones handle as the reference says."""
    sc = scene(next(p for p in EXAMPLES if p[0] == policy_file))
    mutated = Matrix(sc.matrix.policy, sc.matrix.topology, tables=MUTATIONS[mutation][0](sc.matrix.tables))

    def exposes(args: tuple[PortRef, Frame, str, str, str]) -> bool:
        # A frame the real tables also mishandle would expose a compiler bug, not the mutation.
        return mutated.check(*args) is not None and sc.matrix.check(*args) is None

    found = find(attacker_frames(sc), exposes, settings=SEARCH)
    print(f"{mutation}: {mutated.check(*found)}\n  sent from {found[0]}: {found[1]}")
