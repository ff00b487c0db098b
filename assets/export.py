"""glTF 2.0 export: a twin as one binary GLB file, in metres (glTF's unit), +Y up.

Twins are RAS (+Z up); glTF is +Y up with the front facing +Z. Positions and normals are rotated into
glTF's frame on the way out (``assets.twin.GLTF_FROM_TWIN``: superior becomes +Y, anterior +Z), so
other viewers show a head upright and facing them; the loader rotates them back on the way in.

Written with numpy and json rather than through trimesh so that names, materials and extras are
exactly ours. Layout:

- one scene named after the twin, whose extras carry the source units, metadata and provenance;
- one node and one mesh per structure, both named after it; the node's extras carry its ontology
  codes; the mesh has one triangle primitive with POSITION (with min/max), NORMAL (area-weighted
  vertex normals) and UNSIGNED_INT indices;
- one PBR material per structure: ``baseColorFactor`` from the structure's linear RGBA colour,
  ``alphaMode`` BLEND when alpha is below 1;
- one buffer (the GLB's BIN chunk) with one buffer view per accessor, each 4-byte aligned and with
  its target set.

Levels of detail are not exported: glTF has no core notion of them, and a reader that needs them
builds its own.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from assets.errors import ExportError
from assets.geometry import vertex_normals
from assets.twin import GLTF_FROM_TWIN, Structure, Twin

log = logging.getLogger(__name__)

_GLB_MAGIC = 0x46546C67  # "glTF"
_CHUNK_JSON = 0x4E4F534A
_CHUNK_BIN = 0x004E4942
_FLOAT = 5126
_UNSIGNED_INT = 5125
_ARRAY_BUFFER = 34962
_ELEMENT_ARRAY_BUFFER = 34963
_TRIANGLES = 4
_ROTATION = GLTF_FROM_TWIN.astype(np.float32)
#: Roughness of every material: tissue is matte-ish; metallic is 0 (it is not a metal).
_ROUGHNESS = 0.6


def _generator() -> str:
    try:
        version = importlib_metadata.version("medverse")
    except importlib_metadata.PackageNotFoundError:
        version = "unknown"
    return f"medverse {version}"


class _Buffer:
    """The BIN chunk under construction: aligned views and accessors appended in order."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.length = 0
        self.views: list[dict[str, Any]] = []
        self.accessors: list[dict[str, Any]] = []

    def add(self, array: np.ndarray, *, component: int, kind: str, target: int, bounds: bool) -> int:
        data = np.ascontiguousarray(array).tobytes()
        self.views.append({"buffer": 0, "byteOffset": self.length, "byteLength": len(data), "target": target})
        self.parts.append(data)
        self.length += len(data)
        pad = -self.length % 4  # every view starts 4-byte aligned (float32/uint32 components)
        self.parts.append(b"\0" * pad)
        self.length += pad
        accessor: dict[str, Any] = {
            "bufferView": len(self.views) - 1,
            "componentType": component,
            "count": int(array.shape[0]) if kind != "SCALAR" else int(array.size),
            "type": kind,
        }
        if bounds:
            accessor["min"] = [float(x) for x in array.min(axis=0)]
            accessor["max"] = [float(x) for x in array.max(axis=0)]
        self.accessors.append(accessor)
        return len(self.accessors) - 1


def _check(structure: Structure, twin: Twin) -> None:
    """Refuse what would make an invalid glTF file, with the reason."""
    if structure.vertex_count == 0 or structure.triangle_count == 0:
        raise ExportError(twin.name, f"structure {structure.name!r} has no triangles to export")
    if not np.isfinite(structure.vertices).all():
        raise ExportError(twin.name, f"structure {structure.name!r} has non-finite vertex coordinates")
    lo, hi = int(structure.faces.min()), int(structure.faces.max())
    if lo < 0 or hi >= structure.vertex_count:
        raise ExportError(
            twin.name,
            f"structure {structure.name!r} has face indices {lo}..{hi} outside 0..{structure.vertex_count - 1}",
        )


def _material(structure: Structure) -> dict[str, Any]:
    r, g, b, a = (float(np.clip(c, 0.0, 1.0)) for c in structure.color)
    material: dict[str, Any] = {
        "name": structure.name,
        "pbrMetallicRoughness": {
            "baseColorFactor": [r, g, b, a],
            "metallicFactor": 0.0,
            "roughnessFactor": _ROUGHNESS,
        },
    }
    if a < 1.0:
        material["alphaMode"] = "BLEND"
    return material


def to_glb_bytes(twin: Twin) -> bytes:
    """The twin as a binary glTF 2.0 (GLB) file.

    Parameters
    ----------
    twin
        Geometry in metres; every structure needs at least one triangle.

    Returns
    -------
    The GLB file's bytes.

    Raises
    ------
    ExportError
        A structure is empty, has non-finite vertices or face indices out of range, or the twin's
        metadata or provenance holds a non-finite number. Values JSON cannot hold (paths, dates)
        are written as their ``str``.
    """
    buffer = _Buffer()
    nodes, meshes, materials = [], [], []
    for structure in twin.structures:
        _check(structure, twin)
        # A signed permutation of the axes: exact in float32, so a round trip gives the same bits.
        position = buffer.add(
            (structure.vertices.astype(np.float32, copy=False) @ _ROTATION.T).astype(np.float32),
            component=_FLOAT, kind="VEC3", target=_ARRAY_BUFFER, bounds=True,
        )
        normal = buffer.add(
            (vertex_normals(structure.vertices, structure.faces) @ _ROTATION.T).astype(np.float32),
            component=_FLOAT, kind="VEC3", target=_ARRAY_BUFFER, bounds=False,
        )
        indices = buffer.add(
            structure.faces.astype(np.uint32).reshape(-1),
            component=_UNSIGNED_INT, kind="SCALAR", target=_ELEMENT_ARRAY_BUFFER, bounds=False,
        )
        materials.append(_material(structure))
        meshes.append(
            {
                "name": structure.name,
                "primitives": [
                    {
                        "attributes": {"POSITION": position, "NORMAL": normal},
                        "indices": indices,
                        "material": len(materials) - 1,
                        "mode": _TRIANGLES,
                    }
                ],
            }
        )
        node: dict[str, Any] = {"name": structure.name, "mesh": len(meshes) - 1}
        if structure.codes:
            node["extras"] = {"codes": dict(structure.codes)}
        nodes.append(node)

    scene: dict[str, Any] = {
        "name": twin.name,
        "extras": {
            "frame": "glTF +Y up; the twin's RAS is x = -X, y = Z, z = Y",
            "source_units": twin.source_units,
            "units_detected": bool(twin.units_detected),
            "metadata": twin.metadata,
            "provenance": twin.provenance,
        },
    }
    if nodes:  # glTF forbids an empty "nodes" list
        scene["nodes"] = list(range(len(nodes)))
    document: dict[str, Any] = {
        "asset": {"version": "2.0", "generator": _generator()},
        "scene": 0,
        "scenes": [scene],
    }
    if nodes:
        document.update(
            nodes=nodes,
            meshes=meshes,
            materials=materials,
            accessors=buffer.accessors,
            bufferViews=buffer.views,
            buffers=[{"byteLength": buffer.length}],
        )
    try:
        text = json.dumps(document, separators=(",", ":"), allow_nan=False, default=str).encode()
    except ValueError as exc:
        raise ExportError(twin.name, f"twin metadata cannot be written as glTF extras: {exc}") from exc
    text += b" " * (-len(text) % 4)  # the JSON chunk is padded with spaces, the BIN chunk with zeros

    chunks = [struct.pack("<II", len(text), _CHUNK_JSON), text]
    if nodes:
        chunks += [struct.pack("<II", buffer.length, _CHUNK_BIN), *buffer.parts]
    body = b"".join(chunks)
    return struct.pack("<III", _GLB_MAGIC, 2, 12 + len(body)) + body


def export_glb(twin: Twin, path: str | Path) -> Path:
    """Write the twin as a GLB file, atomically (a temporary file renamed into place).

    Returns
    -------
    The path written.

    Raises
    ------
    ExportError
        The twin cannot be exported (see ``to_glb_bytes``) or the file cannot be written.
    """
    path = Path(path)
    data = to_glb_bytes(twin)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise ExportError(path, f"cannot write: {exc.strerror or exc}") from exc
    log.info("exported twin %r (%d triangles) to %s", twin.name, twin.triangle_count, path)
    return path
