"""The data-channel wire protocol: pure, versioned encode/decode for the pose, state and clock channels.

Every message starts with a version byte (``PROTOCOL_VERSION``) and a type byte; all integers are
little-endian; times are int64 microseconds on the sender's monotonic clock (seconds, float, in the
Python records). The byte layouts, quantisation and worked hex examples are in ``docs/protocol.md``;
``tests/net/test_protocol.py`` pins them byte for byte.

Decoders accept ``bytes``/``bytearray``/``memoryview`` and either return a record or raise
``ProtocolError`` with a one-line reason; no other exception escapes them, whatever the input.
Encoders validate their record the same way (non-finite numbers, out-of-range values, oversized
payloads raise ``ProtocolError``), so what one peer sends another one accepts.

Channels (see ``CHANNELS``):

- ``pose``: unordered, ``max_retransmits=0``; one ``PoseRecord`` per message, newest wins by
  serial-number comparison of the 32-bit sequence (``seq_newer``, ``NewestWins``). The relay of a
  large room sends a ``POSE_BUNDLE`` instead: several senders' pose messages, unchanged, in one
  message (version 2).
- ``state``: ordered, reliable; ``StateOp`` (an operation on the shared consultation state),
  ``SnapshotRequest``, ``SnapshotChunk`` (a late joiner's snapshot, chunked) and ``StateDigest``
  (a peer's state hash, to prove convergence).
- ``clock``: unordered, ``max_retransmits=0``; ``ClockPing`` / ``ClockPong`` for NTP-style offset and
  round-trip estimation (``net.clock``), and in a relay room ``ClockShare``, a participant's clock
  against the relay's (version 3).
"""

from __future__ import annotations

import enum
import functools
import json
import logging
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from net.errors import ProtocolError

log = logging.getLogger(__name__)

#: Version byte of every message; any change of a layout, type or op kind takes a new number.
#: Version 2 added the pose bundle (type 0x02), version 3 the clock share (type 0x22); every earlier
#: layout is unchanged.
PROTOCOL_VERSION = 3

# ---------------------------------------------------------------------------------------------------
# Message types (byte 1). Each channel accepts only its own types.
# ---------------------------------------------------------------------------------------------------


class MessageType(enum.IntEnum):
    """Type byte (offset 1) of every message."""

    POSE = 0x01
    POSE_BUNDLE = 0x02
    STATE_OP = 0x10
    SNAPSHOT_REQUEST = 0x11
    SNAPSHOT_CHUNK = 0x12
    STATE_DIGEST = 0x13
    CLOCK_PING = 0x20
    CLOCK_PONG = 0x21
    CLOCK_SHARE = 0x22


class OpKind(enum.IntEnum):
    """Kind byte (offset 2) of a ``STATE_OP`` message; the payload schema depends on it."""

    STROKE_ADD = 1
    STROKE_ERASE = 2
    LANDMARK_PLACE = 3
    LANDMARK_MOVE = 4
    LANDMARK_DELETE = 5
    CLIP_SET = 6
    CLIP_CLEAR = 7
    TRANSFORM = 8
    SELECT = 9


class Buttons(enum.IntFlag):
    """Button bits of a pose record (uint16); bits 6, 7, 14, 15 are reserved and must be 0."""

    NONE = 0
    LEFT_TRIGGER = 1 << 0
    LEFT_GRIP = 1 << 1
    LEFT_PRIMARY = 1 << 2  # X
    LEFT_SECONDARY = 1 << 3  # Y
    LEFT_THUMBSTICK = 1 << 4
    LEFT_MENU = 1 << 5
    RIGHT_TRIGGER = 1 << 8
    RIGHT_GRIP = 1 << 9
    RIGHT_PRIMARY = 1 << 10  # A
    RIGHT_SECONDARY = 1 << 11  # B
    RIGHT_THUMBSTICK = 1 << 12
    RIGHT_SYSTEM = 1 << 13


_BUTTONS_MASK = 0x3F3F

# ---------------------------------------------------------------------------------------------------
# Limits and quantisation
# ---------------------------------------------------------------------------------------------------

#: Position quantum of a pose (metres): int16 steps of 0.1 mm, so |coordinate| <= 3.2767 m from the
#: room origin (where the twin stands). Finer than headset tracking noise (about 1 mm).
POSITION_STEP_M = 1e-4
#: Quaternion quantum: the three smallest components c (|c| <= 1/sqrt(2)) are sent as
#: round(c * QUAT_SCALE) in int16; worst-case angular error about 0.003 degrees.
QUAT_SCALE = 32767.0 * math.sqrt(2.0)

POSE_HEADER = struct.Struct("<BBHIqBBH")  # version, type, participant, seq, time_us, present, qidx, buttons
POSE_ENTRY = struct.Struct("<hhhhhh")  # x, y, z (0.1 mm), three smallest quaternion components
#: Pose slots in wire order; bit i of the ``present`` byte says slot i follows.
POSE_SLOTS = ("head", "left", "right", "pointer")
#: Largest pose message: header and all four poses (head and two hands alone: 56 bytes).
POSE_MAX_BYTES = POSE_HEADER.size + len(POSE_SLOTS) * POSE_ENTRY.size

BUNDLE_HEADER = struct.Struct("<BBBB")  # version, type, count, reserved
#: The relay sends its pose bundles at the ticks of a grid on its own clock: the primary ticks are the
#: multiples of 1 / RELAY_TICK_HZ seconds of its monotonic clock (which its pongs reveal), so a
#: participant sending at this rate can time its poses to arrive just before one (docs/protocol.md).
RELAY_TICK_HZ = 90.0
#: How long before a relay tick a pose should reach the relay, by default: the margin for scheduling
#: jitter (docs/protocol.md, "Sending in time for a tick").
RELAY_POSE_LEAD_S = 0.002
#: Largest pose bundle: aiortc puts up to 1,200 bytes of a message in one SCTP chunk, so a bundle up to
#: this size travels as one DTLS record and one UDP datagram (the point of bundling).
POSE_BUNDLE_MAX_BYTES = 1200

OP_HEADER = struct.Struct("<BBBBHHIQq")  # version, type, kind, reserved, participant, len, seq, lamport, time
SNAPSHOT_REQUEST = struct.Struct("<BBHI")  # version, type, participant, request_id
SNAPSHOT_HEADER = struct.Struct("<BBHIHHI")  # version, type, participant, snapshot_id, index, count, total
DIGEST = struct.Struct("<BBHIq32s")  # version, type, participant, op_count, time_us, sha256
PING = struct.Struct("<BBHIq")  # version, type, participant, ping_id, t0_us
PONG = struct.Struct("<BBHIqqq")  # version, type, participant, ping_id, t0_us, t1_us, t2_us
SHARE = struct.Struct("<BBHIqq")  # version, type, participant, rtt_us, local_us, relay_us

#: Largest message on the state channel (an op with its JSON payload, or one snapshot chunk).
STATE_MAX_BYTES = 64 * 1024
#: Largest JSON payload of one op.
MAX_PAYLOAD_BYTES = STATE_MAX_BYTES - OP_HEADER.size
#: Snapshot data carried by one chunk, and the limits of a whole snapshot.
SNAPSHOT_CHUNK_BYTES = STATE_MAX_BYTES - SNAPSHOT_HEADER.size
MAX_SNAPSHOT_CHUNKS = 1024
MAX_SNAPSHOT_BYTES = 16 * 1024 * 1024
#: Largest message on the clock channel (a pong).
CLOCK_MAX_BYTES = PONG.size

#: Lamport clocks stay below 2**53 so that a browser can hold them in a JavaScript number.
MAX_LAMPORT = 2**53 - 1
_U16 = 0xFFFF
_U32 = 0xFFFFFFFF
_MAX_TIME_US = 2**63 - 1

#: Payload limits of state operations.
MAX_STROKE_POINTS = 1024
MAX_ID_CHARS = 64
MAX_TEXT_CHARS = 128
MAX_COORD_M = 100.0
MAX_CLIP_PLANES = 6
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-")


@dataclass(frozen=True)
class ChannelSpec:
    """How a data channel is created (``RTCPeerConnection.createDataChannel`` options) and bounded.

    ``max_retransmits=None`` with ``ordered=True`` is a reliable ordered channel.
    """

    label: str
    ordered: bool
    max_retransmits: int | None
    max_message_bytes: int


#: The three data channels of every peer connection, by label.
CHANNELS: dict[str, ChannelSpec] = {
    "pose": ChannelSpec("pose", ordered=False, max_retransmits=0, max_message_bytes=POSE_BUNDLE_MAX_BYTES),
    "state": ChannelSpec("state", ordered=True, max_retransmits=None, max_message_bytes=STATE_MAX_BYTES),
    "clock": ChannelSpec("clock", ordered=False, max_retransmits=0, max_message_bytes=CLOCK_MAX_BYTES),
}

# ---------------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WirePose:
    """A pose as it travels: ``position`` metres (x, y, z) in the room frame, ``orientation`` unit
    quaternion (x, y, z, w), OpenXR conventions (right-handed, +Y up, -Z forward)."""

    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    orientation: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)


class TrackedPoses(TypedDict, total=False):
    """The poses of a `PoseRecord` by name, as keyword arguments; one left out is not tracked."""

    head: WirePose
    left: WirePose
    right: WirePose
    pointer: WirePose


@dataclass(frozen=True)
class PoseRecord:
    """One participant's tracked poses at one instant (``pose`` channel).

    Parameters
    ----------
    participant:
        Small integer id of the sender in the room, 0..65535.
    seq:
        uint32 sequence number, +1 per record, wraps to 0 after 2**32 - 1.
    sender_time:
        Seconds on the sender's monotonic clock when the poses were sampled (sent as int64 us).
    head, left, right, pointer:
        Head, left and right grip poses and the pointer (aim) pose; ``None`` when not tracked.
    buttons:
        ``Buttons`` bits held down.
    """

    participant: int
    seq: int
    sender_time: float
    head: WirePose | None = None
    left: WirePose | None = None
    right: WirePose | None = None
    pointer: WirePose | None = None
    buttons: Buttons = Buttons.NONE


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
class ClockPing:
    """NTP-style request: ``t0`` is the requester's send time, seconds (its monotonic clock)."""

    participant: int
    ping_id: int
    t0: float


@dataclass(frozen=True)
class ClockShare:
    """A participant's clock as it maps onto the relay's, told to the room (relay rooms only): at
    ``local_time`` on its own clock the relay's clock read ``relay_time`` (its estimate), with ``rtt``
    its round trip to the relay, seconds. With its own estimate of the relay's clock a receiver maps
    the participant's times to its own clock without pinging it (``net.clock.RelayedClock``)."""

    participant: int
    rtt: float
    local_time: float
    relay_time: float


@dataclass(frozen=True)
class ClockPong:
    """Reply to a ping: ``t0`` echoed, ``t1`` receive and ``t2`` send time on the responder's clock."""

    participant: int
    ping_id: int
    t0: float
    t1: float
    t2: float


StateMessage = StateOp | SnapshotRequest | SnapshotChunk | StateDigest
ClockMessage = ClockPing | ClockPong | ClockShare

# ---------------------------------------------------------------------------------------------------
# Sequence numbers (RFC 1982 serial-number arithmetic on 32 bits)
# ---------------------------------------------------------------------------------------------------


def seq_next(seq: int) -> int:
    """The sequence number after ``seq``, wrapping from 2**32 - 1 to 0."""
    return (seq + 1) & _U32


def seq_newer(a: int, b: int) -> bool:
    """True when uint32 sequence ``a`` is newer than ``b``, across wrap-around.

    ``a`` is newer when it is ahead of ``b`` by 1..2**31 - 1 modulo 2**32; at exactly 2**31 apart
    neither is newer (RFC 1982 leaves it undefined), so a stale record is never taken for new.
    """
    d = (a - b) & _U32
    return 0 < d < 0x80000000


class NewestWins:
    """Gate for the unordered pose channel: accept a record only when newer than the last accepted
    one from the same participant (late and duplicated datagrams are dropped and counted)."""

    def __init__(self) -> None:
        self._last: dict[int, int] = {}
        self.stale = 0

    def accept(self, participant: int, seq: int) -> bool:
        """True (and remember ``seq``) when ``seq`` is newer than the last accepted from ``participant``."""
        last = self._last.get(participant)
        if last is not None and not seq_newer(seq, last):
            self.stale += 1
            return False
        self._last[participant] = seq
        return True

    def forget(self, participant: int) -> None:
        """Drop what is known of ``participant`` (it left; a rejoin starts its sequence afresh)."""
        self._last.pop(participant, None)


# ---------------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------------


def _as_bytes(data: object, channel: str) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, str):
        raise ProtocolError("text message on a binary channel", channel)
    raise ProtocolError(f"not a message: {type(data).__name__}", channel)


def _check_header(buf: bytes, channel: str, max_bytes: int, types: frozenset[int]) -> MessageType:
    if len(buf) < 2:
        raise ProtocolError(f"truncated: {len(buf)} bytes, need at least 2", channel)
    if len(buf) > max_bytes:
        raise ProtocolError(f"oversized: {len(buf)} bytes, at most {max_bytes}", channel)
    if buf[0] != PROTOCOL_VERSION:
        raise ProtocolError(f"unknown version {buf[0]} (this peer speaks {PROTOCOL_VERSION})", channel)
    if buf[1] not in types:
        raise ProtocolError(f"unknown message type 0x{buf[1]:02x}", channel)
    return MessageType(buf[1])


def _check_size(buf: bytes, need: int, what: str, channel: str) -> None:
    if len(buf) < need:
        raise ProtocolError(f"truncated {what}: {len(buf)} bytes, need {need}", channel)
    if len(buf) > need:
        raise ProtocolError(f"{what} has {len(buf) - need} trailing bytes", channel)


def _time_us(t: float, what: str, channel: str) -> int:
    if not isinstance(t, (int, float)) or not math.isfinite(t):
        raise ProtocolError(f"{what} is not a finite number: {t!r}", channel)
    us = round(t * 1e6)
    if us / 1e6 != t:  # the product rounded the other way: take the integer that decodes (us / 1e6) back to t
        us = next((c for c in (us - 1, us + 1) if c / 1e6 == t), us)
    if abs(us) > _MAX_TIME_US:
        raise ProtocolError(f"{what} out of range: {t!r} s", channel)
    return us


def _uint(value: object, limit: int, what: str, channel: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise ProtocolError(f"{what} must be an integer in 0..{limit}, got {value!r}", channel)
    return value


# ---------------------------------------------------------------------------------------------------
# pose channel
# ---------------------------------------------------------------------------------------------------


def _encode_quat(q: tuple[float, float, float, float]) -> tuple[int, tuple[int, int, int]]:
    if len(q) != 4 or not all(isinstance(c, (int, float)) and math.isfinite(c) for c in q):
        raise ProtocolError(f"orientation must be 4 finite numbers, got {q!r}", "pose")
    norm = math.sqrt(sum(c * c for c in q))
    if norm < 1e-6:
        raise ProtocolError("orientation is a zero quaternion", "pose")
    comps = [c / norm for c in q]
    largest = max(range(4), key=lambda i: abs(comps[i]))
    if comps[largest] < 0:  # q and -q are the same rotation: send the one whose largest is positive
        comps = [-c for c in comps]
    small = tuple(round(comps[i] * QUAT_SCALE) for i in range(4) if i != largest)
    return largest, (small[0], small[1], small[2])


def _decode_quat(largest: int, small: tuple[int, int, int]) -> tuple[float, float, float, float]:
    # The three smallest components, which _read_pose has checked to leave a real fourth.
    a, b, c = small[0] / QUAT_SCALE, small[1] / QUAT_SCALE, small[2] / QUAT_SCALE
    d = math.sqrt(1.0 - (a * a + b * b + c * c))
    if largest == 0:
        return (d, a, b, c)
    if largest == 1:
        return (a, d, b, c)
    if largest == 2:
        return (a, b, d, c)
    return (a, b, c, d)


def encode_pose(record: PoseRecord) -> bytes:
    """Encode a ``PoseRecord``: 20-byte header and 12 bytes per present pose (at most ``POSE_MAX_BYTES``).

    Raises ``ProtocolError`` for out-of-range ids, non-finite numbers, positions beyond +-3.2767 m
    or a zero quaternion.
    """
    participant = _uint(record.participant, _U16, "participant", "pose")
    seq = _uint(record.seq, _U32, "seq", "pose")
    time_us = _time_us(record.sender_time, "sender_time", "pose")
    buttons = _uint(int(record.buttons), _U16, "buttons", "pose")
    if buttons & ~_BUTTONS_MASK:
        raise ProtocolError(f"reserved button bits set: 0x{buttons:04x}", "pose")
    present = 0
    qidx = 0
    entries = []
    for slot, name in enumerate(POSE_SLOTS):
        pose = getattr(record, name)
        if pose is None:
            continue
        if len(pose.position) != 3:
            raise ProtocolError(f"{name} position must have 3 coordinates", "pose")
        pos = []
        for c in pose.position:
            if not isinstance(c, (int, float)) or not math.isfinite(c):
                raise ProtocolError(f"{name} position is not finite: {pose.position!r}", "pose")
            q = round(c / POSITION_STEP_M)
            if not -32767 <= q <= 32767:
                raise ProtocolError(f"{name} position beyond +-3.2767 m of the origin: {pose.position!r}", "pose")
            pos.append(q)
        largest, small = _encode_quat(pose.orientation)
        present |= 1 << slot
        qidx |= largest << (2 * slot)
        entries.append(POSE_ENTRY.pack(pos[0], pos[1], pos[2], *small))
    header = POSE_HEADER.pack(
        PROTOCOL_VERSION, MessageType.POSE, participant, seq, time_us, present, qidx, buttons
    )
    return header + b"".join(entries)


def _read_pose(buf: bytes) -> tuple[int, int, int, int, int, int, tuple[int, ...]]:
    """Check a pose message (every check ``decode_pose`` makes) and read its fields without building a
    record: participant, seq, time_us, present, qidx, buttons and the present poses' entry values."""
    size = len(buf)
    if not (POSE_HEADER.size <= size <= POSE_MAX_BYTES and buf[0] == PROTOCOL_VERSION and buf[1] == _POSE):
        _check_header(buf, "pose", POSE_MAX_BYTES, _POSE_TYPES)  # raises, saying which check failed
        raise ProtocolError(f"truncated pose: {size} bytes, need {POSE_HEADER.size}", "pose")
    _, _, participant, seq, time_us, present, qidx, buttons = POSE_HEADER.unpack_from(buf)
    if present & 0xF0:
        raise ProtocolError(f"reserved presence bits set: 0x{present:02x}", "pose")
    if buttons & ~_BUTTONS_MASK:
        raise ProtocolError(f"reserved button bits set: 0x{buttons:04x}", "pose")
    count = _POSES_PRESENT[present]
    if size != POSE_HEADER.size + count * POSE_ENTRY.size:
        _check_size(buf, POSE_HEADER.size + count * POSE_ENTRY.size, f"pose with {count} poses", "pose")
    if qidx & ~_QIDX_PRESENT[present]:
        absent = next(name for slot, name in enumerate(POSE_SLOTS) if (qidx >> (2 * slot)) & 3 and not present & (1 << slot))
        raise ProtocolError(f"quaternion index set for absent {absent} pose", "pose")
    values = _POSE_ENTRIES[count].unpack_from(buf, POSE_HEADER.size)
    for i in range(0, 6 * count, 6):
        if values[i] == -32768 or values[i + 1] == -32768 or values[i + 2] == -32768:
            # int16's extra negative value: beyond +-3.2767 m, which no encoder sends
            raise ProtocolError(f"{_PRESENT_NAMES[present][i // 6]} position beyond +-3.2767 m of the origin", "pose")
        a, b, c = values[i + 3] / QUAT_SCALE, values[i + 4] / QUAT_SCALE, values[i + 5] / QUAT_SCALE
        if 1.0 - (a * a + b * b + c * c) < 0.0:
            raise ProtocolError("orientation is not a unit quaternion", "pose")
    return participant, seq, time_us, present, qidx, buttons, values


def pose_key(data: bytes | bytearray | memoryview) -> tuple[int, int, float]:
    """``(participant, seq, sender_time)`` of a pose message that passes every check of ``decode_pose``
    (``ProtocolError`` otherwise), without building its ``PoseRecord``: a receiver in a room of sixteen
    takes 1,350 poses a second and keeps only each remote's newest, decoded when someone looks at it."""
    participant, seq, time_us, *_ = _read_pose(_as_bytes(data, "pose"))
    return participant, seq, time_us / 1e6


def decode_pose(data: bytes | bytearray | memoryview) -> PoseRecord:
    """Decode a ``pose`` channel message into a ``PoseRecord``; ``ProtocolError`` for anything else."""
    participant, seq, time_us, present, qidx, buttons, values = _read_pose(_as_bytes(data, "pose"))
    # The records are built without the frozen dataclasses' __init__ (a third of the time), field for
    # field what __init__ would set.
    fields: dict[str, object] = {"participant": participant, "seq": seq, "sender_time": time_us / 1e6,
                                 "head": None, "left": None, "right": None, "pointer": None, "buttons": _buttons(buttons)}
    i = 0
    for slot, name in enumerate(POSE_SLOTS):
        if not present & (1 << slot):
            continue
        x, y, z, a, b, c = values[i : i + 6]
        i += 6
        pose = object.__new__(WirePose)
        pose.__dict__.update(position=(x * POSITION_STEP_M, y * POSITION_STEP_M, z * POSITION_STEP_M),
                             orientation=_decode_quat((qidx >> (2 * slot)) & 3, (a, b, c)))
        fields[name] = pose
    record = object.__new__(PoseRecord)
    record.__dict__.update(fields)
    return record


_POSE = int(MessageType.POSE)
#: Poses present for each value of the presence bits (their count of ones), their slot names, the
#: quaternion index bits they may set, and the struct reading their entries in one call.
_POSES_PRESENT = tuple(bin(bits).count("1") for bits in range(16))
_PRESENT_NAMES = tuple(tuple(name for slot, name in enumerate(POSE_SLOTS) if bits & (1 << slot)) for bits in range(16))
_QIDX_PRESENT = tuple(sum(3 << (2 * slot) for slot in range(len(POSE_SLOTS)) if bits & (1 << slot)) for bits in range(16))
_POSE_ENTRIES = tuple(struct.Struct("<" + POSE_ENTRY.format.lstrip("<") * count) for count in range(len(POSE_SLOTS) + 1))
_POSE_TYPES = frozenset({MessageType.POSE})


@functools.lru_cache(maxsize=256)
def _buttons(bits: int) -> Buttons:
    """``Buttons(bits)``, cached: an enum flag costs more to build than the rest of a pose to decode."""
    return Buttons(bits)


def frame_pose(message: bytes) -> bytes:
    """A pose message as a ``POSE_BUNDLE`` carries it: a uint8 length, then the message's bytes, untouched.

    Only framing is checked (the relay that bundles never decodes poses): the message must look like
    a pose (version, type, 20..68 bytes).
    """
    if not (POSE_HEADER.size <= len(message) <= POSE_MAX_BYTES and message[0] == PROTOCOL_VERSION
            and message[1] == MessageType.POSE):
        raise ProtocolError("a pose bundle carries only pose messages", "pose")
    return bytes((len(message),)) + message


def _join_bundle(framed: list[bytes]) -> bytes:
    return BUNDLE_HEADER.pack(PROTOCOL_VERSION, MessageType.POSE_BUNDLE, len(framed), 0) + b"".join(framed)


def encode_pose_bundle(messages: list[bytes]) -> bytes:
    """Pack encoded pose messages (``encode_pose`` output, untouched) into one ``POSE_BUNDLE``.

    Layout: 4-byte header (version, type, count, reserved 0), then each message framed by
    ``frame_pose`` (a uint8 length and the message's bytes). The bundle must fit
    ``POSE_BUNDLE_MAX_BYTES``; ``pack_pose_bundles`` splits a longer list.
    """
    if not 1 <= len(messages) <= 255:
        raise ProtocolError(f"a pose bundle carries 1 to 255 poses, got {len(messages)}", "pose")
    data = _join_bundle([frame_pose(message) for message in messages])
    if len(data) > POSE_BUNDLE_MAX_BYTES:
        raise ProtocolError(f"pose bundle of {len(data)} bytes, at most {POSE_BUNDLE_MAX_BYTES}", "pose")
    return data


def pack_pose_bundles(messages: list[bytes]) -> list[bytes]:
    """As many bundles as ``messages`` need (each within ``POSE_BUNDLE_MAX_BYTES``), in order."""
    return bundle_framed_poses([frame_pose(message) for message in messages])


def bundle_framed_poses(framed: list[bytes], max_bytes: int = POSE_BUNDLE_MAX_BYTES) -> list[bytes]:
    """``pack_pose_bundles`` for messages already framed by ``frame_pose``, each bundle within
    ``max_bytes`` (at most ``POSE_BUNDLE_MAX_BYTES``): the relay frames each sender's pose once, when
    it arrives, and joins fifteen of them for each of sixteen receivers."""
    limit = min(max_bytes, POSE_BUNDLE_MAX_BYTES)
    bundles: list[bytes] = []
    start, size = 0, BUNDLE_HEADER.size
    for i, item in enumerate(framed):
        if size + len(item) > limit or i - start == 255:
            bundles.append(_join_bundle(framed[start:i]))
            start, size = i, BUNDLE_HEADER.size
        size += len(item)
    if start < len(framed):
        bundles.append(_join_bundle(framed[start:]))
    return bundles


def split_pose_bundle(data: bytes | bytearray | memoryview) -> list[bytes]:
    """The pose messages a ``POSE_BUNDLE`` carries, each still to be read with ``decode_pose``.

    A framing error (header, count, a length that overruns or leaves trailing bytes, a carried
    message without a pose's version and type bytes) rejects the whole bundle; a bad pose inside it is
    the caller's to reject alone, so that one sender's broken pose cannot cost the others theirs.
    """
    buf = _as_bytes(data, "pose")
    _check_header(buf, "pose", POSE_BUNDLE_MAX_BYTES, frozenset({MessageType.POSE_BUNDLE}))
    if len(buf) < BUNDLE_HEADER.size:
        raise ProtocolError(f"truncated pose bundle: {len(buf)} bytes, need {BUNDLE_HEADER.size}", "pose")
    _, _, count, reserved = BUNDLE_HEADER.unpack_from(buf)
    if reserved:
        raise ProtocolError(f"reserved pose bundle byte set: 0x{reserved:02x}", "pose")
    if count == 0:
        raise ProtocolError("empty pose bundle", "pose")
    messages = []
    offset = BUNDLE_HEADER.size
    for i in range(count):
        if offset >= len(buf):
            raise ProtocolError(f"truncated pose bundle: {i} of {count} poses", "pose")
        size = buf[offset]
        if not POSE_HEADER.size <= size <= POSE_MAX_BYTES:
            raise ProtocolError(f"pose {i} of a bundle has {size} bytes, not {POSE_HEADER.size}..{POSE_MAX_BYTES}", "pose")
        end = offset + 1 + size
        if end > len(buf):
            raise ProtocolError(f"truncated pose bundle: pose {i} of {count} overruns it", "pose")
        if buf[offset + 1] != PROTOCOL_VERSION or buf[offset + 2] != MessageType.POSE:
            raise ProtocolError(f"pose {i} of a bundle is not a version-{PROTOCOL_VERSION} pose message", "pose")
        messages.append(buf[offset + 1 : end])
        offset = end
    if offset != len(buf):
        raise ProtocolError(f"pose bundle has {len(buf) - offset} trailing bytes", "pose")
    return messages


@dataclass(frozen=True)
class PoseBundle:
    """A relay's ``POSE_BUNDLE``: pose messages of several senders, each decoded on its own."""

    messages: tuple[bytes, ...]


def is_pose_bundle(data: bytes | bytearray | memoryview | str) -> bool:
    """True when a ``pose`` channel message says it is a ``POSE_BUNDLE`` (its type byte); the rest is
    for ``split_pose_bundle`` to check."""
    return not isinstance(data, str) and len(data) >= 2 and data[1] == MessageType.POSE_BUNDLE


def decode_pose_channel(data: bytes | bytearray | memoryview) -> PoseRecord | PoseBundle:
    """Decode anything the ``pose`` channel carries: a ``PoseRecord`` or a ``PoseBundle``."""
    buf = _as_bytes(data, "pose")
    if is_pose_bundle(buf):
        return PoseBundle(tuple(split_pose_bundle(buf)))
    return decode_pose(buf)


# ---------------------------------------------------------------------------------------------------
# state channel: op payloads
# ---------------------------------------------------------------------------------------------------


def canonical_json(obj: object) -> bytes:
    """Canonical UTF-8 JSON (sorted keys, no spaces, no NaN): equal values give equal bytes."""
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (ValueError, TypeError, RecursionError) as exc:
        raise ProtocolError(f"cannot serialise as JSON: {exc}", "state") from None


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:20]}")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate key in object")
    return obj


def parse_json(data: bytes, what: str) -> Any:
    """Parse strict JSON from the wire (UTF-8, no NaN/Infinity, no duplicate keys) or raise ``ProtocolError``."""
    try:
        return json.loads(
            data.decode("utf-8"),
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            object_pairs_hook=_no_duplicates,
        )
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ProtocolError(f"{what} is not valid JSON: {str(exc).splitlines()[0][:120]}", "state") from None


def _num(value: object, what: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError(f"{what} must be a number, got {type(value).__name__}", "state")
    f = float(value)
    if not math.isfinite(f) or not lo <= f <= hi:
        raise ProtocolError(f"{what} must be in {lo}..{hi}, got {value!r}", "state")
    return f


def _vec(value: object, n: int, what: str, lo: float, hi: float) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise ProtocolError(f"{what} must be a list of {n} numbers", "state")
    return [_num(v, what, lo, hi) for v in value]


def _position(value: object, what: str) -> list[float]:
    # Rounded to 0.1 mm (the pose quantum) so that local and remote copies are bit-identical and
    # payloads stay short; round(round(x, 4), 4) == round(x, 4), so normalising twice changes nothing.
    return [round(c, 4) for c in _vec(value, 3, what, -MAX_COORD_M, MAX_COORD_M)]


def _ident(value: object, what: str = "id") -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_CHARS or not set(value) <= _ID_CHARS:
        raise ProtocolError(f"{what} must be 1..{MAX_ID_CHARS} characters of [A-Za-z0-9_.:-]", "state")
    return value


def _text(value: object, what: str, optional: bool) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT_CHARS or not value.isprintable():
        raise ProtocolError(f"{what} must be printable text of at most {MAX_TEXT_CHARS} characters", "state")
    return value


def _index(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_CLIP_PLANES:
        raise ProtocolError(f"clip plane index must be an integer in 0..{MAX_CLIP_PLANES - 1}", "state")
    return value


_SCHEMA_KEYS: dict[OpKind, tuple[frozenset[str], frozenset[str]]] = {
    # kind: (required keys, optional keys)
    OpKind.STROKE_ADD: (frozenset({"id", "points"}), frozenset({"color", "width"})),
    OpKind.STROKE_ERASE: (frozenset({"id"}), frozenset()),
    OpKind.LANDMARK_PLACE: (frozenset({"id", "position"}), frozenset({"label", "structure"})),
    OpKind.LANDMARK_MOVE: (frozenset({"id", "position"}), frozenset()),
    OpKind.LANDMARK_DELETE: (frozenset({"id"}), frozenset()),
    OpKind.CLIP_SET: (frozenset({"index", "normal", "d"}), frozenset()),
    OpKind.CLIP_CLEAR: (frozenset({"index"}), frozenset()),
    OpKind.TRANSFORM: (frozenset({"position", "orientation"}), frozenset({"scale"})),
    OpKind.SELECT: (frozenset(), frozenset({"structure"})),
}

#: Defaults filled in by ``validate_payload`` for optional keys.
DEFAULT_STROKE_COLOR = (1.0, 0.8, 0.0, 1.0)
DEFAULT_STROKE_WIDTH_M = 0.002


def validate_payload(kind: OpKind | int, payload: object) -> dict[str, Any]:
    """Check ``payload`` against the schema of ``kind`` and return its normalised form.

    Schemas (positions metres, rounded to 0.1 mm, |coordinate| <= 100 m):

    - STROKE_ADD ``{"id", "points": [[x, y, z], ...] (1..1024), "color": [r, g, b, a] 0..1,
      "width": metres in (0, 0.05]}``
    - STROKE_ERASE, LANDMARK_DELETE ``{"id"}``
    - LANDMARK_PLACE ``{"id", "position", "label": text, "structure": text | null}``
    - LANDMARK_MOVE ``{"id", "position"}``
    - CLIP_SET ``{"index": 0..5, "normal": [x, y, z] non-zero, "d": metres}``; CLIP_CLEAR ``{"index"}``
    - TRANSFORM ``{"position", "orientation": unit quaternion (x, y, z, w), "scale": 0.01..100}``
    - SELECT ``{"structure": text | null}``

    Returns a new dict with numbers as floats, vectors as lists and defaults filled in, so that the
    sender's copy and every receiver's copy are equal value for value (the state digest depends on it).
    Raises ``ProtocolError`` for an unknown kind, missing or unknown keys, wrong types, non-finite or
    out-of-range values.
    """
    try:
        kind = OpKind(kind)
    except ValueError:
        raise ProtocolError(f"unknown op kind {kind!r}", "state") from None
    if not isinstance(payload, Mapping):
        raise ProtocolError(f"{kind.name} payload must be an object", "state")
    required, optional = _SCHEMA_KEYS[kind]
    keys = set(payload)
    if not required <= keys:
        raise ProtocolError(f"{kind.name} payload lacks {sorted(required - keys)}", "state")
    if not keys <= required | optional:
        unknown = sorted(map(str, keys - required - optional))
        raise ProtocolError(f"{kind.name} payload has unknown keys {unknown}", "state")
    p = payload
    if kind is OpKind.STROKE_ADD:
        points = p["points"]
        if not isinstance(points, (list, tuple)) or not 1 <= len(points) <= MAX_STROKE_POINTS:
            raise ProtocolError(f"stroke points must be a list of 1..{MAX_STROKE_POINTS} points", "state")
        return {
            "id": _ident(p["id"]),
            "points": [_position(pt, "stroke point") for pt in points],
            "color": _vec(p.get("color", DEFAULT_STROKE_COLOR), 4, "stroke color", 0.0, 1.0),
            "width": _num(p.get("width", DEFAULT_STROKE_WIDTH_M), "stroke width", 1e-5, 0.05),
        }
    if kind in (OpKind.STROKE_ERASE, OpKind.LANDMARK_DELETE):
        return {"id": _ident(p["id"])}
    if kind is OpKind.LANDMARK_PLACE:
        return {
            "id": _ident(p["id"]),
            "position": _position(p["position"], "landmark position"),
            "label": _text(p.get("label", ""), "landmark label", optional=False),
            "structure": _text(p.get("structure"), "landmark structure", optional=True),
        }
    if kind is OpKind.LANDMARK_MOVE:
        return {"id": _ident(p["id"]), "position": _position(p["position"], "landmark position")}
    if kind is OpKind.CLIP_SET:
        normal = _vec(p["normal"], 3, "clip plane normal", -1e3, 1e3)
        if math.sqrt(sum(c * c for c in normal)) < 1e-6:
            raise ProtocolError("clip plane normal is zero", "state")
        d = _num(p["d"], "clip plane d", -MAX_COORD_M, MAX_COORD_M)
        return {"index": _index(p["index"]), "normal": normal, "d": d}
    if kind is OpKind.CLIP_CLEAR:
        return {"index": _index(p["index"])}
    if kind is OpKind.TRANSFORM:
        q = _vec(p["orientation"], 4, "transform orientation", -1.0, 1.0)
        if abs(math.sqrt(sum(c * c for c in q)) - 1.0) > 1e-3:
            raise ProtocolError("transform orientation is not a unit quaternion", "state")
        return {
            "position": _position(p["position"], "transform position"),
            "orientation": q,
            "scale": _num(p.get("scale", 1.0), "transform scale", 0.01, 100.0),
        }
    # SELECT
    return {"structure": _text(p.get("structure"), "selected structure", optional=True)}


# ---------------------------------------------------------------------------------------------------
# state channel: messages
# ---------------------------------------------------------------------------------------------------

_STATE_TYPES = frozenset(
    {MessageType.STATE_OP, MessageType.SNAPSHOT_REQUEST, MessageType.SNAPSHOT_CHUNK, MessageType.STATE_DIGEST}
)


def _check_lamport(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LAMPORT:
        raise ProtocolError(f"lamport must be an integer in 1..2**53-1, got {value!r}", "state")
    return value


def encode_state(message: StateMessage) -> bytes:
    """Encode a state-channel message (``StateOp``, ``SnapshotRequest``, ``SnapshotChunk``, ``StateDigest``).

    A ``StateOp`` payload is validated and normalised with ``validate_payload`` and sent as canonical
    JSON (at most ``MAX_PAYLOAD_BYTES``). Raises ``ProtocolError`` for invalid fields.
    """
    v = PROTOCOL_VERSION
    participant = _uint(message.participant, _U16, "participant", "state")
    if isinstance(message, StateOp):
        payload = canonical_json(validate_payload(message.kind, message.payload))
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ProtocolError(f"op payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}", "state")
        seq = _uint(message.seq, _U32, "seq", "state")
        if seq == 0:
            raise ProtocolError("state op seq starts at 1", "state")
        lamport = _check_lamport(message.lamport)
        time_us = _time_us(message.sender_time, "sender_time", "state")
        kind = OpKind(message.kind)
        header = OP_HEADER.pack(
            v, MessageType.STATE_OP, kind, 0, participant, len(payload), seq, lamport, time_us
        )
        return header + payload
    if isinstance(message, SnapshotRequest):
        request_id = _uint(message.request_id, _U32, "request_id", "state")
        return SNAPSHOT_REQUEST.pack(v, MessageType.SNAPSHOT_REQUEST, participant, request_id)
    if isinstance(message, SnapshotChunk):
        _check_chunk(message.index, message.count, message.total, len(message.data))
        header = SNAPSHOT_HEADER.pack(
            v, MessageType.SNAPSHOT_CHUNK, participant, _uint(message.snapshot_id, _U32, "snapshot_id", "state"),
            message.index, message.count, message.total,
        )
        return header + bytes(message.data)
    if isinstance(message, StateDigest):
        if not isinstance(message.digest, bytes) or len(message.digest) != 32:
            raise ProtocolError("digest must be 32 bytes (sha256)", "state")
        return DIGEST.pack(
            v, MessageType.STATE_DIGEST, participant, _uint(message.op_count, _U32, "op_count", "state"),
            _time_us(message.sender_time, "sender_time", "state"), message.digest,
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


def decode_state(data: bytes | bytearray | memoryview) -> StateMessage:
    """Decode a ``state`` channel message; ``ProtocolError`` for anything malformed.

    A ``StateOp`` comes back with its payload validated and normalised (``validate_payload``).
    """
    buf = _as_bytes(data, "state")
    mtype = _check_header(buf, "state", STATE_MAX_BYTES, _STATE_TYPES)
    if mtype is MessageType.STATE_OP:
        if len(buf) < OP_HEADER.size:
            raise ProtocolError(f"truncated op: {len(buf)} bytes, need {OP_HEADER.size}", "state")
        _, _, kind, reserved, participant, length, seq, lamport, time_us = OP_HEADER.unpack_from(buf)
        if reserved:
            raise ProtocolError(f"reserved op byte is {reserved}, must be 0", "state")
        try:
            kind = OpKind(kind)
        except ValueError:
            raise ProtocolError(f"unknown op kind {kind}", "state") from None
        if seq == 0:
            raise ProtocolError("state op seq 0 (sequences start at 1)", "state")
        _check_lamport(lamport)
        _check_size(buf, OP_HEADER.size + length, f"op with a {length}-byte payload", "state")
        payload = validate_payload(kind, parse_json(buf[OP_HEADER.size :], f"{kind.name} payload"))
        return StateOp(participant, seq, lamport, kind, payload, time_us / 1e6)
    if mtype is MessageType.SNAPSHOT_REQUEST:
        _check_size(buf, SNAPSHOT_REQUEST.size, "snapshot request", "state")
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
    _check_size(buf, DIGEST.size, "state digest", "state")
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


# ---------------------------------------------------------------------------------------------------
# clock channel
# ---------------------------------------------------------------------------------------------------

_CLOCK_TYPES = frozenset({MessageType.CLOCK_PING, MessageType.CLOCK_PONG, MessageType.CLOCK_SHARE})


def encode_clock(message: ClockMessage) -> bytes:
    """Encode a ``ClockPing`` (16 bytes), ``ClockPong`` (32) or ``ClockShare`` (24); times in seconds,
    sent as int64 us (a share's rtt as uint32 us)."""
    participant = _uint(message.participant, _U16, "participant", "clock")
    if isinstance(message, ClockShare):
        if not isinstance(message.rtt, (int, float)) or not 0.0 <= message.rtt < _U32 / 1e6:
            raise ProtocolError(f"rtt must be in 0 .. {_U32 / 1e6:.0f} s, got {message.rtt!r}", "clock")
        local_us = _time_us(message.local_time, "local_time", "clock")
        relay_us = _time_us(message.relay_time, "relay_time", "clock")
        return SHARE.pack(PROTOCOL_VERSION, MessageType.CLOCK_SHARE, participant, round(message.rtt * 1e6), local_us, relay_us)
    ping_id = _uint(message.ping_id, _U32, "ping_id", "clock")
    t0 = _time_us(message.t0, "t0", "clock")
    if isinstance(message, ClockPing):
        return PING.pack(PROTOCOL_VERSION, MessageType.CLOCK_PING, participant, ping_id, t0)
    if isinstance(message, ClockPong):
        t1 = _time_us(message.t1, "t1", "clock")
        t2 = _time_us(message.t2, "t2", "clock")
        return PONG.pack(PROTOCOL_VERSION, MessageType.CLOCK_PONG, participant, ping_id, t0, t1, t2)
    raise ProtocolError(f"not a clock message: {type(message).__name__}", "clock")


def decode_clock(data: bytes | bytearray | memoryview) -> ClockMessage:
    """Decode a ``clock`` channel message; ``ProtocolError`` for anything malformed.

    A pong whose responder times go backwards (t2 < t1) is rejected: it cannot come from a monotonic clock.
    """
    buf = _as_bytes(data, "clock")
    mtype = _check_header(buf, "clock", CLOCK_MAX_BYTES, _CLOCK_TYPES)
    if mtype is MessageType.CLOCK_PING:
        _check_size(buf, PING.size, "ping", "clock")
        _, _, participant, ping_id, t0 = PING.unpack(buf)
        return ClockPing(participant, ping_id, t0 / 1e6)
    if mtype is MessageType.CLOCK_SHARE:
        _check_size(buf, SHARE.size, "clock share", "clock")
        _, _, participant, rtt_us, local_us, relay_us = SHARE.unpack(buf)
        return ClockShare(participant, rtt_us / 1e6, local_us / 1e6, relay_us / 1e6)
    _check_size(buf, PONG.size, "pong", "clock")
    _, _, participant, ping_id, t0, t1, t2 = PONG.unpack(buf)
    if t2 < t1:
        raise ProtocolError("pong sent before it was received (t2 < t1)", "clock")
    return ClockPong(participant, ping_id, t0 / 1e6, t1 / 1e6, t2 / 1e6)


#: Decoder of each channel, by label.
DECODERS = {"pose": decode_pose_channel, "state": decode_state, "clock": decode_clock}


def decode(channel: str, data: bytes | bytearray | memoryview) -> PoseRecord | PoseBundle | StateMessage | ClockMessage:
    """Decode a message that arrived on data channel ``channel``; ``ProtocolError`` for an unknown channel too."""
    decoder = DECODERS.get(channel)
    if decoder is None:
        raise ProtocolError(f"unknown data channel {channel!r}")
    return decoder(data)
