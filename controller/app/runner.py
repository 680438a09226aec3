"""`otseg run`: validate the policy, then embed os-ken 4.x and enforce until stopped.

os-ken 4.x has no `osken-manager`; we drive its AppManager ourselves. Order matters:
the hub is selected before os_ken is imported (hub_compat), apps are loaded before the
configuration is parsed (os_ken.topology.switches registers command-line options when
imported), and SIGTERM/SIGINT stop the hub cleanly.
"""

from __future__ import annotations

import hashlib
import logging
import signal
from pathlib import Path
from typing import Any

from controller.io.files import load_policy

APP_MODULE = "controller.app.osken_app"
# Link liveness: LLDP on each port every 0.5 s; a link silent for 2 s is down, checked every 0.5 s.
LLDP_PERIOD = 0.5
LINK_TIMEOUT = 2.0
LINK_CHECK_PERIOD = 0.5


def policy_version(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def run(policy_path: str, ofp_host: str, ofp_port: int, status_file: str | None, log_level: str,
        fast_failover: bool = True) -> int:
    policy = load_policy(policy_path)  # raises DocumentError: the CLI prints it and exits 2
    version = policy_version(policy_path)
    logging.basicConfig(level=getattr(logging, log_level.upper()),
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    log = logging.getLogger("otseg")

    from controller.app import hub_compat  # noqa: PLC0415  (selects the hub before os_ken loads)

    hub_type = hub_compat.install()
    from os_ken import cfg  # noqa: PLC0415
    from os_ken.base.app_manager import AppManager  # noqa: PLC0415
    from os_ken.lib import hub  # noqa: PLC0415
    from os_ken.topology import switches  # noqa: PLC0415

    from controller.app.osken_app import OtsegApp, Settings  # noqa: PLC0415

    OtsegApp.settings = Settings(policy, version, status_file, fast_failover)
    switches.Switches.LLDP_SEND_PERIOD_PER_PORT = LLDP_PERIOD
    switches.Switches.TIMEOUT_CHECK_PERIOD = LINK_CHECK_PERIOD
    switches.Switches.LINK_TIMEOUT = LINK_TIMEOUT
    manager = AppManager.get_instance()
    manager.load_apps([APP_MODULE])
    cfg.CONF(args=["--ofp-listen-host", ofp_host, "--ofp-tcp-listen-port", str(ofp_port), "--observe-links"],
             project="os_ken")
    cfg.CONF.set_override("install_lldp_flow", False)  # ours is metered (table 0, priority 1000)
    cfg.CONF.set_override("explicit_drop", False)
    log.info("otseg enforcing policy %r version %s (mode %s) on %s:%d, hub %s",
             policy.name, version, policy.mode, ofp_host, ofp_port, hub_type)

    def stop(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    services: list[Any] = []
    try:
        services = manager.instantiate_apps(**manager.create_contexts())
        hub.joinall(services)
    except KeyboardInterrupt:
        log.info("stopping; switches keep enforcing their tables (fail-mode secure)")
    finally:
        manager.close()
        for thread in services:
            thread.kill()
    return 0
