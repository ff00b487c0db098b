"""Distances along the surface beside the frame loop (sessions.geodesics), on the real brain twin and the
real solver: the process answers what the inline solver answers, later; a process that dies or a session
that ends loses no measurement."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from sessions import intents as it
from sessions.geodesics import GeodesicProcess, InlineGeodesics
from sessions.run import LocalSession, SessionConfig
from sessions.sim import working_scene
from xrcore.input import Hit


def _hits(session: LocalSession, side: float = 1.0) -> tuple[Hit, Hit]:
    """Two points on one hemisphere (the one on the +x side, or -x with ``side=-1``), each the first surface
    along a ray from above the twin."""
    scene = session.scene
    centre, size = scene.twin_center_and_size()
    hits = []
    for dz in (-0.2, 0.2):
        target = centre + np.array([side * 0.15 * size, 0.0, dz * size])
        origin = target + np.array([0.0, size, 0.0])
        hit = session.picker.pick_scene(scene, origin, target - origin)
        assert hit is not None
        hits.append(hit)
    if hits[0].index != hits[1].index:
        pytest.fail("the two rays should land on one hemisphere")
    return hits[0], hits[1]


def _wait(geodesics: Any, query: Any, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not query.done:
        assert time.monotonic() < deadline, "no answer"
        geodesics.poll()
        time.sleep(0.01)


@pytest.fixture
def session(brain: Any) -> LocalSession:
    return LocalSession(working_scene(brain), SessionConfig(hud=False, panels=False))


def test_the_process_answers_later_what_the_inline_solver_answers_at_once(brain: Any, session: LocalSession) -> None:
    a, b = _hits(session)
    process = GeodesicProcess(brain)
    try:
        query = process.ask(a, b)
        assert not query.done  # asked in one frame, answered in a later one
        inline = InlineGeodesics(brain).ask(a, b)
        assert inline.done and inline.mm is not None
        _wait(process, query)
        assert query.mm == pytest.approx(inline.mm, rel=1e-9)
        assert query.mm > float(np.linalg.norm(b.point_mm - a.point_mm))
        assert process.counts == {"asked": 1, "answered": 1, "none": 0, "given_up": 0}
    finally:
        process.close()


def test_the_structure_a_query_needs_is_prepared_first_and_its_preparation_is_not_counted_against_it(
    brain: Any, session: LocalSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crowded machine prepares slowly (11 s for both hemispheres with six busy programs on two cores):
    the query asked in a session's first second waits for its own structure only, and the time limit on
    an answer starts once that structure is ready."""
    from sessions import geodesics

    monkeypatch.setattr(geodesics, "ANSWER_WITHIN_S", 0.5)  # less than one hemisphere's preparation
    firsts = {}
    for side in (1.0, -1.0):  # a query on either hemisphere, each in a fresh process
        a, b = _hits(session, side)
        process = GeodesicProcess(brain)
        try:
            query = process.ask(a, b)
            _wait(process, query)
            assert query.mm is not None, process.counts
            firsts[a.index] = min(process._ready, key=process._ready.__getitem__)
        finally:
            process.close()
    assert firsts == {0: 0, 1: 1}  # whichever was asked for was the first one ready


def test_a_structure_not_ready_in_time_gives_up_its_query_with_a_warning(
    brain: Any, session: LocalSession, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from sessions import geodesics

    monkeypatch.setattr(geodesics, "PREPARE_WITHIN_S", 0.05)
    a, b = _hits(session)
    process = GeodesicProcess(brain)
    try:
        query = process.ask(a, b)
        time.sleep(0.1)
        process.poll()
        assert query.done and query.mm is None and process.counts["given_up"] == 1
        assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
            "distance along the surface #1 given up after 0.05 s: the measurement keeps its straight distance"
        ]
    finally:
        process.close()


def test_a_process_that_died_gives_up_its_queries_in_one_warning(brain: Any, session: LocalSession,
                                                                caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    a, b = _hits(session)
    process = GeodesicProcess(brain)
    try:
        pending = process.ask(a, b)
        process._process.kill()
        process._process.join()
        _wait(process, pending)
        later = process.ask(a, b)
        assert pending.mm is None and later.done and later.mm is None
        assert process.counts["given_up"] == 1 and process.counts["none"] == 1
        assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
            "distances along the surface unavailable: their process is gone (exit code -9)"
        ]
    finally:
        process.close()


def test_a_held_measurement_is_applied_when_the_session_ends_before_its_answer(brain: Any) -> None:
    """The user's measurement is not lost: closing the session applies it with its straight distance."""
    session = LocalSession(working_scene(brain), SessionConfig(hud=False, panels=False, geodesic=True))
    a, b = _hits(session)
    assert session.geodesics is not None
    query = session.geodesics.ask(a, b)
    measure = it.Measure("me", 1.0, "me/M1", tuple(a.point_mm), tuple(b.point_mm), 10.0, None, ("x", "x"))  # type: ignore[arg-type]
    session.ctx.held.append((query, measure))
    session.close()
    assert session.ctx.held == [] and query.done
    assert [(m.mark_id, m.geodesic_mm) for m in session.workspace.applied] == [("me/M1", None)]
    assert "me/M1" in session.workspace.measurements
    session.close()  # idempotent


def test_an_undo_while_a_measurement_is_held_takes_back_that_measurement(brain: Any) -> None:
    """The held measurement is the user's last change: undo drops it, and the change before it stays."""
    from xrcore.types import FrameState, HandInput, InputState

    session = LocalSession(working_scene(brain), SessionConfig(hud=False, panels=False, geodesic=True))
    try:
        a, b = _hits(session)
        session.apply(it.PlaceLandmark("me", 0.5, "me/L1", "L1", tuple(a.point_mm), a.structure))  # type: ignore[arg-type]
        assert session.geodesics is not None
        measure = it.Measure("me", 1.0, "me/M1", tuple(a.point_mm), tuple(b.point_mm), 10.0, None, ("x", "x"))  # type: ignore[arg-type]
        session.ctx.held.append((session.geodesics.ask(a, b), measure))
        undo = InputState(right=HandInput(buttons=frozenset({"b"})))  # B: undo
        applied = session.step(FrameState(0, 2.0, 1 / 90, inputs=undo))
        assert session.ctx.held == [] and not [i for i in applied if i.kind == "undo"]
        assert "me/L1" in session.workspace.landmarks and "me/M1" not in session.workspace.measurements
        assert session.feedback.startswith("undone: the measurement")
    finally:
        session.close()


def test_a_solver_that_cannot_be_built_costs_one_attempt_and_answers_every_structure_without_a_distance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The child's loop (run here in a thread, on a real pipe): the first failure (most often no solver
    package) stands for every structure, so it is tried once, and queries get None at once."""
    import multiprocessing
    import threading

    from sessions import geodesics

    tries = []
    monkeypatch.setattr(geodesics, "_prepare_one", lambda vertices, faces: tries.append(len(faces)))  # returns None
    monkeypatch.setattr(geodesics.logging, "basicConfig", lambda **kw: None)  # the child's own, not this process's
    surfaces = {0: (np.zeros((3, 3)), np.zeros((1, 3), dtype=np.int32)), 1: (np.zeros((3, 3)), np.zeros((2, 3), dtype=np.int32))}
    parent, child = multiprocessing.Pipe()
    parent.send((7, 1, np.zeros(3), 0, np.ones(3), 0))  # a query on the second structure, waiting at the start
    server = threading.Thread(target=geodesics._serve, args=(child, surfaces, 30))
    server.start()
    got = [parent.recv() for _ in range(3)]
    parent.send(None)
    server.join(5.0)
    assert not server.is_alive() and tries == [2]  # the structure asked for, tried once
    assert got == [("ready", 0), ("ready", 1), ("answer", 7, None)]
