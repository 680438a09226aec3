"""The OpenFlow 1.3 table pipeline, declared once, and the metadata layout it carries.

    port_security (0) ──▶ destination (1) ──▶ client_ports (2) ──▶ policy (3) ──▶ action set executes

- port_security: binds (in_port, eth_src, ipv4_src / ARP sender) of each located asset on an
  untagged frame and writes the source zone and asset ids into metadata; declared trunk
  ports mark the packet TRANSIT. Anything else (unknown MAC, spoofed address, a VLAN tag,
  unused port) misses and is dropped; the miss sends a sample to the controller on a meter
  of the ingress port's own, so one port's flood cannot starve another's.
- destination: classifies the destination (eth_dst, with the IPv4 destination or ARP target
  that must be the destination asset's own; ARP broadcasts are rewritten to unicast so ARP
  never floods), writes its ids into metadata and the output port toward it into the action
  set. L2 multicast services, and UDP to a conduit's IPv4 groups, are delivered here along a
  loop-free tree to the conduit's `to` assets only.
- client_ports: marks a TCP/UDP destination port in the ephemeral range (CLIENT_PORT bit),
  so that a reply rule can require it with one match instead of six port blocks.
- stateful conduits (opt-in, Open vSwitch connection tracking): a responder's IPv4 goes
  through the tracker in port_security (ct_state=-trk → ct(table=port_security)), the only
  place where the action set is still empty; policy rules commit the conduit's forward
  packets and accept replies by ct_state (+est+rpl) instead of by ports.
- policy: the allow-list. Matching rules end the pipeline (the action set outputs); the miss
  clears the action set, so anything not allowed never leaves the ingress switch.

Every compiled flow is checked against this declaration (`check_flow`).
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.core.flows import ApplyActions, Conntrack, Flow, GotoTable, WriteActions


@dataclass(frozen=True)
class Table:
    table_id: int
    name: str
    match_fields: frozenset[str]
    next_tables: tuple[str, ...]


PORT_SECURITY = "port_security"
DESTINATION = "destination"
CLIENT_PORTS = "client_ports"
POLICY = "policy"

TABLES: tuple[Table, ...] = (
    Table(0, PORT_SECURITY,
          frozenset({"in_port", "eth_src", "vlan_vid", "eth_type", "ipv4_src", "arp_spa", "arp_sha", "ip_frag",
                     "ct_state"}),
          (DESTINATION,)),
    Table(1, DESTINATION,
          frozenset({"in_port", "eth_src", "eth_dst", "eth_type", "ipv4_dst", "arp_tpa", "metadata",
                     "ip_proto", "udp_dst", "ip_frag"}),  # the last three: IP multicast feeds
          (CLIENT_PORTS,)),
    Table(2, CLIENT_PORTS,
          frozenset({"eth_type", "ip_proto", "tcp_dst", "udp_dst"}),
          (POLICY,)),
    Table(3, POLICY,
          frozenset({"metadata", "eth_type", "ip_proto", "ip_frag", "tcp_src", "tcp_dst", "udp_src", "udp_dst",
                     "icmpv4_type", "tcp_flags", "ct_state"}),
          ()),
)
# A switch of the single-table profile holds the pipeline folded into table 0
# (controller/core/lowering.py): any field the pipeline matches, no metadata, no goto.
FOLDED = Table(0, PORT_SECURITY, frozenset().union(*(t.match_fields for t in TABLES)) - {"metadata"}, ())
TABLE_BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}
TABLE_IDS: dict[str, int] = {t.name: t.table_id for t in TABLES}
TABLE_NAMES: dict[int, str] = {t.table_id: t.name for t in TABLES}


@dataclass(frozen=True)
class BitField:
    shift: int
    width: int

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.shift

    def encode(self, value: int) -> int:
        if not 0 <= value < (1 << self.width):
            raise ValueError(f"{value} does not fit in {self.width} bits")
        return value << self.shift

    def decode(self, metadata: int) -> int:
        return (metadata & self.mask) >> self.shift


# Metadata layout (64 bits). Id 0 means "none"; zones up to 4095, assets up to 262143.
TRANSIT = BitField(63, 1)
# Which of two table versions a packet follows, on a switch updated without bundles
# (controller/core/staging.py): written in port_security, matched in destination and policy.
VERSION = BitField(62, 1)
SRC_ZONE = BitField(50, 12)
SRC_ASSET = BitField(32, 18)
CLIENT_PORT = BitField(31, 1)  # the TCP/UDP destination port is in the ephemeral range
DST_ZONE = BitField(18, 13)
DST_ASSET = BitField(0, 18)
SRC_MASK = SRC_ZONE.mask | SRC_ASSET.mask
DST_MASK = DST_ZONE.mask | DST_ASSET.mask

# Meters that bound what the switch may send to the controller.
METER_MISS_SAMPLE = 1  # misses on ports the controller does not know yet
METER_LLDP = 2  # LLDP on declared trunk ports only
METER_DENIED_SAMPLE = 3
METER_UNTRUSTED_LLDP = 4  # LLDP from any other port: reported as a pending link, never trusted
METER_LOCATE = 5  # ARP requests for assets not located yet (the controller probes for them)
METER_PORT_BASE = 0x10000  # + port number: each edge port's own miss-sample meter
MAX_METERED_PORT = 0xFFFE0000  # ports above this share METER_MISS_SAMPLE

# ip_frag (Open vSwitch's nw_frag) bits: any fragment, a non-first fragment.
FRAG_ANY = 1
FRAG_LATER = 2
# ct_state bits (Open vSwitch connection tracking) and the zone otseg's stateful conduits use.
CT_NEW = 0x01
CT_ESTABLISHED = 0x02
CT_RELATED = 0x04
CT_REPLY = 0x08
CT_INVALID = 0x10
CT_TRACKED = 0x20
CT_ZONE = 0x0E5E
# vlan_vid: OFPVID_PRESENT marks a tagged frame; vlan_vid=0 (OFPVID_NONE) matches untagged ones.
VID_PRESENT = 0x1000
VID_NONE = 0


def port_meter(port: int) -> int:
    return METER_PORT_BASE + port if port <= MAX_METERED_PORT else METER_MISS_SAMPLE


# OpenFlow match prerequisites (spec 7.2.3.8): a field may be matched only with these.
PREREQUISITES: dict[str, tuple[str, int]] = {
    "ipv4_src": ("eth_type", 0x0800), "ipv4_dst": ("eth_type", 0x0800), "ip_proto": ("eth_type", 0x0800),
    "ip_frag": ("eth_type", 0x0800), "ct_state": ("eth_type", 0x0800),
    "arp_spa": ("eth_type", 0x0806), "arp_tpa": ("eth_type", 0x0806), "arp_sha": ("eth_type", 0x0806),
    "tcp_src": ("ip_proto", 6), "tcp_dst": ("ip_proto", 6), "tcp_flags": ("ip_proto", 6),
    "udp_src": ("ip_proto", 17), "udp_dst": ("ip_proto", 17), "icmpv4_type": ("ip_proto", 1),
}


class PipelineError(ValueError):
    """A compiled flow does not fit the declared pipeline (a compiler bug, never user input)."""


def check_flow(flow: Flow, folded: bool = False) -> None:
    """`folded`: the flow belongs to a single-table switch (only FOLDED exists there)."""
    table = FOLDED if folded and flow.table == PORT_SECURITY else None if folded else TABLE_BY_NAME.get(flow.table)
    if table is None:
        raise PipelineError(f"flow in undeclared table {flow.table!r}: {flow}")
    for item in flow.match:
        if item.name not in table.match_fields:
            raise PipelineError(f"table {table.name} does not match on {item.name}: {flow}")
        needed = PREREQUISITES.get(item.name)
        if needed is not None:
            present = flow.field(needed[0])
            if present is None or present.value != needed[1] or present.mask is not None:
                raise PipelineError(f"{item.name} needs {needed[0]}={needed[1]:#x}: {flow}")
    for instruction in flow.instructions:
        if isinstance(instruction, GotoTable) and instruction.table not in table.next_tables:
            raise PipelineError(f"table {table.name} may not go to {instruction.table}: {flow}")
        if isinstance(instruction, (ApplyActions, WriteActions)):
            for action in instruction.actions:
                if isinstance(action, Conntrack) and action.table is not None:
                    # Open vSwitch 3.1 aborts (ofproto-dpif-rid.c assertion) when a recirculation
                    # meets a non-empty action set: only the first table may send to the tracker.
                    if table.table_id != 0 or action.table != PORT_SECURITY or not isinstance(instruction, ApplyActions):
                        raise PipelineError(f"connection tracking lookup outside port_security: {flow}")
