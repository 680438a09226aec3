"""The verifier in the running controller: what the switches hold, proved against the policy.

- `switch_tables(enforcer, read)`: every programmed switch's tables, as the drift auditor
  believes them (`read=False`: after a reconcile, what the switches were told and confirmed to
  hold) or read from the switches now (`read=True`: the auditor's own reader, for
  GET /v1/tables and `otseg verify --live`);
- `TableVerifier`: after every reconcile that changed a switch (and every `period` seconds),
  verifies the believed tables off the event loop and exports the result
  (otseg_verify_runs_total, otseg_verify_violations{invariant}, otseg_verify_seconds); a
  violation is logged as an error and sent as a `verify-violation` event with its first
  counterexample. It waits while switches are still being programmed (a half-programmed
  network is not the policy in force yet);
- `PushVerifier`: with `--verify-pushes`, a candidate's compiled tables are verified before
  they are applied; a violation refuses the push (422) with the counterexample.

Each has its own `Verifier` (CUDD is not thread-safe), used by one thread at a time; switch
models of unchanged tables are kept between runs.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, ContextManager

from controller.app.audit import PeriodicCheck
from controller.app.enforcer import Enforcer
from controller.app.metrics import Metrics
from controller.core.flows import SwitchTables
from controller.core.model import Policy
from controller.core.topology import PortRef, Topology, locate_assets
from controller.verify.check import Report, Verifier

log = logging.getLogger("otseg.verify")


def switch_tables(enforcer: Enforcer, read: bool) -> dict[int, SwitchTables]:
    tables: dict[int, SwitchTables] = {}
    for dpid, state in sorted(enforcer.switches.items()):
        if not state.programmed or state.installed is None:
            continue
        if read:
            channel = state.channel
            tables[dpid] = SwitchTables(dpid, frozenset(channel.read_flows()), frozenset(channel.read_meters()),
                                        frozenset(channel.read_groups()))
        else:
            tables[dpid] = SwitchTables(dpid, frozenset(state.installed), frozenset(state.meters.values()),
                                        frozenset(state.groups.values()))
    return tables


class Reusable:
    """A Verifier kept across runs while policy, topology and bindings stay the same."""

    def __init__(self, failures: bool) -> None:
        self.failures = failures
        self.verifier: Verifier | None = None

    def check(self, policy: Policy, topology: Topology, located: dict[str, PortRef],
              tables: dict[int, SwitchTables], names: dict[int, str]) -> Report:
        v = self.verifier
        if v is None:
            self.verifier = v = Verifier(policy, topology, located, self.failures)
        v.retarget(policy, topology, located)  # switch models of unchanged tables are kept
        v.names = names  # type: ignore[attr-defined]
        return v.check(tables)


class TableVerifier(PeriodicCheck):
    def __init__(self, *args: Any, executor: Callable[..., Any], wait: Callable[[float], bool],
                 names: dict[int, str], failures: bool = True) -> None:
        super().__init__(*args)
        self.executor, self.wait, self.names = executor, wait, names
        self.reusable = Reusable(failures)
        self.last: Report | None = None

    def run(self) -> None:
        while True:
            self.wait(self.period)  # woken after a reconcile that changed something, else every period
            self.once()

    def once(self) -> Report | None:
        with self.lock:
            if self.enforcer.pending_switches() or not self.enforcer.switches:
                return None  # not the policy in force everywhere yet: verified once it is
            policy, topology = self.enforcer.policy, self.enforcer.topology()
            tables = switch_tables(self.enforcer, read=False)
        located = locate_assets(policy, topology)
        report: Report = self.executor(self.reusable.check, policy, topology, located, tables, self.names)
        self.last = report
        self.metrics.verify_runs.inc()
        self.metrics.verify_seconds.set(report.seconds)
        for invariant, count in report.counts().items():
            self.metrics.verify_violations.labels(invariant).set(count)
        if not report.ok:
            first = report.findings[0]
            log.error("the switches' tables violate the policy (%d finding(s)); first: %s", len(report.findings),
                      first.describe(self.names))
            self.emit("verify-violation", {"verdict": "violation", "reason": "verify",
                                           "counts": {k: v for k, v in report.counts().items() if v},
                                           "first": first.describe(self.names)})
        return report


class PushVerifier:
    """For ControlPlane: the findings that refuse a candidate ([] when its tables are proved)."""

    def __init__(self, names: dict[int, str], failures: bool = True) -> None:
        self.names = names
        self.reusable = Reusable(failures)

    def __call__(self, policy: Policy, topology: Topology, tables: dict[int, SwitchTables]) -> list[str]:
        report = self.reusable.check(policy, topology, locate_assets(policy, topology), tables, self.names)
        return [finding.describe(self.names) for finding in report.findings]


__all__ = ["switch_tables", "TableVerifier", "PushVerifier", "ContextManager"]
