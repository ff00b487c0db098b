"""The participant's network in a process of its own: :class:`NetProcess`, with :class:`NetThread`'s interface.

A :class:`~sessions.consult.network.NetThread` keeps what arrives off the frame loop, but not off its GIL:
while the frame thread runs Python (a step, a draw's GL calls) the net thread waits to handle a datagram,
and more so on a loaded machine, where the frame thread can be descheduled while it holds the GIL. In a
process of its own the participant's loop has a GIL of its own. ``bench/consult.py``'s room of four
rendering participants on two cores, with 22.5 ms of one-way delay: see ``docs/consult.md``.

The child (``multiprocessing``'s *spawn*: nothing of the parent's GL context or threads is inherited) builds
the :class:`~net.participant.Participant` and a ``NetThread`` over it, and its main thread serves the frame
side's requests over a pipe, one at a time, in order: the frame side sends its pose each frame without
waiting, and once a frame (:meth:`NetProcess.ops`, which ``FrameRoom.take`` calls) fetches in one round
trip what arrived since the last (the newest pose per remote, the ops and refusals, the room's op count,
and each arrival, which :attr:`NetProcess.presence`, the frame side's own, is told of). The rest (joining,
snapshots, making an op, the report) are requests answered in turn. The child leaves the room when asked,
and by itself when the pipe closes (the frame side's process ended); it ignores SIGINT, so that Ctrl-C in a
terminal reaches the frame side, which leaves in order.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from net.participant import Participant, ParticipantConfig, local_clock
from net.protocol import OpKind, StateOp, StateRefusal, TrackedPoses
from net.state import OpRefusedError
from net.tls import client_ssl
from sessions.consult.network import CALL_TIMEOUT_S, NetThread, RemotePose
from sessions.consult.presence import Presence

logger = logging.getLogger(__name__)

#: How long the child has to start, import aiortc and answer (s).
START_TIMEOUT_S = 30.0


class NetProcessError(RuntimeError):
    """The network process failed a request, or is gone."""


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


class _NotingPresence(Presence):
    """The child's presence: also keeps each arrival for the frame side."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[tuple[int, str, float, float | None]] = []

    def arrived(self, index: int, name: str, now: float, latency_s: float | None) -> None:
        super().arrived(index, name, now, latency_s)
        self.arrivals.append((index, name, now, latency_s))


def _serve(conn: Any, spec: NetSpec) -> None:
    """The child: the participant and its NetThread, and the frame side's requests in order."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=spec.log_level, format="%(levelname)s %(name)s: %(message)s")
    participant = Participant(spec.server, spec.token, spec.config, clock=local_clock(spec.clock_offset),
                              ssl=client_ssl(spec.ca_file, spec.insecure))  # fmt: skip
    net = NetThread(participant, spec.loop)
    presence = net.presence = _NotingPresence()

    def frame() -> tuple[dict[int, RemotePose], list[tuple[StateOp, str]], list[StateRefusal], int, list[Any]]:
        arrivals, presence.arrivals = presence.arrivals, []
        return net.poses(), net.ops(), net.refusals(), net.room_op_count(), arrivals

    handlers: dict[str, Callable[..., Any]] = {
        "frame": frame, "start": net.start, "room_twin": net.room_twin, "announce_twin": net.announce_twin,
        "record": net.record, "begin_recording": net.begin_recording, "snapshot": net.snapshot,
        "make_op": net.make_op, "note_digest": net.note_digest, "report": net.report, "linger": net.linger,
        "stop": net.stop,
    }  # fmt: skip
    conn.send(("ready", None))
    stopped = False
    try:
        while not stopped:
            try:
                kind, args = conn.recv()
            except (EOFError, OSError):  # the frame side is gone: leave the room
                break
            if kind == "pose":
                net.send_pose(args[0])
                continue
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
    :class:`~sessions.consult.network.NetThread` is."""

    def __init__(self, spec: NetSpec) -> None:
        self.participant = ParticipantInfo(local_clock(spec.clock_offset))
        self.presence = Presence()
        self._poses: dict[int, RemotePose] = {}
        self._refusals: list[StateRefusal] = []
        self._op_count = 0
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, spec), name="consult-net", daemon=True)
        self._process.start()
        child.close()
        self._reply(START_TIMEOUT_S)

    def _reply(self, timeout: float) -> Any:
        if not self._conn.poll(timeout):
            raise NetProcessError(f"the network process did not answer within {timeout:g} s")
        try:
            status, value = self._conn.recv()
        except (EOFError, OSError):
            raise NetProcessError("the network process is gone") from None
        if status == "refused":
            raise OpRefusedError(*value)
        if status == "raised":
            raise _rebuilt(*value)
        return value

    def _call(self, kind: str, *args: Any, timeout: float = CALL_TIMEOUT_S) -> Any:
        try:
            self._conn.send((kind, args))
        except (BrokenPipeError, OSError):
            raise NetProcessError("the network process is gone") from None
        return self._reply(timeout)

    # --- as NetThread -----------------------------------------------------------------------------------

    def start(self, wait_s: float = 3.0) -> dict[str, Any]:
        """Join the room and wait (up to ``wait_s``) for its state; returns the welcome."""
        welcome: dict[str, Any] = self._call("start", wait_s, timeout=wait_s + 2 * CALL_TIMEOUT_S)
        p = self.participant
        p.name, p.room, p.token_role = str(welcome["participant"]), str(welcome["room"]), str(welcome.get("role", ""))
        return welcome

    def room_twin(self, wait_s: float) -> Any:
        """The room's twin as signaling says it, waiting up to ``wait_s`` for one to be named; else None."""
        return self._call("room_twin", wait_s, timeout=wait_s + CALL_TIMEOUT_S)

    def announce_twin(self, twin: Any) -> None:
        self._call("announce_twin", twin)

    def record(self, path: str) -> None:
        self._call("record", path)

    def begin_recording(self, twin_name: str, twin_sha256: str, welcome: dict[str, Any]) -> None:
        self._call("begin_recording", twin_name, twin_sha256, welcome)

    def snapshot(self) -> tuple[int, bytes, int]:
        snapshot: tuple[int, bytes, int] = self._call("snapshot")
        return snapshot

    def make_op(self, kind: OpKind | int, payload: Any) -> StateOp:
        op: StateOp = self._call("make_op", kind, payload)
        self._op_count += 1
        return op

    def room_op_count(self) -> int:
        """The room's op count as of the last :meth:`ops` (and our ops since)."""
        return self._op_count

    def note_digest(self) -> tuple[int, bytes] | None:
        noted: tuple[int, bytes] | None = self._call("note_digest")
        return noted

    def report(self) -> dict[str, Any]:
        report: dict[str, Any] = self._call("report")
        return report

    def linger(self, seconds: float) -> None:
        self._call("linger", seconds, timeout=seconds + CALL_TIMEOUT_S)

    def send_pose(self, poses: TrackedPoses) -> None:
        """Hand one pose record to the network process (nothing waits)."""
        try:
            self._conn.send(("pose", (poses,)))
        except (BrokenPipeError, OSError):
            raise NetProcessError("the network process is gone") from None

    def ops(self) -> list[tuple[StateOp, str]]:
        """The ops applied since the last call, in order, with their sender's name; also fetches the newest
        poses, the refusals, the room's op count and the arrivals since (one round trip a frame)."""
        poses, ops, refusals, op_count, arrivals = self._call("frame")
        self._poses, self._op_count = poses, op_count
        self._refusals += refusals
        for index, name, now, latency in arrivals:
            self.presence.arrived(index, name, now, latency)
        return list(ops)

    def poses(self) -> dict[int, RemotePose]:
        """Every remote's newest pose record, as of the last :meth:`ops`."""
        return dict(self._poses)

    def refusals(self) -> list[StateRefusal]:
        """The refusals of our ops that came back from the room, fetched by :meth:`ops`, since the last call."""
        out, self._refusals = self._refusals, []
        return out

    def stop(self, linger_s: float = 0.0) -> None:
        """(After ``linger_s``) leave the room and end the network process."""
        if self._process.is_alive():
            try:
                self._call("stop", linger_s, timeout=linger_s + 2 * CALL_TIMEOUT_S)
            except NetProcessError as exc:
                logger.warning("%s: leaving the room: %s", self.participant.name, exc)
        self._conn.close()
        self._process.join(CALL_TIMEOUT_S)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
