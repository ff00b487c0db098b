"""Hostile headers in the formats of issue 17 (NRRD, MetaImage, VTK, colour tables, DICOM SEG and
RTSTRUCT): each is refused within a second with a one-line AssetError naming the file, before any
allocation for what it declares and without reading outside the file's folder."""

from __future__ import annotations

import gzip
import os
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from assets.errors import AssetError, ResourceLimitError, UnreadableAssetError, UnsupportedFormatError
from assets.loaders import load

#: Every bad file must be refused within this many seconds.
DEADLINE_S = 1.0


def _refused(path: Path, error: type[AssetError] = AssetError, match: str | None = None, *, named: Path | None = None,
             **options: object) -> AssetError:
    """Load ``path`` and expect ``error``, within the deadline, in one line naming ``named`` (default ``path``)."""
    started = time.perf_counter()
    with pytest.raises(error, match=match) as info:
        load(path, **options)  # type: ignore[arg-type]
    assert time.perf_counter() - started < DEADLINE_S
    message = str(info.value)
    assert "\n" not in message and str(named or path) in message  # one line, naming the file
    return info.value


def _nrrd(sizes: str, extra: str = "", encoding: str = "raw", kind: str = "short") -> bytes:
    return (f"NRRD0004\ntype: {kind}\ndimension: 3\nspace: left-posterior-superior\nsizes: {sizes}\n"
            f"space directions: (1,0,0) (0,1,0) (0,0,1)\nendian: little\nencoding: {encoding}\n"
            f"space origin: (0,0,0)\n{extra}").encode()


# ------------------------------------------------------------------------------------------- NRRD


def test_nrrd_declaring_a_billion_voxels_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.nrrd"
    path.write_bytes(_nrrd("100000 100000 100000") + b"\n" + b"\0" * 64)
    _refused(path, ResourceLimitError, "voxels")


def test_nrrd_with_less_data_than_it_declares_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "short.nrrd"
    path.write_bytes(_nrrd("64 64 64") + b"\n" + b"\0" * 1000)
    _refused(path, UnreadableAssetError, "needs")


@pytest.mark.parametrize("target", ["../outside.raw", "/etc/passwd", "sub/../../outside.raw"])
def test_nhdr_data_file_outside_its_folder_is_refused(tmp_path: Path, target: str) -> None:
    folder = tmp_path / "scan"
    folder.mkdir()
    (tmp_path / "outside.raw").write_bytes(b"\0" * 2 * 8)
    path = folder / "head.nhdr"
    path.write_bytes(_nrrd("2 2 2", f"data file: {target}\n"))
    _refused(path, UnreadableAssetError, "outside")


def test_nhdr_data_file_that_is_a_link_out_of_its_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "scan"
    folder.mkdir()
    (tmp_path / "outside.raw").write_bytes(b"\0" * 2 * 8)
    os.symlink(tmp_path / "outside.raw", folder / "head.raw")
    path = folder / "head.nhdr"
    path.write_bytes(_nrrd("2 2 2", "data file: head.raw\n"))
    _refused(path, UnreadableAssetError, "outside")


def test_nhdr_with_a_list_of_data_files_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "head.nhdr"
    path.write_bytes(_nrrd("2 2 2", "data file: LIST\nslice0.raw\nslice1.raw\n"))
    _refused(path, UnsupportedFormatError, "several files")


def test_nrrd_gzip_bomb_stops_at_the_declared_size(tmp_path: Path) -> None:
    """A 10x10x10 volume whose gzip data inflates to 64 MiB: inflation stops after 2,000 bytes."""
    path = tmp_path / "bomb.nrrd"
    path.write_bytes(_nrrd("10 10 10", encoding="gzip") + b"\n" + gzip.compress(b"\0" * (64 << 20), 9))
    _refused(path, ResourceLimitError, "expands beyond")


def test_nrrd_with_a_malformed_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.nrrd"
    path.write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nsizes: 2 2\nencoding: raw\n\n" + b"\0" * 16)
    _refused(path, UnreadableAssetError)


# ------------------------------------------------------------------------------------------- MetaImage


def _mha(sizes: str, data_file: str = "LOCAL", extra: str = "") -> bytes:
    return (f"ObjectType = Image\nNDims = 3\nDimSize = {sizes}\nElementSpacing = 1 1 1\n{extra}"
            f"ElementType = MET_SHORT\nElementDataFile = {data_file}\n").encode()


def test_metaimage_declaring_a_billion_voxels_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.mha"
    path.write_bytes(_mha("100000 100000 100000") + b"\0" * 64)
    _refused(path, ResourceLimitError, "voxels")


@pytest.mark.parametrize("target", ["../outside.raw", "/etc/passwd", "../../../../../../etc/passwd"])
def test_metaimage_element_data_file_outside_its_folder_is_refused(tmp_path: Path, target: str) -> None:
    folder = tmp_path / "scan"
    folder.mkdir()
    (tmp_path / "outside.raw").write_bytes(b"\0" * 16)
    path = folder / "head.mhd"
    path.write_bytes(_mha("2 2 2", target))
    _refused(path, UnreadableAssetError, "outside")


def test_metaimage_file_pattern_with_a_huge_range_is_refused(tmp_path: Path) -> None:
    """metaimageio would build a list of a trillion file names from this line."""
    path = tmp_path / "head.mhd"
    path.write_bytes(_mha("2 2 2", "slice%03d.raw 0 1000000000000 1"))
    _refused(path, UnsupportedFormatError, "several files")


def test_metaimage_compressed_bomb_is_refused(tmp_path: Path) -> None:
    bomb = zlib.compress(b"\0" * (64 << 20), 9)
    path = tmp_path / "bomb.mha"
    path.write_bytes(_mha("10 10 10", extra=f"CompressedData = True\nCompressedDataSize = {len(bomb)}\n") + bomb)
    _refused(path, ResourceLimitError, "expands beyond")


def test_metaimage_with_less_data_than_it_declares_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "short.mha"
    path.write_bytes(_mha("64 64 64") + b"\0" * 100)
    _refused(path, UnreadableAssetError, "needs")


# ------------------------------------------------------------------------------------------- VTK


@pytest.mark.parametrize("line", ["POINTS 4000000000 float", "POLYGONS 3000000000 12000000000",
                                  "POINTS 3 float\n0 0 0 1 0 0 0 1 0\nTRIANGLE_STRIPS 900000000 900000000"])
def test_legacy_vtk_declaring_huge_counts_is_refused(tmp_path: Path, line: str) -> None:
    path = tmp_path / "huge.vtk"
    path.write_bytes(f"# vtk DataFile Version 3.0\nsurface\nASCII\nDATASET POLYDATA\n{line}\n0 0 0\n".encode())
    _refused(path, ResourceLimitError)


def test_legacy_vtk_declaring_more_points_than_it_holds_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "short.vtk"
    path.write_bytes(b"# vtk DataFile Version 3.0\nsurface\nBINARY\nDATASET POLYDATA\nPOINTS 1000000 float\n" + b"\0" * 64)
    _refused(path, UnreadableAssetError, "needs")


def test_xml_vtp_declaring_huge_counts_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.vtp"
    path.write_bytes(b'<?xml version="1.0"?><VTKFile type="PolyData" version="0.1" byte_order="LittleEndian">'
                     b'<PolyData><Piece NumberOfPoints="3000000000" NumberOfPolys="1"></Piece></PolyData></VTKFile>')
    _refused(path, ResourceLimitError)


def test_vtk_of_another_dataset_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "grid.vtk"
    path.write_bytes(b"# vtk DataFile Version 3.0\ngrid\nASCII\nDATASET STRUCTURED_POINTS\nDIMENSIONS 2 2 2\n")
    _refused(path, UnsupportedFormatError, "POLYDATA")


def test_malformed_vtp_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.vtp"
    path.write_bytes(b'<?xml version="1.0"?><VTKFile type="PolyData" version="0.1"><PolyData><Piece NumberOfPoints="3" '
                     b'NumberOfPolys="1"><Points><DataArray type="Float32" NumberOfComponents="3" format="ascii">0 0 0 1'
                     b'</DataArray></Points><Polys>')
    _refused(path)


# ------------------------------------------------------------------------------------------- colour tables


@pytest.fixture
def label_map(tmp_path: Path) -> Path:
    import nibabel as nib
    import numpy as np

    labels = np.zeros((12, 12, 12), dtype=np.int16)
    labels[3:9, 3:9, 3:9] = 7
    path = tmp_path / "labels.nii.gz"
    nib.save(nib.Nifti1Image(labels, np.eye(4)), path)
    return path


def test_colour_table_with_a_malformed_line_is_refused_naming_the_line(tmp_path: Path, label_map: Path) -> None:
    table = tmp_path / "bad.ctbl"
    table.write_text("0 Background 0 0 0 0\n7 Liver 200 100\n")
    _refused(label_map, UnreadableAssetError, "line 2", named=table, labels=table)


def test_colour_table_with_too_many_labels_is_refused(tmp_path: Path, label_map: Path) -> None:
    table = tmp_path / "huge.txt"
    table.write_text("".join(f"{v} L{v} 1 2 3 0\n" for v in range(5000)))
    _refused(label_map, ResourceLimitError, "labels", named=table, labels=table)


def test_colour_table_for_a_mesh_is_refused(tmp_path: Path) -> None:
    mesh = tmp_path / "mesh.ply"
    mesh.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
                     b"element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n10 0 0\n0 10 0\n3 0 1 2\n")
    table = tmp_path / "t.ctbl"
    table.write_text("1 One 1 2 3 255\n")
    _refused(mesh, UnsupportedFormatError, "label-map volume", labels=table)


def test_a_volume_of_fractions_is_not_a_label_map(tmp_path: Path) -> None:
    import nibabel as nib
    import numpy as np

    path = tmp_path / "t1.nii.gz"
    nib.save(nib.Nifti1Image(np.linspace(0, 1, 1000, dtype=np.float32).reshape(10, 10, 10), np.eye(4)), path)
    table = tmp_path / "t.ctbl"
    table.write_text("1 One 1 2 3 255\n")
    _refused(path, UnreadableAssetError, "not a label map", labels=table)


# ------------------------------------------------------------------------------------------- DICOM SEG


def _seg_header(path: Path, rows: int, columns: int, frames: int, pixel_bytes: int) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "SEG"
    ds.Rows, ds.Columns, ds.NumberOfFrames, ds.BitsAllocated = rows, columns, frames, 1
    ds.PixelData = b"\0" * pixel_bytes
    ds.save_as(path, enforce_file_format=True)
    return path


def test_dicom_seg_declaring_huge_frames_is_refused(tmp_path: Path) -> None:
    _refused(_seg_header(tmp_path / "huge.dcm", 60000, 60000, 5000, 64), ResourceLimitError, "voxels")


def test_dicom_seg_with_fewer_bytes_than_its_frames_need_is_refused(tmp_path: Path) -> None:
    _refused(_seg_header(tmp_path / "short.dcm", 512, 512, 40, 64), UnreadableAssetError, "needs")


# ------------------------------------------------------------------------------------------- RTSTRUCT


def test_rtstruct_declaring_billions_of_points_is_refused(tmp_path: Path, write_rtstruct: Callable[..., Path]) -> None:
    triangle = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0]], dtype=float)
    path = write_rtstruct(tmp_path / "huge.dcm", [("target", (255, 0, 0), [triangle])], declared=2_000_000_000)
    _refused(path, ResourceLimitError, "contour points")


def test_rtstruct_contour_spanning_kilometres_is_refused_before_filling(tmp_path: Path,
                                                                       write_rtstruct: Callable[..., Path]) -> None:
    """A triangle a kilometre across is not anatomy (and would need a grid of 10^12 cells at 1 mm)."""
    vast = np.array([[0, 0, 0], [1e6, 0, 0], [0, 1e6, 0]])
    path = write_rtstruct(tmp_path / "vast.dcm", [("target", (255, 0, 0), [vast, vast + [0, 0, 5]])])
    _refused(path, UnreadableAssetError, "span")
