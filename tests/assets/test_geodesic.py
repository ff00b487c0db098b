"""Geodesic distance along a mesh surface for the Measure tool, against analytic truth (assets.geodesic)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import nilearn
import numpy as np
import pytest
import trimesh
from pygeodesic import geodesic
from scipy.spatial import Delaunay

from assets.geodesic import MIN_SINE, GeodesicSizeError, SurfaceGeodesics

FSAVERAGE5 = Path(nilearn.__file__).parent / "datasets" / "data" / "fsaverage5"
ROOT = Path(__file__).resolve().parents[2]
RADIUS = 0.08  # m, about a head


def grid(n: int, h: float) -> tuple[np.ndarray, np.ndarray]:
    """A flat n x n grid of h-metre squares in z = 0, each split along its diagonal: (V, 3) vertices, (F, 3) faces."""
    i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    vertices = np.stack([i.ravel() * h, j.ravel() * h, np.zeros(i.size)], axis=1)
    v00 = (i[:-1, :-1] * (n + 1) + j[:-1, :-1]).ravel()
    v10, v01 = v00 + n + 1, v00 + 1
    faces = np.concatenate([np.stack([v00, v10, v10 + 1], axis=1), np.stack([v00, v10 + 1, v01], axis=1)])
    return vertices, faces


def across(faces: np.ndarray, face: int, i: int, j: int) -> int | None:
    """The other face on the edge i-j of ``face``, or None on a border."""
    on_edge = np.flatnonzero((faces == i).any(axis=1) & (faces == j).any(axis=1))
    others = [int(f) for f in on_edge if f != face]
    return others[0] if others else None


def inner_face(faces: np.ndarray) -> int:
    """The first face with a neighbour across each of its edges."""
    return next(f for f in range(len(faces)) if all(across(faces, f, faces[f][k], faces[f][(k + 1) % 3]) for k in range(3)))


def well_shaped(vertices: np.ndarray, faces: np.ndarray, min_sine: float = 0.05) -> np.ndarray:
    """Indices of the faces whose every corner angle has a sine of at least ``min_sine`` (random picks avoid slivers)."""
    return np.flatnonzero(smallest_sines(vertices, faces) >= min_sine)


def smallest_sines(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,) sine of each face's smallest corner angle."""
    tri = vertices[faces]
    sides = np.linalg.norm(tri - np.roll(tri, 1, axis=1), axis=2)
    twice_area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    sines: np.ndarray = (twice_area[:, None] / (sides * np.roll(sides, -1, axis=1))).min(axis=1)
    return sines


def face_containing(vertices: np.ndarray, faces: np.ndarray, point: np.ndarray) -> int:
    """Index of a face of a flat mesh in z = 0 whose triangle contains the point (strictly inside)."""
    tri = vertices[faces]
    # The z component of (next corner - corner) x (point - corner): one sign for all three edges when inside.
    cross = np.stack([np.cross(tri[:, (k + 1) % 3] - tri[:, k], point - tri[:, k])[:, 2] for k in range(3)])
    inside = np.flatnonzero((cross > 0).all(axis=0) | (cross < 0).all(axis=0))
    assert len(inside) == 1, f"{point} is in {len(inside)} faces"
    return int(inside[0])


@pytest.fixture(scope="module")
def sphere() -> tuple[np.ndarray, np.ndarray, SurfaceGeodesics]:
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=RADIUS)
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    return vertices, faces, SurfaceGeodesics(vertices, faces)


@pytest.fixture(scope="module")
def plane() -> tuple[np.ndarray, np.ndarray, SurfaceGeodesics]:
    """An irregular Delaunay triangulation of a 10 cm square, tilted out of the axes (a Dijkstra over edges is 5-10 % long)."""
    rng = np.random.default_rng(7)
    xy = np.vstack([rng.uniform(0.0, 0.1, (500, 2)), [[0, 0], [0.1, 0], [0, 0.1], [0.1, 0.1]]])
    faces = Delaunay(xy).simplices.astype(np.int64)
    rotation = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    vertices = np.c_[xy, np.zeros(len(xy))] @ rotation.T + [0.3, -0.2, 0.5]
    return vertices, faces, SurfaceGeodesics(vertices, faces)


@pytest.fixture(scope="module")
def pial() -> tuple[np.ndarray, np.ndarray, SurfaceGeodesics]:
    image = nib.load(FSAVERAGE5 / "pial_left.gii.gz")
    vertices = image.darrays[0].data.astype(np.float64) / 1000.0
    faces = image.darrays[1].data.astype(np.int64)
    return vertices, faces, SurfaceGeodesics(vertices, faces)


def test_great_circle_on_an_icosphere(sphere: tuple[np.ndarray, np.ndarray, SurfaceGeodesics]) -> None:
    """Between points inside faces of a radius-8 cm icosphere, the distance is the great circle's within the facets' sag."""
    vertices, faces, geodesics = sphere
    # The facets lie between the insphere (radius r) and the sphere: lengths on them differ from the sphere's by
    # about the ratio r / R, 0.11 % at four subdivisions; a Dijkstra over edges would be 5-10 % long.
    r = np.abs(np.einsum("ij,ij->i", trimesh.triangles.normals(vertices[faces])[0], vertices[faces[:, 0]])).min()
    tolerance = 1.0 - r / RADIUS
    assert 0.0005 < tolerance < 0.002
    rng = np.random.default_rng(1)
    for _ in range(12):
        fa, fb = (int(f) for f in rng.choice(len(faces), 2, replace=False))
        a = rng.dirichlet([2, 2, 2]) @ vertices[faces[fa]]
        b = rng.dirichlet([2, 2, 2]) @ vertices[faces[fb]]
        great_circle = RADIUS * math.acos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1.0, 1.0))
        assert geodesics.distance(a, fa, b, fb) == pytest.approx(great_circle, rel=tolerance)


def test_flat_irregular_mesh_gives_the_straight_line(plane: tuple[np.ndarray, np.ndarray, SurfaceGeodesics]) -> None:
    """On a flat (tilted, irregular) mesh, points inside faces are the straight-line distance apart, along the segment."""
    vertices, faces, geodesics = plane
    rng = np.random.default_rng(2)
    for _ in range(20):
        fa, fb = (int(f) for f in rng.choice(well_shaped(vertices, faces), 2, replace=False))
        a = (0.02 + 0.94 * rng.dirichlet([1, 1, 1])) @ vertices[faces[fa]]
        b = (0.02 + 0.94 * rng.dirichlet([1, 1, 1])) @ vertices[faces[fb]]
        path = geodesics.path(a, fa, b, fb)
        straight = np.linalg.norm(b - a)
        assert path.length == pytest.approx(straight, rel=1e-6)
        np.testing.assert_allclose(path.points[[0, -1]], [a, b], atol=1e-12)
        # Every point of the path lies on the segment: no detour through the mesh's vertices.
        off = np.cross(path.points - a, (b - a) / straight)
        assert np.abs(off).max() < 1e-9


def test_points_on_vertices_and_edges(plane: tuple[np.ndarray, np.ndarray, SurfaceGeodesics]) -> None:
    """Points at corners, on edges (shared by two faces) and inside faces, in every pairing, are the straight line apart."""
    vertices, faces, geodesics = plane
    rng = np.random.default_rng(3)
    kinds = {"corner": [1.0, 0.0, 0.0], "edge": [0.0, 0.37, 0.63], "inside": [0.2, 0.3, 0.5]}
    for first in kinds.values():
        for second in kinds.values():
            fa, fb = (int(f) for f in rng.choice(well_shaped(vertices, faces), 2, replace=False))
            a = np.array(first) @ vertices[faces[fa]]
            b = np.roll(second, 1) @ vertices[faces[fb]]
            assert geodesics.distance(a, fa, b, fb) == pytest.approx(np.linalg.norm(b - a), rel=1e-9)


def test_points_in_one_face_or_one_edge(plane: tuple[np.ndarray, np.ndarray, SurfaceGeodesics]) -> None:
    """Two points of one face, or of one edge given through its two faces, are the straight line apart."""
    vertices, faces, geodesics = plane
    f = inner_face(faces)
    tri = vertices[faces[f]]
    a, b = np.array([0.6, 0.3, 0.1]) @ tri, np.array([0.1, 0.2, 0.7]) @ tri
    assert geodesics.distance(a, f, b, f) == pytest.approx(np.linalg.norm(b - a), rel=1e-12)
    i, j = faces[f][:2]
    other = across(faces, f, i, j)
    assert other is not None
    a, b = 0.3 * vertices[i] + 0.7 * vertices[j], 0.8 * vertices[i] + 0.2 * vertices[j]
    assert geodesics.distance(a, f, b, other) == pytest.approx(np.linalg.norm(b - a), rel=1e-9)


def test_a_point_a_hair_from_an_edge_or_corner_moves_less_than_the_documented_bound(
    plane: tuple[np.ndarray, np.ndarray, SurfaceGeodesics],
) -> None:
    """A point a hair from an edge or corner (a split would make a sliver) costs < MIN_SINE * longest edge / smallest sine."""
    vertices, faces, geodesics = plane
    tri = vertices[faces]
    longest = np.linalg.norm(tri - np.roll(tri, 1, axis=1), axis=2).max(axis=1)
    sines = smallest_sines(vertices, faces)
    usable = np.flatnonzero(sines >= MIN_SINE)  # slivers included: the bound grows as their sine shrinks
    rng = np.random.default_rng(4)
    for hair in (1e-4, 1e-7, 1e-9, 1e-12, 0.0):
        for bary in ([hair, 0.4, 0.6 - hair], [hair, hair, 1.0 - 2 * hair], [hair, 0.5, 0.5 - hair]):
            for fa in (int(rng.choice(usable)), int(np.argmin(np.where(sines >= MIN_SINE, sines, np.inf)))):
                fb = int(rng.choice(well_shaped(vertices, faces)))
                a = np.array(bary) @ vertices[faces[fa]]
                b = np.array([0.3, 0.3, 0.4]) @ vertices[faces[fb]]
                error = abs(geodesics.distance(a, fa, b, fb) - np.linalg.norm(b - a))
                assert error <= MIN_SINE * longest[fa] / sines[fa]


def test_same_point_is_zero_apart(plane: tuple[np.ndarray, np.ndarray, SurfaceGeodesics]) -> None:
    """A point and itself are 0 apart, also when given through two faces that share it."""
    vertices, faces, geodesics = plane
    f = inner_face(faces)
    a = np.array([0.2, 0.5, 0.3]) @ vertices[faces[f]]
    assert geodesics.distance(a, f, a, f) == 0.0
    corner, i, j = faces[f]
    other = across(faces, f, corner, i)
    assert other is not None
    assert geodesics.distance(vertices[corner], f, vertices[corner], other) == 0.0
    other = across(faces, f, i, j)
    assert other is not None
    middle = (vertices[i] + vertices[j]) / 2
    path = geodesics.path(middle, f, middle, other)
    assert path.length == 0.0
    np.testing.assert_allclose(path.points, [middle, middle])


def test_disconnected_parts_are_infinitely_far_apart() -> None:
    """Points on two separate spheres are inf apart, with an empty path; each sphere still measures its own distances."""
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=RADIUS)
    n = len(mesh.vertices)
    vertices = np.vstack([mesh.vertices, mesh.vertices + [0.5, 0.0, 0.0]])
    faces = np.vstack([mesh.faces, mesh.faces + n])
    geodesics = SurfaceGeodesics(vertices, faces)
    a = vertices[faces[0]].mean(axis=0)
    b = vertices[faces[len(mesh.faces) + 5]].mean(axis=0)
    path = geodesics.path(a, 0, b, len(mesh.faces) + 5)
    assert path.length == math.inf
    assert path.points.shape == (0, 3)
    assert 0 < geodesics.distance(a, 0, vertices[faces[5]].mean(axis=0), 5) < math.pi * RADIUS


def test_pruned_local_copy_matches_the_whole_mesh(pial: tuple[np.ndarray, np.ndarray, SurfaceGeodesics]) -> None:
    """On the folded fsaverage5 cortex, the pruned query equals an exact propagation over the whole mesh, points inserted."""
    vertices, faces, geodesics = pial
    rng = np.random.default_rng(5)
    for _ in range(4):
        fa, fb = (int(f) for f in rng.choice(len(faces), 2, replace=False))
        ba, bb = 0.05 + 0.85 * rng.dirichlet([1, 1, 1]), 0.05 + 0.85 * rng.dirichlet([1, 1, 1])
        a, b = ba @ vertices[faces[fa]], bb @ vertices[faces[fb]]
        # The reference: both faces split in three at the points, the whole mesh given to pygeodesic.
        ia, ib = len(vertices), len(vertices) + 1
        pieces = [[faces[f][0], faces[f][1], p] for f, p in ((fa, ia), (fb, ib))]
        pieces += [[faces[f][1], faces[f][2], p] for f, p in ((fa, ia), (fb, ib))]
        pieces += [[faces[f][2], faces[f][0], p] for f, p in ((fa, ia), (fb, ib))]
        whole = geodesic.PyGeodesicAlgorithmExact(
            np.vstack([vertices, a, b]), np.vstack([np.delete(faces, [fa, fb], axis=0), pieces]).astype(np.int32)
        )
        reference, _ = whole.geodesicDistance(ia, ib)
        measured = geodesics.distance(a, fa, b, fb)
        assert measured == pytest.approx(reference, rel=1e-9)
        assert measured > 1.05 * np.linalg.norm(b - a)  # folded: the surface path is clearly longer than the segment


def test_a_fin_on_an_edge_is_cut_off_and_the_surface_kept() -> None:
    """A third face on an edge of a flat grid (a fin) leaves the grid's distances straight; the fin is unreachable."""
    h, delta = 0.01, 0.002
    vertices, faces = grid(6, h)
    spine = [3 * 7 + 3, 4 * 7 + 3]  # the edge from (3h, 3h) to (4h, 3h)
    vertices = np.vstack([vertices, [3.5 * h, 3 * h, h]])
    faces = np.vstack([faces, [*spine, len(vertices) - 1]])
    geodesics = SurfaceGeodesics(vertices, faces)
    a, b = np.array([3.5 * h, 3 * h - delta, 0.0]), np.array([3.5 * h, 3 * h + delta, 0.0])
    fa, fb = face_containing(vertices, faces[:-1], a), face_containing(vertices, faces[:-1], b)
    assert geodesics.distance(a, fa, b, fb) == pytest.approx(2 * delta, rel=1e-9)  # straight across the fin's edge
    fin = vertices[faces[-1]].mean(axis=0)
    assert geodesics.distance(fin, len(faces) - 1, a, fa) == math.inf


def test_parts_touching_at_one_vertex_do_not_connect() -> None:
    """Two flat squares that share only a corner are inf apart (Kirsanov's code would leak distance through it)."""
    vertices, faces = grid(1, 0.01)
    vertices = np.vstack([vertices, vertices[[3]] + [[0.01, 0, 0], [0, 0.01, 0], [0.01, 0.01, 0]]])
    faces = np.vstack([faces, [[3, 4, 6], [3, 6, 5]]])
    geodesics = SurfaceGeodesics(vertices, faces)
    assert geodesics.distance(vertices[faces[0]].mean(axis=0), 0, vertices[faces[2]].mean(axis=0), 2) == math.inf


def test_degenerate_faces_are_left_out() -> None:
    """Faces with a repeated corner or no area change nothing; a point on one stands at its nearest corner."""
    vertices, faces = grid(4, 0.01)
    vertices = np.vstack([vertices, [0.005, 0.0, 0.0]])  # on the bottom border, between vertices 0 and 5
    faces = np.vstack([faces, [[0, 0, 1], [0, 5, len(vertices) - 1]]])
    geodesics = SurfaceGeodesics(vertices, faces)
    a = np.array([0.012, 0.013, 0.0])
    b = np.array([0.031, 0.034, 0.0])
    fa, fb = face_containing(vertices, faces[:-2], a), face_containing(vertices, faces[:-2], b)
    assert geodesics.distance(a, fa, b, fb) == pytest.approx(np.linalg.norm(b - a), rel=1e-9)
    on_sliver = np.array([0.004, 0.0, 0.0])  # nearest corner: the extra vertex at (0.005, 0, 0), used by no good face
    assert geodesics.distance(on_sliver, len(faces) - 1, b, fb) == math.inf
    near_zero = np.array([0.001, 0.0, 0.0])  # nearest corner: vertex 0
    assert geodesics.distance(near_zero, len(faces) - 1, b, fb) == pytest.approx(np.linalg.norm(b), rel=1e-9)


def test_meshes_above_the_limit_are_refused(sphere: tuple[np.ndarray, np.ndarray, SurfaceGeodesics]) -> None:
    """A mesh with more triangles than the limit raises GeodesicSizeError, and supports() says so beforehand."""
    vertices, faces, _ = sphere
    assert SurfaceGeodesics.supports(len(faces)) and not SurfaceGeodesics.supports(len(faces), max_faces=len(faces) - 1)
    with pytest.raises(GeodesicSizeError, match="5,120 triangles"):
        SurfaceGeodesics(vertices, faces, max_faces=len(faces) - 1)


def test_without_pygeodesic_the_module_imports_and_building_says_what_to_install(
    plane: tuple[np.ndarray, np.ndarray, SurfaceGeodesics], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without pygeodesic, assets.geodesic still imports; building one raises an ImportError naming the package."""
    script = "import sys; sys.modules['pygeodesic'] = None; import assets.geodesic; print('imported')"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "imported"
    monkeypatch.setitem(sys.modules, "pygeodesic", None)
    vertices, faces, _ = plane
    with pytest.raises(ImportError, match=r"pip install 'pygeodesic>=0\.1\.11'"):
        SurfaceGeodesics(vertices, faces)
