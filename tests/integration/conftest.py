"""Integration fixtures: a controller process and a Mininet lab on real Open vSwitch.

These tests need root, Open vSwitch running and Mininet (`make test` sets all of that up
through scripts/system-setup.sh). With OTSEG_REQUIRE_INTEGRATION=1 (set by `make test`)
a missing prerequisite fails the run instead of skipping it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
import urllib.error
import urllib.request
from typing import Any, Iterator

import pytest

from controller.core.compiler import compile_tables
from controller.core.flows import SwitchTables
from controller.core.topology import Link, PortRef, Topology
from controller.lab.tables import dump, dump_groups, dump_with_counters, reference_dump  # noqa: F401 (used by tests)
from controller.core.staging import versioned
from controller.io.files import load_lab, load_policy
from controller.lab.network import Lab
from controller.lab.process import ControllerProcess

ROOT = Path(__file__).resolve().parents[2]


def _missing() -> str:
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("ovs-vsctl") is None or subprocess.run(["ovs-vsctl", "--timeout=5", "show"],
                                                           capture_output=True).returncode != 0:
        return "needs Open vSwitch running (scripts/system-setup.sh)"
    try:
        import mininet.net  # noqa: F401, PLC0415
    except ImportError:
        return "needs Mininet (scripts/system-setup.sh)"
    return ""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True, scope="session")
def _system_ready() -> None:
    reason = _missing()
    if reason:
        if os.environ.get("OTSEG_REQUIRE_INTEGRATION") == "1":
            pytest.fail(f"integration prerequisites missing: {reason}")
        pytest.skip(reason)


class Scenario:
    """One controller process and one lab, shared by the checks of a test module."""

    def __init__(self, topology: str, policy: str, workdir: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.policy_path = str(ROOT / "policies" / policy) if "/" not in policy else policy
        self.policy = load_policy(self.policy_path)
        self.topology_path = str(ROOT / "topologies" / topology)
        self.description = load_lab(self.topology_path, self.policy)
        self.controller = ControllerProcess(self.policy_path, workdir, topology=self.topology_path,
                                            extra_args=extra_args)
        self.lab = Lab(self.description, self.policy)
        self.workdir = workdir

    def start(self) -> None:
        for name, _ in self.description.switches:
            subprocess.run(["ovs-vsctl", "--if-exists", "del-br", Lab.switch_node(name)], check=False)
        self.controller.start()
        self.controller.wait_listening()
        self.lab.start()

    def stop(self) -> None:
        self.lab.stop()
        self.controller.stop()

    def expected_tables(self, down: frozenset[Link] = frozenset(),
                        moved: dict[str, PortRef] | None = None) -> dict[int, SwitchTables]:
        """The compiler's tables for the lab with `down` links cut and `moved` assets elsewhere."""
        full = self.description.to_topology(self.policy)
        attachments = dict(full.attachments) | (moved or {})
        ports = full.ports | frozenset((moved or {}).values())  # a replugged device's new port exists too
        topology = Topology(full.switches, full.links - down, tuple(sorted(attachments.items())), ports,
                            full.declared_trunks, full.profiles)
        return compile_tables(self.policy, topology)

    def link(self, a: str, b: str) -> Link:
        names = dict(self.description.switches)
        return next(l for l in self.description.links if {l.a.dpid, l.b.dpid} == {names[a], names[b]})

    def converged(self, down: frozenset[Link] = frozenset(), moved: dict[str, PortRef] | None = None,
                  timeout: float = 30.0) -> list[str]:
        """Wait until every switch holds the compiler's tables for that topology; the differing switches if not."""
        deadline = time.monotonic() + timeout
        differing: list[str] = []
        while time.monotonic() < deadline:
            expected = self.expected_tables(down, moved)
            differing = [self.switch_name(d) for d, t in sorted(expected.items())
                         if dump(self.switch_name(d)) + dump_groups(self.switch_name(d)) not in self._dumps(d, t)]
            if not differing:
                return []
            time.sleep(1.0)
        return differing

    def _dumps(self, dpid: int, tables: SwitchTables) -> list[list[str]]:
        """What the switch may hold for `tables`: a switch updated without bundles holds either version."""
        profile = self.description.to_topology(self.policy).profile(dpid)
        if profile.bundles or profile.single_table:
            return [reference_dump(tables)]
        return [reference_dump(versioned(tables, version)) for version in (0, 1)]

    def switch_name(self, dpid: int) -> str:
        return Lab.switch_node(self.description.switch_name(dpid))




def api(scenario: Scenario, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    """One control-API call with the controller's token: (HTTP status, JSON answer)."""
    request = urllib.request.Request(scenario.controller.api_url + path, data=body, method=method,
                                     headers={"Authorization": f"Bearer {scenario.controller.token()}"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def running(topology: str, policy: str, workdir: Path, announce: bool = False,
            extra_args: tuple[str, ...] = ()) -> Iterator[Scenario]:
    """A started scenario for a module-scoped fixture; stopped whatever happens."""
    scenario = Scenario(topology, policy, workdir, extra_args)
    try:  # a failed start stops what did start: a leftover controller would hold the port for every later module
        scenario.start()
        if announce:
            from controller.lab.verify import Verifier  # noqa: PLC0415

            Verifier(scenario.lab, scenario.policy, scenario.controller.status, str(workdir / "announce")).announce()
        yield scenario
    finally:
        scenario.stop()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("scenario")
