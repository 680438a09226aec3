"""One concrete packet out of a violating set, and everything an auditor needs to replay it.

Role: `explain(...)` picks a packet from a BDD set (`Space.pick`), decodes every header field
and its origin port, walks it through the same tables with the concrete interpreter
(`controller.verify.walk.Network`) to get its path and the entries it hits (named by their
cookies: conduit, intra-zone rule, asset binding, infrastructure), judges it with the
reference (`controller.core.reference.judge`: what the policy says and why), and writes the
`ovs-appctl ofproto/trace` command of every hop, which shows the same path on Open vSwitch.

Invariant: a counterexample is always a packet of the set it explains; the interpreter's
verdict is reported beside it (`replayed`), so a disagreement between the symbolic and the
concrete semantics is visible, never hidden.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

from controller.core.flows import ApplyActions, Conntrack, Flow, SwitchTables
from controller.core.frames import Frame
from controller.core.model import Policy
from controller.core.pipeline import CT_ZONE, TABLE_IDS
from controller.core.reference import Sessions, judge
from controller.core.flows import COOKIE_PREFIX
from controller.core.ids import stable_hash32
from controller.core.topology import Link, PortRef
from controller.verify.space import VLAN_PRESENT, Function, ip_int, mac_int
from controller.verify.walk import AmbiguousMatch, Headers, Network

if TYPE_CHECKING:
    from controller.verify.check import Verifier

ORACLE_NAMES = {0: "new", 1: "established", 2: "established reply", 3: "related", 4: "related reply", 5: "invalid",
                6: "related reply, quoting another connection of its destination"}
CT_NEXT = {0: "trk,new", 1: "trk,est", 2: "trk,est,rpl", 3: "trk,rel", 4: "trk,rel,rpl", 5: "trk,inv", 6: "trk,rel,rpl"}


def _mac(value: int) -> str:
    return ":".join(f"{(value >> shift) & 0xFF:02x}" for shift in range(40, -8, -8))


def _ip(value: int) -> str:
    return ".".join(str((value >> shift) & 0xFF) for shift in (24, 16, 8, 0))


def cookie_names(policy: Policy) -> dict[int, str]:
    """What each of otseg's cookies stands for (conduits, zone rules, assets, infrastructure)."""
    names = [c.name for c in policy.conduits] + ["infra", "locate", "lldp:untrusted"]
    zones = [z.name for z in policy.zones]
    names += [f"intra:{z}" for z in zones] + [f"monitor:{z}" for z in zones] + [f"denied:{z}>-" for z in zones]
    names += [f"denied:{a}>{b}" for a in zones for b in zones]
    names += [f"asset:{a.name}" for a in policy.assets]
    return {COOKIE_PREFIX | stable_hash32(name): name for name in names}


def headers_of(values: Mapping[str, int]) -> Headers:
    """The packet as sent (OpenFlow field names, as `walk.ovs_key` gives them)."""
    headers: Headers = {"eth_src": _mac(values["eth_src"]), "eth_dst": _mac(values["o_eth_dst"]),
                        "vlan_vid": values["o_vlan"], "eth_type": values["eth_type"]}
    if values["o_vlan"]:
        headers["vlan_pcp"] = values["o_pcp"]
    if values["eth_type"] == 0x0800:
        proto = values["nw_proto"]
        headers.update(ipv4_src=_ip(values["nw_src"]), ipv4_dst=_ip(values["nw_dst"]), ip_proto=proto,
                       ip_frag=values["frag"])
        if proto == 6:
            headers.update(tcp_src=values["tp_src"], tcp_dst=values["tp_dst"], tcp_flags=values["tcp_flags"])
        elif proto == 17:
            headers.update(udp_src=values["tp_src"], udp_dst=values["tp_dst"])
        elif proto == 1:
            headers.update(icmpv4_type=values["tp_src"], icmpv4_code=values["tp_dst"])
    elif values["eth_type"] == 0x0806:
        headers.update(arp_op=values["nw_proto"], arp_spa=_ip(values["nw_src"]), arp_tpa=_ip(values["nw_dst"]),
                       arp_sha=_mac(values["arp_sha"]), arp_tha=_mac(values["arp_tha"]))
    return headers


def frame_of(headers: Headers) -> Frame:
    """The frame a device would send for these header fields (for the reference judge)."""
    tags: tuple[tuple[int, int], ...] = ()
    eth_type = int(headers["eth_type"])  # type: ignore[arg-type]
    vlan = int(headers.get("vlan_vid", 0))  # type: ignore[arg-type]
    if vlan:
        tags = ((0x8100, (int(headers.get("vlan_pcp", 0)) << 13) | (vlan & 0x0FFF)),)  # type: ignore[arg-type]
    if eth_type in (0x8100, 0x88A8, 0x9100):  # a further tag: what it hides is not in the key
        tags += ((eth_type, 0),)
        eth_type = 0x88B5
    frag = {0: "no", 1: "first", 3: "later"}.get(int(headers.get("ip_frag", 0)), "no")  # type: ignore[arg-type]
    return Frame(str(headers["eth_dst"]), str(headers["eth_src"]), tags, eth_type,
                 ipv4_src=headers.get("ipv4_src"), ipv4_dst=headers.get("ipv4_dst"),  # type: ignore[arg-type]
                 ip_proto=headers.get("ip_proto"), ip_frag=frag,  # type: ignore[arg-type]
                 tcp_src=headers.get("tcp_src"), tcp_dst=headers.get("tcp_dst"),  # type: ignore[arg-type]
                 tcp_flags=headers.get("tcp_flags"), udp_src=headers.get("udp_src"),  # type: ignore[arg-type]
                 udp_dst=headers.get("udp_dst"), icmp_type=headers.get("icmpv4_type"),  # type: ignore[arg-type]
                 icmp_code=headers.get("icmpv4_code"), arp_op=headers.get("arp_op"),  # type: ignore[arg-type]
                 arp_sha=headers.get("arp_sha"), arp_spa=headers.get("arp_spa"),  # type: ignore[arg-type]
                 arp_tha=headers.get("arp_tha"), arp_tpa=headers.get("arp_tpa"))  # type: ignore[arg-type]


def _connection(headers: Headers) -> tuple[object, object, int, int, int] | None:
    proto = headers.get("ip_proto")
    if headers.get("eth_type") != 0x0800 or proto not in (6, 17):
        return None
    ports = ("tcp_src", "tcp_dst") if proto == 6 else ("udp_src", "udp_dst")
    return (headers["ipv4_src"], headers["ipv4_dst"], int(proto), int(headers[ports[0]]),  # type: ignore[arg-type]
            int(headers[ports[1]]))  # type: ignore[arg-type]


def opened_for(headers: Headers, oracle: int) -> set[tuple[object, object, int, int, int]]:
    """A set of opened connections that gives this packet its connection state."""
    key = _connection(headers)
    if oracle == 2 and key is not None:
        return {(key[1], key[0], key[2], key[4], key[3])}
    if oracle == 1 and key is not None:
        return {key}
    if oracle == 4 and headers.get("eth_type") == 0x0800:
        return {(headers["ipv4_dst"], headers["ipv4_src"], 6, 40000, 1)}
    return set()


def trace_flow(at: PortRef, headers: Headers) -> str:
    """The flow in `ovs-appctl ofproto/trace` syntax."""
    parts = [f"in_port={at.port}", f"dl_src={headers['eth_src']}", f"dl_dst={headers['eth_dst']}"]
    vlan = int(headers.get("vlan_vid", 0) or 0)  # type: ignore[arg-type]
    pcp = int(headers.get("vlan_pcp", 0) or 0)  # type: ignore[arg-type]
    parts.append(f"vlan_tci={(VLAN_PRESENT | (vlan & 0x0FFF) | (pcp << 13)) if vlan else 0:#06x}")
    parts.append(f"dl_type={int(headers['eth_type']):#06x}")  # type: ignore[arg-type]
    if headers.get("eth_type") == 0x0800:
        frag = {0: "no", 1: "first", 3: "later"}.get(int(headers.get("ip_frag", 0)), "no")  # type: ignore[arg-type]
        parts += [f"nw_src={headers['ipv4_src']}", f"nw_dst={headers['ipv4_dst']}", f"nw_proto={headers['ip_proto']}",
                  f"nw_frag={frag}"]
        if frag == "later":
            pass  # a later fragment carries no transport header (OVS refuses its fields)
        elif "tcp_src" in headers:
            parts += [f"tcp_src={headers['tcp_src']}", f"tcp_dst={headers['tcp_dst']}",
                      f"tcp_flags={int(headers['tcp_flags']):#05x}"]  # type: ignore[arg-type]
        elif "udp_src" in headers:
            parts += [f"udp_src={headers['udp_src']}", f"udp_dst={headers['udp_dst']}"]
        elif "icmpv4_type" in headers:
            parts += [f"icmp_type={headers['icmpv4_type']}", f"icmp_code={headers['icmpv4_code']}"]
    elif headers.get("eth_type") == 0x0806:
        parts += [f"arp_op={headers['arp_op']}", f"arp_spa={headers['arp_spa']}", f"arp_tpa={headers['arp_tpa']}",
                  f"arp_sha={headers['arp_sha']}", f"arp_tha={headers['arp_tha']}"]
    return ",".join(parts)


@dataclass
class Hop:
    at: PortRef
    headers: Headers
    entries: list[tuple[str, int, str]]  # (table, priority, what the cookie stands for)


@dataclass
class Counterexample:
    invariant: str
    ingress: PortRef
    headers: Headers
    connection: str
    egress: PortRef | None
    policy_says: str  # the reference's reason
    receivers: tuple[str, ...]
    leaves_as: Headers = field(default_factory=dict)  # how it leaves at the egress (eth_dst, VLAN tag)
    hops: list[Hop] = field(default_factory=list)
    replayed: tuple[PortRef, ...] = ()  # where the interpreter delivers it
    replay_error: str = ""
    opened_by: tuple[PortRef, Headers] | None = None  # sent first to open the connection
    ct_next: str = ""  # what the ingress switch's tracker answers (for ofproto/trace --ct-next)
    trace: list[str] = field(default_factory=list)

    def describe(self, names: Mapping[int, str] | None = None) -> str:
        names = names or {}

        def port(p: PortRef) -> str:
            return f"{names.get(p.dpid, f'{p.dpid:#x}')}:{p.port}"
        fields = ", ".join(f"{k}={v:#x}" if isinstance(v, int) and k in ("eth_type", "tcp_flags", "vlan_vid")
                           else f"{k}={v}" for k, v in self.headers.items())
        lines = [f"  packet:     {fields}",
                 f"  connection: {self.connection}",
                 f"  ingress:    {port(self.ingress)}"]
        if self.egress is not None:
            shown = ", ".join(f"{k}={v:#x}" if k == "vlan_vid" else f"{k}={v}" for k, v in self.leaves_as.items())
            lines.append(f"  egress:     {port(self.egress)}" + (f" (leaving as {shown})" if shown else ""))
        lines.append(f"  policy:     {self.policy_says}"
                     + (f" (receivers: {', '.join(self.receivers)})" if self.receivers else " (no receiver)"))
        for hop in self.hops:
            lines.append(f"  hop {port(hop.at)}:")
            for table, priority, origin in hop.entries:
                lines.append(f"      table {table} priority {priority}  [{origin}]")
        lines.append("  replayed:   " + (", ".join(port(p) for p in self.replayed) or "delivered nowhere")
                     + (f" ({self.replay_error})" if self.replay_error else ""))
        if self.opened_by is not None:
            opened = ", ".join(f"{k}={v}" for k, v in self.opened_by[1].items())
            lines.append(f"  opened by:  {opened} from {port(self.opened_by[0])} (sent first)")
        for command in self.trace:
            lines.append(f"  trace:      {command}")
        return "\n".join(lines)


def explain(verifier: "Verifier", tables: Mapping[int, SwitchTables], cut: Link | None, invariant: str,
            where: PortRef | None, packets: Function) -> Counterexample | None:
    space = verifier.space
    values = space.pick(readable(verifier, packets, where))
    if values is None:
        return None
    by_index = {number: dpid for number, dpid in enumerate(sorted(verifier.topology.switches))}
    ingress = PortRef(by_index.get(values["o_sw"], values["o_sw"]), values["o_port"])
    headers = headers_of(values)
    oracle = values["oracle"]
    frame = frame_of(headers)
    sessions = Sessions()
    sessions.opened |= opened_for(headers, oracle)  # type: ignore[arg-type]
    assert verifier.located is not None
    judgement = judge(verifier.policy, verifier.located, ingress, frame, sessions)
    example = Counterexample(invariant, ingress, headers, ORACLE_NAMES.get(oracle, str(oracle)), where,
                             judgement.reason, tuple(sorted(judgement.receivers)))
    example.ct_next = _tracker_answer(verifier, ingress.dpid, values)
    if where is not None:
        example.leaves_as = {"eth_dst": _mac(values["eth_dst"]), "vlan_vid": values["vlan"]}
        if values["vlan"]:
            example.leaves_as["vlan_pcp"] = values["pcp"]
    names = cookie_names(verifier.policy)
    network = Network(dict(tables), verifier.topology, frozenset({cut}) if cut is not None else frozenset(),
                      check=False)
    opening = _opening(verifier, values, headers, oracle)
    if opening is not None:
        # the connection the state stands for is opened first, as an auditor would on the switches
        try:
            network.send(*opening)
        except (AmbiguousMatch, AssertionError):
            pass
        example.opened_by = opening
    else:
        for dpid in network.conntrack:
            network.conntrack[dpid] = {(*key, CT_ZONE) for key in opened_for(headers, oracle)}  # type: ignore[misc]
    try:
        walked = network.send(ingress, dict(headers))
    except (AmbiguousMatch, AssertionError) as error:
        example.replay_error = str(error)[:300]
        return example
    starts = walked.hop_starts + [len(walked.flows_hit)]
    for number, (at, hop_headers) in enumerate(walked.hops):
        hit: list[tuple[int, Flow]] = walked.flows_hit[starts[number]:starts[number + 1]]
        entries = [(flow.table, flow.priority, names.get(flow.cookie, f"cookie {flow.cookie:#x}")) for _, flow in hit]
        example.hops.append(Hop(at, hop_headers, entries))
        bridge = verifier_names(verifier).get(at.dpid, f"s{at.dpid}")
        looks_up = any(isinstance(a, Conntrack) and a.table is not None for _, f in hit for i in f.instructions
                       if isinstance(i, ApplyActions) for a in i.actions)
        ct = f" --ct-next '{example.ct_next}'" if looks_up else ""
        example.trace.append(f"ovs-appctl ofproto/trace {bridge} '{trace_flow(at, hop_headers)}'{ct}")
    example.replayed = tuple(sorted(walked.delivered_ports()))
    return example


def readable(verifier: "Verifier", packets: Function, where: PortRef | None = None) -> Function:
    """A part of `packets` an auditor reads at a glance: sent by a known asset with its own
    address, to the asset at the egress port, IPv4 TCP (a SYN from an ephemeral port) where
    possible. Each preference applies only if some packet of the set meets it."""
    space, policy = verifier.space, verifier.policy
    known_source = consistent_source = known_destination = space.false
    for asset in policy.assets:
        mac = space.eq("eth_src", mac_int(asset.mac))
        known_source |= mac
        if asset.ip is not None:
            consistent_source |= mac & space.eq("nw_src", ip_int(asset.ip))
        known_destination |= space.eq("o_eth_dst", mac_int(asset.mac))
    receivers = verifier.allowed.by_port.get(where, []) if where is not None else []
    to_receiver = space.false
    for asset in receivers:
        term = space.eq("o_eth_dst", mac_int(asset.mac))
        to_receiver |= term & space.eq("nw_dst", ip_int(asset.ip)) if asset.ip else term
    preferences = [known_source, consistent_source, to_receiver, known_destination, space.eq("eth_type", 0x0800),
                   space.eq("nw_proto", 6), space.eq("tcp_flags", 0x002), space.in_range("tp_src", 40000, 65535),
                   space.eq("oracle", 0), space.eq("o_pcp", 0)]
    for preference in preferences:
        narrowed = packets & preference
        if narrowed != space.false:
            packets = narrowed
    return packets


def _opening(verifier: "Verifier", values: Mapping[str, int], headers: Headers,
             oracle: int) -> tuple[PortRef, Headers] | None:
    """The packet that opens the connection this packet's state belongs to, from its initiator's
    port: the packet itself for an established one; for a reply, the request it answers; for a
    related reply, a tracked connection between the two addresses."""
    space, allowed = verifier.space, verifier.allowed
    if oracle == 1:
        return PortRef(*_origin(verifier, values)), dict(headers)
    if oracle not in (2, 4, 6) or headers.get("eth_type") != 0x0800:
        return None
    initiator = verifier.policy.asset_by_ip(str(headers["ipv4_dst"]))
    assert verifier.located is not None
    if initiator is None or initiator.name not in verifier.located:
        return None
    forward = space.eq("nw_src", values["nw_dst"]) & allowed.tracked & space.eq("oracle", 0)
    if oracle == 6:  # the error quotes another connection of the initiator: one to anybody else
        others = forward & ~space.eq("nw_dst", values["nw_src"])
        forward = others if others != space.false else forward
    else:
        forward &= space.eq("nw_dst", values["nw_src"])
    if oracle == 2:
        forward &= space.eq("nw_proto", values["nw_proto"]) & space.eq("tp_src", values["tp_dst"]) & space.eq(
            "tp_dst", values["tp_src"])
    picked = space.pick(forward & space.eq("tcp_flags", 0x002) | forward & space.eq("nw_proto", 17))
    if picked is None:
        return None
    responder = verifier.policy.asset_by_ip(".".join(str((picked["nw_dst"] >> s) & 0xFF) for s in (24, 16, 8, 0)))
    if responder is None:
        return None
    request: Headers = {"eth_src": initiator.mac, "eth_dst": responder.mac, "vlan_vid": 0, "eth_type": 0x0800,
                        "ipv4_src": initiator.ip, "ipv4_dst": responder.ip, "ip_proto": picked["nw_proto"], "ip_frag": 0}
    if initiator.vlan:
        request["vlan_vid"], request["vlan_pcp"] = 0x1000 | initiator.vlan, 0
    ports = ("tcp_src", "tcp_dst") if picked["nw_proto"] == 6 else ("udp_src", "udp_dst")
    request[ports[0]], request[ports[1]] = picked["tp_src"], picked["tp_dst"]
    if picked["nw_proto"] == 6:
        request["tcp_flags"] = 0x002
    return verifier.located[initiator.name], request


CT_BITS = ((0x20, "trk"), (0x01, "new"), (0x02, "est"), (0x04, "rel"), (0x08, "rpl"), (0x10, "inv"))


def _tracker_answer(verifier: "Verifier", dpid: int, values: Mapping[str, int]) -> str:
    """The ct_state the switch's own tracker gives this packet (it knows only what it committed)."""
    space = verifier.space
    settled = verifier.settled_trackers()
    if settled is None or dpid not in settled:
        return CT_NEXT.get(values["oracle"], "trk,new")
    packet = space.true
    for name in ("oracle", "nw_src", "nw_dst", "nw_proto", "tp_src", "tp_dst"):
        packet &= space.eq(name, values[name])
    answer = space.pick(settled[dpid] & packet)
    if answer is None:
        return CT_NEXT.get(values["oracle"], "trk,new")
    return ",".join(name for bit, name in CT_BITS if answer["ct"] & bit)


def _origin(verifier: "Verifier", values: Mapping[str, int]) -> tuple[int, int]:
    by_index = {number: dpid for number, dpid in enumerate(sorted(verifier.topology.switches))}
    return by_index.get(values["o_sw"], values["o_sw"]), values["o_port"]


def verifier_names(verifier: "Verifier") -> dict[int, str]:
    return {dpid: name for name, dpid in verifier.policy.switch_names} | dict(getattr(verifier, "names", {}) or {})


__all__ = ["Counterexample", "Hop", "explain", "cookie_names", "headers_of", "frame_of", "trace_flow",
           "TABLE_IDS"]
