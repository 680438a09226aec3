"""Request and reply plumbing for one controller: xids, barriers, multipart replies, errors.

A caller greenthread sends a message and waits (bounded) for what answers it: the reply
bodies of a multipart request, a barrier reply (with the errors the switch sent for the
messages before it), or the one reply or error of a call. The os-ken handlers only hand
the arriving messages to `reply`, `barrier_reply` and `error`.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

log = logging.getLogger("otseg.requests")
REQUEST_TIMEOUT = 10.0
BARRIER_TIMEOUT = 10.0


class Unanswered(str):
    """The error text of a call that got no answer in time (not a refusal: it may be asked again)."""


class SwitchRequests:
    def __init__(self, new_event: Callable[[], Any]) -> None:
        self._new_event = new_event
        self._errors: dict[tuple[int, int], str] = {}
        self._barriers: dict[tuple[int, int], Any] = {}
        self._pending: dict[tuple[int, int], tuple[Any, list[Any]]] = {}
        self._calls: dict[tuple[int, int], tuple[Any, list[Any]]] = {}

    def barrier(self, datapath: Any, xids: set[int]) -> list[str]:
        """Send a barrier and wait for its reply; return the errors the switch sent for `xids`."""
        request = datapath.ofproto_parser.OFPBarrierRequest(datapath)
        datapath.set_xid(request)
        done = self._new_event()
        self._barriers[(datapath.id, request.xid)] = done
        try:
            if not datapath.send_msg(request) or not done.wait(timeout=BARRIER_TIMEOUT):
                return [f"no barrier reply within {BARRIER_TIMEOUT:.0f} s"]
        finally:
            self._barriers.pop((datapath.id, request.xid), None)
        return [self._errors.pop((datapath.id, xid)) for xid in sorted(xids) if (datapath.id, xid) in self._errors]

    def request(self, datapath: Any, message: Any) -> list[Any] | None:
        """Send a multipart request and return its reply bodies, or None if none came in time."""
        datapath.set_xid(message)
        done = self._new_event()
        bodies: list[Any] = []
        self._pending[(datapath.id, message.xid)] = (done, bodies)
        try:
            if not datapath.send_msg(message) or not done.wait(timeout=REQUEST_TIMEOUT):
                return None
        finally:
            self._pending.pop((datapath.id, message.xid), None)
        return bodies

    def call(self, datapath: Any, message: Any) -> tuple[Any | None, str | None]:
        """Send a message that the switch answers with one reply or one error: (reply, error text)."""
        datapath.set_xid(message)
        done = self._new_event()
        box: list[Any] = []
        self._calls[(datapath.id, message.xid)] = (done, box)
        try:
            if not datapath.send_msg(message) or not done.wait(timeout=REQUEST_TIMEOUT):
                return None, Unanswered(f"no answer to {type(message).__name__} within {REQUEST_TIMEOUT:.0f} s")
        finally:
            self._calls.pop((datapath.id, message.xid), None)
        kind, value = box[0]
        return (value, None) if kind == "reply" else (None, value)

    # -- arrivals (from the os-ken handlers) ------------------------------------------------
    def call_reply(self, msg: Any) -> None:
        waiter = self._calls.get((msg.datapath.id, msg.xid))
        if waiter is not None:
            waiter[1].append(("reply", msg))
            waiter[0].set()

    def multipart_reply(self, msg: Any) -> None:
        pending = self._pending.get((msg.datapath.id, msg.xid))
        if pending is None:
            return
        done, bodies = pending
        bodies.extend(msg.body if isinstance(msg.body, list) else [msg.body])  # features replies have one body
        if not msg.flags & msg.datapath.ofproto.OFPMPF_REPLY_MORE:
            done.set()

    def barrier_reply(self, msg: Any) -> None:
        waiter = self._barriers.get((msg.datapath.id, msg.xid))
        if waiter is not None:
            waiter.set()

    def error(self, msg: Any) -> None:
        text = f"OpenFlow error type {msg.type} code {getattr(msg, 'code', '-')} on xid {msg.xid}"
        waiter = self._calls.get((msg.datapath.id, msg.xid))
        if waiter is not None:
            waiter[1].append(("error", text))
            waiter[0].set()
            return
        self._errors[(msg.datapath.id, msg.xid)] = text
        log.debug("switch %#x: %s", msg.datapath.id, text)
