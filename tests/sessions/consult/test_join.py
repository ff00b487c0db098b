"""Joining with the twin rendered: follow-me snaps the view to the presenter's head (whoever sets the
pose record's presenting bit, observers too) and back; a participant with another twin than the one
signaling names for the room, or a script that fails, is turned away with one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from net.protocol import Buttons, OpKind, PoseRecord, StateOp, StateRefusal
from net.state import SharedState
from sessions.consult.avatars import TwinFrame
from sessions.consult.network import SWITCH_INTERVAL_S, RemotePose, favour_network
from sessions.consult.presence import Presence
from sessions.consult.room import ANY_PRESENTER, IPD_M, ConsultSession
from sessions.recording.format import read_recording
from sessions.run import SessionConfig
from sessions.sim import working_scene
from xrcore.input import Picker
from xrcore.types import Fov, FrameState, Pose, View

MEDVERSE = str(Path(sys.executable).with_name("medverse"))


class _Room:
    """A room of one shared state (ops made here are the presenter's, as they would arrive)."""

    def __init__(self, index: int) -> None:
        self.state = SharedState(index)

    def make_op(self, kind: OpKind | int, payload: Any) -> StateOp:
        return self.state.make_op(kind, payload, 0.0)

    def take(self) -> list[tuple[StateOp, str]]:
        return []


class _Participant:
    name = "bob"
    token_role = "observer"

    def clock(self) -> float:
        return time.monotonic()


class _Net:
    """What the session reads of the network thread: the newest poses and presence."""

    def __init__(self) -> None:
        self.participant = _Participant()
        self.presence = Presence()
        self.newest: dict[int, RemotePose] = {}
        self.sent: list[Any] = []
        self.refused: list[StateRefusal] = []

    def poses(self) -> dict[int, RemotePose]:
        return dict(self.newest)

    def send_pose(self, poses: Any, sampled_at: float | None = None) -> None:
        self.sent.append(poses)

    def refusals(self) -> list[StateRefusal]:
        out, self.refused = self.refused, []
        return out


def _views(head: Pose) -> list[View]:
    fov = Fov(-0.7, 0.7, 0.7, -0.7)
    return [View(head, fov, 64, 64, 0), View(head, fov, 64, 64, 1)]


def _presenting(index: int, name: str, role: str, head: Pose, twin: TwinFrame, since: float | None) -> RemotePose:
    """A remote's newest pose record as the net thread keeps it (``since``: when its bit came on)."""
    bits = Buttons.PRESENTING if since is not None else Buttons.NONE
    return RemotePose(PoseRecord(index, 1, 0.0, head=twin.to_twin(head), buttons=bits), name, role, since)


def _assert_eyes_at(views: list[View] | None, head: Pose) -> None:
    assert views is not None and len(views) == 2
    right = head.rotation_matrix()[:, 0]
    for view, side in zip(views, (-0.5, 0.5), strict=True):
        expected = np.asarray(head.position) + side * IPD_M * right
        assert np.allclose(view.pose.position, expected, atol=2e-4)  # the wire's 0.1 mm steps
        assert abs(abs(float(np.dot(view.pose.orientation, head.orientation))) - 1.0) < 1e-4


def test_follower_view_snaps_to_the_presenters_head_and_back(brain: Any) -> None:
    """While ann's pose records carry the presenting bit and bob follows her, bob's eyes are ann's head
    +- half the IPD, looking her way; when bob stops following, or ann's bit goes off, bob's own views stay."""
    scene = working_scene(brain)
    net, room = _Net(), _Room(2)
    session = ConsultSession(scene, SessionConfig(user="bob", hud=False), Picker(brain), net, room)  # type: ignore[arg-type]
    twin = TwinFrame.of(scene)
    ann_head = Pose((0.4, 0.3, 0.1), (0.0, 0.38268343, 0.0, 0.92387953))
    net.newest[1] = _presenting(1, "ann", "surgeon", ann_head, twin, None)
    frame = FrameState(0, 0.0, 1 / 30, _views(Pose((0.0, 0.25, 0.5))))
    session.follow("ann")
    assert session._presenter_views(frame, twin) is None  # ann does not present yet
    net.newest[1] = _presenting(1, "ann", "surgeon", ann_head, twin, 5.0)
    _assert_eyes_at(session._presenter_views(frame, twin), ann_head)
    session.follow(None)
    assert session._presenter_views(frame, twin) is None
    session.follow("ann")
    net.newest[1] = _presenting(1, "ann", "surgeon", ann_head, twin, None)
    assert session._presenter_views(frame, twin) is None  # ann stopped presenting: back to one's own view
    assert room.state.op_count == 0  # following and presenting are poses, never state ops


def test_an_observer_presents_and_a_follower_of_anyone_takes_the_latest_presenter(brain: Any) -> None:
    """An observer's ``present()`` sets the presenting bit in its pose records (no state op, no refusal);
    a follower of anyone renders from whoever presents, the latest to start when several do."""
    scene = working_scene(brain)
    net, room = _Net(), _Room(2)
    observer = ConsultSession(scene, SessionConfig(user="bob", hud=False), Picker(brain), net, room)  # type: ignore[arg-type]
    assert observer.role == "observer"
    frame = FrameState(0, 0.0, 1 / 30, _views(Pose((0.0, 0.25, 0.5))))
    observer.step(frame)
    observer.present()
    observer.step(frame)
    observer.present(False)
    observer.step(frame)
    bits = [poses.get("buttons", Buttons.NONE) for poses in net.sent]
    assert bits == [Buttons.NONE, Buttons.PRESENTING, Buttons.NONE]
    assert room.state.op_count == 0 and observer.bridge.counters.refused == 0
    # and the observer's records, as a follower of anyone receives them
    twin = TwinFrame.of(scene)
    ann_head, cat_head = Pose((0.4, 0.3, 0.1)), Pose((-0.3, 0.35, 0.2))
    follower = ConsultSession(working_scene(brain), SessionConfig(user="dan", hud=False), Picker(brain), net, _Room(4))  # type: ignore[arg-type]
    follower.follow(ANY_PRESENTER)
    net.newest = {1: _presenting(1, "ann", "surgeon", ann_head, twin, 1.0)}
    _assert_eyes_at(follower._presenter_views(frame, twin), ann_head)
    net.newest[3] = _presenting(3, "cat", "observer", cat_head, twin, 2.0)  # cat starts presenting later
    _assert_eyes_at(follower._presenter_views(frame, twin), cat_head)
    net.newest[3] = _presenting(3, "cat", "observer", cat_head, twin, None)  # cat stops: ann again
    _assert_eyes_at(follower._presenter_views(frame, twin), ann_head)


def test_motion_to_display_is_split_into_network_wait_and_frame(brain: Any) -> None:
    """A remote's record drawn for the first time counts once, from its sampling to the submit of the frame
    that drew it, and its parts (network, wait for the frame, the frame) add up to that; a record drawn again
    (same sequence number) counts nothing more."""
    scene = working_scene(brain)
    net, room = _Net(), _Room(2)
    session = ConsultSession(scene, SessionConfig(user="bob", hud=False), Picker(brain), net, room)  # type: ignore[arg-type]
    twin = TwinFrame.of(scene)
    now = net.participant.clock()
    sampled, arrived = now - 0.010, now - 0.006  # 4 ms on the network, then 6 ms before this frame's step
    net.presence.arrived(1, "ann", arrived, arrived - sampled)
    record = PoseRecord(1, 7, 0.0, head=twin.to_twin(Pose((0.4, 0.3, 0.1))))
    net.newest[1] = RemotePose(record, "ann", "surgeon", None, sampled, arrived)
    frame = FrameState(0, 0.0, 1 / 30, _views(Pose((0.0, 0.25, 0.5))))
    session.step(frame)
    assert session.scene.late is not None  # the renderer's late look adds the avatars, as it draws
    session.scene.late(session.scene)
    assert session.scene.late is None  # once a step: a second draw of the frame adds nothing
    time.sleep(0.003)  # the draw
    session.displayed()
    session.step(frame)  # the same record again: not counted again
    assert session.scene.late is not None
    session.scene.late(session.scene)
    session.displayed()
    figures = session.motion_to_display()
    assert figures is not None and figures["room"]["count"] == 1 and set(figures["by"]) == {"ann"}
    parts = figures["parts"]
    assert set(parts) == {"network", "to_frame", "in_frame"} and all(p["count"] == 1 for p in parts.values())
    assert parts["network"]["p50_ms"] == pytest.approx(4.0, abs=1e-3)
    assert parts["to_frame"]["p50_ms"] >= 6.0 and parts["in_frame"]["p50_ms"] >= 3.0
    total = sum(p["p50_ms"] for p in parts.values())
    assert total == pytest.approx(figures["room"]["p50_ms"], abs=2e-3)  # each figure rounded to a microsecond


def _join(env: dict[str, str], server: str, name: str, *extra: str, role: str = "expert") -> subprocess.Popen[str]:
    token = subprocess.run([MEDVERSE, "consult", "token", "--room", "ward", "--participant", name, "--role", role],
                           env=env, capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    return subprocess.Popen([MEDVERSE, "consult", "join", "--backend", "sim", "--server", server, "--token", token,
                             "--width", "32", "--height", "32", "--rate", "10", *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


@pytest.mark.slow
def test_another_twin_or_a_failing_script_is_refused_in_one_line(served: str, env: dict[str, str], tmp_path: Path) -> None:
    """With the room's twin named brain (by its first surgeon), a participant naming another twin is refused, and one whose
    motion script does not load ends, each with exit code 2 and one line on stderr, no traceback; the
    first one's ``--record`` file names the twin and its content hash, and its frame thread (the main one)
    runs at the ``--frame-nice`` it was given (not the simulator's default)."""
    first = _join(env, served, "ann", "--twin", "brain", "--duration", "20", "--record", str(tmp_path / "ann.mvr"),
                  "--frame-nice", "4", role="surgeon")  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:  # the room's twin is named once ann's first heads-up line is out
            assert first.stdout is not None and time.monotonic() < deadline
            if first.stdout.readline().startswith("heads-up"):
                break
        nice = int(Path(f"/proc/{first.pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
        assert nice == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 4)
        other = _join(env, served, "bob", "--twin", "skull", "--duration", "5")
        _, err = other.communicate(timeout=30)
        assert other.returncode == 2 and err.strip().splitlines() == [
            "medverse: error: the room's twin is 'brain', not 'skull'"
        ], err
        bad = tmp_path / "bad.json"
        bad.write_text('{"version": 1, "keyframes": [{"t": 0.0, "head": {"position": [0, 0]}}]}')
        scripted = _join(env, served, "cat", "--script", str(bad), "--duration", "5")
        _, err = scripted.communicate(timeout=30)
        lines = err.strip().splitlines()
        assert scripted.returncode == 2 and len(lines) == 1 and lines[0].startswith("medverse: error: "), err
        assert "Traceback" not in err and "bad.json" in lines[0]
    finally:
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=30)
    assert first.returncode == 0, err
    header = read_recording(tmp_path / "ann.mvr").header
    hash_ = out.split("with brain ")[1].split(":")[0]
    assert (header.twin_name, header.twin_sha256) == ("brain", hash_)


def test_favour_network_lowers_only_the_calling_threads_priority_and_shortens_the_gil_switch() -> None:
    """The frame thread's nice value rises by the given amount (Linux: per thread); a thread started
    before keeps its own, one started after inherits the frame thread's; the GIL is handed over sooner."""
    seen: dict[str, int] = {}
    started = threading.Event()
    release = threading.Event()

    def net_side() -> None:  # the net thread: started before the frame thread is niced
        started.set()
        release.wait(5)
        seen["net"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def frame_side() -> None:
        seen["before"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        net = threading.Thread(target=net_side)
        net.start()
        started.wait(5)
        favour_network(3)
        seen["frame"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        later = threading.Thread(target=lambda: seen.update(later=os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
        later.start()
        later.join()
        release.set()
        net.join()

    old = sys.getswitchinterval()
    try:
        frame = threading.Thread(target=frame_side)  # its own thread: the test process's main thread stays as it was
        frame.start()
        frame.join()
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_S)
    finally:
        sys.setswitchinterval(old)
    assert seen["frame"] == min(19, seen["before"] + 3) and seen["later"] == seen["frame"]
    assert seen["net"] == seen["before"]
