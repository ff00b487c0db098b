"""Latency figures: percentiles, budget share, per-link and per-room views, events and the JSON report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from net.latency import BUDGET_S, LatencyMonitor, LatencySample, summarize


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


def test_percentiles_equal_numpys_linear_interpolation() -> None:
    """The figures come from one sort (cheaper than np.percentile and four reductions, for the report every
    second over every link) and must equal numpy's default percentiles, for any count."""
    rng = np.random.default_rng(11)
    for n in (1, 2, 3, 7, 100, 999, 4096):
        values = rng.gamma(2.0, 0.004, n)
        values[: n // 10] = BUDGET_S  # exactly on the budget counts as within it
        s = summarize(values)
        assert s is not None and s.count == n
        p50, p95, p99 = np.percentile(values * 1e3, (50, 95, 99))
        assert (s.p50_ms, s.p95_ms, s.p99_ms) == pytest.approx((p50, p95, p99), rel=1e-12, abs=1e-12)
        extremes = (values.min() * 1e3, values.max() * 1e3, values.mean() * 1e3)
        assert (s.min_ms, s.max_ms, s.mean_ms) == pytest.approx(extremes, rel=1e-12)
        assert s.within_budget == np.count_nonzero(values <= BUDGET_S) / n
