"""The probe agent that runs inside each Mininet host (network namespace).

    python -m controller.lab.agent serve --bind IP --intf IF --tcp 502,102 --udp 161 --log FILE
    python -m controller.lab.agent probe --intf IF --spec FILE.json --out FILE.json

`serve` listens on the given TCP ports (accepts, closes), answers UDP datagrams on the given
ports, and sniffs its interface: every frame that carries a probe token is logged, so
crafted frames (spoofs, L2 services, reverse SYNs) are observed where they land.
`stream`/`sink` send and count numbered UDP datagrams at a steady rate (loss measurement).
`flood` plays an unknown device gone wild: varied raw frames (random source and
destination MACs, ARP, UDP to random lab addresses and ports, odd ethertypes) at a rate.
`probe` runs a list of probes concurrently and writes their outcomes as JSON:
tcp (connect), udp (request and reply), icmp (ping), raw (a crafted frame; its outcome is
whoever logs its token). Traffic only ever goes to the lab's own hosts.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

TOKEN = b"OTSEG-PROBE:"
ETH_P_ALL = 0x0003


def _tcp_socket(bind: str, port: int) -> socket.socket:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((bind, port))
    server.listen(256)
    return server


def _tcp_listener(server: socket.socket) -> None:
    while True:
        connection, _ = server.accept()
        connection.close()


def _udp_socket(bind: str, port: int) -> socket.socket:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((bind, port))
    return server


def _udp_responder(server: socket.socket) -> None:
    while True:
        data, peer = server.recvfrom(2048)
        server.sendto(data, peer)


SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_VLAN_VALID = 0x10
AUXDATA = struct.Struct("=IIIHHHH")  # struct tpacket_auxdata


def received_tag(frame: bytes, ancillary: list[tuple[int, int, bytes]]) -> int | None:
    """The outer VLAN TCI a frame arrived with, or None if untagged. A veth strips the tag into
    metadata (offload), so it is read from PACKET_AUXDATA, else from the frame itself."""
    for level, kind, data in ancillary:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= AUXDATA.size:
            status, _, _, _, _, tci, _ = AUXDATA.unpack_from(data)
            if status & TP_STATUS_VLAN_VALID:
                return int(tci)
    if len(frame) >= 16 and frame[12:14] in (b"\x81\x00", b"\x88\xa8"):
        return int.from_bytes(frame[14:16], "big")
    return None


def _sniffer_socket(intf: str) -> socket.socket:
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    raw.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    raw.bind((intf, 0))
    return raw


def _sniffer(raw: socket.socket, log_path: str) -> None:
    """Log each probe token received (one per line); `<log>.tags` also gets the tag it came with."""
    with open(log_path, "a", buffering=1) as log, open(log_path + ".tags", "a", buffering=1) as tags:
        while True:
            frame, ancillary, _, address = raw.recvmsg(65535, socket.CMSG_SPACE(AUXDATA.size))
            if address[2] == socket.PACKET_OUTGOING:
                continue
            start = frame.find(TOKEN)
            if start >= 0:
                token = frame[start + len(TOKEN):start + len(TOKEN) + 24].split(b"\0")[0].split(b" ")[0]
                text = token.decode("ascii", "replace")
                log.write(text + "\n")
                tci = received_tag(frame, ancillary)
                tags.write(f"{text} {'untagged' if tci is None else f'vid={tci & 0xFFF},pcp={tci >> 13}'}\n")


def serve(args: argparse.Namespace) -> None:
    """Every socket is bound before `<log>.ready` appears: a test that waits for that file
    cannot send a probe the agent would miss (a fixed sleep did, on a loaded machine)."""
    workers = [threading.Thread(target=_sniffer, args=(_sniffer_socket(args.intf), args.log), daemon=True)]
    for port in _ports(args.tcp):
        workers.append(threading.Thread(target=_tcp_listener, args=(_tcp_socket(args.bind, port),), daemon=True))
    for port in _ports(args.udp):
        workers.append(threading.Thread(target=_udp_responder, args=(_udp_socket(args.bind, port),), daemon=True))
    member = _join(args.groups.split(",") if args.groups else [], args.bind)  # noqa: F841 (kept open: membership)
    for worker in workers:
        worker.start()
    with open(args.log + ".ready", "w") as ready:
        ready.write(f"{os.getpid()}\n")
    print("ready", flush=True)
    while True:
        time.sleep(3600)


def _join(groups: list[str], local: str, port: int = 0) -> socket.socket | None:
    """A UDP socket that is a member of `groups` on the interface of `local` (the kernel sends
    the IGMP reports: every lab host joins every group, so a join never decides delivery)."""
    if not groups:
        return None
    member = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    member.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    member.bind(("", port))
    for group in groups:
        member.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton(group) + socket.inet_aton(local))
    return member


def _ports(text: str) -> list[int]:
    return [int(p) for p in text.split(",") if p]


def _probe_tcp(probe: dict[str, Any], timeout: float) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout)
        try:
            connection.connect((probe["ip"], probe["port"]))
            return True
        except OSError:
            return False


def _probe_udp(probe: dict[str, Any], timeout: float) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(timeout)
        payload = TOKEN + probe["token"].encode()
        for _ in range(2):
            try:
                client.sendto(payload, (probe["ip"], probe["port"]))
                data, _ = client.recvfrom(2048)
                if data == payload:
                    return True
            except OSError:
                continue
        return False


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


_ICMP_IDS = iter(range(1, 1 << 30))
_ICMP_LOCK = threading.Lock()


def _probe_icmp(probe: dict[str, Any], timeout: float) -> bool:
    """One echo request over a raw socket (no `ping` process: many probes run at once)."""
    with _ICMP_LOCK:
        ident = next(_ICMP_IDS) & 0xFFFF
    header = bytes([8, 0, 0, 0]) + ident.to_bytes(2, "big") + (1).to_bytes(2, "big")
    payload = TOKEN + probe["token"].encode()
    packet = header[:2] + _checksum(header + payload).to_bytes(2, "big") + header[4:] + payload
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as raw:
        raw.settimeout(0.2)
        deadline = time.monotonic() + timeout
        raw.sendto(packet, (probe["ip"], 0))
        while time.monotonic() < deadline:
            try:
                data, (address, _) = raw.recvfrom(2048)
            except OSError:
                continue
            icmp = data[(data[0] & 0x0F) * 4:]
            if address == probe["ip"] and icmp[0] == 0 and int.from_bytes(icmp[4:6], "big") == ident:
                return True
    return False


def _send_raw(intf: str, frame: bytes, repeat: int) -> bool:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as raw:
        raw.bind((intf, 0))
        for _ in range(repeat):
            raw.send(frame)
            time.sleep(0.05)
    return True


def probe(args: argparse.Namespace) -> None:
    with open(args.spec) as handle:
        spec = json.load(handle)
    timeout = float(spec.get("timeout", 1.0))

    def run(item: dict[str, Any]) -> tuple[str, bool]:
        kind = item["kind"]
        if kind == "tcp":
            return item["id"], _probe_tcp(item, timeout)
        if kind == "udp":
            return item["id"], _probe_udp(item, timeout)
        if kind == "icmp":
            return item["id"], _probe_icmp(item, timeout)
        return item["id"], _send_raw(args.intf, bytes.fromhex(item["frame"]), int(item.get("repeat", 3)))

    with ThreadPoolExecutor(max_workers=int(spec.get("parallel", 48))) as pool:
        results = dict(pool.map(run, spec["probes"]))
    with open(args.out, "w") as handle:
        json.dump(results, handle)


def stream(args: argparse.Namespace) -> None:
    """Send numbered UDP datagrams at a steady rate; write how many were sent."""
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if args.group_if:  # to a group: out of the interface of this address, one hop
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(args.group_if))
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    interval = 1.0 / args.rate
    start = time.perf_counter()
    sent = 0
    while True:
        due = start + sent * interval
        now = time.perf_counter()
        if now - start >= args.seconds:
            break
        if now < due:
            time.sleep(due - now)
        try:
            sender.sendto(sent.to_bytes(8, "big") + TOKEN + b"stream", (args.ip, args.port))
        except OSError:
            pass  # no route or neighbour yet: the datagram counts as lost
        sent += 1
    with open(args.out, "w") as handle:
        json.dump({"sent": sent, "start": start}, handle)


def sink(args: argparse.Namespace) -> None:
    """Count numbered datagrams until no datagram came for `--idle` seconds after `--seconds`."""
    if args.join:  # a member of the group, counting what reaches it
        joined = _join([args.join], args.bind, args.port)
        assert joined is not None
        receiver = joined
    else:
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        receiver.bind((args.bind, args.port))
    receiver.settimeout(0.2)
    seen: set[int] = set()
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        try:
            data, _ = receiver.recvfrom(2048)
        except OSError:
            continue
        if len(data) >= 8:
            seen.add(int.from_bytes(data[:8], "big"))
    ordered = sorted(seen)
    gaps = [b - a - 1 for a, b in zip(ordered, ordered[1:]) if b - a > 1]
    with open(args.out, "w") as handle:
        json.dump({"received": len(seen), "max_seq": ordered[-1] if ordered else -1,
                   "largest_gap": max(gaps, default=0), "gaps": len(gaps)}, handle)


def _flood_frames(count: int, seed: int) -> list[bytes]:
    """`count` varied frames; every IP destination is in the lab's 10.0.0.0/8, every MAC is
    locally administered or broadcast: nothing here is addressed outside the lab."""
    import random  # noqa: PLC0415

    rng = random.Random(seed)

    def mac() -> bytes:
        return bytes([0x02 | (rng.randrange(256) & 0xFC)] + [rng.randrange(256) for _ in range(5)])

    frames = []
    for index in range(count):
        src = mac()
        dst = b"\xff" * 6 if index % 4 == 0 else mac()
        kind = index % 3
        if kind == 0:  # ARP request for a random lab address
            sip, tip = bytes([10, rng.randrange(256), rng.randrange(256), rng.randrange(1, 255)]), \
                bytes([10, rng.randrange(256), rng.randrange(256), rng.randrange(1, 255)])
            body = b"\x00\x01\x08\x00\x06\x04\x00\x01" + src + sip + b"\x00" * 6 + tip
            frames.append(dst + src + b"\x08\x06" + body)
        elif kind == 1:  # UDP to a random lab address and port
            sip = bytes([10, rng.randrange(256), rng.randrange(256), rng.randrange(1, 255)])
            dip = bytes([10, rng.randrange(256), rng.randrange(256), rng.randrange(1, 255)])
            payload = TOKEN + b"flood"
            udp = rng.randrange(1024, 65535).to_bytes(2, "big") + rng.randrange(1, 65535).to_bytes(2, "big") \
                + (8 + len(payload)).to_bytes(2, "big") + b"\x00\x00" + payload
            header = b"\x45\x00" + (20 + len(udp)).to_bytes(2, "big") + b"\x00\x00\x00\x00\x40\x11\x00\x00" + sip + dip
            header = header[:10] + _checksum(header).to_bytes(2, "big") + header[12:]
            frames.append(dst + src + b"\x08\x00" + header + udp)
        else:  # an ethertype nobody uses
            frames.append(dst + src + rng.randrange(0x9000, 0xFFFF).to_bytes(2, "big") + TOKEN + b"flood" + b"\x00" * 30)
    return frames


# Ethertypes a malformed flood uses: LLDP, IPv6, 802.1Q/ad, GOOSE, PTP, PROFINET, LACP, ARP, IPv4, and random ones.
MALFORMED_ETHERTYPES = (0x88CC, 0x86DD, 0x8100, 0x88A8, 0x9100, 0x88B8, 0x88F7, 0x8892, 0x8809, 0x0806, 0x0800)


def _malformed_frames(count: int, seed: int) -> list[bytes]:
    """`count` malformed frames from one unknown, locally administered MAC: truncated headers, odd
    ethertypes with garbage bodies, LLDP with broken TLV chains, IPv4 with bad header lengths. Every
    one ends with the probe token where its length allows, so a receiver's sniffer would see it."""
    import random  # noqa: PLC0415

    rng = random.Random(seed)
    src = bytes([0x02, 0xBA, 0xD0, rng.randrange(256), rng.randrange(256), rng.randrange(256)])
    frames = []
    for index in range(count):
        dst = rng.choice([b"\xff" * 6, b"\x01\x80\xc2\x00\x00\x0e", b"\x01\x0c\xcd\x01\x00\x01",
                          bytes([0x00, 0x00, 0x00, 0x00, 0x01, rng.randrange(256)])])
        ethertype = rng.choice(MALFORMED_ETHERTYPES) if index % 5 else rng.randrange(0x0600, 0x10000)
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 60)))
        if ethertype == 0x88CC:  # a TLV chain whose lengths lie
            body = bytes([0x02, rng.randrange(256)]) + body
        elif ethertype == 0x0800:  # version/IHL byte with a bad header length
            body = bytes([0x40 | rng.randrange(0, 5)]) + body
        frame = dst + src + ethertype.to_bytes(2, "big") + body + TOKEN + b"fuzz"
        frames.append(frame[:rng.randrange(6, len(frame) + 1)] if index % 7 == 0 else frame)
    return frames


def _lldp_frames(count: int, seed: int) -> list[bytes]:
    """LLDP that claims to come from switch ports (chassis "dpid:...", a port id) with no valid proof."""
    import random  # noqa: PLC0415

    rng = random.Random(seed)
    frames = []
    for _ in range(count):
        chassis = f"dpid:{rng.choice([1, 2, 3, 4, 11, 12, 13, 14]):016x}".encode()
        tlvs = bytes([0x02, len(chassis) + 1, 7]) + chassis + bytes([0x04, 5, 2]) + rng.randrange(1, 13).to_bytes(
            4, "big") + b"\x06\x02\x00\x78" + b"\xfe\x1c\x0e\x5e\x00\x01" + bytes(rng.randrange(256) for _ in range(24)) \
            + b"\x00\x00"
        frames.append(b"\x01\x80\xc2\x00\x00\x0e" + b"\x02\x11\x11\x11\x11\x11" + b"\x88\xcc" + tlvs)
    return frames


FLOOD_KINDS = {"varied": _flood_frames, "malformed": _malformed_frames, "lldp": _lldp_frames,
               "macs": _flood_frames}  # "macs": the varied frames, each from a new source MAC


def relay(args: argparse.Namespace) -> None:
    """A device with two NICs relaying the switches' LLDP between them (the forged-trunk attack)."""
    import select  # noqa: PLC0415

    sockets = []
    for intf in (args.intf, args.other):
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88CC))
        raw.bind((intf, 0))
        sockets.append(raw)
    relayed = 0
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select(sockets, [], [], 0.2)
        for raw in ready:
            frame, address = raw.recvfrom(65535)
            if address[2] == socket.PACKET_OUTGOING:
                continue
            sockets[1 - sockets.index(raw)].send(frame)
            relayed += 1
    with open(args.out, "w") as handle:
        json.dump({"relayed": relayed}, handle)


def flood(args: argparse.Namespace) -> None:
    """Send frames of `--kind` at `--rate` per second for `--seconds`, in small paced batches."""
    sender = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sender.bind((args.intf, 0))
    frames = FLOOD_KINDS[args.kind](4096 if args.kind in ("varied", "macs") else max(args.count, 1), args.seed)
    fresh_mac = args.kind == "macs"  # every frame from a source MAC never used before
    batch = max(1, int(args.rate / 200))  # 200 batches a second
    start = time.perf_counter()
    sent = 0
    while True:
        now = time.perf_counter()
        if now - start >= args.seconds or (args.count and sent >= args.count):
            break
        due = start + sent / args.rate
        if now < due:
            time.sleep(due - now)
        for _ in range(batch):
            frame = frames[sent % len(frames)]
            if fresh_mac:  # locally administered, counter-numbered: distinct for 2^32 frames
                frame = frame[:6] + b"\x06\x5e" + sent.to_bytes(4, "big") + frame[12:]
            try:
                sender.send(frame)
            except OSError:
                pass
            sent += 1
    with open(args.out, "w") as handle:
        json.dump({"sent": sent, "seconds": time.perf_counter() - start}, handle)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="otseg-lab-agent")
    sub = parser.add_subparsers(dest="mode", required=True)
    serve_parser = sub.add_parser("serve")
    serve_parser.add_argument("--bind", required=True)
    serve_parser.add_argument("--intf", required=True)
    serve_parser.add_argument("--tcp", default="")
    serve_parser.add_argument("--udp", default="")
    serve_parser.add_argument("--log", required=True)
    serve_parser.add_argument("--groups", default="", help="IPv4 groups to join (comma separated)")
    serve_parser.set_defaults(handler=serve)
    probe_parser = sub.add_parser("probe")
    probe_parser.add_argument("--intf", required=True)
    probe_parser.add_argument("--spec", required=True)
    probe_parser.add_argument("--out", required=True)
    probe_parser.set_defaults(handler=probe)
    stream_parser = sub.add_parser("stream")
    stream_parser.add_argument("--ip", required=True)
    stream_parser.add_argument("--port", type=int, required=True)
    stream_parser.add_argument("--rate", type=float, default=1000)
    stream_parser.add_argument("--seconds", type=float, required=True)
    stream_parser.add_argument("--out", required=True)
    stream_parser.add_argument("--group-if", default="", help="--ip is a group: send out of this address's interface")
    stream_parser.set_defaults(handler=stream)
    sink_parser = sub.add_parser("sink")
    sink_parser.add_argument("--bind", required=True)
    sink_parser.add_argument("--port", type=int, required=True)
    sink_parser.add_argument("--seconds", type=float, required=True)
    sink_parser.add_argument("--out", required=True)
    sink_parser.add_argument("--join", default="", help="count datagrams to this group (joined on --bind's interface)")
    sink_parser.set_defaults(handler=sink)
    flood_parser = sub.add_parser("flood")
    flood_parser.add_argument("--intf", required=True)
    flood_parser.add_argument("--rate", type=float, default=10000)
    flood_parser.add_argument("--seconds", type=float, required=True)
    flood_parser.add_argument("--seed", type=int, default=7)
    flood_parser.add_argument("--out", required=True)
    flood_parser.add_argument("--kind", choices=sorted(FLOOD_KINDS), default="varied")
    flood_parser.add_argument("--count", type=int, default=0, help="stop after this many frames (0: by time)")
    flood_parser.set_defaults(handler=flood)
    relay_parser = sub.add_parser("relay")
    relay_parser.add_argument("--intf", required=True)
    relay_parser.add_argument("--other", required=True)
    relay_parser.add_argument("--seconds", type=float, required=True)
    relay_parser.add_argument("--out", required=True)
    relay_parser.set_defaults(handler=relay)
    args = parser.parse_args(argv)
    args.handler(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
