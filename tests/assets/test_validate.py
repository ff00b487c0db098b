"""Validation and repair of structure meshes (assets.validate)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import nilearn
import numpy as np
import pytest
import trimesh

from assets import errors
from assets.twin import Structure, Twin
from assets.validate import check, is_watertight, repair, validate, validate_twin

FSAVERAGE5 = Path(nilearn.__file__).parent / "datasets" / "data" / "fsaverage5"


@pytest.fixture(scope="module")
def pial_left() -> Structure:
    """The real fsaverage5 left pial surface (mm in the file), in metres."""
    image = nib.load(FSAVERAGE5 / "pial_left.gii.gz")
    return Structure("left-pial", image.darrays[0].data / 1000.0, image.darrays[1].data)


@pytest.fixture
def ball() -> Structure:
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=0.04)
    return Structure("ball", mesh.vertices, mesh.faces)


def kinds(structure: Structure) -> set[str]:
    return {p.kind for p in check(structure)}


def test_real_pial_surface_is_clean_and_watertight(pial_left: Structure) -> None:
    """The fsaverage5 pial surface has no problems and is closed."""
    assert check(pial_left) == []
    assert is_watertight(pial_left)
    validate(pial_left, require_watertight=True)


@pytest.mark.parametrize(
    ("edit", "kind", "error"),
    [
        (lambda v, f: (v[:0], f[:0]), "empty", errors.EmptyMeshError),
        (lambda v, f: (np.where(np.arange(len(v))[:, None] == 3, np.nan, v), f), "non-finite",
         errors.NonFiniteVertexError),
        (lambda v, f: (v, np.vstack([f, [[0, 1, len(v) + 7]]])), "face-index", errors.FaceIndexError),
        (lambda v, f: (v, np.vstack([f, [[0, 0, 1]]])), "degenerate", errors.DegenerateFacesError),
        (lambda v, f: (v, np.vstack([f, f[5:6, [1, 2, 0]]])), "duplicate", errors.DuplicateFacesError),
        (lambda v, f: (v, np.vstack([f[:10], f[10:20, ::-1], f[20:]])), "winding", errors.WindingError),
        (lambda v, f: (v, f[:, ::-1]), "inverted", errors.WindingError),
        (lambda v, f: (v * 1000.0, f), "bounds", errors.ImplausibleBoundsError),
        (lambda v, f: (v / 1000.0, f), "bounds", errors.ImplausibleBoundsError),
    ],
)
def test_each_problem_is_found_and_raised_as_its_error(ball: Structure, edit, kind: str, error) -> None:
    """Every kind of damage is reported by check() and raised by validate() as its AssetError subclass."""
    v, f = edit(ball.vertices.copy(), ball.faces.copy())
    damaged = Structure("ball", v, f)
    assert kind in kinds(damaged)
    with pytest.raises(error) as raised:
        validate(damaged, "ball.stl")
    assert isinstance(raised.value, errors.AssetError)
    assert str(raised.value).startswith("ball.stl: ")
    assert "\n" not in str(raised.value)


def test_non_manifold_edge_is_reported(ball: Structure) -> None:
    """A fin glued onto an existing edge makes that edge non-manifold."""
    v = np.vstack([ball.vertices, [[0.2, 0.2, 0.2]]])
    a, b, _ = ball.faces[0]
    f = np.vstack([ball.faces, [[a, b, len(v) - 1]]])
    damaged = Structure("ball", v, f)
    assert "non-manifold" in kinds(damaged)
    with pytest.raises(errors.NonManifoldError):
        validate(damaged)


def test_hole_fails_only_when_watertight_is_required(ball: Structure) -> None:
    """Removing a face opens a hole: accepted by default, refused with require_watertight."""
    open_ball = Structure("ball", ball.vertices, ball.faces[1:])
    validate(open_ball)
    assert not is_watertight(open_ball)
    with pytest.raises(errors.NotWatertightError):
        validate(open_ball, require_watertight=True)


def test_repair_fixes_the_repairable_and_reports_each_action(ball: Structure) -> None:
    """Bad indices, NaN vertices, degenerate and duplicate faces, flipped faces are all repaired."""
    v = np.vstack([ball.vertices, [[np.nan, 0, 0]]])
    nan_index = len(v) - 1
    f = np.vstack([
        ball.faces[:30, ::-1],  # flipped
        ball.faces[30:],
        ball.faces[40:42],  # duplicates
        [[0, 0, 1], [1, 2, nan_index], [0, 1, 9999]],  # degenerate, NaN vertex, out of range
    ])
    fixed, report = repair(Structure("ball", v, f), "ball.ply")
    assert check(fixed) == []
    assert is_watertight(fixed)
    assert fixed.triangle_count == ball.triangle_count
    text = " ".join(report.actions)
    for word in ("out-of-range", "non-finite", "degenerate", "duplicate", "flipped", "unreferenced"):
        assert word in text, (word, report.actions)
    assert report.remaining == []


def test_repair_merges_unshared_vertices_like_stl(ball: Structure) -> None:
    """A triangle soup (every face with its own vertices, as STL stores it) becomes watertight."""
    soup_v = ball.vertices[ball.faces.reshape(-1)]
    soup_f = np.arange(len(soup_v)).reshape(-1, 3)
    soup = Structure("ball", soup_v, soup_f)
    assert not is_watertight(soup)
    fixed, report = repair(soup)
    assert is_watertight(fixed)
    assert fixed.vertex_count == ball.vertex_count
    assert any("merged" in a for a in report.actions)


def test_repair_leaves_a_clean_mesh_untouched(pial_left: Structure) -> None:
    """Repair of a clean mesh changes nothing and returns the same object."""
    fixed, report = repair(pial_left)
    assert fixed is pial_left
    assert not report.changed


def test_unrepairable_problems_remain_listed(ball: Structure) -> None:
    """A hole cannot be repaired without inventing anatomy: it is listed as remaining."""
    _, report = repair(Structure("ball", ball.vertices, ball.faces[2:]))
    assert "not-watertight" in report.remaining


def test_validate_twin_names_the_structure_and_rejects_an_empty_twin(ball: Structure) -> None:
    """validate_twin checks every structure, and a twin without structures is an error."""
    bad = Structure("broken", ball.vertices, np.vstack([ball.faces, [[0, 1, 10_000]]]))
    with pytest.raises(errors.FaceIndexError, match="broken"):
        validate_twin(Twin("t", [ball, bad]))
    with pytest.raises(errors.EmptyMeshError):
        validate_twin(Twin("t", []))


def test_winding_repair_settles_a_tie_consistently() -> None:
    """Two triangles of a square, one flipped: one of the two is turned (either), never both or none."""
    square = Structure("square", [[0, 0, 0], [0.01, 0, 0], [0.01, 0.01, 0], [0, 0.01, 0]], [[0, 1, 2], [0, 2, 3][::-1]])
    assert "winding" in kinds(square)
    fixed, report = repair(square)
    assert "winding" not in kinds(fixed) and "flipped 1 faces" in report.actions[0]


@pytest.fixture(scope="module")
def invesalius_skull(tmp_path_factory: pytest.TempPathFactory) -> trimesh.Trimesh:
    """The skull surface InVesalius made from the Cranium CT (surface_0.vtp in Debian's Cranium.inv3),
    triangulated by VTK, in mm. Made by marching cubes on integer HU, it has vertices on grid points:
    different vertices at one position, where thin sheets touch. No edge has more than two faces."""
    import tarfile

    from vtkmodules.util import numpy_support
    from vtkmodules.vtkFiltersCore import vtkTriangleFilter
    from vtkmodules.vtkIOXML import vtkXMLPolyDataReader

    from assets.skull import SOURCE

    folder = tmp_path_factory.mktemp("inv3")
    with tarfile.open(SOURCE) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("surface_0.vtp"))
        (folder / "surface_0.vtp").write_bytes(archive.extractfile(member).read())  # type: ignore[union-attr]
    reader = vtkXMLPolyDataReader()
    reader.SetFileName(str(folder / "surface_0.vtp"))
    triangles = vtkTriangleFilter()
    triangles.SetInputConnection(reader.GetOutputPort())
    triangles.Update()
    polydata = triangles.GetOutput()
    vertices = numpy_support.vtk_to_numpy(polydata.GetPoints().GetData()).astype(np.float64)
    faces = numpy_support.vtk_to_numpy(polydata.GetPolys().GetConnectivityArray()).reshape(-1, 3)
    # A 10 mm slab of the skull base (a tenth of the skull) holds one of the places where sheets
    # touch, and keeps the four imports below quick.
    inside = ((vertices[faces, 2] > 22.0) & (vertices[faces, 2] < 32.0)).all(axis=1)
    used, kept = np.unique(faces[inside], return_inverse=True)
    return trimesh.Trimesh(vertices[used], kept.reshape(-1, 3), process=False)


@pytest.mark.parametrize("suffix", [".ply", ".stl", ".obj", ".glb"])
def test_a_valid_skull_is_imported_without_new_non_manifold_edges(tmp_path: Path, suffix: str,
                                                                  invesalius_skull: trimesh.Trimesh) -> None:
    """InVesalius' skull written as PLY, STL, OBJ and GLB imports: merging vertices at identical
    positions used to join its touching sheets into 8 edges of four faces, and import refused it."""
    from assets.loaders import load
    from assets.twin import GLTF_FROM_TWIN

    mesh = invesalius_skull.copy()
    source = Structure("skull", mesh.vertices / 1000.0, mesh.faces)
    assert "non-manifold" not in kinds(source)
    plain = np.unique(source.vertices, axis=0, return_inverse=True)[1].reshape(-1)
    assert "non-manifold" in kinds(Structure("merged", source.vertices, plain[source.faces]))  # the old merge
    if suffix == ".glb":
        mesh.vertices = mesh.vertices @ GLTF_FROM_TWIN.T / 1000.0
    path = tmp_path / f"skull{suffix}"
    mesh.export(path)
    twin = load(path, units=None if suffix == ".glb" else "mm")
    (skull,) = twin.structures
    assert not {p.kind for p in check(skull)} & {"non-manifold", "winding", "degenerate", "duplicate"}
    assert skull.triangle_count > 0.98 * len(mesh.faces)  # only faces of zero area went
    np.testing.assert_allclose(twin.bounds(), source.bounds(), atol=1e-6)


def test_an_edge_of_three_faces_in_the_file_stays_and_is_refused(ball: Structure) -> None:
    """The merge keeps only what it would create apart: a fin the file itself glued onto an edge (by
    index) survives repair and import refuses it."""
    v = np.vstack([ball.vertices, [[0.2, 0.2, 0.2]], ball.vertices[:1]])  # a duplicate position to merge
    a, b, _ = ball.faces[0]
    damaged = Structure("ball", v, np.vstack([ball.faces, [[a, b, len(v) - 2]]]))
    fixed, report = repair(damaged)
    assert "non-manifold" in report.remaining
    with pytest.raises(errors.NonManifoldError):
        validate(fixed)
