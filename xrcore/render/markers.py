"""The markers pass: instanced spheres and segments in world space.

Landmarks, annotation strokes, avatars' heads, hands and pointer rays and the session's overlay balls
and rods (their records come from :func:`xrcore.render.frame.marker_records`) are drawn from a unit
icosphere and a unit cylinder, one instanced draw per kind, with one instance buffer shared by both.
Markers are opaque: drawn unblended, they write alpha 1 whatever their colour's alpha (an image over a
transparent background must hold premultiplied colour). They stay visible through clip planes.
"""

from __future__ import annotations

import ctypes

import numpy as np

from xrcore.render.frame import cylinder, icosphere
from xrcore.render.glapi import GL, raw_uniform3fv, raw_uniform_matrix4fv, vertex_layout
from xrcore.render.programs import ProgramBuilder
from xrcore.scene import MAX_CLIP_PLANES

#: Bytes per instance record: (p0, radius), (p1, -), colour, float32 each.
_RECORD_BYTES = 48
#: Spheres smaller than this (radius, metres: cursors, landmarks, stroke joints, hand joints) use the
#: coarse icosphere (80 triangles, not 320): a few pixels across, they look the same, and a stroke's
#: joints or two hands' skeletons would otherwise cost a software rasteriser as much as a small twin.
SMALL_SPHERE_M = 0.006


class MarkerPass:
    """Unit sphere and cylinder meshes, their instance buffer and the marker program.

    Parameters
    ----------
    programs
        Builds the marker program.
    view_instances
        Instances per marker (2 in layered stereo, where the instance picks the eye).
    """

    def __init__(self, programs: ProgramBuilder, view_instances: int) -> None:
        self.view_instances = view_instances
        self._program = programs.build("marker.vert", "marker.frag")
        self._instances = int(GL.glGenBuffers(1))
        self._vaos: list[tuple[int, int]] = []  # (vao, index count) for sphere, cylinder, small sphere
        self._buffers: list[int] = [self._instances]
        for verts, idx in (icosphere(2), cylinder(8), icosphere(1)):
            vao = int(GL.glGenVertexArrays(1))
            vbo, ibo = (int(b) for b in np.atleast_1d(GL.glGenBuffers(2)))
            self._buffers += [vbo, ibo]
            GL.glBindVertexArray(vao)
            GL.glBindBuffer(GL.GL_ARRAY_BUFFER, vbo)
            GL.glBufferData(GL.GL_ARRAY_BUFFER, verts.nbytes, verts, GL.GL_STATIC_DRAW)
            vertex_layout()
            GL.glBindBuffer(GL.GL_ELEMENT_ARRAY_BUFFER, ibo)
            GL.glBufferData(GL.GL_ELEMENT_ARRAY_BUFFER, idx.nbytes, idx, GL.GL_STATIC_DRAW)
            GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self._instances)
            for k, loc in enumerate((3, 4, 5)):
                GL.glEnableVertexAttribArray(loc)
                GL.glVertexAttribPointer(loc, 4, GL.GL_FLOAT, GL.GL_FALSE, _RECORD_BYTES, ctypes.c_void_p(16 * k))
                GL.glVertexAttribDivisor(loc, view_instances)
            self._vaos.append((vao, int(idx.size)))
        GL.glBindVertexArray(0)

    def draw(self, records: tuple[np.ndarray, np.ndarray], view_proj: np.ndarray, eye_pos: np.ndarray, eye: int | None) -> None:
        """Draw (spheres, segments) instance records, each (N, 12) float32, for the eyes'
        (2, 4, 4) view-projections and (2, 3) positions (metres); ``eye``: two-pass stereo's eye."""
        prog = self._program
        GL.glUseProgram(prog.handle)
        prog.set("u_view_proj", raw_uniform_matrix4fv, np.ascontiguousarray(view_proj, dtype=np.float32), 2, GL.GL_TRUE)
        prog.set("u_eye_pos", raw_uniform3fv, np.ascontiguousarray(eye_pos, dtype=np.float32), 2)
        if eye is not None:
            prog.set_int("u_eye_index", eye)
        for i in range(MAX_CLIP_PLANES):  # annotations stay visible through cuts
            GL.glDisable(GL.GL_CLIP_DISTANCE0 + i)
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self._instances)
        spheres, segments = records
        small = spheres[:, 3] < SMALL_SPHERE_M
        batches = ((spheres[~small], 0, self._vaos[0]), (segments, 1, self._vaos[1]), (spheres[small], 0, self._vaos[2]))
        for selected, kind, (vao, count) in batches:
            if not len(selected):
                continue
            data = np.ascontiguousarray(selected)
            GL.glBufferData(GL.GL_ARRAY_BUFFER, data.nbytes, data, GL.GL_STREAM_DRAW)
            prog.set_int("u_segments", kind)
            GL.glBindVertexArray(vao)
            GL.glDrawElementsInstanced(
                GL.GL_TRIANGLES, count, GL.GL_UNSIGNED_INT, ctypes.c_void_p(0), len(data) * self.view_instances
            )
        GL.glBindVertexArray(0)

    def close(self) -> None:
        """Delete the meshes, the instance buffer and the program (the context must be current)."""
        GL.glDeleteBuffers(len(self._buffers), self._buffers)
        GL.glDeleteVertexArrays(len(self._vaos), [v for v, _ in self._vaos])
        self._program.delete()
