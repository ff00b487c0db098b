"""The ``.mvr`` container: a consultation recorded as it goes, one checked record after another.

A file is the 8-byte magic ``MVR\\x00\\r\\n\\x1a\\n`` followed by records, each::

    u32 length | u8 type | i64 time_us | body (length bytes) | u32 crc32(type, time_us, body)

(little-endian; ``time_us`` is microseconds since the recording started, on the recorder's monotonic
clock). The first record is the ``HEADER`` (format version, room, twin name and content hash, start
time); pose and state-op records hold the messages exactly as they travel on the data channels
(``net.protocol`` decodes them), prefixed by one direction byte. Records are only ever appended, so a
crash leaves a file whose every complete record is readable; the reader stops at the first record
that is cut short or fails its CRC and says so in one line (``Recording.problem``).

Limits keep a hostile file from costing memory: a record's body is at most ``MAX_BODY_BYTES`` (a
snapshot's 16 MiB plus room), the header at most ``MAX_HEADER_BYTES``; a record announcing more is
where reading stops. Layout, record kinds and versioning rules: docs/recording.md.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from net.errors import ProtocolError
from net.protocol import MAX_SNAPSHOT_BYTES, PoseRecord, StateOp, decode_pose, decode_state

log = logging.getLogger(__name__)

MAGIC = b"MVR\x00\r\n\x1a\n"
#: Version of the container and its record layouts; a reader refuses a newer major version.
FORMAT_VERSION = 1
RECORD_HEAD = struct.Struct("<IBq")  # body length, type, time_us
RECORD_CRC = struct.Struct("<I")
DIGEST_BODY = struct.Struct("<I32s")  # op_count, sha256 of SharedState
#: Largest body of any record (a full state snapshot is the largest), and of the header.
MAX_BODY_BYTES = MAX_SNAPSHOT_BYTES + 4096
MAX_HEADER_BYTES = 64 * 1024
#: Records are handed to the OS at least this often, and fsync'ed at least this often (seconds):
#: a crashed process loses at most ``FLUSH_INTERVAL_S``, a crashed machine ``SYNC_INTERVAL_S``.
FLUSH_INTERVAL_S = 0.25
SYNC_INTERVAL_S = 1.0


class RecordType(enum.IntEnum):
    """Type byte of a record."""

    HEADER = 1  # JSON: format_version, room, twin {name, sha256}, started_unix, recorder {index, id, name, role}
    PARTICIPANT = 2  # JSON: event ("join" | "leave"), index, id, name, role
    POSE = 3  # direction byte + one pose message as on the ``pose`` channel
    OP = 4  # direction byte + one state op as on the ``state`` channel
    DIGEST = 5  # u32 op_count + sha256 of the recorder's SharedState
    SNAPSHOT = 6  # canonical JSON of SharedState.snapshot(): state that reached the recorder other than by ops
    END = 7  # JSON: ended_unix; absent when the recorder crashed


class Direction(enum.IntEnum):
    """Whether the recorder's participant received or sent a message."""

    RECEIVED = 0
    SENT = 1


class RecordingError(ValueError):
    """A file that is not a readable recording (the message says what is wrong with which file)."""


@dataclass(frozen=True)
class Header:
    """What a recording is of. ``twin_sha256`` is the content hash of the twin the room used (hex, or
    None when the recorder had no twin loaded); ``started_unix`` UNIX seconds at time 0."""

    room: str
    twin_name: str | None
    twin_sha256: str | None
    started_unix: float
    recorder: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return {"format_version": self.format_version, "room": self.room,
                "twin": {"name": self.twin_name, "sha256": self.twin_sha256},
                "started_unix": self.started_unix, "recorder": self.recorder}  # fmt: skip


@dataclass(frozen=True)
class ParticipantEvent:
    """A participant joined or left at ``t`` (seconds into the recording)."""

    t: float
    event: str
    index: int
    id: str
    name: str
    role: str

    def to_json(self) -> dict[str, Any]:
        return {"event": self.event, "index": self.index, "id": self.id, "name": self.name, "role": self.role}


@dataclass(frozen=True)
class PoseEntry:
    """A pose message as it travelled (``raw``), decoded; ``t`` seconds into the recording."""

    t: float
    direction: Direction
    raw: bytes
    record: PoseRecord


@dataclass(frozen=True)
class OpEntry:
    """A state op as it travelled (``raw``), decoded; ``t`` seconds into the recording."""

    t: float
    direction: Direction
    raw: bytes
    op: StateOp


@dataclass(frozen=True)
class DigestEntry:
    """The recorder's state digest at ``t``: ``op_count`` ops applied, sha256 ``digest``."""

    t: float
    op_count: int
    digest: bytes


@dataclass(frozen=True)
class SnapshotEntry:
    """The recorder's whole state at ``t`` (canonical JSON), written when it changed other than by ops."""

    t: float
    body: bytes


Entry = ParticipantEvent | PoseEntry | OpEntry | DigestEntry | SnapshotEntry


@dataclass
class Recording:
    """A read recording: the header, every entry in file order, and what stopped the reading.

    ``problem`` is None for a file read to its end, else one line: where the file is cut short or
    corrupt (everything before it is in ``entries``). ``ended`` is False when the recorder never wrote
    its END record (it crashed, or is still writing). ``skipped`` counts records of unknown types (a
    newer minor version) and records whose message did not decode.
    """

    path: Path
    header: Header
    entries: list[Entry] = field(default_factory=list)
    problem: str | None = None
    ended: bool = False
    skipped: int = 0

    @property
    def duration(self) -> float:
        """Seconds from the start to the last entry."""
        return max((e.t for e in self.entries), default=0.0)

    @property
    def poses(self) -> list[PoseEntry]:
        return [e for e in self.entries if isinstance(e, PoseEntry)]

    @property
    def ops(self) -> list[OpEntry]:
        return [e for e in self.entries if isinstance(e, OpEntry)]

    @property
    def participants(self) -> list[ParticipantEvent]:
        return [e for e in self.entries if isinstance(e, ParticipantEvent)]

    @property
    def digests(self) -> list[DigestEntry]:
        return [e for e in self.entries if isinstance(e, DigestEntry)]

    def roster(self) -> dict[int, ParticipantEvent]:
        """Everyone who was ever in the room, by index (their latest join record)."""
        out: dict[int, ParticipantEvent] = {}
        for e in self.participants:
            if e.event == "join":
                out[e.index] = e
        return out

    def index_of(self, who: str) -> int:
        """The index of participant ``who`` (its id, name or index as text); ``RecordingError`` if absent."""
        roster = self.roster()
        for index, e in roster.items():
            if who in (e.id, e.name, str(index)):
                return index
        known = ", ".join(f"{e.id} ({e.role})" for e in roster.values()) or "nobody"
        raise RecordingError(f"{self.path}: no participant {who!r} in the recording; it holds {known}")


# ---------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------


def encode_record(rtype: RecordType, time_us: int, body: bytes) -> bytes:
    """One record's bytes (see the module docstring)."""
    if len(body) > MAX_BODY_BYTES:
        raise RecordingError(f"a {rtype.name} record of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
    head = RECORD_HEAD.pack(len(body), rtype, time_us)
    crc = zlib.crc32(body, zlib.crc32(head[4:]))
    return head + body + RECORD_CRC.pack(crc)


def _json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


class MvrWriter:
    """Appends records to a new ``.mvr`` file; see the module docstring for what a crash loses.

    Parameters
    ----------
    path
        The file to create (an existing one is replaced).
    header
        What the recording is of; written first.
    clock
        Monotonic seconds; record times are taken from it relative to when the writer was made,
        unless a record is given its time.
    """

    def __init__(self, path: str | os.PathLike[str], header: Header, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.clock = clock
        self.t0 = clock()
        self._file: BinaryIO = open(self.path, "wb")  # noqa: SIM115 - held open while recording
        self._flushed = self._synced = self.t0
        self.records = 0
        self._file.write(MAGIC)
        self.write(RecordType.HEADER, _json(header.to_json()), t=0.0)
        self.flush(sync=True)

    def now(self) -> float:
        """Seconds since the recording started."""
        return self.clock() - self.t0

    def write(self, rtype: RecordType, body: bytes, *, t: float | None = None) -> None:
        """Append one record at ``t`` seconds (now by default); flushes and syncs when they are due."""
        when = self.now() if t is None else t
        self._file.write(encode_record(rtype, round(when * 1e6), body))
        self.records += 1
        self.tick()

    def tick(self) -> None:
        """Hand buffered records to the OS every ``FLUSH_INTERVAL_S`` and fsync every ``SYNC_INTERVAL_S``
        (call it at least that often when nothing is written, or the last records wait in the buffer)."""
        now = self.clock()
        if now - self._synced >= SYNC_INTERVAL_S:
            self.flush(sync=True)
        elif now - self._flushed >= FLUSH_INTERVAL_S:
            self.flush()

    def flush(self, *, sync: bool = False) -> None:
        """Hand the buffer to the OS (and with ``sync`` to the disk)."""
        self._file.flush()
        self._flushed = self.clock()
        if sync:
            os.fsync(self._file.fileno())
            self._synced = self._flushed

    def participant(self, event: ParticipantEvent) -> None:
        self.write(RecordType.PARTICIPANT, _json(event.to_json()), t=event.t)

    def message(self, rtype: RecordType, direction: Direction, raw: bytes, *, t: float | None = None) -> None:
        """A pose (``RecordType.POSE``) or state op (``RecordType.OP``) message as it travelled."""
        self.write(rtype, bytes([direction]) + bytes(raw), t=t)

    def digest(self, op_count: int, digest: bytes, *, t: float | None = None) -> None:
        self.write(RecordType.DIGEST, DIGEST_BODY.pack(op_count, digest), t=t)

    def snapshot(self, body: bytes, *, t: float | None = None) -> None:
        self.write(RecordType.SNAPSHOT, body, t=t)

    def close(self) -> None:
        """Write the END record and close the file (idempotent)."""
        if self._file.closed:
            return
        self.write(RecordType.END, _json({"ended_unix": time.time()}))
        self.flush(sync=True)
        self._file.close()


# ---------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------


def _records(f: BinaryIO, size: int, path: Path) -> Iterator[tuple[int, RecordType | int, int, bytes] | str]:
    """(offset, type, time_us, body) of each good record, then one line saying why reading stopped (if it did)."""
    offset = len(MAGIC)
    while offset < size:
        head = f.read(RECORD_HEAD.size)
        if len(head) < RECORD_HEAD.size:
            yield f"{path}: truncated at byte {offset}: a record header cut short ({size - offset} of {RECORD_HEAD.size} bytes)"
            return
        length, rtype, time_us = RECORD_HEAD.unpack(head)
        limit = MAX_HEADER_BYTES if offset == len(MAGIC) else MAX_BODY_BYTES
        if length > limit:
            yield f"{path}: corrupt at byte {offset}: a record announces {length} bytes, at most {limit} allowed"
            return
        end = offset + RECORD_HEAD.size + length + RECORD_CRC.size
        if end > size:
            yield f"{path}: truncated at byte {offset}: a {length}-byte record cut short after {size - offset} bytes"
            return
        body = f.read(length)
        (crc,) = RECORD_CRC.unpack(f.read(RECORD_CRC.size))
        if zlib.crc32(body, zlib.crc32(head[4:])) != crc:
            yield f"{path}: corrupt at byte {offset}: record CRC mismatch"
            return
        yield offset, rtype, time_us, body
        offset = end


def _parse_json(body: bytes) -> dict[str, Any]:
    value = json.loads(body.decode("utf-8"))
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _header(body: bytes, path: Path) -> Header:
    try:
        doc = _parse_json(body)
        version = doc["format_version"]
        if not isinstance(version, int) or version < 1:
            raise ValueError(f"bad format version {version!r}")
        if version > FORMAT_VERSION:
            raise RecordingError(f"{path}: format version {version} is newer than this reader's {FORMAT_VERSION}; "
                                 "upgrade medverse")
        twin = doc.get("twin") or {}
        return Header(str(doc["room"]), twin.get("name"), twin.get("sha256"), float(doc["started_unix"]),
                      dict(doc.get("recorder") or {}), version)  # fmt: skip
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        if isinstance(exc, RecordingError):
            raise
        raise RecordingError(f"{path}: malformed header: {exc}") from None


def _entry(rtype: int, t: float, body: bytes) -> Entry | None:
    """The entry of one record, None for a type this reader does not know; raises ValueError/ProtocolError."""
    if rtype == RecordType.PARTICIPANT:
        d = _parse_json(body)
        if d["event"] not in ("join", "leave"):
            raise ValueError(f"unknown participant event {d['event']!r}")
        return ParticipantEvent(t, str(d["event"]), int(d["index"]), str(d["id"]), str(d["name"]), str(d["role"]))
    if rtype in (RecordType.POSE, RecordType.OP):
        if not body:
            raise ValueError("empty message record")
        direction, raw = Direction(body[0]), body[1:]
        if rtype == RecordType.POSE:
            return PoseEntry(t, direction, raw, decode_pose(raw))
        op = decode_state(raw)
        if not isinstance(op, StateOp):
            raise ValueError(f"an OP record holds a {type(op).__name__}")
        return OpEntry(t, direction, raw, op)
    if rtype == RecordType.DIGEST:
        op_count, digest = DIGEST_BODY.unpack(body)
        return DigestEntry(t, op_count, digest)
    if rtype == RecordType.SNAPSHOT:
        return SnapshotEntry(t, body)
    return None


def read_recording(path: str | os.PathLike[str]) -> Recording:
    """Read a recording; everything before a cut-short or corrupt tail (reported in ``problem``).

    Raises
    ------
    RecordingError
        Not a recording (no magic, no valid header), or of a newer format version.
    """
    path = Path(path)
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise RecordingError(f"{path}: cannot open: {exc.strerror or exc}") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if f.read(len(MAGIC)) != MAGIC:
            raise RecordingError(f"{path}: not a medverse recording (.mvr): wrong magic bytes")
        records = _records(f, size, path)
        first = next(records, None)
        if first is None or isinstance(first, str) or first[1] != RecordType.HEADER:
            why = first if isinstance(first, str) else "the first record is not a header"
            raise RecordingError(f"{path}: no readable header ({why})")
        recording = Recording(path, _header(first[3], path))
        for item in records:
            if isinstance(item, str):
                recording.problem = item
                break
            offset, rtype, time_us, body = item
            if rtype == RecordType.END:
                recording.ended = True
                continue
            try:
                entry = _entry(rtype, time_us / 1e6, body)
            except (ValueError, KeyError, TypeError, struct.error, ProtocolError) as exc:
                recording.skipped += 1
                if recording.skipped == 1:
                    log.warning("%s: skipped a bad record at byte %d: %s", path, offset, exc)
                continue
            if entry is None:
                recording.skipped += 1
                continue
            recording.entries.append(entry)
    return recording
