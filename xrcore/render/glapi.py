"""GL plumbing shared by the render passes: the one import of PyOpenGL in ``xrcore.render``.

Every module of the package that issues GL calls takes ``GL`` and the raw entry points from here, so
that PyOpenGL's platform is chosen (:func:`xrcore.gl.prepare_pyopengl`) before anything binds an
entry point, whichever module is imported first. The raw entry points skip PyOpenGL's array wrapping:
the per-frame paths call them with contiguous numpy data or ctypes pointers.

Also here: :class:`RenderError`, :class:`GLErrorLog` (one ``glGetError`` sweep per frame, counted and
logged) and :func:`vertex_layout`, the interleaved position + normal layout every mesh buffer uses.
"""

from __future__ import annotations

import ctypes
import logging

from xrcore.gl import prepare_pyopengl

prepare_pyopengl()

from OpenGL import GL  # noqa: E402 - PyOpenGL's platform must be chosen first
from OpenGL.GL.OVR.multiview import glFramebufferTextureMultiviewOVR  # noqa: E402
from OpenGL.raw.GL.VERSION.GL_1_0 import glReadPixels as raw_read_pixels  # noqa: E402
from OpenGL.raw.GL.VERSION.GL_1_2 import glTexImage3D as raw_tex_image_3d  # noqa: E402
from OpenGL.raw.GL.VERSION.GL_1_5 import glGetQueryObjectiv as raw_query_iv  # noqa: E402
from OpenGL.raw.GL.VERSION.GL_2_0 import glUniform1fv as raw_uniform1fv  # noqa: E402
from OpenGL.raw.GL.VERSION.GL_2_0 import glUniform1i as raw_uniform1i  # noqa: E402
from OpenGL.raw.GL.VERSION.GL_2_0 import glUniform3fv as raw_uniform3fv  # noqa: E402
from OpenGL.raw.GL.VERSION.GL_2_0 import glUniform4fv as raw_uniform4fv  # noqa: E402
from OpenGL.raw.GL.VERSION.GL_2_0 import glUniformMatrix3fv as raw_uniform_matrix3fv  # noqa: E402
from OpenGL.raw.GL.VERSION.GL_2_0 import glUniformMatrix4fv as raw_uniform_matrix4fv  # noqa: E402
from OpenGL.raw.GL.VERSION.GL_3_3 import glGetQueryObjectui64v as raw_query_ui64v  # noqa: E402

__all__ = [
    "GL", "VERTEX_STRIDE", "GLErrorLog", "RenderError", "glFramebufferTextureMultiviewOVR", "raw_query_iv",
    "raw_query_ui64v", "raw_read_pixels", "raw_tex_image_3d", "raw_uniform1fv", "raw_uniform1i", "raw_uniform3fv",
    "raw_uniform4fv", "raw_uniform_matrix3fv", "raw_uniform_matrix4fv", "vertex_layout",
]  # fmt: skip

logger = logging.getLogger(__name__)

#: Bytes per interleaved vertex: position then normal, 3 float32 each.
VERTEX_STRIDE = 24


class RenderError(RuntimeError):
    """A shader failed to build or the GL state is unusable; the message carries the GL log."""


class GLErrorLog:
    """GL errors seen by one renderer: each is logged with where it was found, and counted.

    The renderer sweeps ``glGetError`` at a few points (set-up, each frame, a swapchain copy) rather
    than after every call (PyOpenGL's per-call checking is off unless ``MEDVERSE_GL_DEBUG=1``).
    """

    def __init__(self) -> None:
        self.count = 0

    def check(self, where: str) -> None:
        """Drain the GL error queue; log each error as found after ``where``."""
        err = GL.glGetError()
        while err != GL.GL_NO_ERROR:
            self.count += 1
            logger.error("GL error 0x%04x after %s", err, where)
            err = GL.glGetError()


def vertex_layout() -> None:
    """Point attributes 0 (position) and 1 (normal) of the bound vertex array at the bound array
    buffer's interleaved float32 vertices (:data:`VERTEX_STRIDE` bytes each)."""
    GL.glEnableVertexAttribArray(0)
    GL.glVertexAttribPointer(0, 3, GL.GL_FLOAT, GL.GL_FALSE, VERTEX_STRIDE, ctypes.c_void_p(0))
    GL.glEnableVertexAttribArray(1)
    GL.glVertexAttribPointer(1, 3, GL.GL_FLOAT, GL.GL_FALSE, VERTEX_STRIDE, ctypes.c_void_p(12))
