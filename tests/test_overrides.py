"""Grants and isolations (controller.core.overrides): what the effective policy allows, judged
by the reference verdict (which knows nothing of overrides beyond the Policy it is given) and
by walking the compiled tables; the incremental compiler equals a full compile across them;
and the control plane applies, records, expires and refuses them."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from controller.app.api import create_api
from controller.app.control import ControlPlane
from controller.app.override_control import OVERRIDES_FILE, OverrideControl, OverrideError
from controller.app.store import PolicyStore
from controller.core.compiler import compile_tables
from controller.core.flows import Flow
from controller.core.pipeline import SRC_ZONE
from controller.core.rules import PRIO_ISOLATED, PRIO_ZONE_MONITOR
from controller.core.incremental import IncrementalCompiler
from controller.core.model import Policy
from controller.core.overrides import (
    Grant, Isolation, Overrides, effective, format_seconds, grant_problems, isolation_problems, parse_duration,
)
from controller.core.verdict import ETH_IPV4, Packet, decide
from controller.policy.diagnostics import DocumentError
from controller.verify.check import verify
from tests.conftest import EXAMPLES, POLICIES, load_example
from tests.test_enforcer import _linear
from tests.walk import Matrix, probes

NOW = 1_000_000.0


def isolation(kind: str, target: str = "", keep: tuple[str, ...] = (), ident: str = "i1") -> Isolation:
    return Isolation(ident, kind, target, keep, "incident", "ops", NOW)  # type: ignore[arg-type]


PROBES: dict[str, list] = {}  # type: ignore[type-arg]


def verdicts(policy: Policy, by_conduit: bool = False) -> dict[tuple[str, str, str], bool]:
    """(source, destination, probe) -> delivered, for every asset pair and probe packet (the
    probes of the policy file's services: the same for a policy and its overrides).
    `by_conduit`: delivered because a conduit or an intra rule allows it (not monitor mode's would-deny)."""
    packets = PROBES.setdefault(policy.name, probes(policy))
    assets = sorted(policy.assets, key=lambda a: a.name)
    return {(a.name, b.name, label): decide(policy, a, b, packet).outcome in ("allowed", "allowed-by-monitor")
            if by_conduit else decide(policy, a, b, packet).delivered
            for a, b in itertools.permutations(assets, 2) for label, packet in packets}


def essential_or_kept(policy: Policy, kept: tuple[str, ...]) -> Policy:
    return replace(policy, conduits=tuple(c for c in policy.conduits if c.essential or c.name in kept), _index={})


@pytest.fixture(params=EXAMPLES, ids=lambda pair: pair[0].removesuffix(".yaml"))
def example(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    return load_example(*request.param)


def test_isolating_a_zone_cuts_everything_into_and_out_of_it_but_essential_conduits(example) -> None:  # type: ignore[no-untyped-def]
    policy, _ = example
    before = verdicts(policy)
    for zone in policy.zones:
        members = {a.name for a in policy.assets if a.zone == zone.name}
        after = verdicts(effective(policy, Overrides(isolations=(isolation("zone", zone.name),)), NOW))
        only_essential = verdicts(essential_or_kept(policy, ()), by_conduit=True)
        for (src, dst, label), delivered in after.items():
            assert not delivered or before[(src, dst, label)], ("an isolation admitted", src, dst, label)
            crossing = (src in members) != (dst in members)
            if crossing:
                assert delivered == (before[(src, dst, label)] and only_essential[(src, dst, label)]), (
                    zone.name, src, dst, label)
            else:
                assert delivered == before[(src, dst, label)], ("an isolation changed traffic it does not touch",
                                                                zone.name, src, dst, label)


def test_isolating_an_asset_cuts_only_that_asset(example) -> None:  # type: ignore[no-untyped-def]
    policy, _ = example
    before = verdicts(policy)
    for asset in policy.assets[:6]:
        after = verdicts(effective(policy, Overrides(isolations=(isolation("asset", asset.name),)), NOW))
        only_essential = verdicts(essential_or_kept(policy, ()), by_conduit=True)
        for (src, dst, label), delivered in after.items():
            if asset.name in (src, dst):
                # a kept conduit keeps exactly what it allowed the asset, but intra-zone rules do not stay
                assert not delivered or (before[(src, dst, label)] and only_essential[(src, dst, label)]), (
                    asset.name, src, dst, label)
            else:
                assert delivered == before[(src, dst, label)], (asset.name, src, dst, label)


def test_the_island_cuts_every_conduit_across_level_3_5() -> None:
    policy, _ = load_example("plant.yaml", "plant.yaml")
    level = {a.name: policy.zone(a.zone).level for a in policy.assets}
    before = verdicts(policy)
    island = effective(policy, Overrides(isolations=(isolation("island"),)), NOW)
    only_essential = verdicts(essential_or_kept(policy, ()), by_conduit=True)
    crossed = 0
    for (src, dst, label), delivered in verdicts(island).items():
        if (level[src] >= 3.5) != (level[dst] >= 3.5):
            crossed += before[(src, dst, label)]
            assert delivered == (before[(src, dst, label)] and only_essential[(src, dst, label)]), (src, dst, label)
        else:
            assert not delivered or before[(src, dst, label)]
    assert crossed > 0  # the plant has conduits across the DMZ: the test cut something
    kept = verdicts(effective(policy, Overrides(isolations=(isolation("island", keep=("jump-to-ews",)),)), NOW))
    assert any(kept[k] and not verdicts(island)[k] for k in kept)


def test_a_grant_adds_its_conduit_only_while_it_lasts_and_is_approved() -> None:
    policy, _ = load_example("linear.yaml", "linear.yaml")
    grant = Grant("g1", ("plc-a",), ("eng",), ("ssh",), "vendor", "ops", NOW, NOW + 3600)
    assert not grant_problems(policy, grant, NOW)
    before, during = verdicts(policy), verdicts(effective(policy, Overrides((grant,)), NOW + 10))
    opened = {k for k in during if during[k] and not before[k]}
    assert opened and all({k[0], k[1]} == {"plc-a", "eng"} for k in opened)  # ssh, and its ICMP errors back
    assert verdicts(effective(policy, Overrides((grant,)), NOW + 3600)) == before  # over at its expiry
    pending = replace(grant, approval="pending")
    assert verdicts(effective(policy, Overrides((pending,)), NOW + 10)) == before
    assert verdicts(effective(policy, Overrides((replace(pending, approval="approved"),)), NOW + 10)) == during
    # an isolation wins over a grant into the isolated zone
    both = Overrides((grant,), (isolation("zone", "control"),))
    assert not any(verdicts(effective(policy, both, NOW + 10))[k] for k in opened)


def test_bad_grants_and_isolations_are_errors_that_say_how_to_fix_them() -> None:
    policy, _ = load_example("linear.yaml", "linear.yaml")
    bad = Grant("g1", ("plc-aa",), ("eng",), ("shh",), "x", "ops", NOW, NOW + 60)
    problems = grant_problems(policy, bad, NOW)
    assert any("did you mean 'plc-a'" in p for p in problems) and any("did you mean 'ssh'" in p for p in problems)
    assert any("expired" in p for p in grant_problems(policy, replace(bad, sources=("plc-a",), services=("ssh",),
                                                                      expires=NOW - 1), NOW))
    assert any("longer" in p for p in grant_problems(policy, replace(bad, sources=("plc-a",), services=("ssh",),
                                                                     expires=NOW + 40 * 86400), NOW))
    assert any("did you mean 'field'" in p for p in isolation_problems(policy, isolation("zone", "feild")))
    assert any("unknown conduit" in p for p in isolation_problems(policy, isolation("zone", "field", ("nope",))))
    unlevelled = replace(policy, zones=tuple(replace(z, level=None) for z in policy.zones), _index={})
    assert any("level" in p for p in isolation_problems(unlevelled, isolation("island")))
    assert any("already" in p for p in isolation_problems(policy, isolation("zone", "field", ident="i2"),
                                                          [isolation("zone", "field")]))
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("2 hours")
    assert parse_duration("1h30m") == 5400 and format_seconds(5400) == "1h30m"


def monitor_everywhere_but(policy: Policy, zone: str) -> Policy:
    """Every other zone in monitor mode: the isolation must hold against monitor forwarding too."""
    return replace(policy, zones=tuple(z if z.name == zone else replace(z, mode="monitor") for z in policy.zones),
                   _index={})


@pytest.mark.parametrize("zone", ["field", "control"])
def test_compiled_tables_walk_an_isolation_as_the_reference_says_even_beside_monitor_zones(zone: str) -> None:
    policy, topology = load_example("linear.yaml", "linear.yaml")
    for base in (policy, monitor_everywhere_but(policy, zone)):
        isolated = effective(base, Overrides(isolations=(isolation("zone", zone),)), NOW)
        matrix = Matrix(isolated, topology)
        found = matrix.check_unicast() + matrix.check_multicast()
        assert not found, "\n".join(map(str, found[:10]))
        report = verify(isolated, topology, compile_tables(isolated, topology), failures=False)
        assert not report.findings, [(f.invariant, f.where) for f in report.findings][:5]
    # beside monitor zones, the reference itself denies what monitor mode would have forwarded into the zone
    monitored = monitor_everywhere_but(policy, zone)
    members = {a.name for a in policy.assets if a.zone == zone}
    after = verdicts(effective(monitored, Overrides(isolations=(isolation("zone", zone),)), NOW))
    assert not any(delivered for (src, dst, _), delivered in after.items() if dst in members and src not in members
                   and not verdicts(essential_or_kept(policy, ()), by_conduit=True)[(src, dst, _)])


@pytest.mark.parametrize("example_and_overrides", [
    ("plant.yaml", Overrides(isolations=(isolation("island"),))),
    ("linear.yaml", Overrides(isolations=(isolation("asset", "plc-b"),))),
    ("linear.yaml", Overrides((Grant("g1", ("plc-a",), ("eng",), ("ssh", "icmp"), "v", "ops", NOW, NOW + 60),),
                              (isolation("asset", "scada"),)))], ids=["plant-island", "linear-asset", "linear-grant"])
def test_the_island_an_asset_isolation_and_a_grant_walk_as_the_reference_says(example_and_overrides) -> None:  # type: ignore[no-untyped-def]
    name, overrides = example_and_overrides
    policy, topology = load_example(name, name)
    isolated = effective(policy, overrides, NOW)
    matrix = Matrix(isolated, topology)
    found = matrix.check_unicast() + matrix.check_multicast()
    assert not found, "\n".join(map(str, found[:10]))


def test_incremental_compiles_across_overrides_equal_full_compiles() -> None:
    policy, topology = load_example("linear.yaml", "linear.yaml")
    monitored = monitor_everywhere_but(policy, "field")
    steps = [Overrides(), Overrides(isolations=(isolation("zone", "field"),)),
             Overrides((Grant("g1", ("plc-a",), ("eng",), ("ssh",), "v", "ops", NOW, NOW + 60),),
                       (isolation("zone", "field"),)),
             Overrides(isolations=(isolation("asset", "plc-b"),)), Overrides()]
    compiler = IncrementalCompiler(fast_failover=True)
    for overrides in steps:
        candidate = effective(monitored, overrides, NOW)
        assert compiler.compile(candidate, topology) == compile_tables(candidate, topology)


# -- the control plane --------------------------------------------------------------------------
A = (POLICIES / "linear.yaml").read_bytes()


def overrides_control(tmp_path: Path, clock: list[float]) -> tuple[OverrideControl, dict]:  # type: ignore[type-arg]
    enforcer, switches = _linear()
    enforcer.reconcile()
    store = PolicyStore(tmp_path)
    version = store.save(A)
    store.set_current(version, version)
    control = ControlPlane(enforcer, store, threading.Lock(), version, A, clock=lambda: clock[0])
    return OverrideControl(control), switches


def test_grants_apply_expire_on_time_and_are_audited(tmp_path: Path) -> None:
    clock = [NOW]
    overrides, switches = overrides_control(tmp_path, clock)
    before = {d: s.flows for d, s in switches.items()}
    answer = overrides.grant(["plc-a"], ["eng"], ["ssh"], 120, "vendor session", "ops")
    assert answer["flow_mods"] > 0 and {d: s.flows for d, s in switches.items()} != before
    assert Overrides.from_json(overrides.control.store.read(OVERRIDES_FILE)).grants[0].id == "g1"
    assert overrides.expire_due() == []
    clock[0] = NOW + 121
    assert overrides.expire_due() == ["g1"]
    assert {d: s.flows for d, s in switches.items()} == before and overrides.overrides.grants == ()
    actions = [(r["action"], r["who"]) for r in overrides.control.store.history()]
    assert actions == [("grant", "ops"), ("expire", "otseg (expiry)")]


def test_a_grant_that_needs_approval_waits_for_a_different_token(tmp_path: Path) -> None:
    clock = [NOW]
    overrides, switches = overrides_control(tmp_path, clock)
    before = {d: s.flows for d, s in switches.items()}
    overrides.grant(["plc-a"], ["eng"], ["ssh"], 120, "vendor session", "ops", needs_approval=True)
    assert {d: s.flows for d, s in switches.items()} == before
    with pytest.raises(OverrideError, match="different token"):
        overrides.approve("g1", "ops")
    overrides.approve("g1", "lead")
    assert {d: s.flows for d, s in switches.items()} != before
    with pytest.raises(OverrideError, match="already approved"):
        overrides.approve("g1", "lead")


def test_isolate_and_release_restore_the_tables_and_a_push_cannot_orphan_an_isolation(tmp_path: Path) -> None:
    clock = [NOW]
    overrides, switches = overrides_control(tmp_path, clock)
    before = {d: s.flows for d, s in switches.items()}
    answer = overrides.isolate("auto", "field", [], "ransomware on the field network", "ops")
    assert answer["conduits_cut"] == ["eng-programs-plcs", "field-reports-alarms", "scada-polls-field"]
    with pytest.raises(OverrideError, match="already isolated"):
        overrides.isolate("zone", "field", [], "again", "ops")
    without_field = A.replace(b"  - name: eng-programs-plcs", b"  - name: eng-programs-plcs-renamed")
    overrides.control.apply(without_field, "ops")  # a push keeps the isolation in force
    assert not any(c.name.startswith("eng-programs") for c in overrides.control.enforcer.policy.conduits)
    renamed_zone = A.replace(b"field:", b"cell:").replace(b"zone: field", b"zone: cell").replace(b"to: field",
                                                                                                   b"to: cell")
    renamed_zone = renamed_zone.replace(b"from: field", b"from: cell")
    with pytest.raises(DocumentError, match="unknown zone 'field'"):
        overrides.control.apply(renamed_zone, "ops")
    overrides.control.apply(A, "ops")
    overrides.release("i1", "ops")
    assert {d: s.flows for d, s in switches.items()} == before
    with pytest.raises(OverrideError, match="no isolation 'i9'"):
        overrides.release("i9", "ops")


def test_the_api_takes_grants_and_isolations_with_clear_errors(tmp_path: Path) -> None:
    clock = [NOW]
    overrides, _ = overrides_control(tmp_path, clock)
    client = create_api(overrides.control, lambda: {}, ("ops", "s3cret-s3cret-16"), overrides=overrides,
                        more_tokens=(("lead", "an0ther-s3cret-16"),)).test_client()
    ops, lead = ({"Authorization": f"Bearer {t}"} for t in ("s3cret-s3cret-16", "an0ther-s3cret-16"))
    bad = client.post("/v1/grants", json={"from": ["plc-a"], "to": ["eng"], "services": ["shh"], "seconds": 60,
                                          "reason": "x"}, headers=ops)
    assert bad.status_code == 422 and "did you mean 'ssh'" in bad.json["error"]
    assert client.post("/v1/grants", json={"from": "plc-a"}, headers=ops).status_code == 422
    made = client.post("/v1/grants", json={"from": ["plc-a"], "to": ["eng"], "services": ["ssh"], "seconds": 60,
                                           "reason": "vendor", "needs_approval": True}, headers=ops)
    assert made.status_code == 200 and made.json["grant"] == "g1"
    assert client.post("/v1/grants/approve", json={"id": "g1"}, headers=ops).status_code == 422
    assert client.post("/v1/grants/approve", json={"id": "g1"}, headers=lead).status_code == 200
    assert client.get("/v1/grants", headers=ops).json["grants"][0]["approved_by"] == "lead"
    isolated = client.post("/v1/isolations", json={"kind": "auto", "target": "plc-b", "reason": "odd traffic"},
                           headers=ops)
    assert isolated.status_code == 200 and isolated.json["isolation"] == "i2"
    assert client.post("/v1/isolations", json={"kind": "island", "target": "x", "reason": "r"},
                       headers=ops).status_code == 422
    assert client.post("/v1/isolations/release", json={"id": "i2"}, headers=lead).status_code == 200
    assert client.post("/v1/grants/revoke", json={"id": "g1"}).status_code == 401


@pytest.mark.parametrize("mutation", ["isolation-drops-removed", "isolation-drops-forward", "monitor-leaves-zone"])
def test_the_walk_catches_a_compiler_that_forgets_an_isolation(mutation: str) -> None:
    """Mutations of the isolation's own entries: the reference walk must find each."""
    policy, topology = load_example("linear.yaml", "linear.yaml")
    zone = "field" if mutation != "monitor-leaves-zone" else "control"
    monitored = replace(monitor_everywhere_but(policy, "field"), zones=tuple(
        replace(z, mode="monitor") for z in policy.zones), _index={}) if mutation == "monitor-leaves-zone" \
        else monitor_everywhere_but(policy, "field")
    isolated = effective(monitored, Overrides(isolations=(isolation("zone", zone),)), NOW)
    tables = compile_tables(isolated, topology)
    assert not Matrix(isolated, topology, tables=tables).check_unicast()

    def mutate(flow: Flow) -> Flow | None:
        if flow.table != "policy":
            return flow
        if mutation == "isolation-drops-removed" and flow.priority == PRIO_ISOLATED:
            return None
        if mutation == "isolation-drops-forward" and flow.priority == PRIO_ISOLATED:
            return replace(flow, instructions=())  # no ClearActions: the written output stands
        if mutation == "monitor-leaves-zone" and flow.priority == PRIO_ZONE_MONITOR:
            metadata = flow.field("metadata")
            return replace(flow, match=tuple(f for f in flow.match if f.name != "metadata") + (
                replace(metadata, value=metadata.value & SRC_ZONE.mask, mask=SRC_ZONE.mask),))
        return flow

    mutated = {dpid: replace(switch, flows=tuple(f for f in map(mutate, switch.flows) if f is not None))
               for dpid, switch in tables.items()}
    assert mutated != tables, "the mutation changed nothing: it proves nothing"
    assert Matrix(isolated, topology, tables=mutated).check_unicast(), f"{mutation} was not caught"


# -- after an attacker's review ------------------------------------------------------------------
def test_overlapping_requests_each_start_from_the_state_the_last_one_left() -> None:
    """Each request builds its overrides under the lock: two grants at once get two ids and both
    stay; an isolation made while a grant expires stays in force."""
    import tempfile

    clock = [NOW]
    overrides, _ = overrides_control(Path(tempfile.mkdtemp()), clock)
    enforcer = overrides.control.enforcer
    slow_apply = enforcer.apply_policy

    def apply_slowly(policy):  # type: ignore[no-untyped-def]
        time.sleep(0.2)  # a switch round trip: another request arrives meanwhile
        return slow_apply(policy)

    enforcer.apply_policy = apply_slowly  # type: ignore[method-assign]
    threads = [threading.Thread(target=overrides.grant, args=(["plc-a"], ["eng"], ["ssh"], 60, f"r{i}", "ops"))
               for i in range(2)]
    threads.append(threading.Thread(target=overrides.isolate, args=("zone", "field", [], "incident", "ops")))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(overrides.overrides.grants) == 2 and len({g.id for g in overrides.overrides.grants}) == 2
    assert [i.target for i in overrides.overrides.isolations] == ["field"]
    stored = Overrides.from_json(overrides.control.store.read(OVERRIDES_FILE))
    assert stored == overrides.overrides


def test_an_isolated_asset_keeps_an_essential_conduit_to_its_own_zone_peers() -> None:
    policy, _ = load_example("linear.yaml", "linear.yaml")
    from controller.core.model import Conduit, Endpoint

    peers = Conduit("field-peers", (Endpoint("zone", "field"),), (Endpoint("zone", "field"),), ("modbus",),
                    essential=True)
    policy = replace(policy, conduits=policy.conduits + (peers,), _index={})
    isolated = effective(policy, Overrides(isolations=(isolation("asset", "plc-a"),)), NOW)
    modbus = Packet(ETH_IPV4, 6, 40000, 502, 0x02)
    for a, b in (("plc-a", "plc-b"), ("plc-b", "plc-a"), ("plc-b", "drive-1")):
        assert decide(isolated, isolated.asset(a), isolated.asset(b), modbus).outcome == "allowed", (a, b)
    assert not decide(isolated, isolated.asset("scada"), isolated.asset("plc-a"), modbus).delivered


def test_a_policy_conduit_named_like_a_grant_does_not_keep_the_grant_through_an_isolation() -> None:
    policy, _ = load_example("linear.yaml", "linear.yaml")
    from controller.core.model import Conduit, Endpoint

    decoy = Conduit("grant:g1", (Endpoint("asset", "scada"),), (Endpoint("asset", "eng"),), ("ssh",))
    policy = replace(policy, conduits=policy.conduits + (decoy,), _index={})
    grant = Grant("g1", ("eng",), ("plc-a",), ("ssh",), "v", "ops", NOW, NOW + 60)
    both = effective(policy, Overrides((grant,), (isolation("zone", "field", keep=("grant:g1",)),)), NOW)
    assert len({c.name for c in both.conduits}) == len(both.conduits)  # no two conduits share a name
    ssh = Packet(ETH_IPV4, 6, 40000, 22, 0x02)
    assert not decide(both, both.asset("eng"), both.asset("plc-a"), ssh).delivered  # the grant is cut
    assert decide(both, both.asset("scada"), both.asset("eng"), ssh).delivered  # the kept policy conduit stays


def test_requests_are_bounded_and_approval_can_be_required_by_the_operator(tmp_path: Path) -> None:
    clock = [NOW]
    overrides, _ = overrides_control(tmp_path, clock)
    with pytest.raises(OverrideError, match="more than 0 s"):
        overrides.grant(["plc-a"], ["eng"], ["ssh"], True, "r", "ops")  # type: ignore[arg-type]
    with pytest.raises(OverrideError, match="at most 1000"):
        overrides.grant([f"x{i}" for i in range(1001)], ["eng"], ["ssh"], 60, "r", "ops")
    with pytest.raises(OverrideError, match="at most 1024"):
        overrides.grant(["plc-a"], ["eng"], ["ssh"], 60, "r" * 2000, "ops")
    answer = overrides.grant(["plc-a", "plc-a"], ["eng"], ["ssh"], 60, "r", "ops")
    assert overrides.overrides.grant(answer["grant"]).sources == ("plc-a",)
    overrides.approval_required = True
    second = overrides.grant(["plc-b"], ["eng"], ["ssh"], 60, "r", "ops")
    assert overrides.overrides.grant(second["grant"]).approval == "pending"
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("1.2.3h")
