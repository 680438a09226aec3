"""A three-member etcd on loopback ports: the store and the election against a real quorum, and
two otseg instances on the linear lab while etcd members die.

With one member of three down, the cluster keeps its quorum: pushes work and a killed leader
is replaced. With two down, there is no quorum: every change is refused (503), and the leader
keeps enforcing and following the topology. Members back: one leader, pushes work again.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from controller.app.cluster_kv import EtcdKV, StoreUnavailable, parse_endpoints
from controller.app.cluster_store import ClusterStore, StoreConflict
from controller.app.election import Election
from controller.app.store import version_of
from controller.io.files import load_policy_text
from controller.lab.etcd import EtcdCluster
from controller.lab.ha import ClusterLab, switch_roles
from controller.lab.network import Lab
from controller.lab.verify import Verifier
from tests.integration.conftest import ROOT, Scenario

LINEAR = (ROOT / "policies" / "linear.yaml").read_text()
DENY_ALL = (ROOT / "tests" / "integration" / "data" / "linear-deny-all.yaml").read_text()


@pytest.fixture(scope="module")
def etcd(workdir: Path) -> Iterator[EtcdCluster]:
    members = EtcdCluster(workdir / "etcd", 3, base_port=23800)
    members.start()
    try:
        yield members
    finally:
        members.stop()


def test_the_store_swaps_the_version_in_force_only_from_what_the_writer_had(etcd: EtcdCluster,
                                                                            workdir: Path) -> None:
    kv = EtcdKV(parse_endpoints(etcd.endpoints))
    one, other = ClusterStore(kv, "store-test", "one", workdir / "one"), ClusterStore(kv, "store-test", "two",
                                                                                       workdir / "two")
    first = one.save(b"policy: one\n")
    one.set_current(first, None, previous=None, fenced=False)  # seeding an empty cluster
    with pytest.raises(StoreConflict):
        other.set_current(first, None, previous=None, fenced=False)  # it believed nothing was in force
    with pytest.raises(StoreConflict):
        other.set_current(first, None, previous=first)  # fenced: it does not lead
    election = Election(kv, "store-test", "two", "http://two:1")
    assert election.step().mine
    other.fence = lambda: election.lease if election.state.mine else 0
    second = other.save(b"policy: two\n")
    other.set_current(second, None, previous=first)
    with pytest.raises(StoreConflict):
        one.set_current(first, None, previous=first)  # stale: `two` changed it since
    one.fence = lambda: 12345  # a lease that does not hold the leader key
    with pytest.raises(StoreConflict):
        one.set_current(first, None, previous=second)
    election.resign()
    with pytest.raises(StoreConflict):  # deposed: its own writes are refused by the store
        other.set_current(first, None, previous=second)
    assert one.current()["version"] == second and one.load(second[:8]) == (second, b"policy: two\n")
    one.audit(action="apply", to_version=first)
    other.audit(action="apply", to_version=second)
    assert [r["instance"] for r in one.history()] == ["one", "two"] == [r["instance"] for r in other.history()]
    assert one.secret("k") == other.secret("k") and len(one.secret("k")) == 32
    with pytest.raises(KeyError):
        one.load(version_of(b"never stored"))


def test_one_election_winner_and_a_takeover_when_its_lease_lapses(etcd: EtcdCluster) -> None:
    kv = EtcdKV(parse_endpoints(etcd.endpoints))
    a, b = (Election(kv, "election-test", name, f"http://{name}") for name in ("a", "b"))
    assert a.step().mine and not b.step().mine and b.state.leader == "a"
    term = a.state.term
    started = time.monotonic()
    while not b.step().mine:  # `a` stops renewing: it is dead, as far as etcd can tell
        assert time.monotonic() - started < 6, "the lease never lapsed"
        time.sleep(0.1)
    assert b.state.term > term  # a later leader, a greater term (generation_id)
    assert not a.step().mine and a.state.leader == "b"
    b.resign()  # a clean stop frees the key at once
    assert a.step().mine


@pytest.fixture(scope="module")
def cluster(etcd: EtcdCluster, workdir: Path) -> Iterator[Any]:
    linear = Scenario("linear.yaml", "linear.yaml", workdir)
    linear.lab = Lab(linear.description, linear.policy, 6653, more_controllers=(6654,))
    cluster = ClusterLab(linear.lab, linear.policy_path, linear.topology_path, workdir / "cluster",
                         extra_args=("--cluster-name", "linear"), etcd=etcd)  # the module's three members
    cluster.plant = linear  # type: ignore[attr-defined]
    try:
        for name, _ in linear.description.switches:
            subprocess.run(["ovs-vsctl", "--if-exists", "del-br", Lab.switch_node(name)], check=False)
        cluster.start_controllers()
        linear.lab.start()
        Verifier(linear.lab, linear.policy, cluster.instances["a"].status, str(workdir / "announce")).announce()
        yield cluster
    finally:
        linear.lab.stop()
        cluster.stop()


def _converged(cluster: Any, text: str) -> list[str]:
    cluster.plant.policy = load_policy_text(text.encode(), "candidate")
    return cluster.plant.converged()  # type: ignore[no-any-return]


def test_one_member_down_keeps_the_quorum_two_down_refuse_changes_and_the_cluster_heals(cluster: Any) -> None:
    etcd = cluster.etcd
    etcd.stop_member(0)
    try:
        etcd.wait_healthy([1, 2])  # the two left elect an etcd leader (a second or two, if it was member 0)
        leader, _ = cluster.wait_leader()
        cluster.instances[leader].wait_for(lambda s: s["cluster"]["authoritative"], 20, "the lease renewed")
        code, answer, _ = cluster.post(leader, "/v1/policy", DENY_ALL.encode())
        assert code == 200, answer
        assert _converged(cluster, DENY_ALL) == []
        cluster.instances[leader].kill()  # a takeover with one member of three down
        new_leader, _ = cluster.wait_leader(not_=leader, timeout=20)
        assert cluster.status(new_leader)["policy"]["version"] == answer["version"]
        assert _converged(cluster, DENY_ALL) == []
        cluster.restart(leader, lambda s: len(s["switches"]) == 3)
        etcd.stop_member(1)  # two of three: no quorum
        time.sleep(3)
        for name in cluster.running():
            code, answer, _ = cluster.post(name, "/v1/policy", LINEAR.encode())
            assert code == 503 and "no quorum" in answer["error"], (name, answer)
        assert cluster.settled_on(new_leader), switch_roles(cluster.bridges)  # the leader keeps its switches
        assert _converged(cluster, DENY_ALL) == []  # still enforced, nothing flushed
        with pytest.raises(StoreUnavailable):
            EtcdKV(parse_endpoints(etcd.endpoints)).get("/otseg/linear/current")
    finally:
        etcd.start_member(0, wait=False)
        etcd.start_member(1, wait=False)
        etcd.wait_healthy([0, 1, 2])
    healed, _ = cluster.wait_leader(timeout=30)
    cluster.instances[healed].wait_for(lambda s: s["cluster"]["authoritative"], 30, "the leader's lease renewed")
    roles = switch_roles(cluster.bridges)
    assert all(sorted(r for _, r in held) == ["master", "slave"] for held in roles.values()), roles
    code, answer, _ = cluster.post(healed, "/v1/policy", LINEAR.encode())
    assert code == 200, answer
    assert _converged(cluster, LINEAR) == []
