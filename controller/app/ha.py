"""One instance of an otseg cluster: follows the election, holds the matching OpenFlow roles.

Runs in the shell's event loop (one greenthread), every `election.period`:
- the election step (lease keep-alive, campaign, who leads);
- on becoming leader: MASTER on every switch with the term as generation_id, then
  `on_elected` (the app re-reads the switches, takes the store's version in force and
  reconciles, never flushing);
- on losing it (the lease expired, or a switch said IS_SLAVE): SLAVE on every switch,
  `on_deposed`;
- as a follower: the version in force in the store is followed (`on_policy`), so a takeover
  starts from the same policy with a warm compile, and topology and bindings stay warm from
  the packet-ins and port events a SLAVE still receives.
While the store is unreachable nothing changes here: a leader keeps its switches (never a
flush because of the store) and the change API answers "no quorum".
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, Callable

from controller.app.cluster_kv import StoreUnavailable
from controller.app.cluster_store import ClusterStore
from controller.app.election import Election, Leadership
from controller.app.roles import SwitchRoles

log = logging.getLogger("otseg.cluster")
RECLAIM_SECONDS = 2.0


class ClusterMember:
    def __init__(self, election: Election, store: ClusterStore, roles: SwitchRoles,
                 datapaths: Callable[[], dict[int, Any]], on_elected: Callable[[int], None],
                 on_deposed: Callable[[], None], on_policy: Callable[[str, bytes], None],
                 version_in_force: Callable[[], str], sleep: Callable[[float], None],
                 clock: Callable[[], float] = time.monotonic, lock: Any = None,
                 run_all: Callable[[list[Callable[[], object]]], None] | None = None) -> None:
        self.election = election
        self.store = store
        self.roles = roles
        self.datapaths = datapaths
        self.on_elected = on_elected
        self.on_deposed = on_deposed
        self.on_policy = on_policy
        self.version_in_force = version_in_force
        self.sleep = sleep
        self.clock = clock
        # Held while taking over: no reconcile runs between the MASTER claims and the re-read.
        self.lock = lock if lock is not None else contextlib.nullcontext()
        # Runs the role claims of all switches (the shell: concurrently; each waits for its reply).
        self.run_all = run_all or (lambda calls: [call() for call in calls] and None)
        self.ready: set[int] = set()  # switches that described themselves: their role may be claimed
        self.leading = False  # this instance acts as leader (holds or claims MASTER)
        self.term = 0  # the term of the roles it claimed
        self.takeovers = 0
        self.last_takeover_seconds: float | None = None
        self._lost: set[int] = set()

    @property
    def state(self) -> Leadership:
        return self.election.state

    def run(self) -> None:
        while True:
            self.step()
            self.sleep(self.election.period)

    def step(self) -> None:
        started = self.clock()
        state = self.election.step()
        if self._lost and self.leading:
            # A switch refused our writes as a slave's: another instance leads it. Step down.
            log.warning("cluster: switches %s report another master; this instance steps down",
                        ", ".join(f"{d:#x}" for d in sorted(self._lost)))
            self._lost.clear()
            self.election.resign()
            self._step_down(state)
            return
        if state.mine and (not self.leading or state.term != self.term):
            self._lead(state, started)
        elif state.mine and self.leading:
            # A MASTER request that got no answer (the switch busy), or a switch that connected
            # during the takeover: ask again, at most every RECLAIM_SECONDS per switch.
            now = self.roles.wall()
            self._claim_all("master", self.term, only=lambda dpid: dpid in self.ready and (
                (held := self.roles.held.get(dpid)) is None
                or (held.role != "master" and now - held.since > RECLAIM_SECONDS)))
        elif state.store_up and not state.mine and self.leading:
            self._step_down(state)
        elif not self.leading and state.store_up:
            self._follow(state)

    def switch_lost(self, dpid: int) -> None:
        """roles.on_lost: a switch refused a write (IS_SLAVE)."""
        self._lost.add(dpid)

    def _claim_all(self, role: str, term: int, only: Callable[[int], bool] = lambda dpid: True) -> None:
        datapaths = [d for dpid, d in self.datapaths().items() if only(dpid)]
        self.run_all([lambda d=d: self.roles.claim(d, role, term) for d in datapaths])  # type: ignore[misc]

    def disconnected(self, dpid: int) -> None:
        self.ready.discard(dpid)

    def connected(self, datapath: Any) -> None:
        """A switch connected and described itself (its capabilities were read while it was
        still EQUAL: a SLAVE could not open the probing bundle): claim our role before any write."""
        self.ready.add(datapath.id)
        if self.leading:
            self.roles.claim(datapath, "master", self.term)
        elif self.state.term:
            self.roles.claim(datapath, "slave", self.state.term)

    def _lead(self, state: Leadership, started: float) -> None:
        log.warning("cluster: this instance (%s) leads, term %d: claiming MASTER on %d switches",
                    self.election.instance, state.term, len(self.datapaths()))
        self.sync_policy()  # the push made just before a takeover is in force after it
        with self.lock:
            self.leading, self.term = True, state.term
            try:
                self._claim_all("master", state.term)
                self.on_elected(state.term)  # called with the lock held
            except Exception:
                self.leading = False  # the next step takes over again, from the start
                raise
            self.takeovers += 1
        self.last_takeover_seconds = self.clock() - started

    def _step_down(self, state: Leadership) -> None:
        log.warning("cluster: this instance (%s) no longer leads (%s leads, term %d): SLAVE on every switch",
                    self.election.instance, state.leader or "nobody yet", state.term)
        self.leading = False
        self._claim_all("slave", max(state.term, self.term))
        self.on_deposed()

    def _follow(self, state: Leadership) -> None:
        if state.term:  # switches that connected before we knew a leader are still EQUAL: make them SLAVE
            now = self.roles.wall()
            self._claim_all("slave", state.term, only=lambda dpid: dpid in self.ready and (
                (held := self.roles.held.get(dpid)) is None
                or (held.role != "slave" and now - held.since > RECLAIM_SECONDS)))
        self.sync_policy()

    def sync_policy(self) -> None:
        """Take the version in force from the store, if it is not ours already."""
        try:
            current = self.store.current().get("version")
            if current and current != self.version_in_force():
                version, data = self.store.load(current)
                self.on_policy(version, data)
        except (StoreUnavailable, KeyError) as error:
            log.debug("cluster: cannot follow the version in force yet: %s", error)

    def change_refused(self) -> str | None:
        """Why this instance may not change the history now (None: it may)."""
        state = self.state
        if (self.leading and state.mine and state.store_up
                and self.clock() < self.election.lease_valid_until()):
            return None
        if not state.store_up:
            return (f"no quorum: the cluster store is unreachable ({state.store_error or 'not reached yet'}); "
                    "what is in force stays enforced; retry when etcd is back")
        if self.leading:
            return (f"no quorum: this instance's lease could not be renewed in time "
                    f"({self.election.lease_error() or 'etcd slow or unreachable'}); what is in force stays "
                    "enforced; retry when etcd answers")
        return "not the leader"

    def forward_to(self) -> str | None:
        """The leader's API, where a follower sends changes (None: no other leader known)."""
        state = self.state
        if self.leading or not state.store_up or state.mine or not state.leader_api:
            return None
        return state.leader_api

    def status(self) -> dict[str, Any]:
        state = self.state
        return {"instance": self.election.instance, "role": "leader" if self.leading else "follower",
                "leader": state.leader, "leader_api": state.leader_api, "term": state.term,
                "store": "up" if state.store_up else f"unreachable: {state.store_error}",
                "authoritative": self.change_refused() is None,
                "takeovers": self.takeovers, "last_takeover_seconds": self.last_takeover_seconds,
                "switch_roles": self.roles.listing(), "writes_refused_as_slave": self.roles.refused_writes}
