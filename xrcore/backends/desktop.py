"""The desktop backend: a window, and its mouse and keyboard as one hand on the twin.

A source of frames like the headset and the simulator (:class:`~xrcore.backends.base.Backend`), so
the session loop that runs them runs a desktop user too. Each :class:`DesktopFrame` has one view (the
:class:`~xrcore.render.desktop.OrbitCamera`'s, which is also the head) and the mouse as the hand on
``config.side``:

==========================  ===============================================================
aim                         a ray from the camera through the cursor (-Z along it): picking,
                            hit cursors and every tool work as with a controller; none while
                            the cursor is outside the window and no button is held
trigger                     1 while the left button is held (unless the press was on the
                            menu, or with Alt)
squeeze                     1 while the right button is held (a grab)
buttons, one frame a key    Ctrl+Z or U: ``"b"`` (undo); Delete, Backspace or X:
                            ``"thumbstick"`` (the tools' delete, clear or erase); Tab: ``"a"``
                            (next tool)
==========================  ===============================================================

The hand starts at the camera, so a scene should not draw it (``show_local_hands`` off: its ray,
seen end-on, would be a blot round the cursor).

The camera: middle-drag or Alt+left-drag orbits, Shift+middle-drag pans, the wheel zooms, R resets
the view. While the left or right button is held the wheel is the session's instead
(:attr:`DesktopFrame.held_wheel`: push a held plane deeper, scale a grabbed twin). Keys 1-9 and a
click on the menu (:meth:`DesktopBackend.menu_labels`, drawn along the top of the window) choose
the menu's entries: the frame's events then hold ``"tool:<side>:<entry>"``; H gives the event
``"desktop:hud"``, F1 the event ``"session:hint"`` (a training step's hint), P
``"session:pause"`` (pause or resume training). Escape or the window's close button ends :meth:`~DesktopBackend.frames`.

Input arrives between frames, in bursts: a frame takes the window's events in order up to the first
that changes a button, and a release starts a frame of its own (so a click shorter than a frame
still gives one frame pressed and one released, and a drag's every stretch is seen with its button
down, each where the cursor was then); the rest wait for the next frame.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from xrcore.backends.base import Backend, BackendError, BackendInfo
from xrcore.motion import quat_from_matrix
from xrcore.scene import Label, LabelStyle
from xrcore.types import HINT_EVENT, PAUSE_EVENT, FrameState, HandInput, InputState, Pose, View

if TYPE_CHECKING:
    from xrcore.render.desktop import DesktopWindow, WindowEvent
    from xrcore.render.renderer import RendererConfig, StereoMode

logger = logging.getLogger(__name__)

#: Keys that stand for a controller button, held for one frame (Touch names, as OpenXR reports them).
KEY_BUTTONS: dict[str, str] = {
    "ctrl+z": "b", "u": "b", "delete": "thumbstick", "backspace": "thumbstick", "x": "thumbstick", "tab": "a",
}  # fmt: skip
#: The camera stands this many times the twin's diagonal from its centre: its bounding sphere then
#: spans about 49 degrees, the whole twin in a 50 degree view from any side.
FRAMING = 1.2
#: Display rate assumed when the monitor does not say, Hz.
DEFAULT_RATE_HZ = 60.0


@dataclass
class DesktopConfig:
    """Desktop settings: the window's ``width`` x ``height`` (pixels) and ``title``; ``menu``: the
    menu's entries (keys 1-9 choose them); ``side``: which hand the mouse is (``"right"``)."""

    width: int = 1280
    height: int = 800
    title: str = "medverse"
    menu: tuple[str, ...] = ()
    side: str = "right"

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ValueError(f"window size must be positive, got {self.width}x{self.height}")
        if self.side not in ("left", "right"):
            raise ValueError(f"side must be 'left' or 'right', got {self.side!r}")


@dataclass
class DesktopFrame(FrameState):
    """A frame from the desktop: a :class:`~xrcore.types.FrameState` and what only a mouse has.

    ``cursor``: window pixels (x right, y down), None outside the window; ``held_wheel``: wheel steps
    turned this frame while the left or right button was held (positive: away from the user); the
    camera did not zoom for them.
    """

    cursor: tuple[float, float] | None = None
    held_wheel: float = 0.0


@dataclass
class _Mouse:
    """What each mouse button is doing: ``left`` ``"tool"``, ``"orbit"`` or ``"menu"``; ``middle``
    ``"orbit"`` or ``"pan"``; ``right`` ``"grab"``; None when up. ``cursor``: where the last event
    left the cursor (window pixels), ``inside``: in the window. What the frame being made collects:
    ``events``, ``buttons`` pressed for it, ``wheel`` steps turned with a button held."""

    left: str | None = None
    middle: str | None = None
    right: str | None = None
    cursor: tuple[float, float] = (0.0, 0.0)
    inside: bool = True
    events: list[str] = field(default_factory=list)
    buttons: set[str] = field(default_factory=set)
    wheel: float = 0.0

    @property
    def held(self) -> bool:
        return any((self.left, self.middle, self.right))


class DesktopBackend(Backend):
    """A window as a backend: see the module docstring. ``start()`` opens the window (raising
    :class:`~xrcore.gl.GLContextError` without a display), :meth:`look_at` frames the twin."""

    def __init__(self, config: DesktopConfig | None = None) -> None:
        from xrcore.render.desktop import DesktopMenu, OrbitCamera  # noqa: PLC0415 - GL only once a window is wanted

        self.config = config or DesktopConfig()
        self.camera = OrbitCamera()
        self.home = dataclasses.replace(self.camera)
        self.menu = DesktopMenu(self.config.menu)
        self.window: DesktopWindow | None = None
        self.rate_hz = DEFAULT_RATE_HZ
        self._mouse = _Mouse()
        self._queue: deque[WindowEvent] = deque()
        self._pulsed = False
        self._closing = False
        self._pending: DesktopFrame | None = None

    # --- Backend ------------------------------------------------------------------------------------

    @property
    def info(self) -> BackendInfo:
        return BackendInfo("desktop", 1, self.config.width, self.config.height, self.rate_hz)

    def start(self) -> None:
        if self.window is not None:
            return
        import glfw  # noqa: PLC0415 - a windowing library only for a window

        from xrcore.render.desktop import DesktopWindow  # noqa: PLC0415 - GL only once a window is wanted

        self.window = DesktopWindow(self.config.width, self.config.height, self.config.title)
        self.context = self.window.context
        monitor = glfw.get_primary_monitor()
        mode = glfw.get_video_mode(monitor) if monitor else None
        self.rate_hz = float(mode.refresh_rate) if mode is not None and mode.refresh_rate > 0 else DEFAULT_RATE_HZ
        self._mouse.cursor = self.window.cursor
        self._closing = False
        logger.info("desktop window %dx%d at %g Hz", self.config.width, self.config.height, self.rate_hz)

    def renderer_config(self, samples: int = 4) -> RendererConfig:
        """A :class:`~xrcore.render.RendererConfig` for this window (its size, ``samples`` MSAA
        samples, its display rate, and a stereo mode that draws the one view cheaply)."""
        from xrcore.render import RendererConfig  # noqa: PLC0415 - GL only once a window is wanted

        if self.context is None:
            raise BackendError("call start() before renderer_config()")
        stereo: StereoMode = "auto" if "GL_OVR_multiview2" in self.context.extensions else "two-pass"
        return RendererConfig(width=self.config.width, height=self.config.height, samples=samples, stereo=stereo,
                              rate_hz=self.rate_hz)  # fmt: skip

    @property
    def _window(self) -> DesktopWindow:
        if self.window is None:
            raise BackendError("the desktop backend is not started: call start() first")
        return self.window

    def frames(self) -> Iterator[DesktopFrame]:
        window = self._window
        start = time.perf_counter()
        index = 0
        while True:
            self._take_events()
            if self._closing or window.closing:
                return
            fb_w, fb_h = window.framebuffer_size()
            view = self.camera.view(fb_w or self.config.width, fb_h or self.config.height)
            hand = self._hand(view)
            m = self._mouse
            inputs = InputState(right=hand) if self.config.side == "right" else InputState(left=hand)
            frame = DesktopFrame(
                index=index, predicted_display_time=time.perf_counter() - start, period=1.0 / self.rate_hz,
                views=[view], head=view.pose, inputs=inputs, events=tuple(m.events),
                cursor=m.cursor if hand.aim is not None else None, held_wheel=m.wheel,
            )  # fmt: skip
            self._pulsed = bool(m.buttons)
            m.events, m.buttons, m.wheel = [], set(), 0.0
            self._pending = frame
            yield frame
            if self._pending is not None:
                raise BackendError(f"frame {frame.index} was not submitted before the next was requested")
            index += 1

    def submit(self, frame: FrameState) -> None:
        if self._pending is None or frame.index != self._pending.index:
            raise BackendError(f"submit() got frame {frame.index}, expected the frame just yielded")
        self._pending = None
        if self.renderer is not None:
            self.renderer.present(*self._window.framebuffer_size(), eye=0)
        self._window.swap()

    def stop(self) -> None:
        if self.window is not None:
            self.window.close()
        self.window = None
        self.context = None

    # --- the desktop's own ----------------------------------------------------------------------------

    def look_at(self, centre: np.ndarray | Sequence[float], size: float) -> None:
        """Frame a twin whose bounds' centre is ``centre`` (3,) world m and diagonal ``size`` m; R
        comes back to this view."""
        self.camera.target = (float(centre[0]), float(centre[1]), float(centre[2]))
        self.camera.distance = max(0.3, FRAMING * float(size))
        self.home = dataclasses.replace(self.camera)

    def reset_view(self) -> None:
        """Put the camera back where :meth:`look_at` put it (the R key)."""
        self.camera = dataclasses.replace(self.home)

    def menu_labels(self, view: View, current: str | None, style: LabelStyle) -> list[Label]:
        """The menu as pinned labels for ``view`` (a frame's), entry ``current`` highlighted; a click
        in the next frames finds its entry where these are drawn."""
        return self.menu.labels(view, current, style)

    def request_close(self) -> None:
        """End :meth:`frames` after the current frame, as Escape does."""
        self._closing = True

    # --- input ----------------------------------------------------------------------------------------

    def _take_events(self) -> None:
        """Apply the window's events in order, up to and including the first that changes a button or
        presses one for a frame. A release waits for a frame of its own when this frame moved the
        cursor (a drag's last stretch is seen with the button still down), and a key standing for a
        button waits while the last frame pressed one (two presses stay two presses)."""
        self._queue.extend(self._window.poll())
        taken = 0
        while self._queue:
            event = self._queue[0]
            if event.kind == "release" and taken:
                break
            if event.kind == "key" and self._key_button(event) is not None and self._pulsed:
                break
            self._queue.popleft()
            taken += 1
            if self._apply(event):
                break

    def _key_button(self, event: WindowEvent) -> str | None:
        combo = f"ctrl+{event.key}" if "ctrl" in event.mods else event.key
        return KEY_BUTTONS.get(combo)

    def _apply(self, event: WindowEvent) -> bool:
        """Apply one window event; True when it changed what the hand holds (the frame ends there)."""
        m = self._mouse
        x0, y0 = m.cursor
        m.cursor = (event.x, event.y)
        m.inside = event.kind != "leave"
        if event.kind == "move":
            dx, dy = event.x - x0, event.y - y0
            if "orbit" in (m.left, m.middle):
                self.camera.orbit(dx, dy)
            elif m.middle == "pan":
                self.camera.pan(dx, dy, self._window.size()[1])
            return False
        if event.kind == "leave":
            return False
        if event.kind == "scroll":
            if m.left == "tool" or m.right == "grab":
                m.wheel += event.steps
            else:
                self.camera.zoom(event.steps)
            return False
        if event.kind == "key":
            return self._key(event)
        pressed = event.kind == "press"
        if event.button == "left":
            was = m.left
            if not pressed:
                m.left = None
                return was == "tool"
            entry = self._menu_entry(event.x, event.y)
            if entry is not None:
                m.left = "menu"
                m.events.append(f"tool:{self.config.side}:{entry}")
                return False
            m.left = "orbit" if "alt" in event.mods else "tool"
            return m.left == "tool"
        if event.button == "middle":
            m.middle = ("pan" if "shift" in event.mods else "orbit") if pressed else None
            return False
        m.right = "grab" if pressed else None
        return True

    def _key(self, event: WindowEvent) -> bool:
        m = self._mouse
        button = self._key_button(event)
        if button is not None:
            m.buttons.add(button)
            return True
        if "ctrl" in event.mods:
            return False
        key = event.key
        if key == "escape":
            self._closing = True
        elif key == "r":
            self.reset_view()
        elif key == "h":
            m.events.append("desktop:hud")
        elif key == "f1":
            m.events.append(HINT_EVENT)
        elif key in ("p", "pause"):
            m.events.append(PAUSE_EVENT)
        elif key.isdigit() and 1 <= int(key) <= min(9, len(self.config.menu)):
            m.events.append(f"tool:{self.config.side}:{self.config.menu[int(key) - 1]}")
        return False

    def _menu_entry(self, x: float, y: float) -> str | None:
        """The menu entry under window point (``x``, ``y``): the menu's rectangles are in the view's
        (framebuffer) pixels."""
        w, h = self._window.size()
        fb_w, fb_h = self._window.framebuffer_size()
        return self.menu.entry_at(x * fb_w / max(w, 1), y * fb_h / max(h, 1))

    def _hand(self, view: View) -> HandInput:
        """The mouse as a hand this frame (see the module docstring)."""
        m = self._mouse
        x, y = m.cursor
        w, h = self._window.size()
        if not m.held and not (m.inside and 0 <= x < w and 0 <= y < h):
            return HandInput()
        origin, direction = self.camera.ray(x, y, w, h)
        aim = Pose((float(origin[0]), float(origin[1]), float(origin[2])), aim_orientation(direction, view.pose))
        return HandInput(aim=aim, trigger=1.0 if m.left == "tool" else 0.0, squeeze=1.0 if m.right == "grab" else 0.0,
                         buttons=frozenset(m.buttons))  # fmt: skip


def aim_orientation(direction: np.ndarray, camera: Pose) -> tuple[float, float, float, float]:
    """An orientation whose -Z is ``direction`` (3,) and whose +Y is as near the ``camera``'s up as
    can be (so a plane held along the ray stands square to the screen)."""
    f = np.asarray(direction, dtype=np.float64)
    f = f / np.linalg.norm(f)
    r = camera.rotation_matrix()
    right = np.cross(f, r[:, 1])
    norm = float(np.linalg.norm(right))
    right = right / norm if norm > 1e-9 else r[:, 0]
    up = np.cross(right, f)
    return quat_from_matrix(np.column_stack([right, up, -f]))


__all__ = ["KEY_BUTTONS", "DesktopBackend", "DesktopConfig", "DesktopFrame", "aim_orientation"]
