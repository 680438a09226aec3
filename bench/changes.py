"""A series of one-conduit policy changes, each to a policy never compiled before.

Pushing A, B, A, B... would measure the controller's compile cache, not a change: the
series adds conduits 0..h-1 one at a time, then removes them oldest first, so every state
is new (the last one is the starting policy again, long out of any cache).
"""

from __future__ import annotations

from typing import Callable

SERVICES = ["modbus", "s7comm", "opcua", "iec104", "dnp3", "bacnet", "syslog", "https", "ssh", "mqtt", "snmp",
            "icmp"]


def states(changes: int) -> list[list[int]]:
    half = (changes + 1) // 2
    return [list(range(i + 1)) if i < half else list(range(i - half + 1, half)) for i in range(changes)]


def conduit_yaml(index: int, source: str, target: str, indent: str = "  ") -> bytes:
    """One extra conduit as a list item, to append to a policy whose last section is `conduits:`
    (`indent`: that list's indentation)."""
    service = SERVICES[index % len(SERVICES)]
    body = indent + "  "
    return (f"{indent}- name: bench-change-{index}\n{body}from: {source}\n{body}to: {target}\n"
            f"{body}services: [{service}]\n{body}reason: \"Benchmark: one conduit added, later removed\"\n").encode()


def policy_texts(base: bytes, changes: int, extra: Callable[[int], bytes]) -> list[bytes]:
    """The policy text after each of `changes` pushes."""
    text = base if base.endswith(b"\n") else base + b"\n"
    return [text + b"".join(extra(k) for k in state) for state in states(changes)]
