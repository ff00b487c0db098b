"""Loading real and generated files into twins in metres (assets.loaders, assets.units)."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import nilearn
import numpy as np
import pydicom
import pytest
import trimesh

from assets.errors import AssetError, UnsupportedFormatError
from assets.loaders import detect_format, load
from assets.twin import Twin
from assets.units import detect_units
from assets.validate import _signed_volume, check, is_watertight

FSAVERAGE5 = Path(nilearn.__file__).parent / "datasets" / "data" / "fsaverage5"
DICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


@pytest.fixture(scope="module")
def pial_left() -> Twin:
    return load(FSAVERAGE5 / "pial_left.gii.gz")


@pytest.fixture(scope="module")
def pial_mesh_mm() -> trimesh.Trimesh:
    """The real left pial surface as read by nibabel, in its own millimetres."""
    image = nib.load(FSAVERAGE5 / "pial_left.gii.gz")
    return trimesh.Trimesh(image.darrays[0].data, image.darrays[1].data, process=False)


def test_gifti_surface_is_read_in_metres_from_declared_millimetres(pial_left: Twin) -> None:
    """fsaverage5's pial surface: 20,480 triangles, about 17 cm long, stated (not guessed) as mm."""
    structure = pial_left.structures[0]
    assert structure.triangle_count == 20_480 and structure.vertex_count == 10_242
    size = np.ptp(structure.vertices, axis=0)
    assert 0.15 < size.max() < 0.20  # metres: an adult hemisphere is 15-20 cm front to back
    assert pial_left.source_units == "mm" and not pial_left.units_detected
    assert is_watertight(structure) and check(structure) == []
    assert len(pial_left.provenance["sha256"]) == 64


@pytest.mark.parametrize("suffix", [".glb", ".obj", ".stl", ".ply"])
def test_mesh_formats_keep_geometry_and_detect_millimetres(tmp_path: Path, pial_mesh_mm: trimesh.Trimesh,
                                                          suffix: str) -> None:
    """The same real surface written as GLB/OBJ/STL/PLY loads to the same metres; unitless formats
    written in mm are detected as mm, GLB is metres by definition."""
    mesh = pial_mesh_mm.copy()
    if suffix == ".glb":
        mesh.apply_scale(0.001)  # glTF is metres, +Y up with the front at +Z: RAS (x, y, z) is (-x, z, y)
        mesh.vertices = mesh.vertices[:, [0, 2, 1]] * [-1.0, 1.0, 1.0]
    path = tmp_path / f"cortex{suffix}"
    mesh.export(path)
    twin = load(path)
    assert twin.triangle_count == 20_480
    expected = np.asarray(pial_mesh_mm.bounds) / 1000.0
    assert np.allclose(twin.bounds(), expected, atol=1e-6)
    if suffix == ".glb":
        assert (twin.source_units, twin.units_detected) == ("m", False)
    else:
        assert (twin.source_units, twin.units_detected) == ("mm", True)
    assert all(is_watertight(s) for s in twin.structures)


def test_declared_units_override_detection(tmp_path: Path, pial_mesh_mm: trimesh.Trimesh) -> None:
    path = tmp_path / "cortex.stl"
    pial_mesh_mm.export(path)
    twin = load(path, units="cm")
    assert (twin.source_units, twin.units_detected) == ("cm", False)
    assert np.allclose(np.ptp(twin.bounds(), axis=0), np.ptp(pial_mesh_mm.bounds, axis=0) / 100.0, rtol=1e-5)
    with pytest.raises(AssetError, match="unknown unit"):
        load(path, units="furlong")


def test_unit_detection_follows_anatomical_size() -> None:
    """Extents up to 3 read as metres, up to 3,000 as mm, above as micrometres."""
    box = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    assert detect_units(box * 0.17) == "m"
    assert detect_units(box * 170.0) == "mm"
    assert detect_units(box * 17_000.0) == "um"


def _sphere_volume(shape: tuple[int, int, int], affine: np.ndarray, centre_mm: np.ndarray, radius_mm: float
                   ) -> np.ndarray:
    """A bright ball of ``radius_mm`` around ``centre_mm`` (world mm) sampled on the voxel grid."""
    index = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), axis=-1).reshape(-1, 3)
    world = index @ affine[:3, :3].T + affine[:3, 3]
    distance = np.linalg.norm(world - centre_mm, axis=1).reshape(shape)
    return np.clip(radius_mm - distance + 0.5, 0.0, 1.0).astype(np.float32) * 1000.0


def test_nifti_surface_respects_anisotropic_spacing_and_a_mirroring_affine(tmp_path: Path) -> None:
    """A ball of radius 20 mm on a 1 x 2 x 0.5 mm grid, mirrored in x and shifted: the surface comes
    out round, 40 mm across, centred where the affine puts it, with normals pointing outwards."""
    affine = np.diag([-1.0, 2.0, 0.5, 1.0])
    affine[:3, 3] = [60.0, -40.0, 10.0]
    shape = (64, 40, 120)
    centre = np.array([28.0, 0.0, 40.0])
    path = tmp_path / "ball.nii.gz"
    nib.save(nib.Nifti1Image(_sphere_volume(shape, affine, centre, 20.0), affine), path)
    twin = load(path, threshold=500.0)
    vertices = twin.structures[0].vertices.astype(np.float64) * 1000.0
    assert np.allclose(vertices.mean(axis=0), centre, atol=0.5)
    assert np.allclose(np.ptp(vertices, axis=0), 40.0, atol=2.5)
    radii = np.linalg.norm(vertices - centre, axis=1)
    assert abs(np.median(radii) - 20.0) < 0.75
    assert _signed_volume(twin.structures[0].vertices, twin.structures[0].faces) > 0
    assert twin.provenance["threshold"] == 500.0 and twin.source_units == "mm"


def test_ct_dicom_uses_hounsfield_threshold_and_is_deidentified() -> None:
    """pydicom's CT_small: 300 HU by default, the surface lies inside the slice, PHI never reaches
    the twin, and the de-identification is recorded."""
    twin = load(DICOM_FILES / "CT_small.dcm")
    assert twin.provenance["threshold"] == 300.0 and twin.provenance["threshold_units"] == "HU"
    ds = pydicom.dcmread(DICOM_FILES / "CT_small.dcm")
    origin = np.array([float(x) for x in ds.ImagePositionPatient])
    rows, cols = int(ds.Rows), int(ds.Columns)
    spacing = [float(x) for x in ds.PixelSpacing]
    # DICOM patient coordinates are LPS; twins are RAS: x and y change sign.
    lps_lo = origin[:2]
    lps_hi = origin[:2] + np.array([cols * spacing[1], rows * spacing[0]])
    lo, hi = twin.bounds() * 1000.0
    assert np.all(lo[:2] >= -lps_hi - 1.0) and np.all(hi[:2] <= -lps_lo + 1.0)
    assert hi[0] - lo[0] > 10.0  # a real surface, not a speck
    meta = twin.metadata
    assert meta["PatientIdentityRemoved"] == "YES" and meta["Modality"] == "CT"
    assert "DeidentificationMethod" in meta
    assert not {"PatientName", "PatientID", "PatientBirthDate", "InstitutionName"} & set(meta)
    assert str(ds.PatientName) not in repr(meta)
    assert meta["SeriesInstanceUID"] != ds.SeriesInstanceUID


def test_dicom_series_folder_stacks_slices_by_position(tmp_path: Path) -> None:
    """Ten copies of a real CT slice 2.5 mm apart, written out of order, load as one volume 22.5 mm
    deep whose surface spans the stack."""
    ds = pydicom.dcmread(DICOM_FILES / "CT_small.dcm")
    z0 = float(ds.ImagePositionPatient[2])
    for i in (3, 0, 7, 1, 9, 4, 2, 8, 6, 5):
        ds.ImagePositionPatient[2] = z0 + 2.5 * i
        ds.SliceLocation = z0 + 2.5 * i
        ds.InstanceNumber = i + 1
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(tmp_path / f"slice{i:02d}.dcm")
    assert detect_format(tmp_path) == "dicom"
    twin = load(tmp_path)
    lo, hi = twin.bounds() * 1000.0
    assert hi[2] - lo[2] == pytest.approx(22.5, abs=2.6)
    assert lo[2] == pytest.approx(z0, abs=2.6)


def test_smoothing_and_decimation_options(tmp_path: Path) -> None:
    src = FSAVERAGE5 / "pial_left.gii.gz"
    plain = load(src)
    smooth = load(src, smooth_iterations=5)
    assert smooth.triangle_count == plain.triangle_count
    assert not np.allclose(smooth.structures[0].vertices, plain.structures[0].vertices)
    small = load(src, decimate_to=4000)
    assert 3000 <= small.triangle_count <= 4100
    assert small.provenance["decimation"]["error_mm"][small.structures[0].name] > 0


def test_unknown_suffix_is_sniffed_or_refused(tmp_path: Path, pial_mesh_mm: trimesh.Trimesh) -> None:
    glb = tmp_path / "mystery.bin"
    glb.write_bytes(trimesh.Trimesh(pial_mesh_mm.vertices / 1000.0, pial_mesh_mm.faces).export(file_type="glb"))
    assert detect_format(glb) == "glb"
    assert load(glb).triangle_count == 20_480
    text = tmp_path / "notes.txt"
    text.write_text("not a mesh")
    with pytest.raises(UnsupportedFormatError, match=r"notes\.txt"):
        load(text)


def test_gifti_copy_without_gzip_loads_identically(tmp_path: Path, pial_left: Twin) -> None:
    import gzip

    plain = tmp_path / "pial_left.gii"
    plain.write_bytes(gzip.decompress((FSAVERAGE5 / "pial_left.gii.gz").read_bytes()))
    copy = tmp_path / "copy.gii.gz"
    shutil.copy(FSAVERAGE5 / "pial_left.gii.gz", copy)
    for path in (plain, copy):
        assert np.array_equal(load(path).structures[0].vertices, pial_left.structures[0].vertices)


@pytest.mark.parametrize("source", [Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3"),
                                    Path("/bin/true"), DICOM_FILES / "zipMR.gz"])
def test_unknown_binary_file_is_an_unknown_format_not_an_stl(tmp_path: Path, source: Path) -> None:
    """Real binary files under a suffix that says nothing (a gzipped tar, an executable, a gzip) are
    refused as unknown: they used to be read as binary STL declaring billions of triangles."""
    mystery = tmp_path / "scan.dat"
    shutil.copy(source, mystery)
    with pytest.raises(UnsupportedFormatError, match="not a known format"):
        detect_format(mystery)
    with pytest.raises(UnsupportedFormatError, match=r"scan\.dat: is not a known format"):
        load(mystery)


def test_binary_stl_is_recognised_by_its_size_and_a_forged_count_is_not_stl(
        tmp_path: Path, pial_mesh_mm: trimesh.Trimesh) -> None:
    """A real binary STL without a suffix is detected (84 + 50 bytes per triangle); one byte more or
    less and it is not; under an .stl suffix a count the size cannot hold says so in one line."""
    data = pial_mesh_mm.export(file_type="stl")
    plain = tmp_path / "cortex"
    plain.write_bytes(data)
    assert detect_format(plain) == "stl" and load(plain).triangle_count == 20_480
    plain.write_bytes(data[:-1])
    with pytest.raises(UnsupportedFormatError):
        detect_format(plain)
    forged = tmp_path / "forged.stl"
    forged.write_bytes(data[:80] + (2_898_971_850).to_bytes(4, "little") + data[84:])
    with pytest.raises(AssetError, match="is not an STL file: its header declares 2,898,971,850 triangles"):
        load(forged)
