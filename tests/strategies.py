"""Hypothesis strategies: random but valid policies (as YAML documents) and lab networks."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import strategies as st

from controller.core.model import Policy
from controller.core.topology import Link, PortRef, Topology
from controller.io.files import load_policy_text

SERVICE_POOL = ["modbus", "icmp", "dnp3", "goose", "ptp", "sv", "snmp", "io-range", "raw-frames", "opcua", "ntp",
                "fixed-client"]
IP_SERVICES = {"modbus", "icmp", "dnp3", "ptp", "snmp", "io-range", "opcua", "ntp", "fixed-client"}
UDP_SERVICES = {"dnp3", "ptp", "snmp", "io-range", "ntp", "fixed-client"}
GROUP_POOL = ["239.192.0.1", "239.192.0.2", "224.0.1.129"]


@st.composite
def topologies(draw: st.DrawFn) -> Topology:
    count = draw(st.integers(1, 6))
    switches = list(range(1, count + 1))
    next_port = {s: 10 for s in switches}
    links: set[Link] = set()

    def connect(a: int, b: int) -> None:
        links.add(Link.between(PortRef(a, next_port[a]), PortRef(b, next_port[b])))
        next_port[a] += 1
        next_port[b] += 1

    for index in range(1, count):
        connect(draw(st.sampled_from(switches[:index])), switches[index])
    for _ in range(draw(st.integers(0, 3)) if count > 2 else 0):  # extra links make rings
        a, b = draw(st.sampled_from(switches)), draw(st.sampled_from(switches))
        if a != b:
            connect(a, b)
    return Topology(switches=frozenset(switches), links=frozenset(links))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Policy, Topology]:
    topology = draw(topologies())
    zone_names = [f"z{i}" for i in range(draw(st.integers(1, 4)))]
    zones: dict[str, Any] = {}
    for name in zone_names:
        zone: dict[str, Any] = {"level": draw(st.sampled_from([0, 1, 2, 3]))}
        intra = draw(st.sampled_from(["deny", "allow", "services", None]))
        if intra == "services":
            zone["intra"] = draw(st.lists(st.sampled_from(SERVICE_POOL), min_size=1, max_size=3, unique=True))
        elif intra:
            zone["intra"] = intra
        mode = draw(st.sampled_from([None, None, None, "enforce", "monitor"]))
        if mode:
            zone["mode"] = mode
        zones[name] = zone
    asset_count = draw(st.integers(2, 8))
    assets: dict[str, Any] = {}
    attachments: list[tuple[str, PortRef]] = []
    switches = sorted(topology.switches)
    for index in range(asset_count):
        name = f"a{index}"
        asset: dict[str, Any] = {"zone": draw(st.sampled_from(zone_names)), "mac": f"00:00:00:00:00:{index + 1:02x}"}
        if draw(st.integers(0, 9)) > 0:
            asset["ip"] = f"10.0.0.{index + 1}"
        assets[name] = asset
        placement = draw(st.sampled_from(["seen", "seen", "seen", "pinned", "nowhere"]))
        where = PortRef(draw(st.sampled_from(switches)), index + 1)
        if placement == "pinned":
            asset["location"] = {"switch": where.dpid, "port": where.port}
        elif placement == "seen":
            attachments.append((name, where))
    conduits = []
    for index in range(draw(st.integers(0, 5))):
        services = draw(st.lists(st.sampled_from(SERVICE_POOL), min_size=1, max_size=3, unique=True))
        needs_ip = bool(IP_SERVICES & set(services))
        endpoints = zone_names + [n for n, a in assets.items() if "ip" in a or not needs_ip]
        conduit: dict[str, Any] = {
            "name": f"c{index}",
            "from": draw(st.lists(st.sampled_from(endpoints), min_size=1, max_size=2, unique=True)),
            "to": draw(st.lists(st.sampled_from(endpoints), min_size=1, max_size=2, unique=True)),
            "services": services,
        }
        if draw(st.booleans()):
            conduit["bidirectional"] = True
        if UDP_SERVICES & set(services) and draw(st.integers(0, 2)) == 0:
            conduit["groups"] = draw(st.lists(st.sampled_from(GROUP_POOL), min_size=1, max_size=2, unique=True))
        mode = draw(st.sampled_from([None, None, "enforce", "monitor"]))
        if mode:
            conduit["mode"] = mode
        conduits.append(conduit)
    document = {
        "policy": "random",
        "mode": draw(st.sampled_from(["enforce", "enforce", "enforce", "monitor"])),
        "zones": zones,
        "assets": assets,
        "services": {"io-range": {"udp": "34962-34964"}, "raw-frames": {"ethertype": 0x88B5},
                     "fixed-client": {"tcp": 7001, "udp": 7002, "client_ports": ["600-700", 40000]}},
        "conduits": conduits,
    }
    policy = load_policy_text(yaml.safe_dump(document).encode(), "random.yaml")
    ports = {where for _, where in attachments} | {PortRef(a.location.dpid, a.location.port)
                                                   for a in policy.assets if a.location}
    ports |= {end for link in topology.links for end in (link.a, link.b)} | {PortRef(min(switches), 99)}
    return policy, Topology(topology.switches, topology.links, tuple(sorted(attachments)), frozenset(ports))
