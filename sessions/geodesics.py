"""Distances along a twin's surface for the Measure tool, without stalling the frame loop.

The exact solver (:class:`assets.geodesic.SurfaceGeodesics`) takes about 1.1 s to prepare a hemisphere of
the bundled brain, and a query 20 ms at the median (p90 57 ms, the worst of 30 pairs 123 ms), holding the
GIL all the while: in the frame thread of a headset at 90 Hz that is up to a dozen dropped frames a
measurement, and seconds of stutter when a session starts. So there are two ways to run it:

- :class:`GeodesicProcess`, for loops a person watches (the desktop window, a headset, a consultation): a
  process of its own prepares the structures (the one a waiting query needs first) and answers queries in
  the order they come. A query is asked in one frame and its answer read, without waiting, in a later
  one: the session holds the measurement until then (its line and straight distance show meanwhile; see
  ``LocalSession``), then applies it with both distances.
- :class:`InlineGeodesics`, for the simulator, whose frames nobody watches as they are made: prepared in
  a thread, and each query answered in the frame that asks, so that a scripted run gives the same intents
  every time.

Either answers ``None`` (the measurement then has its straight distance only) where the solver cannot:
``pygeodesic`` not installed, a structure over :data:`assets.geodesic.MAX_FACES` triangles, two points
the surface does not join, a process that died, a structure not prepared within :data:`PREPARE_WITHIN_S`
or no answer within :data:`ANSWER_WITHIN_S` of its being ready.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import multiprocessing
import threading
import time
from collections import deque
from typing import Any, Protocol

import numpy as np

from assets.twin import Twin
from xrcore.input import Hit

logger = logging.getLogger(__name__)

#: A query not answered within this long (s) of being asked, or of its structure being ready if that came
#: later, is given up (None).
ANSWER_WITHIN_S = 10.0
#: A query whose structure is not ready this long (s) after the process started is given up (None):
#: preparing both hemispheres of the brain took 3.6 s on a quiet machine and over 10 s with six busy
#: programs on two cores, so a limit that counted the preparation in ``ANSWER_WITHIN_S`` lost the
#: measurements of a crowded consultation's first seconds.
PREPARE_WITHIN_S = 90.0


class GeodesicQuery:
    """One distance asked for: ``done`` once answered, then ``mm`` (None where there is none)."""

    def __init__(self, asked_at: float, mm: float | None = None, done: bool = False) -> None:
        self.asked_at, self.mm, self.done = asked_at, mm, done

    def answer(self, mm: float | None) -> None:
        self.mm, self.done = mm, True


class Geodesics(Protocol):
    #: queries asked, answered with a distance, answered without one, given up (timed out or the process gone)
    counts: dict[str, int]

    def ask(self, a: Hit, b: Hit) -> GeodesicQuery:
        """The distance (mm) along the surface of ``a``'s structure between two hits on it."""
        ...

    def poll(self) -> None:
        """Take in the answers that arrived (never waits)."""
        ...

    def close(self) -> None: ...


def _surfaces(twin: Twin) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """The structures the solver takes (index -> vertices, faces), without importing it."""
    from assets.geodesic import SurfaceGeodesics  # noqa: PLC0415 - pygeodesic itself is imported when one is built

    return {i: (s.vertices, s.faces) for i, s in enumerate(twin.structures)
            if s.triangle_count and SurfaceGeodesics.supports(s.triangle_count)}  # fmt: skip


def _prepare_one(vertices: np.ndarray, faces: np.ndarray) -> Any:
    """One structure's solver, or None (with a warning) where it cannot be built."""
    from assets.geodesic import SurfaceGeodesics  # noqa: PLC0415

    try:
        return SurfaceGeodesics(vertices, faces)
    except Exception as exc:  # a missing solver package costs the surface distance, not the session
        logger.warning("distances along the surface unavailable: %s", exc)
        return None


def _prepare(surfaces: dict[int, tuple[np.ndarray, np.ndarray]]) -> dict[int, Any]:
    solvers: dict[int, Any] = {}
    for i, (vertices, faces) in surfaces.items():
        solvers[i] = _prepare_one(vertices, faces)
        if solvers[i] is None:  # the same cause (most often no solver package) would fail every structure
            break
    return solvers


def _distance_mm(solvers: dict[int, Any], index: int, a_mm: np.ndarray, face_a: int, b_mm: np.ndarray,
                 face_b: int) -> float | None:  # fmt: skip
    solver = solvers.get(index)
    if solver is None:
        return None
    try:
        metres = solver.distance(a_mm / 1000.0, face_a, b_mm / 1000.0, face_b)
    except (ValueError, RuntimeError) as exc:
        logger.info("no distance along the surface: %s", exc)
        return None
    return float(metres) * 1000.0 if math.isfinite(metres) else None


class InlineGeodesics:
    """Prepared in a thread (it stutters the frames meanwhile); a query waits for that, then is answered
    at once, in the frame that asks."""

    def __init__(self, twin: Twin) -> None:
        self._solvers: dict[int, Any] = {}
        self.counts = {"asked": 0, "answered": 0, "none": 0, "given_up": 0}
        self._ready = threading.Event()
        threading.Thread(target=self._build, args=(_surfaces(twin),), name="geodesics", daemon=True).start()

    def _build(self, surfaces: dict[int, tuple[np.ndarray, np.ndarray]]) -> None:
        try:
            self._solvers = _prepare(surfaces)
        finally:
            self._ready.set()

    def ask(self, a: Hit, b: Hit) -> GeodesicQuery:
        self._ready.wait()
        mm = _distance_mm(self._solvers, a.index, a.point_mm, a.face, b.point_mm, b.face)
        self.counts["asked"] += 1
        self.counts["answered" if mm is not None else "none"] += 1
        return GeodesicQuery(time.monotonic(), mm, done=True)

    def poll(self) -> None:
        pass

    def close(self) -> None:
        pass


def _serve(conn: Any, surfaces: dict[int, tuple[np.ndarray, np.ndarray]], log_level: int) -> None:
    """The child: prepare the structures one by one, the one a waiting query needs first; send
    ``("ready", index)`` as each is, and answer each query (id, index, a_mm, face_a, b_mm, face_b), in the
    order they came, with ``("answer", id, mm)``; until the pipe closes or None arrives."""
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
    solvers: dict[int, Any] = {}
    waiting: deque[tuple[Any, ...]] = deque()
    try:
        while True:
            busy = waiting or len(solvers) < len(surfaces)
            while not busy or conn.poll(0):  # take in what has come; wait for it only when there is nothing to do
                query = conn.recv()
                if query is None:
                    return
                waiting.append(query)
                busy = True
            index = waiting[0][1] if waiting else next(i for i in surfaces if i not in solvers)
            if index not in solvers:
                prepared = _prepare_one(*surfaces[index])
                # a failure (most often no solver package) would be the same for every structure: one warning
                for i in [index] if prepared is not None else [i for i in surfaces if i not in solvers]:
                    solvers[i] = prepared
                    conn.send(("ready", i))
                continue  # queries that came meanwhile are taken in before the next step
            qid, index, a_mm, face_a, b_mm, face_b = waiting.popleft()
            conn.send(("answer", qid, _distance_mm(solvers, index, a_mm, face_a, b_mm, face_b)))
    except (EOFError, BrokenPipeError, OSError):
        pass
    finally:
        conn.close()


class GeodesicProcess:
    """The solver in a child process (multiprocessing's *spawn*: nothing of the parent's GL context or
    threads is inherited); see the module docstring. Counts its queries in :attr:`counts`."""

    def __init__(self, twin: Twin) -> None:
        surfaces = _surfaces(twin)
        self._structures = set(surfaces)
        self._pending: dict[int, tuple[GeodesicQuery, int]] = {}  # id -> (query, its structure)
        self._ready: dict[int, float] = {}  # structure -> when the process said it was prepared
        self._started = time.monotonic()
        self._ids = itertools.count(1)
        self._gone = False
        self.counts = {"asked": 0, "answered": 0, "none": 0, "given_up": 0}
        self._conn: Any = None
        self._process: Any = None
        if not surfaces:
            return
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, surfaces, logging.getLogger().getEffectiveLevel()),
                                        name="geodesics", daemon=True)  # fmt: skip
        self._process.start()
        child.close()

    def ask(self, a: Hit, b: Hit) -> GeodesicQuery:
        self.counts["asked"] += 1
        query = GeodesicQuery(time.monotonic())
        if a.index not in self._structures or self._gone:
            self.counts["none"] += 1
            query.answer(None)
            return query
        qid = next(self._ids)
        try:
            self._conn.send((qid, a.index, np.asarray(a.point_mm, dtype=np.float64), int(a.face),
                             np.asarray(b.point_mm, dtype=np.float64), int(b.face)))  # fmt: skip
        except (BrokenPipeError, OSError):
            self._lost()
            self.counts["given_up"] += 1
            query.answer(None)
            return query
        self._pending[qid] = (query, a.index)
        return query

    def poll(self) -> None:
        if not self._pending:
            return
        try:
            while self._conn.poll(0):
                message = self._conn.recv()
                if message[0] == "ready":
                    self._ready[message[1]] = time.monotonic()
                    continue
                _, qid, mm = message
                query, _ = self._pending.pop(qid, (None, 0))
                if query is not None:
                    self.counts["answered" if mm is not None else "none"] += 1
                    query.answer(mm)
        except (EOFError, OSError):
            self._lost()
        now = time.monotonic()
        for qid, (query, index) in list(self._pending.items()):
            ready = self._ready.get(index)
            late = (now - max(query.asked_at, ready) > ANSWER_WITHIN_S if ready is not None
                    else now - self._started > PREPARE_WITHIN_S)  # fmt: skip
            if self._gone or late:
                if not self._gone:
                    limit = ANSWER_WITHIN_S if ready is not None else PREPARE_WITHIN_S
                    logger.warning("distance along the surface #%d given up after %g s: the measurement keeps its "
                                   "straight distance", qid, limit)  # fmt: skip
                del self._pending[qid]
                self.counts["given_up"] += 1
                query.answer(None)

    def _lost(self) -> None:
        if not self._gone:
            self._gone = True
            code = self._process.exitcode if self._process is not None else None
            logger.warning("distances along the surface unavailable: their process is gone (exit code %s)", code)

    def close(self) -> None:
        """End the child (a query still pending is given up)."""
        if self._process is None:
            return
        with contextlib.suppress(BrokenPipeError, OSError):
            self._conn.send(None)
        self._process.join(1.0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()
        self._process = None
        self._gone = True
        for query, _ in self._pending.values():
            query.answer(None)
        self._pending.clear()
