"""Runtime grants and isolations: the shell around `controller.core.overrides`.

Each operation builds the new overrides, checks them against the base policy in force (clear
errors, nothing changes), compiles the effective policy like a push (budgets, `--verify-pushes`),
applies it under the reconcile lock, and only then records it in the store (the state
directory, or etcd in a cluster: fenced like a push). If the store refuses, the previous
effective policy is put back on the switches. Every operation is audited with who and why.

Expiry is by wall-clock time, checked every second by the leader (`expire_due`): a restart or
a failover neither extends a grant nor forgets one (the expiry is stored with it). A follower
adopts what the store says (`follow`).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace
from typing import Any, Callable, Literal

from controller.app.control import ControlPlane, Refused
from controller.app.enforcer import ApplyError
from controller.core.overrides import (
    Grant, Isolation, IsolationKind, Overrides, effective, format_seconds, grant_problems, isolation_problems, stamp,
)
from controller.policy.diagnostics import DocumentError

log = logging.getLogger("otseg.overrides")
OVERRIDES_FILE = "overrides.json"


class OverrideError(ValueError):
    """A grant or an isolation that cannot be: what, and how to fix it. Nothing changed."""


class OverrideControl:
    def __init__(self, control: ControlPlane, emit: Callable[[str, dict[str, Any]], None] = lambda kind, e: None) -> None:
        self.control = control
        self.emit = emit

    @property
    def overrides(self) -> Overrides:
        return self.control.overrides

    # -- reads --------------------------------------------------------------------------------
    def listing(self) -> dict[str, Any]:
        now = self.control.clock()
        return {"now": stamp(now),
                "grants": [{**_plain(g), "active": g.active(now), "seconds_left": max(0.0, round(g.expires - now, 1)),
                            "expires_at": stamp(g.expires), "describe": g.describe(now)} for g in self.overrides.grants],
                "isolations": [{**_plain(i), "describe": i.describe()} for i in self.overrides.isolations]}

    # -- grants -------------------------------------------------------------------------------
    def grant(self, sources: list[str], destinations: list[str], services: list[str], seconds: float, reason: str,
              who: str, needs_approval: bool = False) -> dict[str, Any]:
        if not reason.strip():
            raise OverrideError("a grant needs a reason (--reason \"...\"): it is audited")
        now = self.control.clock()
        grant_id, overrides = self.overrides.next_id("g")
        grant = Grant(grant_id, tuple(sources), tuple(destinations), tuple(services), reason.strip(), who, now,
                      now + seconds, "pending" if needs_approval else "none")
        problems = grant_problems(self.control.base, grant, now)
        if problems:
            raise OverrideError("; ".join(problems))
        record = self._enact(replace(overrides, grants=overrides.grants + (grant,)), who, "grant",
                             {"grant": _plain(grant)})
        log.warning("%s, by %s: %s%s", grant.describe(now), who, grant.reason,
                    " (waits for a second token's approval)" if needs_approval else "")
        return {**record, "grant": grant.id, "describe": grant.describe(now)}

    def approve(self, grant_id: str, who: str) -> dict[str, Any]:
        grant = self._grant(grant_id)
        if grant.approval != "pending":
            raise OverrideError(f"grant {grant_id} needs no approval" if grant.approval == "none"
                                else f"grant {grant_id} was already approved by {grant.approved_by}")
        if who == grant.who:
            raise OverrideError(f"grant {grant_id} was asked for by {who}: a different token must approve it")
        if self.control.clock() >= grant.expires:
            raise OverrideError(f"grant {grant_id} expired at {stamp(grant.expires)} before it was approved")
        approved = replace(grant, approval="approved", approved_by=who)
        overrides = replace(self.overrides, grants=tuple(approved if g.id == grant_id else g
                                                         for g in self.overrides.grants))
        record = self._enact(overrides, who, "approve", {"grant": _plain(approved)})
        log.warning("grant %s approved by %s: in force until %s", grant_id, who, stamp(grant.expires))
        return {**record, "grant": grant_id}

    def revoke(self, grant_id: str, who: str, action: str = "revoke") -> dict[str, Any]:
        grant = self._grant(grant_id)
        overrides = replace(self.overrides, grants=tuple(g for g in self.overrides.grants if g.id != grant_id))
        record = self._enact(overrides, who, action, {"grant": _plain(grant)})
        log.warning("grant %s %s by %s", grant_id, "expired" if action == "expire" else "revoked", who)
        return {**record, "grant": grant_id}

    def expire_due(self) -> list[str]:
        """End every grant whose time is up (the leader's job); the ids ended."""
        ended = [g.id for g in self.overrides.expired(self.control.clock())]
        for grant_id in ended:
            self.revoke(grant_id, "otseg (expiry)", action="expire")
        return ended

    # -- isolations ---------------------------------------------------------------------------
    def isolate(self, kind: IsolationKind | Literal["auto"], target: str, keep: list[str], reason: str, who: str) -> dict[str, Any]:
        if not reason.strip():
            raise OverrideError("an isolation needs a reason (--reason \"...\"): it is audited")
        if kind == "auto":  # `otseg isolate NAME`: a zone if one has that name, else an asset
            kind = "zone" if any(z.name == target for z in self.control.base.zones) else "asset"
        isolation_id, overrides = self.overrides.next_id("i")
        isolation = Isolation(isolation_id, kind, target, tuple(keep), reason.strip(), who, self.control.clock())
        problems = isolation_problems(self.control.base, isolation, self.overrides.isolations)
        if problems:
            raise OverrideError("; ".join(problems))
        before = self.control.enforcer.policy
        new = replace(overrides, isolations=overrides.isolations + (isolation,))
        after = effective(self.control.base, new, self.control.clock())
        cut = sorted({c.name for c in before.conduits} - {c.name for c in after.conduits})
        record = self._enact(new, who, "isolate", {"isolation": _plain(isolation), "conduits_cut": cut})
        log.warning("%s, by %s: %s; conduits cut: %s", isolation.describe(), who, isolation.reason,
                    ", ".join(cut) or "none")
        return {**record, "isolation": isolation_id, "describe": isolation.describe(), "conduits_cut": cut}

    def release(self, isolation_id: str, who: str) -> dict[str, Any]:
        try:
            isolation = self.overrides.isolation(isolation_id)
        except KeyError as error:
            raise OverrideError(str(error.args[0])) from None
        overrides = replace(self.overrides, isolations=tuple(i for i in self.overrides.isolations
                                                             if i.id != isolation_id))
        record = self._enact(overrides, who, "release", {"isolation": _plain(isolation)})
        log.warning("%s released by %s", isolation.describe(), who)
        return {**record, "isolation": isolation_id}

    # -- a follower, or a new leader ------------------------------------------------------------
    def follow(self, locked: bool = False) -> bool:
        """Adopt the overrides the store holds (written by the leader); True if they changed.
        `locked`: the caller holds the reconcile lock (a takeover)."""
        stored = Overrides.from_json(self.control.store.read(OVERRIDES_FILE))
        if stored == self.overrides:
            return False
        with contextlib.nullcontext() if locked else self.control.lock:
            self.control.overrides = stored
            self.control.enforcer.adopt_policy(self.control.effective(self.control.base))
        log.info("overrides from the store adopted: %d grant(s), %d isolation(s)", len(stored.grants),
                 len(stored.isolations))
        return True

    # -- the one way a change happens -----------------------------------------------------------
    def _enact(self, new: Overrides, who: str, action: str, details: dict[str, Any]) -> dict[str, Any]:
        control = self.control
        with control.lock:
            candidate = control.effective(control.base, new)
            try:
                change = control._change(candidate, OVERRIDES_FILE)  # noqa: SLF001  (budgets, --verify-pushes)
            except DocumentError as error:
                raise OverrideError("; ".join(d.message + (f" ({d.hint})" if d.hint else "") for d in error.diagnostics)) from None
            previous = control.overrides
            try:
                report = control.enforcer.apply_policy(candidate)
            except ApplyError as error:
                control.store.audit(who=who, source="override", action="refused", attempted=action, error=str(error),
                                    **details)
                raise Refused(str(error)) from error
            try:
                control.store.write(OVERRIDES_FILE, new.to_json())
            except Exception as error:  # the cluster store: unreachable, or no longer ours
                log.error("%s applied but not recorded (%s): putting the previous overrides back", action, error)
                try:
                    control.enforcer.apply_policy(control.effective(control.base, previous))
                except ApplyError:
                    control.enforcer.adopt_policy(control.effective(control.base, previous))
                raise
            control.overrides = new
            record = control.store.audit(who=who, source="override", action=action, version=control.version,
                                         flow_mods=report.flow_mods, change=change, **details)
            control.on_change(control.version)
        self.emit("override", {"verdict": action, "kind": "override", "who": who,
                               "reason": _event_reason(action, details)})
        return {"action": action, "flow_mods": report.flow_mods, "change": change, "who": who}

    def _grant(self, grant_id: str) -> Grant:
        try:
            return self.overrides.grant(grant_id)
        except KeyError as error:
            raise OverrideError(str(error.args[0])) from None


def _plain(value: Grant | Isolation) -> dict[str, Any]:
    return {name: list(v) if isinstance(v, tuple) else v for name, v in value.__dict__.items()}


def _event_reason(action: str, details: dict[str, Any]) -> str:
    item = details.get("grant") or details.get("isolation") or {}
    text = f"{action} {item.get('id', '')}: {item.get('reason', '')}"
    if "grant" in details and action in ("grant", "approve"):
        text += f" (until {stamp(item['expires'])}, {format_seconds(item['expires'] - item['created'])})"
    return text


