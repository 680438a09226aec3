"""Cluster labs: several otseg instances on one Mininet lab, an etcd, and takeovers measured.

Used by `otseg lab --ha`, the cluster integration tests and `make bench`. Who is master is
read from Open vSwitch itself (`ovs-vsctl list controller`: each controller's role as the
switch sees it), never from otseg's own status alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from controller.lab.etcd import EtcdCluster
from controller.lab.network import Lab
from controller.lab.process import ControllerProcess
from controller.lab.traffic import Stream


def switch_roles(bridges: set[str]) -> dict[str, frozenset[tuple[int, str]]]:
    """bridge -> {(controller port, role)} of its connected controllers, as Open vSwitch reports them."""
    def table(name: str, columns: str) -> list[dict[str, Any]]:
        out = subprocess.run(["ovs-vsctl", "--format=json", f"--columns={columns}", "list", name],
                             capture_output=True, text=True, check=True).stdout
        data = json.loads(out)
        return [dict(zip(data["headings"], row)) for row in data["data"]]

    controllers = {row["_uuid"][1]: row for row in table("controller", "_uuid,target,role,is_connected")}
    found: dict[str, frozenset[tuple[int, str]]] = {}
    for row in table("bridge", "name,controller"):
        if row["name"] not in bridges:
            continue
        uuids = row["controller"][1] if row["controller"][0] == "set" else [row["controller"]]
        roles = set()
        for _, uuid in uuids:
            entry = controllers.get(uuid)
            if entry and entry["is_connected"] is True:
                roles.add((int(entry["target"].rsplit(":", 1)[1]), entry["role"]))
        found[row["name"]] = frozenset(roles)
    return found


class ClusterLab:
    """otseg instances named a, b, ... on consecutive OpenFlow and API ports, one etcd."""

    def __init__(self, lab: Lab, policy_path: str, topology_path: str, workdir: Path, instances: int = 2,
                 etcd_members: int = 1, ofp_port: int = 6653, api_port: int = 8181, etcd_port: int = 23790,
                 extra_args: tuple[str, ...] = (), etcd: EtcdCluster | None = None) -> None:
        self.lab = lab
        self.etcd = etcd or EtcdCluster(workdir / "etcd", etcd_members, base_port=etcd_port)
        self.own_etcd = etcd is None  # started and stopped here
        self.instances = {
            name: ControllerProcess(policy_path, workdir / name, port=ofp_port + index, api_port=api_port + index,
                                    topology=topology_path,
                                    extra_args=("--cluster", self.etcd.endpoints, "--instance", name, *extra_args))
            for index, name in enumerate("abcdefgh"[:instances])}
        self.bridges = {Lab.switch_node(name) for name, _ in lab.lab.switches}

    def start_controllers(self) -> None:
        """etcd, then a (which leads), then the others; the lab connects to all of them after."""
        if self.own_etcd:
            self.etcd.start()
        first, *others = self.instances.values()
        first.start()
        first.wait_listening()
        first.wait_for(lambda s: s.get("cluster", {}).get("role") == "leader", 20, "the first instance leads")
        for process in others:
            process.start()
            process.wait_listening()

    def stop(self) -> None:
        for process in self.instances.values():
            if process.process is not None:
                os.kill(process.process.pid, signal.SIGCONT)
            process.stop()
        if self.own_etcd:
            self.etcd.stop()

    def status(self, name: str) -> dict[str, Any]:
        return self.instances[name].status() or {}

    def running(self) -> list[str]:
        return [n for n, p in self.instances.items() if p.process is not None]

    def leader(self) -> str | None:
        leaders = [n for n in self.running() if self.status(n).get("cluster", {}).get("role") == "leader"]
        return leaders[0] if len(leaders) == 1 else None

    def settled_on(self, name: str) -> bool:
        """`name` is MASTER on every bridge, and every other connected controller is SLAVE there."""
        port = self.instances[name].port
        for roles in switch_roles(self.bridges).values():
            if (port, "master") not in roles or any(r != "slave" for p, r in roles if p != port):
                return False
        return True

    def wait_leader(self, timeout: float = 15.0, not_: str | None = None) -> tuple[str, float]:
        """The one instance that leads and holds MASTER on every switch, and how long that took."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            # A stopped instance's status file still says what it was: `not_` is not asked.
            leaders = [n for n in self.running() if n != not_
                       and self.status(n).get("cluster", {}).get("role") == "leader"]
            name = leaders[0] if len(leaders) == 1 else None
            if name is not None and self.settled_on(name):
                return name, time.monotonic() - start
            time.sleep(0.05)
        raise TimeoutError(f"no single leader with MASTER everywhere after {timeout} s: "
                           f"{ {n: self.status(n).get('cluster') for n in self.running()} }; "
                           f"{switch_roles(self.bridges)}")

    def post(self, name: str, path: str, body: bytes) -> tuple[int, Any, dict[str, str]]:
        process = self.instances[name]
        request = urllib.request.Request(process.api_url + path, data=body, method="POST",
                                         headers={"Authorization": f"Bearer {process.token()}"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.loads(response.read()), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}"), dict(error.headers)

    def restart(self, name: str, ready: Callable[[dict[str, Any]], bool]) -> None:
        """Bring a killed instance back: it joins as a follower."""
        process = self.instances[name]
        process.start()
        process.wait_listening()
        process.wait_for(lambda s: ready(s) and s.get("cluster", {}).get("role") == "follower", 60,
                         f"{name} follows again")


@dataclass
class Takeover:
    seconds: float  # from the SIGKILL until every switch granted a follower MASTER (its role reply)
    allowed_sent: int
    allowed_lost: int
    denied_received: int
    pushed_in_force: bool  # the version pushed just before the kill is the new leader's


def kill_leader_once(cluster: ClusterLab, allowed: tuple[str, str, int], denied: tuple[str, str, int],
                     candidate: bytes, workdir: Path, cut: Callable[[], None] | None = None) -> Takeover:
    """Streams on, a push, the leader SIGKILLed at once (and `cut` run), until a follower leads."""
    leader, _ = cluster.wait_leader()
    good = Stream(cluster.lab, *allowed, 7, workdir)
    bad = Stream(cluster.lab, *denied, 7, workdir)
    good.start()
    bad.start()
    time.sleep(1.5)
    code, answer, _ = cluster.post(leader, "/v1/policy", candidate)
    if code != 200:
        raise RuntimeError(f"push before the kill refused: {code} {answer}")
    killed_at = time.time()
    cluster.instances[leader].kill()
    if cut is not None:
        cut()
    new_leader, _ = cluster.wait_leader(not_=leader, timeout=20)  # OVSDB shows it MASTER everywhere too
    # When each switch answered the new leader's MASTER request (its role replies, timed as they
    # arrived): Open vSwitch updates the roles it shows in OVSDB only every few seconds.
    granted = cluster.status(new_leader)["cluster"]["switch_roles"].values()
    seconds = max(held["since"] for held in granted) - killed_at
    kept, blocked = good.result(), bad.result()
    in_force = cluster.status(new_leader).get("policy", {}).get("version") == answer["version"]
    return Takeover(seconds, kept.sent, kept.lost, blocked.received, in_force)
