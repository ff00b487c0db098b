"""Looking at a twin without a headset: a GLFW window with a mouse-driven orbit camera.

Left-drag orbits round the twin, the scroll wheel moves closer or further, Escape closes the window.
The window shows the renderer's left eye (a single view, rendered into both layers).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from xrcore.motion import look_rotation
from xrcore.scene import Scene
from xrcore.types import Fov, Pose, View

logger = logging.getLogger(__name__)


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


def view_in_window(scene: Scene, *, width: int = 1280, height: int = 800, max_seconds: float | None = None) -> dict[str, Any]:
    """Open a window on ``scene`` and run until it is closed (or ``max_seconds`` pass).

    Returns the renderer's frame statistics summary. Raises
    :class:`~xrcore.gl.GLContextError` when no window can be opened (no display).
    """
    import glfw  # noqa: PLC0415 - desktop only

    from xrcore.gl.context import create_context  # noqa: PLC0415
    from xrcore.render.renderer import Renderer  # noqa: PLC0415

    ctx = create_context("glfw", width=width, height=height, title=f"medverse - {scene.twin.name}")
    centre, size = scene.twin_center_and_size()
    camera = OrbitCamera(target=tuple(float(v) for v in centre), distance=max(0.3, 1.4 * size))  # type: ignore[arg-type]
    renderer = Renderer(ctx, width=width, height=height, stereo="two-pass" if "GL_OVR_multiview2" not in ctx.extensions else "auto")
    drag: dict[str, Any] = {"last": None}

    def on_scroll(_w: Any, _dx: float, dy: float) -> None:
        camera.distance = min(5.0, max(0.05, camera.distance * (0.9 if dy > 0 else 1.1)))

    def on_key(window: Any, key: int, _sc: int, action: int, _mods: int) -> None:
        if key == glfw.KEY_ESCAPE and action == glfw.PRESS:
            glfw.set_window_should_close(window, True)

    glfw.set_scroll_callback(ctx.window, on_scroll)
    glfw.set_key_callback(ctx.window, on_key)
    start = time.perf_counter()
    try:
        while not ctx.should_close():
            if max_seconds is not None and time.perf_counter() - start > max_seconds:
                break
            if glfw.get_mouse_button(ctx.window, glfw.MOUSE_BUTTON_LEFT) == glfw.PRESS:
                x, y = glfw.get_cursor_pos(ctx.window)
                if drag["last"] is not None:
                    lx, ly = drag["last"]
                    camera.yaw -= (x - lx) * 0.01
                    camera.pitch = min(1.5, max(-1.5, camera.pitch + (y - ly) * 0.01))
                drag["last"] = (x, y)
            else:
                drag["last"] = None
            t0 = time.perf_counter()
            fb_w, fb_h = glfw.get_framebuffer_size(ctx.window)
            renderer.draw(scene, [camera.view(width, height)])
            renderer.present(fb_w, fb_h, eye=0)
            ctx.swap()
            renderer.stats.record_frame((time.perf_counter() - t0) * 1000.0)
        return renderer.stats.summary()
    finally:
        renderer.close()
        ctx.close()
