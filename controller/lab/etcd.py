"""etcd members on loopback ports, for the cluster tests, `otseg lab --ha` and the benchmarks.

Debian's `etcd-server` (3.4). Each member has its own data directory under `workdir` and
listens on 127.0.0.1 only; `endpoints` is the `--cluster` value for otseg.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path


class EtcdCluster:
    def __init__(self, workdir: Path, members: int = 1, base_port: int = 23790) -> None:
        if shutil.which("etcd") is None:
            raise RuntimeError("etcd is not installed: run `make system` (Debian package etcd-server)")
        self.workdir = workdir
        self.names = [f"m{i}" for i in range(members)]
        self.client_ports = [base_port + 2 * i for i in range(members)]
        self.peer_ports = [base_port + 2 * i + 1 for i in range(members)]
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def endpoints(self) -> str:
        return "etcd://" + ",".join(f"127.0.0.1:{port}" for port in self.client_ports)

    def _command(self, index: int) -> list[str]:
        name = self.names[index]
        initial = ",".join(f"{n}=http://127.0.0.1:{p}" for n, p in zip(self.names, self.peer_ports))
        return ["etcd", "--name", name, "--data-dir", str(self.workdir / f"etcd-{name}"),
                "--listen-client-urls", f"http://127.0.0.1:{self.client_ports[index]}",
                "--advertise-client-urls", f"http://127.0.0.1:{self.client_ports[index]}",
                "--listen-peer-urls", f"http://127.0.0.1:{self.peer_ports[index]}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer_ports[index]}",
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", f"otseg-{self.client_ports[0]}"]

    def start(self, timeout: float = 30.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for index in range(len(self.names)):
            self.start_member(index, wait=False)
        self.wait_healthy(range(len(self.names)), timeout)

    def start_member(self, index: int, wait: bool = True) -> None:
        name = self.names[index]
        running = self.processes.get(name)
        if running is not None and running.poll() is None:
            return  # already up
        log = open(self.workdir / f"etcd-{name}.log", "ab")
        self.processes[name] = subprocess.Popen(self._command(index), stdout=log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_healthy([index])

    def wait_healthy(self, indexes: object, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        for index in list(indexes):  # type: ignore[call-overload]
            while not self.healthy(index):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"etcd member {self.names[index]} not healthy after {timeout:.0f} s "
                                       f"(log: {self.workdir}/etcd-{self.names[index]}.log)")
                time.sleep(0.2)

    def healthy(self, index: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.client_ports[index]}/health", timeout=1) as answer:
                return b'"true"' in answer.read()
        except OSError:
            return False

    def stop_member(self, index: int, sig: int = signal.SIGKILL) -> None:
        process = self.processes.pop(self.names[index], None)
        if process is not None:
            process.send_signal(sig)
            process.wait(timeout=10)

    def stop(self) -> None:
        for index in range(len(self.names)):
            self.stop_member(index, signal.SIGTERM)
