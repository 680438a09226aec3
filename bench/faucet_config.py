"""Translate an otseg policy and lab into the equivalent FAUCET 1.10 configuration (pure).

FAUCET has no zones or conduits: its unit is an ACL on a port, matched on packet fields. The
equivalent of a policy is therefore, for every port with an asset, an `acls_in` list that
allows exactly the packets that asset may send, then drops the rest:

- per (conduit relation, destination asset, service element): one rule, matching the asset's
  own MAC and IP as source (anti-spoofing, as otseg does), the destination IP, protocol and
  port (for a reply: the source port, so the responder may answer);
- ARP: one rule per destination the asset may talk to (`arp_tpa`), sender address pinned,
  and one for its gratuitous ARP (without it FAUCET never learns a quiet host);
- an L2 service (an ethertype such as GOOSE): one rule per peer for unicast frames, and one
  per (asset, ethertype) for multicast frames, which FAUCET floods to the whole VLAN rather
  than to the `to` assets only: laxer than otseg, and fewer entries for FAUCET;
- a zone with `intra: allow`: one rule per peer MAC plus its ARP rule.

This is the naive per-pair expansion, split by ingress port; it is what a FAUCET user writes
(or generates) for the same intent. Port ranges become masked port matches. Stateless
reverse-SYN blocking (otseg requires ACK on replies) has no FAUCET ACL field; the reply rule
is counted without it, which again favours FAUCET. Unknown-device ports get a drop-all ACL.

Switches are joined as a FAUCET stack (the labs have rings; FAUCET needs stacking for loops),
rooted at the first switch.
"""

from __future__ import annotations

from typing import Any

from controller.core.model import Asset, Policy, ServiceMatch
from controller.core.relations import Relation, expand
from controller.core.rules import port_blocks
from controller.policy.topology_doc import LabNetwork

VLAN = "plant"
VID = 100
IPV4, ARP = 0x0800, 0x0806
MULTICAST = "01:00:00:00:00:00/01:00:00:00:00:00"
IP_PROTO = {"tcp": 6, "udp": 17, "icmp": 1}


def _service_rules(asset: Asset, peer: Asset, match: ServiceMatch, reply: bool) -> list[dict[str, Any]]:
    base: dict[str, Any] = {"eth_src": asset.mac, "dl_type": IPV4, "ipv4_src": asset.ip, "ipv4_dst": peer.ip,
                            "nw_proto": IP_PROTO[match.protocol]}
    if match.protocol == "icmp":
        return [{**base, "icmpv4_type": 0 if reply else 8}]
    field = f"{match.protocol}_{'src' if reply else 'dst'}"
    return [{**base, field: value if mask == 0xFFFF else f"{value}/{mask}"}
            for value, mask in port_blocks(match.low, match.high)]


def port_acl(policy: Policy, asset: Asset, relations: tuple[Relation, ...]) -> list[dict[str, Any]]:
    """The ordered rules of the ACL on `asset`'s port (without the final drop)."""
    rules: list[dict[str, Any]] = []
    seen: set[str] = set()

    def add(rule: dict[str, Any]) -> None:
        key = repr(sorted(rule.items()))
        if key not in seen:
            seen.add(key)
            rules.append(rule)

    if asset.ip:  # gratuitous ARP: how a host announces itself, and how FAUCET learns where it is
        add({"eth_src": asset.mac, "dl_type": ARP, "arp_spa": asset.ip, "arp_tpa": asset.ip})
    for relation in relations:
        if not any(a.name == asset.name for a in policy.members(relation.source)):
            continue
        l2 = relation.kind == "service" and relation.match is not None and relation.match.protocol == "ethertype"
        if l2 and relation.match is not None:
            add({"eth_src": asset.mac, "dl_type": relation.match.low, "eth_dst": MULTICAST})
        for peer in policy.members(relation.destination):
            if peer.name == asset.name:
                continue
            if l2 and relation.match is not None:
                add({"eth_src": asset.mac, "dl_type": relation.match.low, "eth_dst": peer.mac})
            if relation.kind in ("arp", "any") and asset.ip and peer.ip:
                add({"eth_src": asset.mac, "dl_type": ARP, "arp_spa": asset.ip, "arp_tpa": peer.ip})
            if relation.kind == "any":
                add({"eth_src": asset.mac, "eth_dst": peer.mac})
            elif relation.kind == "service" and relation.match and not l2 and asset.ip and peer.ip:
                for rule in _service_rules(asset, peer, relation.match, relation.direction == "reply"):
                    add(rule)
    return rules


def faucet_config(policy: Policy, lab: LabNetwork) -> dict[str, Any]:
    relations = expand(policy)
    assets = {a.name: a for a in policy.assets}
    by_dpid = {dpid: name for name, dpid in lab.switches}
    root = lab.switches[0][0]
    dps: dict[str, Any] = {}
    acls: dict[str, Any] = {}
    for name, dpid in lab.switches:
        dps[name] = {"dp_id": dpid, "hardware": "Open vSwitch", "interfaces": {}}
        if name == root:
            dps[name]["stack"] = {"priority": 1}
    for link in lab.links:
        for here, there in ((link.a, link.b), (link.b, link.a)):
            dps[by_dpid[here.dpid]]["interfaces"][here.port] = {
                "stack": {"dp": by_dpid[there.dpid], "port": there.port}}
    for host in lab.hosts:
        acl_name = f"port-{host.name}"
        asset = assets.get(host.name)
        rules = port_acl(policy, asset, relations) if asset else []
        acls[acl_name] = [{"rule": {**r, "actions": {"allow": 1}}} for r in rules] + [{"rule": {"actions": {"allow": 0}}}]
        dps[by_dpid[host.where.dpid]]["interfaces"][host.where.port] = {
            "name": host.name[:15], "native_vlan": VLAN, "acls_in": [acl_name]}
    return {"vlans": {VLAN: {"vid": VID}}, "acls": acls, "dps": dps}


def acl_rule_count(config: dict[str, Any]) -> int:
    return sum(len(rules) for rules in config["acls"].values())
