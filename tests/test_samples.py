"""The packet-in path: a decision for any bytes, probes for silent assets, errors counted not dumped."""

from __future__ import annotations

import logging

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.app.enforcer import Enforcer
from controller.app.samples import PROBE_MAC, ErrorBudget, SampleHandler
from controller.core.frames import build_arp, parse_frame
from controller.core.learning import Sighting
from controller.core.rules import INFRA_COOKIE, LOCATE_COOKIE
from controller.core.topology import PortRef
from tests.conftest import load_example
from tests.test_enforcer import FakeSwitch


def _handler() -> tuple[SampleHandler, Enforcer, list[tuple[int, int, bytes]], list[tuple[PortRef, object]]]:
    policy, topology = load_example("linear.yaml", "linear.yaml")
    enforcer = Enforcer(policy, settle_seconds=0, startup_grace=0, declared_links=topology.links)
    for dpid in topology.switches:
        enforcer.switch_connected(FakeSwitch(dpid), range(1, 12))
    for link in topology.links:
        enforcer.link_up(link)
    sent: list[tuple[int, int, bytes]] = []
    lldp: list[tuple[PortRef, object]] = []
    handler = SampleHandler(enforcer, lambda where, frame: lldp.append((where, frame)),
                            lambda d, p, data: sent.append((d, p, data)), clock=lambda: 0.0)
    return handler, enforcer, sent, lldp


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400), st.sampled_from([INFRA_COOKIE, LOCATE_COOKIE, 0]), st.integers(1, 12))
def test_any_bytes_from_any_port_get_a_decision(data: bytes, cookie: int, port: int) -> None:
    handler, _, _, _ = _handler()
    outcome = handler.handle(PortRef(1, port), cookie, data)
    assert outcome.kind


def test_a_silent_polled_asset_is_looked_for_with_arp_probes() -> None:
    handler, enforcer, sent, _ = _handler()
    policy = enforcer.policy
    scada, plc = policy.asset("scada"), policy.asset("plc-a")
    enforcer.frame_sampled(Sighting(PortRef(1, 1), scada.mac, scada.ip))  # the poller is bound; the PLC is silent
    request = build_arp(1, scada.mac, "ff:ff:ff:ff:ff:ff", scada.mac, scada.ip, "00:00:00:00:00:00", plc.ip)
    assert handler.handle(PortRef(1, 1), LOCATE_COOKIE, request).kind == "locate-probe"
    ports = {(d, p) for d, p, _ in sent}
    assert (1, 1) not in ports and (2, 1) in ports  # not where the poller is; everywhere it could be
    assert not {(1, 10), (2, 10), (2, 11), (3, 10)} & ports  # never on trunk ports
    probe = parse_frame(sent[0][2])
    assert probe.arp_spa == "0.0.0.0" and probe.arp_tpa == plc.ip and probe.eth_src == PROBE_MAC
    assert handler.handle(PortRef(1, 1), LOCATE_COOKIE, request).kind == "locate-throttled"
    # the PLC answers the probe from its port: that sample binds it
    reply = build_arp(2, plc.mac, PROBE_MAC, plc.mac, plc.ip, PROBE_MAC, "0.0.0.0")
    assert handler.handle(PortRef(2, 1), INFRA_COOKIE, reply).kind == "bind"
    assert enforcer.bindings()["plc-a"] == PortRef(2, 1)


def test_no_probe_for_a_requester_without_a_conduit_to_the_target() -> None:
    handler, enforcer, sent, _ = _handler()
    policy = enforcer.policy
    eng, drive = policy.asset("eng"), policy.asset("drive-1")
    enforcer.frame_sampled(Sighting(PortRef(1, 2), eng.mac, eng.ip))
    request = build_arp(1, eng.mac, "ff:ff:ff:ff:ff:ff", eng.mac, eng.ip, "00:00:00:00:00:00", drive.ip)
    from controller.core.verdict import ETH_ARP, Packet, decide  # noqa: PLC0415

    if not decide(policy, eng, drive, Packet(ETH_ARP)).delivered:
        assert handler.handle(PortRef(1, 2), LOCATE_COOKIE, request).kind == "locate-ignored"
        assert sent == []


def test_lldp_goes_to_discovery() -> None:
    handler, _, _, lldp = _handler()
    from controller.core.frames import build_lldp  # noqa: PLC0415

    outcome = handler.handle(PortRef(2, 10), INFRA_COOKIE, build_lldp(1, 10, "0e:5e:00:00:00:01", b"k" * 32, 0))
    assert outcome.kind == "lldp" and lldp and lldp[0][0] == PortRef(2, 10)


def test_errors_are_counted_and_logged_once_a_minute(caplog: object) -> None:
    now = [0.0]
    counted: list[str] = []
    budget = ErrorBudget(count=counted.append, clock=lambda: now[0])
    def fail() -> None:
        raise ValueError("bad")

    with caplog.at_level(logging.ERROR, logger="otseg.samples"):  # type: ignore[attr-defined]
        for _ in range(100):
            try:
                fail()
            except ValueError as error:
                budget.report("packet-in", error)
        now[0] = 61.0
        budget.report("packet-in", ValueError("bad"))
    records = caplog.records  # type: ignore[attr-defined]
    assert len(counted) == 101
    assert len(records) == 2
    assert "Traceback" in records[0].getMessage() and "Traceback" not in records[1].getMessage()
    assert "100 more like it" in records[1].getMessage()
