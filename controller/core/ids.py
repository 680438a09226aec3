"""Stable small integer ids for zones and assets, carried in OpenFlow metadata.

An id depends on the name's hash, with linear probing in sorted-name order on collision,
so adding or removing one name leaves almost every other id (and so every other flow)
unchanged: a policy push touches only the flows that really change.
"""

from __future__ import annotations

import hashlib
from typing import Iterable


def assign_ids(names: Iterable[str], bits: int) -> dict[str, int]:
    """Map each name to a distinct id in 1 .. 2**bits - 1."""
    space = (1 << bits) - 1
    ordered = sorted(set(names))
    if len(ordered) > space:
        raise ValueError(f"{len(ordered)} names do not fit in {bits} bits")
    taken: set[int] = set()
    result: dict[str, int] = {}
    for name in ordered:
        digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
        slot = int.from_bytes(digest, "big") % space
        while slot + 1 in taken:
            slot = (slot + 1) % space
        taken.add(slot + 1)
        result[name] = slot + 1
    return result


def stable_hash32(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big")
