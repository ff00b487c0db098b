"""Bad input: corrupt, truncated, empty and hostile files fail fast with an AssetError, and a fuzz
run over mutants of real files never raises anything else (assets.loaders)."""

from __future__ import annotations

import gzip
import json
import struct
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import nilearn
import numpy as np
import pydicom
import pytest
import trimesh

from assets.errors import AssetError, ResourceLimitError, UnreadableAssetError
from assets.loaders import load
from assets.twin import Twin
from assets.validate import check

FSAVERAGE5 = Path(nilearn.__file__).parent / "datasets" / "data" / "fsaverage5"
DICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
#: Every bad file must be refused within this many seconds.
DEADLINE_S = 1.0


def _refused(path: Path, error: type[AssetError] = AssetError, match: str | None = None) -> AssetError:
    started = time.perf_counter()
    with pytest.raises(error, match=match) as info:
        load(path)
    assert time.perf_counter() - started < DEADLINE_S
    message = str(info.value)
    assert "\n" not in message and str(path) in message  # one line, naming the file
    return info.value


@pytest.mark.parametrize("name", ["empty.glb", "empty.stl", "empty.ply", "empty.obj", "empty.gii",
                                  "empty.nii.gz", "empty.dcm", "empty.gltf"])
def test_empty_files_are_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    _refused(path, UnreadableAssetError)


@pytest.fixture(scope="module")
def small_mesh() -> trimesh.Trimesh:
    """A real, small, clean surface in mm: pydicom's CT_small slice through marching cubes."""
    twin = load(DICOM_FILES / "CT_small.dcm")
    structure = twin.structures[0]
    assert check(structure) == []
    return trimesh.Trimesh(structure.vertices * 1000.0, structure.faces, process=False)


@pytest.mark.parametrize("suffix", [".glb", ".stl", ".ply", ".obj"])
def test_truncated_files_are_refused(tmp_path: Path, small_mesh: trimesh.Trimesh, suffix: str) -> None:
    data = small_mesh.export(file_type=suffix[1:])
    data = data.encode() if isinstance(data, str) else data
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data[: len(data) // 3])
    try:
        twin = load(path)
    except AssetError as exc:
        assert str(path) in str(exc)
    else:  # a text format cut between lines is a smaller, still valid mesh
        assert suffix == ".obj" and twin.triangle_count < len(small_mesh.faces)


def test_ply_declaring_a_trillion_vertices_is_refused_before_allocation(tmp_path: Path) -> None:
    path = tmp_path / "huge.ply"
    path.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 1000000000000\n"
                     b"property float x\nproperty float y\nproperty float z\nelement face 1\n"
                     b"property list uchar int vertex_indices\nend_header\n" + b"\0" * 64)
    _refused(path, ResourceLimitError, "vert")


def test_binary_stl_declaring_more_triangles_than_it_holds_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "forged.stl"
    path.write_bytes(b"\x01" * 80 + struct.pack("<I", 2_000_000_000) + b"\0" * 50 * 10)
    _refused(path)


def test_glb_with_an_accessor_count_beyond_its_buffer_is_refused(tmp_path: Path, small_mesh: trimesh.Trimesh) -> None:
    data = bytearray(small_mesh.export(file_type="glb"))
    length = struct.unpack_from("<I", data, 12)[0]
    document = json.loads(data[20:20 + length])
    for accessor in document["accessors"]:
        accessor["count"] = 2**31 - 1
    text = json.dumps(document).encode()
    text += b" " * (-len(text) % 4)
    binary = data[20 + length:]
    out = b"glTF" + struct.pack("<II", 2, 12 + 8 + len(text) + len(binary)) + struct.pack("<I", len(text)) + b"JSON"
    path = tmp_path / "forged.glb"
    path.write_bytes(out + text + binary)
    _refused(path)


def test_nan_vertices_are_refused_unrepaired_and_cut_out_by_repair(tmp_path: Path) -> None:
    """A NaN vertex is fatal to a strict load; the repairing load removes it with its faces and says so."""
    from assets.errors import NonFiniteVertexError

    path = tmp_path / "nan.ply"
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=30.0)
    mesh.vertices[5] = np.nan
    path.write_bytes(mesh.export(file_type="ply"))
    with pytest.raises(NonFiniteVertexError, match="NaN"):
        load(path, repair=False)
    twin = load(path)
    assert np.isfinite(twin.structures[0].vertices).all()
    assert twin.triangle_count == len(mesh.faces) - 5  # the five faces around the vertex
    assert any("non-finite" in action for action in twin.provenance["repair"])
    assert "not-watertight" in twin.provenance["remaining"]


@pytest.mark.latency
def test_gzip_bomb_fails_in_milliseconds_without_inflating(tmp_path: Path) -> None:
    """512 MiB of zeros packed into half a megabyte, named as a GIFTI surface."""
    path = tmp_path / "bomb.gii.gz"
    path.write_bytes(gzip.compress(b"\0" * (512 << 20), compresslevel=9))
    _refused(path, ResourceLimitError, "gzip bomb")


def test_gifti_declaring_huge_arrays_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.gii"
    path.write_text('<?xml version="1.0"?><GIFTI Version="1.0" NumberOfDataArrays="1">'
                    '<DataArray Intent="NIFTI_INTENT_POINTSET" DataType="NIFTI_TYPE_FLOAT32" Dimensionality="2"'
                    ' Dim0="4000000000" Dim1="3" Encoding="ASCII" Endian="LittleEndian" ArrayIndexingOrder="RowMajorOrder"'
                    ' ExternalFileName="" ExternalFileOffset=""><Data>0 0 0</Data></DataArray></GIFTI>')
    _refused(path, ResourceLimitError)


def test_nifti_declaring_more_voxels_than_allowed_is_refused(tmp_path: Path) -> None:
    image = nib.Nifti1Image(np.zeros((4, 4, 4), dtype=np.float32), np.eye(4))
    data = bytearray(image.to_bytes())
    struct.pack_into("<8h", data, 40, 3, 32000, 32000, 32000, 1, 1, 1, 1)  # dim[]: 3-D, 32000^3 voxels
    path = tmp_path / "huge.nii"
    path.write_bytes(bytes(data))
    _refused(path, ResourceLimitError, "voxels")


# ------------------------------------------------------------------------------------------------ fuzz

#: Mutants per seed file; thirteen seed files make the 1,000+ the issue asks for per run.
MUTANTS_PER_SEED = 78
#: Seeds, each named by the end of its file name: meshes, GIFTI, a CT slice, and the imaging formats of
#: issue 17 (NRRD, a Slicer segmentation, MetaImage, legacy and XML VTK, DICOM SEG and RTSTRUCT).
SEED_NAMES = [".glb", ".stl", ".ply", ".obj", ".gii", ".dcm", ".nrrd", ".seg.nrrd", ".mha", ".vtk", ".vtp",
              "-seg.dcm", "-rtstruct.dcm"]


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One mutant: flipped bytes, overwritten runs, a cut, a duplicated or deleted block, or
    interesting integers written over a random position (the usual ways files break)."""
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        kind = int(rng.integers(0, 6))
        at = int(rng.integers(0, max(1, len(buf))))
        if kind == 0 and buf:
            buf[at] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1:
            run = rng.integers(0, 256, size=int(rng.integers(1, 16)), dtype=np.uint8).tobytes()
            buf[at:at + len(run)] = run
        elif kind == 2:
            del buf[at:]
        elif kind == 3:
            size = int(rng.integers(1, 256))
            buf[at:at] = buf[at:at + size]
        elif kind == 4:
            del buf[at:at + int(rng.integers(1, 256))]
        else:
            value = int(rng.choice([0, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 1 << 20, 0xFFFF]))
            buf[at:at + 4] = struct.pack("<I", value)
    return bytes(buf)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory, small_mesh: trimesh.Trimesh,
          write_rtstruct: Callable[..., Path]) -> dict[str, bytes]:
    """Small real files of every mesh format, the same surface as ASCII GIFTI and VTK (so mutations
    reach the numbers, not only a checksum), a real DICOM slice, and the imaging formats made from
    real data (``_imaging_seeds``)."""
    out = {f".{kind}": small_mesh.export(file_type=kind) for kind in ("stl", "ply", "obj")}
    out = {k: v.encode() if isinstance(v, str) else v for k, v in out.items()}
    metres = small_mesh.copy()
    metres.apply_scale(0.001)
    out[".glb"] = metres.export(file_type="glb")
    folder = tmp_path_factory.mktemp("seeds")
    gifti = nib.gifti.GiftiImage(darrays=[
        nib.gifti.GiftiDataArray(np.asarray(small_mesh.vertices, dtype=np.float32), intent="NIFTI_INTENT_POINTSET",
                                 encoding="ASCII"),
        nib.gifti.GiftiDataArray(np.asarray(small_mesh.faces, dtype=np.int32), intent="NIFTI_INTENT_TRIANGLE",
                                 encoding="ASCII"),
    ])
    nib.save(gifti, folder / "seed.gii")
    out[".gii"] = (folder / "seed.gii").read_bytes()
    out[".dcm"] = (DICOM_FILES / "CT_small.dcm").read_bytes()
    out.update(_imaging_seeds(folder, small_mesh, write_rtstruct))
    assert sorted(out) == sorted(SEED_NAMES)
    return out


def _imaging_seeds(folder: Path, small_mesh: trimesh.Trimesh, write_rtstruct: Callable[..., Path]) -> dict[str, bytes]:
    """Uncompressed, small files (so a mutant reaches the header and the values): a 12 x 32 x 32 crop
    of the Cranium CT (maxilla and nasal cavity) as NRRD, MetaImage and a two-segment Slicer
    segmentation; the CT_small surface as ASCII VTK; a DICOM SEG and an RTSTRUCT of CT_small's bone."""
    import highdicom as hd
    import metaimageio
    import nrrd
    from pydicom.sr.codedict import codes
    from skimage import measure
    from vtkmodules.vtkIOLegacy import vtkPolyDataWriter
    from vtkmodules.vtkIOXML import vtkXMLPolyDataWriter

    from assets.loaders.inv3 import read_inv3
    from assets.skull import SOURCE

    volume = read_inv3(SOURCE)
    crop = volume.data[20:32, 100:132, 100:132].astype(np.int16)
    affine = volume.affine.copy()
    affine[:3, 3] = affine[:3, :3] @ [20.0, 100.0, 100.0] + affine[:3, 3]
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    geometry = {"space": "left-posterior-superior", "space directions": lps[:3, :3].T, "space origin": lps[:3, 3],
                "encoding": "raw"}
    nrrd.write(str(folder / "seed.nrrd"), crop, geometry)
    labels = np.where(crop >= 226, 1, np.where(crop > -300, 2, 0)).astype(np.uint8)
    segments = {"Segment0_Name": "bone", "Segment0_Color": "0.9 0.85 0.7", "Segment0_LabelValue": "1",
                "Segment0_Layer": "0", "Segment1_Name": "soft tissue", "Segment1_Color": "0.8 0.4 0.3",
                "Segment1_LabelValue": "2", "Segment1_Layer": "0"}
    nrrd.write(str(folder / "seed.seg.nrrd"), labels, {**geometry, **segments})
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    metaimageio.write(folder / "seed.mha", crop.transpose(2, 1, 0), ElementSpacing=spacing,
                      TransformMatrix=lps[:3, :3] / spacing, Offset=lps[:3, 3], Modality="MET_MOD_CT")
    out = {suffix: (folder / f"seed{suffix}").read_bytes() for suffix in (".nrrd", ".seg.nrrd", ".mha")}
    # VTK: the CT_small surface, ASCII legacy and ASCII XML, written by VTK itself
    reader_input = trimesh.Trimesh(small_mesh.vertices, small_mesh.faces, process=False)
    reader_input.export(folder / "seed.ply")
    from vtkmodules.vtkIOPLY import vtkPLYReader

    ply = vtkPLYReader()
    ply.SetFileName(str(folder / "seed.ply"))
    ply.Update()
    legacy = vtkPolyDataWriter()
    legacy.SetFileTypeToASCII()
    xml = vtkXMLPolyDataWriter()
    xml.SetDataModeToAscii()
    for writer, suffix in ((legacy, ".vtk"), (xml, ".vtp")):
        writer.SetFileName(str(folder / f"seed{suffix}"))
        writer.SetInputData(ply.GetOutput())
        assert writer.Write() == 1
        out[suffix] = (folder / f"seed{suffix}").read_bytes()
    # DICOM SEG and RTSTRUCT of the bone in CT_small (300 HU and above)
    ct = pydicom.dcmread(DICOM_FILES / "CT_small.dcm")
    bone = ct.pixel_array * float(ct.RescaleSlope) + float(ct.RescaleIntercept) >= 300
    description = hd.seg.SegmentDescription(1, "bone", codes.SCT.Tissue, codes.SCT.Bone,
                                            hd.seg.SegmentAlgorithmTypeValues.MANUAL,
                                            display_color=hd.color.CIELabColor.from_rgb(230, 220, 180))
    seg = hd.seg.Segmentation([ct], bone[np.newaxis], hd.seg.SegmentationTypeValues.BINARY, [description],
                              pydicom.uid.generate_uid(), 2, pydicom.uid.generate_uid(), 1, "medverse", "tests", "1", "1")
    seg.save_as(folder / "seed-seg.dcm")
    out["-seg.dcm"] = (folder / "seed-seg.dcm").read_bytes()
    origin = np.array([float(v) for v in ct.ImagePositionPatient])
    row_step, col_step = (float(v) for v in ct.PixelSpacing)
    contours = [origin + np.column_stack([line[:, 1] * col_step, line[:, 0] * row_step, np.zeros(len(line))])
                for line in measure.find_contours(np.pad(bone, 1).astype(np.float32), 0.5)]
    planes = [contours, [c + [0.0, 0.0, 2.0] for c in contours]]  # the slice and a copy 2 mm above it
    out["-rtstruct.dcm"] = write_rtstruct(folder / "seed-rtstruct.dcm",
                                          [("bone", (230, 220, 180), planes[0] + planes[1])]).read_bytes()
    return out


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about each broken element it skips
@pytest.mark.parametrize("suffix", SEED_NAMES)
@pytest.mark.slow
@pytest.mark.latency
def test_fuzzed_real_files_load_validly_or_raise_asset_error(tmp_path: Path, seeds: dict[str, bytes],
                                                             suffix: str) -> None:
    """Each mutant either loads a twin that passes validation's fatal checks, or raises AssetError:
    never another exception, never a hang (each is timed)."""
    rng = np.random.default_rng(sum(map(ord, suffix)))
    path = tmp_path / f"mutant{suffix}"
    outcomes = {"loaded": 0, "refused": 0}
    slowest = 0.0
    for index in range(MUTANTS_PER_SEED):
        path.write_bytes(_mutate(seeds[suffix], rng))
        started = time.perf_counter()
        try:
            twin = load(path)
        except AssetError as exc:
            assert "\n" not in str(exc), f"mutant {index}: multi-line error"
            outcomes["refused"] += 1
        except BaseException as exc:  # the claim under test is "nothing else"
            pytest.fail(f"mutant {index} of {suffix} raised {type(exc).__name__}: {exc}")
        else:
            assert isinstance(twin, Twin) and twin.structures
            for structure in twin.structures:
                assert not [p for p in check(structure) if p.fatal], f"mutant {index} loaded an unusable mesh"
            outcomes["loaded"] += 1
        slowest = max(slowest, time.perf_counter() - started)
    print(f"{suffix}: {outcomes}, slowest {slowest * 1000:.1f} ms")
    assert sum(outcomes.values()) == MUTANTS_PER_SEED
    assert outcomes["refused"] > 0  # the mutator really breaks files
    assert slowest < 2.0, f"slowest mutant took {slowest:.2f} s"
