"""The runner on the bundled brain, from synthetic intents and poses: scoring of every target kind,
errors, time limits, hints, pause, the held instrument (target, no-go contact, off path), the xAPI
statements its events become, and adaptive practice."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from assets.twin import Twin
from sessions import intents as it
from sessions.profiles import xapi
from sessions.run import LocalSession, SessionConfig
from sessions.sim import working_scene
from sessions.tools import HandFrame
from sessions.training import adapt
from sessions.training.loader import parse_module
from sessions.training.record import EXT_METRICS, statements_for
from sessions.training.runner import TrainingRunner
from sessions.training.schema import Module
from xrcore.input import Hit, Picker
from xrcore.motion import look_rotation
from xrcore.types import HINT_EVENT, PAUSE_EVENT, FrameState, HandInput, InputState, Pose

LEFT = "left cerebral hemisphere (pial)"
RIGHT = "right cerebral hemisphere (pial)"
A = (-25.5, 57.4, 19.8)
B = (-44.3, 28.6, 36.7)


def module(brain: Twin, *steps: dict[str, Any]) -> Module:
    doc = {"schema": "medverse.module/1", "id": "t", "title": "T", "twin": "brain",
           "steps": [{"id": f"s{i}", "title": f"S{i}", "instructions": f"do {i}", **s} for i, s in enumerate(steps)]}  # fmt: skip
    return parse_module(doc, "t", structures={s.name for s in brain.structures})


def runner_for(m: Module, twin: Twin | None = None) -> tuple[TrainingRunner, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    return TrainingRunner(m, "alice", emit=events.append, twin=twin), events


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def frame(t: float, right: HandInput | None = None, left: HandInput | None = None, index: int = 0) -> FrameState:
    return FrameState(
        index, t, 1 / 90, head=Pose((0.0, 0.1, 0.5)), inputs=InputState(left=left or HandInput(), right=right or HandInput())
    )


def test_select_scores_and_counts_wrong_structures_and_hints(brain: Twin) -> None:
    m = module(brain, {"target": {"kind": "select", "structure": LEFT}, "hints": ["left", "more left"]})
    r, events = runner_for(m)
    r.on_intent(it.Select("alice", 0.5, RIGHT))
    r.on_intent(it.RequestHint("alice", 0.7))
    r.on_intent(it.Select("alice", 1.0, LEFT))
    assert r.done
    s = r.summary()
    step = s.steps[0]
    assert (step.passed, step.errors, step.hints, step.error_kinds) == (True, 1, 1, {"wrong_structure": 1})
    assert step.score == pytest.approx(1.0 - 0.1 - 0.05)
    assert s.score == pytest.approx(0.85) and s.success
    assert kinds(events) == ["started", "step_shown", "interacted", "error", "hint", "interacted", "step_passed", "finished"]


def test_landmark_within_and_outside_tolerance(brain: Twin) -> None:
    m = module(brain, {"target": {"kind": "landmark", "point_mm": list(A), "tolerance_mm": 4}})
    r, events = runner_for(m)
    r.on_intent(it.PlaceLandmark("alice", 0.2, "alice/L1", "L1", (A[0] + 10, A[1], A[2]), LEFT))
    err = next(e for e in events if e["type"] == "error")
    assert err["error"] == "outside_tolerance" and err["distance_mm"] == pytest.approx(10.0)
    r.on_intent(it.MoveLandmark("alice", 0.4, "alice/L1", (A[0] + 2, A[1], A[2]), LEFT))
    step = r.summary().steps[0]
    assert step.passed and step.accuracy_mm == pytest.approx(2.0)
    assert step.score == pytest.approx(1 - 0.5 * 2 / 4 - 0.1)


class Pointing:
    """What the runner reads of a session for the cursor: each hand's pointer hit (right hand only here)."""

    def __init__(self) -> None:
        self.hands: tuple[HandFrame, ...] = ()

    def at(self, point_mm: np.ndarray) -> Pointing:
        hit = Hit(LEFT, 0, np.asarray(point_mm, dtype=np.float64), 0.3, 0, np.array([0.0, 0.0, 1.0]))
        self.hands = (HandFrame("left", HandInput()), HandFrame("right", HandInput(aim=Pose()), hit=hit))
        return self


@pytest.mark.parametrize("detour", [0.0, 15.0])
def test_cursor_economy_is_its_path_over_the_straight_line_to_the_reference(brain: Twin, detour: float) -> None:
    """Pointing at a landmark 30 mm away: straight there is economy 1; a 15 mm sideways detour (out and
    back) makes the path 2 * sqrt(15^2 + 15^2) over 30 mm."""
    m = module(brain, {"target": {"kind": "landmark", "point_mm": list(A), "tolerance_mm": 4}})
    r, _ = runner_for(m)
    start, goal = np.array(A) + (30.0, 0.0, 0.0), np.array(A)
    mid = (start + goal) / 2 + (0.0, detour, 0.0)
    path = [start + (mid - start) * k / 10 for k in range(10)] + [mid + (goal - mid) * k / 10 for k in range(11)]
    pointing = Pointing()
    for k, point in enumerate(path):
        r.on_frame(frame(0.05 * k), session=pointing.at(point))
    r.on_intent(it.PlaceLandmark("alice", 1.1, "alice/L1", "L1", A, LEFT))
    metrics = r.summary().metrics
    expected = 1.0 if not detour else 2 * float(np.hypot(15.0, 15.0)) / 30.0
    assert metrics["economy"] == pytest.approx(expected, rel=1e-6)
    assert metrics["path_length_m.cursor"] == pytest.approx(0.030 * expected, rel=1e-6)


def test_measure_by_endpoints_either_way_round_and_by_distance(brain: Twin) -> None:
    m = module(brain, {"target": {"kind": "measure", "from_mm": list(A), "to_mm": list(B), "tolerance_mm": 3}},
               {"target": {"kind": "measure", "distance_mm": 30, "tolerance_mm": 2}})  # fmt: skip
    r, _events = runner_for(m)
    d = float(np.linalg.norm(np.subtract(A, B)))
    r.on_intent(it.Measure("alice", 0.1, "alice/M1", (A[0] + 4, A[1], A[2]), B, d))  # one end 4 mm off
    r.on_intent(it.Measure("alice", 0.2, "alice/M2", B, (A[0], A[1] + 1, A[2]), d))  # reversed, 1 mm off
    r.on_intent(it.Measure("alice", 0.3, "alice/M3", (0, 0, 0), (31.5, 0, 0), 31.5))
    s = r.summary()
    assert [x.passed for x in s.steps] == [True, True]
    assert s.steps[0].errors == 1 and s.steps[0].accuracy_mm == pytest.approx(1.0)
    assert s.steps[1].accuracy_mm == pytest.approx(1.5) and s.steps[1].score == pytest.approx(1 - 0.5 * 1.5 / 2)


def test_section_angle_offset_and_what_it_shows(brain: Twin) -> None:
    target = {"kind": "section", "point_mm": [0, -9, 0], "normal": [0, 1, 0], "angle_tolerance_deg": 10,
              "offset_tolerance_mm": 5, "shows": [LEFT, RIGHT]}  # fmt: skip
    m = module(brain, {"target": target})
    r, events = runner_for(m, brain)
    r.on_intent(it.AddClipPlane("alice", 0.1, "alice/P1", (0.0, -1.0, 0.0), -9.0, live=True))  # held, not final
    tilted = (0.0, float(np.cos(np.radians(20))), float(np.sin(np.radians(20))))
    r.on_intent(it.AddClipPlane("alice", 0.2, "alice/P1", tilted, 9.0))
    r.on_intent(it.AddClipPlane("alice", 0.3, "alice/P2", (0.0, 1.0, 0.0), 500.0))  # misses the brain entirely
    assert [e["error"] for e in events if e["type"] == "error"] == ["outside_tolerance", "outside_tolerance"]
    missed = [e for e in events if e["type"] == "interacted"][-1]
    assert missed["misses"] == [LEFT, RIGHT]
    r.on_intent(it.AddClipPlane("alice", 0.4, "alice/P3", (0.0, -1.0, 0.0), -11.0))  # sign-agnostic, 2 mm off
    step = r.summary().steps[0]
    assert step.passed and step.accuracy_mm == pytest.approx(2.0) and step.errors == 2
    assert step.score == pytest.approx(1 - 0.25 * 2 / 5 - 0.2)


def test_out_of_order_and_time_limits_move_on(brain: Twin) -> None:
    m = module(brain, {"target": {"kind": "select", "structure": LEFT}, "time_limit_s": 1},
               {"target": {"kind": "select", "structure": RIGHT}})  # fmt: skip
    r, events = runner_for(m)
    r.on_frame(frame(0.0))
    r.on_intent(it.Select("alice", 0.3, RIGHT))  # step 2's answer, too early
    assert events[-1]["error"] == "out_of_order"
    r.on_frame(frame(0.9))
    assert r.index == 0
    r.on_frame(frame(1.01))
    assert r.index == 1 and [e["error"] for e in events if e["type"] == "error"] == ["out_of_order", "timeout"]
    r.on_intent(it.Select("alice", 1.5, RIGHT))
    s = r.summary()
    assert [(x.reason, x.score) for x in s.steps] == [("timeout", 0.0), ("passed", 1.0)]
    assert s.score == pytest.approx(0.5) and not s.success


def test_pause_stops_the_clock_and_scoring_and_buttons_work(brain: Twin) -> None:
    m = module(brain, {"target": {"kind": "select", "structure": LEFT}, "time_limit_s": 2, "hints": ["h1"]})
    r, events = runner_for(m)
    menu = HandInput(aim=Pose(), buttons=frozenset({"menu"}))
    r.on_frame(frame(0.0))
    r.on_frame(frame(0.5, left=menu))  # left menu: pause
    assert r.paused
    r.on_intent(it.Select("alice", 1.0, LEFT))  # not scored while paused
    r.on_frame(frame(4.0, left=menu))  # still held: no new press
    r.on_frame(frame(5.0))
    r.on_frame(frame(5.5, left=menu))  # pressed again: resume
    assert not r.paused and not r.done
    r.on_frame(frame(6.0, right=menu))  # right menu: a hint
    r.on_intent(it.Select("alice", 6.2, LEFT))
    step = r.summary().steps[0]
    assert step.passed and step.hints_asked == 1
    assert step.duration_s == pytest.approx(0.5 + 0.7)  # 5 s paused do not count
    assert kinds(events).count("paused") == 1 and kinds(events).count("resumed") == 1


def test_desktop_keys_ask_for_a_hint_and_pause(brain: Twin) -> None:
    """A desktop window has no menu buttons: its F1 and P keys arrive as frame events that do the same."""
    m = module(brain, {"target": {"kind": "select", "structure": LEFT}, "hints": ["h1"]})
    r, events = runner_for(m)
    r.on_frame(frame(0.0))
    r.on_frame(replace(frame(0.5), events=(PAUSE_EVENT,)))
    assert r.paused
    r.on_frame(replace(frame(1.5), events=(PAUSE_EVENT,)))
    assert not r.paused
    r.on_frame(replace(frame(2.0), events=(HINT_EVENT,)))
    r.on_intent(it.Select("alice", 2.5, LEFT))
    step = r.summary().steps[0]
    assert step.passed and step.hints_asked == 1
    assert step.duration_s == pytest.approx(1.5)
    assert kinds(events).count("paused") == 1


def instrument_module(brain: Twin, **extra: Any) -> tuple[Module, np.ndarray, np.ndarray]:
    verts = np.asarray(brain.structure(LEFT).vertices, dtype=np.float64) * 1000.0
    target = verts[np.argmin(verts[:, 0])]  # the most lateral point of the left hemisphere
    entry = target - np.array([30.0, 0.0, 0.0])
    spec = {"kind": "instrument", "instrument": {"name": "needle", "length_mm": 40}, "target_mm": target.tolist(),
            "tolerance_mm": 2, "path_mm": [entry.tolist(), target.tolist()], "path_tolerance_mm": 5, **extra}  # fmt: skip
    return module(brain, {"target": spec}), target, entry


class Needle:
    """Frames whose right hand holds the needle with its tip at a twin point, pointing along ``u``."""

    def __init__(self, brain: Twin, length_mm: float = 40.0) -> None:
        self.session = LocalSession(working_scene(brain), SessionConfig(hud=False), Picker(brain))
        self.length = length_mm

    def frame(self, t: float, tip_mm: np.ndarray, u: np.ndarray) -> FrameState:
        m = self.session.scene.model_matrix()
        hand_mm = tip_mm - self.length * u / np.linalg.norm(u)
        hand = m[:3, :3] @ (hand_mm / 1000.0) + m[:3, 3]
        tip = m[:3, :3] @ (tip_mm / 1000.0) + m[:3, 3]
        return frame(t, right=HandInput(aim=Pose(tuple(hand), look_rotation(hand.tolist(), tip.tolist()))))


def test_instrument_reaches_the_target_along_the_path(brain: Twin) -> None:
    m, target, entry = instrument_module(brain)
    r, _events = runner_for(m)
    needle = Needle(brain)
    r.attach(needle.session)
    r.start(0.0)
    assert needle.session.belt.tool("right").name == "instrument"  # the step handed it over
    assert needle.session.instructions == ("Step 1/1: S0", "do 0")
    u = np.array([1.0, 0.0, 0.0])
    for k, f in enumerate([*np.linspace(0.0, 0.99, 12), 0.995, 0.995, 0.995, 0.995]):  # comes to rest 0.25 mm short
        f_ = needle.frame(0.1 * k, entry - 20 * u + f * (target - entry + 20 * u), u)
        needle.session.step(f_)
        r.on_frame(f_, needle.session)
        if k == 0:  # the gaze panel shows the step, and the needle is drawn with a ball at its tip
            texts = [label.text for label in needle.session.scene.overlay_labels]
            assert "Step 1/1: S0" in texts and "do 0" in texts
            assert len(needle.session.scene.overlay) >= 2
        if k == 12:
            assert not r.done  # within tolerance, not yet at rest
    step = r.summary().steps[0]
    assert step.passed and step.errors == 0 and step.accuracy_mm == pytest.approx(0.25, abs=1e-3)
    assert needle.session.belt.tool("right").name == "select"  # and took it back
    assert r.summary().metrics["path_length_m.tip"] > 0.0


def test_instrument_off_path_and_no_go_contact(brain: Twin) -> None:
    m, target, entry = instrument_module(brain, no_go=[RIGHT], no_go_margin_mm=2)
    r, events = runner_for(m)
    needle = Needle(brain)
    r.attach(needle.session)
    u = np.array([1.0, 0.0, 0.0])
    rv = np.asarray(brain.structure(RIGHT).vertices, dtype=np.float64) * 1000.0
    medial = rv[np.argmin(rv[:, 0])]
    positions = [
        entry,  # on the path: the approach begins
        entry + np.array([0.0, 12.0, 0.0]),  # 12 mm off the path
        entry + np.array([0.0, 13.0, 0.0]),  # still off: the same excursion
        medial - 1.0 * u,  # 1 mm from the right hemisphere: a no-go contact
        medial - 1.2 * u,  # still touching: the same contact
        entry,
        target,
        target,
        target,
        target,
    ]
    for k, p in enumerate(positions):
        r.on_frame(needle.frame(0.1 * k, p, u), needle.session)
    errors = [e["error"] for e in events if e["type"] == "error"]
    assert errors.count("off_path") >= 1 and errors.count("no_go_contact") == 1
    step = r.summary().steps[0]
    assert step.passed and step.error_kinds["no_go_contact"] == 1
    assert step.score == pytest.approx(max(0.0, step.quality - 0.1 * step.errors))


def test_events_become_valid_xapi_statements(brain: Twin) -> None:
    m = module(brain, {"target": {"kind": "select", "structure": LEFT}, "hints": ["h"]},
               {"target": {"kind": "landmark", "point_mm": list(A), "tolerance_mm": 3}})  # fmt: skip
    r, events = runner_for(m)
    r.on_frame(frame(0.0, right=HandInput(aim=Pose((0.1, 0.0, 0.3)))))
    r.on_intent(it.Select("alice", 0.2, RIGHT))
    r.on_intent(it.RequestHint("alice", 0.3))
    r.on_intent(it.PauseTraining("alice", 0.4, True))
    r.on_intent(it.PauseTraining("alice", 0.6, False))
    r.on_frame(frame(0.7, right=HandInput(aim=Pose((0.15, 0.02, 0.3)))))
    r.on_intent(it.Select("alice", 0.8, LEFT))
    r.finish(1.0)  # the landmark step never done
    statements = [s for e in events for s in statements_for(e, trainee="alice", module=m, wall_start=1.7e9)]
    assert all(xapi.validate(s) == [] for s in statements), [xapi.validate(s) for s in statements]
    verbs = [s["verb"]["id"].rsplit("/", 1)[1] for s in statements]
    assert verbs == ["launched", "initialized", "experienced", "interacted", "committed-error", "requested-hint", "suspended",
                     "resumed", "interacted", "passed", "experienced", "failed", "terminated"]  # fmt: skip
    assert len({s["context"]["registration"] for s in statements}) == 1
    final = statements[-1]
    assert final["result"]["success"] is False and final["result"]["completion"] is False
    assert final["result"]["extensions"][EXT_METRICS]["errors"] == 1.0
    assert final["result"]["score"]["scaled"] == pytest.approx((1 - 0.1 - 0.05) / 2)
    step = statements[2]
    assert step["object"]["id"].endswith("/modules/t/steps/s0") and step["context"]["contextActivities"]["parent"][0][
        "id"
    ].endswith("/modules/t")
    assert statements[3]["timestamp"].startswith("2023-11-14T22:13:20.2")


def test_adaptive_rules(brain: Twin) -> None:
    m = module(brain, {"target": {"kind": "landmark", "point_mm": list(A), "tolerance_mm": 5, "tolerance_floor_mm": 3}},
               {"target": {"kind": "select", "structure": LEFT}, "time_limit_s": 20, "hints": ["h"]})  # fmt: skip

    def stmt(step: str, passed: bool, score: float) -> dict[str, Any]:
        verb = "passed" if passed else "failed"
        return xapi.statement(trainee="alice", verb=verb, module_id="t", module_name="T", step_id=step,
                              registration="0f8fad5b-d9cb-469f-a165-70867728950e", timestamp=1.7e9,
                              result=xapi.result(scaled=score))  # fmt: skip

    record = [stmt("s0", True, 0.9), stmt("s0", True, 0.95), stmt("s1", False, 0.0), stmt("s1", False, 0.2)]
    adapted, _notes = adapt.adapt_module(m, record)
    assert adapted.steps[0].target.tolerance_mm == pytest.approx(4.0)  # type: ignore[union-attr]
    assert adapted.steps[1].time_limit_s == pytest.approx(20 * 1.25**2) and adapted.steps[1].auto_hints == 1
    more = record[:2] * 3  # six passes in a row: 0.8^3 of 5 mm is under the 3 mm floor
    assert adapt.adapt_module(m, more)[0].steps[0].target.tolerance_mm == pytest.approx(3.0)  # type: ignore[union-attr]
    assert adapt.adapt_module(m, record * 4)[0].steps[1].time_limit_s == pytest.approx(40.0)  # at most twice
    # the automatic hint is shown at the step's start, counted, not penalised
    r, events = runner_for(adapted)
    r.on_intent(it.PlaceLandmark("alice", 0.1, "alice/L1", "L1", A, LEFT))
    r.on_frame(frame(0.2))
    hint = next(e for e in events if e["type"] == "hint")
    assert hint["auto"] is True and r.instructions[-1] == "Hint: h"
    r.on_intent(it.Select("alice", 0.3, LEFT))
    assert r.summary().steps[1].score == 1.0 and r.summary().steps[1].hints == 1
    # what needs practice: never tried 1; failed with low scores; passed well little
    hist = adapt.step_history(record, "t")
    assert adapt.need(hist["s0"]) == pytest.approx(1 - 0.925) and adapt.need(hist["s1"]) == pytest.approx(1.0)
    other = module(brain, {"target": {"kind": "select", "structure": RIGHT}})
    other = Module("u", "U", "brain", other.steps)
    choice = adapt.pick_next([m, other], record)
    assert choice.module.id == "u" and choice.needs == {"u": 1.0, "t": pytest.approx((0.075 + 1.0) / 2)}
    assert adapt.pick_next([m], record).steps == ("s1",)
