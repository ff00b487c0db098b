"""Frames to PNG files: both eyes side by side, streamed a band of rows at a time.

GL-free except for reading the renderer's image back through :meth:`Renderer.read_stereo`; the PNG
encoding is plain zlib (level 1, no row filter, no metadata chunks), so the same pixels give the same
bytes, and a sha256 of the pixels comes back with every file written.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


class PngError(RuntimeError):
    """A PNG could not be written as asked (a band of the wrong size)."""


#: Rows read back and compressed at a time when writing a PNG: the image is never whole in memory
#: (at 1832x1920 per eye it would be 28 MB on top of the renderer's).
_PNG_BAND_ROWS = 64


def _png_chunk(out: Any, kind: bytes, data: bytes) -> None:
    out.write(struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def write_png_rows(path: Path, width: int, height: int, bands: Iterator[np.ndarray], digest: Any = None) -> None:
    """Write an 8-bit RGBA PNG of ``width`` x ``height`` from ``bands``: (rows, width, 4) uint8 arrays,
    top to bottom, compressed as they come (zlib level 1, no row filter, no metadata chunks: the
    same pixels give the same bytes). ``digest`` (a hashlib object), if given, is fed the pixels."""
    packer = zlib.compressobj(1)
    rows_written = 0
    with open(path, "wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n")
        _png_chunk(out, b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
        for band in bands:
            rows = np.zeros((len(band), 1 + 4 * width), dtype=np.uint8)  # column 0: filter type 0
            rows[:, 1:] = band.reshape(len(band), 4 * width)
            if digest is not None:
                digest.update(np.ascontiguousarray(band).data)
            data = packer.compress(rows.data)
            if data:
                _png_chunk(out, b"IDAT", data)
            rows_written += len(band)
        _png_chunk(out, b"IDAT", packer.flush())
        _png_chunk(out, b"IEND", b"")
    if rows_written != height:
        raise PngError(f"PNG {path}: got {rows_written} rows, expected {height}")


def write_stereo_png(renderer: Any, path: str | Path) -> str:
    """Write the renderer's last frame, both eyes side by side (left eye on the left), to ``path``;
    return the sha256 (hex) of its RGBA pixels. Read back :data:`_PNG_BAND_ROWS` rows at a time."""
    width, height = renderer.config.width, renderer.config.height
    bands = (renderer.read_stereo(top, _PNG_BAND_ROWS) for top in range(0, height, _PNG_BAND_ROWS))
    digest = hashlib.sha256()
    write_png_rows(Path(path), 2 * width, height, bands, digest)
    return digest.hexdigest()
