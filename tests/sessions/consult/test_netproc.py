"""The participant's network in a process of its own (``sessions.consult.netproc``): two real participants
in child processes, a real signaling server, real aiortc links on loopback."""

from __future__ import annotations

import logging
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
from sessions.consult.netproc import NetProcess, NetProcessError, NetSpec
from sessions.consult.network import FrameRoom
from sessions.consult.scripted import procedural_poses

MEDVERSE = str(Path(sys.executable).with_name("medverse"))
CONFIG = ParticipantConfig(pose_rate_hz=0.0, ops_rate_hz=0.0)  # as a rendered join: poses come from the frame side


def _token(env: dict[str, str], name: str, role: str) -> str:
    return subprocess.run([MEDVERSE, "consult", "token", "--room", "ward", "--participant", name, "--role", role],
                          env=env, capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip


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
