"""Write docs/protocol-vectors.json: for every message type and op kind, its bytes in hex beside its value.

Another implementation (the browser client) tests itself against the file: each vector's ``hex``
decodes to its ``value``, and its ``value`` encodes to exactly its ``hex``. ``tests/net/test_vectors.py``
holds medverse to the same, and checks that this script, run again, writes the file unchanged.

Values are JSON: times in seconds, positions in metres (pose) or as the op payload has them, byte
strings (a bundle's messages, a snapshot chunk's data, a digest) in hex, enums by name. A pose's
value is what the decoder gives back (quantised), so that it encodes to the same bytes.

Run: ``.venv/bin/python tests/net/make_vectors.py`` (from the repository root).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from net import protocol as p

PATH = Path(__file__).resolve().parents[2] / "docs" / "protocol-vectors.json"

Message = p.PoseRecord | p.StateMessage | p.ClockMessage

_HALF = math.sqrt(0.5)
# Orientations without two equally large components: a quantised tie may come back with the other one
# largest, and the vectors pin one encoding (docs/protocol.md's worked example has ties; it is pinned in
# tests/net/test_protocol.py).
_POSE = p.PoseRecord(
    participant=7,
    seq=0xFFFFFFFE,
    sender_time=12.345678,
    head=p.WirePose((0.1, 1.6, -0.25), (0.0, 0.0, 0.0, 1.0)),
    left=p.WirePose((-0.2, 1.1, -0.4), (0.0, 0.5, 0.0, math.sqrt(0.75))),  # 60 degrees about +Y
    right=p.WirePose((0.2, 1.1, -0.4), (0.7, -0.3, 0.5, 0.4)),  # normalised by the encoder
    buttons=p.Buttons.RIGHT_TRIGGER | p.Buttons.LEFT_GRIP,
)
_POINTER = p.PoseRecord(3, 1, 0.5, pointer=p.WirePose((0.0, 1.2, -0.3), (math.sin(math.pi / 8), 0.0, 0.0, math.cos(math.pi / 8))))
_PRESENTING = p.PoseRecord(4, 2, 0.75, head=p.WirePose((0.0, 1.7, 0.4), (0.0, 0.0, 0.0, 1.0)), buttons=p.Buttons.PRESENTING)
_BARE = p.PoseRecord(9, 1, 0.1)

#: One op per kind: (kind, payload).
OPS: list[tuple[p.OpKind, dict[str, Any]]] = [
    (p.OpKind.STROKE_ADD, {"id": "3:1", "points": [[0.0, 1.2, -0.1], [0.01, 1.21, -0.1]], "color": [1, 0, 0, 1],
                           "width": 0.003}),
    (p.OpKind.STROKE_ERASE, {"id": "3:1"}),
    (p.OpKind.LANDMARK_PLACE, {"id": "3:2", "position": [0.012, 1.25, -0.03], "label": "nasion", "structure": "skull"}),
    (p.OpKind.LANDMARK_MOVE, {"id": "3:2", "position": [0.013, 1.25, -0.03]}),
    (p.OpKind.LANDMARK_DELETE, {"id": "3:2"}),
    (p.OpKind.CLIP_SET, {"index": 2, "normal": [0, 0, -1], "d": 0.05}),
    (p.OpKind.CLIP_CLEAR, {"index": 2}),
    (p.OpKind.TRANSFORM, {"position": [0.0, 1.0, -0.5], "orientation": [0.0, _HALF, 0.0, _HALF], "scale": 1.5}),
    (p.OpKind.SELECT, {"structure": "hippocampus_left"}),
    (p.OpKind.MEASURE, {"id": "3:3", "a_mm": [10.0, -20.5, 33.25], "b_mm": [40.0, 19.5, 33.25], "distance_mm": 50.0,
                        "label": "A-B", "geodesic_mm": 61.234}),
    (p.OpKind.MEASURE_DELETE, {"id": "3:3"}),
    (p.OpKind.CLEAR_MARKS, {}),
    (p.OpKind.SET_ROLE, {"participant": 5, "role": "expert"}),
]


def messages() -> list[tuple[str, str, Message | tuple[bytes, ...]]]:
    """(name, channel, message) of every vector; a pose bundle is the tuple of the messages it carries."""
    out: list[tuple[str, str, Message | tuple[bytes, ...]]] = [
        ("pose: head and two hands, two buttons, sequence about to wrap", "pose", _POSE),
        ("pose: pointer only", "pose", _POINTER),
        ("pose: nothing tracked", "pose", _BARE),
        ("pose: head only, presenting (buttons bit 15)", "pose", _PRESENTING),
        ("pose bundle: two senders", "pose", (p.encode_pose(_POSE), p.encode_pose(_BARE))),
    ]
    for seq, (kind, payload) in enumerate(OPS, start=1):
        op = p.StateOp(3, seq, 1000 + seq, kind, payload, 12.5 + seq / 8)
        out.append((f"state op: {kind.name}", "state", op))
    out += [
        ("snapshot request: participant 4 asks participant 2", "state", p.SnapshotRequest(4, p.routed_id(4, 2))),
        ("snapshot chunk: the only chunk, for participant 4", "state",
         p.chunk_snapshot(2, p.routed_id(4, 2), b'{"v":3}')[0]),
        ("state digest", "state", p.StateDigest(4, 10, 2.0, bytes(range(32)))),
        ("state refusal: the relay refuses op 42 of participant 7, a twin move", "state",
         p.StateRefusal(0, 7, 42, p.OpKind.TRANSFORM, "observer may not move the twin")),
        ("clock ping", "clock", p.ClockPing(3, p.routed_id(3, 9), 1.0)),
        ("clock pong", "clock", p.ClockPong(5, p.routed_id(3, 9), 1.0, 101.0012, 101.0013)),
        ("clock share", "clock", p.ClockShare(7, 0.00025, 2.0, 101.5)),
    ]
    return out


def encode(channel: str, message: Message | tuple[bytes, ...]) -> bytes:
    """The bytes of ``message`` on ``channel``."""
    if isinstance(message, tuple):
        return p.encode_pose_bundle(list(message))
    if isinstance(message, p.PoseRecord):
        return p.encode_pose(message)
    if channel == "clock":
        return p.encode_clock(message)  # type: ignore[arg-type]
    return p.encode_state(message)  # type: ignore[arg-type]


def decode(channel: str, data: bytes) -> Message | tuple[bytes, ...]:
    """What a receiver reads from ``data`` on ``channel``."""
    if channel == "pose":
        return tuple(p.split_pose_bundle(data)) if p.is_pose_bundle(data) else p.decode_pose(data)
    return p.decode_clock(data) if channel == "clock" else p.decode_state(data)


def _wire_pose(pose: p.WirePose | None) -> dict[str, list[float]] | None:
    return None if pose is None else {"position": list(pose.position), "orientation": list(pose.orientation)}


def to_value(message: Message | tuple[bytes, ...]) -> dict[str, Any]:
    """A message as JSON data (the ``value`` of a vector)."""
    if isinstance(message, tuple):
        return {"messages": [m.hex() for m in message]}
    if isinstance(message, p.PoseRecord):
        return {"participant": message.participant, "seq": message.seq, "sender_time": message.sender_time,
                "buttons": int(message.buttons), **{slot: _wire_pose(getattr(message, slot)) for slot in p.POSE_SLOTS}}
    if isinstance(message, p.StateOp):
        return {"participant": message.participant, "seq": message.seq, "lamport": message.lamport,
                "kind": message.kind.name, "payload": dict(message.payload), "sender_time": message.sender_time}
    if isinstance(message, p.SnapshotChunk):
        return {"participant": message.participant, "snapshot_id": message.snapshot_id, "index": message.index,
                "count": message.count, "total": message.total, "data": bytes(message.data).hex()}
    if isinstance(message, p.StateDigest):
        return {"participant": message.participant, "op_count": message.op_count, "sender_time": message.sender_time,
                "digest": message.digest.hex()}
    if isinstance(message, p.StateRefusal):
        return {"participant": message.participant, "to": message.to, "seq": message.seq, "kind": message.kind.name,
                "reason": message.reason}
    return {key: getattr(message, key) for key in message.__dataclass_fields__}


def from_value(kind: str, value: dict[str, Any]) -> Message | tuple[bytes, ...]:
    """The message of type ``kind`` (a ``MessageType`` name) that ``value`` describes."""
    if kind == "POSE_BUNDLE":
        return tuple(bytes.fromhex(m) for m in value["messages"])
    if kind == "POSE":
        poses = {slot: p.WirePose(tuple(v["position"]), tuple(v["orientation"]))  # type: ignore[arg-type]
                 for slot in p.POSE_SLOTS if (v := value[slot]) is not None}
        return p.PoseRecord(value["participant"], value["seq"], value["sender_time"], buttons=p.Buttons(value["buttons"]),
                            **poses)  # type: ignore[arg-type]
    if kind == "STATE_OP":
        return p.StateOp(value["participant"], value["seq"], value["lamport"], p.OpKind[value["kind"]], value["payload"],
                         value["sender_time"])
    if kind == "SNAPSHOT_CHUNK":
        return p.SnapshotChunk(**{**value, "data": bytes.fromhex(value["data"])})
    if kind == "STATE_DIGEST":
        return p.StateDigest(**{**value, "digest": bytes.fromhex(value["digest"])})
    if kind == "STATE_REFUSAL":
        return p.StateRefusal(**{**value, "kind": p.OpKind[value["kind"]]})
    record = {"SNAPSHOT_REQUEST": p.SnapshotRequest, "CLOCK_PING": p.ClockPing, "CLOCK_PONG": p.ClockPong,
              "CLOCK_SHARE": p.ClockShare}[kind]
    return record(**value)  # type: ignore[no-any-return]


def build() -> dict[str, Any]:
    """The whole vector file, as JSON data."""
    vectors = []
    for name, channel, message in messages():
        data = encode(channel, message)
        decoded = decode(channel, data)  # a pose's value is its quantised form, which encodes to the same bytes
        assert encode(channel, decoded) == data, name
        vectors.append({"name": name, "channel": channel, "type": p.MessageType(data[1]).name, "hex": data.hex(),
                        "value": to_value(decoded)})
    return {
        "protocol_version": p.PROTOCOL_VERSION,
        "about": "medverse data-channel test vectors (docs/protocol.md): each hex decodes to its value and each value "
                 "encodes to exactly its hex. Regenerate with tests/net/make_vectors.py.",
        "vectors": vectors,
    }


def text() -> str:
    """The file's text: indented JSON, one vector after another, ending in a newline."""
    return json.dumps(build(), indent=1, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    PATH.write_text(text(), encoding="utf-8")
    print(f"wrote {PATH} ({len(build()['vectors'])} vectors)")
