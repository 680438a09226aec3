"""Generated policies and topologies for benchmarks (seeded, reproducible).

Topology: two core switches and edge switches each uplinked to both cores (redundant, as
industrial networks are). Assets are spread round-robin over the edge switches and over
the zones; conduits join random zone pairs (and some asset-to-zone) with 1-2 services.
"""

from __future__ import annotations

import random
from typing import Any

import yaml

from controller.core.model import Policy
from controller.core.topology import Link, PortRef, Topology
from controller.io.files import load_policy_text

SERVICES = ["modbus", "enip", "s7comm", "opcua", "iec104", "dnp3", "bacnet", "ntp", "syslog", "https", "ssh",
            "mqtt", "goose", "profinet-rt", "icmp", "snmp"]


def policy_document(assets: int, zones: int, conduits: int, seed: int = 1) -> dict[str, Any]:
    rng = random.Random(seed)
    zone_names = [f"zone-{i:03d}" for i in range(zones)]
    document: dict[str, Any] = {
        "policy": f"generated-{assets}-{zones}-{conduits}",
        "zones": {name: {"level": rng.choice([1, 2, 3])} for name in zone_names},
        "assets": {},
        "conduits": [],
    }
    for i in range(assets):
        document["assets"][f"asset-{i:05d}"] = {
            "zone": zone_names[i % zones], "mac": f"02:00:00:{(i >> 16) & 0xff:02x}:{(i >> 8) & 0xff:02x}:{i & 0xff:02x}",
            "ip": f"10.{(i >> 16) & 0xff}.{(i >> 8) & 0xff}.{(i & 0xff) + 1 if (i & 0xff) < 254 else 254}",
        }
    # unique IPs: rebuild the last octet scheme simply from the index
    for i, asset in enumerate(document["assets"].values()):
        asset["ip"] = f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}" if i % 256 else f"10.{i // 65536 + 100}.{(i // 256) % 256}.1"
    asset_names = list(document["assets"])
    for index in range(conduits):
        source = rng.choice(zone_names) if rng.random() < 0.8 else rng.choice(asset_names)
        target = rng.choice(zone_names)
        document["conduits"].append({"name": f"c-{index:04d}", "from": source, "to": target,
                                     "services": rng.sample(SERVICES, rng.choice([1, 2]))})
    return document


def generated_policy(assets: int, zones: int, conduits: int, seed: int = 1) -> Policy:
    return load_policy_text(yaml.safe_dump(policy_document(assets, zones, conduits, seed)).encode(), "generated.yaml")


def generated_topology(policy: Policy, switches: int, placement: str = "zone") -> Topology:
    """Two cores (dpids 1, 2) and `switches - 2` edge switches, each uplinked to both cores.

    placement "zone": a zone's assets share an edge switch (a cell switch per zone, as plants
    are cabled); "spread": assets round-robin over all edge switches (worst case)."""
    cores = [1, 2]
    edges = list(range(3, switches + 1))
    links = {Link.between(PortRef(1, 1000), PortRef(2, 1000))}
    for edge in edges:
        links.add(Link.between(PortRef(edge, 1001), PortRef(1, edge)))
        links.add(Link.between(PortRef(edge, 1002), PortRef(2, edge)))
    attachments = []
    zone_index = {zone.name: i for i, zone in enumerate(policy.zones)}
    next_port: dict[int, int] = {}
    for index, asset in enumerate(policy.assets):
        edge = edges[(zone_index[asset.zone] if placement == "zone" else index) % len(edges)]
        next_port[edge] = next_port.get(edge, 0) + 1
        attachments.append((asset.name, PortRef(edge, next_port[edge])))
    return Topology(frozenset(cores + edges), frozenset(links), tuple(sorted(attachments)))
