"""GL context providers: the only module that creates OpenGL contexts.

``create_context("egl")`` makes an offscreen OpenGL core context (4.5, else 4.1, else 3.3) through EGL:

- on a machine with an NVIDIA (or other hardware) EGL device, the device platform
  (``EGL_EXT_platform_device``), which needs no X server;
- on Mesa (llvmpipe in CI), the surfaceless platform (``EGL_PLATFORM_SURFACELESS_MESA``);
- else the default display with a 1x1 pbuffer surface.

``create_context("glfw")`` opens a desktop window whose context GLFW creates through EGL too, so that
PyOpenGL (which loads one platform per process) works for both kinds.

``create_context("glx")`` makes a hidden 1x1 GLFW window on the X display (``DISPLAY``) whose context
is a GLX context: for OpenXR runtimes that bind OpenGL only through Xlib/GLX
(``XrGraphicsBindingOpenGLXlibKHR``; SteamVR on Linux). :attr:`GLContext.glx` gives the Display,
visual id, GLXFBConfig, GLXDrawable and GLXContext that binding needs. PyOpenGL keeps its EGL platform:
with GLVND (libOpenGL, libGLdispatch), the GL entry points it resolves through EGL dispatch to
whichever context is current, GLX or EGL; only its "is a context current?" test asks EGL, so the
first GLX context extends that test to GLX (:func:`_follow_glx_contexts`).

The renderer draws into its own framebuffers, so an offscreen context needs no surface at all.
"""

from __future__ import annotations

import ctypes
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from xrcore.gl import GLContextError, prepare_pyopengl

prepare_pyopengl()

from OpenGL import EGL, GL  # noqa: E402 - PyOpenGL's platform must be chosen first

logger = logging.getLogger(__name__)

#: ``EGL_PLATFORM_SURFACELESS_MESA`` (EGL_MESA_platform_surfaceless); PyOpenGL has no constant for it.
EGL_PLATFORM_SURFACELESS_MESA = 0x31DD
EGL_PLATFORM_DEVICE_EXT = 0x313F
EGL_CONTEXT_MAJOR_VERSION = 0x3098
EGL_CONTEXT_MINOR_VERSION = 0x30FB
EGL_CONTEXT_OPENGL_PROFILE_MASK = 0x30FD
EGL_CONTEXT_OPENGL_CORE_PROFILE_BIT = 0x00000001
#: The OpenGL versions asked for, best first (3.3 core is the floor the renderer's shaders need).
GL_VERSIONS: tuple[tuple[int, int], ...] = ((4, 5), (4, 1), (3, 3))

ContextKind = Literal["egl", "glfw", "glx"]

# GLX attributes (GL/glx.h)
GLX_SCREEN = 0x800C
GLX_VISUAL_ID = 0x800B
GLX_FBCONFIG_ID = 0x8013

# EGL hands out one display per platform and device: every context made on the surfaceless platform
# shares the same EGLDisplay, and eglTerminate on it kills all of them. Count the live contexts per
# display and terminate only when the last one closes.
_display_users: dict[int, int] = {}


def _display_key(display: Any) -> int:
    return int(ctypes.cast(display, ctypes.c_void_p).value or 0)


@dataclass(frozen=True)
class GLXHandles:
    """What ``XrGraphicsBindingOpenGLXlibKHR`` needs, as addresses (ints): ``display`` (``Display*``),
    ``visualid`` (the FBConfig's X visual), ``fbconfig`` (``GLXFBConfig``), ``drawable``
    (``GLXDrawable``, the hidden window's GLX window) and ``context`` (``GLXContext``)."""

    display: int
    visualid: int
    fbconfig: int
    drawable: int
    context: int


@dataclass
class GLContext:
    """A created OpenGL context; make it current before any GL call on this thread.

    ``extensions``: the GL extension names (``GL_...``) the context reports;
    ``info``: vendor, renderer, version, shading-language version, the EGL platform used.
    """

    kind: str
    width: int
    height: int
    extensions: set[str] = field(default_factory=set)
    info: dict[str, Any] = field(default_factory=dict)
    _egl_display: Any = None
    _egl_context: Any = None
    _egl_surface: Any = None
    _window: Any = None
    _glx: GLXHandles | None = None
    _closed: bool = False

    def make_current(self) -> None:
        """Bind this context to the calling thread."""
        if self._closed:
            raise GLContextError("GL context is closed")
        if self._window is not None:
            import glfw  # noqa: PLC0415 - desktop only

            if self._glx is not None and EGL.eglGetCurrentContext():
                # GLVND allows one current context per thread across EGL and GLX: release the EGL one.
                EGL.eglMakeCurrent(EGL.eglGetCurrentDisplay(), EGL.EGL_NO_SURFACE, EGL.EGL_NO_SURFACE,
                                   EGL.EGL_NO_CONTEXT)
            glfw.make_context_current(self._window)
            return
        if _followed_glx:
            import glfw  # noqa: PLC0415 - initialised once a GLX context was made

            if glfw.get_current_context():
                # a current GLX context would make eglMakeCurrent fail (GLFW takes NULL; its stub does not say so)
                glfw.make_context_current(None)  # type: ignore[arg-type]
        surface = self._egl_surface if self._egl_surface is not None else EGL.EGL_NO_SURFACE
        if not EGL.eglMakeCurrent(self._egl_display, surface, surface, self._egl_context):
            raise GLContextError(f"eglMakeCurrent failed (EGL error 0x{EGL.eglGetError():04x})")

    def swap(self) -> None:
        """Present the window's back buffer (GLFW windows only; offscreen contexts have none)."""
        if self._window is None:
            raise GLContextError("swap() needs a window; an offscreen EGL context has no back buffer")
        import glfw  # noqa: PLC0415 - desktop only

        glfw.swap_buffers(self._window)

    @property
    def glx(self) -> GLXHandles:
        """The X display, visual id, FBConfig, drawable and context of a ``"glx"`` context.

        Raises
        ------
        GLContextError
            This is not a GLX context.
        """
        if self._glx is None:
            raise GLContextError(f"a {self.kind!r} GL context has no GLX handles; create_context('glx') makes one")
        return self._glx

    @property
    def window(self) -> Any:
        """The GLFW window handle, or None for an offscreen context."""
        return self._window

    def should_close(self) -> bool:
        """True when the user asked the window to close (always False offscreen)."""
        if self._window is None:
            return False
        import glfw  # noqa: PLC0415 - desktop only

        glfw.poll_events()
        return bool(glfw.window_should_close(self._window))

    def close(self) -> None:
        """Destroy the context (and window); idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._window is not None:
            import glfw  # noqa: PLC0415 - desktop only

            glfw.destroy_window(self._window)
            self._window = None
            return
        EGL.eglMakeCurrent(self._egl_display, EGL.EGL_NO_SURFACE, EGL.EGL_NO_SURFACE, EGL.EGL_NO_CONTEXT)
        if self._egl_surface is not None:
            EGL.eglDestroySurface(self._egl_display, self._egl_surface)
        EGL.eglDestroyContext(self._egl_display, self._egl_context)
        key = _display_key(self._egl_display)
        _display_users[key] = _display_users.get(key, 1) - 1
        if _display_users[key] <= 0:
            del _display_users[key]
            EGL.eglTerminate(self._egl_display)
        logger.info("GL context closed (%s)", self.info.get("platform", self.kind))


def create_context(
    kind: ContextKind = "egl",
    *,
    width: int = 1280,
    height: int = 720,
    title: str = "medverse",
    visible: bool = True,
    platform: str | None = None,
) -> GLContext:
    """Create an OpenGL core context (3.3 or newer) and make it current.

    Parameters
    ----------
    kind
        ``"egl"`` for offscreen rendering, ``"glfw"`` for a desktop window of ``width`` x ``height``
        pixels titled ``title``, ``"glx"`` for a GLX context on the X display (a hidden window; the
        renderer draws into its own framebuffers of ``width`` x ``height``).
    platform
        EGL only: ``"device"``, ``"surfaceless"`` or ``"pbuffer"`` to force one; default tries them in
        that order (``MEDVERSE_EGL_PLATFORM`` overrides the default).

    Raises
    ------
    GLContextError
        No context could be made; the message lists what was tried.
    """
    if kind == "egl":
        ctx = _create_egl(width, height, platform or os.environ.get("MEDVERSE_EGL_PLATFORM") or None)
    elif kind == "glfw":
        ctx = _create_glfw(width, height, title, visible)
    elif kind == "glx":
        ctx = _create_glx(width, height, title)
    else:
        raise GLContextError(f"unknown GL context kind {kind!r}; use 'egl', 'glfw' or 'glx'")
    _describe(ctx)
    logger.info(
        "GL context: %s, %s, OpenGL %s (%s)",
        ctx.info.get("platform"),
        ctx.info["renderer"],
        ctx.info["version"],
        ctx.kind,
    )
    return ctx


def _describe(ctx: GLContext) -> None:
    count = int(GL.glGetIntegerv(GL.GL_NUM_EXTENSIONS))
    ctx.extensions = {GL.glGetStringi(GL.GL_EXTENSIONS, i).decode() for i in range(count)}
    ctx.info.update(
        vendor=GL.glGetString(GL.GL_VENDOR).decode(),
        renderer=GL.glGetString(GL.GL_RENDERER).decode(),
        version=GL.glGetString(GL.GL_VERSION).decode(),
        glsl=GL.glGetString(GL.GL_SHADING_LANGUAGE_VERSION).decode(),
        major=int(GL.glGetIntegerv(GL.GL_MAJOR_VERSION)),
        minor=int(GL.glGetIntegerv(GL.GL_MINOR_VERSION)),
        max_samples=int(GL.glGetIntegerv(GL.GL_MAX_SAMPLES)),
        max_clip_distances=int(GL.glGetIntegerv(GL.GL_MAX_CLIP_DISTANCES)),
    )


def _client_extensions() -> set[str]:
    raw = EGL.eglQueryString(EGL.EGL_NO_DISPLAY, EGL.EGL_EXTENSIONS)
    return set(raw.decode().split()) if raw else set()


def _device_displays(client_ext: set[str]) -> list[tuple[str, Any]]:
    """EGL displays of hardware devices (software devices such as llvmpipe's are left out)."""
    if "EGL_EXT_platform_device" not in client_ext or not (
        client_ext & {"EGL_EXT_device_enumeration", "EGL_EXT_device_base"}
    ):
        return []
    from OpenGL.EGL.EXT.device_base import eglQueryDevicesEXT, eglQueryDeviceStringEXT  # noqa: PLC0415
    from OpenGL.EGL.EXT.platform_base import eglGetPlatformDisplayEXT  # noqa: PLC0415

    count = ctypes.c_int32(0)
    if not eglQueryDevicesEXT(0, None, ctypes.pointer(count)) or count.value == 0:
        return []
    devices = (EGL.EGLDeviceEXT * count.value)()
    eglQueryDevicesEXT(count.value, devices, ctypes.pointer(count))
    found = []
    for i in range(count.value):
        ext_raw = eglQueryDeviceStringEXT(devices[i], EGL.EGL_EXTENSIONS)
        ext = ext_raw.decode() if ext_raw else ""
        if "EGL_MESA_device_software" in ext:
            continue  # llvmpipe: the surfaceless platform gives the same driver more simply
        display = eglGetPlatformDisplayEXT(EGL_PLATFORM_DEVICE_EXT, devices[i], None)
        if display:
            found.append((f"device {i} ({ext.split()[0] if ext else 'no extensions'})", display))
    return found


def _displays(platform: str | None) -> list[tuple[str, Any]]:
    client_ext = _client_extensions()
    candidates: list[tuple[str, Any]] = []
    if platform in (None, "device"):
        candidates += _device_displays(client_ext)
    if platform in (None, "surfaceless") and "EGL_MESA_platform_surfaceless" in client_ext:
        from OpenGL.EGL.EXT.platform_base import eglGetPlatformDisplayEXT  # noqa: PLC0415

        display = eglGetPlatformDisplayEXT(EGL_PLATFORM_SURFACELESS_MESA, EGL.EGL_DEFAULT_DISPLAY, None)
        if display:
            candidates.append(("surfaceless", display))
    if platform in (None, "pbuffer"):
        display = EGL.eglGetDisplay(EGL.EGL_DEFAULT_DISPLAY)
        if display:
            candidates.append(("pbuffer", display))
    if platform not in (None, "device", "surfaceless", "pbuffer"):
        raise GLContextError(f"unknown EGL platform {platform!r}; use device, surfaceless or pbuffer")
    return candidates


def _create_egl(width: int, height: int, platform: str | None) -> GLContext:
    tried: list[str] = []
    for name, display in _displays(platform):
        major, minor = EGL.EGLint(), EGL.EGLint()
        try:
            ok = EGL.eglInitialize(display, ctypes.pointer(major), ctypes.pointer(minor))
        except EGL.EGLError as exc:  # PyOpenGL raises on EGL_FALSE for some entry points
            tried.append(f"{name}: eglInitialize {exc}")
            continue
        if not ok:
            tried.append(f"{name}: eglInitialize failed")
            continue
        try:
            ctx = _egl_context_on(display, name, width, height)
        except GLContextError as exc:
            tried.append(f"{name}: {exc}")
            if not _display_users.get(_display_key(display)):
                EGL.eglTerminate(display)
            continue
        key = _display_key(display)
        _display_users[key] = _display_users.get(key, 0) + 1
        ctx.info["egl_version"] = f"{major.value}.{minor.value}"
        return ctx
    raise GLContextError(
        "no EGL OpenGL context: tried "
        + ("; ".join(tried) or "no EGL display at all")
        + " (install libegl1 and libegl-mesa0, or an NVIDIA driver)"
    )


def _egl_context_on(display: Any, name: str, width: int, height: int) -> GLContext:
    surfaceless_ok = "EGL_KHR_surfaceless_context" in (
        EGL.eglQueryString(display, EGL.EGL_EXTENSIONS) or b""
    ).decode().split()
    config_attribs = [
        EGL.EGL_RENDERABLE_TYPE, EGL.EGL_OPENGL_BIT,
        EGL.EGL_RED_SIZE, 8, EGL.EGL_GREEN_SIZE, 8, EGL.EGL_BLUE_SIZE, 8, EGL.EGL_ALPHA_SIZE, 8,
        # The default surface type is EGL_WINDOW_BIT, which offscreen displays have no configs for.
        EGL.EGL_SURFACE_TYPE, EGL.EGL_PBUFFER_BIT, EGL.EGL_NONE,
    ]  # fmt: skip
    config = EGL.EGLConfig()
    count = EGL.EGLint()
    attribs = (EGL.EGLint * len(config_attribs))(*config_attribs)
    if not EGL.eglChooseConfig(display, attribs, ctypes.pointer(config), 1, ctypes.pointer(count)) or (
        count.value == 0
    ):
        raise GLContextError("no RGBA8 OpenGL EGL config")
    if not EGL.eglBindAPI(EGL.EGL_OPENGL_API):
        raise GLContextError("eglBindAPI(EGL_OPENGL_API) failed")
    context = None
    for gl_major, gl_minor in GL_VERSIONS:
        ctx_attribs = [
            EGL_CONTEXT_MAJOR_VERSION, gl_major, EGL_CONTEXT_MINOR_VERSION, gl_minor,
            EGL_CONTEXT_OPENGL_PROFILE_MASK, EGL_CONTEXT_OPENGL_CORE_PROFILE_BIT, EGL.EGL_NONE,
        ]  # fmt: skip
        try:
            context = EGL.eglCreateContext(
                display, config, EGL.EGL_NO_CONTEXT, (EGL.EGLint * len(ctx_attribs))(*ctx_attribs)
            )
        except EGL.EGLError:
            context = None
        if context:
            break
    if not context:
        raise GLContextError("eglCreateContext failed for OpenGL 4.5, 4.1 and 3.3 core")
    surface = None
    if not surfaceless_ok:
        pb = (EGL.EGLint * 5)(EGL.EGL_WIDTH, 1, EGL.EGL_HEIGHT, 1, EGL.EGL_NONE)
        surface = EGL.eglCreatePbufferSurface(display, config, pb)
        if not surface:
            EGL.eglDestroyContext(display, context)
            raise GLContextError("eglCreatePbufferSurface failed")
    ctx = GLContext(
        kind="egl",
        width=width,
        height=height,
        info={"platform": name},
        _egl_display=display,
        _egl_context=context,
        _egl_surface=surface,
    )
    ctx.make_current()
    return ctx


def _create_glfw(width: int, height: int, title: str, visible: bool) -> GLContext:
    import glfw  # noqa: PLC0415 - desktop only; offscreen use never needs a windowing library

    if not glfw.init():
        raise GLContextError("glfw.init() failed: no display (set DISPLAY, or use the egl context)")
    glfw.default_window_hints()
    # PyOpenGL resolves GL entry points through EGL in this process, so the window's context must
    # be an EGL context as well (GLFW makes GLX contexts by default on X11).
    glfw.window_hint(glfw.CONTEXT_CREATION_API, glfw.EGL_CONTEXT_API)
    glfw.window_hint(glfw.CLIENT_API, glfw.OPENGL_API)
    glfw.window_hint(glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)
    glfw.window_hint(glfw.OPENGL_FORWARD_COMPAT, True)
    glfw.window_hint(glfw.VISIBLE, bool(visible))
    glfw.window_hint(glfw.SRGB_CAPABLE, True)
    window = None
    for gl_major, gl_minor in GL_VERSIONS:
        glfw.window_hint(glfw.CONTEXT_VERSION_MAJOR, gl_major)
        glfw.window_hint(glfw.CONTEXT_VERSION_MINOR, gl_minor)
        window = glfw.create_window(width, height, title, None, None)
        if window:
            break
    if not window:
        raise GLContextError("glfw could not create an OpenGL 3.3+ core window through EGL")
    glfw.make_context_current(window)
    glfw.swap_interval(1)
    return GLContext(kind="glfw", width=width, height=height, info={"platform": "glfw-egl"}, _window=window)


def _glx_library() -> ctypes.CDLL:
    """libGLX (GLVND), with the few entry points used here typed."""
    try:
        lib = ctypes.CDLL("libGLX.so.0")
    except OSError as exc:
        raise GLContextError(f"libGLX.so.0 not found ({exc}); install libglx0 and libglx-mesa0") from exc
    lib.glXGetCurrentContext.restype = ctypes.c_void_p
    lib.glXGetCurrentContext.argtypes = []
    lib.glXQueryContext.restype = ctypes.c_int
    lib.glXQueryContext.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    lib.glXChooseFBConfig.restype = ctypes.POINTER(ctypes.c_void_p)
    lib.glXChooseFBConfig.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                                      ctypes.POINTER(ctypes.c_int)]
    lib.glXGetFBConfigAttrib.restype = ctypes.c_int
    lib.glXGetFBConfigAttrib.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    return lib


_followed_glx = False


def _follow_glx_contexts(glx: ctypes.CDLL) -> None:
    """Make PyOpenGL's EGL platform see a current GLX context as current; idempotent.

    PyOpenGL resolves GL entry points lazily and only while its platform reports a current context
    (``eglGetCurrentContext`` for EGL). Through GLVND the pointers eglGetProcAddress returns dispatch
    to the current context of either window system, so the test is widened to EGL-or-GLX.
    """
    global _followed_glx
    if _followed_glx:
        return
    import OpenGL.platform as gl_platform  # noqa: PLC0415 - loaded by xrcore.gl already

    egl_current = gl_platform.PLATFORM.GetCurrentContext

    def current_context() -> int:
        return egl_current() or glx.glXGetCurrentContext() or 0

    for target in (gl_platform.PLATFORM, gl_platform):
        target.GetCurrentContext = current_context
        target.CurrentContextIsValid = current_context
    _followed_glx = True


def _create_glx(width: int, height: int, title: str) -> GLContext:
    import glfw  # noqa: PLC0415 - GLX contexts come with an X window, which GLFW makes

    if not os.environ.get("DISPLAY"):
        raise GLContextError("a GLX context needs an X display and DISPLAY is not set")
    if hasattr(glfw, "PLATFORM_X11"):
        glfw.init_hint(glfw.PLATFORM, glfw.PLATFORM_X11)  # GLX is X11 only (ignored once GLFW is up)
    if not glfw.init():
        raise GLContextError(f"glfw.init() failed on DISPLAY={os.environ.get('DISPLAY')}")
    glx = _glx_library()
    glfw.default_window_hints()
    glfw.window_hint(glfw.CONTEXT_CREATION_API, glfw.NATIVE_CONTEXT_API)  # GLX on X11
    glfw.window_hint(glfw.CLIENT_API, glfw.OPENGL_API)
    glfw.window_hint(glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)
    glfw.window_hint(glfw.OPENGL_FORWARD_COMPAT, True)
    glfw.window_hint(glfw.VISIBLE, False)
    window = None
    for gl_major, gl_minor in GL_VERSIONS:
        glfw.window_hint(glfw.CONTEXT_VERSION_MAJOR, gl_major)
        glfw.window_hint(glfw.CONTEXT_VERSION_MINOR, gl_minor)
        window = glfw.create_window(1, 1, title, None, None)
        if window:
            break
    if not window:
        raise GLContextError("glfw could not create an OpenGL 3.3+ core GLX context (is libglx-mesa0 installed?)")
    try:
        display = glfw.get_x11_display()  # type: ignore[no-untyped-call]  # pyGLFW leaves this one untyped
        context = glfw.get_glx_context(window)
        drawable = glfw.get_glx_window(window)
        if not (display and context and drawable):
            raise GLContextError("the window's context is not a GLX context (GLFW on Wayland?)")
        display_p = ctypes.c_void_p(display)
        value = ctypes.c_int(0)
        if glx.glXQueryContext(display_p, ctypes.c_void_p(context), GLX_FBCONFIG_ID, ctypes.byref(value)) != 0:
            raise GLContextError("glXQueryContext(GLX_FBCONFIG_ID) failed")
        config_id = value.value
        if glx.glXQueryContext(display_p, ctypes.c_void_p(context), GLX_SCREEN, ctypes.byref(value)) != 0:
            raise GLContextError("glXQueryContext(GLX_SCREEN) failed")
        attribs = (ctypes.c_int * 3)(GLX_FBCONFIG_ID, config_id, 0)
        count = ctypes.c_int(0)
        configs = glx.glXChooseFBConfig(display_p, value.value, attribs, ctypes.byref(count))
        if not configs or count.value < 1:
            raise GLContextError(f"no GLXFBConfig with id 0x{config_id:x}")
        fbconfig = int(configs[0])  # owned by the display: the array alone is freed, not the config
        ctypes.CDLL("libX11.so.6").XFree(configs)
        if glx.glXGetFBConfigAttrib(display_p, ctypes.c_void_p(fbconfig), GLX_VISUAL_ID, ctypes.byref(value)) != 0:
            raise GLContextError("glXGetFBConfigAttrib(GLX_VISUAL_ID) failed")
        handles = GLXHandles(int(display), int(value.value), fbconfig, int(drawable), int(context))
    except GLContextError:
        glfw.destroy_window(window)
        raise
    _follow_glx_contexts(glx)
    glfw.make_context_current(window)
    return GLContext(kind="glx", width=width, height=height, info={"platform": "glx"}, _window=window, _glx=handles)
