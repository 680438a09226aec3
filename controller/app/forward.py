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
from urllib.parse import urlsplit

FORWARD_TIMEOUT = 120.0  # a push on a plant waits for every switch's barrier
FORWARDED_HEADERS = ("Authorization", "Content-Type", "X-Otseg-Filename", "If-Match")
HOP = "X-Otseg-Forwarded"  # set on a forwarded request: it is never forwarded again


def valid_api_url(url: str) -> bool:
    """An instance's advertised API: http(s)://HOST:PORT and nothing else (no path, query, user)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (parts.scheme in ("http", "https") and bool(parts.hostname) and port is not None
            and parts.path in ("", "/") and not parts.query and not parts.fragment and parts.username is None)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would carry the bearer token to wherever it points: it is an error instead."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)

Answer = tuple[bytes, int, dict[str, str]]


def forwarder(member: Any, own_api: str = "") -> Callable[[str, bytes, dict[str, str]], Answer | None]:
    """(path, body, headers) -> the answer to send instead, or None to handle it here (we lead)."""

    def forward(path: str, body: bytes, headers: dict[str, str]) -> Answer | None:
        refused = member.change_refused()
        if refused is None:
            return None
        target = member.forward_to()
        if target is None:
            return _error(503, f"{refused}: nothing was changed")
        if any(k.lower() == HOP.lower() for k in headers):  # the leaders' views differ for a moment: no ping-pong
            return _error(503, f"forwarded here by another instance, but this one does not lead ({refused}): the "
                               "cluster is changing leader; retry in a few seconds (nothing was changed)")
        if not valid_api_url(target) or target.rstrip("/") == own_api.rstrip("/"):
            return _error(503, f"the leader {member.state.leader} advertises {target!r}, which is not another "
                               "instance's API (http(s)://HOST:PORT): fix its --advertise-api (nothing was changed)")
        request = urllib.request.Request(target.rstrip("/") + path, data=body, method="POST",
                                         headers={**{k: v for k, v in headers.items() if k in FORWARDED_HEADERS},
                                                  HOP: "1"})
        leader = {"X-Otseg-Leader": str(member.state.leader)}
        try:
            with _OPENER.open(request, timeout=FORWARD_TIMEOUT) as response:
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
