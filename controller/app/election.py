"""Leader election on an etcd lease: one leader per cluster, with a term that only grows.

The leader key `/otseg/<cluster>/leader` is created only if absent, bound to a lease of `ttl`
seconds that the leader keeps alive; when the leader dies (or is cut off, or stopped) the
lease expires, etcd deletes the key and the next campaign creates it again. The key's
create revision is the **term**: etcd revisions only grow, so a later leader always has a
greater term. It is the OpenFlow `generation_id` of the leader's MASTER role requests, so a
switch refuses a deposed leader (OFPRRFC_STALE), and its writes (OFPBRC_IS_SLAVE), by itself.

Invariants:
- `mine` is True only after this instance created the key with its own lease, and turns
  False as soon as the store shows the lease expired or the key held by another lease;
- while the store cannot be reached, nothing changes here (`store_up` is False): a leader
  stays leader on its switches (enforcement never depends on the store) but is no longer
  `authoritative` once its lease may have expired, so it refuses changes to the history.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

from controller.app.cluster_kv import EtcdKV, StoreUnavailable

log = logging.getLogger("otseg.cluster")

DEFAULT_TTL = 2  # seconds: etcd's minimum lease with its default election timeout is 1.5 s


@dataclass(frozen=True)
class Leadership:
    leader: str | None = None  # the leading instance's name
    leader_api: str | None = None  # its control API, where followers forward changes
    term: int = 0  # the leader key's create revision (0: no leader known)
    mine: bool = False
    valid_until: float = 0.0  # (monotonic) this instance's lease lasts at least until then
    store_up: bool = False
    store_error: str = ""

    def authoritative(self, now: float) -> bool:
        """May this instance change the cluster's history (push, rollback, approve)?"""
        return self.mine and self.store_up and now < self.valid_until


class Election:
    def __init__(self, kv: EtcdKV, cluster: str, instance: str, api_url: str, ttl: int = DEFAULT_TTL,
                 clock: Callable[[], float] = time.monotonic,
                 keeper: Callable[[int, int, float], Any] | None = None) -> None:
        self.kv = kv
        self.key = f"/otseg/{cluster}/leader"
        self.instance = instance
        self.api_url = api_url
        self.ttl = ttl
        self.clock = clock
        self.lease = 0
        self.state = Leadership()
        # Keeps our lease alive from a native thread (lease_keeper.py): a stalled event loop must
        # not cost the lease. None: keep-alives are sent from `step` (tests).
        self.keeper_factory = keeper
        self.keeper: Any = None

    @property
    def period(self) -> float:
        """How often `step` runs: a few times per TTL (a takeover waits at most TTL + period)."""
        return self.ttl / 8

    def step(self) -> Leadership:
        """Keep our lease alive, campaign if there is no leader, and read who leads."""
        now = self.clock()
        state = self.state
        try:
            valid_until = state.valid_until
            if self.lease and self.keeper is not None:
                valid_until = self.keeper.valid_until
                if self.keeper.expired or not self.keeper.alive:
                    log.warning("cluster: this instance's lease expired (it was stopped, or cut off from etcd)")
                    self._forget_lease()
            elif self.lease:
                ttl = self.kv.keepalive(self.lease)
                if ttl <= 0:
                    log.warning("cluster: this instance's lease expired (it was stopped, or cut off from etcd)")
                    self.lease = 0
                else:
                    valid_until = now + ttl
            entry = self.kv.get(self.key)
            if entry is None:
                if not self.lease:
                    asked = self.clock()
                    self.lease, valid_until = self.kv.grant(self.ttl), asked + self.ttl
                    if self.keeper_factory is not None:
                        self.keeper = self.keeper_factory(self.lease, self.ttl, asked)
                value = json.dumps({"instance": self.instance, "api": self.api_url}).encode()
                self.kv.swap(self.key, value, None, lease=self.lease)
                entry = self.kv.get(self.key)
            if entry is None:  # created and already expired: try again next step
                self.state = Leadership(store_up=True)
                return self.state
            try:
                holder = json.loads(entry.value)
            except ValueError:
                holder = {}
            if not isinstance(holder, dict):
                holder = {}
            mine = bool(self.lease) and entry.lease == self.lease
            if not mine and self.lease:
                self._drop_lease()
            self.state = Leadership(holder.get("instance"), holder.get("api"), entry.create_revision, mine,
                                    valid_until if mine else 0.0, True)
        except StoreUnavailable as error:
            self.state = replace(state, store_up=False, store_error=str(error))
        if self.state.store_up != state.store_up:
            if self.state.store_up:
                log.warning("cluster: the store is reachable again")
            else:
                log.error("cluster: the store is unreachable (%s): what is in force stays enforced; changes are "
                          "refused until it is back", self.state.store_error)
        return self.state

    def lease_valid_until(self) -> float:
        """Until when our lease surely lasts, as the keeper knows it now (not only at the last step)."""
        if self.keeper is not None and self.state.mine:
            return float(self.keeper.valid_until)
        return self.state.valid_until

    def lease_error(self) -> str:
        return str(getattr(self.keeper, "last_error", "") or self.state.store_error)

    def resign(self) -> None:
        """A clean stop: free the leader key at once, so a follower takes over without waiting."""
        if self.lease:
            try:
                self.kv.delete(self.key, only_lease=self.lease)
                self.kv.revoke(self.lease)
            except StoreUnavailable:
                pass
            self._forget_lease()

    def _forget_lease(self) -> None:
        if self.keeper is not None:
            self.keeper.stop()
            self.keeper = None
        self.lease = 0
        # Not ours any more, whatever the store says next (or cannot say: it may be unreachable).
        self.state = replace(self.state, mine=False, valid_until=0.0)

    def _drop_lease(self) -> None:
        try:
            self.kv.revoke(self.lease)
        except StoreUnavailable:
            pass
        self._forget_lease()
