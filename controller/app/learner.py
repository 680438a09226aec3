"""Learn mode in the shell: samples in, conversations recorded, counting entries out.

A learn-mode zone's monitor rule copies each frame it forwards to the controller (its cookie
is the zone's `monitor:` cookie). `sample` turns one into a `Conversation`
(controller.core.learn); `flush` (every second) hands the new ones to the enforcer, whose
next reconcile installs their counting entries, so that the switch forwards them on without
the controller and counts them. Past the budget nothing more is recorded, the learn rules
stop copying (`learn_full`), and the report says so. `save` stores the conversations with
their first and last time seen and packet counts (`learned.json` in the state directory, or
etcd): a restart keeps them, and their entries.

The forwarded traffic never waits for the controller: the copy is made by the switch while it
forwards (no meter: a meter's drop band would drop the forwarded frame too).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable

from controller.core.frames import Frame
from controller.core.learn import Conversation, Seen, conversation
from controller.core.rules import cookie

log = logging.getLogger("otseg.learn")
LEARNED_FILE = "learned.json"


class Learner:
    def __init__(self, enforcer: Any, store: Any, budget: int, lock: Any,
                 counters: Callable[[], dict[int, tuple[int, int]]] = dict,
                 may_record: Callable[[], bool] = lambda: True, clock: Callable[[], float] = time.time) -> None:
        self.enforcer, self.store, self.budget, self.lock = enforcer, store, budget, lock
        self.counters, self.may_record, self.clock = counters, may_record, clock
        self.seen: dict[Conversation, Seen] = {}
        self.unknown: dict[str, dict[str, Any]] = {}  # "mac@dpid:port" -> first, last, frames
        self.pending: set[Conversation] = set()
        self.dropped = 0  # conversations not recorded: over the budget
        self._cookies: tuple[object, frozenset[int]] | None = None
        self._load()

    # -- samples ------------------------------------------------------------------------------
    def learn_cookies(self) -> frozenset[int]:
        policy = self.enforcer.policy
        if self._cookies is None or self._cookies[0] is not policy:
            self._cookies = (policy, frozenset(cookie(f"monitor:{z.name}") for z in policy.zones
                                               if policy.zone_mode(z.name) == "learn"))
        return self._cookies[1]

    def sample(self, flow_cookie: int, frame: Frame) -> bool:
        """True if this packet-in is a learn copy (whatever it says, it is consumed here)."""
        if flow_cookie not in self.learn_cookies():
            return False
        if not self.may_record():
            return True
        policy = self.enforcer.policy
        src = policy.asset_by_mac(frame.eth_src) if frame.eth_src else None
        dst = policy.asset_by_mac(frame.eth_dst) if frame.eth_dst else None
        if src is None or dst is None:
            return True
        found = conversation(policy, frame, src, dst)
        if found is None:
            return True
        now = self.clock()
        known = self.seen.get(found)
        if known is not None:
            self.seen[found] = Seen(known.first, now, known.packets + 1)
            return True
        if len(self.seen) >= self.budget:
            self.dropped += 1
            return True
        self.seen[found] = Seen(now, now, 1)
        self.pending.add(found)
        log.info("learned: %s", found.describe())
        return True

    def unknown_device(self, mac: str, dpid: int, port: int) -> None:
        """A device no asset describes sent from an edge port (reported, never proposed)."""
        if not self.may_record() or not self.learn_cookies():
            return
        key = f"{mac}@{dpid:#x}:{port}"
        now = self.clock()
        record = self.unknown.setdefault(key, {"mac": mac, "switch": f"{dpid:#x}", "port": port, "first": now,
                                               "last": now, "frames": 0})
        record["last"], record["frames"] = now, record["frames"] + 1

    # -- into the tables, and the store -----------------------------------------------------------
    def flush(self) -> bool:
        """Hand new conversations (and the budget state) to the enforcer; True if it changed."""
        full = len(self.seen) >= self.budget
        if not self.pending and full == self.enforcer.learn_full:
            return False
        with self.lock:
            self.enforcer.conversations = frozenset(self.seen)
            if full and not self.enforcer.learn_full:
                log.warning("learn budget reached: %d conversations recorded; nothing more is learned (raise "
                            "--learn-budget, or propose from what was seen)", len(self.seen))
            self.enforcer.learn_full = full
            self.pending.clear()
        return True

    def _packets(self) -> dict[Conversation, int]:
        totals = self.counters()
        return {c: totals[cookie(f"learned:{c.key}")][0] for c in self.seen if cookie(f"learned:{c.key}") in totals}

    def report(self) -> dict[str, Any]:
        counted = self._packets()
        rows = []
        for c, s in sorted(self.seen.items()):
            rows.append({"key": c.key, "describe": c.describe(), "source": c.source, "destination": c.destination,
                         "protocol": c.protocol, "port": c.port, "first": s.first, "last": s.last,
                         "sampled": s.packets, "packets": s.packets + counted.get(c, 0)})
        learning = sorted(z.name for z in self.enforcer.policy.zones if self.enforcer.policy.zone_mode(z.name) == "learn")
        return {"zones_learning": learning, "budget": self.budget, "full": len(self.seen) >= self.budget,
                "not_recorded": self.dropped, "conversations": rows, "unknown_devices": sorted(
                    self.unknown.values(), key=lambda r: (r["switch"], r["port"], r["mac"]))}

    def save(self) -> None:
        if not self.may_record() or not self.seen:
            return
        report = self.report()
        self.store.write(LEARNED_FILE, json.dumps({"conversations": report["conversations"],
                                                   "unknown_devices": report["unknown_devices"],
                                                   "not_recorded": self.dropped}, sort_keys=True).encode())

    def forget(self) -> int:
        """`otseg learn reset`: drop what was recorded (and the counting entries)."""
        count = len(self.seen)
        self.seen.clear()
        self.unknown.clear()
        self.dropped = 0
        with self.lock:
            self.enforcer.conversations = frozenset()
            self.enforcer.learn_full = False
        self.store.write(LEARNED_FILE, b'{"conversations": [], "unknown_devices": [], "not_recorded": 0}')
        return count

    def _load(self) -> None:
        raw = self.store.read(LEARNED_FILE)
        if not raw:
            return
        try:
            data = json.loads(raw)
            for row in data.get("conversations", []):
                # the switch's counters go on counting what its entry forwards: only the samples are ours
                self.seen[Conversation.from_key(row["key"])] = Seen(float(row["first"]), float(row["last"]),
                                                                    int(row["sampled"]))
            self.unknown = {f"{r['mac']}@{r['switch']}:{r['port']}": r for r in data.get("unknown_devices", [])}
            self.dropped = int(data.get("not_recorded", 0))
        except (ValueError, KeyError, TypeError) as error:
            log.error("%s cannot be read (%s): learning starts again from nothing", self.store.describe(LEARNED_FILE),
                      error)
            self.seen.clear()
            return
        self.enforcer.conversations = frozenset(self.seen)
        self.enforcer.learn_full = len(self.seen) >= self.budget
