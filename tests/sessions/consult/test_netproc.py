"""The participant's network in a process of its own (``sessions.consult.netproc``): two real participants
in child processes, a real signaling server, real aiortc links on loopback."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from net.participant import ParticipantConfig
from net.protocol import OpKind
from net.signaling_client import SignalingRefusedError
from net.state import OpRefusedError
from sessions.consult import netproc
from sessions.consult.netproc import FRAME_TIMEOUT_S, NetProcess, NetProcessError, NetSpec
from sessions.consult.network import FrameRoom
from sessions.consult.scripted import procedural_poses

MEDVERSE = str(Path(sys.executable).with_name("medverse"))
CONFIG = ParticipantConfig(pose_rate_hz=0.0, ops_rate_hz=0.0)  # as a rendered join: poses come from the frame side


def _token(env: dict[str, str], name: str, role: str) -> str:
    return subprocess.run([MEDVERSE, "consult", "token", "--room", "ward", "--participant", name, "--role", role],
                          env=env, capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip


def _serve(env: dict[str, str], port: int, state_file: Path) -> tuple[subprocess.Popen[str], str]:
    """``medverse consult serve`` on ``port`` with ``state_file`` (a server started again there keeps the
    seats' ticket generations); the process and its URL."""
    proc = subprocess.Popen([MEDVERSE, "consult", "serve", "--port", str(port), "--state-file", str(state_file)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "serving on" in line, line
    return proc, line.split("serving on ")[1].split()[0]


def _restarted(net: NetProcess) -> bool:
    """The frame side's view once a restart is over (``ops`` answers, no restart under way); raises what
    ended one that failed."""
    net.ops()
    return net._restarter is None and net.restarts >= 1


def _until(what: Callable[[], Any], seconds: float = 20.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"not within {seconds:g} s")


def test_ops_poses_presence_and_refusals_cross_between_network_processes(served: str, env: dict[str, str]) -> None:
    """A surgeon's op and poses reach an observer's frame side through both network processes, with the
    sender's name and a presence line; the observer's twin move is refused in its network process and
    raised on its frame side; snapshot and report answer; stop ends the processes."""
    sam = NetProcess(NetSpec(served, _token(env, "sam", "surgeon"), CONFIG))
    olga = NetProcess(NetSpec(served, _token(env, "olga", "observer"), CONFIG))
    try:
        sam.start()
        olga.start()
        assert (sam.participant.name, olga.participant.name, olga.participant.token_role) == ("sam", "olga", "observer")
        op = sam.make_op(OpKind.SELECT, {"structure": "thalamus"})
        arrived = _until(lambda: [(o, who) for o, who in olga.ops() if o.seq == op.seq and who == "sam"])
        assert arrived[0][0].payload == {"structure": "thalamus"} and olga.room_op_count() == 1

        def seen() -> bool:
            sam.send_pose(procedural_poses(time.monotonic(), 1))
            olga.ops()
            return any(remote.name == "sam" for remote in olga.poses().values())

        _until(seen)
        assert any("sam" in line for line in olga.presence.lines(olga.participant.clock()))
        # without another fetch, a newer record of sam's comes from the pose board, read at the call
        fetched = max(remote.record.seq for remote in olga.poses().values() if remote.name == "sam")

        def fresher() -> bool:
            sam.send_pose(procedural_poses(time.monotonic(), 1))
            return any(remote.name == "sam" and remote.record.seq > fetched for remote in olga.poses().values())

        _until(fresher)
        # a pose stamped with when the frame sampled it (here: 0.4 s before it is sent) is received as that
        # old: its sender time is the sample's, not the moment the network process sent it
        def stamped() -> bool:
            sam.send_pose(procedural_poses(time.monotonic(), 1), sam.participant.clock() - 0.4)
            olga.ops()
            return any(r.name == "sam" and r.sampled_at is not None and r.arrived_at is not None
                       and 0.39 < r.arrived_at - r.sampled_at < 0.6 for r in olga.poses().values())  # fmt: skip

        _until(stamped)
        with pytest.raises(OpRefusedError, match="observer may not move the twin"):
            olga.make_op(OpKind.TRANSFORM, {"position": [0.0, 0.1, 0.0], "orientation": [0.0, 0.0, 0.0, 1.0], "scale": 1.0})
        index, data, count = olga.snapshot()
        assert index != 0 and count == 1 and data
        report = olga.report()
        assert (report["participant"], report["room"], report["state"]["op_count"]) == ("olga", "ward", 1)
    finally:
        sam.stop()
        olga.stop()
    assert not sam._process.is_alive() and not olga._process.is_alive()


def test_a_network_process_whose_frame_side_is_gone_leaves_the_room(served: str, env: dict[str, str]) -> None:
    """When the frame side's end of the pipe closes (its process died), the network process leaves the
    room and exits by itself."""
    net = NetProcess(NetSpec(served, _token(env, "sam", "surgeon"), CONFIG))
    net.start()
    net._conn.close()
    net._process.join(20)
    assert not net._process.is_alive() and net._process.exitcode == 0


def test_the_network_processs_errors_arrive_as_their_own_type_and_a_killed_one_as_net_process_error(
        served: str, env: dict[str, str]) -> None:
    """A refused join raises SignalingRefusedError here as in a thread (the CLI says it in one line); once
    the network process is killed, the next request says so as a NetProcessError."""
    refused = NetProcess(NetSpec(served, "forged.token", CONFIG))
    try:
        with pytest.raises(SignalingRefusedError, match="HTTP 401") as caught:
            refused.start()
        assert caught.value.status == 401
    finally:
        refused.stop()
    net = NetProcess(NetSpec(served, _token(env, "sam", "surgeon"), CONFIG), restarts=0)
    net.start()
    net._process.kill()
    net._process.join(10)
    with pytest.raises(NetProcessError, match="gone"):
        net.ops()
    net.stop()  # says so in a log line, raises nothing



def _joined_with_a_landmark(erin: NetProcess) -> tuple[FrameRoom, int]:
    """Erin joins and places landmark erin-1 (what a restart must keep); her room and index."""
    erin.start()
    room = FrameRoom(erin)
    room.make_op(OpKind.LANDMARK_PLACE, {"id": "erin-1", "position": [0.01, 0.02, 0.03], "label": "nasion"})
    room.take()
    return room, room.state.participant

def test_a_network_process_that_dies_is_started_again_on_its_seat_with_the_state_it_had(
        served: str, env: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    """Erin, alone in the room, places a landmark; her network process is killed. The frame side goes on
    (ops() answers, an op made meanwhile is refused with a reason) while another process rejoins her seat
    with the session's ticket: same index, and her landmark is still in the room's state although nobody
    else held it. Sam, joining afterwards, gets it, and her next op reaches him as a new one."""
    erin = NetProcess(NetSpec(served, _token(env, "erin", "expert"), CONFIG))
    sam = NetProcess(NetSpec(served, _token(env, "sam", "surgeon"), CONFIG))
    try:
        erin.start()
        room = FrameRoom(erin)
        index = room.state.participant
        room.make_op(OpKind.LANDMARK_PLACE, {"id": "erin-1", "position": [0.01, 0.02, 0.03], "label": "nasion"})
        erin._process.kill()
        with caplog.at_level(logging.WARNING, logger="sessions.consult.netproc"):
            room.take()  # finds it gone: the restart begins in the background
            with pytest.raises(OpRefusedError, match="reconnecting"):
                room.make_op(OpKind.SELECT, {"structure": "thalamus"})
            _until(lambda: room.take() is not None and erin._restarter is None and erin.restarts == 1, 40.0)
        assert any("network process died" in r.getMessage() for r in caplog.records)
        assert any("back in room ward" in r.getMessage() for r in caplog.records)
        back, _, count = erin.snapshot()
        assert (back, count) == (index, 1) and "erin-1" in room.state.landmarks
        sam.start()
        _until(lambda: sam.snapshot()[2] == 1)
        op = room.make_op(OpKind.SELECT, {"structure": "thalamus"})
        assert op.seq == 2
        _until(lambda: [o for o, who in sam.ops() if (o.participant, o.seq, who) == (index, 2, "erin")])
        report = erin.report()
        assert report["network_process"]["restarts"] == 1 and report["index"] == index
    finally:
        sam.stop()
        erin.stop()


def test_a_network_process_that_hangs_is_killed_and_started_again_while_the_frame_loop_goes_on(
        served: str, env: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    """Erin places a landmark; her network process is stopped (SIGSTOP: alive, answering nothing). The frame
    loop goes on: the one frame that finds it hung waits FRAME_TIMEOUT_S, not the 10 s of other requests, and
    no frame waits for the restart; the process is killed and another rejoins her seat (same index, the
    landmark still in the room's state). The report counts one restart, and that it was a hang."""
    erin = NetProcess(NetSpec(served, _token(env, "erin", "expert"), CONFIG))
    try:
        room, index = _joined_with_a_landmark(erin)
        hung = erin._process
        assert hung.pid is not None
        os.kill(hung.pid, signal.SIGSTOP)
        waits: list[float] = []
        deadline = time.monotonic() + 30.0
        with caplog.at_level(logging.WARNING, logger="sessions.consult.netproc"):
            while not (erin._restarter is None and erin.restarts == 1):  # as the frame loop: a pose and a fetch a frame
                assert time.monotonic() < deadline, "not started again within 30 s"
                erin.send_pose(procedural_poses(time.monotonic(), 1))
                began = time.monotonic()
                room.take()
                waits.append(time.monotonic() - began)
                time.sleep(1 / 30)
        assert FRAME_TIMEOUT_S <= max(waits) < FRAME_TIMEOUT_S + 1.0
        assert sorted(waits)[-2] < 1.0 and len(waits) > 3  # only the frame that found it hung waited
        assert hung.exitcode == -signal.SIGKILL and erin._process is not hung and erin._process.is_alive()
        lines = [r.getMessage() for r in caplog.records]
        assert any("network process hung" in line and "'frame'" in line for line in lines), lines
        assert any("back in room ward" in line and "network process hung" in line for line in lines), lines
        back, _, count = erin.snapshot()
        assert (back, count) == (index, 1) and "erin-1" in room.state.landmarks
        assert room.make_op(OpKind.SELECT, {"structure": "thalamus"}).seq == 2
        report = erin.report()
        assert report["index"] == index and report["state"]["op_count"] == 2
        assert (report["network_process"]["restarts"], report["network_process"]["hangs"]) == (1, 1)
    finally:
        erin.stop()


def test_a_late_answer_from_a_slow_network_process_is_never_read(
        served: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A network process that answers a frame's fetch only after the frame stopped waiting (here: stopped
    through the wait, and let go on before the kill, until its answer is in the pipe) is replaced like a
    hung one: its pipe is closed with the kill and never read, so that answer is not taken for a later
    request's; the new process's answers come in order."""
    erin = NetProcess(NetSpec(served, _token(env, "erin", "expert"), CONFIG))
    try:
        erin.start()
        room = FrameRoom(erin)
        room.make_op(OpKind.SELECT, {"structure": "thalamus"})
        slow, pipe = erin._process, erin._conn
        assert slow.pid is not None
        real_kill = slow.kill
        late: list[bool] = []

        def late_kill() -> None:
            os.kill(slow.pid, signal.SIGCONT)  # type: ignore[arg-type]
            late.append(pipe.poll(5.0))  # its answer to the fetch, after the fetch gave up
            real_kill()

        monkeypatch.setattr(slow, "kill", late_kill)
        monkeypatch.setattr(netproc, "FRAME_TIMEOUT_S", 0.2)
        os.kill(slow.pid, signal.SIGSTOP)
        assert room.take() == []
        monkeypatch.setattr(netproc, "FRAME_TIMEOUT_S", FRAME_TIMEOUT_S)
        assert late == [True] and pipe.closed and erin.hangs == 1
        _until(lambda: _restarted(erin))
        index, data, count = erin.snapshot()  # a snapshot's answer, not the old fetch's
        assert (index, count) == (room.state.participant, 1) and isinstance(data, bytes)
        assert room.make_op(OpKind.SELECT, {"structure": "hippocampus"}).seq == 2
        assert erin.report()["network_process"]["hangs"] == 1
    finally:
        erin.stop()


def test_a_rotated_resume_ticket_reaches_the_frame_side_without_a_fetch(
        env: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The signaling server restarts; Erin's network process rejoins it, which rotates the session's resume
    ticket (the old one is stale from then on). The frame side fetches nothing meanwhile, yet holds the new
    ticket, so that when the process is killed right after, the restart resumes her seat rather than being
    refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    state_file = tmp_path / "rooms.json"
    server, url = _serve(env, port, state_file)
    erin = NetProcess(NetSpec(url, _token(env, "erin", "expert"), CONFIG))
    try:
        room, index = _joined_with_a_landmark(erin)
        first = erin.resume_ticket
        assert first
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)
        server, _ = _serve(env, port, state_file)
        _until(lambda: erin.report()["signaling"]["outages"] == 1 and erin.report()["signaling"]["connected"])
        assert erin.resume_ticket not in (None, first)  # written by the child, no fetch in between
        erin._process.kill()
        erin._process.join(10)
        with caplog.at_level(logging.WARNING, logger="sessions.consult.netproc"):
            _until(lambda: _restarted(erin))
        assert any("back in room ward" in r.getMessage() for r in caplog.records)
        back, _, count = erin.snapshot()
        assert (back, count) == (index, 1) and "erin-1" in room.state.landmarks
        assert {k: v for k, v in erin.report()["network_process"].items() if k != "down_s"} == {
            "restarts": 1, "hangs": 0, "recordings": []}  # fmt: skip
    finally:
        erin.stop()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)
