"""Replay: a recording as a source of poses and state ops driven by a clock, rendered again or scored.

- :class:`ReplaySource` walks a :class:`~sessions.recording.format.Recording` in time order:
  :meth:`~ReplaySource.advance` to time ``t`` applies every op (and state snapshot) recorded up to
  ``t`` to a :class:`net.state.SharedState` and keeps every participant's newest pose.
- :func:`state_at` is the shared state at any time (``medverse consult replay --json``).
- :class:`StateScene` makes a :class:`~sessions.workspace.Workspace` show a ``SharedState`` (landmarks,
  strokes, clip planes, measurements, twin transform, selection), by the intents that turn what it
  showed into what the state holds. Positions in ops are twin coordinates in metres (a landmark's
  ``position``, a stroke's points, a clip plane ``n . p + d >= 0``), as intents are in twin mm.
- :func:`avatar_marks`: every participant's head, hands and pointer ray as overlay balls, rods and a
  name label, coloured by role.
- :func:`render` runs the headless simulator over the recording's twin and writes PNGs, viewed from
  a participant's head or orbiting freely; same file, same bytes.
- :func:`intents_of` turns one participant's ops into the intents a training runner scores
  (:func:`score`).
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from net.protocol import OpKind, PoseRecord, StateOp, WirePose
from net.state import SharedState
from sessions import intents as it
from sessions.recording.format import (
    OpEntry,
    PoseEntry,
    Recording,
    RecordingError,
    SnapshotEntry,
)
from sessions.run import FrameWriter, LocalSession, SessionConfig, WrittenFrame, run
from sessions.sim import working_scene
from sessions.workspace import Workspace
from xrcore.motion import Motion, MotionSample, procedural
from xrcore.scene import Label, Scene, Segment, Sphere
from xrcore.types import Pose

log = logging.getLogger(__name__)

#: Who the replayed state's intents are made by (so that erasing a stroke is always allowed).
REPLAY_USER = "replay"
#: Colours of avatars by role (linear RGBA); an unknown role is grey.
ROLE_COLORS: dict[str, tuple[float, float, float, float]] = {
    "surgeon": (0.9, 0.25, 0.2, 1.0),
    "expert": (0.2, 0.55, 0.95, 1.0),
    "trainee": (0.25, 0.8, 0.35, 1.0),
    "observer": (0.75, 0.75, 0.75, 1.0),
}
HEAD_RADIUS_M = 0.08
HAND_RADIUS_M = 0.025
RAY_M = 0.5


# ---------------------------------------------------------------------------------------------------
# The recording as a clocked source
# ---------------------------------------------------------------------------------------------------


class ReplaySource:
    """Ops, snapshots and poses of ``recording`` released in time order as :meth:`advance` is called.

    Entries are ordered by their time, equal times in file order, so every replay of one file
    applies the same ops in the same order.
    """

    def __init__(self, recording: Recording) -> None:
        self.recording = recording
        timed = [(e.t, i, e) for i, e in enumerate(recording.entries) if isinstance(e, (OpEntry, SnapshotEntry, PoseEntry))]
        timed.sort(key=lambda x: (x[0], x[1]))
        self._entries = [e for _, _, e in timed]
        self._times = [t for t, _, _ in timed]
        self._next = 0
        self.time = -math.inf
        self.state = SharedState(int(recording.header.recorder.get("index", 0)))
        self.poses: dict[int, PoseRecord] = {}
        self.ops_applied = 0

    def advance(self, t: float) -> list[StateOp]:
        """Release everything recorded up to ``t`` seconds; returns the ops newly applied. Time only
        moves forward (an earlier ``t`` releases nothing)."""
        self.time = max(self.time, t)
        end = bisect.bisect_right(self._times, t)
        applied: list[StateOp] = []
        for entry in self._entries[self._next : end]:
            if isinstance(entry, OpEntry):
                if self.state.apply(entry.op).applied:
                    applied.append(entry.op)
            elif isinstance(entry, SnapshotEntry):
                self.state.merge_snapshot(entry.body)
            else:
                self.poses[entry.record.participant] = entry.record
        self._next = max(self._next, end)
        self.ops_applied += len(applied)
        return applied

    def head_of(self, index: int, t: float) -> WirePose | None:
        """Participant ``index``'s head at ``t`` (its newest recorded by then, else its first)."""
        heads = [(e.t, e.record.head) for e in self.recording.poses if e.record.participant == index and e.record.head]
        if not heads:
            return None
        k = bisect.bisect_right([h[0] for h in heads], t)
        return heads[max(0, k - 1)][1]


def state_at(recording: Recording, t: float | None = None) -> SharedState:
    """The shared state after everything recorded up to ``t`` seconds (the end when None)."""
    source = ReplaySource(recording)
    source.advance(recording.duration if t is None else t)
    return source.state


def state_report(recording: Recording, t: float | None = None) -> dict[str, Any]:
    """What ``--json`` prints: the time, the state's digest and op count, and its visible content."""
    at = recording.duration if t is None else t
    state = state_at(recording, at)
    last = [d for d in recording.digests if d.t <= at]
    return {
        "file": str(recording.path), "room": recording.header.room,
        "twin": {"name": recording.header.twin_name, "sha256": recording.header.twin_sha256},
        "t": round(at, 6), "duration": round(recording.duration, 6),
        "participants": [e.to_json() | {"t": round(e.t, 6)} for e in recording.participants],
        "digest": state.digest().hex(), "op_count": state.op_count,
        "recorded_digest": last[-1].digest.hex() if last else None,
        "state": {"landmarks": state.landmarks, "strokes": state.strokes,
                  "clip_planes": {str(k): v for k, v in state.clip_planes.items()},
                  "measurements": state.measurements, "transform": state.transform, "selection": state.selection},
        "problem": recording.problem, "ended": recording.ended,
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# Shared state -> workspace (scene)
# ---------------------------------------------------------------------------------------------------


def _mm(p: Sequence[float]) -> tuple[float, float, float]:
    return (float(p[0]) * 1000.0, float(p[1]) * 1000.0, float(p[2]) * 1000.0)


def _v3(p: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    return (float(p[0]), float(p[1]), float(p[2]))


@dataclass
class StateScene:
    """Keeps a workspace showing a ``SharedState``: :meth:`sync` applies the intents that turn what it
    shows into what the state holds (marks of structures the twin lacks are shown without one)."""

    workspace: Workspace
    _shown: dict[str, Any] = field(default_factory=dict)

    def sync(self, state: SharedState, t: float) -> int:
        """Bring the workspace to ``state`` at session time ``t``; returns the intents applied."""
        ws, user = self.workspace, REPLAY_USER
        intents: list[it.Intent] = []
        structures = {s.name for s in ws.scene.twin.structures}

        def known(name: str | None) -> str | None:
            return name if name in structures else None

        for key, lm in state.landmarks.items():
            if ws.landmarks.get(key) is None:
                intents.append(it.PlaceLandmark(user, t, key, lm["label"], _mm(lm["position"]), known(lm["structure"])))
            elif ws.landmarks[key].point_mm != _mm(lm["position"]):
                intents.append(it.MoveLandmark(user, t, key, _mm(lm["position"]), known(lm["structure"])))
        intents += [it.DeleteLandmark(user, t, k) for k in ws.landmarks if k not in state.landmarks]
        for key, st in state.strokes.items():
            if key not in ws.strokes:
                intents.append(it.AddStroke(user, t, key, tuple(_mm(p) for p in st["points"])))
        intents += [it.EraseStroke(user, t, k) for k in ws.strokes if k not in state.strokes]
        for key, m in state.measurements.items():
            if key not in ws.measurements:
                a, b = _v3(m["a_mm"]), _v3(m["b_mm"])
                intents.append(it.Measure(user, t, key, a, b, float(m["distance_mm"]), m["geodesic_mm"]))
        intents += [it.DeleteMeasurement(user, t, k) for k in ws.measurements if k not in state.measurements]
        planes = {f"clip{i}": (_v3(p["normal"]), float(p["d"]) * 1000.0) for i, p in sorted(state.clip_planes.items())}
        held = {k: (p.normal, p.offset_mm) for k, p in ws.planes.items()}
        if planes != held:
            intents.append(it.ClearClipPlanes(user, t))
            intents += [it.AddClipPlane(user, t, k, n, d) for k, (n, d) in planes.items()]
        transform = state.transform
        if transform is not None and transform != self._shown.get("transform"):
            self._shown["transform"] = transform
            intents.append(it.SetTwinPose(user, t, _v3(transform["position"]), tuple(transform["orientation"]),
                                          float(transform["scale"])))  # fmt: skip
        selection = known(state.selection)
        if selection != ws.selection["structure"]:
            intents.append(it.Select(user, t, selection))
        return sum(ws.apply(i) for i in intents)


# ---------------------------------------------------------------------------------------------------
# Avatars
# ---------------------------------------------------------------------------------------------------


def _pose(w: WirePose) -> Pose:
    return Pose(w.position, w.orientation)


def avatar_marks(poses: Iterable[PoseRecord], names: dict[int, tuple[str, str]],
                 skip: int | None = None) -> tuple[list[Sphere | Segment], list[Label]]:  # fmt: skip
    """Balls for heads and hands, a pointer ray from each hand, and a name label over each head
    (world metres), coloured by role; ``names`` maps index -> (name, role); ``skip`` one participant
    (the one whose eyes the view is)."""
    marks: list[Sphere | Segment] = []
    labels: list[Label] = []
    for record in sorted(poses, key=lambda r: r.participant):
        if record.participant == skip:
            continue
        name, role = names.get(record.participant, (f"#{record.participant}", ""))
        color = ROLE_COLORS.get(role, (0.5, 0.5, 0.5, 1.0))
        if record.head is not None:
            head = np.asarray(record.head.position, dtype=np.float64)
            marks.append(Sphere(_v3(head), HEAD_RADIUS_M, color))
            nose = head + _pose(record.head).forward() * (HEAD_RADIUS_M * 1.6)
            marks.append(Segment(_v3(head), _v3(nose), 0.01, color))
            above = (float(head[0]), float(head[1]) + 0.14, float(head[2]))
            labels.append(Label(f"{name} ({role})" if role else name, above, color))
        for hand in (record.left, record.right):
            if hand is None:
                continue
            origin = np.asarray(hand.position, dtype=np.float64)
            marks.append(Sphere(_v3(origin), HAND_RADIUS_M, color))
            aim = record.pointer if record.pointer is not None and hand is record.right else hand
            end = origin + _pose(aim).forward() * RAY_M
            marks.append(Segment(_v3(origin), _v3(end), 0.002, color))
    return marks, labels


# ---------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------


class ReplaySession(LocalSession):
    """A :class:`~sessions.run.LocalSession` whose twin shows the recording's state at each frame's time
    (``start`` + the frame's time) with everyone's avatar; nobody's hands act on it."""

    def __init__(self, scene: Scene, source: ReplaySource, start: float, skip: int | None) -> None:
        super().__init__(scene, SessionConfig(user=REPLAY_USER, hud=False, panels=False, pointer_rays=False))
        self.source, self.start, self.skip = source, start, skip
        self.bridge = StateScene(self.workspace)
        roster = source.recording.roster()
        self.names = {i: (e.name, e.role) for i, e in roster.items()}

    def step(self, frame: Any) -> list[it.Intent]:
        t = self.start + float(frame.predicted_display_time)
        self.source.advance(t)
        self.bridge.sync(self.source.state, t)
        applied = super().step(frame)
        marks, labels = avatar_marks(self.source.poses.values(), self.names, self.skip)
        self.scene.overlay = [*self.scene.overlay, *marks]
        self.scene.overlay_labels = [*self.scene.overlay_labels, *labels]
        return applied


@dataclass
class ReplayRun:
    """What :func:`render` did: PNGs written (with the sha256 of their pixels), frames, the state digest reached."""

    frames: int
    written: list[WrittenFrame]
    digest: str
    op_count: int
    view: str

    def as_dict(self) -> dict[str, Any]:
        return {"frames": self.frames, "written": [str(w.path) for w in self.written],
                "sha256": [w.sha256 for w in self.written], "digest": self.digest, "op_count": self.op_count,
                "view": self.view}  # fmt: skip


def render(
    recording: Recording,
    twin: Any,
    out_dir: str | Path,
    *,
    viewer: str | None = None,
    at: float | None = None,
    every_s: float = 1.0,
    rate_hz: float = 30.0,
    width: int = 320,
    height: int = 320,
    samples: int = 1,
    context: Any = None,
) -> ReplayRun:
    """Render ``recording`` over ``twin`` in the headless simulator, writing PNGs to ``out_dir``.

    ``viewer``: a participant (id, name or index) whose recorded head is the camera; None orbits the
    twin. ``at``: render one frame at that time (seconds); else the whole recording, one frame every
    ``every_s`` seconds (frames run at ``rate_hz``). Frame times are a fixed step and the state at
    each is a pure function of the file, so the same file gives the same PNG bytes every run.
    """
    from xrcore.backends.sim import SimBackend, SimConfig  # noqa: PLC0415 - GL only when rendering
    from xrcore.render import Renderer, RendererConfig  # noqa: PLC0415

    if at is not None and at < 0.0:
        raise RecordingError(f"--at must be >= 0 s, got {at}")
    scene = working_scene(twin)
    source = ReplaySource(recording)
    start = 0.0 if at is None else at
    frames = 1 if at is not None else math.floor(recording.duration * rate_hz) + 1
    skip: int | None = None
    if viewer is not None:
        skip = viewer_index = recording.index_of(viewer)
        if source.head_of(viewer_index, recording.duration) is None:
            raise RecordingError(f"{recording.path}: participant {viewer!r} has no recorded head pose to view from")

        def follow(t: float) -> MotionSample:
            head = source.head_of(viewer_index, start + t)
            assert head is not None
            return MotionSample(_pose(head))

        motion: Motion = follow
    else:
        centre, size = scene.twin_center_and_size()
        motion = procedural("orbit", centre.tolist(), size)
    session = ReplaySession(scene, source, start, skip)
    every = max(1, round(every_s * rate_hz))
    writer = FrameWriter(Path(out_dir), every, at_keyframes=False)
    backend = SimBackend(SimConfig(frames=frames, rate_hz=rate_hz, width=width, height=height, motion=motion, context=context))
    backend.start()
    try:
        renderer = Renderer(backend.context, RendererConfig(width=width, height=height, samples=samples, rate_hz=rate_hz))
        try:
            stats = run(backend, session, renderer, writer=writer)
        finally:
            renderer.close()
    finally:
        backend.stop()
    view = f"from {viewer}" if viewer is not None else "free"
    log.info("replayed %s (%s): %d frames, %d PNGs", recording.path, view, stats.frames, len(writer.written))
    return ReplayRun(stats.frames, list(writer.written), source.state.digest().hex(), source.state.op_count, view)


# ---------------------------------------------------------------------------------------------------
# A participant's ops as intents, for training
# ---------------------------------------------------------------------------------------------------


def op_intents(op: StateOp, user: str, t: float) -> list[it.Intent]:
    """The intents one op stands for (the inverse of what a consultation makes of intents); none for
    a kind no intent expresses (a clip plane's removal, clear-my-marks)."""
    p = op.payload
    kind = op.kind
    if kind is OpKind.LANDMARK_PLACE:
        return [it.PlaceLandmark(user, t, p["id"], p["label"], _mm(p["position"]), p["structure"])]
    if kind is OpKind.LANDMARK_MOVE:
        return [it.MoveLandmark(user, t, p["id"], _mm(p["position"]))]
    if kind is OpKind.LANDMARK_DELETE:
        return [it.DeleteLandmark(user, t, p["id"])]
    if kind is OpKind.STROKE_ADD:
        return [it.AddStroke(user, t, p["id"], tuple(_mm(q) for q in p["points"]))]
    if kind is OpKind.STROKE_ERASE:
        return [it.EraseStroke(user, t, p["id"])]
    if kind is OpKind.MEASURE:
        return [it.Measure(user, t, p["id"], _v3(p["a_mm"]), _v3(p["b_mm"]), p["distance_mm"], p["geodesic_mm"])]
    if kind is OpKind.MEASURE_DELETE:
        return [it.DeleteMeasurement(user, t, p["id"])]
    if kind is OpKind.CLIP_SET:
        return [it.AddClipPlane(user, t, f"clip{p['index']}", _v3(p["normal"]), float(p["d"]) * 1000.0)]
    if kind is OpKind.TRANSFORM:
        return [it.SetTwinPose(user, t, _v3(p["position"]), tuple(p["orientation"]), float(p["scale"]))]
    if kind is OpKind.SELECT:
        return [it.Select(user, t, p["structure"])]
    return []


def intents_of(recording: Recording, participant: str) -> list[it.Intent]:
    """The intents participant ``participant`` (id, name or index) made, in time order, each at its
    time in the recording and made by the participant's id."""
    index = recording.index_of(participant)
    user = recording.roster()[index].id
    seen: set[int] = set()
    out: list[it.Intent] = []
    for entry in sorted(recording.ops, key=lambda e: e.t):
        if entry.op.participant == index and entry.op.seq not in seen:
            seen.add(entry.op.seq)
            out += op_intents(entry.op, user, entry.t)
    return out


def score(recording: Recording, participant: str, module: Any, twin: Any = None) -> Any:
    """Score ``participant``'s part of ``recording`` with a training ``module`` (a loaded
    :class:`~sessions.training.schema.Module`); returns the runner's summary. Each intent goes to the
    runner at its recorded time, as a live trainee's would."""
    from sessions.training.runner import TrainingRunner  # noqa: PLC0415 - only scoring needs training

    user = recording.roster()[recording.index_of(participant)].id
    events: list[dict[str, Any]] = []
    runner = TrainingRunner(module, user, emit=events.append, twin=twin)
    runner.start(0.0)
    for intent in intents_of(recording, participant):
        runner.on_intent(intent)
    return runner.summary()


__all__ = [
    "ReplayRun", "ReplaySession", "ReplaySource", "StateScene", "avatar_marks", "intents_of", "op_intents", "render",
    "score", "state_at", "state_report",
]
