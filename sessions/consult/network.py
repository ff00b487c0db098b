"""The participant's network off the frame thread: :class:`NetThread` and the frame side's :class:`FrameRoom`.

(``join`` runs the network in a process of its own by default, :class:`~sessions.consult.netproc.NetProcess`,
which runs a ``NetThread`` there and answers the frame side as one does: :class:`Network`.)

The participant's asyncio loop runs in a background thread, so a rendered frame (10-70 ms in software
GL) or a slow start-up (loading the twin, making a GL context) never delays what arrives: every pose
and op is handled, and its one-way latency stamped by the net layer, on receipt. The frame thread
only reads what the net thread left for it:

- **poses**: the newest record per remote (newest wins), with its name and role;
- **ops**: each op the participant applied, with its sender's name, through a queue;
- **refusals**: each refusal of one of our ops that came back from the room (a peer's or the relay's
  ``STATE_REFUSAL``, ``Participant.on_refused``), through a queue;
- **presence**: arrival times and latencies, noted on receipt (:class:`~sessions.consult.presence.Presence`
  is locked);
- what goes out (a pose record, an op) is handed to the loop (``call_soon_threadsafe``); an op is made
  on the loop and its result awaited, since the bridge compares the room's state with it at once.

The room's :class:`~net.state.SharedState` is the net thread's; the frame thread's bridge works on a
replica (:class:`FrameRoom`) fed by the op queue, and refreshed from a snapshot when the room's state
changed other than by an op (a late joiner's merge, a resync).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from net.eventloop import loop_factory
from net.protocol import Buttons, OpKind, PoseRecord, StateOp, StateRefusal, TrackedPoses
from net.signaling_client import RoomTwin
from net.state import SharedState
from sessions.consult.presence import Presence

if TYPE_CHECKING:
    from net.participant import Participant

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: How long the frame thread waits for the loop to do something for it (s).
CALL_TIMEOUT_S = 10.0
#: How often a thread holding the GIL is asked to hand it over (s; Python's default is 5 ms).
SWITCH_INTERVAL_S = 0.0005
#: The simulator's frame thread's nice value above the net thread's.
SIM_FRAME_NICE = 10


def favour_network(frame_nice: int) -> None:
    """Let the net thread handle a datagram as soon as it arrives, while the calling (frame) thread renders
    on every core: the GIL is handed over every :data:`SWITCH_INTERVAL_S`, and on Linux, where a nice
    value belongs to a thread, the calling thread's is raised by ``frame_nice`` (threads started later
    from it inherit it; the net thread, started before, keeps its own).

    bench/consult.py (four rendering participants on two cores, 45 Hz asked): the room's pose p99 went
    from 13.3 to 9.2 ms on loopback and from 44.4 to 36.7 ms with 22.5 ms injected, at the same frame
    rate. A switch interval alone changed nothing: the wait was for a core, not for the GIL."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    if frame_nice and sys.platform == "linux":
        tid = threading.get_native_id()
        try:
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + frame_nice)
        except OSError as exc:  # a container may forbid it: the net thread then waits for a core as before
            logger.info("could not lower the frame thread's priority: %s", exc)


class Network(Protocol):
    """The participant's network as the frame side uses it: :class:`NetThread` (the loop in a thread of
    this process) or :class:`~sessions.consult.netproc.NetProcess` (in a process of its own)."""

    participant: Any  # name, room, token_role (once joined) and clock()
    presence: Presence
    replica: Callable[[], bytes] | None  # the frame side's copy of the state, for a network started again

    def ops(self) -> list[tuple[StateOp, str]]: ...
    def poses(self) -> dict[int, RemotePose]: ...
    def refusals(self) -> list[StateRefusal]: ...
    def send_pose(self, poses: TrackedPoses, sampled_at: float | None = None) -> None: ...
    def snapshot(self) -> tuple[int, bytes, int]: ...
    def make_op(self, kind: OpKind | int, payload: Any) -> StateOp: ...
    def room_op_count(self) -> int: ...
    def note_digest(self) -> tuple[int, bytes] | None: ...
    def start(self, wait_s: float = 3.0) -> dict[str, Any]: ...
    def room_twin(self, wait_s: float) -> RoomTwin | None: ...
    def announce_twin(self, twin: Any) -> None: ...
    def record(self, path: str) -> None: ...
    def begin_recording(self, twin_name: str, twin_sha256: str, welcome: dict[str, Any]) -> None: ...
    def report(self) -> dict[str, Any]: ...
    def linger(self, seconds: float) -> None: ...
    def stop(self, linger_s: float = 0.0) -> None: ...


@dataclass(frozen=True)
class RemotePose:
    """A remote's newest pose record, and who they are; ``presenting_since`` is when (our clock, s) its
    records started to carry ``Buttons.PRESENTING``, None while they do not; ``sampled_at`` is when the
    sender sampled it, on our clock (s; None outside the measurement window or before the sender's clock
    is known): motion-to-display counts from there; ``arrived_at`` is when it arrived here (our clock, s)."""

    record: PoseRecord
    name: str
    role: str
    presenting_since: float | None = None
    sampled_at: float | None = None
    arrived_at: float | None = None


class NetThread:
    """Runs ``participant``'s event loop in a background thread (see the module docstring).

    Its hooks (``on_pose``, ``on_op``) are set here; set a recorder's after, so that it chains them.
    """

    def __init__(self, participant: Participant, loop: str = "auto") -> None:
        self.participant = participant
        self.presence = Presence()
        #: the frame side's copy of the state (FrameRoom sets it; a thread is never started again, so unused)
        self.replica: Callable[[], bytes] | None = None
        self.loop_name, factory = loop_factory(loop)
        self.loop = factory()
        self._ops: queue.SimpleQueue[tuple[StateOp, str]] = queue.SimpleQueue()
        self._refusals: queue.SimpleQueue[StateRefusal] = queue.SimpleQueue()
        self._poses: dict[int, RemotePose] = {}
        self._lock = threading.Lock()
        self._recorder: Any = None
        self._noted: tuple[int, bytes] | None = None
        #: where each pose record is also written as it arrives (a network process's PoseBoard), or None
        self.board: Any = None
        participant.on_pose = self._on_pose
        participant.on_op = self._on_op
        participant.on_refused = self._refusals.put
        self._thread = threading.Thread(target=self._run, name="consult-net", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    # --- on the net thread ----------------------------------------------------------------------------

    def _name(self, index: int) -> tuple[str, str]:
        remote = self.participant.remotes.get(index)
        return (remote.name, remote.role) if remote is not None else (str(index), "")

    def _on_pose(self, record: PoseRecord, latency: float | None) -> None:
        name, role = self._name(record.participant)
        now = self.participant.clock()
        with self._lock:
            since = None
            if record.buttons & Buttons.PRESENTING:
                before = self._poses.get(record.participant)
                since = before.presenting_since if before is not None and before.presenting_since is not None else now
            sampled = None if latency is None else now - latency
            remote = self._poses[record.participant] = RemotePose(record, name, role, since, sampled, now)
        if self.board is not None:
            self.board.put(remote)
        self.presence.arrived(record.participant, name, now, latency)

    def _on_op(self, op: StateOp, latency: float | None) -> None:
        name, _ = self._name(op.participant)
        self.presence.arrived(op.participant, name, self.participant.clock(), latency)
        self._ops.put((op, name))

    def send_now(self, poses: TrackedPoses, sampled_at: float | None = None) -> None:
        """(On the loop thread) send one pose record to every open link, stamped with ``sampled_at`` or now."""
        if self.participant.link_set.open_links():
            self.participant.send_pose(poses, sampled_at)

    # --- from the frame thread ------------------------------------------------------------------------

    def run(self, coro: Any, timeout: float | None = CALL_TIMEOUT_S) -> Any:
        """Run coroutine ``coro`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = CALL_TIMEOUT_S) -> T:
        """Run ``fn(*args)`` on the loop thread and wait for its result (its exception is raised here)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def work() -> None:
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(work)
        return future.result(timeout)

    def start(self, wait_s: float = 3.0) -> dict[str, Any]:
        """Join the room and wait (up to ``wait_s``) for its state; returns the welcome."""
        welcome: dict[str, Any] = self.run(self.participant.start())

        async def caught_up() -> None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.participant.caught_up.wait(), wait_s)

        self.run(caught_up(), timeout=wait_s + CALL_TIMEOUT_S)
        return welcome

    def room_twin(self, wait_s: float) -> RoomTwin | None:
        """The room's twin as signaling says it; when none is named yet, wait up to ``wait_s`` for one
        (a surgeon, or the server, names it), then None."""

        async def named() -> RoomTwin | None:
            client = self.participant.client
            deadline = self.loop.time() + wait_s
            while client.room_twin is None and self.loop.time() < deadline:
                await asyncio.sleep(0.05)
            return client.room_twin

        twin: RoomTwin | None = self.run(named(), timeout=wait_s + CALL_TIMEOUT_S)
        return twin

    def announce_twin(self, twin: Any) -> None:
        """Name ``twin`` (``net.signaling_client.announced``) to signaling when joining (before :meth:`start`)."""
        self.participant.client.twin = twin

    def record(self, path: str) -> None:
        """Record the session to ``path`` (before :meth:`start`; begun by :meth:`begin_recording`, closed
        by :meth:`stop`)."""
        from sessions.recording.recorder import SessionRecorder  # noqa: PLC0415 - only a recorded join needs it

        self._recorder = SessionRecorder(path)
        self._recorder.attach(self.participant)  # after this thread's hooks: the recorder chains them

    def begin_recording(self, twin_name: str, twin_sha256: str, welcome: dict[str, Any]) -> None:
        """Start writing the recording, with the twin the room settled on."""
        recorder = self._recorder
        if recorder is not None:
            recorder.twin_name, recorder.twin_sha256 = twin_name, twin_sha256
            self.call(recorder.begin, welcome)

    def snapshot(self) -> tuple[int, bytes, int]:
        """(our participant index, the room's state as snapshot bytes, its op count), taken on the loop."""
        p = self.participant
        return self.call(lambda: (p.state.participant, p.state.snapshot_bytes(), p.state.op_count))

    def make_op(self, kind: OpKind | int, payload: Any) -> StateOp:
        """Make an op on the loop (sent to the room) and return it (``OpRefusedError`` as the state raises it)."""
        return self.call(self.participant.make_op, kind, payload)

    def room_op_count(self) -> int:
        """How many ops the room's state holds now."""
        return int(self.participant.state.op_count)

    def note_digest(self) -> tuple[int, bytes] | None:
        """Ask the loop to note (op count, digest) of the room's state, without waiting; returns what it
        noted the time before (None the first time)."""
        self.loop.call_soon_threadsafe(self._note_digest)
        return self._noted

    def _note_digest(self) -> None:
        # on the loop, where the room's state lives (an adoption replaces the object there)
        state = self.participant.state
        self._noted = (state.op_count, state.digest())

    def report(self) -> dict[str, Any]:
        """The participant's report (``Participant.report``), made on the loop."""
        return self.call(self.participant.report)

    def linger(self, seconds: float) -> None:
        """Let the loop run ``seconds`` more (ops in flight arrive) before the last look at the room."""
        self.run(asyncio.sleep(seconds))

    def send_pose(self, poses: TrackedPoses, sampled_at: float | None = None) -> None:
        """Hand one pose record to the loop (sent to every open link; nothing waits), stamped with when it
        was sampled (``sampled_at``, the participant's clock) or else when the loop sends it."""
        self.loop.call_soon_threadsafe(self.send_now, poses, sampled_at)

    def poses(self) -> dict[int, RemotePose]:
        """Every remote's newest pose record."""
        with self._lock:
            return dict(self._poses)

    def forget_left(self) -> None:
        """Drop the poses of remotes no longer in the room."""
        here = set(self.participant.remotes)
        with self._lock:
            for index in [i for i in self._poses if i not in here]:
                del self._poses[index]

    def ops(self) -> list[tuple[StateOp, str]]:
        """The ops applied since the last call, in order, with their sender's name."""
        out = []
        while True:
            try:
                out.append(self._ops.get_nowait())
            except queue.Empty:
                return out

    def refusals(self) -> list[StateRefusal]:
        """The refusals of our ops that came back from the room since the last call, in order."""
        out = []
        while True:
            try:
                out.append(self._refusals.get_nowait())
            except queue.Empty:
                return out

    def stop(self, linger_s: float = 0.0) -> None:
        """(After ``linger_s`` seconds for ops in flight) leave the room, stop the loop and its thread."""
        if not self._thread.is_alive():
            return

        async def leave() -> None:
            await asyncio.sleep(linger_s)
            await self.participant.stop()

        try:
            self.run(leave(), timeout=linger_s + CALL_TIMEOUT_S)
        except Exception as exc:
            logger.warning("%s: leaving the room: %r", self.participant.name, exc)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(CALL_TIMEOUT_S)
            if not self._thread.is_alive():
                self.loop.close()
            if self._recorder is not None:
                self._recorder.close()


#: How often the frame thread's replica of the state is compared with the room's by digest (s).
DIGEST_CHECK_S = 1.0


class FrameRoom:
    """The room as the frame thread's bridge sees it (:class:`~sessions.consult.bridge.Room`): a replica
    of the shared state, fed by the ops the net thread applied; ops made on the net thread."""

    def __init__(self, net: Network) -> None:
        self.net = net
        self._state = self._copy()
        net.replica = self.replica
        self._checked = time.monotonic()

    def _copy(self) -> SharedState:
        index, data, _ = self.net.snapshot()
        state = SharedState(index)
        state.merge_snapshot(data)
        return state

    @property
    def state(self) -> SharedState:
        return self._state

    def replica(self) -> bytes:
        """This copy of the state as snapshot bytes (a network process started again begins from it)."""
        return self._state.snapshot_bytes()

    def make_op(self, kind: OpKind | int, payload: Any) -> StateOp:
        """Make the op on the loop (sent to the room), then apply it here."""
        op = self.net.make_op(kind, payload)
        self._state.apply(op)
        return op

    def take(self) -> list[tuple[StateOp, str]]:
        """Apply the ops the net thread applied since the last call; returns them (sender's name too).
        When the room's state changed other than by ops (a snapshot merged: more ops than ours; a split
        mended by adopting the authority's state: as many, other content, found by comparing digests about
        once every :data:`DIGEST_CHECK_S`, the room's noted on the loop without the frame waiting for it),
        the replica is made again."""
        ops = self.net.ops()
        for op, _ in ops:
            self._state.apply(op)
        stale = self.net.room_op_count() != self._state.op_count
        if not stale and time.monotonic() - self._checked >= DIGEST_CHECK_S:
            self._checked = time.monotonic()
            # noted on the loop, without waiting for it: the frame compares what the loop noted last
            noted = self.net.note_digest()
            stale = noted is not None and noted[0] == self._state.op_count and noted[1] != self._state.digest()
        if stale:
            self._state = self._copy()
        return ops
