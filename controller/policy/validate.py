"""Validate a positioned policy tree completely and freeze it into a `Policy`.

Pure: input is the node tree from the loader, output is a Policy or a DocumentError
carrying every problem found (not only the first). Nothing partial escapes: a policy
with any error is rejected whole, so the policy in force never changes on bad input.
"""

from __future__ import annotations

import ipaddress

from controller.core.catalog import BUILTIN_NAMES, BUILTIN_SERVICES
from controller.core.model import (
    Asset, Conduit, Endpoint, Intra, Location, Policy, Service, Zone,
)
from collections.abc import Iterable

from controller.policy.diagnostics import Collector, Diagnostic, did_you_mean
from controller.policy.fields import MAX_PORT, Reader
from controller.policy.nodes import Mapping, Node, Scalar, Sequence
from controller.policy.services import read_service

TOP_KEYS = ("policy", "mode", "switches", "zones", "assets", "services", "conduits", "description")
ZONE_KEYS = ("level", "sl_target", "intra", "mode", "description")
ASSET_KEYS = ("zone", "mac", "ip", "location", "vlan", "description")
CONDUIT_KEYS = ("name", "from", "to", "services", "reason", "mode", "bidirectional", "stateful", "essential",
                "groups", "description")
# IGMP's own addresses and the unspecified group: never a data stream's group
RESERVED_GROUPS = {"224.0.0.0": "the unspecified group", "224.0.0.1": "all systems (IGMP queries)",
                   "224.0.0.2": "all routers", "224.0.0.22": "IGMPv3 reports"}
MODES = ("enforce", "monitor", "learn")  # the policy's and the zones'
CONDUIT_MODES = ("enforce", "monitor")  # a conduit allows what it names: learning is a zone's or the policy's
MAX_ZONES = 4095  # the source zone id has 12 bits of metadata (controller/core/pipeline.py)
MAX_ASSETS = 262143


def validate_policy(tree: Node, file: str, problems: Iterable[Diagnostic] = ()) -> Policy:
    """The frozen Policy, or DocumentError listing every problem with its position.

    `problems` are the loader's non-fatal findings (duplicate keys), reported alongside.
    Names that are declared but invalid are remembered, so a conduit that uses them is
    rejected silently instead of adding a second, misleading "unknown" error.
    """
    collector = Collector(file)
    collector.items.extend(problems)
    read = Reader(collector)
    root = read.mapping(tree, "", "a policy file")
    if root is None:
        collector.raise_if_any()
        raise AssertionError("unreachable")
    read.keys(root, "policy file", TOP_KEYS, required=("policy", "zones"))
    name = read.text(root.get("policy"), "policy", "the policy name") or ""
    mode = read.choice(root.get("mode"), "policy", "mode", MODES) or "enforce"
    declared = _declared_names(root)
    switch_names = _switches(read, root.get("switches"))
    services = _services(read, collector, root.get("services"))
    zones = _zones(read, collector, root.get("zones"), services, declared)
    assets = _assets(read, collector, root.get("assets"), zones, dict(switch_names), declared)
    conduits = _conduits(read, collector, root.get("conduits"), zones, assets, services, declared)
    if len(zones) > MAX_ZONES:
        collector.error(root.mark, "zones", f"{len(zones)} zones exceed the limit of {MAX_ZONES}")
    if len(assets) > MAX_ASSETS:
        collector.error(root.mark, "assets", f"{len(assets)} assets exceed the limit of {MAX_ASSETS}")
    collector.raise_if_any()
    return Policy(
        name=name, mode=mode,  # type: ignore[arg-type]
        zones=tuple(zones.values()), assets=tuple(assets.values()),
        services=tuple(sorted(services.values(), key=lambda s: s.name)),
        conduits=tuple(conduits), switch_names=tuple(sorted(switch_names.items())),
    )


def _declared_names(root: Mapping) -> set[str]:
    """Every zone, asset and service name written in the file, valid or not."""
    names: set[str] = set()
    for section in ("zones", "assets", "services"):
        node = root.get(section)
        if isinstance(node, Mapping):
            names.update(key.text for key, _ in node.items)
    return names


def _switches(read: Reader, node: Node | None) -> dict[str, int]:
    result: dict[str, int] = {}
    mapping = read.mapping(node, "switches", "'switches'")
    if mapping is None:
        return result
    owners: dict[int, str] = {}
    for key, value in mapping.items:
        name = read.name(key, "switches", "switch")
        dpid = read.dpid(value, f"switch {key.text!r}")
        if name is None or dpid is None:
            continue
        if dpid in owners:
            read.c.error(value.mark, f"switch {name!r}", f"datapath id {dpid} is already used by {owners[dpid]!r}")
            continue
        owners[dpid] = name
        result[name] = dpid
    return result


def _services(read: Reader, collector: Collector, node: Node | None) -> dict[str, Service]:
    services = {s.name: s for s in BUILTIN_SERVICES}
    mapping = read.mapping(node, "services", "'services'")
    if mapping is None:
        return services
    for key, value in mapping.items:
        name = read.name(key, "services", "service")
        if name is None:
            continue
        if name in BUILTIN_NAMES:
            collector.error(key.mark, f"service {name!r}", "redefines a built-in service",
                            "choose another name; the built-in one is always available")
            continue
        matches = read_service(read, value, f"service {name!r}")
        if matches:
            services[name] = Service(name, tuple(sorted(set(matches))), builtin=False)
    return services


def _zones(read: Reader, collector: Collector, node: Node | None, services: dict[str, Service],
           declared: set[str]) -> dict[str, Zone]:
    zones: dict[str, Zone] = {}
    mapping = read.mapping(Mapping((), node.mark) if _is_empty(node) else node, "zones", "'zones'")
    if mapping is None:
        return zones
    if not mapping.items:
        collector.error(mapping.mark, "zones", "at least one zone is required")
    for key, value in mapping.items:
        name = read.name(key, "zones", "zone")
        context = f"zone {key.text!r}"
        body = read.mapping(value, context, "a zone") if not _is_empty(value) else Mapping((), value.mark)
        if name is None or body is None:
            continue
        read.keys(body, context, ZONE_KEYS)
        intra, intra_services = _intra(read, collector, body.get("intra"), context, services, declared)
        zones[name] = Zone(
            name=name,
            level=read.number(body.get("level"), context, "level", 0, 5),
            sl_target=read.integer(body.get("sl_target"), context, "sl_target", 0, 4),
            intra=intra, intra_services=intra_services,
            mode=read.choice(body.get("mode"), context, "mode", MODES),  # type: ignore[arg-type]
            description=read.text(body.get("description"), context, "description") or "",
        )
    return zones


def _intra(read: Reader, collector: Collector, node: Node | None, context: str,
           services: dict[str, Service], declared: set[str]) -> tuple[Intra, tuple[str, ...]]:
    if node is None:
        return Intra.DENY, ()
    if isinstance(node, Sequence):
        names = _service_names(read, collector, node, context + " intra", services, declared)
        return Intra.SERVICES, tuple(names)
    choice = read.choice(node, context, "intra", ("allow", "deny"))
    return (Intra.ALLOW if choice == "allow" else Intra.DENY), ()


def _assets(read: Reader, collector: Collector, node: Node | None, zones: dict[str, Zone],
            switch_names: dict[str, int], declared: set[str]) -> dict[str, Asset]:
    assets: dict[str, Asset] = {}
    if _is_empty(node):
        return assets
    mapping = read.mapping(node, "assets", "'assets'")
    if mapping is None:
        return assets
    mac_owner: dict[str, str] = {}
    ip_owner: dict[str, str] = {}
    for key, value in mapping.items:
        name = read.name(key, "assets", "asset")
        context = f"asset {key.text!r}"
        body = read.mapping(value, context, "an asset")
        if name is None or body is None:
            continue
        read.keys(body, context, ASSET_KEYS, required=("zone", "mac"))
        if name in zones:
            collector.error(key.mark, context, f"{name!r} is also a zone name",
                            "conduits refer to zones and assets by name; rename one of them")
        zone = read.text(body.get("zone"), context, "zone")
        if zone is not None and zone not in zones and zone not in declared:
            collector.error(body.get("zone").mark, context, f"unknown zone {zone!r}",  # type: ignore[union-attr]
                            did_you_mean(zone, zones))
        mac = read.mac(body.get("mac"), context)
        ip = read.ipv4(body.get("ip"), context)
        if mac is not None and mac in mac_owner:
            collector.error(body.get("mac").mark, context,  # type: ignore[union-attr]
                            f"MAC address {mac} is already used by asset {mac_owner[mac]!r}",
                            "every asset needs its own MAC address")
        if ip is not None and ip in ip_owner:
            collector.error(body.get("ip").mark, context,  # type: ignore[union-attr]
                            f"IP address {ip} is already used by asset {ip_owner[ip]!r}")
        location = _location(read, collector, body.get("location"), context, switch_names)
        vlan = read.integer(body.get("vlan"), context, "vlan", 1, 4094)
        if mac is not None:
            mac_owner.setdefault(mac, key.text)
        if ip is not None:
            ip_owner.setdefault(ip, key.text)
        if name is None or zone is None or zone not in zones or mac is None:
            continue
        if body.get("ip") is not None and ip is None:
            continue  # an invalid ip was reported; keep the asset out rather than IP-less
        if body.get("vlan") is not None and vlan is None:
            continue  # an invalid vlan was reported; keep the asset out rather than untagged
        assets[name] = Asset(name=name, zone=zone, mac=mac, ip=ip, location=location, vlan=vlan,
                             description=read.text(body.get("description"), context, "description") or "")
    return assets


def _location(read: Reader, collector: Collector, node: Node | None, context: str,
              switch_names: dict[str, int]) -> Location | None:
    body = read.mapping(node, context + " location", "location")
    if body is None:
        return None
    read.keys(body, context + " location", ("switch", "port"), required=("switch", "port"))
    switch_node = body.get("switch")
    dpid: int | None = None
    if isinstance(switch_node, Scalar) and switch_node.text in switch_names:
        dpid = switch_names[switch_node.text]
    elif isinstance(switch_node, Scalar) and isinstance(switch_node.value, str) and not _looks_numeric(switch_node.text):
        collector.error(switch_node.mark, context, f"unknown switch {switch_node.text!r}",
                        did_you_mean(switch_node.text, switch_names) or "name it under 'switches:' or give its dpid")
    elif switch_node is not None:
        dpid = read.dpid(switch_node, context + " location")
    port = read.integer(body.get("port"), context + " location", "port", 1, MAX_PORT)
    return Location(dpid, port) if dpid is not None and port is not None else None


def _looks_numeric(text: str) -> bool:
    return text.isdigit() or text.lower().startswith("0x") or text.count(":") == 7


def _conduits(read: Reader, collector: Collector, node: Node | None, zones: dict[str, Zone],
              assets: dict[str, Asset], services: dict[str, Service], declared: set[str]) -> list[Conduit]:
    conduits: list[Conduit] = []
    if node is None:
        return conduits
    if not isinstance(node, Sequence):
        collector.error(node.mark, "conduits", "'conduits' must be a list of conduits (each starting with '- name:')")
        return conduits
    names: dict[str, Scalar] = {}
    for index, item in enumerate(node.items):
        body = read.mapping(item, f"conduit #{index + 1}", "a conduit")
        if body is None:
            continue
        name_node = body.get("name")
        name = read.text(name_node, f"conduit #{index + 1}", "the conduit name")
        context = f"conduit {name!r}" if name else f"conduit #{index + 1}"
        read.keys(body, context, CONDUIT_KEYS, required=("name", "from", "to", "services"))
        if name is not None and isinstance(name_node, Scalar):
            if name in names:
                collector.error(name_node.mark, context, "duplicate conduit name",
                                f"first used at line {names[name].mark.line}")
            names[name] = name_node
        sources = _endpoints(read, collector, body.get("from"), context, "from", zones, assets, declared)
        destinations = _endpoints(read, collector, body.get("to"), context, "to", zones, assets, declared)
        service_node = body.get("services")
        service_names = (_service_names(read, collector, service_node, context, services, declared)
                         if service_node else [])
        mode = read.choice(body.get("mode"), context, "mode", CONDUIT_MODES)
        bidirectional = read.boolean(body.get("bidirectional"), context, "bidirectional") or False
        stateful = read.boolean(body.get("stateful"), context, "stateful") or False
        essential = read.boolean(body.get("essential"), context, "essential") or False
        reason = read.text(body.get("reason"), context, "reason") or ""
        groups = _groups(read, collector, body.get("groups"), context)
        if sources and destinations and service_names:
            _check_ip_services(collector, context, sources, destinations, service_names, assets, services)
            if stateful:
                _check_stateful(collector, body, context, service_names, services)
            if groups:
                _check_groups(collector, body, context, service_names, services, stateful)
        if name and sources and destinations and service_names and groups is not None:
            conduits.append(Conduit(name=name, sources=tuple(sources), destinations=tuple(destinations),
                                    services=tuple(service_names), reason=reason,
                                    mode=mode, bidirectional=bidirectional,
                                    stateful=stateful, essential=essential, groups=groups))  # type: ignore[arg-type]
    return conduits


def _groups(read: Reader, collector: Collector, node: Node | None, context: str) -> tuple[str, ...] | None:
    """`groups: 239.192.1.1` or a list: IPv4 multicast addresses (None when any is invalid)."""
    if node is None:
        return ()
    items = node.items if isinstance(node, Sequence) else [node]
    if not items:
        collector.error(node.mark, context, "'groups' is empty", "list at least one IPv4 multicast address, "
                        "or remove 'groups'")
        return None
    found: set[str] = set()
    for item in items:
        text = item.text if isinstance(item, Scalar) else ""
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            collector.error(item.mark, context, f"invalid group address {text or 'a ' + type(item).__name__.lower()!r}",
                            "write an IPv4 multicast address like 239.192.1.1")
            return None
        if address.version != 4 or not address.is_multicast:
            collector.error(item.mark, context, f"{text} is not an IPv4 multicast address",
                            "a group is in 224.0.0.0/4, e.g. the organisation-local 239.192.1.1")
            return None
        if str(address) in RESERVED_GROUPS:
            collector.error(item.mark, context, f"group {address} is {RESERVED_GROUPS[str(address)]}",
                            "use the group address the devices stream to, e.g. 239.192.1.1")
            return None
        if str(address) in found:
            collector.error(item.mark, context, f"group {address} is listed twice", "list each group once")
            return None
        found.add(str(address))
    return tuple(sorted(found, key=ipaddress.IPv4Address))


def _check_groups(collector: Collector, body: Mapping, context: str, service_names: list[str],
                  services: dict[str, Service], stateful: bool) -> None:
    """Groups carry UDP (there is no multicast TCP or echo), and a group has no replies to track."""
    node = body.get("groups")
    assert node is not None
    protocols = {m.protocol for name in service_names if name in services for m in services[name].matches}
    if "udp" not in protocols:
        collector.error(node.mark, context, "'groups' carry UDP services, and this conduit has none",
                        "list a UDP service (e.g. enip-io, ptp), or remove 'groups'")
    elif stateful:
        collector.error(node.mark, context, "a conduit with 'groups' cannot be 'stateful'",
                        "multicast datagrams have no reply to track: put the groups in a conduit of their own")


def _check_stateful(collector: Collector, body: Mapping, context: str, service_names: list[str],
                    services: dict[str, Service]) -> None:
    """`stateful` tracks TCP and UDP connections: on a conduit without either it would mean nothing."""
    protocols = {m.protocol for name in service_names if name in services for m in services[name].matches}
    if not protocols & {"tcp", "udp"}:
        node = body.get("stateful")
        assert node is not None  # stateful is true, so the key is there
        collector.error(node.mark, context,
                        "'stateful: true' needs a TCP or UDP service, and this conduit has none",
                        "remove 'stateful': ICMP echo and L2 services are checked by their headers")


def _endpoints(read: Reader, collector: Collector, node: Node | None, context: str, side: str,
               zones: dict[str, Zone], assets: dict[str, Asset], declared: set[str]) -> list[Endpoint]:
    names = read.name_list(node, context, f"'{side}'")
    if not names:
        return []
    endpoints: list[Endpoint] = []
    for item in names:
        if item.text in zones:
            endpoints.append(Endpoint("zone", item.text, item.mark))
        elif item.text in assets:
            endpoints.append(Endpoint("asset", item.text, item.mark))
        elif item.text not in declared:  # a declared-but-invalid name has its own error already
            collector.error(item.mark, context, f"unknown asset or zone {item.text!r}",
                            _list_hint(item.text, set(zones) | set(assets))
                            or did_you_mean(item.text, list(zones) + list(assets)))
    return endpoints if len(endpoints) == len(names) else []


def _list_hint(text: str, known: set[str]) -> str:
    """For "a, b" written where a list was meant."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) > 1 and all(part in known for part in parts):
        return f"to give several, write a list: [{', '.join(parts)}]"
    return ""


def _service_names(read: Reader, collector: Collector, node: Node | None, context: str,
                   services: dict[str, Service], declared: set[str]) -> list[str]:
    items = read.name_list(node, context, "'services'") or []
    found: list[str] = []
    for item in items:
        if item.text in services:
            found.append(item.text)
        elif item.text not in declared:
            collector.error(item.mark, context, f"unknown service {item.text!r}",
                            _list_hint(item.text, set(services)) or did_you_mean(item.text, services)
                            or "define it under 'services:'")
    return sorted(set(found)) if len(found) == len(items) else []


def _check_ip_services(collector: Collector, context: str, sources: list[Endpoint],
                       destinations: list[Endpoint], service_names: list[str],
                       assets: dict[str, Asset], services: dict[str, Service]) -> None:
    ip_services = [s for s in service_names if services[s].has_ip]
    if not ip_services:
        return
    for endpoints in (sources, destinations):
        for endpoint in endpoints:
            if endpoint.kind == "asset" and assets[endpoint.name].ip is None:
                collector.error(endpoint.where, context,  # type: ignore[arg-type]
                                f"asset {endpoint.name!r} has no 'ip' but IP service {ip_services[0]!r} is listed",
                                "give the asset an ip, or use only L2 (ethertype) services with it")


def _is_empty(node: Node | None) -> bool:
    return isinstance(node, Scalar) and node.value is None

