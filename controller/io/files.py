"""Load policy and topology files from disk into validated, frozen values."""

from __future__ import annotations

from pathlib import Path

from controller.core.model import Policy
from controller.io.yamlload import load_bytes, load_path
from controller.policy.topology_doc import LabNetwork, check_against_policy, validate_topology
from controller.policy.validate import validate_policy


def load_policy(path: str | Path) -> Policy:
    """The validated policy, or DocumentError with every problem (file:line:col)."""
    return validate_policy(load_path(path), str(path))


def load_policy_text(data: bytes, name: str) -> Policy:
    return validate_policy(load_bytes(data, name), name)


def load_lab(path: str | Path, policy: Policy | None = None) -> LabNetwork:
    lab = validate_topology(load_path(path), str(path))
    if policy is not None:
        check_against_policy(lab, policy, str(path))
    return lab
