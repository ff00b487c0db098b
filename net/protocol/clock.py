"""The ``clock`` channel: ping and pong for NTP-style offset and round trip, and the relay room's clock share.

Unordered, no retransmits. ``net.clock`` turns pongs into clock estimates; in a relay room a
participant pings only the relay and tells the room where its clock stands against the relay's
(``ClockShare``). Layouts and worked examples: docs/protocol.md.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

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

PING = struct.Struct("<BBHIq")  # version, type, participant, ping_id, t0_us
PONG = struct.Struct("<BBHIqqq")  # version, type, participant, ping_id, t0_us, t1_us, t2_us
SHARE = struct.Struct("<BBHIqq")  # version, type, participant, rtt_us, local_us, relay_us


#: Largest message on the clock channel (a pong).
CLOCK_MAX_BYTES = PONG.size



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


ClockMessage = ClockPing | ClockPong | ClockShare


#: Message types of the clock channel.
CLOCK_TYPES: frozenset[int] = frozenset({MessageType.CLOCK_PING, MessageType.CLOCK_PONG, MessageType.CLOCK_SHARE})


def encode_clock(message: ClockMessage) -> bytes:
    """Encode a ``ClockPing`` (16 bytes), ``ClockPong`` (32) or ``ClockShare`` (24); times in seconds,
    sent as int64 us (a share's rtt as uint32 us)."""
    participant = uint(message.participant, U16, "participant", "clock")
    if isinstance(message, ClockShare):
        if not isinstance(message.rtt, (int, float)) or not 0.0 <= message.rtt < U32 / 1e6:
            raise ProtocolError(f"rtt must be in 0 .. {U32 / 1e6:.0f} s, got {message.rtt!r}", "clock")
        local_us = micros(message.local_time, "local_time", "clock")
        relay_us = micros(message.relay_time, "relay_time", "clock")
        return SHARE.pack(PROTOCOL_VERSION, MessageType.CLOCK_SHARE, participant, round(message.rtt * 1e6), local_us, relay_us)
    ping_id = uint(message.ping_id, U32, "ping_id", "clock")
    t0 = micros(message.t0, "t0", "clock")
    if isinstance(message, ClockPing):
        return PING.pack(PROTOCOL_VERSION, MessageType.CLOCK_PING, participant, ping_id, t0)
    if isinstance(message, ClockPong):
        t1 = micros(message.t1, "t1", "clock")
        t2 = micros(message.t2, "t2", "clock")
        return PONG.pack(PROTOCOL_VERSION, MessageType.CLOCK_PONG, participant, ping_id, t0, t1, t2)
    raise ProtocolError(f"not a clock message: {type(message).__name__}", "clock")


def decode_clock(data: bytes | bytearray | memoryview) -> ClockMessage:
    """Decode a ``clock`` channel message; ``ProtocolError`` for anything malformed.

    A pong whose responder times go backwards (t2 < t1) is rejected: it cannot come from a monotonic clock.
    """
    buf = as_bytes(data, "clock")
    mtype = check_header(buf, "clock", CLOCK_MAX_BYTES, CLOCK_TYPES)
    if mtype is MessageType.CLOCK_PING:
        check_size(buf, PING.size, "ping", "clock")
        _, _, participant, ping_id, t0 = PING.unpack(buf)
        return ClockPing(participant, ping_id, t0 / 1e6)
    if mtype is MessageType.CLOCK_SHARE:
        check_size(buf, SHARE.size, "clock share", "clock")
        _, _, participant, rtt_us, local_us, relay_us = SHARE.unpack(buf)
        return ClockShare(participant, rtt_us / 1e6, local_us / 1e6, relay_us / 1e6)
    check_size(buf, PONG.size, "pong", "clock")
    _, _, participant, ping_id, t0, t1, t2 = PONG.unpack(buf)
    if t2 < t1:
        raise ProtocolError("pong sent before it was received (t2 < t1)", "clock")
    return ClockPong(participant, ping_id, t0 / 1e6, t1 / 1e6, t2 / 1e6)
