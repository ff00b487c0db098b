"""``SessionRecorder``: records what one participant of a consultation sends and receives, as it goes.

Attach it to a :class:`net.participant.Participant` before the participant starts, :meth:`begin` once
it has joined (with the ``welcome``), :meth:`close` after it stopped::

    recorder = SessionRecorder("session.mvr", twin_name="brain", twin_sha256=digest)
    recorder.attach(participant)
    welcome = await participant.start()
    recorder.begin(welcome)
    ...
    await participant.stop()
    recorder.close()

It keeps every pose and state op the participant sends (``on_sent``) and applies from the others
(``on_pose``, ``on_op``) as the bytes that travelled, every join and leave with its role
(``on_signal``), and once a second the participant's state digest. State that reaches the participant
other than by a single op (a snapshot merged on joining or after a resync) is written as a
``SNAPSHOT`` record the second it shows: the recorder keeps a replica of the state from the recorded
ops and compares the digests, so a replay always reaches the state the participant had.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from net.protocol import PoseRecord, StateOp, decode_state, encode_state
from net.state import SharedState
from sessions.recording.format import (
    FLUSH_INTERVAL_S,
    Direction,
    Header,
    MvrWriter,
    ParticipantEvent,
    RecordType,
)

if TYPE_CHECKING:
    from net.participant import Participant

log = logging.getLogger(__name__)

#: Seconds between digest records (and checks that the recorded ops explain the participant's state).
DIGEST_INTERVAL_S = 1.0


class SessionRecorder:
    """Writes one participant's view of a consultation to an ``.mvr`` file (see the module docstring).

    Parameters
    ----------
    path
        The file to write.
    twin_name, twin_sha256
        The twin the room uses (library name or file) and its content hash (hex), for the header.
    """

    def __init__(self, path: str | os.PathLike[str], *, twin_name: str | None = None, twin_sha256: str | None = None) -> None:
        self.path = path
        self.twin_name = twin_name
        self.twin_sha256 = twin_sha256
        self.writer: MvrWriter | None = None
        self._participant: Participant | None = None
        self._replica = SharedState(0)
        self._people: dict[str, ParticipantEvent] = {}  # by id: who is in the room now
        self._clock: Callable[[], float] = time.monotonic
        self._t0 = 0.0

    # --- wiring -------------------------------------------------------------------------------------

    def attach(self, participant: Participant) -> None:
        """Observe ``participant`` (its callbacks already set are still called)."""
        self._participant = participant
        self._clock = participant.clock
        on_pose, on_op, on_sent, on_signal = participant.on_pose, participant.on_op, participant.on_sent, participant.on_signal

        def pose(record: PoseRecord, latency: float | None) -> None:
            self._received_pose(record)
            if on_pose is not None:
                on_pose(record, latency)

        def op(message: StateOp, latency: float | None) -> None:
            self._received_op(message)
            if on_op is not None:
                on_op(message, latency)

        def sent(channel: str, data: bytes, sender_time: float) -> None:
            self._sent(channel, data, sender_time)
            if on_sent is not None:
                on_sent(channel, data, sender_time)

        def signal(message: dict[str, Any]) -> None:
            self._signal(message)
            if on_signal is not None:
                on_signal(message)

        participant.on_pose, participant.on_op, participant.on_sent, participant.on_signal = pose, op, sent, signal

    def begin(self, welcome: dict[str, Any]) -> None:
        """Start the file once the participant has joined: header, everyone in the room, the clock's zero."""
        p = self._participant
        if p is None:
            raise RuntimeError("attach the recorder to a participant before begin")
        self._t0 = self._clock()
        me: dict[str, Any] = {"index": int(welcome["index"]), "id": str(welcome["participant"]),
              "name": str(welcome.get("name") or welcome["participant"]), "role": str(welcome.get("role", ""))}  # fmt: skip
        named = welcome.get("twin")
        twin: dict[str, Any] = named if isinstance(named, dict) else {}
        header = Header(str(welcome["room"]), self.twin_name or twin.get("name"), self.twin_sha256 or twin.get("sha256"),
                        time.time(), me)  # fmt: skip
        self.writer = MvrWriter(self.path, header, clock=self._clock)
        self.writer.t0 = self._t0
        self._replica = SharedState(me["index"])
        self._joined(me)
        for peer in welcome.get("peers", []):
            self._joined(peer)
        p.spawn(self._loop())
        log.info("recording %s in %s to %s", me["id"], header.room, self.path)

    def close(self) -> None:
        """Write a last digest and the END record, and close the file (idempotent)."""
        if self.writer is None:
            return
        self._check_state()
        for person in list(self._people.values()):
            self._left(person.id)
        self.writer.close()
        log.info("recorded %d records to %s", self.writer.records, self.path)
        self.writer = None

    async def _loop(self) -> None:
        last_digest = self._clock()
        while self.writer is not None:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            if self.writer is None:
                return
            if self._clock() - last_digest >= DIGEST_INTERVAL_S:
                last_digest = self._clock()
                self._check_state()
            self.writer.tick()

    # --- what happens -------------------------------------------------------------------------------

    def _now(self) -> float:
        return self._clock() - self._t0

    def _sent(self, channel: str, data: bytes, sender_time: float) -> None:
        if self.writer is None:
            return
        t = sender_time - self._t0
        if channel == "pose":
            self.writer.message(RecordType.POSE, Direction.SENT, data, t=t)
        elif channel == "state":
            self.writer.message(RecordType.OP, Direction.SENT, data, t=t)
            op = decode_state(data)
            if isinstance(op, StateOp):
                self._replica.apply(op)

    def _received_pose(self, record: PoseRecord) -> None:
        p = self._participant
        if self.writer is None or p is None:
            return
        remote = p.remotes.get(record.participant)
        if remote is None or remote.pose_message is None:
            return
        self.writer.message(RecordType.POSE, Direction.RECEIVED, remote.pose_message, t=self._now())

    def _received_op(self, op: StateOp) -> None:
        if self.writer is None:
            return
        # The receiver keeps the decoded op; its canonical encoding is the bytes that travelled.
        self.writer.message(RecordType.OP, Direction.RECEIVED, encode_state(op), t=self._now())
        self._replica.apply(op)

    def _signal(self, message: dict[str, Any]) -> None:
        if self.writer is None:
            return
        with contextlib.suppress(KeyError, TypeError, ValueError):
            if message.get("type") == "peer-joined":
                self._joined(message["peer"])
            elif message.get("type") == "peer-left":
                self._left(str(message["participant"]))

    def _joined(self, peer: dict[str, Any]) -> None:
        assert self.writer is not None
        pid = str(peer.get("participant", peer.get("id", "")))
        event = ParticipantEvent(self._now(), "join", int(peer["index"]), pid, str(peer.get("name") or pid),
                                 str(peer.get("role", "")))  # fmt: skip
        self._people[pid] = event
        self.writer.participant(event)

    def _left(self, pid: str) -> None:
        assert self.writer is not None
        person = self._people.pop(pid, None)
        if person is not None:
            self.writer.participant(ParticipantEvent(self._now(), "leave", person.index, person.id, person.name, person.role))

    def _check_state(self) -> None:
        """A digest record; first a snapshot when the recorded ops do not explain the participant's state."""
        p = self._participant
        if self.writer is None or p is None:
            return
        state = p.state
        if state.digest() != self._replica.digest():
            body = state.snapshot_bytes()
            self.writer.snapshot(body, t=self._now())
            self._replica.merge_snapshot(body)
        self.writer.digest(state.op_count, state.digest(), t=self._now())
