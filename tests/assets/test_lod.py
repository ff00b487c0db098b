"""Levels of detail by quadric simplification, with their error in mm (assets.lod)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import nilearn
import numpy as np
import pytest
import trimesh

from assets.lod import add_lods, build_lods, closest_points_on_triangles, simplify, surface_distance
from assets.twin import Structure, Twin
from assets.validate import check

FSAVERAGE5 = Path(nilearn.__file__).parent / "datasets" / "data" / "fsaverage5"


@pytest.fixture(scope="module")
def pial_left() -> Structure:
    image = nib.load(FSAVERAGE5 / "pial_left.gii.gz")
    return Structure("left-pial", image.darrays[0].data / 1000.0, image.darrays[1].data)


def brute_force_distance(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Distance from each point to every triangle, minimum taken: the reference."""
    tri = vertices.astype(np.float64)[faces]
    p = np.repeat(points, len(faces), axis=0)
    t = np.tile(tri, (len(points), 1, 1))
    d = np.linalg.norm(closest_points_on_triangles(p, t) - p, axis=1)
    return d.reshape(len(points), len(faces)).min(axis=1)


def test_closest_point_covers_every_region_of_a_triangle() -> None:
    """Points facing the interior, each edge and each vertex project where geometry says."""
    tri = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    cases = {
        (0.2, 0.2, 5.0): (0.2, 0.2, 0.0),  # interior
        (0.5, -1.0, 0.0): (0.5, 0.0, 0.0),  # edge ab
        (-1.0, 0.5, 0.0): (0.0, 0.5, 0.0),  # edge ac
        (1.0, 1.0, 0.0): (0.5, 0.5, 0.0),  # edge bc
        (-1.0, -1.0, 0.0): (0.0, 0.0, 0.0),  # vertex a
        (2.0, -0.5, 0.0): (1.0, 0.0, 0.0),  # vertex b
        (-0.5, 2.0, 0.0): (0.0, 1.0, 0.0),  # vertex c
    }
    points = np.array(list(cases))
    got = closest_points_on_triangles(points, np.repeat(tri[None], len(points), axis=0))
    np.testing.assert_allclose(got, np.array(list(cases.values())), atol=1e-12)


def test_surface_distance_matches_brute_force(pial_left: Structure) -> None:
    """The candidate search finds the same distances as testing every triangle."""
    level = build_lods(pial_left, (400,))[0]
    points = pial_left.vertices[::50].astype(np.float64)
    fast = surface_distance(points, level.vertices, level.faces)
    np.testing.assert_allclose(fast, brute_force_distance(points, level.vertices, level.faces), atol=1e-9)


def test_levels_reach_their_targets_and_error_grows_as_detail_drops(pial_left: Structure) -> None:
    """Each level is near its target, finest first, with an error in mm that grows with reduction."""
    levels = build_lods(pial_left, (10_000, 2_000, 500))
    assert [lv.target_triangles for lv in levels] == [10_000, 2_000, 500]
    for level in levels:
        assert 0.9 * level.target_triangles <= level.triangle_count <= 1.02 * level.target_triangles
        assert level.vertices.dtype == np.float32 and level.faces.dtype == np.int32
        assert not {p.kind for p in check(Structure("lod", level.vertices, level.faces))} & {
            "degenerate", "duplicate", "face-index", "non-finite"}
    errors_mm = [lv.error_mm for lv in levels]
    assert 0.0 < errors_mm[0] < errors_mm[1] < errors_mm[2]
    # A cortical surface simplified 2x stays within a couple of millimetres of the original.
    assert errors_mm[0] < 3.0


def test_error_is_zero_for_an_unchanged_surface() -> None:
    """A surface measured against itself reports no error."""
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.05)
    d = surface_distance(mesh.vertices, mesh.vertices.astype(np.float32), mesh.faces)
    assert d.max() < 1e-7


def test_targets_above_the_triangle_count_are_skipped_and_twins_keep_levels(pial_left: Structure) -> None:
    """No level is built at or above the mesh's own size; add_lods fills every structure."""
    assert build_lods(pial_left, (pial_left.triangle_count, 10 ** 7)) == []
    twin = add_lods(Twin("brain", [pial_left]), (5_000,))
    assert [lv.target_triangles for lv in twin.structure("left-pial").lods] == [5_000]
    assert pial_left.lods == []  # the input twin is not modified


def test_faces_that_index_missing_vertices_are_refused_before_the_c_library_reads_them() -> None:
    """The simplifier reads vertices by the faces' indices: an index past the end (or negative) is a
    ValueError, not a read out of bounds."""
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=0.05)
    faces = mesh.faces.astype(np.int32)
    for bad in (len(mesh.vertices), -1):
        broken = faces.copy()
        broken[7, 1] = bad
        with pytest.raises(ValueError, match="do not exist"):
            simplify(Structure("s", mesh.vertices.astype(np.float32), broken), 40)
