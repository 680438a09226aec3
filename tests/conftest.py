"""Shared fixtures: the example policies with their lab networks."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.core.model import Policy
from controller.core.topology import Topology
from controller.io.files import load_lab, load_policy

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
TOPOLOGIES = ROOT / "topologies"

# (policy file, lab file): every example policy with the lab it runs on.
EXAMPLES = [
    ("plant.yaml", "plant.yaml"),
    ("linear.yaml", "linear.yaml"),
    ("substation.yaml", "substation.yaml"),
    ("water.yaml", "water.yaml"),
]


def load_example(policy_file: str, lab_file: str) -> tuple[Policy, Topology]:
    policy = load_policy(POLICIES / policy_file)
    lab = load_lab(TOPOLOGIES / lab_file, policy)
    return policy, lab.to_topology(policy)


@pytest.fixture(params=EXAMPLES, ids=lambda pair: pair[0].removesuffix(".yaml"))
def example(request: pytest.FixtureRequest) -> tuple[Policy, Topology]:
    return load_example(*request.param)
