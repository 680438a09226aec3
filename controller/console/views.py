"""Page models of the console (pure): the policy in force, the status snapshot, counters, events
and the audit log in; plain values out, which the templates only lay out.

Invariants: nothing here reads the controller, the clock or a file; a name shown for a switch is
the policy's name for its datapath id when it has one, the hex id otherwise; every state is
given as a word (never only as a colour).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

from controller.console.text import parse_iso_utc
from controller.core.model import Asset, Conduit, Policy, Zone
from controller.core.rules import cookie
from controller.core.verdict import is_member

EVENT_FIELDS = ("verdict", "reason", "kind", "src_asset", "dst_asset", "service", "switch", "port")


def switch_label(policy: Policy, dpid_text: str) -> str:
    """`0xc` -> `ring-2 (0xc)` when the policy names that datapath."""
    try:
        dpid = int(dpid_text, 16)
    except ValueError:
        return dpid_text
    names = {d: n for n, d in policy.switch_names}
    return f"{names[dpid]} ({dpid_text})" if dpid in names else dpid_text


def port_label(policy: Policy, end: str) -> str:
    """`0xc:5` -> `ring-2 (0xc) port 5`."""
    dpid, _, port = end.partition(":")
    return f"{switch_label(policy, dpid)} port {port}" if port else end


def _ends(conduit: Conduit) -> tuple[str, str]:
    def side(items: Iterable[Any]) -> str:
        return ", ".join(f"{e.name}" + ("" if e.kind == "zone" else " (asset)") for e in items)
    return side(conduit.sources), side(conduit.destinations)


@dataclass(frozen=True)
class ConduitRow:
    name: str
    sources: str
    destinations: str
    services: str
    mode: str
    essential: bool
    bidirectional: bool
    stateful: bool
    groups: str
    reason: str
    packets: int
    grant: str


def conduit_packets(policy: Policy, totals: dict[int, tuple[int, int]]) -> dict[str, int]:
    """Allowed packets per conduit (and per zone's intra and monitor rules), from the switches' counters."""
    origins = [c.name for c in policy.conduits] + [f"intra:{z.name}" for z in policy.zones] + [
        f"monitor:{z.name}" for z in policy.zones]
    return {origin: totals.get(cookie(origin), (0, 0))[0] for origin in origins}


def denied_packets(policy: Policy, totals: dict[int, tuple[int, int]]) -> dict[str, int]:
    """Dropped packets by `SOURCE>DESTINATION` zone, every pair (`SOURCE>-`: to none of its peers);
    a pair no switch counts (no deny entry for it anywhere) reads 0."""
    zones = [z.name for z in policy.zones]
    return {f"{source}>{destination}": totals.get(cookie(f"denied:{source}>{destination}"), (0, 0))[0]
            for source in zones for destination in zones + ["-"]}


def live_counters(policy: Policy, totals: dict[int, tuple[int, int]]) -> dict[str, int]:
    """What the page's script refreshes: `conduit:NAME`, `denied:A>B`."""
    return {**{f"conduit:{k}": v for k, v in conduit_packets(policy, totals).items()},
            **{f"denied:{k}": v for k, v in denied_packets(policy, totals).items()}}


def zones_page(policy: Policy, totals: dict[int, tuple[int, int]]) -> dict[str, Any]:
    packets = conduit_packets(policy, totals)
    rows = []
    for conduit in policy.conduits:
        sources, destinations = _ends(conduit)
        mode = conduit.mode or "(zone's)"
        rows.append(ConduitRow(conduit.name, sources, destinations, ", ".join(conduit.services), mode,
                               conduit.essential, conduit.bidirectional, conduit.stateful, ", ".join(conduit.groups),
                               conduit.reason, packets.get(conduit.name, 0), conduit.grant))
    zones = [{"name": z.name, "level": "?" if z.level is None else f"{z.level:g}", "mode": policy.zone_mode(z.name),
              "isolated": z.isolated, "intra": z.intra.value if hasattr(z.intra, "value") else str(z.intra),
              "members": sum(1 for a in policy.assets if a.zone == z.name),
              "intra_packets": packets.get(f"intra:{z.name}", 0),
              "monitor_packets": packets.get(f"monitor:{z.name}", 0)} for z in policy.zones]
    names = [z.name for z in policy.zones]
    return {"conduits": rows, "zones": zones, "denied": denied_packets(policy, totals), "zone_names": names,
            "policy": policy.name, "mode": policy.mode}


ASSET_STATES = ("bound", "unlocated", "conflict", "quarantined")


def quarantine_reason(asset: str, zone: Zone) -> str:
    """Why an asset is cut off ('' when it is not): its own isolation names itself in its zone."""
    if not zone.isolated:
        return ""
    if zone.description.startswith(f"asset {asset} isolated"):
        return zone.description
    return f"zone {zone.name} is isolated"


def asset_conduits(policy: Policy, asset: Asset) -> list[str]:
    return [c.name for c in policy.conduits
            if any(is_member(asset, e) for e in c.sources) or any(is_member(asset, e) for e in c.destinations)]


def assets_page(policy: Policy, status: dict[str, Any], sightings: list[dict[str, Any]]) -> dict[str, Any]:
    located = status.get("assets", {}).get("located", {})
    conflicts = {s["mac"] for s in sightings if s["kind"] == "conflict"}
    rows = []
    for asset in policy.assets:
        where = located.get(asset.name)
        zone = policy.zone(asset.zone)
        if asset.mac in conflicts:
            state = "conflict"
        elif zone.isolated:  # cut off by an isolation of the asset, its zone or the island
            state = "quarantined"
        elif where is not None:
            state = "bound"
        else:
            state = "unlocated"
        bound_at = "" if where is None else f"{switch_label(policy, f'{where[0]:#x}')} port {where[1]}"
        rows.append({"name": asset.name, "zone": asset.zone, "mac": asset.mac, "ip": asset.ip or "",
                     "vlan": "" if asset.vlan is None else str(asset.vlan),
                     "state": state, "bound_at": bound_at,
                     "quarantine": quarantine_reason(asset.name, zone),
                     "binding": "pinned" if asset.location else "learned",
                     "conduits": asset_conduits(policy, asset)})
    unknown = [{"mac": s["mac"], "where": port_label(policy, s["where"]), "kind": s["kind"]}
               for s in sightings if s["kind"] != "conflict"]
    return {"assets": rows, "unknown": unknown,
            "counts": {state: sum(1 for r in rows if r["state"] == state) for state in ASSET_STATES}}


def network_page(policy: Policy, status: dict[str, Any]) -> dict[str, Any]:
    unprotected = {tuple(link) for link in status.get("links_unprotected", [])}
    links = status.get("link_states", {"declared": [], "pending": []})
    headless = set(status.get("headless_switches", []))
    switches = []
    for key, switch in status.get("switches", {}).items():
        capabilities = switch.get("capabilities") or {}
        switches.append({"dpid": key, "name": switch_label(policy, key), "programmed": switch["programmed"],
                         "flows": switch["flows"], "policy_in_force": switch.get("policy_in_force", False),
                         "profile": capabilities.get("profile", ""), "failures": switch.get("failures", 0)})
    for key in sorted(headless - set(status.get("switches", {}))):
        switches.append({"dpid": key, "name": switch_label(policy, key), "programmed": False, "flows": 0,
                         "policy_in_force": False, "profile": "", "failures": 0, "headless": True})
    up = {tuple(link) for link in status.get("links", [])}
    declared = [{"a": l["a"], "b": l["b"], "a_label": port_label(policy, l["a"]), "b_label": port_label(policy, l["b"]),
                 "up": l["up"], "source": l.get("source", "topology"),
                 "protected": l["up"] and (l["a"], l["b"]) not in unprotected and (l["a"], l["b"]) in up}
                for l in links.get("declared", [])]
    pending = [{**l, "a_label": port_label(policy, l["a"]), "b_label": port_label(policy, l["b"])}
               for l in links.get("pending", [])]
    cluster = status.get("cluster")
    return {"switches": switches, "declared": declared, "pending": pending, "cluster": cluster,
            "switch_roles": (cluster or {}).get("switch_roles", {})}


def events_page(policy: Policy, events: list[dict[str, Any]], verdict: str = "", text: str = "",
                limit: int = 200) -> dict[str, Any]:
    """The recent events, newest first, filtered by verdict and by a text any field contains."""
    verdicts = sorted({str(e.get("verdict", "")) for e in events} - {""})
    wanted = text.strip().lower()
    rows = []
    for event in reversed(events):
        if verdict and event.get("verdict") != verdict:
            continue
        if wanted and not any(wanted in str(value).lower() for value in event.values()):
            continue
        src, dst = event.get("src_asset", ""), event.get("dst_asset", "")
        rows.append({"time": parse_iso_utc(str(event.get("time", ""))), "fields": {k: event.get(k, "") for k in EVENT_FIELDS},
                     "detail": {k: v for k, v in sorted(event.items()) if k not in EVENT_FIELDS + ("time",)},
                     "explain": {"src": src, "dst": dst, "service": service_for(policy, str(event.get("service", "")))}
                     if src and dst and "unknown" not in (src, dst) else None})
        if len(rows) >= limit:
            break
    return {"events": rows, "verdicts": verdicts, "verdict": verdict, "text": text, "total": len(events)}


SERVICE_SEEN = re.compile(r"^(?:(?P<proto>tcp|udp) \d+->(?P<port>\d+)|icmp type (?P<icmp>\d+)|ethertype 0x(?P<eth>[0-9a-f]{4}))")


def service_for(policy: Policy, described: str) -> str:
    """The policy's service that covers a frame an event describes (`tcp 40000->502 flags 0x02`,
    `icmp type 8`, `ethertype 0x88b8`): one a conduit uses if any, else any catalog entry; '' if none."""
    match = SERVICE_SEEN.match(described)
    if match is None:
        return ""
    used = {name for c in policy.conduits for name in c.services}
    for service in sorted(policy.services, key=lambda s: (s.name not in used, s.name)):
        for element in service.matches:
            if match["proto"] and element.protocol == match["proto"] and element.low <= int(match["port"]) <= element.high:
                return service.name
            if match["icmp"] and element.protocol == "icmp":
                return service.name
            if match["eth"] and element.protocol == "ethertype" and element.low == int(match["eth"], 16):
                return service.name
    return ""


def explain_page(policy: Policy, src: str, dst: str, service: str, elements: list[Any] | None,
                 error: str = "") -> dict[str, Any]:
    return {"src": src, "dst": dst, "service": service, "error": error,
            "assets": [a.name for a in policy.assets], "services": [s.name for s in policy.services],
            "elements": [{"element": e.element, "delivered": e.verdict.delivered, "origin": e.verdict.origin,
                          "reason": e.verdict.reason, "closest": e.closest} for e in (elements or [])]}


def changes_page(history: list[dict[str, Any]], in_force: str, overrides: dict[str, Any] | None,
                 policy: Policy) -> dict[str, Any]:
    entries = []
    versions: list[str] = []
    for entry in reversed(history):
        version = entry.get("to_version") or entry.get("version") or ""
        if entry.get("action") in ("apply", "rollback", "start") and version and version not in versions:
            versions.append(version)
        entries.append({"time": parse_iso_utc(str(entry.get("time", ""))), "who": entry.get("who", ""),
                        "action": entry.get("action", ""), "source": entry.get("source", ""),
                        "from": (entry.get("from_version") or "")[:12], "to": version[:12], "version": version,
                        "detail": {k: v for k, v in sorted(entry.items())
                                   if k not in ("time", "who", "action", "source", "from_version", "to_version",
                                                "version", "change")},
                        "change": entry.get("change")})
    if in_force and in_force not in versions:
        versions.insert(0, in_force)
    return {"entries": entries, "versions": versions, "in_force": in_force,
            "grants": (overrides or {}).get("grants", []), "isolations": (overrides or {}).get("isolations", []),
            "zones": [z.name for z in policy.zones], "assets": [a.name for a in policy.assets],
            "services": sorted(s.name for s in policy.services),
            "essential": [c.name for c in policy.conduits if c.essential]}
