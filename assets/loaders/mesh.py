"""Triangle-mesh files (glTF/GLB, OBJ, STL, PLY) through trimesh, one structure per scene node.

glTF is +Y up: its coordinates are rotated into the twin's RAS (+Z up, ``assets.twin.GLTF_FROM_TWIN``).
Every count a file declares is checked against the bytes present and against ``Limits`` before
trimesh sees the data (``preflight_*``); textures and images are dropped from glTF before parsing,
since a twin uses base colours only and an image is another decompression bomb. Names come from scene
nodes (glTF), objects/groups (OBJ) or the file; colours from base-colour factors, material diffuse
colours or uniform vertex/face colours.
"""

from __future__ import annotations

import io
import json
import logging
import re
import struct
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import numpy as np

from assets.errors import EmptyMeshError, UnreadableAssetError, UnsupportedFormatError
from assets.loaders import gltf
from assets.loaders.limits import DEFAULT_LIMITS, Limits, check_count, check_fits
from assets.twin import GLTF_FROM_TWIN, Color, Structure
from assets.validate import merge_identical_vertices

log = logging.getLogger(__name__)

FORMATS = ("glb", "gltf", "obj", "stl", "ply")

# --------------------------------------------------------------------------------------------- STL

_STL_HEADER = 84
_STL_RECORD = 50


def preflight_stl(data: bytes, source: str | Path, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Check a binary STL's triangle count against its size; return the data trimesh should parse.

    ASCII STL (text starting with ``solid`` whose size does not match a binary header) is bounded by
    the file size and passes unchanged. Trailing bytes after the declared triangles are cut off.
    """
    if len(data) >= _STL_HEADER:
        (count,) = struct.unpack_from("<I", data, 80)
        expected = _STL_HEADER + _STL_RECORD * count
        if len(data) == expected:
            check_count(source, "triangles", count, limits.max_faces)
            return data
    else:
        count, expected = -1, -1
    if data[:5].lower() == b"solid" and _looks_like_text(data):
        return data
    if count < 0:
        raise UnreadableAssetError(source, f"is {len(data)} bytes, shorter than a binary STL header")
    if expected > len(data):  # the size first: random bytes declare billions, which is no resource problem
        raise UnreadableAssetError(source, f"is not an STL file: its header declares {count:,} triangles "
                                   f"({expected:,} bytes), the file holds {len(data):,} (truncated or not STL)")
    check_count(source, "triangles", count, limits.max_faces)
    log.info("%s: ignoring %d bytes after the last triangle", source, len(data) - expected)
    return data[:expected]


def _looks_like_text(data: bytes) -> bool:
    head = data[:4096]
    return b"\x00" not in head and all(b < 0x80 for b in head)


# --------------------------------------------------------------------------------------------- PLY

_PLY_SIZES = {"char": 1, "int8": 1, "uchar": 1, "uint8": 1, "short": 2, "int16": 2, "ushort": 2, "uint16": 2,
              "int": 4, "int32": 4, "uint": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8,
              "float64": 8}


def preflight_ply(data: bytes, source: str | Path, limits: Limits = DEFAULT_LIMITS) -> None:
    """Parse a PLY header and check each element count against the limits and the body's size.

    A binary row needs at least the sum of its scalar sizes (a list needs at least its count field);
    an ASCII row needs at least two characters per property.
    """
    end = data.find(b"end_header", 0, limits.max_header_bytes)
    if not data.startswith(b"ply") or end < 0:
        raise UnreadableAssetError(source, "is not a PLY file (no 'ply' ... 'end_header' header)")
    newline = data.find(b"\n", end)
    body = len(data) - (newline + 1 if newline >= 0 else len(data))
    try:
        header = data[:end].decode("ascii")
    except UnicodeDecodeError:
        raise UnreadableAssetError(source, "PLY header is not ASCII text") from None
    fmt = None
    elements: list[list[Any]] = []  # [name, count, min_binary_bytes, n_properties]
    for line in header.splitlines()[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format" and len(words) >= 2:
            fmt = words[1]
        elif words[0] == "element" and len(words) == 3:
            try:
                count = int(words[2])
            except ValueError:
                raise UnreadableAssetError(source, f"PLY element count {words[2]!r} is not a number") from None
            elements.append([words[1], count, 0, 0])
        elif words[0] == "property" and elements:
            kind = words[2] if words[1:2] == ["list"] and len(words) >= 5 else words[1] if len(words) >= 3 else None
            if kind not in _PLY_SIZES:
                raise UnreadableAssetError(source, f"PLY property type in {line.strip()!r} is unknown")
            elements[-1][2] += _PLY_SIZES[kind]
            elements[-1][3] += 1
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise UnreadableAssetError(source, f"PLY format {fmt!r} is unknown")
    needed = 0
    for name, count, row_bytes, n_properties in elements:
        maximum = limits.max_faces if name == "face" else limits.max_vertices
        check_count(source, f"PLY '{name}' elements", count, maximum)
        needed += count * (row_bytes if fmt != "ascii" else 2 * n_properties)
    check_fits(source, "PLY header's element counts", needed, body)


# --------------------------------------------------------------------------------------------- OBJ

_OBJ_INDEX = re.compile(rb"^f\s", re.MULTILINE)


def preflight_obj(data: bytes, source: str | Path, limits: Limits = DEFAULT_LIMITS) -> None:
    """OBJ declares no counts; bound the face statements, which trimesh triangulates into arrays."""
    check_count(source, "OBJ face statements", len(_OBJ_INDEX.findall(data)), limits.max_faces)


# -------------------------------------------------------------------------------------------- glTF

_GLB_MAGIC = b"glTF"
_CHUNK_JSON = 0x4E4F534A
_CHUNK_BIN = 0x004E4942
_COMPONENT_BYTES = {5120: 1, 5121: 1, 5122: 2, 5123: 2, 5125: 4, 5126: 4}
_TYPE_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}


def split_glb(data: bytes, source: str | Path, limits: Limits = DEFAULT_LIMITS) -> tuple[dict[str, Any], bytes]:
    """Parse a GLB container: its JSON (a dict) and its BIN chunk (``b""`` when absent)."""
    if len(data) < 20 or data[:4] != _GLB_MAGIC:
        raise UnreadableAssetError(source, "is not a GLB file (no glTF magic)")
    version, length = struct.unpack_from("<II", data, 4)
    if version != 2:
        raise UnreadableAssetError(source, f"GLB version {version} is not supported (only 2)")
    check_fits(source, "GLB header's total length", length, len(data))
    json_length, json_type = struct.unpack_from("<II", data, 12)
    if json_type != _CHUNK_JSON:
        raise UnreadableAssetError(source, "GLB's first chunk is not JSON")
    check_count(source, "bytes of glTF JSON", json_length, limits.max_header_bytes)
    check_fits(source, "GLB JSON chunk", 20 + json_length, length)
    document = parse_gltf_json(data[20:20 + json_length], source)
    binary = b""
    offset = 20 + ((json_length + 3) & ~3)
    if offset + 8 <= length:
        bin_length, bin_type = struct.unpack_from("<II", data, offset)
        if bin_type == _CHUNK_BIN:
            check_fits(source, "GLB BIN chunk", offset + 8 + bin_length, length)
            binary = data[offset + 8:offset + 8 + bin_length]
    return document, binary


def parse_gltf_json(text: bytes, source: str | Path) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise UnreadableAssetError(source, f"glTF JSON is malformed ({str(exc).splitlines()[0][:80]})") from None
    if not isinstance(document, dict):
        raise UnreadableAssetError(source, "glTF JSON is not an object")
    return document


def _int(value: Any, source: str | Path, what: str, default: int | None = None) -> int:
    if value is None and default is not None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise UnreadableAssetError(source, f"glTF {what} is {value!r}, not a non-negative integer")
    return value


def _list(document: dict[str, Any], key: str, source: str | Path) -> list[Any]:
    value = document.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise UnreadableAssetError(source, f"glTF '{key}' is not a list of objects")
    return value


def preflight_gltf(document: dict[str, Any], buffer_sizes: list[int], source: str | Path,
                   limits: Limits = DEFAULT_LIMITS) -> None:
    """Check buffers, buffer views and accessors of a glTF document against the bytes available.

    ``buffer_sizes`` holds the bytes actually present for each buffer (GLB BIN chunk, data URI,
    external file). Every accessor must fit inside its buffer view and stay under the count limits,
    so that trimesh never reads past the data nor allocates for a forged count.
    """
    buffers = _list(document, "buffers", source)
    if len(buffers) != len(buffer_sizes):
        raise UnreadableAssetError(source, "glTF buffers could not all be located")
    declared = []
    for i, (buffer, available) in enumerate(zip(buffers, buffer_sizes, strict=True)):
        length = _int(buffer.get("byteLength"), source, f"buffers[{i}].byteLength")
        check_fits(source, f"glTF buffers[{i}]", length, available)
        declared.append(length)
    views = _list(document, "bufferViews", source)
    view_lengths = []
    for i, view in enumerate(views):
        index = _int(view.get("buffer"), source, f"bufferViews[{i}].buffer")
        if index >= len(declared):
            raise UnreadableAssetError(source, f"glTF bufferViews[{i}] refers to missing buffer {index}")
        offset = _int(view.get("byteOffset"), source, f"bufferViews[{i}].byteOffset", 0)
        length = _int(view.get("byteLength"), source, f"bufferViews[{i}].byteLength")
        _int(view.get("byteStride"), source, f"bufferViews[{i}].byteStride", 0)
        check_fits(source, f"glTF bufferViews[{i}]", offset + length, declared[index])
        view_lengths.append(length)
    maximum = 3 * max(limits.max_faces, limits.max_vertices)
    for i, accessor in enumerate(_list(document, "accessors", source)):
        count = _int(accessor.get("count"), source, f"accessors[{i}].count")
        check_count(source, f"elements in glTF accessors[{i}]", count, maximum)
        component = _COMPONENT_BYTES.get(accessor.get("componentType"))
        components = _TYPE_COMPONENTS.get(accessor.get("type"))
        if component is None or components is None:
            raise UnreadableAssetError(source, f"glTF accessors[{i}] has an unknown type or component type")
        element = component * components
        if "bufferView" in accessor:
            view_index = _int(accessor.get("bufferView"), source, f"accessors[{i}].bufferView")
            if view_index >= len(views):
                raise UnreadableAssetError(source, f"glTF accessors[{i}] refers to missing bufferView {view_index}")
            stride = _int(views[view_index].get("byteStride"), source, "byteStride", 0) or element
            offset = _int(accessor.get("byteOffset"), source, f"accessors[{i}].byteOffset", 0)
            needed = offset + (stride * (count - 1) + element if count else 0)
            check_fits(source, f"glTF accessors[{i}] ({count:,} elements)", needed, view_lengths[view_index])
        if "sparse" in accessor:
            raise UnsupportedFormatError(source, f"glTF accessors[{i}] is sparse, which is not supported")


def strip_images(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of a glTF document without images, textures and texture references (colours stay)."""
    clean = {k: v for k, v in document.items() if k not in ("images", "textures", "samplers")}
    materials = []
    for original in document.get("materials", []) or []:
        if not isinstance(original, dict):
            continue
        material = {k: v for k, v in original.items() if not k.endswith("Texture")}
        pbr = material.get("pbrMetallicRoughness")
        if isinstance(pbr, dict):
            material["pbrMetallicRoughness"] = {k: v for k, v in pbr.items() if not k.endswith("Texture")}
        materials.append(material)
    if "materials" in document:
        clean["materials"] = materials
    return clean


def _pack_glb(document: dict[str, Any], binary: bytes) -> bytes:
    text = json.dumps(document).encode()
    text += b" " * (-len(text) % 4)
    binary += b"\x00" * (-len(binary) % 4)
    chunks = struct.pack("<II", len(text), _CHUNK_JSON) + text
    if binary:
        chunks += struct.pack("<II", len(binary), _CHUNK_BIN) + binary
    return _GLB_MAGIC + struct.pack("<II", 2, 12 + len(chunks)) + chunks


def _data_uri_size(uri: str) -> int:
    payload = uri.partition(",")[2]
    return len(payload) * 3 // 4 if ";base64" in uri.partition(",")[0] else len(payload)


def _external(base: Path | None, uri: str, source: str | Path, limits: Limits) -> Path:
    """The file a relative glTF/OBJ reference names, inside ``base``; never outside it."""
    relative = Path(uri)
    if base is None or relative.is_absolute() or ".." in relative.parts or ":" in uri:
        raise UnreadableAssetError(source, f"refers to {uri!r}, which is not a file beside it")
    target = base / relative
    if not target.is_file():
        raise UnreadableAssetError(source, f"refers to {uri!r}, which does not exist")
    check_count(source, f"bytes in {uri!r}", target.stat().st_size, limits.max_file_bytes)
    return target


# ------------------------------------------------------------------------------------------ loading


def _resolver(base: Path | None, source: str | Path, limits: Limits) -> Any:
    """A trimesh resolver that serves only regular files beside the source, within the size limit."""
    import trimesh  # noqa: PLC0415 - trimesh only when a mesh file is read

    class _Bounded(trimesh.resolvers.Resolver):
        def __init__(self) -> None:  # the base class declares __init__ abstract
            pass

        def get(self, name: str) -> bytes:
            return _external(base, name, source, limits).read_bytes()

        def keys(self) -> list[str]:
            return []

        def namespaced(self, namespace: str) -> _Bounded:
            raise UnreadableAssetError(source, "nested resource folders are not supported")

        def write(self, name: str, data: Any) -> None:
            raise PermissionError(name)

    return _Bounded()


def prepare(data: bytes, kind: str, source: str | Path, base: Path | None,
            limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Check ``data`` of format ``kind`` and return the bytes trimesh should parse."""
    if kind == "stl":
        return preflight_stl(data, source, limits)
    if kind == "ply":
        preflight_ply(data, source, limits)
        return data
    if kind == "obj":
        preflight_obj(data, source, limits)
        return data
    if kind in ("glb", "gltf"):
        if kind == "glb":
            document, binary = split_glb(data, source, limits)
        else:
            check_count(source, "bytes of glTF JSON", len(data), limits.max_header_bytes)
            document, binary = parse_gltf_json(data, source), b""
        gltf.check_required_extensions(document, source)
        sizes, uris = [], []
        for buffer in _list(document, "buffers", source):
            uri = buffer.get("uri")
            if uri is None and kind == "gltf":
                raise UnreadableAssetError(source, "glTF buffer has no uri (only GLB may embed one)")
            if uri is not None and not isinstance(uri, str):
                raise UnreadableAssetError(source, "glTF buffer uri is not a string")
            uris.append(uri)
            sizes.append(len(binary) if uri is None else _data_uri_size(uri) if uri.startswith("data:")
                         else _external(base, uri, source, limits).stat().st_size)
        preflight_gltf(document, sizes, source, limits)
        buffers = [gltf.buffer_bytes(uri, binary, lambda name: _external(base, name, source, limits).read_bytes())
                   for uri in uris]
        document, binary = gltf.normalise(strip_images(document), buffers, source)
        return _pack_glb(document, binary)
    raise UnsupportedFormatError(source, f"mesh format {kind!r} is not one of {', '.join(FORMATS)}")


def _color(geometry: Any) -> Color | None:
    """Base colour (linear RGBA 0..1) of a trimesh geometry, when its file gave one."""
    visual = getattr(geometry, "visual", None)
    if visual is None:
        return None
    rgba = None
    if visual.kind == "texture":
        material = getattr(visual, "material", None)
        factor = getattr(material, "baseColorFactor", None)
        rgba = factor if factor is not None else getattr(material, "main_color", None)
    elif visual.kind in ("face", "vertex"):
        rgba = visual.main_color
    if rgba is None:
        return None
    values = np.asarray(rgba, dtype=np.float64).reshape(-1)[:4]
    if len(values) < 3 or not np.isfinite(values).all():
        return None
    if values.max() > 1.0:
        values = values / 255.0
    values = np.clip(values, 0.0, 1.0)
    alpha = float(values[3]) if len(values) == 4 else 1.0
    return (float(values[0]), float(values[1]), float(values[2]), alpha)


def load_mesh_file(data: bytes, kind: str, source: str | Path, *, base: Path | None = None,
                   default_name: str = "mesh", limits: Limits = DEFAULT_LIMITS,
                   on_geometry: Callable[[int], None] | None = None) -> list[Structure]:
    """Structures (in the file's own units) from the bytes of a mesh file.

    Parameters
    ----------
    data : the file's bytes.
    kind : one of ``FORMATS``.
    source : the file, named in errors.
    base : folder that external resources (glTF buffers, OBJ materials) may be read from.
    default_name : structure name for files without node or object names.

    Raises
    ------
    UnreadableAssetError, ResourceLimitError, UnsupportedFormatError
    """
    import trimesh  # noqa: PLC0415 - trimesh only when a mesh file is read

    prepared = prepare(data, kind, source, base, limits)
    # glTF comes back from prepare as one self-contained GLB
    file_type = "glb" if kind == "gltf" else kind
    scene = trimesh.load_scene(io.BytesIO(prepared), file_type=file_type, resolver=_resolver(base, source, limits),
                               process=False)
    structures: list[Structure] = []
    taken: set[str] = set()
    total_vertices = 0
    for node in scene.graph.nodes_geometry:
        transform, geometry_name = scene.graph[node]
        geometry = scene.geometry.get(geometry_name)
        if not isinstance(geometry, trimesh.Trimesh) or len(geometry.faces) == 0:
            continue  # points and lines are not surfaces
        vertices = np.asarray(geometry.vertices, dtype=np.float64)
        faces = np.asarray(geometry.faces, dtype=np.int64)
        total_vertices += len(vertices)
        check_count(source, "vertices in all meshes", total_vertices, limits.max_vertices)
        transform = np.asarray(transform, dtype=np.float64)
        if not np.allclose(transform, np.eye(4)):
            vertices = vertices @ transform[:3, :3].T + transform[:3, 3]
            if np.linalg.det(transform[:3, :3]) < 0:
                faces = faces[:, ::-1]  # a mirroring transform turns the winding inside out
        if kind in ("glb", "gltf"):
            vertices = vertices @ GLTF_FROM_TWIN.T  # glTF's +Y up into the twin's RAS (the matrix is its own inverse)
        if kind == "stl":
            # STL stores every triangle's corners separately; sharing them is what the format means,
            # not a repair (without it every edge would look like a hole).
            vertices, faces, _ = merge_identical_vertices(vertices, faces)
        name = _structure_name(node, geometry_name, default_name, len(scene.graph.nodes_geometry))
        unique, n = name, 2
        while unique in taken:
            unique, n = f"{name}-{n}", n + 1
        taken.add(unique)
        color = _color(geometry)
        kwargs: dict[str, Any] = {"color": color} if color is not None else {}
        structures.append(Structure(unique, vertices.astype(np.float32), faces.astype(np.int32), **kwargs))
        if on_geometry is not None:
            on_geometry(len(structures))
    if not structures:
        raise EmptyMeshError(source, "holds no triangles")
    return structures


def _structure_name(node: Hashable, geometry: Hashable | None, default: str, n_nodes: int) -> str:
    """A node's name, else its geometry's, else ``default`` (trimesh names them with any hashable)."""
    if n_nodes == 1:
        return default
    name = str(node or geometry or default).strip()
    return name or default


__all__ = [
    "FORMATS",
    "load_mesh_file",
    "preflight_gltf",
    "preflight_ply",
    "preflight_stl",
    "prepare",
    "split_glb",
]
