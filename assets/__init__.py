"""Anatomical twins: loading, validation and repair, levels of detail, cache, export, de-identification.

No OpenGL and no networking here; geometry is in metres.
"""

from assets.errors import AssetError
from assets.twin import LevelOfDetail, Structure, Twin

__all__ = ["AssetError", "LevelOfDetail", "Structure", "Twin"]
