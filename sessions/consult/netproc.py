"""The participant's network in a process of its own: :class:`NetProcess`, with :class:`NetThread`'s interface.

A :class:`~sessions.consult.network.NetThread` keeps what arrives off the frame loop, but not off its GIL:
while the frame thread runs Python (a step, a draw's GL calls) the net thread waits to handle a datagram,
and more so on a loaded machine, where the frame thread can be descheduled while it holds the GIL. In a
process of its own the participant's loop has a GIL of its own. ``bench/consult.py``'s room of four
rendering participants on two cores, with 22.5 ms of one-way delay: see ``docs/consult.md``.

The child (``multiprocessing``'s *spawn*: nothing of the parent's GL context or threads is inherited) builds
the :class:`~net.participant.Participant` and a ``NetThread`` over it, and its main thread serves the frame
side's requests over a pipe, one at a time, in order. The frame side sends its pose each frame, stamped
with when it was sampled, without waiting, through a pipe of its own that the child's event loop reads
itself (no hop through the main thread: the pose is on the wire as soon as the loop gets a core); and once
a frame (:meth:`NetProcess.ops`, which ``FrameRoom.take`` calls) fetches in one round
trip what arrived since the last (the newest pose per remote, the ops and refusals, the room's op count,
and each arrival, which :attr:`NetProcess.presence`, the frame side's own, is told of); the child also
writes each pose record as it arrives to a :class:`~sessions.consult.poseboard.PoseBoard`, which the frame
side reads just before it builds the avatars, so that a pose is not held back by the fetch. The rest (joining,
snapshots, making an op, the report) are requests answered in turn. The child leaves the room when asked,
and by itself when the pipe closes (the frame side's process ended); it ignores SIGINT, so that Ctrl-C in a
terminal reaches the frame side, which leaves in order.

A network process that dies (killed, out of memory, a crash in native code) is started again, up to
:data:`MAX_RESTARTS` times a join, in the background while the frame side goes on drawing (the others
turn *stale* meanwhile, and an op made then is refused with a reason): the new process rejoins the seat
with the session's resume ticket (``net.seats``), so it keeps its index, and starts from the frame
side's copy of the room's state (:attr:`NetProcess.replica`), so that what the frame side saw or made is
not lost even when nobody else in the room holds it. A recording goes on in a file beside the first
(``session.1.mvr``: the first stays as it was written). Counted in the report's ``network_process``
(``restarts``, ``hangs``, ``down_s``, ``recordings``).

A network process that hangs (alive but not answering: stopped, deadlocked, stuck in a native call)
counts as one that died, in the requests of the frame loop: a frame's fetch or a digest's note not
answered within :data:`FRAME_TIMEOUT_S` (the child answers those in well under a millisecond), an op or
a snapshot not within :data:`LOOP_TIMEOUT_S`. The child is killed (SIGKILL) and another started as
above, one log line saying it hung. Its pipe is closed with the kill and never read again (a child
merely slow may have answered there by then, and that answer would be taken for the next request's);
the new child comes with a new pipe. Joining, lingering, leaving and the report keep their longer
waits; one that runs out kills the child too, and ends the join as before.

The resume ticket changes each time the child's signaling client rejoins (``net.seats``: the old one is
then refused). The child writes the new one, the moment its client takes it from the ``welcome``
(``SignalingClient.on_resume_ticket``), into a :class:`TicketBox`: memory the frame side made and shares
with it, which the frame side reads when it starts another child, without having to ask the child (a
child that died between a rejoin and the frame side's next request no longer leaves it a stale ticket).
What is left: the server has rotated the ticket when it sends the ``welcome``; a child that dies
after that and before its client has read the ``welcome`` and written the ticket (the welcome's half
round trip, its parsing, then some microseconds for the write; a write torn by the child's death is
found and not used) leaves the frame side the old ticket, and the restart is refused (the join ends
in one line).
"""

from __future__ import annotations

import ctypes
import dataclasses
import importlib
import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from net.participant import Participant, ParticipantConfig, local_clock
from net.protocol import OpKind, StateOp, StateRefusal, TrackedPoses
from net.seats import MAX_TICKET_CHARS
from net.state import OpRefusedError
from net.tls import client_ssl
from sessions.consult import seqlock
from sessions.consult.network import CALL_TIMEOUT_S, NetThread, RemotePose
from sessions.consult.poseboard import PoseBoard
from sessions.consult.presence import Presence

logger = logging.getLogger(__name__)

#: How long the child has to start, import aiortc and answer (s).
START_TIMEOUT_S = 30.0
#: How long a frame waits for the child's answer to its fetch (``ops``) or to a digest's note (s); past
#: it the child is taken as hung, killed and started again. The child's main thread answers those from
#: what its loop left, without waiting for the loop: well under a millisecond, up to tens of ms on a
#: loaded 2-core machine where it waits for a core, or for its GIL behind a long callback of its loop
#: (a snapshot merged, a DTLS handshake). 2 s is far beyond that, and a hung child costs the frame loop
#: one stall of 2 s, not CALL_TIMEOUT_S (10 s) every frame.
FRAME_TIMEOUT_S = 2.0
#: The same for making an op or taking a snapshot (s), which the child does on its loop: that may be
#: busy for longer (a large snapshot merged, many links opening at once), and the frame side waits for
#: an op anyway. Shorter than the child's own wait for its loop (CALL_TIMEOUT_S), so that a stuck loop
#: is a hang here too.
LOOP_TIMEOUT_S = 5.0
#: How many times one join starts its network process again after it died or hung.
MAX_RESTARTS = 3
#: How long a restarted network process waits for the room's state once back in the room (s).
RESTART_WAIT_S = 3.0
#: What an op made while the network process is being started again is refused with.
RECONNECTING = "the network is reconnecting (its process is being started again): try again in a moment"


class NetProcessError(RuntimeError):
    """The network process failed a request, or is gone."""


class _Gone(NetProcessError):
    """The network process's end of the pipe closed: it died."""


class _Hung(_Gone):
    """The network process did not answer in time: it was killed, and its pipe is never read again."""

    def __init__(self, kind: str, timeout: float) -> None:
        super().__init__(f"the network process did not answer {kind!r} within {timeout:g} s")
        self.kind, self.timeout = kind, timeout


class _TicketSlot(ctypes.Structure):  # a sequence-locked slot (sessions.consult.seqlock)
    _fields_ = [("seq", ctypes.c_uint64), ("length", ctypes.c_uint32), ("data", ctypes.c_char * MAX_TICKET_CHARS)]


class TicketBox:
    """The session's resume ticket in memory shared with the network process (see the module docstring):
    the child writes it the moment its signaling client's changes, the frame side reads it when it
    starts another child. A sequence lock (``sessions.consult.seqlock``): a read that finds a write torn
    by the writer's death (or one under way) keeps what it knew instead. One writer at a time (the
    child's loop thread)."""

    def __init__(self, context: Any) -> None:
        self._shared = context.RawValue(_TicketSlot)

    def publish(self, ticket: str | None) -> None:
        """(The child) the session's ticket is now ``ticket``."""
        data = b"" if ticket is None else ticket.encode()
        if len(data) > MAX_TICKET_CHARS:  # no server hands one out: it would refuse it back
            raise ValueError(f"a resume ticket of {len(data)} bytes, over {MAX_TICKET_CHARS}")
        seqlock.write(self._shared, data)

    def read(self, known: str | None) -> str | None:
        """The ticket as the child last wrote it; ``known`` when a write is torn or under way."""
        for attempt in range(3):
            if attempt:
                time.sleep(0.001)
            got = seqlock.read(self._shared)
            if got is not None:
                return got[1].decode() or None
        return known


@dataclass(frozen=True)
class NetSpec:
    """What the child needs to make the participant (all of it picklable)."""

    server: str
    token: str
    config: ParticipantConfig
    clock_offset: float = 0.0
    ca_file: str | None = None
    insecure: bool = False
    loop: str = "auto"
    log_level: int = logging.WARNING
    #: the session's resume ticket: a process started again in place of one that died rejoins with it
    resume: str | None = None


class _NotingPresence(Presence):
    """The child's presence: also keeps each arrival for the frame side."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[tuple[int, str, float, float | None]] = []

    def arrived(self, index: int, name: str, now: float, latency_s: float | None) -> None:
        super().arrived(index, name, now, latency_s)
        self.arrivals.append((index, name, now, latency_s))


def _serve(conn: Any, poses_in: Any, spec: NetSpec, tickets: TicketBox, board: PoseBoard) -> None:
    """The child: the participant and its NetThread, and the frame side's requests in order; the frame
    side's poses from ``poses_in``, read by the loop itself; the session's resume ticket written to
    ``tickets`` whenever it changes, each pose record to ``board`` as it arrives."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=spec.log_level, format="%(levelname)s %(name)s: %(message)s")
    participant = Participant(spec.server, spec.token, spec.config, clock=local_clock(spec.clock_offset),
                              ssl=client_ssl(spec.ca_file, spec.insecure))  # fmt: skip
    participant.client.resume_ticket = spec.resume
    participant.client.on_resume_ticket = tickets.publish
    board.clear()  # a previous child's slots
    net = NetThread(participant, spec.loop)
    net.board = board
    presence = net.presence = _NotingPresence()

    def send_poses() -> None:
        """(On the loop, when ``poses_in`` is readable) send every pose the frame side handed over."""
        try:
            while poses_in.poll():
                poses, sampled_at = poses_in.recv()
                net.send_now(poses, sampled_at)
        except (EOFError, OSError):  # the frame side is gone: the request pipe says so too
            net.loop.remove_reader(poses_in.fileno())

    net.loop.call_soon_threadsafe(net.loop.add_reader, poses_in.fileno(), send_poses)

    def frame() -> tuple[dict[int, RemotePose], list[tuple[StateOp, str]], list[StateRefusal], int, list[Any]]:
        arrivals, presence.arrivals = presence.arrivals, []
        return net.poses(), net.ops(), net.refusals(), net.room_op_count(), arrivals

    def seed(snapshot: bytes) -> int:
        """Merge the frame side's copy of the state (a process started again: see the module docstring)."""
        return net.call(participant.state.merge_snapshot, snapshot)

    handlers: dict[str, Callable[..., Any]] = {
        "frame": frame, "start": net.start, "room_twin": net.room_twin, "announce_twin": net.announce_twin,
        "record": net.record, "begin_recording": net.begin_recording, "snapshot": net.snapshot,
        "make_op": net.make_op, "note_digest": net.note_digest, "report": net.report, "linger": net.linger,
        "stop": net.stop, "seed": seed,
    }  # fmt: skip
    conn.send(("ready", None))
    stopped = False
    try:
        while not stopped:
            try:
                kind, args = conn.recv()
            except (EOFError, OSError):  # the frame side is gone: leave the room
                break
            stopped = kind == "stop"
            try:
                conn.send(("ok", handlers[kind](*args)))
            except OpRefusedError as exc:
                conn.send(("refused", (exc.op, exc.reason)))
            except Exception as exc:  # told to the frame side, which raises it there as the same type
                plain = {k: v for k, v in vars(exc).items() if isinstance(v, (str, int, float, bool, type(None)))}
                conn.send(("raised", (type(exc).__module__, type(exc).__qualname__, str(exc), plain)))
    finally:
        if not stopped:
            net.stop()
        conn.close()


def _rebuilt(module: str, qualname: str, message: str, attrs: dict[str, Any]) -> Exception:
    """The network process's exception as the same type here (``SignalingRefusedError`` stays one, so the
    CLI says it in one line as without the process), with its message and plain attributes; a type that
    cannot be found or made becomes a :class:`NetProcessError` saying it."""
    try:
        cls = getattr(importlib.import_module(module), qualname)
        if not (isinstance(cls, type) and issubclass(cls, Exception)):
            raise TypeError(qualname)
        exc: Exception = cls.__new__(cls)
        Exception.__init__(exc, message)
        exc.__dict__.update(attrs)
    except Exception:
        return NetProcessError(f"{qualname}: {message}")
    return exc


class ParticipantInfo:
    """What the frame side reads of its participant: name, room and token role (known once joined), and
    the participant's clock."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.name = ""
        self.room = ""
        self.token_role = ""


class NetProcess:
    """The participant's network in a child process (see the module docstring), for the frame side as a
    :class:`~sessions.consult.network.NetThread` is.

    ``restarts``: how many times a child that died or hung is started again (0: never; the next request
    raises :class:`NetProcessError`)."""

    def __init__(self, spec: NetSpec, *, restarts: int = MAX_RESTARTS) -> None:
        self.participant = ParticipantInfo(local_clock(spec.clock_offset))
        self.presence = Presence()
        #: the frame side's copy of the room's state as snapshot bytes (FrameRoom sets it): a child started
        #: again begins from it
        self.replica: Callable[[], bytes] | None = None
        #: children started again so far, those of them that had hung (not died), and seconds the frame
        #: side went without one
        self.restarts = 0
        self.hangs = 0
        self.down_s = 0.0
        self._spec, self._max_restarts = spec, restarts
        self._poses: dict[int, RemotePose] = {}
        self._refusals: list[StateRefusal] = []
        self._op_count = 0
        self._ticket: str | None = None  # as last read from the ticket box (what a torn read keeps)
        self._tickets = TicketBox(multiprocessing.get_context("spawn"))
        self._tickets.publish(spec.resume)
        self._board = PoseBoard(multiprocessing.get_context("spawn"))
        self._why = "died"  # what happened to the last child lost, for the log lines
        self._recordings: list[str] = []
        self._recorded_twin: tuple[str, str] | None = None
        self._restarter: threading.Thread | None = None
        self._failed: NetProcessError | None = None
        self._spawn(spec)

    def _spawn(self, spec: NetSpec) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        poses_in, self._poses_out = context.Pipe(duplex=False)
        self._process = context.Process(target=_serve, args=(child, poses_in, spec, self._tickets, self._board),
                                        name="consult-net", daemon=True)  # fmt: skip
        self._process.start()
        child.close()
        poses_in.close()
        self._reply("ready", START_TIMEOUT_S)

    def _reply(self, kind: str, timeout: float) -> Any:
        try:
            answered = self._conn.poll(timeout)
            if answered:
                status, value = self._conn.recv()
        except (EOFError, OSError):
            raise _Gone("the network process is gone") from None
        if not answered:
            # Hung (stopped, deadlocked, stuck in native code) or merely slow: either way it is killed first
            # (a child that found its pipe closed would leave the room in order, which ends the session the
            # next child resumes), and its pipe closed at once: an answer still there, or on its way, would
            # be read as the next request's. A new child comes with a new pipe.
            self._process.kill()
            self._conn.close()
            raise _Hung(kind, timeout)
        if status == "refused":
            raise OpRefusedError(*value)
        if status == "raised":
            raise _rebuilt(*value)
        return value

    def _call(self, kind: str, *args: Any, timeout: float = CALL_TIMEOUT_S) -> Any:
        try:
            self._conn.send((kind, args))
        except (BrokenPipeError, OSError):
            raise _Gone("the network process is gone") from None
        return self._reply(kind, timeout)

    @property
    def resume_ticket(self) -> str | None:
        """The session's resume ticket as the network process last wrote it (None before the welcome)."""
        return self._tickets.read(self._ticket)

    # --- a child that died, started again ---------------------------------------------------------------

    def _live(self) -> bool:
        """False while a child is being started again (the frame side goes on without it); raises what
        ended a restart that failed."""
        restarter = self._restarter
        if restarter is not None:
            if restarter.is_alive():
                return False
            self._restarter = None
        if self._failed is not None:
            raise self._failed
        return True

    def _settled(self) -> None:
        """Wait for a restart under way (before the requests of the frame loop's end: report, linger,
        a fresh snapshot; a restart only begins once the frame loop runs)."""
        restarter = self._restarter
        if restarter is not None:
            restarter.join()
        self._live()

    def _lost(self, gone: _Gone) -> None:
        """The child died, or hung and was killed: start another in the background (resuming the seat with
        the ticket the child last wrote), or raise ``gone`` when it cannot resume the seat."""
        self._process.join(1.0)
        code = self._process.exitcode
        name = self.participant.name or "participant"
        if isinstance(gone, _Hung):
            self.hangs += 1
            self._why, what = "hung", f"hung (no answer to {gone.kind!r} within {gone.timeout:g} s) and was killed"
        else:
            self._why, what = "died", f"died (exit code {code})"
        self._ticket = self._tickets.read(self._ticket)  # the child is gone: nothing writes it now
        if self._ticket is None or self.restarts >= self._max_restarts:
            why = "no session to resume yet" if self._ticket is None else f"started again {self.restarts} time(s) already"
            if isinstance(gone, _Hung):
                raise NetProcessError(f"the network process {what}; {why}") from gone
            raise _Gone(f"the network process is gone (exit code {code}; {why})") from gone
        self.restarts += 1
        seed = self.replica() if self.replica is not None else None
        logger.warning("%s: the network process %s; starting another, which resumes the seat (%d of %d)",
                       name, what, self.restarts, self._max_restarts)  # fmt: skip
        self._restarter = threading.Thread(target=self._restart, args=(seed,), name="consult-net-restart", daemon=True)
        self._restarter.start()

    def _restart(self, seed: bytes | None) -> None:
        """(In a thread of its own while the frame side goes on) a new child, back in the room on the seat."""
        began = time.monotonic()
        try:
            self._conn.close()
            self._poses_out.close()
            self._spawn(dataclasses.replace(self._spec, resume=self._ticket))
            if self._recorded_twin is not None:
                first = Path(self._recordings[0])
                self._recordings.append(str(first.with_name(f"{first.stem}.{self.restarts}{first.suffix}")))
                self._call("record", self._recordings[-1])
            welcome = self._call("start", RESTART_WAIT_S, timeout=RESTART_WAIT_S + 2 * CALL_TIMEOUT_S)
            self._ticket = self._tickets.read(self._ticket)
            if seed is not None:
                self._call("seed", seed)
            if self._recorded_twin is not None:
                self._call("begin_recording", *self._recorded_twin, welcome)
            logger.warning("%s: back in room %s as index %s, %.1f s after the network process %s", self.participant.name,
                           welcome.get("room"), welcome.get("index"), time.monotonic() - began, self._why)  # fmt: skip
        except Exception as exc:  # one line where the frame side next asks (a refused seat, a child that died again)
            self._failed = NetProcessError(f"the network process {self._why}, and starting it again failed: {exc}")
            self._process.kill()
        finally:
            self.down_s += time.monotonic() - began

    def _refused_op(self, kind: OpKind | int, payload: Any) -> OpRefusedError:
        unmade = StateOp(0, 0, 0, OpKind(kind), dict(payload) if isinstance(payload, dict) else {}, 0.0)
        return OpRefusedError(unmade, RECONNECTING)

    # --- as NetThread -----------------------------------------------------------------------------------

    def start(self, wait_s: float = 3.0) -> dict[str, Any]:
        """Join the room and wait (up to ``wait_s``) for its state; returns the welcome."""
        welcome = self._call("start", wait_s, timeout=wait_s + 2 * CALL_TIMEOUT_S)
        self._ticket = self._tickets.read(self._ticket)
        p = self.participant
        p.name, p.room, p.token_role = str(welcome["participant"]), str(welcome["room"]), str(welcome.get("role", ""))
        return dict(welcome)

    def room_twin(self, wait_s: float) -> Any:
        """The room's twin as signaling says it, waiting up to ``wait_s`` for one to be named; else None."""
        return self._call("room_twin", wait_s, timeout=wait_s + CALL_TIMEOUT_S)

    def announce_twin(self, twin: Any) -> None:
        self._call("announce_twin", twin)

    def record(self, path: str) -> None:
        self._call("record", path)
        self._recordings = [path]

    def begin_recording(self, twin_name: str, twin_sha256: str, welcome: dict[str, Any]) -> None:
        self._call("begin_recording", twin_name, twin_sha256, welcome)
        self._recorded_twin = (twin_name, twin_sha256)

    def snapshot(self) -> tuple[int, bytes, int]:
        self._settled()
        try:
            snapshot: tuple[int, bytes, int] = self._call("snapshot", timeout=LOOP_TIMEOUT_S)
        except _Gone as exc:
            self._lost(exc)
            return self.snapshot()
        return snapshot

    def make_op(self, kind: OpKind | int, payload: Any) -> StateOp:
        if not self._live():
            raise self._refused_op(kind, payload)
        try:
            op: StateOp = self._call("make_op", kind, payload, timeout=LOOP_TIMEOUT_S)
        except _Gone as exc:
            self._lost(exc)
            raise self._refused_op(kind, payload) from None
        self._op_count += 1
        return op

    def room_op_count(self) -> int:
        """The room's op count as of the last :meth:`ops` (and our ops since)."""
        return self._op_count

    def note_digest(self) -> tuple[int, bytes] | None:
        if not self._live():
            return None
        try:
            noted: tuple[int, bytes] | None = self._call("note_digest", timeout=FRAME_TIMEOUT_S)
        except _Gone as exc:
            self._lost(exc)
            return None
        return noted

    def report(self) -> dict[str, Any]:
        self._settled()
        report: dict[str, Any] = self._call("report")
        report["network_process"] = {"restarts": self.restarts, "hangs": self.hangs, "down_s": round(self.down_s, 3),
                                     "recordings": list(self._recordings)}  # fmt: skip
        return report

    def linger(self, seconds: float) -> None:
        self._settled()
        self._call("linger", seconds, timeout=seconds + CALL_TIMEOUT_S)

    def send_pose(self, poses: TrackedPoses, sampled_at: float | None = None) -> None:
        """Hand one pose record, sampled at ``sampled_at`` (the participant's clock), to the network process,
        through a pipe of their own that its loop reads (nothing waits; dropped while it is started again)."""
        if not self._live():
            return
        try:
            self._poses_out.send((poses, sampled_at))
        except (BrokenPipeError, OSError):
            self._lost(_Gone("the network process is gone"))

    def ops(self) -> list[tuple[StateOp, str]]:
        """The ops applied since the last call, in order, with their sender's name; also fetches the newest
        poses, the refusals, the room's op count and the arrivals since (one round trip a frame). Nothing
        while the network process is being started again; a network process that does not answer within
        :data:`FRAME_TIMEOUT_S` is taken as hung (killed, and started again)."""
        if not self._live():
            return []
        try:
            poses, ops, refusals, op_count, arrivals = self._call("frame", timeout=FRAME_TIMEOUT_S)
        except _Gone as exc:
            self._lost(exc)
            return []
        self._poses, self._op_count = poses, op_count
        self._refusals += refusals
        for index, name, now, latency in arrivals:
            self.presence.arrived(index, name, now, latency)
        return list(ops)

    def poses(self) -> dict[int, RemotePose]:
        """Every remote's newest pose record: those in the room as of the last :meth:`ops`, each as the
        network process last wrote it to the pose board (``sessions.consult.poseboard``), read now."""
        return self._board.fresher(self._poses)

    def refusals(self) -> list[StateRefusal]:
        """The refusals of our ops that came back from the room, fetched by :meth:`ops`, since the last call."""
        out, self._refusals = self._refusals, []
        return out

    def stop(self, linger_s: float = 0.0) -> None:
        """(After ``linger_s``) leave the room and end the network process."""
        restarter = self._restarter
        if restarter is not None:
            restarter.join()
        if self._process.is_alive():
            try:
                self._call("stop", linger_s, timeout=linger_s + 2 * CALL_TIMEOUT_S)
            except NetProcessError as exc:
                logger.warning("%s: leaving the room: %s", self.participant.name, exc)
        self._conn.close()
        self._poses_out.close()
        self._process.join(CALL_TIMEOUT_S)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
