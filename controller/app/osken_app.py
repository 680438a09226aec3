"""The os-ken application: translates OpenFlow events into inputs of the enforcer and discovery.

Handlers never decide policy: they update the enforcer's inputs and wake the reconcile
worker, a single greenthread that compiles, diffs and applies. Packet-ins are parsed by our
own total parser and decided by `samples.SampleHandler`; LLDP goes to our own discovery
(`discovery.LinkDiscovery`): os-ken's `switches` app is not loaded, so no third-party parser
sees a frame from a switch port. Every handler is guarded: an unexpected exception is counted
and logged rate-limited, never dumped per frame.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable

from os_ken.base import app_manager
from prometheus_client import CollectorRegistry
from os_ken.controller import ofp_event
from os_ken.controller.handler import CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.lib import hub
from os_ken.ofproto import ofproto_v1_3, ofproto_v1_3_parser

from eventlet import tpool

from controller.app.audit import CompileVerifier, DriftAuditor
from controller.app.capabilities import read_features
from controller.app.channel import OsKenChannel
from controller.app.counters import CounterPoller
from controller.app.discovery import DiscoveryEvents, LinkDiscovery
from controller.app.enforcer import Enforcer
from controller.app.hub_compat import serialised
from controller.app.events import EventLog
from controller.app.link_control import LinkControl
from controller.app.linkbook import LinkBook, PendingLink
from controller.app.metrics import Metrics
from controller.app.api import create_api
from controller.console.web import ConsoleSources
from controller.app.api_server import serve_api
from controller.app.control import ControlPlane
from controller.app.ofp_edge import async_config, packet_out, switch_config
from controller.app.forward import forwarder
from controller.app.cluster_shell import ClusterShell
from controller.app.ha import ClusterMember
from controller.app.roles import SwitchRoles
from controller.app.requests import SwitchRequests
from controller.app.samples import ErrorBudget, SampleHandler
from controller.app.status import StatusWriter, overrides_status, snapshot
from controller.app.store import PolicyStore, version_of
from controller.app.switch_profiles import SwitchProfiles
from controller.app.override_control import OverrideControl
from controller.app.learner import Learner
from controller.core.learn import DEFAULT_BUDGET
from controller.core.overrides import Overrides
from controller.app import table_features
from controller.policy.diagnostics import DocumentError
from controller.core.model import Policy
from controller.core.profiles import Profile, from_features
from controller.app.verification import PushVerifier, TableVerifier, switch_tables
from controller.core.codec import live_document
from controller.core.topology import Link, PortRef, locate_assets

log = logging.getLogger("otseg.app")
DEBOUNCE = 0.02
STATUS_PERIOD = 2.0
RESYNC_PERIOD = 60.0  # and the tables re-diffed (against what we installed) at least this often
SAFETY_PERIOD = 10.0  # OVSDB settings re-checked this often (one ovs-vsctl transaction)
MAX_PORT = 0xFFFFFF00


@dataclass
class Settings:
    policy: Policy
    policy_version: str
    policy_text: bytes
    store: PolicyStore
    status_file: str | None = None
    fast_failover: bool = True
    api_host: str = "127.0.0.1"
    api_port: int = 8181
    api_token: tuple[str, str] | None = None
    policy_file: str | None = None
    events: str | None = None  # a file, "-" for stdout, or "syslog"
    documented_links: frozenset[Link] = frozenset()  # the topology document's links
    known_switches: frozenset[int] | None = None  # the topology document's switches
    switch_names: tuple[tuple[str, int], ...] = ()
    safety_check: Callable[[], dict[int, list[Any]]] | None = None  # OVSDB findings per dpid
    audit_seconds: float = 30.0  # re-read every switch and repair drift this often
    verify_compile_seconds: float = 300.0  # compare the incremental compiler with a full compile this often
    verify_tables_seconds: float = 600.0  # prove the switches' tables against the policy this often (and after changes)
    verify_pushes: bool = False  # prove a candidate's tables before applying it (refused if they fail)
    remove_foreign: bool = True  # flows in otseg's tables that it did not install: removed, or kept
    api_token_generated: bool = False  # made at start in the state directory (then reads stay open locally)
    resumed: bool = False  # the switches hold this policy from before (a restart)
    budgets: tuple[tuple[int, int], ...] = ()  # (dpid, max_flows) from the topology document
    profiles: tuple[tuple[int, Profile], ...] = ()  # (dpid, profile) stated by the topology document
    discover: bool = True  # read each switch's capabilities on connect (table, group, meter features, bundles)
    cluster: Any = None  # cluster mode: a ClusterSetup (election on etcd, the cluster's LLDP key)
    base_policy: Policy | None = None  # the policy file's (or push's) policy; `policy` is it with the overrides
    overrides: Overrides = Overrides()  # grants and isolations in force (controller.core.overrides)
    more_tokens: tuple[tuple[str, str], ...] = ()  # further operators' API tokens (a grant's approver)
    learn_budget: int = DEFAULT_BUDGET  # learn mode: at most this many conversations recorded
    grants_need_approval: bool = False  # every grant waits for a second, different token


@dataclass
class ClusterSetup:
    election: Any  # controller.app.election.Election
    lldp_key: bytes  # shared: a follower verifies the leader's LLDP, so its topology stays warm


OVERRIDES_PERIOD = 1.0  # seconds between expiry checks: a grant ends at most this late
LEARN_PERIOD = 1.0  # seconds between handing new conversations to the tables
LEARN_SAVE_EVERY = 10  # learn periods between saves of what was recorded


class OtsegApp(app_manager.OSKenApp):  # type: ignore[misc]
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]
    settings: Settings | None = None  # set by the runner before the app is instantiated

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        assert self.settings is not None, "the runner must set OtsegApp.settings"
        settings = self.settings
        table_features.install(ofproto_v1_3_parser)  # os-ken's own decoding blocked the loop 1 s per bridge
        self.requests = SwitchRequests(hub.Event)
        self.member: ClusterMember | None = None
        self.roles = SwitchRoles(settings.cluster is not None, self.requests.call,
                                 on_lost=lambda dpid: self.member.switch_lost(dpid) if self.member else None)
        self.lock = hub.BoundedSemaphore(1)
        self.metrics = Metrics(CollectorRegistry())
        self.errors = ErrorBudget(count=lambda where: self.metrics.handler_errors.labels(where).inc())
        self.book = LinkBook(frozenset())
        names = dict(settings.switch_names) | {name: dpid for name, dpid in settings.policy.switch_names}
        self.links = LinkControl(self.book, settings.store, settings.documented_links, names, self._links_changed,
                                 self.lock)
        self.book.declare(self.links.declared())
        self.enforcer = Enforcer(settings.policy, fast_failover=settings.fast_failover,
                                 declared_links=self.links.declared(), known_switches=settings.known_switches,
                                 remove_foreign=settings.remove_foreign, pause=lambda: hub.sleep(0),
                                 on_flow_mods=lambda count: self.discovery.hold_for_flow_mods(count),
                                 # A compile is seconds of pure Python at 1,000+ assets: run it on a
                                 # native thread so the hub keeps answering LLDP, barriers and echoes.
                                 # One at a time: the incremental compiler keeps state between compiles.
                                 executor=serialised(tpool.execute), resumed=settings.resumed,
                                 budgets=dict(settings.budgets), switch_names={d: n for n, d in names.items()},
                                 profiles=SwitchProfiles(dict(settings.profiles), settings.discover),
                                 writable=self.roles.writable)
        lldp_key = settings.cluster.lldp_key if settings.cluster else secrets.token_bytes(32)
        self.discovery = LinkDiscovery(self.book, lldp_key, self._packet_out,
                                       lambda: {d: set(p) for d, p in self.enforcer.ports.items()
                                                if d in self.enforcer.switches},
                                       DiscoveryEvents(self._link_up, self._link_down, self._link_pending,
                                                       lambda reason: self.metrics.lldp_rejected.inc()))
        self.learner = Learner(self.enforcer, settings.store, settings.learn_budget, self.lock,
                               counters=self.metrics.counters.totals,
                               may_record=lambda: self.member is None or self.member.leading)
        self.samples = SampleHandler(self.enforcer, self.discovery.lldp_in, self._packet_out,
                                     learn=self.learner.sample, unknown=self.learner.unknown_device)
        self.status = StatusWriter(settings.status_file, settings.policy_version)
        self.switch_names = {d: n for n, d in names.items()}
        self.control = ControlPlane(self.enforcer, settings.store, self.lock, settings.policy_version,
                                    settings.policy_text, self._policy_changed, executor=tpool.execute,
                                    verify=PushVerifier(self.switch_names) if settings.verify_pushes else None,
                                    base=settings.base_policy, overrides=settings.overrides)
        self.overrides = OverrideControl(self.control, self._event, settings.grants_need_approval)
        self.safety: dict[int, list[Any]] = {}
        self.cluster: ClusterShell | None = None
        if settings.cluster is not None:
            self.member = ClusterMember(settings.cluster.election, settings.store, self.roles,  # type: ignore[arg-type]
                                        lambda: self.cluster.datapaths() if self.cluster else {},
                                        lambda term: self.cluster.elected(term) if self.cluster else None,
                                        lambda: self.cluster.deposed() if self.cluster else None,
                                        lambda v, d: self.cluster.follow(v, d) if self.cluster else None,
                                        lambda: self.control.version, hub.sleep, lock=self.lock,
                                        run_all=_concurrently)
            self.cluster = ClusterShell(
                self.member, self.enforcer, self.control, self.links, self.discovery, self.lock, tpool.execute,
                lambda f: hub.spawn(self._guarded, "cluster", f), hub.sleep, self._event,
                lambda: self.status.write(self.enforcer, self.packet_ins, self.control, self._extra_status()),
                lambda version: setattr(self.status, "policy_version", version), self._wake,
                before_take_over=lambda: self.overrides.follow(locked=True))
            self.metrics.install_cluster(self.member.status)
        self.metrics.install_state(self.enforcer, lambda: self.control.version,
                                   lambda: self.enforcer.reported.count("unknown-device"))
        self.metrics.install_links(self.links.listing)
        self.metrics.install_overrides(lambda: overrides_status(self.control))
        self.metrics.install_safety(lambda: self.safety)
        self.event_log = EventLog(settings.events, on_drop=self.metrics.events_dropped.inc)  # not `events`: OSKenApp owns that name
        self.counters = CounterPoller(self.enforcer, self.requests, self.metrics, self._event, hub.sleep)
        self.auditor = DriftAuditor(self.enforcer, self.lock, self.metrics, self._event, self._wake, hub.sleep,
                                    settings.audit_seconds)
        self.compile_verifier = CompileVerifier(self.enforcer, self.lock, self.metrics, self._event, self._wake,
                                                hub.sleep, settings.verify_compile_seconds,
                                                executor=tpool.execute)  # not serialised: it blocks no push
        self._verify_now = hub.Event()
        self.table_verifier = TableVerifier(self.enforcer, self.lock, self.metrics, self._event, self._wake, hub.sleep,
                                            settings.verify_tables_seconds, executor=serialised(tpool.execute),
                                            wait=self._wait_for_verify, names=self.switch_names,
                                            in_force=self.control.in_force)
        self.packet_ins: dict[str, int] = {}
        self._dirty = hub.Event()
        self._services = [hub.spawn(self._worker), hub.spawn(self._serve_api), hub.spawn(self._guarded_loop, "counter-poll", self.counters.run),
                          hub.spawn(self._guarded_loop, "discovery", lambda: self.discovery.run(hub.sleep)),
                          hub.spawn(self._check_safety),
                          *([hub.spawn(self._guarded_loop, "cluster", self.cluster.run)] if self.cluster else []),
                          hub.spawn(self._guarded_loop, "audit", self.auditor.run),
                          hub.spawn(self._guarded_loop, "overrides", self._overrides_loop),
                          hub.spawn(self._guarded_loop, "learn", self._learn_loop),
                          hub.spawn(self._guarded_loop, "verify-compile", self.compile_verifier.run),
                          *([hub.spawn(self._guarded_loop, "verify-tables", self.table_verifier.run)]
                            if settings.verify_tables_seconds > 0 else [])]
        self.threads.extend(self._services)

    def _overrides_loop(self) -> None:
        """Every second: the leader (or a lone instance) ends the grants whose time is up; a
        follower adopts the overrides the leader recorded."""
        while True:
            hub.sleep(OVERRIDES_PERIOD)
            if self.member is not None and not self.member.leading:
                if self.overrides.follow():
                    self._wake()
            elif self.overrides.expire_due():
                self._wake()

    def _learn_loop(self) -> None:
        """Every second new conversations go into the tables; every 10 s they are stored."""
        rounds = 0
        while True:
            hub.sleep(LEARN_PERIOD)
            rounds += 1
            if self.learner.flush():
                self._wake()
            if rounds % LEARN_SAVE_EVERY == 0:
                self.learner.save()

    def _guarded_loop(self, name: str, loop: Callable[[], None]) -> None:
        """Run a service loop for ever: an unexpected error is reported and the loop restarted."""
        while True:
            try:
                loop()
            except Exception as error:  # noqa: BLE001  (counted and logged rate-limited)
                self.errors.report(name, error)
                hub.sleep(1)

    def _extra_status(self) -> dict[str, Any]:
        return {"link_states": self.links.listing(),
                **({"cluster": self.member.status()} if self.member else {}),
                "switch_safety": {f"{dpid:#x}": [f.line() for f in findings]
                                  for dpid, findings in sorted(self.safety.items()) if findings}}

    def _check_safety(self) -> None:
        """OVSDB settings of the switches (in-band control, fail mode, protocols): unsafe is a loud error."""
        check = self.settings.safety_check if self.settings else None
        if check is None:
            return
        reported: set[str] = set()
        while True:
            try:
                findings = tpool.execute(check)
                self.safety = {dpid: items for dpid, items in findings.items() if dpid in self.enforcer.switches}
                findings = self.safety
                for items in findings.values():
                    for finding in items:
                        line = finding.line()
                        if finding.severity == "error" and line not in reported:
                            reported.add(line)
                            log.error("UNSAFE SWITCH SETTING: %s", line)
            except Exception as error:  # noqa: BLE001
                self.errors.report("switch-safety", error)
            hub.sleep(SAFETY_PERIOD)

    def _packet_out(self, dpid: int, port: int, data: bytes) -> bool:
        if not self.roles.writable(dpid):
            return False
        state = self.enforcer.switches.get(dpid)
        datapath = getattr(getattr(state, "channel", None), "datapath", None)
        if datapath is None:
            return False
        return bool(datapath.send_msg(packet_out(datapath, port, data)))

    def _link_up(self, link: Link) -> None:
        if self.enforcer.link_up(link):
            self.metrics.topology_changes.labels("link-up").inc()
            self._wake()

    def _link_down(self, link: Link) -> None:
        if self.enforcer.link_down(link):
            self.metrics.topology_changes.labels("link-down").inc()
            self._wake()

    def _link_pending(self, pending: PendingLink) -> None:
        self.metrics.topology_changes.labels("link-pending").inc()
        self._event(f"link:{pending.link}", {"verdict": "pending", "kind": "link",
                                             "reason": f"LLDP crossed an undeclared link ({pending.reason}); it is "
                                                       "not used until declared or approved",
                                             "a": f"{pending.link.a.dpid:#x}:{pending.link.a.port}",
                                             "b": f"{pending.link.b.dpid:#x}:{pending.link.b.port}"})

    def _links_changed(self, declared: frozenset[Link]) -> None:
        self.enforcer.declare_links(declared)
        self._wake()

    def stop(self) -> None:
        # Our services loop forever; os-ken's stop joins every thread of the app, so without
        # this a SIGTERM left the process hanging until SIGKILL.
        for thread in self._services:
            hub.kill(thread)
        super().stop()

    def _policy_changed(self, version: str) -> None:
        self.status.policy_version = version
        if self.control.last_apply:
            self.metrics.apply_seconds.observe(self.control.last_apply["seconds"])
        self.status.write(self.enforcer, self.packet_ins, self.control, self._extra_status())

    def _serve_api(self) -> None:
        settings = self.settings
        assert settings is not None
        app = create_api(self.control, self._snapshot, settings.api_token,
                         self.metrics.exposition, self.links, reads_need_token=not settings.api_token_generated,
                         host=settings.api_host, tables=self._live_tables,
                         forward=forwarder(self.member, self.member.election.api_url) if self.member else None,
                         overrides=self.overrides, more_tokens=settings.more_tokens, learner=self.learner,
                         wake=self._wake, console=self._console_sources())
        serve_api(app, settings.api_host, settings.api_port, settings.api_token_generated)

    def _snapshot(self) -> dict[str, Any]:
        return snapshot(self.enforcer, self.control.version, self.packet_ins, self.control, self._extra_status())

    def _console_sources(self) -> ConsoleSources:
        return ConsoleSources(policy=lambda: self.enforcer.policy, version=lambda: self.control.version,
                              text_in_force=lambda: self.control.text, status=self._snapshot,
                              totals=self.metrics.counters.totals, events=lambda: list(self.event_log.recent),
                              sightings=self.enforcer.reported.listing, history=self.control.history,
                              load_version=self.control.store.load)

    def _live_tables(self) -> dict[str, Any]:
        """GET /v1/tables: what the switches hold, read now with the drift auditor's reader."""
        with self.lock:
            topology = self.enforcer.topology()
            tables = switch_tables(self.enforcer, read=True)
            policy, in_force = self.enforcer.policy, self.control.in_force()
            pending = {f"{dpid:#x}": why for dpid, why in self.enforcer.pending_switches().items()}
        document = live_document(in_force, topology, locate_assets(policy, topology), tables, self.switch_names)
        document["pending"] = pending  # switches not holding the policy in force yet: nothing to prove there
        return document

    def _wait_for_verify(self, timeout: float) -> bool:
        woken = self._verify_now.wait(timeout=timeout)
        self._verify_now.clear()
        hub.sleep(DEBOUNCE)
        return bool(woken)

    def reload_file(self) -> None:
        """SIGHUP or --watch: apply the --policy file again (an invalid file is reported, not applied)."""
        path = self.settings.policy_file if self.settings else None
        if not path:
            return
        try:
            with open(path, "rb") as handle:
                data = handle.read()
            if self.member is not None and (refused := self.member.change_refused()):
                log.error("reload of %s refused: %s", path, refused)
                return
            self.control.apply(data, "local", source=f"file {path}", name=path)
            self.settings.store.set_current(self.control.version, version_of(data),  # type: ignore[union-attr]
                                            previous=self.control.version)
        except DocumentError as error:
            for diagnostic in error.diagnostics:
                log.error("reload refused: %s", diagnostic)
        except Exception as error:  # a refused apply is logged by the control plane
            log.error("reload of %s failed: %s", path, error)

    # -- the reconcile worker -------------------------------------------------------------
    def _wake(self) -> None:
        self._dirty.set()

    def _worker(self) -> None:
        last_full = hub_time()
        while True:
            woken = self._dirty.wait(timeout=STATUS_PERIOD)
            if woken or hub_time() - last_full > RESYNC_PERIOD:
                self._dirty.clear()
                hub.sleep(DEBOUNCE)  # coalesce bursts (a switch connecting brings many port events)
                hub.sleep(self.enforcer.settle_remaining())
                last_full = hub_time()
                try:
                    with self.lock:
                        report = self.enforcer.reconcile()
                    self.metrics.reconciles.inc()
                    self.metrics.reconcile_flow_mods.inc(report.flow_mods)
                    if report.flow_mods:
                        self._verify_now.set()  # prove what the switches now hold
                    if report.deferred_deletes:
                        hub.spawn_after(self.enforcer.grace_remaining() + DEBOUNCE, self._wake)
                    if report.waiting:
                        hub.spawn_after(0.5, self._wake)
                except Exception:  # keep enforcing: one bad cycle must not kill the worker
                    log.exception("reconcile failed; will retry")
                    hub.sleep(1)
                    self._wake()
            self.status.write(self.enforcer, self.packet_ins, self.control, self._extra_status())

    # -- OpenFlow events: translated, never decided here ------------------------------------
    @set_ev_cls([ofp_event.EventONFBundleCtrlMsg, ofp_event.EventOFPRoleReply], MAIN_DISPATCHER)
    def _bundle_reply(self, ev: Any) -> None:
        self.requests.call_reply(ev.msg)

    @set_ev_cls([ofp_event.EventOFPFlowStatsReply, ofp_event.EventOFPMeterConfigStatsReply,
                 ofp_event.EventOFPGroupDescStatsReply, ofp_event.EventOFPPortDescStatsReply,
                 ofp_event.EventOFPTableFeaturesStatsReply, ofp_event.EventOFPGroupFeaturesStatsReply,
                 ofp_event.EventOFPMeterFeaturesStatsReply], MAIN_DISPATCHER)
    def _stats_reply(self, ev: Any) -> None:
        self.requests.multipart_reply(ev.msg)

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    def _barrier_reply(self, ev: Any) -> None:
        self.requests.barrier_reply(ev.msg)

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def _error(self, ev: Any) -> None:
        self.requests.error(ev.msg)
        self.roles.error(ev.msg.datapath.id, ev.msg.type, getattr(ev.msg, "code", -1))

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    def _state_change(self, ev: Any) -> None:
        datapath = ev.datapath
        if datapath.id is None:
            return
        if ev.state == MAIN_DISPATCHER:
            dpid = datapath.id
            self.roles.forget(dpid)  # a new connection starts EQUAL: nothing is written until it says MASTER
            self.enforcer.switch_connected(OsKenChannel(datapath, self.requests.request, self.requests.barrier,
                                                        self.requests.call, lambda: self.roles.writable(dpid)))
            self.metrics.topology_changes.labels("switch-connected").inc()
            hub.spawn(self._guarded, "port-description", self._describe_ports, datapath)
        else:
            self.enforcer.switch_disconnected(datapath.id)
            self.roles.forget(datapath.id)
            if self.member is not None:
                self.member.disconnected(datapath.id)
            self.discovery.switch_disconnected(datapath.id)
            self.metrics.counters.forget(datapath.id)
            self.metrics.topology_changes.labels("switch-disconnected").inc()
        self._wake()

    def _describe_ports(self, datapath: Any) -> None:
        """Ask the switch for its ports (os-ken's own list may still be empty at this point),
        then send LLDP out of them at once: links come up without waiting for a port event."""
        parser = datapath.ofproto_parser
        datapath.send_msg(switch_config(datapath))
        if self.member is not None:
            datapath.send_msg(async_config(datapath))  # a SLAVE still hears packet-ins and port events
        if self.enforcer.profiles.discover:  # every switch at once: a restart rediscovers all within the grace
            self._discover_capabilities(datapath)
        if self.member is not None and self.enforcer.switches.get(datapath.id) is not None:
            self.member.connected(datapath)
        bodies = self.requests.request(datapath, parser.OFPPortDescStatsRequest(datapath, 0))
        if bodies is None or self.enforcer.switches.get(datapath.id) is None:
            return
        ofproto = datapath.ofproto
        ports = {p.port_no for p in bodies if p.port_no <= MAX_PORT}
        down = {p.port_no for p in bodies if p.port_no <= MAX_PORT and (
            p.state & ofproto.OFPPS_LINK_DOWN or p.config & ofproto.OFPPC_PORT_DOWN)}
        self.enforcer.ports_described(datapath.id, ports, down)
        self.discovery.switch_connected(datapath.id)
        self._wake()

    def _discover_capabilities(self, datapath: Any) -> None:
        """What the switch says it can do; the enforcer programs it only once this is known."""
        started = time.monotonic()
        features = read_features(datapath, self.requests.request, self.requests.call)
        profile = from_features(features)
        seconds = time.monotonic() - started
        self.metrics.discovery_seconds.observe(seconds)
        log.info("switch %#x capabilities (%.2f s): %s%s", datapath.id, seconds, profile.describe(),
                 "; " + "; ".join(profile.notes) if profile.notes else "")
        with self.lock:
            self.enforcer.switch_profile(datapath.id, profile)
        self._wake()

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def _port_status(self, ev: Any) -> None:
        self._guarded("port-status", self._on_port_status, ev.msg)

    def _on_port_status(self, msg: Any) -> None:
        ofproto = msg.datapath.ofproto
        where = PortRef(msg.datapath.id, msg.desc.port_no)
        if where.port > MAX_PORT:
            return
        down = bool(msg.desc.state & ofproto.OFPPS_LINK_DOWN) or bool(msg.desc.config & ofproto.OFPPC_PORT_DOWN)
        self.metrics.topology_changes.labels("port-down" if down else "port-up").inc()
        if msg.reason == ofproto.OFPPR_DELETE:
            self.enforcer.port_deleted(where)
            self.discovery.port_down(where)
        elif down:
            self.enforcer.port_down(where)
            self.discovery.port_down(where)
        else:
            self.enforcer.port_up(where)
            self.discovery.port_up(where)
        self._wake()

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _packet_in(self, ev: Any) -> None:
        self._guarded("packet-in", self._on_packet_in, ev.msg)

    def _on_packet_in(self, msg: Any) -> None:
        where = PortRef(msg.datapath.id, int(msg.match.get("in_port", 0)))
        outcome = self.samples.handle(where, msg.cookie, bytes(msg.data))
        self._count(outcome.kind)
        if outcome.kind == "bind":
            self._wake()
        elif outcome.event is not None:
            self._event(outcome.source, outcome.event)

    def _guarded(self, where: str, handler: Callable[..., None], *args: Any) -> None:
        try:
            handler(*args)
        except Exception as error:  # noqa: BLE001  (a hostile frame must not cost a traceback each)
            self.errors.report(where, error)

    def _event(self, source: str, event: dict[str, Any]) -> None:
        event.update(policy=self.enforcer.policy.name, policy_version=self.control.version[:12])
        if self.event_log.emit(source, event):
            self.metrics.events_written.inc()

    def _count(self, reason: str) -> None:
        self.packet_ins[reason] = self.packet_ins.get(reason, 0) + 1
        self.metrics.packet_ins.labels(reason).inc()


def _concurrently(calls: list[Callable[[], object]]) -> None:
    """Run each call in its own greenthread and wait for all (role claims: one reply each)."""
    threads = [hub.spawn(call) for call in calls]
    hub.joinall(threads)


def hub_time() -> float:
    return time.monotonic()
