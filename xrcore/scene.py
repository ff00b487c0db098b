"""The scene: what the renderer draws, as plain data (no OpenGL here).

A :class:`Scene` holds one twin placed in the world (``twin_pose``, metres), a :class:`Material` per
structure (colour, opacity, visibility), the selected structures, up to :data:`MAX_CLIP_PLANES` clip
planes, landmarks and annotation strokes (both in twin coordinates, metres), and the avatars of the
participants (head, hands, pointer ray, in world coordinates) with text labels (an avatar's display
name above its head, each landmark's text, optionally the selected structure's name: see
:meth:`Scene.labels`). The renderer reads it each frame; GPU
objects for the twin's meshes are made once, the first time the renderer sees the twin.

``version`` increases on every change to materials or selection so that the renderer re-uploads the
small per-structure table only when something changed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

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
    return c


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


#: Head sphere radius the renderer draws for avatars, metres; their name floats above it.
AVATAR_HEAD_RADIUS = 0.09


@dataclass(frozen=True)
class LabelStyle:
    """How text labels look.

    ``size``: ``"angular"`` keeps every label ``angle`` degrees of visual angle tall whatever its
    distance (a name stays readable at 2 m and does not swamp the view up close); ``"world"`` makes
    them ``height`` metres tall, like a physical sign. Heights are of one line of text (ascent plus
    descent). ``color``: text colour, ``background``: the plate behind it (linear RGBA; alpha 0
    draws no plate). ``on_top``: draw labels over everything (a name behind the twin stays
    readable); otherwise the twin hides them like any other object. ``gap``: metres between an
    object's top and its label's bottom.
    """

    size: Literal["angular", "world"] = "angular"
    angle: float = 1.5
    height: float = 0.03
    color: Color = (1.0, 1.0, 1.0, 1.0)
    background: Color = (0.0, 0.0, 0.0, 0.6)
    on_top: bool = True
    gap: float = 0.02

    def __post_init__(self) -> None:
        if self.size not in ("angular", "world"):
            raise SceneError(f"label size must be 'angular' or 'world', got {self.size!r}")
        if not 0.0 < float(self.angle) < 45.0:
            raise SceneError(f"label angle must be in (0, 45) degrees, got {self.angle!r}")
        if not 0.0 < float(self.height) < 10.0:
            raise SceneError(f"label height must be in (0, 10) metres, got {self.height!r}")
        _color(self.color, "label colour")
        _color(self.background, "label background")


@dataclass(frozen=True)
class Label:
    """One label to draw: ``text`` (one line), ``position`` (3,) world metres of the middle of its
    bottom edge, ``color`` of its text (linear RGBA).

    ``pinned``: drawn exactly at ``position``, never moved or hidden by decluttering (the lines of an
    in-scene panel, which the session lays out itself); ``scale``: its size as a multiple of the
    scene's label size (a panel's title at 1.3, its small print at 0.8)."""

    text: str
    position: tuple[float, float, float]
    color: Color
    pinned: bool = False
    scale: float = 1.0


@dataclass(frozen=True)
class Sphere:
    """An overlay ball: ``center`` (3,) world metres, ``radius`` metres, linear RGBA ``color``."""

    center: tuple[float, float, float]
    radius: float
    color: Color


@dataclass(frozen=True)
class Segment:
    """An overlay rod from ``a`` to ``b`` (world metres), ``radius`` metres, linear RGBA ``color``."""

    a: tuple[float, float, float]
    b: tuple[float, float, float]
    radius: float
    color: Color


@dataclass
class Scene:
    """Everything the renderer draws for one frame (see the module docstring).

    ``twin_pose``: where the twin's origin sits in the world; ``twin_scale``: uniform scale;
    ``materials``: one per structure, in the twin's order; ``selected``: indices of selected
    structures (drawn highlighted); ``background``: linear RGBA clear colour;
    ``show_local_hands``: draw this user's own controllers (from ``update(frame)``) as spheres with
    pointer rays of ``local_pointer_length`` metres; ``show_labels``: draw text labels (styled by
    ``label_style``), ``label_selection``: label the selected structures with their names too.
    ``hovered``: structures under a pointer (drawn with a fainter highlight than the selection);
    ``overlay``: balls and rods in world coordinates that the session sets each frame (hit cursors,
    pointer rays that stop at the surface, a measurement's line, hand joints, a held plane's frame);
    ``overlay_labels``: labels the session sets each frame (measurement readouts, panels).
    ``late``: called by the renderer once a frame with this scene, after the twin is drawn (and handed to
    the GPU) and before the overlay and labels are read: a session's last look at what moves fastest
    (another participant's hands), so that it is drawn as it was a twin's draw later than the step.
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
    show_labels: bool = True
    label_selection: bool = False
    label_style: LabelStyle = LabelStyle()
    version: int = 0
    hovered: set[int] = field(default_factory=set)
    overlay: list[Sphere | Segment] = field(default_factory=list)
    overlay_labels: list[Label] = field(default_factory=list)
    late: Callable[[Scene], None] | None = field(default=None, repr=False, compare=False)
    local_hands: tuple[HandInput, HandInput] = (HandInput(), HandInput())
    time: float = 0.0
    _structure_tops: dict[int, np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    _model_key: tuple[Pose, float] | None = field(default=None, repr=False, compare=False)
    _model: np.ndarray = field(default_factory=lambda: np.eye(4), repr=False, compare=False)
    _inverse_of: np.ndarray | None = field(default=None, repr=False, compare=False)
    _inverse: np.ndarray = field(default_factory=lambda: np.eye(4), repr=False, compare=False)

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

    def hover(self, structures: Sequence[int]) -> None:
        """Set the structures under a pointer (by index); bumps ``version`` only when they change."""
        hovered = {self.index(s) for s in structures}
        if hovered != self.hovered:
            self.hovered = hovered
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

    # --- labels -------------------------------------------------------------------------------------

    def labels(self) -> list[Label]:
        """The labels to draw this frame, in world coordinates (empty when ``show_labels`` is off).

        Avatars with a ``label`` get it above their head (``gap`` above the head sphere), landmarks
        with a ``label`` above their sphere, in the landmark's colour; with ``label_selection``, each
        selected structure its name above the top of its bounds. Avatars without a head pose and
        blank texts get none.
        """
        if not self.show_labels:
            return []
        style = self.label_style
        out: list[Label] = []

        def add(text: str, x: float, y: float, z: float, color: Color) -> None:
            if text.strip() and math.isfinite(x + y + z):
                out.append(Label(text, (x, y, z), color))

        # plain floats and one matrix product for all landmarks: this runs every frame
        lift = AVATAR_HEAD_RADIUS + style.gap
        for av in self.avatars:
            if av.head is not None and av.label:
                x, y, z = av.head.position
                add(av.label, float(x), float(y) + lift, float(z), style.color)
        marked = [lm for lm in self.landmarks if lm.label]
        if marked:
            model = self.model_matrix()
            points = np.array([lm.position for lm in marked], dtype=np.float64) @ model[:3, :3].T + model[:3, 3]
            points[:, 1] += np.array([lm.radius for lm in marked]) * self.twin_scale + style.gap
            for lm, (x, y, z) in zip(marked, points.tolist(), strict=True):
                add(lm.label, x, y, z, lm.color)
        # the session's labels before the selection's names, which the renderer expects last
        out.extend(label for label in self.overlay_labels if label.text.strip())
        if self.label_selection and self.selected:
            model = self.model_matrix()
            for i in sorted(self.selected):
                x, y, z = self._structure_top(i, model).tolist()
                add(self.twin.structures[i].name, x, y + style.gap, z, style.color)
        return out

    def _structure_top(self, i: int, model: np.ndarray) -> np.ndarray:
        """World point above structure ``i``: the middle of the top of its world-space bounding box."""
        if i not in self._structure_tops:  # bounds scan every vertex: once per structure
            self._structure_tops[i] = self.twin.structures[i].bounds()
        lo, hi = self._structure_tops[i]
        corners = np.array([(x, y, z) for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        world = corners @ model[:3, :3].T + model[:3, 3]
        wlo, whi = world.min(axis=0), world.max(axis=0)
        return np.array([(wlo[0] + whi[0]) / 2, whi[1], (wlo[2] + whi[2]) / 2])

    # --- geometry helpers ---------------------------------------------------------------------------

    def model_matrix(self) -> np.ndarray:
        """(4, 4) float64 twin-to-world matrix (``twin_pose`` with ``twin_scale``), read-only.

        Kept until the pose or scale changes: tools, labels and picking ask for it dozens of times a
        frame."""
        key = (self.twin_pose, self.twin_scale)
        if self._model_key != key:
            m = self.twin_pose.matrix()
            m[:3, :3] *= self.twin_scale
            m.flags.writeable = False
            self._model_key, self._model = key, m
        return self._model

    def twin_from_world(self) -> np.ndarray:
        """(4, 4) float64 world-to-twin matrix, the inverse of :meth:`model_matrix`, read-only (kept
        with it: every pick maps its ray through it)."""
        model = self.model_matrix()
        if self._inverse_of is not model:
            inv = np.linalg.inv(model)
            inv.flags.writeable = False
            self._inverse_of, self._inverse = model, inv
        return self._inverse

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
