"""DICOM RT Structure Sets (RTSTRUCT): each region of interest's planar contours to a closed surface.

pydicom parses the file (highdicom writes structure sets but does not read them; rt-utils needs
OpenCV), and the contours become surfaces here the way planning systems make them: every
``CLOSED_PLANAR`` contour of a region is filled on its plane (even-odd, so a contour inside another
is a hole, as DICOM draws them), the filled planes are stacked at the spacing between them, and the
stack becomes a surface by the label-map path (``assets.loaders.labels``: smoothed a little, cut at
one half, so the surface closes half a slice beyond the first and last contour, as a voxelised
structure does). The in-plane grid has 192 cells across the region's extent (a body outline at
about 2.5 mm, an organ at under 1 mm), never finer than 0.25 mm, so a region costs about the same
whatever its size.

Contours must share one plane orientation per region (axial, sagittal, coronal or oblique); a
region whose contours do not is skipped with a note, as are ``POINT`` and open contours (markers
and lines have no volume). Names come from ``StructureSetROISequence``, colours from
``ROIDisplayColor`` (8-bit sRGB). Coordinates are DICOM's LPS millimetres, flipped to RAS. Counts
(regions, contours, points, grid voxels) are checked against the limits before anything is filled.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from assets.errors import EmptyMeshError, UnreadableAssetError
from assets.loaders.labels import Label, clean_name, label_structures, rgb_color
from assets.loaders.limits import DEFAULT_LIMITS, Limits, check_count, read_source
from assets.twin import Structure

log = logging.getLogger(__name__)

RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
_CONTOUR_DATA = 0x30060050
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: The in-plane grid: this many cells across a region's extent, but no finer than this many mm.
_CELLS_ACROSS, _FINEST_MM = 192, 0.25
#: Depth given to a region contoured on one plane only, mm.
_SINGLE_PLANE_MM = 1.0
#: Largest extent a region may have, mm (what a body outline can measure).
_MAX_EXTENT_MM = 3000.0
#: Two contours closer than this along the normal lie on the same plane, mm.
_SAME_PLANE_MM = 0.01


def _points(item: Any, path: Path) -> np.ndarray:
    # ContourData straight from its raw bytes: pydicom's DS values validate each number as an object
    # (5 s for 300,000 of them), the split and float() take a fraction of that.
    element = item.get_item(_CONTOUR_DATA)
    raw = getattr(element, "value", None)
    try:
        if isinstance(raw, bytes):
            values = np.asarray([float(v) for v in raw.split(b"\\") if v.strip()], dtype=np.float64)
        else:
            values = np.asarray([float(v) for v in (raw or [])], dtype=np.float64)
    except (TypeError, ValueError):
        raise UnreadableAssetError(path, "an RTSTRUCT contour's ContourData is not numbers") from None
    if values.size % 3 or not np.isfinite(values).all():
        raise UnreadableAssetError(path, "an RTSTRUCT contour's ContourData is not finite x, y, z triples")
    return values.reshape(-1, 3)


def _normal(points: np.ndarray) -> np.ndarray | None:
    """Unit normal of a planar polygon (Newell's method), or None when it encloses no area."""
    following = np.roll(points, -1, axis=0)
    normal = np.array([np.sum((points[:, 1] - following[:, 1]) * (points[:, 2] + following[:, 2])),
                       np.sum((points[:, 2] - following[:, 2]) * (points[:, 0] + following[:, 0])),
                       np.sum((points[:, 0] - following[:, 0]) * (points[:, 1] + following[:, 1]))])
    length = float(np.linalg.norm(normal))
    return normal / length if length > 1e-9 else None


def _contours(ds: Any, path: Path, limits: Limits) -> dict[int, list[np.ndarray]]:
    """Closed planar contours (LPS mm) by ROI number, every count checked first."""
    regions = ds.get("ROIContourSequence", []) or []
    check_count(path, "regions of interest", len(regions), limits.max_structures)
    declared = 0
    for region in regions:
        for item in region.get("ContourSequence", []) or []:
            declared += int(item.get("NumberOfContourPoints", 0) or 0)
    check_count(path, "contour points", declared, limits.max_vertices)
    result: dict[int, list[np.ndarray]] = {}
    for region in regions:
        number = int(region.get("ReferencedROINumber", 0) or 0)
        for item in region.get("ContourSequence", []) or []:
            if str(item.get("ContourGeometricType", "")).upper() != "CLOSED_PLANAR":
                continue
            points = _points(item, path)
            if len(points) >= 3:
                result.setdefault(number, []).append(points)
    return result


def _stack(contours: list[np.ndarray], path: Path, limits: Limits, notes: list[str], name: str
           ) -> tuple[np.ndarray, np.ndarray] | None:
    """(filled planes as a (slices, u, v) uint8 volume, its LPS affine) of one region's contours."""
    from skimage.draw import polygon  # noqa: PLC0415 - scikit-image only for contours

    normals = [n for n in (_normal(c) for c in contours) if n is not None]
    if not normals:
        notes.append(f"{name}: its contours enclose no area: skipped")
        return None
    normal = normals[0]
    if any(abs(float(n @ normal)) < 0.99 for n in normals):
        notes.append(f"{name}: its contours lie in planes of different orientations: skipped")
        return None
    axis = np.eye(3)[int(np.argmin(np.abs(normal)))]
    u = axis - (axis @ normal) * normal
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    depths = np.array([float(np.median(c @ normal)) for c in contours])
    planes = np.unique(np.round(depths / _SAME_PLANE_MM) * _SAME_PLANE_MM)
    gaps = np.diff(planes)
    spacing = float(np.median(gaps)) if len(gaps) else _SINGLE_PLANE_MM
    if not len(gaps):
        notes.append(f"{name}: one contour plane: a slab {_SINGLE_PLANE_MM:g} mm deep")
    if len(gaps) and gaps.max() > 1.1 * gaps.min():
        notes.append(f"{name}: contour planes {gaps.min():.3g} to {gaps.max():.3g} mm apart; {spacing:.3g} mm used")
    flat = [np.stack([c @ u, c @ v], axis=1) for c in contours]
    every = np.concatenate(flat)
    low, high = every.min(axis=0), every.max(axis=0)
    extent = max(float((high - low).max()), float(planes[-1] - planes[0]))
    if extent > _MAX_EXTENT_MM:
        raise UnreadableAssetError(path, f"{name}: its contours span {extent:,.0f} mm, more than a body measures")
    step = max(float((high - low).max()) / _CELLS_ACROSS, _FINEST_MM)
    low -= 2 * step
    size = np.ceil((high + 2 * step - low) / step).astype(int) + 1
    slices = round((planes[-1] - planes[0]) / spacing) + 1 if len(planes) > 1 else 1
    if slices > 4 * len(planes):  # a few tiny gaps among large ones: the planes are not a stack
        raise UnreadableAssetError(path, f"{name}: its {len(planes)} contour planes are not evenly spaced")
    check_count(path, "voxels of a contour stack", int(slices * size[0] * size[1]), limits.max_voxels)
    volume = np.zeros((slices, int(size[0]), int(size[1])), dtype=np.uint8)
    for points, depth in zip(flat, depths, strict=True):
        k = round((depth - planes[0]) / spacing) if len(planes) > 1 else 0
        rows, cols = polygon((points[:, 0] - low[0]) / step, (points[:, 1] - low[1]) / step, volume.shape[1:])
        volume[k, rows, cols] ^= 1  # even-odd: a contour inside another is a hole
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2] = normal * spacing, u * step, v * step
    affine[:3, 3] = planes[0] * normal + low[0] * u + low[1] * v
    return volume, affine


def load_rtstruct(path: Path, limits: Limits = DEFAULT_LIMITS, notes: list[str] | None = None
                  ) -> tuple[list[Structure], Any]:
    """The regions of an RT Structure Set as closed surfaces in RAS millimetres (ROI-number order),
    and its dataset (``assets.loaders.formats`` de-identifies it before any of it travels with the twin).

    Raises
    ------
    UnreadableAssetError
        Not a structure set, or contour data that is not points.
    ResourceLimitError
        More regions, points or grid voxels than ``limits`` allow.
    EmptyMeshError
        No region has a closed planar contour.
    """
    import pydicom  # noqa: PLC0415 - pydicom only for DICOM files

    said = notes if notes is not None else []
    ds = pydicom.dcmread(io.BytesIO(read_source(path, limits, decompress=False)), force=True)
    if str(ds.get("SOPClassUID", "")) != RTSTRUCT_SOP_CLASS:
        raise UnreadableAssetError(path, "is not an RT Structure Set (SOP class)")
    names = {int(item.get("ROINumber", 0) or 0): clean_name(item.get("ROIName", ""), f"region {item.get('ROINumber')}")
             for item in ds.get("StructureSetROISequence", []) or []}
    colours = {}
    for region in ds.get("ROIContourSequence", []) or []:
        colour = region.get("ROIDisplayColor")
        if colour is not None and len(colour) == 3:
            colours[int(region.get("ReferencedROINumber", 0) or 0)] = rgb_color([float(c) for c in colour], 255.0)
    structures = []
    contours = _contours(ds, path, limits)
    for number in sorted(names):
        if number not in contours:
            said.append(f"{names[number]}: no closed planar contour (points or lines only): skipped")
            continue
        stacked = _stack(contours[number], path, limits, said, names[number])
        if stacked is None:
            continue
        volume, affine = stacked
        label = Label(number, names[number], colours.get(number, Label(number, "").color))
        structures += label_structures(volume.astype(np.int32) * number, _LPS_TO_RAS @ affine, {number: label},
                                       path, limits)
    if not structures:
        raise EmptyMeshError(path, "no region of interest has a closed planar contour: no structure to extract")
    log.info("read %s: %d regions", path, len(structures))
    return structures, ds


__all__ = ["RTSTRUCT_SOP_CLASS", "load_rtstruct"]
