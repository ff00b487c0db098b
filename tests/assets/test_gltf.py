"""glTF geometry beyond plain float triangle lists (assets.loaders.gltf): KHR_mesh_quantization,
required extensions medverse cannot decode, triangle strips and fans. Every file a test writes is first
shown valid by the Khronos validator, so each test is about a file other tools accept."""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path
from typing import Any

import nibabel as nib
import nilearn
import numpy as np
import pytest
import trimesh

from assets.errors import UnsupportedFormatError
from assets.loaders import load
from assets.twin import GLTF_FROM_TWIN, Structure
from assets.validate import _signed_volume, check, is_watertight, merge_identical_vertices

FSAVERAGE5 = Path(nilearn.__file__).parent / "datasets" / "data" / "fsaverage5"
VALIDATOR = Path(__file__).resolve().parents[2] / "tools" / "validate_gltf.mjs"


def khronos_errors(data: bytes) -> list[Any]:
    result = subprocess.run(["node", str(VALIDATOR), "-"], input=data, capture_output=True, timeout=60, check=False)
    assert result.returncode in (0, 1), result.stderr.decode()
    report = json.loads(result.stdout)
    return [m for m in report["issues"]["messages"] if m["severity"] == 0]


def glb(document: dict[str, Any], binary: bytes) -> bytes:
    text = json.dumps(document).encode()
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    body = struct.pack("<II", len(text), 0x4E4F534A) + text + struct.pack("<II", len(binary), 0x004E4942) + binary
    return b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body


class Builder:
    """A one-buffer glTF document under construction: views and accessors appended in order."""

    def __init__(self) -> None:
        self.binary = b""
        self.views: list[dict[str, Any]] = []
        self.accessors: list[dict[str, Any]] = []

    def accessor(self, values: np.ndarray, component: int, kind: str, target: int, *, stride: int = 0,
                 normalized: bool = False, bounds: bool = False) -> int:
        rows = np.ascontiguousarray(values)
        raw = rows.tobytes()
        if stride:  # pad each element to the stride (quantized VEC3 of int16 is 6 bytes, aligned to 8)
            width = rows.itemsize * (rows.shape[1] if rows.ndim > 1 else 1)
            raw = b"".join(raw[i:i + width] + b"\0" * (stride - width) for i in range(0, len(raw), width))
        self.views.append({"buffer": 0, "byteOffset": len(self.binary), "byteLength": len(raw), "target": target,
                           **({"byteStride": stride} if stride else {})})
        self.binary += raw + b"\0" * (-len(raw) % 4)
        accessor: dict[str, Any] = {"bufferView": len(self.views) - 1, "componentType": component,
                                    "count": len(rows), "type": kind}
        if normalized:
            accessor["normalized"] = True
        if bounds:
            accessor.update(min=rows.min(axis=0).tolist(), max=rows.max(axis=0).tolist())
        self.accessors.append(accessor)
        return len(self.accessors) - 1

    def document(self, primitives: list[dict[str, Any]], node: dict[str, Any] | None = None,
                 **top: Any) -> dict[str, Any]:
        return {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}],
                "nodes": [{"mesh": 0, **(node or {})}], "meshes": [{"primitives": primitives}],
                "accessors": self.accessors, "bufferViews": self.views,
                "buffers": [{"byteLength": len(self.binary) + (-len(self.binary) % 4)}], **top}


@pytest.fixture(scope="module")
def pial() -> tuple[np.ndarray, np.ndarray]:
    """The real fsaverage5 left pial surface: RAS vertices in metres, faces."""
    image = nib.load(FSAVERAGE5 / "pial_left.gii.gz")
    return np.asarray(image.darrays[0].data, dtype=np.float64) / 1000.0, np.asarray(image.darrays[1].data)


def quantized_glb(vertices: np.ndarray, faces: np.ndarray) -> bytes:
    """The surface as KHR_mesh_quantization stores it: normalized int16 positions in -1..1 (stride 8),
    the node's scale and translation bringing them back to metres; glTF's +Y up."""
    gltf = vertices @ GLTF_FROM_TWIN.T
    centre = (gltf.max(axis=0) + gltf.min(axis=0)) / 2
    half = float(np.abs(gltf - centre).max())
    quantized = np.round((gltf - centre) / half * 32767).astype(np.int16)
    b = Builder()
    position = b.accessor(quantized, 5122, "VEC3", 34962, stride=8, normalized=True, bounds=True)
    indices = b.accessor(faces.astype(np.uint32).reshape(-1), 5125, "SCALAR", 34963)
    document = b.document([{"attributes": {"POSITION": position}, "indices": indices}],
                          node={"scale": [half] * 3, "translation": centre.tolist()},
                          extensionsUsed=["KHR_mesh_quantization"], extensionsRequired=["KHR_mesh_quantization"])
    return glb(document, b.binary)


def test_quantized_mesh_keeps_its_size(tmp_path: Path, pial: tuple[np.ndarray, np.ndarray]) -> None:
    """A real cortex stored with KHR_mesh_quantization (valid for Khronos) loads at its true size, within
    the quantization step, not 32,767 times too large."""
    vertices, faces = pial
    data = quantized_glb(vertices, faces)
    assert khronos_errors(data) == []
    path = tmp_path / "cortex.glb"
    path.write_bytes(data)
    twin = load(path)
    (structure,) = twin.structures
    assert structure.triangle_count == len(faces)
    step = np.abs(vertices).max() * 2 / 65534
    np.testing.assert_allclose(twin.bounds(), [vertices.min(axis=0), vertices.max(axis=0)], atol=2 * step + 1e-6)
    assert 0.15 < np.ptp(twin.bounds(), axis=0).max() < 0.20  # metres: a hemisphere, not 3 km
    assert check(structure) == []


def test_required_draco_compression_is_refused_in_one_line(tmp_path: Path, pial: tuple[np.ndarray, np.ndarray]) -> None:
    """A file that requires KHR_draco_mesh_compression is refused naming the extension, not imported
    from its placeholder accessors; an extension used but not required changes nothing."""
    vertices, faces = pial
    mesh = trimesh.Trimesh(vertices @ GLTF_FROM_TWIN.T, faces, process=False)
    data = mesh.export(file_type="glb")
    length = struct.unpack_from("<I", data, 12)[0]
    document = json.loads(data[20:20 + length])
    binary = data[20 + length + 8:]
    path = tmp_path / "compressed.glb"
    path.write_bytes(glb({**document, "extensionsUsed": ["KHR_draco_mesh_compression"],
                          "extensionsRequired": ["KHR_draco_mesh_compression"]}, binary))
    with pytest.raises(UnsupportedFormatError) as refused:
        load(path)
    message = str(refused.value)
    assert "\n" not in message and "requires the glTF extension KHR_draco_mesh_compression" in message
    path.write_bytes(glb({**document, "extensionsUsed": ["KHR_materials_unlit"],
                          "extensionsRequired": ["KHR_materials_unlit"]}, binary))
    assert load(path).triangle_count == len(faces)


def test_strips_and_fans_become_triangles_wound_outwards(tmp_path: Path) -> None:
    """A closed cylinder (r 30 mm, h 80 mm) drawn as glTF draws one: its side as an indexed triangle
    strip, its caps as two fans (one indexed, one not). It loads whole, watertight, wound outwards,
    with the cylinder's volume; trimesh alone dropped the fans."""
    n, radius, height = 48, 0.03, 0.08
    angle = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    ring = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    bottom = np.column_stack([ring, np.zeros(n)])
    top = np.column_stack([ring, np.full(n, height)])
    # RAS vertices: 0..n-1 bottom ring, n..2n-1 top ring, then the caps' centres.
    ras = np.vstack([bottom, top, [[0, 0, 0]], [[0, 0, height]]])
    positions = (ras @ GLTF_FROM_TWIN.T).astype(np.float32)
    b = Builder()
    pos = b.accessor(positions, 5126, "VEC3", 34962, bounds=True)
    k = np.arange(n + 1) % n
    side = np.stack([k + n, k], axis=1).reshape(-1).astype(np.uint16)  # t0 b0 t1 b1 ...: wound outwards
    strip = b.accessor(side, 5123, "SCALAR", 34963)
    top_fan = np.concatenate([[2 * n + 1], n + k]).astype(np.uint32)  # counter-clockwise seen from above
    fan = b.accessor(top_fan, 5125, "SCALAR", 34963)
    # The bottom cap without indices: its own vertices, centre first, clockwise seen from above.
    bottom_fan = np.vstack([[[0, 0, 0]], bottom[k][::-1]]) @ GLTF_FROM_TWIN.T
    pos_bottom = b.accessor(bottom_fan.astype(np.float32), 5126, "VEC3", 34962, bounds=True)
    document = b.document([{"attributes": {"POSITION": pos}, "indices": strip, "mode": 5},
                           {"attributes": {"POSITION": pos}, "indices": fan, "mode": 6},
                           {"attributes": {"POSITION": pos_bottom}, "mode": 6}])
    data = glb(document, b.binary)
    assert khronos_errors(data) == []
    path = tmp_path / "cylinder.glb"
    path.write_bytes(data)
    twin = load(path)
    assert twin.triangle_count == 2 * n + n + n
    # One structure per primitive (as for any multi-primitive mesh); welded, they close the cylinder.
    offsets = np.cumsum([0] + [s.vertex_count for s in twin.structures])
    vertices = np.vstack([s.vertices for s in twin.structures])
    faces = np.vstack([s.faces + o for s, o in zip(twin.structures, offsets, strict=False)])
    vertices, faces, _ = merge_identical_vertices(vertices, faces)
    cylinder = Structure("cylinder", vertices, faces)
    assert is_watertight(cylinder) and check(cylinder) == []
    polygon = 0.5 * n * radius**2 * np.sin(2 * np.pi / n)
    assert _signed_volume(cylinder.vertices, cylinder.faces) == pytest.approx(polygon * height, rel=1e-4)
    lo, hi = twin.bounds()
    assert hi[2] - lo[2] == pytest.approx(height, abs=1e-6) and lo[2] == pytest.approx(0.0, abs=1e-6)  # upright
