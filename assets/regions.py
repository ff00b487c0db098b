"""Which connected pieces of an imported surface to keep: the largest, the N largest, or every piece
above a volume. A CT thresholded at bone also finds the headrest, the table and specks of noise;
``Keep`` drops them.

Volumes are judged by their voxels (``keep_voxels``: 26-connected regions of the voxels at or above
the threshold, sized in mm^3), so cavities inside a kept bone stay with it; meshes by their pieces
(``keep_pieces``: edge-connected parts, sized by the volume they enclose).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from assets.twin import Structure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Keep:
    """``mode``: ``"largest"`` (one piece), ``"count"`` (the ``value`` largest) or ``"min-volume"``
    (every piece of at least ``value`` mm^3)."""

    mode: str
    value: float = 1.0

    MODES: ClassVar[tuple[str, ...]] = ("largest", "count", "min-volume")

    def __post_init__(self) -> None:
        if self.mode not in self.MODES:
            raise ValueError(f"keep mode {self.mode!r} is not one of {', '.join(self.MODES)}")
        if self.mode == "count" and (self.value != int(self.value) or self.value < 1):
            raise ValueError(f"keep needs a whole number of pieces of at least 1, not {self.value:g}")
        if self.mode == "min-volume" and not (np.isfinite(self.value) and self.value > 0):
            raise ValueError(f"keep min-volume needs a volume above 0 mm^3, not {self.value:g}")

    @classmethod
    def parse(cls, words: list[str]) -> Keep:
        """``["largest"]``, ``["3"]`` or ``["min-volume", "500"]`` (the command line's ``--keep``)."""
        if words == ["largest"]:
            return cls("largest")
        if len(words) == 1 and words[0].isdigit():
            return cls("count", float(int(words[0])))
        if len(words) == 2 and words[0] == "min-volume":
            try:
                volume = float(words[1])
            except ValueError:
                raise ValueError(f"keep min-volume needs a number of mm^3, not {words[1]!r}") from None
            return cls("min-volume", volume)
        raise ValueError(f"keep takes 'largest', a number N or 'min-volume MM3', not {' '.join(words)!r}")

    def select(self, sizes: np.ndarray) -> np.ndarray:
        """Boolean mask over pieces of sizes ``sizes`` (mm^3): the ones to keep."""
        keep = np.zeros(len(sizes), dtype=bool)
        if self.mode == "min-volume":
            keep[sizes >= self.value] = True
        else:
            count = 1 if self.mode == "largest" else int(self.value)
            keep[np.argsort(-sizes, kind="stable")[:count]] = True
        return keep

    def describe(self) -> str:
        return {"largest": "largest", "count": f"{int(self.value)} largest",
                "min-volume": f"at least {self.value:g} mm^3"}[self.mode]


def keep_voxels(data: np.ndarray, level: float, voxel_mm3: float, keep: Keep) -> tuple[np.ndarray, dict[str, int]]:
    """``data`` (I, J, K) with the voxels of dropped regions set below ``level``, and counts.

    Regions are 26-connected sets of voxels ``>= level``. A marching-cubes cell (2x2x2 voxels) never
    holds voxels of two regions, so the kept regions' surfaces come out exactly as without ``keep``.
    """
    from scipy import ndimage  # noqa: PLC0415 - scipy.ndimage only when pieces are dropped

    labels, count = ndimage.label(data >= level, structure=np.ones((3, 3, 3), dtype=bool))
    if count == 0:
        return data, {"regions": 0, "kept": 0}
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:] * voxel_mm3
    kept = keep.select(sizes)
    if kept.all():
        return data, {"regions": int(count), "kept": int(count)}
    drop = np.concatenate([[False], ~kept])[labels]
    floor = np.float32(min(float(np.nanmin(data)), level - 1.0))
    result = np.where(drop, floor, data).astype(data.dtype, copy=False)
    log.info("kept %d of %d regions (%s)", int(kept.sum()), count, keep.describe())
    return result, {"regions": int(count), "kept": int(kept.sum())}


def pieces(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """Label (M,) of each face's edge-connected piece (faces sharing a vertex are one piece)."""
    from scipy.sparse import coo_matrix  # noqa: PLC0415 - scipy only when pieces are dropped
    from scipy.sparse.csgraph import connected_components  # noqa: PLC0415 - as above

    f = faces.astype(np.int64)
    rows = np.concatenate([f[:, 0], f[:, 1]])
    cols = np.concatenate([f[:, 1], f[:, 2]])
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n_vertices, n_vertices))
    _, labels = connected_components(graph, directed=False)
    result: np.ndarray = labels[f[:, 0]]
    return result


def piece_volumes_mm3(vertices: np.ndarray, faces: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Enclosed volume (mm^3, absolute) of each piece; ``vertices`` in metres."""
    tri = vertices.astype(np.float64)[faces] * 1000.0
    signed = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])) / 6.0
    volumes: np.ndarray = np.abs(np.bincount(labels, weights=signed))
    return volumes


def keep_pieces(structure: Structure, keep: Keep) -> tuple[Structure, dict[str, int]]:
    """``structure`` with only the pieces ``keep`` selects (by enclosed volume), unused vertices dropped."""
    if structure.triangle_count == 0:
        return structure, {"regions": 0, "kept": 0}
    labels = pieces(structure.faces, structure.vertex_count)
    _, labels = np.unique(labels, return_inverse=True)
    volumes = piece_volumes_mm3(structure.vertices, structure.faces, labels)
    kept = keep.select(volumes)
    counts = {"regions": len(volumes), "kept": int(kept.sum())}
    if kept.all():
        return structure, counts
    faces = structure.faces[kept[labels]]
    used, remapped = np.unique(faces, return_inverse=True)
    log.info("%s: kept %d of %d pieces (%s)", structure.name, counts["kept"], counts["regions"], keep.describe())
    return replace(structure, vertices=structure.vertices[used], faces=remapped.reshape(-1, 3), lods=[]), counts


__all__ = ["Keep", "keep_pieces", "keep_voxels", "piece_volumes_mm3", "pieces"]
