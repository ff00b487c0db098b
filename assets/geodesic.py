"""Geodesic distance along a triangle-mesh surface between two points on it, for the Measure tool.

The distance is the exact length of the shortest path on the polyhedral surface: the "exact" algorithm of
Surazhsky et al. (SIGGRAPH 2005, after Mitchell, Mount and Papadimitriou), in Kirsanov's implementation as
packaged by ``pygeodesic``. A Dijkstra over edges would overestimate by 4-19 % on the fsaverage5 pial surface.

The exact propagation covers the whole geodesic disc around one point (~200 ms on a 20k-triangle cortex), so each
query works on a local copy that holds only the faces the shortest path can cross, with the two points inserted:

1. An upper bound ``U`` on the distance: a Dijkstra over the edges and over the unfolded diagonals of neighbouring
   triangle pairs (each a straight segment on the surface), bounded so that it visits only what it must.
   It overestimates by 1-7 % (edges alone: 4-19 %).
2. Every point ``x`` of the shortest path from ``a`` to ``b`` satisfies ``L(a, x) + L(x, b) <= U`` for any lower
   bound ``L`` of the geodesic distance: the straight-line distance, and ``|g(a) - g(x)|`` for the exact distance
   field ``g`` from a landmark (computed when the object is built). Across a triangle either bound changes by at
   most its longest edge, so each corner ``v`` of a face the path crosses has ``L(a, v) + L(v, b) <= U + 2 * edge``;
   the copy keeps the faces that pass. It holds the whole shortest path and nothing in it is shorter (it is part
   of the surface), so its shortest path is the mesh's: the pruning is exact.
3. Each point becomes a vertex: its face splits in three (on an edge, every face on that edge splits in two; at a
   corner, that corner is used). A split adds no area and bends nothing: the surface, and the distance, stay.

A point is first moved onto its face: projected onto the face's plane and clamped into the triangle. Where a split
would make a piece with a corner angle whose sine is under ``MIN_SINE`` (slivers stall Kirsanov's propagation or
exhaust its memory), the point moves onto the nearest edge instead, and onto the nearest corner if that edge's
pieces would be slivers too: by less than ``MIN_SINE`` times the triangle's longest edge over the sine of its
smallest angle (measured: up to 0.6 of that; 0.1 um on fsaverage5's 4 mm triangles). The distance changes by no
more than the points move.

Kirsanov's code corrupts memory where an edge has more than two faces, misbehaves on degenerate triangles, and
gets distances wrong through a vertex where two parts of a surface only touch (0 from one part to the other of a
bowtie; shorter than the straight line on a plane). So every mesh it is given has a vertex of its own for each fan
of faces around a vertex
(faces joined through edges with two faces): where pruning made the fans, the shortest path touches none of them
(all the faces around a vertex it touches pass the test of step 2). Where the mesh itself is not a clean surface,
the distance is that of a cleaned copy: faces with a repeated corner or a corner angle whose sine is under
``MIN_SINE`` are left out (a point on one stands at its nearest corner); at an edge with more than two faces only
two that are one sheet around both its ends stay joined (a fin on a surface is cut off, the surface is not); and
no path passes through a vertex where two parts only touch. Parts cut apart are ``inf`` apart.

``pygeodesic`` is imported when a ``SurfaceGeodesics`` is built, so that this module imports without it. Its
propagation holds the GIL.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components, dijkstra

log = logging.getLogger(__name__)

#: No triangle handed to Kirsanov's code has a corner angle whose sine is below this (its own checks, compiled out,
#: ask for 1e-5 rad): such faces of the mesh are left out, and a point is not inserted where it would make one.
MIN_SINE = 1e-5

#: Larger meshes are refused (``GeodesicSizeError``): a query takes about as long as its pruned copy is large, and
#: random pairs on a 100k-triangle brain take 160 ms (median; 50k: 80 ms, fsaverage5's 20k: 50 ms). Callers ask
#: ``SurfaceGeodesics.supports(n_faces)`` first, and offer only the straight-line distance above it.
MAX_FACES = 50_000

#: Exact distance fields kept for the lower bounds of step 2. Each costs one propagation over the whole mesh when
#: the object is built (0.2 s on a fsaverage5 hemisphere); eight halve the median query there (110 -> 50 ms),
#: sixteen gain another fifth for twice the build.
LANDMARKS = 8

#: The bounded Dijkstra first searches this many times the straight-line distance (plus a triangle), and grows the
#: search by the same factor until it reaches the far point: a folded surface can need more than one step.
_SEARCH_GROWTH = 4.0


class GeodesicSizeError(ValueError):
    """The mesh has more triangles than the limit ``SurfaceGeodesics`` was given."""


@dataclass(frozen=True)
class GeodesicPath:
    """The shortest path on the surface between two points.

    ``length``: in the mesh's units (metres for a twin); ``inf`` when the points are on parts of the mesh that no
    edge connects. ``points``: (N, 3) float64 polyline on the surface from the first point to the second, with a
    point where it crosses each edge; (0, 3) when ``length`` is ``inf``.
    """

    length: float
    points: np.ndarray


class _ExactSolver(Protocol):
    """What this module uses of ``pygeodesic.geodesic.PyGeodesicAlgorithmExact`` (its names, its camelCase)."""

    def geodesicDistance(self, sourceIndex: int, targetIndex: int) -> tuple[float | None, np.ndarray | None]: ...

    def geodesicDistances(
        self, source_indices: np.ndarray, target_indices: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]: ...


def _exact_solver() -> Callable[[np.ndarray, np.ndarray], _ExactSolver]:
    """pygeodesic's solver class: built from (n, 3) float64 vertices and (m, 3) int32 faces numbered 0..n-1, all used."""
    try:
        from pygeodesic import geodesic  # noqa: PLC0415 - optional: only geodesic measurement needs it
    except ImportError as exc:
        raise ImportError(
            f"assets.geodesic: geodesic distances need pygeodesic (pip install 'pygeodesic>=0.1.11'): {exc}"
        ) from exc
    solver: Callable[[np.ndarray, np.ndarray], _ExactSolver] = geodesic.PyGeodesicAlgorithmExact
    return solver


class SurfaceGeodesics:
    """Geodesic distances and paths on one triangle mesh; build it once per structure and keep it.

    Parameters
    ----------
    vertices : (V, 3) float, metres (any unit: results come in the same one)
    faces : (F, 3) int, indices into ``vertices``
    max_faces : refuse meshes with more triangles than this
    landmarks : exact distance fields to compute now for faster queries (module docstring, step 2)

    Raises
    ------
    ImportError
        ``pygeodesic`` is not installed.
    GeodesicSizeError
        The mesh has more than ``max_faces`` triangles.
    ValueError
        Arrays of the wrong shape, face indices outside ``vertices``, or no face that is not degenerate.
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, max_faces: int = MAX_FACES, landmarks: int = LANDMARKS) -> None:
        self._exact = _exact_solver()
        v = np.asarray(vertices, dtype=np.float64)
        f = np.asarray(faces, dtype=np.int64)
        if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
            raise ValueError(f"assets.geodesic: need (V, 3) vertices and (F>0, 3) faces, got {v.shape} and {f.shape}")
        if not self.supports(len(f), max_faces):
            raise GeodesicSizeError(f"assets.geodesic: {len(f):,} triangles is more than the {max_faces:,} supported")
        if f.min() < 0 or f.max() >= len(v):
            raise ValueError(f"assets.geodesic: face indices must lie in [0, {len(v)}), got [{f.min()}, {f.max()}]")
        self._usable = _usable_faces(v, f)
        if not self._usable.any():
            raise ValueError(f"assets.geodesic: all {len(f):,} faces are degenerate (repeated corner or zero angle)")
        # The working copy: same faces, same order, a vertex for each fan of faces around an input vertex.
        self._faces, self._origin = _split_fans(f, self._usable, len(v))
        self._vertices = v[self._origin]
        #: For each input vertex, a working face that has it as a corner (-1: only unusable faces have it).
        self._vertex_face = np.full(len(v), -1, dtype=np.int64)
        usable = np.flatnonzero(self._usable)
        self._vertex_face[f[usable].ravel()] = np.repeat(usable, 3)
        ring = np.stack([self._faces, np.roll(self._faces, -1, axis=1)], axis=2)
        #: Longest edge of each face: the slack of the pruning test (module docstring, step 2).
        self._face_size = np.linalg.norm(self._vertices[ring[:, :, 0]] - self._vertices[ring[:, :, 1]], axis=2).max(axis=1)
        self._graph = _path_graph(self._vertices, self._faces[usable])
        _, self._component = connected_components(self._graph, directed=False)
        self._fields = self._landmark_fields(landmarks)

    @staticmethod
    def supports(n_faces: int, max_faces: int = MAX_FACES) -> bool:
        """Whether a mesh of ``n_faces`` triangles can have a ``SurfaceGeodesics`` (the tool offers geodesics only then)."""
        return n_faces <= max_faces

    def distance(self, a: np.ndarray, face_a: int, b: np.ndarray, face_b: int) -> float:
        """Geodesic distance between two points on the surface.

        Parameters
        ----------
        a, b : (3,) float, points on (or within float error of) faces ``face_a`` and ``face_b``, metres
        face_a, face_b : int, indices into ``faces``

        Returns
        -------
        float, metres; ``inf`` when the two faces are on parts of the surface that nothing connects.

        Raises
        ------
        IndexError
            A face index outside ``faces``.
        ValueError
            A point with a NaN or infinite coordinate.
        RuntimeError
            pygeodesic failed (no path, or one shorter than the straight line): a bug, never a measurement.
        """
        return self.path(a, face_a, b, face_b).length

    def path(self, a: np.ndarray, face_a: int, b: np.ndarray, face_b: int) -> GeodesicPath:
        """Shortest path on the surface between two points, and its length (arguments as for ``distance``)."""
        (pa, face_a), (pb, face_b) = self._onto_face(a, face_a), self._onto_face(b, face_b)
        if min(face_a, face_b) < 0:
            return GeodesicPath(math.inf, np.empty((0, 3)))
        if face_a == face_b:
            # A triangle is flat and convex: the segment lies on the surface, and nothing is shorter than a segment.
            return GeodesicPath(float(np.linalg.norm(pb - pa)), np.stack([pa, pb]))
        corners_a, corners_b = self._faces[face_a], self._faces[face_b]
        if self._component[corners_a[0]] != self._component[corners_b[0]]:
            return GeodesicPath(math.inf, np.empty((0, 3)))
        bound = self._upper_bound(pa, corners_a, pb, corners_b)
        local = self._local_mesh(pa, face_a, pb, face_b, bound)
        ia, ib = local.insert(pa, face_a), local.insert(pb, face_b)
        if ia == ib:
            return GeodesicPath(0.0, np.stack([pa, pb]))
        # Pruning leaves vertices where kept faces only touch, and Kirsanov's code gets distances wrong through such
        # a vertex (module docstring). The shortest path touches none of them (every face around a vertex it touches
        # passes the test of step 2), so each fan gets its own vertex again.
        faces, origin = _split_fans(local.faces, np.ones(len(local.faces), dtype=bool), len(local.vertices))
        ia, ib = (int(np.flatnonzero(origin == end)[0]) for end in (ia, ib))
        vertices = local.vertices[origin]
        solver = self._exact(vertices, faces.astype(np.int32))
        # The source is the far end: pygeodesic traces the path back from its target, so it comes out from a to b.
        length, points = solver.geodesicDistance(ib, ia)
        if length is None or not np.isfinite(length) or length < np.linalg.norm(vertices[ib] - vertices[ia]) * (1.0 - 1e-9):
            # pygeodesic prints its reason and returns None; the copy holds a path by construction, and no path is
            # shorter than the segment: either way a bug, better said than shown as a measurement.
            raise RuntimeError(f"assets.geodesic: pygeodesic gave {length} between faces {face_a} and {face_b}")
        return GeodesicPath(float(length), np.asarray(points, dtype=np.float64))

    def _onto_face(self, point: np.ndarray, face: int) -> tuple[np.ndarray, int]:
        """The point moved into its triangle, and its working face.

        A point on an unusable face moves to the face's nearest corner, on a usable face that has it (face -1 when
        none has: nothing connects it).
        """
        if not 0 <= face < len(self._faces):
            raise IndexError(f"assets.geodesic: face {face} is outside [0, {len(self._faces)})")
        p = np.asarray(point, dtype=np.float64).reshape(3)
        if not np.isfinite(p).all():
            raise ValueError(f"assets.geodesic: point {p} is not finite")
        tri = self._vertices[self._faces[face]]
        if self._usable[face]:
            return _clamped(p, tri) @ tri, face
        corner = self._origin[self._faces[face][np.argmin(np.linalg.norm(tri - p, axis=1))]]
        return self._vertices[self._origin == corner][0], int(self._vertex_face[corner])

    def _upper_bound(self, pa: np.ndarray, corners_a: np.ndarray, pb: np.ndarray, corners_b: np.ndarray) -> float:
        """Length of a path on the surface from ``pa`` through a corner of each face to ``pb``: >= the geodesic."""
        to_a = np.linalg.norm(self._vertices[corners_a] - pa, axis=1)
        to_b = np.linalg.norm(self._vertices[corners_b] - pb, axis=1)
        source = int(corners_a[np.argmin(to_a)])
        limit = _SEARCH_GROWTH * (float(np.linalg.norm(pb - pa)) + float(self._face_size.max()))
        while True:
            reach = dijkstra(self._graph, directed=False, indices=source, limit=limit)[corners_b]
            if np.isfinite(reach).any():
                return float(to_a.min() + np.min(reach + to_b))
            limit *= _SEARCH_GROWTH

    def _local_mesh(self, pa: np.ndarray, face_a: int, pb: np.ndarray, face_b: int, bound: float) -> _LocalMesh:
        """The usable faces of the points' part of the mesh that pass the test of the module docstring's step 2."""
        f = self._faces
        low = self._lower_bounds(pa, face_a, pb, face_b)
        # The relative slack keeps faces that pass the test only in exact arithmetic.
        reach = bound * (1.0 + 1e-9) + 2.0 * self._face_size
        keep = self._usable & (self._component[f[:, 0]] == self._component[f[face_a, 0]]) & (low[f] <= reach[:, None]).all(axis=1)
        parent = np.flatnonzero(keep)
        used, renumbered = np.unique(f[parent], return_inverse=True)
        return _LocalMesh(self._vertices[used], renumbered.reshape(-1, 3), parent)

    def _landmark_fields(self, count: int) -> np.ndarray:
        """(count, V) exact geodesic distances from landmarks spread by farthest-point sampling; inf off their part."""
        fields = np.full((count, len(self._vertices)), np.inf)
        if count == 0:
            return fields
        # Landmarks go on the largest part (the structure; the rest are crumbs), and only that part is propagated over:
        # pygeodesic fails on vertices it cannot reach. The first landmark is its point farthest from its centroid,
        # each next one is farthest (along the surface) from those before.
        part = np.bincount(self._component).argmax()
        faces = self._faces[self._usable & (self._component[self._faces[:, 0]] == part)]
        used, renumbered = np.unique(faces, return_inverse=True)
        solver = self._exact(self._vertices[used], renumbered.reshape(-1, 3).astype(np.int32))
        start = int(np.argmax(np.linalg.norm(self._vertices[used] - self._vertices[used].mean(axis=0), axis=1)))
        nearest = np.full(len(used), np.inf)
        for row in range(count):
            try:
                field, _ = solver.geodesicDistances(np.array([start], dtype=np.int32), None)
            except OverflowError:
                # pygeodesic reports a vertex it did not reach with a garbage index; the part is edge-connected, so
                # only round-off on a near-degenerate mesh gets here. Fewer landmarks only make queries slower.
                log.warning("assets.geodesic: landmark %d of %d did not reach the whole surface; keeping %d", row + 1, count, row)
                break
            fields[row, used] = field
            nearest = np.minimum(nearest, field)
            start = int(np.argmax(np.where(np.isfinite(nearest), nearest, -1.0)))
        return fields

    def _lower_bounds(self, pa: np.ndarray, face_a: int, pb: np.ndarray, face_b: int) -> np.ndarray:
        """(V,) lower bounds of ``d(a, v) + d(v, b)`` for every working vertex ``v`` (module docstring, step 2)."""
        v = self._vertices
        bound: np.ndarray = np.linalg.norm(v - pa, axis=1) + np.linalg.norm(v - pb, axis=1)
        if not len(self._fields):
            return bound
        gaps = np.zeros(self._fields.shape)
        for p, face in ((pa, face_a), (pb, face_b)):
            corners = self._faces[face]
            # d(landmark, p) lies within each corner's field value plus or minus the corner's distance from p.
            reach = np.linalg.norm(v[corners] - p, axis=1)
            at = self._fields[:, corners]
            low, high = (at - reach).max(axis=1, keepdims=True), (at + reach).min(axis=1, keepdims=True)
            with np.errstate(invalid="ignore"):
                gap = np.maximum(np.maximum(low - self._fields, self._fields - high), 0.0)
            # A landmark on another part of the mesh knows nothing here (inf - inf).
            gaps += np.where(np.isfinite(gap), gap, 0.0)
        bounds: np.ndarray = np.maximum(bound, gaps.max(axis=0))
        return bounds


def _usable_faces(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,) bool: the face has three distinct corners and every corner angle's sine is at least ``MIN_SINE``."""
    distinct = (faces != np.roll(faces, 1, axis=1)).all(axis=1)
    usable: np.ndarray = distinct & _well_shaped(vertices[faces])
    return usable


def _well_shaped(triangles: np.ndarray) -> np.ndarray:
    """(T,) bool: every corner angle of each of the (T, 3, 3) triangles has a sine of at least ``MIN_SINE``."""
    sides = np.linalg.norm(triangles - np.roll(triangles, -1, axis=1), axis=2)
    twice_area = np.linalg.norm(np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0]), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        # The sine at a corner is twice the area over the product of the two sides that meet there (NaN: no area).
        sines = twice_area[:, None] / (sides * np.roll(sides, 1, axis=1))
    shaped: np.ndarray = (sines >= MIN_SINE).all(axis=1)
    return shaped


def _split_fans(faces: np.ndarray, usable: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """Give each fan of usable faces around a vertex its own vertex: the faces then meet only at edges with <= 2 faces.

    A fan is the set of a vertex's faces that reach each other through edges with exactly two faces. Around an
    ordinary vertex (inside the surface or on its border) there is one; there are more where an edge has more than
    two faces, or where parts of the surface touch at a single vertex: Kirsanov's code corrupts memory at the first
    and gets distances wrong through the second (0 across a bowtie). Corners of unusable faces keep one vertex per
    input vertex.

    Parameters
    ----------
    faces : (F, 3) int64; usable : (F,) bool; n_vertices : V

    Returns
    -------
    faces (F, 3) int64 in the new numbering, and origin (V',) int64: the input vertex of each new vertex.
    """
    directed, _ = _face_edges(faces[usable])
    _, which, count = _undirected(directed)
    # Nodes: one per corner (3 * face + slot), then one per input vertex, which only unusable faces' corners join.
    n_corners = 3 * len(faces)
    corner_vertex = faces.ravel()
    loose = np.flatnonzero(~np.repeat(usable, 3))
    joins = [np.stack([loose, n_corners + corner_vertex[loose]], axis=1)]
    # Through an edge with two faces, each face's corner at either end joins the other face's corner there.
    corner_of = (3 * np.flatnonzero(usable)[:, None] + np.arange(3)).ravel()  # the corner node at each edge's start
    shared = np.flatnonzero(count[which] == 2)
    shared = shared[np.argsort(which[shared], kind="stable")]
    first, second = shared[0::2], shared[1::2]
    start_1, end_1 = corner_of[first], _next_corner(corner_of[first])
    start_2, end_2 = corner_of[second], _next_corner(corner_of[second])
    same_way = directed[first, 0] == directed[second, 0]
    joins.append(np.stack([start_1, np.where(same_way, start_2, end_2)], axis=1))
    joins.append(np.stack([end_1, np.where(same_way, end_2, start_2)], axis=1))
    links = np.concatenate(joins)
    n = n_corners + n_vertices
    graph = coo_matrix((np.ones(len(links)), (links[:, 0], links[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    fans, numbered = np.unique(label[:n_corners], return_inverse=True)
    origin = np.zeros(len(fans), dtype=np.int64)
    origin[numbered] = corner_vertex
    return numbered.reshape(-1, 3).astype(np.int64), origin


def _next_corner(corner: np.ndarray) -> np.ndarray:
    """The corner node after each corner node in its face (3 * face + (slot + 1) % 3)."""
    following: np.ndarray = corner - corner % 3 + (corner % 3 + 1) % 3
    return following


def _undirected(directed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct undirected edges (E, 2) of directed edges (D, 2), each one's edge index (D,), and faces per edge (E,)."""
    n = np.int64(directed.max(initial=0)) + 1
    low, high = directed.min(axis=1).astype(np.int64), directed.max(axis=1).astype(np.int64)
    # One int64 key per edge: sorting scalars is several times faster than np.unique over rows.
    keys, which, count = np.unique(low * n + high, return_inverse=True, return_counts=True)
    return np.stack([keys // n, keys % n], axis=1), which, count


def _face_edges(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each face's edges (3F, 2) in winding order (face-major), and the corner opposite each (3F,)."""
    directed = np.stack([faces, np.roll(faces, -1, axis=1)], axis=2).reshape(-1, 2)
    return directed, np.roll(faces, -2, axis=1).reshape(-1)


def _path_graph(vertices: np.ndarray, faces: np.ndarray) -> csr_matrix:
    """Symmetric graph of straight segments on the surface: the edges, and each triangle pair's unfolded diagonal.

    The diagonal joins the two corners opposite a shared edge, through that edge, when the pair unfolded into a
    plane is convex there (otherwise the segment would leave the surface).

    Parameters
    ----------
    vertices : (V, 3) float64; faces : (F, 3) int64, at most two on an edge

    Returns
    -------
    (V, V) csr_matrix of segment lengths, one entry per vertex pair and direction.
    """
    directed, opposite = _face_edges(faces)
    edges, which, count = _undirected(directed)
    rows, cols = [edges[:, 0]], [edges[:, 1]]
    lengths = [np.linalg.norm(vertices[edges[:, 0]] - vertices[edges[:, 1]], axis=1)]
    # The two face-sides of each edge with two faces, adjacent after sorting by edge.
    shared = np.flatnonzero(count[which] == 2)
    shared = shared[np.argsort(which[shared], kind="stable")]
    first, second = shared[0::2], shared[1::2]
    i, j, k, m = directed[first, 0], directed[first, 1], opposite[first], opposite[second]
    along = vertices[j] - vertices[i]
    span = np.linalg.norm(along, axis=1)
    unit = along / span[:, None]
    xk, yk = _unfold(vertices[k] - vertices[i], unit)
    xm, ym = _unfold(vertices[m] - vertices[i], unit)
    # Where the diagonal crosses the shared edge's line; the diagonal is on the surface if that is on the edge.
    cross = xk + (xm - xk) * yk / (yk + ym)
    ok = (cross >= 0) & (cross <= span)
    rows.append(k[ok])
    cols.append(m[ok])
    lengths.append(np.hypot(xk - xm, yk + ym)[ok])
    pairs = np.sort(np.stack([np.concatenate(rows), np.concatenate(cols)], axis=1), axis=1)
    r, c, w = pairs[:, 0], pairs[:, 1], np.concatenate(lengths)
    # coo -> csr would sum duplicates, and a diagonal can join corners that an edge or another diagonal already
    # joins: keep the shortest segment of each pair.
    order = np.lexsort((w, c, r))
    r, c, w = r[order], c[order], w[order]
    keep = np.ones(len(r), dtype=bool)
    keep[1:] = (r[1:] != r[:-1]) | (c[1:] != c[:-1])
    r, c, w = r[keep], c[keep], w[keep]
    n = len(vertices)
    return coo_matrix((np.concatenate([w, w]), (np.concatenate([r, c]), np.concatenate([c, r]))), shape=(n, n)).tocsr()


def _unfold(offset: np.ndarray, unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(along, away) planar coordinates of corners offset (P, 3) from an edge's start, the edge along unit (P, 3)."""
    along = np.einsum("ij,ij->i", offset, unit)
    away = np.linalg.norm(offset - along[:, None] * unit, axis=1)
    return along, away


def _barycentric(point: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Barycentric coordinates (3,) of the point's projection onto the (usable) triangle's plane."""
    e1, e2, d = tri[1] - tri[0], tri[2] - tri[0], point - tri[0]
    g11, g12, g22 = e1 @ e1, e1 @ e2, e2 @ e2
    det = g11 * g22 - g12 * g12
    s = (g22 * (d @ e1) - g12 * (d @ e2)) / det
    t = (g11 * (d @ e2) - g12 * (d @ e1)) / det
    return np.array([1.0 - s - t, s, t])


def _clamped(point: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Barycentric coordinates (3,) of the point clamped into the triangle: none negative, sum 1."""
    bary = np.clip(_barycentric(point, tri), 0.0, None)
    clamped: np.ndarray = bary / bary.sum()
    return clamped


def _onto_edge(bary: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Barycentric coordinates (3,) of the foot of the perpendicular from the point onto its nearest edge (clamped).

    The nearest edge is the one opposite the smallest positive coordinate; on an edge already, the point goes to
    that edge's nearer end.
    """
    on = np.flatnonzero(bary > 0)
    if len(on) == 2:
        moved = np.zeros(3)
        moved[on[np.argmax(bary[on])]] = 1.0
        return moved
    k = int(np.argmin(bary))
    i, j = (k + 1) % 3, (k + 2) % 3
    edge = tri[j] - tri[i]
    t = float(np.clip((bary @ tri - tri[i]) @ edge / (edge @ edge), 0.0, 1.0))
    moved = np.zeros(3)
    moved[i], moved[j] = 1.0 - t, t
    return moved


@dataclass
class _LocalMesh:
    """The faces a shortest path can cross, renumbered compactly, into which the two points are inserted.

    ``vertices`` (n, 3) float64; ``faces`` (m, 3) int64; ``parent`` (m,) int64: the working face each face is (part of).
    """

    vertices: np.ndarray
    faces: np.ndarray
    parent: np.ndarray

    def insert(self, point: np.ndarray, face: int) -> int:
        """Make a point of working face ``face`` a vertex (module docstring, step 3); return its index.

        The face may already be split by the other point: the point goes into the piece it is least outside of.
        """
        pieces = np.flatnonzero(self.parent == face)
        host = pieces[np.argmax([_barycentric(point, self.vertices[self.faces[p]]).min() for p in pieces])]
        corners = self.faces[host]
        tri = self.vertices[corners]
        bary = _clamped(point, tri)
        while (bary > 0).sum() > 1:
            split, added = self._split(host, corners[bary > 0])
            vertices = np.vstack([self.vertices, bary @ tri])
            if _well_shaped(vertices[added]).all():
                self.vertices = vertices
                owners = np.repeat(self.parent[split], len(added) // len(split))
                keep = np.ones(len(self.faces), dtype=bool)
                keep[split] = False
                self.faces = np.vstack([self.faces[keep], added])
                self.parent = np.concatenate([self.parent[keep], owners])
                return len(vertices) - 1
            bary = _onto_edge(bary, tri)
        return int(corners[np.argmax(bary)])

    def _split(self, host: int, on: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The faces that a new vertex (numbered next) inside face ``host``, or on its edge ``on``, splits, and the pieces.

        Returns
        -------
        split (s,) int64 face indices, and pieces (p, 3) int64, wound as the faces were, ``p // s`` per split face.
        """
        new = len(self.vertices)
        if len(on) == 3:
            i, j, k = on
            return np.array([host]), np.array([[i, j, new], [j, k, new], [k, i, new]])
        i, j = on
        # Every face on the edge splits in two: two inside the surface, one on its border.
        split = np.flatnonzero((self.faces == i).any(axis=1) & (self.faces == j).any(axis=1))
        pieces = []
        for s in split:
            x, y, z = _from_edge(self.faces[s], i, j)
            pieces += [[x, new, z], [new, y, z]]
        return split, np.array(pieces)


def _from_edge(face: np.ndarray, i: int, j: int) -> tuple[int, int, int]:
    """The face's corners rotated, winding kept, so that the edge {i, j} comes first: (x, y, opposite corner)."""
    for shift in range(3):
        x, y, z = (int(c) for c in np.roll(face, -shift))
        if {x, y} == {i, j}:
            return x, y, z
    raise AssertionError(f"face {face} has no edge {i}-{j}")
