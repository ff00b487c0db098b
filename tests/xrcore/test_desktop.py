"""The desktop window (`medverse view` without a headset) on a real X server: Xvfb, GLFW, Mesa's EGL.

Each module run starts its own Xvfb on a free display (``-displayfd``) whose screen is a memory-mapped
XWD file (``-fbdir``): the tests read what the X server shows, not what the renderer meant to draw.
Input is real X input: xdotool's XTEST events go through the server to GLFW's event queue.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from xrcore.scene import Scene, frame_twin

W, H = 240, 180
SCREEN = (480, 360)


@pytest.fixture(scope="module")
def xvfb(start_xvfb: Callable[..., Any]) -> Iterator[Any]:
    """An X server of our own; DISPLAY points at it for the module, GLFW is shut down before it goes."""
    server = start_xvfb(screen=SCREEN, framebuffer=True)
    saved = {k: os.environ.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY")}
    os.environ["DISPLAY"] = server.display
    os.environ.pop("WAYLAND_DISPLAY", None)
    try:
        yield server
    finally:
        import glfw

        glfw.terminate()  # its X connection must close before the server dies (Xlib exits on a lost server)
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def viewer(xvfb: Any, brain: Any) -> Iterator[Any]:
    """The window `medverse view` opens, on the brain framed as the CLI frames it; fails on GL errors."""
    from xrcore.render.desktop import DesktopViewer

    v = DesktopViewer(Scene(brain, twin_pose=frame_twin(brain)), width=W, height=H)
    yield v
    errors = v.renderer.gl_errors
    v.close()
    assert errors == 0, "GL errors in the desktop window (see the log)"


def xdotool(*args: str) -> None:
    subprocess.run(["xdotool", *args], check=True, timeout=10, env={**os.environ})


def sync(viewer: Any) -> None:
    """Wait until the X server has processed everything the window's connection sent (the swap's
    image upload included): XSync on GLFW's display, which Mesa's EGL draws through."""
    import glfw

    x11 = ctypes.CDLL("libX11.so.6")
    x11.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
    x11.XSync(glfw.get_x11_display(), 0)


def shown(xvfb: Any, viewer: Any) -> np.ndarray:
    """The window's pixels on the screen, (H, W, 3)."""
    import glfw

    sync(viewer)
    x, y = glfw.get_window_pos(viewer.window)
    return xvfb.screen()[y : y + H, x : x + W]


def step_until(viewer: Any, condition: Callable[[], bool], limit: float = 5.0) -> None:
    """Show frames until ``condition`` holds (input events arrive asynchronously); fail after ``limit`` s."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "the window never saw the input"
        assert viewer.step(), "the window closed"


def twin_mask(image: np.ndarray) -> np.ndarray:
    """Pixels clearly unlike the scene's background colour (linear RGB, shown sRGB-encoded)."""
    linear = np.array(Scene.background[:3])
    srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055) * 255
    return np.abs(image.astype(float) - srgb).sum(axis=-1) > 30


def projected_box(viewer: Any) -> tuple[float, float, float, float]:
    """(col0, row0, col1, row1) pixel bounds of the twin's vertices through the camera (row 0 at top)."""
    view = viewer.view()
    model = viewer.scene.model_matrix()
    points = np.concatenate([s.vertices for s in viewer.scene.twin.structures])
    world = points @ model[:3, :3].T + model[:3, 3]
    clip = (view.fov.projection() @ view.view_matrix() @ np.c_[world, np.ones(len(world))].T).T
    ndc = clip[:, :2] / clip[:, 3:]
    cols, rows = (ndc[:, 0] + 1) / 2 * W, (1 - ndc[:, 1]) / 2 * H
    return cols.min(), rows.min(), cols.max(), rows.max()


def box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def test_window_shows_the_rendered_brain_where_the_camera_looks(xvfb: Any, viewer: Any) -> None:
    """The X server's copy of the window is the renderer's frame, pixel for pixel; the brain sits where
    the orbit camera projects its vertices, and the window's edges are background."""
    for _ in range(2):
        assert viewer.step()
    image = shown(xvfb, viewer)
    expected = viewer.renderer.read_pixels(0)[..., :3]
    assert np.array_equal(image, expected)
    mask = twin_mask(image)
    assert 0.05 < mask.mean() < 0.9
    assert not mask[0].any() and not mask[-1].any() and not mask[:, 0].any() and not mask[:, -1].any()
    got, want = box_of(mask), projected_box(viewer)
    assert np.allclose(got, want, atol=3.0), (got, want)


def test_mouse_drag_orbits_and_scroll_zooms_through_real_x_input(xvfb: Any, viewer: Any) -> None:
    """A left-button drag of 40 px turns the camera by 0.4 rad and changes the view; a wheel step up
    brings the camera 10 % closer and the brain grows on screen."""
    import glfw

    from xrcore.render.desktop import DRAG_RADIANS_PER_PIXEL, ZOOM_STEP

    assert viewer.step()
    before = shown(xvfb, viewer)
    x, y = glfw.get_window_pos(viewer.window)
    yaw, distance = viewer.camera.yaw, viewer.camera.distance
    xdotool("mousemove", str(x + W // 2), str(y + H // 2), "mousedown", "1")
    step_until(viewer, lambda: glfw.get_mouse_button(viewer.window, glfw.MOUSE_BUTTON_LEFT) == glfw.PRESS)
    assert viewer.step()  # one frame with the button held where the drag starts
    xdotool("mousemove", str(x + W // 2 + 40), str(y + H // 2))
    step_until(viewer, lambda: viewer.camera.yaw != yaw)
    xdotool("mouseup", "1")
    step_until(viewer, lambda: glfw.get_mouse_button(viewer.window, glfw.MOUSE_BUTTON_LEFT) == glfw.RELEASE)
    assert viewer.camera.yaw == pytest.approx(yaw - 40 * DRAG_RADIANS_PER_PIXEL)
    assert viewer.step()
    turned = shown(xvfb, viewer)
    assert (np.abs(turned.astype(int) - before.astype(int)).sum(axis=-1) > 30).mean() > 0.02
    assert np.allclose(box_of(twin_mask(turned)), projected_box(viewer), atol=3.0)

    xdotool("click", "4")  # wheel up: closer
    step_until(viewer, lambda: viewer.camera.distance != distance)
    assert viewer.camera.distance == pytest.approx(distance * ZOOM_STEP)
    assert viewer.step()
    closer = shown(xvfb, viewer)
    assert twin_mask(closer).sum() > 1.1 * twin_mask(turned).sum()


def test_escape_ends_the_loop(xvfb: Any, viewer: Any) -> None:
    """Escape, pressed over the window, ends run() well before its time limit, and no frame follows."""
    import glfw

    assert viewer.step()
    x, y = glfw.get_window_pos(viewer.window)
    xdotool("mousemove", str(x + 5), str(y + 5), "key", "Escape")
    start = time.monotonic()
    summary = viewer.run(max_seconds=10.0)
    assert time.monotonic() - start < 5.0
    assert summary["frames"] == viewer.frames >= 1
    assert not viewer.step() and viewer.frames == summary["frames"]


def test_the_close_button_ends_the_loop(xvfb: Any, viewer: Any) -> None:
    """The WM_DELETE_WINDOW message a window manager's close button sends (from another X client)
    ends the loop; closing the viewer afterwards destroys the window cleanly."""
    import glfw

    assert viewer.step()
    send_wm_delete(xvfb.display, glfw.get_x11_window(viewer.window))
    start = time.monotonic()
    viewer.run(max_seconds=10.0)
    assert time.monotonic() - start < 5.0
    assert glfw.window_should_close(viewer.window)


def send_wm_delete(display_name: str, window: int) -> None:
    """Send ``WM_PROTOCOLS``/``WM_DELETE_WINDOW`` to ``window`` over a new Xlib connection."""

    class ClientMessage(ctypes.Structure):
        _fields_ = [
            ("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
            ("display", ctypes.c_void_p), ("window", ctypes.c_ulong), ("message_type", ctypes.c_ulong),
            ("format", ctypes.c_int), ("data", ctypes.c_long * 5),
        ]  # fmt: skip

    class XEvent(ctypes.Union):
        _fields_ = [("xclient", ClientMessage), ("pad", ctypes.c_long * 24)]

    x11 = ctypes.CDLL("libX11.so.6")
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XInternAtom.restype = ctypes.c_ulong
    x11.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    x11.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long, ctypes.POINTER(XEvent)]
    x11.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    dpy = x11.XOpenDisplay(display_name.encode())
    assert dpy, f"cannot open {display_name}"
    try:
        event = XEvent()
        event.xclient.type = 33  # ClientMessage
        event.xclient.window = window
        event.xclient.message_type = x11.XInternAtom(dpy, b"WM_PROTOCOLS", 0)
        event.xclient.format = 32
        event.xclient.data[0] = x11.XInternAtom(dpy, b"WM_DELETE_WINDOW", 0)
        assert x11.XSendEvent(dpy, window, 0, 0, ctypes.byref(event))
        x11.XSync(dpy, 0)
    finally:
        x11.XCloseDisplay(dpy)


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = "import sys; from sessions.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args], check=False, capture_output=True, text=True, timeout=60, env=env,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip


@pytest.mark.parametrize("backend", ["sim", "auto"])
def test_medverse_view_opens_the_window_and_ends_after_its_frames(xvfb: Any, backend: str) -> None:
    """`medverse view --twin brain --frames 8` in a process of its own: the window shows 8 frames
    and the command exits 0 (``auto`` finds no OpenXR runtime here and falls back to the window)."""
    env = {**os.environ, "DISPLAY": xvfb.display, "XR_RUNTIME_JSON": "/nonexistent/runtime.json"}
    done = run_cli("view", "--twin", "brain", "--backend", backend, "--frames", "8",
                   "--width", str(W), "--height", str(H), env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("8 frames shown"), done.stdout
    assert "Traceback" not in done.stderr


def test_medverse_view_seconds_limit_and_bad_limits(xvfb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """``--seconds`` ends the window by itself; a non-positive ``--frames`` or ``--seconds`` is a
    one-line error before any window opens."""
    from sessions.cli import main

    env = {**os.environ, "DISPLAY": xvfb.display}
    done = run_cli("view", "--backend", "sim", "--seconds", "0.5", "--width", "64", "--height", "48", env=env)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[0]) >= 1 and "frames shown" in done.stdout
    for flag in ("--frames", "--seconds"):
        assert main(["view", "--backend", "sim", flag, "0"]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and err.startswith(f"medverse: error: {flag} must be positive, got 0")


def test_medverse_view_without_a_usable_display_says_so_in_one_line() -> None:
    """No DISPLAY at all, or a DISPLAY no server answers on: exit 2 and exactly one stderr line naming
    the problem (GLFW's own warnings are folded into it, not printed on their own)."""
    base = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    done = run_cli("view", "--backend", "sim", "--frames", "1", env=base)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "medverse: error: no display for a window: set DISPLAY (X11) or WAYLAND_DISPLAY, or connect a "
        "headset (--backend openxr)"
    ]
    unused = next(n for n in range(600, 700) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    done = run_cli("view", "--backend", "sim", "--frames", "1", env={**base, "DISPLAY": f":{unused}"})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"medverse: error: cannot open a window on display ':{unused}'")
    assert "Failed to open display" in lines[0]
