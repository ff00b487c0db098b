"""InVesalius 3 projects (``.inv3``): the CT volume inside, as a ``Volume`` in RAS millimetres.

An ``.inv3`` file is a gzipped tar holding ``main.plist`` (the project: modality, the raw volume's
file name, numpy dtype and shape, the voxel spacing), the raw volume itself (``matrix.dat``, C order,
little-endian, shape ``(slices, rows, columns)``), masks and surfaces. Only ``main.plist`` and the
volume are read, straight from the archive (nothing is extracted to disk), and every size is taken
from the plist, never assumed: the declared shape times the item size must equal the member's size.

Orientation. The plist spacing is ``(column, row, slice)`` mm (VTK's x, y, z order) while the shape
is numpy's ``(slices, rows, columns)``. InVesalius stores axial slices (``orientation`` 1) the way a
DICOM series gives them except that rows are flipped (VTK's image origin is bottom-left): columns run
towards the patient's left, rows towards anterior, slices towards superior. So voxel (k, r, c) lies at
RAS ``x = -c*sx``, ``y = +r*sy``, ``z = +k*sz``, with the volume centred on the origin. On the
Debian example (``Cranium.inv3``) this puts the headrest posterior, the face anterior and the vertex
superior, as a look at the rendered skull confirms. Left and right cannot be read from the file (no
DICOM orientation survives in it); the DICOM convention that InVesalius keeps is assumed.
"""

from __future__ import annotations

import logging
import plistlib
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from assets.errors import UnreadableAssetError, UnsupportedFormatError
from assets.loaders.limits import DEFAULT_LIMITS, Limits, check_count
from assets.loaders.volume import Volume

log = logging.getLogger(__name__)

#: Volume dtypes InVesalius writes; anything else is refused.
_DTYPES = {"int16", "uint16", "int8", "uint8", "int32", "float32"}

#: InVesalius' code for axial acquisitions (its ``constants.AXIAL``).
_AXIAL = 1

#: The plist is a few kilobytes; anything far larger is not an InVesalius project.
_MAX_PLIST_BYTES = 1 << 20


def _member(archive: tarfile.TarFile, name: str, path: Path) -> tarfile.TarInfo:
    """The regular-file member whose base name is ``name`` (InVesalius nests them in one folder)."""
    found = [m for m in archive.getmembers() if m.isfile() and Path(m.name).name == name]
    if not found:
        raise UnreadableAssetError(path, f"is not an InVesalius project (no {name} inside)")
    if len(found) > 1:
        raise UnreadableAssetError(path, f"holds {len(found)} files named {name}; expected one")
    return found[0]


def _read_member(archive: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> bytes:
    handle = archive.extractfile(member)
    if handle is None:
        raise UnreadableAssetError(path, f"member {member.name} cannot be read")
    with handle:
        return handle.read()


def _project(archive: tarfile.TarFile, path: Path) -> dict[str, Any]:
    member = _member(archive, "main.plist", path)
    if member.size > _MAX_PLIST_BYTES:
        raise UnreadableAssetError(path, f"main.plist is {member.size} bytes; an InVesalius project's is a few kB")
    try:
        project = plistlib.loads(_read_member(archive, member, path))
    except (plistlib.InvalidFileException, ValueError, Exception) as exc:  # plistlib raises several kinds
        raise UnreadableAssetError(path, f"main.plist cannot be parsed ({type(exc).__name__})") from None
    if not isinstance(project, dict):
        raise UnreadableAssetError(path, "main.plist is not a dictionary")
    return project


def read_inv3(path: Path, limits: Limits = DEFAULT_LIMITS) -> Volume:
    """The CT (or MR) volume of an InVesalius 3 project, values as stored (HU for CT).

    Raises
    ------
    UnreadableAssetError
        Not a tar.gz project, or its plist is missing, malformed or disagrees with the volume's size.
    UnsupportedFormatError
        A dtype or orientation this reader does not handle.
    ResourceLimitError
        The declared volume exceeds ``limits.max_voxels``.
    """
    try:
        archive = tarfile.open(path, mode="r:*")  # noqa: SIM115 - closed by the with block below
    except (tarfile.TarError, OSError) as exc:
        raise UnreadableAssetError(path, f"is not an InVesalius project (not a tar archive: {exc})") from None
    with archive:
        project = _project(archive, path)
        matrix = project.get("matrix")
        if not isinstance(matrix, dict):
            raise UnreadableAssetError(path, "main.plist has no 'matrix' entry")
        dtype_name = str(matrix.get("dtype", ""))
        if dtype_name not in _DTYPES:
            raise UnsupportedFormatError(path, f"volume dtype {dtype_name!r} is not supported")
        shape = matrix.get("shape")
        if (not isinstance(shape, list) or len(shape) != 3
                or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)):
            raise UnreadableAssetError(path, f"main.plist matrix shape {shape!r} is not three positive integers")
        spacing = project.get("spacing")
        if (not isinstance(spacing, list) or len(spacing) != 3
                or not all(isinstance(s, (int, float)) and not isinstance(s, bool) and 0 < s < 100 for s in spacing)):
            raise UnreadableAssetError(path, f"main.plist spacing {spacing!r} is not three sizes in mm")
        orientation = project.get("orientation", _AXIAL)
        if orientation != _AXIAL:
            raise UnsupportedFormatError(path, f"orientation {orientation!r} is not axial; only axial projects "
                                         "are supported")
        voxels = shape[0] * shape[1] * shape[2]
        check_count(path, "voxels", voxels, limits.max_voxels)
        dtype = np.dtype(dtype_name).newbyteorder("<")
        member = _member(archive, Path(str(matrix.get("filename", "matrix.dat"))).name, path)
        if member.size != voxels * dtype.itemsize:
            raise UnreadableAssetError(path, f"{member.name} is {member.size} bytes; shape {shape} of "
                                       f"{dtype_name} needs {voxels * dtype.itemsize}")
        raw = _read_member(archive, member, path)
    if len(raw) != voxels * dtype.itemsize:
        raise UnreadableAssetError(path, f"{member.name} is truncated")
    data = np.frombuffer(raw, dtype=dtype).reshape(shape).astype(np.float32)
    sx, sy, sz = (float(s) for s in spacing)
    slices, rows, cols = shape
    affine = np.array([
        [0.0, 0.0, -sx, sx * (cols - 1) / 2.0],
        [0.0, sy, 0.0, -sy * (rows - 1) / 2.0],
        [sz, 0.0, 0.0, -sz * (slices - 1) / 2.0],
        [0.0, 0.0, 0.0, 1.0],
    ])
    modality = str(project.get("modality", "") or "")
    notes = [f"InVesalius project ({project.get('invesalius_version', '?')}), axial, {slices}x{rows}x{cols} "
             f"voxels of {sx:g}x{sy:g}x{sz:g} mm; left-right as DICOM stores it (not recorded in the file)"]
    log.info("read %s: %s", path, notes[0])
    return Volume(data, affine, "mm", modality=modality, notes=notes)


__all__ = ["read_inv3"]
