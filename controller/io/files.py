"""Load policy and topology files from disk into validated, frozen values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from controller.core.model import Policy
from controller.core.overrides import Overrides, effective
from controller.io.yamlload import load_bytes, load_path
from controller.policy.topology_doc import LabNetwork, check_against_policy, validate_topology
from controller.policy.validate import validate_policy


def load_policy(path: str | Path) -> Policy:
    """The validated policy, or DocumentError with every problem (file:line:col)."""
    document = load_path(path)
    return validate_policy(document.tree, str(path), document.problems)


def load_policy_text(data: bytes, name: str) -> Policy:
    document = load_bytes(data, name)
    return validate_policy(document.tree, name, document.problems)


def load_in_force(in_force: dict[str, Any]) -> Policy:
    """The policy the switches enforce, from `ControlPlane.in_force()` (GET /v1/policy): the
    policy text, with the grants and isolations that were in force at its `now`."""
    policy = load_policy_text(in_force["text"].encode(), in_force.get("name", "in-force.yaml"))
    overrides = Overrides.from_json(json.dumps(in_force.get("overrides") or {}).encode())
    return effective(policy, overrides, float(in_force.get("now", 0.0)))


def proposal_text(header: str, document: dict[str, Any]) -> str:
    """A proposed policy (controller.core.learn.propose) as the YAML text `otseg learn propose` writes."""
    return header + yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=120)


def load_lab(path: str | Path, policy: Policy | None = None) -> LabNetwork:
    document = load_path(path)
    lab = validate_topology(document.tree, str(path), document.problems)
    if policy is not None:
        check_against_policy(lab, policy, str(path))
    return lab
