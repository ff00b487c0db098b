"""The three data channels (options, size limits, the types each carries) and the header fields a relay routes by.

A relay forwards messages without decoding them: it reads the type, the sender and, for replies and
snapshot requests, who the message is for. Those reads live here, beside the layouts they depend
on, so that the relay holds no byte offsets of its own. Every message but the state op starts with
``<BBHI``: version, type, participant (uint16) and a uint32 (sequence, request, snapshot or ping id,
op count...); the state op has its participant at offset 4 (docs/protocol.md).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from net.errors import ProtocolError
from net.protocol.clock import CLOCK_MAX_BYTES, CLOCK_TYPES
from net.protocol.common import PROTOCOL_VERSION, U16, MessageType
from net.protocol.pose import POSE_BUNDLE_MAX_BYTES
from net.protocol.state import SNAPSHOT_REQUEST, STATE_MAX_BYTES, STATE_TYPES


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

#: Message types a participant sends on each channel (a pose bundle comes only from the relay).
PARTICIPANT_TYPES: dict[str, frozenset[int]] = {
    "pose": frozenset({MessageType.POSE}),
    "state": STATE_TYPES,
    "clock": CLOCK_TYPES,
}

#: The first fields of every message but the state op: version, type, participant, a uint32.
_PREFIX = struct.Struct("<BBHI")
#: The smallest message there is (a snapshot request); nothing shorter is looked at.
MIN_MESSAGE_BYTES = SNAPSHOT_REQUEST.size
_OP_PARTICIPANT = struct.Struct("<H")
_OP_PARTICIPANT_AT = struct.calcsize("<BBBB")
#: Replies routed to one requester, named by the upper 16 bits of their id (``routed_id``); a refusal's
#: ``to`` sits in those same bits (offset 6), so it is routed to the op's sender alike.
REPLY_TYPES = frozenset({MessageType.SNAPSHOT_CHUNK, MessageType.CLOCK_PONG, MessageType.STATE_REFUSAL})


def message_type(data: bytes, channel: str) -> MessageType:
    """The type of a message a participant sent on ``channel``, from its first two bytes.

    Raises ``ProtocolError`` when it is shorter than any message, of another version, or of a type
    that ``channel`` does not carry from a participant. The rest of the message is not checked.
    """
    if len(data) < MIN_MESSAGE_BYTES:
        raise ProtocolError(f"truncated: {len(data)} bytes, need at least {MIN_MESSAGE_BYTES}", channel)
    if data[0] != PROTOCOL_VERSION:
        raise ProtocolError(f"unknown version {data[0]} (this peer speaks {PROTOCOL_VERSION})", channel)
    if data[1] not in PARTICIPANT_TYPES.get(channel, ()):
        raise ProtocolError(f"unknown message type 0x{data[1]:02x}", channel)
    return MessageType(data[1])


def sender(data: bytes) -> int:
    """The participant a message (already passed by ``message_type``) says it comes from."""
    if data[1] == MessageType.STATE_OP:
        return int(_OP_PARTICIPANT.unpack_from(data, _OP_PARTICIPANT_AT)[0])
    return int(_PREFIX.unpack_from(data)[2])


def routed_id(requester: int, low: int) -> int:
    """A uint32 id (of a ping or snapshot request) that names ``requester`` in its upper 16 bits, so that a
    relay routes the reply (pong, snapshot chunk) back from its header alone; ``low`` fills the lower 16."""
    return ((requester & U16) << 16) | (low & U16)


def reply_to(data: bytes) -> int:
    """The requester a reply (``REPLY_TYPES``: pong, snapshot chunk, refusal) is for: the upper 16 bits of its id
    (a refusal's ``to``)."""
    return int(_PREFIX.unpack_from(data)[3]) >> 16


def snapshot_asked(data: bytes) -> int:
    """The participant a snapshot request asks (the lower 16 bits of its ``request_id``; 0: any one)."""
    return int(_PREFIX.unpack_from(data)[3]) & U16
