"""Cluster mode inside the os-ken app: what becoming leader, stepping down and following mean
for this instance's enforcer, discovery, control plane and status (the app wires it).

`ClusterMember` (ha.py) decides *when*; this module does *what*, through injected parts:
- elected (called with the reconcile lock held, after the MASTER claims): the store's
  approvals and overrides (grants, isolations), every switch re-read (the previous leader wrote it) and reconciled: diffed,
  never flushed; link expiry held until our own LLDP has gone round;
- deposed: an event and the status, and a wake (the worker then writes nothing);
- follow: the version the leader put in force, parsed off the event loop and adopted without
  writing, so that a takeover starts warm.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from controller.app.ha import ClusterMember
from controller.io.files import load_policy_text
from controller.policy.diagnostics import DocumentError

log = logging.getLogger("otseg.cluster")


@dataclass
class ClusterShell:
    member: ClusterMember
    enforcer: Any
    control: Any
    links: Any
    discovery: Any
    lock: Any
    executor: Callable[..., Any]  # runs the policy parse off the event loop
    spawn: Callable[..., Any]
    sleep: Callable[[float], None]
    emit: Callable[[str, dict[str, Any]], None]  # a verdict event
    write_status: Callable[[], None]
    set_status_version: Callable[[str], None]
    wake: Callable[[], None]
    before_take_over: Callable[[], None] = lambda: None  # called with the reconcile lock held

    def run(self) -> None:
        while True:
            self.member.step()
            if not self.member.leading:  # it sends no LLDP: the leader's keeps its links fresh
                self.discovery.hold(self.discovery.book.timeout)
            self.sleep(self.member.election.period)

    def datapaths(self) -> dict[int, Any]:
        return {dpid: state.channel.datapath for dpid, state in self.enforcer.switches.items()
                if getattr(state.channel, "datapath", None) is not None}

    def elected(self, term: int) -> None:
        self.links.reload()
        self.before_take_over()  # the grants and isolations the last leader recorded
        self.enforcer.take_over()
        self.discovery.hold(self.discovery.book.timeout + 1.0)  # our own LLDP rounds start now
        self.spawn(self.discovery.send_round)
        self.emit("cluster", {"verdict": "leader", "kind": "cluster", "term": term,
                              "reason": "this instance took the OpenFlow MASTER role"})
        self.write_status()
        self.wake()

    def deposed(self) -> None:
        self.emit("cluster", {"verdict": "follower", "kind": "cluster",
                              "reason": "another instance leads: this one holds the SLAVE role and writes nothing"})
        self.write_status()
        self.wake()

    def follow(self, version: str, data: bytes) -> None:
        try:
            policy = self.executor(load_policy_text, data, f"cluster version {version[:12]}")
        except DocumentError as error:
            log.error("cluster: the version in force %s cannot be read here: %s", version[:12],
                      "; ".join(map(str, error.diagnostics[:3])))
            return
        with self.lock:
            self.control.base = policy
            self.enforcer.adopt_policy(self.control.effective(policy))  # with the grants and isolations in force
            self.control.version, self.control.text = version, data
        self.set_status_version(version)
        log.info("cluster: following policy %r version %s (put in force by the leader)", policy.name, version[:12])
