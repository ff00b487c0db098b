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


#: Faces handled at a time by the per-face geometry below: its float64 temporaries stay a few MB (all
#: faces at once made 110 MB of them for a 540k-triangle CT surface, a third of an import's peak).
_FACE_BLOCK = 1 << 16


def _face_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    v = vertices.astype(np.float64)
    areas = np.empty(len(faces), dtype=np.float64)
    for start in range(0, len(faces), _FACE_BLOCK):
        tri = v[faces[start : start + _FACE_BLOCK]]
        cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        areas[start : start + len(tri)] = 0.5 * np.linalg.norm(cross, axis=1)
    return areas


def _signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Signed enclosed volume (m^3); positive when a closed surface's normals point outwards."""
    v = vertices.astype(np.float64)
    total = 0.0
    for start in range(0, len(faces), _FACE_BLOCK):
        tri = v[faces[start : start + _FACE_BLOCK]]
        total += float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum())
    return total / 6.0


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


def _edge_counts(faces: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """Undirected edge keys of ``faces`` and, for each face edge, how many face edges share its key."""
    _, undirected = _edge_keys(faces, n_vertices)
    _, inverse, counts = np.unique(undirected, return_inverse=True, return_counts=True)
    return undirected, counts[inverse.reshape(-1)]


def merge_identical_vertices(v: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Vertices (N, 3) at identical positions merged wherever that keeps the surface manifold; faces
    re-indexed; and how many vertices fewer there are.

    Merging closes seams (STL stores no shared corners at all; other writers split vertices along
    texture or normal seams). But two sheets of a valid surface can touch at an edge: marching cubes
    puts vertices exactly on a grid point when a voxel equals the iso-value (VTK's surfaces of integer
    CT, InVesalius' own among them), as different vertices at one position. Merging those makes edges
    shared by four faces, which the file did not have. So, when a plain merge gives an edge more than
    two faces, corners are joined only across edges that two faces share after merging (and wherever
    the file itself shared a vertex), and each corner of an edge with more faces stays with its own
    sheet; the sheets then meet there without sharing the edge (as the file had them). Only edges that
    were shared by more than two faces in the file itself stay that way. Faces of zero area take no
    part (repair removes them).
    """
    unique, inverse = np.unique(v, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    merged = len(v) - len(unique)
    if not merged:
        return v, f, 0
    g = inverse[f]
    live = ~degenerate_mask(unique, g)
    _, counts = _edge_counts(g[live], len(unique))
    if not (counts > 2).any():
        return unique, g, merged
    welded_v, welded_f, kept = _manifold_weld(v, f, unique, g, live)
    log.info("kept %d vertices apart: merging them would join surfaces along edges of more than two faces", kept)
    return welded_v, welded_f, len(v) - len(welded_v)


def _manifold_weld(v: np.ndarray, f: np.ndarray, unique: np.ndarray, g: np.ndarray,
                   live: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Corners (face, 0..2) united across edges exactly two live faces share by position, and with
    every corner of the same file vertex; then every vertex on an edge of more than two faces goes
    back to the file's own vertices. Returns vertices, faces and how many vertices stayed apart."""
    from scipy.sparse import coo_matrix  # noqa: PLC0415 - only surfaces that touch themselves get here
    from scipy.sparse.csgraph import connected_components  # noqa: PLC0415 - as above

    n_faces, n_file = len(f), len(v)
    corners = np.arange(3 * n_faces)
    ends = 3 * (corners // 3) + (corners % 3 + 1) % 3  # face edge c runs from corner c to corner ends[c]
    position = g.reshape(-1)  # merged vertex of each corner
    _, keys = _edge_keys(g, len(unique))
    live_edges = np.flatnonzero(np.repeat(live, 3))
    order = live_edges[np.argsort(keys[live_edges], kind="stable")]
    _, starts, counts = np.unique(keys[order], return_index=True, return_counts=True)
    a, b = order[starts[counts == 2]], order[starts[counts == 2] + 1]  # the two face edges of each such edge
    aligned = position[a] == position[b]  # same direction (winding to fix later) or opposite
    a_end, b_end = ends[a], ends[b]
    rows = np.concatenate([a, a_end, corners])
    cols = np.concatenate([np.where(aligned, b, b_end), np.where(aligned, b_end, b), 3 * n_faces + f.reshape(-1)])
    size = 3 * n_faces + n_file
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(size, size))
    _, labels = connected_components(graph, directed=False)
    corner_label = labels[: 3 * n_faces]
    # Where an edge still has more than two live faces, its vertices go back to the file's.
    _, new_faces = np.unique(corner_label, return_inverse=True)
    new_faces = new_faces.reshape(-1, 3)
    _, counts = _edge_counts(new_faces[live], int(new_faces.max()) + 1)
    bad_edges = live_edges[counts > 2]
    kept = 0
    if len(bad_edges):
        bad_labels = np.unique(corner_label[np.concatenate([bad_edges, ends[bad_edges]])])
        revert = np.isin(corner_label, bad_labels)
        kept = int(revert.sum())
        corner_label = np.where(revert, labels.max() + 1 + f.reshape(-1), corner_label)
    _, first, new_faces = np.unique(corner_label, return_index=True, return_inverse=True)
    vertices = unique[position[first]]
    return vertices, new_faces.reshape(-1, 3), kept


def _drop_unreferenced(v: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    used = np.zeros(len(v), dtype=bool)
    used[f.reshape(-1)] = True
    dropped = int((~used).sum())
    if not dropped:
        return v, f, 0
    remap = np.cumsum(used) - 1
    return v[used], remap[f].astype(np.int32), dropped


def _fix_winding(v: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, int]:
    """Make neighbouring faces agree in orientation, then point a closed surface outwards.

    Faces are nodes of a graph twice over, as they are and flipped; two faces sharing an edge (by two
    faces only) join "as is" to "as is" when they traverse it in opposite directions, and "as is" to
    "flipped" when in the same direction. Each piece of the surface then gives two mirror components;
    of the two, the one that flips fewer faces is kept. Vectorised: trimesh's face-by-face traversal
    took two minutes on a 400k-face skull. A closed surface with negative volume is turned inside out.
    """
    from scipy.sparse import coo_matrix  # noqa: PLC0415 - only repair needs the face graph
    from scipy.sparse.csgraph import connected_components  # noqa: PLC0415 - as above

    n = len(f)
    directed, undirected = _edge_keys(f, len(v))
    order = np.argsort(undirected, kind="stable")
    keys = undirected[order]
    _, starts, counts = np.unique(keys, return_index=True, return_counts=True)
    pairs = order[np.stack([starts[counts == 2], starts[counts == 2] + 1], axis=1)]  # face edges, two per edge
    a, b = pairs[:, 0] // 3, pairs[:, 1] // 3
    same = directed[pairs[:, 0]] == directed[pairs[:, 1]]  # same direction: one of the two must flip
    rows = np.concatenate([a, a + n])
    cols = np.concatenate([np.where(same, b + n, b), np.where(same, b, b + n)])
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(2 * n, 2 * n))
    _, labels = connected_components(graph, directed=False)
    as_is, flipped_label = labels[:n], labels[n:]
    # Per mirror pair of components, keep the one in which fewer faces are flipped. A face whose two
    # states share a component (a Moebius-like piece) cannot be oriented and stays as it is.
    # Ties go to the lower label, the same choice seen from every face of the piece.
    votes = np.bincount(as_is, minlength=labels.max() + 1)
    mirror = votes[flipped_label] - votes[as_is]
    flip = ((mirror > 0) | ((mirror == 0) & (flipped_label < as_is))) & (as_is != flipped_label)
    faces = np.where(flip[:, None], f[:, ::-1], f)
    flips = int(flip.sum())
    _, counts_all = np.unique(undirected, return_counts=True)
    if (counts_all == 2).all() and _signed_volume(v, faces) < 0:
        faces = faces[:, ::-1]
        flips = n - flips
    return np.ascontiguousarray(faces, dtype=np.int32), flips


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
