"""Geometry the runner scores with, in twin millimetres: distances to a polyline, whether a plane cuts
a structure, and how near points come to a structure's surface.

Kept apart from the runner so each check is one small function a test can hold against a hand
computation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Spacing (mm) of the points along an instrument's shaft that are checked against no-go structures.
SHAFT_STEP_MM = 2.0


def polyline_distance(point: np.ndarray, polyline: np.ndarray) -> float:
    """Shortest distance (mm) from ``point`` (3,) to the polyline ``polyline`` (N >= 2, 3)."""
    a, b = polyline[:-1], polyline[1:]
    ab = b - a
    length2 = np.einsum("ij,ij->i", ab, ab)
    u = np.where(length2 > 0, np.einsum("ij,ij->i", point - a, ab) / np.where(length2 > 0, length2, 1.0), 0.0)
    nearest = a + np.clip(u, 0.0, 1.0)[:, None] * ab
    return float(np.min(np.linalg.norm(nearest - point, axis=1)))


def shaft_points(hand: np.ndarray, tip: np.ndarray, step_mm: float = SHAFT_STEP_MM) -> np.ndarray:
    """Points (K, 3) from ``hand`` to ``tip`` (both ends included) at most ``step_mm`` apart."""
    length = float(np.linalg.norm(tip - hand))
    count = max(2, math.ceil(length / step_mm) + 1)
    u = np.linspace(0.0, 1.0, count)[:, None]
    return np.asarray(hand + u * (tip - hand))


def plane_angle_deg(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Angle (degrees, 0..90) between two plane normals, whichever way either points."""
    va, vb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    cos = abs(float(va @ vb)) / max(float(np.linalg.norm(va) * np.linalg.norm(vb)), 1e-12)
    return math.degrees(math.acos(min(1.0, cos)))


def plane_point_distance(normal: Sequence[float] | np.ndarray, offset_mm: float, point: Sequence[float] | np.ndarray) -> float:
    """Distance (mm) from ``point`` to the plane ``n . p + offset = 0`` (``n`` need not be unit)."""
    n = np.asarray(normal, dtype=np.float64)
    length = float(np.linalg.norm(n))
    return abs(float(n @ np.asarray(point, dtype=np.float64)) + offset_mm) / length


def plane_cuts(vertices_mm: np.ndarray, normal: Sequence[float] | np.ndarray, offset_mm: float) -> bool:
    """True when the plane ``n . p + offset = 0`` cuts the structure: its vertices lie on both sides."""
    n = np.asarray(normal, dtype=np.float64)
    s = vertices_mm @ n + offset_mm
    return bool(s.min() < 0.0 < s.max())


class SurfaceProximity:
    """How near points come to a structure's surface (mm): a KD-tree of its vertices and face
    centres, built once (a step's start), queried every frame. The error is at most the distance
    from a surface point to the nearest vertex or face centre: under a millimetre on the meshes
    medverse builds."""

    def __init__(self, vertices_mm: np.ndarray, faces: np.ndarray | None = None) -> None:
        from scipy.spatial import cKDTree  # noqa: PLC0415 - scipy only for instrument steps

        points = np.asarray(vertices_mm, dtype=np.float64)
        if faces is not None and len(faces):
            points = np.concatenate([points, points[np.asarray(faces)].mean(axis=1)])
        self.tree = cKDTree(points)

    def distance(self, points: np.ndarray) -> float:
        """The smallest distance (mm) from any of ``points`` (K, 3) to the surface."""
        d, _ = self.tree.query(np.atleast_2d(points), k=1)
        return float(np.min(d))
