"""The lab's crafted attack frames are exactly the frames whose verdict the lab expects."""

from __future__ import annotations

from dataclasses import fields

from controller.core.compiler import locate_assets
from controller.core.frames import parse_frame
from controller.lab.attacks import containment_attacks
from controller.lab.craft import frame_bytes
from tests.conftest import EXAMPLES, load_example

COMPARED = [f.name for f in fields(parse_frame(b"")) if f.name not in ("lldp", "problem", "icmp_code")]


def test_crafted_bytes_parse_back_to_the_frame_judged() -> None:
    checked = 0
    kinds: set[str] = set()
    for example in EXAMPLES:
        policy, topology = load_example(*example)
        for attack in containment_attacks(policy, locate_assets(policy, topology)):
            parsed = parse_frame(frame_bytes(attack.frame, b"OTSEG-PROBE:p00001 " + b"\0" * 16))
            assert not parsed.problem, (attack.label, parsed.problem)
            for name in COMPARED:
                assert getattr(parsed, name) == getattr(attack.frame, name), (attack.label, name)
            kinds.add(attack.label.split(":")[0])
            checked += 1
    assert checked > 100
    assert kinds == {"responder-initiated", "VLAN tag", "foreign destination IP", "misaddressed ARP",
                     "later fragment"}


def test_containment_attacks_on_the_examples_reach_nobody() -> None:
    """All but later fragments, which pass where an ICMP relation joins the pair, and frames from a zone in
    monitor mode, which are forwarded and reported (the reference says which)."""
    for example in EXAMPLES:
        policy, topology = load_example(*example)
        attacks = [a for a in containment_attacks(policy, locate_assets(policy, topology))
                   if not a.label.startswith("later fragment")
                   and policy.zone_mode(policy.asset(a.source).zone) == "enforce"]
        assert attacks and all(not a.expected for a in attacks), [a.label for a in attacks if a.expected][:5]
