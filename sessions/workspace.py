"""The one place where intents change the twin: :class:`Workspace`.

A workspace holds what users made on the twin in a session (landmarks, measurements, strokes, clip
planes, the twin's placement, the selection), applies each :mod:`sessions.intents` intent to it and
mirrors the result into the :class:`xrcore.scene.Scene` the renderer draws. Every final change is
remembered per user with what it replaced, so :class:`~sessions.intents.Undo` puts back exactly
that user's last change and nobody else's.

Refused intents (an unknown landmark, a seventh clip plane, someone else's stroke) raise
:class:`IntentError` with a one-line reason; nothing changes then.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sessions import intents as it
from xrcore.scene import MAX_CLIP_PLANES, ClipPlane, Landmark, Scene, Stroke
from xrcore.types import Pose

logger = logging.getLogger(__name__)

#: Scale limits of the twin relative to its life size (two-hand scaling stops there).
MIN_SCALE, MAX_SCALE = 0.1, 10.0

#: Colours of marks by kind (linear RGBA).
LANDMARK_COLOR = (1.0, 0.85, 0.1, 1.0)
STROKE_COLOR = (0.1, 0.9, 0.4, 1.0)


class IntentError(ValueError):
    """An intent cannot be applied (the message says why); the workspace is unchanged."""


@dataclass
class _Change:
    """What one final intent replaced: per (collection, key) the old value (None: absent)."""

    user: str
    kind: str
    before: list[tuple[str, str, Any]] = field(default_factory=list)


class Workspace:
    """The marks and placement of one twin in a session, applied to ``scene``.

    Parameters
    ----------
    scene
        The scene to keep in step (its landmarks, strokes, clip planes, selection, twin pose and
        scale are owned by the workspace from now on).
    """

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self.landmarks: dict[str, it.PlaceLandmark] = {}
        self.measurements: dict[str, it.Measure] = {}
        self.strokes: dict[str, it.AddStroke] = {}
        self.planes: dict[str, it.AddClipPlane] = {}
        #: clip planes still held in a hand, per user (shown, not kept)
        self.live_planes: dict[str, it.AddClipPlane] = {}
        self.pose: dict[str, tuple[Pose, float]] = {"twin": (scene.twin_pose, scene.twin_scale)}
        self.selection: dict[str, str | None] = {"structure": None}
        self.history: dict[str, list[_Change]] = {}
        #: where the twin was when each user's grab began (a grab's undo goes back there)
        self._grab_start: dict[str, tuple[Pose, float]] = {}
        self.applied: list[it.Intent] = []
        self.refused = 0
        self._listeners: list[Callable[[it.Intent], None]] = []
        self._counter: dict[str, int] = {}

    # --- identifiers ------------------------------------------------------------------------------

    def new_id(self, user: str, kind: str) -> str:
        """A fresh mark id of ``user``'s, e.g. ``alice/L3`` (kinds: L landmark, M measure, S stroke, P plane)."""
        key = f"{user}/{kind}"
        self._counter[key] = self._counter.get(key, 0) + 1
        return f"{user}/{kind}{self._counter[key]}"

    def landmark_label(self) -> str:
        """The next free default landmark name: L1, L2, ..."""
        taken = {lm.label for lm in self.landmarks.values()}
        n = 1
        while f"L{n}" in taken:
            n += 1
        return f"L{n}"

    def on_applied(self, listener: Callable[[it.Intent], None]) -> None:
        """Call ``listener(intent)`` after every final intent is applied (a consultation sends it on,
        a training runner scores it, a recorder keeps it)."""
        self._listeners.append(listener)

    # --- applying -----------------------------------------------------------------------------------

    def apply(self, intent: it.Intent) -> bool:
        """Apply ``intent``; True when applied. A refused one is counted, logged in one line and
        changes nothing (returns False)."""
        try:
            self._apply(intent)
        except IntentError as exc:
            self.refused += 1
            logger.warning("refused %s from %s: %s", intent.kind, intent.user, exc)
            return False
        if intent.final:
            self.applied.append(intent)
            for listener in self._listeners:
                listener(intent)
        return True

    def holding(self, user: str) -> bool:
        """Whether ``user``'s grab is moving the twin now (live poses applied, not yet let go)."""
        return user in self._grab_start

    def _apply(self, intent: it.Intent) -> None:
        handler = getattr(self, f"_apply_{type(intent).__name__}", None)
        if handler is None:
            raise IntentError(f"no handler for intent kind {intent.kind!r}")
        change = _Change(intent.user, intent.kind)
        handler(intent, change)
        if intent.final and change.before:
            self.history.setdefault(intent.user, []).append(change)
        self._mirror()

    def _set(self, change: _Change, collection: str, key: str, value: Any) -> None:
        table: dict[str, Any] = getattr(self, collection)
        change.before.append((collection, key, table.get(key)))
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value

    @staticmethod
    def _existing(table: dict[str, Any], mark_id: str, what: str) -> Any:
        if mark_id not in table:
            raise IntentError(f"no {what} {mark_id!r}")
        return table[mark_id]

    def _apply_Select(self, intent: it.Select, change: _Change) -> None:
        if intent.structure is not None:
            self.scene.index(intent.structure)  # raises SceneError for an unknown name
        self.selection["structure"] = intent.structure

    def _apply_ChooseTool(self, intent: it.ChooseTool, change: _Change) -> None:
        pass  # tools are the user's own business; the intent is kept for the log

    def _apply_PlaceLandmark(self, intent: it.PlaceLandmark, change: _Change) -> None:
        if intent.mark_id in self.landmarks:
            raise IntentError(f"landmark {intent.mark_id!r} exists already")
        _finite(intent.point_mm, "landmark position")
        self._set(change, "landmarks", intent.mark_id, intent)

    def _apply_MoveLandmark(self, intent: it.MoveLandmark, change: _Change) -> None:
        old: it.PlaceLandmark = self._existing(self.landmarks, intent.mark_id, "landmark")
        _finite(intent.point_mm, "landmark position")
        moved = it.PlaceLandmark(old.user, intent.time, old.mark_id, old.label, intent.point_mm, intent.structure)
        self._set(change, "landmarks", intent.mark_id, moved)

    def _apply_DeleteLandmark(self, intent: it.DeleteLandmark, change: _Change) -> None:
        self._existing(self.landmarks, intent.mark_id, "landmark")
        self._set(change, "landmarks", intent.mark_id, None)

    def _apply_Measure(self, intent: it.Measure, change: _Change) -> None:
        _finite(intent.a_mm, "measurement start")
        _finite(intent.b_mm, "measurement end")
        self._set(change, "measurements", intent.mark_id, intent)

    def _apply_DeleteMeasurement(self, intent: it.DeleteMeasurement, change: _Change) -> None:
        self._existing(self.measurements, intent.mark_id, "measurement")
        self._set(change, "measurements", intent.mark_id, None)

    def _apply_AddClipPlane(self, intent: it.AddClipPlane, change: _Change) -> None:
        n = np.asarray(intent.normal, dtype=np.float64)
        if n.shape != (3,) or not np.all(np.isfinite(n)) or not np.isfinite(intent.offset_mm) or np.linalg.norm(n) < 1e-9:
            raise IntentError("a clip plane needs a finite, non-zero normal and a finite offset")
        if not intent.final:
            self.live_planes[intent.user] = intent
            return
        self.live_planes.pop(intent.user, None)
        if intent.plane_id not in self.planes and len(self.planes) >= MAX_CLIP_PLANES:
            raise IntentError(f"at most {MAX_CLIP_PLANES} clip planes at once; clear them first")
        self._set(change, "planes", intent.plane_id, intent)

    def _apply_ClearClipPlanes(self, intent: it.ClearClipPlanes, change: _Change) -> None:
        for plane_id in list(self.planes):
            self._set(change, "planes", plane_id, None)
        self.live_planes.pop(intent.user, None)

    def _apply_SetTwinPose(self, intent: it.SetTwinPose, change: _Change) -> None:
        values = (*intent.position, *intent.orientation, intent.scale)
        if not all(np.isfinite(values)) or sum(q * q for q in intent.orientation) < 1e-12:
            raise IntentError("a twin pose needs a finite position, a non-zero orientation and a finite scale")
        scale = min(MAX_SCALE, max(MIN_SCALE, float(intent.scale)))
        value = (Pose(intent.position, intent.orientation), scale)
        if intent.final:
            # a grab's live updates moved the twin already: undo must go back to where the grab began
            before = self._grab_start.pop(intent.user, self.pose["twin"])
            change.before.append(("pose", "twin", before))
            self.pose["twin"] = value
        else:
            self._grab_start.setdefault(intent.user, self.pose["twin"])
            self.pose["twin"] = value

    def _apply_AddStroke(self, intent: it.AddStroke, change: _Change) -> None:
        if len(intent.points_mm) < 1:
            raise IntentError("a stroke needs at least one point")
        for p in intent.points_mm:
            _finite(p, "stroke point")
        self._set(change, "strokes", intent.mark_id, intent)

    def _apply_EraseStroke(self, intent: it.EraseStroke, change: _Change) -> None:
        stroke: it.AddStroke = self._existing(self.strokes, intent.mark_id, "stroke")
        if stroke.user != intent.user:
            raise IntentError(f"stroke {intent.mark_id!r} is {stroke.user}'s; only its author may erase it")
        self._set(change, "strokes", intent.mark_id, None)

    def _apply_Undo(self, intent: it.Undo, change: _Change) -> None:
        done = self.history.get(intent.user)
        if not done:
            raise IntentError(f"{intent.user} has nothing to undo")
        last = done.pop()
        for collection, key, old in reversed(last.before):
            table: dict[str, Any] = getattr(self, collection)
            if old is None:
                table.pop(key, None)
            else:
                table[key] = old

    # --- the scene ----------------------------------------------------------------------------------

    def _mirror(self) -> None:
        """Make the scene show the workspace: twin placement, selection, landmarks, strokes, planes."""
        scene = self.scene
        pose, scale = self.pose["twin"]
        scene.twin_pose, scene.twin_scale = pose, scale
        selected = self.selection["structure"]
        wanted = {scene.index(selected)} if selected is not None else set()
        if wanted != scene.selected:
            scene.selected = wanted
            scene.version += 1
        scene.landmarks = [
            Landmark(position=_metres(lm.point_mm), color=LANDMARK_COLOR, radius=0.0025, label=lm.label)
            for lm in self.landmarks.values()
        ]
        scene.strokes = [
            Stroke(points=tuple(_metres(p) for p in st.points_mm), color=STROKE_COLOR) for st in self.strokes.values()
        ]
        planes = [*self.planes.values(), *self.live_planes.values()][:MAX_CLIP_PLANES]
        scene.clip_planes = [_clip_plane(p) for p in planes]


def _clip_plane(plane: it.AddClipPlane) -> ClipPlane:
    n = np.asarray(plane.normal, dtype=np.float64)
    length = float(np.linalg.norm(n))
    return ClipPlane((float(n[0] / length), float(n[1] / length), float(n[2] / length)), plane.offset_mm / 1000.0 / length)


def _metres(point_mm: tuple[float, float, float]) -> tuple[float, float, float]:
    return (point_mm[0] / 1000.0, point_mm[1] / 1000.0, point_mm[2] / 1000.0)


def _finite(point: tuple[float, ...], what: str) -> None:
    if len(point) != 3 or not all(np.isfinite(point)):
        raise IntentError(f"{what} must be 3 finite numbers (mm), got {point!r}")
