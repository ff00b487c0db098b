"""The training runner: scores a module's steps from the trainee's poses and intents.

:class:`TrainingRunner` never looks at the renderer: each frame it reads the head and hands
(``frame.head``, ``frame.inputs``) and the twin's placement (``Scene.twin_from_world``) to put the
held instrument's tip in twin millimetres, and it reads every final intent the workspace applies
(``Workspace.on_applied``). So the same module scores a trainee in the simulator, at a desktop
window, in a headset, or one whose intents arrive from a room.

Steps run in order. A step is *shown* (its instructions go to the session's gaze panel), then
scored by its target kind (``docs/training.md``): select, landmark, measure, section, instrument.
It ends when its target is reached (passed when its score is at least its ``pass_score``), at its
time limit (failed), or when the run ends (failed). Hints come from a :class:`RequestHint` (the
right ``menu`` button) or automatically (adaptive practice). The left ``menu`` button pauses.

Everything that happens is an event, a plain dict handed to ``emit`` (:mod:`sessions.training.record`
turns them into xAPI statements): ``started``, ``step_shown``, ``interacted``, ``error``, ``hint``,
``step_passed``, ``step_failed``, ``paused``, ``resumed``, ``finished``. Each has ``type``, ``t``
(session clock, s), ``module`` and, inside a step, ``step`` and ``step_index``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sessions import intents as it
from sessions.training.geometry import (
    SurfaceProximity,
    plane_angle_deg,
    plane_cuts,
    plane_point_distance,
    polyline_distance,
    shaft_points,
)
from sessions.training.schema import (
    InstrumentTarget,
    LandmarkTarget,
    MeasureTarget,
    Module,
    SectionTarget,
    SelectTarget,
    Step,
)
from xrcore.types import HINT_EVENT, PAUSE_EVENT

logger = logging.getLogger(__name__)

#: Buttons that ask for a hint / pause or resume, per hand.
HINT_BUTTON = ("right", "menu")
#: How long the instrument's tip must stay within tolerance of the target to pass (s): the tip is
#: scored where it comes to rest, not where it first crossed into the tolerance.
DWELL_S = 0.25
PAUSE_BUTTON = ("left", "menu")

Emit = Callable[[dict[str, Any]], Any]


@dataclass
class StepResult:
    """How one step went. ``score`` in [0, 1]; ``reason``: ``passed``, ``low_score`` (reached, but
    the score is under the step's pass score), ``timeout`` or ``ended`` (the run ended first)."""

    id: str
    title: str
    kind: str
    index: int
    weight: float
    passed: bool = False
    reached: bool = False
    score: float = 0.0
    quality: float = 0.0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    hints: int = 0
    hints_asked: int = 0
    duration_s: float = 0.0
    accuracy_mm: float | None = None
    reason: str = ""
    settings: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class RunSummary:
    """One attempt at a module: the weighted ``score``, ``success``, per-step results, totals, and the
    skill ``metrics`` (a flat dict of numbers, :func:`sessions.profiles.metrics.attempt_metrics`)."""

    module: str
    title: str
    trainee: str
    registration: str
    attempt: int
    score: float
    success: bool
    duration_s: float
    steps: list[StepResult]
    errors: int
    hints: int
    accuracy_mm: float | None
    metrics: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["steps"] = [s.as_dict() for s in self.steps]
        return out


class _Track:
    """A pose stream: times (s) and positions (world m), appended every frame."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.positions: list[tuple[float, float, float]] = []

    def add(self, t: float, p: Any) -> None:
        if self.times and t <= self.times[-1]:
            return
        self.times.append(t)
        self.positions.append((float(p[0]), float(p[1]), float(p[2])))


class _StepState:
    """What the runner keeps of the step under way."""

    def __init__(self, step: Step, index: int, started: float) -> None:
        self.step = step
        self.result = StepResult(step.id, step.title, step.target.kind, index, step.weight)
        self.started = started
        self.paused_s = 0.0
        self.hints_shown = 0
        self.hint_lines: list[str] = []
        # instrument state
        self.proximity: list[tuple[str, SurfaceProximity]] = []
        self.engaged = False
        self.off_path = False
        self.in_contact = False
        self.closest_mm = math.inf
        self.arrived: float | None = None  # when the tip last came within tolerance of the target
        self.tip_start_world: np.ndarray | None = None
        self.tip_last_world: np.ndarray | None = None
        self.section_vertices: list[tuple[str, np.ndarray]] = []
        self.previous_tool: str | None = None
        self.cursor_started = False  # the pointer's hit was seen in this step (its need is counted)


class TrainingRunner:
    """Runs ``module`` for ``trainee``, from poses and intents; see the module docstring.

    Parameters
    ----------
    module
        The loaded (and possibly adapted) :class:`~sessions.training.schema.Module`.
    trainee
        Who is training (the profile the statements go to).
    emit
        Called with each event dict (a :class:`sessions.training.record.Recorder`, or a list's
        ``append`` in tests). Never blocks the frame loop if it does not block itself.
    twin
        The module's twin (for section and no-go geometry); taken from the session's scene when
        :meth:`attach` is called.
    registration
        The attempt's id (xAPI ``context.registration``); a fresh uuid4 by default.
    attempt
        The attempt's number (1 for the first).
    """

    def __init__(
        self,
        module: Module,
        trainee: str,
        *,
        emit: Emit,
        twin: Any = None,
        registration: str | None = None,
        attempt: int = 1,
        adaptation: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        if not trainee.strip():
            raise ValueError("a training run needs a trainee name")
        self.module = module
        self.trainee = trainee
        self.emit = emit
        self.twin = twin
        self.registration = registration or str(uuid.uuid4())
        self.attempt = attempt
        self.adaptation = adaptation or {}
        self.session: Any = None
        self.results: list[StepResult] = []
        self.current: _StepState | None = None
        self.index = -1
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.now = 0.0
        self.paused = False
        self.paused_at = 0.0
        self.paused_total = 0.0
        self.done = False
        self.tracks: dict[str, _Track] = {name: _Track() for name in ("head", "left", "right", "tip", "cursor")}
        self.tip_needed_m = 0.0
        self.cursor_needed_m = 0.0
        self._buttons: dict[str, frozenset[str]] = {"left": frozenset(), "right": frozenset()}
        self._summary: RunSummary | None = None
        self.feedback = ""
        self.instructions: tuple[str, ...] = ()

    # --- wiring -------------------------------------------------------------------------------------

    def attach(self, session: Any) -> None:
        """Hook into a :class:`~sessions.run.LocalSession`: its workspace's final intents come to
        :meth:`on_intent`, its panels show the instructions and feedback."""
        self.session = session
        if self.twin is None:
            self.twin = session.scene.twin
        session.workspace.on_applied(self.on_intent)
        self._show()

    # --- the clock ----------------------------------------------------------------------------------

    def start(self, t: float = 0.0) -> None:
        """Start the module at session time ``t`` (the first frame or intent starts it otherwise)."""
        if self.started_at is not None:
            return
        self.started_at = self.now = t
        self._event("started", t, title=self.module.title, twin=self.module.twin, steps=len(self.module.steps),
                    attempt=self.attempt, adaptation=self.adaptation)  # fmt: skip
        self._next_step(t)

    def _active_elapsed(self, state: _StepState, t: float) -> float:
        paused_now = (t - self.paused_at) if self.paused else 0.0
        return max(0.0, t - state.started - state.paused_s - paused_now)

    # --- per frame ----------------------------------------------------------------------------------

    def on_frame(self, frame: Any, session: Any = None) -> bool:
        """Take one frame: poses (instrument tip, metrics), buttons (hint, pause), time limits.
        Returns :attr:`done` (so it can be a loop's ``on_frame``)."""
        session = session if session is not None else self.session
        t = float(frame.predicted_display_time)
        if self.started_at is None:
            self.start(t)
        if self.done:
            return True
        self.now = max(self.now, t)
        inputs = frame.inputs
        for event in getattr(frame, "events", ()):  # a desktop's keys for the menu buttons
            if event == PAUSE_EVENT:
                self.on_intent(it.PauseTraining(self.trainee, t, not self.paused))
            elif event == HINT_EVENT:
                self.on_intent(it.RequestHint(self.trainee, t))
        for side in ("left", "right"):
            hand = inputs.left if side == "left" else inputs.right
            pressed = hand.buttons - self._buttons[side]
            self._buttons[side] = hand.buttons
            if (side, "menu") == PAUSE_BUTTON and "menu" in pressed:
                self.on_intent(it.PauseTraining(self.trainee, t, not self.paused))
            elif (side, "menu") == HINT_BUTTON and "menu" in pressed:
                self.on_intent(it.RequestHint(self.trainee, t))
        if self.paused or self.current is None:
            return self.done
        self.tracks["head"].add(t, frame.head.position)
        for side in ("left", "right"):
            hand = inputs.left if side == "left" else inputs.right
            if hand.aim is not None:
                self.tracks[side].add(t, hand.aim.position)
        state = self.current
        if isinstance(state.step.target, InstrumentTarget) and session is not None:
            self._track_instrument(state, frame, session, t)
        elif session is not None:
            self._track_cursor(state, session, t)
        limit = state.step.time_limit_s
        if self.current is state and limit is not None and self._active_elapsed(state, t) >= limit:
            self._error(state, "timeout", t, f"the {limit:g} s time limit ran out")
            self._end_step(state, t, "timeout")
        return self.done

    # --- intents ------------------------------------------------------------------------------------

    def on_intent(self, intent: it.Intent) -> None:
        """Score one final intent (hooked to ``Workspace.on_applied``; training intents come here
        directly)."""
        t = float(intent.time)
        if self.started_at is None:
            self.start(t)
        if self.done:
            return
        self.now = max(self.now, t)
        if isinstance(intent, it.PauseTraining):
            (self.pause if intent.paused else self.resume)(t)
            return
        if self.paused or self.current is None:
            return
        state = self.current
        if isinstance(intent, it.RequestHint):
            self.request_hint(t)
            return
        target = state.step.target
        if isinstance(intent, it.Select) and isinstance(target, SelectTarget):
            self._on_select(state, intent, target, t)
        elif isinstance(intent, (it.PlaceLandmark, it.MoveLandmark)) and isinstance(target, LandmarkTarget):
            self._on_landmark(state, intent, target, t)
        elif isinstance(intent, it.Measure) and isinstance(target, MeasureTarget):
            self._on_measure(state, intent, target, t)
        elif isinstance(intent, it.AddClipPlane) and intent.final and isinstance(target, SectionTarget):
            self._on_section(state, intent, target, t)

    def _later_step_wanting(self, state: _StepState, test: Callable[[Step], bool]) -> Step | None:
        for step in self.module.steps[state.result.index + 1 :]:
            if test(step):
                return step
        return None

    def _on_select(self, state: _StepState, intent: it.Select, target: SelectTarget, t: float) -> None:
        if intent.structure is None:
            return
        self._event("interacted", t, state, action="selected", structure=intent.structure)
        if intent.structure == target.structure:
            self._reach(state, t, 1.0, None, f"correct: {target.structure}")
            return
        later = self._later_step_wanting(
            state, lambda s: isinstance(s.target, SelectTarget) and s.target.structure == intent.structure
        )
        if later is not None and "out_of_order" in state.step.watch:
            self._error(
                state, "out_of_order", t, f"{intent.structure} comes later (step {later.id!r})", structure=intent.structure
            )
        else:
            self._error(state, "wrong_structure", t, f"not that one: you selected {intent.structure}", structure=intent.structure)

    def _on_landmark(
        self, state: _StepState, intent: it.PlaceLandmark | it.MoveLandmark, target: LandmarkTarget, t: float
    ) -> None:
        point = np.asarray(intent.point_mm, dtype=np.float64)
        distance = float(np.linalg.norm(point - np.asarray(target.point_mm)))
        self._event("interacted", t, state, action="landmark", point_mm=_round(point), structure=intent.structure,
                    distance_mm=round(distance, 3))  # fmt: skip
        if distance <= target.tolerance_mm:
            self._reach(
                state, t, 1.0 - 0.5 * distance / target.tolerance_mm, distance, f"{distance:.1f} mm from the target: well placed"
            )
            return

        def wants(s: Step) -> bool:
            return (
                isinstance(s.target, LandmarkTarget)
                and float(np.linalg.norm(point - np.asarray(s.target.point_mm))) <= s.target.tolerance_mm
            )

        later = self._later_step_wanting(state, wants)
        if later is not None and "out_of_order" in state.step.watch:
            self._error(state, "out_of_order", t, f"that landmark belongs to a later step ({later.id!r})", distance_mm=distance)
        elif target.structure is not None and intent.structure != target.structure:
            self._error(state, "wrong_structure", t, f"on {intent.structure}, not {target.structure} ({distance:.1f} mm off)",
                        distance_mm=distance, structure=intent.structure)  # fmt: skip
        else:
            message = f"{distance:.1f} mm from the target (within {target.tolerance_mm:g} mm passes)"
            self._error(state, "outside_tolerance", t, message, distance_mm=distance)

    def _on_measure(self, state: _StepState, intent: it.Measure, target: MeasureTarget, t: float) -> None:
        a, b = np.asarray(intent.a_mm), np.asarray(intent.b_mm)
        if target.match == "endpoints" and target.from_mm is not None and target.to_mm is not None:
            ra, rb = np.asarray(target.from_mm), np.asarray(target.to_mm)
            straight = max(float(np.linalg.norm(a - ra)), float(np.linalg.norm(b - rb)))
            crossed = max(float(np.linalg.norm(a - rb)), float(np.linalg.norm(b - ra)))
            err = min(straight, crossed)
            what = f"the ends are within {err:.1f} mm of the reference points"
        else:
            err = abs(float(intent.distance_mm) - target.distance_mm)
            what = f"{intent.distance_mm:.1f} mm measured, {err:.1f} mm from the reference"
        self._event("interacted", t, state, action="measured", distance_mm=round(float(intent.distance_mm), 3),
                    a_mm=_round(a), b_mm=_round(b), error_mm=round(err, 3))  # fmt: skip
        if err <= target.tolerance_mm:
            self._reach(state, t, 1.0 - 0.5 * err / target.tolerance_mm, err, f"{what}: good")
        else:
            self._error(state, "outside_tolerance", t, f"{what} (within {target.tolerance_mm:g} mm passes)", distance_mm=err)

    def _on_section(self, state: _StepState, intent: it.AddClipPlane, target: SectionTarget, t: float) -> None:
        n = np.asarray(intent.normal, dtype=np.float64)
        length = float(np.linalg.norm(n))
        n, offset = n / length, float(intent.offset_mm) / length
        angle = plane_angle_deg(n, target.normal)
        off = plane_point_distance(n, offset, target.point_mm)
        missed = [name for name, verts in state.section_vertices if not plane_cuts(verts, n, offset)]
        self._event("interacted", t, state, action="section", normal=_round(n, 5), offset_mm=round(offset, 3),
                    angle_deg=round(angle, 3), offset_error_mm=round(off, 3), misses=missed)  # fmt: skip
        if angle <= target.angle_tolerance_deg and off <= target.offset_tolerance_mm and not missed:
            q = 1.0 - 0.25 * angle / target.angle_tolerance_deg - 0.25 * off / target.offset_tolerance_mm
            self._reach(state, t, q, off, f"good cut: {angle:.0f} degrees and {off:.1f} mm from the reference plane")
            return
        problems = []
        if angle > target.angle_tolerance_deg:
            problems.append(f"tilted {angle:.0f} degrees (within {target.angle_tolerance_deg:g})")
        if off > target.offset_tolerance_mm:
            problems.append(f"{off:.1f} mm away (within {target.offset_tolerance_mm:g})")
        if missed:
            problems.append(f"does not cut {', '.join(missed)}")
        self._error(state, "outside_tolerance", t, "cut " + "; ".join(problems), angle_deg=angle, distance_mm=off)

    # --- the instrument -----------------------------------------------------------------------------

    def instrument_pose(
        self, session: Any, frame: Any, target: InstrumentTarget
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(hand twin mm, tip twin mm, tip world m) of the held instrument this frame, or None when
        its hand is untracked."""
        spec = target.instrument
        hand = frame.inputs.left if spec.hand == "left" else frame.inputs.right
        if hand.aim is None:
            return None
        inv = session.scene.twin_from_world()
        origin_world = np.asarray(hand.aim.position, dtype=np.float64)
        hand_mm = (inv[:3, :3] @ origin_world + inv[:3, 3]) * 1000.0
        direction = inv[:3, :3] @ hand.aim.forward()
        direction /= float(np.linalg.norm(direction))
        tip_mm = hand_mm + direction * spec.length_mm
        tip_world = origin_world + hand.aim.forward() * (spec.length_mm / 1000.0 * float(session.scene.twin_scale))
        return hand_mm, tip_mm, tip_world

    def _track_instrument(self, state: _StepState, frame: Any, session: Any, t: float) -> None:
        target = state.step.target
        assert isinstance(target, InstrumentTarget)
        pose = self.instrument_pose(session, frame, target)
        if pose is None:
            return
        hand_mm, tip_mm, tip_world = pose
        self.tracks["tip"].add(t, tip_world)
        if state.tip_start_world is None:
            state.tip_start_world = tip_world
            # the straight-line need: from where the tip was when the step began to the target
            m = session.scene.model_matrix()
            goal = m[:3, :3] @ (np.asarray(target.target_mm) / 1000.0) + m[:3, 3]
            self.tip_needed_m += float(np.linalg.norm(goal - tip_world))
        state.tip_last_world = tip_world
        self.check_instrument(state, hand_mm, tip_mm, t)

    # --- the pointer's cursor ------------------------------------------------------------------------

    def _track_cursor(self, state: _StepState, session: Any, t: float) -> None:
        """Follow the pointer's hit on the twin (twin metres: the same whatever the twin's scale).

        With a pointer the hand hardly travels while the cursor sweeps the surface, so the cursor is
        what economy and smoothness measure for select, landmark and measure steps; their need is the
        straight line from where the cursor was when the step began to the reference (a measurement's:
        to its first end, then to its second; a selection's: to the structure's nearest point)."""
        hits = [hf.hit for hf in sorted(session.hands, key=lambda hf: hf.side != "right") if hf.hit is not None]
        if not hits:
            return
        point = np.asarray(hits[0].point_mm, dtype=np.float64)
        self.tracks["cursor"].add(t, point / 1000.0)
        if not state.cursor_started:
            state.cursor_started = True
            self.cursor_needed_m += self._pointer_need_mm(state.step.target, point) / 1000.0

    def _pointer_need_mm(self, target: Any, start_mm: np.ndarray) -> float:
        if isinstance(target, LandmarkTarget):
            return float(np.linalg.norm(np.asarray(target.point_mm) - start_mm))
        if isinstance(target, MeasureTarget) and target.from_mm is not None and target.to_mm is not None:
            a, b = np.asarray(target.from_mm), np.asarray(target.to_mm)
            return float(min(np.linalg.norm(a - start_mm), np.linalg.norm(b - start_mm)) + np.linalg.norm(b - a))
        if isinstance(target, SelectTarget) and self.twin is not None:
            try:
                vertices = np.asarray(self.twin.structure(target.structure).vertices, dtype=np.float64) * 1000.0
            except (KeyError, ValueError):
                return 0.0
            return float(np.sqrt(((vertices - start_mm) ** 2).sum(axis=1).min()))
        return 0.0  # a section is set by the hand's pose, not by sweeping a cursor to a point

    def check_instrument(self, state: _StepState, hand_mm: np.ndarray, tip_mm: np.ndarray, t: float) -> None:
        """Score one instrument position (twin mm): no-go contact, path, target."""
        target = state.step.target
        assert isinstance(target, InstrumentTarget)
        if state.proximity:
            points = shaft_points(hand_mm, tip_mm)
            touching = [name for name, prox in state.proximity if prox.distance(points) <= target.no_go_margin_mm]
            if touching and not state.in_contact:
                self._error(state, "no_go_contact", t, f"the {target.instrument.name} touched {', '.join(touching)}",
                            structure=touching[0], tip_mm=_round(tip_mm))  # fmt: skip
            state.in_contact = bool(touching)
        if target.path_mm and target.path_tolerance_mm is not None:
            d = polyline_distance(tip_mm, np.asarray(target.path_mm, dtype=np.float64))
            if d <= target.path_tolerance_mm:
                state.engaged = True
                state.off_path = False
            elif state.engaged and not state.off_path:
                state.off_path = True
                self._error(state, "off_path", t, f"{d:.1f} mm off the approach path (within {target.path_tolerance_mm:g} mm)",
                            distance_mm=d, tip_mm=_round(tip_mm))  # fmt: skip
        if self.current is not state:
            return
        distance = float(np.linalg.norm(tip_mm - np.asarray(target.target_mm)))
        state.closest_mm = min(state.closest_mm, distance)
        if distance > target.tolerance_mm:
            state.arrived = None
            return
        if state.arrived is None:
            state.arrived = t
        if t - state.arrived >= DWELL_S:
            self._event("interacted", t, state, action="instrument", tip_mm=_round(tip_mm), distance_mm=round(distance, 3))
            self._reach(state, t, 1.0 - 0.5 * distance / target.tolerance_mm, distance,
                        f"the {target.instrument.name} reached the target ({distance:.1f} mm)")  # fmt: skip

    # --- hints, pause -------------------------------------------------------------------------------

    def request_hint(self, t: float | None = None, *, auto: bool = False) -> str | None:
        """Show the current step's next hint (counted; penalised unless ``auto``). Returns it, or
        None when there is none left."""
        state = self.current
        t = self.now if t is None else t
        if state is None or self.done:
            return None
        if state.hints_shown >= len(state.step.hints):
            self._say("no more hints for this step")
            return None
        text = state.step.hints[state.hints_shown]
        state.hints_shown += 1
        state.hint_lines.append(f"Hint: {text}")
        state.result.hints += 1
        if not auto:
            state.result.hints_asked += 1
        self._event("hint", t, state, text=text, number=state.hints_shown, auto=auto)
        self._show()
        return text

    def pause(self, t: float | None = None) -> None:
        """Stop the clock: time limits wait and actions are not scored until :meth:`resume`."""
        if self.paused or self.done:
            return
        t = self.now if t is None else t
        self.paused, self.paused_at = True, t
        self._event("paused", t, self.current)
        self._say("paused: press the left menu button to go on")

    def resume(self, t: float | None = None) -> None:
        if not self.paused:
            return
        t = self.now if t is None else t
        span = max(0.0, t - self.paused_at)
        self.paused = False
        self.paused_total += span
        if self.current is not None:
            self.current.paused_s += span
        self._event("resumed", t, self.current, paused_s=round(span, 3))
        self._say("resumed")

    # --- steps --------------------------------------------------------------------------------------

    def _next_step(self, t: float) -> None:
        self.index += 1
        if self.index >= len(self.module.steps):
            self.finish(t)
            return
        step = self.module.steps[self.index]
        state = _StepState(step, self.index, t)
        state.result.settings = _settings(step)
        self.current = state
        self._prepare(state)
        self._event("step_shown", t, state, title=step.title, instructions=step.instructions, kind=step.target.kind,
                    settings=state.result.settings)  # fmt: skip
        self.feedback = ""
        self._show()
        for _ in range(min(step.auto_hints, len(step.hints))):
            self.request_hint(t, auto=True)

    def _prepare(self, state: _StepState) -> None:
        target = state.step.target
        twin = self.twin
        if isinstance(target, SectionTarget) and target.shows and twin is not None:
            by_name = {s.name: s for s in twin.structures}
            state.section_vertices = [(n, np.asarray(by_name[n].vertices, dtype=np.float64) * 1000.0) for n in target.shows]
        if isinstance(target, InstrumentTarget):
            if target.no_go and twin is not None:
                by_name = {s.name: s for s in twin.structures}
                state.proximity = [
                    (n, SurfaceProximity(np.asarray(by_name[n].vertices, dtype=np.float64) * 1000.0, by_name[n].faces))
                    for n in target.no_go
                ]
            self._hold_instrument(state)

    def _hold_instrument(self, state: _StepState) -> None:
        """Put the instrument (its length set) in the step's hand; the tool it replaced comes back
        when the step ends."""
        session = self.session
        target = state.step.target
        if session is None or not isinstance(target, InstrumentTarget):
            return
        side = target.instrument.hand
        belt = session.belt
        state.previous_tool = belt.tool(side).name
        for intent in belt.choose(session.ctx, side, "instrument"):
            session.workspace.apply(intent)
        tool = belt.tool(side)
        if hasattr(tool, "configure"):
            tool.configure(length_mm=target.instrument.length_mm, name=target.instrument.name)

    def _release_instrument(self, state: _StepState) -> None:
        session = self.session
        target = state.step.target
        if session is None or not isinstance(target, InstrumentTarget) or state.previous_tool is None:
            return
        for intent in session.belt.choose(session.ctx, target.instrument.hand, state.previous_tool):
            session.workspace.apply(intent)

    def _reach(self, state: _StepState, t: float, quality: float, accuracy_mm: float | None, message: str) -> None:
        r = state.result
        r.reached = True
        r.quality = max(0.0, min(1.0, quality))
        r.accuracy_mm = None if accuracy_mm is None else round(float(accuracy_mm), 3)
        self._say(message)
        self._end_step(state, t, "passed")

    def _error(self, state: _StepState, kind: str, t: float, message: str, **detail: Any) -> None:
        watched = kind in state.step.watch
        if watched:
            state.result.errors += 1
            state.result.error_kinds[kind] = state.result.error_kinds.get(kind, 0) + 1
            clean = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in detail.items()}
            self._event("error", t, state, error=kind, message=message, **clean)
        self._say(message)

    def _end_step(self, state: _StepState, t: float, reason: str) -> None:
        r = state.result
        s = state.step.scoring
        r.duration_s = round(self._active_elapsed(state, t), 4)
        if r.reached:
            r.score = round(max(0.0, min(1.0, r.quality - s.error_penalty * r.errors - s.hint_penalty * r.hints_asked)), 4)
            r.passed = r.score >= s.pass_score
            r.reason = "passed" if r.passed else "low_score"
        else:
            r.score, r.passed, r.reason = 0.0, False, reason
            if isinstance(state.step.target, InstrumentTarget) and math.isfinite(state.closest_mm):
                r.accuracy_mm = round(state.closest_mm, 3)
        self._release_instrument(state)
        self.results.append(r)
        self._event("step_passed" if r.passed else "step_failed", t, state, result=r.as_dict())
        logger.info("step %s of %s: %s, score %.2f", r.id, self.module.id, r.reason, r.score)
        self.current = None
        self._next_step(t)

    def finish(self, t: float | None = None) -> RunSummary:
        """End the run at ``t`` (the step under way and those after it fail as ``ended``) and
        return the summary; idempotent."""
        if self._summary is not None:
            return self._summary
        t = self.now if t is None else t
        if self.started_at is None:
            self.start(t)
            if self._summary is not None:
                return self._summary
        if self.paused:
            self.resume(t)
        self.done = True  # no more scoring: ending the step under way must not start the next
        if self.current is not None:
            state = self.current
            state.result.duration_s = round(self._active_elapsed(state, t), 4)
            state.result.reason = "ended"
            if isinstance(state.step.target, InstrumentTarget) and math.isfinite(state.closest_mm):
                state.result.accuracy_mm = round(state.closest_mm, 3)
            self._release_instrument(state)
            self.results.append(state.result)
            self._event("step_failed", t, state, result=state.result.as_dict())
            self.current = None
        for i in range(len(self.results), len(self.module.steps)):
            step = self.module.steps[i]
            self.results.append(StepResult(step.id, step.title, step.target.kind, i, step.weight, reason="ended",
                                           settings=_settings(step)))  # fmt: skip
        self.finished_at = t
        summary = self._make_summary(t)
        self._summary = summary
        self._event("finished", t, summary=summary.as_dict())
        self._say(f"module finished: score {summary.score:.0%}, {'passed' if summary.success else 'not passed'}")
        self.instructions = (f"{self.module.title}: finished", f"score {summary.score:.0%}")
        self._show()
        return summary

    def summary(self) -> RunSummary:
        """The run's summary (finishing it now if it has not finished)."""
        return self._summary if self._summary is not None else self.finish()

    def _make_summary(self, t: float) -> RunSummary:
        total_w = sum(r.weight for r in self.results) or 1.0
        score = round(sum(r.weight * r.score for r in self.results) / total_w, 4)
        success = all(r.passed for r in self.results) and score >= self.module.pass_score
        accuracies = [r.accuracy_mm for r in self.results if r.accuracy_mm is not None and r.reached]
        accuracy = round(float(np.mean(accuracies)), 3) if accuracies else None
        started = self.started_at if self.started_at is not None else t
        duration = round(max(0.0, t - started - self.paused_total), 4)
        errors = sum(r.errors for r in self.results)
        metrics = self._metrics(duration, errors, accuracy, score)
        return RunSummary(self.module.id, self.module.title, self.trainee, self.registration, self.attempt, score, success,
                          duration, self.results, errors, sum(r.hints for r in self.results), accuracy, metrics)  # fmt: skip

    def _metrics(self, duration: float, errors: int, accuracy: float | None, score: float) -> dict[str, float]:
        """The skill metrics of the attempt from its pose streams (:mod:`sessions.profiles.metrics`)."""
        from sessions.profiles import metrics as skill  # noqa: PLC0415 - profiles only when an attempt ends

        tracks = {
            name: skill.PoseTrack(
                np.asarray(tr.times, dtype=np.float64), np.asarray(tr.positions, dtype=np.float64).reshape(-1, 3)
            )
            for name, tr in self.tracks.items()
            if len(tr.times) >= 2
        }
        # the head sways all the time in a headset: it is not what works, so it is kept out of idle
        # time, economy and smoothness, and only its path is reported
        head = tracks.pop("head", None)
        needs = {"tip": self.tip_needed_m, "cursor": self.cursor_needed_m}
        needed = {name: need for name, need in needs.items() if name in tracks and need > 0} or None
        result = skill.attempt_metrics(
            tracks, duration_s=duration, needed_m=needed, errors=errors, accuracy_mm=accuracy, score=score
        )
        out = {k: float(v) for k, v in result.as_dict().items()}
        if head is not None:
            out["path_length_m.head"] = skill.path_length(head)
        return out

    # --- what the trainee sees ----------------------------------------------------------------------

    def _say(self, message: str) -> None:
        self.feedback = message
        if self.session is not None:
            self.session.feedback = message

    def _show(self) -> None:
        state = self.current
        if state is not None:
            n = len(self.module.steps)
            lines = [f"Step {state.result.index + 1}/{n}: {state.step.title}", state.step.instructions, *state.hint_lines]
            if self.paused:
                lines.append("(paused)")
            self.instructions = tuple(lines)
        elif not self.done:
            self.instructions = (self.module.title,)
        if self.session is not None:
            self.session.instructions = self.instructions
            self.session.feedback = self.feedback

    # --- events -------------------------------------------------------------------------------------

    def _event(self, event_type: str, t: float, state: _StepState | None = None, **fields: Any) -> None:
        event: dict[str, Any] = {
            "type": event_type, "t": round(float(t), 4), "module": self.module.id,
            "registration": self.registration, "attempt": self.attempt,
        }  # fmt: skip
        if state is not None:
            event["step"] = state.step.id
            event["step_index"] = state.result.index
            event["step_title"] = state.step.title
        event.update(fields)
        self.emit(event)


def _settings(step: Step) -> dict[str, Any]:
    """The step's tolerances and limits as run (adaptive practice changes them)."""
    t = step.target
    out: dict[str, Any] = {"time_limit_s": step.time_limit_s, "auto_hints": step.auto_hints}
    for name in ("tolerance_mm", "angle_tolerance_deg", "offset_tolerance_mm", "path_tolerance_mm"):
        if hasattr(t, name) and getattr(t, name) is not None:
            out[name] = round(float(getattr(t, name)), 4)
    return out


def _round(p: Any, digits: int = 3) -> list[float]:
    return [round(float(v), digits) for v in p]
