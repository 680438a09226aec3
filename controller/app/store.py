"""Applied policy versions and the audit log, on disk so they survive a restart.

Layout of the state directory:
    versions/<sha256>.yaml   every policy ever applied, content-addressed, never rewritten
    current.json             {"version": ..., "file_version": ...}: what is in force, and the
                             --policy file's version when it was last read
    audit.jsonl              one JSON line per apply or rollback: when, who, from, to, change
Writes go to a temporary file and are renamed into place, so a crash never leaves a
half-written version or pointer.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any


def version_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def short(version: str | None) -> str:
    return (version or "")[:12]


class PolicyStore:
    def __init__(self, state_dir: str | Path) -> None:
        self.root = Path(state_dir)
        (self.root / "versions").mkdir(parents=True, exist_ok=True)

    def save(self, data: bytes) -> str:
        version = version_of(data)
        path = self.root / "versions" / f"{version}.yaml"
        if not path.exists():
            self._write(path, data)
        return version

    def load(self, version: str) -> tuple[str, bytes]:
        """The full version and content for a version or a unique prefix of one."""
        if not version or len(version) > 64 or any(c not in "0123456789abcdef" for c in version):
            raise KeyError(f"{version!r} is not a policy version (4 to 64 hex digits)")
        matches = sorted((self.root / "versions").glob(f"{version}*.yaml"))
        if len(matches) != 1:
            raise KeyError(f"no stored policy version matches {version!r}" if not matches
                           else f"version prefix {version!r} is ambiguous")
        return matches[0].stem, matches[0].read_bytes()

    def current(self) -> dict[str, Any]:
        try:
            return json.loads((self.root / "current.json").read_text())  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return {}

    def set_current(self, version: str, file_version: str | None, previous: str | None = None) -> None:
        """`previous`: the version the caller believes in force (checked by the cluster store)."""
        self._write(self.root / "current.json",
                    json.dumps({"version": version, "file_version": file_version}).encode())

    def audit(self, **entry: Any) -> dict[str, Any]:
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **entry}
        with open(self.root / "audit.jsonl", "a") as log:
            log.write(json.dumps(record, sort_keys=True) + "\n")
            log.flush()
            os.fsync(log.fileno())
        return record

    def history(self) -> list[dict[str, Any]]:
        try:
            lines = (self.root / "audit.jsonl").read_text().splitlines()
        except OSError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def read(self, name: str) -> bytes | None:
        """A file of the state directory, or None if there is none."""
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            return None

    def describe(self, name: str) -> str:
        return str(self.root / name)

    def write(self, name: str, data: bytes) -> None:
        """Write a file of the state directory atomically."""
        self._write(self.root / name, data)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
