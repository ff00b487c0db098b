"""Looking at a twin without a headset: a GLFW window with a mouse-driven orbit camera.

Left-drag orbits round the twin, the scroll wheel moves closer or further, Escape (or the window's
close button) closes the window. The window shows the renderer's left eye (a single view, rendered
into both layers).

:class:`DesktopViewer` is the window and its loop one frame at a time (what tests drive);
:func:`view_in_window` runs it until it is closed or a frame or time limit is reached (what
``medverse view`` calls).
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
import warnings
from dataclasses import dataclass
from typing import Any

from xrcore.gl import GLContextError
from xrcore.motion import look_rotation
from xrcore.scene import Scene
from xrcore.types import Fov, Pose, View

logger = logging.getLogger(__name__)

#: Radians of orbit per pixel of mouse drag.
DRAG_RADIANS_PER_PIXEL = 0.01
#: Distance factor per scroll step towards (and, inverted, away from) the twin.
ZOOM_STEP = 0.9


@dataclass
class OrbitCamera:
    """A camera on a sphere round ``target`` (m): ``yaw`` and ``pitch`` radians, ``distance`` m."""

    target: tuple[float, float, float] = (0.0, 0.0, 0.0)
    distance: float = 0.5
    yaw: float = 0.0
    pitch: float = 0.15
    vertical_fov: float = math.radians(50.0)

    def view(self, width: int, height: int) -> View:
        """The :class:`~xrcore.types.View` for a ``width`` x ``height`` pixel window."""
        tx, ty, tz = self.target
        c = math.cos(self.pitch)
        eye = (
            tx + self.distance * c * math.sin(self.yaw),
            ty + self.distance * math.sin(self.pitch),
            tz + self.distance * c * math.cos(self.yaw),
        )
        half_v = self.vertical_fov / 2
        half_h = math.atan(math.tan(half_v) * width / max(height, 1))
        return View(Pose(eye, look_rotation(eye, self.target)), Fov(-half_h, half_h, half_v, -half_v), width, height)

    def drag(self, dx: float, dy: float) -> None:
        """Orbit by a mouse drag of ``dx``, ``dy`` pixels (right and down positive)."""
        self.yaw -= dx * DRAG_RADIANS_PER_PIXEL
        self.pitch = min(1.5, max(-1.5, self.pitch + dy * DRAG_RADIANS_PER_PIXEL))

    def zoom(self, steps: float) -> None:
        """Move closer by ``steps`` scroll steps (negative: further), within 5 cm to 5 m."""
        self.distance = min(5.0, max(0.05, self.distance * ZOOM_STEP**steps))


def _glfw_reason(message: Warning | str) -> str:
    """GLFW's own words from a pyGLFW warning such as ``(65550) b'X11: Failed to open display :9'``."""
    text = str(message)
    found = re.fullmatch(r"\(\d+\) b['\"](.*)['\"]", text.strip())
    return found.group(1) if found else text


class DesktopViewer:
    """A window on ``scene``: orbit camera, renderer and input, stepped one frame at a time.

    Raises :class:`~xrcore.gl.GLContextError` when no window can be opened (no display). Close it
    (or use it as a context manager) to free the renderer, the context and the window.
    """

    def __init__(self, scene: Scene, *, width: int = 1280, height: int = 800, samples: int = 4) -> None:
        import glfw  # desktop only: imported when a window is opened

        from xrcore.gl.context import create_context
        from xrcore.render.renderer import Renderer

        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise GLContextError(
                "no display for a window: set DISPLAY (X11) or WAYLAND_DISPLAY, or connect a headset (--backend openxr)"
            )
        self._glfw = glfw
        self.scene = scene
        self.width, self.height = width, height
        # GLFW warns, then the context maker fails: one error, with GLFW's reason in it
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", glfw.GLFWError)
            try:
                self.context = create_context("glfw", width=width, height=height, title=f"medverse - {scene.twin.name}")
            except GLContextError as exc:
                reasons = "; ".join(_glfw_reason(w.message) for w in caught if issubclass(w.category, glfw.GLFWError))
                if not reasons:
                    raise
                display = os.environ.get("WAYLAND_DISPLAY") or os.environ.get("DISPLAY")
                raise GLContextError(f"cannot open a window on display {display!r}: {reasons}") from exc
        for w in caught:
            logger.debug("glfw: %s", w.message)
        try:
            centre, size = scene.twin_center_and_size()
            self.camera = OrbitCamera(
                target=(float(centre[0]), float(centre[1]), float(centre[2])), distance=max(0.3, 1.4 * size)
            )
            stereo = "auto" if "GL_OVR_multiview2" in self.context.extensions else "two-pass"
            self.renderer = Renderer(self.context, width=width, height=height, stereo=stereo, samples=samples)
        except BaseException:
            self.context.close()
            raise
        self.frames = 0
        self._drag_from: tuple[float, float] | None = None
        glfw.set_scroll_callback(self.window, self._on_scroll)
        glfw.set_key_callback(self.window, self._on_key)

    @property
    def window(self) -> Any:
        """The GLFW window handle."""
        return self.context.window

    def _on_scroll(self, _window: Any, _dx: float, dy: float) -> None:
        if dy:
            self.camera.zoom(1.0 if dy > 0 else -1.0)

    def _on_key(self, window: Any, key: int, _scancode: int, action: int, _mods: int) -> None:
        if key == self._glfw.KEY_ESCAPE and action == self._glfw.PRESS:
            self._glfw.set_window_should_close(window, True)

    def view(self) -> View:
        """The camera's view for the window's current framebuffer shape."""
        fb_w, fb_h = self._glfw.get_framebuffer_size(self.window)
        return self.camera.view(fb_w or self.width, fb_h or self.height)

    def step(self) -> bool:
        """Handle pending input and show one frame; False (nothing drawn) once the window was asked
        to close (Escape, the close button, or :meth:`request_close`)."""
        glfw = self._glfw
        if self.context.should_close():  # polls events: callbacks run here
            return False
        if glfw.get_mouse_button(self.window, glfw.MOUSE_BUTTON_LEFT) == glfw.PRESS:
            x, y = glfw.get_cursor_pos(self.window)
            if self._drag_from is not None:
                self.camera.drag(x - self._drag_from[0], y - self._drag_from[1])
            self._drag_from = (x, y)
        else:
            self._drag_from = None
        t0 = time.perf_counter()
        fb_w, fb_h = glfw.get_framebuffer_size(self.window)
        self.renderer.draw(self.scene, [self.camera.view(fb_w or self.width, fb_h or self.height)])
        self.renderer.present(fb_w, fb_h, eye=0)
        self.context.swap()
        self.renderer.stats.record_frame((time.perf_counter() - t0) * 1000.0)
        self.frames += 1
        return True

    def request_close(self) -> None:
        """Ask the loop to end, as the window's close button does."""
        self._glfw.set_window_should_close(self.window, True)

    def run(self, *, max_frames: int | None = None, max_seconds: float | None = None) -> dict[str, Any]:
        """Step until the window is closed, ``max_frames`` frames were shown or ``max_seconds``
        passed; returns the renderer's frame statistics summary (``frames``: frames shown)."""
        start = time.perf_counter()
        while max_frames is None or self.frames < max_frames:
            if max_seconds is not None and time.perf_counter() - start >= max_seconds:
                break
            if not self.step():
                break
        summary = self.renderer.stats.summary()
        summary["frames"] = self.frames
        return summary

    def close(self) -> None:
        """Free the renderer, then the context and window; idempotent."""
        if self.context._closed:  # the context's own idempotence flag
            return
        try:
            self.context.make_current()
            self.renderer.close()
        finally:
            self.context.close()

    def __enter__(self) -> DesktopViewer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def view_in_window(
    scene: Scene,
    *,
    width: int = 1280,
    height: int = 800,
    max_seconds: float | None = None,
    max_frames: int | None = None,
) -> dict[str, Any]:
    """Open a window on ``scene`` and run until it is closed (or ``max_frames`` frames were shown, or
    ``max_seconds`` passed).

    Returns the renderer's frame statistics summary (``frames``: frames shown). Raises
    :class:`~xrcore.gl.GLContextError` when no window can be opened (no display).
    """
    with DesktopViewer(scene, width=width, height=height) as viewer:
        return viewer.run(max_frames=max_frames, max_seconds=max_seconds)
