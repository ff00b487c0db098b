"""Picking with pointer rays on the real fsaverage5 brain twin (xrcore.input)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from assets.library import build
from assets.twin import Twin
from xrcore.input import Picker, pointer_ray
from xrcore.types import HandInput, InputState, Pose


@pytest.fixture(scope="module")
def brain() -> Twin:
    """The bundled ``brain`` twin: both fsaverage5 pial hemispheres from nilearn's package data (metres)."""
    return build("brain")


@pytest.fixture(scope="module")
def picker(brain: Twin) -> Picker:
    return Picker(brain)


def brute_force(vertices: np.ndarray, faces: np.ndarray, o: np.ndarray, d: np.ndarray) -> tuple[int, float]:
    """Nearest Moller-Trumbore hit over every triangle, float64: (face, t) or (-1, inf). The reference."""
    tri = vertices.astype(np.float64)[faces]
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    p = np.cross(d, e2)
    det = np.einsum("ij,ij->i", e1, p)
    ok = np.abs(det) > 1e-18
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = o - tri[:, 0]
    u = np.einsum("ij,ij->i", s, p) * inv
    q = np.cross(s, e1)
    v = (q @ d) * inv
    t = np.einsum("ij,ij->i", e2, q) * inv
    hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
    if not hit.any():
        return -1, math.inf
    t = np.where(hit, t, np.inf)
    k = int(np.argmin(t))
    return k, float(t[k])


def left_and_right(brain: Twin) -> tuple[int, int]:
    """Indices of the left and right hemisphere (the left one lies at negative x, RAS+)."""
    centres = [s.vertices.mean(axis=0)[0] for s in brain.structures]
    return int(np.argmin(centres)), int(np.argmax(centres))


def test_ray_at_left_centroid_from_outside_picks_left_hemisphere(brain: Twin, picker: Picker) -> None:
    """A ray from 30 cm to the left, aimed at the left hemisphere's centroid, hits the left pial surface."""
    li, _ = left_and_right(brain)
    left = brain.structures[li]
    centroid = left.vertices.astype(np.float64).mean(axis=0)
    origin = centroid + np.array([-0.3, 0.0, 0.0])
    hit = picker.pick(origin, centroid - origin)
    assert hit is not None
    assert hit.structure == left.name and hit.index == li
    assert "left" in hit.structure
    # The lateral surface lies between the ray origin and the centroid, on the ray.
    point_m = hit.point_mm / 1000.0
    assert origin[0] < point_m[0] < centroid[0]
    assert np.allclose(point_m[1:], centroid[1:], atol=1e-6)
    assert hit.distance_m == pytest.approx(point_m[0] - origin[0], abs=1e-6)


def test_ray_into_empty_space_picks_nothing(brain: Twin, picker: Picker) -> None:
    """Rays that point away from the twin, or pass beside it, hit nothing."""
    lo, hi = brain.bounds()
    centre = (lo + hi) / 2
    assert picker.pick(centre + [0.0, 0.0, 0.5], [0.0, 0.0, 1.0]) is None  # above, looking up
    assert picker.pick(centre + [-0.5, 0.0, hi[2] - centre[2] + 0.01], [1.0, 0.0, 0.0]) is None  # passes over
    assert picker.pick(centre + [-0.3, 0.0, 0.0], [1.0, 0.0, 0.0], max_distance=0.1) is None  # too short


def test_ray_at_known_triangle_returns_point_on_it(brain: Twin, picker: Picker) -> None:
    """Along its own normal from outside, the most lateral triangle is hit at its centroid within 0.01 mm."""
    li, _ = left_and_right(brain)
    s = brain.structures[li]
    tri = s.vertices.astype(np.float64)[s.faces]
    centroids = tri.mean(axis=1)
    k = int(np.argmin(centroids[:, 0]))
    n = np.cross(tri[k, 1] - tri[k, 0], tri[k, 2] - tri[k, 0])
    n /= np.linalg.norm(n)
    assert n[0] < 0  # counter-clockwise from outside: the normal points away from the brain
    hit = picker.pick(centroids[k] + 0.05 * n, -n)
    assert hit is not None and hit.structure == s.name and hit.face == k
    assert np.linalg.norm(hit.point_mm - centroids[k] * 1000.0) < 0.01
    assert hit.distance_m == pytest.approx(0.05, abs=1e-8)
    assert hit.normal @ n == pytest.approx(1.0, abs=1e-5)
    assert not hit.on_cut


def test_embree_agrees_with_brute_force_on_random_rays(brain: Twin, picker: Picker) -> None:
    """For 40 random rays through the brain's box, the structure, face and distance match an exhaustive test."""
    rng = np.random.default_rng(7)
    lo, hi = brain.bounds()
    hits = 0
    for _ in range(40):
        target = lo + rng.random(3) * (hi - lo)
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        origin = target - 0.3 * direction
        expected = [(brute_force(st.vertices, st.faces, origin, direction), i) for i, st in enumerate(brain.structures)]
        (face, t), index = min(expected, key=lambda e: e[0][1])
        hit = picker.pick(origin, direction)
        if face < 0:
            assert hit is None
            continue
        hits += 1
        assert hit is not None and hit.index == index and hit.face == face
        assert hit.distance_m == pytest.approx(t, abs=1e-6)
    assert hits >= 20  # the check above must have compared real hits, not only misses


def test_picking_follows_the_twin_pose_and_scale(brain: Twin, picker: Picker) -> None:
    """With the twin rotated, moved and scaled in the world, the same surface point is hit in twin mm."""
    li, _ = left_and_right(brain)
    centroid = brain.structures[li].vertices.astype(np.float64).mean(axis=0)
    plain = picker.pick(centroid + [-0.3, 0, 0], [1.0, 0, 0])
    angle = math.radians(90)
    pose = Pose((0.5, 1.2, -0.8), (0.0, math.sin(angle / 2), 0.0, math.cos(angle / 2)))  # 90 deg about +Y
    m = pose.matrix()
    m[:3, :3] *= 2.0
    world_centroid = (m @ np.array([*centroid, 1.0]))[:3]
    world_dir = m[:3, :3] @ np.array([1.0, 0, 0]) / 2.0
    hit = picker.pick(world_centroid - 0.6 * world_dir, world_dir, world_from_twin=m)
    assert plain is not None and hit is not None and hit.structure == plain.structure
    assert np.linalg.norm(hit.point_mm - plain.point_mm) < 0.01
    assert hit.distance_m == pytest.approx(2.0 * plain.distance_m, abs=1e-6)  # world metres double


def test_hidden_structure_is_passed_through(brain: Twin, picker: Picker) -> None:
    """With the left hemisphere hidden, a ray through it from the left picks the right hemisphere."""
    li, ri = left_and_right(brain)
    centroid = brain.structures[ri].vertices.astype(np.float64).mean(axis=0)
    origin = centroid + [-0.5, 0, 0]
    assert picker.pick(origin, [1.0, 0, 0]).index == li
    visible = [True] * len(brain.structures)
    visible[li] = False
    hit = picker.pick(origin, [1.0, 0, 0], visible=visible)
    assert hit is not None and hit.index == ri
    assert hit.point_mm[0] > 0.0  # on the right hemisphere, not in the hidden left one


def test_clip_plane_cut_face_is_hit_where_the_ray_enters_it(brain: Twin, picker: Picker) -> None:
    """Cutting the left hemisphere at x = -30 mm, a ray from the left hits the cut face on the plane."""
    li, _ = left_and_right(brain)
    centroid = brain.structures[li].vertices.astype(np.float64).mean(axis=0)
    origin = centroid + [-0.3, 0, 0]
    plane = np.array([1.0, 0.0, 0.0, 0.030])  # keeps x >= -30 mm
    hit = picker.pick(origin, [1.0, 0, 0], clip_planes=[plane])
    assert hit is not None and hit.index == li and hit.on_cut
    assert hit.point_mm[0] == pytest.approx(-30.0, abs=1e-3)
    assert np.allclose(hit.normal, [1.0, 0, 0])
    # Keeping the other side instead, the lateral surface (x < -30 mm) is hit as usual.
    other = picker.pick(origin, [1.0, 0, 0], clip_planes=[-plane])
    assert other is not None and not other.on_cut and other.point_mm[0] < -30.0


def test_pointer_ray_follows_aim_pose_and_untracked_hand_picks_nothing(brain: Twin, picker: Picker) -> None:
    """The aim pose's -Z is the pointer; a hand without an aim pose has no ray."""
    li, _ = left_and_right(brain)
    centroid = brain.structures[li].vertices.astype(np.float64).mean(axis=0)
    origin = centroid + [-0.3, 0, 0]
    # Turn -Z towards +X: 90 degrees about -Y.
    aim = Pose(tuple(origin), (0.0, -math.sin(math.pi / 4), 0.0, math.cos(math.pi / 4)))
    hand = HandInput(grip=aim, aim=aim)
    o, d = pointer_ray(hand)
    assert np.allclose(o, origin) and np.allclose(d, [1.0, 0, 0])
    hit = picker.pick_hand(hand)
    assert hit is not None and hit.index == li
    assert pointer_ray(HandInput()) is None and picker.pick_hand(HandInput()) is None
    left_hit, right_hit = picker.pick_hands(InputState(left=HandInput(), right=hand))
    assert left_hit is None and right_hit is not None and right_hit.index == li


def test_batched_rays_agree_with_single_rays(brain: Twin, picker: Picker) -> None:
    """pick_many returns the same structures and distances as one pick per ray."""
    rng = np.random.default_rng(3)
    lo, hi = brain.bounds()
    targets = lo + rng.random((50, 3)) * (hi - lo)
    dirs = rng.normal(size=(50, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    origins = targets - 0.3 * dirs
    structure, distance = picker.pick_many(origins, dirs)
    for i in range(50):
        hit = picker.pick(origins[i], dirs[i])
        assert structure[i] == (hit.index if hit else -1)
        assert distance[i] == pytest.approx(hit.distance_m if hit else math.inf, abs=1e-6)


@pytest.mark.parametrize(
    ("origin", "direction"),
    [((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)), ((math.nan, 0.0, 0.0), (1.0, 0.0, 0.0)), ((0.0, 0.0, 0.0), (math.inf, 0.0, 0.0))],
)
def test_bad_rays_raise_a_clear_value_error(picker: Picker, origin: tuple, direction: tuple) -> None:
    """A zero or non-finite ray is refused with a ValueError that names the problem."""
    with pytest.raises(ValueError, match="finite origin and a non-zero direction"):
        picker.pick(origin, direction)


def test_visibility_mask_of_wrong_length_is_refused(picker: Picker) -> None:
    """A visibility list that does not match the twin's structures is an error, not a silent misread."""
    with pytest.raises(ValueError, match="flags for 2 structures"):
        picker.pick((0.0, 0.0, 0.5), (0.0, 0.0, -1.0), visible=[True])


def test_pick_scene_follows_what_the_scene_draws(brain: Twin, picker: Picker) -> None:
    """Through a real Scene: its twin pose and scale, a hidden structure and a clip plane all change the pick."""
    from xrcore.scene import ClipPlane, Scene

    li, ri = left_and_right(brain)
    centroid = brain.structures[li].vertices.astype(np.float64).mean(axis=0)
    scene = Scene(brain, twin_pose=Pose((0.0, 1.0, -0.5)), twin_scale=1.5)
    world = (scene.model_matrix() @ np.array([*centroid, 1.0]))[:3]
    origin = world + [-0.5, 0.0, 0.0]
    plain = picker.pick(centroid + [-0.3, 0, 0], [1.0, 0, 0])
    hit = picker.pick_scene(scene, origin, [1.0, 0, 0])
    assert hit is not None and hit.index == li
    assert np.linalg.norm(hit.point_mm - plain.point_mm) < 0.01  # same surface point, in twin mm
    scene.add_clip_plane(ClipPlane.through(centroid, (1.0, 0.0, 0.0)))  # cut at the centroid, keep +x
    cut = picker.pick_scene(scene, origin, [1.0, 0, 0])
    assert cut is not None and cut.on_cut and cut.point_mm[0] == pytest.approx(centroid[0] * 1000, abs=1e-3)
    scene.clear_clip_planes()
    scene.set_visible(li, False)
    through = picker.pick_scene(scene, origin, [1.0, 0, 0])
    assert through is not None and through.index == ri
    with pytest.raises(ValueError, match="picker was built for"):
        picker.pick_scene(Scene(Twin("other", brain.structures[:1])), origin, [1.0, 0, 0])
