"""OpenGL plumbing: the one place that prepares PyOpenGL and creates GL contexts.

PyOpenGL picks its platform (GLX, EGL, OSMesa) once, when ``OpenGL`` is first imported, from the
``PYOPENGL_PLATFORM`` environment variable. medverse always talks to GL through EGL (offscreen on Mesa
or the NVIDIA device platform, and GLFW windows are asked for EGL contexts too), so this package sets
``PYOPENGL_PLATFORM=egl`` before anything imports ``OpenGL`` and refuses clearly when someone imported
it earlier with another platform. Import GL modules only through here (``xrcore.gl.context`` and
``xrcore.renderer`` do).

The one exception to "contexts are EGL": ``create_context("glx")`` makes a GLX context for OpenXR
runtimes that bind OpenGL only through Xlib/GLX. PyOpenGL keeps its EGL platform for it (GLVND
dispatches the GL entry points to whichever context is current); see :mod:`xrcore.gl.context`.

``MEDVERSE_GL_DEBUG=1`` turns on PyOpenGL's per-call error checking (slow: a ``glGetError`` after every
call); by default the renderer checks ``glGetError`` once per frame instead.
"""

from __future__ import annotations

import logging
import os
import sys

logger = logging.getLogger(__name__)


class GLContextError(RuntimeError):
    """No GL context could be created or made current (message says what was tried and what to do)."""


def prepare_pyopengl() -> None:
    """Select PyOpenGL's EGL platform before ``OpenGL`` is imported; idempotent.

    Raises
    ------
    GLContextError
        ``OpenGL`` was already imported with a platform other than EGL.
    """
    if "OpenGL.platform" in sys.modules:
        import OpenGL.platform  # noqa: PLC0415 - already loaded, only inspected

        name = type(OpenGL.platform.PLATFORM).__name__
        if "EGL" not in name:
            raise GLContextError(
                f"PyOpenGL was imported with platform {name} before xrcore.gl; "
                "set PYOPENGL_PLATFORM=egl or import xrcore.gl before OpenGL"
            )
        return
    requested = os.environ.get("PYOPENGL_PLATFORM")
    if requested and requested != "egl":
        logger.warning("PYOPENGL_PLATFORM=%s overridden with egl (medverse uses EGL contexts)", requested)
    os.environ["PYOPENGL_PLATFORM"] = "egl"
    import OpenGL  # noqa: PLC0415 - must follow the environment variable
    import OpenGL._configflags  # noqa: PLC0415
    import OpenGL.EGL  # noqa: PLC0415 - its error module breaks if checking is off at import

    if os.environ.get("MEDVERSE_GL_DEBUG", "") in ("", "0"):
        # Read when each GL entry point is bound (at ``import OpenGL.GL``), so it must be set here.
        OpenGL.ERROR_CHECKING = OpenGL._configflags.ERROR_CHECKING = False


prepare_pyopengl()
