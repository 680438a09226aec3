"""`otseg run`: validate the policy, then embed os-ken 4.x and enforce until stopped.

os-ken 4.x has no `osken-manager`; we drive its AppManager ourselves. Order matters:
the hub is selected before os_ken is imported (hub_compat), apps are loaded before the
configuration is parsed (os_ken.topology.switches registers command-line options when
imported), and SIGTERM/SIGINT stop the hub cleanly.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.app.status import policy_modes
from controller.app.store import PolicyStore, short, version_of
from controller.core.model import Policy
from controller.io.files import load_policy_text

APP_MODULE = "controller.app.osken_app"
# Link liveness: LLDP on each port every 0.5 s; a link silent for 2.5 s is down, checked every
# 0.5 s: a silent failure is acted on within 3 s, and a busy moment does not fake one.
LLDP_PERIOD = 0.5
LINK_TIMEOUT = 2.5
LINK_CHECK_PERIOD = 0.5
# os-ken pauses this long after each LLDP it sends (default 50 ms): with 34 switch ports that
# is 1.7 s per round, so the 0.5 s period was really ~2 s and links expired under load. The
# switches meter LLDP to the controller anyway (pipeline meter 2).
LLDP_SEND_GUARD = 0.005


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


class StartError(Exception):
    """A start-up problem with a clear message (exit code 2)."""


def read_token(path: str | None) -> tuple[str, str] | None:
    """The API token as (name, secret): a file holding NAME:SECRET or SECRET, or OTSEG_API_TOKEN."""
    text = Path(path).read_text().strip() if path else os.environ.get("OTSEG_API_TOKEN", "").strip()
    if not text:
        return None
    name, _, secret = text.partition(":") if ":" in text else ("token", "", text)
    return name, secret


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


def run(options: RunOptions) -> int:
    token = read_token(options.api_token_file)
    if options.api_host not in ("127.0.0.1", "localhost", "::1") and token is None:
        raise StartError(f"--api-host {options.api_host} is not loopback: give --api-token-file (NAME:SECRET) or "
                         "set OTSEG_API_TOKEN, so that only holders of the token can change the policy")
    store = PolicyStore(options.state_dir)
    policy, version, data = starting_policy(options, store)
    log_level = options.log_level
    logging.basicConfig(level=getattr(logging, log_level.upper()),
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    log = logging.getLogger("otseg")

    from controller.app import hub_compat  # noqa: PLC0415  (selects the hub before os_ken loads)

    hub_type = hub_compat.install()
    from os_ken import cfg  # noqa: PLC0415
    from os_ken.base.app_manager import AppManager  # noqa: PLC0415
    from os_ken.lib import hub  # noqa: PLC0415
    from os_ken.topology import switches  # noqa: PLC0415

    from controller.app import link_liveness  # noqa: PLC0415
    from controller.app.osken_app import OtsegApp, Settings  # noqa: PLC0415

    OtsegApp.settings = Settings(policy, version, data, store, options.status_file, options.fast_failover,
                                 options.api_host, options.api_port, token, options.policy, options.events)
    switches.Switches.LLDP_SEND_PERIOD_PER_PORT = LLDP_PERIOD
    switches.Switches.TIMEOUT_CHECK_PERIOD = LINK_CHECK_PERIOD
    switches.Switches.LINK_TIMEOUT = LINK_TIMEOUT
    switches.Switches.LLDP_SEND_GUARD = LLDP_SEND_GUARD
    link_liveness.install(switches.Switches)
    manager = AppManager.get_instance()
    manager.load_apps([APP_MODULE])
    cfg.CONF(args=["--ofp-listen-host", options.ofp_host, "--ofp-tcp-listen-port", str(options.ofp_port),
                   "--observe-links"], project="os_ken")
    cfg.CONF.set_override("install_lldp_flow", False)  # ours is metered (table 0, priority 1000)
    cfg.CONF.set_override("explicit_drop", False)
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
        # os-ken stops an app by joining its threads before closing it, and the LLDP loop of
        # os_ken.topology.switches only sees is_active between waits, which are endless while
        # no port needs LLDP: wake it first, or a SIGTERM leaves the process hanging.
        for running in list(manager.applications.values()):
            if hasattr(running, "lldp_event"):
                running.is_active = False
                running.lldp_event.set()
                running.link_event.set()
        manager.close()
        for thread in services:
            thread.kill()
    return 0


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
