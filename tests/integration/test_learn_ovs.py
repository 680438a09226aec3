"""Learn -> propose -> enforce on the plant, on real Open vSwitch, judged at the receivers.

The plant's policy in learn mode with only its essential conduits (the multicast protection and
time traffic learn mode does not carry): the plant's normal traffic (every unicast probe its
real conduits allow) flows while otseg records it; run again, it reaches the controller no
more (the counting entries forward it); the proposal learned from it is pushed in enforce mode;
then the same normal traffic still works, and the whole matrix, with every probe outside what
was seen, is what the reference says of the proposal."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from controller.core.learn import Conversation, Seen, propose
from controller.io.files import load_policy, load_policy_text, proposal_text
from controller.lab.plan import Probe
from controller.lab.verify import Verifier
from tests.integration.conftest import ROOT, Scenario, api, running

pytestmark = pytest.mark.integration


def _learning_policy(workdir: Path) -> Path:
    document = yaml.safe_load((ROOT / "policies" / "plant.yaml").read_text())
    document["mode"] = "learn"
    document["conduits"] = [c for c in document["conduits"] if c.get("essential")]
    path = workdir / "plant-learning.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    workdir = tmp_path_factory.mktemp("learn")
    yield from running("plant.yaml", str(_learning_policy(workdir)), workdir, announce=True)


def normal(probe: Probe) -> bool:
    """The plant's normal traffic: what its real conduits allow between two assets."""
    return probe.category == "pair" and probe.kind in ("tcp", "udp", "icmp") and probe.expected is True


def drive_normal_traffic(scenario: Scenario, name: str) -> list[Probe]:
    real = load_policy(str(ROOT / "policies" / "plant.yaml"))
    outcome = Verifier(scenario.lab, real, scenario.controller.status, str(scenario.workdir / name)).run(normal)
    assert len(outcome.probes) > 20
    return outcome.probes


def test_learn_propose_enforce(plant: Scenario) -> None:
    first = drive_normal_traffic(plant, "learning")
    assert all(p.observed for p in first), [p.label for p in first if not p.observed][:5]  # learn mode forwards
    time.sleep(2.5)  # recorded conversations go into the tables every second
    code, learned = api(plant, "GET", "/v1/learn")
    assert code == 200 and learned["zones_learning"] and not learned["full"], learned
    assert len(learned["conversations"]) >= 10, learned["conversations"][:5]
    before = (plant.controller.status() or {})["packet_ins"].get("learn", 0)
    drive_normal_traffic(plant, "learned")  # the same traffic again: counting entries forward it now
    time.sleep(1.0)
    again = (plant.controller.status() or {})["packet_ins"].get("learn", 0) - before
    assert again <= len(first) // 10, (again, len(first))  # at most a few stragglers (a probe's last packets)
    code, in_force = api(plant, "GET", "/v1/policy")
    policy = load_policy_text(in_force["text"].encode(), "in-force.yaml")
    seen = {Conversation.from_key(r["key"]): Seen(r["first"], r["last"], r["packets"]) for r in learned["conversations"]}
    text = proposal_text(*propose(yaml.safe_load(in_force["text"]), policy, seen))
    (plant.workdir / "proposed.yaml").write_text(text)
    proposed = load_policy_text(text.encode(), "proposed.yaml")
    assert proposed.mode == "enforce" and len(proposed.conduits) > len(policy.conduits)
    code, answer = api(plant, "POST", "/v1/policy", text.encode())
    assert code == 200, answer
    after = drive_normal_traffic(plant, "enforced")
    assert all(p.observed for p in after), [p.label for p in after if not p.observed][:5]  # still works
    outcome = Verifier(plant.lab, proposed, plant.controller.status, str(plant.workdir / "matrix")).run()
    mismatches = [f"{p.source} -> {p.target} {p.label}: expected {p.expected}, observed {p.observed}"
                  for p in outcome.probes if not p.matches]
    assert not mismatches, mismatches[:10]
    denied = [p for p in outcome.probes if p.category == "pair" and p.expected is False]
    assert denied and not any(p.observed for p in denied)  # probes outside what was seen are denied
