"""The OpenFlow 1.3 table pipeline, declared once, and the metadata layout it carries.

    port_security (0) ──▶ destination (1) ──▶ policy (2) ──▶ action set executes (output)

- port_security: binds (in_port, eth_src, ipv4_src / ARP sender) of each located asset and
  writes the source zone and asset ids into metadata; trunk ports mark the packet TRANSIT.
  Anything else (unknown MAC, spoofed address, unused port) misses and is dropped; the miss
  sends a metered sample to the controller for unknown-device detection.
- destination: classifies the destination (eth_dst, or arp_tpa for ARP broadcasts, which are
  rewritten to unicast so ARP never floods), writes its ids into metadata and the output port
  toward it into the action set. L2 multicast services are delivered here along a loop-free
  tree to the conduit's `to` assets only.
- policy: the allow-list. Matching rules end the pipeline (the action set outputs); the miss
  clears the action set, so anything not allowed never leaves the ingress switch.

Every compiled flow is checked against this declaration (`check_flow`).
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.core.flows import Flow, GotoTable


@dataclass(frozen=True)
class Table:
    table_id: int
    name: str
    match_fields: frozenset[str]
    next_tables: tuple[str, ...]


PORT_SECURITY = "port_security"
DESTINATION = "destination"
POLICY = "policy"

TABLES: tuple[Table, ...] = (
    Table(0, PORT_SECURITY,
          frozenset({"in_port", "eth_src", "eth_type", "ipv4_src", "arp_spa", "arp_sha"}),
          (DESTINATION,)),
    Table(1, DESTINATION,
          frozenset({"in_port", "eth_src", "eth_dst", "eth_type", "arp_tpa", "metadata"}),
          (POLICY,)),
    Table(2, POLICY,
          frozenset({"metadata", "eth_type", "ip_proto", "tcp_src", "tcp_dst", "udp_src", "udp_dst",
                     "icmpv4_type", "tcp_flags"}),
          ()),
)
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


# Metadata layout (64 bits). Id 0 means "none"; zones up to 8191, assets up to 262143.
TRANSIT = BitField(63, 1)
SRC_ZONE = BitField(50, 13)
SRC_ASSET = BitField(32, 18)
DST_ZONE = BitField(18, 13)
DST_ASSET = BitField(0, 18)
SRC_MASK = SRC_ZONE.mask | SRC_ASSET.mask
DST_MASK = DST_ZONE.mask | DST_ASSET.mask

# Meters that bound what the switch may send to the controller.
METER_MISS_SAMPLE = 1
METER_LLDP = 2
METER_DENIED_SAMPLE = 3


# OpenFlow match prerequisites (spec 7.2.3.8): a field may be matched only with these.
PREREQUISITES: dict[str, tuple[str, int]] = {
    "ipv4_src": ("eth_type", 0x0800), "ipv4_dst": ("eth_type", 0x0800), "ip_proto": ("eth_type", 0x0800),
    "arp_spa": ("eth_type", 0x0806), "arp_tpa": ("eth_type", 0x0806), "arp_sha": ("eth_type", 0x0806),
    "tcp_src": ("ip_proto", 6), "tcp_dst": ("ip_proto", 6), "tcp_flags": ("ip_proto", 6),
    "udp_src": ("ip_proto", 17), "udp_dst": ("ip_proto", 17), "icmpv4_type": ("ip_proto", 1),
}


class PipelineError(ValueError):
    """A compiled flow does not fit the declared pipeline (a compiler bug, never user input)."""


def check_flow(flow: Flow) -> None:
    table = TABLE_BY_NAME.get(flow.table)
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
