"""What every message shares: the version byte, the type byte, header and field checks, strict JSON.

Every message starts with a version byte (``PROTOCOL_VERSION``) and a type byte (``MessageType``); all
integers are little-endian; times are int64 microseconds on the sender's monotonic clock (seconds,
float, in the Python records). The helpers here raise ``ProtocolError`` with a one-line reason and
nothing else, whatever the input.
"""

from __future__ import annotations

import enum
import json
import math
from typing import Any

from net.errors import ProtocolError

#: Version byte of every message; any change of a layout, type or op kind takes a new number.
#: Version 2 added the pose bundle (type 0x02), version 3 the clock share (type 0x22), version 4 the
#: measurement, measurement-delete and clear-marks op kinds (10, 11, 12), version 5 the set-role op kind (13)
#: and the state refusal (type 0x14); every earlier layout is unchanged.
PROTOCOL_VERSION = 5


class MessageType(enum.IntEnum):
    """Type byte (offset 1) of every message. Each channel accepts only its own types."""

    POSE = 0x01
    POSE_BUNDLE = 0x02
    STATE_OP = 0x10
    SNAPSHOT_REQUEST = 0x11
    SNAPSHOT_CHUNK = 0x12
    STATE_DIGEST = 0x13
    STATE_REFUSAL = 0x14
    CLOCK_PING = 0x20
    CLOCK_PONG = 0x21
    CLOCK_SHARE = 0x22


U16 = 0xFFFF
U32 = 0xFFFFFFFF
MAX_TIME_US = 2**63 - 1


def as_bytes(data: object, channel: str) -> bytes:
    """``data`` as bytes (from ``bytes``, ``bytearray`` or ``memoryview``); a text message is an error."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, str):
        raise ProtocolError("text message on a binary channel", channel)
    raise ProtocolError(f"not a message: {type(data).__name__}", channel)


def check_header(buf: bytes, channel: str, max_bytes: int, types: frozenset[int]) -> MessageType:
    """The type of ``buf`` after checking its length (2..``max_bytes``), version and type (one of ``types``)."""
    if len(buf) < 2:
        raise ProtocolError(f"truncated: {len(buf)} bytes, need at least 2", channel)
    if len(buf) > max_bytes:
        raise ProtocolError(f"oversized: {len(buf)} bytes, at most {max_bytes}", channel)
    if buf[0] != PROTOCOL_VERSION:
        raise ProtocolError(f"unknown version {buf[0]} (this peer speaks {PROTOCOL_VERSION})", channel)
    if buf[1] not in types:
        raise ProtocolError(f"unknown message type 0x{buf[1]:02x}", channel)
    return MessageType(buf[1])


def check_size(buf: bytes, need: int, what: str, channel: str) -> None:
    """``buf`` is exactly ``need`` bytes long."""
    if len(buf) < need:
        raise ProtocolError(f"truncated {what}: {len(buf)} bytes, need {need}", channel)
    if len(buf) > need:
        raise ProtocolError(f"{what} has {len(buf) - need} trailing bytes", channel)


def micros(t: float, what: str, channel: str) -> int:
    """Seconds as the int64 microseconds that decode (``us / 1e6``) back to exactly ``t``."""
    if not isinstance(t, (int, float)) or not math.isfinite(t):
        raise ProtocolError(f"{what} is not a finite number: {t!r}", channel)
    us = round(t * 1e6)
    if us / 1e6 != t:  # the product rounded the other way: take the integer that decodes (us / 1e6) back to t
        us = next((c for c in (us - 1, us + 1) if c / 1e6 == t), us)
    if abs(us) > MAX_TIME_US:
        raise ProtocolError(f"{what} out of range: {t!r} s", channel)
    return us


def uint(value: object, limit: int, what: str, channel: str) -> int:
    """``value`` as an integer in 0..``limit`` (a bool is not one)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise ProtocolError(f"{what} must be an integer in 0..{limit}, got {value!r}", channel)
    return value


# ---------------------------------------------------------------------------------------------------
# Strict JSON (op payloads, snapshots)
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
