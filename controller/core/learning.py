"""Where is this frame from? Decide what a sampled frame means for asset locations.

Pure: the controller feeds it the sampled frame's source (switch, port, MAC, IP) and the
current bindings; it answers with one Sighting verdict. It never binds an asset on an
inter-switch port, never moves a pinned asset, and treats a MAC that appears on a second
port while still bound to its first as a conflict (spoofing), not a move.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from typing import Iterable

from controller.core.diff import is_ours
from controller.core.flows import Flow, WriteMetadata
from controller.core.model import Policy
from controller.core.pipeline import PORT_SECURITY, TRANSIT
from controller.core.topology import PortRef

Kind = Literal["bind", "unknown-device", "spoof", "denied-sample", "pinned-elsewhere", "conflict", "ignore"]


@dataclass(frozen=True)
class Sighting:
    where: PortRef
    mac: str
    ip: str | None = None  # IPv4 source or ARP sender address, when the frame has one


@dataclass(frozen=True)
class Decision:
    kind: Kind
    sighting: Sighting
    asset: str | None = None
    other: PortRef | None = None  # the pin or the existing binding, for reports

    def describe(self) -> str:
        where = f"dpid {self.sighting.where.dpid} port {self.sighting.where.port}"
        other = f"dpid {self.other.dpid} port {self.other.port}" if self.other else ""
        texts = {
            "bind": f"asset {self.asset} located at {where}",
            "unknown-device": f"unknown device {self.sighting.mac} at {where}",
            "spoof": f"asset {self.asset} at {where} sent a frame with a foreign address "
                     f"(ip {self.sighting.ip or '-'}): dropped",
            "denied-sample": f"asset {self.asset} at {where} sent a frame no rule admits: dropped",
            "pinned-elsewhere": f"asset {self.asset} (pinned to {other}) seen at {where}: treated as unknown there",
            "conflict": f"MAC of asset {self.asset} seen at {where} while bound at {other}: conflict, the new "
                        "port gets nothing",
            "ignore": f"frame from {self.sighting.mac} at {where} ignored",
        }
        return texts[self.kind]


def classify(sighting: Sighting, policy: Policy, bound: dict[str, PortRef],
             trunk_ports: frozenset[PortRef]) -> Decision:
    """What a sampled frame means; `bound` maps asset name to its current port (pins included)."""
    if sighting.where in trunk_ports:
        return Decision("ignore", sighting)
    asset = policy.asset_by_mac(sighting.mac)
    if asset is None:
        return Decision("unknown-device", sighting)
    if asset.location is not None:
        pin = PortRef(asset.location.dpid, asset.location.port)
        if pin != sighting.where:
            return Decision("pinned-elsewhere", sighting, asset.name, pin)
        return _at_home(sighting, asset.name, asset.ip, pin)
    current = bound.get(asset.name)
    if current is None:
        return Decision("bind", sighting, asset.name)
    if current == sighting.where:
        return _at_home(sighting, asset.name, asset.ip, current)
    return Decision("conflict", sighting, asset.name, current)


def _at_home(sighting: Sighting, name: str, ip: str | None, home: PortRef) -> Decision:
    """A bound asset's own port: a foreign IP is spoofing; otherwise a frame the policy denies."""
    if sighting.ip is not None and sighting.ip != ip:
        return Decision("spoof", sighting, name, home)
    return Decision("denied-sample", sighting, name, home)


def trunks_in_flows(flows: Iterable[Flow]) -> frozenset[int]:
    """The ports a switch's own flows treat as live trunks (their frames are marked TRANSIT)."""
    return frozenset(
        int(flow.field("in_port").value) for flow in flows  # type: ignore[union-attr]
        if flow.table == PORT_SECURITY and flow.field("in_port") is not None
        and any(isinstance(i, WriteMetadata) and i.mask & TRANSIT.mask and i.value & TRANSIT.mask
                for i in flow.instructions))  # (a switch updated without bundles also writes a VERSION bit)


def bindings_in_flows(policy: Policy, dpid: int, flows: Iterable[Flow],
                      trunk_ports: frozenset[PortRef]) -> dict[str, PortRef]:
    """Where a switch's own port-security flows bind unpinned assets (after a controller restart
    the switch is the memory). Flows of other cookies, pinned assets and trunk ports say nothing."""
    found: dict[str, PortRef] = {}
    for flow in flows:
        in_port, eth_src = flow.field("in_port"), flow.field("eth_src")
        if flow.table != PORT_SECURITY or in_port is None or eth_src is None or not is_ours(flow):
            continue
        asset = policy.asset_by_mac(str(eth_src.value))
        where = PortRef(dpid, int(in_port.value))
        if asset is not None and asset.location is None and where not in trunk_ports:
            found.setdefault(asset.name, where)
    return found
