"""The labels pass: text labels as head-facing billboards, drawn after all geometry.

Avatars' names, landmark texts, the selected structures' names and the session's own labels go out in
one instanced draw of quads: per label a leader line, a rounded plate and its glyphs, from the
Pillow-built atlas of :mod:`xrcore.render.glyphs`. The glyph instances are rebuilt only when the set
of texts changes; each frame uploads a small per-label table (anchor, colour, placement) after the
declutter layout of :mod:`xrcore.render.labels` has placed the labels, once for both eyes. A label's
``scale`` multiplies its size (text, plate, leader and slot offsets alike); a ``pinned`` label is drawn
exactly at its position, never moved or hidden by the layout, and the others move out of its way.

Blending is the premultiplied "over" of the twin's transparent pass: plates, leaders and glyphs are
straight-alpha fragments, so the target stays premultiplied (over a transparent background a plate
leaves its own alpha, for passthrough to show through).
"""

from __future__ import annotations

import ctypes
import math
from functools import cache

import numpy as np

from xrcore.render.glapi import GL, GLErrorLog, raw_uniform1fv, raw_uniform3fv, raw_uniform4fv, raw_uniform_matrix4fv
from xrcore.render.glyphs import GlyphAtlas
from xrcore.render.labels import LabelLayout, Placement
from xrcore.render.programs import ProgramBuilder
from xrcore.scene import MAX_CLIP_PLANES, Label, Scene
from xrcore.types import View

#: Margin of a label's plate around its text, line units.
PLATE_PAD = 0.18
#: Laid-out label texts kept for reuse (a label that comes back costs no layout).
_LAYOUT_CACHE = 256
#: Bytes per glyph instance record: rect, atlas uv, (label, kind, -, -), float32 each.
_INSTANCE_BYTES = 48


@cache
def glyph_atlas() -> GlyphAtlas:
    """The process's glyph atlas, rasterised on first use (about 0.2 s) and shared by renderers."""
    return GlyphAtlas()


class LabelPass:
    """Glyph atlas texture, label instances and per-label table, their layout and their draw.

    The GPU objects are made when the first label shows up (the atlas costs 0.2 s to build).

    Parameters
    ----------
    programs
        Builds the label program.
    errors
        Where GL errors found while setting up are counted.
    view_instances
        Instances per quad (2 in layered stereo, where the instance picks the eye).
    near
        Near clip distance, metres: a label anchored nearer than this to an eye is not drawn there.
    """

    def __init__(self, programs: ProgramBuilder, errors: GLErrorLog, view_instances: int, near: float) -> None:
        self._errors = errors
        self.view_instances = view_instances
        self.near = near
        self._program = programs.build("label.vert", "label.frag")
        self._vao = 0
        self._buffers: list[int] = []  # instances, per-label table
        self._textures: list[int] = []  # atlas, table view
        self._key: tuple[str, ...] | None = None
        self._count = 0  # instances (plates and glyphs) in the buffer
        self._half_widths = np.zeros(0)
        self._keys: list[tuple[str, int]] = []
        self._layouts: dict[str, tuple[np.ndarray, float]] = {}
        #: Times the glyph instance buffer was rebuilt (only when the set of label texts changes).
        self.uploads = 0
        #: Screen-space decluttering, shared by both eyes and remembered from frame to frame.
        self.layout = LabelLayout(plate_height=1.0 + 2 * PLATE_PAD)
        #: The layout of the last frame that drew labels (no label before the first).
        self.placement = Placement(np.zeros(0, np.float32), np.zeros(0, bool), np.zeros(0, np.int64), np.zeros((0, 0, 4)))
        self._placed = False
        self._head: tuple[np.ndarray, np.ndarray, np.ndarray] = (np.zeros(3), np.zeros(3), np.zeros(3))
        self._frame: tuple[list[Label], list[View]] = ([], [])

    def _build(self) -> None:
        atlas = glyph_atlas()
        tex, table_tex = (int(t) for t in np.atleast_1d(GL.glGenTextures(2)))
        self._textures = [tex, table_tex]
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
        self._buffers = [instances, table]
        self._vao = int(GL.glGenVertexArrays(1))
        GL.glBindVertexArray(self._vao)
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, instances)
        for loc in (0, 1, 2):  # rect, uv, (label, plate)
            GL.glEnableVertexAttribArray(loc)
            GL.glVertexAttribPointer(loc, 4, GL.GL_FLOAT, GL.GL_FALSE, _INSTANCE_BYTES, ctypes.c_void_p(16 * loc))
            GL.glVertexAttribDivisor(loc, self.view_instances)
        GL.glBindVertexArray(0)
        self._errors.check("label set-up")

    def _text_layout(self, text: str) -> tuple[np.ndarray, float]:
        found = self._layouts.get(text)
        if found is None:
            if len(self._layouts) >= _LAYOUT_CACHE:
                self._layouts.pop(next(iter(self._layouts)))
            found = self._layouts[text] = glyph_atlas().layout(text)
        return found

    def prepare(self, labels: list[Label], views: list[View]) -> int:
        """Upload the glyph instances when the texts changed, and keep this frame's labels and its
        (two) views for the layout made at the first :meth:`draw`.

        Instances: first one leader line per label (drawn under every plate), then per label its
        plate and its glyphs. Returns the number of instances to draw (0: nothing to draw).
        """
        if not labels:
            return 0
        if not self._vao:
            self._build()
        key = tuple(label.text for label in labels)
        if key != self._key:
            n = len(labels)
            leaders = np.zeros((n, 12), dtype=np.float32)
            # a thin quad from the anchor towards the plate; the shader stretches it to the offset
            leaders[:, :4] = (-0.04, 0.0, 0.04, 1.0 + 2 * PLATE_PAD)
            leaders[:, 8], leaders[:, 9] = np.arange(n), 2.0
            parts: list[np.ndarray] = [leaders]
            half_widths = np.zeros(n)
            for k, label in enumerate(labels):
                quads, width = self._text_layout(label.text)
                rows = np.zeros((len(quads) + 1, 12), dtype=np.float32)
                # the plate first, so that blending lays the label's glyphs over it; bottom at y = 0
                rows[0, :4] = (-width / 2 - PLATE_PAD, 0.0, width / 2 + PLATE_PAD, 1.0 + 2 * PLATE_PAD)
                rows[0, 9] = 1.0
                rows[1:, :8] = quads
                rows[1:, [1, 3]] += PLATE_PAD
                rows[:, 8] = k
                parts.append(rows)
                half_widths[k] = width / 2 + PLATE_PAD
            data = np.concatenate(parts)
            GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self._buffers[0])
            GL.glBufferData(GL.GL_ARRAY_BUFFER, data.nbytes, data, GL.GL_DYNAMIC_DRAW)
            self._key, self._count = key, len(data)
            self._half_widths = half_widths
            seen: dict[str, int] = {}
            keys = []
            for text in key:  # same text twice: two labels, told apart by their order
                seen[text] = seen.get(text, -1) + 1
                keys.append((text, seen[text]))
            self._keys = keys
            self.uploads += 1
        # every eye turns a label towards the same point, the middle of the eyes, so that both see
        # one flat sign (per-eye billboards would disagree in depth and strain fusion)
        head = (np.asarray(views[0].pose.position) + np.asarray(views[1].pose.position)) / 2
        rot = views[0].pose.rotation_matrix()
        self._head = (head.astype(np.float32), rot[:, 1].astype(np.float32), rot[:, 0].astype(np.float32))
        self._frame = (labels, views if views[1] is not views[0] else views[:1])
        self._placed = False  # laid out at this frame's first draw
        return self._count

    def _place(self, scene: Scene) -> None:
        """Declutter this frame's labels (one placement for both eyes, see ``labels.py``; pinned ones
        stay on their anchors and push the others away) and upload the per-label table: anchor, text
        colour, (plate offset in line units, shown, scale)."""
        labels, views = self._frame
        style = scene.label_style
        n = len(labels)
        # the selected structures' names come last in Scene.labels(), and go first here
        names = [scene.twin.structures[i].name for i in sorted(scene.selected)] if scene.label_selection else []
        names = [name for name in names if name.strip()]
        m = len(names) if names and [label.text for label in labels[n - len(names) :]] == names else 0
        priority = np.r_[np.ones(n - m, dtype=np.int64), np.zeros(m, dtype=np.int64)]
        anchors = np.array([label.position for label in labels], dtype=np.float64)
        scales = np.array([label.scale for label in labels], dtype=np.float64)
        pinned = np.array([label.pinned for label in labels], dtype=bool)
        head, up, right = self._head
        angular = style.size == "angular"
        placement = self.layout.place(
            anchors, self._half_widths, views, keys=self._keys, priority=priority,
            head=head, head_up=up, head_right=right, near=self.near, angular=angular,
            size=2 * math.tan(math.radians(style.angle) / 2) if angular else style.height, scales=scales, pinned=pinned,
        )  # fmt: skip
        self.placement = placement
        table = np.zeros((n, 3, 4), dtype=np.float32)
        table[:, 0, :3] = anchors
        table[:, 1] = [label.color for label in labels]
        table[:, 2, 0] = placement.offsets
        table[:, 2, 1] = placement.visible
        table[:, 2, 2] = scales
        GL.glBindBuffer(GL.GL_TEXTURE_BUFFER, self._buffers[1])
        GL.glBufferData(GL.GL_TEXTURE_BUFFER, table.nbytes, table, GL.GL_STREAM_DRAW)
        GL.glActiveTexture(GL.GL_TEXTURE2)  # unit 0 holds the structures' material table
        GL.glBindTexture(GL.GL_TEXTURE_BUFFER, self._textures[1])
        GL.glTexBuffer(GL.GL_TEXTURE_BUFFER, GL.GL_RGBA32F, self._buffers[1])
        GL.glActiveTexture(GL.GL_TEXTURE0)

    def draw(self, scene: Scene, view_proj: np.ndarray, eye: int | None) -> None:
        """Draw the labels :meth:`prepare` took (laid out at the frame's first call) for the eyes'
        (2, 4, 4) view-projections; ``eye``: two-pass stereo's eye (None: both in one pass)."""
        if not self._placed:  # once per frame, before the first eye
            self._place(scene)
            self._placed = True
        prog, style = self._program, scene.label_style
        GL.glUseProgram(prog.handle)
        # raw entry points, and only the uniforms whose value changed (a program keeps its uniforms)
        prog.set("u_view_proj", raw_uniform_matrix4fv, np.ascontiguousarray(view_proj, dtype=np.float32), 2, GL.GL_TRUE)
        if eye is not None:
            prog.set_int("u_eye_index", eye)
        head, up, right = self._head
        prog.set("u_head_pos", raw_uniform3fv, head, 1)
        prog.set("u_head_up", raw_uniform3fv, up, 1)
        prog.set("u_head_right", raw_uniform3fv, right, 1)
        angular = style.size == "angular"
        prog.set_int("u_angular", int(angular))
        size = 2 * math.tan(math.radians(style.angle) / 2) if angular else style.height
        prog.set("u_size", raw_uniform1fv, np.array([size], dtype=np.float32), 1)
        prog.set("u_near", raw_uniform1fv, np.array([self.near], dtype=np.float32), 1)
        prog.set("u_plate_color", raw_uniform4fv, np.array(style.background, dtype=np.float32), 1)
        prog.set_int("u_atlas", 1)
        prog.set_int("u_labels", 2)
        GL.glActiveTexture(GL.GL_TEXTURE1)
        GL.glBindTexture(GL.GL_TEXTURE_2D, self._textures[0])
        GL.glActiveTexture(GL.GL_TEXTURE2)
        GL.glBindTexture(GL.GL_TEXTURE_BUFFER, self._textures[1])
        GL.glActiveTexture(GL.GL_TEXTURE0)
        for i in range(MAX_CLIP_PLANES):  # labels stay visible through cuts
            GL.glDisable(GL.GL_CLIP_DISTANCE0 + i)
        GL.glEnable(GL.GL_BLEND)
        GL.glBlendFuncSeparate(GL.GL_SRC_ALPHA, GL.GL_ONE_MINUS_SRC_ALPHA, GL.GL_ONE, GL.GL_ONE_MINUS_SRC_ALPHA)
        GL.glDepthMask(GL.GL_FALSE)
        if style.on_top:
            GL.glDisable(GL.GL_DEPTH_TEST)
        GL.glBindVertexArray(self._vao)
        GL.glDrawArraysInstanced(GL.GL_TRIANGLE_STRIP, 0, 4, self._count * self.view_instances)
        GL.glBindVertexArray(0)
        GL.glEnable(GL.GL_DEPTH_TEST)
        GL.glDepthMask(GL.GL_TRUE)
        GL.glDisable(GL.GL_BLEND)

    def close(self) -> None:
        """Delete the program and, when made, the atlas, buffers and vertex array."""
        self._program.delete()
        if self._vao:
            GL.glDeleteVertexArrays(1, [self._vao])
            GL.glDeleteBuffers(len(self._buffers), self._buffers)
            GL.glDeleteTextures(len(self._textures), self._textures)
            self._vao = 0
