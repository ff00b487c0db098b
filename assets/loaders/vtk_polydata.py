"""VTK polydata (legacy ``.vtk`` and XML ``.vtp``) through VTK's own readers.

Why VTK: ``.vtp`` is what InVesalius, 3D Slicer and ParaView save surfaces as, usually zlib-compressed
and base64- or raw-appended, and VTK (the PyPI ``vtk`` wheel, large but Kitware's reference
implementation) is the only well-kept reader of it; meshio, the light alternative, reads legacy
``.vtk`` and ``.vtu`` but not ``.vtp``, and is barely maintained. One library reads both files here.

VTK's C++ readers allocate what a header declares and report problems on an output window instead of
raising, so before a reader sees a file its declared counts are checked here: every ``POINTS``,
``POLYGONS``, ``TRIANGLE_STRIPS``, ``LINES``, ``VERTICES`` count and every ``*_DATA``/``FIELD`` array
of a legacy file, and every ``NumberOf*`` and ``NumberOfTuples``/``NumberOfComponents`` of an XML
file, against the limits and, where the data is not compressed, the bytes present. Errors the reader
reports are collected by an observer and raised as one line.

Polygons and triangle strips become triangles (``vtkTriangleFilter``); lines and vertices are
dropped. Coordinates carry no unit (detected from the extent, mm for anatomy). 3D Slicer marks
models saved in its LPS convention with ``SPACE=LPS`` in the header; those are flipped to RAS.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from assets.errors import EmptyMeshError, UnreadableAssetError, UnsupportedFormatError
from assets.loaders.limits import DEFAULT_LIMITS, Limits, check_count, check_fits, read_source
from assets.twin import Structure

log = logging.getLogger(__name__)

_LEGACY_COUNT = re.compile(rb"^[ \t]*(POINTS|POLYGONS|TRIANGLE_STRIPS|LINES|VERTICES|POINT_DATA|CELL_DATA|OFFSETS|"
                           rb"CONNECTIVITY)[ \t]+(-?\d+)(?:[ \t]+(-?\d+))?", re.MULTILINE)
_LEGACY_FIELD = re.compile(rb"^[ \t]*\S+[ \t]+(-?\d+)[ \t]+(-?\d+)[ \t]+(?:float|double|int|unsigned_int|long|"
                           rb"unsigned_long|short|unsigned_short|char|unsigned_char|bit|vtkIdType)\b", re.MULTILINE)
_XML_COUNT = re.compile(rb'(NumberOf(?:Points|Polys|Strips|Lines|Verts|Tuples|Components|Cells|Pieces))\s*=\s*"\s*(-?\d+)')
_VTK_PREFIX = re.compile(r"^\w+ \(0x[0-9a-fA-F]+\): ")
_SPACE_LPS = re.compile(rb"SPACE\s*=\s*LPS", re.IGNORECASE)
#: Bytes one value of a legacy array takes at least: 4 in binary (float, int) and 2 in ASCII ("0 ").
_MIN_BYTES = {True: 4, False: 2}


def _vtk(path: Path) -> Any:
    try:
        from vtkmodules import vtkCommonCore, vtkFiltersCore, vtkIOLegacy, vtkIOXML  # noqa: PLC0415 - VTK only for VTK files
        from vtkmodules.util import numpy_support  # noqa: PLC0415 - as above
    except ImportError:
        raise UnsupportedFormatError(path, "reading VTK polydata needs the vtk package "
                                     "(pip install vtk, or medverse[vtk])") from None
    return vtkCommonCore, vtkIOLegacy, vtkIOXML, vtkFiltersCore, numpy_support


def _check_legacy(data: bytes, path: Path, limits: Limits) -> None:
    lines = data[:1024].split(b"\n", 4)
    if len(lines) < 4 or not lines[0].lower().startswith(b"# vtk datafile"):
        raise UnreadableAssetError(path, "is not a legacy VTK file (no '# vtk DataFile' line)")
    binary = lines[2].strip().upper() == b"BINARY"
    dataset = lines[3].split()
    if dataset[:1] != [b"DATASET"] or dataset[1:2] != [b"POLYDATA"]:
        kind = dataset[1].decode("latin-1")[:30] if len(dataset) > 1 else "none"
        raise UnsupportedFormatError(path, f"is a VTK {kind} dataset; only POLYDATA surfaces are read")
    per_value = _MIN_BYTES[binary]
    for match in _LEGACY_COUNT.finditer(data):
        keyword = match.group(1).decode()
        count = int(match.group(2))
        size = int(match.group(3)) if match.group(3) is not None else count
        maximum = limits.max_vertices if keyword in ("POINTS", "POINT_DATA") else limits.max_faces
        check_count(path, f"{keyword} entries", count, maximum)
        check_count(path, f"{keyword} values", size, 4 * max(limits.max_vertices, limits.max_faces))
        values = 3 * count if keyword == "POINTS" else size
        check_fits(path, f"{keyword} {count:,}", values * per_value, len(data))
    for match in _LEGACY_FIELD.finditer(data):
        components, tuples = int(match.group(1)), int(match.group(2))
        check_count(path, "values in a field array", components * tuples, 4 * limits.max_vertices)
        check_fits(path, f"a field array of {components * tuples:,} values", components * tuples * per_value, len(data))


def _check_xml(data: bytes, path: Path, limits: Limits) -> None:
    if not data.lstrip().startswith(b"<"):
        raise UnreadableAssetError(path, "is not an XML VTK file")
    appended = data.find(b"<AppendedData")
    header = data if appended < 0 else data[:appended]
    if b'type="PolyData"' not in header:
        raise UnsupportedFormatError(path, "is not XML VTK polydata (VTKFile type=\"PolyData\")")
    components = 1
    for match in _XML_COUNT.finditer(header):
        name, count = match.group(1).decode(), int(match.group(2))
        if name == "NumberOfComponents":
            check_count(path, "components per value", count, 64)
            components = max(components, count)
            continue
        maximum = limits.max_vertices if name in ("NumberOfPoints", "NumberOfTuples") else limits.max_faces
        check_count(path, name, count, maximum)
    points = sum(int(m.group(2)) for m in _XML_COUNT.finditer(header) if m.group(1) == b"NumberOfPoints")
    check_count(path, "point values", points * components, 4 * limits.max_vertices)
    compressed = b"compressor=" in header
    if not compressed:  # raw or base64 data holds at least 4 bytes per point coordinate
        check_fits(path, f"{points:,} points", 12 * points * 3 // 4, len(data))


def _errors(reader: Any) -> list[str]:
    """Attach an observer that collects the reader's error messages (VTK does not raise)."""
    messages: list[str] = []

    def collect(caller: Any, event: str, call_data: Any = None) -> None:
        messages.append(str(call_data or event))

    collect.CallDataType = "string0"  # type: ignore[attr-defined]  # VTK passes the message as call data
    reader.AddObserver("ErrorEvent", collect)
    return messages


def load_polydata(path: Path, kind: str, limits: Limits = DEFAULT_LIMITS, notes: list[str] | None = None
                  ) -> list[Structure]:
    """The triangles of a ``.vtk`` (``kind`` ``"vtk"``) or ``.vtp`` (``"vtp"``) file as one structure,
    coordinates as stored (RAS; LPS files marked by Slicer flipped).

    Raises
    ------
    UnreadableAssetError
        Not VTK polydata, a count beyond the bytes present, or an error the VTK reader reported.
    UnsupportedFormatError
        vtk is missing, or the file holds another kind of dataset.
    ResourceLimitError
        A declared count beyond ``limits``.
    EmptyMeshError
        No polygon or triangle strip.
    """
    from assets.loaders import STRUCTURE_NAME  # noqa: PLC0415 - the package is loaded by the time a file is read

    data = read_source(path, limits, decompress=False)
    (_check_legacy if kind == "vtk" else _check_xml)(data, path, limits)
    # VTK after the checks: importing it takes longer than refusing a bad file
    vtk_core, vtk_legacy, vtk_xml, vtk_filters, numpy_support = _vtk(path)
    if kind == "vtk":
        reader = vtk_legacy.vtkPolyDataReader()
        reader.ReadFromInputStringOn()
        reader.SetBinaryInputString(data, len(data))
        lps = bool(_SPACE_LPS.search(data[:1024].split(b"\n", 2)[1] if data.count(b"\n", 0, 1024) >= 2 else b""))
    else:
        reader = vtk_xml.vtkXMLPolyDataReader()
        reader.ReadFromInputStringOn()
        reader.SetInputString(data)
        appended = data.find(b"<AppendedData")
        lps = bool(_SPACE_LPS.search(data if appended < 0 else data[:appended]))
    errors = _errors(reader)
    # VTK prints the parser's and the pipeline's errors on stderr; the reader's reach the observer,
    # and the user gets them as one line, so printing is off while this file is read.
    logger = vtk_core.vtkLogger
    cutoff = logger.GetCurrentVerbosityCutoff()
    logger.SetStderrVerbosity(logger.VERBOSITY_OFF)
    try:
        reader.Update()
    finally:
        logger.SetStderrVerbosity(cutoff)
    if errors or reader.GetErrorCode():
        text = (errors[0].strip().splitlines() or ["error"])[-1] if errors else f"error code {reader.GetErrorCode()}"
        detail = _VTK_PREFIX.sub("", text)[:160]
        raise UnreadableAssetError(path, f"VTK cannot read it ({detail})")
    triangles = vtk_filters.vtkTriangleFilter()
    triangles.SetInputData(reader.GetOutput())
    triangles.PassLinesOff()
    triangles.PassVertsOff()
    triangles.Update()
    polydata = triangles.GetOutput()
    if polydata.GetNumberOfPolys() == 0 or polydata.GetNumberOfPoints() == 0:
        raise EmptyMeshError(path, "holds no polygons or triangle strips")
    vertices = numpy_support.vtk_to_numpy(polydata.GetPoints().GetData()).astype(np.float64)
    faces = numpy_support.vtk_to_numpy(polydata.GetPolys().GetConnectivityArray()).reshape(-1, 3)
    if lps:
        vertices[:, :2] *= -1.0  # a half turn about z: the winding stays as it was
        if notes is not None:
            notes.append("SPACE=LPS (3D Slicer's convention): flipped to RAS")
    log.debug("read %s: %d points, %d triangles", path, len(vertices), len(faces))
    return [Structure(STRUCTURE_NAME, vertices, faces)]


__all__ = ["load_polydata"]
