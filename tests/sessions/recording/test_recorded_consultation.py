"""A real consultation on loopback (signaling server, aiortc peers) recorded by one participant, then
replayed to the final state every live participant reported."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from net.participant import Participant, ParticipantConfig
from net.protocol import OpKind
from net.signaling import ServerConfig, SignalingServer
from net.tokens import issue_token
from sessions.consult.scripted import ScriptedOps, procedural_poses
from sessions.recording.format import Direction, read_recording
from sessions.recording.recorder import SessionRecorder
from sessions.recording.replay import state_at

pytestmark = pytest.mark.slow


@pytest.fixture
async def server() -> AsyncIterator[SignalingServer]:
    """A signaling server on a free loopback port."""
    srv = SignalingServer(ServerConfig(secret=b"recording-tests-secret-0123456789", port=0))
    await srv.start()
    yield srv
    await srv.stop()


async def until(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def participant(server: SignalingServer, name: str, role: str) -> Participant:
    token = issue_token(server.config.secret, "ward", name, role)
    config = ParticipantConfig(pose_rate_hz=30, ops_rate_hz=8, ops_start_s=0.3, ops_stop_s=2.5, report_interval_s=0.3)
    return Participant(server.url, token, config, poses=procedural_poses, ops=ScriptedOps())


async def test_recorded_consultation_replays_to_the_live_final_state(server: SignalingServer, tmp_path: Path) -> None:
    """Three peers (one joining late) make ops; the surgeon's recording replays to the digest all three reached."""
    path = tmp_path / "consult.mvr"
    alice, bob, carol = (participant(server, n, r) for n, r in (("alice", "surgeon"), ("bob", "expert"), ("carol", "trainee")))
    recorder = SessionRecorder(path, twin_name="brain")
    recorder.attach(alice)
    try:
        recorder.begin(await alice.start())
        await bob.start()
        await asyncio.sleep(1.0)
        await carol.start()  # late: what came before reaches her by snapshot
        await until(lambda: all(sum(link.is_open for link in p.links.values()) == 2 for p in (alice, bob, carol)))
        await asyncio.sleep(2.0)  # ops stop 2.5 s after each joined
        carol.make_op(OpKind.LANDMARK_PLACE, {"id": "carol:final", "position": [0.01, 0.02, 0.03], "label": "x"})
        await until(lambda: alice.state.digest() == bob.state.digest() == carol.state.digest()
                    and alice.state.has(carol.index, carol.state.seq))  # fmt: skip
        await asyncio.sleep(1.2)  # a digest record after the last op
        live = alice.state.digest()
        await until(lambda: alice.state.digest() == live)
    finally:
        for p in (carol, bob, alice):
            await p.stop()
        recorder.close()
    r = read_recording(path)
    assert r.problem is None and r.ended and r.skipped == 0
    assert r.header.room == "ward" and r.header.twin_name == "brain" and r.header.recorder["role"] == "surgeon"
    roles = {e.id: e.role for e in r.participants if e.event == "join"}
    assert roles == {"alice": "surgeon", "bob": "expert", "carol": "trainee"}
    assert {e.id for e in r.participants if e.event == "leave"} >= {"alice"}
    sent = [e for e in r.ops if e.direction is Direction.SENT]
    received = [e for e in r.ops if e.direction is Direction.RECEIVED]
    assert sent and received and {e.op.participant for e in received} == {bob.index, carol.index}
    assert {e.record.participant for e in r.poses} == {alice.index, bob.index, carol.index}
    final = state_at(r)
    assert final.digest() == live == bob.state.digest() == carol.state.digest()
    assert r.digests[-1].digest == live
