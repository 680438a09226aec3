"""Run `otseg run` as its own process (start, stop, SIGKILL, restart) and read its status."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent


class ControllerProcess:
    def __init__(self, policy: str, workdir: str | Path, port: int = 6653, extra_args: tuple[str, ...] = (),
                 api_port: int = 8181, topology: str | None = None) -> None:
        self.policy = policy
        self.topology = topology
        self.extra_args = extra_args
        self.api_port = api_port
        self.port = port
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.status_file = self.workdir / "status.json"
        self.log_file = self.workdir / "controller.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def state_dir(self) -> Path:
        return self.workdir / "state"

    def token(self) -> str:
        """The API token this controller made at start (changes need it)."""
        return (self.state_dir / "api-token").read_text().strip().partition(":")[2]

    def post(self, path: str, body: bytes, content_type: str = "application/yaml", timeout: float = 120) -> Any:
        """POST to the control API with the controller's token; the JSON answer (HTTPError on 4xx)."""
        request = urllib.request.Request(self.api_url + path, data=body, method="POST",
                                         headers={"Content-Type": content_type,
                                                  "Authorization": f"Bearer {self.token()}"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"null")

    def start(self) -> None:
        self.started_at = time.monotonic()
        self.status_file.unlink(missing_ok=True)
        log = open(self.log_file, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "run", "--policy", self.policy, "--ofp-port", str(self.port),
             "--status-file", str(self.status_file), "--state-dir", str(self.state_dir),
             "--api-port", str(self.api_port), "--events", str(self.workdir / "events.jsonl"),
             *(("--topology", self.topology) if self.topology else ()), *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))

    def wait_listening(self, timeout: float = 30.0) -> None:
        """Until the OpenFlow port accepts connections (the switches can connect)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"controller exited with {self.process.returncode}:\n{self.log_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"controller not listening on {self.port} after {timeout:.0f} s; log: {self.log_file}")

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, and SIGKILL after `timeout`. Returns the exit code (negative: killed by a signal)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code

    def kill(self) -> None:
        """SIGKILL, as a crash would: no clean-up of any kind."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None

    def status(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.status_file.read_text())  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return None

    def wait_for(self, predicate: Any, timeout: float = 60.0, what: str = "condition") -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"controller exited with {self.process.returncode}; log: {self.log_file}")
            status = self.status()
            if status is not None and predicate(status):
                return status
            time.sleep(0.2)
        raise TimeoutError(f"controller: {what} not reached in {timeout:.0f} s; log: {self.log_file}")

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""
