"""The desktop window: a GLFW window, the orbit camera that looks through it, and a menu drawn in it.

Used by :class:`xrcore.backends.desktop.DesktopBackend` (``medverse view`` without a headset):

- :class:`OrbitCamera`: a camera on a sphere round a target point: orbit, pan, zoom, and the ray from
  the camera through any pixel of the window (what a mouse points along).
- :class:`DesktopWindow`: the window and its GL context; it records the mouse and keyboard as
  :class:`WindowEvent` in the order they happened (a click shorter than a frame keeps both its press
  and its release), each with the cursor where it was then.
- :class:`DesktopMenu`: a row of clickable entries along the top of the window, drawn as pinned
  labels (the scene's label style and the renderer's label pass) that the camera places; it knows
  each entry's rectangle on the screen, so a click finds its entry.
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from xrcore.gl import GLContextError
from xrcore.motion import look_rotation
from xrcore.render.label_pass import PLATE_PAD, glyph_atlas
from xrcore.render.labels import billboard_axes
from xrcore.scene import Color, Label, LabelStyle
from xrcore.types import Fov, Pose, View

logger = logging.getLogger(__name__)

#: Radians of orbit per pixel of mouse drag.
DRAG_RADIANS_PER_PIXEL = 0.01
#: Distance factor per scroll step towards (and, inverted, away from) the target.
ZOOM_STEP = 0.9
#: Nearest and farthest the camera comes to its target, metres.
MIN_DISTANCE_M, MAX_DISTANCE_M = 0.05, 5.0
#: Pitch limit, radians (short of straight up or down, where "up" would flip).
MAX_PITCH = 1.5


@dataclass
class OrbitCamera:
    """A camera on a sphere round ``target`` (world m): ``yaw`` and ``pitch`` radians, ``distance``
    m, ``vertical_fov`` radians. Yaw 0 looks along -Z from the +Z side; pitch > 0 looks down."""

    target: tuple[float, float, float] = (0.0, 0.0, 0.0)
    distance: float = 0.5
    yaw: float = 0.0
    pitch: float = 0.15
    vertical_fov: float = math.radians(50.0)

    def eye(self) -> tuple[float, float, float]:
        """The camera's position, world metres."""
        tx, ty, tz = self.target
        c = math.cos(self.pitch)
        return (
            tx + self.distance * c * math.sin(self.yaw),
            ty + self.distance * math.sin(self.pitch),
            tz + self.distance * c * math.cos(self.yaw),
        )

    def pose(self) -> Pose:
        """Where the camera is and where it looks (-Z towards the target, +Y up)."""
        eye = self.eye()
        return Pose(eye, look_rotation(eye, self.target))

    def fov(self, width: int, height: int) -> Fov:
        """The symmetric field of view of a ``width`` x ``height`` pixel image (square pixels)."""
        half_v = self.vertical_fov / 2
        half_h = math.atan(math.tan(half_v) * width / max(height, 1))
        return Fov(-half_h, half_h, half_v, -half_v)

    def view(self, width: int, height: int) -> View:
        """The :class:`~xrcore.types.View` for a ``width`` x ``height`` pixel window."""
        return View(self.pose(), self.fov(width, height), width, height)

    def orbit(self, dx: float, dy: float) -> None:
        """Turn round the target by a mouse drag of ``dx``, ``dy`` pixels (right and down positive):
        the twin turns with the mouse."""
        self.yaw -= dx * DRAG_RADIANS_PER_PIXEL
        self.pitch = min(MAX_PITCH, max(-MAX_PITCH, self.pitch + dy * DRAG_RADIANS_PER_PIXEL))

    def pan(self, dx: float, dy: float, height: int) -> None:
        """Slide the camera and its target across the view by a drag of ``dx``, ``dy`` pixels of a
        ``height`` pixel window: what lies at the target's depth follows the mouse."""
        metres_per_pixel = 2.0 * self.distance * math.tan(self.vertical_fov / 2) / max(height, 1)
        r = self.pose().rotation_matrix()
        shift = (-dx * r[:, 0] + dy * r[:, 1]) * metres_per_pixel
        self.target = (self.target[0] + float(shift[0]), self.target[1] + float(shift[1]), self.target[2] + float(shift[2]))

    def zoom(self, steps: float) -> None:
        """Move closer by ``steps`` scroll steps (negative: further), within 5 cm to 5 m."""
        self.distance = min(MAX_DISTANCE_M, max(MIN_DISTANCE_M, self.distance * ZOOM_STEP**steps))

    def ray(self, x: float, y: float, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """The ray from the camera through window point (``x``, ``y``) pixels (x right, y down, (0, 0)
        the top-left corner of the top-left pixel) of a ``width`` x ``height`` window: origin (3,) m
        and unit direction (3,), world."""
        fov = self.fov(width, height)
        tl, tr = math.tan(fov.angle_left), math.tan(fov.angle_right)
        tu, td = math.tan(fov.angle_up), math.tan(fov.angle_down)
        local = np.array([tl + (tr - tl) * x / max(width, 1), tu - (tu - td) * y / max(height, 1), -1.0])
        pose = self.pose()
        direction = pose.rotation_matrix() @ local
        return np.asarray(pose.position, dtype=np.float64), direction / np.linalg.norm(direction)


# --- the window ---------------------------------------------------------------------------------------

Button = Literal["left", "right", "middle"]
_BUTTONS: dict[int, Button] = {0: "left", 1: "right", 2: "middle"}
#: Keys known by name (the rest by the character they type in the keyboard's layout).
_NAMED_KEYS = {
    "ESCAPE": "escape", "DELETE": "delete", "BACKSPACE": "backspace", "TAB": "tab", "F1": "f1", "PAUSE": "pause",
    "KP_1": "1", "KP_2": "2", "KP_3": "3", "KP_4": "4", "KP_5": "5", "KP_6": "6", "KP_7": "7", "KP_8": "8", "KP_9": "9",
}  # fmt: skip


@dataclass(frozen=True)
class WindowEvent:
    """One thing the mouse or keyboard did, in window pixels (x right, y down).

    ``kind``: ``"move"`` (the cursor is now at ``x``, ``y``), ``"leave"`` (it left the window),
    ``"press"``/``"release"`` of ``button`` (at ``x``, ``y``), ``"scroll"`` of ``steps`` wheel steps
    (positive: away from the user) or ``"key"`` (``key`` pressed: ``"z"``, ``"1"``, ``"escape"``,
    ``"delete"``...). ``mods``: modifier keys held then (``"shift"``, ``"ctrl"``, ``"alt"``, ``"super"``).
    """

    kind: Literal["move", "leave", "press", "release", "scroll", "key"]
    x: float
    y: float
    button: Button | None = None
    key: str = ""
    steps: float = 0.0
    mods: frozenset[str] = frozenset()


def _glfw_reason(message: Warning | str) -> str:
    """GLFW's own words from a pyGLFW warning such as ``(65550) b'X11: Failed to open display :9'``."""
    text = str(message)
    found = re.fullmatch(r"\(\d+\) b['\"](.*)['\"]", text.strip())
    return found.group(1) if found else text


class DesktopWindow:
    """A GLFW window with an OpenGL context, and the input it receives.

    Raises :class:`~xrcore.gl.GLContextError` when no window can be opened (no display, or GLFW's
    reason in one line). :meth:`close` destroys it.
    """

    def __init__(self, width: int, height: int, title: str) -> None:
        import glfw  # noqa: PLC0415 - a windowing library only for a window

        from xrcore.gl.context import create_context  # noqa: PLC0415 - EGL loads only for a window

        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise GLContextError(
                "no display for a window: set DISPLAY (X11) or WAYLAND_DISPLAY, or connect a headset (--backend openxr)"
            )
        self._glfw = glfw
        # GLFW warns, then the context maker fails: one error, with GLFW's reason in it
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", glfw.GLFWError)
            try:
                self.context = create_context("glfw", width=width, height=height, title=title)
            except GLContextError as exc:
                reasons = "; ".join(_glfw_reason(w.message) for w in caught if issubclass(w.category, glfw.GLFWError))
                if not reasons:
                    raise
                display = os.environ.get("WAYLAND_DISPLAY") or os.environ.get("DISPLAY")
                raise GLContextError(f"cannot open a window on display {display!r}: {reasons}") from exc
        for w in caught:
            logger.debug("glfw: %s", w.message)
        self._events: list[WindowEvent] = []
        x, y = glfw.get_cursor_pos(self.window)
        # the cursor as the events left it: X11's cursor query answers where the pointer is now,
        # which is not where it was when a queued click happened
        self._cursor = (float(x), float(y))
        glfw.set_cursor_pos_callback(self.window, self._on_move)
        glfw.set_cursor_enter_callback(self.window, self._on_enter)
        glfw.set_mouse_button_callback(self.window, self._on_button)
        glfw.set_scroll_callback(self.window, self._on_scroll)
        glfw.set_key_callback(self.window, self._on_key)

    @property
    def window(self) -> Any:
        """The GLFW window handle."""
        return self.context.window

    @property
    def cursor(self) -> tuple[float, float]:
        """Where the last event left the cursor, window pixels."""
        return self._cursor

    def _mods(self, bits: int) -> frozenset[str]:
        glfw = self._glfw
        names = ((glfw.MOD_SHIFT, "shift"), (glfw.MOD_CONTROL, "ctrl"), (glfw.MOD_ALT, "alt"), (glfw.MOD_SUPER, "super"))
        return frozenset(name for bit, name in names if bits & bit)

    def _on_move(self, _window: Any, x: float, y: float) -> None:
        self._cursor = (float(x), float(y))
        self._events.append(WindowEvent("move", *self._cursor))

    def _on_enter(self, _window: Any, entered: int) -> None:
        if not entered:  # no motion arrives from outside (unless a button is held): say it left
            self._events.append(WindowEvent("leave", *self._cursor))

    def _on_button(self, _window: Any, button: int, action: int, mods: int) -> None:
        name = _BUTTONS.get(button)
        if name is None or action not in (self._glfw.PRESS, self._glfw.RELEASE):
            return
        kind: Literal["press", "release"] = "press" if action == self._glfw.PRESS else "release"
        self._events.append(WindowEvent(kind, *self._cursor, button=name, mods=self._mods(mods)))

    def _on_scroll(self, _window: Any, _dx: float, dy: float) -> None:
        if dy:
            self._events.append(WindowEvent("scroll", *self._cursor, steps=float(dy)))

    def _on_key(self, _window: Any, key: int, scancode: int, action: int, mods: int) -> None:
        if action != self._glfw.PRESS:  # held keys repeat: one press is one action
            return
        name = self.key_name(key, scancode)
        if name:
            self._events.append(WindowEvent("key", *self._cursor, key=name, mods=self._mods(mods)))

    def key_name(self, key: int, scancode: int) -> str:
        """A key's name: the character it types in the keyboard's layout (``"z"`` where the layout
        puts it, so Ctrl+Z is where the user sees Z), or a name for keys without one."""
        glfw = self._glfw
        for name, value in _NAMED_KEYS.items():
            if getattr(glfw, f"KEY_{name}", None) == key:
                return value
        typed = glfw.get_key_name(key, scancode)
        return typed.lower() if typed else ""

    def poll(self) -> list[WindowEvent]:
        """Take the window system's pending events; returns what happened since the last poll."""
        self._glfw.poll_events()
        events, self._events = self._events, []
        return events

    @property
    def closing(self) -> bool:
        """The window was asked to close (its close button, or :meth:`request_close`)."""
        return bool(self._glfw.window_should_close(self.window))

    def request_close(self) -> None:
        """Ask the window to close, as its close button does."""
        self._glfw.set_window_should_close(self.window, True)

    def size(self) -> tuple[int, int]:
        """The window's size in the cursor's units (screen pixels)."""
        w, h = self._glfw.get_window_size(self.window)
        return int(w), int(h)

    def framebuffer_size(self) -> tuple[int, int]:
        """The window's image size, pixels (larger than :meth:`size` on a high-density screen)."""
        w, h = self._glfw.get_framebuffer_size(self.window)
        return int(w), int(h)

    def swap(self) -> None:
        """Show the back buffer."""
        self.context.swap()

    def close(self) -> None:
        """Destroy the window and its context; idempotent."""
        self.context.close()


# --- the menu -----------------------------------------------------------------------------------------

#: The menu floats this far in front of the camera (m): nearer than anything it frames (so the label
#: layout places it before the others), beyond the renderer's near plane.
MENU_DEPTH_M = 0.1
#: Space between two entries and above the row, line heights.
MENU_GAP_LINES = 0.8
MENU_COLOR: Color = (0.78, 0.78, 0.8, 1.0)
MENU_CURRENT_COLOR: Color = (1.0, 0.75, 0.15, 1.0)
#: A plate's height, line units: the text line and its margins (as the label pass draws it).
_PLATE_HEIGHT = 1.0 + 2 * PLATE_PAD


class DesktopMenu:
    """A row of clickable entries (``entries``: their names) along the top of a window (the bottom
    is where a session's panels float below the line of sight).

    Each frame :meth:`labels` lays them out for the camera's view as pinned labels, numbered from 1
    (the keys that choose them), the current one in :data:`MENU_CURRENT_COLOR`; :meth:`entry_at`
    then says which entry a click at a pixel of that view lands on.
    """

    def __init__(self, entries: Sequence[str]) -> None:
        self.entries = tuple(entries)
        self.texts = tuple(f"{i + 1} {name}" if i < 9 else name for i, name in enumerate(self.entries))
        #: (N, 4) pixel rectangles (x0, y0, x1, y1; y down) of the plates of the last layout
        self.rects = np.full((len(self.entries), 4), np.nan)
        self._half_widths = np.array([glyph_atlas().layout(t)[1] / 2 + PLATE_PAD for t in self.texts])

    def labels(self, view: View, current: str | None, style: LabelStyle) -> list[Label]:
        """The entries as pinned labels for ``view``, the one named ``current`` highlighted, sized by
        the scene's label ``style``; remembers where they are on the screen."""
        if not self.entries:
            return []
        r = view.pose.rotation_matrix()
        eye = np.asarray(view.pose.position, dtype=np.float64)
        right, up, forward = r[:, 0], r[:, 1], -r[:, 2]
        tl, tr = math.tan(view.fov.angle_left), math.tan(view.fov.angle_right)
        tu, td = math.tan(view.fov.angle_up), math.tan(view.fov.angle_down)
        angular = style.size == "angular"
        size = 2 * math.tan(math.radians(style.angle) / 2) if angular else style.height
        # pixels per line unit in the middle of the view (the row is laid out with these; off-axis
        # entries come out a little larger, which the gaps absorb)
        line_px = size * (1.0 if angular else 1.0 / MENU_DEPTH_M) * view.height / (tu - td)
        widths = 2 * self._half_widths * line_px
        gap = MENU_GAP_LINES * line_px
        total = float(widths.sum() + gap * (len(widths) - 1))
        lefts = (view.width - total) / 2 + np.r_[0.0, np.cumsum(widths[:-1] + gap)]
        centres = lefts + widths / 2
        bottom = gap + _PLATE_HEIGHT * line_px  # a label's anchor is the middle of its plate's bottom
        tan_x = tl + (tr - tl) * centres / view.width
        tan_y = tu - (tu - td) * bottom / view.height
        anchors = eye + MENU_DEPTH_M * (forward + tan_x[:, None] * right + tan_y * up)
        self.rects = self._rects(anchors, view, size if angular else None, style.height)
        return [
            Label(text, (float(a[0]), float(a[1]), float(a[2])),
                  MENU_CURRENT_COLOR if name == current else MENU_COLOR, pinned=True)
            for text, name, a in zip(self.texts, self.entries, anchors, strict=True)
        ]  # fmt: skip

    def _rects(self, anchors: np.ndarray, view: View, angular_size: float | None, height_m: float) -> np.ndarray:
        """(N, 4) pixel rectangles of the plates at ``anchors`` as the label shader draws them:
        billboards facing the camera, upright with it, one line ``angular_size`` x distance (or
        ``height_m``) tall."""
        r = view.pose.rotation_matrix()
        eye = np.asarray(view.pose.position, dtype=np.float64)
        b_right, b_up, dist = billboard_axes(anchors, eye, r[:, 1], r[:, 0])
        unit = angular_size * dist if angular_size is not None else np.full(len(anchors), height_m)
        xs = self._half_widths[:, None] * np.array([-1.0, 1.0, -1.0, 1.0])
        ys = np.array([0.0, 0.0, 1.0, 1.0]) * _PLATE_HEIGHT
        offsets = b_right[:, None, :] * xs[..., None] + b_up[:, None, :] * ys[None, :, None]  # (N, 4 corners, 3)
        corners = anchors[:, None, :] + offsets * unit[:, None, None]
        vp = view.fov.projection() @ view.view_matrix()
        clip = corners @ vp[:3, :3].T + vp[:3, 3]
        w = np.maximum(corners @ vp[3, :3] + vp[3, 3], 1e-9)
        px = (clip[..., 0] / w + 1.0) * view.width / 2
        py = (1.0 - clip[..., 1] / w) * view.height / 2
        return np.stack([px.min(-1), py.min(-1), px.max(-1), py.max(-1)], axis=-1)

    def entry_at(self, x: float, y: float) -> str | None:
        """The entry whose plate holds pixel (``x``, ``y``) of the last laid-out view, or None."""
        inside = (self.rects[:, 0] <= x) & (x <= self.rects[:, 2]) & (self.rects[:, 1] <= y) & (y <= self.rects[:, 3])
        found = np.flatnonzero(inside)
        return self.entries[int(found[0])] if len(found) else None
