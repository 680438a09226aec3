"""The OpenFlow role this instance holds on each switch connection (cluster mode).

OpenFlow 1.3 roles: a MASTER writes; a SLAVE only reads and listens (the switch refuses its
flow-mods, group-mods, meter-mods and packet-outs with OFPBRC_IS_SLAVE); a new connection
starts EQUAL, which may write. So in a cluster nothing is written to a switch until the
switch itself has answered a MASTER role request with this instance's term as
`generation_id` (the switch refuses a lower one: OFPRRFC_STALE), and a write the switch
refuses as from a slave demotes the connection here at once.

A single instance (no cluster) never sends a role request: it stays EQUAL, as before, and
`writable` is always True.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

log = logging.getLogger("otseg.roles")

OFPBRC_IS_SLAVE = 10  # OFPET_BAD_REQUEST code
OFPET_BAD_REQUEST = 1


@dataclass(frozen=True)
class Held:
    role: str  # "master", "slave", "equal" (no answer yet), "refused"
    generation: int
    detail: str = ""
    since: float = 0.0  # wall-clock time of the switch's answer


class SwitchRoles:
    def __init__(self, clustered: bool, call: Callable[[Any, Any], tuple[Any | None, str | None]],
                 on_lost: Callable[[int], None] = lambda dpid: None) -> None:
        self.clustered = clustered
        self._call = call
        self.on_lost = on_lost
        self.held: dict[int, Held] = {}
        self.wall = time.time
        self.refused_writes = 0  # writes a switch refused because we were not its master

    def writable(self, dpid: int) -> bool:
        return not self.clustered or (held := self.held.get(dpid)) is not None and held.role == "master"

    def claim(self, datapath: Any, role: str, generation: int) -> str | None:
        """Ask the switch for `role` ("master" or "slave") with `generation`; the error, or None."""
        if not self.clustered:
            return None
        ofproto, parser = datapath.ofproto, datapath.ofproto_parser
        wanted = ofproto.OFPCR_ROLE_MASTER if role == "master" else ofproto.OFPCR_ROLE_SLAVE
        if role != "master":  # stop writing before asking: nothing may go out while we step down
            self.held[datapath.id] = Held("slave", generation, "asked")
        reply, error = self._call(datapath, parser.OFPRoleRequest(datapath, wanted, generation))
        if reply is None:
            self.held[datapath.id] = Held("refused" if role == "master" else "unknown", generation, error or "",
                                          since=self.wall())
            log.error("switch %#x refused role %s with generation %d: %s%s", datapath.id, role, generation, error,
                      " (a stale generation: another instance leads with a later term)" if error and "type 11 code 1"
                      in error else "")
            return error or "no answer"
        granted = {ofproto.OFPCR_ROLE_MASTER: "master", ofproto.OFPCR_ROLE_SLAVE: "slave",
                   ofproto.OFPCR_ROLE_EQUAL: "equal"}.get(reply.role, "equal")
        self.held[datapath.id] = Held(granted, int(reply.generation_id), since=self.wall())
        log.info("switch %#x: role %s (generation %d)", datapath.id, granted, reply.generation_id)
        return None if granted == role else f"granted {granted}, not {role}"

    def error(self, dpid: int, kind: int, code: int) -> None:
        """An OpenFlow error from the switch: a write refused because we are not its master."""
        if self.clustered and kind == OFPET_BAD_REQUEST and code == OFPBRC_IS_SLAVE:
            self.refused_writes += 1
            held = self.held.get(dpid)
            if held is None or held.role == "master":
                log.warning("switch %#x refused a write: this instance is no longer its master (another instance "
                            "took over); writing stops", dpid)
                self.held[dpid] = Held("slave", held.generation if held else 0, "refused a write (IS_SLAVE)")
                self.on_lost(dpid)

    def forget(self, dpid: int) -> None:
        self.held.pop(dpid, None)

    def listing(self) -> dict[str, dict[str, Any]]:
        return {f"{dpid:#x}": {"role": h.role, "generation": h.generation, "since": round(h.since, 3),
                               **({"detail": h.detail} if h.detail else {})}
                for dpid, h in sorted(self.held.items())}
