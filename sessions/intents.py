"""Intents: what a user asked to do to the twin, as plain data.

A tool turns poses and buttons into intents; :class:`sessions.workspace.Workspace` is the one place
that applies them to the scene. A consultation sends the same intents to the room as state
operations, a training module scores them, a recording keeps them: so every consumer reads one
stream, whoever produced it (a headset, a desktop mouse, a script, a browser).

Conventions: positions are in the twin's own coordinates in **millimetres** (what a landmark or a
measurement means on the anatomy, whatever the twin's current pose and scale); clip planes are in
twin coordinates too (unit normal, offset in millimetres: the plane keeps ``n . p + offset >= 0``);
the twin's pose is in world metres. ``user`` names who asked (undo undoes one's own changes only).

``final`` is False for the live updates a tool sends while a gesture is under way (the twin
following a grabbing hand, a clip plane held in the hand): those are applied so the user sees them,
but not logged, sent as operations, nor undone one by one; the gesture ends with one final intent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Vec3 = tuple[float, float, float]
Quat = tuple[float, float, float, float]


def _r(values: Vec3 | tuple[float, ...], digits: int = 3) -> list[float]:
    return [round(float(v), digits) for v in values]


@dataclass(frozen=True)
class Intent:
    """Base of every intent: ``user`` who asked, ``time`` seconds on the session clock."""

    user: str
    time: float

    kind = "intent"
    final: bool = field(default=True, init=False)

    def record(self) -> dict[str, Any]:
        """A JSON-ready dict: ``kind``, ``user``, ``time`` and the intent's own fields."""
        return {"kind": self.kind, "user": self.user, "time": round(self.time, 4), **self._fields()}

    def _fields(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class Select(Intent):
    """Select one structure by name, or clear the selection (``structure`` None)."""

    structure: str | None = None
    kind = "select"

    def _fields(self) -> dict[str, Any]:
        return {"structure": self.structure}


@dataclass(frozen=True)
class PlaceLandmark(Intent):
    """A landmark ``mark_id`` named ``label`` at ``point_mm`` on ``structure``'s surface."""

    mark_id: str = ""
    label: str = ""
    point_mm: Vec3 = (0.0, 0.0, 0.0)
    structure: str | None = None
    kind = "landmark"

    def _fields(self) -> dict[str, Any]:
        return {"id": self.mark_id, "label": self.label, "point_mm": _r(self.point_mm), "structure": self.structure}


@dataclass(frozen=True)
class MoveLandmark(Intent):
    """Move landmark ``mark_id`` to ``point_mm`` (on ``structure``'s surface)."""

    mark_id: str = ""
    point_mm: Vec3 = (0.0, 0.0, 0.0)
    structure: str | None = None
    kind = "move_landmark"

    def _fields(self) -> dict[str, Any]:
        return {"id": self.mark_id, "point_mm": _r(self.point_mm), "structure": self.structure}


@dataclass(frozen=True)
class DeleteLandmark(Intent):
    """Remove landmark ``mark_id``."""

    mark_id: str = ""
    kind = "delete_landmark"

    def _fields(self) -> dict[str, Any]:
        return {"id": self.mark_id}


@dataclass(frozen=True)
class Measure(Intent):
    """A measurement ``mark_id`` from ``a_mm`` to ``b_mm``: straight-line ``distance_mm`` in the twin's
    own coordinates, and ``geodesic_mm`` along the surface when both ends lie on one structure and it
    was computed (else None)."""

    mark_id: str = ""
    a_mm: Vec3 = (0.0, 0.0, 0.0)
    b_mm: Vec3 = (0.0, 0.0, 0.0)
    distance_mm: float = 0.0
    geodesic_mm: float | None = None
    structures: tuple[str | None, str | None] = (None, None)
    kind = "measure"

    def _fields(self) -> dict[str, Any]:
        return {
            "id": self.mark_id, "a_mm": _r(self.a_mm), "b_mm": _r(self.b_mm),
            "distance_mm": round(self.distance_mm, 3),
            "geodesic_mm": None if self.geodesic_mm is None else round(self.geodesic_mm, 3),
            "structures": list(self.structures),
        }  # fmt: skip


@dataclass(frozen=True)
class DeleteMeasurement(Intent):
    """Remove measurement ``mark_id``."""

    mark_id: str = ""
    kind = "delete_measurement"

    def _fields(self) -> dict[str, Any]:
        return {"id": self.mark_id}


@dataclass(frozen=True)
class AddClipPlane(Intent):
    """Cut the twin with plane ``plane_id``: keeps ``normal . p + offset_mm >= 0`` (twin mm).
    With ``final`` False it is the plane still held in the hand (shown, not kept)."""

    plane_id: str = ""
    normal: Vec3 = (0.0, 0.0, 1.0)
    offset_mm: float = 0.0
    live: bool = False
    kind = "clip_plane"

    def __post_init__(self) -> None:
        object.__setattr__(self, "final", not self.live)

    def _fields(self) -> dict[str, Any]:
        return {"id": self.plane_id, "normal": _r(self.normal, 5), "offset_mm": round(self.offset_mm, 3)}


@dataclass(frozen=True)
class ClearClipPlanes(Intent):
    """Remove every clip plane."""

    kind = "clear_clip_planes"


@dataclass(frozen=True)
class SetTwinPose(Intent):
    """Place the twin: ``position`` world metres, ``orientation`` (x, y, z, w), uniform ``scale``.
    With ``live`` the twin is following a grabbing hand (not final)."""

    position: Vec3 = (0.0, 0.0, 0.0)
    orientation: Quat = (0.0, 0.0, 0.0, 1.0)
    scale: float = 1.0
    live: bool = False
    kind = "twin_pose"

    def __post_init__(self) -> None:
        object.__setattr__(self, "final", not self.live)

    def _fields(self) -> dict[str, Any]:
        return {"position": _r(self.position, 4), "orientation": _r(self.orientation, 5), "scale": round(self.scale, 4)}


@dataclass(frozen=True)
class AddStroke(Intent):
    """A drawn stroke ``mark_id``: ``points_mm`` (twin mm), ``on_surface`` when drawn on the twin."""

    mark_id: str = ""
    points_mm: tuple[Vec3, ...] = ()
    on_surface: bool = False
    kind = "stroke"

    def _fields(self) -> dict[str, Any]:
        return {"id": self.mark_id, "points": len(self.points_mm), "on_surface": self.on_surface,
                "first_mm": _r(self.points_mm[0]) if self.points_mm else None,
                "last_mm": _r(self.points_mm[-1]) if self.points_mm else None}  # fmt: skip


@dataclass(frozen=True)
class EraseStroke(Intent):
    """Remove stroke ``mark_id`` (one's own)."""

    mark_id: str = ""
    kind = "erase_stroke"

    def _fields(self) -> dict[str, Any]:
        return {"id": self.mark_id}


@dataclass(frozen=True)
class Undo(Intent):
    """Undo ``user``'s last final change."""

    kind = "undo"


@dataclass(frozen=True)
class ChooseTool(Intent):
    """``hand`` (``"left"``/``"right"``) now holds tool ``tool``. Changes nothing on the twin."""

    hand: str = "right"
    tool: str = "select"
    kind = "tool"

    def _fields(self) -> dict[str, Any]:
        return {"hand": self.hand, "tool": self.tool}


@dataclass(frozen=True)
class RequestHint(Intent):
    """The trainee asks for the current training step's next hint. A training intent: the runner
    (:mod:`sessions.training.runner`) takes it, the workspace never sees it (it changes no twin)."""

    kind = "request_hint"


@dataclass(frozen=True)
class PauseTraining(Intent):
    """Pause (``paused`` True) or resume a training module: its clock stops and actions are not
    scored meanwhile. A training intent, like :class:`RequestHint`."""

    paused: bool = True
    kind = "pause_training"

    def _fields(self) -> dict[str, Any]:
        return {"paused": self.paused}


def describe(record: dict[str, Any]) -> str:
    """What an intent did, in a few words (an :meth:`Intent.record`): the panel's feedback line, and
    what ``medverse sim``, ``view`` and ``demo`` print."""
    kind = record["kind"]
    if kind == "select":
        return f"selected {record['structure']}" if record["structure"] else "cleared the selection"
    if kind == "landmark":
        on = f" on {record['structure']}" if record["structure"] else ""  # none: in the air, or a structure this twin lacks
        return f"placed landmark {record['label']}{on}"  # where, in mm: the --json record
    if kind == "measure":
        along = f" ({record['geodesic_mm']:.1f} mm along the surface)" if record.get("geodesic_mm") is not None else ""
        return f"measured {record['distance_mm']:.1f} mm{along}"
    if kind == "clip_plane":
        return "cut a cross-section"
    if kind == "twin_pose":
        return f"moved the twin (scale {record['scale']:.2f}x)"
    if kind == "stroke":
        where = "on the surface" if record["on_surface"] else "in the air"
        return f"drew a stroke of {record['points']} points {where}"
    if kind == "tool":
        return f"{record['hand']} hand: {record['tool']}"
    if kind == "request_hint":
        return "asked for a hint"
    if kind == "pause_training":
        return "paused the module" if record["paused"] else "resumed the module"
    return str(kind).replace("_", " ")
