"""Cluster mode: a change sent to a follower is forwarded to the leader, as it came.

The request keeps its body, bearer token and file name; the answer (status code and body)
comes back unchanged, with `X-Otseg-Leader` naming the instance that acted. With no leader
known, or no quorum, the answer is 503 with the reason: nothing changed anywhere. Reads are
answered locally: status is this instance's own, history comes from the shared store.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Callable

FORWARD_TIMEOUT = 120.0  # a push on a plant waits for every switch's barrier
FORWARDED_HEADERS = ("Authorization", "Content-Type", "X-Otseg-Filename")

Answer = tuple[bytes, int, dict[str, str]]


def forwarder(member: Any) -> Callable[[str, bytes, dict[str, str]], Answer | None]:
    """(path, body, headers) -> the answer to send instead, or None to handle it here (we lead)."""

    def forward(path: str, body: bytes, headers: dict[str, str]) -> Answer | None:
        refused = member.change_refused()
        if refused is None:
            return None
        target = member.forward_to()
        if target is None:
            return _error(503, f"{refused}: nothing was changed")
        request = urllib.request.Request(target.rstrip("/") + path, data=body, method="POST",
                                         headers={k: v for k, v in headers.items() if k in FORWARDED_HEADERS})
        leader = {"X-Otseg-Leader": str(member.state.leader)}
        try:
            with urllib.request.urlopen(request, timeout=FORWARD_TIMEOUT) as response:
                return response.read(), response.status, {"Content-Type": response.headers.get(
                    "Content-Type", "application/json"), **leader}
        except urllib.error.HTTPError as error:
            return error.read(), error.code, {"Content-Type": error.headers.get("Content-Type", "application/json"),
                                              **leader}
        except (urllib.error.URLError, OSError) as error:
            return _error(503, f"the leader {member.state.leader} at {target} did not answer ({error}); it may be "
                               "failing over: see `otseg history` for whether it applied the change, and retry")

    return forward


def _error(code: int, message: str) -> Answer:
    return json.dumps({"error": message}).encode(), code, {"Content-Type": "application/json"}
