"""GL-free frame maths of the renderer: what to draw where, before any GL call.

Eye matrices, the level of detail per structure, the twin's placement (model and normal matrices,
clip planes in the world), which structures are opaque or transparent and the transparent ones' order,
the markers' instance records, the clear colour, and the unit meshes markers are drawn from. Nothing
here imports OpenGL: it is plain numpy over :mod:`xrcore.scene` and :mod:`xrcore.types`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from typing import Any, NamedTuple

import numpy as np

from xrcore.scene import AVATAR_HEAD_RADIUS, MAX_CLIP_PLANES, Scene, Sphere
from xrcore.types import View

#: Colour of this user's own controllers (linear RGBA).
_LOCAL_HAND_COLOR = (0.9, 0.9, 0.95, 1.0)
#: Radius of a hand's sphere, metres, and of a pointer ray drawn from it.
_HAND_RADIUS = 0.015
_RAY_RADIUS = 0.002
#: A structure this many pixels across or more gets full detail; each halving drops one level.
_FULL_DETAIL_PX = 512.0


def eye_matrices(views: list[View], near: float, far: float) -> tuple[np.ndarray, np.ndarray]:
    """(2, 4, 4) float32 view-projection matrices and (2, 3) float32 positions (metres) of the first
    two views; ``near`` and ``far`` are the clip distances, metres (see :func:`view_projections`)."""
    view_proj, eyes = view_projections(views[:2], near, far)
    return view_proj.astype(np.float32), eyes.astype(np.float32)


def view_projections(views: Sequence[View], near: float, far: float) -> tuple[np.ndarray, np.ndarray]:
    """(V, 4, 4) float64 view-projection matrices and (V, 3) positions (metres) of ``views``.

    The same products as ``fov.projection(near, far) @ pose.inverse_matrix()``, written out in plain
    floats: a frame needs 32 numbers, and a dozen small numpy calls per eye cost more than the maths.
    """
    out: list[float] = []
    eyes: list[float] = []
    for v in views:
        f = v.fov
        left, right = math.tan(f.angle_left), math.tan(f.angle_right)
        up, down = math.tan(f.angle_up), math.tan(f.angle_down)
        x, y, z, w = v.pose.orientation
        px, py, pz = (float(c) for c in v.pose.position)
        n = x * x + y * y + z * z + w * w
        s = 2.0 / n if n > 0 else 0.0
        # rows of the view matrix: the rotation's columns (the eye's axes in the world), and -R^T p
        r00, r01, r02 = 1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w)
        r10, r11, r12 = s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w)
        r20, r21, r22 = s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y)
        v0 = (r00, r10, r20, -(r00 * px + r10 * py + r20 * pz))
        v1 = (r01, r11, r21, -(r01 * px + r11 * py + r21 * pz))
        v2 = (r02, r12, r22, -(r02 * px + r12 * py + r22 * pz))
        # projection rows (a, 0, b, 0), (0, c, d, 0), (0, 0, zz, zw), (0, 0, -1, 0)
        a, b = 2.0 / (right - left), (right + left) / (right - left)
        c, d = 2.0 / (up - down), (up + down) / (up - down)
        zz, zw = -(far + near) / (far - near), -2.0 * far * near / (far - near)
        out += [a * v0[k] + b * v2[k] for k in range(4)]
        out += [c * v1[k] + d * v2[k] for k in range(4)]
        out += [zz * v2[0], zz * v2[1], zz * v2[2], zz * v2[3] + zw]
        out += [-v2[k] for k in range(4)]
        eyes += (px, py, pz)
    return np.array(out).reshape(-1, 4, 4), np.array(eyes).reshape(-1, 3)


def lod_levels(
    counts: list[int], centers: np.ndarray, radii: np.ndarray, lod: str | int, view: View, model: np.ndarray,
    twin_scale: float, mid_eye: np.ndarray,
) -> list[int]:  # fmt: skip
    """Level of detail to draw of each structure (0 the full mesh).

    ``counts``: levels each structure has; ``centers`` (S, 3) and ``radii`` (S,): bounding spheres in
    twin coordinates, metres; ``lod``: ``"auto"`` or a forced level (clamped per structure); ``view``:
    the view whose height and field of view give pixels per radian; ``model``: (4, 4) twin to world;
    ``mid_eye``: (3,) world metres. With ``"auto"``, a structure gets full detail while its bounding
    sphere spans 512 px or more, and one level coarser each time that size halves.
    """
    if lod != "auto":
        want = int(lod)
        return [min(want, c - 1) for c in counts]
    if max(counts, default=1) == 1:
        return [0] * len(counts)
    focal_px = view.height / max(math.tan(view.fov.angle_up) - math.tan(view.fov.angle_down), 1e-6)
    centres = (model[:3, :3] @ centers.T).T + model[:3, 3]
    dist = np.maximum(np.linalg.norm(centres - mid_eye, axis=1), 1e-3)
    px = 2 * radii * twin_scale / dist * focal_px
    level = np.floor(np.log2(np.maximum(_FULL_DETAIL_PX / np.maximum(px, 1e-3), 1.0))).astype(int)
    return [min(int(k), c - 1) for k, c in zip(level, counts, strict=True)]


class TwinTransform(NamedTuple):
    """Where the twin is this frame: ``model`` (4, 4) float64 twin to world (``model32`` the same in
    float32), ``normal_matrix`` (3, 3) float32, ``planes`` (MAX_CLIP_PLANES, 4) float32 world-space clip
    planes with unit normals (distances in metres; unused rows zero) and ``n_clip`` of them in use."""

    model: np.ndarray
    model32: np.ndarray
    normal_matrix: np.ndarray
    planes: np.ndarray
    n_clip: int


class TwinTransformCache:
    """:class:`TwinTransform` of a scene, recomputed only when the twin's pose, scale or clip planes
    change (most frames only the head moves)."""

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self._value: TwinTransform | None = None

    def get(self, scene: Scene) -> TwinTransform:
        pose = scene.twin_pose
        key = (tuple(map(float, pose.position)), tuple(map(float, pose.orientation)), float(scene.twin_scale),
               tuple((tuple(map(float, p.normal)), float(p.offset)) for p in scene.clip_planes))  # fmt: skip
        if key != self._key or self._value is None:
            model = scene.model_matrix()
            normal_matrix = np.ascontiguousarray(np.linalg.inv(model[:3, :3]).T, dtype=np.float32)
            planes = np.zeros((MAX_CLIP_PLANES, 4), dtype=np.float32)
            n_clip = min(len(scene.clip_planes), MAX_CLIP_PLANES)
            if n_clip:
                inv_t = np.linalg.inv(model).T
                for i, p in enumerate(scene.clip_planes[:n_clip]):
                    w = inv_t @ p.as_vec4()
                    planes[i] = w / np.linalg.norm(w[:3])  # unit normal: distances in metres
            self._key = key
            self._value = TwinTransform(model, model.astype(np.float32), normal_matrix, planes, n_clip)
        return self._value


class StructureSplit:
    """Visible opaque and visible transparent structures (indices) of a scene, recomputed only when
    the scene's ``version`` (bumped on every material change) moves."""

    def __init__(self) -> None:
        self._scene: Scene | None = None
        self._key: tuple[int, int] = (-1, -1)
        self._value: tuple[list[int], list[int]] = ([], [])

    def get(self, scene: Scene) -> tuple[list[int], list[int]]:
        """(opaque, transparent); the transparent list is a fresh copy the caller may reorder."""
        key = (scene.version, len(scene.materials))
        if self._scene is not scene or self._key != key:
            opaque = [i for i, m in enumerate(scene.materials) if m.visible and m.opaque]
            transparent = [i for i, m in enumerate(scene.materials) if m.visible and not m.opaque]
            self._scene, self._key, self._value = scene, key, (opaque, transparent)
        opaque, transparent = self._value
        return opaque, list(transparent)


def far_first(structures: list[int], centers: np.ndarray, model: np.ndarray, mid_eye: np.ndarray) -> list[int]:
    """``structures`` ordered by the distance of their bounding-sphere centre (``centers`` (S, 3), twin
    metres, through ``model``) from ``mid_eye`` (3,) world metres, farthest first (ties keep order)."""
    if not structures:
        return structures
    centres = (model[:3, :3] @ centers[structures].T).T + model[:3, 3]
    order = np.argsort(-np.linalg.norm(centres - mid_eye, axis=1), kind="stable")
    return [structures[k] for k in order]


def clear_color(background: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """The target's clear value for a scene ``background`` (straight linear RGBA): premultiplied, so
    that an alpha of 0 (passthrough, see-through displays) clears to (0, 0, 0, 0) whatever the RGB."""
    r, g, b, a = background
    return (r * a, g * a, b * a, a)


def marker_records(scene: Scene, model: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Instance records of the scene's markers in world space, or None when there are none.

    Returns (spheres, segments), each (N, 12) float32: (centre or start xyz, radius) in metres, (end
    xyz, 0) for segments (zeros for spheres), colour (linear RGBA). Landmarks and strokes are in twin
    coordinates (``model`` (4, 4) takes them to the world; their sizes scale with the twin); avatars,
    this user's hands and the session's overlay are in the world already.
    """
    spheres: list[tuple[float, ...]] = []
    segments: list[tuple[float, ...]] = []
    rot_t, off, scale = model[:3, :3].T, model[:3, 3], scene.twin_scale

    def world(points: Any) -> list[list[float]]:
        """Twin points (N, 3) in the world, as plain floats (numpy scalars cost more to unpack)."""
        out: list[list[float]] = (np.asarray(points, dtype=np.float64).reshape(-1, 3) @ rot_t + off).tolist()
        return out

    if scene.landmarks:
        for lm, p in zip(scene.landmarks, world([lm.position for lm in scene.landmarks]), strict=True):
            spheres.append((*p, lm.radius * scale, 0, 0, 0, 0, *lm.color))
    for st in scene.strokes:
        pts = world(st.points)
        half = st.width / 2 * scale
        for a, b in pairwise(pts):
            segments.append((*a, half, *b, 0, *st.color))
        for p in pts:  # round joints
            spheres.append((*p, half, 0, 0, 0, 0, *st.color))

    def hand(pose: Any, color: Any, length: float) -> None:
        x, y, z = (float(c) for c in pose.position)
        spheres.append((x, y, z, _HAND_RADIUS, 0, 0, 0, 0, *color))
        if length > 0:
            fx, fy, fz = (float(c) * length for c in pose.forward())
            segments.append((x, y, z, _RAY_RADIUS, x + fx, y + fy, z + fz, 0, *color))

    for av in scene.avatars:
        if av.head is not None:
            spheres.append((*av.head.position, AVATAR_HEAD_RADIUS, 0, 0, 0, 0, *av.color))
        for aim in av.hands:
            if aim is not None:
                hand(aim, av.color, av.pointer_length)
    if scene.show_local_hands:
        for local in scene.local_hands:
            if local.aim is not None and local.joints is None:  # a tracked bare hand shows its joints instead
                hand(local.aim, _LOCAL_HAND_COLOR, scene.local_pointer_length)
    for mark in scene.overlay:
        if isinstance(mark, Sphere):
            spheres.append((*mark.center, mark.radius, 0, 0, 0, 0, *mark.color))
        else:
            segments.append((*mark.a, mark.radius, *mark.b, 0, *mark.color))
    if not spheres and not segments:
        return None
    return np.array(spheres, dtype=np.float32).reshape(-1, 12), np.array(segments, dtype=np.float32).reshape(-1, 12)


def icosphere(subdivisions: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Unit sphere: (V, 6) float32 interleaved position + normal (the same unit vector) and (F, 3)
    uint32 triangles, from an icosahedron split ``subdivisions`` times (2: 320 triangles)."""
    t = (1 + 5**0.5) / 2
    v = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t),
         (0, -1, -t), (0, 1, -t), (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]  # fmt: skip
    f = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4),
         (11, 10, 2), (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9),
         (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]  # fmt: skip
    verts = [np.array(p, dtype=np.float64) / np.linalg.norm(p) for p in v]
    faces = f
    for _ in range(subdivisions):
        cache: dict[tuple[int, int], int] = {}

        def mid(a: int, b: int, cache: dict[tuple[int, int], int] = cache) -> int:
            key = (min(a, b), max(a, b))
            if key not in cache:
                m = verts[a] + verts[b]
                verts.append(m / np.linalg.norm(m))
                cache[key] = len(verts) - 1
            return cache[key]

        new = []
        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new
    p = np.array(verts, dtype=np.float32)
    return np.hstack([p, p]).astype(np.float32), np.array(faces, dtype=np.uint32)


def cylinder(sides: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Unit-radius open cylinder from z=0 to z=1: (2 sides, 6) float32 interleaved position + normal,
    and (2 sides, 3) uint32 triangles."""
    a = np.linspace(0, 2 * np.pi, sides, endpoint=False)
    ring = np.stack([np.cos(a), np.sin(a), np.zeros_like(a)], axis=1)
    pos = np.vstack([ring, ring + np.array([0.0, 0.0, 1.0])])
    nrm = np.vstack([ring, ring])
    idx = []
    for i in range(sides):
        j = (i + 1) % sides
        idx += [(i, j, sides + j), (i, sides + j, sides + i)]
    return np.hstack([pos, nrm]).astype(np.float32), np.array(idx, dtype=np.uint32)
