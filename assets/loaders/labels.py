"""Label maps and segmentations: one named, coloured structure per label, and the colour tables that
name them.

A label map is an integer volume whose voxels hold a structure's number (0: background). Every label
present becomes a surface the way the bundled atlas's regions do (``assets.atlas.label_surfaces``: the
label's mask, cropped to its box, smoothed by a Gaussian of 0.6 voxels and cut at 0.5, as 3D Slicer
smooths a segmentation's closed surface by default). Names and colours come from a colour table:

- 3D Slicer's ``.ctbl``: ``value name R G B A`` per line, 8-bit components, ``#`` comments;
- FreeSurfer's lookup table (``FreeSurferColorLUT.txt`` and its subsets): the same columns, where A
  is a transparency (0: opaque), so alpha is not read from either;
- ITK-SNAP's label description file: ``IDX R G B A VIS MSH "LABEL"`` per line, A an opacity 0..1.

No maintained Python package reads these three line formats (Slicer's own reader lives inside Slicer),
so they are read here, line by line, with one-line errors that name the file and the line. Colours
are 8-bit sRGB in all of them; twins hold linear RGB (``assets.atlas.srgb_to_linear``). Every
structure is opaque.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from assets.atlas import label_surfaces, srgb_to_linear
from assets.errors import EmptyMeshError, UnreadableAssetError
from assets.loaders.limits import DEFAULT_LIMITS, Limits, check_count, read_source
from assets.twin import Color, Structure

log = logging.getLogger(__name__)

#: Colour of a label that no table names (linear RGB, a neutral grey).
UNNAMED: Color = (0.5, 0.5, 0.5, 1.0)
#: Longest structure name kept from a file (names are for a label on a panel, not for prose).
MAX_NAME = 64


@dataclass(frozen=True)
class Label:
    """One entry of a colour table or a segmentation's header.

    ``value``: the voxel value (or the segment number); ``color``: linear RGBA; ``codes``: ontology
    codes when the source gives them (``{"SCT": "..."}``).
    """

    value: int
    name: str
    color: Color = UNNAMED
    codes: dict[str, str] = field(default_factory=dict)


def clean_name(text: str, fallback: str) -> str:
    """A printable, single-line name of at most ``MAX_NAME`` characters (``fallback`` when empty)."""
    printable = "".join(c if c.isprintable() else " " for c in str(text))
    name = " ".join(printable.split())[:MAX_NAME]
    return name or fallback


def rgb_color(rgb: np.ndarray | list[float], scale: float) -> Color:
    """Linear RGBA of an sRGB triple given in 0..``scale`` (255 for 8-bit tables, 1 for Slicer's floats)."""
    values = np.clip(np.asarray(rgb, dtype=np.float64)[:3] / scale, 0.0, 1.0)
    r, g, b = (float(c) for c in srgb_to_linear(values))
    return (r, g, b, 1.0)


def read_colour_table(path: Path, limits: Limits = DEFAULT_LIMITS) -> dict[int, Label]:
    """Label value -> ``Label`` from a Slicer ``.ctbl``, a FreeSurfer LUT or an ITK-SNAP label file.

    Raises
    ------
    UnreadableAssetError
        The file is not text, a line is not one of the formats, or it lists no label.
    """
    data = read_source(path, limits)
    check_count(path, "bytes of colour table", len(data), limits.max_header_bytes)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    table: dict[int, Label] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        label = _entry(stripped)
        if label is None:
            raise UnreadableAssetError(path, f"line {number} is not a colour table entry "
                                       f"('value name R G B A' or ITK-SNAP's 'IDX R G B A VIS MSH \"LABEL\"'): "
                                       f"{stripped[:60]!r}")
        table[label.value] = label
    check_count(path, "labels in the colour table", len(table), limits.max_structures)
    if not table:
        raise UnreadableAssetError(path, "lists no labels")
    return table


def _entry(line: str) -> Label | None:
    """One colour table line: ITK-SNAP's when it quotes its name, else Slicer's or FreeSurfer's."""
    if '"' in line:
        try:
            fields = shlex.split(line)
        except ValueError:
            return None
        if len(fields) != 8:
            return None
        value_text, rgb_text, name = fields[0], fields[1:4], fields[7]
    else:
        fields = line.split()
        if len(fields) < 5:
            return None
        value_text, rgb_text, name = fields[0], fields[2:5], fields[1]
    if not value_text.isdigit():
        return None
    try:
        rgb = [float(v) for v in rgb_text]
    except ValueError:
        return None
    value = int(value_text)
    return Label(value, clean_name(name, f"label {value}"), rgb_color(rgb, 255.0))


def as_labels(values: np.ndarray, source: str | Path) -> np.ndarray:
    """The integer label values of a volume (any dtype); refuses a volume that is not a label map."""
    if np.issubdtype(values.dtype, np.integer):
        labels: np.ndarray = values.astype(np.int64, copy=False)
        return labels
    finite = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    rounded = np.rint(finite)
    if not np.array_equal(rounded, finite):
        raise UnreadableAssetError(source, "is not a label map: its voxels are not whole numbers")
    whole: np.ndarray = rounded.astype(np.int64)
    return whole


def label_structures(labels: np.ndarray, affine: np.ndarray, table: dict[int, Label], source: str | Path,
                     limits: Limits = DEFAULT_LIMITS, *, only: list[int] | None = None,
                     notes: list[str] | None = None) -> list[Structure]:
    """One surface per label present in ``labels`` (integers, 0 background), named and coloured by
    ``table`` (a label it lacks is named ``label N``, grey). Vertices are in ``affine``'s space
    (RAS mm for every caller), ordered by label value.

    ``only``: the values to build (a segmentation's segments; values without voxels are noted and
    skipped); default every value present.

    Raises
    ------
    ResourceLimitError
        More labels than ``limits.max_structures``.
    EmptyMeshError
        No label has any voxel.
    """
    present = np.unique(labels)
    present = present[present != 0]
    wanted = present if only is None else np.array(sorted(set(only)), dtype=np.int64)
    check_count(source, "labels", len(wanted), limits.max_structures)
    found = np.intersect1d(wanted, present)
    empty = sorted(int(v) for v in np.setdiff1d(wanted, present))
    if notes is not None and empty:
        names = [table[v].name if v in table else str(v) for v in empty[:5]]
        notes.append(f"{len(empty)} segments without voxels skipped ({', '.join(names)}{', ...' if len(empty) > 5 else ''})")
    if len(found) == 0:
        raise EmptyMeshError(source, "the label map has no labelled voxels: no structure to extract")
    # label_surfaces indexes labels from 1 (scipy's find_objects): number the found values 1..n, so a
    # label value of two billion costs no more than a label value of 2.
    compact = np.zeros(labels.shape, dtype=np.int32)
    index = np.searchsorted(found, labels)
    hit = (index < len(found)) & (found[np.minimum(index, len(found) - 1)] == labels)
    compact[hit] = index[hit] + 1
    surfaces = label_surfaces(compact, affine, list(range(1, len(found) + 1)), Path(source))
    unnamed = [int(v) for v in found if int(v) not in table]
    if notes is not None and unnamed:
        notes.append(f"{len(unnamed)} labels have no name in the colour table: named 'label N'")
    structures = []
    for n, value in enumerate(found, start=1):
        label = table.get(int(value), Label(int(value), f"label {int(value)}"))
        vertices, faces = surfaces[n]
        codes = {"label": str(int(value)), **label.codes}
        structures.append(Structure(label.name, vertices, faces, color=label.color, codes=codes))
    distinct_names(structures)
    log.debug("%s: %d labelled structures", source, len(structures))
    return structures


def distinct_names(structures: list[Structure]) -> None:
    """Twins look structures up by name: a repeated name gets its label value appended."""
    seen: dict[str, int] = {}
    for structure in structures:
        seen[structure.name] = seen.get(structure.name, 0) + 1
    for structure in structures:
        if seen[structure.name] > 1:
            structure.name = f"{structure.name} ({structure.codes['label']})"


__all__ = ["UNNAMED", "Label", "as_labels", "clean_name", "distinct_names", "label_structures", "read_colour_table", "rgb_color"]
