"""The stereo renderer: :class:`Renderer` coordinates the passes that draw a frame.

What it draws
    A :class:`~xrcore.scene.Scene`: the twin's structures with per-structure colour and opacity
    (opaque first, then transparent ones back to front, each back faces before front faces),
    Blinn-Phong lighting, a rim highlight on selected structures (fainter on hovered ones), up to six
    clip planes through ``gl_ClipDistance`` with the cut capped (the back faces seen through the cut are
    drawn as a flat lit surface facing out of it), instanced markers: landmarks, annotation strokes,
    avatars' heads, hands and pointer rays and the session's overlay, and text labels (avatars'
    names, landmark texts, the selected structure's name, the session's panels and readouts) as
    head-facing billboards after all geometry, alpha-blended, in one instanced draw: over the resolved
    (single-sampled) image when they are drawn on top of everything, as they are by default (no depth
    needed there, and a quarter of the samples to blend at 4x MSAA), else into the multisampled one.

Who does what
    :mod:`~xrcore.render.frame` the GL-free maths (eye matrices, levels of detail, placement, draw
    order, marker records); :mod:`~xrcore.render.twin_gpu` the twin's buffers, materials and draws;
    :mod:`~xrcore.render.markers` and :mod:`~xrcore.render.label_pass` their passes;
    :mod:`~xrcore.render.targets` the framebuffers and every read-back or copy out of them;
    :mod:`~xrcore.render.timers` GPU time. This module picks the stereo mode, sets the frame's GL
    state and calls the passes in order.

Stereo
    Both eyes render into one 2-layer multisampled texture array (the layout of an OpenXR array
    swapchain), resolved into a single-sampled sRGB 2-layer array. ``stereo="auto"`` picks the first
    available of: ``"multiview"`` (``GL_OVR_multiview2``: one pass, the driver replicates the draw per
    view), ``"layered"`` (``GL_ARB_shader_viewport_layer_array`` / ``GL_AMD_vertex_shader_layer``: one
    pass of instanced draws, the vertex shader writes ``gl_Layer``; llvmpipe has it) and
    ``"two-pass"`` (one pass per eye).

Alpha
    The image holds premultiplied alpha in linear light: the target is cleared to the scene's
    background premultiplied (a background with alpha 0, for passthrough or optical see-through,
    clears to (0, 0, 0, 0)), opaque surfaces and markers write alpha 1, and transparent structures and
    labels blend with the premultiplied "over". An sRGB target stores the sRGB encoding of those
    linear values, which is what sampling an sRGB swapchain image gives an OpenXR compositor (that
    expects premultiplied alpha unless a layer says otherwise).

Frame statistics
    CPU time per frame (Python, issuing the frame) and GPU time (timestamp queries read back without
    stalling a few frames later) go into :class:`~xrcore.stats.FrameStats`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from assets.twin import Twin
from xrcore.gl import GLContextError
from xrcore.render.frame import (
    StructureSplit,
    TwinTransformCache,
    clear_color,
    eye_matrices,
    far_first,
    lod_levels,
    marker_records,
)
from xrcore.render.glapi import GL, GLErrorLog, RenderError
from xrcore.render.label_pass import LabelPass
from xrcore.render.labels import LabelLayout, Placement
from xrcore.render.markers import MarkerPass
from xrcore.render.programs import ProgramBuilder
from xrcore.render.targets import RenderTargets
from xrcore.render.timers import GpuTimers
from xrcore.render.twin_gpu import TwinPass
from xrcore.scene import MAX_CLIP_PLANES, Scene
from xrcore.stats import FrameStats
from xrcore.types import View

__all__ = ["RenderError", "Renderer", "RendererConfig", "StereoMode"]

logger = logging.getLogger(__name__)

StereoMode = Literal["auto", "multiview", "layered", "two-pass"]
#: Triangles per flushed multi-draw batch on a software rasteriser: at least this many, more on big
#: framebuffers (one per ``_PIXELS_PER_BATCH_TRIANGLE`` pixels per eye), since each flush there costs
#: a load and store of every multisampled tile and each wait for a batch a hand-over, while each
#: batch in flight holds its binned triangles in memory (about 16 MB per 50k at 4x MSAA).
_MIN_BATCH_TRIANGLES = 50_000
_PIXELS_PER_BATCH_TRIANGLE = 70


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


def _choose_stereo(wanted: str, extensions: set[str], allow_multiview: bool = True) -> str:
    """The stereo mode to use for ``wanted`` given the context's ``extensions``; raises
    :class:`~xrcore.gl.GLContextError` when an explicitly wanted mode is not available."""
    has_multiview = "GL_OVR_multiview2" in extensions and allow_multiview
    has_layer = bool(extensions & {"GL_ARB_shader_viewport_layer_array", "GL_AMD_vertex_shader_layer"})
    if wanted == "auto":
        return "multiview" if has_multiview else "layered" if has_layer else "two-pass"
    if wanted == "multiview" and not has_multiview:
        raise GLContextError("stereo='multiview' needs GL_OVR_multiview2, which this context lacks")
    if wanted == "layered" and not has_layer:
        raise GLContextError("stereo='layered' needs GL_ARB_shader_viewport_layer_array or GL_AMD_vertex_shader_layer")
    return wanted


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
        cfg = self.config
        batch = max(_MIN_BATCH_TRIANGLES, cfg.width * cfg.height // _PIXELS_PER_BATCH_TRIANGLE)
        batch_indices = 3 * batch if self.software else 1 << 62
        self.samples = max(1, min(cfg.samples, int(info.get("max_samples", 4)) or 1))
        self.stats = FrameStats(rate_hz=cfg.rate_hz)
        self.frame_index = 0
        self._errors = GLErrorLog()
        self._closed = False
        self._transforms = TwinTransformCache()
        self._split = StructureSplit()
        self.stereo = _choose_stereo(cfg.stereo, ext)
        self._targets = RenderTargets(cfg.width, cfg.height, self.samples, cfg.srgb, self.stereo, self._errors)
        if self.stereo == "multiview" and not self._targets.stereo_complete:
            logger.warning("multiview framebuffer incomplete on this driver; falling back to layered stereo")
            self.stereo = _choose_stereo("auto", ext, allow_multiview=False)
            self._targets.delete()
            self._targets = RenderTargets(cfg.width, cfg.height, self.samples, cfg.srgb, self.stereo, self._errors)
        self.view_instances = 2 if self.stereo == "layered" else 1
        programs = ProgramBuilder(self.stereo, self.gl_version, ext)
        self._twin = TwinPass(programs, self._errors, has_mdi=self.has_mdi, software=self.software,
                              batch_indices=batch_indices, view_instances=self.view_instances)  # fmt: skip
        self._markers = MarkerPass(programs, self.view_instances)
        self._labels = LabelPass(programs, self._errors, self.view_instances, cfg.near)
        self._timers = GpuTimers(self.stats, cfg.timer_queries)
        self._errors.check("renderer set-up")
        logger.info(
            "renderer: %dx%d per eye, %dx MSAA, stereo %s, %s, multi-draw-indirect %s",
            cfg.width, cfg.height, self.samples, self.stereo,
            "sRGB" if cfg.srgb else "linear", "yes" if self.has_mdi else "no",
        )  # fmt: skip

    # --- what the passes hold -------------------------------------------------------------------------

    @property
    def gl_errors(self) -> int:
        """GL errors found so far (each is logged where it was found)."""
        return self._errors.count

    @property
    def batch_indices(self) -> int:
        """Indices per flushed draw batch (a software rasteriser's; effectively unlimited on a GPU)."""
        return self._twin.batch_indices

    @property
    def label_uploads(self) -> int:
        """Times the glyph instance buffer was rebuilt (only when the set of label texts changes)."""
        return self._labels.uploads

    @property
    def label_layout(self) -> LabelLayout:
        """The labels' declutter layout (it remembers the last frame's choices; ``reset()`` forgets)."""
        return self._labels.layout

    @property
    def label_placement(self) -> Placement:
        """The label placement of the last frame that drew labels (empty before the first)."""
        return self._labels.placement

    @property
    def color_texture(self) -> int:
        """GL name of the resolved 2-layer colour texture array (layer = eye)."""
        return self._targets.resolved

    @property
    def twin_buffers(self) -> tuple[int, int, list[list[tuple[int, int]]]] | None:
        """(vertex buffer, index buffer, ranges[structure][level] = (first index, count)) of the
        uploaded twin; vertices are interleaved position+normal float32 (24-byte stride)."""
        g = self._twin.buffers
        if g is None:
            return None
        return g.vbo, g.ibo, g.ranges

    def upload(self, twin: Twin) -> None:
        """Upload ``twin``'s structures and levels of detail (done once; replaces a previous twin)."""
        self._twin.upload(twin)

    # --- per frame ------------------------------------------------------------------------------------

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
        twin = self._twin
        twin.waited_s = 0.0
        views = list(views) if len(views) >= 2 else [views[0], views[0]]
        twin.upload(scene.twin)
        g = twin.buffers
        assert g is not None
        twin.update_materials(scene)
        query = self._timers.begin()

        cfg = self.config
        view_proj, eye_pos = eye_matrices(views, cfg.near, cfg.far)
        mid_eye = eye_pos.mean(axis=0).astype(np.float64)
        transform = self._transforms.get(scene)
        n_clip = transform.n_clip
        levels = lod_levels([len(r) for r in g.ranges], g.centers, g.radii, cfg.lod, views[0], transform.model,
                            scene.twin_scale, mid_eye)  # fmt: skip

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
        GL.glClearColor(*clear_color(scene.background))
        passes = [None] if self.stereo != "two-pass" else [0, 1]
        if passes == [None]:
            self._targets.bind_and_clear(None)

        opaque, transparent = self._split.get(scene)
        transparent = far_first(transparent, g.centers, transform.model, mid_eye)

        def overlay() -> tuple[Any, int, bool]:
            markers = marker_records(scene, transform.model)
            labels = self._labels.prepare(scene.labels(), views) if scene.show_labels else 0
            # Labels drawn over everything need no depth, so they go over the resolved image, one sample a
            # pixel: their plates and glyphs have smooth edges of their own, and blending them into 4x MSAA
            # samples cost a software rasteriser as much as a tenth of the frame.
            return markers, labels, bool(labels) and scene.label_style.on_top and self.samples > 1

        # with a late look (Scene.late) the overlay is read once the twin is drawn, else now
        markers, labels, late_labels = overlay() if scene.late is None else (None, 0, False)
        twin.begin(view_proj, eye_pos, transform)
        for k, eye in enumerate(passes):
            if eye is not None:
                self._targets.bind_and_clear(eye)
                twin.use_eye(eye)
            twin.draw_opaque(opaque, levels, cull_back_faces=n_clip == 0 and cfg.cull_back_faces)
            if transparent:
                twin.draw_transparent(transparent, levels)
            if k == 0 and scene.late is not None:
                GL.glFlush()  # the twin's draw goes to the GPU while the session looks
                scene.late(scene)
                markers, labels, late_labels = overlay()
            if markers is not None:
                self._markers.draw(markers, view_proj, eye_pos, eye)
            if labels and not late_labels:
                self._labels.draw(scene, view_proj, eye)
        # CPU time leaves out the resolve: on a GPU the blit is only queued, but llvmpipe runs it on this
        # thread after waiting for its rasteriser, which is GPU time, not the frame's CPU cost (nor the
        # waits for a software rasteriser to draw older batches: see TwinPass._draw_opaque)
        cpu_s = time.perf_counter() - t0 - twin.waited_s
        self._targets.resolve()
        if late_labels:
            t1 = time.perf_counter()
            for eye in passes:
                self._targets.bind_resolved(eye)
                self._labels.draw(scene, view_proj, eye)
            GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)
            cpu_s += time.perf_counter() - t1
        self.stats.record_cpu(cpu_s * 1000.0)
        self._timers.end(query)
        self._errors.check("frame")
        self.frame_index += 1

    def finish(self) -> None:
        """Wait for the GPU to finish the frames issued so far and collect their GPU times."""
        GL.glFinish()
        self._timers.collect(wait=True)

    # --- output ---------------------------------------------------------------------------------------

    def read_pixels(self, eye: int = 0) -> np.ndarray:
        """(H, W, 4) uint8 RGBA of ``eye`` (0 left, 1 right) from the last frame, top row first.

        Values are as stored: sRGB-encoded when ``srgb`` is on (what a PNG or a display expects),
        alpha premultiplied in linear light (see the module docstring).
        """
        return self._targets.read_pixels(eye)

    def read_stereo(self, top: int = 0, rows: int | None = None) -> np.ndarray:
        """(rows, 2W, 4) uint8 RGBA of both eyes of the last frame side by side (left eye on the
        left), rows ``top`` to ``top + rows`` counted from the top (all by default, clamped to the
        image), top row first, encoded like :meth:`read_pixels`."""
        return self._targets.read_stereo(top, rows)

    def present(self, width: int, height: int, eye: int = 0) -> None:
        """Blit ``eye``'s image, scaled to ``width`` x ``height``, into the window's back buffer."""
        self._targets.present(width, height, eye)

    def copy_to_texture_array(self, color: int, depth: int | None, width: int, height: int) -> bool:
        """Copy both eyes of the last frame into layers 0 and 1 of another context-shared 2D array
        texture (an OpenXR array swapchain image) of ``width`` x ``height`` pixels.

        Colour is blitted (scaled when sizes differ; sRGB-correct: a linear target receives decoded
        values). Depth is resolved into ``depth`` when one is given, the sizes match and the formats
        allow a blit; returns True when depth was written, False otherwise (no GL error is left).
        """
        return self._targets.copy_to_texture_array(color, depth, width, height)

    def close(self) -> None:
        """Delete every GL object the renderer made (the context must still be current)."""
        if self._closed:
            return
        self._closed = True
        self._twin.close()
        self._targets.delete()
        self._markers.close()
        self._labels.close()
        self._timers.close()
