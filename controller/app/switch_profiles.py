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

from controller.core.profiles import FULL, Profile, losses

log = logging.getLogger("otseg.profiles")

DISCOVERY_WAIT_SECONDS = 15.0  # a switch not described by then is programmed as `minimal`


class SwitchProfiles:
    def __init__(self, overrides: dict[int, Profile] | None = None, discover: bool = False) -> None:
        self.overrides = dict(overrides or {})
        self.discover = discover
        self.discovered: dict[int, Profile] = {}

    def of(self, dpid: int) -> Profile:
        return self.overrides.get(dpid) or self.discovered.get(dpid) or FULL

    def reported(self, dpid: int, profile: Profile) -> bool:
        """Discovery finished for `dpid`; True if its profile changed (a recompile follows)."""
        before = self.of(dpid)
        self.discovered[dpid] = profile
        override = self.overrides.get(dpid)
        if override is not None and override != profile:
            log.warning("switch %#x reports %s, the topology document states %s: the statement wins",
                        dpid, profile.describe(), override.describe())
        for loss in losses(self.of(dpid)):
            log.warning("switch %#x: %s", dpid, loss)
        return self.of(dpid) != before

    def awaiting(self, dpid: int, waited: float) -> bool:
        """Must the switch wait for its capabilities before it is programmed?"""
        return (self.discover and dpid not in self.overrides and dpid not in self.discovered
                and waited < DISCOVERY_WAIT_SECONDS)

    def table(self, switches: frozenset[int]) -> tuple[tuple[int, Profile], ...]:
        """The Topology's `profiles`: every switch whose profile is not the full one."""
        return tuple((dpid, self.of(dpid)) for dpid in sorted(switches) if self.of(dpid) != FULL)

    def status(self, dpid: int) -> dict[str, object]:
        profile = self.of(dpid)
        return {"profile": profile.name, "source": profile.source if dpid in self.overrides or dpid in
                self.discovered else "default", "description": profile.describe(), "loses": losses(profile),
                "discovered": self.discovered[dpid].describe() if dpid in self.discovered else None,
                "notes": list(self.discovered[dpid].notes) if dpid in self.discovered else []}
