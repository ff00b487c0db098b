"""The OpenXR backend: a headset through pyopenxr. The only package in medverse that imports ``xr``.

Pure data and logic, with no ``xr`` calls and tested against the OpenXR 1.0 specification, sits
beside the code that drives a runtime with it. One job per module:

- ``backend.py``: :class:`OpenXRBackend` (what ``xrcore.backends.create("openxr")`` returns) and
  :class:`OpenXRConfig`: the instance, the head-mounted system, the session and its state machine,
  the runtime's events, loss and retry, the frame loop, teardown; :func:`probe`.
- ``lifecycle.py``: the session lifecycle as pure logic: :class:`SessionState`,
  :data:`SPEC_TRANSITIONS`, :class:`SessionStateMachine`.
- ``graphics.py``: the OpenGL graphics binding, over EGL (``XR_MNDX_egl_enable``) or Xlib/GLX.
- ``swapchains.py``: swapchain formats (:func:`choose_format`), the colour and depth swapchains and
  the projection layer submitted; environment blend modes (:func:`choose_blend_mode`).
- ``controllers.py``: actions and suggested bindings (:data:`ACTIONS`, :data:`BINDINGS`), the action
  set, controller input read each frame, haptics.
- ``hands.py``: hand tracking (``XR_EXT_hand_tracking``): trackers, joints, a bare hand's pointer
  (:func:`hand_aim_pose`).
- ``handles.py``: OpenXR handles across a loss (compared, destroyed quietly).

The tests drive it end to end, through the real loader, against a minimal headless runtime
(``tests/xrcore/test_openxr_runtime.c``), since no real runtime is packaged for CI machines.

The loader's own stderr diagnostics are silenced (``XR_LOADER_DEBUG=none``) unless ``XR_LOADER_DEBUG``
is set.
"""

from __future__ import annotations

import os

import xrcore.gl  # noqa: F401 - chooses PyOpenGL's EGL platform; ``xr`` imports OpenGL when loaded

os.environ.setdefault("XR_LOADER_DEBUG", "none")  # read by the loader on its first call; see docstring

import OpenGL.platform as _gl_platform  # already loaded, with EGL, by xrcore.gl

_EGL_PLATFORM = _gl_platform.PLATFORM
import xr  # noqa: E402, F401 - after xrcore.gl, or PyOpenGL would settle on GLX

# pyopenxr replaces PyOpenGL's platform object with a GLX one when it is imported on Linux, which
# breaks every EGL call made afterwards in this process (contexts, extension lookups). medverse's
# PyOpenGL platform is EGL, so the platform xrcore.gl chose is put back. GLX contexts (the Xlib
# binding) work under it too: see xrcore.gl.context.
_gl_platform.PLATFORM = _EGL_PLATFORM

from xrcore.backends.base import BackendError, BackendUnavailableError  # noqa: E402
from xrcore.backends.openxr.backend import (  # noqa: E402
    NO_RUNTIME,
    OpenXRBackend,
    OpenXRConfig,
    fov_from_xr,
    pose_from_xr,
    probe,
    seconds,
)
from xrcore.backends.openxr.controllers import (  # noqa: E402
    ACTION_NAMES,
    ACTIONS,
    BINDINGS,
    HANDS,
    INDEX_CONTROLLER,
    LEFT_HAND,
    RIGHT_HAND,
    SIMPLE_CONTROLLER,
    TOUCH_CONTROLLER,
    VIVE_CONTROLLER,
    ActionSpec,
    button_names,
)
from xrcore.backends.openxr.graphics import (  # noqa: E402
    choose_binding,
    egl_binding_parts,
    egl_graphics_binding,
    xlib_graphics_binding,
)
from xrcore.backends.openxr.hands import hand_aim_pose, joints_from_xr  # noqa: E402
from xrcore.backends.openxr.lifecycle import SPEC_TRANSITIONS, SessionAction, SessionState, SessionStateMachine  # noqa: E402
from xrcore.backends.openxr.swapchains import (  # noqa: E402
    BLEND_CHOICES,
    BLEND_MODE_VALUES,
    COLOR_FORMATS,
    DEPTH_FORMATS,
    GL_DEPTH24_STENCIL8,
    GL_DEPTH_COMPONENT16,
    GL_DEPTH_COMPONENT24,
    GL_DEPTH_COMPONENT32F,
    GL_RGBA8,
    GL_RGBA16F,
    GL_SRGB8_ALPHA8,
    choose_blend_mode,
    choose_format,
)

__all__ = [
    "ACTIONS",
    "ACTION_NAMES",
    "BINDINGS",
    "BLEND_CHOICES",
    "BLEND_MODE_VALUES",
    "COLOR_FORMATS",
    "DEPTH_FORMATS",
    "GL_DEPTH24_STENCIL8",
    "GL_DEPTH_COMPONENT16",
    "GL_DEPTH_COMPONENT24",
    "GL_DEPTH_COMPONENT32F",
    "GL_RGBA8",
    "GL_RGBA16F",
    "GL_SRGB8_ALPHA8",
    "HANDS",
    "INDEX_CONTROLLER",
    "LEFT_HAND",
    "NO_RUNTIME",
    "RIGHT_HAND",
    "SIMPLE_CONTROLLER",
    "SPEC_TRANSITIONS",
    "TOUCH_CONTROLLER",
    "VIVE_CONTROLLER",
    "ActionSpec",
    "BackendError",
    "BackendUnavailableError",
    "OpenXRBackend",
    "OpenXRConfig",
    "SessionAction",
    "SessionState",
    "SessionStateMachine",
    "button_names",
    "choose_binding",
    "choose_blend_mode",
    "choose_format",
    "egl_binding_parts",
    "egl_graphics_binding",
    "fov_from_xr",
    "hand_aim_pose",
    "joints_from_xr",
    "pose_from_xr",
    "probe",
    "seconds",
    "xlib_graphics_binding",
]
