"""Walking around the segments from a switch port, on real Open vSwitch, judged at the receivers.

The plant lab's probe matrix (test_plant_lab) already sends the crafted containment frames
(VLAN tags, foreign destination IPs, directed broadcasts, responder-initiated TCP/UDP,
later fragments, misaddressed ARP). This module covers the attacks that need more than one
frame: a two-NIC LLDP relay, an LLDP flood during a ring cut, a quiet device's MAC from a
free port, a switch that loses its control channel, in-band control, a malformed-frame
flood, and fragmented traffic that the policy allows.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from controller.core.frames import Frame
from controller.lab.craft import frame_bytes
from controller.lab.plan import TOKEN
from controller.lab.traffic import Stream
from controller.lab.verify import Verifier
from tests.integration.conftest import ROOT, Scenario, running

pytestmark = pytest.mark.integration
ALLOWED = ("hmi-1", "plc-packer-1", 44818)  # crosses the cell ring


@pytest.fixture(scope="module")
def plant(workdir: Path) -> Iterator[Scenario]:
    yield from running("plant.yaml", "plant.yaml", workdir, announce=True)


class Sniffers:
    """Every lab host logs the probe tokens it receives."""

    def __init__(self, plant: Scenario, name: str) -> None:
        self.verifier = Verifier(plant.lab, plant.policy, plant.controller.status, str(plant.workdir / name))

    def __enter__(self) -> "Sniffers":
        self.verifier.start_agents(set(), set())
        return self

    def __exit__(self, *_: object) -> None:
        self.verifier.stop_agents()

    def receivers(self, token: str) -> set[str]:
        time.sleep(0.5)
        return self.verifier._sniffed().get(token, set())  # noqa: SLF001


def _send(plant: Scenario, host: str, frames: list[bytes], intf: str | None = None) -> None:
    info = plant.lab.hosts[host]
    code = ("import socket,sys,time;s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW);"
            f"s.bind(({(intf or info.intf)!r},0));fs=[bytes.fromhex(h) for h in sys.argv[1:]];"
            "[(s.send(f),time.sleep(0.02)) for f in fs]")
    plant.lab.node(host).cmd(f"{sys.executable} -c \"{code}\" " + " ".join(f.hex() for f in frames))


def _agent(plant: Scenario, host: str, *args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return plant.lab.node(host).popen([sys.executable, "-m", "controller.lab.agent", *args], env=env)  # type: ignore[no-any-return]


def _declared_up(status: dict) -> int:  # type: ignore[type-arg]
    return sum(1 for item in status["link_states"]["declared"] if item["up"])


def test_a_two_nic_lldp_relay_is_a_pending_link_never_a_trunk(plant: Scenario) -> None:
    rogue = plant.lab.hosts["rogue-laptop"]
    second = plant.lab.add_nic("rogue-laptop", "sup", 6)  # the laptop's other NIC, in a free port of sup
    relay = _agent(plant, "rogue-laptop", "relay", "--intf", rogue.intf, "--other", second, "--seconds", "12",
                   "--out", str(plant.workdir / "relay.json"))
    status = plant.controller.wait_for(lambda s: s["link_states"]["pending"], 15, "a pending link")
    relay.wait(timeout=30)
    assert json.loads((plant.workdir / "relay.json").read_text())["relayed"] > 0
    pending = {(p["a"], p["b"]) for p in status["link_states"]["pending"]}
    assert ("0x4:6", "0xc:5") in pending
    assert len(status["links"]) == len(plant.description.links)  # only the declared ones
    assert not any(end in ("0x4:6", "0xc:5") for link in status["links"] for end in link)
    plc = plant.policy.asset("plc-filler-2")
    with Sniffers(plant, "relay-sniff") as sniffers:  # through the "trunk": an unknown MAC, any IP
        frame = Frame(plc.mac, rogue.mac, (), 0x0800, ipv4_src="10.0.1.99", ipv4_dst=plc.ip, ip_proto=17,
                      udp_src=40000, udp_dst=2222)
        _send(plant, "rogue-laptop", [frame_bytes(frame, TOKEN + b"relay1 " + b"\0" * 16)] * 3, intf=second)
        _send(plant, "rogue-laptop", [frame_bytes(frame, TOKEN + b"relay2 " + b"\0" * 16)] * 3)
        assert sniffers.receivers("relay1") == set() and sniffers.receivers("relay2") == set()
    answer = json.loads(urllib.request.urlopen(plant.controller.api_url + "/v1/links", timeout=10).read())
    assert any(p["reason"] for p in answer["pending"])


def test_an_lldp_flood_from_one_port_does_not_expire_the_real_links_during_a_ring_cut(plant: Scenario) -> None:
    flood = _agent(plant, "rogue-laptop", "flood", "--intf", plant.lab.hosts["rogue-laptop"].intf, "--kind", "lldp",
                   "--rate", "5000", "--seconds", "10", "--count", "0", "--out", str(plant.workdir / "lldp-flood.json"))
    time.sleep(2)
    declared = len(plant.description.links)
    lowest = declared
    plant.lab.set_link("ring-2", "ring-3", up=False)
    for _ in range(6):
        time.sleep(0.5)
        lowest = min(lowest, _declared_up(plant.controller.status() or {"link_states": {"declared": []}}))
    plant.lab.set_link("ring-2", "ring-3", up=True)
    plant.controller.wait_for(lambda s: _declared_up(s) == declared, 10, "every declared link up again")
    flood.wait(timeout=30)
    assert json.loads((plant.workdir / "lldp-flood.json").read_text())["sent"] > 20000
    assert lowest == declared - 1  # only the cut link went down, although the flood never stopped


def test_a_quiet_devices_mac_from_a_free_port_is_a_conflict_not_a_move(plant: Scenario) -> None:
    victim = plant.policy.asset("plc-filler-2")  # unpinned
    home = (plant.controller.status() or {})["assets"]["located"][victim.name]
    grab = Frame("ff:ff:ff:ff:ff:ff", victim.mac, (), 0x0806, arp_op=1, arp_sha=victim.mac, arp_spa=victim.ip,
                 arp_tha="00:00:00:00:00:00", arp_tpa=victim.ip)
    for _ in range(3):
        _send(plant, "rogue-laptop", [frame_bytes(grab, b"")] * 5)
        time.sleep(1)
    status = plant.controller.status() or {}
    assert status["assets"]["located"][victim.name] == home
    assert status["events"].get("conflict", 0) > 0


def test_a_switch_that_loses_its_control_channel_keeps_its_assets(plant: Scenario) -> None:
    before = (plant.controller.status() or {})["assets"]["located"]
    plant.lab.cut_control("ring-2")
    plant.controller.wait_for(lambda s: "0xc" not in s["switches"], 20, "ring-2 disconnected")
    # Its assets keep talking (ring-2 still enforces its tables): their allowed frames reach the
    # neighbours' trunk ports, which must not be taken as the assets having moved there. And the
    # other switches change nothing: traffic to its assets keeps flowing while it is headless.
    time.sleep(1.0)  # a reconcile after the disconnect
    during = Stream(plant.lab, *ALLOWED, 4, plant.workdir / "disconnected", rate=200)
    during.start()
    flowing = during.result()
    assert flowing.received >= 0.99 * flowing.sent, flowing
    assert "0xc" in (plant.controller.status() or {})["headless_switches"]
    plant.lab.restore_control("ring-2")
    after = plant.controller.wait_for(lambda s: "0xc" in s["switches"] and s["switches"]["0xc"]["programmed"]
                                      and len(s["links"]) == len(plant.description.links), 30, "ring-2 back")
    for name in ("plc-packer-1", "plc-packer-2"):
        assert after["assets"]["located"][name] == before[name], name
    stream = Stream(plant.lab, *ALLOWED, 2, plant.workdir / "reconnected", rate=200)
    stream.start()
    result = stream.result()
    assert result.received >= 0.95 * result.sent, result  # reachable again at once


def test_in_band_control_is_reported_as_an_unsafe_switch(plant: Scenario) -> None:
    bridge = plant.lab.switch_node("ring-1")
    subprocess.run(["ovs-vsctl", "remove", "bridge", bridge, "other-config", "disable-in-band"], check=True)
    try:
        status = plant.controller.wait_for(lambda s: any("in-band-control" in line for line in
                                                         s.get("switch_safety", {}).get("0xb", [])), 30,
                                           "the in-band setting reported")
        assert "0xb" in status["switch_safety"]
        metrics = urllib.request.urlopen(plant.controller.api_url + "/metrics", timeout=10).read().decode()
        assert 'otseg_switch_unsafe_settings{code="in-band-control",severity="error",switch="0xb"} 1.0' in metrics
        assert "UNSAFE SWITCH SETTING" in plant.controller.log_text()
    finally:
        subprocess.run(["ovs-vsctl", "set", "bridge", bridge, "other-config:disable-in-band=true"], check=True)
    plant.controller.wait_for(lambda s: "0xb" not in s.get("switch_safety", {}), 30, "the report cleared")


def _rss_kb(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1))  # type: ignore[union-attr]


def test_a_malformed_frame_flood_costs_no_traceback_and_reaches_nobody(plant: Scenario) -> None:
    pid = plant.controller.pid
    assert pid is not None
    log_before = plant.controller.log_text().count("Traceback")
    rss_before = _rss_kb(pid)
    allowed = Stream(plant.lab, *ALLOWED, 7, plant.workdir / "fuzz")
    with Sniffers(plant, "fuzz-sniff") as sniffers:
        allowed.start()
        fuzz = _agent(plant, "rogue-laptop", "flood", "--intf", plant.lab.hosts["rogue-laptop"].intf, "--kind",
                      "malformed", "--rate", "1000", "--seconds", "30", "--count", "5000", "--seed", "18",
                      "--out", str(plant.workdir / "fuzz.json"))
        fuzz.wait(timeout=60)
        reached = sniffers.receivers("fuzz")
    result = allowed.result()
    sent = json.loads((plant.workdir / "fuzz.json").read_text())
    assert sent["sent"] >= 5000 and sent["seconds"] <= 6.5
    status = plant.controller.status() or {}
    assert status["switches"] and all(s["programmed"] for s in status["switches"].values())  # alive, enforcing
    assert plant.controller.log_text().count("Traceback") == log_before == 0
    assert reached == set()  # the fuzzing port reaches nothing
    assert result.received >= 0.99 * result.sent, result  # the allowed conduit across the ring keeps working
    assert _rss_kb(pid) - rss_before < 30_000, (rss_before, _rss_kb(pid))


def test_fragmented_traffic_the_policy_allows_passes(plant: Scenario) -> None:
    target = plant.policy.asset("plc-filler-2")  # ews -> cell-filling icmp (monitor-mode conduit: forwarded)
    output = plant.lab.node("ews").cmd(f"ping -c 3 -i 0.3 -W 1 -s 3000 {target.ip}")
    assert "3 received" in output, output


def test_denied_frames_that_look_allowed_raise_no_false_alarm(plant: Scenario) -> None:
    """The controller judges a sampled frame on the switch's keys: an ARP whose target is a peer but
    whose destination MAC is not, and a first TCP fragment too short for its header (Open vSwitch
    sees no ports), are denied by the switch and by the controller alike."""
    hmi, plc, historian = (plant.policy.asset(n) for n in ("hmi-1", "plc-packer-1", "historian"))
    before = ((plant.controller.status() or {})["packet_ins"]).get("allowed-traffic", 0)
    arp = Frame(historian.mac, hmi.mac, (), 0x0806, arp_op=1, arp_sha=hmi.mac, arp_spa=hmi.ip,
                arp_tha="00:00:00:00:00:00", arp_tpa=plc.ip)  # hmi-1 may ARP plc-packer-1, not historian
    tiny = (bytes.fromhex(plc.mac.replace(":", "") + hmi.mac.replace(":", "") + "0800")
            + bytes.fromhex("45000024123420004006") + b"\0\0" + bytes(int(x) for x in (hmi.ip or "").split("."))
            + bytes(int(x) for x in (plc.ip or "").split(".")) + (40000).to_bytes(2, "big") + (502).to_bytes(2, "big")
            + b"\0" * 12)  # MF set, offset 0, 16 bytes of TCP: no flags, no complete header
    with Sniffers(plant, "false-alarm") as sniffers:
        _send(plant, "hmi-1", [frame_bytes(arp, TOKEN + b"alarm1 " + b"\0" * 16)] * 3 + [tiny] * 3)
        assert sniffers.receivers("alarm1") == set()
    time.sleep(1)
    status = plant.controller.status() or {}
    assert status["packet_ins"].get("allowed-traffic", 0) == before == 0
    assert "allowed traffic reached the controller" not in plant.controller.log_text()


def test_a_stateful_conduit_admits_replies_only_within_the_initiators_exchanges(plant: Scenario) -> None:
    """time-sync (ntp, udp 123 to 123) is stateful: the time server (ops switch) cannot send
    first, to hmi-1 (sup switch) or anyone; a real NTP-like exchange from hmi-1 works."""
    from controller.lab.scenarios import Scenarios  # noqa: PLC0415

    result = Scenarios(plant.lab, plant.policy, plant.controller, plant.workdir / "stateful").stateful_conduit()
    assert result is not None and result.held, result
    server = plant.lab.node("time-server").popen(
        ["python3", "-c", "import socket;s=socket.socket(2,2);s.bind(('10.0.3.20',123));s.settimeout(8);"
                          "d,a=s.recvfrom(100);s.sendto(b'time '+d,a)"])
    time.sleep(0.5)
    asked = plant.lab.node("hmi-1").cmd(
        "python3 -c \"import socket;s=socket.socket(2,2);s.bind(('10.0.2.1',123));s.settimeout(3);"
        "s.sendto(b'now?',('10.0.3.20',123));print(s.recvfrom(100)[0])\" 2>&1")
    server.wait(timeout=10)
    assert "time now?" in asked, asked


def _tags(plant: Scenario, name: str, token: str) -> dict[str, str]:
    """host -> how `token` arrived there ("untagged" or "vid=N,pcp=P"), read at its NIC."""
    found: dict[str, str] = {}
    for path in (plant.workdir / name).glob("*.sniff.tags"):
        for line in path.read_text().splitlines():
            label, how = line.split()
            if label == token:
                found[path.name.removesuffix(".sniff.tags")] = how
    return found


def test_a_vlan_asset_is_admitted_with_its_vid_only_and_no_tag_leaks(plant: Scenario) -> None:
    """A push declares ied-2 on VLAN 5 (this machine has no 8021q module, so the lab host's own
    stack cannot tag: crafted frames play the device). ied-2's GOOSE, tagged VID 5 at priority 7,
    reaches ied-1 untagged; untagged, another VID, or a second tag reach nobody; ied-1's trip
    reaches ied-2 with VID 5 at priority 0 and ied-3 untagged. Unicast IP too: hmi-1's MMS SYN
    reaches ied-2 tagged VID 5, ied-2's tagged SYN-ACK reaches hmi-1 untagged, an untagged one
    nobody."""
    original = (ROOT / "policies" / "plant.yaml").read_text()
    declared = original.replace('ip: 10.0.5.2, location: {switch: ring-3, port: 2}}',
                                'ip: 10.0.5.2, location: {switch: ring-3, port: 2}, vlan: 5}')
    assert declared != original
    _push(plant, declared)
    try:
        hmi, ied1, ied2 = (plant.policy.asset(n) for n in ("hmi-1", "ied-1", "ied-2"))
        group = "01:0c:cd:01:00:01"

        def mms(src: object, dst: object, tags: tuple[tuple[int, int], ...], sport: int, dport: int,
                flags: int) -> Frame:
            return Frame(dst.mac, src.mac, tags, 0x0800, ipv4_src=src.ip, ipv4_dst=dst.ip,  # type: ignore[attr-defined]
                         ip_proto=6, tcp_src=sport, tcp_dst=dport, tcp_flags=flags)

        sends = {
            "vlan-own": (ied2, Frame(group, ied2.mac, ((0x8100, 0xE005),), 0x88B8)),
            "vlan-none": (ied2, Frame(group, ied2.mac, (), 0x88B8)),
            "vlan-other": (ied2, Frame(group, ied2.mac, ((0x8100, 6),), 0x88B8)),
            "vlan-inner": (ied2, Frame(group, ied2.mac, ((0x8100, 5), (0x8100, 100)), 0x88B8)),
            "vlan-trip": (ied1, Frame(group, ied1.mac, (), 0x88B8)),
            "vlan-syn": (hmi, mms(hmi, ied2, (), 40000, 102, 0x02)),
            "vlan-synack": (ied2, mms(ied2, hmi, ((0x8100, 5),), 102, 40000, 0x12)),
            "vlan-synack-untagged": (ied2, mms(ied2, hmi, (), 102, 40000, 0x12)),
        }
        with Sniffers(plant, "vlan") as sniff:
            for token, (sender, frame) in sends.items():
                _send(plant, sender.name, [frame_bytes(frame, TOKEN + token.encode() + b" " + b"\0" * 40)] * 2)
            time.sleep(0.5)
            got = {token: sniff.receivers(token) for token in sends}
        tags = {token: _tags(plant, "vlan", token) for token in sends}
    finally:
        _push(plant, original)
    assert got == {"vlan-own": {"ied-1"}, "vlan-none": set(), "vlan-other": set(), "vlan-inner": set(),
                   "vlan-trip": {"ied-2", "ied-3"}, "vlan-syn": {"ied-2"}, "vlan-synack": {"hmi-1"},
                   "vlan-synack-untagged": set()}, got
    assert tags["vlan-own"] == {"ied-1": "untagged"}, tags
    assert tags["vlan-trip"] == {"ied-2": "vid=5,pcp=0", "ied-3": "untagged"}, tags
    assert tags["vlan-syn"] == {"ied-2": "vid=5,pcp=0"}, tags
    assert tags["vlan-synack"] == {"hmi-1": "untagged"}, tags


def _push(plant: Scenario, text: str) -> None:
    plant.controller.post("/v1/policy", text.encode())
