"""One-way latency of applied poses and state operations, per link and per room, against the 30 ms budget.

A receiver knows when a message arrived on its own clock and when it was made on the sender's clock;
the clock estimator of the link (``net.clock.ClockEstimator``) maps the sender's time to the local
clock, and the difference is the one-way latency. :class:`LatencyMonitor` keeps a bounded window of
samples per (link, kind), computes p50/p95/p99/max and the share within the budget, calls subscribers
for every sample (the event API behind HUDs and live ``/stats``), and writes the JSON report.

Time is an input: nothing here reads a clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: The end-to-end budget an update must meet, seconds.
BUDGET_S = 0.030
#: Samples kept per (link, kind): at 90 Hz, a little over three minutes.
DEFAULT_WINDOW = 16_384
#: The kinds of traffic measured.
KINDS: tuple[str, ...] = ("pose", "state")


@dataclass(frozen=True)
class LatencySample:
    """One applied update.

    Attributes
    ----------
    link : str
        The remote participant the update came from.
    kind : str
        ``"pose"`` or ``"state"``.
    latency_s : float
        One-way latency, seconds (receive time minus sender time mapped to the local clock).
    received_at : float
        Local monotonic time of receipt, seconds.
    """

    link: str
    kind: str
    latency_s: float
    received_at: float


@dataclass(frozen=True)
class LatencySummary:
    """Figures over a set of samples; times in milliseconds, ``within_budget`` a share in [0, 1]."""

    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    min_ms: float
    within_budget: float

    def as_dict(self) -> dict[str, float | int]:
        """JSON form, rounded to the microsecond."""
        return {
            "count": self.count,
            "p50_ms": round(self.p50_ms, 3),
            "p95_ms": round(self.p95_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "max_ms": round(self.max_ms, 3),
            "mean_ms": round(self.mean_ms, 3),
            "min_ms": round(self.min_ms, 3),
            "within_budget": round(self.within_budget, 4),
        }


def summarize(latencies_s: Iterable[float] | np.ndarray, budget_s: float = BUDGET_S) -> LatencySummary | None:
    """Percentiles of one-way latencies (seconds in, milliseconds out); ``None`` for no samples.

    Parameters
    ----------
    latencies_s : iterable of float or ndarray, shape (n,)
        One-way latencies, seconds.
    budget_s : float
        Budget the share ``within_budget`` is counted against, seconds.
    """
    values = np.fromiter(latencies_s, dtype=np.float64) if not isinstance(latencies_s, np.ndarray) else latencies_s
    n = values.size
    if n == 0:
        return None
    # One sort gives every figure: np.percentile and four more reductions cost 4x to 8x as much, and a
    # participant's once-a-second report for /stats summarises every link (15 links of 2,700 samples:
    # 2.3 ms with them, 0.65 ms so, during which its event loop receives nothing).
    ordered = np.sort(values)

    def quantile(q: float) -> float:
        x = q * (n - 1)
        lo = int(x)
        hi = min(lo + 1, n - 1)
        return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (x - lo)) * 1e3

    return LatencySummary(
        count=int(n),
        p50_ms=quantile(0.50),
        p95_ms=quantile(0.95),
        p99_ms=quantile(0.99),
        max_ms=float(ordered[-1]) * 1e3,
        mean_ms=float(ordered.mean()) * 1e3,
        min_ms=float(ordered[0]) * 1e3,
        within_budget=int(np.searchsorted(ordered, budget_s, side="right")) / n,
    )


class _Window:
    """The last ``size`` samples in a numpy ring: figures over it cost a percentile, not a conversion of
    thousands of Python floats (a participant's once-a-second report over 7 links with full windows:
    5.0 ms with deques, 2.9 ms with rings, during which its event loop receives nothing)."""

    __slots__ = ("count", "next", "values")

    def __init__(self, size: int) -> None:
        self.values = np.empty(size, dtype=np.float64)
        self.count = 0
        self.next = 0

    def append(self, value: float) -> None:
        self.values[self.next] = value
        self.next = (self.next + 1) % self.values.size
        if self.count < self.values.size:
            self.count += 1

    def array(self) -> np.ndarray:
        """The samples, oldest first (a copy)."""
        if self.count < self.values.size:
            return self.values[: self.count].copy()
        return np.concatenate((self.values[self.next :], self.values[: self.next]))


class LatencyMonitor:
    """Per-link and per-room one-way latency of applied updates.

    Parameters
    ----------
    window : int
        Samples kept per (link, kind); older ones fall out (counts keep growing).
    budget_s : float
        Latency budget, seconds.
    """

    def __init__(self, window: int = DEFAULT_WINDOW, budget_s: float = BUDGET_S) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.window = window
        self.budget_s = budget_s
        self._samples: dict[tuple[str, str], _Window] = {}
        self._totals: dict[tuple[str, str], int] = {}
        self._subscribers: list[Callable[[LatencySample], None]] = []

    def subscribe(self, callback: Callable[[LatencySample], None]) -> Callable[[], None]:
        """Call ``callback(sample)`` for every recorded sample; returns a function that unsubscribes."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def record(self, link: str, kind: str, latency_s: float, received_at: float) -> None:
        """Add one sample (``latency_s`` seconds, ``received_at`` local seconds) and tell subscribers."""
        key = (link, kind)
        samples = self._samples.get(key)
        if samples is None:
            samples = self._samples[key] = _Window(self.window)
        samples.append(latency_s)
        self._totals[key] = self._totals.get(key, 0) + 1
        if not self._subscribers:  # a room of sixteen records 21,600 a second: no sample object for nobody
            return
        sample = LatencySample(link, kind, latency_s, received_at)
        for callback in list(self._subscribers):
            try:
                callback(sample)
            except Exception:  # a broken HUD must not stop measurement
                log.exception("latency subscriber failed")

    def forget(self, link: str) -> None:
        """Drop the samples of a link (the participant left)."""
        for key in [k for k in self._samples if k[0] == link]:
            del self._samples[key]

    @property
    def links(self) -> list[str]:
        """Links with samples, sorted."""
        return sorted({link for link, _ in self._samples})

    def samples(self, link: str | None = None, kind: str = "pose") -> np.ndarray:
        """Latencies in the window, seconds, shape (n,): one link's, or all links' when ``link`` is None."""
        parts = [v.array() for (lk, kd), v in self._samples.items() if kd == kind and (link is None or lk == link)]
        return np.concatenate(parts) if parts else np.empty(0)

    def summary(self, link: str | None = None, kind: str = "pose") -> LatencySummary | None:
        """Figures of one link (``link``) or the whole room (``None``) for one kind."""
        return summarize(self.samples(link, kind), self.budget_s)

    def link_figures(self) -> dict[str, dict[str, float | int]]:
        """Flat per-link figures for the signaling server's ``/stats``, small enough for 15 links.

        Pose figures without a prefix (``p50_ms``, ``p99_ms``, ``within_budget`` ...: the stream the
        budget is about), state-op figures with ``state_``.
        """
        out: dict[str, dict[str, float | int]] = {}
        for link in self.links:
            figures: dict[str, float | int] = {}
            for kind, prefix in (("pose", ""), ("state", "state_")):
                s = self.summary(link, kind)
                if s is not None:
                    figures.update({f"{prefix}{k}": v for k, v in s.as_dict().items() if k not in ("mean_ms", "min_ms")})
            out[link] = figures
        return out

    def report(self) -> dict[str, Any]:
        """JSON report: budget, per-room and per-link figures for each kind."""
        room: dict[str, Any] = {}
        for kind in KINDS:
            s = self.summary(None, kind)
            room[kind] = s.as_dict() if s else None
        links: dict[str, Any] = {}
        for link in self.links:
            links[link] = {}
            for kind in KINDS:
                s = self.summary(link, kind)
                links[link][kind] = s.as_dict() if s else None
                links[link][f"{kind}_total"] = self._totals.get((link, kind), 0)
        return {"budget_ms": self.budget_s * 1e3, "room": room, "links": links}
