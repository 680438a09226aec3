"""Select and patch os-ken's eventlet hub before os_ken is imported anywhere.

Why: os-ken 4.x's default `native` hub has two bugs seen on this platform:
`hub.Event.wait(timeout)` ignores the timeout (so no request, barrier or link-expiry wait
would ever time out), and a switch whose TCP connection closes never reaches
DEAD_DISPATCHER (so a reconnecting switch is reported as "reconnected" and a switch that
goes away for good is never reported). The eventlet hub has neither bug. It needs
eventlet's monkey patching (sockets, time) in the controller process; real threads are
left unpatched (`thread=False`), so otseg code must not mix threads with hub primitives.
Tests: tests/integration/test_controller_lifecycle.py (reconnect, restart by PID).
"""

from __future__ import annotations

import os
import warnings
from typing import Callable, TypeVar

T = TypeVar("T")


def install() -> str:
    """Select eventlet and patch; idempotent. Returns the hub type in force."""
    os.environ.setdefault("OSKEN_HUB_TYPE", "eventlet")
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    from os_ken.lib import hub  # noqa: PLC0415  (must follow the environment setting)

    hub.patch(thread=False)
    return hub.HUB_TYPE


def serialised(executor: Callable[..., T]) -> Callable[..., T]:
    """`executor` (e.g. eventlet's tpool.execute), one call at a time across green threads: the
    caller waits on a hub semaphore (its loop keeps running), never a thread lock."""
    from os_ken.lib import hub  # noqa: PLC0415

    gate = hub.BoundedSemaphore(1)

    def run(function: Callable[..., T], *args: object) -> T:
        with gate:
            return executor(function, *args)

    return run
