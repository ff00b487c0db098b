"""The .mvr container: every record kind round-trips, a cut-short or corrupt tail is reported in one
line with everything before it readable, hostile files are refused, and a killed writer loses at most
the last second."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from net.protocol import OpKind, PoseRecord, WirePose, encode_pose, encode_state
from net.state import SharedState
from sessions.recording.format import (
    MAGIC,
    MAX_BODY_BYTES,
    RECORD_HEAD,
    DigestEntry,
    Direction,
    Header,
    MvrWriter,
    OpEntry,
    ParticipantEvent,
    PoseEntry,
    RecordingError,
    RecordType,
    SnapshotEntry,
    encode_record,
    read_recording,
)


def test_every_record_kind_round_trips(tmp_path: Path) -> None:
    """Header, joins and leaves, poses and ops as their wire bytes, digests, snapshots and the end come back as written."""
    path = tmp_path / "r.mvr"
    state = SharedState(3)
    op = state.make_op(OpKind.MEASURE, {"id": "m1", "a_mm": [0, 0, 0], "b_mm": [3, 4, 0], "distance_mm": 5.0}, 12.5)
    pose = encode_pose(PoseRecord(3, 7, 12.25, head=WirePose((0.1, 1.6, -0.2), (0.0, 0.0, 0.0, 1.0))))
    w = MvrWriter(path, Header("ward", "brain", "ab" * 32, 1.7e9, {"index": 3, "id": "eve"}))
    w.participant(ParticipantEvent(0.5, "join", 3, "eve", "Eve", "expert"))
    w.message(RecordType.POSE, Direction.SENT, pose, t=1.0)
    w.message(RecordType.OP, Direction.RECEIVED, encode_state(op), t=1.5)
    w.digest(state.op_count, state.digest(), t=2.0)
    w.snapshot(state.snapshot_bytes(), t=2.5)
    w.participant(ParticipantEvent(3.0, "leave", 3, "eve", "Eve", "expert"))
    w.close()
    r = read_recording(path)
    assert r.problem is None and r.ended and r.skipped == 0
    assert r.header == Header("ward", "brain", "ab" * 32, 1.7e9, {"index": 3, "id": "eve"})
    join, p, o, d, s, leave = r.entries
    assert join == ParticipantEvent(0.5, "join", 3, "eve", "Eve", "expert") and leave.event == "leave"  # type: ignore[union-attr]
    assert isinstance(p, PoseEntry) and p.raw == pose and p.direction is Direction.SENT and p.record.seq == 7 and p.t == 1.0
    assert isinstance(o, OpEntry) and o.raw == encode_state(op) and o.op == op and o.direction is Direction.RECEIVED
    assert isinstance(d, DigestEntry) and (d.op_count, d.digest) == (1, state.digest())
    assert isinstance(s, SnapshotEntry) and s.body == state.snapshot_bytes()
    assert r.duration == 3.0 and r.index_of("Eve") == 3


def test_truncated_anywhere_reads_every_complete_record(make_recording: Callable[..., Path], tmp_path: Path) -> None:
    """Cut at any byte, a file gives exactly the records that end before the cut and one line about the rest."""
    whole = make_recording().read_bytes()
    full = read_recording(make_recording(name="full.mvr"))
    ends, offset = [], len(MAGIC)  # where each record ends
    while offset < len(whole):
        (length,) = RECORD_HEAD.unpack_from(whole, offset)[:1]
        offset += RECORD_HEAD.size + length + 4
        ends.append(offset)
    rng = random.Random(7)
    cuts = sorted({*rng.sample(range(ends[0] + 1, len(whole)), 60), ends[5], ends[5] + 1, len(whole) - 1})
    for cut in cuts:
        path = tmp_path / "cut.mvr"
        path.write_bytes(whole[:cut])
        r = read_recording(path)
        complete = sum(1 for e in ends[1:] if e <= cut)  # records after the header that fit
        kept = complete - (1 if cut == len(whole) else 0)  # the END record is not an entry
        assert len(r.entries) == min(kept, len(full.entries)), cut
        assert r.entries == full.entries[: len(r.entries)]
        if cut in ends:
            assert r.problem is None and not r.ended
        else:
            assert r.problem is not None and "truncated at byte" in r.problem and "\n" not in r.problem


def test_corrupt_crc_stops_reading_there(make_recording: Callable[..., Path]) -> None:
    """A flipped bit in a record is a CRC mismatch reported in one line; every record before it still reads."""
    path = make_recording()
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle] ^= 0x40
    path.write_bytes(bytes(data))
    r = read_recording(path)
    assert r.problem is not None and "CRC mismatch" in r.problem and "\n" not in r.problem
    assert 0 < len(r.entries) < len(read_recording(make_recording(name="b.mvr")).entries)


@pytest.mark.parametrize("length", [MAX_BODY_BYTES + 1, 2**32 - 1])
def test_giant_length_is_refused_without_reading_it(make_recording: Callable[..., Path], length: int) -> None:
    """A record announcing more than the limit stops reading there (nothing is allocated for it)."""
    path = make_recording()
    with open(path, "ab") as f:
        f.write(RECORD_HEAD.pack(length, RecordType.POSE, 0) + b"\x00" * 64)
    r = read_recording(path)
    assert r.problem is not None and f"announces {length} bytes" in r.problem
    assert r.ended  # the END record before the garbage was read


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "wrong magic"),
        (b"PK\x03\x04not a recording", "wrong magic"),
        (MAGIC + RECORD_HEAD.pack(10**6, RecordType.HEADER, 0), "no readable header"),
        (MAGIC + encode_record(RecordType.POSE, 0, b"\x00"), "first record is not a header"),
        (MAGIC + encode_record(RecordType.HEADER, 0, b"[1]"), "malformed header"),
        (MAGIC + encode_record(RecordType.HEADER, 0, b'{"format_version": 99, "room": "r", "started_unix": 0}'), "newer"),
    ],
)
def test_hostile_or_foreign_file_is_refused_in_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    """Not a recording, or a header that cannot be trusted: one RecordingError line naming the file."""
    path = tmp_path / "bad.mvr"
    path.write_bytes(content)
    with pytest.raises(RecordingError, match=message) as info:
        read_recording(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_malformed_message_in_a_good_record_is_skipped(tmp_path: Path) -> None:
    """A record whose CRC holds but whose message does not decode is counted and skipped, not fatal."""
    path = tmp_path / "r.mvr"
    w = MvrWriter(path, Header("ward", None, None, 0.0))
    w.message(RecordType.POSE, Direction.SENT, b"\x04\x01garbage", t=0.1)
    w.write(RecordType.DIGEST, b"short", t=0.2)
    w.write(200, b"a future record kind", t=0.3)  # type: ignore[arg-type]
    w.close()
    r = read_recording(path)
    assert r.entries == [] and r.skipped == 3 and r.problem is None and r.ended


WRITER = """
import sys, time
from net.protocol import PoseRecord, WirePose, encode_pose
from sessions.recording.format import Direction, Header, MvrWriter, RecordType
w = MvrWriter(sys.argv[1], Header("ward", None, None, time.time()))
k = 0
while True:
    k += 1
    w.message(RecordType.POSE, Direction.SENT, encode_pose(PoseRecord(1, k, w.now(), head=WirePose())))
    if k == 1:
        print("writing", flush=True)
    time.sleep(0.002)
"""


def test_killed_writer_loses_at_most_the_last_second(tmp_path: Path) -> None:
    """SIGKILL mid-stream: the file reads up to within a second of the kill, the cut tail (if any) reported."""
    path = tmp_path / "crash.mvr"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
        time.sleep(2.5)
        started = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    r = read_recording(path)
    assert not r.ended
    assert r.problem is None or "truncated at byte" in r.problem
    poses = r.poses
    # the writer ran about (2.5 s + start-up) after its first record; what it wrote in all but the last second is there
    assert poses and poses[-1].t >= 1.4, poses[-1].t
    assert [p.record.seq for p in poses] == list(range(1, len(poses) + 1))
    assert time.monotonic() - started < 5
