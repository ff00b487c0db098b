"""Running a module: :func:`train` loads it, adapts it to the trainee's record, runs the session loop
on a backend with a :class:`~sessions.training.runner.TrainingRunner` hooked in, records every event
as xAPI statements in the trainee's profile, and says how it went.

Backends, as ``medverse view`` chooses them: ``sim`` (the headless simulator: a scripted trainee plays,
the session loop runs frame by frame on the simulator's fixed-step clock, rendering only with
``render=True``), ``desktop`` (a window), ``openxr`` (a headset), ``auto`` (a headset, else a window).
In a window or headset the runner writes the instructions and feedback into the session's panels.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sessions.training.loader import ModuleError, find_script, load_module
from sessions.training.record import Recorder
from sessions.training.runner import RunSummary, StepResult, TrainingRunner
from sessions.training.schema import Module

logger = logging.getLogger(__name__)

BACKENDS = ("sim", "desktop", "openxr", "auto")
#: Simulator frame rate (Hz) and how long a run may last at most without a script's end (s).
SIM_RATE_HZ = 90.0
#: Extra simulated time after the script's last keyframe (the last action's frame, a time limit).
SIM_TAIL_S = 0.5
#: How long to wait for the profile writer's acknowledgements at the end of a run (s).
FLUSH_TIMEOUT_S = 30.0


@dataclass
class TrainingResult:
    """What one attempt did: the runner's :class:`RunSummary`, the module as run (adapted), what
    adaptation changed, the statements made and how many the profile acknowledged, where the profile
    is, the frames run and the backend."""

    summary: RunSummary
    module: Module
    adaptation: dict[str, dict[str, Any]]
    statements: list[dict[str, Any]]
    stored: int
    profile: str
    frames: int
    backend: str
    written: Path | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def score(self) -> float:
        return self.summary.score

    @property
    def success(self) -> bool:
        return self.summary.success

    @property
    def steps(self) -> list[StepResult]:
        return self.summary.steps


def _profile_name(store: str | os.PathLike[str] | None) -> str:
    from sessions.profiles.store import default_target, redact_url  # noqa: PLC0415

    if store is None:
        return str(default_target())
    text = str(store)
    return redact_url(text) if text.startswith(("postgres://", "postgresql://")) else text


def prepare(
    module: str | Path | Module,
    trainee: str,
    *,
    store: str | os.PathLike[str] | None = None,
    adapt: bool = True,
    steps: Sequence[str] | None = None,
    twin: Any = None,
) -> tuple[Module, Any, dict[str, dict[str, Any]], int]:
    """Load (and check) ``module`` against its twin, adapt it to the trainee's record in ``store``,
    keep only ``steps`` when given. Returns (module, twin, adaptation notes, attempt number)."""
    from sessions.training.adapt import adapt_module, only_steps, read_record  # noqa: PLC0415

    if isinstance(module, Module):
        loaded = module
        if twin is None:
            twin = _build(loaded.twin, str(loaded.source or loaded.id))
    else:
        draft = load_module(module, check_twin=False)
        if twin is None:
            twin = _build(draft.twin, str(draft.source))
        loaded = load_module(module, twin=twin)
    notes: dict[str, dict[str, Any]] = {}
    from sessions.profiles.metrics import attempts  # noqa: PLC0415

    record = read_record(store, trainee)  # the attempt's number comes from it, adapted or not
    attempt = len(attempts(record, module_id=loaded.id)) + 1
    if adapt:
        loaded, notes = adapt_module(loaded, record)
    if steps:
        unknown = [s for s in steps if s not in {st.id for st in loaded.steps}]
        if unknown:
            raise ModuleError(f"{loaded.source or loaded.id}: no step {unknown[0]!r}")
        loaded = only_steps(loaded, steps)
    return loaded, twin, notes, attempt


def _build(name: str, source: str) -> Any:
    from assets.errors import AssetError  # noqa: PLC0415
    from assets.library import build  # noqa: PLC0415

    try:
        return build(name)
    except AssetError as exc:
        raise ModuleError(f"{source}: top level: twin: {exc}") from None


def train(
    module: str | Path | Module,
    trainee: str,
    *,
    backend: str = "sim",
    script: str | Path | None = None,
    writer: Any = None,
    store: str | os.PathLike[str] | None = None,
    out: str | Path | None = None,
    adapt: bool = True,
    steps: Sequence[str] | None = None,
    twin: Any = None,
    render: bool = False,
    max_seconds: float | None = None,
    rate_hz: float = SIM_RATE_HZ,
) -> TrainingResult:
    """Run one attempt at ``module`` for ``trainee`` and record it; see the module docstring.

    ``writer``: a :class:`~sessions.profiles.writer.ProfileWriter` to submit statements to (one is
    opened on ``store`` and closed at the end when not given); ``store``: the profile store target
    (None: the default SQLite file) whose record adapts the module; ``script``: the scripted
    trainee in the simulator (default the module's own); ``out``: a folder for the attempt's JSON
    (summary and statements) and, with ``render``, the simulator's PNGs; ``steps``: run only these;
    ``max_seconds``: end a window or headset run after this long.
    Raises :class:`ModuleError` (bad module, no script), ``ScriptError``, ``BackendError``.
    """
    if backend not in BACKENDS:
        raise ModuleError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    loaded, twin, notes, attempt = prepare(module, trainee, store=store, adapt=adapt, steps=steps, twin=twin)
    own_writer = writer is None
    if own_writer:
        from sessions.profiles.writer import ProfileWriter  # noqa: PLC0415

        writer = ProfileWriter(store)
    recorder = Recorder(trainee, loaded, writer.submit)
    runner = TrainingRunner(loaded, trainee, emit=recorder, twin=twin, attempt=attempt, adaptation=notes)
    out_dir = Path(out) if out is not None else None
    try:
        if backend == "sim":
            script_path = _script_for(loaded, script)
            frames = _run_sim(runner, twin, script_path, rate_hz, render, out_dir)
        else:
            frames = _run_interactive(runner, twin, backend, max_seconds)
        summary = runner.finish()
        writer.flush(FLUSH_TIMEOUT_S)
    finally:
        if own_writer:
            writer.close()
    stored = sum(1 for f in recorder.futures if f.done() and f.exception() is None)
    result = TrainingResult(summary, loaded, notes, recorder.statements, stored, _profile_name(store), frames, backend,
                            events=recorder.events)  # fmt: skip
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{loaded.id}-{trainee}-attempt{attempt}-{summary.registration[:8]}.json"
        path.write_text(json.dumps({"summary": summary.as_dict(), "adaptation": notes, "statements": recorder.statements},
                                   indent=1) + "\n")  # fmt: skip
        result.written = path
    logger.info("%s trained %s: score %.2f (%s), %d statements (%d stored)", trainee, loaded.id, summary.score,
                "passed" if summary.success else "not passed", len(recorder.statements), stored)  # fmt: skip
    return result


def _script_for(module: Module, script: str | Path | None) -> Path:
    if script is not None:
        return find_script(script, module.source.parent if module.source is not None else None)
    if module.script is None:
        raise ModuleError(f"{module.source or module.id}: the module names no scripted trainee for the simulator; give --script")
    return module.script


def _run_sim(runner: TrainingRunner, twin: Any, script_path: Path, rate_hz: float, render: bool, out_dir: Path | None) -> int:
    """The session loop in the simulator with the runner hooked in; returns the frames run."""
    from sessions.run import LocalSession, SessionConfig  # noqa: PLC0415
    from sessions.sim import aim_resolver, working_scene  # noqa: PLC0415
    from sessions.training.scripted import load_trainee_script  # noqa: PLC0415
    from xrcore.backends.sim import SimBackend, SimConfig  # noqa: PLC0415
    from xrcore.input import Picker  # noqa: PLC0415

    scene = working_scene(twin)
    session = LocalSession(scene, SessionConfig(hud=False), Picker(twin))
    script = load_trainee_script(script_path, scene).with_aims(aim_resolver(session))
    frames = round((script.duration + SIM_TAIL_S) * rate_hz) + 1
    runner.attach(session)
    backend = SimBackend(SimConfig(frames=frames, rate_hz=rate_hz, motion=script, width=480, height=480))
    if render:
        return _run_sim_rendered(runner, session, backend, out_dir)
    count = 0
    t0 = time.perf_counter()
    for index in range(frames):
        frame = backend.sample(index)
        session.step(frame)
        count += 1
        if runner.on_frame(frame, session):
            break
    if not runner.done:
        runner.finish(backend.sample(count - 1).predicted_display_time if count else 0.0)
    logger.info("simulated %d frames of a trainee in %.2f s", count, time.perf_counter() - t0)
    return count


def _run_sim_rendered(runner: TrainingRunner, session: Any, backend: Any, out_dir: Path | None) -> int:
    from sessions.run import FrameWriter, run  # noqa: PLC0415
    from xrcore.render import Renderer, RendererConfig  # noqa: PLC0415 - GL only when rendering

    backend.start()
    count = 0
    try:
        renderer = Renderer(backend.context, RendererConfig(width=backend.config.width, height=backend.config.height))
        try:
            writer = FrameWriter(out_dir / "frames") if out_dir is not None else None

            def on_frame(frame: Any) -> bool:
                nonlocal count
                count += 1
                return runner.on_frame(frame, session)

            run(backend, session, renderer, writer=writer, on_frame=on_frame)
        finally:
            renderer.close()
    finally:
        backend.stop()
    return count


def _hook(runner: TrainingRunner, session: Any) -> None:
    """Attach the runner and have it see every frame after the session has (a step wrapper: the
    desktop and headset loops call ``session.step`` themselves)."""
    runner.attach(session)
    plain = session.step

    def step(frame: Any) -> Any:
        applied = plain(frame)
        runner.on_frame(frame, session)
        return applied

    setattr(session, "step", step)  # noqa: B010 - an instance's step, wrapped


def _run_interactive(runner: TrainingRunner, twin: Any, backend_name: str, max_seconds: float | None) -> int:
    from xrcore.backends import create  # noqa: PLC0415 - GL and OpenXR only for a window or headset
    from xrcore.backends.sim import SimBackend  # noqa: PLC0415

    backend = None
    if backend_name in ("openxr", "auto"):
        backend = create(backend_name)
        if isinstance(backend, SimBackend):
            backend = None
    if backend is not None:
        from sessions.headset import run_headset  # noqa: PLC0415

        done = run_headset(backend, twin, on_session=lambda s: _hook(runner, s))
        return int(done.stats.frames)
    from sessions.desktop import DesktopSession  # noqa: PLC0415

    with DesktopSession(twin) as desk:
        _hook(runner, desk.session)
        start = time.perf_counter()
        while not runner.done and desk.step():
            if max_seconds is not None and time.perf_counter() - start >= max_seconds:
                break
        return desk.frames
