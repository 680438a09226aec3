"""What every lab benchmark shares: one controller (otseg or FAUCET) beside one Mininet lab,
started on a clean machine and always stopped, whatever fails on the way up."""

from __future__ import annotations

import socket
import subprocess
from typing import Any, Self

from controller.lab.network import Lab


def require_free_port(port: int) -> None:
    """Refuse to start beside another controller: eventlet listens with SO_REUSEPORT, so a
    stale controller on the same port would silently take half of the switches."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise RuntimeError(f"something already listens on 127.0.0.1:{port} (a stale controller?)")


def flow_count(bridge: str) -> int:
    """Entries in every table of an Open vSwitch bridge (-1 if it cannot be read)."""
    out = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-aggregate", bridge], capture_output=True, text=True,
                         check=False).stdout
    for word in out.split():
        if word.startswith("flow_count="):
            return int(word.split("=")[1])
    return -1


class LabRun:
    """Subclasses set `controller` (with .port, .start(), .stop()) and `lab`, and say in
    `bring_up` what else makes the run ready."""

    controller: Any
    lab: Lab

    def bring_up(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        subprocess.run(["mn", "-c"], capture_output=True, check=False)
        require_free_port(self.controller.port)
        self.controller.start()
        try:
            self.bring_up()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.lab.stop()
        self.controller.stop()
