"""The bundled ``skull`` twin: the bony skull of the CT head that Debian's ``invesalius-examples`` ships.

``Cranium.inv3`` (an InVesalius 3 project, read by ``assets.loaders.inv3``) holds an adult head CT,
108 axial slices of 256 x 256 with a headrest behind the head. The recipe thresholds it at the bone
level the project's own mask used (226 HU, voxels at or above it count as bone), keeps the largest
26-connected bone region (the headrest and loose islands are separate regions), runs marching cubes
on it, keeps the largest closed shell (cavities inside the bone are separate shells), and simplifies
it to a size that renders at frame rate. The scan ends at the upper teeth: of the mandible only the
rami (condyles, coronoid processes, the upper half of each ramus) are in it, fused to the skull base
at this threshold, so the skull is one structure.

A teaching approximation is added beside the bone: ``inferior alveolar nerve (approximation)``, a thin
tube beside the medial face of the left ramus, from the mandibular foramen region up and back into
the infratemporal fossa (see ``ramus_geometry``), so that a procedural module has a no-go structure. It is derived
from the bone's geometry, not segmented from the CT (a nerve is not visible on CT), and the twin's
provenance says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from assets.errors import AssetError
from assets.twin import Color, Structure, Twin

log = logging.getLogger(__name__)

SOURCE = Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3")
#: Bone threshold, HU: the one InVesalius' own mask in Cranium.inv3 used (threshold_range 226..3071).
SKULL_HU = 226.0
#: Triangles kept after simplification: a few hundred thousand at most renders at frame rate.
SKULL_TRIANGLES = 250_000
#: Bone colour (linear RGB): ivory.
BONE: Color = (0.80, 0.74, 0.60, 1.0)
#: The nerve's colour (linear RGB): yellow, as atlases draw nerves.
NERVE: Color = (0.95, 0.80, 0.05, 1.0)
SKULL_NAME = "skull"
NERVE_NAME = "inferior alveolar nerve (approximation)"
#: Tube radius, mm (the inferior alveolar nerve is about 2-3 mm across).
NERVE_RADIUS_MM = 1.3


def largest_component_mask(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected region of a boolean volume (the skull; the headrest is another)."""
    from scipy import ndimage  # noqa: PLC0415 - scipy.ndimage only for building volume twins

    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    largest: np.ndarray = labels == int(np.argmax(sizes))
    return largest


def largest_shell(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The largest edge-connected piece of a triangle mesh (by face count), unused vertices dropped."""
    from scipy.sparse import coo_matrix  # noqa: PLC0415 - as above
    from scipy.sparse.csgraph import connected_components  # noqa: PLC0415 - as above

    n = len(vertices)
    rows = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    cols = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    face_labels = labels[faces[:, 0]]
    keep = face_labels == np.bincount(face_labels).argmax()
    kept = faces[keep]
    used = np.zeros(n, dtype=bool)
    used[kept.ravel()] = True
    remap = np.cumsum(used) - 1
    return vertices[used], remap[kept]


def drop_non_manifold(structure: Structure, source: Path) -> tuple[Structure, int]:
    """``structure`` without the faces on edges shared by more than two faces, and how many went.

    Quadric simplification of the marched skull (535k -> 250k triangles) pinches some of its thin
    places (orbital floors, the ethmoid; 94 faces' worth with meshoptimizer 0.22) into edges shared by three or four faces, which
    import and the renderer's picking refuse. Removing the faces around them leaves small holes
    (boundary edges) there instead; nothing else changes.
    """
    from assets import validate  # noqa: PLC0415 - keeps this module's import light

    removed = 0
    for _ in range(8):
        f = structure.faces.astype(np.int64)
        a, b = f.reshape(-1), f[:, [1, 2, 0]].reshape(-1)
        undirected = np.minimum(a, b) * len(structure.vertices) + np.maximum(a, b)
        _, inverse, counts = np.unique(undirected, return_inverse=True, return_counts=True)
        bad = (counts[inverse] > 2).reshape(-1, 3).any(axis=1)
        if not bad.any():
            break
        removed += int(bad.sum())
        structure, _ = validate.repair(
            Structure(structure.name, structure.vertices, structure.faces[~bad], structure.color, structure.codes),
            source)
    return structure, removed


@dataclass(frozen=True)
class RamusGeometry:
    """Reference geometry of one mandibular ramus (twin mm), derived from the bone's surface.

    ``foramen_mm``: the mandibular foramen region, on the ramus's medial face; ``nerve_mm``: the centre
    line of the nerve approximation, from the foramen up and back into the infratemporal fossa,
    clear of the bone; ``target_mm``: where an inferior alveolar nerve block's needle meets
    bone, on the medial face 7 mm anterior of the foramen and 2 mm above it (the lingula region);
    ``entry_mm``: where the needle enters, 25 mm antero-medial of the target (over the opposite
    premolars, as the direct technique holds the syringe). ``notes``: how it was found.
    """

    foramen_mm: np.ndarray
    nerve_mm: np.ndarray
    target_mm: np.ndarray
    entry_mm: np.ndarray
    notes: str


def _medial_point(ramus: np.ndarray, y: float, z: float, sign: float) -> np.ndarray:
    """The point of the ramus's medial face at (y, z): the most medial vertex within 1.5 mm of it."""
    near = ramus[(np.abs(ramus[:, 1] - y) < 1.5) & (np.abs(ramus[:, 2] - z) < 1.5)]
    if len(near) == 0:
        raise AssetError(SOURCE, f"no ramus surface near y={y:.1f}, z={z:.1f} mm")
    point: np.ndarray = near[np.argmin(sign * near[:, 0])]  # medial: towards the midline
    return point


def ramus_geometry(vertices_mm: np.ndarray, faces: np.ndarray, *, side: str = "left") -> RamusGeometry:
    """Foramen, nerve path, block target and needle entry on one ramus, from the skull's surface.

    The scan ends at the upper teeth, so of the mandible only the upper rami are present, as bone
    lateral to the pharynx below the skull base. The ramus is taken as the skull's vertices in the
    lowest 18 mm of the scan, more than 30 mm to ``side`` of the midline (the middle of the bounding
    box), between 8 and 48 mm in front of the box's middle in y (which leaves out the mastoid behind
    and the maxilla in front). Its antero-posterior extent (2nd to 98th percentile of y) places the
    foramen 45 % of the way from the posterior border, 6 mm above the lowest scanned level, on the
    medial face. The nerve is a straight line from there 12 mm up and 5 mm back, pushed medially until
    every point of it is at least ``NERVE_RADIUS_MM`` + 1 mm from the bone. A teaching approximation:
    the canal and nerve are not visible on CT.
    """
    from assets.lod import surface_distance  # noqa: PLC0415 - keeps this module's import light

    v = np.asarray(vertices_mm, dtype=np.float64)
    sign = -1.0 if side == "left" else 1.0  # RAS: the patient's left is -x
    lo, hi = v.min(axis=0), v.max(axis=0)
    mid = (lo + hi) / 2.0
    z0 = float(lo[2])
    lateral = sign * (v[:, 0] - mid[0]) > 30.0
    band = (v[:, 2] < z0 + 18.0) & (v[:, 1] > mid[1] + 8.0) & (v[:, 1] < mid[1] + 48.0)
    ramus = v[lateral & band]
    if len(ramus) < 200:
        raise AssetError(SOURCE, f"no {side} ramus found in the lowest 18 mm of the skull")
    y_back, y_front = (float(q) for q in np.percentile(ramus[:, 1], [2, 98]))
    y_f, z_f = y_back + 0.45 * (y_front - y_back), z0 + 6.0
    foramen = _medial_point(ramus, y_f, z_f, sign)
    inward = np.array([-sign, 0.0, 0.0])  # towards the midline
    top = _medial_point(ramus, y_f - 5.0, z_f + 12.0, sign)
    line = foramen + np.linspace(0.0, 1.0, 9)[:, None] * (top - foramen)
    clearance = NERVE_RADIUS_MM + 1.0
    for _ in range(40):
        near = surface_distance(line, v, faces) < clearance
        if not near.any():
            break
        line[near] += 0.25 * inward
    target = _medial_point(ramus, y_f + 7.0, z_f + 2.0, sign)
    approach = np.array([-sign * 0.6, 0.8, 0.0])  # medial and anterior, level
    entry = target + 25.0 * approach / np.linalg.norm(approach)
    notes = (f"{side} ramus: y {y_back:.1f}..{y_front:.1f} mm in the lowest 18 mm of the scan (z from {z0:.1f}); "
             "foramen 45 % from its posterior border, 6 mm above the lowest level, on the medial face; nerve "
             f"line from the foramen 12 mm up and 5 mm back, at least {clearance:g} mm medial of the bone; block "
             "target 7 mm anterior and 2 mm above the foramen on the medial face; needle entry 25 mm "
             "antero-medial of the target")
    return RamusGeometry(foramen_mm=foramen, nerve_mm=line, target_mm=target, entry_mm=entry, notes=notes)


def tube(points_mm: np.ndarray, radius_mm: float, sides: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """A closed tube (capped at both ends, wound outwards) along a polyline: vertices mm, faces."""
    p = np.asarray(points_mm, dtype=np.float64)
    tangents = np.gradient(p, axis=0)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    ref = np.array([1.0, 0.0, 0.0]) if abs(tangents[0, 0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    rings = []
    angles = np.linspace(0.0, 2.0 * np.pi, sides, endpoint=False)
    for point, t in zip(p, tangents, strict=True):
        u = np.cross(t, ref)
        u /= np.linalg.norm(u)
        w = np.cross(t, u)
        rings.append(point + radius_mm * (np.cos(angles)[:, None] * u + np.sin(angles)[:, None] * w))
    vertices = np.concatenate([np.concatenate(rings), p[:1], p[-1:]])
    faces = []
    for i in range(len(p) - 1):
        for j in range(sides):
            a, b = i * sides + j, i * sides + (j + 1) % sides
            c, d = a + sides, b + sides
            faces += [[a, b, d], [a, d, c]]
    start, end = len(p) * sides, len(p) * sides + 1
    last = (len(p) - 1) * sides
    for j in range(sides):
        faces.append([start, (j + 1) % sides, j])
        faces.append([end, last + j, last + (j + 1) % sides])
    f = np.asarray(faces, dtype=np.int64)
    # Wind outwards: the tube's signed volume must be positive.
    tri = vertices[f]
    if np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() < 0:
        f = f[:, ::-1]
    return vertices, f


def build_skull(sources: list[Path], progress: Any) -> Twin:
    """The skull twin from ``Cranium.inv3`` (geometry in metres, RAS)."""
    from assets import validate  # noqa: PLC0415 - keeps assets.library's import light
    from assets.loaders.inv3 import read_inv3  # noqa: PLC0415 - as above
    from assets.loaders.volume import surface  # noqa: PLC0415 - as above
    from assets.lod import simplify  # noqa: PLC0415 - as above

    source = sources[0]
    progress("reading the CT", 0.0)
    volume = read_inv3(source)
    bone = volume.data >= SKULL_HU
    keep = largest_component_mask(bone)
    dropped = int(bone.sum() - keep.sum())
    low = float(volume.data.min())
    volume.data = np.where(keep | ~bone, volume.data, np.float32(low))  # other bone regions -> air
    progress("marching cubes", 0.2)
    vertices, faces = surface(volume, SKULL_HU, source)
    vertices, faces = largest_shell(vertices, faces)
    marched = len(faces)
    structure = Structure(SKULL_NAME, (vertices / 1000.0).astype(np.float32), faces.astype(np.int32), color=BONE,
                          codes={"FMA": "46565"})  # Skull
    structure, _ = validate.repair(structure, source)
    progress("simplifying", 0.6)
    level = simplify(structure, SKULL_TRIANGLES)
    simplified = Structure(SKULL_NAME, level.vertices, level.faces, color=BONE, codes=structure.codes)
    simplified, report = validate.repair(simplified, source)
    simplified, pinched = drop_non_manifold(simplified, source)
    report = validate.repair(simplified, source)[1]

    path = ramus_geometry(simplified.vertices.astype(np.float64) * 1000.0, simplified.faces)
    tv, tf = tube(path.nerve_mm, NERVE_RADIUS_MM)
    nerve = Structure(NERVE_NAME, (tv / 1000.0).astype(np.float32), tf.astype(np.int32), color=NERVE,
                      codes={"FMA": "52996"})  # Inferior alveolar nerve
    return Twin(
        "skull",
        [simplified, nerve],
        source_units="mm",
        provenance={
            "recipe": "skull/1",
            "data": "CT head of Debian's invesalius-examples (Cranium.inv3, InVesalius 3 project)",
            "sources": [str(source)],
            "threshold": SKULL_HU,
            "threshold_units": "HU",
            "notes": volume.notes,
            "dropped_bone_voxels": dropped,
            "marching_cubes_triangles": marched,
            "simplified_to": simplified.triangle_count,
            "simplification_error_mm": round(level.error_mm, 3),
            "faces_removed_at_pinched_edges": pinched,
            "remaining": report.remaining,
            "nerve": ("TEACHING APPROXIMATION, not imaged: " + path.notes
                      + f"; a {NERVE_RADIUS_MM:g} mm tube; its lower end is the mandibular foramen region "
                      f"at {[round(float(c), 1) for c in path.foramen_mm]} mm"),
        },
    )


__all__ = [
    "NERVE_NAME",
    "SKULL_HU",
    "SKULL_NAME",
    "SOURCE",
    "RamusGeometry",
    "build_skull",
    "largest_component_mask",
    "largest_shell",
    "ramus_geometry",
    "tube",
]
