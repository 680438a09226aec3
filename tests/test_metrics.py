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
    metrics.counters.update(1, {cookie("scada-polls-field"): (10, 1000), cookie("denied:field>control"): (4, 256)})
    metrics.counters.update(2, {cookie("scada-polls-field"): (5, 500)})
    text = metrics.exposition()[0].decode()
    assert 'otseg_policy_info{conduits_in_monitor="",mode="enforce",name="linear-line"' in text
    assert "otseg_switches_programmed 3.0" in text and "otseg_links_up 2.0" in text
    assert 'otseg_assets{state="located"} 5.0' in text
    assert 'otseg_conduit_packets_total{conduit="scada-polls-field"} 15.0' in text
    assert 'otseg_conduit_bytes_total{conduit="scada-polls-field"} 1500.0' in text
    assert 'otseg_denied_packets_total{destination_zone="control",source_zone="field"} 4.0' in text
    assert 'otseg_denied_packets_total{destination_zone="-",source_zone="field"} 0.0' in text
    assert 'otseg_packet_ins_total{reason="unknown-device"} 3.0' in text
    assert 'otseg_flows{switch="0x1",table="policy"}' in text
    assert "otseg_unknown_devices_seen 2.0" in text


def test_event_log_rate_limits_each_source_and_counts_drops(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from controller.app.events import BURST_PER_SOURCE, EventLog  # noqa: PLC0415

    now = [0.0]
    drops = []
    log = EventLog(str(tmp_path / "events.jsonl"), clock=lambda: now[0], on_drop=lambda: drops.append(1))
    for _ in range(100):
        log.emit("02:00:00:00:00:01", {"verdict": "denied"})
    assert log.written == BURST_PER_SOURCE and log.dropped == 100 - BURST_PER_SOURCE and len(drops) == log.dropped
    assert log.emit("02:00:00:00:00:02", {"verdict": "denied"})  # another source is not starved
    now[0] += 1.0
    assert log.emit("02:00:00:00:00:01", {"verdict": "denied"})  # the bucket refills with time
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert len(lines) == log.written and '"verdict": "denied"' in lines[0]
