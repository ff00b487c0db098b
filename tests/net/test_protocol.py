"""Wire protocol: exact byte layouts (the hex examples of docs/protocol.md), round trips, limits, errors."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from typing import Any

import pytest

from net import protocol as p
from net.errors import NetError, ProtocolError

# The worked examples of docs/protocol.md: change one and the other must change with it.
POSE_HEX = (
    "05010700feffffff4e61bc000000000007070201"  # header: v5, pose, participant 7, seq, 12.345678 s, flags
    "e803803e3cf6000000000000"  # head: (0.1, 1.6, -0.25) m, identity (largest w)
    "30f8f82a60f000000000ff7f"  # left: (-0.2, 1.1, -0.4) m, 90 degrees about +Y (largest y)
    "d007f82a60f07ea5825a825a"  # right: (0.2, 1.1, -0.4) m, (0.5, -0.5, 0.5, 0.5) (largest x)
)
OP_HEX = (
    "0510060003002c002a000000e90300000000000020bcbe0000000000"
    "7b2264223a302e30352c22696e646578223a322c226e6f726d616c223a5b302e302c302e302c2d312e305d7d"
)
PING_HEX = "052003000900000040420f0000000000"
PONG_HEX = "052105000900000040420f000000000034250506000000009825050600000000"
SHARE_HEX = "05220700fa00000080841e0000000000a0061c0600000000"
REQUEST_HEX = "051104004d000000"
DIGEST_HEX = "051304000a00000080841e0000000000" + bytes(range(32)).hex()


@pytest.fixture
def pose_record() -> p.PoseRecord:
    """The pose record of the worked example: head and two hands, two buttons, sequence about to wrap."""
    return p.PoseRecord(
        participant=7,
        seq=0xFFFFFFFE,
        sender_time=12.345678,
        head=p.WirePose((0.1, 1.6, -0.25), (0.0, 0.0, 0.0, 1.0)),
        left=p.WirePose((-0.2, 1.1, -0.4), (0.0, math.sqrt(0.5), 0.0, math.sqrt(0.5))),
        right=p.WirePose((0.2, 1.1, -0.4), (0.5, -0.5, 0.5, 0.5)),
        buttons=p.Buttons.RIGHT_TRIGGER | p.Buttons.LEFT_GRIP,
    )


@pytest.fixture
def clip_op() -> p.StateOp:
    """The state op of the worked example: clip plane 2 facing -Z at 5 cm."""
    return p.StateOp(3, 42, 1001, p.OpKind.CLIP_SET, {"index": 2, "normal": [0, 0, -1], "d": 0.05}, 12.5)


def _angle_deg(q1: tuple[float, ...], q2: tuple[float, ...]) -> float:
    dot = abs(sum(a * b for a, b in zip(q1, q2, strict=True)))
    return math.degrees(2 * math.acos(min(1.0, dot)))


def _random_quat(rng: random.Random) -> tuple[float, float, float, float]:
    q = [rng.gauss(0, 1) for _ in range(4)]
    n = math.sqrt(sum(c * c for c in q))
    return (q[0] / n, q[1] / n, q[2] / n, q[3] / n)


def test_pose_encoding_is_pinned_byte_for_byte(pose_record: p.PoseRecord) -> None:
    """The example pose record encodes to exactly the documented 56 bytes."""
    data = p.encode_pose(pose_record)
    assert data.hex() == POSE_HEX
    assert len(data) == 56


def test_pose_example_decodes_within_quantisation(pose_record: p.PoseRecord) -> None:
    """Decoding the documented hex gives the record back within 0.05 mm and 0.01 degree."""
    got = p.decode_pose(bytes.fromhex(POSE_HEX))
    assert (got.participant, got.seq, got.sender_time, got.buttons) == (7, 0xFFFFFFFE, 12.345678, 258)
    assert got.pointer is None
    for name in ("head", "left", "right"):
        want, have = getattr(pose_record, name), getattr(got, name)
        assert max(abs(a - b) for a, b in zip(want.position, have.position, strict=True)) <= 0.5e-4
        assert _angle_deg(want.orientation, have.orientation) < 0.01


def test_pose_round_trip_precision_on_random_poses() -> None:
    """Random poses in the +-3.2 m room survive encode/decode within 0.05 mm and 0.01 degree."""
    rng = random.Random(5)
    worst_mm, worst_deg = 0.0, 0.0
    for i in range(500):
        poses = {
            name: p.WirePose(tuple(rng.uniform(-3.2, 3.2) for _ in range(3)), _random_quat(rng))  # type: ignore[arg-type]
            for name in p.POSE_SLOTS
            if rng.random() < 0.8
        }
        rec = p.PoseRecord(rng.randrange(65536), rng.randrange(2**32), rng.uniform(0, 1e6), **poses)
        got = p.decode_pose(p.encode_pose(rec))
        assert (got.participant, got.seq) == (rec.participant, rec.seq)
        assert abs(got.sender_time - rec.sender_time) <= 0.5e-6
        for name, want in poses.items():
            have = getattr(got, name)
            worst_mm = max(worst_mm, *(abs(a - b) * 1e3 for a, b in zip(want.position, have.position, strict=True)))
            worst_deg = max(worst_deg, _angle_deg(want.orientation, have.orientation))
            assert abs(sum(c * c for c in have.orientation) - 1.0) < 1e-9
        assert all(getattr(got, n) is None for n in p.POSE_SLOTS if n not in poses), i
        # Built without __init__ (for speed), a decoded record is still the same frozen value as one built with it.
        rebuilt = p.PoseRecord(**{f.name: getattr(got, f.name) for f in dataclasses.fields(p.PoseRecord)})
        assert got == rebuilt and hash(got) == hash(rebuilt) and repr(got) == repr(rebuilt)
        assert all(getattr(got, n) == p.WirePose(getattr(got, n).position, getattr(got, n).orientation) for n in poses)
        with pytest.raises(dataclasses.FrozenInstanceError):
            got.seq = 0  # type: ignore[misc]
    assert worst_mm <= 0.05
    assert worst_deg < 0.01


def test_pose_sizes() -> None:
    """Head and two hands take 56 bytes (<= 64); all four poses take POSE_MAX_BYTES = 68; none take 20."""
    pose = p.WirePose((0.0, 1.7, 0.0))
    three = p.PoseRecord(1, 1, 0.0, head=pose, left=pose, right=pose)
    four = p.PoseRecord(1, 1, 0.0, head=pose, left=pose, right=pose, pointer=pose)
    assert len(p.encode_pose(three)) == 56 <= 64
    assert len(p.encode_pose(four)) == p.POSE_MAX_BYTES == 68
    assert len(p.encode_pose(p.PoseRecord(1, 1, 0.0))) == 20


def test_state_op_encoding_is_pinned_byte_for_byte(clip_op: p.StateOp) -> None:
    """The example clip-plane op encodes to the documented header and canonical JSON payload."""
    data = p.encode_state(clip_op)
    assert data.hex() == OP_HEX
    assert data[p.OP_HEADER.size :] == b'{"d":0.05,"index":2,"normal":[0.0,0.0,-1.0]}'
    got = p.decode_state(data)
    assert got == p.StateOp(3, 42, 1001, p.OpKind.CLIP_SET, {"index": 2, "normal": [0.0, 0.0, -1.0], "d": 0.05}, 12.5)


def test_clock_and_small_state_messages_are_pinned() -> None:
    """Ping, pong, clock share, snapshot request and digest encode to the documented bytes and decode back."""
    cases = [
        (p.ClockPing(3, 9, 1.0), PING_HEX, p.encode_clock, p.decode_clock),
        (p.ClockPong(5, 9, 1.0, 101.0005, 101.0006), PONG_HEX, p.encode_clock, p.decode_clock),
        (p.ClockShare(7, 0.00025, 2.0, 102.5), SHARE_HEX, p.encode_clock, p.decode_clock),
        (p.SnapshotRequest(4, 77), REQUEST_HEX, p.encode_state, p.decode_state),
        (p.StateDigest(4, 10, 2.0, bytes(range(32))), DIGEST_HEX, p.encode_state, p.decode_state),
    ]
    for message, hexstr, encode, decode in cases:
        assert encode(message).hex() == hexstr
        assert decode(bytes.fromhex(hexstr)) == message


def test_every_op_kind_round_trips() -> None:
    """One op of each kind survives encode/decode with its normalised payload."""
    payloads = {
        p.OpKind.STROKE_ADD: {"id": "s-1", "points": [[0, 1, 2], [0.12345678, 1, 2]], "width": 0.003},
        p.OpKind.STROKE_ERASE: {"id": "s-1"},
        p.OpKind.LANDMARK_PLACE: {"id": "lm:1", "position": [0.01, 0.02, 0.03], "label": "Bregma"},
        p.OpKind.LANDMARK_MOVE: {"id": "lm:1", "position": [0.0, 0.0, 0.1]},
        p.OpKind.LANDMARK_DELETE: {"id": "lm:1"},
        p.OpKind.CLIP_SET: {"index": 5, "normal": [1, 0, 0], "d": -0.2},
        p.OpKind.CLIP_CLEAR: {"index": 0},
        p.OpKind.TRANSFORM: {"position": [0, 1, -1], "orientation": [0, 0, 0, 1], "scale": 2},
        p.OpKind.SELECT: {"structure": "pial_left"},
        p.OpKind.MEASURE: {"id": "m:1", "a_mm": [0, 0, 0], "b_mm": [3, 4, 0.0001], "distance_mm": 5, "label": "AB"},
        p.OpKind.MEASURE_DELETE: {"id": "m:1"},
        p.OpKind.CLEAR_MARKS: {},
        p.OpKind.SET_ROLE: {"participant": 7, "role": "expert"},
    }
    assert set(payloads) == set(p.OpKind)
    for n, (kind, payload) in enumerate(payloads.items(), start=1):
        op = p.StateOp(9, n, 100 + n, kind, payload, 3.25)
        got = p.decode_state(p.encode_state(op))
        assert isinstance(got, p.StateOp)
        assert got.payload == p.validate_payload(kind, payload)
        assert (got.participant, got.seq, got.lamport, got.kind, got.sender_time) == (9, n, 100 + n, kind, 3.25)
    stroke = p.validate_payload(p.OpKind.STROKE_ADD, payloads[p.OpKind.STROKE_ADD])
    assert stroke["points"][1] == [0.1235, 1.0, 2.0]  # rounded to 0.1 mm
    assert stroke["color"] == list(p.DEFAULT_STROKE_COLOR)
    measure = p.validate_payload(p.OpKind.MEASURE, payloads[p.OpKind.MEASURE])
    assert measure["b_mm"] == [3.0, 4.0, 0.0] and measure["distance_mm"] == 5.0  # rounded to 1 um
    assert measure["geodesic_mm"] is None  # the default


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"id": "m", "a_mm": [0, 0, 0], "b_mm": [3, 4, 0], "distance_mm": 5.02}, "not its endpoints' distance"),
        ({"id": "m", "a_mm": [0, 0, 0], "b_mm": [3, 4, 0], "distance_mm": -5}, "distance_mm must be in"),
        ({"id": "m", "a_mm": [0, 0, 0], "b_mm": [10_001, 0, 0], "distance_mm": 10_001}, "b_mm must be in"),
        ({"id": "m", "a_mm": [0, 0], "b_mm": [3, 4, 0], "distance_mm": 5}, "list of 3"),
        ({"id": "m", "a_mm": [0, 0, math.nan], "b_mm": [3, 4, 0], "distance_mm": 5}, "a_mm must be in"),
        ({"id": "m", "a_mm": [0, 0, 0], "b_mm": [3, 4, 0], "distance_mm": 5, "geodesic_mm": 4.9}, "shorter"),
        ({"id": "m", "a_mm": [0, 0, 0], "b_mm": [3, 4, 0], "distance_mm": 5, "label": "x" * 129}, "label must be"),
        ({"id": "m m", "a_mm": [0, 0, 0], "b_mm": [3, 4, 0], "distance_mm": 5}, "id must be"),
        ({"a_mm": [0, 0, 0], "b_mm": [3, 4, 0], "distance_mm": 5}, "lacks"),
    ],
)
def test_bad_measurements_are_refused(payload: dict[str, Any], reason: str) -> None:
    """A measurement whose distance is not its endpoints', out of the twin's range, non-finite or with a
    bad id or label is refused like every other payload."""
    with pytest.raises(ProtocolError, match=reason):
        p.validate_payload(p.OpKind.MEASURE, payload)


REFUSAL_HEX = "05140300080007002a0000001e00" + b"observer may not move the twin".hex()


def test_refusal_is_pinned_and_routed_to_the_ops_sender() -> None:
    """A refusal (participant 3 refuses op 42 of participant 7, a twin move) encodes to the documented bytes,
    decodes back, and a relay reads its sender and the participant it is for from the header alone."""
    refusal = p.StateRefusal(3, 7, 42, p.OpKind.TRANSFORM, "observer may not move the twin")
    data = p.encode_state(refusal)
    assert data.hex() == REFUSAL_HEX and p.decode_state(data) == refusal
    assert p.message_type(data, "state") is p.MessageType.STATE_REFUSAL
    assert (p.sender(data), p.reply_to(data)) == (3, 7) and p.MessageType.STATE_REFUSAL in p.REPLY_TYPES


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (bytes.fromhex(REFUSAL_HEX)[:13], "truncated refusal"),
        (bytes.fromhex(REFUSAL_HEX) + b"x", "trailing"),
        (bytes.fromhex(REFUSAL_HEX[:10] + "01" + REFUSAL_HEX[12:]), "reserved refusal byte"),
        (bytes.fromhex(REFUSAL_HEX[:8] + "63" + REFUSAL_HEX[10:]), "unknown op kind 99"),
        (bytes.fromhex(REFUSAL_HEX[:16] + "00000000" + REFUSAL_HEX[24:]), "seq 0"),
        (bytes.fromhex(REFUSAL_HEX[:24] + "0100") + b"\n", "printable"),
        (bytes.fromhex(REFUSAL_HEX[:24] + "0200") + b"\xc3\x28", "not UTF-8"),
        (bytes.fromhex(REFUSAL_HEX[:24] + "0000"), "printable"),
    ],
)
def test_malformed_refusals_raise_protocol_error(data: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        p.decode_state(data)


def test_refusal_reasons_are_made_to_fit() -> None:
    """A long or unprintable reason is cut to MAX_REASON_BYTES of printable UTF-8 (never inside a character)."""
    long = p.refusal_reason("é" * 300 + "\n")
    assert len(long.encode("utf-8")) <= p.MAX_REASON_BYTES and long.isprintable()
    p.encode_state(p.StateRefusal(0, 1, 1, p.OpKind.SELECT, long))
    with pytest.raises(ProtocolError, match="exceeds"):
        p.encode_state(p.StateRefusal(0, 1, 1, p.OpKind.SELECT, "x" * 201))


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"participant": 0, "role": "expert"}, "participant must be"),
        ({"participant": 65536, "role": "expert"}, "participant must be"),
        ({"participant": True, "role": "expert"}, "participant must be"),
        ({"participant": 2, "role": "instructor"}, "role must be one of"),
        ({"participant": 2, "role": ["expert"]}, "role must be one of"),
        ({"participant": 2}, "lacks"),
    ],
)
def test_bad_set_role_payloads_are_refused(payload: dict[str, Any], reason: str) -> None:
    """A role op names a participant index (1..65535; 0 is the relay) and one of the room's four roles."""
    with pytest.raises(ProtocolError, match=reason):
        p.validate_payload(p.OpKind.SET_ROLE, payload)


def test_clear_marks_takes_no_keys() -> None:
    """Clearing one's marks names nothing: the sender is the op's participant."""
    assert p.validate_payload(p.OpKind.CLEAR_MARKS, {}) == {}
    with pytest.raises(ProtocolError, match="unknown keys"):
        p.validate_payload(p.OpKind.CLEAR_MARKS, {"participant": 3})


def test_validate_payload_is_idempotent() -> None:
    """Normalising an already normalised payload changes nothing (local and remote copies stay equal)."""
    rng = random.Random(1)
    for _ in range(200):
        raw = {"id": "a", "position": [rng.uniform(-5, 5) for _ in range(3)], "label": "x", "structure": None}
        once = p.validate_payload(p.OpKind.LANDMARK_PLACE, raw)
        assert p.validate_payload(p.OpKind.LANDMARK_PLACE, once) == once
        assert p.canonical_json(p.validate_payload(p.OpKind.LANDMARK_PLACE, once)) == p.canonical_json(once)


def test_sequence_comparison_across_wrap() -> None:
    """Serial-number arithmetic: 0 is newer than 2**32-1, and half the space apart is never newer."""
    assert p.seq_newer(1, 0) and not p.seq_newer(0, 1)
    assert p.seq_newer(0, 0xFFFFFFFF) and not p.seq_newer(0xFFFFFFFF, 0)
    assert p.seq_newer(5, 0xFFFFFFF0)
    assert not p.seq_newer(7, 7)
    assert not p.seq_newer(2**31, 0) and not p.seq_newer(0, 2**31)
    assert p.seq_next(0xFFFFFFFF) == 0


def test_newest_wins_gate_keeps_order_after_wrap() -> None:
    """The pose gate accepts increasing sequences through the wrap and drops late and duplicate records."""
    gate = p.NewestWins()
    accepted = [s for s in (0xFFFFFFFD, 0xFFFFFFFF, 0xFFFFFFFE, 0, 0, 2, 1, 3) if gate.accept(7, s)]
    assert accepted == [0xFFFFFFFD, 0xFFFFFFFF, 0, 2, 3]
    assert gate.stale == 3
    assert gate.accept(8, 1)  # participants are independent
    gate.forget(7)
    assert gate.accept(7, 1)


def test_snapshot_chunks_reassemble() -> None:
    """A 200 kB snapshot splits into 4 chunks that each fit the state channel and reassemble exactly."""
    body = bytes(random.Random(2).randrange(256) for _ in range(200_000))
    chunks = p.chunk_snapshot(6, 99, body)
    assert len(chunks) == 4
    assembler = p.SnapshotAssembler()
    out = None
    for chunk in chunks:
        wire = p.encode_state(chunk)
        assert len(wire) <= p.STATE_MAX_BYTES
        assert out is None
        decoded = p.decode_state(wire)
        assert isinstance(decoded, p.SnapshotChunk)
        out = assembler.add(decoded)
    assert out == body


def test_snapshot_assembler_rejects_gap_and_recovers() -> None:
    """A missing chunk raises ProtocolError; the next snapshot from chunk 0 still assembles."""
    body = b"x" * (2 * p.SNAPSHOT_CHUNK_BYTES + 10)
    chunks = p.chunk_snapshot(1, 5, body)
    assembler = p.SnapshotAssembler()
    assert assembler.add(chunks[0]) is None
    with pytest.raises(ProtocolError, match="out of sequence"):
        assembler.add(chunks[2])
    for chunk in chunks[:-1]:
        assert assembler.add(chunk) is None
    assert assembler.add(chunks[-1]) == body


@pytest.mark.parametrize(
    ("decoder", "data", "reason"),
    [
        (p.decode_pose, b"", "truncated"),
        (p.decode_pose, bytes.fromhex("01" + POSE_HEX[2:]), "unknown version 1"),
        (p.decode_pose, bytes.fromhex("02" + POSE_HEX[2:]), "unknown version 2"),
        (p.decode_pose, bytes.fromhex("03" + POSE_HEX[2:]), "unknown version 3"),
        (p.decode_pose, bytes.fromhex("0510" + POSE_HEX[4:]), "unknown message type 0x10"),
        (p.decode_pose, bytes.fromhex(POSE_HEX)[:-1], "truncated pose with 3 poses"),
        (p.decode_pose, bytes.fromhex(POSE_HEX) + b"\0", "trailing"),
        (p.decode_pose, bytes.fromhex(POSE_HEX) + bytes(20), "oversized"),
        (p.decode_pose, bytes.fromhex(POSE_HEX[:32] + "17" + POSE_HEX[34:]), "reserved presence"),
        (p.decode_pose, bytes.fromhex(POSE_HEX[:34] + "c7" + POSE_HEX[36:]), "absent pointer"),
        (p.decode_pose, bytes.fromhex(POSE_HEX[:36] + "0240" + POSE_HEX[40:]), "reserved button"),
        (p.decode_pose, bytes.fromhex(POSE_HEX[:-12] + "ff7fff7fff7f"), "not a unit quaternion"),
        (p.decode_pose, "text", "text message"),
        (p.split_pose_bundle, bytes.fromhex("05020000"), "empty pose bundle"),
        (p.split_pose_bundle, bytes.fromhex("05020101") + bytes.fromhex("38" + POSE_HEX), "reserved pose bundle byte"),
        (p.split_pose_bundle, bytes.fromhex("05020200") + bytes.fromhex("38" + POSE_HEX), "1 of 2 poses"),
        (p.split_pose_bundle, bytes.fromhex("05020100") + bytes.fromhex("39" + POSE_HEX), "overruns"),
        (p.split_pose_bundle, bytes.fromhex("05020100") + bytes.fromhex("13" + POSE_HEX), "19 bytes"),
        (p.split_pose_bundle, bytes.fromhex("05020100") + bytes.fromhex("38" + POSE_HEX) + b"\0", "1 trailing"),
        (p.split_pose_bundle, bytes.fromhex("05020100") + bytes(1200), "oversized"),
        (p.decode_state, bytes.fromhex(OP_HEX[:4] + "0e" + OP_HEX[6:]), "unknown op kind 14"),
        (p.decode_state, bytes.fromhex(OP_HEX[:6] + "01" + OP_HEX[8:]), "reserved op byte"),
        (p.decode_state, bytes.fromhex(OP_HEX)[:-1], "truncated op"),
        (p.decode_state, bytes.fromhex(OP_HEX)[:27], "truncated op"),
        (p.decode_state, bytes.fromhex(OP_HEX[:24] + "00000000" + OP_HEX[32:]), "lamport"),
        (p.decode_state, bytes.fromhex(OP_HEX[:16] + "00000000" + OP_HEX[24:]), "seq 0"),
        (p.decode_state, bytes(p.STATE_MAX_BYTES + 1), "oversized"),
        (p.decode_state, bytes.fromhex(PING_HEX), "unknown message type 0x20"),
        (p.decode_state, bytes.fromhex(REQUEST_HEX) + b"\0", "trailing"),
        (p.decode_clock, bytes.fromhex(PONG_HEX)[:31], "truncated pong"),
        (p.decode_clock, bytes.fromhex(PONG_HEX[:48] + "00" * 8), "t2 < t1"),
        (p.decode_clock, bytes.fromhex(POSE_HEX)[:16], "unknown message type 0x01"),
    ],
)
def test_malformed_messages_raise_protocol_error(decoder: Callable[[Any], object], data: bytes, reason: str) -> None:
    """Each malformed message raises ProtocolError with a one-line reason naming the problem."""
    with pytest.raises(ProtocolError, match=reason) as info:
        decoder(data)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, NetError)


def _op_bytes(payload_json: bytes, kind: p.OpKind = p.OpKind.CLIP_SET) -> bytes:
    header = p.OP_HEADER.pack(p.PROTOCOL_VERSION, p.MessageType.STATE_OP, kind, 0, 3, len(payload_json), 1, 1, 0)
    return header + payload_json


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"index":2,"normal":[0,0,NaN],"d":0}', "not valid JSON"),
        (b'{"index":2,"normal":[0,0,1e999],"d":0}', "not valid JSON"),
        (b'{"index":2,"normal":[0,0,-Infinity],"d":0}', "not valid JSON"),
        (b'{"index":2,"index":3,"normal":[0,0,1],"d":0}', "duplicate key"),
        (b'{"index":6,"normal":[0,0,1],"d":0}', "index must be"),
        (b'{"index":true,"normal":[0,0,1],"d":0}', "index must be"),
        (b'{"index":1,"normal":[0,0,0],"d":0}', "normal is zero"),
        (b'{"index":1,"normal":[0,0,1],"d":0,"x":1}', "unknown keys"),
        (b'{"index":1,"normal":[0,0,1]}', "lacks"),
        (b'[1,2]', "must be an object"),
        (b'\xff\xfe', "not valid JSON"),
        (b"[" * 50_000, "not valid JSON"),
    ],
)
def test_bad_op_payloads_raise_protocol_error(payload: bytes, reason: str) -> None:
    """NaN/inf, duplicate keys, out-of-range counts, unknown keys, bad UTF-8 and deep nesting are rejected."""
    with pytest.raises(ProtocolError, match=reason):
        p.decode_state(_op_bytes(payload))


def test_payload_limits() -> None:
    """Strokes above 1,024 points, ids with spaces and transforms that are not rotations are rejected."""
    point = [0.0, 0.0, 0.0]
    with pytest.raises(ProtocolError, match=r"1\.\.1024"):
        p.validate_payload(p.OpKind.STROKE_ADD, {"id": "s", "points": [point] * 1025})
    assert len(p.validate_payload(p.OpKind.STROKE_ADD, {"id": "s", "points": [point] * 1024})["points"]) == 1024
    with pytest.raises(ProtocolError, match="id must be"):
        p.validate_payload(p.OpKind.STROKE_ERASE, {"id": "a b"})
    with pytest.raises(ProtocolError, match="unit quaternion"):
        p.validate_payload(p.OpKind.TRANSFORM, {"position": [0, 0, 0], "orientation": [0, 0, 0, 0.5]})
    with pytest.raises(ProtocolError, match="unknown op kind"):
        p.validate_payload(42, {})


def test_largest_stroke_fits_one_message() -> None:
    """A 1,024-point stroke with full-precision coordinates fits in one state message."""
    rng = random.Random(3)
    points = [[rng.uniform(-99.9, -10.0) for _ in range(3)] for _ in range(p.MAX_STROKE_POINTS)]
    op = p.StateOp(65535, 2**32 - 1, p.MAX_LAMPORT, p.OpKind.STROKE_ADD, {"id": "s" * 64, "points": points}, -1.0)
    data = p.encode_state(op)
    assert len(data) <= p.STATE_MAX_BYTES
    assert p.decode_state(data).payload == p.validate_payload(p.OpKind.STROKE_ADD, op.payload)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (p.PoseRecord(1, 1, math.nan), "sender_time is not a finite"),
        (p.PoseRecord(1, 1, 0.0, head=p.WirePose((0.0, math.inf, 0.0))), "not finite"),
        (p.PoseRecord(1, 1, 0.0, head=p.WirePose((3.3, 0.0, 0.0))), "beyond"),
        (p.PoseRecord(1, 1, 0.0, left=p.WirePose(orientation=(0.0, 0.0, 0.0, 0.0))), "zero quaternion"),
        (p.PoseRecord(1, 1, 0.0, left=p.WirePose(orientation=(0.0, math.nan, 0.0, 1.0))), "4 finite"),
        (p.PoseRecord(70000, 1, 0.0), "participant"),
        (p.PoseRecord(1, -1, 0.0), "seq"),
        (p.PoseRecord(1, 1, 0.0, buttons=p.Buttons(0x40)), "reserved button"),
    ],
)
def test_encoder_rejects_invalid_pose(record: p.PoseRecord, reason: str) -> None:
    """Encoding refuses what no decoder would accept, with a ProtocolError naming the field."""
    with pytest.raises(ProtocolError, match=reason):
        p.encode_pose(record)


def test_encoder_rejects_invalid_state_and_clock_messages() -> None:
    """Lamport 0, seq 0, a short digest, an empty snapshot and a NaN ping time are refused."""
    op = {"structure": None}
    with pytest.raises(ProtocolError, match="lamport"):
        p.encode_state(p.StateOp(1, 1, 0, p.OpKind.SELECT, op, 0.0))
    with pytest.raises(ProtocolError, match="seq starts at 1"):
        p.encode_state(p.StateOp(1, 0, 1, p.OpKind.SELECT, op, 0.0))
    with pytest.raises(ProtocolError, match="32 bytes"):
        p.encode_state(p.StateDigest(1, 1, 0.0, b"short"))
    with pytest.raises(ProtocolError, match="snapshot of 0 bytes"):
        p.chunk_snapshot(1, 1, b"")
    with pytest.raises(ProtocolError, match="t0"):
        p.encode_clock(p.ClockPing(1, 1, math.nan))
    with pytest.raises(ProtocolError, match="rtt"):
        p.encode_clock(p.ClockShare(1, -0.001, 1.0, 2.0))
    with pytest.raises(ProtocolError, match="relay_time"):
        p.encode_clock(p.ClockShare(1, 0.001, 1.0, math.inf))


def test_channel_specs() -> None:
    """Pose and clock channels are unordered without retransmits; state is ordered and reliable."""
    assert p.CHANNELS["pose"] == p.ChannelSpec("pose", False, 0, 1200)  # a relay's pose bundle
    assert p.CHANNELS["state"] == p.ChannelSpec("state", True, None, 65536)
    assert p.CHANNELS["clock"] == p.ChannelSpec("clock", False, 0, 32)


# A bundle of the example pose and a buttons-only pose of participant 9: header, then length-prefixed messages.
BUNDLE_HEX = "05020200" + "38" + POSE_HEX + "14" + "0501090001000000a0860100000000000000" + "0000"


def test_pose_bundle_is_pinned_byte_for_byte(pose_record: p.PoseRecord) -> None:
    """The documented bundle packs two pose messages unchanged, each behind its length byte."""
    bare = p.encode_pose(p.PoseRecord(9, 1, 0.1))
    assert len(bare) == 20
    data = p.encode_pose_bundle([p.encode_pose(pose_record), bare])
    assert data.hex() == BUNDLE_HEX
    assert p.is_pose_bundle(data)
    carried = [p.decode_pose(m) for m in p.split_pose_bundle(data)]
    assert carried == [p.decode_pose(bytes.fromhex(POSE_HEX)), p.PoseRecord(9, 1, 0.1)]


def test_pose_bundles_split_at_the_size_limit() -> None:
    """Forty full poses pack into bundles of at most 1,200 bytes that give the poses back in order."""
    pose = p.WirePose((0.0, 1.7, 0.0))
    messages = [p.encode_pose(p.PoseRecord(i, 1, 0.0, head=pose, left=pose, right=pose, pointer=pose)) for i in range(40)]
    bundles = p.bundle_framed_poses([p.frame_pose(m) for m in messages])
    assert len(bundles) == 3 and all(len(b) <= p.POSE_BUNDLE_MAX_BYTES for b in bundles)
    assert [m for b in bundles for m in p.split_pose_bundle(b)] == messages
    assert p.bundle_framed_poses([]) == []


def test_pose_bundles_can_be_kept_within_a_smaller_limit() -> None:
    """The relay keeps bundles within one aiortc chunk (1,160 bytes): twenty full poses (1,384 bytes
    in one bundle) go in two, each within the limit; a limit above the protocol's changes nothing."""
    pose = p.WirePose((0.0, 1.7, 0.0))
    messages = [p.encode_pose(p.PoseRecord(i, 1, 0.0, head=pose, left=pose, right=pose, pointer=pose)) for i in range(20)]
    framed = [p.frame_pose(m) for m in messages]
    bundles = p.bundle_framed_poses(framed, 1160)
    assert len(bundles) == 2 and all(len(b) <= 1160 for b in bundles)
    assert [m for b in bundles for m in p.split_pose_bundle(b)] == messages
    assert p.bundle_framed_poses(framed, 10_000) == p.bundle_framed_poses(framed)


def test_pose_bundle_refuses_what_is_not_a_pose() -> None:
    """Only pose messages go in a bundle: an op, an old-version pose or too many poses are refused."""
    with pytest.raises(ProtocolError, match="only pose messages"):
        p.encode_pose_bundle([bytes.fromhex(OP_HEX)[:40]])
    with pytest.raises(ProtocolError, match="only pose messages"):
        p.encode_pose_bundle([bytes.fromhex("01" + POSE_HEX[2:])])
    with pytest.raises(ProtocolError, match="1 to 255"):
        p.encode_pose_bundle([])
    with pytest.raises(ProtocolError, match="at most 1200"):
        p.encode_pose_bundle([bytes.fromhex(POSE_HEX)] * 30)


def test_a_bad_pose_in_a_bundle_costs_only_itself() -> None:
    """The framing holds even when one carried pose is broken: the others still decode."""
    good = bytes.fromhex(POSE_HEX)
    broken = bytes.fromhex(POSE_HEX[:32] + "17" + POSE_HEX[34:])  # reserved presence bit
    messages = p.split_pose_bundle(p.encode_pose_bundle([good, broken, good]))
    decoded = []
    for message in messages:
        try:
            decoded.append(p.decode_pose(message))
        except ProtocolError:
            decoded.append(None)
    assert decoded[0] is not None and decoded[1] is None and decoded[2] == decoded[0]


def test_times_far_from_zero_come_back_to_the_same_microsecond() -> None:
    """A time read from the wire re-encodes to the same int64 microseconds, past 2^32 s too."""
    for us in (4294967296000009, 2**52 + 3, -(2**51) - 7, 123456789):
        ping = bytes.fromhex("0520030009000000") + us.to_bytes(8, "little", signed=True)
        assert p.encode_clock(p.decode_clock(ping)) == ping
