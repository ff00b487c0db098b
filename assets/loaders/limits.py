"""Resource guards: every size a file declares is checked before a parser allocates for it.

A hostile file can declare a billion triangles in a 100-byte header, or expand from kilobytes to
gigabytes when decompressed. Loaders read the raw bytes through ``read_source`` (file size cap,
streaming gzip decompression with an output cap) and compare each declared count with both the
configured maximum (``ResourceLimitError``) and the bytes actually present (``UnreadableAssetError``)
before handing anything to trimesh, nibabel or pydicom.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

from assets.errors import ResourceLimitError, UnreadableAssetError

log = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Largest input the loaders accept. Defaults fit a whole-body CT on a 24 GiB machine.

    Attributes
    ----------
    max_file_bytes : size of a file on disk.
    max_decompressed_bytes : size of a gzip stream (.gii.gz, .nii.gz) once expanded.
    max_vertices, max_faces : counts declared by a mesh file or produced by marching cubes.
    max_voxels : voxels of a volume (float32 working copy: 4 bytes each).
    max_dicom_files : files read from one DICOM directory.
    max_header_bytes : a text header (PLY) or JSON chunk (glTF).
    max_gzip_ratio : expansion factor of a gzip stream beyond ``gzip_ratio_floor`` bytes. Real surfaces
        and volumes expand 2-50x (a mostly empty volume a little more); deflate cannot exceed about
        1,032x, which is what a bomb of zeros reaches, so a bomb fails within milliseconds instead of
        after inflating gigabytes.
    gzip_ratio_floor : output size below which the ratio is not checked (tiny files expand oddly).
    max_structures : structures one file may make (labels of a label map, segments, ROIs); each is a
        marching-cubes pass, and FreeSurfer's whole lookup table has about 1,300 entries.
    """

    max_file_bytes: int = 2 << 30
    max_decompressed_bytes: int = 2 << 30
    max_vertices: int = 20_000_000
    max_faces: int = 40_000_000
    max_voxels: int = 1 << 28
    max_dicom_files: int = 4096
    max_header_bytes: int = 64 << 20
    max_gzip_ratio: int = 200
    gzip_ratio_floor: int = 64 << 20
    max_structures: int = 4096


DEFAULT_LIMITS = Limits()


def check_count(source: str | Path, what: str, count: int, maximum: int) -> None:
    """Raise ``ResourceLimitError`` when a declared ``count`` of ``what`` is negative or above ``maximum``."""
    if count < 0:
        raise UnreadableAssetError(source, f"declares a negative number of {what} ({count})")
    if count > maximum:
        raise ResourceLimitError(source, f"declares {count:,} {what}, above the limit of {maximum:,}")


def check_fits(source: str | Path, what: str, needed: int, available: int) -> None:
    """Raise ``UnreadableAssetError`` when ``what`` needs more bytes than the file holds (truncated or forged)."""
    if needed > available:
        raise UnreadableAssetError(source, f"{what} needs {needed:,} bytes but the file holds only "
                                   f"{available:,} (truncated or corrupt)")


def gunzip(data: bytes, source: str | Path, limit: int, *, max_ratio: int | None = None,
           ratio_floor: int = 0) -> bytes:
    """Decompress a gzip stream (one or more members), never producing more than ``limit`` bytes,
    nor (with ``max_ratio``) more than ``max(ratio_floor, max_ratio * len(data))`` bytes.

    Raises
    ------
    ResourceLimitError
        The stream expands beyond ``limit`` (a gzip bomb, or simply too large).
    UnreadableAssetError
        The stream is corrupt or truncated.
    """
    if max_ratio is not None:
        ratio_cap = max(ratio_floor, max_ratio * len(data))
        if ratio_cap < limit:
            limit, reason = ratio_cap, f"more than {max_ratio}x its compressed size (gzip bomb?)"
        else:
            reason = ""
    else:
        reason = ""
    out: list[bytes] = []
    produced = 0
    rest = data
    try:
        while rest:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            pending = rest
            while pending:
                chunk = inflater.decompress(pending, limit - produced + 1)
                produced += len(chunk)
                if produced > limit:
                    raise ResourceLimitError(source, f"expands beyond {limit:,} bytes when decompressed, "
                                             + (reason or "above the size limit (gzip bomb or oversized file)"))
                out.append(chunk)
                pending = inflater.unconsumed_tail
                if inflater.eof:
                    break
            if not inflater.eof:
                raise UnreadableAssetError(source, "gzip stream is truncated")
            rest = inflater.unused_data
            if rest and not rest.startswith(GZIP_MAGIC):
                break  # trailing padding after the last member, as some writers leave
    except zlib.error as exc:
        raise UnreadableAssetError(source, f"corrupt gzip stream ({exc})") from None
    return b"".join(out)


def beside(header: Path, name: str, field: str) -> Path:
    """The detached data file ``name`` that ``header`` names in ``field``, which must be one existing
    file in the header's own folder: an absolute path, ``..`` or a symbolic link out of the folder is
    refused (a header must not make medverse read, say, ``/etc/passwd`` or another patient's scan).

    Raises
    ------
    UnreadableAssetError
        The file lies outside the folder or does not exist.
    """
    folder = header.parent.resolve()
    target = Path(name)
    resolved = (folder / target).resolve()
    if target.is_absolute() or not resolved.is_relative_to(folder):
        raise UnreadableAssetError(header, f"{field} {name[:80]!r} points outside the header's folder; "
                                   "detached data must sit beside its header")
    if not resolved.is_file():
        raise UnreadableAssetError(header, f"{field} {name[:80]!r} does not exist beside the header")
    return resolved


def read_source(path: Path, limits: Limits = DEFAULT_LIMITS, *, decompress: bool | None = None) -> bytes:
    """The bytes of ``path``, gunzipped when it is gzip (``decompress=None``: by its magic number).

    Raises
    ------
    ResourceLimitError
        The file, or its decompressed content, is larger than ``limits`` allow.
    UnreadableAssetError
        The file cannot be read, is empty, or is a corrupt gzip stream.
    """
    try:
        size = path.stat().st_size
        if size > limits.max_file_bytes:
            raise ResourceLimitError(path, f"is {size:,} bytes, above the limit of {limits.max_file_bytes:,}")
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableAssetError(path, f"cannot be read ({exc.strerror or exc})") from None
    if not data:
        raise UnreadableAssetError(path, "is empty")
    if decompress or (decompress is None and data.startswith(GZIP_MAGIC)):
        data = gunzip(data, path, limits.max_decompressed_bytes, max_ratio=limits.max_gzip_ratio,
                      ratio_floor=limits.gzip_ratio_floor)
        if not data:
            raise UnreadableAssetError(path, "is empty once decompressed")
    return data
