"""A small etcd v3 key-value client over the gRPC gateway (etcd3gw), for the cluster mode.

etcd3gw (PyPI) talks to etcd's JSON gateway: no protobuf or gRPC build, which python-etcd3
cannot offer with protobuf 4+. It reaches one endpoint per client object, so this wraps one
per cluster member and moves to the next when one does not answer (a member cut off from
quorum times out; reads are linearizable, so a partitioned member never serves stale data).

Only what otseg needs: range (one key or a prefix, with revisions), put, a compare-and-swap
transaction, and leases. Every failure to reach a quorum is `StoreUnavailable`, with the
endpoints tried; nothing here retries for long: the caller decides (enforcement never waits
for the store).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

DEFAULT_TIMEOUT = 1.0  # seconds per request and member: a lease of 2 s must be refreshable in time


class StoreUnavailable(Exception):
    """No member of the etcd cluster answered with a quorum."""


@dataclass(frozen=True)
class Entry:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int


def parse_endpoints(url: str) -> list[tuple[str, int]]:
    """`etcd://HOST:PORT[,HOST:PORT...]` -> [(host, port)]; ValueError with the fix otherwise."""
    if not url.startswith("etcd://"):
        raise ValueError(f"--cluster {url!r}: give etcd://HOST:PORT[,HOST:PORT...] (the etcd members' client URLs)")
    endpoints = []
    for part in url[len("etcd://"):].split(","):
        parsed = urlsplit("//" + part.strip())
        try:
            port = parsed.port or 2379
        except ValueError:
            raise ValueError(f"--cluster {url!r}: {part!r} has no valid port") from None
        if not parsed.hostname:
            raise ValueError(f"--cluster {url!r}: {part!r} names no host")
        endpoints.append((parsed.hostname, port))
    return endpoints


def _b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: str) -> str:
    """The range end that selects every key starting with `prefix` (etcd's convention)."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return raw.decode()


class EtcdKV:
    def __init__(self, endpoints: list[tuple[str, int]], timeout: float = DEFAULT_TIMEOUT) -> None:
        import etcd3gw  # noqa: PLC0415  (imported after the hub has patched sockets)

        self.endpoints = endpoints
        self._clients = [etcd3gw.Etcd3Client(host=host, port=port, timeout=timeout, api_path="/v3/")
                         for host, port in endpoints]
        self._next = 0
        self._errors: tuple[type[BaseException], ...] = (etcd3gw.exceptions.Etcd3Exception, OSError)

    def describe(self) -> str:
        return ",".join(f"{host}:{port}" for host, port in self.endpoints)

    def _post(self, path: str, body: dict[str, Any], idempotent: bool = True) -> dict[str, Any]:
        """`idempotent=False` (a transaction): after a timeout it may have committed, so it is not
        sent to another member (the caller reads back what happened instead)."""
        failures = []
        for attempt in range(len(self._clients)):
            index = (self._next + attempt) % len(self._clients)
            client = self._clients[index]
            try:
                result = client.post(client.get_url(path), json=body)
            except self._errors as error:
                failures.append(f"{self.endpoints[index][0]}:{self.endpoints[index][1]}: "
                                f"{type(error).__name__} {str(error)[:120]}")
                if not idempotent and "Timeout" in type(error).__name__:
                    break
                continue
            self._next = index
            return result  # type: ignore[no-any-return]
        raise StoreUnavailable("etcd unreachable or without quorum (" + "; ".join(failures) + ")")

    # -- keys --------------------------------------------------------------------------------
    def range(self, key: str, prefix: bool = False) -> tuple[list[Entry], int]:
        """The entries at `key` (or under it), and the store's revision at the read."""
        body: dict[str, Any] = {"key": _b64(key)}
        if prefix:
            body["range_end"] = _b64(prefix_end(key))
        result = self._post("/kv/range", body)
        entries = [Entry(_unb64(kv["key"]).decode(), _unb64(kv.get("value")), int(kv.get("create_revision", 0)),
                         int(kv.get("mod_revision", 0)), int(kv.get("lease", 0))) for kv in result.get("kvs", [])]
        return entries, int(result.get("header", {}).get("revision", 0))

    def get(self, key: str) -> Entry | None:
        entries, _ = self.range(key)
        return entries[0] if entries else None

    def put(self, key: str, value: bytes, lease: int = 0) -> int:
        body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = lease
        return int(self._post("/kv/put", body).get("header", {}).get("revision", 0))

    def swap(self, key: str, value: bytes, expected: bytes | None, lease: int = 0) -> tuple[bool, int]:
        """Put `value` only if `key` holds `expected` (None: only if it does not exist).
        Returns (done, the store's revision after the transaction)."""
        put: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            put["lease"] = lease
        compare = ({"key": _b64(key), "result": "EQUAL", "target": "CREATE", "create_revision": 0}
                   if expected is None else
                   {"key": _b64(key), "result": "EQUAL", "target": "VALUE", "value": _b64(expected)})
        result = self._post("/kv/txn", {"compare": [compare], "success": [{"request_put": put}], "failure": []})
        return bool(result.get("succeeded", False)), int(result.get("header", {}).get("revision", 0))

    def txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]]) -> tuple[bool, int]:
        """A transaction (see `compare_*` and `put_op`); (succeeded, revision). Not re-sent elsewhere
        after a timeout: it may have committed."""
        result = self._post("/kv/txn", {"compare": compare, "success": success, "failure": []}, idempotent=False)
        return bool(result.get("succeeded", False)), int(result.get("header", {}).get("revision", 0))

    def delete(self, key: str, only_lease: int = 0) -> bool:
        """Delete `key` (if `only_lease`, only while it is held by that lease)."""
        compare = [{"key": _b64(key), "result": "EQUAL", "target": "LEASE", "lease": only_lease}] if only_lease else []
        result = self._post("/kv/txn", {"compare": compare,
                                        "success": [{"request_delete_range": {"key": _b64(key)}}], "failure": []})
        return bool(result.get("succeeded", False))

    # -- leases ------------------------------------------------------------------------------
    def grant(self, ttl: int) -> int:
        return int(self._post("/lease/grant", {"TTL": ttl, "ID": 0})["ID"])

    def keepalive(self, lease: int) -> int:
        """The lease's new TTL in seconds, or 0 if it has expired."""
        result = self._post("/lease/keepalive", {"ID": lease})
        return max(0, int(result.get("result", {}).get("TTL", 0)))

    def revoke(self, lease: int) -> None:
        self._post("/lease/revoke", {"ID": lease})


def compare_mod_revision(key: str, revision: int) -> dict[str, Any]:
    """`key` was last written at `revision` (0: it does not exist)."""
    if revision == 0:
        return {"key": _b64(key), "result": "EQUAL", "target": "CREATE", "create_revision": 0}
    return {"key": _b64(key), "result": "EQUAL", "target": "MOD", "mod_revision": revision}


def compare_lease(key: str, lease: int) -> dict[str, Any]:
    """`key` is held by `lease` (the leader key by our lease: we still lead)."""
    return {"key": _b64(key), "result": "EQUAL", "target": "LEASE", "lease": lease}


def put_op(key: str, value: bytes) -> dict[str, Any]:
    return {"request_put": {"key": _b64(key), "value": _b64(value)}}
