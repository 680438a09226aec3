"""What a switch can do (a capability profile), and what otseg loses on a switch that lacks something.

A profile is an input of the compiler, carried per switch by the Topology: the same policy
compiles to every profile with the same verdicts, except where this module names a loss
(`losses`) that the operator is told about (`otseg validate`, `otseg status`, the metrics).
Where a profile cannot enforce the policy at all, the switch is refused (`controller.core.lowering`
says why); nothing is ever approximated silently.

A profile comes from what the switch reports on connect (`from_features`: table, group and
meter features, and whether it accepts an ONF bundle), or from the operator (`profile:` of a
switch in the topology document: a name below, or a mapping of a base name and overrides),
which wins: some switches misreport.

Invariants: `FULL` is today's pipeline (four tables with metadata, tcp_flags, fast-failover
groups, meters, bundles, connection tracking); a profile never adds a capability the switch
did not report or the operator did not state.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

# OpenFlow 1.3 constants the features replies use (spec 7.3.5.5, 7.3.5.9, 7.3.5.12).
OFPGT_FF = 3  # fast-failover group type (bit 3 of group features `types`)
UNLIMITED = 1 << 31  # a table or meter count at or above this is "no practical limit"


@dataclass(frozen=True)
class Profile:
    """One switch's capabilities as the compiler targets them."""

    name: str = field(default="full", compare=False)  # capabilities define what compiles, not the name
    single_table: bool = False  # one table, no metadata: the pipeline folded into one ACL
    tcp_flags: bool = True  # can match TCP flags (initiator-only TCP conduits)
    fast_failover: bool = True  # fast-failover groups (pre-installed backup paths)
    meters: bool = True  # meters (rate-limited samples to the controller)
    bundles: bool = True  # ONF bundles (atomic updates); else make-before-break
    conntrack: bool = True  # Open vSwitch connection tracking (stateful conduits)
    max_entries: int | None = None  # entries the switch holds in otseg's tables (None: no stated limit)
    source: str = field(default="default", compare=False)  # "default" | "discovered" | "override"
    notes: tuple[str, ...] = field(default=(), compare=False)  # why discovery chose it

    def describe(self) -> str:
        lost = [name for name in CAPABILITIES if not getattr(self, name)]
        if self.single_table:
            lost.insert(0, "multi-table")
        size = f", max {self.max_entries:,} entries" if self.max_entries is not None else ""
        return f"{self.name} ({self.source}" + (f"; without {', '.join(lost)}" if lost else "") + f"{size})"


CAPABILITIES = ("tcp_flags", "fast_failover", "meters", "bundles", "conntrack")
FULL = Profile()
PROFILES: dict[str, Profile] = {
    "full": FULL,
    "single-table": Profile("single-table", single_table=True),
    "no-tcp-flags": Profile("no-tcp-flags", tcp_flags=False),
    "no-fast-failover": Profile("no-fast-failover", fast_failover=False),
    "no-meters": Profile("no-meters", meters=False),
    "no-bundles": Profile("no-bundles", bundles=False),
    "no-conntrack": Profile("no-conntrack", conntrack=False),
    # A typical fixed-function hardware switch: one ACL table, none of the extras.
    "minimal": Profile("minimal", single_table=True, tcp_flags=False, fast_failover=False, meters=False,
                       bundles=False, conntrack=False),
}
OVERRIDABLE = ("single_table",) + CAPABILITIES + ("max_entries",)


def named(name: str) -> Profile:
    """A named profile; KeyError names the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}") from None


def overridden(base: Profile, source: str, **changes: object) -> Profile:
    """`base` with some capabilities stated by the operator (unknown keys: TypeError)."""
    unknown = set(changes) - set(OVERRIDABLE)
    if unknown:
        raise TypeError(f"unknown capability {sorted(unknown)[0]!r}; known: {', '.join(OVERRIDABLE)}")
    profile = replace(base, source=source, **changes)  # type: ignore[arg-type]
    if profile != base:
        matching = [n for n, p in PROFILES.items() if replace(p, max_entries=profile.max_entries) == profile]
        profile = replace(profile, name=matching[0] if matching else f"{base.name}+custom")
    return profile


def losses(profile: Profile) -> list[str]:
    """What otseg cannot do on a switch of this profile, in the operator's words."""
    lost = []
    if profile.single_table:
        lost.append("one table without metadata: the policy is folded into one ACL (more entries); "
                    "denied traffic is counted per source, not per zone pair")
    if not profile.tcp_flags:
        lost.append("no tcp_flags: TCP conduits that are not stateful lose initiator-only enforcement "
                    "(a responder can open a connection from its service port)")
    if not profile.fast_failover:
        lost.append("no fast-failover groups: links are unprotected, the controller reroutes after a failure")
    if not profile.meters:
        lost.append("no meters: no samples reach the controller (no device learning, no denied-frame events: "
                    "counters only); LLDP on trunk ports only, unmetered")
    if not profile.bundles:
        lost.append("no bundles: updates are make-before-break (version-tagged, barrier-confirmed), not atomic")
    if not profile.conntrack:
        lost.append("no connection tracking: stateful conduits cannot be enforced here")
    return lost


@dataclass(frozen=True)
class TableFeature:
    """What the switch says of one table (OFPMP_TABLE_FEATURES), in otseg's field names."""

    table_id: int
    max_entries: int
    metadata_match: int
    metadata_write: int
    match_fields: frozenset[str]
    goto: bool  # OFPIT_GOTO_TABLE among its instructions
    write_metadata: bool


@dataclass(frozen=True)
class SwitchFeatures:
    """Everything discovery read from a switch; None: the switch did not answer that request."""

    tables: tuple[TableFeature, ...] | None
    group_types: int | None  # bitmap of supported group types
    ff_groups: int | None  # max fast-failover groups
    meters: int | None  # max meters
    bundles: bool | None


def from_features(features: SwitchFeatures, metadata_bits: int = 0xFFFF_FFFF_FFFF_FFFF) -> Profile:
    """The profile a switch supports, from what it reported. A request it did not answer
    counts as a missing capability (fail closed): a switch that says nothing gets `minimal`."""
    notes: list[str] = []
    tables = {t.table_id: t for t in features.tables or ()}
    multi = all(i in tables for i in range(4)) and all(
        tables[i].metadata_match & metadata_bits == metadata_bits and (i == 3 or (tables[i].goto and
                                                                                   tables[i].write_metadata))
        for i in range(4))
    if not multi:
        notes.append("fewer than 4 tables with goto-table and full 64-bit metadata" if tables
                     else "no table features reply")
    acl_tables = [tables[3]] if multi else [tables[0]] if 0 in tables else []
    tcp_flags = any("tcp_flags" in t.match_fields for t in acl_tables)
    if not tcp_flags:
        notes.append("its ACL table cannot match tcp_flags")
    conntrack = any("ct_state" in t.match_fields for t in acl_tables)
    if not conntrack:
        notes.append("no ct_state match (no connection tracking)")
    ff = bool(features.group_types is not None and features.group_types >> OFPGT_FF & 1 and features.ff_groups)
    if not ff:
        notes.append("no fast-failover groups")
    meters = bool(features.meters)
    if not meters:
        notes.append("no meters")
    if not features.bundles:
        notes.append("refused an ONF bundle" if features.bundles is False else "did not answer a bundle probe")
    used = [tables[i] for i in range(4 if multi else 1) if i in tables]
    sizes = [t.max_entries for t in used if t.max_entries < UNLIMITED]
    max_entries = (sum(sizes) if multi else sizes[0]) if sizes and len(sizes) == len(used) else None
    profile = Profile("discovered", single_table=not multi, tcp_flags=tcp_flags, fast_failover=ff, meters=meters,
                      bundles=bool(features.bundles), conntrack=conntrack, max_entries=max_entries,
                      source="discovered", notes=tuple(notes))
    for name, known in PROFILES.items():
        if replace(known, max_entries=max_entries) == profile:
            return replace(profile, name=name)
    return profile


def match_fields_missing(features: SwitchFeatures, profile: Profile, used: dict[int, set[str]]) -> dict[int, set[str]]:
    """Per table id, the fields otseg's tables for this switch match that the switch did not list."""
    tables = {t.table_id: t for t in features.tables or ()}
    missing: dict[int, set[str]] = {}
    for table_id, names in used.items():
        listed = tables[table_id].match_fields if table_id in tables else frozenset()
        lacking = {n for n in names if n not in listed}
        if lacking:
            missing[table_id] = lacking
    return missing

