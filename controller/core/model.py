"""The validated, frozen segment policy: the only policy shape the rest of otseg sees.

Invariants (guaranteed by `controller.policy.validate`, relied on everywhere else):
- every name referenced by a conduit, an asset or an `intra` list exists;
- MACs and IPs are unique across assets, MACs are unicast and normalised to lower case;
- every service used by a conduit resolves to at least one `ServiceMatch`;
- an asset named directly in a conduit that carries an IP service has an `ip`.
All containers are tuples or frozensets so a Policy can be hashed, compared and shared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

Mode = Literal["enforce", "monitor", "learn"]  # learn: zones and the policy only (forwards like monitor, records)
Protocol = Literal["tcp", "udp", "icmp", "ethertype"]


class Intra(Enum):
    """What a zone allows between its own members."""

    DENY = "deny"
    ALLOW = "allow"
    SERVICES = "services"  # only the services listed in Zone.intra_services


# The ports an initiator's replies may go to, by default: the ephemeral range. A reply from a
# responder's service port to any other port of its initiator would be the responder starting
# traffic of its own (to the initiator's SSH or RDP, say), which no conduit allows.
EPHEMERAL_CLIENTS: tuple[tuple[int, int], ...] = ((1024, 65535),)


@dataclass(frozen=True, order=True)
class ServiceMatch:
    """One protocol element of a service: a TCP/UDP port range, an ICMP echo, or an ethertype.

    For tcp/udp `low..high` is the inclusive destination port range and `clients` the port
    ranges the initiator sends from (its replies go only there); for ethertype `low` is the
    ethertype and `high == low`; for icmp both are 0 (echo request/reply).
    """

    protocol: Protocol
    low: int = 0
    high: int = 0
    clients: tuple[tuple[int, int], ...] = EPHEMERAL_CLIENTS

    @property
    def has_ports(self) -> bool:
        return self.protocol in ("tcp", "udp")

    def client_port(self, port: int) -> bool:
        return any(low <= port <= high for low, high in self.clients)

    @property
    def ambiguous_direction(self) -> bool:
        """A service port is also a client port: a datagram between two such ports could be
        either a request or a reply, so headers cannot tell who started it."""
        return self.has_ports and any(low <= self.high and self.low <= high for low, high in self.clients)

    @property
    def is_ip(self) -> bool:
        return self.protocol != "ethertype"

    def describe(self) -> str:
        if self.protocol == "icmp":
            return "icmp echo"
        if self.protocol == "ethertype":
            return f"ethertype 0x{self.low:04x}"
        ports = str(self.low) if self.low == self.high else f"{self.low}-{self.high}"
        return f"{self.protocol} {ports}"

    def describe_clients(self) -> str:
        return ", ".join(str(low) if low == high else f"{low}-{high}" for low, high in self.clients)


@dataclass(frozen=True)
class Service:
    name: str
    matches: tuple[ServiceMatch, ...]
    builtin: bool = True

    @property
    def has_ip(self) -> bool:
        return any(m.is_ip for m in self.matches)


@dataclass(frozen=True)
class Zone:
    name: str
    level: float | None = None
    sl_target: int | None = None
    intra: Intra = Intra.DENY
    intra_services: tuple[str, ...] = ()
    mode: Mode | None = None  # None: inherit the policy's mode
    description: str = ""
    # Cut off by an isolation (controller.core.overrides), never by the policy file: only
    # conduits reach it or leave it; monitor mode forwards nothing into it or out of it (a
    # monitor-mode zone still forwards between its own members).
    isolated: bool = False


@dataclass(frozen=True)
class Location:
    """A pin: the asset may only appear on this port of this datapath."""

    dpid: int
    port: int


@dataclass(frozen=True)
class Asset:
    name: str
    zone: str
    mac: str  # lower-case, colon separated
    ip: str | None = None  # dotted IPv4
    location: Location | None = None
    description: str = ""
    # 802.1Q VID the device tags its frames with (1-4094), None: it sends and receives untagged.
    # Its port takes frames with this VID only; the tag is removed on entry and pushed (PCP 0) on
    # the way out to it, so no other asset ever sees it.
    vlan: int | None = None


@dataclass(frozen=True, order=True)
class Endpoint:
    """A conduit side element: a zone or an asset, by name."""

    kind: Literal["zone", "asset"]
    name: str
    where: object = field(default=None, compare=False, hash=False, repr=False)  # source position, for errors


@dataclass(frozen=True)
class Conduit:
    name: str
    sources: tuple[Endpoint, ...]
    destinations: tuple[Endpoint, ...]
    services: tuple[str, ...]
    reason: str = ""
    mode: Mode | None = None  # None: the zone's or the policy's mode applies
    bidirectional: bool = False
    stateful: bool = False  # TCP/UDP replies only within connections the initiator opened (conntrack)
    essential: bool = False  # protection, safety, time: kept by `otseg isolate` and `otseg island`
    grant: str = ""  # the id of the temporary grant this conduit is (controller.core.overrides), else ""
    # IPv4 multicast groups (dotted, sorted): the conduit's UDP services sent by a `from` member to
    # one of these addresses (and its own group MAC) reach the `to` members, along a tree
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Policy:
    name: str
    mode: Mode
    zones: tuple[Zone, ...]
    assets: tuple[Asset, ...]
    services: tuple[Service, ...]  # built-in catalog plus custom, by name
    conduits: tuple[Conduit, ...]
    switch_names: tuple[tuple[str, int], ...] = ()
    _index: dict[str, object] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __hash__(self) -> int:
        # Policies key compile caches; hashing thousands of assets on every lookup would cost
        # more than the lookup saves. The value is immutable, so the hash is computed once.
        if "hash" not in self._index:
            self._index["hash"] = hash((self.name, self.mode, self.zones, self.assets, self.services, self.conduits,
                                        self.switch_names))
        return self._index["hash"]  # type: ignore[return-value]

    def zone(self, name: str) -> Zone:
        return self._lookup("zone", name, self.zones)  # type: ignore[return-value]

    def asset(self, name: str) -> Asset:
        return self._lookup("asset", name, self.assets)  # type: ignore[return-value]

    def service(self, name: str) -> Service:
        return self._lookup("service", name, self.services)  # type: ignore[return-value]

    def asset_by_mac(self, mac: str) -> Asset | None:
        if "by_mac" not in self._index:
            self._index["by_mac"] = {a.mac: a for a in self.assets}
        return self._index["by_mac"].get(mac.lower())  # type: ignore[attr-defined,no-any-return]

    def asset_by_ip(self, ip: str) -> Asset | None:
        if "by_ip" not in self._index:
            self._index["by_ip"] = {a.ip: a for a in self.assets if a.ip}
        return self._index["by_ip"].get(ip)  # type: ignore[attr-defined,no-any-return]

    def members(self, endpoint: Endpoint) -> tuple[Asset, ...]:
        """The assets an endpoint stands for (a zone's members, or the one asset)."""
        if endpoint.kind == "asset":
            return (self.asset(endpoint.name),)
        key = "members:" + endpoint.name
        if key not in self._index:
            self._index[key] = tuple(a for a in self.assets if a.zone == endpoint.name)
        return self._index[key]  # type: ignore[return-value]

    def zone_mode(self, zone_name: str) -> Mode:
        return self.zone(zone_name).mode or self.mode

    def zone_forwards(self, zone_name: str) -> bool:
        """Traffic leaving the zone is forwarded even where no conduit allows it (monitor or learn mode)."""
        return self.zone_mode(zone_name) in ("monitor", "learn")

    def _lookup(self, kind: str, name: str, items: tuple[object, ...]) -> object:
        key = kind + "s"
        if key not in self._index:
            self._index[key] = {item.name: item for item in items}  # type: ignore[attr-defined]
        try:
            return self._index[key][name]  # type: ignore[index]
        except KeyError:
            raise KeyError(f"no {kind} named {name!r} in policy {self.name!r}") from None
