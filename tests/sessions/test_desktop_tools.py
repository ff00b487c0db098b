"""Every tool with the mouse and keys, through the session loop, in a real window (``medverse view``).

A :class:`~sessions.desktop.DesktopSession` on the ``brain`` twin opens a GLFW window on an Xvfb
server of the module's own; xdotool's XTEST events go through the X server to the window, the desktop
backend makes them frames, and :class:`~sessions.run.LocalSession` turns them into intents. The tests
read the intents the workspace applied (``session.workspace.applied``), check their geometry against
rays cast through the pixels clicked, and check the pixels the X server shows.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from sessions import intents as it

W, H = 320, 240
LEFT = "left cerebral hemisphere (pial)"
RIGHT = "right cerebral hemisphere (pial)"
CORNER = (6, H - 6)  # a window pixel on the background, where the cursor hovers over nothing


@pytest.fixture(scope="module")
def xvfb(desktop_display: Any) -> Any:
    """The module's X server (tests/conftest.py), whose screen the tests read back."""
    return desktop_display


@pytest.fixture
def desk(request: pytest.FixtureRequest, xvfb: Any, brain: Any) -> Iterator[Any]:
    """A desktop session on the brain (no MSAA; no surface distances unless a test's parameter asks:
    fast), its heads-up text hidden with H so that pixels show the twin; fails on GL errors."""
    from sessions.desktop import DesktopSession
    from sessions.run import SessionConfig

    geodesic = bool(getattr(request, "param", False))
    d = DesktopSession(brain, width=W, height=H, samples=1, config=SessionConfig(geodesic=geodesic))
    assert d.step()
    move(d, *CORNER)
    xdotool("key", "h")
    step_until(d, lambda: not d.session.panels.hud and not d.session.panels.gaze)
    yield d
    errors = d.renderer.gl_errors
    d.close()
    assert errors == 0, "GL errors in the desktop window (see the log)"


# --- driving the window -------------------------------------------------------------------------------


def xdotool(*args: object) -> None:
    subprocess.run(["xdotool", *map(str, args)], check=True, timeout=10, env={**os.environ})


def on_screen(desk: Any, x: float, y: float) -> tuple[int, int]:
    import glfw

    wx, wy = glfw.get_window_pos(desk.backend.window.window)
    return round(wx + x), round(wy + y)


def step_until(desk: Any, condition: Callable[[], bool], limit: float = 5.0) -> None:
    """Show frames until ``condition`` holds (input arrives asynchronously); fail after ``limit`` s."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "the window never saw the input"
        assert desk.step(), "the window closed"


def move(desk: Any, x: int, y: int) -> None:
    """Move the cursor to window pixel (x, y) and show a frame with it there."""
    xdotool("mousemove", *on_screen(desk, x, y))
    step_until(desk, lambda: desk.backend._mouse.cursor == (x, y))
    assert desk.step()


def shown(xvfb: Any, desk: Any) -> np.ndarray:
    """The window's pixels on the screen, (H, W, 3), once the X server has the last frame."""
    import glfw

    x11 = ctypes.CDLL("libX11.so.6")
    x11.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
    x11.XSync(glfw.get_x11_display(), 0)
    x, y = glfw.get_window_pos(desk.backend.window.window)
    return xvfb.screen()[y : y + H, x : x + W].astype(int)  # type: ignore[no-any-return]


# --- geometry -----------------------------------------------------------------------------------------


def ray(desk: Any, x: float, y: float) -> tuple[np.ndarray, np.ndarray]:
    return desk.backend.camera.ray(x, y, W, H)  # type: ignore[no-any-return]


def hit_at(desk: Any, x: float, y: float) -> Any:
    """What the camera's ray through window point (x, y) hits on the twin as the scene is now."""
    return desk.session.picker.pick_scene(desk.scene, *ray(desk, x, y))


def pixels_on(desk: Any, name: str, step: int = 2) -> np.ndarray:
    """(N, 2) integer window points (x, y) whose ray hits structure ``name`` first, on a ``step`` px
    grid (all rays at once: nothing is hidden or cut when this is asked)."""
    xs, ys = np.meshgrid(np.arange(0, W, step), np.arange(0, H, step))
    points = np.c_[xs.ravel(), ys.ravel()]
    cam = desk.backend.camera
    pose, fov = cam.pose(), cam.fov(W, H)
    tl, tr, tu, td = (np.tan(a) for a in (fov.angle_left, fov.angle_right, fov.angle_up, fov.angle_down))
    local = np.c_[tl + (tr - tl) * points[:, 0] / W, tu - (tu - td) * points[:, 1] / H, -np.ones(len(points))]
    origin, directions = np.asarray(pose.position), local @ pose.rotation_matrix().T  # as OrbitCamera.ray
    inv = np.linalg.inv(desk.scene.model_matrix())
    structure, _ = desk.session.picker.pick_many(
        np.tile(inv[:3, :3] @ origin + inv[:3, 3], (len(points), 1)), directions @ inv[:3, :3].T
    )
    return points[structure == desk.scene.index(name)]  # type: ignore[no-any-return]


def inner_pixel(desk: Any, name: str) -> tuple[int, int]:
    """A window point well inside ``name``'s image: the one of its grid points nearest their middle."""
    pts = pixels_on(desk, name)
    best = pts[np.argmin(np.linalg.norm(pts - pts.mean(axis=0), axis=1))]
    return int(best[0]), int(best[1])


def project(desk: Any, world: np.ndarray) -> np.ndarray:
    """(N, 2) window points of world points (N, 3) through the camera."""
    view = desk.backend.camera.view(W, H)
    clip = (view.fov.projection() @ view.view_matrix() @ np.c_[world, np.ones(len(world))].T).T
    return np.c_[(clip[:, 0] / clip[:, 3] + 1) / 2 * W, (1 - clip[:, 1] / clip[:, 3]) / 2 * H]


def projected_box(desk: Any) -> np.ndarray:
    """(x0, y0, x1, y1) window bounds of the twin's vertices through the camera."""
    m = desk.scene.model_matrix()
    px = project(desk, np.concatenate([s.vertices for s in desk.scene.twin.structures]) @ m[:3, :3].T + m[:3, 3])
    return np.array([px[:, 0].min(), px[:, 1].min(), px[:, 0].max(), px[:, 1].max()])


def box_of(image: np.ndarray) -> np.ndarray:
    """(x0, y0, x1, y1) pixel bounds of what is not background (the corner's colour) in ``image``."""
    rows, cols = np.nonzero(np.abs(image - image[2, 2]).sum(axis=-1) > 30)
    return np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])


def world_of(desk: Any, point_mm: np.ndarray) -> np.ndarray:
    m = desk.scene.model_matrix()
    return m[:3, :3] @ (np.asarray(point_mm) / 1000.0) + m[:3, 3]  # type: ignore[no-any-return]


def applied(desk: Any, kind: type[it.Intent]) -> list[Any]:
    return [i for i in desk.session.workspace.applied if isinstance(i, kind)]


def colour_count(image: np.ndarray, test: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]) -> int:
    return int(test(image[..., 0], image[..., 1], image[..., 2]).sum())


# --- the tools ----------------------------------------------------------------------------------------


def test_a_click_selects_the_structure_under_the_cursor_and_it_lights_up(xvfb: Any, desk: Any) -> None:
    """A left click on the left hemisphere selects it (a Select intent naming it); its pixels turn
    towards the selection's orange, the right hemisphere's do not change."""
    on_left, on_right = pixels_on(desk, LEFT, 4), pixels_on(desk, RIGHT, 4)
    before = shown(xvfb, desk)
    x, y = inner_pixel(desk, LEFT)
    xdotool("mousemove", *on_screen(desk, x, y), "click", "1")
    step_until(desk, lambda: bool(applied(desk, it.Select)))
    assert [s.structure for s in applied(desk, it.Select)] == [LEFT]
    move(desk, *CORNER)  # no hover highlight in the picture
    after = shown(xvfb, desk)

    def warmth(image: np.ndarray, points: np.ndarray) -> np.ndarray:
        px = image[points[:, 1], points[:, 0]]
        return px[:, 0] - px[:, 2]  # type: ignore[no-any-return]

    assert warmth(after, on_left).mean() > warmth(before, on_left).mean() + 20
    assert np.abs(after[on_right[:, 1], on_right[:, 0]] - before[on_right[:, 1], on_right[:, 0]]).mean() < 1.0


@pytest.mark.parametrize("desk", [False, True], indirect=True, ids=["straight", "along_the_surface"])
def test_measure_chosen_with_a_key_measures_between_two_clicks(xvfb: Any, desk: Any) -> None:
    """Key 3 takes the measure tool; two clicks give a Measure whose ends are the surface points
    under the cursor and whose distance is theirs; its readout appears in the measurement colour.
    With distances along the surface (``view --geodesic``), those are computed in a process of their
    own: the window goes on drawing the measurement (its readout says it is measuring) until the answer
    arrives, then the Measure is applied with both distances."""
    xdotool("key", "3")
    step_until(desk, lambda: desk.session.belt.tool("right").name == "measure")

    def cyan(image: np.ndarray) -> int:
        return colour_count(image, lambda r, g, b: (b > r + 60) & (g > r + 30))

    before = shown(xvfb, desk)
    pts = pixels_on(desk, LEFT, 4)
    a = tuple(int(v) for v in pts[np.argmin(pts[:, 1])] + (0, 6))  # near the top of the hemisphere
    b = tuple(int(v) for v in pts[np.argmax(pts[:, 1])] - (0, 6))  # near its bottom
    ha, hb = hit_at(desk, *a), hit_at(desk, *b)
    assert ha is not None and hb is not None
    # both clicks in one burst: the backend still gives each press and release its own frame
    xdotool("mousemove", *on_screen(desk, *a), "click", "1", "mousemove", *on_screen(desk, *b), "click", "1")
    measuring = []

    def measured() -> bool:
        measuring.append(any("measuring" in label.text for label in desk.scene.overlay_labels))
        return bool(applied(desk, it.Measure))

    step_until(desk, measured, limit=30.0 if desk.session.geodesics else 5.0)  # the solver's start-up too
    (m,) = applied(desk, it.Measure)
    assert np.allclose(m.a_mm, ha.point_mm, atol=1e-6) and np.allclose(m.b_mm, hb.point_mm, atol=1e-6)
    assert m.distance_mm == pytest.approx(float(np.linalg.norm(hb.point_mm - ha.point_mm)))
    assert m.distance_mm > 30.0 and m.structures == (LEFT, LEFT)
    if desk.session.geodesics is None:
        assert m.geodesic_mm is None and not any(measuring)
    else:
        assert sum(measuring) >= 2, "the window should go on drawing the held measurement while it is computed"
        assert m.distance_mm < m.geodesic_mm < 2.0 * m.distance_mm
    move(desk, *CORNER)
    after = shown(xvfb, desk)
    # the readout (and the ends, half in the surface; the straight line runs inside the brain)
    assert cyan(before) == 0 and cyan(after) >= 5


def test_section_drag_cuts_through_the_point_clicked_pushed_deeper_by_the_wheel(xvfb: Any, desk: Any) -> None:
    """Key 4 takes the cross-section tool. Pressing on the brain holds a plane at the depth of the
    surface point clicked, the wheel pushes it 5 mm a step deeper, dragging turns it with the ray;
    letting go leaves a clip plane through the hand, facing along the last ray, and the cut changes
    the picture."""
    from sessions.desktop import DEPTH_STEP_M

    xdotool("key", "4")
    step_until(desk, lambda: desk.session.belt.tool("right").name == "section")
    before = shown(xvfb, desk)
    x, y = inner_pixel(desk, RIGHT)
    h = hit_at(desk, x, y)
    assert h is not None
    xdotool("mousemove", *on_screen(desk, x, y), "mousedown", "1")
    step_until(desk, lambda: desk.hand.depth is not None)
    assert desk.hand.depth == pytest.approx(h.distance_m)
    xdotool(*["click", "4"] * 8)  # away from the user: deeper
    step_until(desk, lambda: desk.hand.depth == pytest.approx(h.distance_m + 8 * DEPTH_STEP_M))
    assert desk.scene.clip_planes  # the live plane already cuts
    end = (x + 12, y - 8)
    move(desk, *end)
    xdotool("mouseup", "1")
    step_until(desk, lambda: bool(applied(desk, it.AddClipPlane)))
    (plane,) = applied(desk, it.AddClipPlane)
    origin, direction = ray(desk, *end)
    hand = origin + direction * (h.distance_m + 8 * DEPTH_STEP_M)
    inv = np.linalg.inv(desk.scene.model_matrix())
    hand_mm = (inv[:3, :3] @ hand + inv[:3, 3]) * 1000.0
    normal = inv[:3, :3] @ direction
    assert np.allclose(plane.normal, normal / np.linalg.norm(normal), atol=1e-9)
    assert float(np.dot(plane.normal, hand_mm)) + plane.offset_mm == pytest.approx(0.0, abs=1e-6)
    assert len(desk.scene.clip_planes) == 1
    # the surface point first clicked is cut away: a ray through it now goes deeper, onto the cut
    after_hit = hit_at(desk, x, y)
    assert after_hit is not None and after_hit.distance_m > h.distance_m + 0.02
    move(desk, *CORNER)
    changed = np.abs(shown(xvfb, desk) - before).sum(axis=-1) > 30
    assert changed.mean() > 0.03


def test_right_drag_moves_the_twin_the_wheel_scales_it_and_ctrl_z_undoes(xvfb: Any, desk: Any) -> None:
    """A right-drag moves the twin across the view, the grabbed point staying under the cursor (a
    final SetTwinPose, orientation and scale kept); the wheel while grabbing scales it about that
    point by 10 % a step; Ctrl+Z undoes the scaling, then the move; the picture moves with the twin."""
    from sessions.desktop import SCALE_STEP

    start_pose, start_scale = desk.scene.twin_pose, desk.scene.twin_scale
    before, start_box = shown(xvfb, desk), projected_box(desk)
    x, y = inner_pixel(desk, LEFT)
    h = hit_at(desk, x, y)
    xdotool("mousemove", *on_screen(desk, x, y), "mousedown", "3")
    step_until(desk, lambda: desk.hand.grab_depth is not None)
    end = (x + 40, y - 20)
    move(desk, *end)
    xdotool("mouseup", "3")
    step_until(desk, lambda: bool(applied(desk, it.SetTwinPose)))
    (moved,) = applied(desk, it.SetTwinPose)
    assert moved.scale == pytest.approx(start_scale) and np.allclose(moved.orientation, start_pose.orientation, atol=1e-9)
    assert np.allclose(project(desk, world_of(desk, h.point_mm)[None]), [end], atol=0.01)
    move(desk, *CORNER)
    # the picture: the brain is drawn where its vertices now project, a good way right and up
    below_menu = int(desk.backend.menu.rects[:, 3].max()) + 1
    drawn = box_of(shown(xvfb, desk)[below_menu:]) - box_of(before[below_menu:])
    assert np.allclose(drawn, projected_box(desk) - start_box, atol=3.0), (drawn, projected_box(desk) - start_box)
    assert drawn[0] > 25 and drawn[1] < -10

    xdotool("mousemove", *on_screen(desk, *end), "mousedown", "3")
    step_until(desk, lambda: desk.hand.grab_depth is not None)
    xdotool(*["click", "4"] * 3)
    step_until(desk, lambda: desk.scene.twin_scale == pytest.approx(start_scale * SCALE_STEP**3))
    xdotool("mouseup", "3")
    step_until(desk, lambda: len(applied(desk, it.SetTwinPose)) == 2)
    scaled = applied(desk, it.SetTwinPose)[-1]
    assert scaled.scale == pytest.approx(start_scale * SCALE_STEP**3)
    assert np.allclose(project(desk, world_of(desk, h.point_mm)[None]), [end], atol=0.01)

    xdotool("key", "ctrl+z")
    step_until(desk, lambda: len(applied(desk, it.Undo)) == 1)
    assert desk.scene.twin_scale == pytest.approx(start_scale)
    assert desk.scene.twin_pose.position == pytest.approx(moved.position)
    xdotool("key", "ctrl+z")
    step_until(desk, lambda: len(applied(desk, it.Undo)) == 2)
    assert desk.scene.twin_pose == start_pose and desk.scene.twin_scale == start_scale


def test_a_click_on_the_menu_chooses_the_tool_and_not_the_twin(xvfb: Any, desk: Any) -> None:
    """A click on the menu's "3 measure" entry puts the measure tool in hand (a ChooseTool intent),
    selects nothing, and the menu now draws that entry, not "1 select", in the highlight colour."""
    rects = desk.backend.menu.rects.copy()

    def orange(entry: int) -> int:
        x0, y0, x1, y1 = rects[entry]
        img = shown(xvfb, desk)[int(y0) : int(y1) + 1, int(x0) : int(x1) + 1]
        return colour_count(img, lambda r, g, b: (r - b > 60) & (r > 120))

    assert orange(0) > 3 and orange(2) == 0
    x0, y0, x1, y1 = rects[2]
    xdotool("mousemove", *on_screen(desk, (x0 + x1) / 2, (y0 + y1) / 2), "click", "1")
    step_until(desk, lambda: desk.session.belt.tool("right").name == "measure")
    step_until(desk, lambda: desk.backend._mouse.left is None)
    assert desk.step()
    assert [(i.hand, i.tool) for i in applied(desk, it.ChooseTool)] == [("right", "measure")]
    assert not applied(desk, it.Select) and desk.session.belt.tool("right").start is None
    assert orange(2) > 3 and orange(0) == 0


def test_landmark_and_draw_with_the_mouse_and_delete_them_with_x(xvfb: Any, desk: Any) -> None:
    """Key 2: a click places a landmark on the surface under the cursor (drawn in its yellow); X over
    it deletes it. Key 5: a drag draws a stroke on the surface, from the point pressed on; X over it
    erases it."""
    xdotool("key", "2")
    step_until(desk, lambda: desk.session.belt.tool("right").name == "landmark")
    x, y = inner_pixel(desk, RIGHT)
    h = hit_at(desk, x, y)
    xdotool("mousemove", *on_screen(desk, x, y), "click", "1")
    step_until(desk, lambda: bool(applied(desk, it.PlaceLandmark)))
    (placed,) = applied(desk, it.PlaceLandmark)
    assert np.allclose(placed.point_mm, h.point_mm, atol=1e-6) and placed.structure == RIGHT
    assert desk.step()
    yellow = colour_count(shown(xvfb, desk), lambda r, g, b: (r > 200) & (g > 170) & (b < 100))
    assert yellow > 3
    xdotool("key", "x")
    step_until(desk, lambda: bool(applied(desk, it.DeleteLandmark)))
    assert applied(desk, it.DeleteLandmark)[0].mark_id == placed.mark_id and not desk.session.workspace.landmarks

    xdotool("key", "5")
    step_until(desk, lambda: desk.session.belt.tool("right").name == "draw")
    first = hit_at(desk, x, y)
    xdotool("mousedown", "1")
    step_until(desk, lambda: desk.session.belt.tool("right").points)
    for k in range(1, 7):
        move(desk, x + 4 * k, y + 2 * k)
    xdotool("mouseup", "1")
    step_until(desk, lambda: bool(applied(desk, it.AddStroke)))
    (stroke,) = applied(desk, it.AddStroke)
    assert stroke.on_surface and len(stroke.points_mm) >= 5
    assert np.allclose(stroke.points_mm[0], first.point_mm, atol=1e-6)
    xdotool("key", "x")
    step_until(desk, lambda: bool(applied(desk, it.EraseStroke)))
    assert not desk.session.workspace.strokes
