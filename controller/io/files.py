"""Load policy and topology files from disk into validated, frozen values."""

from __future__ import annotations

from pathlib import Path

from controller.core.model import Policy
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


def load_lab(path: str | Path, policy: Policy | None = None) -> LabNetwork:
    document = load_path(path)
    lab = validate_topology(document.tree, str(path), document.problems)
    if policy is not None:
        check_against_policy(lab, policy, str(path))
    return lab
