"""A desktop user: a window's mouse and keys as a hand on the twin, through the session loop.

``medverse view`` without a headset runs here. The :class:`~xrcore.backends.desktop.DesktopBackend`
gives frames as a headset does (one view, the head at the camera, the mouse as the right hand aiming
from the camera through the cursor, its buttons as the trigger, the squeeze and controller buttons);
each frame :class:`DesktopSession`

1. puts that hand where a hand would be along its ray (:class:`DesktopHand`): just in front of the
   twin, so that what it points at is what the cursor is on;
2. runs :meth:`~sessions.run.LocalSession.step`: input, picking, tools, intents, the workspace, the
   scene, exactly as for a headset or a scripted user;
3. adds the tool menu along the top of the window, draws the view and presents it.

Controls
    ==============================  ==========================================================
    left click / drag               the tool in hand: select a structure (in empty space: clear);
                                    place a landmark or drag one; measure (two clicks); hold to
                                    cut (section) or to draw
    wheel, left button held         section: push the held cut away (deeper) or pull it nearer,
                                    5 mm a step; other tools: zoom
    right-drag                      grab: the twin follows the mouse across the view, the point
                                    grabbed staying under the cursor
    wheel, right button held        scale the grabbed twin about the grabbed point, 10 % a step
                                    (away: larger), within 0.1x to 10x life size
    middle-drag, Alt+left-drag      orbit round the twin
    Shift+middle-drag               pan
    wheel                           zoom
    R                               reset the view
    1-5, a click on the menu        select, landmark, measure, section, draw (Tab: the next one)
    Ctrl+Z, U                       undo (one's own last change)
    Delete, Backspace, X            the tool's delete: the landmark or one's own stroke under the
                                    cursor; all cuts (section); a half-made measurement
    H                               hide or show the heads-up text (timing line, tool panel)
    Escape, the close button        quit
    ==============================  ==========================================================

Mouse buttons and keys become the controller's inputs (trigger, squeeze, the ``b`` undo button, the
``thumbstick`` click, the ``a`` next-tool button) and a grab scaled with the wheel is the two-handed
grab of a headset, so every intent a desktop user makes comes out of the same tools as a headset
user's.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from assets.twin import Twin
from sessions.run import LocalSession, SessionConfig, SessionFactory
from sessions.sim import working_scene
from sessions.tools import PALETTE
from xrcore.input import Picker
from xrcore.types import HandInput, InputState, Pose

if TYPE_CHECKING:
    from xrcore.backends.desktop import DesktopFrame

logger = logging.getLogger(__name__)

#: How far one wheel step moves a held cut along the ray, metres.
DEPTH_STEP_M = 0.005
#: How much one wheel step scales a grabbed twin.
SCALE_STEP = 1.1
#: Half the distance between the two hands of a desktop grab, metres, before the wheel changes it
#: (any distance would do: the twin's scale follows its ratio to this).
GRAB_SPREAD_M = 0.05
#: The hand the mouse is (the other one only helps it grab).
SIDE = "right"


@dataclass
class DesktopHand:
    """Puts the mouse's hand of a desktop frame where a hand would be along its ray.

    The ray stays the ray from the camera through the cursor (picking, the hit cursor and the
    hovered structure are the cursor's); only the hand's position moves along it:

    - just in front of the twin's bounding sphere: a hand reaching for the twin, so a stroke
      drawn on the surface is within reach and one drawn in the air stays in front of the twin;
    - while the section tool's trigger is held: at the depth of the surface point where the press
      began (the twin's centre in empty space), so the cut goes through the point clicked; the
      wheel moves it by :data:`DEPTH_STEP_M` a step;
    - while grabbing (squeeze): two hands, :data:`GRAB_SPREAD_M` either side of the grabbed point
      along the camera's right, that point moving across the view under the cursor; the wheel
      spreads them by :data:`SCALE_STEP` a step, so the headset's two-handed grab scales the twin.

    ``depth``: a held cut's distance from the camera along the ray (m); ``grab_depth``: the grabbed
    point's distance in front of the camera (m); ``spread``: half the distance between the grabbing
    hands (m).
    """

    depth: float | None = None
    grab_depth: float | None = None
    spread: float = GRAB_SPREAD_M
    #: whether the last frame's wheel (turned with a button held) moved a cut or scaled a grab
    wheel_used: bool = False
    _trigger: bool = False
    _squeeze: bool = False

    def place(self, frame: DesktopFrame, session: LocalSession) -> InputState:
        """This frame's hands for ``session``: the mouse's moved along its ray, and the second hand
        of a grab."""
        mouse = frame.inputs.hand(SIDE)
        trigger, squeeze = mouse.trigger >= 0.5, mouse.squeeze >= 0.5
        was_trigger, was_squeeze = self._trigger, self._squeeze
        self._trigger, self._squeeze = trigger, squeeze
        self.wheel_used = False
        if mouse.aim is None:
            self.depth = self.grab_depth = None
            return frame.inputs
        origin = np.asarray(mouse.aim.position, dtype=np.float64)
        ray = mouse.aim.forward()
        distance = self._reach(frame, session, origin, ray, trigger, was_trigger)
        hand = dataclasses.replace(mouse, aim=Pose(_t(origin + ray * distance), mouse.aim.orientation))
        if not squeeze:
            self.grab_depth = None
            return InputState(left=HandInput(), right=hand)
        head = frame.head
        forward = head.forward()
        if not was_squeeze:
            scene = session.scene
            hit = session.picker.pick_scene(scene, origin, ray)
            grabbed = origin + ray * hit.distance_m if hit is not None else scene.twin_center_and_size()[0]
            self.grab_depth = float((grabbed - origin) @ forward)
            self.spread = GRAB_SPREAD_M
        assert self.grab_depth is not None
        self.spread *= SCALE_STEP**frame.held_wheel
        self.wheel_used = self.wheel_used or bool(frame.held_wheel)
        point = origin + ray * (self.grab_depth / max(float(ray @ forward), 1e-6))
        across = head.rotation_matrix()[:, 0] * self.spread
        hand = dataclasses.replace(hand, grip=Pose(_t(point + across), head.orientation))
        other = HandInput(grip=Pose(_t(point - across), head.orientation), squeeze=1.0)
        return InputState(left=other, right=hand)

    def _reach(
        self, frame: DesktopFrame, session: LocalSession, origin: np.ndarray, ray: np.ndarray, trigger: bool, was_trigger: bool
    ) -> float:
        """How far along the ray (m from the camera) the hand is this frame."""
        scene = session.scene
        centre, size = scene.twin_center_and_size()
        centre_along = float((centre - origin) @ ray)
        front = max(0.0, centre_along - size / 2)  # in front of the twin's bounding sphere
        if _tool_this_frame(frame, session) != "section":
            self.depth = None
            return front
        if trigger and not was_trigger:
            hit = session.picker.pick_scene(scene, origin, ray)
            self.depth = hit.distance_m if hit is not None else max(front, centre_along)
        if self.depth is None or not (trigger or was_trigger):
            return front
        self.depth = depth = max(0.0, self.depth + frame.held_wheel * DEPTH_STEP_M)
        self.wheel_used = bool(frame.held_wheel)
        if not trigger:  # the release frame lets the plane go where it was held
            self.depth = None
        return depth


def _tool_this_frame(frame: DesktopFrame, session: LocalSession) -> str:
    """The mouse's tool once ``frame`` is stepped: one chosen in the frame itself (a key or a menu
    click just before a press) is in hand when the press is."""
    chosen = [event.split(":", 2)[2] for event in frame.events if event.startswith(f"tool:{SIDE}:")]
    return chosen[-1] if chosen else session.belt.tool(SIDE).name


def _t(p: np.ndarray) -> tuple[float, float, float]:
    return (float(p[0]), float(p[1]), float(p[2]))


@dataclass
class DesktopRun:
    """What a desktop session did: ``frames`` shown, the renderer's frame statistics ``stats``
    (:meth:`~xrcore.stats.FrameStats.summary`) and every final intent applied (records)."""

    frames: int
    stats: dict[str, Any]
    intents: list[dict[str, Any]]


class DesktopSession:
    """One user at a desktop window working on ``twin``, a frame at a time (see the module docstring).

    Parameters
    ----------
    twin
        The twin; shown as :func:`~sessions.sim.working_scene` places it (upright, 0.4 m across, at
        the origin), as the simulator shows it.
    width, height
        The window's size, pixels.
    samples
        MSAA samples.
    config
        The user's :class:`~sessions.run.SessionConfig` (the mouse's tool is its ``right_tool``).
    session_factory
        Makes the session from (scene, config, picker) instead of :class:`~sessions.run.LocalSession`
        (a consultation's :class:`~sessions.consult.room.ConsultSession`).

    Raises :class:`~xrcore.gl.GLContextError` when no window can be opened. Close it (or use it as a
    context manager) to free the renderer and the window.
    """

    def __init__(
        self,
        twin: Twin,
        *,
        width: int = 1280,
        height: int = 800,
        samples: int = 4,
        config: SessionConfig | None = None,
        session_factory: SessionFactory | None = None,
    ) -> None:
        from xrcore.backends.desktop import DesktopBackend, DesktopConfig  # noqa: PLC0415 - GL only for a window
        from xrcore.render import Renderer  # noqa: PLC0415 - GL only for a window

        self.scene = working_scene(twin)
        self.backend = DesktopBackend(DesktopConfig(width, height, f"medverse - {twin.name}", PALETTE, SIDE))
        self.backend.start()
        try:
            self.backend.look_at(*self.scene.twin_center_and_size())
            self.renderer = Renderer(self.backend.context, self.backend.renderer_config(samples))
            try:
                # the mouse's ray runs along the line of sight: drawn, it would only blot out the cursor
                config = dataclasses.replace(config or SessionConfig(), pointer_rays=False)
                self.session = (session_factory or LocalSession)(self.scene, config, Picker(twin))
            except BaseException:
                self.renderer.close()
                raise
        except BaseException:
            self.backend.stop()
            raise
        self.backend.attach(self.renderer)
        self.scene.show_local_hands = False  # a mouse has no controller to draw
        self.session.frame_stats = self.renderer.stats
        self.hand = DesktopHand()
        self.frames = 0
        self._frames = self.backend.frames()
        self._closed = False

    def step(self) -> bool:
        """Take the window's input and show one frame; False (nothing shown) once the window was
        asked to close (Escape, its close button, :meth:`DesktopBackend.request_close`)."""
        frame = next(self._frames, None)
        if frame is None:
            return False
        t0 = time.perf_counter()
        scene, session = self.scene, self.session
        if "desktop:hud" in frame.events:
            shown = not (session.panels.hud or session.panels.gaze)
            session.panels.hud = session.panels.gaze = session.config.hud = shown
        frame = dataclasses.replace(frame, inputs=self.hand.place(frame, session))
        if frame.held_wheel and not self.hand.wheel_used:  # drawing, say: the wheel zooms as ever
            self.backend.camera.zoom(frame.held_wheel)
        session.step(frame)
        menu = self.backend.menu_labels(frame.views[0], session.belt.tool(SIDE).name, scene.label_style)
        scene.overlay_labels = [*scene.overlay_labels, *menu]
        self.renderer.draw(scene, frame.views)
        self.backend.submit(frame)
        self.renderer.stats.record_frame((time.perf_counter() - t0) * 1000.0)
        self.frames += 1
        return True

    def run(self, *, max_frames: int | None = None, max_seconds: float | None = None) -> DesktopRun:
        """Step until the window is closed, ``max_frames`` frames were shown or ``max_seconds``
        passed; returns what happened."""
        start = time.perf_counter()
        while max_frames is None or self.frames < max_frames:
            if max_seconds is not None and time.perf_counter() - start >= max_seconds:
                break
            if not self.step():
                break
        self.session.close()  # a measurement still measuring along the surface is applied
        return DesktopRun(self.frames, self.renderer.stats.summary(), [i.record() for i in self.session.workspace.applied])

    def close(self) -> None:
        """Free the renderer, then the window; idempotent."""
        if self._closed:
            return
        self._closed = True
        self.session.close()
        try:
            self.backend.context.make_current()
            self.renderer.close()
        finally:
            self.backend.stop()

    def __enter__(self) -> DesktopSession:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def view_on_desktop(
    twin: Twin,
    *,
    width: int = 1280,
    height: int = 800,
    samples: int = 4,
    max_frames: int | None = None,
    max_seconds: float | None = None,
    config: SessionConfig | None = None,
) -> DesktopRun:
    """Open a window on ``twin`` and work on it until the window is closed (or ``max_frames``
    frames were shown, or ``max_seconds`` passed). Raises :class:`~xrcore.gl.GLContextError` when
    no window can be opened (no display)."""
    with DesktopSession(twin, width=width, height=height, samples=samples, config=config) as desktop:
        run = desktop.run(max_frames=max_frames, max_seconds=max_seconds)
    logger.info("desktop session on %r: %d frames, %d intents", twin.name, run.frames, len(run.intents))
    return run
