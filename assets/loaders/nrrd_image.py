"""NRRD volumes (``.nrrd``, and ``.nhdr`` headers with detached data) through pynrrd, in RAS millimetres.

pynrrd parses the header and decodes the data; this module checks what the header declares before
any of it is read: the magic line, the voxel count against the limits, the bytes the data needs
against the bytes present, and where a detached data file lies (it must be a single file inside the
header's own folder: an absolute path, ``..``, a symbolic link out of the folder, a ``LIST`` or a
file-name pattern are refused). pynrrd inflates gzip and bzip2 data without a cap, so compressed data
is inflated here, capped at the size the header declares, and handed to pynrrd as raw.

Geometry. ``space directions`` gives each spatial axis's step as a vector, ``space origin`` the centre
of the first voxel, and ``space`` the frame: ``right-anterior-superior`` (RAS, what 3D Slicer writes
since 5.0 for most data), ``left-posterior-superior`` (LPS, DICOM's, what ITK and older Slicer write)
or ``left-anterior-superior``; LPS and LAS are flipped to RAS here. A file with only ``spacings`` is
placed axis-aligned at the origin, and one with neither at 1 unit a voxel; both are noted. Anatomical
spaces are in millimetres unless ``space units`` says otherwise. A non-spatial axis (a list of
components, a time series) keeps its first sample; segmentations read their layers from it
(``assets.loaders.slicer_seg``).
"""

from __future__ import annotations

import bz2
import io
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assets.errors import ResourceLimitError, UnreadableAssetError, UnsupportedFormatError
from assets.loaders.limits import DEFAULT_LIMITS, Limits, beside, check_count, check_fits, gunzip, read_source
from assets.loaders.volume import Volume
from assets.twin import UNIT_SCALE

log = logging.getLogger(__name__)

#: Sign flips from each anatomical NRRD space to RAS.
_TO_RAS = {
    "right-anterior-superior": (1.0, 1.0, 1.0), "ras": (1.0, 1.0, 1.0),
    "left-posterior-superior": (-1.0, -1.0, 1.0), "lps": (-1.0, -1.0, 1.0),
    "left-anterior-superior": (-1.0, 1.0, 1.0), "las": (-1.0, 1.0, 1.0),
}
_DATA_FILE_LIST = re.compile(rb"^data ?file: *LIST", re.MULTILINE | re.IGNORECASE)
_COMPRESSED = {"gzip", "gz", "bzip2", "bz2"}
_TEXT = {"ascii", "text", "txt"}


@dataclass
class NrrdImage:
    """What a NRRD file holds: the header pynrrd parsed, the data in the header's axis order (the first
    axis varies fastest in the file), and the RAS affine of its spatial axes (``spatial``: their
    positions in ``data.shape``)."""

    header: dict[str, Any]
    data: np.ndarray
    affine: np.ndarray
    spatial: list[int]
    units: str | None
    notes: list[str] = field(default_factory=list)


def _pynrrd(path: Path) -> Any:
    try:
        import nrrd  # noqa: PLC0415 - pynrrd only for NRRD files
    except ImportError:
        raise UnsupportedFormatError(path, "reading NRRD needs the pynrrd package (pip install pynrrd)") from None
    return nrrd


def _split_header(raw: bytes, path: Path, limits: Limits) -> tuple[bytes, bytes]:
    """(header lines, what follows the blank line that ends them) of a NRRD file."""
    if not raw.startswith(b"NRRD000"):
        raise UnreadableAssetError(path, "is not NRRD (no NRRD000x magic line)")
    ends = [(at, len(mark)) for mark in (b"\n\n", b"\r\n\r\n") if (at := raw.find(mark)) >= 0]
    end, mark = min(ends) if ends else (len(raw), 0)
    if end > limits.max_header_bytes:
        raise ResourceLimitError(path, f"NRRD header is over {limits.max_header_bytes:,} bytes")
    return raw[:end], raw[end + mark:]


def _detached(header: dict[str, Any], path: Path, limits: Limits) -> bytes | None:
    """The bytes of a detached data file, checked to be one file inside the header's folder."""
    name = header.get("data file", header.get("datafile"))
    if name is None:
        return None
    name = str(name).strip()
    if name.upper().startswith("LIST") or len(name.split()) > 1:
        raise UnsupportedFormatError(path, "detached data in several files (LIST or a file-name pattern) is not supported")
    return read_source(beside(path, name, "data file"), limits, decompress=False)


def _inflate(payload: bytes, encoding: str, path: Path, cap: int, limits: Limits) -> bytes:
    if encoding in ("gzip", "gz"):
        return gunzip(payload, path, cap, max_ratio=limits.max_gzip_ratio, ratio_floor=limits.gzip_ratio_floor)
    try:
        out = bz2.BZ2Decompressor().decompress(payload, max_length=cap + 1)
    except (OSError, ValueError, EOFError) as exc:
        raise UnreadableAssetError(path, f"corrupt bzip2 data ({exc})") from None
    if len(out) > cap:
        raise ResourceLimitError(path, f"bzip2 data expands beyond the {cap:,} bytes the header declares")
    return out


def read_nrrd_image(path: Path, limits: Limits = DEFAULT_LIMITS) -> NrrdImage:
    """A NRRD file's header, data and RAS geometry, every declared size checked first.

    Raises
    ------
    UnreadableAssetError
        Not NRRD, a malformed or inconsistent header, truncated data, a detached file outside the folder.
    UnsupportedFormatError
        pynrrd is missing, or the file uses a feature not read here (several data files, not 3 spatial axes).
    ResourceLimitError
        More voxels, header or decompressed bytes than ``limits`` allow.
    """
    nrrd = _pynrrd(path)
    raw = read_source(path, limits, decompress=False)
    head, attached = _split_header(raw, path, limits)
    if _DATA_FILE_LIST.search(head):  # pynrrd cannot parse the file names that follow such a line
        raise UnsupportedFormatError(path, "detached data in several files (LIST or a file-name pattern) is not supported")
    try:
        header = dict(nrrd.read_header(io.BytesIO(head + b"\n\n")))
    except (nrrd.NRRDError, ValueError, KeyError, IndexError) as exc:
        raise UnreadableAssetError(path, f"NRRD header cannot be parsed ({exc})") from None
    sizes = header.get("sizes")
    dimension = header.get("dimension")
    if sizes is None or dimension is None or not isinstance(dimension, int) or len(sizes) != dimension:
        raise UnreadableAssetError(path, "NRRD header has no consistent 'dimension' and 'sizes'")
    if any(int(n) <= 0 for n in sizes) or not 1 <= dimension <= 16:
        raise UnreadableAssetError(path, f"NRRD sizes {list(sizes)} are not positive")
    elements = int(np.prod([int(n) for n in sizes], dtype=object))
    check_count(path, "voxels", elements, limits.max_voxels)
    encoding = str(header.get("encoding", "")).lower()
    try:
        dtype = nrrd.reader._determine_datatype(header)  # pynrrd's own type table (no public name for it)
    except (nrrd.NRRDError, KeyError) as exc:
        raise UnreadableAssetError(path, f"NRRD type or endian is not valid ({exc})") from None
    expected = elements * dtype.itemsize
    byte_skip = int(header.get("byte skip", header.get("byteskip", 0)) or 0)
    line_skip = int(header.get("line skip", header.get("lineskip", 0)) or 0)
    if byte_skip < -1 or line_skip < 0:
        raise UnreadableAssetError(path, f"NRRD byte skip {byte_skip} or line skip {line_skip} is negative")
    detached = _detached(header, path, limits)
    payload = attached if detached is None else detached
    if line_skip:
        stream = io.BytesIO(payload)
        for _ in range(line_skip):
            stream.readline()
        payload = payload[stream.tell():]
    decoded = dict(header)
    decoded.pop("data file", None)
    decoded.pop("datafile", None)
    decoded.pop("line skip", None)
    decoded.pop("lineskip", None)
    if encoding in _COMPRESSED:
        cap = expected + byte_skip if byte_skip >= 0 else limits.max_decompressed_bytes
        payload = _inflate(payload, encoding, path, min(cap, limits.max_decompressed_bytes), limits)
        decoded["encoding"] = "raw"
        encoding = "raw"
    if encoding == "raw":
        check_fits(path, f"NRRD data of {elements:,} {dtype.name} values", expected + max(byte_skip, 0), len(payload))
    elif encoding not in _TEXT:
        raise UnsupportedFormatError(path, f"NRRD encoding {encoding!r} is not supported (raw, gzip, bzip2, ascii)")
    try:
        data = nrrd.read_data(decoded, io.BytesIO(payload), str(path), index_order="F")
    except (nrrd.NRRDError, ValueError) as exc:
        raise UnreadableAssetError(path, f"NRRD data cannot be read ({exc})") from None
    affine, spatial, units, notes = _geometry(header, path)
    return NrrdImage(header, np.asarray(data), affine, spatial, units, notes)


def _geometry(header: dict[str, Any], path: Path) -> tuple[np.ndarray, list[int], str | None, list[str]]:
    """(RAS affine of the spatial axes, their positions, units, notes) from the header."""
    dimension = int(header["dimension"])
    notes: list[str] = []
    space = str(header.get("space", "")).strip().lower()
    directions = header.get("space directions")
    if directions is not None:
        rows = np.asarray(directions, dtype=np.float64)
        if rows.ndim != 2 or rows.shape != (dimension, 3):
            raise UnreadableAssetError(path, "NRRD space directions are not one 3-vector (or none) per axis")
        spatial = [i for i in range(dimension) if np.isfinite(rows[i]).all()]
        if len(spatial) != 3:
            raise UnsupportedFormatError(path, f"NRRD has {len(spatial)} spatial axes; a volume needs 3")
        linear = rows[spatial].T
        origin = np.asarray(header.get("space origin", np.zeros(3)), dtype=np.float64).reshape(-1)
        if origin.shape != (3,) or not np.isfinite(origin).all():
            raise UnreadableAssetError(path, "NRRD space origin is not three finite numbers")
    else:
        kinds = [str(k).lower() for k in header.get("kinds", ["domain"] * dimension)]
        spatial = [i for i, kind in enumerate(kinds) if kind in ("domain", "space")] if len(kinds) == dimension else []
        if len(spatial) != 3:
            spatial = list(range(dimension))[-3:] if dimension >= 3 else []
        if len(spatial) != 3:
            raise UnsupportedFormatError(path, f"NRRD has {dimension} axes; a volume needs 3")
        spacings = np.asarray(header.get("spacings", [np.nan] * dimension), dtype=np.float64).reshape(-1)
        steps = spacings[spatial] if len(spacings) == dimension else np.full(3, np.nan)
        if not (np.isfinite(steps).all() and (steps > 0).all()):
            steps = np.ones(3)
            notes.append("no space directions or spacings: 1 unit a voxel assumed")
        else:
            notes.append("no space directions: axis-aligned at the origin, spacings used")
        linear = np.diag(steps)
        origin = np.zeros(3)
    if not np.isfinite(linear).all() or abs(np.linalg.det(linear)) < 1e-12:
        raise UnreadableAssetError(path, "NRRD space directions are singular or not finite")
    flips = _TO_RAS.get(space)
    if flips is None:
        flips = (1.0, 1.0, 1.0)
        notes.append(f"space {space or 'not given'}: taken as RAS")
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = origin
    affine = np.diag([*flips, 1.0]) @ affine
    named = {str(u).strip().lower() for u in header.get("space units", [])}
    unit = named.pop() if len(named) == 1 else None
    units = unit if unit in UNIT_SCALE else ("mm" if space in _TO_RAS else None)
    return affine, spatial, units, notes


def first_volume(image: NrrdImage, path: Path) -> np.ndarray:
    """The image's spatial axes as (I, J, K) float32, the first sample of any other axis."""
    data = image.data
    others = [i for i in range(data.ndim) if i not in image.spatial]
    if others:
        count = int(np.prod([data.shape[i] for i in others]))
        image.notes.append(f"first of {count} samples along the non-spatial axes")
        index = tuple(0 if i in others else slice(None) for i in range(data.ndim))
        data = data[index]
    return np.asarray(data, dtype=np.float32)


def read_nrrd(path: Path, limits: Limits = DEFAULT_LIMITS) -> Volume:
    """A NRRD volume (``.nrrd`` or ``.nhdr``) as a ``Volume`` in RAS."""
    image = read_nrrd_image(path, limits)
    values = first_volume(image, path)
    log.debug("read %s: %s voxels, space %s", path, values.shape, image.header.get("space"))
    return Volume(values, image.affine, image.units, notes=image.notes)


__all__ = ["NrrdImage", "first_volume", "read_nrrd", "read_nrrd_image"]
