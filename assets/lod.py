"""Levels of detail: quadric simplification of each structure to target triangle counts (meshoptimizer).

Each level records the geometric error it introduced, in millimetres: the largest distance from the
original surface's vertices to the simplified surface (a one-sided Hausdorff distance, computed
exactly per vertex against the nearest candidate triangles; on meshes above ``ERROR_SAMPLE`` vertices
a seeded sample of vertices is measured).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from scipy.spatial import cKDTree

from assets.twin import LevelOfDetail, Structure, Twin
from assets.validate import degenerate_mask, duplicate_mask

log = logging.getLogger(__name__)

DEFAULT_TARGETS: tuple[int, ...] = (100_000, 25_000, 5_000)

#: Vertices measured for the error estimate; all of them on smaller meshes.
ERROR_SAMPLE = 50_000
#: Candidate triangles per measured vertex (those with the nearest centroids).
_CANDIDATES = 16
#: Vertices measured at a time (their candidates' temporaries stay a few MB).
_BLOCK = 4096


def closest_points_on_triangles(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Closest point on each triangle to each point.

    Parameters
    ----------
    points : (P, 3) float64
    triangles : (P, 3, 3) float64, one triangle per point

    Returns
    -------
    (P, 3) float64 closest points (the region tests of Ericson, Real-Time Collision Detection 5.1.5).
    """
    a, b, c = triangles[:, 0], triangles[:, 1], triangles[:, 2]
    ab, ac, ap = b - a, c - a, points - a
    d1 = np.einsum("ij,ij->i", ab, ap)
    d2 = np.einsum("ij,ij->i", ac, ap)
    bp = points - b
    d3 = np.einsum("ij,ij->i", ab, bp)
    d4 = np.einsum("ij,ij->i", ac, bp)
    cp = points - c
    d5 = np.einsum("ij,ij->i", ab, cp)
    d6 = np.einsum("ij,ij->i", ac, cp)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2

    with np.errstate(divide="ignore", invalid="ignore"):
        denom = va + vb + vc
        v = np.where(denom != 0, vb / denom, 0.0)
        w = np.where(denom != 0, vc / denom, 0.0)
        result = a + ab * v[:, None] + ac * w[:, None]  # interior

        # Edge regions, then vertex regions; later assignments take precedence as in the scalar test.
        t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        on_bc = (va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0)
        result = np.where(on_bc[:, None], b + (c - b) * t_bc[:, None], result)
        t_ac = d2 / (d2 - d6)
        on_ac = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
        result = np.where(on_ac[:, None], a + ac * t_ac[:, None], result)
        t_ab = d1 / (d1 - d3)
        on_ab = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
        result = np.where(on_ab[:, None], a + ab * t_ab[:, None], result)
    result = np.where(((d6 >= 0) & (d5 <= d6))[:, None], c, result)
    result = np.where(((d3 >= 0) & (d4 <= d3))[:, None], b, result)
    result = np.where(((d1 <= 0) & (d2 <= 0))[:, None], a, result)
    return result


def surface_distance(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Distance (same units as the inputs) from each point to the surface ``vertices``/``faces``.

    Each point is tested exactly against the triangles with the nearest centroids, which on a
    simplified anatomical surface contain the closest triangle.
    """
    v = vertices.astype(np.float64)
    tri = v[faces]
    k = min(_CANDIDATES, len(faces))
    tree = cKDTree(tri.mean(axis=1))
    distances = np.empty(len(points), dtype=np.float64)
    # in blocks: the exact test makes about 20 temporaries of (points x candidates, 3) float64, which for
    # the 50,000 sampled vertices at once was 300 MB, the peak of a whole CT import
    for start in range(0, len(points), _BLOCK):
        block = np.asarray(points[start : start + _BLOCK], dtype=np.float64)
        _, idx = tree.query(block, k=k)
        idx = np.asarray(idx).reshape(len(block), k)
        p = np.repeat(block, k, axis=0)
        closest = closest_points_on_triangles(p, tri[idx.reshape(-1)])
        distances[start : start + len(block)] = np.linalg.norm(closest - p, axis=1).reshape(len(block), k).min(axis=1)
    return distances


def simplification_error_mm(original: Structure, vertices: np.ndarray, faces: np.ndarray) -> float:
    """Largest distance (mm) from ``original``'s vertices to the simplified surface."""
    points = original.vertices
    if len(points) > ERROR_SAMPLE:
        pick = np.random.default_rng(0).choice(len(points), ERROR_SAMPLE, replace=False)
        points = points[pick]
    return float(surface_distance(points, vertices, faces).max() * 1000.0)


def _compact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Only the vertices ``faces`` use (in their order) and the faces renumbered to them."""
    used = np.unique(faces)
    remap = np.full(len(vertices), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return np.ascontiguousarray(vertices[used], dtype=np.float32), remap[faces].astype(np.int32)


def simplify(structure: Structure, target_triangles: int, start: LevelOfDetail | None = None) -> LevelOfDetail:
    """Quadric-simplify ``structure`` to about ``target_triangles`` triangles, from ``start`` (a finer level
    of it) when given; the error is measured against the structure itself either way.

    meshoptimizer's edge-collapse simplifier (``meshopt_simplify``, quadric error, topology kept) with no
    error limit, so that it stops at the triangle count: on a CT skull of 540,000 triangles it needs about
    60 MB and 0.4 s where fast-simplification needed 256 MB and 0.8 s, and its largest error at 100,000
    triangles is 4.3 mm against 6.0 mm (99th percentile 0.18 against 0.58 mm), on bench/imaging.py's CT head.
    Where no edge may collapse any more it stops above the target, and the level keeps what it reached.
    """
    import meshoptimizer  # noqa: PLC0415 - only level-of-detail building needs it

    if target_triangles < 4:
        raise ValueError(f"target_triangles must be at least 4, got {target_triangles}")
    vertices, faces_in = (structure.vertices, structure.faces) if start is None else (start.vertices, start.faces)
    if len(faces_in) and (int(faces_in.min()) < 0 or int(faces_in.max()) >= len(vertices)):
        raise ValueError("faces index vertices that do not exist")  # the C library would read out of bounds
    positions = np.ascontiguousarray(vertices, dtype=np.float32)
    indices = np.ascontiguousarray(faces_in, dtype=np.uint32).reshape(-1)
    out = np.empty_like(indices)
    # target_error 1.0: the mesh's whole extent, i.e. no limit; the triangle count is what stops it
    n = meshoptimizer.simplify(out, indices, positions, target_index_count=3 * target_triangles, target_error=1.0)
    if n > 3 * int(target_triangles * 1.02):
        log.info("%s: simplification stopped at %d triangles (target %d)", structure.name, n // 3, target_triangles)
    faces = out[:n].reshape(-1, 3).astype(np.int32)
    del out, indices
    # Strong reduction can collapse triangles onto each other: drop those, they only cost fill rate.
    keep = ~(degenerate_mask(positions, faces) | duplicate_mask(faces))
    points, faces = _compact(positions, faces[keep])
    error = simplification_error_mm(structure, points, faces)
    return LevelOfDetail(target_triangles=int(target_triangles), vertices=points, faces=faces, error_mm=error)


def build_lods(structure: Structure, targets: Sequence[int] = DEFAULT_TARGETS) -> list[LevelOfDetail]:
    """Levels for each target below the structure's own triangle count, finest first."""
    levels: list[LevelOfDetail] = []
    for target in sorted({int(t) for t in targets}, reverse=True):
        if target >= structure.triangle_count:
            continue
        # each level from the one before it: a tenth of the work and memory of starting again from a
        # CT's half a million triangles, and the quadric error stays measured against the original
        level = simplify(structure, target, levels[-1] if levels else None)
        log.debug("%s: %d -> %d triangles, error %.3f mm", structure.name, structure.triangle_count,
                  level.triangle_count, level.error_mm)
        levels.append(level)
    return levels


def add_lods(twin: Twin, targets: Sequence[int] = DEFAULT_TARGETS) -> Twin:
    """A copy of ``twin`` whose structures carry levels of detail for ``targets`` (per structure)."""
    structures = [replace(s, lods=build_lods(s, targets)) for s in twin.structures]
    return replace(twin, structures=structures)
