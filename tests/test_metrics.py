"""Metrics: the exposition carries the policy, topology, and switch-counter-based conduit figures."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from controller.app.metrics import Metrics
from controller.core.rules import cookie
from tests.test_enforcer import _linear


def test_exposition_reports_state_and_polled_counters() -> None:
    enforcer, _ = _linear()
    enforcer.reconcile()
    metrics = Metrics(CollectorRegistry())
    metrics.install_state(enforcer, lambda: "abcdef0123456789", lambda: 2)
    metrics.packet_ins.labels("unknown-device").inc(3)
    metrics.counters.update(1, {cookie("scada-polls-field"): (10, 1000), cookie("denied:field"): (4, 256)})
    metrics.counters.update(2, {cookie("scada-polls-field"): (5, 500)})
    text = metrics.exposition()[0].decode()
    assert 'otseg_policy_info{conduits_in_monitor="",mode="enforce",name="linear-line"' in text
    assert "otseg_switches_programmed 3.0" in text and "otseg_links_up 2.0" in text
    assert 'otseg_assets{state="located"} 5.0' in text
    assert 'otseg_conduit_packets_total{conduit="scada-polls-field"} 15.0' in text
    assert 'otseg_conduit_bytes_total{conduit="scada-polls-field"} 1500.0' in text
    assert 'otseg_denied_packets_total{source_zone="field"} 4.0' in text
    assert 'otseg_packet_ins_total{reason="unknown-device"} 3.0' in text
    assert 'otseg_flows{switch="0x1",table="policy"}' in text
    assert "otseg_unknown_devices_seen 2.0" in text
