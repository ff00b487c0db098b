"""Clock estimator: known skew, drift and jitter are recovered within the bounds stated in ``net.clock``.

Every test drives :class:`net.clock.ClockEstimator` with a simulated link whose truth is known: the
remote clock reads ``skew + (1 + drift) * t`` at local time ``t``, each direction adds a fixed delay
plus seeded exponential jitter, and the responder holds each ping a little before answering.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import pytest

from net.clock import ClockConfig, ClockEstimator, RelayedClock
from net.protocol import ClockPong, ClockShare, decode_clock, encode_clock


@dataclass(frozen=True)
class Link:
    """A simulated path and remote clock (seconds; drift dimensionless)."""

    skew: float = 0.25
    drift: float = 0.0
    base_s: float = 0.002
    jitter_out_s: float = 0.0  # mean exponential jitter, local -> remote
    jitter_back_s: float = 0.0  # mean exponential jitter, remote -> local
    asymmetry_s: float = 0.0  # constant extra delay local -> remote
    hold_s: float = 0.0002

    def remote(self, t: float) -> float:
        return self.skew + (1.0 + self.drift) * t

    def true_offset(self, t: float) -> float:
        return self.remote(t) - t


def exchange(link: Link, rng: random.Random, t0: float) -> tuple[float, float, float, float]:
    """One ping/pong sent at local time ``t0``: (t0, t1, t2, t3)."""
    out = link.base_s + link.asymmetry_s + (rng.expovariate(1 / link.jitter_out_s) if link.jitter_out_s else 0.0)
    back = link.base_s + (rng.expovariate(1 / link.jitter_back_s) if link.jitter_back_s else 0.0)
    arrive = t0 + out
    return t0, link.remote(arrive), link.remote(arrive + link.hold_s), arrive + link.hold_s + back


def drive(
    link: Link, *, period_s: float, count: int, seed: int = 1, config: ClockConfig | None = None
) -> tuple[ClockEstimator, float, list[float]]:
    """Feed ``count`` exchanges ``period_s`` apart; returns the estimator, the time after the last one,
    and every raw sample offset (for comparison with a naive average)."""
    rng = random.Random(seed)
    est = ClockEstimator(config)
    t = 10_000.0
    raw = []
    for _ in range(count):
        t0, t1, t2, t3 = exchange(link, rng, t)
        assert est.add_sample(t0, t1, t2, t3)
        raw.append(((t1 - t0) + (t2 - t3)) / 2)
        t += period_s
    return est, t, raw


SEEDS = range(10)


def test_exact_without_jitter() -> None:
    """A constant symmetric path gives the skew and drift exactly, and the round trip without hold time."""
    link = Link(skew=-3.7, drift=40e-6, base_s=0.004)
    est, t, _ = drive(link, period_s=1.0, count=200)
    assert est.offset_at(t) == pytest.approx(link.true_offset(t), abs=1e-6)
    assert est.drift == pytest.approx(40e-6, abs=1e-9)
    assert est.rtt == pytest.approx(0.008, abs=1e-7)  # less hold x drift: 8 ns
    assert est.min_rtt == pytest.approx(0.008, abs=1e-7)


@pytest.mark.parametrize("seed", SEEDS)
def test_skew_within_1ms_under_one_sided_jitter(seed: int) -> None:
    """10 Hz pings, 5 ms mean jitter one way and 0.5 ms back: the skew comes out within J/10 = 0.5 ms,
    where the plain mean of the samples is biased by more than a millisecond."""
    link = Link(skew=0.731, jitter_out_s=0.005, jitter_back_s=0.0005)
    est, t, raw = drive(link, period_s=0.1, count=300, seed=seed)
    error = abs(est.offset_at(t) - link.true_offset(t))
    assert error < 0.0005
    window = raw[-est.config.window :]
    assert abs(sum(window) / len(window) - link.skew) > 0.001
    assert est.drift == 0.0  # 6.4 s of samples is too short to fit a drift


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("jitter_out", "jitter_back"), [(0.002, 0.0002), (0.0002, 0.002)])
def test_skew_and_drift_recovered_under_asymmetric_jitter(seed: int, jitter_out: float, jitter_back: float) -> None:
    """1 Hz pings over 5 minutes with 50 ppm drift and one-sided 2 ms jitter (either side): the offset at
    the end is within J/4 = 0.5 ms and the drift within 15 ppm."""
    link = Link(skew=12.5, drift=50e-6, jitter_out_s=jitter_out, jitter_back_s=jitter_back)
    est, t, _ = drive(link, period_s=1.0, count=300, seed=seed)
    assert abs(est.offset_at(t) - link.true_offset(t)) < 0.0005
    assert abs(est.drift - 50e-6) < 15e-6
    # The mapping between the clocks uses the same fit.
    assert abs(est.to_local(link.remote(t)) - t) < 0.0005


@pytest.mark.parametrize("seed", SEEDS)
def test_symmetric_jitter_cancels(seed: int) -> None:
    """Equal 2 ms jitter on both ways and no drift: the estimate is within 0.5 ms."""
    link = Link(skew=-0.042, jitter_out_s=0.002, jitter_back_s=0.002)
    est, t, _ = drive(link, period_s=0.1, count=200, seed=seed)
    assert abs(est.offset_at(t) - link.true_offset(t)) < 0.0005


def test_unfitted_drift_costs_at_most_drift_times_window() -> None:
    """50 ppm drift over a 6.4 s window (too short to fit): error under 50 ppm x 6.4 s = 0.32 ms."""
    link = Link(skew=1.0, drift=50e-6)
    est, t, _ = drive(link, period_s=0.1, count=200)
    assert est.drift == 0.0
    assert abs(est.offset_at(t) - link.true_offset(t)) < 50e-6 * 6.4


def test_constant_asymmetry_leaves_half_of_it() -> None:
    """A fixed 3 ms extra delay on the way out shifts the estimate by exactly 1.5 ms (any two-way
    method's blind spot, as documented)."""
    link = Link(skew=0.5, asymmetry_s=0.003)
    est, t, _ = drive(link, period_s=0.1, count=100)
    assert est.offset_at(t) - link.true_offset(t) == pytest.approx(0.0015, abs=1e-6)


def test_outliers_are_ignored() -> None:
    """A few low-delay samples with offsets 50 ms off (a misbehaving responder) do not move the estimate."""
    link = Link(skew=2.0, jitter_out_s=0.0005, jitter_back_s=0.0005)
    rng = random.Random(7)
    est = ClockEstimator()
    t = 100.0
    for i in range(120):
        t0, t1, t2, t3 = exchange(link, rng, t)
        if i % 20 == 5:
            t1, t2 = t1 + 0.05, t2 + 0.05
            t3 = t0 + 0.003 + (t2 - t1)  # lowest delay of its stretch: it would be chosen without rejection
        est.add_sample(t0, t1, t2, t3)
        t += 0.1
    assert abs(est.offset_at(t) - link.true_offset(t)) < 0.001


def test_follows_a_clock_step_within_one_window() -> None:
    """After the remote clock jumps by 1 s, one window of samples later the estimate is the new offset."""
    rng = random.Random(3)
    est = ClockEstimator()
    t = 0.0
    for link in (Link(skew=0.0), Link(skew=1.0)):
        for _ in range(est.config.window):
            est.add_sample(*exchange(link, rng, t))
            t += 0.1
    assert est.offset == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(
    "times",
    [
        (math.nan, 1.0, 1.0, 2.0),
        (0.0, math.inf, 1.0, 2.0),
        (2.0, 1.0, 1.0, 1.0),  # pong received before the ping was sent
        (0.0, 5.0, 4.0, 1.0),  # responder answered before receiving
        (0.0, 1.0, 3.0, 1.0),  # hold time longer than the round trip
    ],
)
def test_impossible_samples_are_rejected_and_counted(times: tuple[float, float, float, float]) -> None:
    """Samples no real exchange could produce are refused, counted, and leave the estimate alone."""
    est = ClockEstimator()
    assert est.add_sample(0.0, 0.5, 0.5, 0.01)
    before = est.offset
    assert not est.add_sample(*times)
    assert est.rejected == 1 and est.accepted == 1
    assert est.offset == before


def test_before_the_first_sample() -> None:
    """Unsynchronised: offset 0, round trips unknown, the identity mapping."""
    est = ClockEstimator()
    assert not est.synchronized
    assert est.offset == 0.0 and math.isnan(est.rtt) and math.isnan(est.min_rtt)
    assert est.to_local(12.5) == 12.5
    assert est.summary()["rtt_ms"] is None


def test_pong_from_the_wire() -> None:
    """A pong that went through the wire protocol (microsecond times) feeds the estimator."""
    pong = decode_clock(encode_clock(ClockPong(3, 9, 100.0, 100.5025, 100.5026)))
    assert isinstance(pong, ClockPong)
    est = ClockEstimator()
    assert est.add_pong(pong, 100.0051)
    assert est.offset == pytest.approx(0.5, abs=2e-6)
    assert est.rtt == pytest.approx(0.005, abs=2e-6)


def test_mappings_are_inverse() -> None:
    """to_remote and to_local undo each other (drift included) to well under a microsecond."""
    link = Link(skew=-100.0, drift=-120e-6)
    est, _, _ = drive(link, period_s=1.0, count=100)
    for local in (0.0, 10_050.0, 10_099.5, 20_000.0):
        assert est.to_local(est.to_remote(local)) == pytest.approx(local, abs=1e-7)


def test_summary_is_json_ready() -> None:
    """summary() reports milliseconds and ppm with the counts."""
    link = Link(skew=0.01, drift=20e-6, base_s=0.001)
    est, _, _ = drive(link, period_s=1.0, count=64)
    summary = est.summary()
    assert summary["synchronized"] is True
    assert summary["offset_ms"] == pytest.approx(est.offset * 1e3)
    assert summary["drift_ppm"] == pytest.approx(20.0, abs=1e-3)
    assert summary["rtt_ms"] == pytest.approx(2.0, abs=1e-4)
    assert summary["samples"] == 64 and summary["accepted"] == 64 and summary["rejected"] == 0


def test_bad_config_is_refused() -> None:
    """A window or segment count below 1 is a configuration error."""
    with pytest.raises(ValueError):
        ClockEstimator(ClockConfig(window=0))
    with pytest.raises(ValueError):
        ClockEstimator(ClockConfig(segments=0))


def test_a_remote_known_through_the_relay_maps_to_the_local_clock_through_the_relay_clock() -> None:
    """RelayedClock: we estimate the relay's clock (skew 3 s); the remote's share says its clock is 5 s
    behind the relay's; so remote time r is local time r + 5 - 3, and the offset is 2 s - 5 s = -2 s."""
    relay_link = Link(skew=3.0, base_s=0.001)
    relay_estimate, _, _ = drive(relay_link, period_s=0.5, count=20)
    remote = RelayedClock(relay_estimate)
    assert not remote.synchronized  # nothing shared yet
    assert remote.add_share(ClockShare(7, 0.0004, 100.0, 105.0))
    assert remote.synchronized and remote.shares == 1
    assert remote.offset == pytest.approx(3.0 - 5.0, abs=1e-9)
    assert remote.to_local(200.0) == pytest.approx(200.0 + 5.0 - 3.0, abs=1e-9)
    assert remote.to_remote(remote.to_local(123.4)) == pytest.approx(123.4, abs=1e-9)
    assert remote.rtt == pytest.approx(0.002 + 0.0004, abs=1e-9)  # ours to the relay plus the remote's
    # A newer share replaces the older one; one with a time that is not finite is refused.
    assert remote.add_share(ClockShare(7, 0.0004, 100.0, 104.0))
    assert remote.offset == pytest.approx(-1.0, abs=1e-9)
    assert not remote.add_share(ClockShare(7, 0.0004, 100.0, math.nan))
    assert remote.offset == pytest.approx(-1.0, abs=1e-9)
    summary = remote.summary()
    assert summary["via"] == "relay" and summary["synchronized"] is True
    assert summary["offset_ms"] == pytest.approx(-1000.0)


def test_a_relayed_clock_waits_for_the_relay_clock_too() -> None:
    """A share alone is not enough: without our own relay samples nothing can be mapped."""
    remote = RelayedClock(ClockEstimator())
    remote.add_share(ClockShare(7, 0.0004, 100.0, 105.0))
    assert not remote.synchronized
    assert remote.summary()["rtt_ms"] is None
