"""The imaging formats of issue 17, each written by its own library (or, where Slicer's own code is
the only writer, with the header fields Slicer writes) from real data, then imported: NRRD and Slicer
segmentations, MetaImage, VTK polydata, label maps with colour tables, DICOM SEG and RTSTRUCT.

Real data: the CT head in Debian's invesalius-examples (``Cranium.inv3``), the AAL atlas in Debian's
mricron-data, and pydicom's test files. Bounds are checked in mm against the voxels they come from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from assets.loaders import detect_format, load
from assets.loaders.inv3 import read_inv3
from assets.skull import SOURCE
from assets.twin import Twin
from assets.validate import check

#: The bone threshold InVesalius used on this CT (HU).
BONE_HU = 226.0
#: Rows of the CT crop: the lower 40 slices (maxilla, teeth, rami), rows and columns trimmed to the head.
CROP = (slice(0, 40), slice(40, 200), slice(40, 220))


def _shifted(affine: np.ndarray, start: tuple[int, int, int]) -> np.ndarray:
    """The affine of a crop that starts at voxel ``start``."""
    out = affine.copy()
    out[:3, 3] = affine[:3, :3] @ np.asarray(start, dtype=np.float64) + affine[:3, 3]
    return out


def _box_mm(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(2, 3) min and max corners (mm) of the centres of the voxels in ``mask``, through ``affine``."""
    index = np.argwhere(mask).astype(np.float64)
    points = index @ affine[:3, :3].T + affine[:3, 3]
    return np.array([points.min(axis=0), points.max(axis=0)])


def _assert_bounds_near(actual_mm: np.ndarray, expected_mm: np.ndarray, tolerance_mm: float) -> None:
    """A surface around voxel centres lies at most about one voxel outside their box, never inside by more."""
    assert np.all(np.abs(actual_mm - expected_mm) <= tolerance_mm), f"{actual_mm} vs {expected_mm}"


@pytest.fixture(scope="module")
def ct() -> tuple[np.ndarray, np.ndarray]:
    """(int16 HU voxels, RAS affine mm) of a real CT head crop: 40 x 160 x 180 voxels."""
    volume = read_inv3(SOURCE)
    data = volume.data[CROP].astype(np.int16)
    return data, _shifted(volume.affine, (CROP[0].start, CROP[1].start, CROP[2].start))


def _bone_twin_matches(twin: Twin, ct: tuple[np.ndarray, np.ndarray]) -> None:
    data, affine = ct
    assert twin.source_units == "mm" and twin.provenance["threshold"] == BONE_HU
    _assert_bounds_near(twin.bounds() * 1000.0, _box_mm(data >= BONE_HU, affine), 1.6)


# ------------------------------------------------------------------------------------------- NRRD


def _nrrd_header(affine_ras: np.ndarray, space: str) -> dict[str, object]:
    to_space = np.diag([-1.0, -1.0, 1.0, 1.0]) if space == "left-posterior-superior" else np.eye(4)
    spaced = to_space @ affine_ras
    return {"space": space, "space directions": spaced[:3, :3].T, "space origin": spaced[:3, 3]}


@pytest.mark.parametrize("space", ["left-posterior-superior", "right-anterior-superior"])
def test_nrrd_ct_lands_in_ras_from_either_space(tmp_path: Path, ct: tuple[np.ndarray, np.ndarray], space: str) -> None:
    """The CT head written by pynrrd in LPS (as ITK writes) and in RAS (as Slicer 5 writes), gzip:
    the bone surface's bounds match the bone voxels' RAS box in mm either way."""
    import nrrd

    data, affine = ct
    path = tmp_path / "head.nrrd"
    nrrd.write(str(path), data, {**_nrrd_header(affine, space), "encoding": "gzip"})
    assert detect_format(path) == "nrrd"
    twin = load(path, threshold=BONE_HU)
    _bone_twin_matches(twin, ct)
    assert all(not [p for p in check(s) if p.fatal] for s in twin.structures)


def test_nhdr_reads_its_detached_raw_data(tmp_path: Path, ct: tuple[np.ndarray, np.ndarray]) -> None:
    """A detached header (``.nhdr``) beside its raw data file, as Slicer and teem write it."""
    import nrrd

    data, affine = ct
    path = tmp_path / "head.nhdr"
    nrrd.write(str(path), data, {**_nrrd_header(affine, "left-posterior-superior"), "encoding": "raw"})
    assert (tmp_path / "head.raw").exists() and "data file: head.raw" in path.read_text()
    twin = load(path, threshold=BONE_HU)
    _bone_twin_matches(twin, ct)


