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
from typing import Any, Callable

from controller.app.cluster_kv import EtcdKV, StoreUnavailable, compare_lease, compare_mod_revision, put_op
from controller.app.store import PolicyStore, short, version_of


class StoreConflict(Exception):
    """The version in force changed under the writer: another instance wrote it."""


class ClusterStore:
    def __init__(self, kv: EtcdKV, cluster: str, instance: str, cache_dir: str | Path,
                 fence: Callable[[], int] = lambda: 0) -> None:
        self.kv = kv
        self.prefix = f"/otseg/{cluster}/"
        self.instance = instance
        # Our lease while we lead (0: we do not): every change of what is in force, and every
        # approval, is a transaction that also checks the leader key is held by it. A deposed
        # leader resuming mid-push cannot write over its successor.
        self.fence = fence
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

    def set_current(self, version: str, file_version: str | None, previous: str | None = None,
                    fenced: bool = True) -> None:
        """Compare-and-swap: only from `previous` (the version the writer had in force), only if
        nothing wrote it since we read it (its mod revision: no ABA), and (`fenced`) only while we
        lead. `fenced=False` only for seeding an empty cluster at start."""
        key = self._key("current")
        entry = self.kv.get(key)
        held = json.loads(entry.value).get("version") if entry is not None else None
        if held != previous:
            raise StoreConflict(f"the version in force in the cluster is {short(held) or 'none'}, not "
                                f"{short(previous) or 'none'}: another instance changed it")
        value = json.dumps({"version": version, "file_version": file_version}, sort_keys=True).encode()
        self._fenced_put(key, value, entry.mod_revision if entry is not None else 0, fenced)

    def _fenced_put(self, key: str, value: bytes, mod_revision: int | None, fenced: bool) -> None:
        compare = [] if mod_revision is None else [compare_mod_revision(key, mod_revision)]
        if fenced:
            lease = self.fence()
            if not lease:
                raise StoreConflict("this instance does not lead the cluster (its lease is gone)")
            compare.append(compare_lease(self.prefix + "leader", lease))
        try:
            done, _ = self.kv.txn(compare, [put_op(key, value)])
        except StoreUnavailable:
            done = False
            if not self._landed(key, value):  # a timeout may have committed it: read back
                raise
            return
        if not done and not self._landed(key, value):
            raise StoreConflict("the cluster's state changed during the update, or this instance no longer leads: "
                                "nothing was recorded")

    def _landed(self, key: str, value: bytes) -> bool:
        try:
            entry = self.kv.get(key)
        except StoreUnavailable:
            return False
        return entry is not None and entry.value == value

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
        """Only while we lead (approvals change what is trusted)."""
        self._fenced_put(self._key(f"files/{name}"), data, None, True)

    def secret(self, name: str, size: int = 32) -> bytes:
        """A random value made once for the cluster (the first instance to ask makes it)."""
        key = self._key(f"secrets/{name}")
        self.kv.swap(key, secrets.token_bytes(size), None)
        entry = self.kv.get(key)
        assert entry is not None
        return entry.value
