"""The verifier: do these tables, on this topology, do exactly what the policy says, for every
packet, with every link up and with any one link down?

Role: `verify(policy, topology, tables, located)` composes `SwitchModel`s along the links
(`controller.verify.network.propagate`), compares what leaves every port with what the policy
allows there (`controller.verify.allowed.Allowed`), and returns a `Report` of findings, each
with one concrete counterexample replayed through the concrete interpreter
(`controller.verify.walk`) for its path and the entries it hit.

Invariants checked, per scenario (all links up; then each single link down, with the tables
unchanged, as fast failover must cope before the controller reacts):
- isolation: nothing leaves any port beyond what the policy allows there (ports where no
  asset is bound included: nothing may leave there);
- availability: everything the policy allows between bound assets leaves at the receiver
  (under a link failure: unicast between assets the remaining links still connect);
- no loops: no packet enters the same switch port twice;
- the controller sees only what the policy does not deliver (discovery, samples of denied and
  unbound traffic): no allowed packet is also sent to it;
- connection tracking: a reply is accepted only in a connection a stateful conduit tracks. If
  the tables commit other connections too, the check is run again with those open (their
  replies established) and isolation must still hold; the commit itself is a note;
- determinism: no two flows of equal priority overlap with different instructions.

Fails closed: a table the verifier cannot model exactly is a finding (`model`), never a pass.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping

import networkx as nx

from controller.core.topology import locate_assets
from controller.core.flows import SwitchTables
from controller.core.model import Policy
from controller.core.topology import Link, PortRef, Topology
from controller.verify.allowed import Allowed
from controller.verify.counterexample import Counterexample, explain
from controller.verify.network import Reach, models_for, propagate, switch_index
from controller.verify.space import Function, ModelError, Space, universe
from controller.verify.switch_model import SwitchModel
from controller.verify.tracker import tracker_answers

MAX_TRACKER_ROUNDS = 5
INVARIANTS = ("isolation", "availability", "loop", "controller", "ambiguity", "model")


@dataclass
class Finding:
    invariant: str
    scenario: Link | None  # the link down, None: all links up
    where: PortRef | None
    summary: str
    example: Counterexample | None = None

    def describe(self, names: Mapping[int, str] | None = None) -> str:
        names = names or {}
        cut = "all links up" if self.scenario is None else f"link {_end(self.scenario.a, names)} - " \
                                                            f"{_end(self.scenario.b, names)} down"
        where = "" if self.where is None else f" at {_end(self.where, names)}"
        text = f"{self.invariant.upper()}{where} ({cut}): {self.summary}"
        if self.example is not None:
            text += "\n" + self.example.describe(names)
        return text


def _end(end: PortRef, names: Mapping[int, str]) -> str:
    return f"{names.get(end.dpid, f'{end.dpid:#x}')}:{end.port}"


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    scenarios: int = 0
    ports: int = 0
    switches: int = 0
    flows: int = 0
    seconds: float = 0.0
    nodes: int = 0
    hops: int = 0
    bound: int = 0  # assets located (bound to a port): availability is checked for these
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def counts(self) -> dict[str, int]:
        found = {name: 0 for name in INVARIANTS}
        for finding in self.findings:
            found[finding.invariant] += 1
        return found


@dataclass
class Verifier:
    """One policy, topology and bindings; `check(tables)` verifies a set of tables against them.
    Reusable: switch models of unchanged tables and the allowed sets are kept between checks."""

    policy: Policy
    topology: Topology
    located: Mapping[str, PortRef] | None = None
    failures: bool = True
    examples_per_invariant: int = 3
    space: Space = field(default_factory=Space)
    _models: dict[int, tuple[SwitchTables, SwitchModel]] = field(default_factory=dict)
    _allowed: Allowed | None = None
    _settled: tuple[dict[int, Function], dict[int, Function]] | None = None  # trackers' commits, and answers

    def __post_init__(self) -> None:
        if self.located is None:
            self.located = locate_assets(self.policy, self.topology)

    def retarget(self, policy: Policy, topology: Topology, located: Mapping[str, PortRef] | None = None) -> None:
        """Verify against another policy, topology or bindings from now on; the switch models
        (of tables, which do not depend on them) are kept."""
        located = dict(located) if located is not None else locate_assets(policy, topology)
        if (policy, topology, located) != (self.policy, self.topology, self.located):
            self.policy, self.topology, self.located = policy, topology, located
            self._allowed, self._settled = None, None

    @property
    def allowed(self) -> Allowed:
        if self._allowed is None:
            assert self.located is not None
            self._allowed = Allowed(self.space, self.policy, self.located, self.topology)
        return self._allowed

    def check(self, tables: Mapping[int, SwitchTables]) -> Report:
        started = time.perf_counter()
        report = Report(switches=len(self.topology.switches), flows=sum(len(t.flows) for t in tables.values()),
                        bound=len(self.located or {}))
        try:
            models = models_for(self.space, dict(tables), self.topology, self._models)
        except ModelError as error:
            report.findings.append(Finding("model", None, None, str(error)))
            report.seconds = time.perf_counter() - started
            return report
        for model in models.values():
            for ambiguity in model.ambiguities:
                a, b = ambiguity.flows
                report.findings.append(Finding(
                    "ambiguity", None, PortRef(ambiguity.dpid, 0),
                    f"two flows of priority {ambiguity.priority} in table {ambiguity.table} of switch "
                    f"{ambiguity.dpid:#x} overlap with different instructions (the switch may use either): "
                    f"{a} / {b}"))
        scenarios: list[Link | None] = [None]
        if self.failures:
            scenarios += sorted(self.topology.links)
        for cut in scenarios:
            try:
                self._scenario(report, tables, models, cut)
            except ModelError as error:
                report.findings.append(Finding("model", cut, None, str(error)))
            report.scenarios += 1
        report.nodes = self.space.nodes()
        report.seconds = time.perf_counter() - started
        return report

    def _scenario(self, report: Report, tables: Mapping[int, SwitchTables], models: dict[int, SwitchModel],
                  cut: Link | None) -> None:
        s, allowed = self.space, self.allowed
        dead = frozenset({cut}) if cut is not None else frozenset()
        reach, domain = self._reach(report, models, dead)
        report.hops = max(report.hops, reach.hops)
        origins = None if cut is None else self._connected_origins(cut)
        ports = sorted(set(reach.delivered) | set(allowed.by_port))
        report.ports = max(report.ports, len(ports))
        budget = {name: self.examples_per_invariant for name in INVARIANTS}

        def found(invariant: str, where: PortRef | None, packets: Function, summary: str) -> None:
            example = None
            if budget[invariant] > 0:
                budget[invariant] -= 1
                example = explain(self, tables, cut, invariant, where, packets)
            report.findings.append(Finding(invariant, cut, where, summary, example))

        delivered_as_sent = s.false  # what the policy delivers, as its senders sent it
        for where in ports:
            leaving = reach.delivered.get(where, s.false)
            must = allowed.at(where, domain=domain)
            if cut is None:
                delivered_as_sent |= s.forget(must, ["eth_dst", "vlan", "pcp"])
            extra = leaving & ~must
            if extra != s.false:
                found("isolation", where, extra, "packets the policy does not allow leave by this port")
            expected = must if cut is None else allowed.at(where, unicast_only=True,
                                                                      origins=origins(where.dpid), domain=domain)
            missing = expected & ~leaving
            if missing != s.false:
                found("availability", where, missing, "packets the policy allows are not delivered to this port")
        for where, packets in reach.revisits:
            found("loop", where, packets, "packets enter this port a second time (a loop, or a duplicate)")
        for dpid, sampled in sorted(reach.controller.items()):
            waiting = s.forget(sampled, ["eth_dst", "vlan", "pcp"]) & delivered_as_sent
            if cut is None and waiting != s.false:
                found("controller", PortRef(dpid, 0), waiting & s.same("eth_dst", "o_eth_dst"),
                      "packets the policy allows are also sent to the controller (allowed traffic never waits "
                      "for, nor loads, the controller)")

    def settled_trackers(self) -> dict[int, Function] | None:
        """What each switch's tracker answers, as last settled with every link up (None: no tracking)."""
        return self._settled[1] if self._settled is not None else None

    def _reach(self, report: Report, models: dict[int, SwitchModel], dead: frozenset[Link]
               ) -> tuple[Reach, Function]:
        """Propagate with the oracle's domain; if the tables commit connections no stateful conduit
        tracks, propagate again with those connections open too (their replies then carry an
        established state the policy never gave them, and must still be refused)."""
        s, allowed = self.space, self.allowed
        # what the trackers know with every link up is the first guess under a failure too
        reach, settled = self._settle(models, dead, allowed.domain, self._settled if dead else None)
        if not dead:
            self._settled = settled
        assert reach.commits is not None
        wrong = reach.commits & s.eq("oracle", 0) & ~allowed.commit_allowed
        if wrong == s.false:
            return reach, allowed.domain
        opened = s.forget(wrong, [n for n in s.fields if n not in ("nw_src", "nw_dst", "nw_proto", "tp_src", "tp_dst")])
        replies = s.replies_to(opened)
        widened = allowed.domain | (s.eq("oracle", 2) & replies & allowed.packets.ipv4 & allowed.packets.whole) | (
            s.eq("oracle", 1) & opened & allowed.packets.ipv4 & allowed.packets.whole)
        widened &= universe(s)
        values = s.pick(wrong)
        assert values is not None
        dpid = sorted(self.topology.switches)[values["o_sw"]]
        names = getattr(self, "names", None) or {}
        report.notes.append(f"connections no stateful conduit tracks are committed (e.g. one opened from "
                            f"{names.get(dpid, f'{dpid:#x}')}:{values['o_port']}): "
                            "verified with their replies as established too")
        reach, _ = self._settle(models, dead, widened, settled)
        return reach, widened

    def _settle(self, models: dict[int, SwitchModel], dead: frozenset[Link], domain: Function,
                guess: tuple[dict[int, Function], dict[int, Function]] | None
                ) -> tuple[Reach, tuple[dict[int, Function], dict[int, Function]] | None]:
        """Each switch has its own connection tracker: a reply is established at a switch only
        if its connection was committed there. Start from `guess` (commits per switch and what
        the trackers answer then), or as if every switch knew every connection; then give each
        switch the commits it makes, until they no longer change."""
        s = self.space
        commits, lookups = guess if guess is not None else (None, None)
        for _ in range(MAX_TRACKER_ROUNDS):
            reach = propagate(s, models, self.topology, dead, domain, lookups)
            if not reach.commits_at and commits is None and not any(m.tracks for m in models.values()):
                return reach, None
            if commits is not None and reach.commits_at.keys() == commits.keys() and all(
                    reach.commits_at[d] == commits[d] for d in commits):
                return reach, (commits, lookups)  # type: ignore[return-value]
            commits = dict(reach.commits_at)
            lookups = {dpid: tracker_answers(s, commits.get(dpid, s.false)) for dpid, model in models.items()
                       if model.tracks}  # a switch that never asks its tracker needs no answers
        raise ModelError(f"connection tracking did not settle in {MAX_TRACKER_ROUNDS} rounds")

    def _connected_origins(self, cut: Link):  # type: ignore[no-untyped-def]
        graph = nx.MultiGraph()
        graph.add_nodes_from(self.topology.switches)
        graph.add_edges_from((l.a.dpid, l.b.dpid) for l in self.topology.links if l != cut)
        index = switch_index(self.topology)
        components = {dpid: frozenset(c) for c in nx.connected_components(graph) for dpid in c}

        def origins(dpid: int) -> Function:
            return self.space.one_of("o_sw", (index[d] for d in components[dpid]))
        return origins


def verify(policy: Policy, topology: Topology, tables: Mapping[int, SwitchTables],
           located: Mapping[str, PortRef] | None = None, failures: bool = True) -> Report:
    return Verifier(policy, topology, located, failures).check(tables)


__all__ = ["Finding", "Report", "Verifier", "verify", "Reach"]
