"""Replay: a recording as a source of poses and state ops driven by a clock, rendered again or scored.

- :class:`ReplaySource` walks a :class:`~sessions.recording.format.Recording` in time order:
  :meth:`~ReplaySource.advance` to time ``t`` applies every op (and state snapshot) recorded up to
  ``t`` to a :class:`net.state.SharedState` and keeps every participant's newest pose.
- :func:`state_at` is the shared state at any time (``medverse consult replay --json``).
- :class:`ReplaySession` shows the state on the twin through the consultation's own
  :class:`~sessions.consult.bridge.StateBridge` (over a watched :class:`~sessions.consult.bridge.StateView`),
  and everyone's avatar as a live participant draws it (:func:`sessions.consult.avatars.avatar_marks`:
  recorded poses are in twin coordinates).
- :func:`render` runs the headless simulator over the recording's twin and writes PNGs, viewed from
  a participant's head or orbiting freely; same file, same bytes.
- :func:`intents_of` turns one participant's ops into the intents a training runner scores
  (:func:`score`), by the bridge's :func:`~sessions.consult.bridge.op_intents`.
"""

from __future__ import annotations

import bisect
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from net.protocol import PoseRecord, StateOp, WirePose
from net.state import SharedState
from sessions import intents as it
from sessions.consult.avatars import POINTER_REACH_M, TwinFrame, avatar_marks
from sessions.consult.bridge import StateBridge, StateView, op_intents
from sessions.recording.format import (
    OpEntry,
    PoseEntry,
    Recording,
    RecordingError,
    SnapshotEntry,
)
from sessions.run import FrameWriter, LocalSession, SessionConfig, WrittenFrame, run
from sessions.sim import working_scene
from xrcore.motion import Motion, MotionSample, procedural
from xrcore.scene import Scene

log = logging.getLogger(__name__)

#: Who the replayed state's intents are made by (so that erasing a stroke is always allowed).
REPLAY_USER = "replay"
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
        #: ops and snapshots released so far (a change of it means the state may have changed)
        self.released = 0

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
        self.released += sum(1 for e in self._entries[self._next : end] if not isinstance(e, PoseEntry))
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
# Rendering
# ---------------------------------------------------------------------------------------------------


class ReplaySession(LocalSession):
    """A :class:`~sessions.run.LocalSession` whose twin shows the recording's state at each frame's time
    (``start`` + the frame's time) with everyone's avatar; nobody's hands act on it. The state reaches
    the workspace through the consultation's own :class:`~sessions.consult.bridge.StateBridge`, as it
    does in a live room."""

    def __init__(self, scene: Scene, source: ReplaySource, start: float, skip: int | None) -> None:
        super().__init__(scene, SessionConfig(user=REPLAY_USER, hud=False, panels=False, pointer_rays=False))
        self.source, self.start, self.skip = source, start, skip
        self.time = start
        self.bridge = StateBridge(self.workspace, StateView(source.state), REPLAY_USER, clock=lambda: self.time)
        roster = source.recording.roster()
        self.names = {i: (e.name, e.role) for i, e in roster.items()}

    def step(self, frame: Any) -> list[it.Intent]:
        self.time = self.start + float(frame.predicted_display_time)
        released = self.source.released
        self.source.advance(self.time)
        self.bridge.reconcile(force=self.source.released != released)
        applied = super().step(frame)
        twin = TwinFrame.of(self.scene)
        for index, record in sorted(self.source.poses.items()):
            if index == self.skip:
                continue
            name, role = self.names.get(index, (f"#{index}", ""))
            marks, labels = avatar_marks(record, name, role, twin, self._pick)
            self.scene.overlay = [*self.scene.overlay, *marks]
            self.scene.overlay_labels = [*self.scene.overlay_labels, *labels]
        return applied

    def _pick(self, origin: np.ndarray, direction: np.ndarray) -> float | None:
        hit = self.picker.pick_scene(self.scene, origin, direction, POINTER_REACH_M)
        return None if hit is None else float(hit.distance_m)


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
            return MotionSample(TwinFrame.of(scene).to_world(head))  # heads travel in twin coordinates

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


def intents_of(recording: Recording, participant: str) -> list[it.Intent]:
    """The intents participant ``participant`` (id, name or index) made, in time order, each at its
    time in the recording and made by the participant's id."""
    index = recording.index_of(participant)
    user = recording.roster()[index].id
    state = SharedState(0)  # a replica, so that a move's intent knows its landmark's structure
    out: list[it.Intent] = []
    for entry in sorted(recording.ops, key=lambda e: e.t):
        if state.apply(entry.op).applied and entry.op.participant == index:
            out += op_intents(entry.op, user, entry.t, state)
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
    "ReplayRun", "ReplaySession", "ReplaySource", "intents_of", "render", "score", "state_at", "state_report",
]
