"""The scene: what the renderer draws, as plain data (no OpenGL here).

A :class:`Scene` holds one twin placed in the world (``twin_pose``, metres), a :class:`Material` per
structure (colour, opacity, visibility), the selected structures, up to :data:`MAX_CLIP_PLANES` clip
planes, landmarks and annotation strokes (both in twin coordinates, metres), and the avatars of the
participants (head, hands, pointer ray, in world coordinates). The renderer reads it each frame; GPU
objects for the twin's meshes are made once, the first time the renderer sees the twin.

``version`` increases on every change to materials or selection so that the renderer re-uploads the
small per-structure table only when something changed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from assets.twin import Twin
from xrcore.types import FrameState, HandInput, Pose

logger = logging.getLogger(__name__)

#: Clip planes the renderer supports at once (gl_ClipDistance slots used).
MAX_CLIP_PLANES = 6

Color = tuple[float, float, float, float]


class SceneError(ValueError):
    """A scene operation got bad input (unknown structure, too many clip planes, bad colour)."""


def _color(value: Sequence[float], what: str) -> Color:
    c = tuple(float(v) for v in value)
    if len(c) == 3:
        c = (*c, 1.0)
    if len(c) != 4 or not all(0.0 <= v <= 1.0 for v in c):
        raise SceneError(f"{what}: colour must be 3 or 4 numbers in 0..1, got {tuple(value)!r}")
    return c  # type: ignore[return-value]


@dataclass
class Material:
    """How one structure looks: ``color`` linear RGBA in 0..1 (alpha < 1 draws it transparent),
    ``visible``, and Blinn-Phong ``shininess`` (specular exponent) and ``specular`` (0..1)."""

    color: Color = (0.85, 0.75, 0.7, 1.0)
    visible: bool = True
    shininess: float = 32.0
    specular: float = 0.25

    @property
    def opaque(self) -> bool:
        return self.color[3] >= 0.999


@dataclass(frozen=True)
class ClipPlane:
    """A cutting plane in twin coordinates: keeps the points ``p`` with ``dot(normal, p) + offset >= 0``.

    ``normal``: (3,) unit vector; ``offset``: metres.
    """

    normal: tuple[float, float, float]
    offset: float

    @classmethod
    def through(cls, point: Sequence[float], normal: Sequence[float]) -> ClipPlane:
        """The plane through ``point`` (m) keeping the half-space ``normal`` points into."""
        n = np.asarray(normal, dtype=np.float64)
        length = float(np.linalg.norm(n))
        if not np.isfinite(length) or length < 1e-9:
            raise SceneError(f"clip plane normal must be a non-zero vector, got {tuple(normal)!r}")
        n = n / length
        p = np.asarray(point, dtype=np.float64)
        if p.shape != (3,) or not np.all(np.isfinite(p)):
            raise SceneError(f"clip plane point must be 3 finite numbers, got {tuple(point)!r}")
        return cls((float(n[0]), float(n[1]), float(n[2])), float(-n @ p))

    def as_vec4(self) -> np.ndarray:
        return np.array([*self.normal, self.offset], dtype=np.float64)


@dataclass(frozen=True)
class Landmark:
    """A named point on the twin: ``position`` metres in twin coordinates, ``radius`` metres."""

    position: tuple[float, float, float]
    color: Color = (1.0, 0.85, 0.1, 1.0)
    radius: float = 0.003
    label: str = ""


@dataclass(frozen=True)
class Stroke:
    """An annotation polyline in twin coordinates: ``points`` (N, 2..) metres, ``width`` metres."""

    points: tuple[tuple[float, float, float], ...]
    color: Color = (0.1, 0.9, 0.4, 1.0)
    width: float = 0.0015


@dataclass(frozen=True)
class Avatar:
    """A participant as others see them, in world coordinates (metres).

    ``head``: head pose or None; ``hands``: left/right aim poses (None when untracked);
    ``pointer_length``: metres of pointer ray drawn from each tracked hand along its -Z
    (0 draws none); ``color``: the participant's colour; ``label``: display name.
    """

    participant: str
    head: Pose | None = None
    hands: tuple[Pose | None, Pose | None] = (None, None)
    pointer_length: float = 0.0
    color: Color = (0.3, 0.6, 1.0, 1.0)
    label: str = ""


@dataclass
class Scene:
    """Everything the renderer draws for one frame (see the module docstring).

    ``twin_pose``: where the twin's origin sits in the world; ``twin_scale``: uniform scale;
    ``materials``: one per structure, in the twin's order; ``selected``: indices of selected
    structures (drawn highlighted); ``background``: linear RGBA clear colour;
    ``show_local_hands``: draw this user's own controllers (from ``update(frame)``) as spheres with
    pointer rays of ``local_pointer_length`` metres.
    """

    twin: Twin
    twin_pose: Pose = Pose()
    twin_scale: float = 1.0
    materials: list[Material] = field(default_factory=list)
    selected: set[int] = field(default_factory=set)
    clip_planes: list[ClipPlane] = field(default_factory=list)
    landmarks: list[Landmark] = field(default_factory=list)
    strokes: list[Stroke] = field(default_factory=list)
    avatars: list[Avatar] = field(default_factory=list)
    background: Color = (0.02, 0.02, 0.025, 1.0)
    show_local_hands: bool = True
    local_pointer_length: float = 0.3
    version: int = 0
    local_hands: tuple[HandInput, HandInput] = (HandInput(), HandInput())
    time: float = 0.0

    def __post_init__(self) -> None:
        if not self.materials:
            self.materials = [Material(color=tuple(s.color)) for s in self.twin.structures]  # type: ignore[arg-type]
        if len(self.materials) != len(self.twin.structures):
            raise SceneError(
                f"scene has {len(self.materials)} materials for {len(self.twin.structures)} structures"
            )

    # --- per-frame ---------------------------------------------------------------------------------

    def update(self, frame: FrameState) -> None:
        """Take this frame's local controller poses (drawn when ``show_local_hands``) and time."""
        self.local_hands = (frame.inputs.left, frame.inputs.right)
        self.time = frame.predicted_display_time

    # --- structures ---------------------------------------------------------------------------------

    def index(self, structure: str | int) -> int:
        """Index of a structure given by name or index; raises :class:`SceneError` when unknown."""
        if isinstance(structure, int) and not isinstance(structure, bool):
            if 0 <= structure < len(self.materials):
                return structure
            raise SceneError(f"structure index {structure} out of range 0..{len(self.materials) - 1}")
        for i, s in enumerate(self.twin.structures):
            if s.name == structure:
                return i
        names = ", ".join(s.name for s in self.twin.structures[:10])
        raise SceneError(f"twin {self.twin.name!r} has no structure {structure!r} (has: {names})")

    def set_color(self, structure: str | int, color: Sequence[float]) -> None:
        """Set a structure's linear RGB(A) colour, 0..1."""
        i = self.index(structure)
        self.materials[i].color = _color(color, f"structure {structure!r}")
        self.version += 1

    def set_opacity(self, structure: str | int, opacity: float) -> None:
        """Set a structure's opacity in 0..1 (below 1 draws it transparent)."""
        if not 0.0 <= float(opacity) <= 1.0:
            raise SceneError(f"opacity must be in 0..1, got {opacity!r}")
        i = self.index(structure)
        r, g, b, _ = self.materials[i].color
        self.materials[i].color = (r, g, b, float(opacity))
        self.version += 1

    def set_visible(self, structure: str | int, visible: bool) -> None:
        self.materials[self.index(structure)].visible = bool(visible)
        self.version += 1

    def select(self, structures: Sequence[str | int]) -> None:
        """Replace the selection (selected structures are drawn highlighted)."""
        self.selected = {self.index(s) for s in structures}
        self.version += 1

    # --- clip planes, annotations -------------------------------------------------------------------

    def add_clip_plane(self, plane: ClipPlane) -> int:
        """Add a clip plane (twin coordinates); returns its slot. At most :data:`MAX_CLIP_PLANES`."""
        if len(self.clip_planes) >= MAX_CLIP_PLANES:
            raise SceneError(f"at most {MAX_CLIP_PLANES} clip planes at once; remove one first")
        if not np.all(np.isfinite(plane.as_vec4())):
            raise SceneError(f"clip plane must be finite, got {plane!r}")
        self.clip_planes.append(plane)
        return len(self.clip_planes) - 1

    def clear_clip_planes(self) -> None:
        self.clip_planes.clear()

    # --- geometry helpers ---------------------------------------------------------------------------

    def model_matrix(self) -> np.ndarray:
        """(4, 4) float64 twin-to-world matrix (``twin_pose`` with ``twin_scale``)."""
        m = self.twin_pose.matrix()
        m[:3, :3] *= self.twin_scale
        return m

    def twin_center_and_size(self) -> tuple[np.ndarray, float]:
        """World-space centre (3,) of the twin's bounds and its diagonal in metres."""
        lo, hi = self.twin.bounds()
        centre = (self.model_matrix() @ np.array([*(lo + hi) / 2, 1.0]))[:3]
        return centre, float(np.linalg.norm(hi - lo) * self.twin_scale)


#: Rotation from RAS+ (imaging: x to the patient's right, y anterior, z superior) to the runtime's
#: +Y up world with the patient facing +Z, towards a viewer standing on the +Z side.
RAS_TO_WORLD = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])


def frame_twin(twin: Twin, *, upright: bool = True) -> Pose:
    """A twin pose that puts the centre of ``twin``'s bounds at the world origin.

    ``upright``: treat the twin's frame as RAS+ (as imaging-derived twins are) and stand it up: the
    patient's superior along +Y, anterior towards +Z. Otherwise the twin is only translated.
    """
    from xrcore.motion import quat_from_matrix  # noqa: PLC0415 - motion imports scene's types only

    lo, hi = twin.bounds()
    r = RAS_TO_WORLD if upright else np.eye(3)
    c = -(r @ ((lo + hi) / 2))
    return Pose((float(c[0]), float(c[1]), float(c[2])), quat_from_matrix(r))
