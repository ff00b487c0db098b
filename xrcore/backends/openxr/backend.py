"""The OpenXR backend itself: :class:`OpenXRBackend`, what ``xrcore.backends.create("openxr")`` returns.

It drives a runtime: an instance with an OpenGL graphics binding (``XR_KHR_opengl_enable``; see
:mod:`~xrcore.backends.openxr.graphics`), the head-mounted system and its primary stereo view
configuration, the session and its state machine (:mod:`~xrcore.backends.openxr.lifecycle`), the
swapchains (:mod:`~xrcore.backends.openxr.swapchains`), and the frame loop ``xrWaitFrame`` ->
``xrBeginFrame`` -> ``xrLocateViews`` / ``xrSyncActions`` -> render -> ``xrEndFrame`` at the predicted
display time, submitted with the environment blend mode chosen by
:func:`~xrcore.backends.openxr.swapchains.choose_blend_mode`. Controllers are read by
:mod:`~xrcore.backends.openxr.controllers`, tracked hands by :mod:`~xrcore.backends.openxr.hands`.

Without a runtime (no ``active_runtime.json``, no ``XR_RUNTIME_JSON``) :meth:`OpenXRBackend.start`
raises :class:`~xrcore.backends.base.BackendUnavailableError` with one line saying so; the factory's
``auto`` then falls back to the simulator.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import xr

import xrcore.gl
from xrcore.backends.base import Backend, BackendError, BackendInfo, BackendUnavailableError
from xrcore.backends.openxr.controllers import _ControllerMixin
from xrcore.backends.openxr.graphics import choose_binding, egl_graphics_binding, xlib_graphics_binding
from xrcore.backends.openxr.handles import _quietly, _same_handle
from xrcore.backends.openxr.hands import _HandTrackingMixin
from xrcore.backends.openxr.lifecycle import SessionAction, SessionState, SessionStateMachine
from xrcore.backends.openxr.swapchains import (
    BLEND_CHOICES,
    BLEND_MODE_VALUES,
    COLOR_FORMATS,
    DEPTH_FORMATS,
    _Swapchain,
    _SwapchainMixin,
    choose_blend_mode,
)
from xrcore.types import Fov, FrameState, InputState, Pose, View

logger = logging.getLogger("xrcore.backends.openxr")  # the backend's one logger, named as before the split


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


class OpenXRBackend(_ControllerMixin, _HandTrackingMixin, _SwapchainMixin, Backend):
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

    def _end_frame(self, display_time: int, layers: list[Any]) -> None:
        mode = xr.EnvironmentBlendMode(BLEND_MODE_VALUES[self.blend_mode])
        xr.end_frame(self.session, xr.FrameEndInfo(display_time=display_time, environment_blend_mode=mode, layers=layers))

    # -- teardown -------------------------------------------------------------------------------------

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
