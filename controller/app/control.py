"""Runtime policy operations: validate, apply, roll back, history. One at a time.

Every operation that changes what is in force holds the same lock as the reconcile worker,
so two pushes, or a push and a topology change, never interleave: each ends in the state
the compiler gives for its inputs. A candidate is validated whole before anything is sent;
an invalid or refused candidate leaves the policy in force untouched.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable

from controller.app.enforcer import ApplyError, Enforcer
from controller.app.status import policy_modes
from controller.app.store import PolicyStore, short, version_of
from controller.core.budget import HINT, Overflow
from controller.core.fit import HINT as FIT_HINT
from controller.core.change import describe_change
from controller.core.model import Policy
from controller.core.overrides import Overrides, effective
from controller.core.overrides import problems as override_problems
from controller.io.files import load_policy_text
from controller.policy.diagnostics import Diagnostic, DocumentError

log = logging.getLogger("otseg.control")


VERIFY_HINT = ("the tables otseg compiled for this policy do not do what it says: an otseg bug; nothing was "
               "applied. Please report it with the output of `otseg verify POLICY --topology TOPO`")


class StaleBase(Exception):
    """A push said which version it expects in force (If-Match), and another one is."""

    def __init__(self, expected: str, in_force: str) -> None:
        super().__init__(f"the policy in force is {short(in_force)}, not {short(expected)} that this candidate was "
                         "checked against (another change came first): nothing was changed; check the candidate "
                         "again against what is in force")
        self.in_force = in_force


class Refused(Exception):
    """A switch refused the candidate; the previous policy is back in force."""


class ControlPlane:
    def __init__(self, enforcer: Enforcer, store: PolicyStore, lock: Any, version: str, text: bytes,
                 on_change: Callable[[str], None] = lambda version: None,
                 executor: Callable[..., Any] = lambda function, *args: function(*args),
                 verify: Callable[[Policy, bytes, Any, Any], list[str]] | None = None,
                 base: Policy | None = None, overrides: Overrides = Overrides(),
                 clock: Callable[[], float] = time.time) -> None:
        """`base`: the policy of `text` (default: the enforcer's, when no override is in force);
        `overrides`: the grants and isolations in force on top of it; `clock`: wall time (expiry)."""
        self.enforcer = enforcer
        self.base = base if base is not None else enforcer.policy
        self.overrides = overrides
        self.clock = clock
        self.store = store
        self.lock = lock
        self.version = version
        self.text = text
        self.on_change = on_change
        self.last_apply: dict[str, Any] | None = None
        # Parsing and validating a large policy is pure CPU: the shell may run it off its event loop.
        self.executor = executor
        # --verify-pushes: the candidate's tables proved against it (header-space verifier) first
        self.verify = verify

    def in_force(self) -> dict[str, Any]:
        """The policy text in force and the overrides on top of it (as of `now`, wall time)."""
        now = self.clock()
        overrides = Overrides(tuple(g for g in self.overrides.grants if g.active(now)), self.overrides.isolations,
                              self.overrides.sequence)
        return {"name": self.enforcer.policy.name, "version": self.version, "text": self.text.decode(),
                "overrides": json.loads(overrides.to_json()), "now": now}

    def _candidate(self, data: bytes, name: str) -> Policy:
        """The candidate base policy (DocumentError: nothing changes)."""
        return self.executor(load_policy_text, data, name)  # type: ignore[no-any-return]

    def _fits_overrides(self, candidate: Policy, name: str) -> None:
        """Under the lock: the grants and isolations in force must still apply on top of `candidate`."""
        orphaned = override_problems(candidate, self.overrides, self.clock())
        if orphaned:
            raise DocumentError([Diagnostic(name, 1, 1, "overrides", problem,
                                            "revoke the grant or release the isolation first (`otseg grants`, "
                                            "`otseg isolations`), or keep what it names") for problem in orphaned])

    def effective(self, base: Policy, overrides: Overrides | None = None) -> Policy:
        return effective(base, self.overrides if overrides is None else overrides, self.clock())

    def _change(self, candidate: Policy, name: str = "candidate.yaml", text: bytes = b"") -> dict[str, Any]:
        topology = self.enforcer.topology()
        old_tables = self.enforcer.compiled.tables(self.enforcer.policy, topology, self.enforcer.fast_failover)
        new_tables = self.enforcer.compiled.tables(candidate, topology, self.enforcer.fast_failover)
        over = self.enforcer.overflows(new_tables, candidate, topology)
        if over:  # refused whole: no switch gets part of a table
            raise DocumentError([Diagnostic(name, 1, 1, o.where, o.problem(), HINT if isinstance(o, Overflow) else FIT_HINT)
                                 for o in over])
        if self.verify is not None:
            problems = self.executor(self.verify, candidate, text, topology, new_tables)
            if problems:  # the compiler would not do what this policy says: nothing is applied
                raise DocumentError([Diagnostic(name, 1, 1, "verify", problem, VERIFY_HINT)
                                     for problem in problems[:5]])
        return describe_change(self.enforcer.policy, candidate, old_tables, new_tables).as_dict()

    def validate(self, data: bytes, name: str = "candidate.yaml") -> dict[str, Any]:
        candidate = self._candidate(data, name)
        with self.lock:
            self._fits_overrides(candidate, name)
            change = self._change(self.effective(candidate), name, data)
        return {"valid": True, "policy": candidate.name, "version": version_of(data), "in_force": self.version,
                "change": change}

    def apply(self, data: bytes, who: str, source: str = "push", name: str = "candidate.yaml",
              expected: str | None = None) -> dict[str, Any]:
        """Put `data` in force. `expected`: a version (or its prefix) that must still be in force."""
        base = self._candidate(data, name)
        with self.lock:
            if expected is not None and not self.version.startswith(expected.lower()):
                raise StaleBase(expected, self.version)
            start = time.monotonic()
            self._fits_overrides(base, name)
            candidate = self.effective(base)
            change = self._change(candidate, name, data)
            previous = self.version
            try:
                report = self.enforcer.apply_policy(candidate)
            except ApplyError as error:
                self.store.audit(who=who, source=source, action="refused", from_version=previous,
                                 to_version=version_of(data), error=str(error))
                log.error("policy %s refused by a switch, %s stays in force: %s", short(version_of(data)),
                          short(previous), error)
                raise Refused(str(error)) from error
            seconds = time.monotonic() - start
            try:
                version = self.store.save(data)
                self.store.set_current(version, self.store.current().get("file_version"), previous=previous)
            except Exception as error:  # the cluster store: unreachable, or another writer (StoreConflict)
                self._undo(candidate, previous, error)
                raise
            self.version, self.text, self.base = version, data, base
            pending = {f"{dpid:#x}": why for dpid, why in self.enforcer.pending_switches().items()}
            record = self.store.audit(who=who, source=source, action="apply", from_version=previous,
                                      to_version=version, policy=candidate.name, seconds=round(seconds, 6),
                                      flow_mods=report.flow_mods, change=change, pending_switches=pending)
            if pending:
                log.warning("policy %s applied on every switch but %s: %s", short(version), ", ".join(pending),
                            "; ".join(f"{d}: {w}" for d, w in pending.items()))
            self.last_apply = record
            self.on_change(version)
        modes = policy_modes(candidate)
        log.info("policy %r version %s in force (from %s, by %s via %s): %d flow changes in %.3f s; mode %s, "
                 "zones in monitor: %s, conduits in monitor: %s", candidate.name, short(version), short(previous), who,
                 source, report.flow_mods, seconds, candidate.mode, ", ".join(modes["zones_in_monitor"]) or "none",  # type: ignore[arg-type]
                 ", ".join(modes["conduits_in_monitor"]) or "none")  # type: ignore[arg-type]
        # "applied" names the switches that hold it; "pending" the ones that will, and what they enforce meanwhile.
        applied = sorted(f"{d:#x}" for d in self.enforcer.switches if f"{d:#x}" not in pending)
        return {"policy": candidate.name, "version": version, "previous": previous, "seconds": seconds,
                "flow_mods": report.flow_mods, "change": change, "applied_on": applied, "pending": pending}

    def _undo(self, candidate: Policy, previous: str, error: Exception) -> None:
        """The switches took `candidate` but the store did not record it: put the previous policy
        back on them, so that what is enforced is what the history says is in force."""
        log.error("policy %s applied but not recorded (%s): putting %s back on the switches", candidate.name, error,
                  short(previous))
        restored = self.effective(self.base)
        try:
            self.enforcer.apply_policy(restored)
        except ApplyError as undo_error:
            # apply_policy put the candidate back when the restore failed: the previous policy is
            # the one in force (the history says so), and the reconcile converges to it.
            self.enforcer.adopt_policy(restored)
            log.error("restoring %s failed on a switch (%s): the reconcile retries it", short(previous), undo_error)

    def rollback(self, version: str | None, who: str) -> dict[str, Any]:
        if version is None:  # the version that was in force before the one in force now
            applied = [r for r in self.store.history() if r.get("action") in ("apply", "start")
                       and r.get("to_version") == self.version and r.get("from_version")
                       and r.get("from_version") != self.version]
            if not applied:
                raise KeyError("no earlier version to roll back to")
            version = applied[-1]["from_version"]
        full, data = self.store.load(version)
        result = self.apply(data, who, source=f"rollback to {short(full)}")
        return result

    def history(self) -> list[dict[str, Any]]:
        return self.store.history()
