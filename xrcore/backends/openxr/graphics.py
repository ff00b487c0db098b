"""The OpenGL graphics binding an OpenXR session is created with (``XR_KHR_opengl_enable``).

Over EGL (``XrGraphicsBindingEGLMNDX``) where the runtime offers ``XR_MNDX_egl_enable`` (Monado), with
an offscreen EGL context; otherwise over Xlib/GLX (``XrGraphicsBindingOpenGLXlibKHR``: SteamVR on Linux
and most other runtimes), with a GLX context on the X display ``DISPLAY`` names. Both contexts are made
by :mod:`xrcore.gl.context`. A runtime without ``XR_MNDX_egl_enable`` on a machine without an X display
is refused with one line saying so (:func:`choose_binding`).
"""

from __future__ import annotations

import ctypes
from typing import Any

import xr

import xrcore.gl
from xrcore.backends.base import BackendError, BackendUnavailableError


def egl_binding_parts(context: Any) -> tuple[Any, Any, Any]:
    """``(EGLDisplay, EGLConfig, EGLContext)`` of a medverse GL context, for ``XrGraphicsBindingEGLMNDX``.

    Works for offscreen EGL contexts and for GLFW windows (whose contexts GLFW makes through EGL).
    The config is looked up by the context's ``EGL_CONFIG_ID``.

    Raises
    ------
    BackendError
        The context is not an EGL context or its config cannot be found.
    """
    from OpenGL import EGL  # noqa: PLC0415 - PyOpenGL's platform must be set by xrcore.gl first

    if getattr(context, "window", None) is not None:
        import glfw  # noqa: PLC0415 - desktop only

        # pyGLFW types most of its API but not get_egl_display()
        display, egl_context = glfw.get_egl_display(), glfw.get_egl_context(context.window)  # type: ignore[no-untyped-call]
    else:
        display, egl_context = getattr(context, "_egl_display", None), getattr(context, "_egl_context", None)
    if not display or not egl_context:
        raise BackendError(f"the OpenXR backend needs an EGL GL context, got {type(context).__name__}")
    config_id = EGL.EGLint()
    if not EGL.eglQueryContext(display, egl_context, EGL.EGL_CONFIG_ID, ctypes.pointer(config_id)):
        raise BackendError(f"eglQueryContext(EGL_CONFIG_ID) failed (EGL error 0x{EGL.eglGetError():04x})")
    attribs = (EGL.EGLint * 3)(EGL.EGL_CONFIG_ID, config_id.value, EGL.EGL_NONE)
    config, count = EGL.EGLConfig(), EGL.EGLint()
    if not EGL.eglChooseConfig(display, attribs, ctypes.pointer(config), 1, ctypes.pointer(count)) or not count.value:
        raise BackendError(f"no EGL config with id {config_id.value} for the GL context")
    return display, config, egl_context


def egl_graphics_binding(context: Any) -> Any:
    """An ``XrGraphicsBindingEGLMNDX`` for ``context`` (see :func:`egl_binding_parts`)."""
    from OpenGL import EGL  # noqa: PLC0415 - loaded only when used

    display, config, egl_context = egl_binding_parts(context)
    binding = xr.GraphicsBindingEGLMNDX()
    binding.display = display
    binding.config = config
    binding.context = egl_context
    binding.get_proc_address = ctypes.cast(EGL.eglGetProcAddress.load(), xr.PFN_xrEglGetProcAddressMNDX)
    return binding


def xlib_graphics_binding(context: Any) -> Any:
    """An ``XrGraphicsBindingOpenGLXlibKHR`` for a GLX context made by ``create_context("glx")``.

    Raises
    ------
    BackendError
        The context is not a GLX context.
    """
    try:
        handles = context.glx
    except (AttributeError, xrcore.gl.GLContextError) as exc:
        raise BackendError(f"the runtime binds OpenGL through Xlib/GLX and needs a GLX context, got "
                           f"a {getattr(context, 'kind', type(context).__name__)!r} one") from exc
    types = dict(xr.GraphicsBindingOpenGLXlibKHR._fields_)
    binding = xr.GraphicsBindingOpenGLXlibKHR()
    binding.x_display = ctypes.cast(ctypes.c_void_p(handles.display), types["x_display"])
    binding.visualid = handles.visualid
    binding.glx_fbconfig = ctypes.cast(ctypes.c_void_p(handles.fbconfig), types["glx_fbconfig"])
    binding.glx_drawable = handles.drawable
    binding.glx_context = ctypes.cast(ctypes.c_void_p(handles.context), types["glx_context"])
    return binding


def choose_binding(offered: set[str], display: str | None) -> str:
    """``"egl"`` or ``"xlib"``: the OpenGL graphics binding to use with a runtime offering ``offered``.

    EGL first (no window system needed); Xlib/GLX when the runtime lacks ``XR_MNDX_egl_enable`` and
    an X display (``display``, the value of ``DISPLAY``) is there.

    Raises
    ------
    BackendUnavailableError
        No OpenGL binding is possible; one line saying why.
    """
    if xr.KHR_OPENGL_ENABLE_EXTENSION_NAME not in offered:
        raise BackendUnavailableError(f"the OpenXR runtime lacks {xr.KHR_OPENGL_ENABLE_EXTENSION_NAME}: "
                                      "medverse renders with OpenGL")
    if xr.MNDX_EGL_ENABLE_EXTENSION_NAME in offered:
        return "egl"
    if display:
        return "xlib"
    raise BackendUnavailableError(
        f"the OpenXR runtime lacks {xr.MNDX_EGL_ENABLE_EXTENSION_NAME} and DISPLAY is not set: without EGL "
        "it binds OpenGL only through Xlib/GLX, which needs an X display (set DISPLAY, or use Monado)")
