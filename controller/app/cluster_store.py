"""The cluster's one history, in etcd: policy versions, the version in force, approvals, audit.

The same interface as `store.PolicyStore` (the single-instance state directory), so the
control plane and link control do not know which one they use. Keys, under
`/otseg/<cluster>/`:
    versions/<sha256>   every policy ever applied (content-addressed, never rewritten)
    current             {"version", "file_version"}: what is in force; changed only by a
                        compare-and-swap from the version the writer believed in force
    audit/<ns>-<who>    one JSON record per apply, refusal, rollback, link approval (ordered
                        by the key: nanoseconds since the epoch, then the instance)
    files/<name>        small documents (approved links)
    secrets/<name>      values made once for the whole cluster (LLDP key, API token)
The local state directory is only a cache of versions (a follower can show a version while
the store is unreachable). Every call that cannot reach a quorum raises StoreUnavailable:
the caller refuses the change, and what is in force stays.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

from controller.app.cluster_kv import EtcdKV
from controller.app.store import PolicyStore, short, version_of


class StoreConflict(Exception):
    """The version in force changed under the writer: another instance wrote it."""


class ClusterStore:
    def __init__(self, kv: EtcdKV, cluster: str, instance: str, cache_dir: str | Path) -> None:
        self.kv = kv
        self.prefix = f"/otseg/{cluster}/"
        self.instance = instance
        self.cache = PolicyStore(cache_dir)
        self.root = self.cache.root

    def _key(self, name: str) -> str:
        return self.prefix + name

    # -- versions ----------------------------------------------------------------------------
    def save(self, data: bytes) -> str:
        version = version_of(data)
        self.kv.swap(self._key(f"versions/{version}"), data, None)  # content-addressed: first write wins, same bytes
        self.cache.save(data)
        return version

    def load(self, version: str) -> tuple[str, bytes]:
        if not version or len(version) > 64 or any(c not in "0123456789abcdef" for c in version):
            raise KeyError(f"{version!r} is not a policy version (4 to 64 hex digits)")
        entries, _ = self.kv.range(self._key(f"versions/{version}"), prefix=True)
        if len(entries) != 1:
            raise KeyError(f"no stored policy version matches {version!r}" if not entries
                           else f"version prefix {version!r} is ambiguous")
        full, data = entries[0].key.rsplit("/", 1)[1], entries[0].value
        if version_of(data) != full:
            raise KeyError(f"stored version {short(full)} does not hash to its name: the store is damaged")
        self.cache.save(data)
        return full, data

    def current(self) -> dict[str, Any]:
        entry = self.kv.get(self._key("current"))
        if entry is None:
            return {}
        try:
            return json.loads(entry.value)  # type: ignore[no-any-return]
        except ValueError:
            return {}

    def set_current(self, version: str, file_version: str | None, previous: str | None = None) -> None:
        """Compare-and-swap: only from `previous` (the version the writer had in force)."""
        key = self._key("current")
        entry = self.kv.get(key)
        held = json.loads(entry.value).get("version") if entry is not None else None
        if held != previous:
            raise StoreConflict(f"the version in force in the cluster is {short(held) or 'none'}, not "
                                f"{short(previous) or 'none'}: another instance changed it")
        value = json.dumps({"version": version, "file_version": file_version}, sort_keys=True).encode()
        done, _ = self.kv.swap(key, value, entry.value if entry is not None else None)
        if not done:
            raise StoreConflict("the version in force changed during the update: another instance changed it")

    # -- audit -------------------------------------------------------------------------------
    def audit(self, **entry: Any) -> dict[str, Any]:
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "instance": self.instance, **entry}
        self.kv.put(self._key(f"audit/{time.time_ns():020d}-{self.instance}"),
                    json.dumps(record, sort_keys=True).encode())
        return record

    def history(self) -> list[dict[str, Any]]:
        entries, _ = self.kv.range(self._key("audit/"), prefix=True)
        records = []
        for entry in sorted(entries, key=lambda e: e.key):
            try:
                records.append(json.loads(entry.value))
            except ValueError:
                continue
        return records

    # -- documents and secrets ---------------------------------------------------------------
    def read(self, name: str) -> bytes | None:
        entry = self.kv.get(self._key(f"files/{name}"))
        return entry.value if entry is not None else None

    def describe(self, name: str) -> str:
        return f"etcd {self.kv.describe()} key {self._key(f'files/{name}')}"

    def write(self, name: str, data: bytes) -> None:
        self.kv.put(self._key(f"files/{name}"), data)

    def secret(self, name: str, size: int = 32) -> bytes:
        """A random value made once for the cluster (the first instance to ask makes it)."""
        key = self._key(f"secrets/{name}")
        self.kv.swap(key, secrets.token_bytes(size), None)
        entry = self.kv.get(key)
        assert entry is not None
        return entry.value
