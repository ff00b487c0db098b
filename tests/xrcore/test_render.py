"""The renderer draws the real brain twin with a real EGL context (llvmpipe in CI)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from xrcore.backends.sim import QUEST_LEFT_FOV, eye_views
from xrcore.motion import look_rotation
from xrcore.scene import ClipPlane, Landmark, Scene, Sphere, frame_twin
from xrcore.types import Pose, View

W = 160


def views_from(
    eye: tuple[float, float, float], target: tuple[float, float, float], ipd: float = 0.063, size: int = W
) -> list[View]:
    return eye_views(Pose(eye, look_rotation(eye, target)), ipd, QUEST_LEFT_FOV, size, size)


def render(renderer: Any, scene: Scene, views: list[View]) -> tuple[np.ndarray, np.ndarray]:
    renderer.draw(scene, views)
    return renderer.read_pixels(0), renderer.read_pixels(1)


def background_mask(image: np.ndarray) -> np.ndarray:
    """True where the pixel is the clear colour (the corner pixel: the twin never reaches it here)."""
    mask: np.ndarray = np.all(image == image[0, 0], axis=-1)
    return mask


def project_columns(view: View, points: np.ndarray) -> np.ndarray:
    """Pixel column (x, 0 at the left edge) of world points (N, 3) in ``view``."""
    vp = view.fov.projection() @ view.view_matrix()
    clip = (vp @ np.c_[points, np.ones(len(points))].T).T
    columns: np.ndarray = (clip[:, 0] / clip[:, 3] + 1) / 2 * view.width
    return columns


@pytest.fixture
def scene(brain: Any) -> Scene:
    return Scene(brain, twin_pose=frame_twin(brain))


FRONT = (0.0, 0.0, 0.3)  # in front of the upright brain (anterior faces +Z), 30 cm away


def test_twin_visible_where_the_camera_looks_and_nowhere_else(renderer: Any, scene: Scene) -> None:
    """Looking at the brain fills a good part of the image; looking away leaves only background."""
    left, right = render(renderer, scene, views_from(FRONT, (0.0, 0.0, 0.0)))
    for image in (left, right):
        covered = ~background_mask(image)
        assert 0.02 < covered.mean() < 0.8  # a headset-wide field of view: the brain is a small part
        # the brain sits where the view points: its pixels' centre is within the middle third
        ys, xs = np.nonzero(covered)
        assert W / 3 < xs.mean() < 2 * W / 3 and W / 3 < ys.mean() < 2 * W / 3
    away_l, away_r = render(renderer, scene, views_from(FRONT, (0.0, 0.0, 1.0)))
    assert background_mask(away_l).all() and background_mask(away_r).all()


def test_clip_plane_removes_the_pixels_on_its_side(renderer: Any, scene: Scene, brain: Any) -> None:
    """A sagittal cut keeping the patient's right (world -X) leaves nothing right of the plane's image."""
    views = views_from(FRONT, (0.0, 0.0, 0.0))
    whole, _ = render(renderer, scene, views)
    lo, hi = brain.bounds()
    centre = (lo + hi) / 2
    scene.add_clip_plane(ClipPlane.through(centre, (1.0, 0.0, 0.0)))  # RAS +x: the patient's right
    cut, _ = render(renderer, scene, views)
    # world x = 0 is the plane; its image over the brain's depth and height spans these columns
    corners = np.array([(0.0, y, z) for y in (-0.09, 0.09) for z in (-0.09, 0.09)])
    plane_max_col = int(np.ceil(project_columns(views[0], corners).max()))
    assert (~background_mask(whole))[:, plane_max_col + 1 :].sum() > 200  # there was brain to remove
    assert (~background_mask(cut))[:, plane_max_col + 1 :].sum() == 0
    assert (~background_mask(cut))[:, : plane_max_col - 10].sum() > 200  # the kept half is still there
    # a coronal cut seen face-on: the section is capped, so the brain still covers the image centre
    # (drawn differently from the intact surface) instead of opening onto the background
    scene.clear_clip_planes()
    scene.add_clip_plane(ClipPlane.through(centre, (0.0, -1.0, 0.0)))  # keep the posterior half
    section, _ = render(renderer, scene, views)
    core = (~background_mask(whole)) & (~background_mask(section))
    assert core.sum() > 0.8 * (~background_mask(whole)).sum() * 0.5
    assert np.any(section[core] != whole[core], axis=-1).mean() > 0.9


def test_eyes_differ_by_the_expected_disparity(renderer: Any, scene: Scene, brain: Any) -> None:
    """The brain's horizontal shift between the eyes is what the IPD and field of view predict."""

    def shift(ipd: float) -> tuple[float, float]:
        views = views_from(FRONT, (0.0, 0.0, 0.0), ipd=ipd)
        left, right = render(renderer, scene, views)
        measured = np.nonzero(~background_mask(right))[1].mean() - np.nonzero(~background_mask(left))[1].mean()
        centre = np.zeros((1, 3))  # frame_twin put the brain's bounding-box centre at the origin
        expected = project_columns(views[1], centre)[0] - project_columns(views[0], centre)[0]
        return float(measured), float(expected)

    measured, expected = shift(0.063)
    measured_wide, expected_wide = shift(0.09)
    assert abs(measured - expected) < 1.5
    assert abs(measured_wide - expected_wide) < 1.5
    # disparity grows with the IPD by the amount geometry says: (0.09 - 0.063) m at 0.3 m
    px_per_tan = W / (np.tan(QUEST_LEFT_FOV.angle_right) - np.tan(QUEST_LEFT_FOV.angle_left))
    assert abs((measured - measured_wide) - 0.027 / 0.3 * px_per_tan) < 1.5


def test_one_pass_and_two_pass_stereo_give_the_same_pixels(renderer_factory: Any, scene: Scene) -> None:
    """Layered single-pass stereo (gl_Layer) renders exactly what one pass per eye renders."""
    views = views_from((0.1, 0.05, 0.25), (0.0, 0.0, 0.0))
    layered = render(renderer_factory(stereo="layered"), scene, views)
    two_pass = render(renderer_factory(stereo="two-pass"), scene, views)
    assert renderer_factory(stereo="layered").stereo == "layered"
    assert np.array_equal(layered[0], two_pass[0]) and np.array_equal(layered[1], two_pass[1])
    assert not np.array_equal(layered[0], layered[1])


def test_opacity_selection_and_landmarks_change_the_right_pixels(renderer: Any, scene: Scene) -> None:
    """A transparent hemisphere lets the background through; a selected one is tinted; a landmark shows."""
    views = views_from(FRONT, (0.0, 0.0, 0.0))
    base, _ = render(renderer, scene, views)
    scene.set_opacity(0, 0.3)
    faded, _ = render(renderer, scene, views)
    changed = np.any(faded != base, axis=-1)
    assert changed.sum() > 100
    # blending toward the dark background darkens what changed
    assert faded[changed][:, :3].astype(int).sum() < base[changed][:, :3].astype(int).sum()
    scene.set_opacity(0, 1.0)
    scene.select(["right cerebral hemisphere (pial)"])
    picked, _ = render(renderer, scene, views)
    tinted = np.any(picked != base, axis=-1)
    assert tinted.sum() > 100
    # the highlight is orange: red rises relative to blue where the selection changed pixels
    diff = picked[tinted][:, :3].astype(int) - base[tinted][:, :3].astype(int)
    assert diff[:, 0].mean() > diff[:, 2].mean()
    scene.select([])
    scene.landmarks.append(Landmark((0.0, 0.0, 0.12), color=(0.0, 0.0, 1.0, 1.0), radius=0.03))
    scene.twin_pose = Pose()  # landmark in twin coordinates: put the twin at the origin
    marked, _ = render(renderer, scene, views_from((0.0, 0.0, 0.5), (0.0, 0.0, 0.12)))
    blue = (marked[..., 2].astype(int) > 3 * marked[..., 0].astype(int) + 20).sum()
    assert blue > 20  # the blue landmark sphere is in view, in front of the brain


def test_frame_statistics_include_gpu_time(renderer: Any, scene: Scene) -> None:
    """Timer queries give a GPU time per frame; CPU times are recorded for every draw."""
    views = views_from(FRONT, (0.0, 0.0, 0.0))
    cpu_before = len(renderer.stats.cpu_ms)
    for _ in range(3):
        renderer.draw(scene, views)
    renderer.finish()
    assert len(renderer.stats.cpu_ms) == cpu_before + 3
    s = renderer.stats.summary()
    assert s["gpu_ms"]["median"] is not None and 0 < s["gpu_ms"]["median"] < 10_000


def test_copy_to_texture_array_fills_both_swapchain_layers(renderer: Any, scene: Scene) -> None:
    """Both eyes land in layers 0 and 1 of an sRGB array texture (an OpenXR swapchain image), pixel
    for pixel; a matching depth array receives the resolved depth."""
    from OpenGL import GL

    views = views_from(FRONT, (0.0, 0.0, 0.0))
    left, right = render(renderer, scene, views)
    color, depth = (int(t) for t in GL.glGenTextures(2))
    try:
        GL.glBindTexture(GL.GL_TEXTURE_2D_ARRAY, color)
        GL.glTexStorage3D(GL.GL_TEXTURE_2D_ARRAY, 1, GL.GL_SRGB8_ALPHA8, W, W, 2)
        GL.glBindTexture(GL.GL_TEXTURE_2D_ARRAY, depth)
        GL.glTexStorage3D(GL.GL_TEXTURE_2D_ARRAY, 1, GL.GL_DEPTH24_STENCIL8, W, W, 2)
        assert renderer.copy_to_texture_array(color, depth, W, W) is True
        GL.glBindTexture(GL.GL_TEXTURE_2D_ARRAY, color)
        raw = GL.glGetTexImage(GL.GL_TEXTURE_2D_ARRAY, 0, GL.GL_RGBA, GL.GL_UNSIGNED_BYTE)
        layers = np.frombuffer(raw, dtype=np.uint8).reshape(2, W, W, 4)[:, ::-1]
        assert np.array_equal(layers[0], left) and np.array_equal(layers[1], right)
        GL.glBindTexture(GL.GL_TEXTURE_2D_ARRAY, depth)
        d = np.frombuffer(GL.glGetTexImage(GL.GL_TEXTURE_2D_ARRAY, 0, GL.GL_DEPTH_COMPONENT, GL.GL_FLOAT),
                          dtype=np.float32).reshape(2, W, W)[:, ::-1]
        covered = ~background_mask(left)
        # far plane where no brain; nearer where it is (anti-aliased edge pixels may hold either)
        assert np.all(d[0][~covered] == 1.0) and (d[0][covered] < 1.0).mean() > 0.9
    finally:
        GL.glDeleteTextures(2, [color, depth])


def test_read_stereo_is_both_eyes_side_by_side(renderer: Any, scene: Scene) -> None:
    """The one-array read-back the simulator writes as PNG equals the two eye read-backs joined."""
    left, right = render(renderer, scene, views_from(FRONT, (0.0, 0.0, 0.0)))
    both = renderer.read_stereo()
    assert both.shape == (W, 2 * W, 4) and both.flags.c_contiguous
    assert np.array_equal(both[:, :W], left) and np.array_equal(both[:, W:], right)
    assert not np.array_equal(left, right)  # the eyes differ, so a swapped or repeated eye would fail
    # a band of rows (what the simulator's PNG writer streams), clamped at the bottom edge
    assert np.array_equal(renderer.read_stereo(10, 25), both[10:35])
    assert np.array_equal(renderer.read_stereo(W - 5, 64), both[W - 5 :])


def _vm_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_a_big_twin_draws_in_bounded_memory(renderer_factory: Any, brain: Any) -> None:
    """655k triangles at 720x800 per eye with 4x MSAA, opaque then semi-transparent: drawing adds
    little to the process's memory.

    On llvmpipe the frame goes out in ~30 batches; without the renderer waiting for older batches,
    the rasteriser queued them all (about 100 MB more here, 280 MB semi-transparent, growing with
    triangles); bounded it adds about 15 MB (shader compilation included)."""
    import trimesh

    from assets.twin import Structure, Twin

    structures = []
    for s in brain.structures:
        v, f = trimesh.remesh.subdivide(s.vertices, s.faces)
        v, f = trimesh.remesh.subdivide(v, f)
        structures.append(Structure(s.name, v.astype(np.float32), f.astype(np.int32), color=s.color))
    big = Twin("brain-x16", structures)
    big_scene = Scene(big, twin_pose=frame_twin(big))
    renderer = renderer_factory(720, 800)
    renderer.upload(big)
    renderer.finish()
    before = _vm_rss_mb()
    views = eye_views(Pose(FRONT, look_rotation(FRONT, (0.0, 0.0, 0.0))), 0.063, QUEST_LEFT_FOV, 720, 800)
    for _ in range(3):
        renderer.draw(big_scene, views)
        renderer.finish()
    grown = _vm_rss_mb() - before
    assert grown < 50, f"drawing a 655k-triangle twin grew the process by {grown:.0f} MB"
    assert not background_mask(renderer.read_pixels(0)).all()
    # semi-transparent, each hemisphere is one draw per face side: batched the same way
    for i in range(len(structures)):
        big_scene.set_opacity(i, 0.5)
    for _ in range(2):
        renderer.draw(big_scene, views)
        renderer.finish()
    grown = _vm_rss_mb() - before
    assert grown < 60, f"drawing a semi-transparent 655k-triangle twin grew the process by {grown:.0f} MB"


def srgb_to_linear(values: np.ndarray) -> np.ndarray:
    """Linear light (0..1) of sRGB-encoded 8-bit values (the sRGB transfer function, IEC 61966-2-1)."""
    c = values.astype(np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def test_transparent_background_gives_premultiplied_alpha(renderer: Any, scene: Scene) -> None:
    """With the background's alpha 0 (passthrough), the image is premultiplied alpha over nothing:
    background (0, 0, 0, 0) whatever its RGB, the opaque hemisphere alpha 255, the semi-transparent one
    in between, and on every pixel (anti-aliased edges included) linear colour <= alpha."""
    views = views_from(FRONT, (0.0, 0.0, 0.0))
    right = scene.index("right cerebral hemisphere (pial)")
    left = 1 - right
    scene.background = (0.3, 0.5, 0.7, 0.0)
    scene.set_visible(right, False)
    left_only, _ = render(renderer, scene, views)
    scene.set_visible(right, True)
    scene.set_visible(left, False)
    right_only, _ = render(renderer, scene, views)
    scene.set_visible(left, True)
    scene.set_opacity(right, 0.4)
    image, _ = render(renderer, scene, views)

    alpha = image[..., 3]
    # where each hemisphere, drawn alone and opaque, covers a pixel fully (all samples) or at all
    full_left, full_right = left_only[..., 3] == 255, right_only[..., 3] == 255
    covered_left, covered_right = left_only[..., 3] > 0, right_only[..., 3] > 0
    assert full_left.sum() > 200 and full_right.sum() > 200  # so opaque surfaces write alpha 1
    background = ~covered_left & ~covered_right
    assert background.sum() > 0.2 * image.shape[0] * image.shape[1]
    assert np.all(image[background] == 0)
    assert np.all(alpha[full_left] == 255)
    seen_through = alpha[full_right & ~covered_left]
    assert len(seen_through) > 200 and np.all(seen_through < 255) and 40 < np.median(seen_through) < 230
    assert np.any((alpha > 0) & (alpha < 255) & covered_left & ~covered_right)  # resolved MSAA edges
    # premultiplied in linear light: the sRGB-encoded colour decodes to at most alpha (plus rounding)
    assert np.all(srgb_to_linear(image[..., :3]) <= alpha[..., None] / 255.0 + 2 / 255)
    # a marker is opaque whatever its colour's alpha: alpha 255 inside its outline, above the brain
    scene.overlay = [Sphere((0.0, 0.1, 0.0), 0.02, (0.2, 0.4, 1.0, 0.5))]
    marked, _ = render(renderer, scene, views)
    ball = np.any(marked != image, axis=-1)
    inside = ball & np.roll(ball, 1, 0) & np.roll(ball, -1, 0) & np.roll(ball, 1, 1) & np.roll(ball, -1, 1)
    assert inside.sum() > 20 and np.all(marked[inside, 3] == 255)
    # an opaque background (alpha 1) still gives an opaque image
    scene.background = (0.3, 0.5, 0.7, 1.0)
    opaque, _ = render(renderer, scene, views)
    assert np.all(opaque[..., 3] == 255)


def test_hovering_brightens_the_rim_less_than_selecting(renderer: Any, scene: Scene) -> None:
    """A hovered structure's silhouette turns towards the highlight colour, less than when selected;
    the other structure is untouched."""
    views = views_from(FRONT, (0.0, 0.0, 0.0))
    right = scene.index("right cerebral hemisphere (pial)")
    base, _ = render(renderer, scene, views)
    scene.hover([right])
    hovered, _ = render(renderer, scene, views)
    scene.hover([])
    scene.select([right])
    selected, _ = render(renderer, scene, views)
    scene.select([])
    assert np.array_equal(render(renderer, scene, views)[0], base)  # the highlight goes with the hover

    structure = np.any(selected != base, axis=-1)
    assert structure.sum() > 200
    # the rim: the structure's pixels within 2 px of the background
    empty = background_mask(base)
    near_empty = empty.copy()
    for dy, dx in ((-2, 0), (2, 0), (0, -2), (0, 2), (-1, -1), (1, 1), (-1, 1), (1, -1)):
        near_empty |= np.roll(empty, (dy, dx), axis=(0, 1))
    rim = structure & ~empty & near_empty
    assert rim.sum() > 50

    def redder(image: np.ndarray) -> float:
        """Mean rise of red over blue on the rim (the highlight is orange)."""
        d = image[rim][:, :3].astype(int) - base[rim][:, :3].astype(int)
        return float((d[:, 0] - d[:, 2]).mean())

    assert 5 < redder(hovered) < 0.75 * redder(selected)
    assert not np.any(hovered[~structure] != base[~structure])


@pytest.mark.parametrize("stereo", ["layered", "two-pass"])
def test_a_late_look_adds_to_the_overlay_once_a_frame_after_the_twin_is_drawn(
        renderer_factory: Any, scene: Scene, stereo: str) -> None:  # fmt: skip
    """``Scene.late`` is called once a draw (two passes too), before the overlay and labels are read: a
    ball and a label it adds are in both eyes' images of that frame, pixel for pixel as when the step
    sets them."""
    from xrcore.scene import Label

    renderer = renderer_factory(stereo=stereo)
    views = views_from(FRONT, (0.0, 0.0, 0.0))
    ball = Sphere((0.0, 0.0, 0.1), 0.01, (1.0, 0.1, 0.1, 1.0))
    label = Label("late", (0.0, 0.03, 0.1), (0.1, 1.0, 0.1, 1.0))
    plain = render(renderer, scene, views)
    scene.overlay, scene.overlay_labels = [ball], [label]
    stepped = render(renderer, scene, views)
    scene.overlay, scene.overlay_labels = [], []
    calls: list[int] = []

    def late(s: Scene) -> None:
        calls.append(renderer.frame_index)
        s.overlay = [*s.overlay, ball]
        s.overlay_labels = [*s.overlay_labels, label]

    scene.late = late
    looked = render(renderer, scene, views)
    assert len(calls) == 1
    for eye in range(2):
        assert np.any(looked[eye] != plain[eye])  # the ball and the label are there
        assert np.array_equal(looked[eye], stepped[eye])  # as if the step had set them
