"""Skill metrics against values computed by hand on synthetic paths (sessions.profiles.metrics)."""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

import numpy as np
import pytest

from sessions.profiles import xapi
from sessions.profiles.metrics import (
    METRICS_EXTENSION,
    AttemptMetrics,
    MetricsError,
    PoseTrack,
    attempt_metrics,
    attempts,
    economy_of_motion,
    idle_time,
    learning_curve,
    log_dimensionless_jerk,
    parse_duration,
    path_length,
    sparc,
)

#: -ln(1024 / 5): the log dimensionless jerk of any minimum-jerk reach (derived in test_ldlj_minimum_jerk).
LDLJ_MINIMUM_JERK = -math.log(1024 / 5)


def minimum_jerk(times: np.ndarray, start: np.ndarray, end: np.ndarray, t0: float, duration: float) -> np.ndarray:
    """Positions (N, 3) of a minimum-jerk reach from ``start`` to ``end`` during [t0, t0 + duration] (Flash & Hogan)."""
    tau = np.clip((times - t0) / duration, 0.0, 1.0)[:, None]
    return start + (end - start) * (10 * tau**3 - 15 * tau**4 + 6 * tau**5)


def jittered_times(duration: float, rate_hz: float, seed: int) -> np.ndarray:
    """Samples at about ``rate_hz``, each interval drawn between 0.4x and 1.6x the nominal one; ends included."""
    rng = np.random.default_rng(seed)
    steps = rng.uniform(0.4, 1.6, size=int(duration * rate_hz * 1.5)) / rate_hz
    times = np.concatenate(([0.0], np.cumsum(steps)))
    times = times[times < duration - 0.2 / rate_hz]
    return np.append(times, duration)


def straight(times: np.ndarray, speed: float) -> PoseTrack:
    return PoseTrack(times, np.c_[speed * times, np.zeros_like(times), np.zeros_like(times)])


def test_straight_line_at_constant_speed() -> None:
    """0.1 m/s along x for 3 s at 90 Hz: 0.3 m travelled, economy exactly 1 against the 0.3 m needed, no idle time."""
    track = straight(np.linspace(0.0, 3.0, 271), 0.1)
    assert path_length(track) == pytest.approx(0.3, abs=1e-12)
    assert economy_of_motion(track, 0.3) == pytest.approx(1.0, abs=1e-12)
    assert idle_time(track) == 0.0


def test_known_detour() -> None:
    """Along two sides of a 0.3 x 0.4 m right triangle instead of its 0.5 m hypotenuse: 0.7 m, economy 1.4."""
    leg1 = np.linspace([0.0, 0.0, 0.0], [0.3, 0.0, 0.0], 31)
    leg2 = np.linspace([0.3, 0.0, 0.0], [0.3, 0.4, 0.0], 41)[1:]
    positions = np.vstack([leg1, leg2])
    track = PoseTrack(np.arange(len(positions)) / 100.0, positions)
    assert path_length(track) == pytest.approx(0.7, abs=1e-12)
    assert economy_of_motion(track, float(np.linalg.norm(positions[-1] - positions[0]))) == pytest.approx(1.4, abs=1e-12)


def paused_path(times: np.ndarray) -> np.ndarray:
    """0.1 m/s along x during [0, 1], still during [1, 1.5], along y during [1.5, 2.5], still [2.5, 2.7], x again to 3."""
    x = 0.1 * np.clip(times, 0, 1) + 0.1 * np.clip(times - 2.7, 0, None)
    y = 0.1 * np.clip(times - 1.5, 0, 1.0)
    return np.c_[x, y, np.zeros_like(times)]


def test_pause_is_idle_time() -> None:
    """A 0.5 s stop counts as idle; a 0.2 s stop is shorter than the 0.25 s minimum and does not."""
    times = np.linspace(0.0, 3.0, 301)
    track = PoseTrack(times, paused_path(times))
    assert idle_time(track) == pytest.approx(0.5, abs=1e-9)
    assert idle_time(track, min_s=0.1) == pytest.approx(0.7, abs=1e-9)
    assert path_length(track) == pytest.approx(0.23, abs=1e-9)


def continuous_minimum_jerk_sparc(duration: float) -> float:
    """SPARC of a minimum-jerk speed profile from its exact Fourier transform, not from an FFT.

    With s = t/T - 1/2 the speed is (D/T) 30 (1/4 - s^2)^2 on |s| <= 1/2, an even function, so its
    transform (per unit distance, frequency w in rad per movement time) is 30 * int (1/4 - s^2)^2 cos(ws) ds.
    Integrating by parts twice (the profile and its slope vanish at both ends) leaves
    -30/w^2 * int (12 s^2 - 1) cos(ws) ds, and that integral is elementary:
        V(w) = (1440/w^5 - 120/w^3) sin(w/2) - 720/w^4 cos(w/2),   V(0) = 1.
    SPARC is then minus the arc length of (f/f_c, |V(2 pi f T)|) from 0 up to f_c, the last frequency
    below 10 Hz where |V| >= 0.05, measured here on a 0.1 mHz grid.
    """
    f = np.arange(0.0, 10.0, 1e-4)
    w = 2 * np.pi * f * duration
    magnitude = np.ones_like(f)
    far = w >= 0.3  # below that the closed form cancels badly; |V| > 0.998 there, flat to the grid
    wf = w[far]
    magnitude[far] = np.abs((1440 / wf**5 - 120 / wf**3) * np.sin(wf / 2) - 720 / wf**4 * np.cos(wf / 2))
    last = np.flatnonzero(magnitude >= 0.05)[-1]
    band_f, band_m = f[: last + 1], magnitude[: last + 1]
    return -float(np.sqrt((np.diff(band_f) / band_f[-1]) ** 2 + np.diff(band_m) ** 2).sum())


@pytest.mark.parametrize(("duration", "distance"), [(1.0, 0.3), (0.6, 0.05), (2.0, 0.5)])
def test_sparc_minimum_jerk(duration: float, distance: float) -> None:
    """A minimum-jerk reach scores the published -1.41, matching its exact spectrum whatever its length and duration."""
    times = np.linspace(0.0, duration, round(duration * 90) + 1)
    track = PoseTrack(times, minimum_jerk(times, np.zeros(3), np.array([distance, 0.0, 0.0]), 0.0, duration))
    expected = continuous_minimum_jerk_sparc(duration)
    assert expected == pytest.approx(-1.41, abs=0.005)
    # The FFT stops at the last bin above the threshold (0.1 Hz bins at 0.6 s): up to 0.01 short of the exact arc.
    assert sparc(track) == pytest.approx(expected, abs=0.015)


@pytest.mark.parametrize(("duration", "distance"), [(1.0, 0.3), (0.6, 0.05), (2.0, 0.5)])
def test_ldlj_minimum_jerk(duration: float, distance: float) -> None:
    """LDLJ of a minimum-jerk reach is -ln(1024/5) = -5.322 for any distance D and duration T.

    v(t) = (D/T) 30 u^2 (1-u)^2 with u = t/T peaks at 15 D / (8 T); d2v/dt2 = (D/T^3) 30 (12 (u-1/2)^2 - 1),
    and int_0^1 (12 (u-1/2)^2 - 1)^2 du = 144/80 - 24/12 + 1 = 4/5, so int (d2v/dt2)^2 dt = 720 D^2 / T^5.
    T^3 / v_peak^2 times that is 720 * 64 / 225 = 1024/5.
    """
    times = np.linspace(0.0, duration, round(duration * 90) + 1)
    track = PoseTrack(times, minimum_jerk(times, np.zeros(3), np.array([0.0, distance, distance]) / math.sqrt(2), 0.0, duration))
    assert log_dimensionless_jerk(track) == pytest.approx(LDLJ_MINIMUM_JERK, abs=0.01)


def test_jerky_path_scores_worse_than_smooth() -> None:
    """Two overlapping sub-movements plus a 6 Hz, 1 mm tremor are less smooth than one reach over the same 0.3 m."""
    times = np.linspace(0.0, 1.5, 136)
    smooth = PoseTrack(times, minimum_jerk(times, np.zeros(3), np.array([0.3, 0.0, 0.0]), 0.0, 1.5))
    halfway = np.array([0.18, 0.04, 0.0])
    jerky_positions = (
        minimum_jerk(times, np.zeros(3), halfway, 0.0, 0.8)
        + minimum_jerk(times, np.zeros(3), np.array([0.3, 0.0, 0.0]) - halfway, 0.6, 0.9)
        + np.c_[np.zeros_like(times), 0.001 * np.sin(2 * np.pi * 6 * times), np.zeros_like(times)]
    )
    jerky = PoseTrack(times, jerky_positions)
    assert sparc(jerky) < sparc(smooth) - 0.3
    assert log_dimensionless_jerk(jerky) < log_dimensionless_jerk(smooth) - 1.0
    assert path_length(jerky) > path_length(smooth) == pytest.approx(0.3, abs=1e-9)


def test_irregular_sampling_gives_the_same_answers() -> None:
    """Jittered ~90 Hz samples of the same movements give the same path length, idle time, SPARC and LDLJ."""
    regular = np.linspace(0.0, 1.2, 109)
    irregular = jittered_times(1.2, 90.0, seed=7)
    assert np.std(np.diff(irregular)) > 0.2 * np.mean(np.diff(irregular))

    def reach(times: np.ndarray) -> PoseTrack:
        return PoseTrack(times, minimum_jerk(times, np.zeros(3), np.array([0.2, 0.1, -0.05]), 0.0, 1.2))

    assert path_length(reach(irregular)) == pytest.approx(path_length(reach(regular)), abs=1e-9)
    assert sparc(reach(irregular)) == pytest.approx(sparc(reach(regular)), abs=0.01)
    assert log_dimensionless_jerk(reach(irregular)) == pytest.approx(log_dimensionless_jerk(reach(regular)), abs=0.02)

    paused = jittered_times(3.0, 90.0, seed=11)
    track = PoseTrack(paused, paused_path(paused))
    # Each end of the pause is seen to within one sample interval (at most 1.6/90 s here).
    assert idle_time(track) == pytest.approx(0.5, abs=2 * 1.6 / 90)


@pytest.mark.parametrize(
    ("times", "positions", "message"),
    [
        ([0.0, 0.1, 0.2], [[0, 0, 0], [0, math.nan, 0], [0, 0, 0]], "NaN or infinity"),
        ([0.0, math.inf, 0.2], [[0, 0, 0]] * 3, "NaN or infinity"),
        ([0.0, 0.2, 0.1], [[0, 0, 0]] * 3, "increase strictly"),
        ([0.0, 0.1, 0.1], [[0, 0, 0]] * 3, "increase strictly"),
        ([0.0, 0.1], [[0, 0], [0, 0]], "positions must be (2, 3)"),
        ([[0.0, 0.1]], [[0, 0, 0]], "1-D"),
    ],
)
def test_bad_tracks_are_refused_in_one_line(times: list[float], positions: list[list[float]], message: str) -> None:
    """NaN, infinity, times that go back or repeat, and wrong shapes are refused by the track itself, in one line."""
    with pytest.raises(MetricsError) as caught:
        PoseTrack(np.array(times), np.array(positions, dtype=float), name="right")
    assert message in str(caught.value) and str(caught.value).startswith("right: ")
    assert "\n" not in str(caught.value)


def test_short_and_still_tracks() -> None:
    """Fewer than two samples travel nothing; too few samples or a still hand have no smoothness; zero need is refused."""
    assert path_length(PoseTrack(np.zeros(0), np.zeros((0, 3)))) == 0.0
    assert path_length(PoseTrack([0.0], [[1.0, 2.0, 3.0]])) == 0.0
    assert idle_time(PoseTrack([0.0], [[1.0, 2.0, 3.0]])) == 0.0
    three = PoseTrack([0.0, 0.1, 0.2], [[0, 0, 0], [0.01, 0, 0], [0.02, 0, 0]])
    with pytest.raises(MetricsError, match="at least 4"):
        sparc(three)
    still = PoseTrack(np.linspace(0, 1, 50), np.ones((50, 3)))
    with pytest.raises(MetricsError, match="does not move"):
        log_dimensionless_jerk(still)
    assert idle_time(still) == pytest.approx(1.0)
    with pytest.raises(MetricsError, match="positive"):
        economy_of_motion(three, 0.0)


def test_attempt_metrics_two_hands() -> None:
    """The right hand does the detour while the left rests: per-hand lengths, economy, shared idle, smoothness of the right."""
    times = np.linspace(0.0, 3.0, 301)
    right = PoseTrack(times, paused_path(times), name="right")
    # The left hand rests for the first 2 s, then drifts 0.05 m: only [1, 1.5] is idle for both hands.
    left = PoseTrack(times, np.c_[0.05 * np.clip(times - 2.0, 0, 1), np.zeros_like(times), np.zeros_like(times)], name="left")
    metrics = attempt_metrics(
        {"left": left, "right": right}, duration_s=3.0, needed_m={"right": 0.2}, errors=2, accuracy_mm=3.5, score=0.75
    )
    assert metrics.path_length_m == {"left": pytest.approx(0.05), "right": pytest.approx(0.23)}
    assert metrics.economy == pytest.approx(0.23 / 0.2)
    assert metrics.idle_s == pytest.approx(0.5, abs=1e-9)
    assert metrics.sparc is not None and metrics.sparc < -1.5  # three sub-movements, far from one reach
    assert metrics.ldlj is not None
    flat = metrics.as_dict()
    assert flat["path_length_m.right"] == pytest.approx(0.23) and flat["path_length_m"] == pytest.approx(0.28)
    assert flat["errors"] == 2 and flat["accuracy_mm"] == 3.5 and flat["score"] == 0.75
    json.dumps(flat, allow_nan=False)  # what the statement extension must survive


def test_attempt_metrics_still_hand_has_no_smoothness() -> None:
    """A hand that never moved gives None for SPARC and LDLJ (left out of the extension), not a made-up number."""
    still = PoseTrack(np.linspace(0, 2, 100), np.zeros((100, 3)))
    metrics = attempt_metrics({"right": still}, duration_s=2.0, needed_m=None, errors=0, accuracy_mm=None, score=None)
    assert (metrics.sparc, metrics.ldlj, metrics.economy, metrics.path_length_m) == (None, None, None, {"right": 0.0})
    assert metrics.idle_s == pytest.approx(2.0)
    assert set(metrics.as_dict()) == {"duration_s", "idle_s", "errors", "path_length_m.right", "path_length_m"}
    with pytest.raises(MetricsError, match="no track"):
        attempt_metrics({"right": still}, duration_s=2.0, needed_m={"left": 0.1}, errors=0, accuracy_mm=None, score=None)
    with pytest.raises(MetricsError, match="finite"):
        attempt_metrics({"right": still}, duration_s=2.0, needed_m=None, errors=0, accuracy_mm=math.nan, score=None)


def test_parse_duration() -> None:
    """ISO 8601 durations as xAPI writes them; anything else is not a duration."""
    assert parse_duration("PT12.34S") == pytest.approx(12.34)
    assert parse_duration("PT1H2M3S") == 3723.0
    assert parse_duration("P1DT1S") == 86401.0
    for bad in ("PT", "P", "12S", "PT-1S", 12, None):
        assert parse_duration(bad) is None


def attempt_records(module_id: str, score: float, metrics: dict[str, Any] | None, *, day: int,
                    ends: tuple[str, ...]) -> list[dict[str, Any]]:
    """One attempt's statements as the training runner makes them: launched, a step passed, then ``ends``."""
    common = {"trainee": "alice", "module_id": module_id, "module_name": module_id.title(), "registration": str(uuid.uuid4())}
    t0 = 1_790_000_000.0 + day * 86400
    extensions = {METRICS_EXTENSION: metrics} if metrics is not None else None
    final = xapi.result(scaled=score, success=score >= 0.6, completion=True, duration_s=40.0 + day, extensions=extensions)
    return [
        xapi.statement(verb="launched", timestamp=t0, **common),
        xapi.statement(verb="passed", timestamp=t0 + 5, step_id="s1", step_name="S1", result=xapi.result(scaled=0.2), **common),
        *(xapi.statement(verb=verb, timestamp=t0 + 40, result=final, **common) for verb in ends),
    ]


def test_learning_curve_over_statements() -> None:
    """One point per attempt of the module, in order; completed+terminated count once; step results and abandoned runs do not."""
    first = AttemptMetrics(duration_s=90.0, path_length_m={"right": 0.9}, economy=1.8, errors=3, score=0.4).as_dict()
    stored = [
        *attempt_records("gyri", 0.4, first, day=0, ends=("completed", "terminated")),
        *attempt_records("skull", 0.9, {"economy": 1.1}, day=1, ends=("completed",)),
        *attempt_records("gyri", 0.55, None, day=2, ends=("terminated",)),  # stopped early: no metrics
        *attempt_records("gyri", 0.7, {"economy": 1.2, "errors": 0}, day=3, ends=()),  # never finished
        # Nested metrics (dataclasses.asdict's shape) read as their dotted flat names.
        *attempt_records("gyri", 0.85, {"economy": 1.25, "path_length_m": {"right": 0.5}}, day=4, ends=("completed",)),
    ]
    assert all(xapi.validate(s) == [] for s in stored)
    assert learning_curve(stored, "score", module_id="gyri") == [(1, 0.4), (2, 0.55), (3, 0.85)]
    assert learning_curve(stored, "economy", module_id="gyri") == [(1, 1.8), (3, 1.25)]
    assert learning_curve(stored, "path_length_m.right", module_id="gyri") == [(1, 0.9), (3, 0.5)]
    assert learning_curve(stored, "duration_s", module_id="gyri") == [(1, 90.0), (2, 42.0), (3, 44.0)]
    assert learning_curve(stored, "economy") == [(1, 1.8), (2, 1.1), (4, 1.25)]
    found = attempts(stored, module_id="gyri")
    assert [(a.verb, a.success) for a in found] == [("terminated", False), ("terminated", False), ("completed", True)]
    assert found[0].timestamp == xapi.timestamp(1_790_000_000.0) and found[0].module_name == "Gyri"
