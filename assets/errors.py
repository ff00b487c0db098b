"""Errors raised by ``assets``: one small hierarchy, every message names the file and the problem.

Every error a user can cause with a file (corrupt, truncated, hostile, implausible) is an
``AssetError``; the CLI prints ``str(error)`` as its one-line message.
"""

from __future__ import annotations

from pathlib import Path


class AssetError(Exception):
    """Base class: something is wrong with an asset. ``source`` names the file or twin."""

    def __init__(self, source: str | Path | None, message: str) -> None:
        self.source = str(source) if source is not None else None
        self.message = message
        super().__init__(f"{self.source}: {message}" if self.source else message)


class UnreadableAssetError(AssetError):
    """The file cannot be parsed: corrupt, truncated, empty, or not the format it claims."""


class UnsupportedFormatError(AssetError):
    """No loader handles this file type."""


class ResourceLimitError(AssetError):
    """The file declares or expands to more than the configured limits (counts, bytes, ratio)."""


class UnknownTwinError(AssetError):
    """No bundled or imported twin has this name."""


class CacheError(AssetError):
    """A cache entry is missing, stale or damaged; the caller rebuilds it."""


class ExportError(AssetError):
    """A twin cannot be written to the requested format."""


class GeometryError(AssetError):
    """Base class for problems found by validation of a structure's mesh."""


class EmptyMeshError(GeometryError):
    """No vertices or no faces."""


class NonFiniteVertexError(GeometryError):
    """A vertex coordinate is NaN or infinite."""


class FaceIndexError(GeometryError):
    """A face refers to a vertex index outside the vertex array."""


class DegenerateFacesError(GeometryError):
    """Faces with repeated vertex indices or (near) zero area."""


class DuplicateFacesError(GeometryError):
    """The same triangle appears more than once."""


class NonManifoldError(GeometryError):
    """An edge is shared by more than two faces."""


class WindingError(GeometryError):
    """Neighbouring faces disagree on orientation, or normals point inwards."""


class NotWatertightError(GeometryError):
    """The surface has boundary edges (holes)."""


class ImplausibleBoundsError(GeometryError):
    """The extent is outside what an anatomical structure can measure (about 1 mm to 3 m)."""
