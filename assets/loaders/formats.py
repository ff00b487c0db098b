"""The imaging formats beyond meshes, GIFTI, NIfTI and DICOM images: which module reads each, by kind.

``assets.loaders.load`` asks here for the kinds it does not read itself. Volumes (NRRD, MetaImage)
come back as ``Volume`` and go through the same threshold path as NIfTI; segmentations, label maps
with a colour table, VTK polydata and DICOM SEG/RTSTRUCT come back as named structures. Each reader
(and the library behind it) is imported on first use only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from assets.loaders.limits import Limits
from assets.loaders.volume import Volume
from assets.twin import Structure

#: Suffixes (lower case) of these formats and the kind each means; ``.seg.nrrd`` before ``.nrrd``.
SUFFIXES: dict[str, str] = {
    ".seg.nrrd": "seg-nrrd", ".nrrd": "nrrd", ".nhdr": "nrrd", ".mha": "metaimage", ".mhd": "metaimage",
    ".vtk": "vtk", ".vtp": "vtp",
}
#: Kinds read as a scalar volume.
VOLUMES = frozenset({"nrrd", "metaimage"})
#: Kinds read as named structures.
STRUCTURES = frozenset({"seg-nrrd", "vtk", "vtp"})
#: Libraries whose versions a twin's provenance records, by kind.
LIBRARIES: dict[str, tuple[str, ...]] = {
    "nrrd": ("pynrrd",), "metaimage": ("metaimageio",), "seg-nrrd": ("pynrrd", "scipy", "scikit-image"),
    "vtk": ("vtk",), "vtp": ("vtk",),
}


def read_volume(path: Path, kind: str, limits: Limits) -> Volume:
    """The volume of a file of one of the ``VOLUMES`` kinds, in RAS."""
    if kind == "metaimage":
        from assets.loaders import metaimage  # noqa: PLC0415 - each format's reader (and its library) on first use

        return metaimage.read_metaimage(path, limits)
    from assets.loaders import nrrd_image  # noqa: PLC0415 - as above

    return nrrd_image.read_nrrd(path, limits)


def read_structures(path: Path, kind: str, limits: Limits, provenance: dict[str, Any]
                    ) -> tuple[list[Structure], str | None, dict[str, str]]:
    """Structures (source units), the unit the file states and imaging metadata, for ``STRUCTURES`` kinds."""
    notes: list[str] = []
    provenance["notes"] = notes
    if kind in ("vtk", "vtp"):
        from assets.loaders import vtk_polydata  # noqa: PLC0415 - each format's reader (and its library) on first use

        return vtk_polydata.load_polydata(path, kind, limits, notes), None, {}
    from assets.loaders import slicer_seg  # noqa: PLC0415 - as above

    return slicer_seg.load_segmentation(path, limits, notes), "mm", {}


__all__ = ["LIBRARIES", "STRUCTURES", "SUFFIXES", "VOLUMES", "read_structures", "read_volume"]
