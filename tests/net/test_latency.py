"""Latency figures: percentiles, budget share, per-link and per-room views, events and the JSON report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from net.latency import LatencyMonitor, LatencySample, summarize


def test_summary_of_known_values() -> None:
    """1..100 ms: p50 50.5, p99 99.01, max 100, 30 of 100 within the 30 ms budget."""
    s = summarize([i / 1000 for i in range(1, 101)])
    assert s is not None
    assert s.count == 100
    assert s.p50_ms == pytest.approx(50.5)
    assert s.p95_ms == pytest.approx(95.05)
    assert s.p99_ms == pytest.approx(99.01)
    assert s.max_ms == pytest.approx(100.0)
    assert s.min_ms == pytest.approx(1.0)
    assert s.within_budget == pytest.approx(0.30)


def test_no_samples_no_summary() -> None:
    """Nothing measured gives None, not zeros that look like a perfect link."""
    assert summarize([]) is None
    assert LatencyMonitor().summary() is None


def test_links_and_room_are_kept_apart() -> None:
    """Per-link figures use that link's samples; the room's use all links; kinds do not mix."""
    monitor = LatencyMonitor()
    for i in range(100):
        monitor.record("alice", "pose", 0.001, float(i))
        monitor.record("bob", "pose", 0.040, float(i))
        monitor.record("bob", "state", 0.002, float(i))
    assert monitor.summary("alice").p99_ms == pytest.approx(1.0)  # type: ignore[union-attr]
    assert monitor.summary("bob").within_budget == 0.0  # type: ignore[union-attr]
    room = monitor.summary()
    assert room is not None and room.count == 200 and room.within_budget == pytest.approx(0.5)
    assert monitor.summary("bob", "state").max_ms == pytest.approx(2.0)  # type: ignore[union-attr]
    figures = monitor.link_figures()
    assert figures["bob"]["p50_ms"] == pytest.approx(40.0) and figures["bob"]["state_p50_ms"] == pytest.approx(2.0)
    assert "state_p50_ms" not in figures["alice"]


def test_window_bounds_memory_but_not_the_count() -> None:
    """Old samples fall out of the window; the total of the report keeps counting."""
    monitor = LatencyMonitor(window=10)
    for i in range(25):
        monitor.record("a", "pose", i / 1000, float(i))
    assert monitor.samples("a").shape == (10,)
    assert np.allclose(monitor.samples("a"), np.arange(15, 25) / 1000)
    assert monitor.report()["links"]["a"]["pose_total"] == 25


def test_event_api_reports_every_sample_and_survives_a_bad_subscriber() -> None:
    """Subscribers see each sample; one that raises does not stop the others or the measurement."""
    monitor = LatencyMonitor()
    seen: list[LatencySample] = []

    def broken(sample: LatencySample) -> None:
        raise RuntimeError("HUD crashed")

    monitor.subscribe(broken)
    unsubscribe = monitor.subscribe(seen.append)
    monitor.record("a", "state", 0.003, 5.0)
    unsubscribe()
    monitor.record("a", "state", 0.004, 6.0)
    assert seen == [LatencySample("a", "state", 0.003, 5.0)]
    assert monitor.summary("a", "state").count == 2  # type: ignore[union-attr]


def test_report_is_json() -> None:
    """The end-of-session report serialises to JSON with the budget, room and per-link figures."""
    monitor = LatencyMonitor()
    monitor.record("a", "pose", 0.0005, 1.0)
    report = json.loads(json.dumps(monitor.report()))
    assert report["budget_ms"] == 30.0
    assert report["room"]["pose"]["p50_ms"] == 0.5
    assert report["room"]["state"] is None
    assert report["links"]["a"]["pose"]["count"] == 1
