"""Validation and repair of a structure's triangle mesh.

``check`` lists every problem it finds; ``validate`` raises the first one that makes the mesh unusable
as an ``AssetError`` subclass; ``repair`` fixes what can be fixed without inventing anatomy (it never
fills holes) and says what it did. All work is vectorised numpy: a 1,000,000-triangle structure takes
well under a second.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from assets import errors
from assets.twin import Structure, Twin

log = logging.getLogger(__name__)

#: Plausible extent of an anatomical structure, metres (largest side of the bounding box).
MIN_EXTENT_M = 0.001
MAX_EXTENT_M = 3.0

#: Faces whose area is below this (square metres) are degenerate: sides of about 0.1 micrometre.
MIN_FACE_AREA_M2 = 1e-14


@dataclass(frozen=True)
class Problem:
    """One kind of problem found in a mesh; ``error`` is the AssetError subclass that reports it."""

    kind: str
    message: str
    count: int
    error: type[errors.GeometryError]
    fatal: bool  # True when the mesh cannot be used as it is

    def exception(self, source: str | Path | None) -> errors.GeometryError:
        return self.error(source, self.message)


@dataclass
class RepairReport:
    """What ``repair`` changed; ``actions`` are one-line sentences, empty when nothing was needed."""

    actions: list[str] = field(default_factory=list)
    remaining: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.actions)


def _edge_keys(faces: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """Directed and undirected int64 keys of every face edge, shape (3M,), in face order."""
    a = faces.astype(np.int64)
    start = a.reshape(-1)
    end = a[:, [1, 2, 0]].reshape(-1)
    n = np.int64(max(n_vertices, 1))
    directed = start * n + end
    undirected = np.minimum(start, end) * n + np.maximum(start, end)
    return directed, undirected


def _face_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    v = vertices.astype(np.float64)
    tri = v[faces]
    areas: np.ndarray = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    return areas


def _signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Signed enclosed volume (m^3); positive when a closed surface's normals point outwards."""
    tri = vertices.astype(np.float64)[faces]
    return float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)


def degenerate_mask(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    repeated = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 0] == faces[:, 2])
    degenerate: np.ndarray = repeated | (_face_areas(vertices, faces) < MIN_FACE_AREA_M2)
    return degenerate


def duplicate_mask(faces: np.ndarray) -> np.ndarray:
    """True for every face that repeats an earlier face with the same three vertices (any order)."""
    key = np.sort(faces.astype(np.int64), axis=1)
    n = np.int64(int(key.max()) + 1 if len(key) else 1)
    if n < 2**21:  # three indices packed into one int64: much faster than unique over rows
        _, first = np.unique((key[:, 0] * n + key[:, 1]) * n + key[:, 2], return_index=True)
    else:
        _, first = np.unique(key, axis=0, return_index=True)
    mask = np.ones(len(faces), dtype=bool)
    mask[first] = False
    return mask


def check(structure: Structure, source: str | Path | None = None) -> list[Problem]:
    """Every problem in ``structure``'s mesh, fatal ones first.

    Parameters
    ----------
    structure : Structure
        ``vertices`` (N, 3) metres, ``faces`` (M, 3).
    source : str or Path, optional
        Unused here; kept so callers can pass the same arguments to ``check`` and ``validate``.
    """
    v, f = structure.vertices, structure.faces
    if len(v) == 0 or len(f) == 0:
        return [Problem("empty", f"structure {structure.name!r} has {len(v)} vertices and {len(f)} faces",
                        1, errors.EmptyMeshError, True)]
    problems: list[Problem] = []
    finite = np.isfinite(v).all(axis=1)
    if not finite.all():
        n = int((~finite).sum())
        problems.append(Problem("non-finite", f"structure {structure.name!r}: {n} vertices are NaN or infinite",
                                n, errors.NonFiniteVertexError, True))
    bad_index = ((f < 0) | (f >= len(v))).any(axis=1)
    if bad_index.any():
        n = int(bad_index.sum())
        problems.append(Problem("face-index", f"structure {structure.name!r}: {n} faces index outside "
                                f"0..{len(v) - 1}", n, errors.FaceIndexError, True))
    if problems:
        return problems  # the checks below index vertices with faces and need finite, in-range data

    extent = float((v.max(axis=0).astype(np.float64) - v.min(axis=0)).max())  # float64: no overflow
    if not MIN_EXTENT_M <= extent <= MAX_EXTENT_M:
        problems.append(Problem("bounds", f"structure {structure.name!r} measures {extent * 1000:.4g} mm, "
                                f"outside the plausible {MIN_EXTENT_M * 1000:g} mm to {MAX_EXTENT_M:g} m "
                                "(wrong units?)", 1, errors.ImplausibleBoundsError, True))

    degenerate = degenerate_mask(v, f)
    if degenerate.any():
        n = int(degenerate.sum())
        problems.append(Problem("degenerate", f"structure {structure.name!r}: {n} degenerate faces "
                                "(repeated vertex or zero area)", n, errors.DegenerateFacesError, False))
    duplicate = duplicate_mask(f)
    if duplicate.any():
        n = int(duplicate.sum())
        problems.append(Problem("duplicate", f"structure {structure.name!r}: {n} duplicate faces",
                                n, errors.DuplicateFacesError, False))

    directed, undirected = _edge_keys(f, len(v))
    _, edge_counts = np.unique(undirected, return_counts=True)
    non_manifold = int((edge_counts > 2).sum())
    if non_manifold:
        problems.append(Problem("non-manifold", f"structure {structure.name!r}: {non_manifold} edges are "
                                "shared by more than two faces", non_manifold, errors.NonManifoldError, False))
    _, directed_counts = np.unique(directed, return_counts=True)
    flipped = int((directed_counts > 1).sum())
    if flipped:
        problems.append(Problem("winding", f"structure {structure.name!r}: {flipped} edges are traversed "
                                "twice in the same direction (inconsistent winding)", flipped,
                                errors.WindingError, False))
    boundary = int((edge_counts == 1).sum())
    if boundary:
        problems.append(Problem("not-watertight", f"structure {structure.name!r}: {boundary} boundary edges "
                                "(the surface has holes)", boundary, errors.NotWatertightError, False))
    elif not flipped and not non_manifold and _signed_volume(v, f) < 0:
        problems.append(Problem("inverted", f"structure {structure.name!r}: normals point inwards "
                                "(negative enclosed volume)", 1, errors.WindingError, False))
    return problems


def is_watertight(structure: Structure) -> bool:
    """True when every edge of the mesh is shared by exactly two faces."""
    if len(structure.faces) == 0:
        return False
    _, undirected = _edge_keys(structure.faces, len(structure.vertices))
    _, counts = np.unique(undirected, return_counts=True)
    return bool((counts == 2).all())


def validate(structure: Structure, source: str | Path | None = None, *, require_watertight: bool = False) -> None:
    """Raise the first problem that makes ``structure`` unusable.

    Fatal problems (empty, non-finite, bad index, implausible bounds) always raise; the repairable
    ones (degenerate, duplicate, non-manifold, winding) raise too, since a validated mesh is one that
    needs no repair; a surface with holes raises only with ``require_watertight``.
    """
    for problem in check(structure, source):
        if problem.kind == "not-watertight" and not require_watertight:
            continue
        raise problem.exception(source)


def validate_twin(twin: Twin, source: str | Path | None = None, *, require_watertight: bool = False) -> None:
    """``validate`` every structure; an empty twin raises ``EmptyMeshError``."""
    if not twin.structures:
        raise errors.EmptyMeshError(source or twin.name, f"twin {twin.name!r} has no structures")
    for structure in twin.structures:
        validate(structure, source or twin.name, require_watertight=require_watertight)


def merge_identical_vertices(v: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Vertices (N, 3) with exact duplicates merged, faces re-indexed, and how many were merged."""
    unique, inverse = np.unique(v, axis=0, return_inverse=True)
    merged = len(v) - len(unique)
    if not merged:
        return v, f, 0
    return unique, inverse.reshape(-1)[f], merged


def _drop_unreferenced(v: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    used = np.zeros(len(v), dtype=bool)
    used[f.reshape(-1)] = True
    dropped = int((~used).sum())
    if not dropped:
        return v, f, 0
    remap = np.cumsum(used) - 1
    return v[used], remap[f].astype(np.int32), dropped


def _fix_winding(v: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, int]:
    """Make neighbouring faces agree in orientation, then point closed shells outwards."""
    import trimesh  # noqa: PLC0415 - only repair needs the face-graph traversal

    mesh = trimesh.Trimesh(vertices=v.astype(np.float64), faces=f, process=False, validate=False)
    before = mesh.faces.copy()
    trimesh.repair.fix_winding(mesh)
    if mesh.is_watertight:
        trimesh.repair.fix_inversion(mesh)
    flipped = int((before != mesh.faces).any(axis=1).sum())
    return np.asarray(mesh.faces, dtype=np.int32), flipped


def repair(structure: Structure, source: str | Path | None = None) -> tuple[Structure, RepairReport]:
    """Fix what can be fixed; return the repaired copy and what was done.

    Removes faces with out-of-range indices or non-finite vertices, merges vertices at identical
    positions (STL stores none shared), removes degenerate and duplicate faces and unreferenced
    vertices, and makes winding consistent with normals pointing outwards. It does not fill holes or
    split non-manifold edges: those remain and are listed in ``RepairReport.remaining``.
    """
    report = RepairReport()
    v = np.asarray(structure.vertices, dtype=np.float32)
    f = np.asarray(structure.faces, dtype=np.int64)
    name = structure.name

    if len(f):
        bad = ((f < 0) | (f >= len(v))).any(axis=1)
        if bad.any():
            f = f[~bad]
            report.actions.append(f"{name}: removed {int(bad.sum())} faces with out-of-range indices")
    finite = np.all(np.isfinite(v), axis=1)  # v is (N, 3) even when empty (Structure reshapes it)
    if len(f) and not finite.all():
        touches = (~finite[f]).any(axis=1)
        f = f[~touches]
        report.actions.append(f"{name}: removed {int(touches.sum())} faces touching "
                              f"{int((~finite).sum())} non-finite vertices")
    if len(f):
        v, f, merged = merge_identical_vertices(v, f)
        if merged:
            report.actions.append(f"{name}: merged {merged} vertices at identical positions")
        degenerate = degenerate_mask(v, f)
        if degenerate.any():
            f = f[~degenerate]
            report.actions.append(f"{name}: removed {int(degenerate.sum())} degenerate faces")
    if len(f):
        duplicate = duplicate_mask(f)
        if duplicate.any():
            f = f[~duplicate]
            report.actions.append(f"{name}: removed {int(duplicate.sum())} duplicate faces")
    if len(f):
        v, f, dropped = _drop_unreferenced(v, f)
        if dropped:
            report.actions.append(f"{name}: removed {dropped} unreferenced vertices")
    else:
        v = v[:0]

    fixed = replace(structure, vertices=v, faces=f.astype(np.int32), lods=[])
    kinds = {p.kind for p in check(fixed, source)}
    if kinds & {"winding", "inverted"} and "non-manifold" not in kinds:
        faces, flipped = _fix_winding(fixed.vertices, fixed.faces)
        fixed = replace(fixed, faces=faces)
        report.actions.append(f"{name}: flipped {flipped} faces so that winding is consistent and "
                              "normals point outwards")
        kinds = {p.kind for p in check(fixed, source)}
    report.remaining = sorted(kinds)
    if report.actions:
        log.info("repaired %s: %s", source or name, "; ".join(report.actions))
    if not report.actions:
        return structure, report  # unchanged: keep the caller's arrays and levels of detail
    return fixed, report
