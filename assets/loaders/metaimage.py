"""MetaImage volumes (``.mha`` with the data inline, ``.mhd`` beside a ``.raw``/``.zraw``) through
metaimageio, in RAS millimetres.

Why metaimageio: it is the lightest maintained reader of ITK's MetaIO format (a 12 kB pure-Python
wheel that needs only numpy, MIT-licensed, released 2025 and on conda-forge), where SimpleITK or
ITK's own wheels weigh 50-150 MB for the same two file types. Like pynrrd, it trusts its header, so
the header is checked here first: ``NDims`` 3 and one channel, ``DimSize`` against the voxel limit,
the element type, the data bytes present against those declared, a compressed stream inflated with a
cap at the declared size (metaimageio inflates without one), and ``ElementDataFile``: ``LOCAL`` or
one file inside the header's folder (no absolute path, ``..``, link out of the folder, ``LIST`` or
file-name pattern).

Geometry. MetaImage coordinates are ITK's physical space, LPS millimetres: voxel (i, j, k) lies at
``Offset + TransformMatrix @ (spacing * (i, j, k))``, where the file lists ``TransformMatrix`` one
axis direction after another (ITK's order; metaimageio hands it back with the directions as columns).
LPS is flipped to RAS here. ``AnatomicalOrientation`` only describes that matrix (ITK writes ``RAI``
for the identity) and ITK itself ignores it on reading, so it is not applied; a value that disagrees
with the matrix is noted in the provenance.
"""

from __future__ import annotations

import logging
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from assets.errors import ResourceLimitError, UnreadableAssetError, UnsupportedFormatError
from assets.loaders.limits import DEFAULT_LIMITS, Limits, beside, check_count, check_fits, read_source
from assets.loaders.volume import Volume

log = logging.getLogger(__name__)

#: Bytes per element of each MetaIO element type metaimageio reads. MET_LONG and MET_ULONG are left
#: out: MetaIO sizes them 4 bytes, metaimageio reads 8, so either could be wrong for a given writer.
_ITEM_BYTES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
               "MET_FLOAT": 4, "MET_DOUBLE": 8}
_MODALITIES = {"MET_MOD_CT": "CT", "MET_MOD_MR": "MR", "MET_MOD_NM": "NM", "MET_MOD_US": "US"}
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _metaimageio(path: Path) -> Any:
    try:
        import metaimageio  # noqa: PLC0415 - metaimageio only for MetaImage files
    except ImportError:
        raise UnsupportedFormatError(path, "reading MetaImage needs the metaimageio package "
                                     "(pip install metaimageio)") from None
    return metaimageio


def _header(raw: bytes, path: Path, limits: Limits) -> tuple[dict[str, str], int]:
    """MetaIO ``Key = Value`` fields up to ``ElementDataFile`` (keys as written), and the offset of the
    byte after that line (where ``LOCAL`` data begins)."""
    fields: dict[str, str] = {}
    at = 0
    while at < len(raw):
        end = raw.find(b"\n", at)
        end = len(raw) if end < 0 else end
        if end - at > 65536 or end > limits.max_header_bytes:
            break
        line = raw[at:end].decode("latin-1").strip()
        at = end + 1
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise UnreadableAssetError(path, f"MetaImage header line {line[:40]!r} is not 'Key = Value'")
        fields[key.strip().lower()] = value.strip()
        if key.strip().lower() == "elementdatafile":
            return fields, at
    raise UnreadableAssetError(path, "is not MetaImage: its header has no ElementDataFile line")


def _ints(fields: dict[str, str], key: str, path: Path) -> list[int]:
    try:
        return [int(v) for v in fields.get(key, "").split()]
    except ValueError:
        raise UnreadableAssetError(path, f"MetaImage {key} is not whole numbers") from None


def _data_file(name: str, path: Path, limits: Limits) -> tuple[Path, int]:
    """The detached data file (inside the header's folder) and its size."""
    if name.upper() == "LIST" or "%" in name or len(name.split()) > 1:
        raise UnsupportedFormatError(path, "MetaImage data in several files (LIST or a file-name pattern) is not supported")
    resolved = beside(path, name, "ElementDataFile")
    size = resolved.stat().st_size
    if size > limits.max_file_bytes:
        raise ResourceLimitError(resolved, f"is {size:,} bytes, above the limit of {limits.max_file_bytes:,}")
    return resolved, size


def preflight(raw: bytes, path: Path, limits: Limits = DEFAULT_LIMITS) -> dict[str, str]:
    """Check a MetaImage header's declared sizes and data file before metaimageio reads anything.

    Returns the header fields (lower-case keys).
    """
    fields, data_at = _header(raw, path, limits)
    if fields.get("ndims", "3").strip() != "3":
        raise UnsupportedFormatError(path, f"MetaImage has NDims {fields.get('ndims')!r}; a volume needs 3")
    sizes = _ints(fields, "dimsize", path)
    if len(sizes) != 3 or min(sizes) <= 0:
        raise UnreadableAssetError(path, f"MetaImage DimSize {fields.get('dimsize', '')[:40]!r} is not three positive sizes")
    voxels = sizes[0] * sizes[1] * sizes[2]
    check_count(path, "voxels", voxels, limits.max_voxels)
    if (_ints(fields, "elementnumberofchannels", path) or [1]) != [1]:
        raise UnsupportedFormatError(path, "MetaImage has several channels per voxel; only scalar volumes become surfaces")
    element = fields.get("elementtype", "").upper()
    if element not in _ITEM_BYTES:
        raise UnsupportedFormatError(path, f"MetaImage ElementType {element[:20]!r} is not supported (MET_CHAR to "
                                     "MET_UINT, MET_FLOAT, MET_DOUBLE)")
    skip = (_ints(fields, "headersize", path) or [0])[0]
    if skip < -1:
        raise UnreadableAssetError(path, f"MetaImage HeaderSize {skip} is negative")
    expected = voxels * _ITEM_BYTES[element]
    name = fields["elementdatafile"]
    data_path: Path | None = None
    if name.upper() == "LOCAL":
        payload_size = len(raw) - data_at
    else:
        data_path, payload_size = _data_file(name, path, limits)
    compressed = fields.get("compresseddata", "false").lower() == "true"
    if not compressed:
        check_fits(path, f"MetaImage data of {voxels:,} {element} values", expected + max(skip, 0), payload_size)
        return fields
    declared = (_ints(fields, "compresseddatasize", path) or [-1])[0]
    if not 0 < declared <= payload_size - max(skip, 0):
        raise UnreadableAssetError(path, f"MetaImage CompressedDataSize {declared} does not fit the "
                                   f"{payload_size:,} bytes present")
    payload = raw[data_at:] if data_path is None else read_source(data_path, limits, decompress=False)
    stream = payload[max(skip, 0):max(skip, 0) + declared]
    try:
        inflated = zlib.decompressobj().decompress(stream, expected + 1)
    except zlib.error as exc:
        raise UnreadableAssetError(path, f"MetaImage compressed data is corrupt ({exc})") from None
    if len(inflated) > expected:
        raise ResourceLimitError(path, f"MetaImage compressed data expands beyond the {expected:,} bytes declared")
    if len(inflated) < expected:
        raise UnreadableAssetError(path, f"MetaImage compressed data holds {len(inflated):,} bytes, not the "
                                   f"{expected:,} declared (truncated or corrupt)")
    return fields


def _orientation_code(directions: np.ndarray) -> str:
    """ITK's three-letter code of LPS axis directions (columns): ``RAI`` for the identity."""
    letters = ("RL", "AP", "IS")
    code = ""
    for column in directions.T:
        axis = int(np.argmax(np.abs(column)))
        code += letters[axis][0 if column[axis] > 0 else 1]
    return code


def read_metaimage(path: Path, limits: Limits = DEFAULT_LIMITS) -> Volume:
    """A MetaImage volume as a ``Volume`` in RAS millimetres.

    Raises
    ------
    UnreadableAssetError
        Not MetaImage, a malformed or inconsistent header, too little data, a data file outside the folder.
    UnsupportedFormatError
        metaimageio is missing, or the file is not a 3-D scalar volume in one data file.
    ResourceLimitError
        More voxels or bytes than ``limits`` allow, or a compressed stream that expands beyond its size.
    """
    metaimageio = _metaimageio(path)
    raw = read_source(path, limits, decompress=False)
    fields = preflight(raw, path, limits)
    try:
        image, meta = metaimageio.read(path)
    except (ValueError, OSError, zlib.error) as exc:
        raise UnreadableAssetError(path, f"MetaImage cannot be read ({exc})") from None
    values = np.asarray(image, dtype=np.float32).transpose(2, 1, 0)  # metaimageio gives (k, j, i)
    notes = []
    spacing = np.asarray(meta.get("ElementSpacing", meta.get("ElementSize", np.ones(3))), dtype=np.float64)
    directions = np.eye(3)
    for key in ("TransformMatrix", "Rotation", "Orientation"):
        if key in meta:
            directions = np.asarray(meta[key], dtype=np.float64)
            break
    origin = np.zeros(3)
    for key in ("Offset", "Origin", "Position"):
        if key in meta:
            origin = np.asarray(meta[key], dtype=np.float64)
            break
    if spacing.shape != (3,) or directions.shape != (3, 3) or origin.shape != (3,):
        raise UnreadableAssetError(path, "MetaImage spacing, TransformMatrix or Offset does not have 3 dimensions")
    if not (np.isfinite(spacing).all() and (spacing > 0).all()):
        raise UnreadableAssetError(path, "MetaImage ElementSpacing is not three positive sizes")
    lps = np.eye(4)
    lps[:3, :3] = directions @ np.diag(spacing)
    lps[:3, 3] = origin
    if not np.isfinite(lps).all() or abs(np.linalg.det(lps[:3, :3])) < 1e-12:
        raise UnreadableAssetError(path, "MetaImage TransformMatrix is singular or not finite")
    stated = fields.get("anatomicalorientation", "").upper()
    code = _orientation_code(directions)
    if stated and stated != "?" and stated != code:
        notes.append(f"AnatomicalOrientation {stated[:8]} disagrees with TransformMatrix ({code}); "
                     "TransformMatrix used, as ITK does")
    modality = _MODALITIES.get(fields.get("modality", "").upper(), "")
    log.debug("read %s: %s voxels, %s", path, values.shape, code)
    return Volume(values, _LPS_TO_RAS @ lps, "mm", modality=modality, notes=notes)


__all__ = ["preflight", "read_metaimage"]
