"""DICOM Segmentation objects (SEG) through highdicom: one named, coloured structure per segment.

pydicom parses the file and the declared sizes are checked before any frame is decoded (rows,
columns and frames against the voxel limit, the segment count against the structure limit, the
bytes of uncompressed binary or fractional frames against those present). highdicom then places the
frames in a volume (``Segmentation.get_volume``: the frames' positions and orientation, empty frames
left out by the writer filled in) with its affine in DICOM's LPS patient space, flipped to RAS here.
Each segment is named by ``SegmentLabel``, coloured by ``RecommendedDisplayCIELabValue`` (CIELab,
converted to sRGB by highdicom, to linear here) and coded by ``SegmentedPropertyTypeCodeSequence``
(``{"SCT": "272673000"}`` for bone). Fractional segments are cut at one half.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from assets.errors import EmptyMeshError, UnreadableAssetError, UnsupportedFormatError
from assets.loaders.labels import Label, clean_name, label_structures, rgb_color
from assets.loaders.limits import DEFAULT_LIMITS, Limits, check_count, check_fits, read_source
from assets.twin import Structure

log = logging.getLogger(__name__)

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _highdicom(path: Path) -> Any:
    try:
        import highdicom  # noqa: PLC0415 - highdicom only for DICOM SEG files
    except ImportError:
        raise UnsupportedFormatError(path, "reading DICOM SEG needs the highdicom package (pip install highdicom)") from None
    return highdicom


def _preflight(ds: Any, path: Path, limits: Limits) -> None:
    if str(ds.get("SOPClassUID", "")) != SEG_SOP_CLASS:
        raise UnreadableAssetError(path, "is not a DICOM Segmentation (SOP class)")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        bits = int(ds.get("BitsAllocated", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        raise UnreadableAssetError(path, "DICOM SEG has no valid Rows, Columns or NumberOfFrames") from None
    if min(rows, cols, frames) <= 0:
        raise UnreadableAssetError(path, f"DICOM SEG declares {frames} frames of {rows}x{cols}")
    check_count(path, "voxels", rows * cols * frames, limits.max_voxels)
    check_count(path, "segments", len(ds.get("SegmentSequence", []) or []), limits.max_structures)
    if "PixelData" not in ds:
        raise UnreadableAssetError(path, "DICOM SEG has no pixel data")
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if syntax is None or not syntax.is_compressed:
        check_fits(path, "DICOM SEG frames", (rows * cols * frames * bits + 7) // 8, len(ds.PixelData))


def _label(item: Any, highdicom: Any) -> Label:
    number = int(item.SegmentNumber)
    name = clean_name(item.get("SegmentLabel", "") or item.get("SegmentDescription", ""), f"segment {number}")
    color = Label(number, name).color
    lab = item.get("RecommendedDisplayCIELabValue")
    if lab is not None and len(lab) == 3:
        rgb = highdicom.color.CIELabColor.from_dicom_value([int(v) for v in lab]).to_rgb()
        color = rgb_color(list(rgb), 255.0)
    codes = {}
    for code in item.get("SegmentedPropertyTypeCodeSequence", []) or []:
        scheme, value = str(code.get("CodingSchemeDesignator", "")), str(code.get("CodeValue", ""))
        if scheme and value:
            codes[clean_name(scheme, "code")[:16]] = clean_name(value, "")[:32]
    return Label(number, name, color, codes)


def load_dicom_seg(path: Path, limits: Limits = DEFAULT_LIMITS, notes: list[str] | None = None
                   ) -> tuple[list[Structure], Any]:
    """The segments of a DICOM SEG file as structures in RAS millimetres (segment-number order), and
    its dataset (``assets.loaders.formats`` de-identifies it before any of it travels with the twin).

    Raises
    ------
    UnreadableAssetError
        Not a SEG object, frames that do not form a volume, or data that does not match its header.
    UnsupportedFormatError
        highdicom is missing.
    ResourceLimitError
        More voxels or segments than ``limits`` allow.
    EmptyMeshError
        No segment has any voxel.
    """
    import pydicom  # noqa: PLC0415 - pydicom only for DICOM files

    ds = pydicom.dcmread(io.BytesIO(read_source(path, limits, decompress=False)), force=True)
    _preflight(ds, path, limits)
    highdicom = _highdicom(path)  # after the checks: importing it takes longer than refusing a bad file
    try:
        seg = highdicom.seg.Segmentation.from_dataset(ds, copy=False)
        table = {label.value: label for label in (_label(item, highdicom) for item in seg.SegmentSequence)}
        numbers = sorted(table)
        volume = seg.get_volume(segment_numbers=numbers, combine_segments=False, rescale_fractional=True)
    except (ValueError, RuntimeError, KeyError, AttributeError, TypeError) as exc:
        detail = (str(exc).strip().splitlines() or [""])[0][:160]
        raise UnreadableAssetError(path, f"DICOM SEG frames cannot be placed in a volume ({detail})") from None
    array = np.asarray(volume.array)
    if array.ndim == 3:
        array = array[..., np.newaxis]
    affine = _LPS_TO_RAS @ np.asarray(volume.affine, dtype=np.float64)
    binary = np.asarray(array > (0.5 if np.issubdtype(array.dtype, np.floating) else 0))
    structures = []
    for channel, number in enumerate(numbers):
        mask = binary[..., channel]
        if not mask.any():
            if notes is not None:
                notes.append(f"segment {number} ({table[number].name}) has no voxels: skipped")
            continue
        structures += label_structures(mask.astype(np.int32) * number, affine, table, path, limits)
    if not structures:
        raise EmptyMeshError(path, "no segment has any voxel: no structure to extract")
    log.info("read %s: %d segments", path, len(structures))
    return structures, ds


__all__ = ["SEG_SOP_CLASS", "load_dicom_seg"]
