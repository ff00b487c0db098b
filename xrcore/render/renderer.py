"""The stereo renderer: the only module that issues OpenGL calls.

What it draws
    A :class:`~xrcore.scene.Scene`: the twin's structures with per-structure colour and opacity
    (opaque first, then transparent ones back to front, each back faces before front faces),
    Blinn-Phong lighting, a rim highlight on selected structures, up to six clip planes through
    ``gl_ClipDistance`` with the cut capped (the back faces seen through the cut are drawn as a flat lit
    surface facing out of it), instanced markers: landmarks, annotation strokes and avatars' heads,
    hands and pointer rays, and text labels (avatars' names, landmark texts, the selected
    structure's name) as head-facing billboards after all geometry, alpha-blended, glyphs from a
    Pillow-built atlas (:mod:`xrcore.render.glyphs`) in one instanced draw.

How
    All structures and their levels of detail share one vertex buffer (position and normal,
    float32) and one index buffer, uploaded once when the renderer first sees a twin; the small
    per-structure material table lives in a texture buffer re-uploaded only when the scene's
    ``version`` changes. Opaque structures go out in one ``glMultiDrawElementsIndirect`` call
    (GL 4.3+; a loop of draws otherwise), so the Python work per frame does not grow with the
    vertex count and barely with the structure count.

Stereo
    Both eyes render into one 2-layer multisampled texture array (the layout of an OpenXR array
    swapchain), resolved into a single-sampled sRGB 2-layer array. ``stereo="auto"`` picks the first
    available of: ``"multiview"`` (``GL_OVR_multiview2``: one pass, the driver replicates the draw per
    view), ``"layered"`` (``GL_ARB_shader_viewport_layer_array`` / ``GL_AMD_vertex_shader_layer``: one
    pass of instanced draws, the vertex shader writes ``gl_Layer``; llvmpipe has it) and
    ``"two-pass"`` (one pass per eye).

Frame statistics
    CPU time per frame (Python, issuing the frame) and GPU time (``GL_TIME_ELAPSED`` queries read back
    without stalling a few frames later) go into :class:`~xrcore.stats.FrameStats`.
"""

from __future__ import annotations

import ctypes
import logging
import math
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

import numpy as np

from xrcore.gl import GLContextError, prepare_pyopengl

prepare_pyopengl()

from OpenGL import GL  # noqa: E402 - PyOpenGL's platform must be chosen first
from OpenGL.raw.GL.VERSION.GL_1_0 import glReadPixels as _raw_read_pixels  # noqa: E402
from OpenGL.raw.GL.VERSION.GL_1_2 import glTexImage3D as _raw_tex_image_3d  # noqa: E402
from OpenGL.raw.GL.VERSION.GL_1_5 import glGetQueryObjectiv as _raw_query_iv  # noqa: E402
from OpenGL.raw.GL.VERSION.GL_2_0 import glUniform1i as _raw_uniform1i  # noqa: E402
from OpenGL.raw.GL.VERSION.GL_2_0 import glUniform3fv as _raw_uniform3fv  # noqa: E402
from OpenGL.raw.GL.VERSION.GL_2_0 import glUniform4fv as _raw_uniform4fv  # noqa: E402
from OpenGL.raw.GL.VERSION.GL_2_0 import glUniformMatrix3fv as _raw_uniform_matrix3fv  # noqa: E402
from OpenGL.raw.GL.VERSION.GL_2_0 import glUniformMatrix4fv as _raw_uniform_matrix4fv  # noqa: E402
from OpenGL.raw.GL.VERSION.GL_3_3 import glGetQueryObjectui64v as _raw_query_ui64v  # noqa: E402

from assets.geometry import vertex_normals  # noqa: E402
from assets.twin import Twin  # noqa: E402
from xrcore.render.glyphs import GlyphAtlas  # noqa: E402
from xrcore.scene import AVATAR_HEAD_RADIUS, MAX_CLIP_PLANES, Label, Scene, Sphere  # noqa: E402
from xrcore.stats import FrameStats  # noqa: E402
from xrcore.types import View  # noqa: E402

logger = logging.getLogger(__name__)

StereoMode = Literal["auto", "multiview", "layered", "two-pass"]
_MODE_DEFINE = {"two-pass": 0, "layered": 1, "multiview": 2}
_TIMER_RING = 8
#: Triangles per flushed multi-draw batch on a software rasteriser: at least this many, more on big
#: framebuffers (one per ``_PIXELS_PER_BATCH_TRIANGLE`` pixels per eye), since each flush there costs
#: a load and store of every multisampled tile and each wait for a batch a hand-over, while each
#: batch in flight holds its binned triangles in memory (about 16 MB per 50k at 4x MSAA).
_MIN_BATCH_TRIANGLES = 50_000
_PIXELS_PER_BATCH_TRIANGLE = 70
#: Flushed batches a software rasteriser may hold undrawn before the renderer waits for the oldest.
_BATCHES_IN_FLIGHT = 3
_FENCE_TIMEOUT_NS = 10_000_000_000
_SELECT_COLOR = (1.0, 0.55, 0.1)
#: Strength of the hovered structures' highlight (the selection's is 1): a faint rim that says what a
#: trigger pull would select.
_HOVER_HIGHLIGHT = 0.4
_CAP_TINT = (0.8, 0.62, 0.55)
#: Margin of a label's plate around its text, line units.
_PLATE_PAD = 0.18
#: Laid-out label texts kept for reuse (a label that comes back costs no layout).
_LAYOUT_CACHE = 256
_ATLAS: GlyphAtlas | None = None


def glyph_atlas() -> GlyphAtlas:
    """The process's glyph atlas, rasterised on first use (about 0.2 s) and shared by renderers."""
    global _ATLAS
    if _ATLAS is None:
        _ATLAS = GlyphAtlas()
    return _ATLAS


class RenderError(RuntimeError):
    """A shader failed to build or the GL state is unusable; the message carries the GL log."""


@dataclass
class RendererConfig:
    """Renderer settings.

    ``width``, ``height``: pixels per eye; ``samples``: MSAA samples (clamped to what the context
    offers; 1 turns MSAA off); ``stereo``: see the module docstring; ``srgb``: store colour as sRGB
    (shaders work in linear light); ``lod``: ``"auto"`` picks a level of detail per structure from
    its projected size, an int forces that level (clamped to what each structure has);
    ``near``, ``far``: clip distances, metres; ``rate_hz``: display rate for dropped-frame counting;
    ``timer_queries``: measure GPU time; ``cull_back_faces``: skip opaque back faces while no clip
    plane is active (turn off for open or inconsistently wound meshes).
    """

    width: int = 720
    height: int = 800
    samples: int = 4
    stereo: StereoMode = "auto"
    srgb: bool = True
    lod: str | int = "auto"
    near: float = 0.05
    far: float = 100.0
    rate_hz: float = 90.0
    timer_queries: bool = True
    cull_back_faces: bool = True

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ValueError(f"eye size must be positive, got {self.width}x{self.height}")
        if self.stereo not in ("auto", "multiview", "layered", "two-pass"):
            raise ValueError(f"stereo must be auto, multiview, layered or two-pass, got {self.stereo!r}")
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")


@dataclass
class _TwinGPU:
    """GPU copies of one twin: shared buffers and, per structure, index ranges per level of detail."""

    twin: Twin
    vbo: int
    ibo: int
    id_buffer: int
    vao_mdi: int
    vao_loop: int
    materials_buffer: int
    materials_texture: int
    # ranges[s][k] = (first index, index count) of structure s at level k
    ranges: list[list[tuple[int, int]]]
    centers: np.ndarray  # (S, 3) twin coordinates, metres
    radii: np.ndarray  # (S,) metres
    material_version: int = -1
    nbytes: int = 0


@dataclass
class _Program:
    handle: int
    uniforms: dict[str, int] = field(default_factory=dict)
    #: Bytes of the value last given to each uniform set through :meth:`set` (a program keeps its
    #: uniforms' values, so an unchanged one costs no GL call).
    values: dict[str, bytes] = field(default_factory=dict)

    def loc(self, name: str) -> int:
        if name not in self.uniforms:
            self.uniforms[name] = int(GL.glGetUniformLocation(self.handle, name))
        return self.uniforms[name]

    def set(self, name: str, setter: Any, data: np.ndarray, *lead: Any) -> None:
        """``setter(location, *lead, data)`` (a raw ``glUniform*v`` entry point: no PyOpenGL array
        wrapping) when ``data`` (float32, contiguous) differs from what the uniform holds."""
        key = data.tobytes()
        if self.values.get(name) != key:
            self.values[name] = key
            setter(self.loc(name), *lead, data)


def _eye_matrices(views: list[View], near: float, far: float) -> tuple[np.ndarray, np.ndarray]:
    """(2, 4, 4) float32 view-projection matrices and (2, 3) float32 positions of the first two views.

    The same products as ``fov.projection(near, far) @ pose.inverse_matrix()``, written out in plain
    floats: a frame needs 32 numbers, and a dozen small numpy calls per eye cost more than the maths.
    """
    out: list[float] = []
    eyes: list[float] = []
    for v in views[:2]:
        f = v.fov
        left, right = math.tan(f.angle_left), math.tan(f.angle_right)
        up, down = math.tan(f.angle_up), math.tan(f.angle_down)
        x, y, z, w = v.pose.orientation
        px, py, pz = (float(c) for c in v.pose.position)
        n = x * x + y * y + z * z + w * w
        s = 2.0 / n if n > 0 else 0.0
        # rows of the view matrix: the rotation's columns (the eye's axes in the world), and -R^T p
        r00, r01, r02 = 1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w)
        r10, r11, r12 = s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w)
        r20, r21, r22 = s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y)
        v0 = (r00, r10, r20, -(r00 * px + r10 * py + r20 * pz))
        v1 = (r01, r11, r21, -(r01 * px + r11 * py + r21 * pz))
        v2 = (r02, r12, r22, -(r02 * px + r12 * py + r22 * pz))
        # projection rows (a, 0, b, 0), (0, c, d, 0), (0, 0, zz, zw), (0, 0, -1, 0)
        a, b = 2.0 / (right - left), (right + left) / (right - left)
        c, d = 2.0 / (up - down), (up + down) / (up - down)
        zz, zw = -(far + near) / (far - near), -2.0 * far * near / (far - near)
        out += [a * v0[k] + b * v2[k] for k in range(4)]
        out += [c * v1[k] + d * v2[k] for k in range(4)]
        out += [zz * v2[0], zz * v2[1], zz * v2[2], zz * v2[3] + zw]
        out += [-v2[k] for k in range(4)]
        eyes += (px, py, pz)
    return np.array(out, dtype=np.float32).reshape(2, 4, 4), np.array(eyes, dtype=np.float32).reshape(2, 3)


def _icosphere(subdivisions: int = 2) -> tuple[np.ndarray, np.ndarray]:
    t = (1 + 5**0.5) / 2
    v = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t),
         (0, -1, -t), (0, 1, -t), (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]  # fmt: skip
    f = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4),
         (11, 10, 2), (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9),
         (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]  # fmt: skip
    verts = [np.array(p, dtype=np.float64) / np.linalg.norm(p) for p in v]
    faces = f
    for _ in range(subdivisions):
        cache: dict[tuple[int, int], int] = {}

        def mid(a: int, b: int, cache: dict[tuple[int, int], int] = cache) -> int:
            key = (min(a, b), max(a, b))
            if key not in cache:
                m = verts[a] + verts[b]
                verts.append(m / np.linalg.norm(m))
                cache[key] = len(verts) - 1
            return cache[key]

        new = []
        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new
    p = np.array(verts, dtype=np.float32)
    return np.hstack([p, p]).astype(np.float32), np.array(faces, dtype=np.uint32)


def _cylinder(sides: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Unit-radius open cylinder from z=0 to z=1: interleaved position+normal, and indices."""
    a = np.linspace(0, 2 * np.pi, sides, endpoint=False)
    ring = np.stack([np.cos(a), np.sin(a), np.zeros_like(a)], axis=1)
    pos = np.vstack([ring, ring + (0, 0, 1)])
    nrm = np.vstack([ring, ring])
    idx = []
    for i in range(sides):
        j = (i + 1) % sides
        idx += [(i, j, sides + j), (i, sides + j, sides + i)]
    return np.hstack([pos, nrm]).astype(np.float32), np.array(idx, dtype=np.uint32)


def _shader_source(name: str) -> str:
    return (resources.files("xrcore.render") / "shaders" / name).read_text(encoding="utf-8")


class Renderer:
    """Draws a :class:`~xrcore.scene.Scene` for two eye views into an offscreen stereo target.

    Create it with the GL context current (``context.make_current()``); every method must be called
    on that context's thread. Typical use::

        renderer = Renderer(context, RendererConfig(width=720, height=800))
        renderer.draw(scene, frame.views)
        left = renderer.read_pixels(0)   # (H, W, 4) uint8, top row first, sRGB-encoded

    Parameters
    ----------
    context
        The :class:`~xrcore.gl.context.GLContext` to draw with (for its extension list and version).
    config
        :class:`RendererConfig`; keyword overrides are accepted instead.
    """

    def __init__(self, context: Any, config: RendererConfig | None = None, **overrides: Any) -> None:
        if config is not None and overrides:
            raise TypeError("give either a RendererConfig or keyword settings, not both")
        self.config = config or RendererConfig(**overrides)
        self.context = context
        ext: set[str] = set(getattr(context, "extensions", ()) or ())
        info = getattr(context, "info", {}) or {}
        self.gl_version = (int(info.get("major", 3)), int(info.get("minor", 3)))
        if self.gl_version < (3, 3):
            raise GLContextError(f"OpenGL 3.3 core is needed, the context has {self.gl_version}")
        self.extensions = ext
        self.has_mdi = self.gl_version >= (4, 3) or "GL_ARB_multi_draw_indirect" in ext
        renderer_name = str(info.get("renderer", "")).lower()
        # A software rasteriser (Mesa llvmpipe) holds every queued triangle in memory until it draws:
        # there, big frames go out in flushed batches. A GPU gets one multi-draw call.
        self.software = any(name in renderer_name for name in ("llvmpipe", "softpipe", "swrast"))
        per_eye = self.config.width * self.config.height
        batch = max(_MIN_BATCH_TRIANGLES, per_eye // _PIXELS_PER_BATCH_TRIANGLE)
        self.batch_indices = 3 * batch if self.software else 1 << 62
        self.samples = max(1, min(self.config.samples, int(info.get("max_samples", 4)) or 1))
        self.stats = FrameStats(rate_hz=self.config.rate_hz)
        self.gl_errors = 0
        self.frame_index = 0
        self._twin: _TwinGPU | None = None
        self._timers: list[tuple[int, int]] = []  # (start, end) timestamp queries in flight
        self._free_timers: list[tuple[int, int]] = []
        self._closed = False
        self._waited_s = 0.0  # this frame's waits for the rasteriser (software batches), seconds
        self._split_scene: Scene | None = None
        self._placement_key: tuple[Any, ...] | None = None
        self._placement: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int] = ()  # type: ignore[assignment]
        self._split_key: tuple[int, int] = (-1, -1)
        self._split_value: tuple[list[int], list[int]] = ([], [])
        self.stereo = self._choose_stereo(self.config.stereo)
        self._build_targets()
        if self.stereo == "multiview" and not self._framebuffer_ok(self._fbo_stereo):
            logger.warning("multiview framebuffer incomplete on this driver; falling back to layered stereo")
            self.stereo = self._choose_stereo("auto", allow_multiview=False)
            self._delete_targets()
            self._build_targets()
        self.view_instances = 2 if self.stereo == "layered" else 1
        self._mesh_plain = self._program("mesh.vert", "mesh.frag", {"CAPS": 0})
        self._mesh_caps = self._program("mesh.vert", "mesh.frag", {"CAPS": 1})
        for mesh in (self._mesh_plain, self._mesh_caps):  # constant uniforms: set once
            GL.glUseProgram(mesh.handle)
            GL.glUniform3f(mesh.loc("u_highlight_color"), *_SELECT_COLOR)
            GL.glUniform3f(mesh.loc("u_cap_tint"), *_CAP_TINT)
            GL.glUniform1i(mesh.loc("u_materials"), 0)
        GL.glUseProgram(0)
        self._marker = self._program("marker.vert", "marker.frag")
        self._label = self._program("label.vert", "label.frag")
        self._build_markers()
        # label GPU objects are made when the first label shows up (the atlas costs 0.2 s to build)
        self._label_vao = 0
        self._label_buffers: list[int] = []  # instances, per-label table
        self._label_textures: list[int] = []  # atlas, table view
        self._label_key: tuple[str, ...] | None = None
        self._label_count = 0  # instances (plates and glyphs) in the buffer
        self._layouts: dict[str, tuple[np.ndarray, float]] = {}
        #: Times the glyph instance buffer was rebuilt (only when the set of label texts changes).
        self.label_uploads = 0
        if self.config.timer_queries:
            q = [int(x) for x in np.atleast_1d(GL.glGenQueries(2 * _TIMER_RING))]
            self._free_timers = list(zip(q[0::2], q[1::2], strict=True))
        self._check("renderer set-up")
        logger.info(
            "renderer: %dx%d per eye, %dx MSAA, stereo %s, %s, multi-draw-indirect %s",
            self.config.width, self.config.height, self.samples, self.stereo,
            "sRGB" if self.config.srgb else "linear", "yes" if self.has_mdi else "no",
        )  # fmt: skip

    # --- set-up ---------------------------------------------------------------------------------------

    def _choose_stereo(self, wanted: str, allow_multiview: bool = True) -> str:
        has_multiview = "GL_OVR_multiview2" in self.extensions and allow_multiview
        has_layer = bool(
            self.extensions & {"GL_ARB_shader_viewport_layer_array", "GL_AMD_vertex_shader_layer"}
        )
        if wanted == "auto":
            return "multiview" if has_multiview else "layered" if has_layer else "two-pass"
        if wanted == "multiview" and not has_multiview:
            raise GLContextError("stereo='multiview' needs GL_OVR_multiview2, which this context lacks")
        if wanted == "layered" and not has_layer:
            raise GLContextError(
                "stereo='layered' needs GL_ARB_shader_viewport_layer_array or GL_AMD_vertex_shader_layer"
            )
        return wanted

    def _preamble(self, stage: str, defines: dict[str, int] | None = None) -> str:
        version = "410 core" if self.gl_version >= (4, 1) else "330 core"
        lines = [f"#version {version}"]
        if stage == "vert" and self.stereo == "layered":
            name = (
                "GL_ARB_shader_viewport_layer_array"
                if "GL_ARB_shader_viewport_layer_array" in self.extensions
                else "GL_AMD_vertex_shader_layer"
            )
            lines.append(f"#extension {name} : require")
        if stage == "vert" and self.stereo == "multiview":
            lines += ["#extension GL_OVR_multiview2 : require", "layout(num_views = 2) in;"]
        lines.append(f"#define STEREO_MODE {_MODE_DEFINE[self.stereo]}")
        lines += [f"#define {k} {v}" for k, v in (defines or {}).items()]
        return "\n".join(lines) + "\n"

    def _compile(self, stage: str, source: str, name: str) -> int:
        kind = GL.GL_VERTEX_SHADER if stage == "vert" else GL.GL_FRAGMENT_SHADER
        shader = GL.glCreateShader(kind)
        GL.glShaderSource(shader, source)
        GL.glCompileShader(shader)
        if not GL.glGetShaderiv(shader, GL.GL_COMPILE_STATUS):
            log = GL.glGetShaderInfoLog(shader)
            log = log.decode(errors="replace") if isinstance(log, bytes) else str(log)
            GL.glDeleteShader(shader)
            raise RenderError(f"shader {name} failed to compile ({self.stereo} stereo): {log.strip()}")
        return int(shader)

    def _program(self, vert: str, frag: str, defines: dict[str, int] | None = None) -> _Program:
        vs = self._compile("vert", self._preamble("vert", defines) + _shader_source("stereo.glsl") + _shader_source(vert), vert)
        fs = self._compile("frag", self._preamble("frag", defines) + _shader_source(frag), frag)
        prog = GL.glCreateProgram()
        GL.glAttachShader(prog, vs)
        GL.glAttachShader(prog, fs)
        GL.glLinkProgram(prog)
        GL.glDeleteShader(vs)
        GL.glDeleteShader(fs)
        if not GL.glGetProgramiv(prog, GL.GL_LINK_STATUS):
            log = GL.glGetProgramInfoLog(prog)
            log = log.decode(errors="replace") if isinstance(log, bytes) else str(log)
            raise RenderError(f"program {vert}+{frag} failed to link: {log.strip()}")
        return _Program(int(prog))

    def _build_targets(self) -> None:
        w, h, s = self.config.width, self.config.height, self.samples
        color_format = GL.GL_SRGB8_ALPHA8 if self.config.srgb else GL.GL_RGBA8
        # resolved (single-sample) colour: what is read back or handed to a swapchain
        self._resolved = int(GL.glGenTextures(1))
        GL.glBindTexture(GL.GL_TEXTURE_2D_ARRAY, self._resolved)
        # raw entry point: the wrapped one cannot take a NULL pixel pointer for every format
        _raw_tex_image_3d(GL.GL_TEXTURE_2D_ARRAY, 0, color_format, w, h, 2, 0, GL.GL_RGBA, GL.GL_UNSIGNED_BYTE, None)
        for p in (GL.GL_TEXTURE_MIN_FILTER, GL.GL_TEXTURE_MAG_FILTER):
            GL.glTexParameteri(GL.GL_TEXTURE_2D_ARRAY, p, GL.GL_LINEAR)
        if s > 1:
            target = GL.GL_TEXTURE_2D_MULTISAMPLE_ARRAY
            self._color = int(GL.glGenTextures(1))
            GL.glBindTexture(target, self._color)
            GL.glTexImage3DMultisample(target, s, color_format, w, h, 2, GL.GL_TRUE)
        else:
            target = GL.GL_TEXTURE_2D_ARRAY
            self._color = self._resolved
        self._depth = int(GL.glGenTextures(1))
        GL.glBindTexture(target, self._depth)
        if s > 1:
            GL.glTexImage3DMultisample(target, s, GL.GL_DEPTH24_STENCIL8, w, h, 2, GL.GL_TRUE)
        else:
            _raw_tex_image_3d(target, 0, GL.GL_DEPTH24_STENCIL8, w, h, 2, 0, GL.GL_DEPTH_STENCIL,
                              GL.GL_UNSIGNED_INT_24_8, None)  # fmt: skip
        # one framebuffer with all layers (one-pass stereo) and one per eye (two passes, resolve)
        self._fbo_stereo = int(GL.glGenFramebuffers(1))
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self._fbo_stereo)
        if self.stereo == "multiview":
            from OpenGL.GL.OVR.multiview import glFramebufferTextureMultiviewOVR  # noqa: PLC0415

            glFramebufferTextureMultiviewOVR(GL.GL_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, self._color, 0, 0, 2)
            glFramebufferTextureMultiviewOVR(GL.GL_FRAMEBUFFER, GL.GL_DEPTH_STENCIL_ATTACHMENT, self._depth, 0, 0, 2)
            GL.glGetError()  # an unsupported attachment shows up as incompleteness, checked by the caller
        else:
            GL.glFramebufferTexture(GL.GL_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, self._color, 0)
            GL.glFramebufferTexture(GL.GL_FRAMEBUFFER, GL.GL_DEPTH_STENCIL_ATTACHMENT, self._depth, 0)
        self._fbo_eye = [int(f) for f in np.atleast_1d(GL.glGenFramebuffers(2))]
        self._fbo_resolved = [int(f) for f in np.atleast_1d(GL.glGenFramebuffers(2))]
        for eye in (0, 1):
            GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self._fbo_eye[eye])
            GL.glFramebufferTextureLayer(GL.GL_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, self._color, 0, eye)
            GL.glFramebufferTextureLayer(GL.GL_FRAMEBUFFER, GL.GL_DEPTH_STENCIL_ATTACHMENT, self._depth, 0, eye)
            self._require_complete(self._fbo_eye[eye], f"eye {eye}")
            GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self._fbo_resolved[eye])
            GL.glFramebufferTextureLayer(GL.GL_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, self._resolved, 0, eye)
            self._require_complete(self._fbo_resolved[eye], f"resolved eye {eye}")
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)
        if self.stereo != "multiview":
            self._require_complete(self._fbo_stereo, "stereo")

    def _framebuffer_ok(self, fbo: int) -> bool:
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, fbo)
        status = GL.glCheckFramebufferStatus(GL.GL_FRAMEBUFFER)
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)
        return bool(status == GL.GL_FRAMEBUFFER_COMPLETE)

    def _require_complete(self, fbo: int, what: str) -> None:
        if not self._framebuffer_ok(fbo):
            raise RenderError(f"{what} framebuffer incomplete ({self.samples}x MSAA, {self.config.width}x{self.config.height})")

    def _delete_targets(self) -> None:
        GL.glDeleteFramebuffers(5, [self._fbo_stereo, *self._fbo_eye, *self._fbo_resolved])
        textures = {self._color, self._depth, self._resolved}
        GL.glDeleteTextures(len(textures), list(textures))

    def _vertex_layout(self, stride: int = 24) -> None:
        GL.glEnableVertexAttribArray(0)
        GL.glVertexAttribPointer(0, 3, GL.GL_FLOAT, GL.GL_FALSE, stride, ctypes.c_void_p(0))
        GL.glEnableVertexAttribArray(1)
        GL.glVertexAttribPointer(1, 3, GL.GL_FLOAT, GL.GL_FALSE, stride, ctypes.c_void_p(12))

    def _build_markers(self) -> None:
        """Unit sphere and cylinder meshes plus an instance buffer shared by both marker kinds."""
        self._marker_instances = int(GL.glGenBuffers(1))
        self._marker_vaos: list[tuple[int, int]] = []  # (vao, index count) for sphere, cylinder
        self._marker_buffers: list[int] = [self._marker_instances]
        for verts, idx in (_icosphere(2), _cylinder(8)):
            vao = int(GL.glGenVertexArrays(1))
            vbo, ibo = (int(b) for b in np.atleast_1d(GL.glGenBuffers(2)))
            self._marker_buffers += [vbo, ibo]
            GL.glBindVertexArray(vao)
            GL.glBindBuffer(GL.GL_ARRAY_BUFFER, vbo)
            GL.glBufferData(GL.GL_ARRAY_BUFFER, verts.nbytes, verts, GL.GL_STATIC_DRAW)
            self._vertex_layout()
            GL.glBindBuffer(GL.GL_ELEMENT_ARRAY_BUFFER, ibo)
            GL.glBufferData(GL.GL_ELEMENT_ARRAY_BUFFER, idx.nbytes, idx, GL.GL_STATIC_DRAW)
            GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self._marker_instances)
            for k, loc in enumerate((3, 4, 5)):
                GL.glEnableVertexAttribArray(loc)
                GL.glVertexAttribPointer(loc, 4, GL.GL_FLOAT, GL.GL_FALSE, 48, ctypes.c_void_p(16 * k))
                GL.glVertexAttribDivisor(loc, self.view_instances)
            self._marker_vaos.append((vao, int(idx.size)))
        GL.glBindVertexArray(0)

    # --- twin upload ----------------------------------------------------------------------------------

    def upload(self, twin: Twin) -> None:
        """Upload ``twin``'s structures and levels of detail (done once; replaces a previous twin)."""
        if self._twin is not None and self._twin.twin is twin:
            return
        if self._twin is not None:
            self._release_twin()
        t0 = time.perf_counter()
        levels_of = [[(s.vertices, s.faces)] + [(lod.vertices, lod.faces) for lod in s.lods] for s in twin.structures]
        n_vertices = sum(len(v) for levels in levels_of for v, _ in levels)
        n_indices = sum(int(np.size(f)) for levels in levels_of for _, f in levels)
        vbo, ibo, id_buffer, mat_buffer = (int(b) for b in np.atleast_1d(GL.glGenBuffers(4)))
        # Both buffers are allocated at their full size and filled one structure level at a time:
        # the only CPU copy is that level's interleaved vertices and offset indices, not the twin's
        # (on a million triangles that is 24 MB less at once, and less heap left fragmented).
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, vbo)
        GL.glBufferData(GL.GL_ARRAY_BUFFER, max(24 * n_vertices, 4), None, GL.GL_STATIC_DRAW)
        # (the index buffer through a generic target: no vertex array is bound yet)
        GL.glBindBuffer(GL.GL_COPY_WRITE_BUFFER, ibo)
        GL.glBufferData(GL.GL_COPY_WRITE_BUFFER, max(4 * n_indices, 4), None, GL.GL_STATIC_DRAW)
        ranges: list[list[tuple[int, int]]] = []
        centers, radii = [], []
        base_vertex = 0
        first = 0
        for s, levels in zip(twin.structures, levels_of, strict=True):
            rs = []
            for verts, faces in levels:
                verts = np.asarray(verts, dtype=np.float32)
                faces = np.asarray(faces)
                interleaved = np.empty((len(verts), 6), dtype=np.float32)
                interleaved[:, :3] = verts
                interleaved[:, 3:] = vertex_normals(verts, faces)
                GL.glBufferSubData(GL.GL_ARRAY_BUFFER, 24 * base_vertex, interleaved.nbytes, interleaved)
                # indices pre-offset so that every range draws with base vertex 0
                indices = faces.astype(np.uint32).ravel()
                indices += np.uint32(base_vertex)
                GL.glBufferSubData(GL.GL_COPY_WRITE_BUFFER, 4 * first, indices.nbytes, indices)
                del interleaved, indices
                rs.append((first, int(faces.size)))
                first += int(faces.size)
                base_vertex += len(verts)
            ranges.append(rs)
            lo, hi = s.bounds()
            centers.append((lo + hi) / 2)
            radii.append(float(np.linalg.norm(hi - lo) / 2))
        GL.glBindBuffer(GL.GL_COPY_WRITE_BUFFER, 0)
        ids = np.arange(len(twin.structures), dtype=np.uint32)
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, id_buffer)
        GL.glBufferData(GL.GL_ARRAY_BUFFER, max(ids.nbytes, 4), ids if ids.size else None, GL.GL_STATIC_DRAW)
        vaos = [int(v) for v in np.atleast_1d(GL.glGenVertexArrays(2))]
        for vao, instanced in zip(vaos, (True, False), strict=True):
            GL.glBindVertexArray(vao)
            GL.glBindBuffer(GL.GL_ARRAY_BUFFER, vbo)
            self._vertex_layout()
            if instanced:
                # structure index per draw: baseInstance selects it (element = base + instance / divisor)
                GL.glBindBuffer(GL.GL_ARRAY_BUFFER, id_buffer)
                GL.glEnableVertexAttribArray(2)
                GL.glVertexAttribIPointer(2, 1, GL.GL_UNSIGNED_INT, 4, ctypes.c_void_p(0))
                GL.glVertexAttribDivisor(2, self.view_instances)
            GL.glBindBuffer(GL.GL_ELEMENT_ARRAY_BUFFER, ibo)
        GL.glBindVertexArray(0)
        mat_tex = int(GL.glGenTextures(1))
        self._indirect = int(GL.glGenBuffers(1)) if self.has_mdi else 0
        self._indirect_key: Any = None
        self._indirect_batches: list[tuple[int, int]] = []
        self._twin = _TwinGPU(
            twin=twin, vbo=vbo, ibo=ibo, id_buffer=id_buffer, vao_mdi=vaos[0], vao_loop=vaos[1],
            materials_buffer=mat_buffer, materials_texture=mat_tex, ranges=ranges,
            centers=np.array(centers, dtype=np.float64).reshape(-1, 3),
            radii=np.array(radii, dtype=np.float64), nbytes=24 * n_vertices + 4 * n_indices,
        )  # fmt: skip
        self._check("twin upload")
        logger.info(
            "uploaded twin %r: %d structures, %d triangles (all levels), %.1f MB in %.2f s",
            twin.name, len(twin.structures), n_indices // 3, self._twin.nbytes / 1e6, time.perf_counter() - t0,
        )

    def _release_twin(self) -> None:
        g = self._twin
        if g is None:
            return
        GL.glDeleteBuffers(4, [g.vbo, g.ibo, g.id_buffer, g.materials_buffer])
        GL.glDeleteVertexArrays(2, [g.vao_mdi, g.vao_loop])
        GL.glDeleteTextures(1, [g.materials_texture])
        if self._indirect:
            GL.glDeleteBuffers(1, [self._indirect])
        self._twin = None

    def _update_materials(self, scene: Scene) -> None:
        g = self._twin
        assert g is not None
        if g.material_version == scene.version:
            return
        table = np.zeros((max(len(scene.materials), 1), 2, 4), dtype=np.float32)
        for i, m in enumerate(scene.materials):
            table[i, 0] = m.color
            highlight = 1.0 if i in scene.selected else _HOVER_HIGHLIGHT if i in scene.hovered else 0.0
            table[i, 1] = (highlight, m.shininess, m.specular, 1.0 if m.visible else 0.0)
        GL.glBindBuffer(GL.GL_TEXTURE_BUFFER, g.materials_buffer)
        GL.glBufferData(GL.GL_TEXTURE_BUFFER, table.nbytes, table, GL.GL_DYNAMIC_DRAW)
        GL.glBindTexture(GL.GL_TEXTURE_BUFFER, g.materials_texture)
        GL.glTexBuffer(GL.GL_TEXTURE_BUFFER, GL.GL_RGBA32F, g.materials_buffer)
        g.material_version = scene.version

    # --- per frame ------------------------------------------------------------------------------------

    def _levels(self, scene: Scene, views: list[View], model: np.ndarray, mid_eye: np.ndarray) -> list[int]:
        g = self._twin
        assert g is not None
        counts = [len(r) for r in g.ranges]
        if self.config.lod != "auto":
            want = int(self.config.lod)
            return [min(want, c - 1) for c in counts]
        if max(counts, default=1) == 1:
            return [0] * len(counts)
        v = views[0]
        focal_px = v.height / max(math.tan(v.fov.angle_up) - math.tan(v.fov.angle_down), 1e-6)
        centres = (model[:3, :3] @ g.centers.T).T + model[:3, 3]
        dist = np.maximum(np.linalg.norm(centres - mid_eye, axis=1), 1e-3)
        px = 2 * g.radii * scene.twin_scale / dist * focal_px
        # full detail above 512 px across, one level coarser each time the size halves
        level = np.floor(np.log2(np.maximum(512.0 / np.maximum(px, 1e-3), 1.0))).astype(int)
        return [min(int(k), c - 1) for k, c in zip(level, counts, strict=True)]

    def draw(self, scene: Scene, views: list[View]) -> None:
        """Render ``scene`` for the two eye ``views`` (left, right) into the stereo target.

        The result stays on the GPU; :meth:`read_pixels` fetches an eye, :meth:`present` blits one to
        a window. A single view (a desktop window) is drawn into both layers.
        """
        if self._closed:
            raise RenderError("renderer is closed")
        if not views:
            raise ValueError("draw() needs at least one view")
        t0 = time.perf_counter()
        self._waited_s = 0.0
        views = list(views) if len(views) >= 2 else [views[0], views[0]]
        self.upload(scene.twin)
        g = self._twin
        assert g is not None
        self._update_materials(scene)
        query = self._begin_timer()

        cfg = self.config
        view_proj, eye_pos = _eye_matrices(views, cfg.near, cfg.far)
        mid_eye = eye_pos.mean(axis=0).astype(np.float64)
        model, model32, normal_matrix, planes, n_clip = self._twin_placement(scene)
        levels = self._levels(scene, views, model, mid_eye)

        GL.glViewport(0, 0, cfg.width, cfg.height)
        GL.glEnable(GL.GL_DEPTH_TEST)
        GL.glDepthFunc(GL.GL_LESS)
        GL.glDepthMask(GL.GL_TRUE)
        GL.glDisable(GL.GL_BLEND)
        GL.glDisable(GL.GL_CULL_FACE)
        if cfg.srgb:
            GL.glEnable(GL.GL_FRAMEBUFFER_SRGB)
        if self.samples > 1:
            GL.glEnable(GL.GL_MULTISAMPLE)
        for i in range(MAX_CLIP_PLANES):
            (GL.glEnable if i < n_clip else GL.glDisable)(GL.GL_CLIP_DISTANCE0 + i)
        GL.glClearColor(*scene.background)
        passes = [None] if self.stereo != "two-pass" else [0, 1]
        if passes == [None]:
            GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self._fbo_stereo)
            GL.glClear(GL.GL_COLOR_BUFFER_BIT | GL.GL_DEPTH_BUFFER_BIT | GL.GL_STENCIL_BUFFER_BIT)

        opaque, transparent = self._split(scene)
        if transparent:
            centres = (model[:3, :3] @ g.centers[transparent].T).T + model[:3, 3]
            far_first = np.argsort(-np.linalg.norm(centres - mid_eye, axis=1), kind="stable")
            transparent = [transparent[k] for k in far_first]
        markers = self._marker_arrays(scene, model)
        labels = self._prepare_labels(scene.labels(), views) if scene.show_labels else 0

        mesh = self._mesh_caps if n_clip else self._mesh_plain
        GL.glUseProgram(mesh.handle)
        # raw entry points, and only the uniforms whose value changed (constants are set at link)
        mesh.set("u_view_proj", _raw_uniform_matrix4fv, view_proj, 2, GL.GL_TRUE)
        mesh.set("u_eye_pos", _raw_uniform3fv, eye_pos, 2)
        mesh.set("u_model", _raw_uniform_matrix4fv, model32, 1, GL.GL_TRUE)
        mesh.set("u_normal_matrix", _raw_uniform_matrix3fv, normal_matrix, 1, GL.GL_TRUE)
        mesh.set("u_clip", _raw_uniform4fv, planes, MAX_CLIP_PLANES)
        if mesh.values.get("u_clip_count") != bytes((n_clip,)):
            mesh.values["u_clip_count"] = bytes((n_clip,))
            _raw_uniform1i(mesh.loc("u_clip_count"), n_clip)
        GL.glActiveTexture(GL.GL_TEXTURE0)
        GL.glBindTexture(GL.GL_TEXTURE_BUFFER, g.materials_texture)

        for eye in passes:
            if eye is not None:
                GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self._fbo_eye[eye])
                GL.glClear(GL.GL_COLOR_BUFFER_BIT | GL.GL_DEPTH_BUFFER_BIT | GL.GL_STENCIL_BUFFER_BIT)
                GL.glUseProgram(mesh.handle)
                GL.glUniform1i(mesh.loc("u_eye_index"), eye)
            GL.glDisable(GL.GL_BLEND)
            GL.glDepthMask(GL.GL_TRUE)
            if n_clip == 0 and cfg.cull_back_faces:
                # closed, outward-wound surfaces (what assets' validation guarantees) show no back
                # faces unless a clip plane opens them, when they become the cap
                GL.glEnable(GL.GL_CULL_FACE)
                GL.glCullFace(GL.GL_BACK)
            self._draw_opaque(opaque, levels)
            GL.glDisable(GL.GL_CULL_FACE)
            if transparent:
                self._draw_transparent(transparent, levels)
            if markers is not None:
                self._draw_markers(markers, view_proj, eye_pos, eye)
            if labels:
                self._draw_labels(scene, view_proj, eye)
        # CPU time stops before the resolve: on a GPU the blit is only queued, but llvmpipe runs it on
        # this thread after waiting for its rasteriser, which is GPU time, not the frame's CPU cost
        # (nor the waits for a software rasteriser to draw older batches: see _draw_opaque)
        self.stats.record_cpu((time.perf_counter() - t0 - self._waited_s) * 1000.0)
        self._resolve()
        self._end_timer(query)
        self._check("frame")
        self.frame_index += 1

    def _twin_placement(self, scene: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
        """Model matrix (float64 and float32), normal matrix, clip planes in world space (unit
        normals, metres) and their count: recomputed only when the twin's pose, scale or clip
        planes change."""
        pose = scene.twin_pose
        key = (tuple(map(float, pose.position)), tuple(map(float, pose.orientation)), float(scene.twin_scale),
               tuple((tuple(map(float, p.normal)), float(p.offset)) for p in scene.clip_planes))  # fmt: skip
        if key != self._placement_key:
            model = scene.model_matrix()
            normal_matrix = np.ascontiguousarray(np.linalg.inv(model[:3, :3]).T, dtype=np.float32)
            planes = np.zeros((MAX_CLIP_PLANES, 4), dtype=np.float32)
            n_clip = min(len(scene.clip_planes), MAX_CLIP_PLANES)
            if n_clip:
                inv_t = np.linalg.inv(model).T
                for i, p in enumerate(scene.clip_planes[:n_clip]):
                    w = inv_t @ p.as_vec4()
                    planes[i] = w / np.linalg.norm(w[:3])  # unit normal: distances in metres
            self._placement_key = key
            self._placement = (model, model.astype(np.float32), normal_matrix, planes, n_clip)
        return self._placement

    def _split(self, scene: Scene) -> tuple[list[int], list[int]]:
        """Visible opaque and visible transparent structures (indices), recomputed only when the
        scene's ``version`` (bumped on every material change) moves."""
        key = (scene.version, len(scene.materials))
        if self._split_scene is not scene or self._split_key != key:
            opaque = [i for i, m in enumerate(scene.materials) if m.visible and m.opaque]
            transparent = [i for i, m in enumerate(scene.materials) if m.visible and not m.opaque]
            self._split_scene, self._split_key, self._split_value = scene, key, (opaque, transparent)
        opaque, transparent = self._split_value
        return opaque, list(transparent)

    def _draw_opaque(self, opaque: list[int], levels: list[int]) -> None:
        g = self._twin
        assert g is not None
        if not opaque:
            return
        if self.has_mdi:
            key = (tuple(opaque), tuple(levels[i] for i in opaque))
            GL.glBindBuffer(GL.GL_DRAW_INDIRECT_BUFFER, self._indirect)
            if key != self._indirect_key:
                self._indirect_batches = self._build_indirect(opaque, levels)
                self._indirect_key = key
            GL.glBindVertexArray(g.vao_mdi)
            fences: list[Any] = []
            batches = self._indirect_batches
            for k, (offset, count) in enumerate(batches):
                if k:
                    # A tiling rasteriser (llvmpipe) holds every binned triangle until its threads
                    # have drawn it, and queues flushed batches without limit while they fall
                    # behind (4x MSAA draws slower than setup bins): batch k waits until batch
                    # k - _BATCHES_IN_FLIGHT is drawn, so memory stays bounded while binning one
                    # batch still overlaps drawing the last. A fence marks the batches something
                    # will wait for, a plain flush the others. (A GPU gets one batch.)
                    if k <= len(batches) - _BATCHES_IN_FLIGHT:
                        fences.append(GL.glFenceSync(GL.GL_SYNC_GPU_COMMANDS_COMPLETE, 0))
                    else:
                        GL.glFlush()
                    if k >= _BATCHES_IN_FLIGHT:
                        self._wait_fence(fences.pop(0))
                GL.glMultiDrawElementsIndirect(GL.GL_TRIANGLES, GL.GL_UNSIGNED_INT, ctypes.c_void_p(offset), count, 0)
            for fence in fences:
                GL.glDeleteSync(fence)
        else:
            GL.glBindVertexArray(g.vao_loop)
            loop_fences: list[Any] | None = [] if self.software else None
            for i in opaque:
                self._draw_structure(i, levels[i], loop_fences)
            for fence in loop_fences or ():
                GL.glDeleteSync(fence)

    def _build_indirect(self, opaque: list[int], levels: list[int]) -> list[tuple[int, int]]:
        """Upload the indirect commands for ``opaque`` structures; return (byte offset, count) batches
        of at most ``batch_indices`` indices each (big structures split across batches)."""
        g = self._twin
        assert g is not None
        cmds: list[tuple[int, int, int, int, int]] = []
        batches: list[tuple[int, int]] = []
        start, filled = 0, 0
        for i in opaque:
            first, count = g.ranges[i][levels[i]]
            while count > 0:
                take = min(count, self.batch_indices - filled)
                # count, instanceCount, firstIndex, baseVertex, baseInstance (= structure index)
                cmds.append((take, self.view_instances, first, 0, i))
                first, count, filled = first + take, count - take, filled + take
                if filled >= self.batch_indices:
                    batches.append((start * 20, len(cmds) - start))
                    start, filled = len(cmds), 0
        if len(cmds) > start:
            batches.append((start * 20, len(cmds) - start))
        data = np.array(cmds, dtype=np.uint32)
        GL.glBufferData(GL.GL_DRAW_INDIRECT_BUFFER, data.nbytes, data, GL.GL_DYNAMIC_DRAW)
        return batches

    def _draw_structure(self, i: int, level: int, fences: list[Any] | None = None) -> None:
        g = self._twin
        assert g is not None
        first, count = g.ranges[i][level]
        # the loop VAO leaves attribute 2 disabled, so the shader reads this constant instead
        GL.glVertexAttribI1ui(2, i)
        # On a software rasteriser a big structure goes out in batches, at most _BATCHES_IN_FLIGHT
        # of them undrawn (see _draw_opaque): a semi-transparent million-triangle structure drawn
        # in one call had llvmpipe queue half a gigabyte at 1832x1920. ``fences`` carries the
        # batches in flight from one call to the next; the caller deletes what is left.
        step = count if fences is None else self.batch_indices
        for start in range(0, count, step):
            if start:
                fences.append(GL.glFenceSync(GL.GL_SYNC_GPU_COMMANDS_COMPLETE, 0))  # type: ignore[union-attr]
                if len(fences) >= _BATCHES_IN_FLIGHT:  # type: ignore[arg-type]
                    self._wait_fence(fences.pop(0))  # type: ignore[union-attr]
            n = min(step, count - start)
            offset = ctypes.c_void_p(4 * (first + start))
            GL.glDrawElementsInstanced(GL.GL_TRIANGLES, n, GL.GL_UNSIGNED_INT, offset, self.view_instances)

    def _wait_fence(self, fence: Any) -> None:
        w0 = time.perf_counter()
        GL.glClientWaitSync(fence, GL.GL_SYNC_FLUSH_COMMANDS_BIT, _FENCE_TIMEOUT_NS)
        self._waited_s += time.perf_counter() - w0  # rasteriser time, not CPU time
        GL.glDeleteSync(fence)

    def _draw_transparent(self, transparent: list[int], levels: list[int]) -> None:
        g = self._twin
        assert g is not None
        GL.glBindVertexArray(g.vao_loop)
        GL.glEnable(GL.GL_BLEND)
        GL.glBlendFuncSeparate(GL.GL_SRC_ALPHA, GL.GL_ONE_MINUS_SRC_ALPHA, GL.GL_ONE, GL.GL_ONE_MINUS_SRC_ALPHA)
        GL.glDepthMask(GL.GL_FALSE)
        GL.glEnable(GL.GL_CULL_FACE)
        fences: list[Any] | None = [] if self.software else None
        for i in transparent:  # far to near; inside (back faces) before outside of each
            GL.glCullFace(GL.GL_FRONT)
            self._draw_structure(i, levels[i], fences)
            GL.glCullFace(GL.GL_BACK)
            self._draw_structure(i, levels[i], fences)
        for fence in fences or ():
            GL.glDeleteSync(fence)
        GL.glDisable(GL.GL_CULL_FACE)
        GL.glDepthMask(GL.GL_TRUE)
        GL.glDisable(GL.GL_BLEND)

    def _marker_arrays(self, scene: Scene, model: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Instance records (p0 + radius, p1, colour) for spheres and segments, world space."""
        spheres: list[tuple[float, ...]] = []
        segments: list[tuple[float, ...]] = []
        rot, off, scale = model[:3, :3], model[:3, 3], scene.twin_scale

        def world(p: Any) -> np.ndarray:
            return rot @ np.asarray(p, dtype=np.float64) + off

        for lm in scene.landmarks:
            spheres.append((*world(lm.position), lm.radius * scale, 0, 0, 0, 0, *lm.color))
        for st in scene.strokes:
            pts = [world(p) for p in st.points]
            for a, b in zip(pts[:-1], pts[1:], strict=True):
                segments.append((*a, st.width / 2 * scale, *b, 0, *st.color))
            for p in pts:  # round joints
                spheres.append((*p, st.width / 2 * scale, 0, 0, 0, 0, *st.color))

        def hand(pose: Any, color: Any, length: float) -> None:
            p = np.asarray(pose.position, dtype=np.float64)
            spheres.append((*p, 0.02, 0, 0, 0, 0, *color))
            if length > 0:
                tip = p + pose.forward() * length
                segments.append((*p, 0.002, *tip, 0, *color))

        for av in scene.avatars:
            if av.head is not None:
                spheres.append((*av.head.position, AVATAR_HEAD_RADIUS, 0, 0, 0, 0, *av.color))
            for h in av.hands:
                if h is not None:
                    hand(h, av.color, av.pointer_length)
        if scene.show_local_hands:
            for h in scene.local_hands:
                if h.aim is not None:
                    hand(h.aim, (0.9, 0.9, 0.95, 1.0), scene.local_pointer_length)
        for mark in scene.overlay:
            if isinstance(mark, Sphere):
                spheres.append((*mark.center, mark.radius, 0, 0, 0, 0, *mark.color))
            else:
                segments.append((*mark.a, mark.radius, *mark.b, 0, *mark.color))
        if not spheres and not segments:
            return None
        return np.array(spheres, dtype=np.float32).reshape(-1, 12), np.array(segments, dtype=np.float32).reshape(-1, 12)

    def _draw_markers(self, markers: tuple[np.ndarray, np.ndarray], view_proj: np.ndarray, eye_pos: np.ndarray, eye: int | None) -> None:
        prog = self._marker
        GL.glUseProgram(prog.handle)
        GL.glUniformMatrix4fv(prog.loc("u_view_proj"), 2, GL.GL_TRUE, view_proj)
        GL.glUniform3fv(prog.loc("u_eye_pos"), 2, eye_pos)
        if eye is not None:
            GL.glUniform1i(prog.loc("u_eye_index"), eye)
        for i in range(MAX_CLIP_PLANES):  # annotations stay visible through cuts
            GL.glDisable(GL.GL_CLIP_DISTANCE0 + i)
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self._marker_instances)
        for kind, (records, (vao, count)) in enumerate(zip(markers, self._marker_vaos, strict=True)):
            if not len(records):
                continue
            GL.glBufferData(GL.GL_ARRAY_BUFFER, records.nbytes, records, GL.GL_STREAM_DRAW)
            GL.glUniform1i(prog.loc("u_segments"), kind)
            GL.glBindVertexArray(vao)
            GL.glDrawElementsInstanced(
                GL.GL_TRIANGLES, count, GL.GL_UNSIGNED_INT, ctypes.c_void_p(0), len(records) * self.view_instances
            )
        GL.glBindVertexArray(0)

    # --- labels ---------------------------------------------------------------------------------------

    def _build_labels(self) -> None:
        atlas = glyph_atlas()
        tex, table_tex = (int(t) for t in np.atleast_1d(GL.glGenTextures(2)))
        self._label_textures = [tex, table_tex]
        GL.glActiveTexture(GL.GL_TEXTURE1)
        GL.glBindTexture(GL.GL_TEXTURE_2D, tex)
        GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 1)
        h, w = atlas.image.shape
        GL.glTexImage2D(GL.GL_TEXTURE_2D, 0, GL.GL_R8, w, h, 0, GL.GL_RED, GL.GL_UNSIGNED_BYTE, atlas.image)
        GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 4)
        # mipmaps: a 48 px glyph is often drawn at 10 px, which plain bilinear sampling would alias
        GL.glGenerateMipmap(GL.GL_TEXTURE_2D)
        GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_MIN_FILTER, GL.GL_LINEAR_MIPMAP_LINEAR)
        GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_MAG_FILTER, GL.GL_LINEAR)
        for wrap in (GL.GL_TEXTURE_WRAP_S, GL.GL_TEXTURE_WRAP_T):
            GL.glTexParameteri(GL.GL_TEXTURE_2D, wrap, GL.GL_CLAMP_TO_EDGE)
        GL.glActiveTexture(GL.GL_TEXTURE0)
        instances, table = (int(b) for b in np.atleast_1d(GL.glGenBuffers(2)))
        self._label_buffers = [instances, table]
        self._label_vao = int(GL.glGenVertexArrays(1))
        GL.glBindVertexArray(self._label_vao)
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, instances)
        for loc in (0, 1, 2):  # rect, uv, (label, plate): 48-byte records
            GL.glEnableVertexAttribArray(loc)
            GL.glVertexAttribPointer(loc, 4, GL.GL_FLOAT, GL.GL_FALSE, 48, ctypes.c_void_p(16 * loc))
            GL.glVertexAttribDivisor(loc, self.view_instances)
        GL.glBindVertexArray(0)
        self._check("label set-up")
        from xrcore.render.labels import LabelLayout  # noqa: PLC0415 - only once labels show up

        #: Screen-space decluttering, shared by both eyes and remembered from frame to frame.
        self.label_layout = LabelLayout(plate_height=1.0 + 2 * _PLATE_PAD)
        self.label_placement: Any = None
        self._label_placed = False

    def _layout(self, text: str) -> tuple[np.ndarray, float]:
        found = self._layouts.get(text)
        if found is None:
            if len(self._layouts) >= _LAYOUT_CACHE:
                self._layouts.pop(next(iter(self._layouts)))
            found = self._layouts[text] = glyph_atlas().layout(text)
        return found

    def _prepare_labels(self, labels: list[Label], views: list[View]) -> int:
        """Upload the glyph instances when the texts changed, and keep this frame's labels and views
        for :meth:`_place_labels`.

        Instances: first one leader line per label (drawn under every plate), then per label its
        plate and its glyphs. Returns the number of instances to draw (0: nothing to draw).
        """
        if not labels:
            return 0
        if not self._label_vao:
            self._build_labels()
        key = tuple(label.text for label in labels)
        if key != self._label_key:
            n = len(labels)
            leaders = np.zeros((n, 12), dtype=np.float32)
            # a thin quad from the anchor towards the plate; the shader stretches it to the offset
            leaders[:, :4] = (-0.04, 0.0, 0.04, 1.0 + 2 * _PLATE_PAD)
            leaders[:, 8], leaders[:, 9] = np.arange(n), 2.0
            parts: list[np.ndarray] = [leaders]
            half_widths = np.zeros(n)
            for k, label in enumerate(labels):
                quads, width = self._layout(label.text)
                rows = np.zeros((len(quads) + 1, 12), dtype=np.float32)
                # the plate first, so that blending lays the label's glyphs over it; bottom at y = 0
                rows[0, :4] = (-width / 2 - _PLATE_PAD, 0.0, width / 2 + _PLATE_PAD, 1.0 + 2 * _PLATE_PAD)
                rows[0, 9] = 1.0
                rows[1:, :8] = quads
                rows[1:, [1, 3]] += _PLATE_PAD
                rows[:, 8] = k
                parts.append(rows)
                half_widths[k] = width / 2 + _PLATE_PAD
            data = np.concatenate(parts)
            GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self._label_buffers[0])
            GL.glBufferData(GL.GL_ARRAY_BUFFER, data.nbytes, data, GL.GL_DYNAMIC_DRAW)
            self._label_key, self._label_count = key, len(data)
            self._label_half_widths = half_widths
            seen: dict[str, int] = {}
            keys = []
            for text in key:  # same text twice: two labels, told apart by their order
                seen[text] = seen.get(text, -1) + 1
                keys.append((text, seen[text]))
            self._label_keys = keys
            self.label_uploads += 1
        # every eye turns a label towards the same point, the middle of the eyes, so that both see
        # one flat sign (per-eye billboards would disagree in depth and strain fusion)
        head = (np.asarray(views[0].pose.position) + np.asarray(views[1].pose.position)) / 2
        rot = views[0].pose.rotation_matrix()
        self._label_head = (head.astype(np.float32), rot[:, 1].astype(np.float32), rot[:, 0].astype(np.float32))
        self._frame_labels = (labels, views if views[1] is not views[0] else views[:1])
        self._label_placed = False  # laid out at this frame's first _draw_labels
        return self._label_count

    def _place_labels(self, scene: Scene) -> None:
        """Declutter this frame's labels (one placement for both eyes, see ``labels.py``) and upload
        the per-label table: anchor, text colour, (plate offset in line units, shown)."""
        labels, views = self._frame_labels
        style = scene.label_style
        n = len(labels)
        # the selected structures' names come last in Scene.labels(), and go first here
        names = [scene.twin.structures[i].name for i in sorted(scene.selected)] if scene.label_selection else []
        names = [name for name in names if name.strip()]
        m = len(names) if names and [label.text for label in labels[n - len(names) :]] == names else 0
        priority = np.r_[np.ones(n - m, dtype=np.int64), np.zeros(m, dtype=np.int64)]
        anchors = np.array([label.position for label in labels], dtype=np.float64)
        head, up, right = self._label_head
        angular = style.size == "angular"
        placement = self.label_layout.place(
            anchors, self._label_half_widths, views, keys=self._label_keys, priority=priority,
            head=head, head_up=up, head_right=right, near=self.config.near, angular=angular,
            size=2 * math.tan(math.radians(style.angle) / 2) if angular else style.height,
        )  # fmt: skip
        self.label_placement = placement
        table = np.zeros((n, 3, 4), dtype=np.float32)
        table[:, 0, :3] = anchors
        table[:, 1] = [label.color for label in labels]
        table[:, 2, 0] = placement.offsets
        table[:, 2, 1] = placement.visible
        GL.glBindBuffer(GL.GL_TEXTURE_BUFFER, self._label_buffers[1])
        GL.glBufferData(GL.GL_TEXTURE_BUFFER, table.nbytes, table, GL.GL_STREAM_DRAW)
        GL.glActiveTexture(GL.GL_TEXTURE2)  # unit 0 holds the structures' material table
        GL.glBindTexture(GL.GL_TEXTURE_BUFFER, self._label_textures[1])
        GL.glTexBuffer(GL.GL_TEXTURE_BUFFER, GL.GL_RGBA32F, self._label_buffers[1])
        GL.glActiveTexture(GL.GL_TEXTURE0)

    def _draw_labels(self, scene: Scene, view_proj: np.ndarray, eye: int | None) -> None:
        if not self._label_placed:  # once per frame, before the first eye
            self._place_labels(scene)
            self._label_placed = True
        prog, style = self._label, scene.label_style
        GL.glUseProgram(prog.handle)
        GL.glUniformMatrix4fv(prog.loc("u_view_proj"), 2, GL.GL_TRUE, view_proj)
        if eye is not None:
            GL.glUniform1i(prog.loc("u_eye_index"), eye)
        head, up, right = self._label_head
        GL.glUniform3fv(prog.loc("u_head_pos"), 1, head)
        GL.glUniform3fv(prog.loc("u_head_up"), 1, up)
        GL.glUniform3fv(prog.loc("u_head_right"), 1, right)
        angular = style.size == "angular"
        GL.glUniform1i(prog.loc("u_angular"), int(angular))
        GL.glUniform1f(prog.loc("u_size"), 2 * math.tan(math.radians(style.angle) / 2) if angular else style.height)
        GL.glUniform1f(prog.loc("u_near"), self.config.near)
        GL.glUniform4f(prog.loc("u_plate_color"), *style.background)
        GL.glUniform1i(prog.loc("u_atlas"), 1)
        GL.glUniform1i(prog.loc("u_labels"), 2)
        GL.glActiveTexture(GL.GL_TEXTURE1)
        GL.glBindTexture(GL.GL_TEXTURE_2D, self._label_textures[0])
        GL.glActiveTexture(GL.GL_TEXTURE2)
        GL.glBindTexture(GL.GL_TEXTURE_BUFFER, self._label_textures[1])
        GL.glActiveTexture(GL.GL_TEXTURE0)
        for i in range(MAX_CLIP_PLANES):  # labels stay visible through cuts
            GL.glDisable(GL.GL_CLIP_DISTANCE0 + i)
        GL.glEnable(GL.GL_BLEND)
        GL.glBlendFuncSeparate(GL.GL_SRC_ALPHA, GL.GL_ONE_MINUS_SRC_ALPHA, GL.GL_ONE, GL.GL_ONE_MINUS_SRC_ALPHA)
        GL.glDepthMask(GL.GL_FALSE)
        if style.on_top:
            GL.glDisable(GL.GL_DEPTH_TEST)
        GL.glBindVertexArray(self._label_vao)
        GL.glDrawArraysInstanced(GL.GL_TRIANGLE_STRIP, 0, 4, self._label_count * self.view_instances)
        GL.glBindVertexArray(0)
        GL.glEnable(GL.GL_DEPTH_TEST)
        GL.glDepthMask(GL.GL_TRUE)
        GL.glDisable(GL.GL_BLEND)

    def _resolve(self) -> None:
        if self.samples <= 1:
            return
        w, h = self.config.width, self.config.height
        for eye in (0, 1):
            GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self._fbo_eye[eye])
            GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, self._fbo_resolved[eye])
            GL.glBlitFramebuffer(0, 0, w, h, 0, 0, w, h, GL.GL_COLOR_BUFFER_BIT, GL.GL_NEAREST)
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)

    # --- GPU timing -----------------------------------------------------------------------------------

    # Timestamps (glQueryCounter) rather than GL_TIME_ELAPSED: llvmpipe (Mesa 22.3) reports a
    # TIME_ELAPSED query spanning a whole frame as an absolute time; two timestamps work everywhere.
    def _begin_timer(self) -> tuple[int, int] | None:
        self._collect_timers(wait=False)
        if not self._free_timers:
            return None
        pair = self._free_timers.pop()
        GL.glQueryCounter(pair[0], GL.GL_TIMESTAMP)
        return pair

    def _end_timer(self, pair: tuple[int, int] | None) -> None:
        if pair is None:
            return
        GL.glQueryCounter(pair[1], GL.GL_TIMESTAMP)
        self._timers.append(pair)

    def _collect_timers(self, wait: bool) -> None:
        while self._timers:
            start, end = self._timers[0]
            if not wait:
                available = ctypes.c_int(0)
                _raw_query_iv(end, GL.GL_QUERY_RESULT_AVAILABLE, ctypes.byref(available))
                if not available.value:
                    break
            t0, t1 = ctypes.c_uint64(0), ctypes.c_uint64(0)
            # the wrapped glGetQueryObjectui64v cannot build its numpy output array; the raw one
            # writes straight into a ctypes integer
            _raw_query_ui64v(start, GL.GL_QUERY_RESULT, ctypes.byref(t0))
            _raw_query_ui64v(end, GL.GL_QUERY_RESULT, ctypes.byref(t1))
            self.stats.record_gpu((t1.value - t0.value) / 1e6)
            self._timers.pop(0)
            self._free_timers.append((start, end))

    def finish(self) -> None:
        """Wait for the GPU to finish the frames issued so far and collect their GPU times."""
        GL.glFinish()
        self._collect_timers(wait=True)

    # --- output ---------------------------------------------------------------------------------------

    def read_pixels(self, eye: int = 0) -> np.ndarray:
        """(H, W, 4) uint8 RGBA of ``eye`` (0 left, 1 right) from the last frame, top row first.

        Values are as stored: sRGB-encoded when ``srgb`` is on (what a PNG or a display expects).
        """
        if eye not in (0, 1):
            raise ValueError(f"eye must be 0 or 1, got {eye!r}")
        w, h = self.config.width, self.config.height
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self._fbo_resolved[eye])
        GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)
        data = GL.glReadPixels(0, 0, w, h, GL.GL_RGBA, GL.GL_UNSIGNED_BYTE)
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, 0)
        pixels = np.frombuffer(data, dtype=np.uint8).reshape(h, w, 4)
        return np.ascontiguousarray(pixels[::-1])

    def read_stereo(self, top: int = 0, rows: int | None = None) -> np.ndarray:
        """(rows, 2W, 4) uint8 RGBA of both eyes of the last frame side by side (left eye on the
        left), rows ``top`` to ``top + rows`` counted from the top (all by default, clamped to the
        image), top row first, sRGB-encoded like :meth:`read_pixels`.

        Read straight into the one array it returns and flipped in place: no per-eye copies (at
        1832x1920 per eye the image is 28 MB; a band of rows is what a streaming PNG writer needs).
        """
        w, h = self.config.width, self.config.height
        top = max(0, min(top, h))
        n = h - top if rows is None else max(0, min(rows, h - top))
        out = np.empty((n, 2 * w, 4), dtype=np.uint8)
        if n == 0:
            return out
        GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)
        GL.glPixelStorei(GL.GL_PACK_ROW_LENGTH, 2 * w)
        try:
            for eye in (0, 1):
                GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self._fbo_resolved[eye])
                # GL's row y counts from the bottom: the band's lowest row is h - top - n
                _raw_read_pixels(0, h - top - n, w, n, GL.GL_RGBA, GL.GL_UNSIGNED_BYTE,
                                 ctypes.c_void_p(out.ctypes.data + 4 * w * eye))  # fmt: skip
        finally:
            GL.glPixelStorei(GL.GL_PACK_ROW_LENGTH, 0)
            GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, 0)
        # bottom to top as read: swap the rows in blocks, through a small scratch buffer
        block = 64
        for first in range(0, n // 2, block):
            end = min(first + block, n // 2)
            scratch = out[first:end].copy()
            out[first:end] = out[n - end : n - first][::-1]
            out[n - end : n - first] = scratch[::-1]
        return out

    def present(self, width: int, height: int, eye: int = 0) -> None:
        """Blit ``eye``'s image, scaled to ``width`` x ``height``, into the window's back buffer."""
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self._fbo_resolved[eye])
        GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, 0)
        GL.glBlitFramebuffer(0, 0, self.config.width, self.config.height, 0, 0, width, height,
                             GL.GL_COLOR_BUFFER_BIT, GL.GL_LINEAR)  # fmt: skip
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)

    def copy_to_texture_array(self, color: int, depth: int | None, width: int, height: int) -> bool:
        """Copy both eyes of the last frame into layers 0 and 1 of another context-shared 2D array
        texture (an OpenXR array swapchain image) of ``width`` x ``height`` pixels.

        Colour is blitted (scaled when sizes differ; sRGB-correct: a linear target receives decoded
        values). Depth is resolved into ``depth`` when one is given, the sizes match and the formats
        allow a blit; returns True when depth was written, False otherwise (no GL error is left).
        """
        w, h = self.config.width, self.config.height
        scratch = int(GL.glGenFramebuffers(1))
        wrote_depth = False
        try:
            if self.config.srgb:
                GL.glEnable(GL.GL_FRAMEBUFFER_SRGB)
            GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, scratch)
            for eye in (0, 1):
                GL.glFramebufferTextureLayer(GL.GL_DRAW_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, color, 0, eye)
                GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self._fbo_resolved[eye])
                GL.glBlitFramebuffer(0, 0, w, h, 0, 0, width, height, GL.GL_COLOR_BUFFER_BIT,
                                     GL.GL_LINEAR if (w, h) != (width, height) else GL.GL_NEAREST)  # fmt: skip
            self._check("swapchain colour copy")
            if depth is not None and (w, h) == (width, height):
                GL.glFramebufferTextureLayer(GL.GL_DRAW_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, 0, 0, 0)
                ok = True
                for eye in (0, 1):
                    GL.glFramebufferTextureLayer(GL.GL_DRAW_FRAMEBUFFER, GL.GL_DEPTH_ATTACHMENT, depth, 0, eye)
                    GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self._fbo_eye[eye])
                    GL.glBlitFramebuffer(0, 0, w, h, 0, 0, w, h, GL.GL_DEPTH_BUFFER_BIT, GL.GL_NEAREST)
                    # a depth blit needs matching formats; a mismatch is an expected refusal, not a fault
                    ok = ok and GL.glGetError() == GL.GL_NO_ERROR
                wrote_depth = ok
        finally:
            GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)
            GL.glDeleteFramebuffers(1, [scratch])
        return wrote_depth

    @property
    def color_texture(self) -> int:
        """GL name of the resolved 2-layer colour texture array (layer = eye)."""
        return self._resolved

    @property
    def twin_buffers(self) -> tuple[int, int, list[list[tuple[int, int]]]] | None:
        """(vertex buffer, index buffer, ranges[structure][level] = (first index, count)) of the
        uploaded twin; vertices are interleaved position+normal float32 (24-byte stride)."""
        if self._twin is None:
            return None
        return self._twin.vbo, self._twin.ibo, self._twin.ranges

    def _check(self, where: str) -> None:
        err = GL.glGetError()
        while err != GL.GL_NO_ERROR:
            self.gl_errors += 1
            logger.error("GL error 0x%04x after %s", err, where)
            err = GL.glGetError()

    def close(self) -> None:
        """Delete every GL object the renderer made (the context must still be current)."""
        if self._closed:
            return
        self._closed = True
        self._release_twin()
        self._delete_targets()
        GL.glDeleteBuffers(len(self._marker_buffers), self._marker_buffers)
        GL.glDeleteVertexArrays(2, [v for v, _ in self._marker_vaos])
        GL.glDeleteProgram(self._mesh_plain.handle)
        GL.glDeleteProgram(self._mesh_caps.handle)
        GL.glDeleteProgram(self._marker.handle)
        GL.glDeleteProgram(self._label.handle)
        if self._label_vao:
            GL.glDeleteVertexArrays(1, [self._label_vao])
            GL.glDeleteBuffers(len(self._label_buffers), self._label_buffers)
            GL.glDeleteTextures(len(self._label_textures), self._label_textures)
        qs = [q for pair in self._free_timers + self._timers for q in pair]
        if qs:
            GL.glDeleteQueries(len(qs), qs)
