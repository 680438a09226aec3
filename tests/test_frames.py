"""controller.core.frames: exact fields of well-formed frames, and a parser that never raises.

Frames in the exact tests are built by hand with struct, independently of the module's own
builders. The property tests call the unguarded parser (`frames._parse`) so that an exception
fails the test instead of being turned into a "parser error" Frame by parse_frame's guard.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.core import frames
from controller.core.frames import (
    LLDP_MULTICAST,
    OTSEG_OUI,
    Frame,
    Lldp,
    build_arp,
    build_lldp,
    parse_frame,
    read_lldp,
)

DST = bytes.fromhex("0200000000aa")
SRC = bytes.fromhex("02000000BBCC")
KEY = b"k" * 32
NOW = 1_700_000_000_000


# -- hand-built frames ----------------------------------------------------------------------


def eth(eth_type: int, payload: bytes = b"", dst: bytes = DST, src: bytes = SRC, tags: bytes = b"") -> bytes:
    return dst + src + tags + struct.pack("!H", eth_type) + payload


def tag(tpid: int, tci: int) -> bytes:
    """A VLAN-style header as it sits before the next ethertype: this tag's TPID, then its TCI."""
    return struct.pack("!HH", tpid, tci)


def ipv4(proto: int, payload: bytes, src: str = "10.0.1.5", dst: str = "10.0.2.9", frag: int = 0,
         ihl: int = 5, total: int | None = None, version: int = 4) -> bytes:
    options = b"\x01" * (max(ihl, 5) * 4 - 20)
    total = 20 + len(options) + len(payload) if total is None else total
    header = struct.pack("!BBHHHBBH4s4s", (version << 4) | ihl, 0, total, 0x1234, frag, 64, proto, 0,
                         bytes(map(int, src.split("."))), bytes(map(int, dst.split("."))))
    return header + options + payload


def tcp(sport: int, dport: int, flags: int, data_offset: int = 5) -> bytes:
    return struct.pack("!HHIIHHHH", sport, dport, 1000, 0, (data_offset << 12) | flags, 65535, 0, 0) + (
        b"\x00" * max(0, data_offset * 4 - 20))


def udp(sport: int, dport: int, data: bytes = b"") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data


def icmp(icmp_type: int, code: int) -> bytes:
    return struct.pack("!BBHHH", icmp_type, code, 0, 1, 1)


def arp_body(op: int = 1, hlen: int = 6, plen: int = 4, htype: int = 1, ptype: int = 0x0800) -> bytes:
    return (struct.pack("!HHBBH", htype, ptype, hlen, plen, op) + bytes.fromhex("0200000000bb")
            + bytes([10, 0, 1, 5]) + bytes(6) + bytes([10, 0, 1, 1]))


def tlv(tlv_type: int, value: bytes) -> bytes:
    return struct.pack("!H", (tlv_type << 9) | len(value)) + value


def lldp_body(*extra: bytes, end: bool = True) -> bytes:
    return (tlv(1, b"\x04" + bytes.fromhex("020000000001")) + tlv(2, b"\x05eth7") + tlv(3, b"\x00\x78")
            + b"".join(extra) + (tlv(0, b"") if end else b""))


LLDP_DST = bytes.fromhex("0180c200000e")

# -- well-formed frames: exact fields -------------------------------------------------------


def test_ipv4_tcp_fields() -> None:
    frame = parse_frame(eth(0x0800, ipv4(6, tcp(40000, 502, 0x112))))  # NS | ACK | SYN
    assert frame == Frame(eth_dst="02:00:00:00:00:aa", eth_src="02:00:00:00:bb:cc", tags=(), eth_type=0x0800,
                          ipv4_src="10.0.1.5", ipv4_dst="10.0.2.9", ip_proto=6, tcp_src=40000, tcp_dst=502,
                          tcp_flags=0x112)
    assert not frame.multicast and not frame.tagged and frame.ip_frag == "no"


def test_tcp_flags_are_twelve_bits_and_options_are_skipped() -> None:
    frame = parse_frame(eth(0x0800, ipv4(6, tcp(1, 2, 0xFFF, data_offset=8), ihl=7)))
    assert (frame.tcp_src, frame.tcp_dst, frame.tcp_flags, frame.problem) == (1, 2, 0xFFF, "")


def test_ipv4_udp_and_icmp_fields() -> None:
    frame = parse_frame(eth(0x0800, ipv4(17, udp(5353, 47808, b"bacnet"))))
    assert (frame.ip_proto, frame.udp_src, frame.udp_dst, frame.problem) == (17, 5353, 47808, "")
    assert frame.tcp_src is None and frame.icmp_type is None
    frame = parse_frame(eth(0x0800, ipv4(1, icmp(8, 0))))
    assert (frame.ip_proto, frame.icmp_type, frame.icmp_code, frame.problem) == (1, 8, 0, "")
    assert frame.udp_src is None and frame.tcp_src is None


def test_other_ip_protocol_has_no_l4_fields() -> None:
    frame = parse_frame(eth(0x0800, ipv4(47, b"\x00" * 24)))
    assert (frame.ip_proto, frame.problem) == (47, "")
    assert (frame.tcp_src, frame.udp_src, frame.icmp_type) == (None, None, None)


def test_ethernet_padding_is_not_read_as_l4() -> None:
    padded = eth(0x0800, ipv4(1, icmp(0, 0))).ljust(60, b"\x00")
    frame = parse_frame(padded)
    assert (frame.icmp_type, frame.icmp_code, frame.problem) == (0, 0, "")
    # An IPv4 datagram that says TCP but ends at its header: the padding is not a TCP header.
    frame = parse_frame(eth(0x0800, ipv4(6, b"")) + struct.pack("!HH", 1234, 502) + bytes(40))
    assert frame.ipv4_src == "10.0.1.5" and frame.tcp_src is None and frame.tcp_flags is None
    assert frame.problem == "truncated TCP header"


@pytest.mark.parametrize("dst, multicast", [(b"\xff" * 6, True), (bytes.fromhex("01005e000001"), True),
                                             (bytes.fromhex("0180c200000e"), True), (DST, False)])
def test_multicast_is_the_group_bit(dst: bytes, multicast: bool) -> None:
    assert parse_frame(eth(0x88B8, b"goose", dst=dst)).multicast is multicast


@pytest.mark.parametrize("eth_type", [0x88B8, 0x88F7, 0x86DD, 0x8809, 0x8892, 0x88BA, 0x0842])
def test_other_ethertypes_pass_through_without_fields(eth_type: int) -> None:
    frame = parse_frame(eth(eth_type, bytes(range(46))))
    assert frame == Frame("02:00:00:00:00:aa", "02:00:00:00:bb:cc", (), eth_type)


# -- IPv4 fragments -------------------------------------------------------------------------


def test_first_fragment_keeps_l4() -> None:
    frame = parse_frame(eth(0x0800, ipv4(17, udp(1000, 2222, b"x" * 16), frag=0x2000)))
    assert (frame.ip_frag, frame.udp_src, frame.udp_dst, frame.problem) == ("first", 1000, 2222, "")


@pytest.mark.parametrize("frag", [0x0001, 0x00B9, 0x1FFF, 0x2000 | 0x00B9, 0x4000 | 0x0010])
def test_later_fragment_has_no_l4(frag: int) -> None:
    # The payload looks like a TCP header, but a later fragment carries none.
    frame = parse_frame(eth(0x0800, ipv4(6, tcp(40000, 502, 0x002), frag=frag)))
    assert frame.ip_frag == "later" and frame.ipv4_src == "10.0.1.5" and frame.ip_proto == 6
    assert (frame.tcp_src, frame.tcp_dst, frame.tcp_flags) == (None, None, None)
    assert frame.problem == ""


def test_dont_fragment_alone_is_not_a_fragment() -> None:
    frame = parse_frame(eth(0x0800, ipv4(6, tcp(1, 2, 0x010), frag=0x4000)))
    assert (frame.ip_frag, frame.tcp_src) == ("no", 1)


def test_tiny_first_fragment_has_ports_but_no_flags() -> None:
    frame = parse_frame(eth(0x0800, ipv4(6, tcp(40000, 502, 0x002)[:8], frag=0x2000)))
    assert (frame.ip_frag, frame.tcp_src, frame.tcp_dst, frame.tcp_flags) == ("first", 40000, 502, None)
    assert frame.problem == "truncated TCP header"


# -- malformed IPv4 and L4 ------------------------------------------------------------------

L4_FIELDS = ("tcp_src", "tcp_dst", "tcp_flags", "udp_src", "udp_dst", "icmp_type", "icmp_code")


def no_l4(frame: Frame) -> bool:
    return all(getattr(frame, name) is None for name in L4_FIELDS)


@pytest.mark.parametrize("cut", [0, 1, 10, 19])
def test_truncated_ipv4_header(cut: int) -> None:
    frame = parse_frame(eth(0x0800, ipv4(6, tcp(1, 2, 2))[:cut]))
    assert frame.problem == "truncated IPv4 header"
    assert frame.eth_type == 0x0800 and frame.ipv4_src is None and frame.ip_proto is None and no_l4(frame)


def test_ipv4_options_cut_off_is_a_truncated_header() -> None:
    frame = parse_frame(eth(0x0800, ipv4(6, b"", ihl=15)[:40]))
    assert frame.problem == "truncated IPv4 header" and frame.ipv4_src is None and no_l4(frame)


@pytest.mark.parametrize("ihl", [0, 1, 2, 3, 4])
def test_ihl_below_five_is_rejected(ihl: int) -> None:
    frame = parse_frame(eth(0x0800, ipv4(6, tcp(1, 2, 2), ihl=ihl)))
    assert frame.problem == f"IPv4 header length {ihl}"
    assert frame.ipv4_src is None and frame.ip_proto is None and no_l4(frame)


def test_wrong_ip_version_is_rejected() -> None:
    frame = parse_frame(eth(0x0800, ipv4(6, tcp(1, 2, 2), version=6)))
    assert frame.problem == "IPv4 version 6" and frame.ipv4_src is None and no_l4(frame)


def test_total_length_shorter_than_header_keeps_addresses_only() -> None:
    frame = parse_frame(eth(0x0800, ipv4(6, tcp(1, 2, 2), total=12)))
    assert (frame.ipv4_src, frame.ipv4_dst, frame.ip_proto) == ("10.0.1.5", "10.0.2.9", 6)
    assert "total length 12" in frame.problem and no_l4(frame)


def test_total_length_past_the_frame_is_a_problem() -> None:
    frame = parse_frame(eth(0x0800, ipv4(17, udp(7, 9), total=1500)))
    assert (frame.ipv4_src, frame.udp_src, frame.udp_dst) == ("10.0.1.5", 7, 9)
    assert frame.problem.startswith("IPv4 total length 1500 runs past the frame")


@pytest.mark.parametrize("proto, l4, expected", [
    (6, tcp(1, 2, 2)[:3], {}),
    (6, tcp(1, 2, 2)[:4], {"tcp_src": 1, "tcp_dst": 2}),
    (6, tcp(1, 2, 2)[:13], {"tcp_src": 1, "tcp_dst": 2}),
    (6, tcp(1, 2, 0x18)[:14], {"tcp_src": 1, "tcp_dst": 2, "tcp_flags": 0x18}),
    (6, tcp(1, 2, 0x18, data_offset=6)[:20], {"tcp_src": 1, "tcp_dst": 2, "tcp_flags": 0x18}),
    (17, udp(1, 2)[:3], {}),
    (17, udp(1, 2)[:4], {"udp_src": 1, "udp_dst": 2}),
    (1, icmp(3, 13)[:1], {}),
    (1, icmp(3, 13)[:2], {"icmp_type": 3, "icmp_code": 13}),
])
def test_truncated_l4_sets_only_the_fields_present(proto: int, l4: bytes, expected: dict[str, int]) -> None:
    frame = parse_frame(eth(0x0800, ipv4(proto, l4)))
    assert {name: getattr(frame, name) for name in L4_FIELDS if getattr(frame, name) is not None} == expected
    assert frame.problem.startswith("truncated ") and frame.problem.endswith(" header")


def test_tcp_data_offset_below_five_is_a_problem() -> None:
    frame = parse_frame(eth(0x0800, ipv4(6, tcp(1, 2, 0x002, data_offset=3))))
    assert frame.problem == "TCP header length 3"


# -- VLAN-style tags ------------------------------------------------------------------------


def test_single_8021q_tag() -> None:
    frame = parse_frame(eth(0x0800, ipv4(17, udp(1, 2)), tags=tag(0x8100, (5 << 13) | 10)))
    assert frame.tags == ((0x8100, (5 << 13) | 10),) and frame.tagged
    assert (frame.eth_type, frame.udp_dst, frame.problem) == (0x0800, 2, "")


def test_qinq_then_vid0_then_ipv4() -> None:
    frame = parse_frame(eth(0x0800, ipv4(6, tcp(1, 502, 2)), tags=tag(0x88A8, 100) + tag(0x8100, 0)))
    assert frame.tags == ((0x88A8, 100), (0x8100, 0))
    assert (frame.eth_type, frame.ipv4_dst, frame.tcp_dst, frame.problem) == (0x0800, "10.0.2.9", 502, "")


def test_9100_and_double_priority_tags() -> None:
    frame = parse_frame(eth(0x88B8, b"goose", tags=tag(0x9100, 7)))
    assert (frame.tags, frame.eth_type) == (((0x9100, 7),), 0x88B8)
    frame = parse_frame(eth(0x0806, arp_body(), tags=tag(0x8100, 3 << 13) + tag(0x8100, 6 << 13)))
    assert frame.tags == ((0x8100, 3 << 13), (0x8100, 6 << 13)) and frame.arp_spa == "10.0.1.5"


def test_truncated_tag() -> None:
    frame = parse_frame(DST + SRC + b"\x81\x00\x00")
    assert (frame.tags, frame.eth_type, frame.problem) == ((), 0, "truncated VLAN tag")
    frame = parse_frame(DST + SRC + tag(0x8100, 5) + b"\x88\xa8\x00")
    assert (frame.tags, frame.eth_type, frame.problem) == (((0x8100, 5),), 0, "truncated VLAN tag")


def test_at_most_eight_tags_are_parsed() -> None:
    eight = b"".join(tag(0x8100, i) for i in range(8))
    frame = parse_frame(eth(0x0800, ipv4(17, udp(1, 2)), tags=eight))
    assert len(frame.tags) == 8 and frame.udp_dst == 2 and frame.problem == ""
    frame = parse_frame(eth(0x0800, ipv4(17, udp(1, 2)), tags=eight + tag(0x8100, 8)))
    assert len(frame.tags) == 8 and frame.eth_type == 0x8100 and frame.ipv4_src is None
    assert frame.problem == "more than 8 VLAN tags"


# -- Ethernet header and 802.3 --------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 6, 12, 13])
def test_shorter_than_an_ethernet_header(size: int) -> None:
    assert parse_frame(eth(0x0800, ipv4(6, tcp(1, 2, 2)))[:size]) == Frame(
        "", "", (), 0, problem="truncated Ethernet header")


def test_bare_ethernet_header() -> None:
    assert parse_frame(eth(0x0800)) == Frame("02:00:00:00:00:aa", "02:00:00:00:bb:cc", (), 0x0800,
                                             problem="truncated IPv4 header")


def test_8023_llc_is_no_ethertype_and_snap_gives_one() -> None:
    bpdu = eth(38, b"\x42\x42\x03" + bytes(35), dst=bytes.fromhex("0180c2000000"))
    assert parse_frame(bpdu) == Frame("01:80:c2:00:00:00", "02:00:00:00:bb:cc", (), 0x05FF)
    snap = b"\xaa\xaa\x03\x00\x00\x00\x08\x00"
    frame = parse_frame(eth(100, snap + ipv4(17, udp(1, 2))))
    assert (frame.eth_type, frame.udp_dst, frame.problem) == (0x0800, 2, "")
    assert parse_frame(eth(100, snap[:7])).eth_type == 0x05FF  # SNAP header cut short


def test_bytearray_and_memoryview_are_accepted() -> None:
    data = eth(0x0800, ipv4(1, icmp(8, 0)))
    assert parse_frame(bytearray(data)) == parse_frame(memoryview(data)) == parse_frame(data)


# -- ARP ------------------------------------------------------------------------------------


def test_arp_fields() -> None:
    frame = parse_frame(eth(0x0806, arp_body(op=1), dst=b"\xff" * 6).ljust(60, b"\x00"))
    assert frame == Frame("ff:ff:ff:ff:ff:ff", "02:00:00:00:bb:cc", (), 0x0806, arp_op=1,
                          arp_sha="02:00:00:00:00:bb", arp_spa="10.0.1.5", arp_tha="00:00:00:00:00:00",
                          arp_tpa="10.0.1.1")
    assert frame.multicast


@pytest.mark.parametrize("body, problem", [
    (arp_body(hlen=8), "ARP with hardware length 8"),
    (arp_body(plen=16), "ARP with protocol length 16"),
    (arp_body(htype=6), "ARP with hardware type 6"),
    (arp_body(ptype=0x86DD), "ARP with protocol type 0x86dd"),
    (arp_body()[:27], "truncated ARP body"),
    (arp_body()[:7], "truncated ARP header"),
])
def test_malformed_arp_gives_no_arp_fields(body: bytes, problem: str) -> None:
    frame = parse_frame(eth(0x0806, body))
    assert frame.problem == problem
    assert (frame.arp_op, frame.arp_sha, frame.arp_spa, frame.arp_tha, frame.arp_tpa) == (None,) * 5


def test_build_arp_layout_and_round_trip() -> None:
    data = build_arp(2, "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:01", "10.0.0.1",
                     "02:00:00:00:00:02", "10.0.0.2")
    assert len(data) == 42
    assert data[:14] == bytes.fromhex("020000000002" "020000000001" "0806")
    assert struct.unpack("!HHBBH", data[14:22]) == (1, 0x0800, 6, 4, 2)
    assert data[22:] == bytes.fromhex("020000000001" "0a000001" "020000000002" "0a000002")
    frame = parse_frame(data)
    assert (frame.arp_op, frame.arp_sha, frame.arp_spa, frame.arp_tha, frame.arp_tpa, frame.problem) == (
        2, "02:00:00:00:00:01", "10.0.0.1", "02:00:00:00:00:02", "10.0.0.2", "")
    assert build_arp(1, "AA:BB:CC:DD:EE:FF", "ff:ff:ff:ff:ff:ff", "aa:bb:cc:dd:ee:ff", "10.0.0.1",
                     "00:00:00:00:00:00", "10.0.0.9")[6:12] == bytes.fromhex("aabbccddeeff")


@pytest.mark.parametrize("args", [
    (3, "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:01", "10.0.0.1", "02:00:00:00:00:02", "1.1.1.1"),
    (1, "02:00:00:00:00", "02:00:00:00:00:02", "02:00:00:00:00:01", "10.0.0.1", "02:00:00:00:00:02", "1.1.1.1"),
    (1, "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:1", "10.0.0.1", "02:00:00:00:00:02", "1.1.1.1"),
    (1, "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:01", "10.0.0.256", "02:00:00:00:00:02", "1.1.1.1"),
    (1, "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:01", "10.0.0.1", "02:00:00:00:00:0g", "1.1.1.1"),
])
def test_build_arp_refuses_bad_arguments(args: tuple[int, str, str, str, str, str, str]) -> None:
    with pytest.raises(ValueError):
        build_arp(*args)


# -- LLDP parsing ---------------------------------------------------------------------------


def test_lldp_fields() -> None:
    org = tlv(127, b"\x00\x80\xc2\x01\x00\x0a")
    frame = parse_frame(eth(0x88CC, lldp_body(tlv(5, b"plc-1"), org), dst=LLDP_DST).ljust(60, b"\x00"))
    assert frame.problem == ""
    assert frame.lldp == Lldp(chassis_subtype=4, chassis_id=bytes.fromhex("020000000001"), port_subtype=5,
                              port_id=b"eth7", ttl=120, org_tlvs=((b"\x00\x80\xc2", 1, b"\x00\x0a"),))


def test_lldp_without_end_tlv_is_accepted() -> None:
    frame = parse_frame(eth(0x88CC, lldp_body(end=False)))
    assert frame.problem == "" and frame.lldp is not None and frame.lldp.ttl == 120


@pytest.mark.parametrize("body, problem", [
    (lldp_body()[:-3], "LLDP TLV runs past the frame"),  # the ttl value is cut
    (lldp_body(end=False) + b"\x02", "LLDP TLV runs past the frame"),  # half a TLV header
    (lldp_body(tlv(127, b"\x00\x80\xc2\x01"))[:-4], "LLDP TLV runs past the frame"),
    (tlv(2, b"\x05eth7") + tlv(1, b"\x04abcdef") + tlv(3, b"\x00\x78"),
     "LLDP does not start with chassis id, port id and ttl"),
    (tlv(1, b"\x04abcdef") + tlv(2, b"\x05eth7") + tlv(0, b""),
     "LLDP does not start with chassis id, port id and ttl"),
    (b"", "LLDP does not start with chassis id, port id and ttl"),
    (tlv(1, b"\x04") + tlv(2, b"\x05eth7") + tlv(3, b"\x00\x78"), "LLDP chassis id TLV length 1"),
    (tlv(1, b"\x04ab") + tlv(2, b"") + tlv(3, b"\x00\x78"), "LLDP port id TLV length 0"),
    (tlv(1, b"\x04ab") + tlv(2, b"\x05e") + tlv(3, b"\x78"), "LLDP ttl TLV length 1"),
    (lldp_body(tlv(127, b"\x00\x80\xc2")), "LLDP organizational TLV length 3"),
])
def test_malformed_lldp(body: bytes, problem: str) -> None:
    frame = parse_frame(eth(0x88CC, body, dst=LLDP_DST))
    assert (frame.lldp, frame.problem) == (None, problem)


# -- signed LLDP ----------------------------------------------------------------------------


def test_build_lldp_layout() -> None:
    dpid, port = 0x00000000000000A1, 7
    data = build_lldp(dpid, port, "02:00:00:00:00:01", KEY, NOW)
    assert data[:14] == bytes.fromhex("0180c200000e" "020000000001" "88cc")
    expected = (tlv(1, b"\x07dpid:00000000000000a1") + tlv(2, b"\x02" + struct.pack("!I", port))
                + tlv(3, struct.pack("!H", 120)))
    proof = hmac.new(KEY, struct.pack("!QIQ", dpid, port, NOW), hashlib.sha256).digest()[:16]
    expected += tlv(127, b"\x0e\x5e\x00\x01" + struct.pack("!Q", NOW) + proof) + b"\x00\x00"
    assert data[14:] == expected


@pytest.mark.parametrize("dpid, port", [(1, 1), (0xA1, 0xFFFFFF00), (0, 0), ((1 << 64) - 1, (1 << 32) - 1)])
def test_lldp_round_trip(dpid: int, port: int) -> None:
    frame = parse_frame(build_lldp(dpid, port, "02:00:00:00:00:01", KEY, NOW))
    assert frame.problem == "" and frame.eth_dst == LLDP_MULTICAST
    assert read_lldp(frame, KEY, NOW + 10, 5000) == (dpid, port)


def test_lldp_padded_by_the_switch_still_reads() -> None:
    frame = parse_frame(build_lldp(5, 6, "02:00:00:00:00:01", KEY, NOW) + bytes(20))
    assert read_lldp(frame, KEY, NOW, 5000) == (5, 6)


def test_lldp_age_window() -> None:
    frame = parse_frame(build_lldp(5, 6, "02:00:00:00:00:01", KEY, NOW))
    assert read_lldp(frame, KEY, NOW + 5000, 5000) == (5, 6)  # exactly max age
    assert read_lldp(frame, KEY, NOW + 5001, 5000) is None  # too old
    assert read_lldp(frame, KEY, NOW - 1000, 5000) == (5, 6)  # 1 s of clock skew
    assert read_lldp(frame, KEY, NOW - 1001, 5000) is None  # from further in the future
    assert read_lldp(frame, KEY, NOW, -1) is None


def test_lldp_flipped_proof_bits_are_rejected() -> None:
    data = build_lldp(5, 6, "02:00:00:00:00:01", KEY, NOW)
    frame = parse_frame(data)
    assert read_lldp(frame, KEY, NOW, 5000) == (5, 6)
    start = len(data) - 2 - 24  # the proof TLV's info: timestamp (8) + MAC (16), before End
    for index in range(start, start + 24):
        for bit in range(8):
            mutated = bytearray(data)
            mutated[index] ^= 1 << bit
            assert read_lldp(parse_frame(bytes(mutated)), KEY, NOW, 1 << 62) is None, (index, bit)


def test_lldp_wrong_key_is_rejected() -> None:
    frame = parse_frame(build_lldp(5, 6, "02:00:00:00:00:01", KEY, NOW))
    assert read_lldp(frame, b"K" + KEY[1:], NOW, 5000) is None
    assert read_lldp(frame, b"", NOW, 5000) is None


def test_lldp_old_timestamp_is_rejected() -> None:
    frame = parse_frame(build_lldp(5, 6, "02:00:00:00:00:01", KEY, NOW - 60_000))
    assert read_lldp(frame, KEY, NOW, 5000) is None


def test_lldp_with_its_ids_changed_is_rejected() -> None:
    data = build_lldp(0xA1, 6, "02:00:00:00:00:01", KEY, NOW)
    other_dpid = data.replace(b"dpid:00000000000000a1", b"dpid:00000000000000a2")
    other_port = data.replace(tlv(2, b"\x02" + struct.pack("!I", 6)), tlv(2, b"\x02" + struct.pack("!I", 7)))
    upper_hex = data.replace(b"dpid:00000000000000a1", b"dpid:00000000000000A1")
    port_name = data.replace(tlv(2, b"\x02" + struct.pack("!I", 6)), tlv(2, b"\x05" + struct.pack("!I", 6)))
    for forged in (other_dpid, other_port, upper_hex, port_name):
        assert forged != data
        assert read_lldp(parse_frame(forged), KEY, NOW, 5000) is None


def test_lldp_with_two_proofs_is_rejected() -> None:
    data = build_lldp(5, 6, "02:00:00:00:00:01", KEY, NOW)
    proof_tlv = data[-2 - 30:-2]
    frame = parse_frame(data[:-2] + proof_tlv + data[-2:])
    assert frame.lldp is not None and len(frame.lldp.org_tlvs) == 2
    assert read_lldp(frame, KEY, NOW, 5000) is None


def test_non_otseg_lldp_is_rejected() -> None:
    # os-ken's own discovery LLDP: same chassis and port ids, no proof.
    osken = (tlv(1, b"\x07dpid:0000000000000005") + tlv(2, b"\x02" + struct.pack("!I", 6)) + tlv(3, b"\x00\x78")
             + tlv(0, b""))
    assert read_lldp(parse_frame(eth(0x88CC, osken, dst=LLDP_DST)), KEY, NOW, 5000) is None
    # A switch's LLDP with another vendor's org TLV of the same shape.
    proof = hmac.new(KEY, struct.pack("!QIQ", 5, 6, NOW), hashlib.sha256).digest()[:16]
    vendor = osken[:-2] + tlv(127, b"\x00\x80\xc2\x01" + struct.pack("!Q", NOW) + proof) + tlv(0, b"")
    assert read_lldp(parse_frame(eth(0x88CC, vendor, dst=LLDP_DST)), KEY, NOW, 5000) is None
    # Ours in form, but a MAC chassis id.
    mac_chassis = (tlv(1, b"\x04" + bytes(6)) + tlv(2, b"\x02" + struct.pack("!I", 6)) + tlv(3, b"\x00\x78")
                   + tlv(127, OTSEG_OUI + b"\x01" + struct.pack("!Q", NOW) + proof))
    assert read_lldp(parse_frame(eth(0x88CC, mac_chassis, dst=LLDP_DST)), KEY, NOW, 5000) is None
    # Not LLDP at all.
    assert read_lldp(parse_frame(eth(0x0800, ipv4(1, icmp(8, 0)))), KEY, NOW, 5000) is None
    assert read_lldp(parse_frame(b""), KEY, NOW, 5000) is None


@pytest.mark.parametrize("args", [(-1, 1, KEY, NOW), (1 << 64, 1, KEY, NOW), (1, -1, KEY, NOW),
                                  (1, 1 << 32, KEY, NOW), (1, 1, b"", NOW), (1, 1, KEY, -1)])
def test_build_lldp_refuses_bad_arguments(args: tuple[int, int, bytes, int]) -> None:
    dpid, port, key, now_ms = args
    with pytest.raises(ValueError):
        build_lldp(dpid, port, "02:00:00:00:00:01", key, now_ms)


# -- the guard ------------------------------------------------------------------------------


def test_guard_turns_an_unexpected_exception_into_a_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(data: bytes) -> Frame:
        raise IndexError("boom")

    monkeypatch.setattr(frames, "_parse", broken)
    frame = parse_frame(b"\x00" * 64)
    assert frame.problem == "parser error: IndexError: boom" and frame.eth_type == 0


# -- properties: total on any bytes ---------------------------------------------------------


def check_invariants(frame: Frame) -> None:
    """What every parse result satisfies, whatever the input."""
    assert isinstance(frame, Frame)
    assert not frame.problem.startswith("parser error")
    assert frame.eth_dst == "" or len(frame.eth_dst) == 17
    assert len(frame.tags) <= 8 and all(tpid in (0x8100, 0x88A8, 0x9100) for tpid, _ in frame.tags)
    assert 0 <= frame.eth_type <= 0xFFFF
    assert frame.ip_frag in ("no", "first", "later")
    ip_fields = (frame.ipv4_src, frame.ipv4_dst, frame.ip_proto)
    assert all(v is None for v in ip_fields) or all(v is not None for v in ip_fields)
    if frame.ipv4_src is None or frame.ip_frag == "later":
        assert no_l4(frame)
    if frame.ipv4_src is None:
        assert frame.ip_frag == "no"
    assert frame.tcp_flags is None or (frame.tcp_src is not None and 0 <= frame.tcp_flags <= 0xFFF)
    assert (frame.tcp_src is None) == (frame.tcp_dst is None)
    assert (frame.udp_src is None) == (frame.udp_dst is None)
    assert (frame.icmp_type is None) == (frame.icmp_code is None)
    arp = (frame.arp_op, frame.arp_sha, frame.arp_spa, frame.arp_tha, frame.arp_tpa)
    assert all(v is None for v in arp) or all(v is not None for v in arp)
    if frame.lldp is not None:
        assert frame.eth_type == 0x88CC and frame.problem == ""
    assert frame.multicast in (True, False) and frame.tagged == bool(frame.tags)
    assert read_lldp(frame, KEY, NOW, 5000) is None or frame.lldp is not None


FAST = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings(FAST, max_examples=3000)
@given(st.binary(max_size=1600))
def test_any_bytes_parse_without_raising(data: bytes) -> None:
    frame = frames._parse(data)  # unguarded: an exception fails the test
    check_invariants(frame)
    assert parse_frame(data) == frame


SEEDS: list[bytes] = [
    eth(0x0800, ipv4(6, tcp(40000, 502, 0x018, data_offset=6) + b"modbus")),
    eth(0x0800, ipv4(17, udp(1000, 47808, b"bacnet"), ihl=6)),
    eth(0x0800, ipv4(1, icmp(8, 0))).ljust(60, b"\x00"),
    eth(0x0800, ipv4(6, tcp(1, 2, 2), frag=0x2000)),
    eth(0x0800, ipv4(17, b"\x00" * 16, frag=0x00B9)),
    eth(0x0806, arp_body(), dst=b"\xff" * 6),
    build_arp(2, "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:01", "10.0.0.1",
              "02:00:00:00:00:02", "10.0.0.2"),
    build_lldp(0xA1, 3, "02:00:00:00:00:01", KEY, NOW),
    eth(0x88CC, lldp_body(tlv(5, b"plc"), tlv(127, b"\x00\x80\xc2\x01\x00\x0a")), dst=LLDP_DST),
    eth(0x0800, ipv4(17, udp(1, 2)), tags=tag(0x8100, 10)),
    eth(0x0800, ipv4(6, tcp(1, 502, 2)), tags=tag(0x88A8, 100) + tag(0x8100, 0)),
    eth(0x88B8, b"\x00\x01\x00\x20" + bytes(28), tags=tag(0x9100, 7)),
    eth(0x0806, arp_body(), tags=tag(0x8100, 0) + tag(0x8100, 0)),
    eth(0x88B8, b"\x00\x01\x00\x40" + bytes(60), dst=bytes.fromhex("010ccd010001")),
    eth(0x88F7, b"\x00\x02" + bytes(42), dst=bytes.fromhex("011b19000000")),
    eth(0x86DD, b"\x60" + bytes(39) + udp(546, 547)),
    eth(0x8809, b"\x01\x01" + bytes(108), dst=bytes.fromhex("0180c2000002")),
    eth(0x8892, b"\xfe\xfe\x05\x00" + bytes(36), dst=bytes.fromhex("010ecf000000")),
    eth(100, b"\xaa\xaa\x03\x00\x00\x00\x08\x06" + arp_body()),
    eth(38, b"\x42\x42\x03" + bytes(35), dst=bytes.fromhex("0180c2000000")),
]

mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2000), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.integers(0, 2000)),
    st.tuples(st.just("insert"), st.integers(0, 2000), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 2000), st.integers(1, 8)),
    st.tuples(st.just("set"), st.integers(0, 2000), st.integers(0, 255)),
)


def mutate(data: bytes, ops: list[tuple[Any, ...]]) -> bytes:
    out = bytearray(data)
    for op in ops:
        where = op[1] % (len(out) + 1)
        if op[0] == "flip" and out:
            out[where % len(out)] ^= 1 << op[2]
        elif op[0] == "truncate":
            del out[where:]
        elif op[0] == "insert":
            out[where:where] = op[2]
        elif op[0] == "delete":
            del out[where:where + op[2]]
        elif op[0] == "set" and out:
            out[where % len(out)] = op[2]
    return bytes(out)


@settings(FAST, max_examples=2000)
@given(st.sampled_from(SEEDS), st.lists(mutation, min_size=1, max_size=6))
def test_mutated_frames_parse_without_raising(seed: bytes, ops: list[tuple[Any, ...]]) -> None:
    data = mutate(seed, ops)
    frame = frames._parse(data)
    check_invariants(frame)
    # A mutated otseg LLDP reads as the original link or not at all, never as another link.
    assert read_lldp(frame, KEY, NOW, 5000) in (None, (0xA1, 3))


header_type = st.sampled_from([0x0800, 0x0806, 0x88CC, 0x8100, 0x88A8, 0x9100, 0x86DD, 0x88B8, 38, 100])


@settings(FAST, max_examples=800)
@given(st.lists(st.tuples(st.sampled_from([0x8100, 0x88A8, 0x9100]), st.integers(0, 0xFFFF)), max_size=10),
       header_type, st.binary(max_size=80))
def test_structured_garbage_parses_without_raising(tags: list[tuple[int, int]], eth_type: int,
                                                   payload: bytes) -> None:
    stack = b"".join(tag(tpid, tci) for tpid, tci in tags)
    frame = frames._parse(eth(eth_type, payload, tags=stack))
    check_invariants(frame)
    assert frame.tags[:len(tags)] == tuple(tags[:8])  # the type after them may be a TPID too


@settings(FAST, max_examples=1000)
@given(st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.sampled_from([1, 6, 17, 0, 255]),
       st.binary(max_size=60))
def test_ipv4_header_fields_any_values(ver_ihl: int, total: int, frag: int, proto: int, rest: bytes) -> None:
    header = struct.pack("!BBHHHBBH", ver_ihl, 0, total, 0, frag, 64, proto, 0) + bytes(8)
    frame = frames._parse(eth(0x0800, header + rest))
    check_invariants(frame)
    valid = ver_ihl >> 4 == 4 and ver_ihl & 0xF >= 5 and len(rest) + 20 >= (ver_ihl & 0xF) * 4
    assert (frame.ipv4_src is not None) == valid
    if valid:
        later = frag & 0x1FFF != 0
        assert frame.ip_frag == ("later" if later else "first" if frag & 0x2000 else "no")


short_value = st.binary(max_size=4)
any_tlv = st.tuples(st.sampled_from([0, 1, 2, 3, 5, 127]) | st.integers(0, 127), st.binary(max_size=40))


@settings(FAST, max_examples=800)
@given(st.none() | st.tuples(short_value, short_value, short_value), st.lists(any_tlv, max_size=8),
       st.binary(max_size=8))
def test_lldp_tlv_chains_parse_without_raising(first: tuple[bytes, bytes, bytes] | None,
                                               chain: list[tuple[int, bytes]], tail: bytes) -> None:
    """Random TLV chains, often behind a chassis/port/ttl prefix with short (possibly too short) values."""
    prefix = b"" if first is None else tlv(1, first[0]) + tlv(2, first[1]) + tlv(3, first[2])
    body = prefix + b"".join(tlv(t, v) for t, v in chain) + tail
    frame = frames._parse(eth(0x88CC, body, dst=LLDP_DST))
    check_invariants(frame)
    assert read_lldp(frame, KEY, NOW, 5000) is None


def test_an_arp_probe_for_a_vlan_asset_carries_its_tag() -> None:
    from controller.core.frames import build_arp  # noqa: PLC0415

    frame = parse_frame(build_arp(1, "02:00:00:00:00:01", "ff:ff:ff:ff:ff:ff", "02:00:00:00:00:01", "0.0.0.0",
                                  "00:00:00:00:00:00", "10.0.5.2", vlan=5))
    assert frame.tags == ((0x8100, 5),) and frame.eth_type == 0x0806 and frame.arp_tpa == "10.0.5.2"
    assert not frame.problem
    with pytest.raises(ValueError):
        build_arp(1, "02:00:00:00:00:01", "ff:ff:ff:ff:ff:ff", "02:00:00:00:00:01", "0.0.0.0", "00:00:00:00:00:00",
                  "10.0.5.2", vlan=4095)
