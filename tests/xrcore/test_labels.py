"""Text labels: avatar names, landmark texts and the selected structure's name, drawn as billboards
by the renderer on a real EGL context (llvmpipe in CI), checked against the camera maths."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from xrcore.backends.sim import QUEST_LEFT_FOV, eye_views
from xrcore.motion import look_rotation
from xrcore.render.glyphs import MAX_LABEL_CHARS, GlyphAtlas
from xrcore.scene import AVATAR_HEAD_RADIUS, Avatar, Label, LabelStyle, Landmark, Scene, SceneError, frame_twin
from xrcore.types import Pose, View

W = 200
GREEN = (0.0, 1.0, 0.0, 1.0)
ORIGIN = (0.0, 0.0, 0.0)
AHEAD = (0.0, 0.0, -1.0)
#: Plate margin in line units (the renderer's PLATE_PAD): a plate is (1 + 2 x this) lines tall.
PAD = 0.18


def views_from(eye: tuple[float, float, float], target: tuple[float, float, float], size: int = W) -> list[View]:
    return eye_views(Pose(eye, look_rotation(eye, target)), 0.063, QUEST_LEFT_FOV, size, size)


def project(view: View, point: Any) -> tuple[float, float]:
    """(column, row) in pixels, row 0 at the top, of a world point (metres) seen by ``view``."""
    clip = view.fov.projection() @ view.view_matrix() @ np.array([*point, 1.0])
    ndc = clip[:3] / clip[3]
    return float((ndc[0] + 1) / 2 * view.width), float((1 - ndc[1]) / 2 * view.height)


def text_mask(image: np.ndarray) -> np.ndarray:
    """Pixels of green label text (bright green, little red or blue)."""
    r, g, b = (image[..., k].astype(int) for k in range(3))
    return (g > 90) & (r < 70) & (b < 70)


@pytest.fixture
def scene(brain: Any) -> Scene:
    """An empty stage: the brain hidden, labels green, ``angle`` 10 degrees to be many pixels tall."""
    s = Scene(brain, label_style=LabelStyle(angle=10.0, color=GREEN))
    for i in range(len(s.materials)):
        s.set_visible(i, False)
    return s


@pytest.fixture(params=["layered", "two-pass"])
def renderer(request: Any, renderer_factory: Any) -> Iterator[Any]:
    """A W x W per-eye renderer in each stereo mode llvmpipe offers; fails on any GL error."""
    r = renderer_factory(width=W, height=W, stereo=request.param)
    before = r.gl_errors
    yield r
    assert r.gl_errors == before, "GL errors during the test (see the log)"


def draw(renderer: Any, scene: Scene, views: list[View]) -> tuple[np.ndarray, np.ndarray]:
    renderer.draw(scene, views)
    return renderer.read_pixels(0), renderer.read_pixels(1)


def test_avatar_name_is_drawn_above_its_head_in_both_eyes(renderer: Any, scene: Scene) -> None:
    """The name's text lands where the camera maths put the label: centred over the head, between the
    top of the head and one plate height above it, in each eye, with the eyes' disparity."""
    head = (0.05, -0.1, -1.0)
    scene.avatars.append(Avatar("p1", head=Pose(head), label="Ana"))
    views = views_from(ORIGIN, AHEAD)
    images = draw(renderer, scene, views)
    pivot = np.array(head) + np.array([0.0, AVATAR_HEAD_RADIUS + scene.label_style.gap, 0.0])
    height = 2 * math.tan(math.radians(10.0) / 2) * np.linalg.norm(pivot - views[0].pose.position)
    centres = []
    for view, image in zip(views, images, strict=True):
        mask = text_mask(image)
        assert mask.sum() > 30, "no label text in this eye"
        rows, cols = np.nonzero(mask)
        col, bottom = project(view, pivot)
        _, top = project(view, pivot + np.array([0.0, height * (1 + 2 * PAD), 0.0]))
        _, head_top = project(view, np.array(head) + np.array([0.0, AVATAR_HEAD_RADIUS, 0.0]))
        assert abs(cols.mean() - col) < 3.0
        assert rows.min() >= top - 1 and rows.max() <= bottom + 1
        assert rows.max() < head_top  # above the head, not on it
        centres.append(cols.mean())
    expected = project(views[1], pivot)[0] - project(views[0], pivot)[0]
    assert abs((centres[1] - centres[0]) - expected) < 1.5


def test_layered_and_two_pass_labels_give_the_same_pixels(renderer_factory: Any, scene: Scene) -> None:
    """Single-pass (gl_Layer) and one-pass-per-eye stereo draw identical labels."""
    scene.avatars.append(Avatar("p1", head=Pose((0.1, -0.1, -0.8)), label="Dr. Ibáñez"))
    views = views_from((0.0, 0.05, 0.0), (0.05, 0.0, -1.0))
    layered = draw(renderer_factory(width=W, height=W, stereo="layered"), scene, views)
    two_pass = draw(renderer_factory(width=W, height=W, stereo="two-pass"), scene, views)
    assert text_mask(layered[0]).sum() > 30
    assert np.array_equal(layered[0], two_pass[0]) and np.array_equal(layered[1], two_pass[1])


def test_changing_the_text_changes_the_pixels_and_rebuilds_glyphs_only_then(renderer: Any, scene: Scene) -> None:
    """Another name draws other pixels and a longer one a wider label; moving an avatar re-uses the
    glyph instances (no per-glyph work per frame), changing its name rebuilds them once."""
    scene.avatars.append(Avatar("p1", head=Pose((0.0, -0.1, -1.0)), label="Ana"))
    views = views_from(ORIGIN, AHEAD)
    ana, _ = draw(renderer, scene, views)
    uploads = renderer.label_uploads
    for dx in (0.01, 0.02, 0.0):
        scene.avatars[0] = Avatar("p1", head=Pose((dx, -0.1, -1.0)), label="Ana")
        moved, _ = draw(renderer, scene, views)
    assert renderer.label_uploads == uploads
    assert np.array_equal(moved, ana)  # back where it started: same pixels
    scene.avatars[0] = Avatar("p1", head=Pose((0.0, -0.1, -1.0)), label="Bob")
    bob, _ = draw(renderer, scene, views)
    assert renderer.label_uploads == uploads + 1
    assert (text_mask(ana) != text_mask(bob)).sum() > 20
    scene.avatars[0] = Avatar("p1", head=Pose((0.0, -0.1, -1.0)), label="Alexandra")
    long, _ = draw(renderer, scene, views)

    def width(image: np.ndarray) -> int:
        cols = np.nonzero(text_mask(image))[1]
        return int(cols.max() - cols.min())

    assert width(long) > 2 * width(ana)


def test_label_behind_the_camera_draws_nothing(renderer: Any, scene: Scene) -> None:
    """A huge label on an avatar behind the viewer leaves both eyes pure background."""
    scene.label_style = LabelStyle(angle=40.0, color=GREEN)
    scene.avatars.append(Avatar("p1", head=Pose((0.0, 0.0, 0.6)), label="Behind you"))
    # just behind and beside the eyes: the sign, turned to face the head, would reach forward into view
    scene.avatars.append(Avatar("p2", head=Pose((0.3, -0.11, 0.02)), label="Beside you"))
    left, right = draw(renderer, scene, views_from(ORIGIN, AHEAD))
    for image in (left, right):
        assert np.all(image == image[0, 0])
    # the same label in front of the viewer does draw (the scene itself is not empty of labels)
    scene.avatars[:] = [Avatar("p1", head=Pose((0.0, 0.0, -0.6)), label="Behind you")]
    front, _ = draw(renderer, scene, views_from(ORIGIN, AHEAD))
    assert text_mask(front).sum() > 100


def test_angular_labels_keep_their_size_with_distance_and_world_labels_shrink(renderer: Any, scene: Scene) -> None:
    """At 1 m and 2 m an angular label is equally tall on screen; a world-sized one half as tall."""
    views = views_from(ORIGIN, AHEAD)

    def text_height(distance: float) -> int:
        scene.avatars[:] = [Avatar("p1", head=Pose((0.0, -0.1, -distance)), label="Hd")]
        left, _ = draw(renderer, scene, views)
        rows = np.nonzero(text_mask(left))[0]
        return int(rows.max() - rows.min() + 1)

    near, far = text_height(1.0), text_height(2.0)
    assert near > 10 and abs(near - far) <= 2
    scene.label_style = LabelStyle(size="world", height=0.2, color=GREEN)
    near, far = text_height(1.0), text_height(2.0)
    assert near > 10 and abs(near / far - 2.0) < 0.3


def test_labels_on_top_show_through_the_twin_unless_turned_off(renderer: Any, brain: Any) -> None:
    """A name behind the brain is drawn over it by default; with ``on_top`` off the brain hides it
    entirely (the image is the one without the label)."""
    scene = Scene(brain, twin_pose=frame_twin(brain), label_style=LabelStyle(angle=8.0, color=GREEN))
    scene.avatars.append(Avatar("p1", head=Pose((0.0, -0.15, -0.3)), label="Hid"))
    views = views_from((0.0, 0.0, 0.25), (0.0, 0.0, -0.3))
    on_top, _ = draw(renderer, scene, views)
    scene.label_style = LabelStyle(angle=8.0, color=GREEN, on_top=False)
    hidden, _ = draw(renderer, scene, views)
    scene.show_labels = False
    unlabelled, _ = draw(renderer, scene, views)
    assert np.any(on_top != unlabelled, axis=-1).sum() > 100
    assert np.array_equal(hidden, unlabelled)


def test_landmark_and_selection_labels(renderer: Any, scene: Scene, brain: Any) -> None:
    """A landmark's text shows above it in its colour; the selected structure's name shows only with
    ``label_selection``."""
    scene.landmarks.append(Landmark((0.0, -0.15, -1.0), color=GREEN, label="Broca"))
    views = views_from(ORIGIN, AHEAD)
    left, _ = draw(renderer, scene, views)
    rows, cols = np.nonzero(text_mask(left))
    col, row = project(views[0], (0.0, -0.15, -1.0))
    assert len(rows) > 30 and abs(cols.mean() - col) < 3 and rows.max() < row
    labels = scene.labels()
    scene.select([0])
    assert scene.labels() == labels
    scene.label_selection = True
    names = [label.text for label in scene.labels()]
    assert names == ["Broca", brain.structures[0].name]


def test_scene_labels_skip_what_has_no_text_or_head() -> None:
    """Avatars without a head pose or name and blank landmarks get no label; ``show_labels`` off
    gives none at all; label positions follow the head and twin pose."""
    from assets.twin import Structure, Twin

    corners = np.array([(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)]) * 0.01
    tet = Structure("tet", corners, np.array([(0, 2, 1), (0, 1, 3), (0, 3, 2), (1, 2, 3)]))
    scene = Scene(Twin("t", [tet]), twin_pose=Pose((1.0, 0.0, 0.0)))
    scene.avatars += [Avatar("a", head=Pose((0.0, 1.5, 0.0)), label="Ann"), Avatar("b", label="NoHead"),
                      Avatar("c", head=Pose((0.0, 1.6, 0.0)))]  # fmt: skip
    scene.landmarks += [Landmark((0.0, 0.0, 0.0), label="  "), Landmark((0.0, 0.0, 0.0), radius=0.01, label="L")]
    labels = scene.labels()
    assert [label.text for label in labels] == ["Ann", "L"]
    gap = scene.label_style.gap
    assert labels[0].position == pytest.approx((0.0, 1.5 + AVATAR_HEAD_RADIUS + gap, 0.0))
    assert labels[1].position == pytest.approx((1.0, 0.01 + gap, 0.0))
    scene.show_labels = False
    assert scene.labels() == []
    with pytest.raises(SceneError, match="label size"):
        LabelStyle(size="huge")  # type: ignore[arg-type]
    with pytest.raises(SceneError, match="label angle"):
        LabelStyle(angle=0.0)


def test_glyph_layout_counts_missing_characters_and_cuts_long_text() -> None:
    """Characters outside the atlas draw as their unaccented letter or '?' and are counted; over-long
    text ends in '...'; the layout is centred on x = 0 and sits on y >= 0."""
    atlas = GlyphAtlas(pixel_size=24)
    quads, width = atlas.layout("A\u0416B")  # Cyrillic Zhe: not in the Latin-1 atlas
    assert atlas.missing == {"\u0416": 1} and len(quads) == 3
    assert np.allclose(quads[1], atlas.layout("A?B")[0][1])
    assert quads[:, 0].min() == pytest.approx(-width / 2, abs=0.1) and quads[:, 1].min() >= -1e-6
    atlas.glyphs.pop("\u00fc", None)  # as with a font that has no accented letters (the ASCII fallback has none)
    assert np.array_equal(atlas.layout("M\u00fcller")[0], atlas.layout("Muller")[0])
    assert atlas.missing["\u00fc"] == 1
    assert GlyphAtlas.clean("x" * 500).endswith("...") and len(GlyphAtlas.clean("x" * 500)) == MAX_LABEL_CHARS
    assert GlyphAtlas.clean(" two\n lines ") == "two lines"
    assert atlas.layout("a b")[1] > atlas.layout("ab")[1]  # a space advances the pen


# --- decluttering: the pure layout (xrcore/render/labels.py) ---------------------------------------

HEAD = dict(head=np.zeros(3), head_up=np.array([0.0, 1.0, 0.0]), head_right=np.array([1.0, 0.0, 0.0]))
#: 3 degrees per line, as an angular label style would give
ANGULAR = dict(size=2 * math.tan(math.radians(3.0) / 2), angular=True)
PLATE = 1 + 2 * PAD


def layout(**kw: Any) -> Any:
    from xrcore.render.labels import LabelLayout

    return LabelLayout(plate_height=PLATE, **kw)


def overlaps(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


def assert_no_overlap(placement: Any) -> None:
    for rects in placement.rects:
        shown = [r for r in rects if not np.isnan(r).any()]
        for i, a in enumerate(shown):
            for b in shown[i + 1 :]:
                assert not overlaps(a, b), (a, b)


def test_layout_stacks_the_farther_of_two_coincident_labels_above_the_nearer() -> None:
    """Two labels anchored 1 mm apart: the nearer keeps its anchor, the farther moves up one slot
    (plate height plus gap); their rectangles overlap in no eye; a third far away is untouched."""
    views = views_from(ORIGIN, AHEAD, size=400)
    anchors = np.array([(0.0, 0.0, -1.001), (0.001, 0.0, -1.0), (0.3, 0.0, -1.0)])
    lay = layout()
    p = lay.place(anchors, np.array([1.5, 2.0, 1.0]), views, keys=["far", "near", "aside"], **HEAD, **ANGULAR)
    assert p.visible.all()
    assert list(p.slots) == [1, 0, 0]
    assert p.offsets[0] == pytest.approx(lay.step) and lay.step > PLATE
    assert_no_overlap(p)
    # at their anchors the two would overlap: with no slot but the anchor, the farther is hidden
    anchor_only = layout(slots=(0,)).place(anchors, np.array([1.5, 2.0, 1.0]), views, keys="abc", **HEAD, **ANGULAR)
    assert list(anchor_only.visible) == [False, True, True]
    gap_px = p.rects[0, 1, 1] - p.rects[0, 0, 3]  # bottom of the upper plate to top of the lower
    assert 0 < gap_px < 0.5 * (p.rects[0, 1, 3] - p.rects[0, 1, 1])


def test_layout_puts_the_selection_first_and_hides_what_cannot_be_placed() -> None:
    """Priority class beats distance (the selection keeps its anchor though farther); with only two
    slots, the third of three coincident labels is hidden and occupies nothing."""
    views = views_from(ORIGIN, AHEAD, size=400)
    anchors = np.array([(0.0, 0.0, -1.0), (0.0, 0.0, -1.2), (0.0, 0.0, -1.1)])
    widths = np.full(3, 1.5)
    p = layout().place(anchors, widths, views, keys="abc", priority=np.array([1, 0, 1]), **HEAD, **ANGULAR)
    assert list(p.slots) == [1, 0, 2] and p.visible.all()
    p = layout(slots=(0, 1)).place(anchors, widths, views, keys="abc", priority=np.array([1, 0, 1]), **HEAD, **ANGULAR)
    assert list(p.visible) == [True, True, False]
    assert np.isnan(p.rects[:, 2]).all()
    assert_no_overlap(p)


def test_layout_is_stable_from_frame_to_frame() -> None:
    """Labels at nearly the same distance that swap order by a millimetre keep their places; a pushed
    label returns to its anchor only once it is clear by the hysteresis margin, and then stays."""
    views = views_from(ORIGIN, AHEAD, size=400)
    lay = layout(hysteresis_px=4.0)
    widths = np.full(2, 1.5)
    first = None
    for k in range(6):  # A and B alternate being nearer by 1 mm
        d = 0.001 if k % 2 else -0.001
        anchors = np.array([(0.0, 0.0, -1.0 + d), (0.002, 0.0, -1.0 - d)])
        p = lay.place(anchors, widths, views, keys="AB", **HEAD, **ANGULAR)
        first = list(p.slots) if first is None else first
        assert list(p.slots) == first
    # a farther label M, pushed up by a nearer S, slides right: it comes back to its anchor only
    # some way past the point where a fresh layout (no history, no hysteresis) would put it there
    path = [np.array([(0.0, 0.0, -0.999), (x, 0.0, -1.0)]) for x in np.linspace(0.0, 0.3, 301)]
    free_at = next(i for i, a in enumerate(path) if layout().place(a, widths, views, keys="SM", **HEAD, **ANGULAR).slots[1] == 0)
    lay = layout(hysteresis_px=4.0)
    slots = [lay.place(a, widths, views, keys="SM", **HEAD, **ANGULAR).slots[1] for a in path]
    assert slots[0] == 1 and 0 < free_at < len(path) - 1
    back = slots.index(0)
    assert back > free_at + 2
    assert all(s == 0 for s in slots[back:])  # no flicker once back
    # sliding back, it keeps its anchor until the two truly collide again (the plain margin, no
    # hysteresis), then the farther one, M, moves to the very next slot and stays there
    back_slots = np.array([lay.place(a, widths, views, keys="SM", **HEAD, **ANGULAR).slots for a in path[::-1]])
    assert np.all(back_slots[:, 0] == 0)
    pushed = np.flatnonzero(back_slots[:, 1])
    assert len(path) - 1 - pushed[0] == free_at - 1 and np.all(back_slots[pushed[0] :, 1] == 1)


def test_layout_one_decision_for_all_views_and_ignores_labels_not_in_view() -> None:
    """A conflict seen by only one view moves the label for every view (one offsets array); labels
    behind the viewer neither move nor block anything."""
    left = views_from(ORIGIN, AHEAD, size=400)[0]
    # a second camera 0.5 m to the right, looking the same way: a near and a far label line up for it
    right = views_from((0.5, 0.0, 0.0), (0.5, 0.0, -1.0), size=400)[0]
    # both straight ahead of the right camera, 0.5 m apart in depth; the left one sees them far apart
    anchors = np.array([(0.5, 0.0, -0.5), (0.5, 0.0, -1.0)])
    widths = np.full(2, 1.5)
    alone = layout().place(anchors, widths, [left], keys="ab", **HEAD, **ANGULAR)
    both = layout().place(anchors, widths, [left, right], keys="ab", **HEAD, **ANGULAR)
    assert list(alone.slots) == [0, 0]
    assert both.slots.min() == 0 and both.slots.max() > 0 and both.visible.all()
    assert_no_overlap(both)
    behind = np.array([(0.0, 0.0, 1.0), (0.001, 0.0, 1.0), (0.0, 0.0, -1.0)])
    p = layout().place(behind, np.full(3, 1.5), [left], keys="xyz", **HEAD, **ANGULAR)
    assert list(p.slots) == [0, 0, 0] and p.visible.all()
    assert np.isnan(p.rects[0, :2]).all() and not np.isnan(p.rects[0, 2]).any()


# --- decluttering, rendered -------------------------------------------------------------------------

BLUE = (0.0, 0.0, 1.0, 1.0)


def bands(mask: np.ndarray) -> list[tuple[int, int]]:
    """Runs of consecutive rows holding any ``mask`` pixel: (first row, last row + 1)."""
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return []
    breaks = np.flatnonzero(np.diff(rows) > 1)
    starts = np.r_[rows[0], rows[breaks + 1]]
    ends = np.r_[rows[breaks], rows[-1]] + 1
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def test_two_labels_at_nearly_the_same_point_render_as_two_separate_readable_plates(
    renderer: Any, scene: Scene
) -> None:
    """Two landmarks 1 mm apart, each labelled: both eyes show two opaque plates, one above the other
    with background between them, each carrying its own text, at the same rows in both eyes (one
    placement for both); the nearer label sits on its anchor, the other one slot higher."""
    scene.label_style = LabelStyle(angle=12.0, color=GREEN, background=BLUE)
    scene.landmarks += [Landmark((0.0, -0.05, -1.0), color=GREEN, radius=0.001, label="Broca"),
                        Landmark((0.001, -0.05, -1.001), color=GREEN, radius=0.001, label="Wernicke")]  # fmt: skip
    views = views_from(ORIGIN, AHEAD)
    images = draw(renderer, scene, views)
    placement = renderer.label_placement
    assert list(placement.slots) == [0, 1] and placement.visible.all()
    per_eye = []
    for view, image in zip(views, images, strict=True):
        r, g, b = (image[..., k].astype(int) for k in range(3))
        plate = (b > 150) & (r < 60) & (g < 60)
        found = bands(plate)
        assert len(found) == 2, found
        (top0, top1), (low0, low1) = found
        assert top1 < low0  # background rows between the plates
        text = g > 120  # green text, partly blended over the blue plate (plate and background: g < 60)
        upper, lower = text[top0:top1], text[low0:low1]
        assert upper.sum() > 50 and lower.sum() > 50
        # the upper plate carries the longer name
        width = [np.ptp(np.nonzero(t)[1]) for t in (upper, lower)]
        assert width[0] > 1.3 * width[1]
        # the lower plate's bottom sits on the nearer landmark's anchor
        anchor = np.array([0.0, -0.05 + 0.001 + scene.label_style.gap, -1.0])
        assert abs(low1 - project(view, anchor)[1]) < 3
        per_eye.append(found)
    assert all(abs(a - b) <= 1 for pa, pb in zip(*per_eye, strict=True) for a, b in zip(pa, pb, strict=True))
    # with labels far apart nobody moves
    scene.landmarks[1] = Landmark((0.0, -0.6, -1.0), color=GREEN, radius=0.001, label="Wernicke")
    draw(renderer, scene, views)
    assert list(renderer.label_placement.slots) == [0, 0]


def test_the_selection_label_keeps_its_anchor_against_a_nearer_landmark_label(renderer: Any, brain: Any) -> None:
    """The renderer gives the selected structure's name first claim: a landmark label anchored at the
    same point but nearer the viewer is the one that moves."""
    scene = Scene(brain, label_style=LabelStyle(angle=8.0, color=GREEN), label_selection=True)
    scene.select([0])
    anchor = np.array(scene.labels()[0].position)
    lm = Landmark(tuple(anchor - (0.0, 0.001 + scene.label_style.gap, -0.002)), radius=0.001, label="Here")
    scene.landmarks.append(lm)
    texts = [label.text for label in scene.labels()]
    assert texts == ["Here", brain.structures[0].name]
    eye = tuple(anchor + np.array([0.0, 0.0, 0.5]))
    draw(renderer, scene, views_from(eye, tuple(anchor)))
    assert list(renderer.label_placement.slots) == [1, 0]
    scene.label_selection = False  # the landmark alone: back on its anchor
    draw(renderer, scene, views_from(eye, tuple(anchor)))
    assert list(renderer.label_placement.slots) == [0]


# --- pinned and scaled labels (the session's panels and readouts) ----------------------------------

RED = (1.0, 0.0, 0.0, 1.0)


def test_a_pinned_label_stays_where_it_was_put_and_an_overlapping_one_moves(renderer: Any, scene: Scene) -> None:
    """A pinned label (green) draws exactly the pixels it draws alone, its plate's bottom on its
    position, though a nearer landmark label (red) is anchored at the same point; the landmark's label
    moves up above it instead. Unpinned, the farther label (the green one) would be the one to move."""
    scene.label_style = LabelStyle(angle=12.0, color=GREEN, background=BLUE)
    views = views_from(ORIGIN, AHEAD)
    landmark = Landmark((0.0, -0.05, -1.0), color=RED, radius=0.001, label="Broca")
    anchor = np.array([0.0, -0.05 + 0.001 + scene.label_style.gap, -1.002])  # just behind the landmark's
    panel = Label("Step 2", tuple(anchor), GREEN, pinned=True)
    scene.overlay_labels = [panel]
    alone = draw(renderer, scene, views)
    scene.landmarks.append(landmark)
    renderer.label_layout.reset()  # no history: the pinned label does not keep its place by incumbency
    both = draw(renderer, scene, views)
    assert list(renderer.label_placement.slots) == [1, 0]  # the landmark's label moved, the pinned one not
    for view, image, before in zip(views, both, alone, strict=True):
        green = image[..., 1] > 120  # green text, partly blended over the blue plate
        assert green.sum() > 50 and np.array_equal(green, before[..., 1] > 120)
        plate = (image[..., 2] > 150) & (image[..., 0] < 60)
        (top0, top1), (low0, low1) = bands(plate)
        assert abs(low1 - project(view, anchor)[1]) < 3  # the pinned plate sits on its position
        red = image[..., 0] > 120  # red text, partly blended over the blue plate (and its leader line)
        assert red[top0:top1].sum() > 50 and not red[low0:low1].any()  # on the upper plate, not the pinned one
    # the same label unpinned, laid out afresh: the nearer landmark's keeps the anchor and the green
    # label moves (without the reset, the layout's stability would keep both where they are)
    scene.overlay_labels = [Label("Step 2", tuple(anchor), GREEN)]
    renderer.label_layout.reset()
    unpinned, _ = draw(renderer, scene, views)
    assert list(renderer.label_placement.slots) == [0, 1]
    assert not np.array_equal(unpinned[..., 1] > 120, both[0][..., 1] > 120)


def test_label_scale_multiplies_its_size(renderer: Any, scene: Scene) -> None:
    """A label of scale 2 draws its text and plate twice as tall as scale 1, the plate's bottom still on
    its position, and the layout sees it at that size (its rectangle twice as tall)."""
    scene.label_style = LabelStyle(angle=10.0, color=GREEN, background=BLUE)
    views = views_from(ORIGIN, AHEAD)
    anchor = (0.0, -0.1, -1.0)
    bottom = project(views[0], anchor)[1]

    def measure(scale: float) -> tuple[int, int, float]:
        """Text height, plate height (pixels) and the layout's rectangle height for ``scale``."""
        scene.overlay_labels = [Label("Hd", anchor, GREEN, scale=scale)]
        left, _ = draw(renderer, scene, views)
        text = np.nonzero(left[..., 1] > 120)[0]
        plate = (left[..., 2] > 150) & (left[..., 0] < 60)
        [(top, low)] = bands(plate)
        assert abs(low - bottom) < 2  # the plate stands on the label's position
        _, y0, _, y1 = renderer.label_placement.rects[0, 0]
        return int(text.max() - text.min() + 1), low - top, float(y1 - y0)

    (text1, plate1, rect1), (text2, plate2, rect2) = measure(1.0), measure(2.0)
    assert text1 > 8 and abs(text2 / text1 - 2.0) < 0.2
    assert abs(plate2 / plate1 - 2.0) < 0.1
    assert abs(rect2 / rect1 - 2.0) < 0.05


def test_layout_never_moves_or_hides_pinned_labels() -> None:
    """Two pinned labels overlapping each other both keep their anchors, shown, even with no other
    slot to go to; a nearer unpinned label on them is the one that gives way (hidden here)."""
    views = views_from(ORIGIN, AHEAD, size=400)
    anchors = np.array([(0.0, 0.0, -1.0), (0.001, 0.0, -1.001), (0.0, 0.0, -0.9)])
    pinned = np.array([True, True, False])
    p = layout(slots=(0,)).place(anchors, np.full(3, 1.5), views, keys="abc", pinned=pinned, **HEAD, **ANGULAR)
    assert list(p.visible) == [True, True, False] and list(p.slots) == [0, 0, 0]
    assert not np.isnan(p.rects[0, :2]).any()


def test_a_crowded_layout_places_labels_as_the_table_of_overlaps_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past ``TABLE_LABELS`` each label is checked against those placed before it instead of against one
    table of every overlap: both give the same placements, frame after frame (hysteresis included)."""
    from xrcore.render import labels

    views = views_from(ORIGIN, AHEAD, size=400)
    rng = np.random.default_rng(7)
    anchors = [np.array([0.0, 0.0, -1.0]) + rng.normal(0.0, 0.05, (30, 3)) for _ in range(3)]
    widths = rng.uniform(1.0, 4.0, 30)
    pinned = np.arange(30) < 3
    keys = [f"L{i}" for i in range(30)]

    def frames(table_labels: int) -> list[Any]:
        monkeypatch.setattr(labels, "TABLE_LABELS", table_labels)
        lay = layout()
        return [lay.place(a, widths, views, keys=keys, pinned=pinned, **HEAD, **ANGULAR) for a in anchors]

    with_table, without = frames(40), frames(0)
    for a, b in zip(with_table, without, strict=True):
        assert np.array_equal(a.slots, b.slots) and np.array_equal(a.visible, b.visible)
        assert np.array_equal(a.rects, b.rects, equal_nan=True)
    assert 0 < with_table[0].visible.sum() < 30 and (with_table[0].slots != 0).any()  # crowded: some moved, some hidden


def test_a_label_new_this_frame_does_not_push_an_incumbent_off_its_anchor() -> None:
    """Only a label that sat on its anchor last frame sorts as if nearer: a new one, a little nearer,
    takes the slot above rather than pushing the incumbent away."""
    views = views_from(ORIGIN, AHEAD, size=400)
    lay = layout()
    lay.place(np.array([(0.0, 0.0, -1.02)]), np.array([1.5]), views, keys=["old"], **HEAD, **ANGULAR)
    anchors = np.array([(0.001, 0.0, -1.0), (0.0, 0.0, -1.02)])  # the new one 2 cm nearer: within the bonus
    p = lay.place(anchors, np.array([1.5, 1.5]), views, keys=["new", "old"], **HEAD, **ANGULAR)
    assert list(p.slots) == [1, 0] and p.visible.all()


def test_labels_behind_every_view_take_no_part_in_the_layout() -> None:
    """Labels behind both eyes (most of a twin's names, seen from one side) are drawn nowhere: the labels
    in front are laid out as they are without them, frame after frame, and theirs are NaN rectangles,
    left at their anchors."""
    views = views_from(ORIGIN, AHEAD, size=160)
    rng = np.random.default_rng(11)
    ahead = [np.array([0.0, 0.0, -1.0]) + rng.uniform(-0.05, 0.05, (6, 3)) for _ in range(3)]
    behind = np.array([0.0, 0.0, 1.0]) + rng.normal(0.0, 0.2, (30, 3))
    widths = rng.uniform(1.0, 3.0, 36)
    keys = [f"L{i}" for i in range(36)]
    alone, mixed = layout(), layout()
    for anchors in ahead:
        a = alone.place(anchors, widths[:6], views, keys=keys[:6], **HEAD, **ANGULAR)
        m = mixed.place(np.vstack([anchors, behind]), widths, views, keys=keys, **HEAD, **ANGULAR)
        assert np.array_equal(m.slots[:6], a.slots) and np.array_equal(m.visible[:6], a.visible)
        assert np.array_equal(m.rects[:, :6], a.rects, equal_nan=True)
        assert np.isnan(m.rects[:, 6:]).all() and (m.slots[6:] == 0).all() and m.visible[6:].all()
    assert (a.slots != 0).any()  # the six in front crowd each other: some moved
