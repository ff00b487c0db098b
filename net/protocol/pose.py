"""The ``pose`` channel: pose records (newest wins by sequence number) and the relay's pose bundles.

A pose record is one participant's tracked poses at one instant: a 20-byte header and 12 bytes per
present pose (position in 0.1 mm steps, orientation as its three smallest quaternion components).
The relay of a large room sends a ``POSE_BUNDLE`` instead: several senders' pose messages, unchanged,
each behind a length byte. Layouts and worked examples: docs/protocol.md.
"""

from __future__ import annotations

import enum
import functools
import math
import struct
from dataclasses import dataclass
from typing import TypedDict

from net.errors import ProtocolError
from net.protocol.common import (
    PROTOCOL_VERSION,
    U16,
    U32,
    MessageType,
    as_bytes,
    check_header,
    check_size,
    micros,
    uint,
)


class Buttons(enum.IntFlag):
    """Button bits of a pose record (uint16); bits 6, 7 and 14 are reserved and must be 0. Bit 15 is
    not a button but a flag the sender states: it is presenting (others may follow its viewpoint)."""

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
    #: the sender presents: followers render from its head (anyone may, observers too)
    PRESENTING = 1 << 15


_BUTTONS_MASK = 0xBF3F

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


@dataclass(frozen=True)
class WirePose:
    """A pose as it travels: ``position`` metres (x, y, z) in the room frame, ``orientation`` unit
    quaternion (x, y, z, w), OpenXR conventions (right-handed, +Y up, -Z forward)."""

    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    orientation: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)


class TrackedPoses(TypedDict, total=False):
    """The poses of a `PoseRecord` by name, and its buttons, as keyword arguments; a pose left out is
    not tracked, buttons left out are none."""

    head: WirePose
    left: WirePose
    right: WirePose
    pointer: WirePose
    buttons: Buttons


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
        ``Buttons`` bits held down, and ``Buttons.PRESENTING`` while the sender presents.
    """

    participant: int
    seq: int
    sender_time: float
    head: WirePose | None = None
    left: WirePose | None = None
    right: WirePose | None = None
    pointer: WirePose | None = None
    buttons: Buttons = Buttons.NONE


# ---------------------------------------------------------------------------------------------------
# Sequence numbers (RFC 1982 serial-number arithmetic on 32 bits)
# ---------------------------------------------------------------------------------------------------


def seq_next(seq: int) -> int:
    """The sequence number after ``seq``, wrapping from 2**32 - 1 to 0."""
    return (seq + 1) & U32


def seq_newer(a: int, b: int) -> bool:
    """True when uint32 sequence ``a`` is newer than ``b``, across wrap-around.

    ``a`` is newer when it is ahead of ``b`` by 1..2**31 - 1 modulo 2**32; at exactly 2**31 apart
    neither is newer (RFC 1982 leaves it undefined), so a stale record is never taken for new.
    """
    d = (a - b) & U32
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
# Encode and decode
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
    participant = uint(record.participant, U16, "participant", "pose")
    seq = uint(record.seq, U32, "seq", "pose")
    time_us = micros(record.sender_time, "sender_time", "pose")
    buttons = uint(int(record.buttons), U16, "buttons", "pose")
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
        check_header(buf, "pose", POSE_MAX_BYTES, _POSE_TYPES)  # raises, saying which check failed
        raise ProtocolError(f"truncated pose: {size} bytes, need {POSE_HEADER.size}", "pose")
    _, _, participant, seq, time_us, present, qidx, buttons = POSE_HEADER.unpack_from(buf)
    if present & 0xF0:
        raise ProtocolError(f"reserved presence bits set: 0x{present:02x}", "pose")
    if buttons & ~_BUTTONS_MASK:
        raise ProtocolError(f"reserved button bits set: 0x{buttons:04x}", "pose")
    count = _POSES_PRESENT[present]
    if size != POSE_HEADER.size + count * POSE_ENTRY.size:
        check_size(buf, POSE_HEADER.size + count * POSE_ENTRY.size, f"pose with {count} poses", "pose")
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
    participant, seq, time_us, *_ = _read_pose(as_bytes(data, "pose"))
    return participant, seq, time_us / 1e6


def decode_pose(data: bytes | bytearray | memoryview) -> PoseRecord:
    """Decode a ``pose`` channel message into a ``PoseRecord``; ``ProtocolError`` for anything else."""
    participant, seq, time_us, present, qidx, buttons, values = _read_pose(as_bytes(data, "pose"))
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
    ``POSE_BUNDLE_MAX_BYTES``; ``bundle_framed_poses`` splits a longer list.
    """
    if not 1 <= len(messages) <= 255:
        raise ProtocolError(f"a pose bundle carries 1 to 255 poses, got {len(messages)}", "pose")
    data = _join_bundle([frame_pose(message) for message in messages])
    if len(data) > POSE_BUNDLE_MAX_BYTES:
        raise ProtocolError(f"pose bundle of {len(data)} bytes, at most {POSE_BUNDLE_MAX_BYTES}", "pose")
    return data


def bundle_framed_poses(framed: list[bytes], max_bytes: int = POSE_BUNDLE_MAX_BYTES) -> list[bytes]:
    """As many bundles as the pose messages ``framed`` (each framed by ``frame_pose``) need, in order,
    each within ``max_bytes`` (at most ``POSE_BUNDLE_MAX_BYTES``): the relay frames each sender's pose
    once, when it arrives, and joins fifteen of them for each of sixteen receivers."""
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
    buf = as_bytes(data, "pose")
    check_header(buf, "pose", POSE_BUNDLE_MAX_BYTES, frozenset({MessageType.POSE_BUNDLE}))
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


def is_pose_bundle(data: bytes | bytearray | memoryview | str) -> bool:
    """True when a ``pose`` channel message says it is a ``POSE_BUNDLE`` (its type byte); the rest is
    for ``split_pose_bundle`` to check."""
    return not isinstance(data, str) and len(data) >= 2 and data[1] == MessageType.POSE_BUNDLE
