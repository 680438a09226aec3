"""Validate a lab network description (topologies/*.yaml) into a `LabNetwork`.

One file is the single source for both the offline compiler (`otseg compile`) and the
Mininet lab: switches by name and dpid, links as "switch:port" pairs, and hosts with the
port they attach to. Hosts that are not policy assets must give their own `mac` (they are
the lab's unknown devices, e.g. a rogue laptop on a free port).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from controller.core.model import Policy
from controller.core.profiles import FULL, OVERRIDABLE, PROFILES, Profile, overridden
from controller.core.topology import Link, PortRef, Topology
from controller.policy.diagnostics import Collector, Diagnostic, did_you_mean
from controller.policy.fields import MAX_PORT, Reader
from controller.policy.nodes import Mapping, Mark, Node, Scalar, Sequence, kind_of

_END = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.\-]*):(\d+)$")


@dataclass(frozen=True)
class LabHost:
    name: str
    where: PortRef
    mac: str | None = None  # only for hosts that are not policy assets
    ip: str | None = None
    mark: Mark = field(default=Mark(1, 1), compare=False)


@dataclass(frozen=True)
class LabNetwork:
    name: str
    policy: str | None  # the policy file the lab runs by default, relative to policies/
    switches: tuple[tuple[str, int], ...]
    links: tuple[Link, ...]
    hosts: tuple[LabHost, ...]
    budgets: tuple[tuple[int, int], ...] = ()  # (dpid, max_flows): entries the switch can hold
    # (dpid, profile) the operator states (`profile:`), overriding what the switch reports.
    profiles: tuple[tuple[int, Profile], ...] = ()
    switch_lines: tuple[tuple[int, int], ...] = field(default=(), compare=False)  # (dpid, line in the file)

    def line_of(self, dpid: int) -> int:
        return dict(self.switch_lines).get(dpid, 1)

    def to_topology(self, policy: Policy) -> Topology:
        """The compiler's view: every host that is a policy asset is attached where the lab puts it."""
        asset_names = {a.name for a in policy.assets}
        return Topology(
            switches=frozenset(dpid for _, dpid in self.switches),
            links=frozenset(self.links),
            attachments=tuple(sorted((h.name, h.where) for h in self.hosts if h.name in asset_names)),
            ports=frozenset([h.where for h in self.hosts] + [end for link in self.links for end in (link.a, link.b)]),
            declared_trunks=self.trunk_ports,
            profiles=tuple((dpid, p) for dpid, p in self.profiles if p != FULL),
        )

    @property
    def trunk_ports(self) -> frozenset[PortRef]:
        return frozenset(end for link in self.links for end in (link.a, link.b))

    def switch_name(self, dpid: int) -> str:
        return next((name for name, d in self.switches if d == dpid), f"dpid {dpid}")


def validate_topology(tree: Node, file: str, problems: Iterable[Diagnostic] = ()) -> LabNetwork:
    collector = Collector(file)
    collector.items.extend(problems)
    read = Reader(collector)
    root = read.mapping(tree, "", "a topology file")
    if root is None:
        collector.raise_if_any()
        raise AssertionError("unreachable")
    read.keys(root, "topology file", ("topology", "policy", "switches", "links", "hosts", "description"),
              required=("topology", "switches"))
    name = read.text(root.get("topology"), "topology", "the topology name") or ""
    policy = read.text(root.get("policy"), "policy", "the policy file")
    switches: dict[str, int] = {}
    owners: dict[int, str] = {}
    switch_map = read.mapping(root.get("switches"), "switches", "'switches'")
    budgets: dict[int, int] = {}
    profiles: dict[int, Profile] = {}
    lines: dict[int, int] = {}
    for key, value in switch_map.items if switch_map else ():
        limit = None
        profile = None
        if isinstance(value, Mapping):  # {dpid: N, max_flows: M, profile: NAME-or-MAPPING}
            read.keys(value, f"switch {key.text!r}", ("dpid", "max_flows", "profile"), required=("dpid",))
            limit = read.integer(value.get("max_flows"), f"switch {key.text!r}", "max_flows", 1, 100_000_000)
            profile = _profile(read, collector, value.get("profile"), f"switch {key.text!r}")
            value = value.get("dpid")  # type: ignore[assignment]
        dpid = read.dpid(value, f"switch {key.text!r}")
        if read.name(key, "switches", "switch") is None or dpid is None:
            continue
        if dpid in owners:
            collector.error(value.mark, f"switch {key.text!r}", f"datapath id {dpid} is already used by "
                            f"{owners[dpid]!r}")
            continue
        owners[dpid] = key.text
        switches[key.text] = dpid
        lines[dpid] = key.mark.line
        if limit is not None:
            budgets[dpid] = limit
        if profile is not None:
            profiles[dpid] = profile
    used: dict[PortRef, str] = {}
    links = _links(read, collector, root.get("links"), switches, used)
    hosts = _hosts(read, collector, root.get("hosts"), switches, used)
    collector.raise_if_any()
    return LabNetwork(name, policy, tuple(sorted(switches.items())), tuple(links), tuple(hosts),
                      tuple(sorted(budgets.items())), profiles=tuple(sorted(profiles.items())),
                      switch_lines=tuple(sorted(lines.items())))


def _profile(read: Reader, collector: Collector, node: Node | None, context: str) -> Profile | None:
    """`profile: NAME`, or `profile: {base: NAME, meters: false, ...}` (capabilities the switch lacks
    or misreports): what the compiler targets for this switch, whatever it reports."""
    if node is None:
        return None
    known = ", ".join(PROFILES)
    if isinstance(node, Scalar):
        if node.text not in PROFILES:
            collector.error(node.mark, context, f"unknown profile {node.text!r}",
                            did_you_mean(node.text, PROFILES) or f"use one of: {known}")
            return None
        return overridden(PROFILES[node.text], "override")
    body = read.mapping(node, f"{context} profile", "a profile")
    if body is None:
        return None
    read.keys(body, f"{context} profile", ("base",) + OVERRIDABLE)
    base_node = body.get("base")
    base = FULL
    if base_node is not None:
        name = base_node.text if isinstance(base_node, Scalar) else ""
        if name not in PROFILES:
            collector.error(base_node.mark, f"{context} profile", f"unknown profile {name!r}",
                            did_you_mean(name, PROFILES) or f"use one of: {known}")
            return None
        base = PROFILES[name]
    changes: dict[str, object] = {}
    for option in OVERRIDABLE:
        item = body.get(option)
        if item is None:
            continue
        if option == "max_entries":
            changes[option] = read.integer(item, f"{context} profile", option, 1, 100_000_000)
        else:
            text = item.text.lower() if isinstance(item, Scalar) else ""
            if text not in ("true", "false"):
                collector.error(item.mark, f"{context} profile", f"{option} must be true or false, not {text!r}")
                continue
            changes[option] = text == "true"
    return overridden(base, "override", **changes)


def _claim(collector: Collector, used: dict[PortRef, str], where: PortRef, owner: str, node: Node) -> bool:
    if where in used:
        collector.error(node.mark, owner, f"port {where.port} of dpid {where.dpid} is already used by {used[where]}")
        return False
    used[where] = owner
    return True


def _end(collector: Collector, node: Node, switches: dict[str, int], context: str) -> PortRef | None:
    text = node.text if isinstance(node, Scalar) else ""
    match = _END.match(text)
    if not match:
        collector.error(node.mark, context, f"a link end must be \"switch:port\", not {text or kind_of(node)!r}")
        return None
    switch, port = match.group(1), int(match.group(2))
    if switch not in switches:
        collector.error(node.mark, context, f"unknown switch {switch!r}", did_you_mean(switch, switches))
        return None
    if not 1 <= port <= MAX_PORT:
        collector.error(node.mark, context, f"port {port} is out of range")
        return None
    return PortRef(switches[switch], port)


def _links(read: Reader, collector: Collector, node: Node | None, switches: dict[str, int],
           used: dict[PortRef, str]) -> list[Link]:
    links: list[Link] = []
    if node is None:
        return links
    if not isinstance(node, Sequence):
        collector.error(node.mark, "links", "'links' must be a list of [\"s1:1\", \"s2:1\"] pairs")
        return links
    for index, item in enumerate(node.items):
        context = f"link #{index + 1}"
        if not isinstance(item, Sequence) or len(item.items) != 2:
            collector.error(item.mark, context, "a link is a pair of ends, like [\"s1:2\", \"s2:1\"]")
            continue
        ends = [_end(collector, end, switches, context) for end in item.items]
        a, b = ends
        if a is None or b is None:
            continue
        if a.dpid == b.dpid:
            collector.error(item.mark, context, "a link must join two different switches")
            continue
        if _claim(collector, used, a, context, item.items[0]) and _claim(collector, used, b, context, item.items[1]):
            links.append(Link.between(a, b))
    return links


def _hosts(read: Reader, collector: Collector, node: Node | None, switches: dict[str, int],
           used: dict[PortRef, str]) -> list[LabHost]:
    hosts: list[LabHost] = []
    mapping = read.mapping(node, "hosts", "'hosts'")
    for key, value in mapping.items if mapping else ():
        context = f"host {key.text!r}"
        body = read.mapping(value, context, "a host")
        if body is None or read.name(key, "hosts", "host") is None:
            continue
        read.keys(body, context, ("switch", "port", "mac", "ip"), required=("switch", "port"))
        switch = read.text(body.get("switch"), context, "switch")
        port = read.integer(body.get("port"), context, "port", 1, MAX_PORT)
        if switch is not None and switch not in switches:
            collector.error(body.get("switch").mark, context, f"unknown switch {switch!r}",  # type: ignore[union-attr]
                            did_you_mean(switch, switches))
            continue
        if switch is None or port is None:
            continue
        where = PortRef(switches[switch], port)
        if _claim(collector, used, where, context, value):
            hosts.append(LabHost(key.text, where, read.mac(body.get("mac"), context),
                                 read.ipv4(body.get("ip"), context), key.mark))
    return hosts


def check_against_policy(lab: LabNetwork, policy: Policy, file: str) -> None:
    """Every lab host is a policy asset or brings its own MAC; raises DocumentError otherwise."""
    collector = Collector(file)
    names = {a.name for a in policy.assets}
    trunks = lab.trunk_ports
    for asset in policy.assets:
        if asset.location and PortRef(asset.location.dpid, asset.location.port) in trunks:
            collector.error(Mark(1, 1), f"asset {asset.name!r}",
                            f"is pinned to port {asset.location.port} of dpid {asset.location.dpid}, which a link "
                            "of this topology declares as a trunk", "pin it to an edge port, or fix the link")
    for host in lab.hosts:
        if host.name not in names and host.mac is None:
            collector.error(host.mark, f"host {host.name!r}",
                            f"is not an asset of policy {policy.name!r} and has no 'mac'",
                            did_you_mean(host.name, names) or "give it a mac to make it an unknown device")
    collector.raise_if_any()
