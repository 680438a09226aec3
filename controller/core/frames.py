"""Raw Ethernet frames: a total parser for untrusted input and builders for what otseg sends.

Role: every packet-in from a switch port carries bytes that a device on that port chose. This
module turns such bytes into a `Frame` of plain fields the way Open vSwitch's flow extraction
reads them (VLAN-style tags, 802.3 LLC/SNAP, IPv4 with fragments, TCP/UDP/ICMP ports, ARP,
LLDP), and builds the two frames the controller itself emits: signed LLDP for link discovery
(`build_lldp` / `read_lldp`) and ARP (`build_arp`). Standard library only, no I/O.

Invariants:
  * `parse_frame` and `read_lldp` return a value for ANY input byte string and never raise.
    This holds by construction: every read from the frame is preceded by a length check (all
    `struct.unpack_from` calls are guarded, slices cannot fail). `parse_frame` also carries a
    last-resort guard turning an unexpected exception into `Frame(problem="parser error: ...")`;
    the tests call the unguarded parser directly, so a guard that ever fires is a test failure.
  * A field is set only when the bytes it is read from are present and the header holding it
    is of the right kind (IPv4 fields only for a valid IPv4 header, L4 fields only for
    unfragmented packets or first fragments, ARP fields only for Ethernet/IPv4 ARP, `lldp` only
    for a well-formed TLV chain). Anything malformed leaves the field None and says why in
    `problem` ("" means well formed). L4 headers are read inside the IPv4 datagram (total
    length), never from Ethernet padding.
  * The builders take values the controller produced and raise ValueError for out-of-range
    arguments (a caller bug), never for anything a device sent.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
from dataclasses import dataclass

__all__ = [
    "Frame",
    "Lldp",
    "LLDP_MULTICAST",
    "OTSEG_OUI",
    "build_arp",
    "build_lldp",
    "parse_frame",
    "read_lldp",
]

ETH_HEADER_LEN = 14
ETH_TYPE_IPV4 = 0x0800
ETH_TYPE_ARP = 0x0806
ETH_TYPE_LLDP = 0x88CC
ETH_TYPE_MIN = 0x0600  # below this the field is an 802.3 length, not an ethertype
ETH_TYPE_NONE = 0x05FF  # Open vSwitch's dl_type for 802.3 frames without an Ethernet SNAP header
VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))
MAX_TAGS = 8

IP_PROTO_ICMP = 1
IP_PROTO_TCP = 6
IP_PROTO_UDP = 17
IP_MF = 0x2000
IP_OFFSET_MASK = 0x1FFF

LLDP_MULTICAST = "01:80:c2:00:00:0e"
OTSEG_OUI = b"\x0e\x5e\x00"
LLDP_TTL = 120
_PROOF_SUBTYPE = 1
_PROOF_LEN = 16  # bytes of HMAC-SHA256 kept
_FUTURE_SKEW_MS = 1000  # a proof may be stamped this far in the receiver's future

_LLDP_END, _LLDP_CHASSIS, _LLDP_PORT, _LLDP_TTL, _LLDP_ORG = 0, 1, 2, 3, 127
_CHASSIS_LOCAL = 7  # chassis id subtype "locally assigned"
_PORT_COMPONENT = 2  # port id subtype "port component"
_SNAP_HEADER = b"\xaa\xaa\x03\x00\x00\x00"  # LLC DSAP/SSAP SNAP, UI, OUI 00-00-00 (Ethernet)


@dataclass(frozen=True)
class Lldp:
    chassis_subtype: int
    chassis_id: bytes
    port_subtype: int
    port_id: bytes
    ttl: int
    org_tlvs: tuple[tuple[bytes, int, bytes], ...]  # (oui 3 bytes, subtype, info), in frame order


@dataclass(frozen=True)
class Frame:
    eth_dst: str  # "aa:bb:cc:dd:ee:ff" lower case; "" if the frame is shorter than 14 bytes
    eth_src: str
    tags: tuple[tuple[int, int], ...]  # (tpid, tci) of every VLAN-style header, outer first
    eth_type: int  # the ethertype after all tags; 0 if truncated; 0x05ff for plain 802.3
    ipv4_src: str | None = None
    ipv4_dst: str | None = None
    ip_proto: int | None = None
    ip_frag: str = "no"  # "no" | "first" (MF set, offset 0) | "later" (offset > 0)
    tcp_src: int | None = None
    tcp_dst: int | None = None
    tcp_flags: int | None = None  # 12 bits, like Open vSwitch's tcp_flags
    udp_src: int | None = None
    udp_dst: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    arp_op: int | None = None
    arp_sha: str | None = None
    arp_spa: str | None = None
    arp_tha: str | None = None
    arp_tpa: str | None = None
    lldp: Lldp | None = None
    problem: str = ""  # "" if well formed, else a short human reason

    @property
    def multicast(self) -> bool:
        """The group bit of the destination MAC (broadcast counts as multicast)."""
        return len(self.eth_dst) >= 2 and int(self.eth_dst[:2], 16) & 1 == 1

    @property
    def tagged(self) -> bool:
        return bool(self.tags)


def parse_frame(data: bytes) -> Frame:
    """Parse one Ethernet frame as a switch port received it. Never raises."""
    try:
        return _parse(data if type(data) is bytes else bytes(memoryview(data)))
    except Exception as exc:  # pragma: no cover - unreachable by construction, see module doc
        return Frame("", "", (), 0, problem=f"parser error: {type(exc).__name__}: {exc}")


def _mac(raw: bytes) -> str:
    return raw.hex(":")


def _ip(raw: bytes) -> str:
    return "%d.%d.%d.%d" % (raw[0], raw[1], raw[2], raw[3])


def _parse(data: bytes) -> Frame:
    """The parser proper, without the guard (the tests call this one directly)."""
    size = len(data)
    if size < ETH_HEADER_LEN:
        return Frame("", "", (), 0, problem="truncated Ethernet header")
    eth_dst = _mac(data[0:6])
    eth_src = _mac(data[6:12])
    (eth_type,) = struct.unpack_from("!H", data, 12)
    offset = ETH_HEADER_LEN
    tags: list[tuple[int, int]] = []
    while eth_type in VLAN_TPIDS:
        if len(tags) == MAX_TAGS:
            return Frame(eth_dst, eth_src, tuple(tags), eth_type, problem=f"more than {MAX_TAGS} VLAN tags")
        if size - offset < 4:
            return Frame(eth_dst, eth_src, tuple(tags), 0, problem="truncated VLAN tag")
        tci, next_type = struct.unpack_from("!HH", data, offset)
        tags.append((eth_type, tci))
        eth_type = next_type
        offset += 4
    if eth_type < ETH_TYPE_MIN:
        # 802.3 length field: as Open vSwitch, an Ethernet SNAP header supplies the ethertype,
        # anything else (STP BPDUs, other LLC) is "no ethertype".
        if data[offset:offset + 6] == _SNAP_HEADER and size - offset >= 8:
            (snap_type,) = struct.unpack_from("!H", data, offset + 6)
            offset += 8
            eth_type = snap_type if snap_type >= ETH_TYPE_MIN else ETH_TYPE_NONE
        else:
            eth_type = ETH_TYPE_NONE
    base = Frame(eth_dst, eth_src, tuple(tags), eth_type)
    if eth_type == ETH_TYPE_IPV4:
        return _parse_ipv4(base, data, offset)
    if eth_type == ETH_TYPE_ARP:
        return _parse_arp(base, data, offset)
    if eth_type == ETH_TYPE_LLDP:
        return _parse_lldp(base, data, offset)
    return base


def _with(base: Frame, **fields: object) -> Frame:
    return Frame(base.eth_dst, base.eth_src, base.tags, base.eth_type, **fields)  # type: ignore[arg-type]


def _parse_ipv4(base: Frame, data: bytes, offset: int) -> Frame:
    available = len(data) - offset
    if available < 20:
        return _with(base, problem="truncated IPv4 header")
    ver_ihl = data[offset]
    version, ihl = ver_ihl >> 4, ver_ihl & 0x0F
    if version != 4:
        return _with(base, problem=f"IPv4 version {version}")
    if ihl < 5:
        return _with(base, problem=f"IPv4 header length {ihl}")
    header_len = ihl * 4
    if available < header_len:
        return _with(base, problem="truncated IPv4 header")
    total_len, frag_field, proto = struct.unpack_from("!H2xH1xB", data, offset + 2)
    fields: dict[str, object] = {
        "ipv4_src": _ip(data[offset + 12:offset + 16]),
        "ipv4_dst": _ip(data[offset + 16:offset + 20]),
        "ip_proto": proto,
    }
    frag_offset = frag_field & IP_OFFSET_MASK
    if frag_offset != 0:
        fields["ip_frag"] = "later"
    elif frag_field & IP_MF:
        fields["ip_frag"] = "first"
    if total_len < header_len:
        fields["problem"] = f"IPv4 total length {total_len} shorter than its header ({header_len} bytes)"
        return _with(base, **fields)
    problem = ""
    if total_len > available:
        problem = f"IPv4 total length {total_len} runs past the frame ({available} bytes)"
    if frag_offset == 0:
        # The L4 header lies inside the datagram: bytes past the total length are padding.
        l4 = data[offset + header_len:offset + min(total_len, available)]
        l4_problem = _parse_l4(proto, l4, fields)
        problem = problem or l4_problem
    if problem:
        fields["problem"] = problem
    return _with(base, **fields)


def _parse_l4(proto: int, l4: bytes, fields: dict[str, object]) -> str:
    """Fill the L4 fields whose bytes are present; return a problem or ""."""
    size = len(l4)
    if proto == IP_PROTO_TCP:
        if size >= 4:
            fields["tcp_src"], fields["tcp_dst"] = struct.unpack_from("!HH", l4, 0)
        if size >= 14:
            (ctl,) = struct.unpack_from("!H", l4, 12)
            fields["tcp_flags"] = ctl & 0x0FFF
            data_offset = ctl >> 12
            if data_offset < 5:
                return f"TCP header length {data_offset}"
            if size < data_offset * 4:
                return "truncated TCP header"
            return ""
        return "truncated TCP header"
    if proto == IP_PROTO_UDP:
        if size >= 4:
            fields["udp_src"], fields["udp_dst"] = struct.unpack_from("!HH", l4, 0)
        return "" if size >= 8 else "truncated UDP header"
    if proto == IP_PROTO_ICMP:
        if size >= 2:
            fields["icmp_type"], fields["icmp_code"] = l4[0], l4[1]
        return "" if size >= 8 else "truncated ICMP header"
    return ""


def _parse_arp(base: Frame, data: bytes, offset: int) -> Frame:
    if len(data) - offset < 8:
        return _with(base, problem="truncated ARP header")
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", data, offset)
    if htype != 1:
        return _with(base, problem=f"ARP with hardware type {htype}")
    if ptype != ETH_TYPE_IPV4:
        return _with(base, problem=f"ARP with protocol type {ptype:#06x}")
    if hlen != 6:
        return _with(base, problem=f"ARP with hardware length {hlen}")
    if plen != 4:
        return _with(base, problem=f"ARP with protocol length {plen}")
    if len(data) - offset < 28:
        return _with(base, problem="truncated ARP body")
    body = data[offset + 8:offset + 28]
    return _with(base, arp_op=op, arp_sha=_mac(body[0:6]), arp_spa=_ip(body[6:10]),
                 arp_tha=_mac(body[10:16]), arp_tpa=_ip(body[16:20]))


def _parse_lldp(base: Frame, data: bytes, offset: int) -> Frame:
    """A TLV chain: chassis id, port id, ttl, then any TLVs up to End (or the frame's end)."""
    size = len(data)
    tlvs: list[tuple[int, bytes]] = []
    while offset < size:
        if size - offset < 2:
            return _with(base, problem="LLDP TLV runs past the frame")
        (header,) = struct.unpack_from("!H", data, offset)
        tlv_type, length = header >> 9, header & 0x01FF
        if tlv_type == _LLDP_END:
            break  # what follows is padding
        if size - offset - 2 < length:
            return _with(base, problem="LLDP TLV runs past the frame")
        tlvs.append((tlv_type, data[offset + 2:offset + 2 + length]))
        offset += 2 + length
    if len(tlvs) < 3 or [t for t, _ in tlvs[:3]] != [_LLDP_CHASSIS, _LLDP_PORT, _LLDP_TTL]:
        return _with(base, problem="LLDP does not start with chassis id, port id and ttl")
    (_, chassis), (_, port), (_, ttl) = tlvs[:3]
    if len(chassis) < 2:
        return _with(base, problem=f"LLDP chassis id TLV length {len(chassis)}")
    if len(port) < 2:
        return _with(base, problem=f"LLDP port id TLV length {len(port)}")
    if len(ttl) < 2:
        return _with(base, problem=f"LLDP ttl TLV length {len(ttl)}")
    org: list[tuple[bytes, int, bytes]] = []
    for tlv_type, value in tlvs[3:]:
        if tlv_type == _LLDP_ORG:
            if len(value) < 4:
                return _with(base, problem=f"LLDP organizational TLV length {len(value)}")
            org.append((value[0:3], value[3], value[4:]))
    (ttl_value,) = struct.unpack_from("!H", ttl, 0)
    lldp = Lldp(chassis_subtype=chassis[0], chassis_id=chassis[1:], port_subtype=port[0], port_id=port[1:],
                ttl=ttl_value, org_tlvs=tuple(org))
    return _with(base, lldp=lldp)


# -- builders -------------------------------------------------------------------------------


def _mac_bytes(mac: str) -> bytes:
    parts = mac.split(":")
    if len(parts) != 6 or any(len(p) != 2 or not all(c in "0123456789abcdefABCDEF" for c in p) for p in parts):
        raise ValueError(f"not a MAC address: {mac!r}")
    return bytes(int(p, 16) for p in parts)


def _ipv4_bytes(address: str) -> bytes:
    return ipaddress.IPv4Address(address).packed  # raises ValueError (AddressValueError) if invalid


def _tlv(tlv_type: int, value: bytes) -> bytes:
    return struct.pack("!H", (tlv_type << 9) | len(value)) + value


def _proof(key: bytes, dpid: int, port: int, sent_ms: int) -> bytes:
    message = struct.pack("!QIQ", dpid, port, sent_ms)
    return hmac.new(key, message, hashlib.sha256).digest()[:_PROOF_LEN]


def build_lldp(dpid: int, port: int, src_mac: str, key: bytes, now_ms: int) -> bytes:
    """The LLDP frame otseg sends out of `port` of switch `dpid`, with a signed proof TLV.

    Chassis id (subtype 7) "dpid:%016x", port id (subtype 2) the port as 4 bytes big-endian,
    ttl 120, an otseg organizational TLV (subtype 1) holding now_ms (8 bytes) and
    HMAC-SHA256(key, dpid 8 bytes + port 4 bytes + now_ms 8 bytes)[:16], End.
    """
    if not 0 <= dpid < 1 << 64:
        raise ValueError(f"dpid out of range: {dpid}")
    if not 0 <= port < 1 << 32:
        raise ValueError(f"port out of range: {port}")
    if not 0 <= now_ms < 1 << 64:
        raise ValueError(f"timestamp out of range: {now_ms}")
    if not key:
        raise ValueError("empty LLDP key: anyone could forge the proof")
    proof = struct.pack("!Q", now_ms) + _proof(key, dpid, port, now_ms)
    body = (
        _tlv(_LLDP_CHASSIS, bytes([_CHASSIS_LOCAL]) + b"dpid:%016x" % dpid)
        + _tlv(_LLDP_PORT, bytes([_PORT_COMPONENT]) + struct.pack("!I", port))
        + _tlv(_LLDP_TTL, struct.pack("!H", LLDP_TTL))
        + _tlv(_LLDP_ORG, OTSEG_OUI + bytes([_PROOF_SUBTYPE]) + proof)
        + _tlv(_LLDP_END, b"")
    )
    return _mac_bytes(LLDP_MULTICAST) + _mac_bytes(src_mac) + struct.pack("!H", ETH_TYPE_LLDP) + body


_HEX_LOWER = frozenset(b"0123456789abcdef")


def read_lldp(frame: Frame, key: bytes, now_ms: int, max_age_ms: int) -> tuple[int, int] | None:
    """(dpid, port) if `frame` carries otseg LLDP whose proof verifies under `key` and was
    stamped at most `max_age_ms` ago (up to 1000 ms in the future is tolerated as clock skew);
    None otherwise. Never raises."""
    lldp = frame.lldp
    if lldp is None or not key or max_age_ms < 0:
        return None
    chassis = lldp.chassis_id
    if lldp.chassis_subtype != _CHASSIS_LOCAL or len(chassis) != 21 or chassis[:5] != b"dpid:":
        return None
    if not all(c in _HEX_LOWER for c in chassis[5:]):
        return None
    if lldp.port_subtype != _PORT_COMPONENT or len(lldp.port_id) != 4:
        return None
    proofs = [info for oui, subtype, info in lldp.org_tlvs if oui == OTSEG_OUI and subtype == _PROOF_SUBTYPE]
    if len(proofs) != 1 or len(proofs[0]) != 8 + _PROOF_LEN:
        return None
    dpid = int(chassis[5:], 16)
    (port,) = struct.unpack("!I", lldp.port_id)
    (sent_ms,) = struct.unpack_from("!Q", proofs[0], 0)
    if not hmac.compare_digest(proofs[0][8:], _proof(key, dpid, port, sent_ms)):
        return None
    age = now_ms - sent_ms
    if not -_FUTURE_SKEW_MS <= age <= max_age_ms:
        return None
    return dpid, port


def build_arp(op: int, eth_src: str, eth_dst: str, sha: str, spa: str, tha: str, tpa: str,
              vlan: int | None = None) -> bytes:
    """A 42-byte Ethernet/IPv4 ARP frame (no padding: the switch pads); op 1 request, 2 reply;
    with `vlan`, an 802.1Q header with that VID (PCP 0) first."""
    if op not in (1, 2):
        raise ValueError(f"ARP operation must be 1 (request) or 2 (reply), not {op!r}")
    if vlan is not None and not 1 <= vlan <= 4094:
        raise ValueError(f"VLAN id must be 1 to 4094, not {vlan!r}")
    tag = b"" if vlan is None else struct.pack("!HH", 0x8100, vlan)
    return (
        _mac_bytes(eth_dst) + _mac_bytes(eth_src) + tag + struct.pack("!H", ETH_TYPE_ARP)
        + struct.pack("!HHBBH", 1, ETH_TYPE_IPV4, 6, 4, op)
        + _mac_bytes(sha) + _ipv4_bytes(spa) + _mac_bytes(tha) + _ipv4_bytes(tpa)
    )
