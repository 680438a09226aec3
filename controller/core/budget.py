"""Table budgets: how many entries a switch may hold, and what to say when a policy needs more.

A budget comes from the operator (`max_flows` of a switch in the topology document). A policy
whose tables would overflow a switch is refused as a whole (validate, push, start), naming the
switch, the count, the limit and the largest contributors; the controller never installs part
of a table. Entries are also split into exact-match (one exact `eth_dst`: what hardware keeps
in its L2/MAC table) and wildcard (everything else: TCAM-class), the split switch tables are
sized by.

Pure: reads compiled tables and the incremental compiler's per-unit outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.core.flows import Flow, SwitchTables
from controller.core.model import Policy
from controller.core.relations import Relation
from controller.core.topology import Topology

TOP_CONTRIBUTORS = 5


def is_exact_match(flow: Flow) -> bool:
    """One exact eth_dst and nothing else: an L2-table entry on a hardware switch."""
    return len(flow.match) == 1 and flow.match[0].name == "eth_dst" and flow.match[0].mask is None


def entry_split(tables: SwitchTables) -> tuple[int, int]:
    """(exact-match, wildcard) entries of one switch."""
    exact = sum(1 for flow in tables.flows if is_exact_match(flow))
    return exact, len(tables.flows) - exact


def unit_label(kind: str, key: object) -> str:
    """What one compiler unit is, in an operator's words (contributors are grouped by this)."""
    if kind == "relation":
        assert isinstance(key, Relation)
        origin = key.origin
        return f"zone {origin[6:]!r} intra-zone rules" if origin.startswith("intra:") else f"conduit {origin!r}"
    if kind == "multicast":
        source, ethertype = key  # type: ignore[misc]
        return f"multicast from {source!r} (ethertype {ethertype:#06x})"
    if kind == "ip-multicast":
        source, group = key  # type: ignore[misc]
        return f"IP multicast from {source!r} to group {group}"
    return {
        "infra": "infrastructure (LLDP, trunks, port samples, client ports)",
        "port": f"port security of {key!r}",
        "ct": f"connection tracking of {key!r}",
        "locate": f"locating {key!r}",
        "destination": f"forwarding toward {key!r}",
        "monitor": f"monitor-mode zone {key!r}",
        "learned": f"learned conversation {key.describe() if hasattr(key, 'describe') else key!r}",
        "denied": f"deny counters of zone {key!r}",
    }.get(kind, f"{kind} {key!r}")


@dataclass(frozen=True)
class Overflow:
    dpid: int
    switch: str
    count: int
    limit: int
    contributors: tuple[tuple[str, int], ...]  # largest first
    by_kind: tuple[tuple[str, int], ...]  # e.g. ("forwarding toward assets", 1203)

    @property
    def where(self) -> str:
        return f"switch {self.switch} (dpid {self.dpid:#x})"

    def problem(self) -> str:
        top = "; ".join(f"{label} {count:,}" for label, count in self.contributors)
        kinds = ", ".join(f"{label} {count:,}" for label, count in self.by_kind)
        return (f"would hold {self.count:,} entries, over its budget of {self.limit:,} (max_flows, or max_entries of its profile); "
                f"by kind: {kinds}; largest contributors: {top}")

    def describe(self) -> str:
        return f"{self.where} {self.problem()}"


KIND_NAMES = {"infra": "infrastructure", "port": "port security", "ct": "connection tracking",
              "locate": "locate samples", "destination": "forwarding toward assets", "relation": "conduit rules",
              "monitor": "monitor-mode zones", "multicast": "multicast trees", "ip-multicast": "IP multicast trees", "denied": "deny counters",
              "learned": "learned conversations"}


def overflows(tables: dict[int, SwitchTables], limits: dict[int, int],
              contributions: dict[int, dict[tuple[str, object], int]], names: dict[int, str]) -> list[Overflow]:
    """Every switch whose tables exceed its limit. `contributions`: per switch, entries per
    compiler unit (kind, key); grouped by label (a conduit's relations count together)."""
    found: list[Overflow] = []
    for dpid, limit in sorted(limits.items()):
        switch = tables.get(dpid)
        if switch is None or len(switch.flows) <= limit:
            continue
        labels: dict[str, int] = {}
        kinds: dict[str, int] = {}
        for (kind, key), count in contributions.get(dpid, {}).items():
            label = unit_label(kind, key)
            labels[label] = labels.get(label, 0) + count
            kinds[KIND_NAMES.get(kind, kind)] = kinds.get(KIND_NAMES.get(kind, kind), 0) + count
        top = tuple(sorted(labels.items(), key=lambda item: (-item[1], item[0]))[:TOP_CONTRIBUTORS])
        by_kind = tuple(sorted(kinds.items(), key=lambda item: (-item[1], item[0])))
        found.append(Overflow(dpid, names.get(dpid, f"{dpid:#x}"), len(switch.flows), limit, top, by_kind))
    return found


def entry_limits(budgets: dict[int, int], topology: Topology) -> dict[int, int]:
    """Entries each switch may hold: its max_flows, or what its profile says it holds, whichever is less."""
    limits = dict(budgets)
    for dpid, profile in topology.profiles:
        if profile.max_entries is not None:
            limits[dpid] = min(limits.get(dpid, profile.max_entries), profile.max_entries)
    return limits


HINT = ("raise the switch's max_flows in the topology document if it really holds more, or spread its assets "
        "over more switches, or narrow the conduits that contribute most")


def policy_overflows(policy: Policy, topology: Topology, limits: dict[int, int], names: dict[int, str],
                     fast_failover: bool = True) -> list[Overflow]:
    """Compile `policy` on `topology` (offline: validate, start) and report every switch over its limit."""
    from controller.core.incremental import IncrementalCompiler  # noqa: PLC0415  (it imports the compiler)

    engine = IncrementalCompiler(fast_failover)
    tables = engine.compile(policy, topology)
    limits = entry_limits(limits, topology)
    over = [dpid for dpid, limit in limits.items() if dpid in tables and len(tables[dpid].flows) > limit]
    return overflows(tables, {dpid: limits[dpid] for dpid in over}, engine.contributions(over), names) if over else []
