"""Replay: the state at any time, the state shown on the twin, avatars, byte-identical PNGs from one
file, the CLI, and a trainee's recorded landmark scored by a training module."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from assets.twin import Twin
from net.protocol import OpKind
from net.state import SharedState
from sessions.cli import main
from sessions.consult.bridge import StateBridge, StateView
from sessions.recording.format import read_recording
from sessions.recording.replay import ReplaySource, intents_of, render, score, state_at
from sessions.sim import working_scene
from sessions.training.loader import parse_module
from sessions.workspace import Workspace

#: A point on the brain's left hemisphere (twin mm), the default trainee landmark of ``make_recording``.
A_MM = (-25.5, 57.4, 19.8)


def test_state_at_follows_the_recorded_ops_in_time(make_recording: Callable[..., Path]) -> None:
    """Before the cut nothing, between cut and landmark the plane, at the end both, with the recorded digest."""
    r = read_recording(make_recording())
    assert state_at(r, 0.2).op_count == 0
    middle = state_at(r, 0.45)
    assert middle.op_count == 1 and middle.clip_planes == {0: {"normal": [0.0, 0.0, -1.0], "d": 0.02}}
    end = state_at(r)
    assert end.op_count == 2 and list(end.landmarks) == ["tia:1"]
    assert end.digest() == r.digests[-1].digest


def test_watched_state_is_shown_on_the_twin_by_the_bridge(brain: Twin) -> None:
    """Through the consultation's bridge over a watched state, landmarks, strokes, planes (twin metres,
    n·p + d >= 0 kept), measurements, transform and selection reach the workspace; removals too."""
    scene = working_scene(brain)
    s = SharedState(1)
    bridge = StateBridge(Workspace(scene), StateView(s), "replay", clock=lambda: 1.0)
    s.make_op(OpKind.LANDMARK_PLACE, {"id": "l1", "position": [0.01, 0.02, 0.03], "label": "A", "structure": "nowhere"}, 0.0)
    s.make_op(OpKind.STROKE_ADD, {"id": "s1", "points": [[0.0, 0.0, 0.0], [0.01, 0.0, 0.0]]}, 0.0)
    s.make_op(OpKind.CLIP_SET, {"index": 2, "normal": [1, 0, 0], "d": -0.01}, 0.0)
    s.make_op(OpKind.MEASURE, {"id": "m1", "a_mm": [0, 0, 0], "b_mm": [0, 0, 12], "distance_mm": 12}, 0.0)
    s.make_op(OpKind.SELECT, {"structure": brain.structures[0].name}, 0.0)
    s.make_op(OpKind.TRANSFORM, {"position": [0, 0.1, 0], "orientation": [0, 0, 0, 1], "scale": 2.0}, 0.0)
    bridge.reconcile()
    ws = bridge.workspace
    assert ws.landmarks["l1"].point_mm == (10.0, 20.0, 30.0) and ws.landmarks["l1"].structure is None
    assert list(ws.landmarks) == ["l1"]
    assert [(p.normal, p.offset) for p in scene.clip_planes] == [((1.0, 0.0, 0.0), -0.01)] and len(scene.strokes) == 1
    assert ws.measurements["m1"].distance_mm == 12 and scene.twin_scale == 2.0
    assert scene.selected == {0}
    assert bridge.reconcile(force=True) == 0  # nothing changed, nothing applied
    s.make_op(OpKind.LANDMARK_MOVE, {"id": "l1", "position": [0.0, 0.0, 0.0]}, 0.0)
    s.make_op(OpKind.STROKE_ERASE, {"id": "s1"}, 0.0)
    s.make_op(OpKind.CLIP_CLEAR, {"index": 2}, 0.0)
    s.make_op(OpKind.CLEAR_MARKS, {}, 0.0)
    bridge.reconcile()
    assert ws.landmarks == {} and ws.measurements == {} and scene.strokes == [] and scene.clip_planes == []


def test_source_keeps_each_participants_newest_pose(make_recording: Callable[..., Path]) -> None:
    """Advancing releases poses up to the time asked, newest per participant, and never goes back."""
    source = ReplaySource(read_recording(make_recording()))
    source.advance(0.5)
    assert {i: p.seq for i, p in source.poses.items()} == {1: 16, 2: 16}
    assert source.advance(0.1) == [] and source.poses[1].seq == 16


def test_same_file_renders_the_same_png_bytes(gl_context: Any, brain: Twin, make_recording: Callable[..., Path],
                                              tmp_path: Path) -> None:  # fmt: skip
    """Two replays of one file, from a participant's head and orbiting, write identical PNG files."""
    r = read_recording(make_recording(seconds=1.0))
    runs = []
    for k in range(2):
        for viewer in ("tia", None):
            out = tmp_path / f"{k}-{viewer}"
            result = render(r, brain, out, viewer=viewer, every_s=0.5, width=96, height=96, context=gl_context)
            runs.append([hashlib.sha256(w.path.read_bytes()).hexdigest() for w in result.written])
            assert result.op_count == 2
    assert runs[0] == runs[2] and runs[1] == runs[3] and len(runs[0]) == 2
    assert runs[0] != runs[1]  # the two views differ


def test_trainee_landmark_is_scored_by_a_training_module(brain: Twin, make_recording: Callable[..., Path]) -> None:
    """The trainee's recorded landmark, as intents, passes a landmark step near it and fails one far from it."""
    r = read_recording(make_recording(trainee_mm=(A_MM[0] + 1.0, A_MM[1], A_MM[2])))
    intents = intents_of(r, "tia")
    assert [i.kind for i in intents] == ["landmark"] and intents[0].user == "tia"
    assert intents_of(r, "sam")[0].kind == "clip_plane"

    def module(point: tuple[float, float, float]) -> Any:
        doc = {"schema": "medverse.module/1", "id": "t", "title": "T", "twin": "brain",
               "steps": [{"id": "s0", "title": "Place A", "instructions": "place A",
                          "target": {"kind": "landmark", "point_mm": list(point), "tolerance_mm": 4}}]}  # fmt: skip
        return parse_module(doc, "t", structures={s.name for s in brain.structures})

    near = score(r, "tia", module(A_MM), brain)
    assert near.steps[0].passed and near.accuracy_mm == pytest.approx(1.0, abs=0.01)
    far = score(r, "tia", module((A_MM[0] + 30.0, A_MM[1], A_MM[2])), brain)
    assert not far.steps[0].passed


def test_cli_json_gives_the_state_at_a_time(make_recording: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    """``consult replay --json --at T`` prints the state then, with its digest."""
    path = make_recording()
    assert main(["consult", "replay", str(path), "--json", "--at", "0.45"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["op_count"] == 1 and doc["state"]["landmarks"] == {} and doc["state"]["clip_planes"]["0"]["d"] == 0.02
    assert doc["digest"] == state_at(read_recording(path), 0.45).digest().hex()


@pytest.mark.parametrize(
    ("extra", "message"),
    [([], "give --out"), (["--json", "--at", "-1"], "--at must be >= 0"),
     (["--out", "x", "--twin", "nope"], "twin")],
)
def test_cli_bad_input_is_one_line(make_recording: Callable[..., Path], capsys: pytest.CaptureFixture[str],
                                   extra: list[str], message: str) -> None:  # fmt: skip
    """A user mistake is a non-zero exit and one line, not a traceback."""
    assert main(["consult", "replay", str(make_recording()), *extra]) != 0
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_cli_refuses_a_file_that_is_not_a_recording(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A foreign file is refused in one line."""
    (tmp_path / "x.mvr").write_bytes(b"hello")
    assert main(["consult", "replay", str(tmp_path / "x.mvr"), "--json"]) != 0
    assert "not a medverse recording" in capsys.readouterr().err
