"""A fast reader of OFPMP_TABLE_FEATURES replies (the switch edge).

os-ken decodes a table-features reply into one Python object per OXM and instruction id: an
Open vSwitch bridge answers with 255 tables (1.2 MB), which took os-ken 1.0 s per bridge, in
the event loop. A plant's restart connects every switch at once; the loop was blocked for
that many seconds, discovery requests timed out, and switches were profiled "without meters".

`install(parser)` makes os-ken keep each table's body as bytes (`RawTableFeatures`, a cut by
its length: microseconds), and `feature()` decodes only what otseg reads: the header, the
OFPTFPT_INSTRUCTIONS and OFPTFPT_MATCH properties (OpenFlow 1.3.5 section 7.3.5.5). That
replaces os-ken's body class of that one reply type (the only override of os-ken's parsers,
idempotent). Invariant, tested on a real Open vSwitch reply: `feature()` equals
`capabilities.table_feature` of os-ken's own decoding of the same bytes.
"""

from __future__ import annotations

import struct
from typing import Any

from controller.core.profiles import TableFeature

HEADER = struct.Struct("!HB5x32sQQII")  # ofp_table_features up to its properties (64 bytes)
PROPERTY = struct.Struct("!HH")
OFPTFPT_INSTRUCTIONS, OFPTFPT_MATCH = 0, 8
OFPXMC_EXPERIMENTER = 0xFFFF
ONF_EXPERIMENTER = 0x4F4E4600
OFPIT_GOTO_TABLE, OFPIT_WRITE_METADATA = 1, 2
OXM_OF_BASIC = 0x8000
NXM_0, NXM_1 = 0x0000, 0x0001
# (class, field) -> otseg's name, for the fields otseg matches (OpenFlow 1.3.5 7.2.3.7; OVS meta-flow.h).
OXM_BASIC = {0: "in_port", 2: "metadata", 3: "eth_dst", 4: "eth_src", 5: "eth_type", 6: "vlan_vid", 7: "vlan_pcp",
             10: "ip_proto", 11: "ipv4_src", 12: "ipv4_dst", 13: "tcp_src", 14: "tcp_dst", 15: "udp_src",
             16: "udp_dst", 19: "icmpv4_type", 20: "icmpv4_code", 21: "arp_op", 22: "arp_spa", 23: "arp_tpa",
             24: "arp_sha", 25: "arp_tha"}  # not 42: tcp_flags is a basic field only from OpenFlow 1.5 on;
# in 1.3 a switch names it ONF's (0x4F4E4600, 42), which is what os-ken encodes: a basic 42 proves nothing
NXM = {(NXM_1, 26): "ip_frag", (NXM_1, 105): "ct_state"}  # not NXM_NX_TCP_FLAGS (34): os-ken encodes ONF's
ONF = {42: "tcp_flags"}


class TableFeaturesError(ValueError):
    """A table-features body that does not parse (a length that overruns, a truncated id)."""


class RawTableFeatures:
    """One ofp_table_features body, kept as bytes until `feature()` is asked for."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.length = len(raw)

    @classmethod
    def parser(cls, buf: Any, offset: int) -> "RawTableFeatures":
        (length,) = struct.unpack_from("!H", buf, offset)
        if length < HEADER.size or offset + length > len(buf):
            raise TableFeaturesError(f"table features body of {length} bytes at offset {offset} "
                                     f"does not fit the {len(buf)}-byte reply")
        return cls(bytes(buf[offset:offset + length]))

    @property
    def table_id(self) -> int:
        return self.raw[2]

    def feature(self) -> TableFeature:
        _, table_id, _, metadata_match, metadata_write, _, max_entries = HEADER.unpack_from(self.raw)
        fields: set[str] = set()
        goto = write_metadata = False
        offset = HEADER.size
        while offset + PROPERTY.size <= len(self.raw):
            kind, length = PROPERTY.unpack_from(self.raw, offset)
            if length < PROPERTY.size or offset + length > len(self.raw):
                raise TableFeaturesError(f"table {table_id}: property of type {kind} with length {length} "
                                         f"overruns its {len(self.raw)}-byte body")
            payload = self.raw[offset + PROPERTY.size:offset + length]
            if kind == OFPTFPT_MATCH:
                fields.update(match_fields(payload))
            elif kind == OFPTFPT_INSTRUCTIONS:
                types = instruction_types(payload)
                goto, write_metadata = OFPIT_GOTO_TABLE in types, OFPIT_WRITE_METADATA in types
            offset += (length + 7) // 8 * 8  # properties are padded to 8 bytes
        return TableFeature(table_id, max_entries, metadata_match, metadata_write, frozenset(fields), goto,
                            write_metadata)


def match_fields(payload: bytes) -> set[str]:
    """otseg's names of the OXM ids in an OFPTFPT_MATCH payload (ids otseg never matches are skipped)."""
    names: set[str] = set()
    offset = 0
    while offset + 4 <= len(payload):
        (header,) = struct.unpack_from("!I", payload, offset)
        oxm_class, field = header >> 16, header >> 9 & 0x7F
        offset += 4
        name: str | None
        if oxm_class == OFPXMC_EXPERIMENTER:
            if offset + 4 > len(payload):
                raise TableFeaturesError("an experimenter OXM id without its experimenter number")
            (experimenter,) = struct.unpack_from("!I", payload, offset)
            offset += 4
            name = ONF.get(field) if experimenter == ONF_EXPERIMENTER else None
        elif oxm_class == OXM_OF_BASIC:
            name = OXM_BASIC.get(field)
        else:
            name = NXM.get((oxm_class, field))
        if name:
            names.add(name)
    return names


def instruction_types(payload: bytes) -> set[int]:
    types: set[int] = set()
    offset = 0
    while offset + 4 <= len(payload):
        kind, length = struct.unpack_from("!HH", payload, offset)
        types.add(kind)
        offset += max(length, 4)
    return types


def install(parser: Any) -> None:
    """Make os-ken keep table-features reply bodies raw (`parser`: ofproto_v1_3_parser)."""
    parser.OFPTableFeaturesStatsReply.cls_stats_body_cls = RawTableFeatures
