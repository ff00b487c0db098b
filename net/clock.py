"""NTP-style clock offset, drift and round-trip estimation from ping/pong exchanges on the ``clock`` channel.

One ``ClockEstimator`` per pinged peer (a mesh remote, or the relay); in a relay room the other
participants' clocks are ``RelayedClock``: their shared standing against the relay's clock composed
with our estimate of it (bottom of this module). Each exchange gives four times: t0 (ping sent, local clock),
t1 (ping received, remote clock), t2 (pong sent, remote clock), t3 (pong received, local clock), so

    offset = ((t1 - t0) + (t2 - t3)) / 2     remote clock minus local clock, seconds
    delay  = (t3 - t0) - (t2 - t1)           round trip without the responder's hold time, seconds

A single sample is off by half the difference of the two one-way delays, so jitter (queueing, event
loop latency) that hits one direction more than the other biases it. The filter follows NTP's clock
filter idea: the sample with the smallest delay carries the least queueing, hence the least asymmetric
error. The window (``window`` samples) is cut into ``segments`` stretches of consecutive samples and
the lowest-delay sample of each is kept; offsets that stray from the rest by more than a few median
absolute deviations are dropped; when the kept samples span at least ``min_drift_span_s`` a least
squares line through them gives the offset at the latest sample and the drift between the two
oscillators, otherwise the single lowest-delay sample gives the offset (drift 0).

Bounds (checked by ``tests/net/test_clock.py``): without jitter the offset and drift are exact; with
exponential jitter of mean J in one direction (and a tenth of it in the other), the offset error stays
under J / 4 and under J / 10 when no drift is fitted; a drift d that is not fitted (window shorter than
``min_drift_span_s``) adds at most d times the window's span.
A constant path asymmetry is invisible to any two-way method: it stays as an error of half the
asymmetry.

Time is an input: the estimator never reads a clock itself.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import deque
from dataclasses import dataclass

from net.protocol import ClockPong, ClockShare

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClockSample:
    """One ping/pong exchange: ``local_time`` (midpoint of t0 and t3), ``offset`` and ``delay``, seconds."""

    local_time: float
    offset: float
    delay: float


@dataclass(frozen=True)
class ClockConfig:
    """Filter settings of a ``ClockEstimator``.

    Parameters
    ----------
    window:
        Number of most recent samples kept.
    segments:
        The window is cut into this many stretches of consecutive samples; the lowest-delay sample of
        each is what the estimate uses.
    outlier_mads:
        Offsets farther than this many (scaled) median absolute deviations from the fit are dropped.
    outlier_floor_s:
        Lower bound of the outlier threshold, seconds, so that near-identical samples are not dropped.
    min_drift_span_s:
        Drift is fitted only when the kept samples span at least this much local time, seconds: over
        shorter spans millisecond jitter swamps a drift of tens of ppm.
    max_drift:
        Largest believable drift (500 ppm); a fit beyond it is treated as noise and ignored.
    """

    window: int = 64
    segments: int = 8
    outlier_mads: float = 3.0
    outlier_floor_s: float = 50e-6
    min_drift_span_s: float = 20.0
    max_drift: float = 500e-6


def _delay(sample: ClockSample) -> float:
    return sample.delay


def _median_slope(samples: list[ClockSample], ref: float) -> float:
    """Theil-Sen slope of offset against local time: the median of the slopes of all pairs."""
    slopes = [
        (b.offset - a.offset) / (b.local_time - a.local_time)
        for i, a in enumerate(samples)
        for b in samples[i + 1 :]
        if b.local_time != a.local_time
    ]
    return statistics.median(slopes) if slopes else 0.0


class ClockEstimator:
    """Offset, drift and round trip of a remote clock relative to the local one, from NTP-style samples.

    Before the first sample the offset is 0 and ``synchronized`` is False; latency measured then is
    only right between two clocks that are already the same (two processes on one machine).
    """

    def __init__(self, config: ClockConfig | None = None) -> None:
        self.config = config or ClockConfig()
        if self.config.window < 1 or self.config.segments < 1:
            raise ValueError("window and segments must be at least 1")
        self._samples: deque[ClockSample] = deque(maxlen=self.config.window)
        self._offset = 0.0  # offset at self._ref, seconds
        self._drift = 0.0  # d(offset)/d(local time), dimensionless
        self._ref = 0.0  # local time the fit is anchored at, seconds
        self.accepted = 0
        self.rejected = 0

    # -- input ---------------------------------------------------------------------------------------

    def add_sample(self, t0: float, t1: float, t2: float, t3: float) -> bool:
        """Add one exchange (seconds: t0/t3 local clock, t1/t2 remote clock) and update the estimate.

        Returns False (and counts it in ``rejected``) for a sample that cannot be right: non-finite
        times, t3 before t0, t2 before t1, or a responder hold time longer than the round trip.
        """
        times = (t0, t1, t2, t3)
        if not all(isinstance(t, (int, float)) and math.isfinite(t) for t in times):
            self.rejected += 1
            log.debug("clock sample rejected: non-finite time %r", times)
            return False
        delay = (t3 - t0) - (t2 - t1)
        if t3 < t0 or t2 < t1 or delay < 0:
            self.rejected += 1
            log.debug("clock sample rejected: inconsistent times %r", times)
            return False
        offset = ((t1 - t0) + (t2 - t3)) / 2
        self._samples.append(ClockSample((t0 + t3) / 2, offset, delay))
        self.accepted += 1
        self._estimate()
        return True

    def add_pong(self, pong: ClockPong, t3: float) -> bool:
        """``add_sample`` from a decoded pong and its local receive time ``t3`` (seconds)."""
        return self.add_sample(pong.t0, pong.t1, pong.t2, t3)

    # -- estimate ------------------------------------------------------------------------------------

    def _estimate(self) -> None:
        cfg = self.config
        samples = list(self._samples)  # oldest first
        ref = samples[-1].local_time
        # The lowest-delay sample of each stretch of time: the one with the least queueing, hence the
        # least asymmetric error, yet spread over the window so that the drift stays visible.
        n = len(samples)
        parts = min(cfg.segments, n)
        best = [min(samples[i * n // parts : (i + 1) * n // parts], key=_delay) for i in range(parts)]
        fit_drift = len(best) >= 4 and best[-1].local_time - best[0].local_time >= cfg.min_drift_span_s
        # Outliers are judged against a robust line (median of pairwise slopes, median intercept), which
        # a minority of wild offsets cannot drag along the way a least-squares fit or a single sample can.
        slope = _median_slope(best, ref) if fit_drift else 0.0
        if abs(slope) > cfg.max_drift:
            slope, fit_drift = 0.0, False
        center = statistics.median(s.offset - slope * (s.local_time - ref) for s in best)
        residuals = [abs(s.offset - center - slope * (s.local_time - ref)) for s in best]
        limit = max(cfg.outlier_floor_s, cfg.outlier_mads * 1.4826 * statistics.median(residuals))
        inliers = [s for s, r in zip(best, residuals, strict=True) if r <= limit]
        offset, drift = self._fit(inliers, ref) if fit_drift else (min(inliers, key=_delay).offset, 0.0)
        self._offset, self._drift, self._ref = offset, drift, ref

    def _fit(self, samples: list[ClockSample], ref: float) -> tuple[float, float]:
        """Offset at ``ref`` and drift by least squares; the lowest-delay sample and no drift when the
        inliers are too few, too close in time, or give an unbelievable drift."""
        xs = [s.local_time - ref for s in samples]
        if len(samples) >= 2 and max(xs) - min(xs) >= self.config.min_drift_span_s / 2:
            mx = sum(xs) / len(xs)
            my = sum(s.offset for s in samples) / len(samples)
            sxx = sum((x - mx) ** 2 for x in xs)
            slope = sum((x - mx) * (s.offset - my) for x, s in zip(xs, samples, strict=True)) / sxx
            if abs(slope) <= self.config.max_drift:
                return my - slope * mx, slope
        return min(samples, key=_delay).offset, 0.0

    # -- output --------------------------------------------------------------------------------------

    @property
    def synchronized(self) -> bool:
        """True once at least one sample was accepted."""
        return bool(self._samples)

    @property
    def offset(self) -> float:
        """Remote clock minus local clock at the latest sample, seconds."""
        return self._offset

    @property
    def drift(self) -> float:
        """Rate of the remote clock relative to the local one minus 1 (1e-6 is 1 ppm fast)."""
        return self._drift

    @property
    def rtt(self) -> float:
        """Median round trip over the window, seconds (``nan`` before the first sample)."""
        return statistics.median(s.delay for s in self._samples) if self._samples else math.nan

    @property
    def min_rtt(self) -> float:
        """Smallest round trip over the window, seconds (``nan`` before the first sample)."""
        return min(s.delay for s in self._samples) if self._samples else math.nan

    @property
    def samples(self) -> list[ClockSample]:
        """The samples in the window, oldest first."""
        return list(self._samples)

    def offset_at(self, local_time: float) -> float:
        """Remote minus local clock at ``local_time`` (seconds, local clock), drift included."""
        return self._offset + self._drift * (local_time - self._ref)

    def to_local(self, remote_time: float) -> float:
        """Map a time on the remote clock (seconds) to the local clock."""
        # remote = local + offset + drift * (local - ref), solved for local.
        return (remote_time - self._offset + self._drift * self._ref) / (1.0 + self._drift)

    def to_remote(self, local_time: float) -> float:
        """Map a time on the local clock (seconds) to the remote clock."""
        return local_time + self.offset_at(local_time)

    def summary(self) -> dict[str, float | int | bool | None]:
        """JSON-serialisable state for ``/stats`` and reports (milliseconds and ppm)."""
        return {
            "synchronized": self.synchronized,
            "offset_ms": self._offset * 1e3,
            "drift_ppm": self._drift * 1e6,
            "rtt_ms": self.rtt * 1e3 if self._samples else None,
            "min_rtt_ms": self.min_rtt * 1e3 if self._samples else None,
            "samples": len(self._samples),
            "accepted": self.accepted,
            "rejected": self.rejected,
        }


class RelayedClock:
    """A remote participant's clock known through the relay, without pinging the remote.

    In a relay room every participant estimates only the relay's clock (``relay``, a
    ``ClockEstimator`` fed by the relay's own pongs) and tells the room where its clock stands
    against the relay's (``ClockShare``: at its time ``local_time`` the relay read ``relay_time``).
    A remote time then maps to ours in two steps, remote -> relay (the remote's share) -> local
    (our estimate), so a ping no longer has to travel to every other participant and back, which
    woke the whole room for every ping. The error is the sum of the two participants' errors
    against the relay; each is a direct, symmetric path, unlike a ping forwarded both ways.

    It answers what ``ClockEstimator`` answers (``synchronized``, ``offset``, ``rtt``, ``to_local``,
    ``summary``...), so that a participant measures latency the same way in both topologies.
    """

    def __init__(self, relay: ClockEstimator) -> None:
        self.relay = relay
        self._to_relay: float | None = None  # the remote's relay clock minus its own clock, seconds
        self._remote_rtt = math.nan  # the remote's round trip to the relay, seconds
        self.shares = 0

    def add_share(self, share: ClockShare) -> bool:
        """Take a remote's latest share; False (ignored) when its times are not finite."""
        if not (math.isfinite(share.local_time) and math.isfinite(share.relay_time) and math.isfinite(share.rtt)):
            return False
        self._to_relay = share.relay_time - share.local_time
        self._remote_rtt = share.rtt
        self.shares += 1
        return True

    @property
    def synchronized(self) -> bool:
        """True once the remote has shared its clock and ours knows the relay's."""
        return self._to_relay is not None and self.relay.synchronized

    @property
    def offset(self) -> float:
        """Remote clock minus local clock (at our latest relay sample), seconds."""
        return self.relay.offset - (self._to_relay or 0.0)

    @property
    def drift(self) -> float:
        """Our relay clock's drift (the remote's own is in its shares, renewed every second)."""
        return self.relay.drift

    @property
    def rtt(self) -> float:
        """Round trip through the relay: ours to it plus the remote's (median), seconds."""
        return self.relay.rtt + self._remote_rtt

    @property
    def min_rtt(self) -> float:
        """Smallest round trip through the relay: our smallest plus the remote's, seconds."""
        return self.relay.min_rtt + self._remote_rtt

    def to_local(self, remote_time: float) -> float:
        """Map a time on the remote clock (seconds) to the local clock, through the relay's."""
        return self.relay.to_local(remote_time + (self._to_relay or 0.0))

    def to_remote(self, local_time: float) -> float:
        """Map a time on the local clock (seconds) to the remote clock."""
        return self.relay.to_remote(local_time) - (self._to_relay or 0.0)

    def summary(self) -> dict[str, float | int | bool | str | None]:
        """As ``ClockEstimator.summary``, for the composed clock (``via``: ``"relay"``)."""
        synced = self.synchronized
        return {
            "synchronized": synced,
            "via": "relay",
            "offset_ms": self.offset * 1e3 if synced else 0.0,
            "drift_ppm": self.drift * 1e6,
            "rtt_ms": self.rtt * 1e3 if synced else None,
            "min_rtt_ms": self.min_rtt * 1e3 if synced else None,
            "samples": len(self.relay.samples),
            "shares": self.shares,
        }
