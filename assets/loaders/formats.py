"""The imaging formats beyond meshes, GIFTI, NIfTI and DICOM images: which module reads each, by kind.

``assets.loaders.load`` asks here for the kinds it does not read itself. Volumes (NRRD, MetaImage)
come back as ``Volume`` and go through the same threshold path as NIfTI; segmentations, label maps
with a colour table, VTK polydata and DICOM SEG/RTSTRUCT come back as named structures. Each reader
(and the library behind it) is imported on first use only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from assets.errors import UnsupportedFormatError
from assets.loaders.limits import Limits
from assets.loaders.volume import Volume
from assets.twin import Structure

log = logging.getLogger(__name__)

#: Suffixes (lower case) of these formats and the kind each means; ``.seg.nrrd`` before ``.nrrd``.
SUFFIXES: dict[str, str] = {
    ".seg.nrrd": "seg-nrrd", ".nrrd": "nrrd", ".nhdr": "nrrd", ".mha": "metaimage", ".mhd": "metaimage",
    ".vtk": "vtk", ".vtp": "vtp",
}
#: Kinds read as a scalar volume.
VOLUMES = frozenset({"nrrd", "metaimage"})
#: Kinds read as named structures.
STRUCTURES = frozenset({"seg-nrrd", "vtk", "vtp", "dicom-seg", "rtstruct"})
#: Kinds that may be label maps, read with a colour table.
LABEL_MAPS = frozenset({"nifti", "nrrd", "metaimage"})
#: Libraries whose versions a twin's provenance records, by kind.
LIBRARIES: dict[str, tuple[str, ...]] = {
    "nrrd": ("pynrrd",), "metaimage": ("metaimageio",), "seg-nrrd": ("pynrrd", "scipy", "scikit-image"),
    "vtk": ("vtk",), "vtp": ("vtk",), "dicom-seg": ("pydicom", "highdicom", "scipy", "scikit-image"),
    "rtstruct": ("pydicom", "scipy", "scikit-image"),
}


#: DICOM SOP classes that hold structures rather than an image, and the kind each is.
_DICOM_OBJECTS = {"1.2.840.10008.5.1.4.1.1.66.4": "dicom-seg", "1.2.840.10008.5.1.4.1.1.481.3": "rtstruct"}


def refine(path: Path, kind: str) -> str:
    """A DICOM file's kind by its SOP class: a segmentation is not read as an image."""
    if kind != "dicom" or path.is_dir():
        return kind
    import pydicom  # noqa: PLC0415 - pydicom only for DICOM files

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"], force=True)
    except Exception:  # the image reader reports what is wrong with the file
        return kind
    return _DICOM_OBJECTS.get(str(ds.get("SOPClassUID", "")), kind)


def read_volume(path: Path, kind: str, limits: Limits) -> Volume:
    """The volume of a file of one of the ``VOLUMES`` kinds, in RAS."""
    if kind == "metaimage":
        from assets.loaders import metaimage  # noqa: PLC0415 - each format's reader (and its library) on first use

        return metaimage.read_metaimage(path, limits)
    from assets.loaders import nrrd_image  # noqa: PLC0415 - as above

    return nrrd_image.read_nrrd(path, limits)


def read_structures(path: Path, kind: str, limits: Limits, provenance: dict[str, Any], labels: Path | None = None
                    ) -> tuple[list[Structure], str | None, dict[str, str]]:
    """Structures (source units), the unit the file states and imaging metadata, for ``STRUCTURES``
    kinds, or for a label-map volume of a ``LABEL_MAPS`` kind named by the colour table ``labels``."""
    notes: list[str] = []
    provenance["notes"] = notes
    if labels is not None:
        return _label_map(path, kind, labels, limits, notes)
    if kind in ("dicom-seg", "rtstruct"):
        from assets import deid  # noqa: PLC0415 - each format's reader (and its library) on first use
        from assets.loaders import dicom_seg, rtstruct  # noqa: PLC0415 - as above
        from assets.loaders.labels import distinct_names  # noqa: PLC0415 - as above

        reader = dicom_seg.load_dicom_seg if kind == "dicom-seg" else rtstruct.load_rtstruct
        structures, ds = reader(path, limits, notes)
        distinct_names(structures)
        deid.deidentify(ds)  # before any of its metadata travels with the twin
        return structures, "mm", deid.twin_metadata(ds)
    if kind in ("vtk", "vtp"):
        from assets.loaders import vtk_polydata  # noqa: PLC0415 - as above

        return vtk_polydata.load_polydata(path, kind, limits, notes), None, {}
    from assets.loaders import slicer_seg  # noqa: PLC0415 - as above

    return slicer_seg.load_segmentation(path, limits, notes), "mm", {}


def structures_beside(volume: Volume, limits: Limits) -> list[Structure]:
    """The structures of the DICOM SEG and RTSTRUCT objects found beside a DICOM series in its folder
    (``volume.beside``), as a PACS export of a study leaves them: those in the series' frame of reference
    (or stating none) are read as their own import would read them (RAS millimetres, like the series'
    surface); one in another frame of reference, or unreadable, is left out. What was added and what was
    not is counted in ``volume.notes``, without file names (they are patient data as often as not)."""
    from assets.errors import AssetError  # noqa: PLC0415 - as the readers below
    from assets.loaders import dicom_seg, rtstruct  # noqa: PLC0415 - each format's reader on first use
    from assets.loaders.labels import distinct_names  # noqa: PLC0415 - as above

    structures: list[Structure] = []
    added: dict[str, int] = {}
    other_frame: dict[str, int] = {}
    unreadable: dict[str, int] = {}
    for kind, path in volume.beside:
        reader = dicom_seg.load_dicom_seg if kind == "DICOM SEG" else rtstruct.load_rtstruct
        try:
            found, ds = reader(path, limits, [])
        except AssetError as exc:
            log.info("%s beside the images not added: %s", kind, exc.message)
            unreadable[kind] = unreadable.get(kind, 0) + 1
            continue
        frame = _frame_of_reference(ds)
        if volume.frame_of_reference and frame and frame != volume.frame_of_reference:
            other_frame[kind] = other_frame.get(kind, 0) + 1
            continue
        distinct_names(found)  # within the object, as its own import names them
        structures += found
        added[kind] = added.get(kind, 0) + 1
    if added:
        volume.notes.append(f"added {len(structures)} structure{'s' if len(structures) != 1 else ''} from the "
                            f"{_objects(added)} beside the images")  # fmt: skip
    if other_frame:
        volume.notes.append(f"{_objects(other_frame)} in another frame of reference than the images: not added "
                            "(import each file by itself)")  # fmt: skip
    if unreadable:
        volume.notes.append(f"{_objects(unreadable)} beside the images could not be read: not added")
    return structures


def _frame_of_reference(ds: Any) -> str:
    """A SEG's FrameOfReferenceUID, or the first an RTSTRUCT references (its structure set's, else its
    first region's); "" when none is stated."""
    frame = str(ds.get("FrameOfReferenceUID", "") or "")
    for item in ds.get("ReferencedFrameOfReferenceSequence", []) or []:
        frame = frame or str(item.get("FrameOfReferenceUID", "") or "")
    for item in ds.get("StructureSetROISequence", []) or []:
        frame = frame or str(item.get("ReferencedFrameOfReferenceUID", "") or "")
    return frame


def _objects(counts: dict[str, int]) -> str:
    return " and ".join(f"{n} {kind} object{'s' if n > 1 else ''}" for kind, n in sorted(counts.items()))


def _label_map(path: Path, kind: str, table_path: Path, limits: Limits, notes: list[str]
               ) -> tuple[list[Structure], str | None, dict[str, str]]:
    from assets.loaders import labels  # noqa: PLC0415 - as above
    from assets.loaders.volume import read_nifti  # noqa: PLC0415 - as above

    if kind not in LABEL_MAPS:
        raise UnsupportedFormatError(path, f"a colour table names the values of a label-map volume (NIfTI, NRRD, "
                                     f"MetaImage), not of a {kind} file")
    table = labels.read_colour_table(table_path, limits)
    volume = read_nifti(path, limits) if kind == "nifti" else read_volume(path, kind, limits)
    notes.extend(volume.notes)
    values = labels.as_labels(volume.data, path)
    structures = labels.label_structures(values, volume.affine, table, path, limits, notes=notes)
    return structures, volume.units, volume.metadata


__all__ = ["LABEL_MAPS", "LIBRARIES", "STRUCTURES", "SUFFIXES", "VOLUMES", "read_structures", "read_volume", "refine"]
