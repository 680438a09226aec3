"""The enforcer: holds the inputs (policy, switches, links, asset bindings) and reconciles.

Events only change inputs; `reconcile` recomputes everything downstream from them:
compile (pure) -> per switch diff against what the switch really holds -> apply.
A switch is first *read* (our cookies only) and only then diffed, so a restarted
controller adds what is missing and removes what is stale without flushing anything.
No os-ken import here: switches are reached through the SwitchChannel protocol, so the
whole state machine is unit-tested with a fake switch. One switch's read and write are
controller/app/switch_writer.py; this module decides which switch gets which tables, and when.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Callable, Iterable

from controller.app.sightings import SightingLog
from controller.app.switch_state import (  # noqa: F401  (ApplyError and SwitchChannel are part of this module's API)
    SETTLE_SECONDS, STARTUP_GRACE_SECONDS, TRUNK_WAIT_SECONDS, ApplyError, Binding, ReconcileReport, SwitchChannel,
    SwitchState,
)
from controller.app.switch_profiles import SwitchProfiles
from controller.app.switch_writer import read_tables, send_bootstrap, write_tables
from controller.core.budget import HINT, Overflow, entry_limits, overflows
from controller.core.fit import Refusal, refusals
from controller.core.compiler import CompileCache, locate_assets
from controller.core.diff import SwitchPlan, is_ours
from controller.core.drift import Repair, flow_drift, group_drift, meter_drift
from controller.core.flows import SwitchTables
from controller.core.grace import may_wait
from controller.core.staging import VERSIONED_TABLES
from controller.core.learning import Decision, Sighting, bindings_in_flows, classify, trunks_in_flows
from controller.core.learn import Conversation
from controller.core.model import Policy
from controller.core.profiles import Profile
from controller.core.pipeline import POLICY, PORT_SECURITY
from controller.core.topology import Link, PortRef, Topology

log = logging.getLogger("otseg.enforcer")


class Enforcer:
    def __init__(self, policy: Policy, clock: Callable[[], float] = time.monotonic,
                 settle_seconds: float = SETTLE_SECONDS, startup_grace: float = STARTUP_GRACE_SECONDS,
                 fast_failover: bool = True, declared_links: frozenset[Link] = frozenset(),
                 known_switches: frozenset[int] | None = None, remove_foreign: bool = True,
                 pause: Callable[[], None] = lambda: None,
                 on_flow_mods: Callable[[int], object] = lambda count: None,
                 executor: Callable[..., dict[int, SwitchTables]] = lambda function, *args: function(*args),
                 resumed: bool = False, budgets: dict[int, int] | None = None,
                 switch_names: dict[int, str] | None = None, profiles: SwitchProfiles | None = None,
                 writable: Callable[[int], bool] = lambda dpid: True) -> None:
        self.policy = policy
        # Cluster mode: a switch is written only while it has confirmed this instance as its master.
        self.writable = writable
        # Each switch's capability profile (stated in the topology document, or discovered).
        self.profiles = profiles or SwitchProfiles()
        # Learn mode (controller/app/learner.py): recorded conversations get counting entries.
        self.conversations: frozenset[Conversation] = frozenset()
        self.learn_full = False
        # Entries each switch can hold (max_flows in the topology document): a switch whose
        # compiled tables exceed it keeps what it holds, and a push that would do so is refused.
        self.budgets = dict(budgets or {})
        self.switch_names = dict(switch_names or {})
        # The switches were programmed with this very policy (a restart): during the start-up grace,
        # allow-list rules toward assets whose switch has not reconnected yet are kept too.
        self.resumed = resumed
        # Flows in otseg's tables that otseg did not install: removed (the default), or kept for a
        # switch shared with another application (`otseg run --foreign-flows keep`).
        self.remove_foreign = remove_foreign
        self.repairs: dict[tuple[int, str], int] = {}  # (dpid, kind) -> repairs made
        self.policy_serial = 0  # +1 on every applied policy: which switches hold the one in force
        self.kept_foreign: set[tuple[int, tuple[object, ...]]] = set()  # reported once each
        self.declared_links = declared_links
        # Switches the topology document names; a binding on a switch outside it may move
        # once that switch is gone. None (no document): a switch is never taken as gone.
        self.known_switches = known_switches
        self.fast_failover = fast_failover
        self.clock = clock
        self.settle_seconds = settle_seconds
        self.settled_at = 0.0
        self.deletions_from = clock() + startup_grace
        self.flow_mods_total = 0
        self.switches: dict[int, SwitchState] = {}
        self.headless: set[int] = set()  # known switches that lost their control channel (still forwarding)
        self.links: set[Link] = set()  # live links: declared, and verified by LLDP both ways
        self.ports: dict[int, set[int]] = {}
        self.bound: dict[str, Binding] = {}
        self.down_ports: set[PortRef] = set()
        self.events: dict[str, int] = {}
        self.reported = SightingLog(clock)  # bounded per port: an outsider chooses its MACs
        self.last_report: ReconcileReport | None = None
        self._pins_of: Policy | None = None
        self._pins_cache: dict[str, PortRef] = {}
        self._trunks_of: frozenset[Link] | None = None
        self._trunks_cache: frozenset[PortRef] = frozenset()
        self._deferred = 0
        self._defer = True
        self._overflow_reported: dict[int, int] = {}
        # Runs each compile: the shell passes a native thread, so its hub keeps answering meanwhile.
        self.compiled = CompileCache(executor=executor)
        # Called between switches in a reconcile: the shell passes the hub's yield, so that
        # LLDP, barriers and the API are served while thousands of flow-mods are encoded.
        self.pause = pause
        # Told how many messages a reconcile sent (the shell holds LLDP link expiry meanwhile).
        self.on_flow_mods = on_flow_mods

    # -- inputs ---------------------------------------------------------------------------
    @property
    def learned(self) -> dict[str, PortRef]:
        return {name: binding.where for name, binding in self.bound.items()}

    def switch_connected(self, channel: SwitchChannel, ports: Iterable[int] = ()) -> None:
        self.switches[channel.dpid] = SwitchState(channel, connected_at=self.clock())
        self.profiles.connected(channel.dpid)
        self.headless.discard(channel.dpid)
        self.ports[channel.dpid] = set(ports)
        # Links are not known until LLDP has crossed them: let the topology settle (see
        # settle_remaining: with a topology document, only while a declared link is missing).
        self.settled_at = self.clock() + self.settle_seconds
        log.info("switch %s connected", _dpid(channel.dpid))

    def ports_described(self, dpid: int, ports: Iterable[int], down: Iterable[int] = ()) -> None:
        """The switch described its ports (after it connected)."""
        if dpid in self.switches:
            self.ports[dpid] = set(ports)
            self.down_ports = {p for p in self.down_ports if p.dpid != dpid} | {PortRef(dpid, n) for n in down}

    def switch_disconnected(self, dpid: int) -> None:
        """The switch keeps its tables (fail-mode secure) and goes on forwarding with them: it
        stays in the topology *headless*, with its ports, its links (until a neighbour's end of
        one goes down) and its assets, so that nothing elsewhere changes because it lost its
        control channel (traffic to its assets from other switches keeps flowing). Only a
        switch the topology document does not name is dropped."""
        if self.switches.pop(dpid, None) is None:
            return
        if self.known_switches is not None and dpid not in self.known_switches:
            log.warning("switch %s disconnected; it is not in the topology document: dropped", _dpid(dpid))
            self.links = {link for link in self.links if dpid not in (link.a.dpid, link.b.dpid)}
            self.ports.pop(dpid, None)
            return
        self.headless.add(dpid)
        log.warning("switch %s disconnected (it keeps enforcing its tables: fail-mode secure; its links and assets "
                    "are kept as they were)", _dpid(dpid))

    def declare_links(self, links: frozenset[Link]) -> None:
        self.declared_links = links
        self.links &= set(links)

    def link_up(self, link: Link) -> bool:
        if link in self.links:
            return False
        if link not in self.declared_links:
            log.error("link %s is not declared: it is not used (approve it with `otseg links approve`)", _link(link))
            return False
        self.links.add(link)
        log.info("link up %s", _link(link))
        return True

    def link_down(self, link: Link) -> bool:
        if link not in self.links:
            return False
        self.links.discard(link)
        log.warning("link down %s", _link(link))
        return True

    def port_down(self, where: PortRef) -> bool:
        """A port went down: learned (unpinned) assets there are unbound, so they may move."""
        self.down_ports.add(where)
        moved = [name for name, binding in self.bound.items() if binding.where == where]
        for name in moved:
            del self.bound[name]
            log.info("asset %s unbound: its port %s went down", name, _port(where))
        return bool(moved)

    def port_up(self, where: PortRef) -> None:
        self.down_ports.discard(where)
        if where.dpid in self.ports:
            self.ports[where.dpid].add(where.port)

    def port_deleted(self, where: PortRef) -> None:
        self.port_down(where)
        self.ports.get(where.dpid, set()).discard(where.port)

    def held_bindings(self) -> dict[str, PortRef]:
        """Pins and learned bindings, connected or not: what a sighting is judged against."""
        held = dict(self._pins())
        held.update(self.learned)
        return held

    def _pins(self) -> dict[str, PortRef]:
        # On the packet-in path: computed once per policy, not once per frame.
        if self._pins_of is not self.policy:
            self._pins_cache = {a.name: PortRef(a.location.dpid, a.location.port)
                                for a in self.policy.assets if a.location}
            self._pins_of = self.policy
        return self._pins_cache

    def trunk_ports(self) -> frozenset[PortRef]:
        if self._trunks_of is not self.declared_links:
            self._trunks_cache = frozenset(end for link in self.declared_links for end in (link.a, link.b))
            self._trunks_of = self.declared_links
        return self._trunks_cache

    def _switch_gone(self, dpid: int) -> bool:
        return self.known_switches is not None and dpid not in self.known_switches and dpid not in self.switches

    def frame_sampled(self, sighting: Sighting) -> Decision:
        """A frame the switch could not classify (table-0 miss sample).

        An unpinned asset moves only when its old port went down (that unbinds it), or when its
        old switch is gone from the topology and the new port is an edge port. A MAC that shows
        up elsewhere while its binding holds is a conflict: a receive-only device looks silent
        for ever, so silence is no evidence that it left."""
        decision = classify(sighting, self.policy, self.held_bindings(), self.trunk_ports())
        if decision.kind == "conflict" and decision.asset in self.bound and self._switch_gone(
                self.bound[decision.asset].where.dpid):
            old = self.bound.pop(decision.asset).where
            log.info("asset %s: its switch %s is gone from the topology: moved", decision.asset, _dpid(old.dpid))
            decision = Decision("bind", sighting, decision.asset, old)
        self.events[decision.kind] = self.events.get(decision.kind, 0) + 1
        if decision.kind == "bind":
            assert decision.asset is not None
            self.bound[decision.asset] = Binding(sighting.where, sighting.mac.lower())
            log.info(decision.describe())
        elif decision.kind != "ignore":
            if self.reported.first_time(decision.kind, sighting.mac, sighting.where):  # once per device and place
                log.warning(decision.describe())
        return decision

    def settle_remaining(self) -> float:
        """How long to wait before compiling after a switch connected. With a topology document,
        nothing once every declared link is up (a switch that comes back with its links held, or a
        complete restart); otherwise the settle time, so that paths are not compiled around links
        LLDP has not crossed yet, or around switches that have not reconnected yet."""
        if self.known_switches is not None and self.declared_links <= self.links:
            return 0.0
        if self.resumed and self.known_switches is not None:
            # A restart with the policy the switches hold: they enforce it meanwhile, so wait (up to
            # the start-up grace) for every declared link, rather than compile paths around a switch
            # whose connection is still coming back (a reconnect backs off for seconds).
            return max(0.0, self.settled_at - self.clock(), self.deletions_from - self.clock())
        return max(0.0, self.settled_at - self.clock())
    def locate_candidates(self, asset_name: str) -> list[PortRef]:
        """Edge ports where an unlocated asset could be: up, on a connected switch, bound to nobody."""
        taken = set(self.held_bindings().values())
        trunks = self.trunk_ports()
        return sorted(PortRef(dpid, port) for dpid, ports in self.ports.items() if dpid in self.switches
                      for port in ports if PortRef(dpid, port) not in taken | trunks | self.down_ports)

    # -- derived --------------------------------------------------------------------------
    def topology(self) -> Topology:
        connected = frozenset(self.switches) | frozenset(self.headless)  # a headless switch still forwards
        links = frozenset(l for l in self.links if l.a.dpid in connected and l.b.dpid in connected)
        ports = frozenset(PortRef(dpid, port) for dpid, numbers in self.ports.items() if dpid in connected
                          for port in numbers)
        declared = frozenset(end for end in self.trunk_ports() if end.dpid in connected)
        return Topology(connected, links, tuple(sorted(self.learned.items())), ports, declared,
                        self.profiles.table(connected), tuple(sorted(self.conversations)), self.learn_full)

    def switch_profile(self, dpid: int, profile: Profile) -> None:
        """Discovery read what the switch can do: its tables follow that profile (unless overridden)."""
        if self.profiles.reported(dpid, profile) and dpid in self.switches:
            self.switches[dpid].installed = None  # re-read: its tables are recompiled for the new profile

    def bindings(self) -> dict[str, PortRef]:
        return locate_assets(self.policy, self.topology())

    def desired(self) -> dict[int, SwitchTables]:
        return self.compiled.tables(self.policy, self.topology(), self.fast_failover)

    # -- reconcile ------------------------------------------------------------------------
    def reconcile(self, defer_deletes: bool = True) -> ReconcileReport:
        """Bring every connected switch to the compiled tables. `defer_deletes=False` (a policy
        push) applies deletions even during the start-up grace: a push is complete when it returns."""
        start = self.clock()
        self._defer = defer_deletes
        plans: dict[int, str] = {}
        errors: dict[int, str] = {}
        for dpid, state in sorted(self.switches.items()):
            if state.installed is None:
                try:
                    self._read(state)
                except ApplyError as error:
                    errors[dpid] = str(error)
        topology = self.topology()
        desired = self.compiled.tables(self.policy, topology, self.fast_failover)
        for overflow in self.overflows(desired, self.policy, topology):
            errors[overflow.dpid] = overflow.describe()
            if self._overflow_reported.get(overflow.dpid) != overflow.count:
                self._overflow_reported[overflow.dpid] = overflow.count
                log.error("%s: it keeps the tables it holds until the policy or the topology fits%s",
                          overflow.describe(), f" ({HINT})" if isinstance(overflow, Overflow) else "")
        flow_mods = 0
        self._deferred = 0
        waiting = tuple(dpid for dpid, state in sorted(self.switches.items()) if self._awaiting_trunks(state))
        for dpid, state in sorted(self.switches.items()):
            tables = desired.get(dpid)
            if tables is None or dpid in errors or not self.writable(dpid):
                continue
            if self.profiles.awaiting(dpid, self.clock() - state.connected_at):
                continue  # never programmed for capabilities it may not have
            if dpid in waiting:
                if tables is not None and state.installed is not None and not any(map(is_ours, state.installed)):
                    flow_mods += send_bootstrap(state, tables, self._atomic(state))
                continue
            try:
                sent = self._reconcile_switch(state, tables)
                flow_mods += sent
                plans[dpid] = state.last_plan
                if sent:
                    self.pause()
            except ApplyError as error:
                state.failures += 1
                state.installed = None  # re-read before the next attempt
                errors[dpid] = str(error)
                log.error("switch %s refused changes: %s", _dpid(dpid), error)
        report = ReconcileReport(self.clock() - start, plans, flow_mods, errors, self._deferred, waiting)
        self.flow_mods_total += flow_mods
        if flow_mods:
            self.on_flow_mods(flow_mods)
        self.last_report = report
        return report

    def overflows(self, tables: dict[int, SwitchTables], policy: Policy, topology: Topology
                  ) -> list[Overflow | Refusal]:
        """Switches that cannot take `tables` (compiled for `policy` on `topology`): over their
        budget (max_flows, or the entries their profile says they hold), or unable to enforce the
        policy within their profile."""
        refused: list[Overflow | Refusal] = list(refusals(policy, topology, tables, self.switch_names))
        limits = entry_limits(self.budgets, topology)
        over = [dpid for dpid, limit in limits.items() if dpid in tables and self._peak(dpid, tables[dpid]) > limit]
        if not over:
            return refused
        contributions = self.compiled.contributions(self.fast_failover, policy, topology, over)
        return refused + [replace(o, count=self._peak(o.dpid, tables[o.dpid]))  # at the peak of its update
                          for o in overflows(tables, {dpid: limits[dpid] for dpid in over}, contributions,
                                             self.switch_names)]

    def _destination_tags(self) -> dict[str, int]:
        """Each asset's MAC and the destination ids (metadata) the policy in force gives it."""
        ctx = self.compiled.engines[self.fast_failover].ctx
        if ctx is None or ctx.policy is not self.policy:
            self.compiled.tables(self.policy, self.topology(), self.fast_failover)
            ctx = self.compiled.engines[self.fast_failover].ctx
        assert ctx is not None
        return {asset.mac: ctx.asset_dst_tag(asset) for asset in self.policy.assets}

    def _peak(self, dpid: int, tables: SwitchTables) -> int:
        """Entries the switch holds at most while it takes these tables: a version-tagged update holds
        both versions' destination and policy entries for a while."""
        state = self.switches.get(dpid)
        profile = self.profiles.of(dpid)
        if state is None or self._atomic(state) or profile.single_table:
            return len(tables.flows)
        return len(tables.flows) + sum(1 for f in tables.flows if f.table in VERSIONED_TABLES and f.priority > 0)

    def _atomic(self, state: SwitchState) -> bool:
        """Does this switch take its flow changes in one ONF bundle?"""
        return self.profiles.of(state.channel.dpid).bundles and getattr(state.channel, "bundles", True)

    def _awaiting_trunks(self, state: SwitchState) -> bool:
        if not state.expected_trunks or self.clock() - state.connected_at > TRUNK_WAIT_SECONDS:
            return False
        dpid = state.channel.dpid
        linked = {end.port for link in self.links for end in (link.a, link.b) if end.dpid == dpid}
        return not state.expected_trunks <= linked

    def grace_remaining(self) -> float:
        return max(0.0, self.deletions_from - self.clock())

    def _read(self, state: SwitchState) -> None:
        """Read what the switch holds, and adopt the asset bindings it still enforces.

        After a controller restart the switch is the memory: its port-security flows say
        where each unpinned asset was bound, so the new process keeps those bindings instead
        of deleting the flows of every asset that has not spoken since.
        """
        read_tables(state)
        assert state.installed is not None
        # The trunks to wait for: those its own flows show (it kept its tables), and its declared links.
        declared = frozenset(end.port for end in self.trunk_ports() if end.dpid == state.channel.dpid)
        state.expected_trunks = trunks_in_flows(state.installed) | declared
        for name, where in bindings_in_flows(self.policy, state.channel.dpid, state.installed,
                                             self.topology().trunk_ports).items():
            if name not in self.bound and where not in self.down_ports:  # a port that went down unbound it
                self.bound[name] = Binding(where, self.policy.asset(name).mac)
                log.info("asset %s bound at %s (adopted from the switch's flows)", name, _port(where))

    def _reconcile_switch(self, state: SwitchState, tables: SwitchTables) -> int:
        if state.installed is None:
            self._read(state)
        profile = self.profiles.of(state.channel.dpid)
        sent, rewritten = write_tables(state, tables, atomic=self._atomic(state), single_table=profile.single_table,
                                       remove_foreign=self.remove_foreign, serial=self.policy_serial,
                                       hold_back=self._hold_back)
        if rewritten:
            key = (state.channel.dpid, "unreadable")
            self.repairs[key] = self.repairs.get(key, 0) + 1
        return sent

    def _hold_back(self, plan: SwitchPlan) -> SwitchPlan:
        """The plan without the deletions that wait for the end of the start-up grace (counted in
        the report). Forwarding state (which depends on the topology) waits; admission rules (port
        security, the allow-list) that are no longer desired go at once: a stale binding or a
        revoked conduit must not linger, and nothing that forwards depends on them.

        After a restart with the same policy, an allow-list rule that is not desired only means that
        its destination's switch has not reconnected yet: it waits too. With another policy than the
        switches were given, a destination entry may classify a MAC with the ids of its old zone,
        which the new allow-list may admit: only entries that classify as the policy in force does
        (or admit nothing) may wait."""
        if not (self._defer and self.grace_remaining() > 0 and (plan.flows.delete or plan.groups_delete)):
            return plan
        admission = (PORT_SECURITY,) if self.resumed else (POLICY, PORT_SECURITY)
        tags = None if self.resumed else self._destination_tags()
        keep = frozenset(f for f in plan.flows.delete if f.table not in admission and (tags is None or may_wait(f, tags)))
        if not keep and not plan.groups_delete:
            return plan
        self._deferred += len(keep) + len(plan.groups_delete)
        return replace(plan, flows=replace(plan.flows, delete=tuple(f for f in plan.flows.delete if f not in keep)),
                       groups_delete=())

    def apply_policy(self, policy: Policy) -> ReconcileReport:
        """Put `policy` in force on every switch, or on none.

        Each switch gets only its changed flows, in one atomic bundle. If any switch refuses,
        the previous policy is put back everywhere (switches already changed are re-read and
        reconciled to it) and ApplyError says which switch refused what."""
        previous, previous_bound = self.policy, dict(self.bound)
        self.policy = policy
        self.policy_serial += 1
        self.bound = {name: b for name, b in self.bound.items() if _same_mac(policy, name, b.mac)}
        report = self.reconcile(defer_deletes=False)
        if report.errors:
            self.policy, self.bound = previous, previous_bound
            self.policy_serial += 1  # the previous policy, put back: a new serial, so nobody counts as current
            for state in self.switches.values():
                state.installed = None
            restored = self.reconcile()
            detail = "; ".join(f"switch {_dpid(d)}: {e}" for d, e in sorted(report.errors.items()))
            if restored.errors:
                detail += " (and restoring the previous policy failed on " + ", ".join(
                    _dpid(d) for d in restored.errors) + ": it will be retried)"
            raise ApplyError(detail)
        return report

    def adopt_policy(self, policy: Policy) -> None:
        """A cluster follower takes the policy the leader put in force, without writing anything:
        its compiled state stays warm for a takeover."""
        self.policy = policy
        self.policy_serial += 1
        self.bound = {name: b for name, b in self.bound.items() if _same_mac(policy, name, b.mac)}

    def take_over(self) -> None:
        """This instance became the switches' master: what they hold is re-read (the previous
        leader wrote it), and diffed, never flushed. They hold the policy in force."""
        self.resumed = True
        for state in self.switches.values():
            state.installed, state.synced_to, state.synced_installed = None, None, None

    def audit(self) -> dict[int, list[Repair]]:
        """Re-read every programmed switch and compare with what we believe it holds; the caller
        then reconciles, which repairs each difference. Returns the repairs per switch (foreign
        flows kept by `remove_foreign=False` are reported once, and not repaired)."""
        found: dict[int, list[Repair]] = {}
        for dpid, state in sorted(self.switches.items()):
            if not state.programmed or state.installed is None:
                continue
            believed, groups, meters = state.installed, dict(state.groups), dict(state.meters)
            try:
                self._read(state)
            except ApplyError as error:
                state.installed = None
                log.warning("audit of switch %s could not read it: %s", _dpid(dpid), error)
                continue
            assert state.installed is not None
            if state.unreadable:
                repairs = [Repair("unreadable", "its flow table cannot be read (a flow os-ken cannot parse?): "
                                                "rewritten whole, atomically")]
            else:
                repairs = flow_drift(believed, state.installed) + group_drift(groups, state.groups) + meter_drift(
                    meters, state.meters)
            if not self.remove_foreign:
                kept = [r for r in repairs if r.kind == "foreign"]
                new = [r for r in kept if (dpid, (r.what,)) not in self.kept_foreign]
                self.kept_foreign.update((dpid, (r.what,)) for r in kept)
                for repair in new:
                    log.warning("switch %s holds a foreign flow (kept, --foreign-flows keep): %s", _dpid(dpid),
                                repair.what)
                repairs = [r for r in repairs if r.kind != "foreign"]
            for repair in repairs:
                self.repairs[(dpid, repair.kind)] = self.repairs.get((dpid, repair.kind), 0) + 1
                log.warning("switch %s drifted, repairing: %s", _dpid(dpid), repair.describe())
            if repairs:
                found[dpid] = repairs
        return found

    def pending_switches(self) -> dict[int, str]:
        """Connected switches that do not hold the policy in force yet, and why."""
        pending: dict[int, str] = {}
        for dpid, state in sorted(self.switches.items()):
            if state.enforces == self.policy_serial:
                continue
            if not self.writable(dpid):
                why = "this instance is not its OpenFlow master"
            elif self._awaiting_trunks(state):
                why = "waiting for its trunk links to be verified"
            elif not state.programmed:
                why = "connected, not programmed yet (the topology is settling)"
            else:
                why = "its last update failed; retried"
            held = ("the tables of an earlier policy" if state.enforces >= 0 else
                    "the tables it already held when it connected" if state.installed else "no otseg tables yet")
            pending[dpid] = f"{why}; it enforces {held} until then"
        return pending

    def resync(self, dpid: int) -> None:
        """Forget what we believe a switch holds: the next reconcile re-reads it."""
        if dpid in self.switches:
            self.switches[dpid].installed = None


def _same_mac(policy: Policy, name: str, mac: str) -> bool:
    """Bindings follow the MAC: an asset whose MAC changed (or that is gone) is not where it was."""
    asset = next((a for a in policy.assets if a.name == name), None)
    return asset is not None and asset.mac == mac


def _dpid(dpid: int) -> str:
    return f"{dpid:#x}"


def _port(where: PortRef) -> str:
    return f"{where.dpid:#x}:{where.port}"


def _link(link: Link) -> str:
    return f"{_port(link.a)} <-> {_port(link.b)}"
