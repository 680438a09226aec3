"""The verifier in the running controller: what the switches hold, proved against the policy.

- `switch_tables(enforcer, read)`: every programmed switch's tables, as the drift auditor
  believes them (`read=False`: after a reconcile, what the switches were told and confirmed to
  hold) or read from the switches now (`read=True`: the auditor's own reader, for
  GET /v1/tables and `otseg verify --live`);
- `TableVerifier`: after every reconcile that changed a switch (and every `period` seconds),
  verifies the believed tables and exports the result (otseg_verify_runs_total,
  otseg_verify_violations{invariant}, otseg_verify_seconds); a violation is logged as an error
  and sent as a `verify-violation` event with its first counterexample. It waits while switches
  are still being programmed (a half-programmed network is not the policy in force yet);
- `PushVerifier`: with `--verify-pushes`, a candidate's compiled tables are verified before
  they are applied; a violation refuses the push (422) with the counterexample.

Both verify in a process of their own (`controller.verify_worker`, via `verify_document`): the
verifier holds the interpreter lock for long stretches, which in this process would starve the
event loop (LLDP, echoes, barriers).
"""

from __future__ import annotations

import ctypes
import json
import logging
import signal
import subprocess
import sys
import time
from typing import Any, Callable

from controller.app.audit import PeriodicCheck
from controller.app.enforcer import Enforcer
from controller.core.codec import live_document
from controller.core.flows import SwitchTables
from controller.core.model import Policy
from controller.core.topology import Topology, locate_assets

log = logging.getLogger("otseg.verify")
WORKER_TIMEOUT = 3600.0
PR_SET_PDEATHSIG = 1


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


def _die_with_parent() -> None:
    """In the worker, before it runs: killed (SIGKILL) when the controller's process goes away, so
    that a verification never outlives the controller that asked for it (Linux prctl)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def verify_document(document: dict[str, Any]) -> dict[str, Any]:
    """Run `controller.verify_worker` on `document`; its JSON report (raises on a failed worker)."""
    done = subprocess.run([sys.executable, "-m", "controller.verify_worker"], input=json.dumps(document),
                          capture_output=True, text=True, timeout=WORKER_TIMEOUT, preexec_fn=_die_with_parent)
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"the verifier failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if "error" in answer:
        raise RuntimeError(f"the verifier could not read its input: {answer['error']}")
    return answer


class TableVerifier(PeriodicCheck):
    def __init__(self, *args: Any, executor: Callable[..., Any], wait: Callable[[float], bool],
                 names: dict[int, str], in_force: Callable[[], dict[str, Any]], failures: bool = True,
                 verify: Callable[[dict[str, Any]], dict[str, Any]] = verify_document) -> None:
        super().__init__(*args)
        self.executor, self.wait, self.names, self.in_force = executor, wait, names, in_force
        self.failures, self.verify = failures, verify
        self.last: dict[str, Any] | None = None

    def run(self) -> None:
        started = None
        while True:
            self.wait(self.period)  # woken after a reconcile that changed something, else every period
            if started is not None and time.monotonic() - started < self.period / 10:
                # changes come in bursts: one verification at most every tenth of the period
                self.sleep(self.period / 10 - (time.monotonic() - started))
            started = time.monotonic()
            self.once()

    def once(self) -> dict[str, Any] | None:
        with self.lock:
            if self.enforcer.pending_switches() or not self.enforcer.switches:
                return None  # not the policy in force everywhere yet: verified once it is
            policy, topology = self.enforcer.policy, self.enforcer.topology()
            tables = switch_tables(self.enforcer, read=False)
            in_force = self.in_force()
        document = live_document(in_force, topology, locate_assets(policy, topology), tables, self.names)
        document["failures"] = self.failures
        report: dict[str, Any] = self.executor(self.verify, document)
        self.last = report
        self.metrics.verify_runs.inc()
        self.metrics.verify_seconds.set(report["seconds"])
        for invariant, count in report["counts"].items():
            self.metrics.verify_violations.labels(invariant).set(count)
        if not report["ok"]:
            first = report["described"][0] if report["described"] else "(no description)"
            log.error("the switches' tables violate the policy (%d finding(s)); first: %s", len(report["findings"]),
                      first)
            self.emit("verify-violation", {"verdict": "violation", "reason": "verify",
                                           "counts": {k: v for k, v in report["counts"].items() if v},
                                           "first": first})
        return report


class PushVerifier:
    """For ControlPlane: the findings that refuse a candidate ([] when its tables are proved)."""

    def __init__(self, names: dict[int, str], failures: bool = True,
                 verify: Callable[[dict[str, Any]], dict[str, Any]] = verify_document) -> None:
        self.names, self.failures, self.verify = names, failures, verify

    def __call__(self, policy: Policy, text: bytes, topology: Topology, tables: dict[int, SwitchTables]) -> list[str]:
        document = live_document({"name": policy.name, "text": text.decode()}, topology,
                                 locate_assets(policy, topology), tables, self.names)
        document["failures"] = self.failures
        report = self.verify(document)
        return list(report["described"]) if not report["ok"] else []
