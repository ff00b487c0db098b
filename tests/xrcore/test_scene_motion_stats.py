"""GL-free parts: the scene, motions and scripts as pure functions of time, frame statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from assets.twin import Structure, Twin
from xrcore.clock import FixedStepClock
from xrcore.motion import Orbit, ScriptError, parse_script, procedural
from xrcore.scene import MAX_CLIP_PLANES, ClipPlane, Scene, SceneError, frame_twin
from xrcore.stats import FrameStats


@pytest.fixture
def box_twin() -> Twin:
    verts = np.array([[x, y, z] for x in (0, 0.1) for y in (0, 0.2) for z in (0, 0.3)], dtype=np.float32)
    faces = np.array([[0, 1, 2]], dtype=np.int32)
    return Twin("box", [Structure("a", verts, faces), Structure("b", verts + 1, faces)])


def test_clip_plane_through_point_keeps_the_normal_side() -> None:
    """A plane through a point keeps the half-space its normal points into, distances in metres."""
    plane = ClipPlane.through((0.0, 0.0, 0.02), (0.0, 0.0, 2.0))
    v = plane.as_vec4()
    assert v @ (0, 0, 0.05, 1) == pytest.approx(0.03)
    assert v @ (0, 0, 0.0, 1) == pytest.approx(-0.02)
    with pytest.raises(SceneError, match="non-zero"):
        ClipPlane.through((0, 0, 0), (0, 0, 0))


def test_scene_refuses_bad_input_clearly(box_twin: Twin) -> None:
    """Unknown structures, bad colours and a seventh clip plane raise SceneError with the reason."""
    scene = Scene(box_twin)
    with pytest.raises(SceneError, match="no structure 'c'"):
        scene.set_color("c", (1, 0, 0))
    with pytest.raises(SceneError, match=r"0\.\.1"):
        scene.set_color("a", (2, 0, 0))
    with pytest.raises(SceneError, match="opacity"):
        scene.set_opacity("a", 1.5)
    for _ in range(MAX_CLIP_PLANES):
        scene.add_clip_plane(ClipPlane((1.0, 0.0, 0.0), 0.0))
    with pytest.raises(SceneError, match="at most 6"):
        scene.add_clip_plane(ClipPlane((1.0, 0.0, 0.0), 0.0))
    version = scene.version
    scene.set_opacity("b", 0.5)
    assert scene.version == version + 1 and not scene.materials[1].opaque


def test_frame_twin_stands_a_ras_twin_upright_at_the_origin(box_twin: Twin) -> None:
    """RAS superior becomes world +Y, anterior world +Z, and the bounds centre lands on the origin."""
    box = Twin("box", [box_twin.structures[0]])
    m = frame_twin(box).matrix()
    lo, hi = box.bounds()
    assert np.allclose(m @ [*(lo + hi) / 2, 1], [0, 0, 0, 1], atol=1e-9)
    assert np.allclose(m[:3, :3] @ [0, 0, 1], [0, 1, 0])  # superior -> up
    assert np.allclose(m[:3, :3] @ [0, 1, 0], [0, 0, 1])  # anterior -> towards the viewer


def test_motions_are_pure_functions_of_time() -> None:
    """Same time, same poses; the orbit comes back to its start after one period."""
    orbit = procedural("orbit", (0, 0, 0), 0.25)
    assert orbit(1.234) == orbit(1.234)
    assert isinstance(orbit, Orbit)
    start, later = orbit(0.0).head, orbit(orbit.period).head
    assert np.allclose(start.position, later.position) and np.allclose(start.orientation, later.orientation)
    # the head looks at the centre
    head = orbit(0.7).head
    assert np.allclose(head.forward(), -np.asarray(head.position) / np.linalg.norm(head.position))
    clock = FixedStepClock(90.0)
    for _ in range(900):
        clock.tick()
    assert clock.now == pytest.approx(10.0, abs=1e-12)


def test_script_interpolates_and_reports_bad_fields() -> None:
    """Positions lerp, buttons hold, and a bad field is named in the error."""
    script = parse_script({"keyframes": [
        {"t": 0, "head": {"position": [0, 0, 0]}, "right": {"position": [0, 0, 0], "buttons": ["a"]}},
        {"t": 2, "head": {"position": [2, 0, 0]}, "right": {"position": [0, 2, 0], "trigger": 1.0}},
    ]})  # fmt: skip
    s = script(0.5)
    assert s.head.position == pytest.approx((0.5, 0, 0))
    assert s.inputs.right.trigger == pytest.approx(0.25) and s.inputs.right.buttons == {"a"}
    assert not s.inputs.left.tracked
    with pytest.raises(ScriptError, match=r"keyframes\[1\]\.t: times must increase"):
        parse_script({"keyframes": [{"t": 1, "head": {"position": [0, 0, 0]}}, {"t": 1, "head": {"position": [0, 0, 0]}}]})
    with pytest.raises(ScriptError, match="unknown button"):
        parse_script({"keyframes": [{"t": 0, "head": {"position": [0, 0, 0]},
                                     "left": {"position": [0, 0, 0], "buttons": ["zz"]}}]})  # fmt: skip
    with pytest.raises(ScriptError, match="finite number"):
        parse_script({"keyframes": [{"t": math.nan, "head": {"position": [0, 0, 0]}}]})


def test_frame_stats_count_dropped_frames_and_percentiles() -> None:
    """Frames over the display period count as dropped; median and p99 come from the window."""
    stats = FrameStats(rate_hz=90.0, window=100)
    for ms in [5.0] * 95 + [20.0] * 5:
        stats.record_frame(ms)
        stats.record_cpu(ms / 10)
    s = stats.summary()
    assert s["dropped"] == 5 and s["frames"] == 100
    assert s["frame_ms"]["median"] == 5.0 and s["frame_ms"]["p99"] == pytest.approx(20.0)
    assert s["gpu_ms"]["median"] is None
    for _ in range(100):
        stats.record_frame(1.0)
    assert stats.summary()["dropped_in_window"] == 0 and stats.dropped == 5
    assert "dropped 5 at 90 Hz" in stats.format()
