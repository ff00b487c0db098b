"""The surfaces users expect from a CT or MR (assets.loaders, assets.regions): CT found by its DICOM
modality or its Hounsfield values and cut at bone, Otsu for MR, the headrest and specks dropped with
``keep``, and smoothing that keeps the volume. The CT is the real head in Debian's Cranium.inv3."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import nilearn
import numpy as np
import pydicom
import pytest
import trimesh

from assets.errors import AssetError
from assets.loaders import load
from assets.loaders.inv3 import read_inv3
from assets.loaders.volume import looks_like_ct
from assets.regions import Keep, pieces
from assets.skull import SOURCE
from assets.twin import Twin
from assets.validate import _signed_volume, check

DICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
MNI_T1 = Path(nilearn.__file__).parent / "datasets" / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


@pytest.fixture(scope="module")
def head_nifti(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Cranium CT (int16 HU, every second voxel: 1.9 x 1.9 x 3 mm) saved as NIfTI, which keeps the
    values and the geometry but not the modality."""
    volume = read_inv3(SOURCE)
    affine = volume.affine.copy()
    affine[:3, :3] *= 2.0
    path = tmp_path_factory.mktemp("ct") / "head.nii.gz"
    nib.save(nib.Nifti1Image(volume.data[::2, ::2, ::2].astype(np.int16), affine), path)
    return path


@pytest.fixture(scope="module")
def whole(head_nifti: Path) -> Twin:
    return load(head_nifti)


@pytest.fixture(scope="module")
def skull(head_nifti: Path) -> Twin:
    return load(head_nifti, keep=Keep("largest"))


def test_a_ct_saved_as_nifti_is_cut_at_bone(whole: Twin) -> None:
    """Without a modality, the HU range says CT: 300 HU (bone), not Otsu's threshold near -400 HU,
    which gave the skin."""
    assert whole.provenance["modality"] == "CT" and whole.provenance["threshold"] == 300.0
    assert whole.provenance["threshold_units"] == "HU" and whole.name.startswith("ct-")
    assert any("Hounsfield" in note for note in whole.provenance["notes"])
    assert "non-manifold" not in {p.kind for s in whole.structures for p in check(s)}


def test_mr_is_not_taken_for_ct_and_gets_otsu() -> None:
    """The MNI152 T1 template (MR, no negatives) does not read as CT; pydicom's MR slice, whose
    modality says MR, is cut at Otsu's threshold, not at 300."""
    assert not looks_like_ct(np.asarray(nib.load(MNI_T1).dataobj, dtype=np.float32))
    mr = load(DICOM_FILES / "MR_small.dcm")
    assert mr.provenance["modality"] == "MR" and mr.provenance["threshold_units"] == "intensity"
    assert mr.provenance["threshold"] != 300.0


def test_keep_largest_drops_the_headrest(whole: Twin, skull: Twin) -> None:
    """The largest bone region is the skull: the headrest behind and beside it (223 mm wide) and the
    specks go, the skull is a skull's width, and its surface is what it was without them."""
    assert skull.provenance["keep"] == {"rule": "largest", "by": "voxel regions", "regions": 29, "kept": 1}
    (lo, hi), (wlo, whi) = skull.bounds() * 1000.0, whole.bounds() * 1000.0
    assert whi[0] - wlo[0] > 200 and 125 < hi[0] - lo[0] < 160, "bony width"
    assert lo[1] > wlo[1] + 10, "the headrest was behind the head"
    assert np.isclose(hi[2], whi[2], atol=3.0), "the vault stays"
    assert skull.triangle_count < 0.9 * whole.triangle_count


def test_keep_min_volume_and_count(head_nifti: Path, whole: Twin, skull: Twin) -> None:
    """min-volume keeps every region of at least that many mm^3 (here the skull, the headrest's parts
    and a bigger speck), a count keeps that many."""
    kept = load(head_nifti, keep=Keep("min-volume", 1000.0))
    assert kept.provenance["keep"]["kept"] == 4
    assert skull.triangle_count < kept.triangle_count < whole.triangle_count
    with pytest.raises(AssetError, match="no region above the threshold measures at least 1e\\+09 mm\\^3"):
        load(head_nifti, keep=Keep("min-volume", 1e9))


def test_keep_on_a_mesh_file_counts_its_pieces(whole: Twin, tmp_path: Path) -> None:
    """A mesh file (the whole CT surface as PLY, in mm) keeps its N largest pieces by enclosed volume."""
    (surface,) = whole.structures
    path = tmp_path / "bone.ply"
    trimesh.Trimesh(surface.vertices * 1000.0, surface.faces, process=False).export(path)
    assert len(np.unique(pieces(surface.faces, surface.vertex_count))) > 2
    two = load(path, units="mm", keep=Keep("count", 2))
    assert two.provenance["keep"]["by"] == "mesh pieces" and two.provenance["keep"]["kept"] == 2
    (kept,) = two.structures
    assert len(np.unique(pieces(kept.faces, kept.vertex_count))) == 2


def test_smoothing_keeps_the_volume_and_softens_the_steps(head_nifti: Path, skull: Twin) -> None:
    """Ten Taubin passes on the skull: the enclosed volume changes by under 2%, while the angle between
    neighbouring faces (the voxel stair-steps) falls by more than a fifth."""
    smooth = load(head_nifti, keep=Keep("largest"), smooth_iterations=10)

    def roughness(twin: Twin) -> float:
        (s,) = twin.structures
        mesh = trimesh.Trimesh(s.vertices, s.faces, process=False)
        return float(np.mean(mesh.face_adjacency_angles))

    before = _signed_volume(skull.structures[0].vertices, skull.structures[0].faces)
    after = _signed_volume(smooth.structures[0].vertices, smooth.structures[0].faces)
    assert abs(after - before) / before < 0.02
    assert roughness(smooth) < 0.8 * roughness(skull)


def test_cli_keep_and_smooth(head_nifti: Path, tmp_path: Path) -> None:
    """`twin import --keep largest --smooth 5` works from the command line; a bad rule is one line, exit 2."""
    env = dict(os.environ, MEDVERSE_HOME=str(tmp_path / "home"), MEDVERSE_CACHE=str(tmp_path / "cache"))
    script = str(Path(sys.executable).with_name("medverse"))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([script, "twin", "import", str(head_nifti), *args], capture_output=True, text=True,
                              env=env, timeout=120, check=False)

    good = run("--keep", "largest", "--smooth", "5", "--name", "skull-ct")
    assert good.returncode == 0, good.stderr
    assert "imported as 'skull-ct'" in good.stdout
    bad = run("--keep", "min-volume", "lots")
    assert bad.returncode == 2 and bad.stderr.startswith("medverse: error: --keep: "), bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("words", "message"), [(["0"], "at least 1"), (["biggest"], "takes 'largest'"),
                                                (["min-volume", "-5"], "above 0"), (["min-volume"], "takes")])
def test_keep_rules_that_make_no_sense_are_refused(words: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Keep.parse(words)
