"""The os-ken application: translates OpenFlow and topology events into enforcer inputs.

Handlers never decide policy: they update the enforcer's inputs and wake the reconcile
worker, a single greenthread that compiles, diffs and applies. Packet-ins (metered table-0
miss samples and LLDP) are counted by reason; a packet-in for traffic the policy allows is
counted separately, and must stay at zero in steady state.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from os_ken.base import app_manager
from prometheus_client import CollectorRegistry
from os_ken.controller import ofp_event
from os_ken.controller.handler import CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.lib import hub
from os_ken.lib.packet import arp, ethernet, icmp, ipv4, packet, tcp, udp
from os_ken.ofproto import ofproto_v1_3
from os_ken.topology import event as topo_event

from eventlet import tpool

from controller.app import link_liveness
from controller.app.channel import OsKenChannel
from controller.app.enforcer import Enforcer
from controller.app.events import EventLog
from controller.app.metrics import Metrics
from controller.app.api import create_api
from controller.app.control import ControlPlane
from controller.app.status import StatusWriter, snapshot
from controller.app.store import PolicyStore, version_of
from controller.policy.diagnostics import DocumentError
from controller.core.flows import COOKIE_PREFIX, COOKIE_PREFIX_MASK, ETH_LLDP
from controller.core.learning import Sighting
from controller.core.pipeline import DESTINATION, POLICY, PORT_SECURITY, TABLE_IDS
from controller.core.model import Policy
from controller.core.rules import cookie
from controller.core.topology import PortRef
from controller.core.verdict import Packet, decide

log = logging.getLogger("otseg.app")
_REQUIRED_APP = ["os_ken.topology.switches"]  # LLDP link discovery, loaded with the app
REQUEST_TIMEOUT = 10.0
BARRIER_TIMEOUT = 10.0
DEBOUNCE = 0.02
STATUS_PERIOD = 2.0
DESTINATION_POLL_EVERY = 6  # rounds: the destination table's counters every 30 s
COUNTER_POLL_PERIOD = 5.0  # flow counters behind the per-conduit and denied metrics  # the status file is rewritten at least this often
RESYNC_PERIOD = 60.0  # and the tables re-diffed (against what we installed) at least this often


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


class OtsegApp(app_manager.OSKenApp):  # type: ignore[misc]
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]
    settings: Settings | None = None  # set by the runner before the app is instantiated

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        assert self.settings is not None, "the runner must set OtsegApp.settings"
        settings = self.settings
        self.enforcer = Enforcer(settings.policy, fast_failover=settings.fast_failover)
        self.enforcer.pause = lambda: hub.sleep(0)
        # A compile is seconds of pure Python at 1,000+ assets: run it on a native thread so
        # the hub keeps answering LLDP, barriers and echo requests meanwhile.
        self.enforcer.compiled.executor = tpool.execute
        self.enforcer.on_flow_mods = link_liveness.hold_for_flow_mods
        self.status = StatusWriter(settings.status_file, settings.policy_version)
        self.lock = hub.BoundedSemaphore(1)
        self.control = ControlPlane(self.enforcer, settings.store, self.lock, settings.policy_version,
                                    settings.policy_text, self._policy_changed)
        self.control.executor = tpool.execute
        self.metrics = Metrics(CollectorRegistry())
        self.metrics.install_state(self.enforcer, lambda: self.control.version,
                                   lambda: sum(1 for r in self.enforcer.reported if r[0] == "unknown-device"))
        self.event_log = EventLog(settings.events, on_drop=self.metrics.events_dropped.inc)  # not `events`: OSKenApp owns that name
        self._monitor_seen: dict[str, int] = {}
        self.packet_ins: dict[str, int] = {}
        self._dirty = hub.Event()
        self._errors: dict[tuple[int, int], str] = {}
        self._barriers: dict[tuple[int, int], Any] = {}
        self._pending: dict[tuple[int, int], tuple[Any, list[Any]]] = {}
        self._calls: dict[tuple[int, int], tuple[Any, list[Any]]] = {}
        self._services = [hub.spawn(self._worker), hub.spawn(self._serve_api), hub.spawn(self._poll_counters)]
        self.threads.extend(self._services)

    def stop(self) -> None:
        # Our services loop forever; os-ken's stop joins every thread of the app, so without
        # this a SIGTERM left the process hanging until SIGKILL.
        for thread in self._services:
            hub.kill(thread)
        super().stop()

    def _poll_counters(self) -> None:
        """Read our flows' packet and byte counters from every programmed switch (for metrics).

        The port-security and policy tables (conduits, assets, monitor, most denied counters)
        every COUNTER_POLL_PERIOD; the destination table, which holds an entry per reachable
        destination but only one counter of interest per local zone, every
        DESTINATION_POLL_EVERY rounds: parsing every entry of every switch each 5 s cost a
        1,000-asset network more CPU than everything else the controller does."""
        rounds = 0
        while True:
            hub.sleep(COUNTER_POLL_PERIOD)
            tables = [PORT_SECURITY, POLICY] + ([DESTINATION] if rounds % DESTINATION_POLL_EVERY == 0 else [])
            rounds += 1
            for dpid, state in list(self.enforcer.switches.items()):
                if not state.programmed:
                    continue
                for table in tables:
                    counters = self._read_counters(state.channel.datapath, table)  # type: ignore[attr-defined]
                    if counters is None:
                        break
                    previous = self.metrics.counters.reading(dpid, table)
                    self.metrics.counters.update(dpid, counters, table)
                    if table == PORT_SECURITY:
                        for name, asset_cookie in self._asset_cookies().items():
                            now = counters.get(asset_cookie)
                            if now is not None and now[0] != previous.get(asset_cookie, (0, 0))[0]:
                                self.enforcer.heard(name)
            self._report_monitor()

    def _read_counters(self, datapath: Any, table: str) -> dict[int, tuple[int, int]] | None:
        ofproto, parser = datapath.ofproto, datapath.ofproto_parser
        bodies = self.request(datapath, parser.OFPFlowStatsRequest(
            datapath, 0, TABLE_IDS[table], ofproto.OFPP_ANY, ofproto.OFPG_ANY, COOKIE_PREFIX,
            COOKIE_PREFIX_MASK, parser.OFPMatch()))
        if bodies is None:
            return None
        counters: dict[int, list[int]] = {}
        for stats in bodies:
            entry = counters.setdefault(stats.cookie, [0, 0])
            entry[0] += stats.packet_count
            entry[1] += stats.byte_count
        return {k: (v[0], v[1]) for k, v in counters.items()}

    def _asset_cookies(self) -> dict[str, int]:
        return {asset.name: cookie(f"asset:{asset.name}") for asset in self.enforcer.policy.assets}

    def _report_monitor(self) -> None:
        """Monitor-mode traffic is forwarded by the switches; report it from their counters."""
        policy = self.enforcer.policy
        totals = self.metrics.counters.totals()
        origins = [(f"monitor:{z.name}", "would-deny", {"source_zone": z.name}) for z in policy.zones
                   if policy.zone_mode(z.name) == "monitor"]
        origins += [(c.name, "allowed-by-monitor", {"conduit": c.name, "reason": c.reason}) for c in policy.conduits
                    if c.mode == "monitor"]
        for origin, verdict, detail in origins:
            packets = totals.get(cookie(origin), (0, 0))[0]
            delta = packets - self._monitor_seen.get(origin, packets)
            self._monitor_seen[origin] = packets
            if delta > 0:
                self._event(origin, {"verdict": verdict, "mode": "monitor", "packets": delta,
                                     "period_seconds": COUNTER_POLL_PERIOD, **detail})

    def _policy_changed(self, version: str) -> None:
        self.status.policy_version = version
        if self.control.last_apply:
            self.metrics.apply_seconds.observe(self.control.last_apply["seconds"])
        self.status.write(self.enforcer, self.packet_ins, self.control)

    def _serve_api(self) -> None:
        import eventlet.wsgi  # noqa: PLC0415  (the eventlet hub is in force: see hub_compat)

        settings = self.settings
        assert settings is not None
        app = create_api(self.control, lambda: snapshot(self.enforcer, self.control.version, self.packet_ins,
                                                         self.control), settings.api_token, self.metrics.exposition)
        listener = hub.listen((settings.api_host, settings.api_port))
        log.info("control API on http://%s:%d (token %s)", settings.api_host, settings.api_port,
                 "required" if settings.api_token else "not configured: local callers only")
        eventlet.wsgi.server(listener, app, log_output=False)

    def reload_file(self) -> None:
        """SIGHUP or --watch: apply the --policy file again (an invalid file is reported, not applied)."""
        path = self.settings.policy_file if self.settings else None
        if not path:
            return
        try:
            with open(path, "rb") as handle:
                data = handle.read()
            self.control.apply(data, "local", source=f"file {path}", name=path)
            self.settings.store.set_current(self.control.version, version_of(data))  # type: ignore[union-attr]
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
                    if report.deferred_deletes:
                        hub.spawn_after(self.enforcer.grace_remaining() + DEBOUNCE, self._wake)
                    if report.waiting:
                        hub.spawn_after(0.5, self._wake)
                except Exception:  # keep enforcing: one bad cycle must not kill the worker
                    log.exception("reconcile failed; will retry")
                    hub.sleep(1)
                    self._wake()
            self.status.write(self.enforcer, self.packet_ins, self.control)

    def barrier(self, datapath: Any, xids: set[int]) -> list[str]:
        """Send a barrier and wait for its reply; return the errors the switch sent for `xids`."""
        request = datapath.ofproto_parser.OFPBarrierRequest(datapath)
        datapath.set_xid(request)
        done = hub.Event()
        self._barriers[(datapath.id, request.xid)] = done
        try:
            if not datapath.send_msg(request) or not done.wait(timeout=BARRIER_TIMEOUT):
                return [f"no barrier reply within {BARRIER_TIMEOUT:.0f} s"]
        finally:
            self._barriers.pop((datapath.id, request.xid), None)
        return [self._errors.pop((datapath.id, xid)) for xid in sorted(xids) if (datapath.id, xid) in self._errors]

    def request(self, datapath: Any, message: Any) -> list[Any] | None:
        """Send a multipart request and return its reply bodies, or None if none came in time."""
        datapath.set_xid(message)
        done = hub.Event()
        bodies: list[Any] = []
        self._pending[(datapath.id, message.xid)] = (done, bodies)
        try:
            if not datapath.send_msg(message) or not done.wait(timeout=REQUEST_TIMEOUT):
                return None
        finally:
            self._pending.pop((datapath.id, message.xid), None)
        return bodies

    def call(self, datapath: Any, message: Any) -> tuple[Any | None, str | None]:
        """Send a message that the switch answers with one reply or one error: (reply, error text)."""
        datapath.set_xid(message)
        done = hub.Event()
        box: list[Any] = []
        self._calls[(datapath.id, message.xid)] = (done, box)
        try:
            if not datapath.send_msg(message) or not done.wait(timeout=REQUEST_TIMEOUT):
                return None, f"no answer to {type(message).__name__} within {REQUEST_TIMEOUT:.0f} s"
        finally:
            self._calls.pop((datapath.id, message.xid), None)
        kind, value = box[0]
        return (value, None) if kind == "reply" else (None, value)

    @set_ev_cls(ofp_event.EventONFBundleCtrlMsg, MAIN_DISPATCHER)
    def _bundle_reply(self, ev: Any) -> None:
        waiter = self._calls.get((ev.msg.datapath.id, ev.msg.xid))
        if waiter is not None:
            waiter[1].append(("reply", ev.msg))
            waiter[0].set()

    @set_ev_cls([ofp_event.EventOFPFlowStatsReply, ofp_event.EventOFPMeterConfigStatsReply,
                 ofp_event.EventOFPGroupDescStatsReply], MAIN_DISPATCHER)
    def _stats_reply(self, ev: Any) -> None:
        msg = ev.msg
        pending = self._pending.get((msg.datapath.id, msg.xid))
        if pending is None:
            return
        done, bodies = pending
        bodies.extend(msg.body)
        if not msg.flags & msg.datapath.ofproto.OFPMPF_REPLY_MORE:
            done.set()

    # -- OpenFlow events ------------------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    def _state_change(self, ev: Any) -> None:
        datapath = ev.datapath
        if datapath.id is None:
            return
        if ev.state == MAIN_DISPATCHER:
            self.enforcer.switch_connected(OsKenChannel(datapath, self.request, self.barrier, self.call))
            self.metrics.topology_changes.labels("switch-connected").inc()
        else:
            self.enforcer.switch_disconnected(datapath.id)
            self.metrics.counters.forget(datapath.id)
            self.metrics.topology_changes.labels("switch-disconnected").inc()
        self._wake()

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    def _barrier_reply(self, ev: Any) -> None:
        waiter = self._barriers.get((ev.msg.datapath.id, ev.msg.xid))
        if waiter is not None:
            waiter.set()

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def _error(self, ev: Any) -> None:
        msg = ev.msg
        text = f"OpenFlow error type {msg.type} code {getattr(msg, 'code', '-')} on xid {msg.xid}"
        waiter = self._calls.get((msg.datapath.id, msg.xid))
        if waiter is not None:
            waiter[1].append(("error", text))
            waiter[0].set()
            return
        self._errors[(msg.datapath.id, msg.xid)] = text
        log.debug("switch %#x: %s", msg.datapath.id, text)

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def _port_status(self, ev: Any) -> None:
        msg = ev.msg
        ofproto = msg.datapath.ofproto
        where = PortRef(msg.datapath.id, msg.desc.port_no)
        down = bool(msg.desc.state & ofproto.OFPPS_LINK_DOWN) or bool(msg.desc.config & ofproto.OFPPC_PORT_DOWN)
        self.metrics.topology_changes.labels("port-down" if down else "port-up").inc()
        if msg.reason == ofproto.OFPPR_DELETE or down:
            if self.enforcer.port_down(where):
                self._wake()
        else:
            self.enforcer.port_up(where)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _packet_in(self, ev: Any) -> None:
        msg = ev.msg
        frame = packet.Packet(msg.data)
        eth = frame.get_protocol(ethernet.ethernet)
        if eth is None:
            return self._count("malformed")
        if eth.ethertype == ETH_LLDP:
            return self._count("lldp")
        ip = None
        arp_pkt = frame.get_protocol(arp.arp)
        ip_pkt = frame.get_protocol(ipv4.ipv4)
        if arp_pkt is not None:
            ip = arp_pkt.src_ip
        elif ip_pkt is not None:
            ip = ip_pkt.src
        decision = self.enforcer.frame_sampled(Sighting(PortRef(msg.datapath.id, msg.match["in_port"]), eth.src, ip))
        self._count(decision.kind)
        if decision.kind == "bind":
            self._wake()
            return
        if decision.kind == "denied-sample" and self._policy_allows(frame, eth, decision.asset):
            self._count("allowed-traffic")  # allowed traffic must never need the controller
            log.error("allowed traffic reached the controller: %s", frame)
            return
        if decision.kind != "ignore":
            self._event(eth.src, self._verdict_event(msg, frame, eth, decision))

    def _event(self, source: str, event: dict[str, Any]) -> None:
        event.update(policy=self.enforcer.policy.name, policy_version=self.control.version[:12])
        if self.event_log.emit(source, event):
            self.metrics.events_written.inc()

    def _verdict_event(self, msg: Any, frame: Any, eth: Any, decision: Any) -> dict[str, Any]:
        policy = self.enforcer.policy
        ip_pkt = frame.get_protocol(ipv4.ipv4)
        arp_pkt = frame.get_protocol(arp.arp)
        source = policy.asset_by_mac(eth.src) if decision.kind != "unknown-device" else None
        target = (policy.asset_by_ip(arp_pkt.dst_ip) if arp_pkt is not None else policy.asset_by_mac(eth.dst))
        reasons = {"unknown-device": "unknown device (no asset has this MAC)",
                   "spoof": "source address does not belong to the asset on this port",
                   "conflict": "MAC already bound to another port", "pinned-elsewhere": "asset pinned to another port",
                   "denied-sample": "no conduit allows it"}
        return {
            "verdict": "denied", "mode": "enforce", "reason": reasons.get(decision.kind, decision.kind),
            "switch": f"{msg.datapath.id:#x}", "port": msg.match["in_port"],
            "src_mac": eth.src, "dst_mac": eth.dst,
            "src_ip": ip_pkt.src if ip_pkt else (arp_pkt.src_ip if arp_pkt else None),
            "dst_ip": ip_pkt.dst if ip_pkt else (arp_pkt.dst_ip if arp_pkt else None),
            "src_asset": source.name if source else "unknown", "src_zone": source.zone if source else "unknown",
            "dst_asset": target.name if target else "unknown", "dst_zone": target.zone if target else "unknown",
            "service": packet_of(frame, eth).describe(),
        }

    def _policy_allows(self, frame: Any, eth: Any, source_name: str | None) -> bool:
        policy = self.enforcer.policy
        arp_pkt = frame.get_protocol(arp.arp)
        destination = (policy.asset_by_ip(arp_pkt.dst_ip) if arp_pkt is not None else policy.asset_by_mac(eth.dst))
        if source_name is None or destination is None:
            return False
        return decide(policy, policy.asset(source_name), destination, packet_of(frame, eth)).delivered

    def _count(self, reason: str) -> None:
        self.packet_ins[reason] = self.packet_ins.get(reason, 0) + 1
        self.metrics.packet_ins.labels(reason).inc()

    # -- topology events (LLDP discovery by os_ken.topology.switches) ---------------------
    @set_ev_cls(topo_event.EventLinkAdd)
    def _link_add(self, ev: Any) -> None:
        if self.enforcer.link_seen(*_ends(ev.link)):
            self.metrics.topology_changes.labels("link-up").inc()
            self._wake()

    @set_ev_cls(topo_event.EventLinkDelete)
    def _link_delete(self, ev: Any) -> None:
        if self.enforcer.link_gone(*_ends(ev.link)):
            self.metrics.topology_changes.labels("link-down").inc()
            self._wake()


def hub_time() -> float:
    return time.monotonic()


def _ends(link: Any) -> tuple[PortRef, PortRef]:
    return PortRef(link.src.dpid, link.src.port_no), PortRef(link.dst.dpid, link.dst.port_no)


def packet_of(frame: Any, eth: Any) -> Packet:
    """The policy's view of a parsed frame."""
    ip_pkt = frame.get_protocol(ipv4.ipv4)
    multicast = bool(int(eth.dst.split(":")[0], 16) & 1)
    if ip_pkt is None:
        return Packet(eth.ethertype, multicast=multicast)
    l4 = frame.get_protocol(tcp.tcp) or frame.get_protocol(udp.udp)
    icmp_pkt = frame.get_protocol(icmp.icmp)
    return Packet(eth.ethertype, ip_pkt.proto, getattr(l4, "src_port", 0), getattr(l4, "dst_port", 0),
                  getattr(l4, "bits", 0) if isinstance(l4, tcp.tcp) else 0,
                  icmp_pkt.type if icmp_pkt is not None else 0, multicast)
