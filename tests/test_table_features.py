"""The fast table-features reader equals os-ken's own decoding, and discovery asks again
what a busy switch (or a busy controller) left unanswered instead of concluding it lacks it.

The reference here is os-ken's parser (`OFPTableFeaturesStats.parser`) and its field names,
not `table_features`: the capture in tests/data is the reply of an Open vSwitch 3.1.0 bridge
(userspace datapath) to an empty OFPMP_TABLE_FEATURES request: the multipart messages as they
came off a raw OpenFlow socket, concatenated."""

from __future__ import annotations

import gzip
from dataclasses import replace
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from os_ken.ofproto import ofproto_v1_3 as ofproto
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller.app import capabilities
from controller.app.capabilities import read_features
from controller.app.requests import Unanswered
from controller.app.table_features import RawTableFeatures, TableFeaturesError
from controller.core.profiles import FULL, TableFeature, from_features

CAPTURE = Path(__file__).parent / "data" / "ovs-3.1.0-table-features-reply.bin.gz"
MULTIPART_HEADER = 16  # ofp_header + type, flags, pad


# -- the reference: os-ken's decoding, named as os-ken names fields -------------------------
_REFERENCE_EXPERIMENTER = {(0x4F4E4600, 42): "tcp_flags"}  # ONF's tcp_flags (os-ken misnames experimenter ids)
OTSEG_FIELDS = {"in_port", "metadata", "eth_dst", "eth_src", "eth_type", "vlan_vid", "vlan_pcp", "ip_proto",
                "ipv4_src", "ipv4_dst", "tcp_src", "tcp_dst", "udp_src", "udp_dst", "icmpv4_type", "icmpv4_code",
                "arp_op", "arp_spa", "arp_tpa", "arp_sha", "arp_tha", "tcp_flags", "ip_frag", "ct_state"}


def reference_name(oxm_id: Any) -> str | None:
    kind = oxm_id.type
    number = int(kind[6:]) if kind.startswith("field_") and kind[6:].isdigit() else None
    exp_id = getattr(oxm_id, "exp_id", None)
    if exp_id is not None:
        return _REFERENCE_EXPERIMENTER.get((exp_id, number & 0x7F)) if number is not None else None
    return kind if kind in OTSEG_FIELDS else None  # os-ken's names are otseg's for the fields otseg encodes


def reference_feature(body: Any) -> TableFeature:
    fields: set[str] = set()
    goto = write_metadata = False
    for prop in body.properties:
        if prop.type == ofproto.OFPTFPT_MATCH:
            fields.update(name for name in map(reference_name, prop.oxm_ids) if name)
        elif prop.type == ofproto.OFPTFPT_INSTRUCTIONS:
            types = {i.type for i in prop.instruction_ids}
            goto, write_metadata = ofproto.OFPIT_GOTO_TABLE in types, ofproto.OFPIT_WRITE_METADATA in types
    return TableFeature(body.table_id, body.max_entries, body.metadata_match, body.metadata_write,
                        frozenset(fields), goto, write_metadata)


def bodies(message: bytes) -> list[tuple[int, int]]:
    """(offset, length) of each table body in one multipart reply message."""
    found, offset = [], MULTIPART_HEADER
    while offset < len(message):
        (length,) = struct.unpack_from("!H", message, offset)
        found.append((offset, length))
        offset += length
    return found


def captured_messages() -> list[bytes]:
    raw = gzip.decompress(CAPTURE.read_bytes())
    messages, offset = [], 0
    while offset < len(raw):
        (length,) = struct.unpack_from("!H", raw, offset + 2)
        messages.append(raw[offset:offset + length])
        offset += length
    return messages


def test_the_fast_reader_equals_os_ken_on_a_real_open_vswitch_reply() -> None:
    fast, reference = [], []
    for message in captured_messages():
        for offset, _ in bodies(message):
            fast.append(RawTableFeatures.parser(message, offset).feature())
            reference.append(reference_feature(parser.OFPTableFeaturesStats.parser(message, offset)))
    assert len(fast) == 254 and fast == reference
    assert {"tcp_flags", "ct_state", "ip_frag", "metadata", "vlan_vid"} <= fast[3].match_fields
    profile = from_features(capabilities.SwitchFeatures(tuple(fast), 0xF, 2**32 - 256, 262144, True))
    assert profile.name == "full" and profile == replace(FULL, max_entries=profile.max_entries)


# -- random bodies: built byte by byte, read by both -----------------------------------------
_CLASSES = st.sampled_from([0x8000, 0x0000, 0x0001, 0x8001, 0xFFFF])
# the last two read as known OXM headers (ip_proto, ip_frag) if a reader forgot to skip them
_EXPERIMENTERS = st.sampled_from([0x4F4E4600, 0x00002320, 0x12345678, 0x80001400, 0x00013400])
_FIELDS = st.one_of(st.sampled_from([6, 10, 26, 34, 42, 105]), st.integers(0, 127))  # known numbers often
oxm_ids = st.tuples(_CLASSES, _FIELDS, st.booleans(), _EXPERIMENTERS)
# 0xFFFF: an experimenter instruction id (8 bytes); its experimenter number reads as "goto-table,
# length 4" to a reader that steps 4 bytes at a time
instruction_ids = st.lists(st.sampled_from([1, 2, 3, 4, 5, 6, 0xFFFF]), max_size=6)


def build_body(table_id: int, max_entries: int, metadata: tuple[int, int], matches: list[tuple[int, int, bool, int]],
               instructions: list[int], extra_property: bool) -> bytes:
    def prop(kind: int, payload: bytes) -> bytes:
        length = 4 + len(payload)
        return struct.pack("!HH", kind, length) + payload + bytes(-length % 8)

    match = b"".join(struct.pack("!I", cls << 16 | field << 9 | int(mask) << 8 | 4)
                     + (struct.pack("!I", exp) if cls == 0xFFFF else b"") for cls, field, mask, exp in matches)
    props = prop(ofproto.OFPTFPT_INSTRUCTIONS, b"".join(
        struct.pack("!HHI", kind, 8, 0x00010004) if kind == 0xFFFF else struct.pack("!HH", kind, 4)
        for kind in instructions))
    props += prop(ofproto.OFPTFPT_MATCH, match)
    if extra_property:
        props += prop(ofproto.OFPTFPT_WILDCARDS, match)  # a property otseg does not read: skipped
    header = struct.pack("!HB5x32sQQII", 64 + len(props), table_id, b"t%d" % table_id, *metadata, 0, max_entries)
    return header + props


@settings(max_examples=150, deadline=None)
# the names a careless reader would give: 42 under another experimenter, basic 42 (OpenFlow 1.5's
# tcp_flags), Nicira's tcp_flags (os-ken encodes ONF's): none proves what otseg sends
@example(0, 1, (0, 0), [(0xFFFF, 42, False, 0x00002320), (0x8000, 42, False, 0), (0x0001, 34, False, 0)], [], False)
@given(st.integers(0, 253), st.integers(0, 2**32 - 1), st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)),
       st.lists(oxm_ids, max_size=40), instruction_ids, st.booleans())
def test_the_fast_reader_equals_os_ken_on_random_bodies(table_id: int, max_entries: int, metadata: tuple[int, int],
                                                         matches: list[tuple[int, int, bool, int]],
                                                         instructions: list[int], extra: bool) -> None:
    body = build_body(table_id, max_entries, metadata, matches, instructions, extra)
    fast = RawTableFeatures.parser(body, 0)
    assert fast.length == len(body) and fast.table_id == table_id
    assert fast.feature() == reference_feature(parser.OFPTableFeaturesStats.parser(body, 0))


def test_a_body_that_overruns_its_reply_or_its_properties_is_an_error_not_a_guess() -> None:
    body = build_body(0, 100, (0, 0), [(0x8000, 5, False, 0)], [1], False)
    with pytest.raises(TableFeaturesError, match="does not fit"):
        RawTableFeatures.parser(body[:-4], 0)
    overrun = bytearray(body)
    struct.pack_into("!H", overrun, 64 + 2, 400)  # the first property claims 400 bytes
    with pytest.raises(TableFeaturesError, match="overruns"):
        RawTableFeatures(bytes(overrun)).feature()
    truncated = build_body(0, 100, (0, 0), [(0xFFFF, 42, False, 0x4F4E4600)], [], False)
    cut = bytearray(truncated[:-8])  # the experimenter id is gone, the property says so
    struct.pack_into("!H", cut, 0, len(cut))
    struct.pack_into("!H", cut, 64 + 8 + 2, 8)
    with pytest.raises(TableFeaturesError, match="experimenter"):
        RawTableFeatures(bytes(cut)).feature()


# -- discovery asks again --------------------------------------------------------------------
class Switch:
    """A switch that leaves the first `silent` requests of each kind unanswered."""

    def __init__(self, silent: int, bundles: str = "yes") -> None:
        self.silent, self.bundles = silent, bundles
        self.asked: dict[str, int] = {}
        self.open_bundles: set[int] = set()
        self.datapath = SimpleNamespace(id=7, ofproto=ofproto, ofproto_parser=parser)

    def _first_ones(self, message: Any) -> bool:
        kind = type(message).__name__ + str(getattr(message, "type", ""))
        self.asked[kind] = self.asked.get(kind, 0) + 1
        return self.asked[kind] <= self.silent

    def request(self, datapath: Any, message: Any) -> list[Any] | None:
        assert message.xid is None  # a fresh message each time (os-ken refuses to re-send one)
        message.xid = 1
        if self._first_ones(message):
            return None
        if isinstance(message, parser.OFPTableFeaturesStatsRequest):
            first = captured_messages()[0]
            return [RawTableFeatures.parser(first, offset) for offset, _ in bodies(first)]
        if isinstance(message, parser.OFPGroupFeaturesStatsRequest):
            return [SimpleNamespace(types=0xF, max_groups=[10, 10, 10, 10])]
        return [SimpleNamespace(max_meter=1000)]

    def call(self, datapath: Any, message: Any) -> tuple[Any | None, str | None]:
        if message.type == ofproto.ONF_BCT_DISCARD_REQUEST:
            self.open_bundles.discard(message.bundle_id)
            return message, None
        if self.bundles == "refuse":
            return None, "OpenFlow error type 17 code 0"
        if self._first_ones(message):
            self.open_bundles.add(message.bundle_id)  # it opened it, but the answer came too late
            return None, Unanswered("no answer")
        self.open_bundles.add(message.bundle_id)
        return message, None


def test_what_a_switch_answers_late_is_asked_again_not_counted_as_missing() -> None:
    switch = Switch(silent=2)
    features = read_features(switch.datapath, switch.request, switch.call)
    assert features.meters == 1000 and features.ff_groups == 10 and features.bundles is True
    assert features.tables is not None and len(features.tables) > 4
    assert switch.open_bundles == set()  # every probe bundle it opened is discarded


def test_what_a_switch_never_answers_or_refuses_counts_as_missing() -> None:
    silent = Switch(silent=capabilities.ATTEMPTS)
    features = read_features(silent.datapath, silent.request, silent.call)
    assert features == capabilities.SwitchFeatures(None, None, None, None, None)
    assert silent.open_bundles == set()
    assert not from_features(features).meters
    refusing = Switch(silent=0, bundles="refuse")
    assert read_features(refusing.datapath, refusing.request, refusing.call).bundles is False


def test_os_ken_bodies_are_refused_rather_than_misread() -> None:
    first = captured_messages()[0]
    decoded = [parser.OFPTableFeaturesStats.parser(first, offset) for offset, _ in bodies(first)]
    switch = Switch(silent=0)

    def request(datapath: Any, message: Any) -> list[Any] | None:
        reply = switch.request(datapath, message)
        return decoded if isinstance(message, parser.OFPTableFeaturesStatsRequest) else reply

    features = read_features(switch.datapath, request, switch.call)
    assert features.tables is None and features.meters == 1000
