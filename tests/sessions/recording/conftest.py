"""Fixtures for the recording tests: a recording written record by record on a fake clock."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from net.protocol import OpKind, PoseRecord, WirePose, encode_pose, encode_state
from net.state import SharedState
from sessions.recording.format import Direction, Header, MvrWriter, ParticipantEvent, RecordType

#: A landmark on the brain's left hemisphere (twin mm), as the training tests use.
A_MM = (-25.5, 57.4, 19.8)


@pytest.fixture
def make_recording(tmp_path: Path) -> Callable[..., Path]:
    """``make_recording(seconds=2.0, trainee_mm=A_MM)``: a surgeon (1) who cuts a clip plane at 0.3 s and a
    trainee (2) who places a landmark at ``trainee_mm`` at 0.6 s, both heads and right hands at 30 Hz,
    a digest each second; returns the file."""

    def make(seconds: float = 2.0, trainee_mm: tuple[float, float, float] = A_MM, name: str = "a.mvr") -> Path:
        now = [0.0]
        path = tmp_path / name
        w = MvrWriter(path, Header("ward", "brain", None, 1.7e9, {"index": 1, "id": "sam"}), clock=lambda: now[0])
        w.participant(ParticipantEvent(0.0, "join", 1, "sam", "Sam", "surgeon"))
        w.participant(ParticipantEvent(0.0, "join", 2, "tia", "Tia", "trainee"))
        mine, theirs = SharedState(1), SharedState(2)
        for k in range(round(seconds * 30)):
            now[0] = t = k / 30
            for index, x in ((1, 0.6), (2, -0.6)):
                record = PoseRecord(index, k + 1, t, head=WirePose((x, 0.25, 0.6), (0.0, 0.0, 0.0, 1.0)),
                                    right=WirePose((x / 2, 0.0, 0.35)))  # fmt: skip
                w.message(RecordType.POSE, Direction.SENT if index == 1 else Direction.RECEIVED, encode_pose(record), t=t)
            if k == 9:
                op = mine.make_op(OpKind.CLIP_SET, {"index": 0, "normal": [0, 0, -1], "d": 0.02}, t)
                w.message(RecordType.OP, Direction.SENT, encode_state(op), t=t)
                theirs.apply(op)
            if k == 18:
                position = [c / 1000 for c in trainee_mm]
                payload = {"id": "tia:1", "position": position, "label": "A", "structure": None}
                op = theirs.make_op(OpKind.LANDMARK_PLACE, payload, t)
                w.message(RecordType.OP, Direction.RECEIVED, encode_state(op), t=t)
                mine.apply(op)
            if k % 30 == 29:
                w.digest(mine.op_count, mine.digest(), t=t)
        w.close()
        return path

    return make
