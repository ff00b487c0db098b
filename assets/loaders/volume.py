"""Volumes (NIfTI files, DICOM series) to surfaces by marching cubes, in patient/scanner millimetres.

Coordinates follow RAS+ (the NIfTI convention): NIfTI voxels go through the image affine (sform or
qform, as nibabel chooses); DICOM voxels through ImagePositionPatient, ImageOrientationPatient,
PixelSpacing and the slice positions along the slice normal, then from DICOM's LPS to RAS. CT values
are Hounsfield units (RescaleSlope/RescaleIntercept applied per slice), so a threshold for CT is in HU.
The volume is padded by one voxel below the threshold, so every surface is closed. Sizes (voxels,
bytes behind the header) are checked before any array is allocated.
"""

from __future__ import annotations

import io
import logging
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assets.errors import EmptyMeshError, UnreadableAssetError, UnsupportedFormatError
from assets.loaders.limits import DEFAULT_LIMITS, Limits, check_count, check_fits, read_source

log = logging.getLogger(__name__)

#: Default CT threshold, HU: cortical and trabecular bone (soft tissue stays below about 100 HU).
CT_BONE_HU = 300.0

_NIFTI_UNITS = {"mm": "mm", "meter": "m", "micron": "um"}


@dataclass
class Volume:
    """A scalar volume and where its voxels are.

    ``data``: (I, J, K) float32 values (HU for CT). ``affine``: (4, 4) voxel index -> RAS+ coordinates
    in ``units``. ``units``: ``None`` when the file does not say. ``metadata``: de-identified DICOM
    attributes. ``notes``: what the reader assumed, for provenance. ``beside``: the SEG and RTSTRUCT
    files of a DICOM folder (kind, path), and ``frame_of_reference`` the series' FrameOfReferenceUID
    ("" when not stated), for ``assets.loaders.formats.structures_beside``.
    """

    data: np.ndarray
    affine: np.ndarray
    units: str | None
    modality: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    beside: list[tuple[str, Path]] = field(default_factory=list)
    frame_of_reference: str = ""


def looks_like_ct(data: np.ndarray) -> bool:
    """True when values read as Hounsfield units: air (at most -900 HU) in at least 1% of the voxels,
    nothing below the -3,100 HU that scanners pad with, and bone (300 HU or more) present. MR and PET
    intensities are not negative; a CT saved as NIfTI or NRRD keeps its HU but loses its modality."""
    step = max(1, data.size // 2_000_000)
    sample = data.reshape(-1)[::step]
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return False
    low, high = float(sample.min()), float(sample.max())
    return low >= -3100.0 and high >= CT_BONE_HU and float((sample <= -900.0).mean()) >= 0.01


def detect_modality(volume: Volume) -> None:
    """Name a volume without a stated modality CT when its values are Hounsfield units (noted)."""
    if not volume.modality and looks_like_ct(volume.data):
        volume.modality = "CT"
        volume.notes.append("CT detected from the Hounsfield range of the values (air at -1000 HU, bone)")


def default_threshold(volume: Volume, source: str | Path | None = None) -> float:
    """``CT_BONE_HU`` for CT (stated, or detected by ``detect_modality``), else Otsu's threshold of the
    non-background voxels (MR and the rest)."""
    if volume.modality == "CT":
        return CT_BONE_HU
    from skimage.filters import threshold_otsu  # noqa: PLC0415 - scikit-image only for volumes

    values = volume.data[volume.data > volume.data.min()]
    if values.size < 2:
        raise EmptyMeshError(source, "the volume is constant: no surface to extract")
    if values.size > 2_000_000:  # Otsu on a seeded sample: same threshold, a fraction of the time
        values = np.random.default_rng(0).choice(values, 2_000_000, replace=False)
    return float(threshold_otsu(values))


def effective_level(data: np.ndarray, level: float) -> float:
    """The iso-value marching cubes is given for a threshold of ``level``: ``level`` itself unless
    some voxel equals it exactly, then half-way down to the next value present below it.

    Why: a voxel exactly at the iso-value puts a surface vertex exactly on that grid point, once for
    every cube edge that meets there. Those vertices coincide: the degenerate triangles between them
    are dropped (holes), and merging the coincident vertices, as import's repair does, joins sheets
    that only touch there into edges shared by more than two faces. On integer data (CT in HU, label
    maps) every whole-number threshold hits such voxels, so ``--threshold 226`` failed where 226.5
    passed. Moving the level into the gap below classifies every voxel as before, counting voxels
    at the threshold as inside (values >= threshold, as InVesalius and other CT tools count them),
    and leaves no vertex on a grid point; the surface moves by at most half a grey level.
    """
    value = float(level)
    hits = (data == value) | (data == np.float32(value))
    if not hits.any():
        return value
    below = data[data < value]
    if below.size == 0:  # nothing below: no surface either way; the caller's range check reports it
        return value
    shifted = (value + float(below.max())) / 2.0
    log.debug("threshold %g equals some voxels' values: marching cubes at %g", value, shifted)
    return shifted


def surface(volume: Volume, level: float, source: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Marching-cubes surface of ``volume`` at ``level``: (N, 3) float64 vertices in the volume's
    units, (M, 3) int64 faces wound with normals pointing away from values above ``level``.

    Voxels equal to ``level`` count as inside (see ``effective_level``)."""
    from skimage.measure import marching_cubes  # noqa: PLC0415 - scikit-image only for volumes

    data = volume.data
    low, high = float(np.nanmin(data)), float(np.nanmax(data))
    if not (np.isfinite(level) and low < level <= high):
        raise EmptyMeshError(source, f"threshold {level:g} is outside the volume's values "
                             f"({low:g} to {high:g}): no surface")
    filled = np.nan_to_num(data, nan=low)
    iso = effective_level(filled, level)
    padded = np.pad(filled, 1, constant_values=low - 1.0)
    vertices, faces, _, _ = marching_cubes(padded, level=iso, allow_degenerate=False)
    vertices = vertices.astype(np.float64) - 1.0
    linear, offset = volume.affine[:3, :3], volume.affine[:3, 3]
    vertices = vertices @ linear.T + offset
    faces = faces.astype(np.int64)
    # scikit-image's winding (right-hand rule) makes normals point towards higher values in index
    # space, i.e. into the bright object: reverse it, unless the affine mirrors (negative determinant),
    # which turns it inside out already.
    if np.linalg.det(linear) > 0:
        faces = faces[:, ::-1]
    return vertices, faces


# ------------------------------------------------------------------------------------------- NIfTI


def read_nifti(path: Path, limits: Limits = DEFAULT_LIMITS) -> Volume:
    """A NIfTI-1 or NIfTI-2 single-file volume (.nii or .nii.gz); the first volume of 4-D data."""
    import nibabel as nib  # noqa: PLC0415 - nibabel only for NIfTI files

    data = read_source(path, limits)
    if len(data) < 348:
        raise UnreadableAssetError(path, f"is {len(data)} bytes, shorter than a NIfTI header")
    sizes = {struct.unpack("<i", data[:4])[0], struct.unpack(">i", data[:4])[0]}
    klass = nib.Nifti1Image if 348 in sizes else nib.Nifti2Image if 540 in sizes else None
    if klass is None:
        raise UnreadableAssetError(path, "is not NIfTI (header size is neither 348 nor 540)")
    header = klass.header_class.from_fileobj(io.BytesIO(data), check=False)
    if header.get("magic", b"").tobytes()[:3] not in (b"n+1", b"n+2"):
        raise UnsupportedFormatError(path, "is not a single-file NIfTI (.nii); header/image pairs are not supported")
    shape = tuple(int(d) for d in header.get_data_shape())
    if len(shape) < 3 or any(d <= 0 for d in shape[:3]):
        raise UnreadableAssetError(path, f"has shape {shape}, not a 3-D volume")
    voxels = shape[0] * shape[1] * shape[2]
    check_count(path, "voxels", voxels, limits.max_voxels)
    total = voxels * int(np.prod(shape[3:], dtype=object)) if len(shape) > 3 else voxels
    offset = int(header.get_data_offset())
    check_fits(path, f"NIfTI image of shape {shape}", offset + total * header.get_data_dtype().itemsize, len(data))
    image = klass.from_bytes(data)
    proxy = image.dataobj
    values = proxy[(...,) + (0,) * (len(shape) - 3)] if len(shape) > 3 else proxy[...]
    values = np.asarray(values, dtype=np.float32)
    affine = np.asarray(image.affine, dtype=np.float64)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise UnreadableAssetError(path, "NIfTI affine is singular or not finite")
    space = header.get_xyzt_units()[0]
    notes = [f"first of {int(np.prod(shape[3:]))} volumes"] if len(shape) > 3 else []
    return Volume(values, affine, _NIFTI_UNITS.get(space), notes=notes)


# ------------------------------------------------------------------------------------------- DICOM


def _floats(ds: Any, keyword: str, n: int) -> np.ndarray | None:
    """``n`` finite floats from a DICOM attribute, or None when absent or malformed."""
    value = ds.get(keyword)
    if value is None:
        return None
    items = list(value) if hasattr(value, "__len__") and not isinstance(value, (str, bytes)) else [value]
    try:
        array = np.array([float(v) for v in items], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return array if array.shape == (n,) and np.isfinite(array).all() else None


#: DICOM objects that are not images but hold structures, by Modality: their own readers take them
#: (``assets.loaders.formats``: by themselves, or beside a series in its folder).
_STRUCTURE_OBJECTS = {"SEG": "DICOM SEG", "RTSTRUCT": "RTSTRUCT"}


class _StructureObjectError(UnreadableAssetError):
    """A SEG or RTSTRUCT object where images were read: ``kind`` says which."""

    def __init__(self, source: Path, kind: str) -> None:
        super().__init__(source, f"is a {kind} object, not an image")
        self.kind = kind


def _read_dicom(data: bytes, source: Path) -> Any:
    import pydicom  # noqa: PLC0415 - pydicom only for DICOM files

    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    kind = _STRUCTURE_OBJECTS.get(str(ds.get("Modality", "")).upper())
    if kind is not None:
        raise _StructureObjectError(source, kind)
    if "PixelData" not in ds or "Rows" not in ds or "Columns" not in ds:
        raise UnreadableAssetError(source, "is not a DICOM image (no pixel data)")
    return ds


def _slice_geometry(ds: Any, source: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(row direction, column direction, pixel spacing row/col, notes) of one slice, with defaults noted."""
    notes = []
    orientation = _floats(ds, "ImageOrientationPatient", 6)
    if orientation is None:
        orientation = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
        notes.append("no ImageOrientationPatient: axial assumed")
    spacing = _floats(ds, "PixelSpacing", 2)
    if spacing is None or (spacing <= 0).any():
        spacing = np.array([1.0, 1.0])
        notes.append("no PixelSpacing: 1 mm assumed")
    row, col = orientation[:3], orientation[3:]
    if abs(np.linalg.norm(row) - 1) > 0.01 or abs(np.linalg.norm(col) - 1) > 0.01 or abs(row @ col) > 0.01:
        raise UnreadableAssetError(source, "ImageOrientationPatient is not two orthonormal directions")
    return row, col, spacing, notes


def _pixels(ds: Any, source: Path, limits: Limits) -> np.ndarray:
    """(frames, rows, cols) float32 values with the modality rescale applied (HU for CT)."""
    rows, cols = int(ds.Rows), int(ds.Columns)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    check_count(source, "voxels", rows * cols * frames, limits.max_voxels)
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise UnsupportedFormatError(source, "is a colour image; only greyscale volumes become surfaces")
    bits = int(ds.get("BitsAllocated", 16) or 16)
    if bits not in (8, 16, 32, 64):
        raise UnreadableAssetError(source, f"BitsAllocated {bits} is not supported")
    if not ds.file_meta.get("TransferSyntaxUID", None) or not ds.file_meta.TransferSyntaxUID.is_compressed:
        check_fits(source, "pixel data", rows * cols * frames * bits // 8, len(ds.PixelData))
    pixels = np.asarray(ds.pixel_array, dtype=np.float32).reshape(frames, rows, cols)
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    return pixels * np.float32(slope) + np.float32(intercept)


def read_dicom(path: Path, limits: Limits = DEFAULT_LIMITS) -> Volume:
    """A DICOM series: a directory of single-frame files, one multi-frame file or one slice.

    Slices of the largest series (by SeriesInstanceUID) are ordered by their position along the slice
    normal; the slice spacing is the median of the gaps. A single slice becomes a slab one
    SliceThickness deep. The first slice's metadata is de-identified (``assets.deid``) before any of
    it travels with the twin.
    """
    from assets import deid  # noqa: PLC0415 - de-identification only for DICOM series

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        check_count(path, "files in the DICOM folder", len(files), limits.max_dicom_files)
        datasets = []
        beside: list[tuple[str, Path]] = []  # SEG and RTSTRUCT objects beside the images
        for file in files:
            try:
                datasets.append((file, _read_dicom(read_source(file, limits, decompress=False), file)))
            except _StructureObjectError as exc:
                beside.append((exc.kind, file))
            except UnreadableAssetError as exc:
                log.info("skipping %s: %s", file, exc.message)
            except Exception as exc:  # a foreign file in the folder is skipped, not fatal
                log.info("skipping %s: %s", file, exc)
        if not datasets:
            raise UnreadableAssetError(path, "holds no readable DICOM images")
    else:
        beside = []
        datasets = [(path, _read_dicom(read_source(path, limits, decompress=False), path))]

    series: dict[str, list[tuple[Path, Any]]] = {}
    for file, ds in datasets:
        series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((file, ds))
    chosen = max(series.values(), key=len)
    notes = []
    if len(series) > 1:
        notes.append(f"{len(series)} series found, the largest ({len(chosen)} files) used")
    first_file, first = chosen[0]
    row, col, spacing, geometry_notes = _slice_geometry(first, first_file)
    notes += geometry_notes
    normal = np.cross(row, col)
    shape = (int(first.Rows), int(first.Columns))
    check_count(path, "voxels", shape[0] * shape[1] * sum(int(ds.get("NumberOfFrames", 1) or 1) for _, ds in chosen),
                limits.max_voxels)

    if len(chosen) == 1 and int(first.get("NumberOfFrames", 1) or 1) > 1:
        stack = _pixels(first, first_file, limits)
        origin, step = _multiframe_positions(first, normal, stack.shape[0], notes)
    else:
        slices = []
        for file, ds in chosen:
            if (int(ds.Rows), int(ds.Columns)) != shape:
                raise UnreadableAssetError(file, f"slice is {ds.Rows}x{ds.Columns}, the series is {shape[0]}x{shape[1]}")
            position = _floats(ds, "ImagePositionPatient", 3)
            if position is None:
                if len(chosen) > 1:
                    raise UnreadableAssetError(file, "has no ImagePositionPatient: slices cannot be ordered")
                position = np.zeros(3)
                notes.append("no ImagePositionPatient: origin assumed")
            slices.append((float(position @ normal), position, file, ds))
        slices.sort(key=lambda item: item[0])
        stack = np.concatenate([_pixels(ds, file, limits) for _, _, file, ds in slices])
        if stack.shape[0] != len(slices):
            raise UnsupportedFormatError(path, "mixes multi-frame and single-frame files")
        origin = slices[0][1]
        if len(slices) > 1:
            gaps = np.diff([s[0] for s in slices])
            if (gaps < 1e-3).any():
                raise UnreadableAssetError(path, "two slices share the same position")
            step = float(np.median(gaps))
            if gaps.max() > 1.1 * gaps.min():
                notes.append(f"irregular slice spacing ({gaps.min():.3g} to {gaps.max():.3g} mm), median {step:.3g} mm used")
        else:
            step = _slab_depth(first, notes)

    # Index (k, r, c) -> LPS: origin + k*step*normal + r*row_spacing*col_dir + c*col_spacing*row_dir.
    lps = np.eye(4)
    lps[:3, 0] = normal * step
    lps[:3, 1] = col * spacing[0]
    lps[:3, 2] = row * spacing[1]
    lps[:3, 3] = origin
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # LPS -> RAS

    modality = str(first.get("Modality", "") or "")
    frame_of_reference = str(first.get("FrameOfReferenceUID", "") or "")
    deid.deidentify(first)
    metadata = deid.twin_metadata(first)
    return Volume(stack, affine, "mm", modality=modality, metadata=metadata, notes=notes, beside=beside,
                  frame_of_reference=frame_of_reference)


def _slab_depth(ds: Any, notes: list[str]) -> float:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = _floats(ds, keyword, 1)
        if value is not None and value[0] > 0:
            notes.append(f"single slice: a slab {value[0]:g} mm deep ({keyword})")
            return float(value[0])
    notes.append("single slice without SliceThickness: a slab 1 mm deep")
    return 1.0


def _multiframe_positions(ds: Any, normal: np.ndarray, frames: int, notes: list[str]) -> tuple[np.ndarray, float]:
    """Origin and slice step of a multi-frame image, from per-frame positions when present."""
    positions = []
    for item in ds.get("PerFrameFunctionalGroupsSequence", []) or []:
        planes = item.get("PlanePositionSequence")
        position = _floats(planes[0], "ImagePositionPatient", 3) if planes else None
        if position is not None:
            positions.append(position)
    if len(positions) == frames and frames > 1:
        along = np.array([p @ normal for p in positions])
        gaps = np.diff(along)
        if (np.abs(gaps) > 1e-3).all() and ((gaps > 0).all() or (gaps < 0).all()):
            return positions[0], float(np.median(gaps))
    origin = _floats(ds, "ImagePositionPatient", 3)
    notes.append("multi-frame without per-frame positions: frames stacked at the slice spacing")
    return (origin if origin is not None else np.zeros(3)), _slab_depth(ds, notes)
