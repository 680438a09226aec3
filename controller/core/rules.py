"""Flow builders: each returns Flow values for one concern; none decides placement.

Priorities within a table are named here once; see docs/architecture.md for the table.
"""

from __future__ import annotations

from functools import lru_cache

from controller.core.flows import (
    BROADCAST_MAC, CONTROLLER_PORT, COOKIE_PREFIX, ETH_ARP, ETH_IPV4, ETH_LLDP, IP_PROTO_ICMP,
    IP_PROTO_TCP, IP_PROTO_UDP, MULTICAST_BIT, TCP_ACK, Action, ApplyActions, ClearActions, Flow, GotoTable,
    MeterInstruction, Output, SetField, Value, WriteActions, WriteMetadata, make_flow,
)
from controller.core.ids import stable_hash32
from controller.core.model import ServiceMatch
from controller.core.pipeline import (
    DESTINATION, DST_MASK, METER_DENIED_SAMPLE, METER_LLDP, METER_MISS_SAMPLE, POLICY, PORT_SECURITY, SRC_MASK, TRANSIT,
)
from controller.core.relations import Relation

# port_security
PRIO_LLDP = 1000
PRIO_BOUND_IP = 300
PRIO_SPOOF_DROP = 200
PRIO_BOUND_L2 = 100
PRIO_TRUNK = 50
# destination
PRIO_MULTICAST = 300
PRIO_ARP_REQUEST = 200
PRIO_BACKUP_PATH = 150
PRIO_UNICAST = 100
# policy
PRIO_TRANSIT = 3000
PRIO_ALLOW = 2000
PRIO_ALLOW_MONITOR = 1500
PRIO_ZONE_MONITOR = 1000
PRIO_DENY_COUNT = 1
PRIO_MISS = 0

SAMPLE_BYTES = 128  # what a metered miss sample carries to the controller


@lru_cache(maxsize=None)
def cookie(origin: str) -> int:
    return COOKIE_PREFIX | stable_hash32(origin)


INFRA_COOKIE = cookie("infra")


def infrastructure_flows(trunk_ports: list[int]) -> list[Flow]:
    """Flows every switch has: LLDP to the controller, trunk ports, the table misses."""
    flows = [
        make_flow(PORT_SECURITY, PRIO_LLDP, {"eth_type": ETH_LLDP},
                  [MeterInstruction(METER_LLDP), ApplyActions((Output(CONTROLLER_PORT),))], INFRA_COOKIE),
        make_flow(PORT_SECURITY, PRIO_MISS, {},
                  [MeterInstruction(METER_MISS_SAMPLE), ApplyActions((Output(CONTROLLER_PORT, SAMPLE_BYTES),))],
                  INFRA_COOKIE),
        make_flow(DESTINATION, PRIO_MISS, {}, [ClearActions()], INFRA_COOKIE),
        make_flow(POLICY, PRIO_MISS, {}, [ClearActions()], INFRA_COOKIE),
        make_flow(POLICY, PRIO_TRANSIT, {"metadata": (TRANSIT.mask, TRANSIT.mask)}, [], INFRA_COOKIE),
    ]
    for port in trunk_ports:
        flows.append(make_flow(PORT_SECURITY, PRIO_TRUNK, {"in_port": port},
                               [WriteMetadata(TRANSIT.mask, TRANSIT.mask), GotoTable(DESTINATION)], INFRA_COOKIE))
    return flows


def port_security_flows(port: int, mac: str, ip: str | None, src_tag: int, sends_l2: bool,
                        origin: str) -> list[Flow]:
    """Bind an asset to its port: only its own MAC, IP and ARP sender pass, tagged with its ids."""
    tag = [WriteMetadata(src_tag, SRC_MASK), GotoTable(DESTINATION)]
    flows: list[Flow] = []
    owner = cookie(origin)
    if ip is not None:
        flows.append(make_flow(PORT_SECURITY, PRIO_BOUND_IP,
                               {"in_port": port, "eth_src": mac, "eth_type": ETH_IPV4, "ipv4_src": ip}, tag, owner))
        flows.append(make_flow(PORT_SECURITY, PRIO_BOUND_IP,
                               {"in_port": port, "eth_src": mac, "eth_type": ETH_ARP, "arp_spa": ip, "arp_sha": mac},
                               tag, owner))
    if sends_l2:
        flows.append(make_flow(PORT_SECURITY, PRIO_BOUND_L2, {"in_port": port, "eth_src": mac}, tag, owner))
        for eth_type in (ETH_IPV4, ETH_ARP):  # spoofed IP/ARP must not fall through to the L2 rule
            flows.append(make_flow(PORT_SECURITY, PRIO_SPOOF_DROP,
                                   {"in_port": port, "eth_src": mac, "eth_type": eth_type}, [], owner))
    elif ip is None:
        # A receive-only device: nothing it sends is allowed, but the switch must still record
        # where it is bound, so that a restarted controller can adopt the binding.
        flows.append(make_flow(PORT_SECURITY, PRIO_BOUND_L2, {"in_port": port, "eth_src": mac}, [], owner))
    return flows


@lru_cache(maxsize=65536)  # the same entry recurs on every switch that uses the same port toward the asset
def unicast_flow(mac: str, dst_tag: int, out: Action, origin: str, in_port: int | None = None) -> Flow:
    """Toward an asset; with `in_port`, the entry of a pre-computed backup path (higher priority)."""
    match: dict[str, Value | tuple[Value, Value]] = {"eth_dst": mac}
    if in_port is not None:
        match["in_port"] = in_port
    return make_flow(DESTINATION, PRIO_UNICAST if in_port is None else PRIO_BACKUP_PATH, match,
                     [WriteMetadata(dst_tag, DST_MASK), WriteActions((out,)), GotoTable(POLICY)], cookie(origin))


@lru_cache(maxsize=65536)
def arp_request_flow(mac: str, ip: str, dst_tag: int, out: Action, origin: str) -> Flow:
    """A broadcast ARP request for `ip` goes, as unicast to its owner only: no ARP flooding."""
    return make_flow(DESTINATION, PRIO_ARP_REQUEST, {"eth_dst": BROADCAST_MAC, "eth_type": ETH_ARP, "arp_tpa": ip},
                     [WriteMetadata(dst_tag, DST_MASK),
                      WriteActions((SetField("eth_dst", mac), out)), GotoTable(POLICY)],
                     cookie(origin))


@lru_cache(maxsize=65536)
def multicast_flow(in_port: int, src_mac: str, ethertype: int, out_ports: tuple[int, ...], origin: str) -> Flow:
    return make_flow(DESTINATION, PRIO_MULTICAST,
                     {"in_port": in_port, "eth_src": src_mac, "eth_type": ethertype,
                      "eth_dst": (MULTICAST_BIT, MULTICAST_BIT)},
                     [ApplyActions(tuple(Output(p) for p in sorted(set(out_ports))))], cookie(origin))


def relation_flows(relation: Relation, src_tag: tuple[int, int], dst_tag: tuple[int, int]) -> list[Flow]:
    """Policy-table rules for one relation; tags are (value, mask) pairs of metadata fields."""
    metadata = (src_tag[0] | dst_tag[0], src_tag[1] | dst_tag[1])
    priority = PRIO_ALLOW if relation.mode == "enforce" else PRIO_ALLOW_MONITOR
    owner = cookie(relation.origin)
    if relation.kind == "any":
        return [make_flow(POLICY, priority, {"metadata": metadata}, [], owner)]
    if relation.kind == "arp":
        return [make_flow(POLICY, priority, {"metadata": metadata, "eth_type": ETH_ARP}, [], owner)]
    assert relation.match is not None
    return [make_flow(POLICY, priority, {"metadata": metadata, **fields}, [], owner)
            for fields in service_fields(relation.match, relation.direction)]


def denied_count_flows(src_zone_tag: tuple[int, int], zone: str,
                       destinations: list[tuple[tuple[int, int], str]]) -> list[Flow]:
    """Drops of traffic from a local zone, counted where they happen: in the destination table (the
    destination is none of this zone's peers) per source zone, and in the policy table per (source
    zone, destination zone). Same verdict as the table misses, but attributable; a metered sample of
    what is dropped goes to the controller for verdict events."""
    drop = [MeterInstruction(METER_DENIED_SAMPLE), ApplyActions((Output(CONTROLLER_PORT, SAMPLE_BYTES),)),
            ClearActions()]
    flows = [make_flow(DESTINATION, PRIO_DENY_COUNT, {"metadata": src_zone_tag}, drop, cookie(f"denied:{zone}>-"))]
    for dst_tag, dst_zone in destinations:
        metadata = (src_zone_tag[0] | dst_tag[0], src_zone_tag[1] | dst_tag[1])
        flows.append(make_flow(POLICY, PRIO_DENY_COUNT, {"metadata": metadata}, drop,
                               cookie(f"denied:{zone}>{dst_zone}")))
    return flows


def zone_monitor_flow(src_zone_tag: tuple[int, int], zone: str) -> Flow:
    """Traffic leaving a zone in monitor mode is forwarded even when no conduit allows it."""
    return make_flow(POLICY, PRIO_ZONE_MONITOR, {"metadata": src_zone_tag}, [], cookie(f"monitor:{zone}"))


def service_fields(match: ServiceMatch, direction: str) -> list[dict[str, Value | tuple[Value, Value]]]:
    if match.protocol == "ethertype":
        return [{"eth_type": match.low}]
    if match.protocol == "icmp":
        return [{"eth_type": ETH_IPV4, "ip_proto": IP_PROTO_ICMP, "icmpv4_type": 8 if direction == "forward" else 0}]
    proto = IP_PROTO_TCP if match.protocol == "tcp" else IP_PROTO_UDP
    port_field = f"{match.protocol}_{'dst' if direction == 'forward' else 'src'}"
    result: list[dict[str, Value | tuple[Value, Value]]] = []
    for value, mask in port_blocks(match.low, match.high):
        fields: dict[str, Value | tuple[Value, Value]] = {"eth_type": ETH_IPV4, "ip_proto": proto}
        fields[port_field] = value if mask == 0xFFFF else (value, mask)
        if match.protocol == "tcp" and direction == "reply":
            fields["tcp_flags"] = (TCP_ACK, TCP_ACK)  # replies carry ACK; a reverse SYN does not
        result.append(fields)
    return result


def port_blocks(low: int, high: int) -> list[tuple[int, int]]:
    """The fewest (value, mask) blocks that cover low..high exactly."""
    blocks: list[tuple[int, int]] = []
    while low <= high:
        size = low & -low if low else 1 << 16
        while size > high - low + 1:
            size >>= 1
        blocks.append((low, 0xFFFF & ~(size - 1)))
        low += size
    return blocks
