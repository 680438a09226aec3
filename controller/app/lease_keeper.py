"""The leader's lease, kept alive from a native thread, so that leadership follows the process.

The shell's event loop can stall for seconds (os-ken parses a switch's table-features reply,
about 1 s per Open vSwitch bridge, in the loop). A keep-alive sent from the loop would then
miss a 2 s lease and hand the cluster to a follower although the leader is alive and its
switches are fine: two takeovers for nothing. So the keep-alive runs in a real thread, on
the original (unpatched) socket module, with a raw HTTP/1.1 request to etcd's JSON gateway:
only what stops the whole process (a crash, SIGKILL, SIGSTOP, a cut-off from etcd) lets the
lease expire.

Invariant: `valid_until` is only ever set to (time the keep-alive was sent) + (TTL etcd
granted), so the lease lasts at least until then; `expired` is set once etcd says the lease
is gone, and the thread ends.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable

log = logging.getLogger("otseg.cluster")


def _original(name: str) -> Any:
    try:
        import eventlet.patcher  # noqa: PLC0415

        return eventlet.patcher.original(name)
    except ImportError:  # no eventlet: nothing is patched
        return __import__(name)


def _dechunk(payload: bytes) -> bytes:
    out, rest = b"", payload
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2:]
    return out


def http_post(host: str, port: int, path: str, body: dict[str, Any], timeout: float,
              socket_module: Any = None) -> dict[str, Any]:
    """One POST with Connection: close on a real socket; the JSON answer (OSError/ValueError if none)."""
    sockets = socket_module or _original("socket")
    data = json.dumps(body).encode()
    request = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode() + data
    with sockets.create_connection((host, port), timeout=timeout) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status + b" ":
        raise ValueError(f"etcd answered {status.decode(errors='replace')}")
    if b"transfer-encoding: chunked" in head.lower():
        payload = _dechunk(payload)
    return json.loads(payload.decode().strip().splitlines()[0])  # type: ignore[no-any-return]


class LeaseKeeper:
    def __init__(self, endpoints: list[tuple[str, int]], lease: int, ttl: int, granted_at: float | None = None,
                 clock: Callable[[], float] = time.monotonic, timeout: float = 0.5,
                 post: Callable[..., dict[str, Any]] = http_post) -> None:
        self.endpoints = endpoints
        self.lease = lease
        self.ttl = ttl
        self.clock = clock
        self.timeout = timeout
        self.post = post
        # From when the grant was *sent*: the lease may have started any time after that.
        self.valid_until = (clock() if granted_at is None else granted_at) + ttl
        self.expired = False
        self.last_error = ""
        self._stopped = False
        self._sleep = _original("time").sleep
        self._thread = threading.Thread(target=self._run, name=f"otseg-lease-{lease:x}", daemon=True)

    def start(self) -> "LeaseKeeper":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped = True

    def keepalive_once(self) -> None:
        sent = self.clock()
        for host, port in self.endpoints:
            try:
                answer = self.post(host, port, "/v3/lease/keepalive", {"ID": self.lease}, self.timeout)
            except (OSError, ValueError) as error:
                self.last_error = f"{host}:{port}: {error}"
                continue
            result = answer.get("result") if isinstance(answer, dict) else None
            if not isinstance(result, dict) or "error" in answer:
                self.last_error = f"{host}:{port}: unexpected answer {str(answer)[:120]}"
                continue
            ttl = int(result.get("TTL", 0) or 0)  # etcd leaves TTL out once the lease is gone
            if ttl <= 0:
                self.expired = True
            else:
                self.valid_until = max(self.valid_until, sent + ttl)
                self.last_error = ""
            return

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() or not self._thread.ident  # not started yet (tests) counts as alive

    def _run(self) -> None:
        while not self._stopped and not self.expired:
            try:
                self.keepalive_once()
            except Exception as error:  # noqa: BLE001  (never die silently: the lease would lapse unseen)
                self.last_error = f"keep-alive failed: {type(error).__name__}: {error}"
                log.error("cluster: lease keep-alive failed (%s); retrying", self.last_error)
            self._sleep(self.ttl / 8)
