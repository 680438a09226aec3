"""Steady UDP streams between lab hosts, to count packets lost while the network changes."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.lab.network import Lab

ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass
class StreamResult:
    sent: int
    received: int
    largest_gap: int

    @property
    def lost(self) -> int:
        return self.sent - self.received


class Stream:
    """`source` sends `rate` datagrams/s to `target`:`port` for `seconds`; `target` counts them."""

    def __init__(self, lab: Lab, source: str, target: str, port: int, seconds: float, workdir: Path,
                 rate: float = 1000) -> None:
        self.lab, self.source, self.target = lab, source, target
        self.port, self.seconds, self.rate = port, seconds, rate
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        name = f"{source}-{target}-{port}"
        self.sent_file = workdir / f"{name}.sent.json"
        self.received_file = workdir / f"{name}.received.json"
        self.processes: list[Any] = []

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        target_ip = self.lab.hosts[self.target].ip
        assert target_ip is not None
        self.processes.append(self.lab.node(self.target).popen(
            [sys.executable, "-m", "controller.lab.agent", "sink", "--bind", target_ip, "--port", str(self.port),
             "--seconds", str(self.seconds + 1.5), "--out", str(self.received_file)], env=env))
        time.sleep(0.3)
        self.processes.append(self.lab.node(self.source).popen(
            [sys.executable, "-m", "controller.lab.agent", "stream", "--ip", target_ip, "--port", str(self.port),
             "--rate", str(self.rate), "--seconds", str(self.seconds), "--out", str(self.sent_file)], env=env))

    def result(self) -> StreamResult:
        for process in self.processes:
            process.wait(timeout=self.seconds + 30)
        sent = json.loads(self.sent_file.read_text())
        received = json.loads(self.received_file.read_text())
        return StreamResult(sent["sent"], received["received"], received["largest_gap"])


class GroupStream:
    """`source` sends `rate` datagrams/s to the IPv4 `group`:`port` for `seconds`; each of
    `members` joins the group and counts what reaches it (listed receivers or not)."""

    def __init__(self, lab: Lab, source: str, group: str, port: int, members: list[str], seconds: float,
                 workdir: Path, rate: float = 1000) -> None:
        self.lab, self.source, self.group, self.port, self.members = lab, source, group, port, members
        self.seconds, self.rate, self.workdir = seconds, rate, workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.sent_file = workdir / f"{source}-{group}-{port}.sent.json"
        self.processes: list[Any] = []

    def _received_file(self, member: str) -> Path:
        return self.workdir / f"{member}-{self.group}-{self.port}.received.json"

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        for member in self.members:
            ip = self.lab.hosts[member].ip
            assert ip is not None
            self.processes.append(self.lab.node(member).popen(
                [sys.executable, "-m", "controller.lab.agent", "sink", "--bind", ip, "--join", self.group,
                 "--port", str(self.port), "--seconds", str(self.seconds + 1.5),
                 "--out", str(self._received_file(member))], env=env))
        time.sleep(0.5)
        source_ip = self.lab.hosts[self.source].ip
        assert source_ip is not None
        self.processes.append(self.lab.node(self.source).popen(
            [sys.executable, "-m", "controller.lab.agent", "stream", "--ip", self.group, "--port", str(self.port),
             "--group-if", source_ip, "--rate", str(self.rate), "--seconds", str(self.seconds),
             "--out", str(self.sent_file)], env=env))

    def results(self) -> dict[str, StreamResult]:
        for process in self.processes:
            process.wait(timeout=self.seconds + 30)
        sent = json.loads(self.sent_file.read_text())["sent"]
        found = {}
        for member in self.members:
            received = json.loads(self._received_file(member).read_text())
            found[member] = StreamResult(sent, received["received"], received["largest_gap"])
        return found
