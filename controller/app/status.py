"""The controller's status as a JSON file, rewritten atomically after each reconcile.

What an operator (or a test, or the lab) needs to see what is in force: policy name,
version and mode, switches and whether they are programmed, links, located and unlocated
assets, packet-ins by reason, and the last apply with its duration.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import TYPE_CHECKING, Any

from controller.core.ip_multicast import trees
from controller.core.model import Policy

if TYPE_CHECKING:
    from controller.app.control import ControlPlane
    from controller.app.enforcer import Enforcer


def policy_modes(policy: Policy) -> dict[str, object]:
    return {
        "policy": policy.mode,
        "zones_in_monitor": sorted(z.name for z in policy.zones if policy.zone_mode(z.name) == "monitor"),
        "zones_in_learn": sorted(z.name for z in policy.zones if policy.zone_mode(z.name) == "learn"),
        "conduits_in_monitor": sorted(c.name for c in policy.conduits if c.mode == "monitor"),
    }


def overrides_status(control: "ControlPlane") -> dict[str, Any]:
    """Grants (with the time left) and isolations in force, for `otseg status` and the metrics."""
    now = control.clock()
    return {"grants": [{"id": g.id, "describe": g.describe(now), "active": g.active(now), "who": g.who,
                        "reason": g.reason, "seconds_left": round(max(0.0, g.expires - now), 1)}
                       for g in control.overrides.grants],
            "isolations": [{"id": i.id, "describe": i.describe(), "who": i.who, "reason": i.reason}
                           for i in control.overrides.isolations]}


def snapshot(enforcer: "Enforcer", policy_version: str, packet_ins: dict[str, int],
             control: "ControlPlane | None" = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    policy = enforcer.policy
    located = enforcer.bindings()
    report = enforcer.last_report
    return {
        "time": time.time(),
        "policy": {"name": policy.name, "version": policy_version, "mode": policy_modes(policy)},
        "switches": {
            f"{dpid:#x}": {"dpid": dpid, "programmed": state.programmed, "flows": len(state.installed or ()),
                           "policy_in_force": state.enforces == enforcer.policy_serial,
                           "last_plan": state.last_plan, "failures": state.failures,
                           "capabilities": enforcer.profiles.status(dpid)}
            for dpid, state in sorted(enforcer.switches.items())
        },
        # Links with an end on a switch without fast-failover groups: a failure waits for the controller.
        "links_unprotected": [[f"{l.a.dpid:#x}:{l.a.port}", f"{l.b.dpid:#x}:{l.b.port}"] for l in sorted(enforcer.links)
                              if not (enforcer.profiles.of(l.a.dpid).fast_failover
                                      and enforcer.profiles.of(l.b.dpid).fast_failover)],
        "headless_switches": [f"{dpid:#x}" for dpid in sorted(enforcer.headless)],  # no control channel, still forwarding
        "links": [[f"{l.a.dpid:#x}:{l.a.port}", f"{l.b.dpid:#x}:{l.b.port}"] for l in sorted(enforcer.links)],
        "assets": {
            "located": {name: [where.dpid, where.port] for name, where in sorted(located.items())},
            "unlocated": sorted(a.name for a in policy.assets if a.name not in located),
        },
        "packet_ins": dict(sorted(packet_ins.items())),
        "events": dict(sorted(enforcer.events.items())),
        "last_apply": None if report is None else {
            "seconds": round(report.seconds, 6), "flow_mods": report.flow_mods,
            "flow_mods_since_start": enforcer.flow_mods_total, "deferred_deletes": report.deferred_deletes,
            "plans": {f"{d:#x}": p for d, p in report.plans.items()}, "errors": report.errors,
        },
        "multicast": trees(policy, enforcer.topology()),
        "last_policy_apply": None if control is None else control.last_apply,
        "overrides": None if control is None else overrides_status(control),
        **(extra or {}),
    }


class StatusWriter:
    def __init__(self, path: str | None, policy_version: str) -> None:
        self.path = path
        self.policy_version = policy_version

    def write(self, enforcer: "Enforcer", packet_ins: dict[str, int], control: "ControlPlane | None" = None,
              extra: dict[str, Any] | None = None) -> None:
        if not self.path:
            return
        data = json.dumps(snapshot(enforcer, self.policy_version, packet_ins, control, extra), indent=2)
        directory = os.path.dirname(os.path.abspath(self.path))
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=".status-")
        with os.fdopen(handle, "w") as stream:
            stream.write(data)
        os.replace(temporary, self.path)
