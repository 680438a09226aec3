"""Whether a policy can be enforced on each switch within its capability profile: pure.

`refusals` names every switch that cannot enforce the policy as it stands, and why; such a
switch keeps what it holds and a push that would need it is refused whole, like a switch
over its entry budget (controller/core/budget.py). `warnings` names what a switch enforces
less strictly than the policy says (a loss its profile states), per conduit.

A refusal is never "approximated": the compiler lowers only what it can lower exactly
(controller/core/lowering.py), and everything else is here.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.core.flows import ApplyActions, Conntrack, SwitchTables
from controller.core.model import Policy
from controller.core.relations import expand
from controller.core.topology import Topology, locate_assets
from controller.core.units import endpoint_hosts, members_by_zone

HINT = ("state the switch's real capabilities with `profile:` in the topology document if it misreports, "
        "or change the policy or the placement as the problem says")


@dataclass(frozen=True)
class Refusal:
    dpid: int
    switch: str
    reason: str
    fix: str

    @property
    def count(self) -> int:  # what the enforcer logs once per change (as for an Overflow)
        return hash(self.reason)

    @property
    def where(self) -> str:
        return f"switch {self.switch} (dpid {self.dpid:#x})"

    def problem(self) -> str:
        return f"cannot enforce the policy within its profile: {self.reason}; fix: {self.fix}"

    def describe(self) -> str:
        return f"{self.where} {self.problem()}"


def refusals(policy: Policy, topology: Topology, tables: dict[int, SwitchTables],
             names: dict[int, str] | None = None) -> list[Refusal]:
    names = names or {}
    found: list[Refusal] = []
    located = locate_assets(policy, topology)
    members = members_by_zone(policy)
    relations = expand(policy)
    for dpid in sorted(tables):
        profile = topology.profile(dpid)
        switch = names.get(dpid, f"{dpid:#x}")
        if not profile.conntrack and _tracks(tables[dpid]):
            stateful = sorted({r.origin for r in relations if r.stateful and dpid in (
                endpoint_hosts(r.source, members, located) | endpoint_hosts(r.destination, members, located))})
            found.append(Refusal(dpid, switch,
                                 f"it has no connection tracking, and stateful conduit(s) {', '.join(stateful)} "
                                 "need it here", "make them stateless (`stateful: false`), or attach their "
                                 "assets to switches that track connections"))
        if not profile.meters:
            pinned = {a.name for a in policy.assets if a.location is not None}
            learned = sorted(name for name, where in topology.attachments if where.dpid == dpid and name not in pinned)
            if learned:
                found.append(Refusal(dpid, switch,
                                     f"it has no meters, so it sends no samples to the controller, and asset(s) "
                                     f"{', '.join(learned)} are not pinned: otseg learns where unpinned assets are "
                                     "from those samples", "pin them (`location: {switch: NAME, port: N}`)"))
    return found


def _tracks(tables: SwitchTables) -> bool:
    return any(isinstance(action, Conntrack) for flow in tables.flows for i in flow.instructions
               if isinstance(i, ApplyActions) for action in i.actions)


def warnings(policy: Policy, topology: Topology, names: dict[int, str] | None = None) -> list[str]:
    """Conduits whose replies a switch without tcp_flags cannot tell from connections the
    responder opens (they are admitted where the responder is attached)."""
    names = names or {}
    weak = sorted(d for d in topology.switches if not topology.profile(d).tcp_flags)
    if not weak:
        return []
    located = locate_assets(policy, topology)
    members = members_by_zone(policy)
    found: dict[int, set[str]] = {}
    for relation in expand(policy):
        if relation.direction != "reply" or relation.stateful or relation.match is None \
                or relation.match.protocol != "tcp":
            continue
        for dpid in endpoint_hosts(relation.source, members, located):
            if dpid in weak:
                found.setdefault(dpid, set()).add(relation.origin)
    return [f"switch {names.get(dpid, f'{dpid:#x}')} cannot match tcp_flags: conduit(s) {', '.join(sorted(o))} "
            "lose initiator-only enforcement there (a responder attached to it can open a TCP connection from "
            "the service port); make them `stateful: true` where the switch tracks connections, or accept it"
            for dpid, o in sorted(found.items())]


