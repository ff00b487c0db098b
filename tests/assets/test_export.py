"""glTF 2.0 export of twins: Khronos-valid GLB, names, materials, extras, round trip (assets.export)."""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path
from typing import Any

import nibabel as nib
import nilearn
import numpy as np
import pytest
import trimesh

from assets.errors import ExportError
from assets.export import export_glb, to_glb_bytes, vertex_normals
from assets.twin import Structure, Twin

FSAVERAGE5 = Path(nilearn.__file__).parent / "datasets" / "data" / "fsaverage5"
VALIDATOR = Path(__file__).resolve().parents[2] / "tools" / "validate_gltf.mjs"


@pytest.fixture(scope="module")
def brain() -> Twin:
    """Four real fsaverage5 surfaces: opaque pial hemispheres, translucent white matter."""
    structures = []
    for surface, side, color in (
        ("pial", "left", (0.9, 0.7, 0.65, 1.0)),
        ("pial", "right", (0.9, 0.7, 0.65, 1.0)),
        ("white", "left", (0.95, 0.95, 0.9, 0.4)),
        ("white", "right", (0.95, 0.95, 0.9, 0.4)),
    ):
        image = nib.load(FSAVERAGE5 / f"{surface}_{side}.gii.gz")
        structures.append(
            Structure(
                f"{side}-{surface}",
                image.darrays[0].data / 1000.0,
                image.darrays[1].data,
                color=color,
                codes={"FMA": f"{surface}-{side}"},
            )
        )
    return Twin("brain", structures, source_units="mm", units_detected=True, metadata={"Modality": "MR"},
                provenance={"source": str(FSAVERAGE5)})


@pytest.fixture(scope="module")
def glb(brain: Twin, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_glb(brain, tmp_path_factory.mktemp("export") / "brain.glb")


@pytest.fixture(scope="module")
def document(glb: Path) -> dict[str, Any]:
    """The GLB's JSON chunk, parsed after checking the container header."""
    data = glb.read_bytes()
    magic, version, length = struct.unpack_from("<III", data)
    assert (magic, version, length) == (0x46546C67, 2, len(data))
    json_length, json_type = struct.unpack_from("<II", data, 12)
    assert json_type == 0x4E4F534A and json_length % 4 == 0
    return json.loads(data[20 : 20 + json_length])


def validate(source: Path | bytes) -> dict[str, Any]:
    """The Khronos glTF validator's report for a file or bytes (needs node and tools/node_modules)."""
    if isinstance(source, Path):
        command, stdin = ["node", str(VALIDATOR), str(source)], None
    else:
        command, stdin = ["node", str(VALIDATOR), "-"], source
    result = subprocess.run(command, input=stdin, capture_output=True, timeout=60, check=False)
    assert result.returncode in (0, 1), f"validator did not run: {result.stderr.decode().strip()}"
    return json.loads(result.stdout)


def test_export_passes_the_khronos_validator_without_errors_or_warnings(glb: Path) -> None:
    """The exported four-structure brain is valid glTF 2.0: zero errors, zero warnings."""
    report = validate(glb)
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"]
    assert report["issues"]["numWarnings"] == 0, report["issues"]["messages"]
    assert report["info"]["drawCallCount"] == 4
    assert report["info"]["totalTriangleCount"] == 4 * 20_480


def test_validator_reports_errors_in_a_damaged_file(glb: Path) -> None:
    """The validation pipeline can fail: a truncated GLB gets errors."""
    report = validate(glb.read_bytes()[:-1000])
    assert report["issues"]["numErrors"] > 0


def y_up(ras: np.ndarray) -> np.ndarray:
    """RAS (+Z up) points in glTF's frame, from the spec's words: +Y up, the front faces +Z, right is -X."""
    right, anterior, superior = ras[:, 0], ras[:, 1], ras[:, 2]
    return np.stack([-right, superior, anterior], axis=1)


def test_trimesh_reads_back_names_counts_and_coordinates(brain: Twin, glb: Path) -> None:
    """trimesh loads the GLB with every structure's name, faces and vertices, the latter in glTF's
    +Y-up frame; medverse's loader turns them back into the same RAS bits."""
    from assets.loaders import load

    scene = trimesh.load(glb, process=False)
    assert sorted(scene.geometry) == sorted(s.name for s in brain.structures)
    assert sorted(scene.graph.nodes_geometry) == sorted(s.name for s in brain.structures)
    for s in brain.structures:
        mesh = scene.geometry[s.name]
        assert (len(mesh.vertices), len(mesh.faces)) == (s.vertex_count, s.triangle_count)
        np.testing.assert_array_equal(mesh.vertices.astype(np.float32), y_up(s.vertices))
        np.testing.assert_array_equal(mesh.faces, s.faces)
    again = load(glb)
    for s in brain.structures:
        np.testing.assert_array_equal(again.structure(s.name).vertices, s.vertices)


def test_materials_follow_colour_and_alpha(brain: Twin, document: dict[str, Any]) -> None:
    """One PBR material per structure: baseColorFactor is its RGBA, BLEND exactly when alpha < 1."""
    assert len(document["materials"]) == len(brain.structures)
    for s, mesh in zip(brain.structures, document["meshes"], strict=True):
        material = document["materials"][mesh["primitives"][0]["material"]]
        assert material["name"] == s.name
        np.testing.assert_allclose(material["pbrMetallicRoughness"]["baseColorFactor"], s.color)
        assert material.get("alphaMode", "OPAQUE") == ("BLEND" if s.color[3] < 1 else "OPAQUE")


def test_accessors_views_and_extras(brain: Twin, document: dict[str, Any]) -> None:
    """POSITION carries min/max in metres, indices are UNSIGNED_INT, views 4-byte aligned, extras kept."""
    assert document["asset"]["version"] == "2.0" and document["asset"]["generator"].startswith("medverse")
    assert all(view["byteOffset"] % 4 == 0 and "target" in view for view in document["bufferViews"])
    scene = document["scenes"][document["scene"]]
    assert scene["name"] == "brain" and scene["extras"]["source_units"] == "mm"
    assert scene["extras"]["metadata"] == {"Modality": "MR"}
    for s, node in zip(brain.structures, (document["nodes"][i] for i in scene["nodes"]), strict=True):
        assert node["name"] == s.name and node["extras"]["codes"] == s.codes
        primitive = document["meshes"][node["mesh"]]["primitives"][0]
        position = document["accessors"][primitive["attributes"]["POSITION"]]
        gltf = y_up(s.vertices)
        np.testing.assert_allclose([position["min"], position["max"]], [gltf.min(axis=0), gltf.max(axis=0)], rtol=1e-6)
        assert np.max(np.abs(position["max"])) < 0.2  # metres: a brain is about 0.17 m long
        indices = document["accessors"][primitive["indices"]]
        assert (indices["componentType"], indices["count"]) == (5125, 3 * s.triangle_count)


def test_normals_are_unit_and_point_outwards(brain: Twin) -> None:
    """Vertex normals of the closed pial surface have unit length and point away from its centre."""
    pial = brain.structure("left-pial")
    normals = vertex_normals(pial.vertices, pial.faces)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-6)
    outward = np.einsum("ij,ij->i", normals, pial.vertices - pial.vertices.mean(axis=0))
    assert (outward > 0).mean() > 0.7  # folded cortex: sulcal walls face sideways, most face out


@pytest.mark.parametrize(
    ("vertices", "faces", "reason"),
    [
        (np.zeros((0, 3)), np.zeros((0, 3)), "no triangles"),
        ([[0, 0, 0], [1, 0, 0], [0, np.nan, 0]], [[0, 1, 2]], "non-finite"),
        ([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 3]], "outside 0..2"),
        ([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, -1, 2]], "outside 0..2"),
    ],
)
def test_structures_that_would_make_invalid_gltf_are_refused(vertices: Any, faces: Any, reason: str) -> None:
    """Empty meshes, NaN coordinates and out-of-range indices raise ExportError naming the problem."""
    twin = Twin("bad", [Structure("s", vertices, faces)])
    with pytest.raises(ExportError, match=reason):
        to_glb_bytes(twin)


def test_export_glb_writes_exactly_the_bytes_and_no_temporary(brain: Twin, glb: Path) -> None:
    """The file on disk is to_glb_bytes' output and nothing else is left beside it."""
    assert glb.read_bytes() == to_glb_bytes(brain)
    assert [p.name for p in glb.parent.iterdir()] == ["brain.glb"]


def test_empty_twin_is_a_valid_file() -> None:
    """A twin without structures exports as a valid GLB with an empty scene."""
    report = validate(to_glb_bytes(Twin("empty", [])))
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"]


@pytest.fixture(scope="module")
def ct_head() -> Twin:
    """The bony head of the real CT in Debian's Cranium.inv3 at 226 HU (every second voxel), in RAS
    metres: +z superior, +y anterior (the face), the headrest behind."""
    from assets.loaders.inv3 import read_inv3
    from assets.loaders.volume import Volume, surface
    from assets.skull import SOURCE

    volume = read_inv3(SOURCE)
    affine = volume.affine.copy()
    affine[:3, :3] *= 2.0
    vertices, faces = surface(Volume(volume.data[::2, ::2, ::2].copy(), affine, "mm"), 226.0, SOURCE)
    return Twin("head", [Structure("bone", vertices / 1000.0, faces)], source_units="mm")


def _upright_and_facing_front(up: np.ndarray, front: np.ndarray) -> None:
    """The head's shape along an up and a front axis (mm): the face is the front and low, the vault top."""
    lo, hi = up.min(), up.max()
    assert 140 < hi - lo < 230, "vertex to the lowest teeth/headrest"
    face = front > front.max() - 15  # the most anterior 15 mm: nasal bones, maxilla, teeth
    assert up[face].mean() < (lo + hi) / 2, "the face lies in the lower half"
    top = up > hi - 20  # the vault
    assert abs(front[top].mean() - (front.min() + front.max()) / 2) < 40


def test_exported_head_is_upright_and_faces_front_in_other_viewers(ct_head: Twin, tmp_path: Path) -> None:
    """A CT head exported by medverse stands upright in glTF's frame (+Y up) and faces +Z, read by
    trimesh (what a three.js or Blender user sees), and still passes the Khronos validator."""
    path = export_glb(ct_head, tmp_path / "head.glb")
    report = validate(path)
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"]
    mesh = trimesh.load(path, force="mesh", process=False)
    v = np.asarray(mesh.vertices) * 1000.0
    _upright_and_facing_front(up=v[:, 1], front=v[:, 2])
    ras = ct_head.structures[0].vertices.astype(np.float64) * 1000.0
    _upright_and_facing_front(up=ras[:, 2], front=ras[:, 1])  # the twin itself, for comparison


def test_a_y_up_gltf_from_another_writer_imports_upright(ct_head: Twin, tmp_path: Path) -> None:
    """The head written Y-up by trimesh (not by medverse) imports as the same RAS twin: upright, not
    lying on its back as when glTF was read as if Z were up."""
    from assets.loaders import load

    ras = ct_head.structures[0].vertices.astype(np.float64)
    path = tmp_path / "head.glb"
    path.write_bytes(trimesh.Trimesh(y_up(ras), ct_head.structures[0].faces, process=False).export(file_type="glb"))
    twin = load(path)
    np.testing.assert_allclose(twin.bounds(), ct_head.bounds(), atol=1e-7)
    v = twin.structures[0].vertices.astype(np.float64) * 1000.0
    _upright_and_facing_front(up=v[:, 2], front=v[:, 1])


def test_twins_cached_before_the_y_up_fix_are_not_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A GLB imported by the cache format before the fix (version 1: glTF read as Z-up) is never
    mapped by the current code: its entry is not found, and the library says to import it again."""
    from assets import cache as cache_module
    from assets.cache import TwinCache
    from assets.errors import AssetError
    from assets.library import Library

    ball = trimesh.creation.icosphere(subdivisions=3, radius=0.05)
    path = export_glb(Twin("ball", [Structure("ball", ball.vertices, ball.faces)]), tmp_path / "ball.glb")
    library = Library(TwinCache(tmp_path / "cache"), tmp_path / "home")
    monkeypatch.setattr(cache_module, "FORMAT_VERSION", 1)
    library.import_twin(path, name="old-ball")
    assert library.build("old-ball").triangle_count == len(ball.faces)  # the old code maps it
    monkeypatch.setattr(cache_module, "FORMAT_VERSION", 2)
    with pytest.raises(AssetError, match="import it again"):
        library.build("old-ball")
