"""Fuzzing: mutated messages through every wire decoder and the signaling message parser.

Each run feeds 5,000 mutated messages to each decoder (pose, pose bundle, state, clock, each of them
fed the others' messages, the signaling parser, the op payload schema, the snapshot assembler, and the
pose key a receiver reads before it decodes), seeded so that a failure reproduces. Every message must either
decode to a valid message (one that encodes again and decodes to the same value) or raise the
documented error (``ProtocolError``, ``SignalingMessageError``); any other exception fails the test.
"""

from __future__ import annotations

import json
import math
import random
import struct
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from net import protocol as p
from net.errors import ProtocolError
from net.signaling_messages import SignalingMessageError, parse_client_message

PER_DECODER = 5_000
SEED = 20261126


def _pose_seeds() -> list[bytes]:
    half = math.sqrt(0.5)
    records = [
        p.PoseRecord(1, 0, 0.0),
        p.PoseRecord(7, 0xFFFFFFFE, 12.345678, head=p.WirePose((0.1, 1.6, -0.25)), buttons=p.Buttons.RIGHT_TRIGGER),
        p.PoseRecord(
            65535, 9, 1e6,
            head=p.WirePose((0.0, 1.7, 0.0), (0.0, half, 0.0, half)),
            left=p.WirePose((-0.2, 1.1, -0.4), (0.5, -0.5, 0.5, 0.5)),
            right=p.WirePose((0.2, 1.1, -0.4), (0.0, 0.0, 1.0, 0.0)),
            pointer=p.WirePose((3.2, -3.2, 0.0), (half, 0.0, 0.0, half)),
        ),
    ]
    return [p.encode_pose(r) for r in records]


def _bundle_seeds() -> list[bytes]:
    poses = _pose_seeds()
    return [p.encode_pose_bundle(poses), p.encode_pose_bundle(poses[:1]), p.encode_pose_bundle(poses[::-1] * 4)]


def _split_bundle(data: bytes) -> tuple[bytes, ...]:
    """A bundle whose framing and every carried pose are valid (what a receiver applies in full)."""
    messages = tuple(p.split_pose_bundle(data))
    for message in messages:
        p.decode_pose(message)
    return messages


def _state_seeds() -> list[bytes]:
    ops = [
        (p.OpKind.STROKE_ADD, {"id": "s1", "points": [[0, 1, 2], [0.1, 1.1, 2.1]], "color": [1, 0, 0, 1], "width": 0.003}),
        (p.OpKind.STROKE_ERASE, {"id": "s1"}),
        (p.OpKind.LANDMARK_PLACE, {"id": "lm-1", "position": [0.01, 0.02, 0.03], "label": "tip", "structure": None}),
        (p.OpKind.LANDMARK_MOVE, {"id": "lm-1", "position": [0, 0, 0]}),
        (p.OpKind.LANDMARK_DELETE, {"id": "lm-1"}),
        (p.OpKind.CLIP_SET, {"index": 2, "normal": [0, 0, -1], "d": 0.05}),
        (p.OpKind.CLIP_CLEAR, {"index": 5}),
        (p.OpKind.TRANSFORM, {"position": [0, 1, 0], "orientation": [0, 0, 0, 1], "scale": 2}),
        (p.OpKind.SELECT, {"structure": "hippocampus"}),
        (p.OpKind.MEASURE, {"id": "m-1", "a_mm": [1, 2, 3], "b_mm": [4, 6, 3], "distance_mm": 5, "label": "AB",
                            "geodesic_mm": 6.5}),
        (p.OpKind.MEASURE_DELETE, {"id": "m-1"}),
        (p.OpKind.CLEAR_MARKS, {}),
    ]
    out = [p.encode_state(p.StateOp(3, i + 1, 100 + i, kind, payload, 1.5 * i)) for i, (kind, payload) in enumerate(ops)]
    out.append(p.encode_state(p.SnapshotRequest(4, 77)))
    out.extend(p.encode_state(c) for c in p.chunk_snapshot(2, 5, b'{"strokes":{},"landmarks":{}}'))
    out.append(p.encode_state(p.StateDigest(4, 10, 2.0, bytes(range(32)))))
    return out


def _clock_seeds() -> list[bytes]:
    return [
        p.encode_clock(p.ClockPing(3, 9, 1.0)),
        p.encode_clock(p.ClockPong(5, 9, 1.0, 101.0, 101.0002)),
        p.encode_clock(p.ClockShare(7, 0.00025, 2.0, 102.5)),
    ]


def _signaling_seeds() -> list[str]:
    return [
        json.dumps({"type": "signal", "to": "bob", "data": {"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"}}),
        json.dumps({"type": "signal", "to": "relay", "data": {"type": "answer", "sdp": "v=0\r\n"}}),
        json.dumps({"type": "stats", "report": {"links": {"bob": {"p50_ms": 0.4, "p99_ms": 1.2}}, "n": [1, 2.5, None, True]}}),
    ]


def mutate(data: bytes, rng: random.Random, seeds: list[bytes]) -> bytes:
    """One to four random edits: bit flips, byte changes, inserts, deletes, truncation, extension,
    splices with another seed, and rewritten integer fields (lengths, counts, kinds)."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(9)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[pos % len(buf)] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[pos % len(buf)] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif op == 2:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 3 and buf:
            del buf[pos : pos + rng.randint(1, 8)]
        elif op == 4:
            del buf[pos:]
        elif op == 5:
            buf.extend(bytes(rng.randrange(256) for _ in range(rng.choice((1, 2, 16, 300)))))
        elif op == 6:
            other = rng.choice(seeds)
            cut = rng.randrange(len(other) + 1)
            buf[pos:] = other[cut:]
        elif op == 7 and len(buf) >= 4:
            at = rng.randrange(len(buf) - 3)
            struct.pack_into("<I", buf, at, rng.choice((0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, rng.getrandbits(32))))
        elif op == 8 and len(buf) >= 2:
            at = rng.randrange(len(buf) - 1)
            struct.pack_into("<H", buf, at, rng.choice((0, 1, 0xFFFF, rng.getrandbits(16))))
    # Half the mutated state ops get a payload length that fits again, so that the mutations reach
    # the JSON parser and the payload schema instead of stopping at the length check.
    if len(buf) >= p.OP_HEADER.size and buf[1] == p.MessageType.STATE_OP and rng.random() < 0.5:
        struct.pack_into("<H", buf, 6, min(len(buf) - p.OP_HEADER.size, 0xFFFF))
    return bytes(buf)


def _check_wire(decoder: Callable[[bytes], Any], encoder: Callable[[Any], bytes], data: bytes) -> str:
    """Decode ``data``: 'error' for a ProtocolError, 'ok' for a message that re-encodes to itself."""
    try:
        message = decoder(data)
    except ProtocolError as exc:
        assert str(exc) and "\n" not in str(exc), f"error message must be one line: {exc!r}"
        return "error"
    again = decoder(encoder(message))
    assert _same(again, message), f"{data.hex()} decoded to {message!r}, which does not survive a round trip"
    return "ok"


def _same(a: Any, b: Any) -> bool:
    """Equal messages; for poses, orientations may differ by sign and quantisation (an encoder is free
    to send any of the three smallest components, the decoder does not insist on the canonical one)."""
    if not isinstance(a, p.PoseRecord):
        return a == b
    for slot in p.POSE_SLOTS:
        pa, pb = getattr(a, slot), getattr(b, slot)
        if (pa is None) != (pb is None):
            return False
        if pa is not None:
            dot = abs(sum(x * y for x, y in zip(pa.orientation, pb.orientation, strict=True)))
            if pa.position != pb.position or dot < 1 - 1e-8:
                return False
    return (a.participant, a.seq, a.sender_time, a.buttons) == (b.participant, b.seq, b.sender_time, b.buttons)


WIRE = {
    "pose": (p.decode_pose, p.encode_pose, _pose_seeds),
    "pose_bundle": (_split_bundle, lambda b: p.encode_pose_bundle(list(b)), _bundle_seeds),
    "state": (p.decode_state, p.encode_state, _state_seeds),
    "clock": (p.decode_clock, p.encode_clock, _clock_seeds),
}


@pytest.mark.parametrize("channel", list(WIRE))
def test_wire_decoder_survives_mutations(channel: str) -> None:
    """5,000 mutated messages: each decodes to a message that round-trips, or raises ProtocolError."""
    decoder, encoder, make_seeds = WIRE[channel]
    seeds = make_seeds()
    for seed in seeds:  # the seeds themselves are valid
        assert _check_wire(decoder, encoder, seed) == "ok"
    rng = random.Random(f"{SEED}-{channel}")
    outcomes: Counter[str] = Counter()
    for _ in range(PER_DECODER):
        outcomes[_check_wire(decoder, encoder, mutate(rng.choice(seeds), rng, seeds))] += 1
    # The mutations reach both sides: some survive as valid messages, most are refused.
    assert outcomes["ok"] > 0 and outcomes["error"] > PER_DECODER // 2, outcomes


def test_pose_key_refuses_exactly_what_decode_pose_refuses() -> None:
    """A receiver applies a pose after ``pose_key`` alone and decodes it later, when someone looks:
    over 5,000 mutated poses, ``pose_key`` raises when ``decode_pose`` raises, with the same message,
    and otherwise gives the decoded record's participant, sequence and sender time."""
    seeds = _pose_seeds()
    rng = random.Random(f"{SEED}-pose-key")
    outcomes: Counter[str] = Counter()
    for _ in range(PER_DECODER):
        data = mutate(rng.choice(seeds), rng, seeds)
        try:
            record = p.decode_pose(data)
        except ProtocolError as exc:
            with pytest.raises(ProtocolError) as refused:
                p.pose_key(data)
            assert str(refused.value) == str(exc)
            outcomes["error"] += 1
            continue
        assert p.pose_key(data) == (record.participant, record.seq, record.sender_time)
        outcomes["ok"] += 1
    assert outcomes["ok"] > 0 and outcomes["error"] > PER_DECODER // 2, outcomes


def test_decoders_survive_each_others_messages() -> None:
    """Messages of every channel (mutated) fed to every decoder, and non-bytes: a valid message that
    round-trips or ProtocolError, never anything else."""
    seeds = _pose_seeds() + _bundle_seeds() + _state_seeds() + _clock_seeds()
    rng = random.Random(f"{SEED}-dispatch")
    outcomes: Counter[str] = Counter()
    for i in range(PER_DECODER):
        decoder, encoder, _ = WIRE[rng.choice(list(WIRE))]
        data: Any = mutate(rng.choice(seeds), rng, seeds)
        if i % 50 == 0:
            data = rng.choice((data.decode("latin-1"), None, 12, memoryview(data), bytearray(data)))
        try:
            message = decoder(data)
        except ProtocolError:
            outcomes["error"] += 1
            continue
        assert _same(decoder(encoder(message)), message)
        outcomes["ok"] += 1
    assert outcomes["ok"] > 0 and outcomes["error"] > 0, outcomes


def test_signaling_parser_survives_mutations() -> None:
    """5,000 mutated client messages (bytes decoded as the WebSocket layer would, or with surrogate
    escapes): each parses to a schema-valid message or raises SignalingMessageError with a known counter."""
    seeds = [s.encode() for s in _signaling_seeds()]
    rng = random.Random(f"{SEED}-signaling")
    outcomes: Counter[str] = Counter()
    counters = {"malformed", "oversized", "unknown_type", "spoofed"}
    for i in range(PER_DECODER):
        raw = mutate(rng.choice(seeds), rng, seeds)
        text = raw.decode("utf-8", errors="surrogateescape" if i % 7 == 0 else "replace")
        try:
            message = parse_client_message(text, max_message_bytes=1024, max_report_bytes=256)
        except SignalingMessageError as exc:
            assert exc.counter in counters and exc.reason and "\n" not in exc.reason
            outcomes[exc.counter] += 1
            continue
        # A message that passes is exactly one of the two documented shapes and can be forwarded.
        if message["type"] == "signal":
            assert set(message) == {"type", "to", "data"} and isinstance(message["to"], str)
            assert isinstance(message["data"], dict)
        else:
            assert set(message) == {"type", "report"} and isinstance(message["report"], dict)
        json.dumps(message, allow_nan=False)
        outcomes["ok"] += 1
    assert outcomes["ok"] > 0 and outcomes["malformed"] > 0, outcomes


def test_found_by_fuzzing_int16_minimum_position_is_refused() -> None:
    """A position of -32768 steps (-3.2768 m) fits an int16 but no encoder sends it (the range is
    +-3.2767 m): the decoder refuses it instead of returning a record that cannot be encoded again."""
    good = bytearray(p.encode_pose(p.PoseRecord(1, 1, 1.0, head=p.WirePose((0.0, 1.7, 0.0)))))
    struct.pack_into("<h", good, p.POSE_HEADER.size + 4, -32768)
    with pytest.raises(ProtocolError, match="beyond"):
        p.decode_pose(bytes(good))


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value leaning towards what op payloads hold (short ids, numbers, small vectors)."""
    choice = rng.randrange(10 if depth < 3 else 6)
    if choice == 0:
        return rng.choice((None, True, False))
    if choice == 1:
        return rng.choice((0, 1, -1, 2, 5, 6, 2**53, -(2**63), rng.randint(-10, 10)))
    if choice == 2:
        return rng.choice((0.0, -0.0, 1e-9, 0.05, 99.99, 100.0001, 1e308, rng.uniform(-2, 2)))
    if choice in (3, 4):
        return rng.choice(("", "a", "lm-1", "s1", "x" * 65, "bad id", "tip\n", "é", "\x00", "hippocampus"))
    if choice == 5:
        return [rng.uniform(-1, 1) for _ in range(rng.choice((0, 2, 3, 4, 5)))]
    if choice in (6, 7):
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ("id", "points", "color", "width", "position", "label", "structure", "index", "normal", "d",
            "orientation", "scale", "a_mm", "b_mm", "distance_mm", "geodesic_mm", "extra")  # fmt: skip
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def test_payload_validation_is_total_and_idempotent() -> None:
    """5,000 random payloads for random op kinds: each is refused with ProtocolError or normalised to a
    payload that validates to itself and survives the wire unchanged."""
    rng = random.Random(f"{SEED}-payload")
    outcomes: Counter[str] = Counter()
    seeds = [p.decode_state(s) for s in _state_seeds()]
    ops = [s for s in seeds if isinstance(s, p.StateOp)]
    for i in range(PER_DECODER):
        kind: Any = rng.choice(list(p.OpKind)) if i % 10 else rng.choice((0, 99, -1, "stroke", None))
        payload: Any
        if i % 3 == 0:  # a valid payload with one key replaced, removed or added
            op = rng.choice(ops)
            kind, payload = op.kind, dict(op.payload)
            key = rng.choice([*payload, "extra"])
            if rng.random() < 0.2:
                payload.pop(key, None)
            else:
                payload[key] = _random_json(rng)
        elif i % 3 == 1:  # a valid payload with its numbers scaled: in range or not
            op = rng.choice(ops)
            factor = rng.choice((0.0, -1.0, 0.5, 3.0, 1e3, rng.uniform(-2, 2)))
            kind, payload = op.kind, json.loads(
                json.dumps(op.payload),
                parse_float=lambda t, f=factor: float(t) * f,
                parse_int=lambda t, f=factor: int(t) * int(f),
            )
        else:
            payload = _random_json(rng)
        try:
            normal = p.validate_payload(kind, payload)
        except ProtocolError:
            outcomes["error"] += 1
            continue
        assert p.validate_payload(kind, normal) == normal
        op = p.StateOp(1, 1, 1, p.OpKind(kind), normal, 0.0)
        assert p.decode_state(p.encode_state(op)) == op
        outcomes["ok"] += 1
    assert outcomes["ok"] > 100 and outcomes["error"] > 100, outcomes


def test_snapshot_assembler_survives_shuffled_and_mutated_chunks() -> None:
    """Random runs of chunks from two snapshots, dropped, repeated, reordered or mutated: the assembler
    returns None, a body whose length is what was announced, or raises ProtocolError; a clean run after
    any of that still reassembles the snapshot exactly."""
    rng = random.Random(f"{SEED}-snapshot")
    bodies = [bytes(rng.randrange(256) for _ in range(p.SNAPSHOT_CHUNK_BYTES * 2 + 17)), b'{"a":1}']
    chunk_sets = [p.chunk_snapshot(1, 5, bodies[0]), p.chunk_snapshot(2, 6, bodies[1])]
    wires = [p.encode_state(c) for chunks in chunk_sets for c in chunks]
    assembler = p.SnapshotAssembler()
    outcomes: Counter[str] = Counter()
    for _ in range(PER_DECODER):
        data = rng.choice(wires)
        if rng.random() < 0.3:
            data = mutate(data, rng, wires)
        try:
            chunk = p.decode_state(data)
            if not isinstance(chunk, p.SnapshotChunk):
                outcomes["other"] += 1
                continue
            body = assembler.add(chunk)
        except ProtocolError:
            outcomes["error"] += 1
            continue
        if body is None:
            outcomes["partial"] += 1
        else:
            assert len(body) == chunk.total
            outcomes["body"] += 1
    assert outcomes["error"] > 0 and outcomes["partial"] > 0 and outcomes["body"] > 0, outcomes
    for chunks, body in zip(chunk_sets, bodies, strict=True):
        results = [assembler.add(p.decode_state(p.encode_state(c))) for c in chunks]  # type: ignore[arg-type]
        assert results[:-1] == [None] * (len(chunks) - 1) and results[-1] == body
