"""Hostile headers in the formats of issue 17 (NRRD, MetaImage, VTK, colour tables, DICOM SEG and
RTSTRUCT): each is refused within a second with a one-line AssetError naming the file, before any
allocation for what it declares and without reading outside the file's folder."""

from __future__ import annotations

import gzip
import os
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def _mha(sizes: str, data_file: str = "LOCAL", extra: str = "") -> bytes:
    return (f"ObjectType = Image\nNDims = 3\nDimSize = {sizes}\nElementSpacing = 1 1 1\n{extra}"
            f"ElementType = MET_SHORT\nElementDataFile = {data_file}\n").encode()


def _detached(suffix: str, target: str) -> bytes:
    """A NRRD (.nhdr) or MetaImage (.mhd) header whose data file is ``target``."""
    return _nrrd("2 2 2", f"data file: {target}\n") if suffix == ".nhdr" else _mha("2 2 2", target)


# ------------------------------------------------------------------------------------------- detached data


@pytest.mark.parametrize("suffix", [".nhdr", ".mhd"])
@pytest.mark.parametrize("target", ["../outside.raw", "/etc/passwd", "sub/../../outside.raw", "../../../../../../etc/passwd"])
def test_detached_data_file_outside_its_folder_is_refused(tmp_path: Path, suffix: str, target: str) -> None:
    folder = tmp_path / "scan"
    folder.mkdir()
    (tmp_path / "outside.raw").write_bytes(b"\0" * 16)
    path = folder / f"head{suffix}"
    path.write_bytes(_detached(suffix, target))
    _refused(path, UnreadableAssetError, "outside")


@pytest.mark.parametrize("suffix", [".nhdr", ".mhd"])
def test_detached_data_file_that_is_a_link_out_of_its_folder_is_refused(tmp_path: Path, suffix: str) -> None:
    folder = tmp_path / "scan"
    folder.mkdir()
    (tmp_path / "outside.raw").write_bytes(b"\0" * 16)
    os.symlink(tmp_path / "outside.raw", folder / "head.raw")
    path = folder / f"head{suffix}"
    path.write_bytes(_detached(suffix, "head.raw"))
    _refused(path, UnreadableAssetError, "outside")


# ------------------------------------------------------------------------------------------- headers

_VTK = b"# vtk DataFile Version 3.0\nsurface\n"
_BOMB = 64 << 20  # bytes of zeros behind each compression bomb (inflating stops after 2,000)


def _gzip_bomb() -> bytes:
    return _nrrd("10 10 10", encoding="gzip") + b"\n" + gzip.compress(b"\0" * _BOMB, 9)


def _zlib_bomb() -> bytes:
    bomb = zlib.compress(b"\0" * _BOMB, 9)
    return _mha("10 10 10", extra=f"CompressedData = True\nCompressedDataSize = {len(bomb)}\n") + bomb


#: A file name, its bytes (made when the test runs), the error and the words expected in it.
HOSTILE_HEADERS: dict[str, tuple[str, Callable[[], bytes], type[AssetError], str]] = {
    "nrrd-billion-voxels": ("huge.nrrd", lambda: _nrrd("100000 100000 100000") + b"\n" + b"\0" * 64,
                            ResourceLimitError, "voxels"),
    "nrrd-short-data": ("short.nrrd", lambda: _nrrd("64 64 64") + b"\n" + b"\0" * 1000, UnreadableAssetError, "needs"),
    "nhdr-list-of-files": ("head.nhdr", lambda: _nrrd("2 2 2", "data file: LIST\nslice0.raw\nslice1.raw\n"),
                           UnsupportedFormatError, "several files"),
    "nrrd-gzip-bomb": ("bomb.nrrd", _gzip_bomb, ResourceLimitError, "expands beyond"),
    "nrrd-malformed": ("bad.nrrd", lambda: b"NRRD0004\ntype: short\ndimension: 3\nsizes: 2 2\nencoding: raw\n\n" + b"\0" * 16,
                       UnreadableAssetError, "dimension"),
    "mha-billion-voxels": ("huge.mha", lambda: _mha("100000 100000 100000") + b"\0" * 64, ResourceLimitError, "voxels"),
    # metaimageio would build a list of a trillion file names from this line
    "mhd-pattern-of-a-trillion-files": ("head.mhd", lambda: _mha("2 2 2", "slice%03d.raw 0 1000000000000 1"),
                                        UnsupportedFormatError, "several files"),
    "mha-zlib-bomb": ("bomb.mha", _zlib_bomb, ResourceLimitError, "expands beyond"),
    "mha-short-data": ("short.mha", lambda: _mha("64 64 64") + b"\0" * 100, UnreadableAssetError, "needs"),
    "vtk-billions-of-points": ("huge.vtk", lambda: _VTK + b"ASCII\nDATASET POLYDATA\nPOINTS 4000000000 float\n0 0 0\n",
                               ResourceLimitError, "POINTS"),
    "vtk-billions-of-polygons": ("huge.vtk", lambda: _VTK + b"ASCII\nDATASET POLYDATA\nPOLYGONS 3000000000 12000000000\n",
                                 ResourceLimitError, "POLYGONS"),
    "vtk-strips-beyond-the-data": ("huge.vtk", lambda: _VTK + b"ASCII\nDATASET POLYDATA\nPOINTS 3 float\n0 0 0 1 0 0 0 1 0\n"
                                   b"TRIANGLE_STRIPS 900000000 900000000\n", ResourceLimitError, "TRIANGLE_STRIPS"),
    "vtk-short-points": ("short.vtk", lambda: _VTK + b"BINARY\nDATASET POLYDATA\nPOINTS 1000000 float\n" + b"\0" * 64,
                         UnreadableAssetError, "needs"),
    "vtk-not-polydata": ("grid.vtk", lambda: _VTK + b"ASCII\nDATASET STRUCTURED_POINTS\nDIMENSIONS 2 2 2\n",
                         UnsupportedFormatError, "POLYDATA"),
    "vtp-billions-of-points": ("huge.vtp", lambda: b'<?xml version="1.0"?><VTKFile type="PolyData" version="0.1">'
                               b'<PolyData><Piece NumberOfPoints="3000000000" NumberOfPolys="1"></Piece></PolyData></VTKFile>',
                               ResourceLimitError, "NumberOfPoints"),
    "vtp-malformed": ("bad.vtp", lambda: b'<?xml version="1.0"?><VTKFile type="PolyData" version="0.1"><PolyData><Piece '
                      b'NumberOfPoints="3" NumberOfPolys="1"><Points><DataArray type="Float32" NumberOfComponents="3" '
                      b'format="ascii">0 0 0 1</DataArray></Points><Polys>', UnreadableAssetError, "VTK cannot read it"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_HEADERS))
def test_hostile_header_is_refused_before_allocating(tmp_path: Path, case: str) -> None:
    """Huge declared sizes, data shorter than declared, compression bombs, several data files, other
    dataset kinds and malformed headers in NRRD, MetaImage and VTK: each refused in one line, in time."""
    name, make, error, words = HOSTILE_HEADERS[case]
    path = tmp_path / name
    path.write_bytes(make())
    _refused(path, error, words)


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


@pytest.fixture
def seg_header(dicom_object: Callable[[str, str], Any], tmp_path: Path) -> Callable[[int, int, int, int], Path]:
    """``write(rows, columns, frames, pixel_bytes)``: a DICOM SEG header declaring those sizes."""

    def write(rows: int, columns: int, frames: int, pixel_bytes: int) -> Path:
        ds = dicom_object("1.2.840.10008.5.1.4.1.1.66.4", "SEG")
        ds.Rows, ds.Columns, ds.NumberOfFrames, ds.BitsAllocated = rows, columns, frames, 1
        ds.PixelData = b"\0" * pixel_bytes
        path = tmp_path / "seg.dcm"
        ds.save_as(path, enforce_file_format=True)
        return path

    return write


def test_dicom_seg_declaring_huge_frames_is_refused(seg_header: Callable[[int, int, int, int], Path]) -> None:
    _refused(seg_header(60000, 60000, 5000, 64), ResourceLimitError, "voxels")


def test_dicom_seg_with_fewer_bytes_than_its_frames_need_is_refused(seg_header: Callable[[int, int, int, int], Path]
                                                                     ) -> None:
    _refused(seg_header(512, 512, 40, 64), UnreadableAssetError, "needs")


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


# ------------------------------------------------------------------------------------------- missing libraries


@pytest.mark.parametrize(("name", "module", "package"), [("head.nrrd", "nrrd", "pynrrd"),
                                                         ("head.mha", "metaimageio", "metaimageio"),
                                                         ("cortex.vtk", "vtkmodules", "vtk"),
                                                         ("seg.dcm", "highdicom", "highdicom")])
def test_a_missing_reader_library_is_named_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       seg_header: Callable[[int, int, int, int], Path],
                                                       name: str, module: str, package: str) -> None:
    """Each format's library is imported when its format is read; without it, that format alone is
    refused with the package to install (None in sys.modules makes its import fail, as if absent)."""
    files = {"head.nrrd": lambda: _nrrd("2 2 2") + b"\n" + b"\0" * 16, "head.mha": lambda: _mha("2 2 2") + b"\0" * 16,
             "cortex.vtk": lambda: _VTK + b"ASCII\nDATASET POLYDATA\nPOINTS 3 float\n0 0 0 9 0 0 0 9 0\nPOLYGONS 1 4\n3 0 1 2\n"}
    path = seg_header(2, 2, 1, 1) if name == "seg.dcm" else tmp_path / name
    if name in files:
        path.write_bytes(files[name]())
    monkeypatch.setitem(sys.modules, module, None)
    _refused(path, UnsupportedFormatError, f"pip install {package}")
