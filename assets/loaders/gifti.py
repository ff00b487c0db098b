"""GIFTI surfaces (.gii, .gii.gz) through nibabel; coordinates are millimetres.

Before nibabel parses the XML, every DataArray is checked: its declared dimensions against the
limits, its encoded payload against those dimensions (a zlib stream inside a GZipBase64Binary array
is inflated with an output cap, so a compressed bomb stops at the declared size), and external data
files are refused.
"""

from __future__ import annotations

import base64
import binascii
import logging
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import numpy as np

from assets.errors import EmptyMeshError, ResourceLimitError, UnreadableAssetError, UnsupportedFormatError
from assets.loaders.limits import DEFAULT_LIMITS, Limits, check_count
from assets.twin import Structure

log = logging.getLogger(__name__)

_ITEM_BYTES = {"NIFTI_TYPE_UINT8": 1, "NIFTI_TYPE_INT8": 1, "NIFTI_TYPE_INT16": 2, "NIFTI_TYPE_UINT16": 2,
               "NIFTI_TYPE_INT32": 4, "NIFTI_TYPE_UINT32": 4, "NIFTI_TYPE_FLOAT32": 4, "NIFTI_TYPE_INT64": 8,
               "NIFTI_TYPE_UINT64": 8, "NIFTI_TYPE_FLOAT64": 8}

#: FreeSurfer/CIFTI names of the structures a surface may be of (AnatomicalStructurePrimary).
_SIDES = {"CortexLeft": "left-hemisphere", "CortexRight": "right-hemisphere"}


def preflight(xml: bytes, source: str | Path, limits: Limits = DEFAULT_LIMITS) -> None:
    """Check every DataArray's dimensions and payload size before nibabel decodes it."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise UnreadableAssetError(source, f"GIFTI XML is malformed ({exc})") from None
    if root.tag != "GIFTI":
        raise UnreadableAssetError(source, f"is not GIFTI (root element <{root.tag[:40]}>)")
    for i, array in enumerate(root.iter("DataArray")):
        attributes = array.attrib
        try:
            n_dims = int(attributes.get("Dimensionality", "0"))
            dims = [int(attributes.get(f"Dim{d}", "")) for d in range(n_dims)]
        except ValueError:
            raise UnreadableAssetError(source, f"GIFTI DataArray {i} has non-numeric dimensions") from None
        if not 1 <= n_dims <= 6 or any(d < 0 for d in dims):
            raise UnreadableAssetError(source, f"GIFTI DataArray {i} has dimensions {dims}")
        item = _ITEM_BYTES.get(attributes.get("DataType", ""))
        if item is None:
            raise UnreadableAssetError(source, f"GIFTI DataArray {i} has an unknown DataType")
        elements = int(np.prod(dims, dtype=object))
        check_count(source, f"values in GIFTI DataArray {i}", elements, 3 * max(limits.max_vertices, limits.max_faces))
        expected = elements * item
        encoding = attributes.get("Encoding", "")
        if encoding == "ExternalFileBinary":
            raise UnsupportedFormatError(source, "GIFTI data in external files is not supported")
        data = array.find("Data")
        text = (data.text or "") if data is not None else ""
        if encoding == "GZipBase64Binary":
            _check_inflated(text, expected, source, i)


def _check_inflated(text: str, expected: int, source: str | Path, index: int) -> None:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=False)
    except (binascii.Error, UnicodeEncodeError):
        raise UnreadableAssetError(source, f"GIFTI DataArray {index} is not valid base64") from None
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(raw, expected + 1)
    except zlib.error as exc:
        raise UnreadableAssetError(source, f"GIFTI DataArray {index} is corrupt ({exc})") from None
    if len(out) > expected:
        raise ResourceLimitError(source, f"GIFTI DataArray {index} inflates beyond its declared {expected:,} bytes")


def load_gifti(xml: bytes, source: str | Path, *, default_name: str = "surface",
               limits: Limits = DEFAULT_LIMITS) -> Structure:
    """One structure (vertices in mm) from the decompressed XML of a GIFTI surface.

    The name is ``<side>-<kind>`` (e.g. ``left-hemisphere-pial``) when the file's metadata states
    ``AnatomicalStructurePrimary`` and ``AnatomicalStructureSecondary``, else ``default_name``.
    """
    import nibabel as nib  # noqa: PLC0415 - nibabel only for GIFTI files

    preflight(xml, source, limits)
    image = nib.gifti.gifti.GiftiImage.from_bytes(xml)
    points = [a for a in image.darrays if a.intent == nib.nifti1.intent_codes["NIFTI_INTENT_POINTSET"]]
    triangles = [a for a in image.darrays if a.intent == nib.nifti1.intent_codes["NIFTI_INTENT_TRIANGLE"]]
    if not points or not triangles:
        raise EmptyMeshError(source, "GIFTI file has no pointset and triangle arrays (not a surface)")
    if len(points) > 1 or len(triangles) > 1:
        log.warning("%s: %d pointsets and %d triangle arrays, using the first of each", source,
                    len(points), len(triangles))
    vertices = np.asarray(points[0].data)
    faces = np.asarray(triangles[0].data)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise UnreadableAssetError(source, f"GIFTI arrays have shapes {vertices.shape} and {faces.shape}, "
                                   "not (N, 3) and (M, 3)")
    meta = dict(points[0].meta or {})
    side = _SIDES.get(meta.get("AnatomicalStructurePrimary", ""))
    kind = str(meta.get("AnatomicalStructureSecondary", "")).strip().lower()
    name = f"{side}-{kind}" if side and kind.isalpha() else default_name
    return Structure(name, vertices.astype(np.float32), faces.astype(np.int32))
