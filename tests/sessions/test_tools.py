"""Hands on the twin: a scripted user works on the real brain twin in the simulator (real EGL, real
Embree picking), and what they did is read back from the intents and seen in the pixels."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sessions import intents as it
from sessions.run import LocalSession, SessionConfig
from sessions.sim import simulate, working_scene
from sessions.workspace import IntentError, Workspace
from xrcore.backends.sim import SimBackend
from xrcore.motion import ScriptError, look_rotation, parse_script
from xrcore.types import FrameState, HandInput, InputState, Pose

SCRIPTS = Path(__file__).resolve().parents[2] / "sessions" / "scripts"
LEFT = "left cerebral hemisphere (pial)"


@pytest.fixture(scope="module")
def tools_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``medverse sim --script docs/examples/brain-tools.json --json`` run once, as a user would."""
    out = tmp_path_factory.mktemp("tools")
    report = out / "run.json"
    result = subprocess.run(
        [str(Path(sys.executable).with_name("medverse")), "sim", "--twin", "brain", "--script",
         str(SCRIPTS / "brain-tools.json"), "--geodesic", "--width", "240", "--height", "240", "--out", str(out / "frames"),
         "--json", str(report)],
        check=False, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(report.read_text())


def _of(report: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for r in report["intents"] if r["kind"] == kind]


@pytest.mark.slow
def test_the_scripted_user_selects_marks_measures_cuts_moves_draws_and_undoes(tools_run: dict[str, Any]) -> None:
    """Every tool of the example script shows up in --json as the intent it made, in order."""
    kinds = [r["kind"] for r in tools_run["intents"] if r["kind"] != "tool"]
    assert kinds == ["select", "landmark", "landmark", "measure", "clip_plane", "twin_pose", "clear_clip_planes",
                     "stroke", "undo"]  # fmt: skip
    assert _of(tools_run, "select")[0]["structure"] == LEFT
    stroke = _of(tools_run, "stroke")[0]
    assert stroke["on_surface"] and stroke["points"] >= 5
    # two hands drew together from 0.40 m to 0.32 m apart: the twin shrank by that ratio
    pose = _of(tools_run, "twin_pose")[0]
    assert pose["scale"] == pytest.approx(0.4 / float(np.ptp(_brain_bounds(), axis=0).max()) * 0.32 / 0.40, rel=1e-3)


def _brain_bounds() -> np.ndarray:
    from assets.library import build

    return build("brain").bounds()  # metres


@pytest.mark.slow
def test_landmarks_lie_on_the_mesh_and_the_measurement_agrees_with_its_geometry(tools_run: dict[str, Any], brain: Any) -> None:
    """Both landmarks sit on the hemisphere's surface, where the script aimed (its nearest vertex), and
    the measured distance between them is their distance on the mesh to 0.5 mm."""
    from trimesh.triangles import closest_point

    structure = brain.structure(LEFT)
    vertices = np.asarray(structure.vertices, dtype=np.float64) * 1000.0
    triangles = vertices[structure.faces]
    centroids = triangles.mean(axis=1)
    landmarks = _of(tools_run, "landmark")
    points = np.array([lm["point_mm"] for lm in landmarks])
    for p in points:
        near = np.argsort(np.linalg.norm(centroids - p, axis=1))[:64]
        gap = np.linalg.norm(closest_point(triangles[near], np.repeat(p[None], len(near), axis=0)) - p, axis=1).min()
        assert gap < 0.05, gap  # mm: the landmark is on a triangle of the mesh
    for aimed, got in zip(([-25.5, 57.4, 19.8], [-44.3, 28.6, 36.7]), points, strict=True):
        # the script aimed at a point; the ray went to the visible vertex nearest it
        assert np.linalg.norm(vertices - got, axis=1).min() < 0.5
        assert np.linalg.norm(got - aimed) < 1.0
    m = _of(tools_run, "measure")[0]
    assert m["structures"] == [LEFT, LEFT]
    assert np.allclose(m["a_mm"], points[0], atol=1e-3) and np.allclose(m["b_mm"], points[1], atol=1e-3)
    assert m["distance_mm"] == pytest.approx(float(np.linalg.norm(points[1] - points[0])), abs=0.5)
    # along the folded cortex the path is longer than the chord, but not absurdly
    assert m["distance_mm"] < m["geodesic_mm"] < 2.0 * m["distance_mm"]


@pytest.mark.slow
def test_the_run_writes_each_named_keyframe_and_reports_the_session_time(tools_run: dict[str, Any]) -> None:
    """The PNG of every named keyframe is written and the session's own CPU time is reported."""
    names = [Path(p).stem.split("_", 2)[2] for p in tools_run["written"]]
    assert names == ["start", "selected", "landmarks", "measured", "cut", "scaled", "drawn", "undone"]
    assert tools_run["session_ms"]["median"] > 0


# --- the pixels: one frame drawn with and without each effect ----------------------------------------


def _frame(head: Pose, right: HandInput = HandInput(), index: int = 0) -> FrameState:
    from xrcore.backends.sim import QUEST_LEFT_FOV, eye_views, square_pixels

    fov = square_pixels(QUEST_LEFT_FOV, 200, 200)
    return FrameState(index, index / 90.0, 1 / 90.0, eye_views(head, 0.063, fov, 200, 200), head=head,
                      inputs=InputState(right=right))  # fmt: skip


@pytest.fixture
def session(brain: Any) -> LocalSession:
    return LocalSession(working_scene(brain), SessionConfig(hud=False, panels=False, geodesic=False))


HEAD = Pose((0.0, 0.05, 0.5), look_rotation((0.0, 0.05, 0.5), (0.0, 0.0, 0.0)))


def _draw(renderer_factory: Any, session: LocalSession, frame: FrameState) -> np.ndarray:
    renderer = renderer_factory(200, 200)
    session.step(frame)
    renderer.draw(session.scene, frame.views)
    return renderer.read_pixels(0)[..., :3].astype(np.int16)


def test_a_cut_is_visible_where_the_plane_removes_the_front_of_the_brain(renderer_factory: Any, session: LocalSession) -> None:
    """A clip plane across the middle of the brain changes the pixels of the twin (the cap shows)."""
    frame = _frame(HEAD)
    before = _draw(renderer_factory, session, frame)
    session.apply(it.AddClipPlane("me", 0.0, "me/P1", (0.0, -1.0, 0.0), 0.0))
    after = _draw(renderer_factory, session, frame)
    changed = np.abs(after - before).sum(axis=2) > 30
    assert changed.mean() > 0.05
    assert len(session.scene.clip_planes) == 1


def test_the_hit_cursor_and_the_structure_name_appear_where_the_pointer_lands(
    renderer_factory: Any, session: LocalSession
) -> None:
    """Pointing at the brain draws a white cursor on the surface and the hovered structure's name."""
    hand_at = (0.08, -0.1, 0.35)
    aim = Pose(hand_at, look_rotation(hand_at, (0.03, 0.0, 0.0)))
    idle = _draw(renderer_factory, session, _frame(HEAD, HandInput()))
    pointing = _draw(renderer_factory, session, _frame(HEAD, HandInput(grip=aim, aim=aim), 1))
    hit = session.hands[1].hit
    assert hit is not None and session.scene.hovered == {hit.index}
    assert [label.text for label in session.scene.overlay_labels] == [hit.structure]
    # the cursor sphere: project the hit into the left eye and look for near-white pixels round it
    view = _frame(HEAD).views[0]
    world = np.append(session.ctx.world(hit.point_mm), 1.0)
    clip = view.fov.projection() @ view.view_matrix() @ world
    x = int((clip[0] / clip[3] * 0.5 + 0.5) * 200)
    y = int((0.5 - clip[1] / clip[3] * 0.5) * 200)
    patch = pointing[max(0, y - 3) : y + 4, max(0, x - 3) : x + 4]
    assert (patch.min(axis=2) > 200).any(), patch
    assert np.abs(pointing - idle).sum(axis=2).max() > 100


# --- the workspace: what each intent may do -------------------------------------------------------------


def test_undo_takes_back_only_the_users_own_last_change(session: LocalSession) -> None:
    """Undo is per user: bob's undo removes bob's landmark, not alice's later one."""
    ws = session.workspace
    ws.apply(it.PlaceLandmark("bob", 0.0, "bob/L1", "L1", (1.0, 2.0, 3.0), LEFT))
    ws.apply(it.PlaceLandmark("alice", 1.0, "alice/L1", "L2", (4.0, 5.0, 6.0), LEFT))
    assert ws.apply(it.Undo("bob", 2.0))
    assert list(ws.landmarks) == ["alice/L1"] and len(session.scene.landmarks) == 1
    assert not ws.apply(it.Undo("bob", 3.0)) and ws.refused == 1


def test_a_grab_is_undone_to_where_it_began(session: LocalSession) -> None:
    """Live twin poses during a grab are one change: undo puts the twin back where the grab began."""
    ws = session.workspace
    start = session.scene.twin_pose
    for x in (0.01, 0.02, 0.03):
        ws.apply(it.SetTwinPose("me", x, (x, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0), 1.0, live=True))
    ws.apply(it.SetTwinPose("me", 0.04, (0.03, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0), 20.0))
    assert session.scene.twin_scale == 10.0  # clamped to the 10x limit
    assert [i.kind for i in ws.applied] == ["twin_pose"]  # live updates are not logged
    ws.apply(it.Undo("me", 1.0))
    assert session.scene.twin_pose == start


def test_refused_intents_change_nothing(session: LocalSession) -> None:
    """Erasing someone else's stroke, a seventh plane, a non-finite point: refused, counted, no change."""
    ws: Workspace = session.workspace
    ws.apply(it.AddStroke("alice", 0.0, "alice/S1", ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))))
    assert not ws.apply(it.EraseStroke("bob", 1.0, "alice/S1")) and "alice/S1" in ws.strokes
    for k in range(6):
        assert ws.apply(it.AddClipPlane("me", 1.0, f"me/P{k}", (0.0, 0.0, 1.0), float(k)))
    assert not ws.apply(it.AddClipPlane("me", 2.0, "me/P9", (0.0, 0.0, 1.0), 9.0))
    assert not ws.apply(it.PlaceLandmark("me", 3.0, "me/L1", "L1", (float("nan"), 0.0, 0.0), LEFT))
    assert ws.refused == 3 and len(session.scene.clip_planes) == 6 and not ws.landmarks
    with pytest.raises(IntentError):
        ws._apply(it.MoveLandmark("me", 4.0, "nobody", (0.0, 0.0, 0.0)))


# --- scripts ----------------------------------------------------------------------------------------------


def test_a_pinching_hand_selects_and_a_fist_grabs(brain: Any, gl_context: Any) -> None:
    """Bare hands played from a script: a pinch is a trigger pull, a fist a squeeze."""
    script = parse_script({"version": 1, "keyframes": [
        {"t": 0.0, "head": {"position": [0, 0.05, 0.5], "look_at": [0, 0, 0]},
         "aim": {"hand": "right", "at": LEFT}, "right": {"gesture": "open"}},
        {"t": 0.2, "aim": {"hand": "right", "at": LEFT}, "right": {"gesture": "pinch"}},
        {"t": 0.3, "aim": {"hand": "right", "at": LEFT}, "right": {"gesture": "open"}},
        {"t": 0.4, "right": {"position": [0.1, -0.1, 0.3], "gesture": "open"}},
        {"t": 0.5, "right": {"position": [0.1, -0.1, 0.3], "gesture": "fist"}},
        {"t": 0.7, "right": {"position": [0.1, 0.0, 0.3], "gesture": "fist"}},
        {"t": 0.8, "right": {"position": [0.1, 0.0, 0.3], "gesture": "open"}},
    ]}, "pinch.json")  # fmt: skip
    run = simulate(brain, motion=script, width=64, height=64, context=gl_context)
    kinds = [r["kind"] for r in run.intents]
    assert kinds == ["select", "twin_pose"], kinds
    assert run.intents[0]["structure"] == LEFT
    start = working_scene(brain).twin_pose
    lifted = np.subtract(run.intents[1]["position"], start.position)
    assert lifted == pytest.approx([0.0, 0.1, 0.0], abs=2e-3)  # the fist lifted the twin 10 cm
    assert run.intents[1]["orientation"] == pytest.approx(start.orientation, abs=1e-4)


@pytest.mark.parametrize(
    ("keyframe", "message"),
    [
        ({"tool": {"right": "scalpel"}}, "unknown tool 'scalpel'"),
        ({"aim": {"hand": "middle", "at": "x"}}, "expected 'left' or 'right'"),
        ({"aim": {"hand": "right"}}, "exactly one of 'at'"),
        ({"right": {"gesture": "wave", "position": [0, 0, 0]}}, "unknown gesture 'wave'"),
        ({"right": {"trigger": 1.0}}, "missing 'position'"),
    ],
)
def test_bad_tool_actions_in_a_script_are_one_line_errors(keyframe: dict[str, Any], message: str) -> None:
    """A malformed tool action names the file, the keyframe and the field."""
    doc = {"version": 1, "keyframes": [{"t": 0.0, "head": {"position": [0, 0, 1]}, **keyframe}]}
    with pytest.raises(ScriptError, match=message) as caught:
        parse_script(doc, "bad.json")
    assert str(caught.value).startswith("bad.json: keyframes[0]") and "\n" not in str(caught.value)


def test_aiming_at_an_unknown_structure_is_a_clear_error(brain: Any, gl_context: Any) -> None:
    """A script that aims at a structure the twin lacks stops with one line naming it."""
    script = parse_script({"version": 1, "keyframes": [
        {"t": 0.0, "head": {"position": [0, 0, 0.5]}, "aim": {"hand": "right", "at": "amygdala"}}]}, "aim.json")  # fmt: skip
    with pytest.raises(Exception, match="amygdala") as caught:
        simulate(brain, motion=script, width=32, height=32, context=gl_context)
    assert "\n" not in str(caught.value)


@pytest.mark.slow
def test_a_script_runs_to_its_end_by_default(brain: Any, gl_context: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Without --frames a script runs through its last keyframe; fewer frames say so in a warning."""
    script = parse_script({"version": 1, "keyframes": [
        {"t": 0.0, "head": {"position": [0, 0, 1]}},
        {"t": 0.5, "name": "end", "head": {"position": [0, 0, 1]}}]}, "s")  # fmt: skip
    assert simulate(brain, motion=script, width=16, height=16, context=gl_context).frames == 46
    simulate(brain, motion=script, frames=10, width=16, height=16, context=gl_context)
    assert "only 10 frames" in caplog.text


def test_the_simulator_backend_is_unchanged_by_sessions() -> None:
    """The backend still yields frames without any session: a headset simulation and nothing else."""
    backend = SimBackend(frames=2, width=8, height=8)
    assert backend.sample(1).index == 1 and not hasattr(backend, "written")


def test_a_landmark_is_described_on_its_structure_and_without_one_when_it_has_none() -> None:
    """The feedback line of a landmark in the air (or on a structure this twin lacks) says no "on None"."""
    on = it.PlaceLandmark("ann", 1.0, "ann/L1", "L1", (1.0, 2.0, 3.0), "left cerebral hemisphere (pial)")
    off = it.PlaceLandmark("ann", 1.0, "ann/L2", "L2", (1.0, 2.0, 3.0), None)
    assert it.describe(on.record()) == "placed landmark L1 on left cerebral hemisphere (pial)"
    assert it.describe(off.record()) == "placed landmark L2"
