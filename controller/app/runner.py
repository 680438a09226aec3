"""`otseg run`: validate the policy (and topology), then embed os-ken 4.x and enforce until stopped.

os-ken 4.x has no `osken-manager`; we drive its AppManager ourselves. Order matters: the hub
is selected before os_ken is imported (hub_compat), and SIGTERM/SIGINT stop the hub cleanly.
Only our app (and os-ken's OpenFlow handler) is loaded: link discovery is ours
(controller.app.discovery), so os-ken's `switches` app never parses a frame from a port.
"""

from __future__ import annotations

import logging
import re
import time
import secrets
import socket
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from controller.app.status import policy_modes
from controller.app.cluster_kv import StoreUnavailable
from controller.app.cluster_store import StoreConflict
from controller.app.override_control import OVERRIDES_FILE
from controller.app.store import PolicyStore, short, version_of
from controller.core.overrides import Overrides, effective
from controller.core.overrides import problems as override_problems
from controller.core.budget import HINT, policy_overflows
from controller.core.compiler import compile_tables
from controller.core.fit import refusals
from controller.core.model import Policy
from controller.io.files import load_lab, load_policy_text

LOCAL_OVSDB = "/var/run/openvswitch/db.sock"

APP_MODULE = "controller.app.osken_app"


@dataclass
class RunOptions:
    policy: str
    ofp_host: str = "127.0.0.1"
    ofp_port: int = 6653
    status_file: str | None = None
    log_level: str = "info"
    fast_failover: bool = True
    state_dir: str = "/var/lib/otseg"
    api_host: str = "127.0.0.1"
    api_port: int = 8181
    api_token_file: str | None = None
    watch: bool = False
    events: str | None = None
    topology: str | None = None  # the topology document: its links are the declared trunks
    ovsdb: str | None = "auto"  # check the switches' OVSDB settings: "auto" (local OVS if present), a db, or None
    audit_seconds: float = 30.0  # re-read every switch and repair drift this often
    remove_foreign: bool = True  # remove flows in otseg's tables that it did not install
    verify_compile_seconds: float = 300.0  # compare the incremental compiler with a full compile this often
    verify_tables_seconds: float = 600.0  # prove the switches' tables against the policy this often
    verify_pushes: bool = False  # prove a candidate's tables before applying it
    cluster: str | None = None  # etcd://HOST:PORT[,...]: one instance of a cluster (controller/app/ha.py)
    cluster_name: str = "otseg"
    instance: str | None = None
    lease_seconds: int = 2
    advertise_api: str | None = None  # where the other instances reach this one's API (default: --api-host:port)
    learn_budget: int = 2000  # learn mode: conversations recorded at most
    grants_need_approval: bool = False  # every grant waits for a second token


class StartError(Exception):
    """A start-up problem with a clear message (exit code 2)."""


TOKEN_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")


def read_token(path: str | None) -> tuple[str, str] | None:
    """The (first) API token as (name, secret)."""
    tokens = read_tokens(path)
    return tokens[0] if tokens else None


def read_tokens(path: str | None) -> tuple[tuple[str, str], ...]:
    """The API tokens as (name, secret): a file holding one NAME:SECRET (or SECRET) per line, or
    OTSEG_API_TOKEN. Several named tokens let a second operator approve a grant (`otseg approve`)."""
    text = Path(path).read_text().strip() if path else os.environ.get("OTSEG_API_TOKEN", "").strip()
    tokens: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, secret = line.partition(":") if ":" in line else ("token", "", line)
        if not TOKEN_NAME.fullmatch(name):
            raise StartError(f"the API token on line {number} is named {name!r}: a name is 1 to 64 letters, digits "
                             "or . _ @ - (it is written in the audit log as who did what)")
        if len(secret) < 16:  # an empty secret would match an empty "Bearer " header
            raise StartError(f"the API token on line {number} has a secret of {len(secret)} characters: give at least "
                             "16 (NAME:SECRET, e.g. ops:$(openssl rand -hex 16))")
        if any(name == known for known, _ in tokens) or any(secret == known for _, known in tokens):
            raise StartError(f"the API token on line {number} repeats another token's name or secret: each operator "
                             "needs a name and a secret of their own")
        tokens.append((name, secret))
    return tuple(tokens)


def starting_policy(options: RunOptions, store: PolicyStore) -> tuple[Policy, str, bytes]:
    """The --policy file, unless a version pushed since the file was last read is in force."""
    file_data = Path(options.policy).read_bytes()
    file_version = version_of(file_data)
    current = store.current()
    if current.get("file_version") == file_version and current.get("version"):
        version, data = store.load(current["version"])
        return load_policy_text(data, f"{options.policy} (stored version {short(version)})"), version, data
    policy = load_policy_text(file_data, options.policy)  # DocumentError: printed, exit 2
    version = store.save(file_data)
    store.set_current(version, file_version)
    store.audit(who="local", source=f"file {options.policy}", action="start", from_version=current.get("version"),
                to_version=version, policy=policy.name)
    return policy, version, file_data


TOKEN_FILE = "api-token"


def starting_policy_in_cluster(options: RunOptions, store: Any) -> tuple[Policy, str, bytes, bool]:
    """The cluster's version in force; the --policy file only seeds an empty cluster (the first
    instance to start, by compare-and-swap). Also says whether the switches hold it already."""
    file_data = Path(options.policy).read_bytes()
    file_version = version_of(file_data)
    for _ in range(3):
        current = store.current()
        if current.get("version"):
            version, data = store.load(current["version"])
            if version != file_version:
                logging.getLogger("otseg").warning(
                    "the cluster's version in force %s is not the --policy file (%s): the cluster's wins; push the "
                    "file (`otseg push`) to change it", short(version), short(file_version))
            return load_policy_text(data, f"cluster version {short(version)}"), version, data, True
        policy = load_policy_text(file_data, options.policy)  # DocumentError: printed, exit 2
        version = store.save(file_data)
        try:
            store.set_current(version, file_version, previous=None, fenced=False)
        except StoreConflict:  # another instance seeded it first: take theirs
            continue
        store.audit(who="local", source=f"file {options.policy}", action="start", from_version=None,
                    to_version=version, policy=policy.name)
        return policy, version, file_data, False
    raise StartError("the cluster's version in force keeps changing during start-up: retry")


def local_token(state_dir: Path, secret: str | None = None) -> str:
    """The API token for this run, in STATE_DIR/api-token (mode 0600): the CLI on this host
    reads it there; a web page the operator visits cannot. Fresh, unless a cluster shares one."""
    secret = secret or secrets.token_urlsafe(32)
    path = state_dir / TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(f"local:{secret}\n")
    os.replace(temporary, path)
    return secret


def ensure_free(host: str, port: int, what: str) -> None:
    """Refuse to start beside another process on our ports. The hub listens with SO_REUSEPORT, so
    a second controller would otherwise share the port silently and switches would connect to
    either one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT from our own last run is fine
        probe.bind((host, port))
    except OSError as error:
        raise StartError(f"{what} {port} on {host} is in use ({error.strerror}): is another otseg (or other "
                         f"controller) running? Stop it or choose another port") from None
    finally:
        probe.close()


def run(options: RunOptions) -> int:
    tokens = read_tokens(options.api_token_file)
    token = tokens[0] if tokens else None
    if options.api_host not in ("127.0.0.1", "localhost", "::1") and token is None:
        raise StartError(f"--api-host {options.api_host} is not loopback: give --api-token-file (NAME:SECRET) or "
                         "set OTSEG_API_TOKEN, so that only holders of the token can change the policy")
    for host, port, what in ((options.ofp_host, options.ofp_port, "--ofp-port"),
                             (options.api_host, options.api_port, "--api-port")):
        ensure_free(host, port, what)
    cluster = None
    if options.cluster:
        store, cluster = join_cluster(options)
    else:
        store = PolicyStore(options.state_dir)
    generated = token is None
    if token is None:  # changes always need a token: make one the local CLI can read, nobody else
        shared = store.secret("api-token").hex() if cluster is not None else None  # type: ignore[union-attr]
        token = ("local", local_token(Path(options.state_dir), shared))
    if cluster is not None:
        try:
            policy, version, data, resumed = starting_policy_in_cluster(options, store)
        except StoreUnavailable as error:
            raise StartError(f"{error}: a cluster instance starts only once it reads the cluster's history from "
                             "etcd; start etcd (or fix --cluster), then otseg") from None
        in_force_before = version if resumed else None
    else:
        in_force_before = store.current().get("version")
        policy, version, data = starting_policy(options, store)
    base, overrides = policy, Overrides.from_json(store.read(OVERRIDES_FILE))
    orphaned = override_problems(base, overrides, time.time())
    if orphaned:
        raise StartError("the grants and isolations in force do not fit the policy: " + "; ".join(orphaned)
                         + f" (restore what the policy file removed, or edit {store.describe(OVERRIDES_FILE)})")
    policy = effective(base, overrides, time.time())
    lab = load_lab(options.topology, policy) if options.topology else None  # DocumentError: printed, exit 2
    if lab is not None and (lab.budgets or lab.profiles):  # it must fit the declared switches before any is programmed
        names = {dpid: name for name, dpid in lab.switches}
        topology = lab.to_topology(policy)
        over = policy_overflows(policy, topology, dict(lab.budgets), names, options.fast_failover)
        refused = refusals(policy, topology, compile_tables(policy, topology, options.fast_failover), names)
        if over or refused:
            raise StartError("the policy does not fit: " + "; ".join(o.describe() for o in [*over, *refused])
                             + (f"; fix: {HINT}" if over else ""))
    log_level = options.log_level
    logging.basicConfig(level=getattr(logging, log_level.upper()),
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    log = logging.getLogger("otseg")

    from controller.app import hub_compat  # noqa: PLC0415  (selects the hub before os_ken loads)

    hub_type = hub_compat.install()
    from os_ken import cfg  # noqa: PLC0415
    from os_ken.base.app_manager import AppManager  # noqa: PLC0415
    from os_ken.lib import hub  # noqa: PLC0415

    from controller.app.osken_app import OtsegApp, Settings  # noqa: PLC0415

    OtsegApp.settings = Settings(
        policy, version, data, store, options.status_file, options.fast_failover, options.api_host, options.api_port,
        token, options.policy, options.events,
        documented_links=frozenset(lab.links) if lab else frozenset(),
        known_switches=frozenset(dpid for _, dpid in lab.switches) if lab else None,
        switch_names=lab.switches if lab else (), safety_check=safety_check(options.ovsdb, log),
        audit_seconds=options.audit_seconds, remove_foreign=options.remove_foreign, api_token_generated=generated,
        verify_compile_seconds=options.verify_compile_seconds, budgets=lab.budgets if lab else (),
        profiles=lab.profiles if lab else (),
        verify_tables_seconds=options.verify_tables_seconds, verify_pushes=options.verify_pushes,
        resumed=in_force_before == version, cluster=cluster, base_policy=base, overrides=overrides,
        more_tokens=tokens[1:], learn_budget=options.learn_budget, grants_need_approval=options.grants_need_approval)
    if lab is None:
        log.warning("no --topology: no inter-switch link is declared, so every link LLDP finds stays pending "
                    "until approved (`otseg links approve`)")
    manager = AppManager.get_instance()
    manager.load_apps([APP_MODULE])
    cfg.CONF(args=["--ofp-listen-host", options.ofp_host, "--ofp-tcp-listen-port", str(options.ofp_port)],
             project="os_ken")
    modes = policy_modes(policy)
    log.info("otseg enforcing policy %r version %s (mode %s; zones in monitor: %s; conduits in monitor: %s) "
             "on %s:%d, hub %s", policy.name, short(version), policy.mode,
             ", ".join(modes["zones_in_monitor"]) or "none", ", ".join(modes["conduits_in_monitor"]) or "none",  # type: ignore[arg-type]
             options.ofp_host, options.ofp_port, hub_type)

    stopping: list[str] = []

    def stop(signum: int, *_: Any) -> None:
        # Only take note: an exception raised here lands in whichever greenthread happens to
        # run (a switch's connection, say), not in the loop below.
        stopping.append(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    services: list[Any] = []
    try:
        services = manager.instantiate_apps(**manager.create_contexts())
        app = manager.applications["OtsegApp"]
        signal.signal(signal.SIGHUP, lambda *_: hub.spawn(app.reload_file))
        if options.watch:
            services.append(hub.spawn(_watch, options.policy, app))
        while not stopping:
            hub.sleep(0.2)
        log.info("stopping on %s; switches keep enforcing their tables (fail-mode secure)", stopping[0])
    finally:
        if cluster is not None:  # free the leader key: a follower takes over at once, not after the lease
            cluster.election.resign()
        manager.close()
        for thread in services:
            thread.kill()
    return 0


def join_cluster(options: RunOptions) -> tuple[Any, Any]:
    """The cluster's store and this instance's election (etcd over its JSON gateway)."""
    from controller.app import hub_compat  # noqa: PLC0415  (sockets patched before the etcd client loads)

    hub_compat.install()
    from controller.app.cluster_kv import EtcdKV, parse_endpoints  # noqa: PLC0415
    from controller.app.cluster_store import ClusterStore  # noqa: PLC0415
    from controller.app.election import Election  # noqa: PLC0415
    from controller.app.forward import valid_api_url  # noqa: PLC0415
    from controller.app.lease_keeper import LeaseKeeper  # noqa: PLC0415
    from controller.app.osken_app import ClusterSetup  # noqa: PLC0415

    try:
        endpoints = parse_endpoints(options.cluster or "")
    except ValueError as error:
        raise StartError(str(error)) from None
    if options.lease_seconds < 2:
        raise StartError(f"--lease-seconds {options.lease_seconds}: etcd's shortest lease is 2 s (with its "
                         "default election timeout); give 2 or more")
    api_host = f"[{options.api_host}]" if ":" in options.api_host else options.api_host
    advertised = options.advertise_api or f"http://{api_host}:{options.api_port}"
    if not valid_api_url(advertised) or urlsplit(advertised).hostname in ("0.0.0.0", "::"):
        raise StartError(f"--advertise-api {advertised!r}: give the address where the other instances reach this "
                         "one's API, as http(s)://HOST:PORT (with --api-host 0.0.0.0, the host's own address)")
    instance = options.instance or f"{socket.gethostname()}-{options.api_port}"
    kv = EtcdKV(endpoints)
    store = ClusterStore(kv, options.cluster_name, instance, options.state_dir)
    try:
        lldp_key = store.secret("lldp-key")
    except StoreUnavailable as error:
        raise StartError(f"{error}: a cluster instance starts only once it reaches etcd; start etcd (or fix "
                         "--cluster), then otseg") from None
    election = Election(kv, options.cluster_name, instance, advertised,
                        ttl=options.lease_seconds,
                        keeper=lambda lease, ttl, granted_at: LeaseKeeper(endpoints, lease, ttl, granted_at).start())
    store.fence = lambda: election.lease if election.state.mine else 0
    return store, ClusterSetup(election, lldp_key)


def safety_check(ovsdb: str | None, log: logging.Logger) -> Callable[[], dict[int, list[Any]]] | None:
    """A reader of the switches' OVSDB settings, or None where there is no OVSDB to read."""
    from controller.app.ovsdb import read_bridges  # noqa: PLC0415
    from controller.app.switch_config import check_switches  # noqa: PLC0415

    if ovsdb is None or ovsdb == "none":
        return None
    if ovsdb == "auto":
        if not Path(LOCAL_OVSDB).exists() or shutil.which("ovs-vsctl") is None:
            log.info("no local Open vSwitch database: switch settings are not checked (run `otseg doctor` on "
                     "each switch host, or give --ovsdb)")
            return None
        ovsdb = f"unix:{LOCAL_OVSDB}"
    db = ovsdb
    return lambda: check_switches(read_bridges(db=db))


def _watch(path: str, app: Any) -> None:
    """--watch: apply the policy file whenever its content changes."""
    from os_ken.lib import hub  # noqa: PLC0415

    last = version_of(Path(path).read_bytes())
    while True:
        hub.sleep(1.0)
        try:
            current = version_of(Path(path).read_bytes())
        except OSError:
            continue
        if current != last:
            last = current
            app.reload_file()
