"""Geometry derived from a triangle mesh that both export and rendering need."""

from __future__ import annotations

import numpy as np

#: Faces processed per slice: keeps the temporaries of a million-triangle mesh to tens of MB.
_SLICE = 1 << 18


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit area-weighted vertex normals.

    Parameters
    ----------
    vertices : (N, 3) float, metres
    faces : (M, 3) int, counter-clockwise seen from outside

    Returns
    -------
    (N, 3) float32 unit vectors; vertices no face uses (or only degenerate ones) get +Z so that
    every normal is unit length (glTF requires it; the renderer never draws such vertices).
    """
    v = np.asarray(vertices, dtype=np.float32)
    f = np.asarray(faces)
    sums = np.zeros((len(v), 3), dtype=np.float64)
    for lo in range(0, len(f), _SLICE):
        part = f[lo : lo + _SLICE]
        a = v[part[:, 0]]
        # The cross product's length is twice the triangle's area: summing it weights by area.
        face_normals = np.cross(v[part[:, 1]] - a, v[part[:, 2]] - a)
        for axis in range(3):
            # bincount sums the face normals into their corners far faster than np.add.at
            weights = face_normals[:, axis]
            sums[:, axis] += sum(np.bincount(part[:, c], weights=weights, minlength=len(v)) for c in range(3))
    length = np.linalg.norm(sums, axis=1)
    ok = length > 0
    normals = np.zeros_like(sums)
    normals[ok] = sums[ok] / length[ok, None]
    normals[~ok] = (0.0, 0.0, 1.0)
    return normals.astype(np.float32)
