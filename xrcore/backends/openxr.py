"""The OpenXR backend: a headset through pyopenxr. The only module in medverse that imports ``xr``.

Two halves:

- Pure data and logic, no ``xr`` calls, tested against the OpenXR 1.0 specification:
  :class:`SessionState` (``XrSessionState``), :data:`SPEC_TRANSITIONS` (the session lifecycle the
  specification draws), :class:`SessionStateMachine` (what the application must do on each state
  change, loss or exit request), :data:`ACTIONS` and :data:`BINDINGS` (actions and the suggested
  bindings for the Khronos simple, Oculus Touch, Valve Index and HTC Vive controllers), and
  :func:`choose_format` (swapchain formats).
- :class:`OpenXRBackend`, which drives a runtime with them: an instance with an OpenGL graphics
  binding (``XR_KHR_opengl_enable``), the head-mounted system and its primary stereo view
  configuration, the session and its state machine, one 2-layer sRGB colour swapchain (and a depth
  swapchain where ``XR_KHR_composition_layer_depth`` is offered), and the frame loop
  ``xrWaitFrame`` -> ``xrBeginFrame`` -> ``xrLocateViews`` / ``xrSyncActions`` -> render ->
  ``xrEndFrame`` at the predicted display time, submitted with the environment blend mode chosen by
  :func:`choose_blend_mode`. Where the runtime offers ``XR_EXT_hand_tracking`` and the system tracks
  hands, each hand's 26 joints are located every frame into :attr:`~xrcore.types.HandInput.joints`;
  a bare hand (no controller pose) gets its pointer and grip from its skeleton (:func:`hand_aim_pose`).

The graphics binding: over EGL (``XrGraphicsBindingEGLMNDX``) where the runtime offers
``XR_MNDX_egl_enable`` (Monado), with an offscreen EGL context; otherwise over Xlib/GLX
(``XrGraphicsBindingOpenGLXlibKHR``: SteamVR on Linux and most other runtimes), with a GLX context on
the X display ``DISPLAY`` names. Both contexts are made by :mod:`xrcore.gl.context`. A runtime without
``XR_MNDX_egl_enable`` on a machine without an X display is refused with one line saying so.

The tests drive it end to end, through the real loader, against a minimal headless runtime
(``tests/xrcore/test_openxr_runtime.c``), since no real runtime is packaged for CI machines.

Without a runtime (no ``active_runtime.json``, no ``XR_RUNTIME_JSON``) :meth:`OpenXRBackend.start`
raises :class:`~xrcore.backends.base.BackendUnavailableError` with one line saying so; the factory's
``auto`` then falls back to the simulator. The loader's own stderr diagnostics are silenced
(``XR_LOADER_DEBUG=none``) unless ``XR_LOADER_DEBUG`` is set.
"""

from __future__ import annotations

import ctypes
import enum
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import xrcore.gl  # chooses PyOpenGL's EGL platform; ``xr`` imports OpenGL when loaded

os.environ.setdefault("XR_LOADER_DEBUG", "none")  # read by the loader on its first call; see docstring

import OpenGL.platform as _gl_platform  # already loaded, with EGL, by xrcore.gl

_EGL_PLATFORM = _gl_platform.PLATFORM
import xr  # noqa: E402 - after xrcore.gl, or PyOpenGL would settle on GLX

# pyopenxr replaces PyOpenGL's platform object with a GLX one when it is imported on Linux, which
# breaks every EGL call made afterwards in this process (contexts, extension lookups). medverse's
# PyOpenGL platform is EGL, so the platform xrcore.gl chose is put back. GLX contexts (the Xlib
# binding) work under it too: see xrcore.gl.context.
_gl_platform.PLATFORM = _EGL_PLATFORM

from xrcore.backends.base import Backend, BackendError, BackendInfo, BackendUnavailableError  # noqa: E402
from xrcore.motion import look_rotation  # noqa: E402
from xrcore.types import (  # noqa: E402
    BLEND_MODES,
    HAND_JOINT_COUNT,
    JOINT,
    Fov,
    FrameState,
    HandInput,
    HandJoints,
    InputState,
    Pose,
    View,
)

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# Session lifecycle (OpenXR 1.0, section 9.3 "Session Lifecycle"; XrSessionState)
# --------------------------------------------------------------------------------------------------


class SessionState(enum.IntEnum):
    """``XrSessionState``, with the values the specification gives them."""

    UNKNOWN = 0
    IDLE = 1
    READY = 2
    SYNCHRONIZED = 3
    VISIBLE = 4
    FOCUSED = 5
    STOPPING = 6
    LOSS_PENDING = 7
    EXITING = 8


_S = SessionState
#: The transitions the session lifecycle allows a runtime to report. A new session starts (UNKNOWN)
#: in IDLE; READY asks the application to begin; once begun the runtime moves through SYNCHRONIZED,
#: VISIBLE and FOCUSED and back, and leaves through STOPPING (from SYNCHRONIZED) to IDLE once the
#: application ended the session; EXITING follows IDLE when the session should not restart; any
#: state may be followed by LOSS_PENDING. EXITING and LOSS_PENDING are final: the session is destroyed.
SPEC_TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    _S.UNKNOWN: frozenset({_S.IDLE, _S.LOSS_PENDING}),
    _S.IDLE: frozenset({_S.READY, _S.EXITING, _S.LOSS_PENDING}),
    _S.READY: frozenset({_S.SYNCHRONIZED, _S.LOSS_PENDING}),
    _S.SYNCHRONIZED: frozenset({_S.VISIBLE, _S.STOPPING, _S.LOSS_PENDING}),
    _S.VISIBLE: frozenset({_S.SYNCHRONIZED, _S.FOCUSED, _S.LOSS_PENDING}),
    _S.FOCUSED: frozenset({_S.VISIBLE, _S.LOSS_PENDING}),
    _S.STOPPING: frozenset({_S.IDLE, _S.LOSS_PENDING}),
    _S.LOSS_PENDING: frozenset(),
    _S.EXITING: frozenset(),
}


class SessionAction(enum.Enum):
    """What the application must do in answer to a lifecycle event, in the order given."""

    BEGIN_SESSION = "xrBeginSession"
    END_SESSION = "xrEndSession"
    REQUEST_EXIT = "xrRequestExitSession"
    DESTROY_SESSION = "xrDestroySession"
    RECREATE_SESSION = "create a new session when the system is back"
    DESTROY_INSTANCE = "xrDestroyInstance"
    RECREATE_INSTANCE = "create a new instance when the runtime is back"
    EXIT = "stop producing frames"


class SessionStateMachine:
    """The application side of the OpenXR session lifecycle, as pure logic.

    Feed it what the runtime reports (:meth:`on_state_changed`, :meth:`on_instance_loss_pending`)
    and what the user wants (:meth:`request_exit`); each returns the :class:`SessionAction` list to
    carry out, in order. Every state change is logged once, here, as ``old -> new``. A transition the
    lifecycle does not allow is logged as a warning and counted in :attr:`unexpected`, then followed
    (the runtime owns the state); a value that is not an ``XrSessionState`` is counted and ignored.
    """

    def __init__(self) -> None:
        self.state = SessionState.UNKNOWN
        #: True from xrBeginSession until xrEndSession (or the session's loss): frames must be run.
        self.running = False
        #: The user asked to leave; the session is not recreated after this.
        self.exit_requested = False
        #: Transitions outside :data:`SPEC_TRANSITIONS` and unknown state values seen.
        self.unexpected = 0
        #: True once the machine has told the caller to stop (EXIT returned).
        self.exited = False

    # -- what the frame loop may do now ---------------------------------------------------------------

    @property
    def frame_loop(self) -> bool:
        """xrWaitFrame / xrBeginFrame / xrEndFrame must be called (the session is running)."""
        return self.running

    @property
    def should_render(self) -> bool:
        """The user can see this application's frames (VISIBLE or FOCUSED)."""
        return self.running and self.state in (SessionState.VISIBLE, SessionState.FOCUSED)

    @property
    def input_focused(self) -> bool:
        """Controller input reaches this application (FOCUSED); otherwise actions read as inactive."""
        return self.running and self.state is SessionState.FOCUSED

    # -- events -----------------------------------------------------------------------------------------

    def session_created(self) -> None:
        """A new session exists (initially or after a loss): it starts over from UNKNOWN."""
        self.state = SessionState.UNKNOWN
        self.running = False

    def on_state_changed(self, value: int) -> list[SessionAction]:
        """The runtime reported ``XrEventDataSessionStateChanged`` with state ``value``."""
        try:
            new = SessionState(int(value))
        except ValueError:
            self.unexpected += 1
            logger.warning("runtime reported unknown session state %r; ignored", value)
            return []
        old = self.state
        if new is old:
            return []
        if new not in SPEC_TRANSITIONS[old]:
            self.unexpected += 1
            logger.warning("session state %s -> %s is not a transition OpenXR allows; following the runtime",
                           old.name, new.name)
        else:
            logger.info("session state %s -> %s", old.name, new.name)
        self.state = new
        if new is SessionState.READY:
            if self.exit_requested:
                return self._exit()
            self.running = True
            return [SessionAction.BEGIN_SESSION]
        if new is SessionState.STOPPING:
            was_running, self.running = self.running, False
            return [SessionAction.END_SESSION] if was_running else []
        if new is SessionState.EXITING:
            return self._exit()
        if new is SessionState.LOSS_PENDING:
            # The session is already lost to the runtime: no xrEndSession, only its destruction.
            self.running = False
            if self.exit_requested:
                return self._exit()
            return [SessionAction.DESTROY_SESSION, SessionAction.RECREATE_SESSION]
        return []

    def on_instance_loss_pending(self) -> list[SessionAction]:
        """The runtime reported ``XrEventDataInstanceLossPending``: everything goes, then maybe again."""
        logger.info("session state %s -> instance lost", self.state.name)
        self.running = False
        self.state = SessionState.UNKNOWN
        if self.exit_requested:
            self.exited = True
            return [SessionAction.DESTROY_SESSION, SessionAction.DESTROY_INSTANCE, SessionAction.EXIT]
        return [SessionAction.DESTROY_SESSION, SessionAction.DESTROY_INSTANCE, SessionAction.RECREATE_INSTANCE]

    def request_exit(self) -> list[SessionAction]:
        """The user wants to leave: a running session is asked to stop; any other one goes now."""
        if self.exited:
            return []
        self.exit_requested = True
        if self.running:
            return [SessionAction.REQUEST_EXIT]
        return self._exit()

    def _exit(self) -> list[SessionAction]:
        self.running = False
        self.exited = True
        return [SessionAction.DESTROY_SESSION, SessionAction.EXIT]


# --------------------------------------------------------------------------------------------------
# Actions and suggested bindings (OpenXR 1.0, section 6.4 "Interaction Profiles")
# --------------------------------------------------------------------------------------------------

LEFT_HAND = "/user/hand/left"
RIGHT_HAND = "/user/hand/right"
HANDS: tuple[str, str] = (LEFT_HAND, RIGHT_HAND)

SIMPLE_CONTROLLER = "/interaction_profiles/khr/simple_controller"
TOUCH_CONTROLLER = "/interaction_profiles/oculus/touch_controller"
INDEX_CONTROLLER = "/interaction_profiles/valve/index_controller"
VIVE_CONTROLLER = "/interaction_profiles/htc/vive_controller"


@dataclass(frozen=True)
class ActionSpec:
    """One action: ``name`` (the OpenXR action name), ``label`` (shown by the runtime's binding UI)
    and ``kind``: ``"pose"``, ``"float"``, ``"vector2f"``, ``"boolean"`` or ``"vibration"``."""

    name: str
    label: str
    kind: str


#: The actions medverse reads, each with subaction paths for both hands.
ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("grip_pose", "Hand grip pose", "pose"),
    ActionSpec("aim_pose", "Pointer aim pose", "pose"),
    ActionSpec("trigger", "Trigger (select, point)", "float"),
    ActionSpec("squeeze", "Squeeze (grab)", "float"),
    ActionSpec("thumbstick", "Thumbstick (move, scale)", "vector2f"),
    ActionSpec("primary", "Primary button", "boolean"),
    ActionSpec("secondary", "Secondary button", "boolean"),
    ActionSpec("menu", "Menu", "boolean"),
    ActionSpec("thumbstick_click", "Thumbstick click", "boolean"),
    ActionSpec("haptic", "Haptic pulse", "vibration"),
)
ACTION_NAMES: tuple[str, ...] = tuple(a.name for a in ACTIONS)


def _both(action: str, component: str) -> tuple[tuple[str, str], ...]:
    return tuple((action, f"{hand}/{component}") for hand in HANDS)


_POSES = _both("grip_pose", "input/grip/pose") + _both("aim_pose", "input/aim/pose")
_HAPTIC = _both("haptic", "output/haptic")

#: Suggested bindings per interaction profile: ``(action name, binding path)`` pairs. Where a
#: controller lacks a component the nearest one stands in (the simple controller's select click for
#: the trigger, the Vive trackpad for the thumbstick, the Vive grip button for squeeze); OpenXR
#: converts a boolean to 0/1 for a float action. System buttons are left to the runtime.
BINDINGS: dict[str, tuple[tuple[str, str], ...]] = {
    SIMPLE_CONTROLLER: _POSES + _HAPTIC
    + _both("trigger", "input/select/click")
    + _both("menu", "input/menu/click"),
    TOUCH_CONTROLLER: _POSES + _HAPTIC
    + _both("trigger", "input/trigger/value")
    + _both("squeeze", "input/squeeze/value")
    + _both("thumbstick", "input/thumbstick")
    + _both("thumbstick_click", "input/thumbstick/click")
    + (("primary", f"{LEFT_HAND}/input/x/click"), ("primary", f"{RIGHT_HAND}/input/a/click"),
       ("secondary", f"{LEFT_HAND}/input/y/click"), ("secondary", f"{RIGHT_HAND}/input/b/click"),
       ("menu", f"{LEFT_HAND}/input/menu/click")),
    INDEX_CONTROLLER: _POSES + _HAPTIC
    + _both("trigger", "input/trigger/value")
    + _both("squeeze", "input/squeeze/value")
    + _both("thumbstick", "input/thumbstick")
    + _both("thumbstick_click", "input/thumbstick/click")
    + _both("primary", "input/a/click")
    + _both("secondary", "input/b/click"),
    VIVE_CONTROLLER: _POSES + _HAPTIC
    + _both("trigger", "input/trigger/value")
    + _both("squeeze", "input/squeeze/click")
    + _both("thumbstick", "input/trackpad")
    + _both("thumbstick_click", "input/trackpad/click")
    + _both("menu", "input/menu/click"),
}

_BINDING_RE = re.compile(r"^(/user/hand/(left|right))/(input|output)/([a-z0-9_-]+)(/[a-z0-9_-]+)?$")


def button_names(profile: str, hand: int) -> dict[str, str]:
    """Boolean action -> button name (as in :attr:`HandInput.buttons`) for ``hand`` (0 left, 1 right).

    The name is the bound component's identifier: ``x`` for ``/user/hand/left/input/x/click``,
    ``trackpad`` for a Vive trackpad click standing in for the thumbstick's. Unknown profiles give
    an empty mapping.
    """
    boolean = {a.name for a in ACTIONS if a.kind == "boolean"}
    names: dict[str, str] = {}
    for action, path in BINDINGS.get(profile, ()):
        m = _BINDING_RE.match(path)
        if action in boolean and m and m.group(1) == HANDS[hand]:
            names[action] = m.group(4)
    return names


# --------------------------------------------------------------------------------------------------
# Swapchain formats and conversions
# --------------------------------------------------------------------------------------------------

GL_SRGB8_ALPHA8 = 0x8C43
GL_RGBA8 = 0x8058
GL_RGBA16F = 0x881A
GL_DEPTH_COMPONENT32F = 0x8CAC
GL_DEPTH24_STENCIL8 = 0x88F0
GL_DEPTH_COMPONENT24 = 0x81A6
GL_DEPTH_COMPONENT16 = 0x81A5
#: Colour formats, best first: the renderer writes sRGB-encoded colour, which the compositor must
#: know (an sRGB format), else the image looks washed out.
COLOR_FORMATS: tuple[int, ...] = (GL_SRGB8_ALPHA8, GL_RGBA8)
#: Depth formats, best first: the renderer's own depth buffer is D24S8, and a depth blit into the
#: swapchain image needs the same format on both sides.
DEPTH_FORMATS: tuple[int, ...] = (GL_DEPTH24_STENCIL8, GL_DEPTH_COMPONENT32F, GL_DEPTH_COMPONENT24, GL_DEPTH_COMPONENT16)


def choose_format(offered: Sequence[int], preferred: Sequence[int]) -> int | None:
    """The first of ``preferred`` the runtime offers (``offered`` is in the runtime's order), or None."""
    offered_set = set(int(f) for f in offered)
    for fmt in preferred:
        if fmt in offered_set:
            return fmt
    return None


def seconds(xr_time: int) -> float:
    """An ``XrTime`` or ``XrDuration`` (nanoseconds) in seconds."""
    return int(xr_time) * 1e-9


def pose_from_xr(p: Any) -> Pose:
    """A :class:`~xrcore.types.Pose` from an ``XrPosef`` (same conventions: metres, x y z w)."""
    return Pose((float(p.position.x), float(p.position.y), float(p.position.z)),
                (float(p.orientation.x), float(p.orientation.y), float(p.orientation.z), float(p.orientation.w)))


def fov_from_xr(f: Any) -> Fov:
    """A :class:`~xrcore.types.Fov` from an ``XrFovf`` (radians, left and down negative)."""
    return Fov(float(f.angle_left), float(f.angle_right), float(f.angle_up), float(f.angle_down))


# --------------------------------------------------------------------------------------------------
# Environment blend modes (OpenXR 1.0, section 10.5 "Environment Blend Mode")
# --------------------------------------------------------------------------------------------------

#: ``XrEnvironmentBlendMode`` of each of medverse's blend-mode names (:data:`xrcore.types.BLEND_MODES`).
BLEND_MODE_VALUES: dict[str, int] = {"opaque": 1, "additive": 2, "alpha": 3}
#: What :attr:`OpenXRConfig.blend` accepts: ``"auto"`` (the runtime's preference) or a mode by name.
BLEND_CHOICES: tuple[str, ...] = ("auto", *BLEND_MODES)


def choose_blend_mode(offered: Sequence[int], wanted: str) -> tuple[str, tuple[str, ...]]:
    """The environment blend mode to submit with, and the modes the runtime offers, by name.

    ``offered`` is what ``xrEnumerateEnvironmentBlendModes`` listed, in the runtime's order of
    preference (values medverse has no name for, from vendor extensions, are passed over);
    ``wanted`` is ``"auto"`` (the first, preferred, mode) or one of :data:`xrcore.types.BLEND_MODES`.

    Raises
    ------
    BackendError
        ``wanted`` is not offered (one line naming the modes that are), or no mode medverse knows is.
    """
    by_value = {v: k for k, v in BLEND_MODE_VALUES.items()}
    names = tuple(dict.fromkeys(by_value[int(m)] for m in offered if int(m) in by_value))
    if not names:
        raise BackendError(f"the OpenXR runtime offers no environment blend mode medverse knows "
                           f"(XrEnvironmentBlendMode values {[int(m) for m in offered]})")
    if wanted == "auto":
        return names[0], names
    if wanted not in names:
        raise BackendError(f"the OpenXR runtime does not offer the {wanted!r} environment blend mode; it offers "
                           f"{', '.join(names)} (set blend to one of those, or 'auto')")
    return wanted, names


# --------------------------------------------------------------------------------------------------
# Hands (XR_EXT_hand_tracking)
# --------------------------------------------------------------------------------------------------


def hand_aim_pose(joints: HandJoints) -> Pose:
    """The pointer pose of a bare tracked hand (world metres; the ray runs along its -Z).

    Origin at the index finger's proximal joint (the knuckle); -Z along the line from the wrist
    through that knuckle; +Y as close as possible to the back of the hand (the palm joint's +Y), so
    the ray rolls with the hand. Wrist and knuckle hardly move when the fingers curl, so pinching to
    select leaves the ray where it was; a ray through the index tip, or along the palm joint's -Z
    (which follows the knuckles' flexion), would jump as the pinch closes.
    """
    wrist, knuckle = joints.position("wrist"), joints.position("index_proximal")
    palm = joints.poses[JOINT["palm"]]
    try:
        orientation = look_rotation(wrist.tolist(), knuckle.tolist(), up=palm.rotation_matrix()[:, 1].tolist())
    except ValueError:  # a degenerate skeleton with the knuckle on the wrist: the palm's own direction
        orientation = palm.orientation
    return Pose((float(knuckle[0]), float(knuckle[1]), float(knuckle[2])), orientation)


#: 32-bit words in one XrHandJointLocationEXT (8-byte flags, 7-float pose, radius; 40 bytes).
_JOINT_WORDS = ctypes.sizeof(xr.HandJointLocationEXT) // 4


def joints_from_xr(locations: Any) -> HandJoints | None:
    """A :class:`~xrcore.types.HandJoints` from a filled ``XrHandJointLocationsEXT`` (26 joints).

    None when the hand is not tracked (``isActive`` false) or any joint lacks a valid position or
    orientation: a skeleton with holes would put a fingertip at the origin, so the hand counts as
    untracked until the runtime knows all of it.
    """
    if not locations.is_active or locations.joint_count != HAND_JOINT_COUNT:
        return None
    # Read as one (26, 10) block of 32-bit words rather than joint by joint through ctypes (a third of the
    # time, every frame): XrHandJointLocationEXT is a 64-bit flags word, XrPosef (orientation x y z w,
    # position x y z) and the radius, all 32-bit floats.
    words = np.frombuffer(locations.joint_locations, dtype=np.uint32).reshape(HAND_JOINT_COUNT, _JOINT_WORDS)
    valid = int(xr.SpaceLocationFlags.POSITION_VALID_BIT | xr.SpaceLocationFlags.ORIENTATION_VALID_BIT)
    if ((words[:, 0] & valid) != valid).any():  # the flags' low word holds every bit defined
        return None
    values = words.view(np.float32).astype(np.float64)
    quats, points = values[:, 2:6].tolist(), values[:, 6:9].tolist()
    poses = tuple(Pose((p[0], p[1], p[2]), (q[0], q[1], q[2], q[3])) for p, q in zip(points, quats, strict=True))
    return HandJoints(poses, tuple(values[:, 9].tolist()))


# --------------------------------------------------------------------------------------------------
# The backend
# --------------------------------------------------------------------------------------------------

NO_RUNTIME = ("no OpenXR runtime is installed or active (the loader found no active_runtime.json and no "
              "usable XR_RUNTIME_JSON; XR_LOADER_DEBUG=error shows why); install Monado or SteamVR and make it "
              "the active runtime")


@dataclass
class OpenXRConfig:
    """OpenXR backend settings.

    ``app_name``: shown by the runtime; ``reference_space``: ``"stage"`` (floor-level, room origin,
    when the runtime has one) or ``"local"`` (seated, origin at the starting head position); ``near_m``
    and ``far_m``: clip distances for the depth layer, metres; ``color_formats`` / ``depth_formats``:
    GL swapchain formats in order of preference; ``retry_interval_s``: wait between attempts to get
    the system back after a session or instance loss; ``retry_timeout_s``: give up after this long
    (``BackendError``); ``idle_poll_s``: event polling interval while the session is not running;
    ``api_layers``: OpenXR API layers to enable (e.g. ``"XR_APILAYER_LUNARG_core_validation"``);
    ``blend``: the environment blend mode, ``"auto"`` (the runtime's preferred one) or one of
    ``"opaque"``, ``"alpha"`` (passthrough video), ``"additive"`` (optical see-through); a mode the
    runtime does not offer makes ``start()`` fail (see :func:`choose_blend_mode`);
    ``context``: an existing :class:`~xrcore.gl.context.GLContext` (not closed by the backend): an EGL
    one for a runtime with ``XR_MNDX_egl_enable``, else a ``"glx"`` one.
    """

    app_name: str = "medverse"
    reference_space: str = "stage"
    near_m: float = 0.05
    far_m: float = 100.0
    color_formats: tuple[int, ...] = COLOR_FORMATS
    depth_formats: tuple[int, ...] = DEPTH_FORMATS
    retry_interval_s: float = 1.0
    retry_timeout_s: float = 60.0
    idle_poll_s: float = 0.05
    api_layers: tuple[str, ...] = ()
    blend: str = "auto"
    context: Any = None

    def __post_init__(self) -> None:
        if self.reference_space not in ("stage", "local"):
            raise ValueError(f"reference_space must be 'stage' or 'local', got {self.reference_space!r}")
        if not 0.0 < self.near_m < self.far_m:
            raise ValueError(f"need 0 < near_m < far_m, got {self.near_m} and {self.far_m}")
        if self.retry_interval_s <= 0 or self.retry_timeout_s < 0 or self.idle_poll_s <= 0:
            raise ValueError("retry_interval_s and idle_poll_s must be > 0 and retry_timeout_s >= 0")
        if self.blend not in BLEND_CHOICES:
            raise ValueError(f"blend must be one of {', '.join(BLEND_CHOICES)}, got {self.blend!r}")


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


@dataclass
class _Swapchain:
    handle: Any
    width: int
    height: int
    format: int
    textures: list[int] = field(default_factory=list)


class OpenXRBackend(Backend):
    """Frames from an OpenXR runtime, rendered into its swapchains.

    The renderer attached with :meth:`attach` draws both eyes into its own 2-layer texture array;
    :meth:`submit` asks it to copy them into the acquired swapchain image
    (``renderer.copy_to_texture_array(color, depth, width, height) -> bool``, True when it wrote
    depth) and hands the image to the compositor.
    """

    def __init__(self, config: OpenXRConfig | None = None, **overrides: Any) -> None:
        if config is not None and overrides:
            raise TypeError("give either an OpenXRConfig or keyword settings, not both")
        self.config = config or OpenXRConfig(**overrides)
        self.machine = SessionStateMachine()
        self.instance: Any = None
        self.system: Any = None
        self.session: Any = None
        self.extensions: set[str] = set()
        self.interaction_profiles: list[str | None] = [None, None]
        self._owns_context = False
        #: The graphics binding in use: ``"egl"`` or ``"xlib"`` (decided with the instance).
        self.binding: str | None = None
        self._views_config: list[Any] = []
        #: The environment blend mode submitted, and those the runtime offers (names, its order).
        self.blend_mode = "opaque"
        self.blend_modes: tuple[str, ...] = ()
        #: The runtime offers XR_EXT_hand_tracking and the system tracks hands (decided with the system).
        self.hand_tracking = False
        self._hand_trackers: list[Any] = []
        self._joint_locations: list[Any] = []
        self._locate_hand_joints: Any = None
        self._space: Any = None
        self._view_space: Any = None
        self._action_set: Any = None
        self._actions: dict[str, Any] = {}
        self._hand_paths: list[Any] = []
        self._hand_spaces: dict[tuple[str, int], Any] = {}
        self._color: _Swapchain | None = None
        self._depth: _Swapchain | None = None
        self._period = 1.0 / 90.0
        self._pending: tuple[FrameState, int, list[Any]] | None = None
        self._index = 0
        self._lost_since: float | None = None
        self._events: list[str] = []
        self._started = False

    # -- Backend interface ---------------------------------------------------------------------------

    @property
    def info(self) -> BackendInfo:
        if not self._views_config:
            raise BackendError("OpenXR backend not started: no views yet")
        v = self._views_config[0]
        return BackendInfo("openxr", len(self._views_config), int(v.recommended_image_rect_width),
                           int(v.recommended_image_rect_height), 1.0 / self._period, self.blend_mode, self.blend_modes)

    def start(self) -> None:
        """Create the instance, find the headset, make the GL context and the session.

        Raises
        ------
        BackendUnavailableError
            No runtime, no headset, or no OpenGL binding (no EGL and no X display for GLX).
        BackendError
            The runtime refused something else (message names the call).
        """
        if self._started:
            return
        self.machine = SessionStateMachine()  # a backend stopped after an exit may be started again
        self._lost_since = None
        try:
            self._create_instance()
            self._create_system()
            if self.config.context is not None:
                self.context = self.config.context
            else:
                from xrcore.gl.context import create_context  # noqa: PLC0415 - loaded only when used

                v = self._views_config[0]
                self.context = create_context("glx" if self.binding == "xlib" else "egl",
                                              width=int(v.recommended_image_rect_width),
                                              height=int(v.recommended_image_rect_height))
                self._owns_context = True
            self.context.make_current()
            self._create_session()
            props = xr.get_instance_properties(self.instance)
        except xr.XrException as exc:
            self.stop()
            raise BackendError(f"OpenXR start failed: {exc}") from exc
        except xrcore.gl.GLContextError as exc:
            self.stop()
            kind = "GLX" if self.binding == "xlib" else "EGL"
            raise BackendError(f"OpenXR backend cannot create its {kind} context: {exc}") from exc
        except BackendError:
            self.stop()
            raise
        logger.info("OpenXR runtime %s %s: %d views of %dx%d, OpenGL over %s, %s blend (offers %s), hand tracking %s",
                    props.runtime_name.decode(), props.runtime_version, self.info.view_count, self.info.width,
                    self.info.height, "EGL" if self.binding == "egl" else "Xlib/GLX", self.blend_mode,
                    ", ".join(self.blend_modes), "on" if self._hand_trackers else "off")
        self._started = True

    def frames(self) -> Iterator[FrameState]:
        if not self._started:
            raise BackendError("call start() before frames()")
        while not self.machine.exited:
            try:
                frame = self._next_frame()
            except (xr.SessionLostError, xr.InstanceLostError) as exc:
                self._lost(exc)
                continue
            except xr.XrException as exc:
                raise BackendError(f"OpenXR frame loop failed: {exc}") from exc
            if frame is None:
                continue
            yield frame
            if self._pending is not None:
                raise BackendError(f"frame {frame.index} was not submitted before the next was requested")
            self._index += 1

    def submit(self, frame: FrameState) -> None:
        if self._pending is None or self._pending[0].index != frame.index:
            raise BackendError(f"submit() got frame {frame.index}, expected the frame just yielded")
        _, display_time, xr_views = self._pending
        self._pending = None
        try:
            layer_refs = self._render_layers(xr_views)
            self._end_frame(display_time, layer_refs)
        except (xr.SessionLostError, xr.InstanceLostError) as exc:
            self._lost(exc)
        except xr.XrException as exc:
            raise BackendError(f"OpenXR submit failed: {exc}") from exc

    def haptic_pulse(self, hand: int, amplitude: float = 0.5, duration_s: float = 0.05, frequency_hz: float = 0.0) -> None:
        """Vibrate controller ``hand`` (0 left, 1 right); ignored unless the session has input focus."""
        if hand not in (0, 1):
            raise ValueError(f"hand must be 0 or 1, got {hand!r}")
        if not self.machine.input_focused or "haptic" not in self._actions:
            return
        vibration = xr.HapticVibration(duration=max(int(duration_s * 1e9), xr.MIN_HAPTIC_DURATION),
                                       frequency=float(frequency_hz) or xr.FREQUENCY_UNSPECIFIED,
                                       amplitude=min(max(float(amplitude), 0.0), 1.0))
        info = xr.HapticActionInfo(action=self._actions["haptic"], subaction_path=self._hand_paths[hand])
        xr.apply_haptic_feedback(self.session, info, vibration)  # pyopenxr passes it by reference

    def request_exit(self) -> None:
        """Leave: a running session is asked to stop (frames end after the runtime's EXITING)."""
        self._perform(self.machine.request_exit())

    def stop(self) -> None:
        self._destroy_session()
        self._destroy_instance()
        if self._owns_context and self.context is not None:
            self.context.close()
        self.context = None
        self._owns_context = False
        self._started = False

    # -- instance, system, session -------------------------------------------------------------------

    def _create_instance(self) -> None:
        try:
            offered = {p.extension_name.decode() for p in xr.enumerate_instance_extension_properties()}
        except xr.RuntimeUnavailableError as exc:
            raise BackendUnavailableError(NO_RUNTIME) from exc
        except xr.XrException as exc:
            raise BackendUnavailableError(f"the OpenXR loader failed: {exc}") from exc
        self.binding = choose_binding(offered, os.environ.get("DISPLAY"))
        required = [xr.KHR_OPENGL_ENABLE_EXTENSION_NAME]
        if self.binding == "egl":
            required.append(xr.MNDX_EGL_ENABLE_EXTENSION_NAME)
        optional = (xr.KHR_COMPOSITION_LAYER_DEPTH_EXTENSION_NAME, xr.EXT_HAND_TRACKING_EXTENSION_NAME)
        wanted = required + [e for e in optional if e in offered]
        info = xr.InstanceCreateInfo(
            application_info=xr.ApplicationInfo(application_name=self.config.app_name, engine_name="medverse",
                                                api_version=xr.Version(1, 0, 0)),
            enabled_api_layer_names=list(self.config.api_layers),
            enabled_extension_names=wanted,
        )
        try:
            self.instance = xr.create_instance(info)
        except xr.RuntimeUnavailableError as exc:
            raise BackendUnavailableError(NO_RUNTIME) from exc
        self.extensions = set(wanted)

    def _create_system(self) -> None:
        try:
            self.system = xr.get_system(self.instance, xr.SystemGetInfo(form_factor=xr.FormFactor.HEAD_MOUNTED_DISPLAY))
        except xr.FormFactorUnavailableError as exc:
            raise BackendUnavailableError("the OpenXR runtime has no headset connected; connect one") from exc
        view_type = xr.ViewConfigurationType.PRIMARY_STEREO
        if view_type not in xr.enumerate_view_configurations(self.instance, self.system):
            raise BackendUnavailableError("the headset has no primary stereo view configuration")
        self._views_config = list(xr.enumerate_view_configuration_views(self.instance, self.system, view_type))
        modes = xr.enumerate_environment_blend_modes(self.instance, self.system, view_type)
        self.blend_mode, self.blend_modes = choose_blend_mode([int(m) for m in modes], self.config.blend)
        self.hand_tracking = (xr.EXT_HAND_TRACKING_EXTENSION_NAME in self.extensions
                              and self._system_tracks_hands())
        # Must precede xrCreateSession (XR_KHR_opengl_enable); checks the context is new enough.
        req = xr.get_opengl_graphics_requirements_khr(self.instance, self.system)
        self._gl_min = (req.min_api_version_supported.major, req.min_api_version_supported.minor)

    def _system_tracks_hands(self) -> bool:
        """XrSystemHandTrackingPropertiesEXT.supportsHandTracking: the extension alone promises nothing."""
        hands = xr.SystemHandTrackingPropertiesEXT()
        props = xr.SystemProperties(next=hands)  # the structure itself: pyopenxr takes its address
        # pyopenxr's get_system_properties() takes no next chain, so the raw call is made here.
        result = xr.check_result(xr.raw_functions.xrGetSystemProperties(self.instance, self.system, ctypes.byref(props)))
        if result.is_exception():
            raise result
        return bool(hands.supports_hand_tracking)

    def _create_session(self) -> None:
        info = getattr(self.context, "info", {}) or {}
        have = (int(info.get("major", 0)), int(info.get("minor", 0)))
        if have != (0, 0) and have < self._gl_min:
            raise BackendUnavailableError(f"the runtime needs OpenGL {self._gl_min[0]}.{self._gl_min[1]}, "
                                          f"the context has {have[0]}.{have[1]}")
        # Kept alive: the runtime reads it in xrCreateSession.
        self._binding = (xlib_graphics_binding(self.context) if self.binding == "xlib"
                         else egl_graphics_binding(self.context))
        self.session = xr.create_session(self.instance, xr.SessionCreateInfo(system_id=self.system,
                                                                              next=self._binding))
        self.machine.session_created()
        offered = list(xr.enumerate_reference_spaces(self.session))
        kind = xr.ReferenceSpaceType.STAGE if (self.config.reference_space == "stage"
                                               and xr.ReferenceSpaceType.STAGE in offered) else xr.ReferenceSpaceType.LOCAL
        self._space = xr.create_reference_space(self.session, xr.ReferenceSpaceCreateInfo(reference_space_type=kind))
        self._view_space = xr.create_reference_space(
            self.session, xr.ReferenceSpaceCreateInfo(reference_space_type=xr.ReferenceSpaceType.VIEW))
        self._create_actions()
        if self.hand_tracking:
            self._create_hand_trackers()
        self._create_swapchains()
        logger.debug("OpenXR session created in %s space", kind.name)

    def _create_actions(self) -> None:
        if self._action_set is None:  # actions belong to the instance and survive a lost session
            self._hand_paths = [xr.string_to_path(self.instance, h) for h in HANDS]
            self._action_set = xr.create_action_set(self.instance, xr.ActionSetCreateInfo(
                action_set_name="medverse", localized_action_set_name="medverse", priority=0))
            kinds = {"pose": xr.ActionType.POSE_INPUT, "float": xr.ActionType.FLOAT_INPUT,
                     "vector2f": xr.ActionType.VECTOR2F_INPUT, "boolean": xr.ActionType.BOOLEAN_INPUT,
                     "vibration": xr.ActionType.VIBRATION_OUTPUT}
            for spec in ACTIONS:
                self._actions[spec.name] = xr.create_action(self._action_set, xr.ActionCreateInfo(
                    action_name=spec.name, action_type=kinds[spec.kind], localized_action_name=spec.label,
                    subaction_paths=self._hand_paths))
            accepted = 0
            for profile, pairs in BINDINGS.items():
                suggested = [xr.ActionSuggestedBinding(self._actions[a], xr.string_to_path(self.instance, p))
                             for a, p in pairs]
                try:
                    xr.suggest_interaction_profile_bindings(self.instance, xr.InteractionProfileSuggestedBinding(
                        interaction_profile=xr.string_to_path(self.instance, profile), suggested_bindings=suggested))
                    accepted += 1
                except xr.XrException as exc:  # a runtime may not know a profile; the others still work
                    logger.warning("runtime refused bindings for %s: %s", profile, exc)
            if not accepted:
                raise BackendError("the runtime accepted no controller bindings")
        xr.attach_session_action_sets(self.session, xr.SessionActionSetsAttachInfo(action_sets=[self._action_set]))
        self._hand_spaces = {
            (name, hand): xr.create_action_space(self.session, xr.ActionSpaceCreateInfo(
                action=self._actions[name], subaction_path=self._hand_paths[hand]))
            for name in ("grip_pose", "aim_pose") for hand in (0, 1)
        }

    def _create_hand_trackers(self) -> None:
        """One XrHandTrackerEXT per hand (left, right), and the buffers their joints are located into.

        A runtime that refuses a tracker leaves the session without hand tracking (logged), not broken.
        """
        # pyopenxr's locate_hand_joints_ext() hands the runtime an empty joint array (jointCount 0),
        # which the extension forbids; the backend calls the runtime's function with its own buffers.
        self._locate_hand_joints = ctypes.cast(xr.get_instance_proc_addr(self.instance, "xrLocateHandJointsEXT"),
                                               xr.PFN_xrLocateHandJointsEXT)
        try:
            for hand in (xr.HandEXT.LEFT, xr.HandEXT.RIGHT):
                self._hand_trackers.append(xr.create_hand_tracker_ext(self.session, xr.HandTrackerCreateInfoEXT(hand=hand)))
        except xr.XrException as exc:
            logger.warning("the runtime refused a hand tracker (%s); hands are not tracked this session", exc)
            self._destroy_hand_trackers()
            return
        self._joint_locations = [
            xr.HandJointLocationsEXT(joint_locations=(xr.HandJointLocationEXT * HAND_JOINT_COUNT)()) for _ in (0, 1)]

    def _create_swapchains(self) -> None:
        offered = list(xr.enumerate_swapchain_formats(self.session))
        color = choose_format(offered, self.config.color_formats)
        if color is None:
            raise BackendError(f"the runtime offers none of the colour formats {[hex(f) for f in self.config.color_formats]}"
                               f" (it offers {[hex(f) for f in offered]})")
        if color != GL_SRGB8_ALPHA8:
            logger.warning("runtime has no sRGB swapchain; colours will look too bright")
        v = self._views_config[0]
        w, h = int(v.recommended_image_rect_width), int(v.recommended_image_rect_height)
        views = len(self._views_config)
        usage = xr.SwapchainUsageFlags.COLOR_ATTACHMENT_BIT | xr.SwapchainUsageFlags.TRANSFER_DST_BIT
        self._color = self._swapchain(color, w, h, views, usage)
        depth = choose_format(offered, self.config.depth_formats)
        if depth is not None and xr.KHR_COMPOSITION_LAYER_DEPTH_EXTENSION_NAME in self.extensions:
            usage = xr.SwapchainUsageFlags.DEPTH_STENCIL_ATTACHMENT_BIT | xr.SwapchainUsageFlags.TRANSFER_DST_BIT
            self._depth = self._swapchain(depth, w, h, views, usage)

    def _swapchain(self, fmt: int, w: int, h: int, layers: int, usage: Any) -> _Swapchain:
        # One swapchain with a layer per eye: the renderer's own 2-layer array copies into it whole.
        handle = xr.create_swapchain(self.session, xr.SwapchainCreateInfo(
            usage_flags=usage, format=fmt, sample_count=1, width=w, height=h, face_count=1,
            array_size=layers, mip_count=1))
        images = xr.enumerate_swapchain_images(handle, xr.SwapchainImageOpenGLKHR)
        return _Swapchain(handle, w, h, fmt, [int(img.image) for img in images])

    # -- events and the state machine ---------------------------------------------------------------

    def _poll_events(self) -> None:
        while self.instance is not None:
            try:
                buffer = xr.poll_event(self.instance)
            except xr.EventUnavailable:
                return
            kind = xr.StructureType(buffer.type)
            if kind == xr.StructureType.EVENT_DATA_SESSION_STATE_CHANGED:
                event = ctypes.cast(ctypes.byref(buffer), ctypes.POINTER(xr.EventDataSessionStateChanged)).contents
                if not _same_handle(event.session, self.session):
                    continue  # queued for a session already destroyed after a loss
                self._events.append(f"session:{SessionState(event.state).name.lower()}"
                                    if event.state in SessionState._value2member_map_ else "session:unknown")
                self._perform(self.machine.on_state_changed(int(event.state)))
            elif kind == xr.StructureType.EVENT_DATA_INSTANCE_LOSS_PENDING:
                self._perform(self.machine.on_instance_loss_pending())
                return
            elif kind == xr.StructureType.EVENT_DATA_INTERACTION_PROFILE_CHANGED and self.session is not None:
                self._update_profiles()
            elif kind == xr.StructureType.EVENT_DATA_EVENTS_LOST:
                logger.warning("the runtime's event queue overflowed; some events were lost")

    def _perform(self, actions: Sequence[SessionAction]) -> None:
        """Carry out what the state machine asked for, in order."""
        for action in actions:
            if action is SessionAction.BEGIN_SESSION:
                xr.begin_session(self.session, xr.SessionBeginInfo(xr.ViewConfigurationType.PRIMARY_STEREO))
            elif action is SessionAction.END_SESSION:
                xr.end_session(self.session)
            elif action is SessionAction.REQUEST_EXIT:
                xr.request_exit_session(self.session)
            elif action is SessionAction.DESTROY_SESSION:
                self._destroy_session()
            elif action is SessionAction.DESTROY_INSTANCE:
                self._destroy_instance()
            elif action in (SessionAction.RECREATE_SESSION, SessionAction.RECREATE_INSTANCE):
                self._lost_since = time.monotonic()
                logger.info("OpenXR %s lost; retrying every %g s for up to %g s",
                            "instance" if action is SessionAction.RECREATE_INSTANCE else "session",
                            self.config.retry_interval_s, self.config.retry_timeout_s)
            elif action is SessionAction.EXIT:
                logger.info("OpenXR session exited")

    def _lost(self, exc: Exception) -> None:
        """A call reported XR_ERROR_SESSION_LOST or XR_ERROR_INSTANCE_LOST: as the loss events."""
        self._pending = None
        logger.warning("OpenXR %s lost (%s)", "instance" if isinstance(exc, xr.InstanceLostError) else "session",
                       type(exc).__name__)
        if isinstance(exc, xr.InstanceLostError):
            self._perform(self.machine.on_instance_loss_pending())
        else:
            self._perform(self.machine.on_state_changed(SessionState.LOSS_PENDING))

    def _retry(self) -> None:
        """After a loss: try to get the system (and instance) back, then a new session."""
        assert self._lost_since is not None
        if time.monotonic() - self._lost_since > self.config.retry_timeout_s:
            raise BackendError(f"OpenXR did not come back within {self.config.retry_timeout_s:.0f} s after a loss")
        time.sleep(self.config.retry_interval_s)
        try:
            if self.instance is None:
                self._create_instance()
            self._create_system()
            self._create_session()
        except (BackendUnavailableError, xr.XrException) as exc:
            logger.debug("OpenXR not back yet: %s", exc)
            self._destroy_session()
            return
        self._lost_since = None

    def _update_profiles(self) -> None:
        for hand in (0, 1):
            state = xr.get_current_interaction_profile(self.session, self._hand_paths[hand])
            profile = xr.path_to_string(self.instance, state.interaction_profile) if state.interaction_profile else None
            if profile != self.interaction_profiles[hand]:
                logger.info("%s hand: %s", ("left", "right")[hand], profile or "no controller")
                self.interaction_profiles[hand] = profile

    # -- the frame loop -------------------------------------------------------------------------------

    def _next_frame(self) -> FrameState | None:
        """One turn of the loop: events, then a frame when the session runs. None: nothing to render."""
        if self._lost_since is not None:
            self._retry()
            return None
        self._poll_events()
        if self.machine.exited or self._lost_since is not None:
            return None
        if not self.machine.frame_loop:
            time.sleep(self.config.idle_poll_s)  # xrWaitFrame paces the loop only while running
            return None
        state = xr.wait_frame(self.session, xr.FrameWaitInfo())
        xr.begin_frame(self.session, xr.FrameBeginInfo())
        if state.predicted_display_period > 0:
            self._period = seconds(state.predicted_display_period)
        display_time = int(state.predicted_display_time)
        if not (state.should_render and self.machine.should_render):
            self._end_frame(display_time, [])
            return None
        view_state, xr_views = xr.locate_views(self.session, xr.ViewLocateInfo(
            view_configuration_type=xr.ViewConfigurationType.PRIMARY_STEREO, display_time=display_time,
            space=self._space))
        valid = xr.ViewStateFlags.POSITION_VALID_BIT | xr.ViewStateFlags.ORIENTATION_VALID_BIT
        if (int(view_state.view_state_flags) & int(valid)) != int(valid):
            self._end_frame(display_time, [])  # no tracking: nothing meaningful to draw
            return None
        w, h = self._color.width, self._color.height  # type: ignore[union-attr]
        views = [View(pose_from_xr(v.pose), fov_from_xr(v.fov), w, h, eye) for eye, v in enumerate(xr_views)]
        head = self._locate(self._view_space, display_time) or views[0].pose
        inputs = self._read_inputs(display_time) if self.machine.input_focused else InputState()
        events, self._events = tuple(self._events), []
        frame = FrameState(self._index, seconds(display_time), self._period, views, True, head, inputs, events)
        self._pending = (frame, display_time, list(xr_views))
        return frame

    def _locate(self, space: Any, display_time: int) -> Pose | None:
        loc = xr.locate_space(space, self._space, display_time)
        valid = xr.SpaceLocationFlags.POSITION_VALID_BIT | xr.SpaceLocationFlags.ORIENTATION_VALID_BIT
        if (int(loc.location_flags) & int(valid)) != int(valid):
            return None
        return pose_from_xr(loc.pose)

    def _read_inputs(self, display_time: int) -> InputState:
        xr.sync_actions(self.session, xr.ActionsSyncInfo(active_action_sets=[xr.ActiveActionSet(self._action_set, xr.NULL_PATH)]))
        hands = []
        for hand in (0, 1):
            path = self._hand_paths[hand]

            def get(kind: str, name: str) -> Any:
                info = xr.ActionStateGetInfo(action=self._actions[name], subaction_path=path)  # noqa: B023
                return getattr(xr, f"get_action_state_{kind}")(self.session, info)

            grip = aim = None
            if get("pose", "grip_pose").is_active:
                grip = self._locate(self._hand_spaces[("grip_pose", hand)], display_time)
            if get("pose", "aim_pose").is_active:
                aim = self._locate(self._hand_spaces[("aim_pose", hand)], display_time)
            joints = self._locate_joints(hand, display_time) if self._hand_trackers else None
            if joints is not None and aim is None:
                # A bare hand, no controller: the pointer and the grip come from its skeleton.
                aim = hand_aim_pose(joints)
                if grip is None:
                    grip = joints.poses[JOINT["palm"]]
            trigger, squeeze = get("float", "trigger"), get("float", "squeeze")
            stick = get("vector2f", "thumbstick")
            names = button_names(self.interaction_profiles[hand] or "", hand)
            pressed = frozenset(names[a] for a in names if get("boolean", a).current_state)
            hands.append(HandInput(
                grip=grip, aim=aim,
                trigger=float(trigger.current_state) if trigger.is_active else 0.0,
                squeeze=float(squeeze.current_state) if squeeze.is_active else 0.0,
                thumbstick=(float(stick.current_state.x), float(stick.current_state.y)) if stick.is_active else (0.0, 0.0),
                buttons=pressed,
                joints=joints,
            ))
        return InputState(left=hands[0], right=hands[1])

    def _locate_joints(self, hand: int, display_time: int) -> HandJoints | None:
        """Hand ``hand``'s (0 left, 1 right) joints at ``display_time`` (XrTime, ns) in the reference space."""
        locations = self._joint_locations[hand]
        info = xr.HandJointsLocateInfoEXT(base_space=self._space, time=display_time)
        result = xr.check_result(self._locate_hand_joints(self._hand_trackers[hand], ctypes.byref(info),
                                                          ctypes.byref(locations)))
        if result.is_exception():
            raise result
        return joints_from_xr(locations)

    def _render_layers(self, xr_views: list[Any]) -> list[Any]:
        """Copy the renderer's eyes into the swapchain images; the projection layer to submit."""
        color, depth = self._color, self._depth
        assert color is not None
        if self.renderer is None or not hasattr(self.renderer, "copy_to_texture_array"):
            raise BackendError("the OpenXR backend needs a renderer with copy_to_texture_array(); attach one")
        color_index = self._acquire(color)
        depth_texture = depth.textures[self._acquire(depth)] if depth is not None else None
        try:
            wrote_depth = bool(self.renderer.copy_to_texture_array(color.textures[color_index], depth_texture,
                                                                   color.width, color.height))
        finally:  # released even when the copy fails, so the next frame can acquire again
            xr.release_swapchain_image(color.handle, xr.SwapchainImageReleaseInfo())
            if depth is not None:
                xr.release_swapchain_image(depth.handle, xr.SwapchainImageReleaseInfo())
        rect = xr.Rect2Di(offset=xr.Offset2Di(0, 0), extent=xr.Extent2Di(color.width, color.height))
        self._keep: list[Any] = []  # ctypes structures the runtime reads in xrEndFrame
        # The depth layer must state the clip distances the renderer's projection used.
        rc = getattr(self.renderer, "config", None)
        near, far = float(getattr(rc, "near", self.config.near_m)), float(getattr(rc, "far", self.config.far_m))
        projection_views = []
        for eye, v in enumerate(xr_views):
            depth_info = None
            if wrote_depth and depth is not None:
                depth_info = xr.CompositionLayerDepthInfoKHR(
                    sub_image=xr.SwapchainSubImage(swapchain=depth.handle, image_rect=rect, image_array_index=eye),
                    min_depth=0.0, max_depth=1.0, near_z=near, far_z=far)
                self._keep.append(depth_info)
            # Built through the constructor (not a bare ctypes array) so that each view's type is set.
            projection_views.append(xr.CompositionLayerProjectionView(
                pose=v.pose, fov=v.fov, next=depth_info,
                sub_image=xr.SwapchainSubImage(swapchain=color.handle, image_rect=rect, image_array_index=eye)))
        # With alpha blending the compositor must read the image's alpha, which the renderer writes
        # premultiplied (it clears to transparent black), hence no UNPREMULTIPLIED_ALPHA_BIT.
        flags = (xr.CompositionLayerFlags.BLEND_TEXTURE_SOURCE_ALPHA_BIT if self.blend_mode == "alpha"
                 else xr.CompositionLayerFlags.NONE)
        layer = xr.CompositionLayerProjection(layer_flags=flags, space=self._space, views=projection_views)
        self._keep.append(layer)
        return [ctypes.byref(layer)]

    def _acquire(self, chain: _Swapchain) -> int:
        index = xr.acquire_swapchain_image(chain.handle, xr.SwapchainImageAcquireInfo())
        xr.wait_swapchain_image(chain.handle, xr.SwapchainImageWaitInfo(timeout=xr.INFINITE_DURATION))
        return int(index)

    def _end_frame(self, display_time: int, layers: list[Any]) -> None:
        mode = xr.EnvironmentBlendMode(BLEND_MODE_VALUES[self.blend_mode])
        xr.end_frame(self.session, xr.FrameEndInfo(display_time=display_time, environment_blend_mode=mode, layers=layers))

    # -- teardown -------------------------------------------------------------------------------------

    def _destroy_hand_trackers(self) -> None:
        for tracker in self._hand_trackers:
            _quietly(xr.destroy_hand_tracker_ext, tracker)
        self._hand_trackers, self._joint_locations = [], []

    def _destroy_session(self) -> None:
        self._pending = None
        self._destroy_hand_trackers()
        for chain in (self._color, self._depth):
            if chain is not None:
                _quietly(xr.destroy_swapchain, chain.handle)
        self._color = self._depth = None
        for space in [*self._hand_spaces.values(), self._view_space, self._space]:
            if space is not None:
                _quietly(xr.destroy_space, space)
        self._hand_spaces, self._view_space, self._space = {}, None, None
        if self.session is not None:
            _quietly(xr.destroy_session, self.session)
            self.session = None
        self.machine.running = False

    def _destroy_instance(self) -> None:
        self._destroy_session()
        if self._action_set is not None:
            _quietly(xr.destroy_action_set, self._action_set)
        self._action_set, self._actions = None, {}
        self._locate_hand_joints = None  # the runtime's function for this instance
        if self.instance is not None:
            _quietly(xr.destroy_instance, self.instance)
            self.instance = None
        self.system = None


def probe(api_layers: tuple[str, ...] = ()) -> str | None:
    """Try OpenXR for real: create an instance and get the head-mounted system, then release them.

    Returns
    -------
    str | None
        None when a runtime with a headset and a usable OpenGL binding answered; otherwise one line
        saying why not (no runtime, no headset, missing extension, the loader's error).
    """
    backend = OpenXRBackend(OpenXRConfig(api_layers=api_layers))
    try:
        backend._create_instance()
        backend._create_system()
    except BackendError as exc:
        return str(exc)
    except xr.XrException as exc:
        return f"the OpenXR runtime failed: {exc}"
    finally:
        backend._destroy_instance()
    return None


def _same_handle(a: Any, b: Any) -> bool:
    """True when two OpenXR handles (ctypes pointers) are the same object; None matches nothing."""
    if a is None or b is None:
        return False
    return ctypes.cast(a, ctypes.c_void_p).value == ctypes.cast(b, ctypes.c_void_p).value


def _quietly(destroy: Any, handle: Any) -> None:
    """Destroy a handle during teardown; a lost runtime may refuse, which changes nothing for us."""
    try:
        destroy(handle)
    except xr.XrException as exc:
        logger.debug("%s failed during teardown: %s", getattr(destroy, "__name__", destroy), exc)
