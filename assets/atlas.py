"""Label-volume atlases as twins: one named, coloured structure per label.

The bundled ``brain-aal`` twin is the AAL atlas (Tzourio-Mazoyer et al. 2002) as Debian's
``mricron-data`` ships it in MNI space: ``aal.nii.gz`` (a 1 mm label volume, values 1..116),
``aal.nii.txt`` (one line per label: ``index name code``) and ``aal.nii.lut`` (MRIcron's colour table:
768 bytes, 256 reds, then 256 greens, then 256 blues, indexed by label value). Each label becomes a
surface by marching cubes on its own mask, cropped to the label's bounding box (116 small volumes
instead of 116 whole ones), smoothed with a Gaussian of ``SMOOTH_SIGMA_VOXELS`` so the 1 mm voxel steps
do not show, at level 0.5. Coordinates are the NIfTI's world space, MNI millimetres (RAS), stored in
metres as every twin is.

Colours: the LUT's 8-bit values are sRGB; twins hold linear RGB, so they are converted. Ten labels
have black (0, 0, 0) in the LUT (MRIcron draws them black on its overlay); black would vanish against
a dark room, so those get ``UNCOLOURED`` and are listed in the provenance.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from assets.errors import AssetError, UnreadableAssetError
from assets.twin import Color, Structure, Twin

log = logging.getLogger(__name__)

TEMPLATES = Path("/usr/share/mricron/templates")
AAL_SOURCES: tuple[Path, ...] = (TEMPLATES / "aal.nii.gz", TEMPLATES / "aal.nii.txt", TEMPLATES / "aal.nii.lut")
#: Gaussian smoothing of each label's mask before marching cubes, in voxels (1 mm).
SMOOTH_SIGMA_VOXELS = 0.6
#: Above this many triangles in all (the atlas marches to about 1.05 million), structures are simplified
#: in proportion to their size.
MAX_TRIANGLES = 1_500_000
#: Linear RGB for labels the LUT leaves black.
UNCOLOURED: Color = (0.5, 0.5, 0.5, 1.0)


def read_labels(path: Path) -> dict[int, str]:
    """Label value -> name from an MRIcron label list (``index name [code]`` per line, CRLF or LF)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UnreadableAssetError(path, f"cannot be read ({exc})") from None
    labels: dict[int, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2 or not fields[0].isdigit():
            raise UnreadableAssetError(path, f"line {number} is not 'index name [code]': {line.strip()[:60]!r}")
        labels[int(fields[0])] = fields[1]
    if not labels:
        raise UnreadableAssetError(path, "lists no labels")
    return labels


def srgb_to_linear(values: np.ndarray) -> np.ndarray:
    """sRGB components in 0..1 to linear RGB (IEC 61966-2-1)."""
    v = np.asarray(values, dtype=np.float64)
    linear: np.ndarray = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
    return linear


def read_lut(path: Path) -> np.ndarray:
    """(256, 3) uint8 colours from an MRIcron ``.lut`` (planar: 256 R, 256 G, 256 B)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableAssetError(path, f"cannot be read ({exc.strerror or exc})") from None
    if len(data) != 768:
        raise UnreadableAssetError(path, f"is {len(data)} bytes; an MRIcron colour table is 768")
    table: np.ndarray = np.frombuffer(data, dtype=np.uint8).reshape(3, 256).T.copy()
    return table


def label_color(lut: np.ndarray, value: int) -> Color:
    """Linear RGBA of label ``value`` (``UNCOLOURED`` where the LUT has black)."""
    rgb = lut[value]
    if not rgb.any():
        return UNCOLOURED
    r, g, b = (float(c) for c in srgb_to_linear(rgb / 255.0))
    return (r, g, b, 1.0)


def label_surfaces(labels: np.ndarray, affine: np.ndarray, values: list[int], source: Path,
                   progress: Any = None) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Marching-cubes surface (vertices mm in the affine's space, faces wound outwards) per label."""
    from scipy import ndimage  # noqa: PLC0415 - scipy.ndimage only for building atlas twins

    from assets.loaders.volume import Volume, surface  # noqa: PLC0415 - the volume path's marching cubes

    boxes = ndimage.find_objects(labels.astype(np.int32))
    result = {}
    pad = 3  # room for the smoothing and the padding surface() adds
    for n, value in enumerate(values):
        if progress is not None and n % 10 == 0:
            progress(f"marching cubes {n}/{len(values)}", n / len(values))
        box = boxes[value - 1] if value - 1 < len(boxes) else None
        if box is None:
            raise AssetError(source, f"label {value} is listed but has no voxels")
        lo = [max(s.start - pad, 0) for s in box]
        hi = [min(s.stop + pad, n_) for s, n_ in zip(box, labels.shape, strict=True)]
        crop = labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] == value
        field = ndimage.gaussian_filter(crop.astype(np.float32), SMOOTH_SIGMA_VOXELS)
        shift = np.eye(4)
        shift[:3, 3] = lo
        level = 0.5 if field.max() > 0.5 else 0.5 * float(field.max())  # a one-voxel label survives smoothing
        vertices, faces = surface(Volume(field, affine @ shift, "mm"), level, source)
        result[value] = (vertices, faces)
    return result


def build_aal(sources: list[Path], progress: Any) -> Twin:
    """The ``brain-aal`` twin (geometry in metres, MNI RAS) from the atlas volume, names and colours."""
    from assets import validate  # noqa: PLC0415 - keeps assets.library's import light
    from assets.loaders.volume import read_nifti  # noqa: PLC0415 - as above
    from assets.lod import simplify  # noqa: PLC0415 - as above

    volume_path, names_path, lut_path = sources
    progress("reading the atlas", 0.0)
    volume = read_nifti(volume_path)
    names = read_labels(names_path)
    lut = read_lut(lut_path)
    labels = np.rint(volume.data).astype(np.int32)
    present = sorted(int(v) for v in np.unique(labels) if v > 0)
    missing = sorted(set(names) - set(present))
    unnamed = sorted(set(present) - set(names))
    if missing or unnamed:
        raise AssetError(volume_path, f"labels and names disagree: listed without voxels {missing[:5]}, "
                         f"voxels without a name {unnamed[:5]}")
    surfaces = label_surfaces(labels, volume.affine, present, volume_path, progress)
    structures = []
    uncoloured = []
    for value in present:
        vertices, faces = surfaces[value]
        color = label_color(lut, value)
        if color == UNCOLOURED:
            uncoloured.append(names[value])
        structure = Structure(names[value], (vertices / 1000.0).astype(np.float32), faces.astype(np.int32),
                              color=color, codes={"AAL": str(value)})
        structure, _ = validate.repair(structure, volume_path)
        structures.append(structure)
    total = sum(s.triangle_count for s in structures)
    if total > MAX_TRIANGLES:
        progress("simplifying", 0.8)
        simplified = []
        for structure in structures:
            share = max(200, round(MAX_TRIANGLES * structure.triangle_count / total))
            if share < structure.triangle_count:
                level = simplify(structure, share)
                structure, _ = validate.repair(Structure(structure.name, level.vertices, level.faces,  # noqa: PLW2901 - the simplified copy replaces it
                                                         structure.color, structure.codes), volume_path)
            simplified.append(structure)
        structures = simplified
    log.info("brain-aal: %d structures, %d triangles (from %d)", len(structures),
             sum(s.triangle_count for s in structures), total)
    return Twin(
        "brain-aal",
        structures,
        source_units="mm",
        provenance={
            "recipe": "brain-aal/1",
            "data": "AAL atlas (Tzourio-Mazoyer et al. 2002) in MNI space, as shipped in Debian's mricron-data",
            "sources": [str(p) for p in sources],
            "smooth_sigma_voxels": SMOOTH_SIGMA_VOXELS,
            "marching_cubes_triangles": total,
            "lut_black_drawn_grey": uncoloured,
        },
    )


__all__ = ["AAL_SOURCES", "UNCOLOURED", "build_aal", "label_color", "label_surfaces", "read_labels", "read_lut",
           "srgb_to_linear"]
