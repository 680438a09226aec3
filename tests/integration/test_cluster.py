"""Two otseg instances on the plant, coordinated by a real etcd, on real Open vSwitch.

Every bridge has both controllers. The leader holds MASTER with its etcd term as generation_id,
the follower SLAVE (read from `ovs-vsctl list controller`: the switch's own view). Then:
a push on the follower is forwarded; the leader is SIGKILLed right after a push, with
1,000 datagrams/s on an allowed conduit and on a denied one; a ring link is cut during a
takeover; the leader is SIGSTOPped, deposed and resumed; etcd is killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from controller.io.files import load_policy_text
from controller.lab.ha import ClusterLab, kill_leader_once, switch_roles
from controller.lab.network import Lab
from controller.lab.traffic import Stream
from controller.lab.verify import Verifier
from tests.integration.conftest import ROOT, Scenario

ALLOWED = ("hmi-1", "plc-packer-1", 44818)
DENIED = ("plc-packer-2", "hmi-2", 44818)
PLANT = (ROOT / "policies" / "plant.yaml").read_text()
EVENTS = '''  - name: events-to-historian
    from: supervisory
    to: historian
    services: [syslog]
    reason: "HMI and EWS events are archived by the historian"
'''
WITHOUT_EVENTS = PLANT.replace(EVENTS, "")
assert WITHOUT_EVENTS != PLANT


class Cluster(ClusterLab):
    plant: Scenario

    def converged(self, text: str, timeout: float = 30.0, down: frozenset[Any] = frozenset()) -> list[str]:
        self.plant.policy = load_policy_text(text.encode(), "candidate")
        return self.plant.converged(down=down, timeout=timeout)

    def roles_are(self, master: str) -> bool:
        """`master` is MASTER on every bridge and every other running instance SLAVE."""
        wanted = {(p.port, "master" if n == master else "slave") for n, p in self.instances.items()
                  if p.process is not None}
        return all(roles == wanted for roles in switch_roles(self.bridges).values())


def _sees_the_plant(plant: Scenario) -> Any:
    links, switches = len(plant.description.links), len(plant.description.switches)
    return lambda s: len(s["switches"]) == switches and len(s["links"]) == links and not s["assets"]["unlocated"]


@pytest.fixture(scope="module")
def cluster(workdir: Path) -> Iterator[Cluster]:
    plant = Scenario("plant.yaml", "plant.yaml", workdir)
    plant.lab = Lab(plant.description, plant.policy, 6653, more_controllers=(6654,))
    cluster = Cluster(plant.lab, plant.policy_path, plant.topology_path, workdir, extra_args=("--audit-seconds", "5"))
    cluster.plant = plant
    plant.controller = cluster.instances["a"]
    try:
        for name, _ in plant.description.switches:
            subprocess.run(["ovs-vsctl", "--if-exists", "del-br", Lab.switch_node(name)], check=False)
        cluster.start_controllers()
        plant.lab.start()
        Verifier(plant.lab, plant.policy, cluster.instances["a"].status, str(workdir / "announce")).announce()
        cluster.instances["b"].wait_for(_sees_the_plant(plant), 60, "b sees the whole plant")
        yield cluster
    finally:
        plant.lab.stop()
        cluster.stop()


def _restart(cluster: Cluster, name: str) -> None:
    cluster.restart(name, _sees_the_plant(cluster.plant))


def test_one_leader_holds_master_everywhere_and_the_follower_is_a_warm_slave(cluster: Cluster) -> None:
    leader, _ = cluster.wait_leader()
    assert leader == "a"
    assert cluster.roles_are("a"), switch_roles(cluster.bridges)
    assert cluster.converged(PLANT) == []
    a, b = cluster.status("a"), cluster.status("b")
    assert b["cluster"]["role"] == "follower" and b["cluster"]["leader"] == "a"
    assert b["cluster"]["term"] == a["cluster"]["term"] > 0
    assert b["assets"]["located"] == a["assets"]["located"]  # bindings warm: from the packet-ins a slave hears
    assert sorted(map(str, b["links"])) == sorted(map(str, a["links"]))  # topology warm: the leader's LLDP
    assert b["policy"]["version"] == a["policy"]["version"]


def test_a_push_on_the_follower_is_forwarded_and_in_the_one_history(cluster: Cluster) -> None:
    code, answer, headers = cluster.post("b", "/v1/policy", WITHOUT_EVENTS.encode())
    assert code == 200, answer
    assert headers.get("X-Otseg-Leader") == "a"
    version = answer["version"]
    cluster.instances["b"].wait_for(lambda s: s["policy"]["version"] == version, 5, "b follows the push")
    assert cluster.converged(WITHOUT_EVENTS) == []
    histories = [json.loads(urllib.request.urlopen(cluster.instances[n].api_url + "/v1/history").read())
                 for n in ("a", "b")]
    assert histories[0] == histories[1] and histories[0][-1]["to_version"] == version
    assert histories[0][-1]["instance"] == "a"
    code, answer, _ = cluster.post("b", "/v1/policy", PLANT.encode())
    assert code == 200, answer


def test_a_grant_made_on_the_follower_survives_a_takeover_and_ends_on_time(cluster: Cluster) -> None:
    leader, _ = cluster.wait_leader()
    follower = next(name for name in cluster.running() if name != leader)
    body = json.dumps({"from": ["erp-server"], "to": ["office-pc"], "services": ["ssh"], "seconds": 15,
                       "reason": "cluster test"}).encode()
    code, answer, headers = cluster.post(follower, "/v1/grants", body)
    assert code == 200 and headers.get("X-Otseg-Leader") == leader, answer
    granted_at, grant = time.time(), answer["grant"]
    cluster.instances[follower].wait_for(
        lambda s: [g["id"] for g in s["overrides"]["grants"]] == [grant], 5, "the follower adopts the grant")
    cluster.instances[leader].kill()
    new_leader, _ = cluster.wait_leader(not_=leader)
    assert new_leader == follower
    assert [g["id"] for g in cluster.status(new_leader)["overrides"]["grants"]] == [grant]
    cluster.instances[new_leader].wait_for(lambda s: not s["overrides"]["grants"], 25, "the new leader ends it")
    assert time.time() >= granted_at + 15.0  # not before its time
    history = json.loads(urllib.request.urlopen(cluster.instances[new_leader].api_url + "/v1/history").read())
    ended = [e for e in history if e.get("action") == "expire" and e.get("grant", {}).get("id") == grant]
    assert len(ended) == 1 and ended[0]["instance"] == new_leader, ended
    assert cluster.converged(PLANT) == []
    _restart(cluster, leader)


def test_the_leader_killed_right_after_a_push_a_follower_takes_over_hitless(cluster: Cluster) -> None:
    leader, _ = cluster.wait_leader()
    result = kill_leader_once(cluster, ALLOWED, DENIED, WITHOUT_EVENTS.encode(), cluster.plant.workdir / "takeover")
    print(f"takeover: {result}")
    new_leader, _ = cluster.wait_leader()
    assert new_leader != leader
    # How fast (the 3 s target) is measured by `make bench` (docs/benchmarks.md), not asserted here.
    assert result.pushed_in_force, result  # the push made just before the kill is in force after it
    assert cluster.converged(WITHOUT_EVENTS) == []
    assert result.allowed_lost == 0 and result.allowed_sent > 0, result
    assert result.denied_received == 0, result
    assert cluster.roles_are(new_leader), switch_roles(cluster.bridges)
    _restart(cluster, leader)


def test_a_ring_cut_during_a_takeover_is_covered_then_recomputed(cluster: Cluster) -> None:
    leader, _ = cluster.wait_leader()
    plant = cluster.plant
    cut = plant.link("ring-1", "ring-2")
    allowed = Stream(plant.lab, *ALLOWED, 8, plant.workdir / "takeover-cut")
    allowed.start()
    time.sleep(1.5)
    cluster.instances[leader].kill()
    time.sleep(0.3)
    plant.lab.set_link("ring-1", "ring-2", up=False)  # only fast failover until the follower leads
    try:
        new_leader, seconds = cluster.wait_leader(not_=leader)
        kept = allowed.result()
        assert cluster.converged(WITHOUT_EVENTS, down=frozenset({cut})) == []  # recomputed by the new leader
        assert kept.received > 0.9 * kept.sent, kept  # around the ring, by the switches' own groups
        print(f"takeover with a ring cut {seconds:.2f} s; allowed {kept.received}/{kept.sent}")
    finally:
        plant.lab.set_link("ring-1", "ring-2", up=True)
    _restart(cluster, leader)


def test_a_stopped_leader_is_deposed_and_its_switches_refuse_it_when_it_resumes(cluster: Cluster) -> None:
    leader, _ = cluster.wait_leader()
    other = "b" if leader == "a" else "a"
    stopped = cluster.instances[leader]
    assert stopped.process is not None
    os.kill(stopped.process.pid, signal.SIGSTOP)
    try:
        new_leader, _ = cluster.wait_leader(not_=leader, timeout=8)
        assert new_leader == other
        code, answer, _ = cluster.post(other, "/v1/policy", PLANT.encode())
        assert code == 200, answer
        cluster.plant.lab.set_link("ring-3", "ring-4", up=False)  # events the stopped one will see on resuming
        cluster.plant.lab.set_link("ring-3", "ring-4", up=True)
    finally:
        os.kill(stopped.process.pid, signal.SIGCONT)
    stopped.wait_for(lambda s: s.get("cluster", {}).get("role") == "follower", 10, "the resumed one follows")
    time.sleep(3)
    assert cluster.leader() == other
    assert cluster.roles_are(other), switch_roles(cluster.bridges)
    assert cluster.converged(PLANT) == []  # what the new leader wrote, not the old one's tables
    log = stopped.log_text()
    print("writes refused by the switches:", cluster.status(leader)["cluster"]["writes_refused_as_slave"],
          "| stale role refused:", log.count("type 11 code 1"))


def test_without_etcd_the_leader_keeps_enforcing_refuses_pushes_and_the_cluster_heals(cluster: Cluster) -> None:
    leader, _ = cluster.wait_leader()
    cluster.etcd.stop_member(0)
    try:
        time.sleep(3)  # every lease has expired by now, as far as the instances can tell
        code, answer, _ = cluster.post(leader, "/v1/policy", WITHOUT_EVENTS.encode())
        assert code == 503 and "no quorum" in answer["error"], (answer, cluster.status(leader).get("cluster"))
        follower = "b" if leader == "a" else "a"
        code, answer, _ = cluster.post(follower, "/v1/policy", WITHOUT_EVENTS.encode())
        assert code == 503, answer
        assert cluster.roles_are(leader), switch_roles(cluster.bridges)
        cut = cluster.plant.link("ring-1", "ring-2")
        cluster.plant.lab.set_link("ring-1", "ring-2", up=False)  # the leader still follows the topology
        assert cluster.converged(PLANT, down=frozenset({cut})) == []
        cluster.plant.lab.set_link("ring-1", "ring-2", up=True)
        assert cluster.converged(PLANT) == []  # and never flushed anything
    finally:
        cluster.etcd.start_member(0)
    healed, _ = cluster.wait_leader(timeout=20)
    cluster.instances[healed].wait_for(lambda s: s["cluster"]["authoritative"], 20, "the leader's lease renewed")
    assert cluster.roles_are(healed), switch_roles(cluster.bridges)  # one master, the other slave
    code, answer, _ = cluster.post(healed, "/v1/policy", WITHOUT_EVENTS.encode())
    assert code == 200, answer
    assert cluster.converged(WITHOUT_EVENTS) == []
    code, answer, _ = cluster.post(healed, "/v1/policy", PLANT.encode())
    assert code == 200, answer
