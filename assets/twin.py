"""The anatomical twin: a named set of structures, geometry in metres.

A ``Structure`` is one anatomical part (a hemisphere, a vessel, a bone) with its triangle mesh.
A ``Twin`` is what a session shows and shares. These are plain data: no OpenGL, no networking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

Color = tuple[float, float, float, float]

#: The twin's frame to glTF's. Twins are RAS (+x the patient's right, +y anterior, +z superior: +Z up);
#: glTF is +Y up with an asset's front facing +Z, so its right is -X. Hence x_gltf = -x, y_gltf = z,
#: z_gltf = y: superior becomes up and anterior the front. A rotation (determinant +1: winding and
#: handedness kept) and its own inverse, so the same matrix reads glTF in and writes it out.
GLTF_FROM_TWIN = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])

#: Units a source file may be in, with the factor that converts them to metres.
UNIT_SCALE: dict[str, float] = {"m": 1.0, "cm": 0.01, "mm": 0.001, "um": 1e-6}


@dataclass
class LevelOfDetail:
    """A simplified copy of a structure's mesh.

    ``vertices``: (N, 3) float32 in metres; ``faces``: (M, 3) int32.
    ``error_mm``: the largest distance (mm) from the simplified surface to the original vertices.
    """

    target_triangles: int
    vertices: np.ndarray
    faces: np.ndarray
    error_mm: float

    @property
    def triangle_count(self) -> int:
        return len(self.faces)


@dataclass
class Structure:
    """One anatomical structure.

    ``vertices``: (N, 3) float32, metres, in the twin's frame (RAS+ for imaging-derived twins).
    ``faces``: (M, 3) int32 indices into ``vertices``, counter-clockwise seen from outside.
    ``color``: linear RGBA in 0..1; alpha below 1 draws the structure transparent.
    ``codes``: ontology codes, e.g. ``{"FMA": "72976"}``.
    ``lods``: simplified meshes, coarsest last; level 0 is the structure itself.
    """

    name: str
    vertices: np.ndarray
    faces: np.ndarray
    color: Color = (0.85, 0.75, 0.7, 1.0)
    codes: dict[str, str] = field(default_factory=dict)
    lods: list[LevelOfDetail] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.vertices = np.asarray(self.vertices, dtype=np.float32).reshape(-1, 3)
        self.faces = np.asarray(self.faces, dtype=np.int32).reshape(-1, 3)

    @property
    def triangle_count(self) -> int:
        return len(self.faces)

    @property
    def vertex_count(self) -> int:
        return len(self.vertices)

    def bounds(self) -> np.ndarray:
        """(2, 3) float64 array of min and max corners in metres."""
        if len(self.vertices) == 0:
            return np.zeros((2, 3))
        v = self.vertices
        return np.array([v.min(axis=0), v.max(axis=0)], dtype=np.float64)


@dataclass
class Twin:
    """A named set of structures, geometry in metres.

    ``source_units``: the unit the source data was in (``"mm"``, ``"m"``, ...);
    ``units_detected``: True when that unit was inferred from the extent, False when declared.
    ``metadata``: de-identified imaging metadata (DICOM keyword -> value) that travels with the twin.
    ``provenance``: where the data came from (files, package versions, build options).
    """

    name: str
    structures: list[Structure]
    source_units: str = "m"
    units_detected: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    units: str = field(default="m", init=False)  # geometry inside the runtime is always metres

    @property
    def triangle_count(self) -> int:
        return sum(s.triangle_count for s in self.structures)

    @property
    def vertex_count(self) -> int:
        return sum(s.vertex_count for s in self.structures)

    def structure(self, name: str) -> Structure:
        for s in self.structures:
            if s.name == name:
                return s
        raise KeyError(f"twin {self.name!r} has no structure {name!r}")

    def bounds(self) -> np.ndarray:
        """(2, 3) float64 min and max corners over all structures, metres."""
        boxes = [s.bounds() for s in self.structures if s.vertex_count]
        if not boxes:
            return np.zeros((2, 3))
        stacked = np.stack(boxes)
        return np.array([stacked[:, 0].min(axis=0), stacked[:, 1].max(axis=0)])

    def nbytes(self) -> int:
        """Bytes held by the level-0 vertex and face arrays."""
        return sum(s.vertices.nbytes + s.faces.nbytes for s in self.structures)
