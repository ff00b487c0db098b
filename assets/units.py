"""Source units: declared by the file format or the user, or detected from the extent.

Everything inside the runtime is metres. Formats that state their unit (glTF: metres; GIFTI, NIfTI
and DICOM: millimetres) are converted as declared. Unitless formats (STL, OBJ, PLY) are detected from
the largest side of the bounding box: an anatomical structure measures between about 1 mm and 3 m
(``assets.validate``), so an extent up to 3 reads as metres, up to 3,000 as millimetres and above
that as micrometres (micro-CT). A structure below 3 mm stored in millimetres is read as metres;
declare the unit (``units="mm"``) for such files.
"""

from __future__ import annotations

import logging

import numpy as np

from assets.errors import AssetError
from assets.twin import UNIT_SCALE
from assets.validate import MAX_EXTENT_M

log = logging.getLogger(__name__)


def extent(vertices: np.ndarray) -> float:
    """Largest side of the bounding box of the finite rows of ``vertices`` (N, 3), in their own unit."""
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    v = v[np.isfinite(v).all(axis=1)]
    if not len(v):
        return 0.0
    return float((v.max(axis=0) - v.min(axis=0)).max())


def detect_units(vertices: np.ndarray) -> str:
    """The unit (a key of ``UNIT_SCALE``) that makes ``vertices`` (N, 3) measure like anatomy.

    Returns ``"m"`` for an extent up to 3, ``"mm"`` up to 3,000, ``"um"`` above.
    """
    size = extent(vertices)
    for unit in ("m", "mm", "um"):
        if size * UNIT_SCALE[unit] <= MAX_EXTENT_M:
            return unit
    return "um"  # larger still: validation reports implausible bounds with the size in mm


def resolve_units(declared: str | None, vertices: np.ndarray, source: str | None = None) -> tuple[str, bool]:
    """``(unit, detected)``: ``declared`` when given, else the detected unit with ``detected=True``.

    Raises
    ------
    AssetError
        ``declared`` is not a key of ``UNIT_SCALE``.
    """
    if declared is not None:
        if declared not in UNIT_SCALE:
            raise AssetError(source, f"unknown unit {declared!r}; use one of {', '.join(UNIT_SCALE)}")
        return declared, False
    unit = detect_units(vertices)
    log.info("%s: no unit stated, extent %.4g reads as %s", source or "mesh", extent(vertices), unit)
    return unit, True


def to_metres(vertices: np.ndarray, unit: str) -> np.ndarray:
    """``vertices`` (N, 3) in ``unit`` as float32 metres."""
    return (np.asarray(vertices, dtype=np.float64) * UNIT_SCALE[unit]).astype(np.float32)
