"""The twin on the GPU: shared geometry buffers, the material table and the structures' draws.

All structures and their levels of detail share one vertex buffer (position and normal, float32) and
one index buffer, uploaded once when the renderer first sees a twin; the small per-structure material
table lives in a texture buffer re-uploaded only when the scene's ``version`` changes. Opaque
structures go out in one ``glMultiDrawElementsIndirect`` call (GL 4.3+; a loop of draws otherwise),
so the Python work per frame does not grow with the vertex count and barely with the structure count.
Transparent ones are drawn one by one, far to near, each inside (back faces) before outside.

On a software rasteriser (Mesa llvmpipe), which holds every queued triangle in memory until it draws,
big frames go out in flushed batches of ``batch_indices`` indices with at most
:data:`BATCHES_IN_FLIGHT` undrawn (fences), so memory stays bounded; a GPU gets one multi-draw call.
"""

from __future__ import annotations

import ctypes
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from assets.geometry import vertex_normals
from assets.twin import Twin
from xrcore.render.frame import TwinTransform
from xrcore.render.glapi import (
    GL,
    VERTEX_STRIDE,
    GLErrorLog,
    raw_uniform1i,
    raw_uniform3fv,
    raw_uniform4fv,
    raw_uniform_matrix3fv,
    raw_uniform_matrix4fv,
    vertex_layout,
)
from xrcore.render.programs import ProgramBuilder
from xrcore.scene import MAX_CLIP_PLANES, Scene

logger = logging.getLogger(__name__)

#: Flushed batches a software rasteriser may hold undrawn before the renderer waits for the oldest.
BATCHES_IN_FLIGHT = 3
_FENCE_TIMEOUT_NS = 10_000_000_000
#: Bytes of one indirect draw command: count, instanceCount, firstIndex, baseVertex, baseInstance.
_COMMAND_BYTES = 20
_SELECT_COLOR = (1.0, 0.55, 0.1)
#: Strength of the hovered structures' highlight (the selection's is 1): a faint rim that says what a
#: trigger pull would select.
_HOVER_HIGHLIGHT = 0.4
_CAP_TINT = (0.8, 0.62, 0.55)


@dataclass
class TwinBuffers:
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


class TwinPass:
    """Uploads a twin and draws its structures with the mesh shaders.

    Parameters
    ----------
    programs
        Builds the mesh program's two variants (with and without clip-plane caps).
    errors
        Where GL errors found after an upload are counted.
    has_mdi
        The context has ``glMultiDrawElementsIndirect``.
    software
        The context rasterises on the CPU: draws go out in fenced batches.
    batch_indices
        Indices per batch on a software rasteriser.
    view_instances
        Instances per drawn object (2 in layered stereo, where the instance picks the eye).
    """

    def __init__(
        self, programs: ProgramBuilder, errors: GLErrorLog, *, has_mdi: bool, software: bool, batch_indices: int,
        view_instances: int,
    ) -> None:  # fmt: skip
        self._errors = errors
        self.has_mdi = has_mdi
        self.software = software
        self.batch_indices = batch_indices
        self.view_instances = view_instances
        self._plain = programs.build("mesh.vert", "mesh.frag", {"CAPS": 0})
        self._caps = programs.build("mesh.vert", "mesh.frag", {"CAPS": 1})
        for mesh in (self._plain, self._caps):  # constant uniforms: set once
            GL.glUseProgram(mesh.handle)
            GL.glUniform3f(mesh.loc("u_highlight_color"), *_SELECT_COLOR)
            GL.glUniform3f(mesh.loc("u_cap_tint"), *_CAP_TINT)
            GL.glUniform1i(mesh.loc("u_materials"), 0)
        GL.glUseProgram(0)
        self._mesh = self._plain  # the variant this frame uses
        self.buffers: TwinBuffers | None = None
        self._indirect = 0
        self._indirect_key: Any = None
        self._indirect_batches: list[tuple[int, int]] = []
        #: This frame's waits for the rasteriser (software batches), seconds: GPU time, not CPU time.
        self.waited_s = 0.0

    # --- upload -------------------------------------------------------------------------------------

    def upload(self, twin: Twin) -> None:
        """Upload ``twin``'s structures and levels of detail (done once; replaces a previous twin)."""
        if self.buffers is not None and self.buffers.twin is twin:
            return
        if self.buffers is not None:
            self.release()
        t0 = time.perf_counter()
        levels_of = [[(s.vertices, s.faces)] + [(lod.vertices, lod.faces) for lod in s.lods] for s in twin.structures]
        n_vertices = sum(len(v) for levels in levels_of for v, _ in levels)
        n_indices = sum(int(np.size(f)) for levels in levels_of for _, f in levels)
        vbo, ibo, id_buffer, mat_buffer = (int(b) for b in np.atleast_1d(GL.glGenBuffers(4)))
        # Both buffers are allocated at their full size and filled one structure level at a time:
        # the only CPU copy is that level's interleaved vertices and offset indices, not the twin's
        # (on a million triangles that is 24 MB less at once, and less heap left fragmented).
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, vbo)
        GL.glBufferData(GL.GL_ARRAY_BUFFER, max(VERTEX_STRIDE * n_vertices, 4), None, GL.GL_STATIC_DRAW)
        # (the index buffer through a generic target: no vertex array is bound yet)
        GL.glBindBuffer(GL.GL_COPY_WRITE_BUFFER, ibo)
        GL.glBufferData(GL.GL_COPY_WRITE_BUFFER, max(4 * n_indices, 4), None, GL.GL_STATIC_DRAW)
        ranges: list[list[tuple[int, int]]] = []
        centers, radii = [], []
        base_vertex = 0
        first = 0
        for s, levels in zip(twin.structures, levels_of, strict=True):
            rs = []
            for level_vertices, level_faces in levels:
                verts = np.asarray(level_vertices, dtype=np.float32)
                faces = np.asarray(level_faces)
                interleaved = np.empty((len(verts), 6), dtype=np.float32)
                interleaved[:, :3] = verts
                interleaved[:, 3:] = vertex_normals(verts, faces)
                GL.glBufferSubData(GL.GL_ARRAY_BUFFER, VERTEX_STRIDE * base_vertex, interleaved.nbytes, interleaved)
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
            vertex_layout()
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
        self._indirect_key = None
        self._indirect_batches = []
        self.buffers = TwinBuffers(
            twin=twin, vbo=vbo, ibo=ibo, id_buffer=id_buffer, vao_mdi=vaos[0], vao_loop=vaos[1],
            materials_buffer=mat_buffer, materials_texture=mat_tex, ranges=ranges,
            centers=np.array(centers, dtype=np.float64).reshape(-1, 3),
            radii=np.array(radii, dtype=np.float64), nbytes=VERTEX_STRIDE * n_vertices + 4 * n_indices,
        )  # fmt: skip
        self._errors.check("twin upload")
        logger.info(
            "uploaded twin %r: %d structures, %d triangles (all levels), %.1f MB in %.2f s",
            twin.name, len(twin.structures), n_indices // 3, self.buffers.nbytes / 1e6, time.perf_counter() - t0,
        )  # fmt: skip

    def release(self) -> None:
        """Delete the uploaded twin's buffers (nothing to do when none is uploaded)."""
        g = self.buffers
        if g is None:
            return
        GL.glDeleteBuffers(4, [g.vbo, g.ibo, g.id_buffer, g.materials_buffer])
        GL.glDeleteVertexArrays(2, [g.vao_mdi, g.vao_loop])
        GL.glDeleteTextures(1, [g.materials_texture])
        if self._indirect:
            GL.glDeleteBuffers(1, [self._indirect])
            self._indirect = 0
        self.buffers = None

    def close(self) -> None:
        """Delete the twin's buffers and the mesh programs (the context must be current)."""
        self.release()
        self._plain.delete()
        self._caps.delete()

    def update_materials(self, scene: Scene) -> None:
        """Re-upload the material table when the scene's ``version`` moved: per structure, colour
        (linear RGBA; alpha 1 for opaque ones) and (highlight: 1 selected,
        :data:`_HOVER_HIGHLIGHT` hovered, else 0; shininess; specular; 1 visible / 0 hidden)."""
        g = self.buffers
        assert g is not None
        if g.material_version == scene.version:
            return
        table = np.zeros((max(len(scene.materials), 1), 2, 4), dtype=np.float32)
        for i, m in enumerate(scene.materials):
            table[i, 0] = m.color
            if m.opaque:  # up to 0.1 % short of 1 counts as opaque and draws unblended: full coverage
                table[i, 0, 3] = 1.0
            highlight = 1.0 if i in scene.selected else _HOVER_HIGHLIGHT if i in scene.hovered else 0.0
            table[i, 1] = (highlight, m.shininess, m.specular, 1.0 if m.visible else 0.0)
        GL.glBindBuffer(GL.GL_TEXTURE_BUFFER, g.materials_buffer)
        GL.glBufferData(GL.GL_TEXTURE_BUFFER, table.nbytes, table, GL.GL_DYNAMIC_DRAW)
        GL.glBindTexture(GL.GL_TEXTURE_BUFFER, g.materials_texture)
        GL.glTexBuffer(GL.GL_TEXTURE_BUFFER, GL.GL_RGBA32F, g.materials_buffer)
        g.material_version = scene.version

    # --- per frame ----------------------------------------------------------------------------------

    def begin(self, view_proj: np.ndarray, eye_pos: np.ndarray, transform: TwinTransform) -> None:
        """Pick this frame's mesh program (the caps variant while clip planes are active), give it the
        eyes ((2, 4, 4) view-projection, (2, 3) positions, metres) and the twin's transform, and bind
        the material table to texture unit 0."""
        g = self.buffers
        assert g is not None
        n_clip = transform.n_clip
        mesh = self._mesh = self._caps if n_clip else self._plain
        GL.glUseProgram(mesh.handle)
        # raw entry points, and only the uniforms whose value changed (constants are set at link)
        mesh.set("u_view_proj", raw_uniform_matrix4fv, view_proj, 2, GL.GL_TRUE)
        mesh.set("u_eye_pos", raw_uniform3fv, eye_pos, 2)
        mesh.set("u_model", raw_uniform_matrix4fv, transform.model32, 1, GL.GL_TRUE)
        mesh.set("u_normal_matrix", raw_uniform_matrix3fv, transform.normal_matrix, 1, GL.GL_TRUE)
        mesh.set("u_clip", raw_uniform4fv, transform.planes, MAX_CLIP_PLANES)
        if mesh.values.get("u_clip_count") != bytes((n_clip,)):
            mesh.values["u_clip_count"] = bytes((n_clip,))
            raw_uniform1i(mesh.loc("u_clip_count"), n_clip)
        GL.glActiveTexture(GL.GL_TEXTURE0)
        GL.glBindTexture(GL.GL_TEXTURE_BUFFER, g.materials_texture)

    def use_eye(self, eye: int) -> None:
        """Make the mesh program current again for two-pass stereo's ``eye`` (other passes switch
        programs between the eyes)."""
        GL.glUseProgram(self._mesh.handle)
        GL.glUniform1i(self._mesh.loc("u_eye_index"), eye)

    def draw_opaque(self, opaque: list[int], levels: list[int], cull_back_faces: bool) -> None:
        """Draw the ``opaque`` structures at ``levels`` unblended, writing depth; ``cull_back_faces``
        while no clip plane opens a surface (closed, outward-wound surfaces, as assets' validation
        guarantees, show no back faces unless a clip plane opens them, when they become the cap)."""
        GL.glDisable(GL.GL_BLEND)
        GL.glDepthMask(GL.GL_TRUE)
        if cull_back_faces:
            GL.glEnable(GL.GL_CULL_FACE)
            GL.glCullFace(GL.GL_BACK)
        if opaque:
            self._draw_opaque(opaque, levels)
        GL.glDisable(GL.GL_CULL_FACE)

    def _draw_opaque(self, opaque: list[int], levels: list[int]) -> None:
        g = self.buffers
        assert g is not None
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
                    # k - BATCHES_IN_FLIGHT is drawn, so memory stays bounded while binning one
                    # batch still overlaps drawing the last. A fence marks the batches something
                    # will wait for, a plain flush the others. (A GPU gets one batch.)
                    if k <= len(batches) - BATCHES_IN_FLIGHT:
                        fences.append(GL.glFenceSync(GL.GL_SYNC_GPU_COMMANDS_COMPLETE, 0))
                    else:
                        GL.glFlush()
                    if k >= BATCHES_IN_FLIGHT:
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
        g = self.buffers
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
                    batches.append((start * _COMMAND_BYTES, len(cmds) - start))
                    start, filled = len(cmds), 0
        if len(cmds) > start:
            batches.append((start * _COMMAND_BYTES, len(cmds) - start))
        data = np.array(cmds, dtype=np.uint32)
        GL.glBufferData(GL.GL_DRAW_INDIRECT_BUFFER, data.nbytes, data, GL.GL_DYNAMIC_DRAW)
        return batches

    def _draw_structure(self, i: int, level: int, fences: list[Any] | None = None) -> None:
        g = self.buffers
        assert g is not None
        first, count = g.ranges[i][level]
        # the loop VAO leaves attribute 2 disabled, so the shader reads this constant instead
        GL.glVertexAttribI1ui(2, i)
        # On a software rasteriser a big structure goes out in batches, at most BATCHES_IN_FLIGHT
        # of them undrawn (see _draw_opaque): a semi-transparent million-triangle structure drawn
        # in one call had llvmpipe queue half a gigabyte at 1832x1920. ``fences`` carries the
        # batches in flight from one call to the next; the caller deletes what is left.
        step = count if fences is None else self.batch_indices
        for start in range(0, count, step):
            if start:
                fences.append(GL.glFenceSync(GL.GL_SYNC_GPU_COMMANDS_COMPLETE, 0))  # type: ignore[union-attr]
                if len(fences) >= BATCHES_IN_FLIGHT:  # type: ignore[arg-type]
                    self._wait_fence(fences.pop(0))  # type: ignore[union-attr]
            n = min(step, count - start)
            offset = ctypes.c_void_p(4 * (first + start))
            GL.glDrawElementsInstanced(GL.GL_TRIANGLES, n, GL.GL_UNSIGNED_INT, offset, self.view_instances)

    def _wait_fence(self, fence: Any) -> None:
        w0 = time.perf_counter()
        GL.glClientWaitSync(fence, GL.GL_SYNC_FLUSH_COMMANDS_BIT, _FENCE_TIMEOUT_NS)
        self.waited_s += time.perf_counter() - w0  # rasteriser time, not CPU time
        GL.glDeleteSync(fence)

    def draw_transparent(self, transparent: list[int], levels: list[int]) -> None:
        """Draw the ``transparent`` structures (far to near) blended over what is drawn, without
        writing depth, each one's inside (back faces) before its outside.

        Colour blends as (SRC_ALPHA, ONE_MINUS_SRC_ALPHA), alpha as (ONE, ONE_MINUS_SRC_ALPHA): over a
        premultiplied destination (C, A) that gives (a c + (1 - a) C, a + (1 - a) A), the
        premultiplied "over" of a straight-alpha fragment (c, a), so the target stays premultiplied."""
        g = self.buffers
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
