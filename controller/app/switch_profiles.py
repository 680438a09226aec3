"""Which capability profile each switch gets: the operator's override, else what it reported.

The enforcer asks this book for every switch's profile (an input of the compile, carried by
the Topology) and whether a switch must still wait for discovery before it is programmed: a
switch is never programmed for capabilities it may not have. A switch that never answers
discovery gets what `profiles.from_features` makes of no answers (fail closed: `minimal`).
A discovered profile is kept while the switch is away, so that a reconnect changes nothing
unless the switch now reports something else.
"""

from __future__ import annotations

import logging

from controller.core.profiles import FULL, Profile, SwitchFeatures, from_features, losses

log = logging.getLogger("otseg.profiles")
NO_ANSWER = from_features(SwitchFeatures(None, None, None, None, None))

DISCOVERY_WAIT_SECONDS = 45.0  # a switch not described by then is programmed as `minimal` (4 requests, 10 s each)


class SwitchProfiles:
    def __init__(self, overrides: dict[int, Profile] | None = None, discover: bool = False) -> None:
        self.overrides = dict(overrides or {})
        self.discover = discover
        self.discovered: dict[int, Profile] = {}
        self.rediscovering: set[int] = set()  # reconnected: held until it reports again

    def of(self, dpid: int) -> Profile:
        return self.overrides.get(dpid) or self.discovered.get(dpid) or FULL

    def reported(self, dpid: int, profile: Profile) -> bool:
        """Discovery finished for `dpid`; True if its profile changed (a recompile follows)."""
        before = self.of(dpid)
        self.discovered[dpid] = profile
        self.rediscovering.discard(dpid)
        override = self.overrides.get(dpid)
        if override is not None and override != profile:
            log.warning("switch %#x reports %s, the topology document states %s: the statement wins",
                        dpid, profile.describe(), override.describe())
        for loss in losses(self.of(dpid)):
            log.warning("switch %#x: %s", dpid, loss)
        return self.of(dpid) != before

    def connected(self, dpid: int) -> None:
        """A switch (re)connected: it may not be the one that reported before (same dpid, new box)."""
        if self.discover and dpid in self.discovered:
            self.rediscovering.add(dpid)

    def awaiting(self, dpid: int, waited: float) -> bool:
        """Must the switch wait for its capabilities before it is programmed? After the wait, one that
        never answered is taken for what no answer means (`minimal`: fail closed)."""
        if not self.discover or dpid in self.overrides:
            return False
        if dpid in self.discovered and dpid not in self.rediscovering:
            return False
        if waited < DISCOVERY_WAIT_SECONDS:
            return True
        if dpid not in self.discovered:
            log.error("switch %#x did not describe its capabilities within %.0f s: programmed as %s", dpid,
                      DISCOVERY_WAIT_SECONDS, NO_ANSWER.describe())
            self.discovered[dpid] = NO_ANSWER
        self.rediscovering.discard(dpid)
        return False

    def table(self, switches: frozenset[int]) -> tuple[tuple[int, Profile], ...]:
        """The Topology's `profiles`: every switch whose profile is not the full one."""
        return tuple((dpid, self.of(dpid)) for dpid in sorted(switches) if self.of(dpid) != FULL)

    def status(self, dpid: int) -> dict[str, object]:
        profile = self.of(dpid)
        return {"profile": profile.name, "source": profile.source if dpid in self.overrides or dpid in
                self.discovered else "default", "description": profile.describe(), "loses": losses(profile),
                "discovered": self.discovered[dpid].describe() if dpid in self.discovered else None,
                "notes": list(self.discovered[dpid].notes) if dpid in self.discovered else []}
