"""Controller input helpers and picking: which structure of the twin is under a pointer ray.

Picking runs every frame for every hand, so it casts rays against a bounding volume hierarchy that
Intel Embree (``embreex``) builds once per twin, one geometry per structure: a ray costs microseconds on
a 1,000,000-triangle twin instead of the tens of milliseconds of a test against every triangle.

Coordinates: rays are in world space (metres, OpenXR convention). The BVH is built in the twin's own
frame; the ray is mapped into that frame at each pick through the 4x4 world-from-twin matrix (the
scene's twin pose and scale), so moving or scaling the twin never rebuilds anything. Hits report the
point in twin coordinates in millimetres (what annotations and landmarks store) and the distance along
the ray in world metres.

What a user sees is what a ray picks: hidden structures are passed through, and so is geometry cut
away by a clip plane; where a ray passes a clip plane into the inside of a structure, it hits the cut
face (the renderer caps the cut there) rather than the far wall behind it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from embreex import rtcore_scene
from embreex.mesh_construction import TriangleMesh

from assets.twin import Twin
from xrcore.types import HandInput, InputState, Pose

logger = logging.getLogger(__name__)

#: A ray is re-cast past hidden or clipped surfaces at most this many times.
MAX_SKIPS = 64
#: How far past a skipped surface a re-cast ray starts, in twin-frame units (metres): far above the
#: float32 spacing at anatomical distances (~1e-8 m at 0.3 m) and far below any structure's thickness.
SKIP_EPS_M = 1e-6


@dataclass(frozen=True)
class Hit:
    """A ray's first hit on what is drawn.

    ``structure``: the structure's name; ``index``: its index in the twin; ``point_mm``: (3,) float64
    hit point in twin coordinates, millimetres; ``distance_m``: distance from the ray origin along the
    ray, world metres; ``face``: index of the triangle in that structure's ``faces`` (-1 for a clip
    plane's cut face); ``normal``: (3,) float64 unit surface normal at the hit, twin frame, facing
    the ray's origin side of the surface as drawn (the clip plane's normal on a cut face).
    """

    structure: str
    index: int
    point_mm: np.ndarray
    distance_m: float
    face: int
    normal: np.ndarray

    @property
    def on_cut(self) -> bool:
        """True when the ray hit the capped face of a clip plane's cross-section."""
        return self.face < 0


#: Thumb-to-index tip distance (m) of a full pinch and of an open hand: a pinch's strength falls
#: linearly from 1 to 0 between them.
PINCH_CLOSED_M, PINCH_OPEN_M = 0.015, 0.05
#: Mean distance (m) of the middle, ring and little finger tips from the palm in a fist and in an open
#: hand: a fist's strength falls linearly between them.
FIST_CLOSED_M, FIST_OPEN_M = 0.045, 0.085


def _ramp(value: float, full: float, none: float) -> float:
    return float(min(1.0, max(0.0, (none - value) / (none - full))))


def pinch_strength(hand: HandInput) -> float:
    """How closed the pinch of a tracked hand is, 0..1 (0 without joints): thumb tip against index tip."""
    if hand.joints is None:
        return 0.0
    gap = float(np.linalg.norm(hand.joints.position("thumb_tip") - hand.joints.position("index_tip")))
    return _ramp(gap, PINCH_CLOSED_M, PINCH_OPEN_M)


def grab_strength(hand: HandInput) -> float:
    """How closed the fist of a tracked hand is, 0..1 (0 without joints): the middle, ring and little
    finger tips curled to the palm (the index stays free, so a pinch is not a grab)."""
    if hand.joints is None:
        return 0.0
    palm = hand.joints.position("palm")
    reach = np.mean([np.linalg.norm(hand.joints.position(f"{f}_tip") - palm) for f in ("middle", "ring", "little")])
    return _ramp(float(reach), FIST_CLOSED_M, FIST_OPEN_M)


def pointer_ray(hand: HandInput) -> tuple[np.ndarray, np.ndarray] | None:
    """The pointer ray of a hand: origin (3,) m and unit direction (3,) along the aim pose's -Z.

    Returns ``None`` when the hand is not tracked.
    """
    if hand.aim is None:
        return None
    return np.asarray(hand.aim.position, dtype=np.float64), hand.aim.forward()


def _plane_array(clip_planes: Sequence[Any]) -> np.ndarray:
    """(K, 4) float64 ``[nx, ny, nz, offset]`` rows from clip planes or 4-vectors (kept: ``n.p + d >= 0``)."""
    rows = [np.asarray(p.as_vec4() if hasattr(p, "as_vec4") else p, dtype=np.float64).reshape(4) for p in clip_planes]
    return np.stack(rows) if rows else np.zeros((0, 4))


class Picker:
    """Ray picking against a twin's structures.

    Parameters
    ----------
    twin
        The twin whose structures are picked; its level-0 meshes (metres, twin frame) go into one
        Embree BVH when the picker is made (about 0.5 s per million triangles on a 2-core machine;
        ``bench/picking.py`` measures it). Structures without
        triangles are never hit.
    """

    def __init__(self, twin: Twin) -> None:
        if not isinstance(twin, Twin):
            raise TypeError(f"Picker needs a Twin, got {type(twin).__name__}")
        self.twin = twin
        # Centre the geometry before the float32 conversion Embree needs, so twins placed far from
        # their own origin (scanner coordinates) keep sub-micrometre precision.
        self._offset = twin.bounds().mean(axis=0)
        self._scene = rtcore_scene.EmbreeScene()
        self._structure_of_geom: list[int] = []
        for index, structure in enumerate(twin.structures):
            if not structure.triangle_count:
                continue
            TriangleMesh(
                scene=self._scene,
                vertices=np.ascontiguousarray(structure.vertices - self._offset.astype(np.float32), dtype=np.float32),
                indices=np.ascontiguousarray(structure.faces, dtype=np.int32),
            )
            self._structure_of_geom.append(index)
        logger.debug("picker over %d structures, %d triangles", len(self._structure_of_geom), twin.triangle_count)

    def pick(
        self,
        origin: np.ndarray | Sequence[float],
        direction: np.ndarray | Sequence[float],
        *,
        world_from_twin: np.ndarray | None = None,
        twin_from_world: np.ndarray | None = None,
        visible: Sequence[bool] | None = None,
        clip_planes: Sequence[Any] = (),
        max_distance: float = np.inf,
    ) -> Hit | None:
        """First drawn surface hit by the ray ``origin + t * direction``, ``0 < t <= max_distance``.

        Parameters
        ----------
        origin
            (3,) ray origin, world metres.
        direction
            (3,) ray direction, world; need not be unit length (it is normalised).
        world_from_twin
            (4, 4) affine twin-to-world matrix (rotation, translation, uniform scale); identity when
            ``None``.
        twin_from_world
            Its inverse, when the caller has it already (a scene keeps it): saves inverting per pick.
        visible
            One flag per twin structure; hidden structures are passed through. All visible when
            ``None``.
        clip_planes
            Clip planes in twin coordinates (objects with ``as_vec4()`` or 4-vectors
            ``[nx, ny, nz, offset_m]``); points with ``n . p + offset < 0`` are cut away.
        max_distance
            Farthest hit to report, world metres.

        Returns
        -------
        Hit | None
            The nearest drawn hit, or ``None`` when the ray misses.

        Raises
        ------
        ValueError
            A non-finite origin or direction, a zero direction, or a ``visible`` of the wrong length.
        """
        o = np.asarray(origin, dtype=np.float64).reshape(3)
        d = np.asarray(direction, dtype=np.float64).reshape(3)
        norm = float(np.linalg.norm(d))
        if not (np.isfinite(o).all() and np.isfinite(d).all()) or norm == 0.0:
            raise ValueError(f"pick needs a finite origin and a non-zero direction, got {o} and {d}")
        if visible is not None and len(visible) != len(self.twin.structures):
            raise ValueError(f"visible has {len(visible)} flags for {len(self.twin.structures)} structures")
        d = d / norm
        if world_from_twin is None and twin_from_world is None:
            o_t, d_t = o, d
        else:
            # An affine map keeps the ray parameter: with the direction mapped but not renormalised,
            # t along the twin-frame ray is still the world distance in metres.
            inv = (np.linalg.inv(np.asarray(world_from_twin, dtype=np.float64).reshape(4, 4))
                   if twin_from_world is None else np.asarray(twin_from_world, dtype=np.float64))  # fmt: skip
            o_t = inv[:3, :3] @ o + inv[:3, 3]
            d_t = inv[:3, :3] @ d
        return self._cast(o_t - self._offset, d_t, visible, _plane_array(clip_planes), float(max_distance))

    def _cast(self, o: np.ndarray, d: np.ndarray, visible: Sequence[bool] | None, planes: np.ndarray,
              limit: float) -> Hit | None:
        # Planes shifted into the centred frame Embree works in: n . (p + offset) + c >= 0.
        if len(planes):
            planes = planes.copy()
            planes[:, 3] += planes[:, :3] @ self._offset
        t0 = 0.0  # where the current re-cast starts, along the original ray
        for _ in range(MAX_SKIPS):
            if t0 >= limit:
                return None
            start = o + d * t0
            dist = np.array([min(limit - t0, 3.0e38)], dtype=np.float32)
            result = self._scene.run(start.astype(np.float32)[None, :], d.astype(np.float32)[None, :],
                                     dists=dist, output=1)
            geom = int(result["geomID"][0])
            if geom < 0:
                return None
            t = t0 + float(result["tfar"][0])
            if t > limit:
                return None
            index = self._structure_of_geom[geom]
            point = o + d * t
            if visible is not None and not visible[index]:
                t0 = t + SKIP_EPS_M
                continue
            ng = result["Ng"][0].astype(np.float64)
            ng /= np.linalg.norm(ng) or 1.0
            if len(planes):
                kept = planes[:, :3] @ point + planes[:, 3] >= 0.0
                if not kept.all():
                    t0 = t + SKIP_EPS_M
                    continue
                # A kept hit on a surface seen from inside (a back face: the ray is leaving the
                # structure) means the ray entered the structure through a cut; the first thing drawn
                # along it is the cap on the plane it crossed last, where it entered the kept region.
                if ng @ d > 0.0:
                    cut = self._cap_entry(o, d, planes, t)
                    if cut is not None:
                        t_cut, k = cut
                        return self._hit(index, o + d * t_cut, t_cut, -1, planes[k, :3])
            normal = ng if ng @ d <= 0.0 else -ng
            return self._hit(index, point, t, int(result["primID"][0]), normal)
        logger.debug("ray gave up after %d hidden or clipped surfaces", MAX_SKIPS)
        return None

    @staticmethod
    def _cap_entry(o: np.ndarray, d: np.ndarray, planes: np.ndarray, t_hit: float) -> tuple[float, int] | None:
        """The last plane the ray crosses into the kept side before ``t_hit``: ``(t, plane index)``."""
        rate = planes[:, :3] @ d
        value0 = planes[:, :3] @ o + planes[:, 3]
        best: tuple[float, int] | None = None
        for k in range(len(planes)):
            if rate[k] <= 0.0:
                continue  # moving out of (or along) this plane's kept side: no entry
            t_k = -value0[k] / rate[k]
            if 0.0 < t_k < t_hit and (best is None or t_k > best[0]):
                best = (float(t_k), k)
        return best

    def _hit(self, index: int, point: np.ndarray, t: float, face: int, normal: np.ndarray) -> Hit:
        return Hit(
            structure=self.twin.structures[index].name,
            index=index,
            point_mm=(point + self._offset) * 1000.0,
            distance_m=float(t),
            face=face,
            normal=np.asarray(normal, dtype=np.float64),
        )

    def pick_scene(self, scene: Any, origin: np.ndarray | Sequence[float], direction: np.ndarray | Sequence[float],
                   max_distance: float = np.inf) -> Hit | None:
        """Pick what a scene draws: its twin pose and scale, hidden structures and clip planes.

        ``scene`` is an :class:`xrcore.scene.Scene` (read: ``model_matrix()``, ``materials[i].visible``,
        ``clip_planes``) built on this picker's twin.
        """
        if scene.twin is not self.twin:
            raise ValueError(f"scene shows twin {scene.twin.name!r}, the picker was built for {self.twin.name!r}")
        return self.pick(origin, direction, twin_from_world=scene.twin_from_world(),
                         visible=[m.visible for m in scene.materials], clip_planes=scene.clip_planes,
                         max_distance=max_distance)

    def pick_hand(self, hand: HandInput, scene: Any = None, max_distance: float = np.inf) -> Hit | None:
        """Pick along a hand's pointer ray (through ``scene`` when given); ``None`` when untracked or nothing is hit."""
        ray = pointer_ray(hand)
        if ray is None:
            return None
        if scene is not None:
            return self.pick_scene(scene, ray[0], ray[1], max_distance)
        return self.pick(ray[0], ray[1], max_distance=max_distance)

    def pick_hands(self, inputs: InputState, scene: Any = None,
                   max_distance: float = np.inf) -> tuple[Hit | None, Hit | None]:
        """What each hand's pointer is on this frame: ``(left hit, right hit)``, ``None`` where nothing is."""
        return (self.pick_hand(inputs.left, scene, max_distance), self.pick_hand(inputs.right, scene, max_distance))

    def pick_pose(self, pose: Pose, max_distance: float = np.inf) -> Hit | None:
        """Pick along a pose's -Z axis (a gaze ray from the head pose, say), twin at the world origin."""
        return self.pick(np.asarray(pose.position, dtype=np.float64), pose.forward(), max_distance=max_distance)

    def pick_many(self, origins: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cast many rays at once (twin frame = world, nothing hidden or clipped).

        Parameters
        ----------
        origins, directions
            (N, 3) ray origins (m) and directions (normalised here).

        Returns
        -------
        tuple of numpy.ndarray
            ``structure`` (N,) int32 index of the structure hit (-1 for a miss) and ``distance_m``
            (N,) float64 (inf for a miss).
        """
        o = np.asarray(origins, dtype=np.float64).reshape(-1, 3) - self._offset
        d = np.asarray(directions, dtype=np.float64).reshape(-1, 3)
        d = d / np.linalg.norm(d, axis=1, keepdims=True)
        result = self._scene.run(o.astype(np.float32), d.astype(np.float32), output=1)
        geom = result["geomID"].astype(np.int64)
        lookup = np.asarray(self._structure_of_geom + [-1], dtype=np.int32)
        structure = lookup[np.where(geom < 0, -1, geom)]
        distance = np.where(geom < 0, np.inf, result["tfar"].astype(np.float64))
        return structure, distance
