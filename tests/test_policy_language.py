"""The policy contract (shared/design/policy-language.md): valid forms are read as specified."""

from __future__ import annotations

from controller.core.catalog import BUILTIN_SERVICES
from controller.core.model import Endpoint, Intra, Location, ServiceMatch
from controller.io.files import load_policy_text

BASE = """
policy: p
switches: {s3: 3, s4: "0x4", s5: "00:00:00:00:00:00:00:05"}
zones:
  a: {level: 3.5, sl_target: 2, intra: [modbus, goose], mode: monitor}
  b: {level: 1, intra: allow}
assets:
  x: {zone: a, mac: 00:00:00:00:02:01, ip: 10.0.0.1, location: {switch: s3, port: 1}}
  y: {zone: b, mac: "00-00-00-00-02-02", location: {switch: s5, port: 2}}
  z: {zone: b, mac: "00:00:00:00:02:03", ip: 10.0.0.3, location: {switch: 4, port: 3}}
services:
  vendor-diag: {tcp: 7001}
  io-range: {udp: "34962-34964"}
  multi: {tcp: [1, 2], udp: 3, ethertype: 0x88b5, icmp: echo}
conduits:
  - {name: c1, from: a, to: [y, z], services: [goose], reason: why, bidirectional: true}
  - {name: c3, from: x, to: z, services: [vendor-diag, multi]}
  - {name: c2, from: [x], to: b, services: io-range, mode: monitor}
"""


def test_every_form_of_the_contract_is_read() -> None:
    policy = load_policy_text(BASE.encode(), "p.yaml")
    assert policy.mode == "enforce"
    assert dict(policy.switch_names) == {"s3": 3, "s4": 4, "s5": 5}
    assert policy.zone("a").level == 3.5 and policy.zone("a").intra is Intra.SERVICES
    assert policy.zone("a").intra_services == ("goose", "modbus") and policy.zone("a").mode == "monitor"
    assert policy.zone("b").intra is Intra.ALLOW
    assert policy.asset("x").mac == "00:00:00:00:02:01"  # unquoted: not a base-60 number
    assert policy.asset("y").mac == "00:00:00:00:02:02" and policy.asset("y").ip is None
    assert policy.asset("x").location == Location(3, 1)
    assert policy.asset("y").location == Location(5, 2)
    assert policy.asset("z").location == Location(4, 3)
    assert policy.service("io-range").matches == (ServiceMatch("udp", 34962, 34964),)
    assert set(policy.service("multi").matches) == {ServiceMatch("tcp", 1, 1), ServiceMatch("tcp", 2, 2),
                                                    ServiceMatch("udp", 3, 3), ServiceMatch("ethertype", 0x88B5, 0x88B5),
                                                    ServiceMatch("icmp")}
    c1, c3, c2 = policy.conduits
    assert c1.sources == (Endpoint("zone", "a"),) and c1.destinations == (Endpoint("asset", "y"), Endpoint("asset", "z"))
    assert c1.bidirectional and c1.reason == "why" and c1.mode is None
    assert c2.services == ("io-range",) and c2.mode == "monitor"
    assert c3.services == ("multi", "vendor-diag")


def test_anchors_and_merge_keys_are_allowed() -> None:
    text = BASE.replace("assets:\n", "assets:\n  w: {<<: &cell {zone: b}, mac: \"00:00:00:00:02:04\"}\n"
                                      "  v: {<<: *cell, mac: \"00:00:00:00:02:05\"}\n")
    policy = load_policy_text(text.encode(), "p.yaml")
    assert policy.asset("w").zone == "b" and policy.asset("v").zone == "b"


def test_the_builtin_catalog_covers_the_contract() -> None:
    catalog = {s.name: set(s.matches) for s in BUILTIN_SERVICES}
    tcp = lambda p, q=None: ServiceMatch("tcp", p, q or p)  # noqa: E731
    udp = lambda p, q=None: ServiceMatch("udp", p, q or p)  # noqa: E731
    eth = lambda t: ServiceMatch("ethertype", t, t)  # noqa: E731
    expected = {
        "icmp": {ServiceMatch("icmp")}, "modbus": {tcp(502)}, "dnp3": {tcp(20000), udp(20000)},
        "enip": {tcp(44818), udp(44818)}, "enip-io": {udp(2222)}, "s7comm": {tcp(102)},
        "iec61850-mms": {tcp(102)}, "iec104": {tcp(2404)}, "opcua": {tcp(4840)}, "bacnet": {udp(47808)},
        "hart-ip": {tcp(5094), udp(5094)}, "mqtt": {tcp(1883)}, "mqtts": {tcp(8883)},
        "fins": {udp(9600), tcp(9600)}, "goose": {eth(0x88B8)}, "sv": {eth(0x88BA)},
        "profinet-rt": {eth(0x8892)}, "ptp": {eth(0x88F7), udp(319, 320)}, "ssh": {tcp(22)},
        "https": {tcp(443)}, "rdp": {tcp(3389)}, "dns": {udp(53), tcp(53)}, "ntp": {udp(123)},
        "syslog": {udp(514)},
    }
    for name, matches in expected.items():
        assert {(m.protocol, m.low, m.high) for m in catalog[name]} == {
            (m.protocol, m.low, m.high) for m in matches}, name
