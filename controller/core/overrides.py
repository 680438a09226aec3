"""Runtime overrides of the policy in force: temporary grants and isolations (pure).

The operator's policy file stays the one source of what is normally allowed. On top of it the
operator may, at run time:
- **grant** a temporary conduit (`otseg grant FROM TO SERVICE --for 2h`), optionally only once a
  second, different token approved it; it ends at its expiry, by wall-clock time, so a restart
  or a failover does not extend it;
- **isolate** a zone or an asset (`otseg isolate`), or cut levels 3.5 and above off from the
  levels below (`otseg island`): every conduit touching it is cut, except the ones marked
  `essential: true` and the ones the operator keeps (`--keep`).

`effective(base, overrides, now)` is the Policy the compiler gets: a pure function, so the
reference verdict, the verifier and `otseg explain` judge exactly what the switches enforce.

Invariants:
- the effective policy keeps the Policy invariants (`controller.core.model`): every name exists,
  an asset named directly in a conduit with an IP service has an `ip`;
- an isolation only ever removes what a packet may do, never adds (a kept conduit keeps exactly
  the members it had); a grant only adds its own conduit, named `grant:<id>`;
- only conduits cross an isolated zone's border (`Zone.isolated`): monitor mode forwards
  nothing into it or out of it;
- overrides that the base policy no longer supports (a name it removed) are reported by
  `problems`, never dropped silently: a push that would orphan one is refused.
"""

from __future__ import annotations

import difflib
import json
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Literal

from controller.core.model import Conduit, Endpoint, Intra, Policy, Zone

ISLAND_LEVEL = 3.5  # the DMZ: `otseg island` cuts this level and above off from the levels below
MAX_GRANT_SECONDS = 30 * 24 * 3600  # a grant is temporary: at most 30 days
GRANT_PREFIX = "grant:"
IsolationKind = Literal["zone", "asset", "island"]
Approval = Literal["none", "pending", "approved"]


@dataclass(frozen=True)
class Grant:
    id: str
    sources: tuple[str, ...]  # zone or asset names
    destinations: tuple[str, ...]
    services: tuple[str, ...]
    reason: str
    who: str
    created: float  # wall-clock seconds (epoch)
    expires: float
    approval: Approval = "none"  # "pending": waits for a second, different token
    approved_by: str = ""

    def active(self, now: float) -> bool:
        return self.approval != "pending" and now < self.expires

    @property
    def conduit_name(self) -> str:
        return GRANT_PREFIX + self.id

    def describe(self, now: float | None = None) -> str:
        left = "" if now is None else f", {format_seconds(max(0.0, self.expires - now))} left"
        state = " (waits for approval)" if self.approval == "pending" else ""
        return (f"grant {self.id}: {', '.join(self.sources)} -> {', '.join(self.destinations)} "
                f"[{', '.join(self.services)}] until {stamp(self.expires)}{left}{state}")


@dataclass(frozen=True)
class Isolation:
    id: str
    kind: IsolationKind
    target: str  # zone or asset name; "" for the island
    keep: tuple[str, ...]  # conduit names kept besides the essential ones
    reason: str
    who: str
    created: float

    def describe(self) -> str:
        what = (f"island: levels {ISLAND_LEVEL} and above cut off from the levels below" if self.kind == "island"
                else f"{self.kind} {self.target!r} isolated")
        keep = f", keeping {', '.join(self.keep)}" if self.keep else ""
        return f"isolation {self.id}: {what}{keep}"


@dataclass(frozen=True)
class Overrides:
    grants: tuple[Grant, ...] = ()
    isolations: tuple[Isolation, ...] = ()
    sequence: int = 0  # ids are g<N> and i<N>: never reused

    def grant(self, grant_id: str) -> Grant:
        for grant in self.grants:
            if grant.id == grant_id:
                return grant
        raise KeyError(f"no grant {grant_id!r}" + _did_you_mean(grant_id, [g.id for g in self.grants]))

    def isolation(self, isolation_id: str) -> Isolation:
        for isolation in self.isolations:
            if isolation.id == isolation_id:
                return isolation
        raise KeyError(f"no isolation {isolation_id!r}" + _did_you_mean(isolation_id, [i.id for i in self.isolations]))

    def next_id(self, prefix: str) -> tuple[str, "Overrides"]:
        return f"{prefix}{self.sequence + 1}", replace(self, sequence=self.sequence + 1)

    def expired(self, now: float) -> tuple[Grant, ...]:
        return tuple(g for g in self.grants if now >= g.expires)

    def to_json(self) -> bytes:
        return json.dumps({"sequence": self.sequence,
                           "grants": [_fields(g) for g in self.grants],
                           "isolations": [_fields(i) for i in self.isolations]}, indent=1, sort_keys=True).encode()

    @staticmethod
    def from_json(data: bytes | None) -> "Overrides":
        if not data:
            return Overrides()
        raw = json.loads(data)
        grants = tuple(Grant(**{**g, "sources": tuple(g["sources"]), "destinations": tuple(g["destinations"]),
                                "services": tuple(g["services"])}) for g in raw.get("grants", ()))
        isolations = tuple(Isolation(**{**i, "keep": tuple(i["keep"])}) for i in raw.get("isolations", ()))
        return Overrides(grants, isolations, int(raw.get("sequence", 0)))


def _fields(value: Grant | Isolation) -> dict[str, Any]:
    return {name: list(v) if isinstance(v, tuple) else v for name, v in value.__dict__.items()}


# -- checks -------------------------------------------------------------------------------------
def grant_problems(policy: Policy, grant: Grant, now: float) -> list[str]:
    """Why `grant` cannot apply on top of `policy` (empty: it can)."""
    problems: list[str] = []
    for side, names in (("from", grant.sources), ("to", grant.destinations)):
        if not names:
            problems.append(f"grant {grant.id}: '{side}' names nobody")
        for name in names:
            if _endpoint(policy, name) is None:
                problems.append(f"grant {grant.id}: {side}: unknown asset or zone {name!r}"
                                + _did_you_mean(name, _names(policy)))
    if not grant.services:
        problems.append(f"grant {grant.id}: no service")
    known_services = {s.name for s in policy.services}
    for service in grant.services:
        if service not in known_services:
            problems.append(f"grant {grant.id}: unknown service {service!r}" + _did_you_mean(service, known_services))
    if problems:
        return problems
    if any(policy.service(s).has_ip for s in grant.services):
        for name in grant.sources + grant.destinations:
            endpoint = _endpoint(policy, name)
            if endpoint is not None and endpoint.kind == "asset" and policy.asset(name).ip is None:
                problems.append(f"grant {grant.id}: asset {name!r} has no ip, and {', '.join(grant.services)} "
                                "carries IP")
    if grant.expires <= now:
        problems.append(f"grant {grant.id}: it would already have expired ({stamp(grant.expires)})")
    if grant.expires - grant.created > MAX_GRANT_SECONDS:
        problems.append(f"grant {grant.id}: {format_seconds(grant.expires - grant.created)} is longer than a "
                        f"temporary grant may last ({format_seconds(MAX_GRANT_SECONDS)}): change the policy instead")
    return problems


def isolation_problems(policy: Policy, isolation: Isolation, others: Iterable[Isolation] = ()) -> list[str]:
    problems: list[str] = []
    zones = {z.name for z in policy.zones}
    assets = {a.name for a in policy.assets}
    if isolation.kind == "zone" and isolation.target not in zones:
        problems.append(f"isolation {isolation.id}: unknown zone {isolation.target!r}" + _did_you_mean(
            isolation.target, zones | assets))
    if isolation.kind == "asset" and isolation.target not in assets:
        problems.append(f"isolation {isolation.id}: unknown asset {isolation.target!r}" + _did_you_mean(
            isolation.target, zones | assets))
    if isolation.kind == "island":
        unlevelled = sorted(z.name for z in policy.zones if z.level is None)
        if unlevelled:
            problems.append(f"isolation {isolation.id}: island needs every zone's Purdue level; "
                            f"zone(s) {', '.join(unlevelled)} have none (add `level:` to them)")
    conduits = {c.name for c in policy.conduits}
    for name in isolation.keep:
        if name not in conduits:
            problems.append(f"isolation {isolation.id}: --keep: unknown conduit {name!r}"
                            + _did_you_mean(name, conduits))
    for other in others:
        if other.id != isolation.id and (other.kind, other.target) == (isolation.kind, isolation.target):
            problems.append(f"isolation {isolation.id}: {isolation.kind} {isolation.target or ''} is already "
                            f"isolated by {other.id}".replace("  ", " "))
    return problems


def problems(policy: Policy, overrides: Overrides, now: float) -> list[str]:
    """Everything in `overrides` that `policy` does not support (expired grants are not checked)."""
    found: list[str] = []
    for grant in overrides.grants:
        if now < grant.expires:
            found += [p for p in grant_problems(policy, grant, now) if "expired" not in p and "longer" not in p]
    for isolation in overrides.isolations:
        found += isolation_problems(policy, isolation)
    return found


# -- the effective policy -----------------------------------------------------------------------
def effective(base: Policy, overrides: Overrides, now: float) -> Policy:
    """`base` with the active grants added and every isolation applied (in the order given)."""
    for isolation in overrides.isolations:  # checked before (`problems`): here an unknown name is a bug
        if isolation.kind != "island" and _endpoint(base, isolation.target) is None:
            raise ValueError(f"{isolation.describe()}: {isolation.target!r} is not in policy {base.name!r}")
    taken = {c.name for c in base.conduits}
    grants = tuple(_grant_conduit(base, g, taken) for g in overrides.grants if g.active(now))
    policy = replace(base, conduits=base.conduits + grants, _index={}) if grants else base
    for isolation in overrides.isolations:
        if isolation.kind == "zone":
            policy = _isolate_zone(policy, isolation)
        elif isolation.kind == "asset":
            policy = _isolate_asset(policy, isolation)
        else:
            policy = _island(policy, isolation)
    return policy


def _grant_conduit(policy: Policy, grant: Grant, taken: set[str]) -> Conduit:
    def endpoints(names: tuple[str, ...]) -> tuple[Endpoint, ...]:
        found = [_endpoint(policy, name) for name in names]
        return tuple(e for e in found if e is not None)

    approved = f", approved by {grant.approved_by}" if grant.approved_by else ""
    return Conduit(_fresh(grant.conduit_name, policy, taken), endpoints(grant.sources), endpoints(grant.destinations),
                   grant.services, reason=f"temporary grant {grant.id} by {grant.who}{approved} until "
                                      f"{stamp(grant.expires)}: {grant.reason}", mode="enforce", grant=grant.id)


def _kept(conduit: Conduit, isolation: Isolation) -> bool:
    """Essential, or kept by name; a grant never is (a policy conduit may be named like one)."""
    return not conduit.grant and (conduit.essential or conduit.name in isolation.keep)


def _fresh(name: str, policy: Policy, taken: set[str] | None = None) -> str:
    """`name`, or `name` with primes: never the name of another conduit."""
    used = taken if taken is not None else {c.name for c in policy.conduits}
    while name in used:
        name += "'"
    used.add(name)
    return name


def _isolate_zone(policy: Policy, isolation: Isolation) -> Policy:
    """Conduits between the zone and the rest are cut; the ones inside it stay (the process the
    zone runs keeps running), as does its intra rule."""
    zone = isolation.target

    def inside(endpoint: Endpoint) -> bool:
        return endpoint.name == zone if endpoint.kind == "zone" else policy.asset(endpoint.name).zone == zone

    zones = tuple(replace(z, isolated=True) if z.name == zone else z for z in policy.zones)
    return replace(policy, zones=zones, conduits=_cut_across(policy, isolation, inside, ("[inside]", "[outside]")),
                   _index={})


def _cut_across(policy: Policy, isolation: Isolation, side: Callable[[Endpoint], bool],
                suffixes: tuple[str, str]) -> tuple[Conduit, ...]:
    """Every conduit but the kept ones loses what crosses between the two sides of `side`; a
    conduit with members on both sides keeps its two one-sided parts (named with `suffixes`)."""
    conduits: list[Conduit] = []
    taken = {c.name for c in policy.conduits}
    for conduit in policy.conduits:
        if _kept(conduit, isolation):
            conduits.append(conduit)
            continue
        parts = []
        for which in (True, False):
            sources = tuple(e for e in conduit.sources if side(e) == which)
            destinations = tuple(e for e in conduit.destinations if side(e) == which)
            if sources and destinations:
                parts.append((which, sources, destinations))
        for which, sources, destinations in parts:
            name = conduit.name if len(parts) == 1 else _fresh(conduit.name + suffixes[0 if which else 1], policy, taken)
            conduits.append(replace(conduit, name=name, sources=sources, destinations=destinations))
    return tuple(conduits)


def _isolate_asset(policy: Policy, isolation: Isolation) -> Policy:
    """The asset leaves its zone for a zone of its own (isolated, intra deny): its zone's conduits
    and intra rule no longer cover it; a kept conduit that covered it through its zone names it."""
    name = isolation.target
    asset = policy.asset(name)
    home = policy.zone(asset.zone)
    taken = {z.name for z in policy.zones}
    own = f"isolated:{name}"
    while own in taken:
        own += "'"
    me, my_zone = Endpoint("asset", name), Endpoint("zone", home.name)
    conduits: list[Conduit] = []
    for conduit in policy.conduits:
        if not _kept(conduit, isolation):
            sources = tuple(e for e in conduit.sources if e != me)
            destinations = tuple(e for e in conduit.destinations if e != me)
            if sources and destinations:
                conduits.append(replace(conduit, sources=sources, destinations=destinations))
            continue
        from_zone = my_zone in conduit.sources and me not in conduit.sources
        to_zone = my_zone in conduit.destinations and me not in conduit.destinations
        if not (from_zone or to_zone):
            conduits.append(conduit)
            continue
        # It keeps exactly the members it had: the asset is named next to its old zone, on each
        # side the zone was (an essential `safety -> safety` conduit still joins it to its peers).
        sources = conduit.sources + ((me,) if from_zone else ())
        destinations = conduit.destinations + ((me,) if to_zone else ())
        ip_services = [s for s in conduit.services if policy.service(s).has_ip]
        if asset.ip is not None or not ip_services:
            conduits.append(replace(conduit, sources=sources, destinations=destinations))
            continue
        # An asset without an IP cannot be named in an IP conduit: its non-IP services go in a copy.
        conduits.append(conduit)
        others = tuple(s for s in conduit.services if s not in ip_services)
        if others:
            conduits.append(replace(conduit, name=_fresh(f"{conduit.name}/{name}", policy), sources=sources,
                                    destinations=destinations, services=others))
    zone = Zone(own, level=home.level, sl_target=home.sl_target, intra=Intra.DENY, mode="enforce",
                description=f"asset {name} isolated from zone {home.name} ({isolation.id})", isolated=True)
    assets = tuple(replace(a, zone=own) if a.name == name else a for a in policy.assets)
    return replace(policy, zones=policy.zones + (zone,), assets=assets, conduits=tuple(conduits), _index={})


def _island(policy: Policy, isolation: Isolation) -> Policy:
    """Conduits crossing level 3.5 are cut; the zones at 3.5 and above are isolated, so monitor
    mode forwards nothing across the boundary either."""
    def upper(endpoint: Endpoint) -> bool:
        zone = endpoint.name if endpoint.kind == "zone" else policy.asset(endpoint.name).zone
        return (policy.zone(zone).level or 0.0) >= ISLAND_LEVEL

    zones = tuple(replace(z, isolated=True) if (z.level or 0.0) >= ISLAND_LEVEL else z for z in policy.zones)
    return replace(policy, zones=zones, conduits=_cut_across(policy, isolation, upper, ("[upper]", "[lower]")),
                   _index={})


# -- helpers ------------------------------------------------------------------------------------
def _endpoint(policy: Policy, name: str) -> Endpoint | None:
    if any(z.name == name for z in policy.zones):
        return Endpoint("zone", name)
    if any(a.name == name for a in policy.assets):
        return Endpoint("asset", name)
    return None


def _names(policy: Policy) -> set[str]:
    return {z.name for z in policy.zones} | {a.name for a in policy.assets}


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def stamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m" if minutes else "",
             f"{secs}s" if secs and not days else ""]
    return "".join(parts) or "0s"


def parse_duration(text: str) -> float:
    """'90s', '45m', '2h', '1d', '1h30m' -> seconds; ValueError with a hint otherwise."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    total, number = 0.0, ""
    for char in text.strip():
        if char.isdigit() or (char == "." and "." not in number):
            number += char
        elif char in units and number:
            total += float(number) * units[char]
            number = ""
        else:
            raise ValueError(f"{text!r} is not a duration: write e.g. 90s, 45m, 2h, 1d or 1h30m")
    if number or total <= 0:
        raise ValueError(f"{text!r} is not a duration: write e.g. 90s, 45m, 2h, 1d or 1h30m")
    return total
