"""The desktop backend (`medverse view` without a headset) on a real X server: Xvfb, GLFW, Mesa's EGL.

Each module run starts its own Xvfb on a free display (``-displayfd``) whose screen is a memory-mapped
XWD file (``-fbdir``): the tests read what the X server shows, not what the renderer meant to draw.
Input is real X input: xdotool's XTEST events go through the server to GLFW's event queue, and the
backend turns them into frames: the orbit camera's view, and the mouse as a hand aiming from the
camera through the cursor.
"""

from __future__ import annotations

import ctypes
import itertools
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
MENU = ("alpha", "beta", "gamma")


@pytest.fixture(scope="module")
def xvfb(desktop_display: Any) -> Any:
    """The module's X server (tests/conftest.py), whose screen the tests read back."""
    return desktop_display


class Desk:
    """A started desktop backend on the brain with a renderer, run by xrcore's own loop one frame at a
    time: the scene takes the frame, the menu is laid out with ``current`` highlighted, the view is
    drawn and presented. ``frames`` keeps every frame shown."""

    def __init__(self, scene: Scene, menu: tuple[str, ...]) -> None:
        from xrcore.backends.desktop import DesktopBackend, DesktopConfig
        from xrcore.render import Renderer

        self.scene = scene
        scene.show_local_hands = False  # the hand is at the camera: its ray would be a blot round the cursor
        self.backend = DesktopBackend(DesktopConfig(W, H, "test", menu))
        self.backend.start()
        self.backend.look_at(*scene.twin_center_and_size())
        self.renderer = Renderer(self.backend.context, self.backend.renderer_config(samples=1))
        self.backend.attach(self.renderer)
        self.current: str | None = menu[0] if menu else None
        self.frames: list[Any] = []
        self._iter = self.backend.frames()

    @property
    def window(self) -> Any:
        return self.backend.window.window

    def step(self) -> bool:
        frame = next(self._iter, None)
        if frame is None:
            return False
        self.scene.update(frame)
        self.scene.overlay_labels = self.backend.menu_labels(frame.views[0], self.current, self.scene.label_style)
        self.renderer.draw(self.scene, frame.views)
        self.backend.submit(frame)
        self.frames.append(frame)
        return True

    def close(self) -> None:
        self.backend.context.make_current()
        self.renderer.close()
        self.backend.stop()


def make_desk(brain: Any, menu: tuple[str, ...] = MENU) -> Desk:
    return Desk(Scene(brain, twin_pose=frame_twin(brain)), menu)


@pytest.fixture
def desk(xvfb: Any, brain: Any) -> Iterator[Desk]:
    """The window on the brain framed as `medverse view` frames it, with a three-entry menu; fails on GL errors."""
    d = make_desk(brain)
    yield d
    errors = d.renderer.gl_errors
    d.close()
    assert errors == 0, "GL errors in the desktop window (see the log)"


def xdotool(*args: object) -> None:
    subprocess.run(["xdotool", *map(str, args)], check=True, timeout=10, env={**os.environ})


def sync() -> None:
    """Wait until the X server has processed everything the window's connection sent (the swap's
    image upload included): XSync on GLFW's display, which Mesa's EGL draws through."""
    import glfw

    x11 = ctypes.CDLL("libX11.so.6")
    x11.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
    x11.XSync(glfw.get_x11_display(), 0)


def shown(xvfb: Any, desk: Desk) -> np.ndarray:
    """The window's pixels on the screen, (H, W, 3)."""
    import glfw

    sync()
    x, y = glfw.get_window_pos(desk.window)
    return xvfb.screen()[y : y + H, x : x + W]  # type: ignore[no-any-return]


def on_screen(desk: Desk, x: float, y: float) -> tuple[int, int]:
    """Screen coordinates of window pixel (x, y)."""
    import glfw

    wx, wy = glfw.get_window_pos(desk.window)
    return round(wx + x), round(wy + y)


def step_until(desk: Desk, condition: Callable[[], bool], limit: float = 5.0) -> None:
    """Show frames until ``condition`` holds (input events arrive asynchronously); fail after ``limit`` s."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "the window never saw the input"
        assert desk.step(), "the window closed"


def twin_mask(image: np.ndarray) -> np.ndarray:
    """Pixels clearly unlike the scene's background colour (linear RGB, shown sRGB-encoded)."""
    linear = np.array(Scene.background[:3])
    srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055) * 255
    return np.abs(image.astype(float) - srgb).sum(axis=-1) > 30  # type: ignore[no-any-return]


def project(desk: Desk, world: np.ndarray) -> np.ndarray:
    """(N, 2) window pixels (x right, y down) of world points (N, 3) through the camera."""
    view = desk.backend.camera.view(W, H)
    clip = (view.fov.projection() @ view.view_matrix() @ np.c_[world, np.ones(len(world))].T).T
    ndc = clip[:, :2] / clip[:, 3:]
    return np.c_[(ndc[:, 0] + 1) / 2 * W, (1 - ndc[:, 1]) / 2 * H]


def projected_box(desk: Desk) -> tuple[float, float, float, float]:
    """(col0, row0, col1, row1) pixel bounds of the twin's vertices through the camera (row 0 at top)."""
    model = desk.scene.model_matrix()
    points = np.concatenate([s.vertices for s in desk.scene.twin.structures])
    px = project(desk, points @ model[:3, :3].T + model[:3, 3])
    return px[:, 0].min(), px[:, 1].min(), px[:, 0].max(), px[:, 1].max()


def box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def test_window_shows_the_rendered_brain_where_the_camera_looks(xvfb: Any, brain: Any) -> None:
    """The X server's copy of the window is the renderer's frame, pixel for pixel; the brain sits where
    the orbit camera projects its vertices, and the window's edges are background."""
    desk = make_desk(brain, menu=())
    try:
        for _ in range(2):
            assert desk.step()
        image = shown(xvfb, desk)
        assert np.array_equal(image, desk.renderer.read_pixels(0)[..., :3])
        mask = twin_mask(image)
        assert 0.05 < mask.mean() < 0.9
        assert not mask[0].any() and not mask[-1].any() and not mask[:, 0].any() and not mask[:, -1].any()
        assert np.allclose(box_of(mask), projected_box(desk), atol=3.0), (box_of(mask), projected_box(desk))
        assert desk.renderer.gl_errors == 0
    finally:
        desk.close()


def test_the_mouse_is_a_hand_aiming_from_the_camera_through_the_cursor(xvfb: Any, desk: Desk) -> None:
    """The right hand's ray starts at the camera and passes through the cursor (what it picks on the
    twin is drawn under the cursor); the left button is the trigger, a click shorter than a frame
    still gives one frame pressed and one released; the right button squeezes; outside the window,
    with no button held, the hand is untracked."""
    from xrcore.input import Picker

    assert desk.step()
    cx, cy = W // 2 + 10, H // 2 - 5
    xdotool("mousemove", *on_screen(desk, cx, cy))
    step_until(desk, lambda: desk.frames[-1].cursor == (cx, cy))
    frame = desk.frames[-1]
    aim = frame.inputs.right.aim
    assert aim is not None and frame.inputs.left.aim is None
    assert np.allclose(aim.position, frame.head.position)
    assert np.allclose(project(desk, np.array([np.asarray(aim.position) + aim.forward()])), [(cx, cy)], atol=1e-6)
    hit = Picker(desk.scene.twin).pick_hand(frame.inputs.right, desk.scene)
    assert hit is not None
    model = desk.scene.model_matrix()
    point = model[:3, :3] @ (hit.point_mm / 1000.0) + model[:3, 3]
    assert np.allclose(project(desk, point[None]), [(cx, cy)], atol=1e-6)
    assert frame.inputs.right.trigger == 0.0 and frame.inputs.right.squeeze == 0.0

    start = len(desk.frames)
    xdotool("click", "1")
    triggers: list[float] = []

    def released() -> bool:
        triggers[:] = [f.inputs.right.trigger for f in desk.frames[start:]]
        return 1.0 in triggers and triggers[-1] == 0.0

    step_until(desk, released)
    first = triggers.index(1.0)
    assert triggers[first:] == [1.0] + [0.0] * (len(triggers) - first - 1)  # exactly one frame pressed

    xdotool("mousedown", "3")
    step_until(desk, lambda: desk.frames[-1].inputs.right.squeeze == 1.0)
    xdotool("mouseup", "3")
    step_until(desk, lambda: desk.frames[-1].inputs.right.squeeze == 0.0)

    xdotool("mousemove", *on_screen(desk, W + 100, H + 100))
    step_until(desk, lambda: desk.frames[-1].inputs.right.aim is None)
    assert desk.frames[-1].cursor is None


def test_middle_drag_orbits_shift_pans_wheel_zooms_and_r_resets(xvfb: Any, desk: Desk) -> None:
    """A middle-button drag of 40 px turns the camera by 0.4 rad (Alt+left does the same and pulls no
    trigger); Shift+middle pans so that what lies at the target's depth follows the mouse; a wheel
    step brings the camera 10 % closer and the brain grows on screen; R puts the camera back."""
    from xrcore.render.desktop import DRAG_RADIANS_PER_PIXEL, ZOOM_STEP

    assert desk.step()
    before = shown(xvfb, desk)
    cam, home = desk.backend.camera, desk.backend.home
    x, y = on_screen(desk, W // 2, H // 2)
    yaw = cam.yaw
    xdotool("mousemove", x, y, "mousedown", "2")
    step_until(desk, lambda: desk.backend._mouse.middle == "orbit")
    xdotool("mousemove", x + 40, y)
    step_until(desk, lambda: desk.backend.camera.yaw != yaw)
    xdotool("mouseup", "2")
    step_until(desk, lambda: desk.backend._mouse.middle is None)
    assert desk.backend.camera.yaw == pytest.approx(yaw - 40 * DRAG_RADIANS_PER_PIXEL)
    assert desk.step()
    turned = shown(xvfb, desk)
    assert (np.abs(turned.astype(int) - before.astype(int)).sum(axis=-1) > 30).mean() > 0.02
    below_menu = int(desk.backend.menu.rects[:, 3].max()) + 1
    box = np.array(box_of(twin_mask(turned[below_menu:]))) + (0, below_menu, 0, below_menu)
    assert np.allclose(box, projected_box(desk), atol=3.0), (box, projected_box(desk))

    pitch = desk.backend.camera.pitch
    xdotool("keydown", "alt", "mousedown", "1")
    step_until(desk, lambda: desk.backend._mouse.left == "orbit")
    xdotool("mousemove", x, y + 20)
    step_until(desk, lambda: desk.backend.camera.pitch != pitch)
    xdotool("mouseup", "1", "keyup", "alt")
    step_until(desk, lambda: desk.backend._mouse.left is None)
    assert desk.backend.camera.pitch == pytest.approx(pitch + 20 * DRAG_RADIANS_PER_PIXEL)
    assert not any(f.inputs.right.trigger for f in desk.frames)

    cam = desk.backend.camera
    target = cam.target
    xdotool("mousemove", x, y, "keydown", "shift", "mousedown", "2")
    step_until(desk, lambda: desk.backend._mouse.middle == "pan")
    xdotool("mousemove", x - 30, y + 20)
    step_until(desk, lambda: desk.backend.camera.target != target)
    xdotool("mouseup", "2", "keyup", "shift")
    step_until(desk, lambda: desk.backend._mouse.middle is None)
    # the old target, under the cursor when the drag began (the middle of the view), is under it again
    assert np.allclose(project(desk, np.array([target])), [(W / 2 - 30, H / 2 + 20)], atol=0.5)

    distance = cam.distance
    small = twin_mask(shown(xvfb, desk)[below_menu:]).sum()
    xdotool("click", "4")  # wheel up: closer
    step_until(desk, lambda: desk.backend.camera.distance != distance)
    assert desk.backend.camera.distance == pytest.approx(distance * ZOOM_STEP)
    assert desk.step()
    assert twin_mask(shown(xvfb, desk)[below_menu:]).sum() > 1.1 * small

    xdotool("key", "r")
    step_until(desk, lambda: desk.backend.camera == home)


def test_keys_choose_entries_and_stand_for_controller_buttons(xvfb: Any, desk: Desk) -> None:
    """Number keys choose menu entries (events), H asks for the heads-up text; Ctrl+Z and U are the
    undo button "b", Delete and X the thumbstick click, Tab the "a" button, each held for one frame
    with a frame between two presses, so that pressing twice is two presses."""
    assert desk.step()
    xdotool("mousemove", *on_screen(desk, W // 2, H // 2))
    start = len(desk.frames)

    def seen() -> list[str]:
        return [e for f in desk.frames[start:] for e in f.events]

    def pressed() -> list[frozenset[str]]:
        return [f.inputs.right.buttons for f in desk.frames[start:] if f.inputs.right.buttons]

    xdotool("key", "2", "key", "3", "key", "h", "key", "9")
    step_until(desk, lambda: "desktop:hud" in seen())
    assert seen() == ["tool:right:beta", "tool:right:gamma", "desktop:hud"]  # 9: no such entry

    start = len(desk.frames)
    xdotool("key", "ctrl+z", "key", "u", "key", "Delete", "key", "x", "key", "Tab")
    step_until(desk, lambda: len(pressed()) == 5)
    assert pressed() == [frozenset({b}) for b in ("b", "b", "thumbstick", "thumbstick", "a")]
    buttons = [f.inputs.right.buttons for f in desk.frames[start:]]
    assert all(not (a and b) for a, b in itertools.pairwise(buttons))  # never two frames running


def test_the_menu_is_drawn_where_a_click_finds_it(xvfb: Any, desk: Desk) -> None:
    """The menu's rectangles are the plates the renderer drew (its label layout's rectangles); a click
    on an entry chooses it (an event) and pulls no trigger; the current entry is drawn in its
    highlight colour, the others are not."""
    from xrcore.render.desktop import MENU_CURRENT_COLOR

    assert desk.step()
    rects = desk.backend.menu.rects.copy()
    labels = desk.scene.labels()
    menu = [i for i, label in enumerate(labels) if any(label is m for m in desk.scene.overlay_labels)]
    drawn = desk.renderer.label_placement.rects[0][menu]
    assert np.allclose(rects, drawn, atol=0.05), (rects, drawn)
    assert (rects[:, 1] >= 0).all() and (rects[:, 3] < H * 0.2).all()  # along the top
    assert (rects[1:, 0] > rects[:-1, 2]).all()  # side by side, apart

    def orange(entry: int) -> int:
        x0, y0, x1, y1 = rects[entry]
        img = shown(xvfb, desk)[int(y0) : int(y1) + 1, int(x0) : int(x1) + 1].astype(int)
        r, b = img[..., 0], img[..., 2]
        return int(((r - b > 60) & (r > 120)).sum())

    want = np.array(MENU_CURRENT_COLOR[:3])
    assert want[0] - want[2] > 0.5
    assert orange(0) > 3 and orange(1) == 0 and orange(2) == 0

    x0, y0, x1, y1 = rects[2]
    start = len(desk.frames)
    xdotool("mousemove", *on_screen(desk, (x0 + x1) / 2, (y0 + y1) / 2), "click", "1")
    step_until(desk, lambda: any(f.events for f in desk.frames[start:]) and desk.backend._mouse.left is None)
    assert [e for f in desk.frames[start:] for e in f.events] == ["tool:right:gamma"]
    assert not any(f.inputs.right.trigger for f in desk.frames[start:])
    desk.current = "gamma"
    assert desk.step()
    assert orange(2) > 3 and orange(0) == 0


def test_escape_ends_the_frames(xvfb: Any, desk: Desk) -> None:
    """Escape, pressed over the window, ends the backend's frames: no frame follows."""
    assert desk.step()
    xdotool("mousemove", *on_screen(desk, 5, 5), "key", "Escape")
    start = time.monotonic()
    while desk.step():
        assert time.monotonic() - start < 5.0
    assert not desk.step()


def test_the_close_button_ends_the_frames(xvfb: Any, desk: Desk) -> None:
    """The WM_DELETE_WINDOW message a window manager's close button sends (from another X client)
    ends the frames; stopping the backend afterwards destroys the window cleanly."""
    import glfw

    assert desk.step()
    send_wm_delete(xvfb.display, glfw.get_x11_window(desk.window))
    start = time.monotonic()
    while desk.step():
        assert time.monotonic() - start < 5.0
    assert glfw.window_should_close(desk.window)


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
    """`medverse view --twin brain --frames 8` in a process of its own: the desktop session shows 8
    frames and the command exits 0 (``auto`` finds no OpenXR runtime here and falls back to the window)."""
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
        "medverse: error: no display for a window: set DISPLAY (X11) or WAYLAND_DISPLAY, or connect a headset (--backend openxr)"
    ]
    unused = next(n for n in range(600, 700) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    done = run_cli("view", "--backend", "sim", "--frames", "1", env={**base, "DISPLAY": f":{unused}"})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"medverse: error: cannot open a window on display ':{unused}'")
    assert "Failed to open display" in lines[0]
