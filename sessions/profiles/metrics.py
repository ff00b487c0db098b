"""Skill metrics from the pose stream of an attempt, and learning curves across attempts.

What an instructor reads off a trainee's hands besides the score: how long the attempt took, how far
each hand travelled, how that compares with the straight-line distance the task needed (economy of
motion), how long the trainee stood still (idle time) and how smooth the movement was. Two published
smoothness measures are computed, both on the *speed* profile ``v(t) = |dp/dt|`` of a track:

* **SPARC**, the spectral arc length (Balasubramanian, Melendez-Calderon, Roby-Brami, Burdet,
  "On the analysis of movement smoothness", J NeuroEng Rehabil 12:112, 2015): the length of the curve
  traced by the normalised Fourier magnitude ``|V(f)| / |V(0)|`` of the speed against frequency scaled
  to ``[0, 1]`` by the cut-off, negated. A single smooth bell-shaped movement has a short, monotone
  spectrum (a minimum-jerk reach scores about -1.41); every extra sub-movement adds ripples to the
  spectrum and lengthens the arc (more negative = less smooth). The cut-off adapts: it is the highest
  frequency below ``cutoff_hz`` (10 Hz) at which the normalised magnitude still reaches
  ``amplitude_threshold`` (0.05). The speed is zero-padded to ``2 ** (ceil(log2(n)) + pad_level)``
  samples so the spectrum is finely sampled.
* **LDLJ**, the log dimensionless jerk of the speed profile (Hogan & Sternad, "Sensitivity of smoothness
  measures to movement duration, amplitude, and arrests", J Motor Behavior 41(6), 2009, in the speed form
  of Balasubramanian et al. 2015): ``-ln( T**3 / v_peak**2 * integral (d2v/dt2)**2 dt )`` over the whole
  track (``T`` its duration). Dimensionless, so neither the length nor the duration of the movement
  changes it; a minimum-jerk reach scores ``-ln(1024/5) = -5.32`` exactly (see the tests for the
  derivation), jerkier movements lower. This is the speed form, not the 3D jerk-vector form: on a
  curved path the two differ, and the speed form is the one SPARC is defined on.

Poses arrive at whatever rate the backend delivers them (90 Hz from a headset, irregular from a browser
joined to a room). Path length and idle time are computed on the samples as they are; the spectral and
jerk measures need a uniformly sampled speed, so the track is resampled through a cubic spline of the
positions (its derivative gives the velocity without the kinks linear interpolation would put into the
jerk).

A track that holds NaN or infinity, or times that do not increase, is refused with one
:class:`MetricsError` line; a track too short or too still for a smoothness measure is refused by that
measure, and :func:`attempt_metrics` then leaves it out (``None``) rather than store a made-up number.

The training runner puts :meth:`AttemptMetrics.as_dict` into the ``completed`` (or ``terminated``)
statement's ``result.extensions[METRICS_EXTENSION]``; :func:`attempts` and :func:`learning_curve` read
them back from stored statements.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import numpy as np

from sessions.profiles.xapi import ACTIVITY_ROOT, VERBS

logger = logging.getLogger(__name__)

#: Where the training runner stores an attempt's metrics (a flat dict of numbers) in a statement's
#: ``result.extensions``.
METRICS_EXTENSION = f"{ACTIVITY_ROOT}/ext/metrics"
#: Activity ids of modules and their steps: ``{MODULES}/{module_id}[/steps/{step_id}]``.
MODULES_PREFIX = f"{ACTIVITY_ROOT}/modules/"
#: Verbs that end an attempt (the statement that carries the attempt's metrics).
ATTEMPT_END_VERBS = ("completed", "terminated")
#: Module-level verbs whose result is merged into the attempt they belong to (same registration).
_ATTEMPT_RESULT_VERBS = ("passed", "failed", *ATTEMPT_END_VERBS)

#: Fewer samples than this cannot give a speed profile worth a spectrum or a second derivative.
MIN_SMOOTHNESS_SAMPLES = 4
#: A peak speed below this (m/s) is a hand that did not move: smoothness is undefined.
MIN_PEAK_SPEED_M_S = 1e-6


class MetricsError(ValueError):
    """A track or a metric request that cannot give a number; the message is one line."""


@dataclass(frozen=True)
class PoseTrack:
    """Positions of one hand or instrument tip over time.

    ``times``: (N,) seconds, strictly increasing (any origin); ``positions``: (N, 3) metres. Both are
    copied into read-only float64 arrays, so a track cannot change under the metrics computed on it.
    """

    times: np.ndarray
    positions: np.ndarray
    name: str = "track"

    def __post_init__(self) -> None:
        times = np.array(self.times, dtype=np.float64)
        positions = np.array(self.positions, dtype=np.float64)
        if times.ndim != 1:
            raise MetricsError(f"{self.name}: times must be a 1-D array, got shape {times.shape}")
        if positions.ndim != 2 or positions.shape[1] != 3 or positions.shape[0] != times.shape[0]:
            raise MetricsError(f"{self.name}: positions must be ({times.shape[0]}, 3), got shape {positions.shape}")
        if not (np.isfinite(times).all() and np.isfinite(positions).all()):
            raise MetricsError(f"{self.name}: times and positions must be finite (NaN or infinity found)")
        if times.size > 1 and not (np.diff(times) > 0).all():
            raise MetricsError(f"{self.name}: times must increase strictly")
        times.flags.writeable = False
        positions.flags.writeable = False
        object.__setattr__(self, "times", times)
        object.__setattr__(self, "positions", positions)

    @classmethod
    def from_samples(cls, samples: Iterable[tuple[float, Iterable[float]]], name: str = "track") -> PoseTrack:
        """A track from ``(time_s, (x, y, z))`` pairs, as a runner collects them frame by frame."""
        pairs = [(float(t), [float(c) for c in p]) for t, p in samples]
        times = np.array([t for t, _ in pairs], dtype=np.float64)
        positions = np.array([p for _, p in pairs], dtype=np.float64).reshape(-1, 3) if pairs else np.zeros((0, 3))
        return cls(times, positions, name)

    @property
    def duration_s(self) -> float:
        """Time from the first to the last sample (0 for fewer than two)."""
        return float(self.times[-1] - self.times[0]) if self.times.size > 1 else 0.0

    def __len__(self) -> int:
        return int(self.times.size)


# -- distances and idle time (on the samples as delivered) --------------------------------------


def _segment_lengths(track: PoseTrack) -> np.ndarray:
    return np.asarray(np.linalg.norm(np.diff(track.positions, axis=0), axis=1))


def path_length(track: PoseTrack) -> float:
    """Distance travelled along the samples, in metres (0 for fewer than two samples)."""
    return float(_segment_lengths(track).sum()) if len(track) > 1 else 0.0


def economy_of_motion(track: PoseTrack, needed_m: float) -> float:
    """Path length over the straight-line distance the task needed (1.0 is a perfectly direct path).

    ``needed_m`` is what the task required (from the start to the target, or along the reference path),
    not what the trainee did, so wandering and corrections raise the ratio.
    """
    if not (math.isfinite(needed_m) and needed_m > 0):
        raise MetricsError(f"{track.name}: the needed distance must be a positive number of metres, got {needed_m!r}")
    return path_length(track) / needed_m


def idle_intervals(track: PoseTrack, speed_below_m_s: float = 0.01, min_s: float = 0.25) -> list[tuple[float, float]]:
    """The ``(start_s, end_s)`` spans of at least ``min_s`` during which the track moved slower than the threshold.

    Speed is taken per sample interval (distance over time between consecutive samples), so irregular
    sampling is handled as delivered; tracking jitter faster than the threshold counts as movement.
    """
    if speed_below_m_s <= 0 or min_s < 0:
        raise MetricsError(f"{track.name}: idle threshold must be > 0 m/s and min_s >= 0, got {speed_below_m_s}, {min_s}")
    if len(track) < 2:
        return []
    slow = _segment_lengths(track) / np.diff(track.times) < speed_below_m_s
    spans: list[tuple[float, float]] = []
    # Runs of consecutive slow intervals: starts where slow turns on, ends where it turns off.
    edges = np.diff(np.concatenate(([0], slow.astype(np.int8), [0])))
    for start, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
        begin, end = float(track.times[start]), float(track.times[stop])
        if end - begin >= min_s:
            spans.append((begin, end))
    return spans


def idle_time(track: PoseTrack, speed_below_m_s: float = 0.01, min_s: float = 0.25) -> float:
    """Seconds spent in pauses of at least ``min_s`` below ``speed_below_m_s`` (see :func:`idle_intervals`)."""
    return sum(end - start for start, end in idle_intervals(track, speed_below_m_s, min_s))


def _intersect(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Overlaps of two sorted lists of disjoint spans."""
    out: list[tuple[float, float]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if hi > lo:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


# -- smoothness (on a uniformly resampled speed profile) ----------------------------------------


def uniform_speed(track: PoseTrack, resample_hz: float = 100.0) -> tuple[np.ndarray, float]:
    """The speed profile (m/s) on a uniform grid at ``resample_hz`` over the track's span, and the step (s).

    The positions go through a cubic spline (scipy's, not-a-knot ends) whose derivative is the velocity,
    so irregular sampling gives the same profile as regular sampling of the same movement.
    """
    from scipy.interpolate import CubicSpline  # noqa: PLC0415 - scipy is heavy; only smoothness needs it

    if not (math.isfinite(resample_hz) and resample_hz > 0):
        raise MetricsError(f"{track.name}: resample_hz must be a positive number, got {resample_hz!r}")
    if len(track) < MIN_SMOOTHNESS_SAMPLES:
        raise MetricsError(f"{track.name}: {len(track)} samples, a smoothness measure needs at least {MIN_SMOOTHNESS_SAMPLES}")
    count = math.floor(track.duration_s * resample_hz + 1e-9) + 1
    if count < MIN_SMOOTHNESS_SAMPLES:
        raise MetricsError(f"{track.name}: {track.duration_s:.3f} s is too short to resample at {resample_hz:g} Hz")
    step = 1.0 / resample_hz
    grid = track.times[0] + step * np.arange(count)
    velocity = CubicSpline(track.times, track.positions, axis=0).derivative()(grid)
    speed = np.linalg.norm(velocity, axis=1)
    if float(speed.max()) < MIN_PEAK_SPEED_M_S:
        raise MetricsError(f"{track.name}: the track does not move, smoothness is undefined")
    return speed, step


def sparc(
    track: PoseTrack,
    *,
    resample_hz: float = 100.0,
    cutoff_hz: float = 10.0,
    amplitude_threshold: float = 0.05,
    pad_level: int = 4,
) -> float:
    """Spectral arc length of the speed profile (Balasubramanian et al. 2015); closer to 0 is smoother.

    The normalised magnitude spectrum ``M(f) = |V(f)| / |V(0)|`` of the (zero-padded) speed is kept
    from 0 Hz up to the adaptive cut-off ``f_c``: the highest frequency at most ``cutoff_hz`` where
    ``M >= amplitude_threshold``. The result is minus the length of the polyline through
    ``(f / f_c, M(f))`` on that band, so a spectrum falling straight from 1 to the threshold gives about
    ``-sqrt(1 + 0.95**2)`` and every ripple adds length.
    """
    if not (0 < amplitude_threshold < 1) or cutoff_hz <= 0 or pad_level < 0:
        raise MetricsError(f"{track.name}: SPARC needs 0 < amplitude_threshold < 1, cutoff_hz > 0, pad_level >= 0")
    speed, step = uniform_speed(track, resample_hz)
    nfft = 2 ** (math.ceil(math.log2(speed.size)) + pad_level)
    magnitude = np.abs(np.fft.rfft(speed, nfft))
    freqs = np.fft.rfftfreq(nfft, step)
    # |V(0)| is the integral of a non-negative speed, the largest magnitude the spectrum can have.
    magnitude = magnitude / magnitude[0]
    in_band = freqs <= cutoff_hz
    above = np.flatnonzero(magnitude[in_band] >= amplitude_threshold)
    last = max(int(above[-1]), 1)
    band_f, band_m = freqs[: last + 1], magnitude[: last + 1]
    arc = np.sqrt((np.diff(band_f) / band_f[-1]) ** 2 + np.diff(band_m) ** 2).sum()
    return -float(arc)


def log_dimensionless_jerk(track: PoseTrack, *, resample_hz: float = 100.0) -> float:
    """Log dimensionless jerk of the speed profile over the whole track (speed form); closer to 0 is smoother.

    ``-ln(T**3 / v_peak**2 * integral (d2v/dt2)**2 dt)`` with ``T`` the track's duration and ``v`` its
    speed; the second derivative by central differences on the resampled speed. A speed with no jerk
    at all (a constant speed, which no real movement that starts and stops has) is refused.
    """
    speed, step = uniform_speed(track, resample_hz)
    # Second differences: central inside, second-order one-sided at the ends, where a reach's jerk is
    # largest (np.gradient applied twice is first-order there and biases a 1 s reach by 0.6 %).
    d2v = np.empty_like(speed)
    d2v[1:-1] = speed[2:] - 2 * speed[1:-1] + speed[:-2]
    d2v[0] = 2 * speed[0] - 5 * speed[1] + 4 * speed[2] - speed[3]
    d2v[-1] = 2 * speed[-1] - 5 * speed[-2] + 4 * speed[-3] - speed[-4]
    d2v /= step**2
    integral = float(np.trapezoid(d2v**2, dx=step))
    duration = step * (speed.size - 1)
    peak = float(speed.max())
    dimensionless = duration**3 / peak**2 * integral
    if not (dimensionless > 0 and math.isfinite(dimensionless)):
        raise MetricsError(f"{track.name}: the speed profile has no jerk to measure (constant speed)")
    return -math.log(dimensionless)


# -- one attempt ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptMetrics:
    """What one attempt at a module measured (units in the names; ``None`` where a measure had nothing to go on).

    ``path_length_m`` is per hand (``left``, ``right``, or any track name the runner used);
    ``economy`` is the total path of the hands with a needed distance over the total need; ``idle_s``
    the time no hand moved; ``sparc`` and ``ldlj`` are those of the hand that travelled furthest (the
    working hand).
    """

    duration_s: float
    path_length_m: dict[str, float] = field(default_factory=dict)
    economy: float | None = None
    idle_s: float = 0.0
    sparc: float | None = None
    ldlj: float | None = None
    errors: int = 0
    accuracy_mm: float | None = None
    score: float | None = None

    def as_dict(self) -> dict[str, float]:
        """A flat dict of numbers for the statement extension; per-hand lengths as ``path_length_m.<hand>``.

        ``None`` values are left out (JSON has no NaN, and an absent metric is not a zero).
        """
        out: dict[str, float] = {"duration_s": self.duration_s, "idle_s": self.idle_s, "errors": self.errors}
        for hand, length in self.path_length_m.items():
            out[f"path_length_m.{hand}"] = length
        if self.path_length_m:
            out["path_length_m"] = sum(self.path_length_m.values())
        for name in ("economy", "sparc", "ldlj", "accuracy_mm", "score"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


def attempt_metrics(
    tracks: Mapping[str, PoseTrack],
    *,
    duration_s: float,
    needed_m: Mapping[str, float] | None,
    errors: int,
    accuracy_mm: float | None,
    score: float | None,
) -> AttemptMetrics:
    """All the metrics of one attempt from the tracks of its hands (or instrument tip), keyed by hand."""
    if not (math.isfinite(duration_s) and duration_s >= 0):
        raise MetricsError(f"attempt: duration must be a non-negative number of seconds, got {duration_s!r}")
    for label, value in (("accuracy_mm", accuracy_mm), ("score", score)):
        if value is not None and not math.isfinite(value):
            raise MetricsError(f"attempt: {label} must be finite, got {value!r}")
    lengths = {hand: path_length(track) for hand, track in tracks.items()}
    economy = None
    if needed_m:
        unknown = sorted(set(needed_m) - set(tracks))
        if unknown:
            raise MetricsError(f"attempt: needed distance given for {', '.join(unknown)} but no track")
        total_need = sum(needed_m.values())
        if not (math.isfinite(total_need) and total_need > 0):
            raise MetricsError(f"attempt: the needed distances must add up to a positive number, got {total_need!r}")
        economy = sum(lengths[hand] for hand in needed_m) / total_need
    idle: list[tuple[float, float]] | None = None
    for track in tracks.values():
        spans = idle_intervals(track)
        idle = spans if idle is None else _intersect(idle, spans)
    working = max(tracks, key=lambda hand: lengths[hand]) if tracks else None
    smooth: dict[str, float | None] = {"sparc": None, "ldlj": None}
    if working is not None:
        for name, measure in (("sparc", sparc), ("ldlj", log_dimensionless_jerk)):
            try:
                smooth[name] = measure(tracks[working])
            except MetricsError as exc:
                logger.debug("attempt: no %s: %s", name, exc)
    return AttemptMetrics(
        duration_s=float(duration_s),
        path_length_m=lengths,
        economy=economy,
        idle_s=sum(end - start for start, end in idle or []),
        sparc=smooth["sparc"],
        ldlj=smooth["ldlj"],
        errors=int(errors),
        accuracy_mm=None if accuracy_mm is None else float(accuracy_mm),
        score=None if score is None else float(score),
    )


# -- attempts and learning curves from stored statements ---------------------------------------

_NUMBER = r"\d+(?:\.\d+)?"
_DURATION = re.compile(rf"^P(?:(?P<d>{_NUMBER})D)?(?:T(?:(?P<h>{_NUMBER})H)?(?:(?P<m>{_NUMBER})M)?(?:(?P<s>{_NUMBER})S)?)?$")


def parse_duration(text: object) -> float | None:
    """Seconds in an ISO 8601 duration as xAPI writes them (``PT1M2.5S``, ``P1DT2H``); None if not one."""
    if not isinstance(text, str) or text in ("P", "PT") or text.endswith("T"):
        return None
    match = _DURATION.match(text)
    if match is None:
        return None
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    return parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numbers of a (possibly nested) metrics dict under dotted keys; everything else left out."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_metrics(value, f"{name}."))
        elif (number := _number(value)) is not None:
            out[name] = number
    return out


@dataclass
class Attempt:
    """One attempt at a module, gathered from its module-level statements (one registration)."""

    number: int  # 1-based, in the order the attempts started
    module_id: str
    module_name: str
    registration: str
    seq: int | None  # store sequence of the statement that ended it (None for bare dicts)
    timestamp: str  # when it started: its first module-level statement's timestamp (ISO 8601)
    verb: str  # the verb that ended it: completed or terminated
    success: bool | None = None
    score: float | None = None  # scaled, 0..1
    duration_s: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def value(self, metric: str) -> float | None:
        """A metric of this attempt: from the metrics extension, else ``score``/``duration_s`` from the result."""
        if metric in self.metrics:
            return self.metrics[metric]
        if metric == "score":
            return self.score
        if metric == "duration_s":
            return self.duration_s
        return None


def _unwrap(item: Any) -> tuple[int | None, Mapping[str, Any]]:
    """``(seq, statement)`` of a StoredStatement-like record or a bare statement dict."""
    if isinstance(item, Mapping):
        return None, item
    statement = getattr(item, "statement", None)
    seq = getattr(item, "seq", None)
    return (seq if isinstance(seq, int) else None), statement if isinstance(statement, Mapping) else {}


def _verb_name(statement: Mapping[str, Any]) -> str | None:
    verb = statement.get("verb")
    iri = verb.get("id") if isinstance(verb, Mapping) else None
    for name, known in VERBS.items():
        if iri == known:
            return name
    return None


def activity_path(statement: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """``(module_id, step_id or None)`` of a statement's object, or None if it is not one of our activities."""
    obj = statement.get("object")
    iri = obj.get("id") if isinstance(obj, Mapping) else None
    if not isinstance(iri, str) or not iri.startswith(MODULES_PREFIX):
        return None
    module, _, step = iri[len(MODULES_PREFIX) :].partition("/steps/")
    return unquote(module), (unquote(step) or None)


def activity_name(statement: Mapping[str, Any]) -> str | None:
    """The object's display name (en-US, else the first language given)."""
    obj = statement.get("object")
    definition = obj.get("definition") if isinstance(obj, Mapping) else None
    names = definition.get("name") if isinstance(definition, Mapping) else None
    if isinstance(names, Mapping) and names:
        name = names.get("en-US", next(iter(names.values())))
        return name if isinstance(name, str) else None
    return None


def registration(statement: Mapping[str, Any]) -> str | None:
    """The attempt a statement belongs to (its context registration)."""
    context = statement.get("context")
    value = context.get("registration") if isinstance(context, Mapping) else None
    return value if isinstance(value, str) else None


def attempts(stored: Iterable[Any], *, module_id: str | None = None) -> list[Attempt]:
    """The attempts in a trainee's statements, oldest first; ``module_id`` keeps one module's.

    ``stored`` holds StoredStatements (from ``ProfileStore.statements``) or bare statement dicts. An
    attempt is a registration with a module-level ``completed`` or ``terminated`` statement, dated by
    its first module-level statement (``launched``); the
    module-level ``passed``/``failed``/``completed``/``terminated`` statements of that registration are
    merged, later values over earlier ones, so a runner that sends both ``completed`` and ``terminated``
    still counts one attempt. Statements that are not ours or are malformed are skipped.
    """
    found: dict[str, Attempt] = {}
    ended: set[str] = set()
    for item in stored:
        seq, statement = _unwrap(item)
        verb = _verb_name(statement)
        where = activity_path(statement)
        reg = registration(statement)
        if verb is None or where is None or where[1] is not None or reg is None:
            continue
        if module_id is not None and where[0] != module_id:
            continue
        attempt = found.get(reg)
        if attempt is None:
            # The first module-level statement of the attempt (launched, normally) dates it.
            stamp = statement.get("timestamp")
            attempt = found[reg] = Attempt(0, where[0], where[0], reg, seq, stamp if isinstance(stamp, str) else "", verb)
        attempt.module_name = activity_name(statement) or attempt.module_name
        if verb not in _ATTEMPT_RESULT_VERBS:
            continue
        if verb in ATTEMPT_END_VERBS:
            ended.add(reg)
            attempt.verb, attempt.seq = verb, seq
        result = statement.get("result")
        if not isinstance(result, Mapping):
            continue
        if isinstance(result.get("success"), bool):
            attempt.success = result["success"]
        score = result.get("score")
        if isinstance(score, Mapping) and (scaled := _number(score.get("scaled"))) is not None:
            attempt.score = scaled
        if (seconds := parse_duration(result.get("duration"))) is not None:
            attempt.duration_s = seconds
        extensions = result.get("extensions")
        metrics = extensions.get(METRICS_EXTENSION) if isinstance(extensions, Mapping) else None
        if isinstance(metrics, Mapping):
            attempt.metrics.update(flatten_metrics(metrics))
    out = [attempt for reg, attempt in found.items() if reg in ended]
    for number, attempt in enumerate(out, start=1):
        attempt.number = number
    return out


def learning_curve(stored: Iterable[Any], metric: str, *, module_id: str | None = None) -> list[tuple[int, float]]:
    """``(attempt number, value)`` of one metric across attempts, oldest first; attempts without it are left out.

    ``metric`` is a key of the metrics extension (``economy``, ``sparc``, ``path_length_m.right`` ...)
    or ``score`` / ``duration_s``, which fall back on the statement's result when the extension lacks
    them. Attempt numbers count all attempts (of ``module_id`` if given), so a gap shows a missing value.
    """
    curve: list[tuple[int, float]] = []
    for attempt in attempts(stored, module_id=module_id):
        value = attempt.value(metric)
        if value is not None:
            curve.append((attempt.number, value))
    return curve
