"""Read one custom service definition: `{tcp: 502}`, `{udp: [2222, 44818]}`,
`{tcp: "34962-34964"}`, `{ethertype: 0x88b8}`, `{icmp: echo}`, or several of these keys.

`client_ports` (a port, a range or a list, default "1024-65535") says where the initiator
sends from: the responder's replies may go only to those ports of the initiator.
"""

from __future__ import annotations

import re
from dataclasses import replace

from controller.core.model import ServiceMatch
from controller.policy.fields import Reader, as_int
from controller.policy.nodes import Node, Scalar, Sequence, kind_of

SERVICE_KEYS = ("tcp", "udp", "ethertype", "icmp", "client_ports", "description")
# Ethertypes the pipeline itself owns: IP and ARP are written as tcp/udp/icmp services,
# VLAN tags are not matched, LLDP is link discovery.
RESERVED_ETHERTYPES = {0x0800: "IPv4 (use tcp/udp/icmp)", 0x0806: "ARP (handled by otseg)",
                       0x86DD: "IPv6 (not supported)", 0x8100: "VLAN tag", 0x88A8: "VLAN tag", 0x9100: "VLAN tag",
                       0x88CC: "LLDP (link discovery)"}
_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


def read_service(read: Reader, node: Node, context: str) -> list[ServiceMatch]:
    body = read.mapping(node, context, "a service")
    if body is None:
        return []
    errors_before = len(read.c.items)
    read.keys(body, context, SERVICE_KEYS)
    matches: list[ServiceMatch] = []
    clients = _client_ports(read, body.get("client_ports"), context)
    for protocol in ("tcp", "udp"):
        value = body.get(protocol)
        if value is not None:
            matches.extend(replace(m, clients=clients) if clients else m for m in _ports(read, value, context, protocol))
    if clients and body.get("tcp") is None and body.get("udp") is None:
        read.c.error(body.get("client_ports").mark, context, "client_ports needs a tcp or udp service",  # type: ignore[union-attr]
                     "client ports say where an initiator sends tcp or udp from")
    ethertype = body.get("ethertype")
    if ethertype is not None:
        items = ethertype.items if isinstance(ethertype, Sequence) else (ethertype,)
        for item in items:
            number = as_int(item)
            if number is None:
                read.c.error(item.mark, context, f"ethertype must be a number like 0x88b8, not {kind_of(item)}")
                continue
            if not 0x0600 <= number <= 0xFFFF:
                read.c.error(item.mark, context, f"ethertype 0x{number:04x} is out of range",
                             "allowed: 0x0600 to 0xffff; values below 0x0600 are 802.3 lengths")
                continue
            if number in RESERVED_ETHERTYPES:
                read.c.error(item.mark, context, f"ethertype 0x{number:04x} is reserved: "
                             f"{RESERVED_ETHERTYPES[number]}")
                continue
            matches.append(ServiceMatch("ethertype", number, number))
    icmp = body.get("icmp")
    if icmp is not None:
        if read.choice(icmp, context, "icmp", ("echo",)) == "echo":
            matches.append(ServiceMatch("icmp"))
    if not matches and len(read.c.items) == errors_before:
        read.c.error(body.mark, context, "defines no protocol", "give tcp, udp, ethertype or icmp")
    return matches


def _client_ports(read: Reader, node: Node | None, context: str) -> tuple[tuple[int, int], ...]:
    """The client port ranges, merged and sorted; () when absent (the default applies) or invalid."""
    if node is None:
        return ()
    ranges = [(m.low, m.high) for m in _ports(read, node, context, "client_ports")]
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return tuple(merged)


def _ports(read: Reader, node: Node, context: str, protocol: str) -> list[ServiceMatch]:
    items = node.items if isinstance(node, Sequence) else (node,)
    if not items:
        read.c.error(node.mark, context, f"{protocol} is an empty list")
    result: list[ServiceMatch] = []
    for item in items:
        low_high = _port_range(item)
        if low_high is None:
            read.c.error(item.mark, context, f"invalid {protocol} port {getattr(item, 'text', kind_of(item))!r}",
                         "write a port 1-65535, a list of ports, or a range like \"34962-34964\"")
            continue
        low, high = low_high
        if not (1 <= low <= 65535 and 1 <= high <= 65535):
            read.c.error(item.mark, context, f"{protocol} port {item.text} is out of range",  # type: ignore[union-attr]
                         "ports are 1 to 65535")
            continue
        if low > high:
            read.c.error(item.mark, context, f"{protocol} range {item.text} is backwards",  # type: ignore[union-attr]
                         f"write \"{high}-{low}\"")
            continue
        result.append(ServiceMatch("tcp" if protocol == "client_ports" else protocol, low, high))  # type: ignore[arg-type]
    return result


def _port_range(node: Node) -> tuple[int, int] | None:
    if not isinstance(node, Scalar):
        return None
    single = as_int(node)
    if single is not None:
        return single, single
    match = _RANGE.match(node.text)
    return (int(match.group(1)), int(match.group(2))) if match else None
