"""The data-channel wire protocol: pure, versioned encode/decode for the pose, state and clock channels.

One module per job, every public name re-exported here (``from net.protocol import encode_pose``):

- ``common``: the version byte, message types, header and field checks, strict canonical JSON;
- ``pose``: pose records (newest wins by serial-number comparison of their 32-bit sequence,
  ``seq_newer``, ``NewestWins``) and the relay's pose bundles;
- ``payloads``: the payload schema of each op kind (``validate_payload``);
- ``state``: state ops, snapshot requests and chunks, state digests;
- ``clock``: ping, pong and the relay room's clock share (``net.clock`` estimates from them);
- ``channels``: the three channels' options and limits, and the header fields a relay routes by.

Decoders accept ``bytes``/``bytearray``/``memoryview`` and either return a record or raise
``ProtocolError`` with a one-line reason; no other exception escapes them, whatever the input.
Encoders validate their record the same way (non-finite numbers, out-of-range values, oversized
payloads raise ``ProtocolError``), so what one peer sends another one accepts. The byte layouts,
quantisation and worked examples are in ``docs/protocol.md``; the test vectors in
``docs/protocol-vectors.json`` pin every message type and op kind byte for byte.
"""

from net.protocol.channels import (
    CHANNELS,
    MIN_MESSAGE_BYTES,
    PARTICIPANT_TYPES,
    REPLY_TYPES,
    ChannelSpec,
    message_type,
    reply_to,
    routed_id,
    sender,
    snapshot_asked,
)
from net.protocol.clock import (
    CLOCK_MAX_BYTES,
    CLOCK_TYPES,
    PING,
    PONG,
    SHARE,
    ClockMessage,
    ClockPing,
    ClockPong,
    ClockShare,
    decode_clock,
    encode_clock,
)
from net.protocol.common import PROTOCOL_VERSION, MessageType, canonical_json, parse_json
from net.protocol.payloads import (
    DEFAULT_STROKE_COLOR,
    DEFAULT_STROKE_WIDTH_M,
    MARK_KINDS,
    MAX_CLIP_PLANES,
    MAX_COORD_M,
    MAX_GEODESIC_MM,
    MAX_ID_CHARS,
    MAX_STROKE_POINTS,
    MAX_TEXT_CHARS,
    MAX_TWIN_MM,
    MEASURE_TOLERANCE_MM,
    ROOM_ROLES,
    OpKind,
    validate_payload,
)
from net.protocol.pose import (
    BUNDLE_HEADER,
    POSE_BUNDLE_MAX_BYTES,
    POSE_ENTRY,
    POSE_HEADER,
    POSE_MAX_BYTES,
    POSE_SLOTS,
    POSITION_STEP_M,
    QUAT_SCALE,
    RELAY_POSE_LEAD_S,
    RELAY_TICK_HZ,
    Buttons,
    NewestWins,
    PoseRecord,
    TrackedPoses,
    WirePose,
    bundle_framed_poses,
    decode_pose,
    encode_pose,
    encode_pose_bundle,
    frame_pose,
    is_pose_bundle,
    pose_key,
    seq_newer,
    seq_next,
    split_pose_bundle,
)
from net.protocol.state import (
    DIGEST,
    MAX_LAMPORT,
    MAX_PAYLOAD_BYTES,
    MAX_REASON_BYTES,
    MAX_SNAPSHOT_BYTES,
    MAX_SNAPSHOT_CHUNKS,
    OP_HEADER,
    REFUSAL,
    SNAPSHOT_CHUNK_BYTES,
    SNAPSHOT_HEADER,
    SNAPSHOT_REQUEST,
    STATE_MAX_BYTES,
    STATE_TYPES,
    SnapshotAssembler,
    SnapshotChunk,
    SnapshotRequest,
    StateDigest,
    StateMessage,
    StateOp,
    StateRefusal,
    chunk_snapshot,
    decode_state,
    encode_state,
    refusal_reason,
)

__all__ = [
    "BUNDLE_HEADER", "CHANNELS", "CLOCK_MAX_BYTES", "CLOCK_TYPES", "DEFAULT_STROKE_COLOR", "DEFAULT_STROKE_WIDTH_M",
    "DIGEST", "MARK_KINDS", "MAX_CLIP_PLANES", "MAX_COORD_M", "MAX_GEODESIC_MM", "MAX_ID_CHARS", "MAX_LAMPORT",
    "MAX_PAYLOAD_BYTES", "MAX_REASON_BYTES", "MAX_SNAPSHOT_BYTES", "MAX_SNAPSHOT_CHUNKS", "MAX_STROKE_POINTS", "MAX_TEXT_CHARS",
    "MAX_TWIN_MM", "MEASURE_TOLERANCE_MM", "MIN_MESSAGE_BYTES", "OP_HEADER", "PARTICIPANT_TYPES", "PING", "PONG",
    "POSE_BUNDLE_MAX_BYTES", "POSE_ENTRY", "POSE_HEADER", "POSE_MAX_BYTES", "POSE_SLOTS", "POSITION_STEP_M",
    "PROTOCOL_VERSION", "QUAT_SCALE", "REFUSAL", "RELAY_POSE_LEAD_S", "RELAY_TICK_HZ", "REPLY_TYPES", "ROOM_ROLES", "SHARE",
    "SNAPSHOT_CHUNK_BYTES", "SNAPSHOT_HEADER", "SNAPSHOT_REQUEST", "STATE_MAX_BYTES", "STATE_TYPES", "Buttons",
    "ChannelSpec", "ClockMessage", "ClockPing", "ClockPong", "ClockShare", "MessageType", "NewestWins", "OpKind",
    "PoseRecord", "SnapshotAssembler", "SnapshotChunk", "SnapshotRequest", "StateDigest", "StateMessage", "StateOp",
    "StateRefusal", "TrackedPoses", "WirePose", "bundle_framed_poses", "canonical_json", "chunk_snapshot", "decode_clock",
    "decode_pose", "decode_state", "encode_clock", "encode_pose", "encode_pose_bundle", "encode_state",
    "frame_pose", "is_pose_bundle", "message_type", "parse_json", "pose_key", "refusal_reason", "reply_to", "routed_id", "sender",
    "seq_newer", "seq_next", "snapshot_asked", "split_pose_bundle", "validate_payload",
]
