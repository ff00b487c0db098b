"""The ``state`` channel: state ops, snapshot requests and chunks, state digests, refusals.

Ordered and reliable. A ``StateOp`` is an operation on the shared consultation state (its payload
schema per kind in ``net.protocol.payloads``); a late joiner sends a ``SnapshotRequest`` and gets the
state back in ``SnapshotChunk`` s; a ``StateDigest`` is a peer's state hash, to prove convergence; a
``StateRefusal`` tells an op's sender that its role did not allow it (``net.roles``), and why.
Layouts and worked examples: docs/protocol.md.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from net.errors import ProtocolError
from net.protocol.common import (
    PROTOCOL_VERSION,
    U16,
    U32,
    MessageType,
    as_bytes,
    canonical_json,
    check_header,
    check_size,
    micros,
    parse_json,
    uint,
)
from net.protocol.payloads import OpKind, validate_payload

OP_HEADER = struct.Struct("<BBBBHHIQq")  # version, type, kind, reserved, participant, len, seq, lamport, time
SNAPSHOT_REQUEST = struct.Struct("<BBHI")  # version, type, participant, request_id
SNAPSHOT_HEADER = struct.Struct("<BBHIHHI")  # version, type, participant, snapshot_id, index, count, total
DIGEST = struct.Struct("<BBHIq32s")  # version, type, participant, op_count, time_us, sha256
REFUSAL = struct.Struct("<BBHBBHIH")  # version, type, participant, kind, reserved, to, seq, reason length

#: Largest message on the state channel (an op with its JSON payload, or one snapshot chunk).
STATE_MAX_BYTES = 64 * 1024
#: Largest JSON payload of one op.
MAX_PAYLOAD_BYTES = STATE_MAX_BYTES - OP_HEADER.size
#: Snapshot data carried by one chunk, and the limits of a whole snapshot.
SNAPSHOT_CHUNK_BYTES = STATE_MAX_BYTES - SNAPSHOT_HEADER.size
MAX_SNAPSHOT_CHUNKS = 1024
MAX_SNAPSHOT_BYTES = 16 * 1024 * 1024
#: Lamport clocks stay below 2**53 so that a browser can hold them in a JavaScript number.
MAX_LAMPORT = 2**53 - 1
#: Longest reason of a refusal, bytes of UTF-8 (``refusal_reason`` shortens a longer one).
MAX_REASON_BYTES = 200


@dataclass(frozen=True)
class StateOp:
    """One operation on the shared consultation state (``state`` channel).

    Parameters
    ----------
    participant:
        Sender id, 0..65535.
    seq:
        The sender's state-op sequence number, 1, 2, 3... (uint32, never wraps in a session);
        (participant, seq) identifies the op, so applying it twice is a no-op.
    lamport:
        Lamport clock of the op at the sender, 1..2**53 - 1.
    kind:
        What the op does; ``payload`` follows the schema of the kind (see ``validate_payload``).
    payload:
        JSON object, normalised by ``validate_payload`` (floats for numbers, lists for vectors).
    sender_time:
        Seconds on the sender's monotonic clock when the op was made.
    """

    participant: int
    seq: int
    lamport: int
    kind: OpKind
    payload: Mapping[str, Any]
    sender_time: float


@dataclass(frozen=True)
class SnapshotRequest:
    """A late joiner asks one peer for its state; the reply's chunks carry ``request_id`` as id."""

    participant: int
    request_id: int


@dataclass(frozen=True)
class SnapshotChunk:
    """Chunk ``index`` of ``count`` of snapshot ``snapshot_id`` (``total`` bytes in all)."""

    participant: int
    snapshot_id: int
    index: int
    count: int
    total: int
    data: bytes


@dataclass(frozen=True)
class StateDigest:
    """A peer's state hash after ``op_count`` applied ops: equal digests prove equal state."""

    participant: int
    op_count: int
    sender_time: float
    digest: bytes


@dataclass(frozen=True)
class StateRefusal:
    """``participant`` (0: the relay) refused op ``seq`` of kind ``kind`` from participant ``to``: ``reason``.

    The answer to an op its sender's role does not allow (``net.roles``): it goes to the op's sender
    alone (a relay routes it by ``to``, like a reply) and changes nothing anywhere.
    """

    participant: int
    to: int
    seq: int
    kind: OpKind
    reason: str


StateMessage = StateOp | SnapshotRequest | SnapshotChunk | StateDigest | StateRefusal


#: Message types of the state channel.
STATE_TYPES: frozenset[int] = frozenset(
    {MessageType.STATE_OP, MessageType.SNAPSHOT_REQUEST, MessageType.SNAPSHOT_CHUNK, MessageType.STATE_DIGEST,
     MessageType.STATE_REFUSAL}
)


def refusal_reason(text: str) -> str:
    """``text`` made fit for a refusal: printable, at most ``MAX_REASON_BYTES`` of UTF-8 (cut on a character)."""
    clean = "".join(c if c.isprintable() else " " for c in text).strip() or "refused"
    while len(clean.encode("utf-8")) > MAX_REASON_BYTES:
        clean = clean[:-1]
    return clean


def _check_reason(reason: object) -> bytes:
    if not isinstance(reason, str) or not reason or not reason.isprintable():
        raise ProtocolError("refusal reason must be printable text", "state")
    raw = reason.encode("utf-8")
    if len(raw) > MAX_REASON_BYTES:
        raise ProtocolError(f"refusal reason of {len(raw)} bytes exceeds {MAX_REASON_BYTES}", "state")
    return raw


def _check_lamport(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LAMPORT:
        raise ProtocolError(f"lamport must be an integer in 1..2**53-1, got {value!r}", "state")
    return value


def encode_state(message: StateMessage) -> bytes:
    """Encode a state-channel message (``StateOp``, ``SnapshotRequest``, ``SnapshotChunk``, ``StateDigest``,
    ``StateRefusal``).

    A ``StateOp`` payload is validated and normalised with ``validate_payload`` and sent as canonical
    JSON (at most ``MAX_PAYLOAD_BYTES``). Raises ``ProtocolError`` for invalid fields.
    """
    v = PROTOCOL_VERSION
    participant = uint(message.participant, U16, "participant", "state")
    if isinstance(message, StateOp):
        payload = canonical_json(validate_payload(message.kind, message.payload))
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ProtocolError(f"op payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}", "state")
        seq = uint(message.seq, U32, "seq", "state")
        if seq == 0:
            raise ProtocolError("state op seq starts at 1", "state")
        lamport = _check_lamport(message.lamport)
        time_us = micros(message.sender_time, "sender_time", "state")
        kind = OpKind(message.kind)
        header = OP_HEADER.pack(
            v, MessageType.STATE_OP, kind, 0, participant, len(payload), seq, lamport, time_us
        )
        return header + payload
    if isinstance(message, SnapshotRequest):
        request_id = uint(message.request_id, U32, "request_id", "state")
        return SNAPSHOT_REQUEST.pack(v, MessageType.SNAPSHOT_REQUEST, participant, request_id)
    if isinstance(message, SnapshotChunk):
        _check_chunk(message.index, message.count, message.total, len(message.data))
        header = SNAPSHOT_HEADER.pack(
            v, MessageType.SNAPSHOT_CHUNK, participant, uint(message.snapshot_id, U32, "snapshot_id", "state"),
            message.index, message.count, message.total,
        )
        return header + bytes(message.data)
    if isinstance(message, StateRefusal):
        reason = _check_reason(message.reason)
        try:
            kind = OpKind(message.kind)
        except ValueError:
            raise ProtocolError(f"unknown op kind {message.kind!r}", "state") from None
        to = uint(message.to, U16, "to", "state")
        seq = uint(message.seq, U32, "seq", "state")
        if seq == 0:
            raise ProtocolError("a refusal names an op seq, which starts at 1", "state")
        return REFUSAL.pack(v, MessageType.STATE_REFUSAL, participant, kind, 0, to, seq, len(reason)) + reason
    if isinstance(message, StateDigest):
        if not isinstance(message.digest, bytes) or len(message.digest) != 32:
            raise ProtocolError("digest must be 32 bytes (sha256)", "state")
        return DIGEST.pack(
            v, MessageType.STATE_DIGEST, participant, uint(message.op_count, U32, "op_count", "state"),
            micros(message.sender_time, "sender_time", "state"), message.digest,
        )
    raise ProtocolError(f"not a state message: {type(message).__name__}", "state")


def _check_chunk(index: int, count: int, total: int, size: int) -> None:
    for name, value in (("index", index), ("count", count), ("total", total)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProtocolError(f"snapshot {name} must be an integer", "state")
    if not 1 <= count <= MAX_SNAPSHOT_CHUNKS:
        raise ProtocolError(f"snapshot chunk count {count} not in 1..{MAX_SNAPSHOT_CHUNKS}", "state")
    if not 0 <= index < count:
        raise ProtocolError(f"snapshot chunk index {index} not in 0..{count - 1}", "state")
    if not 1 <= total <= min(MAX_SNAPSHOT_BYTES, count * SNAPSHOT_CHUNK_BYTES):
        raise ProtocolError(f"snapshot size {total} out of range for {count} chunks", "state")
    if not 1 <= size <= min(total, SNAPSHOT_CHUNK_BYTES):
        raise ProtocolError(f"snapshot chunk of {size} bytes out of range", "state")


def _op_kind(kind: int, reserved: int, seq: int, message: str, seq_of: str) -> OpKind:
    """The op kind of an op or refusal header, its reserved byte 0 and its op's seq from 1; else ProtocolError."""
    if reserved:
        raise ProtocolError(f"reserved {message} byte is {reserved}, must be 0", "state")
    try:
        op_kind = OpKind(kind)
    except ValueError:
        raise ProtocolError(f"unknown op kind {kind}", "state") from None
    if seq == 0:
        raise ProtocolError(f"{seq_of} seq 0 (sequences start at 1)", "state")
    return op_kind


def decode_state(data: bytes | bytearray | memoryview) -> StateMessage:
    """Decode a ``state`` channel message; ``ProtocolError`` for anything malformed.

    A ``StateOp`` comes back with its payload validated and normalised (``validate_payload``).
    """
    buf = as_bytes(data, "state")
    mtype = check_header(buf, "state", STATE_MAX_BYTES, STATE_TYPES)
    if mtype is MessageType.STATE_OP:
        if len(buf) < OP_HEADER.size:
            raise ProtocolError(f"truncated op: {len(buf)} bytes, need {OP_HEADER.size}", "state")
        _, _, kind, reserved, participant, length, seq, lamport, time_us = OP_HEADER.unpack_from(buf)
        kind = _op_kind(kind, reserved, seq, "op", "state op")
        _check_lamport(lamport)
        check_size(buf, OP_HEADER.size + length, f"op with a {length}-byte payload", "state")
        payload = validate_payload(kind, parse_json(buf[OP_HEADER.size :], f"{kind.name} payload"))
        return StateOp(participant, seq, lamport, kind, payload, time_us / 1e6)
    if mtype is MessageType.SNAPSHOT_REQUEST:
        check_size(buf, SNAPSHOT_REQUEST.size, "snapshot request", "state")
        _, _, participant, request_id = SNAPSHOT_REQUEST.unpack(buf)
        return SnapshotRequest(participant, request_id)
    if mtype is MessageType.SNAPSHOT_CHUNK:
        if len(buf) < SNAPSHOT_HEADER.size:
            need = SNAPSHOT_HEADER.size
            raise ProtocolError(f"truncated snapshot chunk: {len(buf)} bytes, need {need}", "state")
        _, _, participant, snapshot_id, index, count, total = SNAPSHOT_HEADER.unpack_from(buf)
        chunk = buf[SNAPSHOT_HEADER.size :]
        _check_chunk(index, count, total, len(chunk))
        return SnapshotChunk(participant, snapshot_id, index, count, total, chunk)
    if mtype is MessageType.STATE_REFUSAL:
        if len(buf) < REFUSAL.size:
            raise ProtocolError(f"truncated refusal: {len(buf)} bytes, need {REFUSAL.size}", "state")
        _, _, participant, kind, reserved, to, seq, length = REFUSAL.unpack_from(buf)
        kind = _op_kind(kind, reserved, seq, "refusal", "refusal of op")
        check_size(buf, REFUSAL.size + length, f"refusal with a {length}-byte reason", "state")
        try:
            reason = buf[REFUSAL.size :].decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("refusal reason is not UTF-8", "state") from None
        _check_reason(reason)
        return StateRefusal(participant, to, seq, kind, reason)
    check_size(buf, DIGEST.size, "state digest", "state")
    _, _, participant, op_count, time_us, digest = DIGEST.unpack(buf)
    return StateDigest(participant, op_count, time_us / 1e6, digest)


def chunk_snapshot(participant: int, snapshot_id: int, body: bytes) -> list[SnapshotChunk]:
    """Split a snapshot body (``canonical_json`` of ``SharedState.snapshot()``) into chunks to send in order.

    Raises ``ProtocolError`` when ``body`` is empty or larger than ``MAX_SNAPSHOT_BYTES``.
    """
    if not 1 <= len(body) <= MAX_SNAPSHOT_BYTES:
        raise ProtocolError(f"snapshot of {len(body)} bytes not in 1..{MAX_SNAPSHOT_BYTES}", "state")
    step = SNAPSHOT_CHUNK_BYTES
    count = -(-len(body) // step)
    return [
        SnapshotChunk(participant, snapshot_id, i, count, len(body), body[i * step : (i + 1) * step])
        for i in range(count)
    ]


class SnapshotAssembler:
    """Reassembles the chunks of one snapshot from one sender (they arrive in order on the state channel).

    ``add`` returns the whole body after the last chunk, ``None`` before; a chunk that does not fit
    (another snapshot id, a gap, a changed count or size, too many bytes) raises ``ProtocolError`` and
    resets the assembler, so the joiner can ask again.
    """

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._key: tuple[int, int, int, int] | None = None  # participant, snapshot_id, count, total
        self._size = 0

    def add(self, chunk: SnapshotChunk) -> bytes | None:
        """Add the next chunk; the complete body once all ``count`` chunks are in."""
        key = (chunk.participant, chunk.snapshot_id, chunk.count, chunk.total)
        if chunk.index == 0:
            self.reset()
            self._key = key
        elif key != self._key or chunk.index != len(self._parts):
            self.reset()
            raise ProtocolError(f"snapshot chunk {chunk.index}/{chunk.count} out of sequence", "state")
        self._parts.append(chunk.data)
        self._size += len(chunk.data)
        if self._size > chunk.total:
            self.reset()
            raise ProtocolError(f"snapshot chunks exceed the announced {chunk.total} bytes", "state")
        if len(self._parts) < chunk.count:
            return None
        body = b"".join(self._parts)
        self.reset()
        if len(body) != chunk.total:
            raise ProtocolError(f"snapshot has {len(body)} bytes, {chunk.total} announced", "state")
        return body

    def reset(self) -> None:
        """Forget a partial snapshot."""
        self._parts = []
        self._key = None
        self._size = 0
