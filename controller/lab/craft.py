"""Turn a `Frame` into the bytes a lab host puts on its wire (tags, IPv4 fragments, TCP/UDP/ICMP, ARP).

For crafted attack frames in the lab: whatever `controller.core.frames.parse_frame` reads
from these bytes is the frame we meant (tested), so the lab's expectation, computed by the
reference semantics on the Frame, is about exactly what was sent. A payload (the probe
token) is appended to every frame so that the receivers' sniffers can tell who got it.
"""

from __future__ import annotations

import struct

from controller.core.frames import Frame

ETH_IPV4, ETH_ARP = 0x0800, 0x0806


def _mac(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


def _ip(text: str | None) -> bytes:
    return bytes(int(part) for part in (text or "0.0.0.0").split("."))


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def frame_bytes(frame: Frame, payload: bytes = b"") -> bytes:
    header = _mac(frame.eth_dst) + _mac(frame.eth_src)
    for tpid, tci in frame.tags:
        header += struct.pack("!HH", tpid, tci)
    header += struct.pack("!H", frame.eth_type)
    if frame.eth_type == ETH_ARP:
        body = struct.pack("!HHBBH", 1, ETH_IPV4, 6, 4, frame.arp_op or 1) + _mac(frame.arp_sha or frame.eth_src) \
            + _ip(frame.arp_spa) + _mac(frame.arp_tha or "00:00:00:00:00:00") + _ip(frame.arp_tpa)
        return header + body + payload
    if frame.eth_type != ETH_IPV4:
        return header + payload
    return header + _ipv4(frame, payload)


def _ipv4(frame: Frame, payload: bytes) -> bytes:
    proto = frame.ip_proto or 0
    if frame.ip_frag == "later":
        transport = payload  # a later fragment carries no transport header
        flags_offset = 185  # offset 1480 bytes (in 8-byte units), no more fragments
    else:
        transport = _transport(frame, proto, payload)
        flags_offset = 0x2000 if frame.ip_frag == "first" else 0x4000  # MF, or DF
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(transport), 0x1234, flags_offset, 64, proto, 0,
                         _ip(frame.ipv4_src), _ip(frame.ipv4_dst))
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + transport


def _transport(frame: Frame, proto: int, payload: bytes) -> bytes:
    if proto == 6:
        segment = struct.pack("!HHIIBBHHH", frame.tcp_src or 0, frame.tcp_dst or 0, 1, 0, 5 << 4,
                              (frame.tcp_flags or 0) & 0xFF, 1024, 0, 0) + payload
        pseudo = _ip(frame.ipv4_src) + _ip(frame.ipv4_dst) + struct.pack("!BBH", 0, 6, len(segment))
        return segment[:16] + struct.pack("!H", checksum(pseudo + segment)) + segment[18:]
    if proto == 17:
        return struct.pack("!HHHH", frame.udp_src or 0, frame.udp_dst or 0, 8 + len(payload), 0) + payload
    if proto == 1:
        message = struct.pack("!BBHI", frame.icmp_type or 0, frame.icmp_code or 0, 0, 0x00010001) + payload
        return message[:2] + struct.pack("!H", checksum(message)) + message[4:]
    return payload
