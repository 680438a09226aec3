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
    MAX_GRANT_SECONDS, Grant, Isolation, IsolationKind, Overrides, effective, format_seconds, grant_problems,
    isolation_problems, stamp,
)
from controller.policy.diagnostics import DocumentError

log = logging.getLogger("otseg.overrides")
OVERRIDES_FILE = "overrides.json"


class OverrideError(ValueError):
    """A grant or an isolation that cannot be: what, and how to fix it. Nothing changed."""


class OverrideControl:
    def __init__(self, control: ControlPlane, emit: Callable[[str, dict[str, Any]], None] = lambda kind, e: None,
                 approval_required: bool = False) -> None:
        """`approval_required` (`otseg run --grants-need-approval`): every grant waits for a second
        token, whatever the asker says."""
        self.control = control
        self.emit = emit
        self.approval_required = approval_required

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
        sources, destinations, services = (_names(v, what) for v, what in (
            (sources, "from"), (destinations, "to"), (services, "services")))
        reason = _reason(reason, "a grant")
        if isinstance(seconds, bool) or not 0 < seconds <= MAX_GRANT_SECONDS:
            raise OverrideError(f"a grant lasts more than 0 s and at most {format_seconds(MAX_GRANT_SECONDS)}")
        pending = needs_approval or self.approval_required
        made: dict[str, Grant] = {}

        def build(current: Overrides) -> tuple[Overrides, dict[str, Any]]:
            now = self.control.clock()
            grant_id, overrides = current.next_id("g")
            grant = Grant(grant_id, tuple(sources), tuple(destinations), tuple(services), reason, who, now,
                          now + seconds, "pending" if pending else "none")
            problems = grant_problems(self.control.base, grant, now)
            if problems:
                raise OverrideError("; ".join(problems))
            made["grant"] = grant
            return replace(overrides, grants=overrides.grants + (grant,)), {"grant": _plain(grant)}

        record = self._enact(build, who, "grant")
        grant = made["grant"]
        log.warning("%s, by %s: %s%s", grant.describe(grant.created), who, grant.reason,
                    " (waits for a second token's approval)" if pending else "")
        return {**record, "grant": grant.id, "describe": grant.describe(grant.created)}

    def approve(self, grant_id: str, who: str) -> dict[str, Any]:
        def build(current: Overrides) -> tuple[Overrides, dict[str, Any]]:
            grant = _grant(current, grant_id)
            if grant.approval != "pending":
                raise OverrideError(f"grant {grant_id} needs no approval" if grant.approval == "none"
                                    else f"grant {grant_id} was already approved by {grant.approved_by}")
            if who == grant.who:
                raise OverrideError(f"grant {grant_id} was asked for by {who}: a different token must approve it")
            if self.control.clock() >= grant.expires:
                raise OverrideError(f"grant {grant_id} expired at {stamp(grant.expires)} before it was approved")
            approved = replace(grant, approval="approved", approved_by=who)
            return replace(current, grants=tuple(approved if g.id == grant_id else g for g in current.grants)), {
                "grant": _plain(approved)}

        record = self._enact(build, who, "approve")
        log.warning("grant %s approved by %s", grant_id, who)
        return {**record, "grant": grant_id}

    def revoke(self, grant_id: str, who: str, action: str = "revoke") -> dict[str, Any]:
        def build(current: Overrides) -> tuple[Overrides, dict[str, Any]]:
            grant = _grant(current, grant_id)
            return replace(current, grants=tuple(g for g in current.grants if g.id != grant_id)), {
                "grant": _plain(grant)}

        record = self._enact(build, who, action)
        log.warning("grant %s %s by %s", grant_id, "expired" if action == "expire" else "revoked", who)
        return {**record, "grant": grant_id}

    def expire_due(self) -> list[str]:
        """End every grant whose time is up (the leader's job); the ids ended."""
        ended = []
        for grant in self.overrides.expired(self.control.clock()):
            try:
                self.revoke(grant.id, "otseg (expiry)", action="expire")
            except OverrideError:  # revoked meanwhile
                continue
            ended.append(grant.id)
        return ended

    # -- isolations ---------------------------------------------------------------------------
    def isolate(self, kind: IsolationKind | Literal["auto"], target: str, keep: list[str], reason: str,
                who: str) -> dict[str, Any]:
        keep = _names(keep, "keep", empty=True)
        reason = _reason(reason, "an isolation")
        made: dict[str, Any] = {}

        def build(current: Overrides) -> tuple[Overrides, dict[str, Any]]:
            base = self.control.base
            chosen = kind
            if chosen == "auto":  # `otseg isolate NAME`: a zone if one has that name, else an asset
                chosen = "zone" if any(z.name == target for z in base.zones) else "asset"
            isolation_id, overrides = current.next_id("i")
            isolation = Isolation(isolation_id, chosen, target, tuple(keep), reason, who, self.control.clock())
            problems = isolation_problems(base, isolation, current.isolations)
            if problems:
                raise OverrideError("; ".join(problems))
            new = replace(overrides, isolations=overrides.isolations + (isolation,))
            before = self.control.enforcer.policy
            kept = {c.name: c for c in effective(base, new, self.control.clock()).conduits}
            cut = sorted(c.name for c in before.conduits if kept.get(c.name) != c)  # gone, split, or narrowed
            made.update(isolation=isolation, cut=cut)
            return new, {"isolation": _plain(isolation), "conduits_cut": cut}

        record = self._enact(build, who, "isolate")
        isolation, cut = made["isolation"], made["cut"]
        log.warning("%s, by %s: %s; conduits cut: %s", isolation.describe(), who, isolation.reason,
                    ", ".join(cut) or "none")
        return {**record, "isolation": isolation.id, "describe": isolation.describe(), "conduits_cut": cut}

    def release(self, isolation_id: str, who: str) -> dict[str, Any]:
        def build(current: Overrides) -> tuple[Overrides, dict[str, Any]]:
            try:
                isolation = current.isolation(isolation_id)
            except KeyError as error:
                raise OverrideError(str(error.args[0])) from None
            return replace(current, isolations=tuple(i for i in current.isolations if i.id != isolation_id)), {
                "isolation": _plain(isolation)}

        record = self._enact(build, who, "release")
        log.warning("isolation %s released by %s", isolation_id, who)
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
    def _enact(self, build: Callable[[Overrides], tuple[Overrides, dict[str, Any]]], who: str,
               action: str) -> dict[str, Any]:
        """`build` makes the new overrides from the ones in force, under the reconcile lock: two
        requests never both start from the same state (an id reused, an isolation lost)."""
        control = self.control
        with control.lock:
            new, details = build(control.overrides)
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



MAX_NAMES = 1000  # names in one grant's side, or --keep: more is a mistake, and costs a compile
MAX_REASON = 1024


def _names(values: Any, what: str, empty: bool = False) -> list[str]:
    """Names, de-duplicated in order; a clear error for anything else."""
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in values):
        raise OverrideError(f"{what}: give a list of names")
    names = list(dict.fromkeys(v.strip() for v in values))
    if not names and not empty:
        raise OverrideError(f"{what}: names nobody")
    if len(names) > MAX_NAMES:
        raise OverrideError(f"{what}: {len(names)} names; at most {MAX_NAMES} (name a zone instead of its assets)")
    return names


def _reason(text: Any, what: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise OverrideError(f"{what} needs a reason (--reason \"...\"): it is audited")
    if len(text) > MAX_REASON:
        raise OverrideError(f"{what}'s reason is {len(text)} characters; at most {MAX_REASON}")
    return text.strip()


def _grant(overrides: Overrides, grant_id: str) -> Grant:
    try:
        return overrides.grant(grant_id)
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


