"""The bundled atlas and CT twins: ``brain-aal`` (AAL atlas, Debian mricron-data) and ``skull``
(Cranium.inv3, Debian invesalius-examples), and the whole-number-threshold fix in the volume path."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from assets import validate
from assets.atlas import AAL_SOURCES, UNCOLOURED, read_labels, read_lut, srgb_to_linear
from assets.errors import AssetError, ResourceLimitError
from assets.library import Library
from assets.loaders import load
from assets.loaders.inv3 import read_inv3
from assets.loaders.limits import Limits
from assets.loaders.volume import Volume, effective_level, surface
from assets.skull import NERVE_NAME, SKULL_NAME, SOURCE, ramus_geometry
from assets.twin import Twin


@pytest.fixture(scope="module")
def aal() -> Twin:
    return Library().build("brain-aal")


@pytest.fixture(scope="module")
def skull() -> Twin:
    return Library().build("skull")


def _centroid_mm(twin: Twin, name: str) -> np.ndarray:
    centroid: np.ndarray = np.asarray(twin.structure(name).vertices, dtype=np.float64).mean(axis=0) * 1000.0
    return centroid


# ------------------------------------------------------------------------------------------- AAL


def test_aal_label_files_are_read_as_mricron_writes_them() -> None:
    names = read_labels(AAL_SOURCES[1])
    assert len(names) == 116
    assert names[1] == "Precentral_L" and names[116] == "Vermis_10"
    lut = read_lut(AAL_SOURCES[2])
    assert lut.shape == (256, 3)
    assert tuple(lut[3]) == (203, 149, 149)  # Frontal_Sup_L: planar R, G, B tables


@pytest.mark.slow
def test_aal_has_116_named_coloured_watertight_regions(aal: Twin) -> None:
    names = read_labels(AAL_SOURCES[1])
    lut = read_lut(AAL_SOURCES[2])
    assert [s.name for s in aal.structures] == [names[i] for i in sorted(names)]
    for value, structure in zip(sorted(names), aal.structures, strict=True):
        assert structure.codes == {"AAL": str(value)}
        if lut[value].any():
            expected = srgb_to_linear(lut[value] / 255.0)
            np.testing.assert_allclose(structure.color[:3], expected, atol=1e-6)
        else:
            assert structure.color == UNCOLOURED
        problems = [p.kind for p in validate.check(structure)]
        assert problems == [], f"{structure.name}: {problems}"
    assert 300_000 < aal.triangle_count < 1_500_000
    assert aal.source_units == "mm"


@pytest.mark.slow
def test_aal_regions_lie_where_anatomy_puts_them(aal: Twin) -> None:
    pre, post = _centroid_mm(aal, "Precentral_L"), _centroid_mm(aal, "Postcentral_L")
    assert pre[0] < -20 and post[0] < -20  # left hemisphere: RAS x < 0
    assert pre[1] > post[1] + 8  # the precentral gyrus is anterior of the postcentral
    assert _centroid_mm(aal, "Precentral_R")[0] > 20
    assert _centroid_mm(aal, "Occipital_Sup_L")[1] < -60  # occipital: posterior
    assert _centroid_mm(aal, "Frontal_Sup_L")[1] > 10
    assert _centroid_mm(aal, "Cerebelum_Crus1_L")[2] < -15  # cerebellum: inferior
    lo, hi = aal.bounds() * 1000.0  # MNI brain: about 140 x 175 x 120 mm
    assert 120 < hi[0] - lo[0] < 160 and 150 < hi[1] - lo[1] < 200 and 100 < hi[2] - lo[2] < 150


# ------------------------------------------------------------------------------------------- skull


@pytest.mark.slow
def test_skull_is_an_adult_skull_upright_face_forward(skull: Twin) -> None:
    bone = skull.structure(SKULL_NAME)
    assert validate.check(bone) == [] or {p.kind for p in validate.check(bone)} == {"not-watertight"}
    assert 150_000 < bone.triangle_count <= 300_000
    v = np.asarray(bone.vertices, dtype=np.float64) * 1000.0
    lo, hi = v.min(axis=0), v.max(axis=0)
    assert 125 < hi[0] - lo[0] < 200, "bony width"
    assert 170 < hi[1] - lo[1] < 230, "glabella to opisthocranion"
    # Upright: the vault (widest near the top) is superior; the teeth and maxilla are at the bottom, in front.
    top = v[v[:, 2] > hi[2] - 20]
    assert abs(top[:, 1].mean() - (lo[1] + hi[1]) / 2) < 30
    front = v[v[:, 1] > hi[1] - 15]  # the most anterior 15 mm: the face (nasal bones, maxilla, teeth)
    assert front[:, 2].mean() < (lo[2] + hi[2]) / 2, "the face is in the lower half"
    back = v[v[:, 1] < lo[1] + 15]  # the occiput is high at the back
    assert back[:, 2].mean() > front[:, 2].mean()
    assert skull.provenance["threshold"] == 226.0
    assert "approximation" in skull.provenance["nerve"].lower()


@pytest.mark.slow
def test_nerve_approximation_lies_medial_of_the_left_ramus_clear_of_bone(skull: Twin) -> None:
    from assets.lod import surface_distance

    bone = skull.structure(SKULL_NAME)
    nerve = skull.structure(NERVE_NAME)
    assert validate.check(nerve) == []
    geometry = ramus_geometry(np.asarray(bone.vertices, dtype=np.float64) * 1000.0, bone.faces)
    assert geometry.foramen_mm[0] < -30  # the patient's left
    gaps = surface_distance(geometry.nerve_mm, np.asarray(bone.vertices, dtype=np.float64) * 1000.0, bone.faces)
    assert gaps.min() >= 2.0  # the tube (1.3 mm) does not enter the bone
    centre = np.asarray(nerve.vertices, dtype=np.float64).mean(axis=0) * 1000.0
    assert np.linalg.norm(centre - geometry.nerve_mm.mean(axis=0)) < 2.0


def test_inv3_sizes_come_from_the_plist() -> None:
    volume = read_inv3(SOURCE)
    assert volume.data.shape == (108, 256, 256) and volume.modality == "CT"
    # voxel (slice, row, column) steps: 1.5 mm superior, 0.957 mm anterior, 0.957 mm to the left
    np.testing.assert_allclose(volume.affine[:3, :3] @ np.eye(3), [[0, 0, -0.9570312], [0, 0.9570312, 0],
                                                                    [1.5, 0, 0]], atol=1e-6)
    with pytest.raises(ResourceLimitError):
        read_inv3(SOURCE, Limits(max_voxels=1_000_000))


def _inv3(tmp_path: Path, plist: bytes, matrix: bytes) -> Path:
    path = tmp_path / "bad.inv3"
    with tarfile.open(path, "w:gz") as archive:
        for name, data in (("p/main.plist", plist), ("p/matrix.dat", matrix)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_inv3_that_disagrees_with_its_plist_is_refused_in_one_line(tmp_path: Path) -> None:
    import plistlib

    plist = plistlib.dumps({"matrix": {"dtype": "int16", "filename": "matrix.dat", "shape": [4, 8, 8]},
                            "spacing": [1.0, 1.0, 2.0], "modality": "CT", "orientation": 1})
    with pytest.raises(AssetError, match="needs 512"):
        read_inv3(_inv3(tmp_path, plist, b"\0" * 100))
    huge = plistlib.dumps({"matrix": {"dtype": "int16", "filename": "matrix.dat", "shape": [4000, 4000, 4000]},
                           "spacing": [1.0, 1.0, 1.0], "orientation": 1})
    with pytest.raises(ResourceLimitError):
        read_inv3(_inv3(tmp_path, huge, b"\0" * 100))
    with pytest.raises(AssetError, match="not a tar"):
        read_inv3(Path(AAL_SOURCES[1]))


# ------------------------------------------------------------------------------------------- issue 17


def test_effective_level_moves_only_a_level_that_voxels_sit_on() -> None:
    data = np.array([0.0, 225.0, 226.0, 400.0], dtype=np.float32)
    assert effective_level(data, 226.0) == 225.5  # 226 counts as inside, as InVesalius counts it
    assert effective_level(data, 226.5) == 226.5
    assert effective_level(np.array([0.0, 1.0], dtype=np.float32), 1.0) == 0.5


@pytest.mark.slow
@pytest.mark.parametrize("threshold", [1, 100, 226, 300])
def test_whole_number_ct_thresholds_import(tmp_path: Path, threshold: int) -> None:
    """A CT in integer HU at a whole-number threshold used to leave vertices on grid points: holes and
    edges shared by more than two faces after import merged them. Real data: the lower third of the
    Cranium CT (teeth, maxilla, rami) as an int16 NIfTI."""
    import nibabel as nib

    volume = read_inv3(SOURCE)
    part = volume.data[:36].astype(np.int16)
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(part.transpose(2, 1, 0)), np.diag([0.957, 0.957, 1.5, 1.0])),
             path)
    twin = load(path, threshold=threshold, units="mm")
    for structure in twin.structures:
        kinds = {p.kind for p in validate.check(structure)}
        assert not kinds & {"non-manifold", "winding", "degenerate", "not-watertight"}, kinds
    # the raw surface itself has no vertex repeated at a grid point
    vertices, _ = surface(Volume(part.astype(np.float32), np.eye(4), "mm"), float(threshold), path)
    assert len(np.unique(vertices, axis=0)) == len(vertices)
