"""3D Slicer segmentations (``.seg.nrrd``): one named, coloured structure per segment.

A ``.seg.nrrd`` is a NRRD label map (read by ``assets.loaders.nrrd_image``) whose header carries the
segments as custom fields, ``SegmentN_<field>:=value`` for N = 0, 1, ...:

- ``Name``, ``Color`` (three floats 0..1, sRGB), ``ID``;
- ``LabelValue`` and ``Layer``: the voxel value that marks the segment and which layer holds it.
  Segments that do not overlap share a layer (a 3-D volume); overlapping ones sit in separate
  layers along a first, non-spatial axis (``kinds: list domain domain domain``). Files written before
  Slicer 4.11 have neither field and one binary layer per segment: their segment N is layer N,
  value 1;
- ``Tags``: ``TerminologyEntry`` names the segment's type as a coded concept
  (``...~SCT^89546000^Skull~...``), kept as the structure's ``{"SCT": "89546000"}`` code.

Each segment's surface is made the way Slicer makes its closed-surface representation from a binary
label map, smoothed a little (``assets.loaders.labels``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from assets.errors import EmptyMeshError, UnreadableAssetError
from assets.loaders.labels import Label, clean_name, distinct_names, label_structures, rgb_color
from assets.loaders.limits import DEFAULT_LIMITS, Limits, check_count
from assets.loaders.nrrd_image import read_nrrd_image
from assets.twin import Structure

log = logging.getLogger(__name__)

_SEGMENT_FIELD = re.compile(r"^Segment(\d{1,6})_(\w+)$")


def _int(value: Any, default: int, path: Path, what: str) -> int:
    if value is None:
        return default
    try:
        return int(str(value).strip())
    except ValueError:
        raise UnreadableAssetError(path, f"{what} {str(value)[:20]!r} is not a whole number") from None


def _color(value: Any) -> tuple[float, float, float, float] | None:
    try:
        rgb = [float(v) for v in str(value).split()]
    except ValueError:
        return None
    return rgb_color(rgb, 1.0) if len(rgb) == 3 and all(np.isfinite(rgb)) else None


def _codes(tags: Any) -> dict[str, str]:
    """``{scheme: code}`` of the segment's type in a Slicer ``TerminologyEntry`` tag, if any."""
    for tag in str(tags or "").split("|"):
        key, _, entry = tag.partition(":")
        if key != "TerminologyEntry":
            continue
        parts = entry.split("~")
        if len(parts) > 2:
            scheme, code, *_ = (parts[2].split("^") + ["", ""])[:3]
            if scheme and code:
                return {clean_name(scheme, "code")[:16]: clean_name(code, "")[:32]}
    return {}


def segments(header: dict[str, Any], layers: int, path: Path, limits: Limits) -> list[tuple[int, int, Label]]:
    """(segment index, layer, label) for every segment the header lists, in the header's order."""
    fields: dict[int, dict[str, Any]] = {}
    for key, value in header.items():
        match = _SEGMENT_FIELD.match(str(key))
        if match:
            fields.setdefault(int(match.group(1)), {})[match.group(2)] = value
    check_count(path, "segments", len(fields), limits.max_structures)
    if not fields:
        raise UnreadableAssetError(path, "is not a Slicer segmentation: its header lists no SegmentN_ fields")
    result = []
    for index in sorted(fields):
        entry = fields[index]
        has_layers = "Layer" in entry or "LabelValue" in entry
        layer = _int(entry.get("Layer"), 0 if has_layers else index, path, f"Segment{index}_Layer")
        value = _int(entry.get("LabelValue"), 1, path, f"Segment{index}_LabelValue")
        if not 0 <= layer < layers:
            raise UnreadableAssetError(path, f"Segment{index} is in layer {layer}; the file has {layers}")
        if value <= 0:
            raise UnreadableAssetError(path, f"Segment{index} has label value {value}; 0 is the background")
        name = clean_name(entry.get("Name", ""), f"segment {index}")
        color = _color(entry.get("Color")) or Label(value, name).color
        result.append((index, layer, Label(value, name, color, _codes(entry.get("Tags")))))
    return result


def load_segmentation(path: Path, limits: Limits = DEFAULT_LIMITS, notes: list[str] | None = None) -> list[Structure]:
    """The segments of a ``.seg.nrrd`` as structures in RAS millimetres, in the header's order.

    Raises
    ------
    UnreadableAssetError
        Not a segmentation, or a segment names a layer or value the data cannot hold.
    EmptyMeshError
        No segment has any voxel.
    """
    image = read_nrrd_image(path, limits)
    if notes is not None:
        notes.extend(image.notes)
    data = image.data
    others = [i for i in range(data.ndim) if i not in image.spatial]
    if len(others) > 1:
        raise UnreadableAssetError(path, f"segmentation has {len(others)} non-spatial axes; Slicer writes at most one")
    stack = np.moveaxis(data, others[0], 0) if others else data[np.newaxis]
    listed = segments(image.header, stack.shape[0], path, limits)
    by_key: dict[tuple[int, int], Structure] = {}
    for layer in sorted({layer for _, layer, _ in listed}):
        table = {label.value: label for _, at, label in listed if at == layer}
        labels = np.asarray(stack[layer])
        if not np.issubdtype(labels.dtype, np.integer):
            labels = np.rint(np.nan_to_num(labels)).astype(np.int64)
        try:
            found = label_structures(labels, image.affine, table, path, limits, only=sorted(table), notes=notes)
        except EmptyMeshError:  # an empty layer among others is not fatal; all empty is, below
            continue
        for structure in found:
            by_key[(layer, int(structure.codes["label"]))] = structure
    ordered = [by_key[(layer, label.value)] for _, layer, label in listed if (layer, label.value) in by_key]
    if not ordered:
        raise EmptyMeshError(path, "no segment has any voxel: no structure to extract")
    distinct_names(ordered)
    log.info("read %s: %d of %d segments", path, len(ordered), len(listed))
    return ordered


__all__ = ["load_segmentation", "segments"]
