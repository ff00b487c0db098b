"""glTF geometry that trimesh does not read as the spec means it, rewritten into plain triangle lists.

``normalise`` runs after ``assets.loaders.mesh.preflight_gltf`` has checked every buffer, view and
accessor against the bytes present, and before trimesh parses anything. It

- refuses, in one line, a file that *requires* an extension whose data medverse cannot decode (Draco
  and meshopt compression, GPU instancing, ...): such a file's accessors hold placeholders, and
  reading them anyway gives an empty or wrong mesh;
- decodes ``KHR_mesh_quantization``: positions stored as (normalized) 8- or 16-bit integers become
  float32, so a quantized mesh keeps its size (trimesh ignored ``normalized``: a 100 mm mesh whose
  node scales unit-range positions came out 3.3 km across);
- turns triangle strips and fans (modes 5 and 6) into triangle lists with the winding the spec gives
  them (trimesh dropped fans);
- joins every buffer (GLB chunk, data URIs, files beside a ``.gltf``) into one, so the result is a
  self-contained GLB.
"""

from __future__ import annotations

import base64
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np

from assets.errors import UnreadableAssetError, UnsupportedFormatError

#: Required extensions whose data this module decodes.
DECODED = frozenset({"KHR_mesh_quantization"})
#: Prefixes of extensions that change only looks a twin does not keep (it keeps base colours): a file
#: that requires one still has plain geometry.
IGNORABLE = ("KHR_materials_", "KHR_texture_", "EXT_texture_", "KHR_lights_")

_TRIANGLES, _STRIP, _FAN = 4, 5, 6
_DTYPES = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_FLOAT, _UNSIGNED_INT = 5126, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963


def check_required_extensions(document: dict[str, Any], source: str | Path) -> None:
    """Raise ``UnsupportedFormatError`` when the file requires an extension medverse cannot decode."""
    required = document.get("extensionsRequired", [])
    if not isinstance(required, list) or not all(isinstance(name, str) for name in required):
        raise UnreadableAssetError(source, "glTF extensionsRequired is not a list of names")
    unsupported = [name for name in required if name not in DECODED and not name.startswith(IGNORABLE)]
    if unsupported:
        raise UnsupportedFormatError(source, f"requires the glTF extension {', '.join(unsupported)}, which medverse "
                                     "cannot decode; export it without that compression")


def buffer_bytes(uri: str | None, binary: bytes, read_file: Any) -> bytes:
    """The bytes of one glTF buffer: the GLB chunk (no uri), a data URI, or ``read_file(uri)``."""
    if uri is None:
        return binary
    if uri.startswith("data:"):
        header, _, payload = uri.partition(",")
        return base64.b64decode(payload) if header.endswith(";base64") else urllib.parse.unquote_to_bytes(payload)
    data: bytes = read_file(uri)
    return data


class _Writer:
    """The joined buffer: the original buffers, then every array this module adds, 4-byte aligned."""

    def __init__(self, document: dict[str, Any], buffers: list[bytes]) -> None:
        self.document = document
        self.data = bytearray()
        starts = [self._append(data) for data in buffers]
        for view in document.get("bufferViews", []):
            view["byteOffset"] = starts[int(view["buffer"])] + int(view.get("byteOffset", 0))
            view["buffer"] = 0

    def _append(self, data: bytes) -> int:
        start = len(self.data)
        self.data += data
        self.data += b"\0" * (-len(self.data) % 4)
        return start

    def read(self, index: int) -> np.ndarray:
        """Accessor ``index`` as (count, width) values of its component type, strides honoured."""
        accessor = self.document["accessors"][index]
        dtype = np.dtype(_DTYPES[accessor["componentType"]]).newbyteorder("<")
        width, count = _WIDTH[accessor["type"]], int(accessor["count"])
        if "bufferView" not in accessor or count == 0:  # the spec's all-zero accessor
            return np.zeros((count, width), dtype=dtype)
        view = self.document["bufferViews"][accessor["bufferView"]]
        stride = int(view.get("byteStride", 0)) or dtype.itemsize * width
        start = int(view["byteOffset"]) + int(accessor.get("byteOffset", 0))
        rows = np.ndarray((count, width), dtype=dtype, buffer=self.data, offset=start,
                          strides=(stride, dtype.itemsize))
        return rows.copy()

    def add(self, values: np.ndarray, component: int, kind: str, target: int) -> int:
        """Append ``values`` as a tightly packed view and accessor; return the accessor's index."""
        data = np.ascontiguousarray(values, dtype=np.dtype(_DTYPES[component]).newbyteorder("<")).tobytes()
        views = self.document.setdefault("bufferViews", [])
        views.append({"buffer": 0, "byteOffset": self._append(data), "byteLength": len(data), "target": target})
        accessor: dict[str, Any] = {"bufferView": len(views) - 1, "componentType": component,
                                    "count": len(values), "type": kind}
        if kind == "VEC3":
            accessor.update(min=[float(x) for x in values.min(axis=0)], max=[float(x) for x in values.max(axis=0)])
        accessors = self.document.setdefault("accessors", [])
        accessors.append(accessor)
        return len(accessors) - 1


def dequantize(values: np.ndarray, normalized: bool) -> np.ndarray:
    """Integer accessor values as float32, mapped to -1..1 (signed) or 0..1 (unsigned) when normalized,
    by the glTF 2.0 formulas (``max(c / (2^(b-1) - 1), -1)``, ``c / (2^b - 1)``)."""
    if values.dtype == np.float32:
        return values
    result = values.astype(np.float64)
    if normalized:
        info = np.iinfo(values.dtype)
        result = np.maximum(result / info.max, -1.0)
    return result.astype(np.float32)


def strip_or_fan_to_triangles(indices: np.ndarray, mode: int) -> np.ndarray:
    """(M, 3) triangles of a strip or a fan of vertex ``indices``, wound as glTF 2.0 (3.7.2.1) says:
    strip triangle i is (v[i], v[i + 1 + i % 2], v[i + 2 - i % 2]); fan triangle i is
    (v[i + 1], v[i + 2], v[0]). Triangles that repeat a vertex (strip restarts) are dropped."""
    n = len(indices) - 2
    if n <= 0:
        return np.zeros((0, 3), dtype=np.uint32)
    i = np.arange(n)
    if mode == _STRIP:
        triangles = np.stack([indices[i], indices[i + 1 + i % 2], indices[i + 2 - i % 2]], axis=1)
    else:
        triangles = np.stack([indices[i + 1], indices[i + 2], np.full(n, indices[0])], axis=1)
    keep = (triangles[:, 0] != triangles[:, 1]) & (triangles[:, 1] != triangles[:, 2]) & (triangles[:, 0] != triangles[:, 2])
    result: np.ndarray = triangles[keep].astype(np.uint32)
    return result


def normalise(document: dict[str, Any], buffers: list[bytes], source: str | Path) -> tuple[dict[str, Any], bytes]:
    """A document and one binary buffer holding the same geometry as float positions and triangle lists.

    ``document`` must have passed ``preflight_gltf`` with ``buffers`` (one bytes object per buffer).
    """
    check_required_extensions(document, source)
    writer = _Writer(document, buffers)
    decoded: dict[int, int] = {}  # quantized accessor -> its float copy
    for mesh in document.get("meshes", []) or []:
        for primitive in mesh.get("primitives", []) if isinstance(mesh, dict) else []:
            attributes = primitive.get("attributes", {})
            if not isinstance(attributes, dict) or "POSITION" not in attributes:
                continue
            position = int(attributes["POSITION"])
            accessor = document["accessors"][position]
            if accessor["componentType"] != _FLOAT:
                if position not in decoded:
                    values = dequantize(writer.read(position), bool(accessor.get("normalized", False)))
                    decoded[position] = writer.add(values[:, :3], _FLOAT, "VEC3", _ARRAY_BUFFER)
                attributes["POSITION"] = decoded[position]
            normal = attributes.get("NORMAL")
            if normal is not None and document["accessors"][int(normal)]["componentType"] != _FLOAT:
                del attributes["NORMAL"]  # quantized normals: a twin computes its own
            mode = primitive.get("mode", _TRIANGLES)
            if mode in (_STRIP, _FAN):
                count = int(document["accessors"][attributes["POSITION"]]["count"])
                order = (writer.read(int(primitive["indices"])).reshape(-1).astype(np.int64)
                         if "indices" in primitive else np.arange(count))
                triangles = strip_or_fan_to_triangles(order, mode)
                if len(triangles) == 0:
                    raise UnreadableAssetError(source, f"glTF mesh {mesh.get('name', '?')!r} has a triangle "
                                               f"{'strip' if mode == _STRIP else 'fan'} without a triangle")
                primitive["indices"] = writer.add(triangles.reshape(-1), _UNSIGNED_INT, "SCALAR", _ELEMENT_ARRAY_BUFFER)
                primitive["mode"] = _TRIANGLES
    binary = bytes(writer.data)
    document["buffers"] = [{"byteLength": len(binary)}] if binary else []
    if not binary:
        document.pop("bufferViews", None)
    document.pop("extensionsRequired", None)
    return document, binary


__all__ = ["DECODED", "IGNORABLE", "check_required_extensions", "dequantize", "normalise", "strip_or_fan_to_triangles"]
