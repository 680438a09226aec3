"""`otseg explain` agrees with the packet walk; `otseg diagram` draws every example legibly."""

from __future__ import annotations

import html
import shutil
from pathlib import Path

import pytest

from controller.cli import main
from controller.core.explain import explain, request_packet
from controller.core.model import Policy
from controller.core.topology import Topology
from tests.conftest import EXAMPLES, POLICIES
from tests.walk import Matrix, frame


def test_explain_agrees_with_the_packet_walk(example: tuple[Policy, Topology]) -> None:
    policy, topology = example
    matrix = Matrix(policy, topology)
    used = sorted({n for c in policy.conduits for n in c.services} | {"icmp", "ssh"})
    located = [policy.asset(n) for n in sorted(matrix.located)]
    checked = 0
    for src in located:
        for dst in located:
            if src.name == dst.name:
                continue
            for service in used:
                for match, item in zip(policy.service(service).matches, explain(policy, src, dst, service)):
                    if match.is_ip and (src.ip is None or dst.ip is None):
                        continue
                    result = matrix.walk(matrix.located[src.name], frame(src, dst, request_packet(match)))
                    walked = matrix.located[dst.name] in result.delivered_ports()
                    assert walked == item.verdict.delivered, (src.name, dst.name, service, item)
                    checked += 1
    assert checked > 50


def test_explain_cli_names_the_conduit_or_what_is_missing(capsys: pytest.CaptureFixture[str]) -> None:
    plant = str(POLICIES / "plant.yaml")
    assert main(["explain", "hmi-1", "plc-filler-1", "modbus", "--policy", plant]) == 0
    assert "hmi-polls-cells" in capsys.readouterr().out
    assert main(["explain", "plc-filler-1", "hmi-1", "modbus", "--policy", plant]) == 1
    assert "runs the other way" in capsys.readouterr().out


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz (scripts/system-setup.sh installs it)")
@pytest.mark.parametrize("name", [e[0] for e in EXAMPLES])
def test_diagram_renders_every_zone_and_conduit(name: str, tmp_path: Path) -> None:
    from controller.io.files import load_policy  # noqa: PLC0415

    output = tmp_path / "policy.svg"
    assert main(["diagram", str(POLICIES / name), "-o", str(output)]) == 0
    svg = html.unescape(output.read_text())
    policy = load_policy(POLICIES / name)
    for item in list(policy.zones) + list(policy.conduits):
        assert item.name in svg
