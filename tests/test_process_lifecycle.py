"""`otseg run` stops cleanly on SIGTERM (no switch needed): a service manager must not have to kill it."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from controller.lab.process import ControllerProcess

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_sigterm_without_switches_exits_promptly_with_status_zero(tmp_path: Path) -> None:
    controller = ControllerProcess(str(ROOT / "policies" / "linear.yaml"), tmp_path, port=_free_port(),
                                   api_port=_free_port())
    controller.start()
    controller.wait_listening(60)
    time.sleep(1)  # every app (LLDP loop included) is waiting on its events
    start = time.monotonic()
    code = controller.stop(timeout=10)
    assert code == 0, controller.log_text()[-2000:]
    assert time.monotonic() - start < 5
    assert "stopping" in controller.log_text()
