"""Benchmark: the session loop's Python CPU per frame, and frame time with tools and panels against a bare renderer.

The session steps on ``brain-1m`` (bench/render.py's: the bundled brain's fsaverage5 pial hemispheres, midpoint-subdivided
to 1,000,000 triangles, 2 structures), placed like ``medverse sim`` places a twin (:func:`sessions.sim.working_scene`).
A generated script (10 s cycles at 90 Hz, repeated; aims resolved by :func:`sessions.sim.aim_resolver`) keeps
both hands on the twin the whole time (pointers hover, cursors and the hovered name follow) and uses every tool:
select with each hand, a landmark with each hand, a measurement (the live readout follows the cursor), a
cross-section held and swept in, cleared with a stick click, a two-hand grab (scale up and back), a stroke drawn
on the surface and undone, a bare tracked left hand (26 joints) pinching to select, and six undos that take the
workspace back to where the cycle began, so that every cycle costs the same. The first cycle is a warm-up.

Measured:

1. ``session_step``, on brain-1m: ``LocalSession.step`` (input, both hands' picks, tools, intents, workspace,
   overlay, labels, gaze and wrist panels, heads-up line) over ``--frames`` frames stepped without rendering:
   median and p99 of its thread CPU time (the Python CPU per frame: the goal, median < 1 ms and p99 < 2 ms) and
   of :attr:`~sessions.run.LocalSession.step_ms` (its wall time, which also counts the time the thread waited
   for a core: on a loaded machine its p99 is the host's, not the session's). The heads-up line is fed each
   step's own time as its "CPU" figure, so that it is laid out as in a real run. A second pass over the same
   frames times the parts (thread CPU of picking both hands, scene update, tools, workspace, overlay, panels)
   through wrappers on the session's objects; a third runs under cProfile when a goal is missed (or with
   ``--profile``) and lists the top functions per frame. Also counted: how often the set of label texts
   changes from one frame to the next (each change rebuilds the renderer's glyph instances), and how many of
   those changes the heads-up line alone made.
2. ``frame_time``, on ``--render-twin`` (default the bundled brain, 40,960 triangles: on a software rasteriser
   brain-1m's vertices alone take about 2 s a frame, which hides what the session adds) at ``--width`` x
   ``--height`` per eye, 4x MSAA, the renderer's default stereo mode: the same frames (same head) drawn
   ``full`` (``LocalSession.step``, then ``Renderer.draw`` of the session's scene: tools' overlay, labels,
   panels, heads-up line), ``no_panels`` (the same session with panels and heads-up line off), ``no_labels``
   (and no label at all: the tools' balls and rods only) and ``bare`` (``Renderer.draw`` of a plain scene of
   the twin at the session's twin pose: no session, overlay, labels or hands), each variant with its own
   renderer on one context and each frame ending in ``Renderer.finish()`` (as the simulator's submit does).
   ``--render-frames`` frames spread over one cycle (the sessions step the frames in between untimed, so that
   gestures play out), in blocks of ``--block`` frames: each variant in turn on the block's frames, bare last,
   block after block, so that load from other processes hits all alike.
   Reports median, p99 and min of each, the ratios to bare (goal: full/bare <= 1.10, wall medians), each
   frame's parts (step, draw, finish), the CPU of a draw (``Renderer.stats.cpu_ms`` and the calling thread's CPU
   time), the CPU time of all the process's threads per frame (the rasteriser's too: the work a frame costs,
   which load from other processes stretches in wall time but does not change) and its ratio to bare, the
   glyph re-uploads per frame (``Renderer.label_uploads``, over frames that follow the frame before, as at
   90 Hz) and, when the goal is missed (or with ``--profile``), a profile of full frames. Also what the tools
   and panels add to a frame, full - bare in ms (medians) and as a share of a 90 Hz frame (11.1 ms).
3. ``frame_time_no_gpu``, on a Mesa software rasteriser only (unless ``--no-gpu-peer-off``): part 2 again in a
   child process under ``GALLIUM_NOOP=1``, which makes every GL call but draws nothing: the frame as an
   infinitely fast GPU would give it, all of it CPU work (Python, PyOpenGL, Mesa's state tracking). It bounds
   what a GPU can do for the ratio: a bare frame of the bundled brain then takes about 0.2 ms, so the session's
   own step (about 0.25 ms) is more than the 10% the ratio goal allows, and the ratio rises (about 6x) as the
   GPU gets faster, while the ms the session adds stay what they are.

Prints a summary and writes ``bench/results/interaction.json``. Run::

    .venv/bin/python bench/interaction.py [--frames 2700] [--width 720 --height 800] [--render-frames 60]
    .venv/bin/python bench/interaction.py --quick        # 900 steps, 20 frames drawn: a smoke run
    .venv/bin/python bench/interaction.py --skip-render  # goal 1 only (no GL context)
    .venv/bin/python bench/interaction.py --skip-step    # goal 2 (and its no-GPU peer) only
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib.util
import json
import math
import os
import platform
import pstats
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# bench/ holds benchmarks named like packages (bench/assets.py): drop this folder from the import path so that
# ``import assets`` finds the package, not a sibling script
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402

from assets.library import build  # noqa: E402
from assets.twin import Twin  # noqa: E402
from sessions.run import LocalSession, SessionConfig  # noqa: E402
from sessions.sim import aim_resolver, working_scene  # noqa: E402
from xrcore.backends.sim import SimBackend, SimConfig  # noqa: E402
from xrcore.input import Picker  # noqa: E402
from xrcore.motion import Script, parse_script  # noqa: E402
from xrcore.scene import Scene  # noqa: E402
from xrcore.stats import FrameStats  # noqa: E402
from xrcore.types import FrameState  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "interaction.json"
RATE_HZ = 90.0
SAMPLES = 4
#: The issue's goals: session step median and p99 (ms), full/bare frame-time ratio.
STEP_MEDIAN_GOAL_MS, STEP_P99_GOAL_MS, RATIO_GOAL = 1.0, 2.0, 1.10
#: One cycle of the script, seconds; every cycle leaves the workspace as it found it.
CYCLE_S = 10.0
CYCLE_FRAMES = round(CYCLE_S * RATE_HZ)
#: Twins goal 2 can draw: on a software rasteriser brain-1m's vertices alone take seconds a frame, hiding
#: what the session adds; the bundled brain (40,960 triangles) leaves it visible.
RENDER_TWINS = ("brain", "brain-1m")
#: Functions listed from a profile; full frames profiled when the frame-time goal is missed.
TOP = 15
PROFILE_FRAMES = 10


# --- the twin ----------------------------------------------------------------------------------------------------


def million_twin() -> Twin:
    """bench/render.py's ``brain-1m`` (loaded from that file, so that both benchmarks draw the same twin)."""
    path = Path(__file__).resolve().parent / "render.py"
    spec = importlib.util.spec_from_file_location("bench_render", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path}: cannot load the benchmark that builds brain-1m")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    twin: Twin = module.million_twin()
    return twin


# --- the script --------------------------------------------------------------------------------------------------

# twin millimetres (RAS+): frontal cortex of the left (x < 0) and right hemisphere, in front of the user
L1, L2 = (-30.0, 60.0, 20.0), (-45.0, 40.0, 45.0)
R1, R2 = (30.0, 60.0, 20.0), (45.0, 40.0, 45.0)
D1, D2 = (-20.0, 55.0, 45.0), (-50.0, 45.0, 10.0)
HEADS = ((0.0, 0.12, 0.62), (0.08, 0.15, 0.6), (0.0, 0.1, 0.63), (-0.08, 0.15, 0.6))
#: A script keyframe aims one hand: the left hand's keys come this much (s) after the right hand's.
LEFT_LAG_S = 0.005


def _aimed(side: str, point: Sequence[float], **hand: Any) -> dict[str, Any]:
    """A keyframe part: ``side``'s hand held beside the head, its ray on ``point`` (twin mm)."""
    return {"aim": {"hand": side, "at_point": list(point)}, side: hand}


def _placed(side: str, x: float, y: float, z: float, **hand: Any) -> dict[str, Any]:
    """A keyframe part: ``side``'s hand at (x, y, z) world m, pointing straight ahead (-Z)."""
    return {side: {"position": [x, y, z], "look_at": [x, y, -1.0], **hand}}


def _press(side: str, point: Sequence[float], at: float) -> list[tuple[float, dict[str, Any]]]:
    """A trigger pull on ``point`` peaking at ``at`` s."""
    return [(at - 0.1, _aimed(side, point, trigger=0.0)), (at, _aimed(side, point, trigger=1.0)),
            (at + 0.1, _aimed(side, point, trigger=0.0))]  # fmt: skip


def cycle_keys() -> list[tuple[float, dict[str, Any]]]:
    """One cycle's keyframes: (time s in the cycle, keyframe without ``t``), in time order. A keyframe aims one
    hand, so the left hand's keys come :data:`LEFT_LAG_S` after the right hand's."""
    right: list[tuple[float, dict[str, Any]]] = []
    left: list[tuple[float, dict[str, Any]]] = []
    right += [(0.0, {**_aimed("right", L1), "tool": {"right": "select", "left": "select"}})]
    left += [(0.0, _aimed("left", R1))]
    right += _press("right", L1, 0.5)  # select
    left += _press("left", R1, 0.9)
    right += [(1.1, {**_aimed("right", L1), "tool": {"right": "landmark", "left": "landmark"}})]
    right += _press("right", L1, 1.4)  # landmarks
    left += _press("left", R1, 1.7)
    right += [(1.9, {**_aimed("right", L1), "tool": {"right": "measure"}})]
    left += [(2.0, _aimed("left", R2))]
    right += _press("right", L1, 2.2)  # measure: first point, the live line follows the cursor, second point
    right += [(2.6, _aimed("right", L2)), *_press("right", L2, 2.8)[1:]]
    right += [(3.0, {**_placed("right", 0.12, -0.05, 0.35), "tool": {"right": "section"}}),
              (3.2, _placed("right", 0.12, -0.05, 0.35, trigger=1.0)), (3.8, _placed("right", 0.12, -0.05, 0.02, trigger=1.0)),
              (3.9, _placed("right", 0.12, -0.05, 0.02)), (4.1, _placed("right", 0.12, -0.05, 0.02, buttons=["thumbstick"])),
              (4.15, _placed("right", 0.12, -0.05, 0.02, buttons=[]))]  # fmt: skip
    left += [(3.0, _aimed("left", R1)), (3.8, _aimed("left", R2))]
    for side, x in (("right", 0.1), ("left", -0.1)):  # two-hand grab: scale up 1.5x, back, let go
        keys = right if side == "right" else left
        keys += [(4.3, _placed(side, x, -0.05, 0.3)), (4.4, _placed(side, x, -0.05, 0.3, squeeze=1.0)),
                 (4.8, _placed(side, x * 1.5, -0.05, 0.3, squeeze=1.0)), (5.2, _placed(side, x, -0.05, 0.3, squeeze=1.0)),
                 (5.3, _placed(side, x, -0.05, 0.3))]  # fmt: skip
    right += [(5.5, {**_aimed("right", D1), "tool": {"right": "draw"}}), (5.6, _aimed("right", D1)),
              (5.7, _aimed("right", D1, trigger=1.0)), (6.2, _aimed("right", D2, trigger=1.0)), (6.3, _aimed("right", D2)),
              (6.5, _aimed("right", D2, buttons=["b"])), (6.55, _aimed("right", D2, buttons=[]))]  # fmt: skip
    left += [(5.5, _aimed("left", R2)), (6.7, {**_aimed("left", R1, gesture="open"), "tool": {"left": "select"}})]
    # a bare tracked hand (26 joints) pinching to select, then a controller again
    left += [(7.0, _aimed("left", R1, gesture="open")), (7.2, _aimed("left", R1, gesture="pinch")),
             (7.4, _aimed("left", R1, gesture="open")), (7.7, _aimed("left", R1))]  # fmt: skip
    for k in range(6):  # undo: stroke's gone; landmark, landmark, measurement, plane, clearing, grab
        at = 7.9 + 0.3 * k
        # placed, not aimed: undoing the clearing brings the cut back for a moment, hiding the aim points
        right += [(at, _placed("right", 0.05, -0.05, 0.35, buttons=["b"])), (at + 0.05, _placed("right", 0.05, -0.05, 0.35))]
    right += [(9.8, _aimed("right", L1))]
    left += [(9.8, _aimed("left", R1))]
    heads = [(2.5 * k, {"head": {"position": list(p), "look_at": [0.0, 0.0, 0.0]}}) for k, p in enumerate(HEADS)]
    keys = right + [(t + LEFT_LAG_S, part) for t, part in left]
    return merge(keys + heads)


def merge(parts: list[tuple[float, dict[str, Any]]]) -> list[tuple[float, dict[str, Any]]]:
    """Parts at the same time merged into one keyframe (a tool choice and a pose, a head and a hand)."""
    by_time: dict[float, dict[str, Any]] = {}
    for t, part in sorted(parts, key=lambda p: p[0]):
        key = round(t, 6)
        into = by_time.setdefault(key, {})
        for name, value in part.items():
            if name in into and isinstance(value, dict):
                if name == "aim":
                    raise ValueError(f"two aims at {t} s: a keyframe aims one hand")
                into[name] = {**into[name], **value}
            else:
                into[name] = value
    return sorted(by_time.items())


def tools_script(cycles: int) -> Script:
    """``cycles`` cycles of :func:`cycle_keys` and a last key one cycle on."""
    keyframes = []
    for c in range(cycles):
        keyframes += [{"t": round(c * CYCLE_S + t, 6), **part} for t, part in cycle_keys()]
    head = {"position": list(HEADS[0]), "look_at": [0.0, 0.0, 0.0]}
    keyframes.append({"t": cycles * CYCLE_S, "head": head, **_aimed("right", L1)})
    return parse_script({"version": 1, "keyframes": keyframes}, "<bench/interaction.py tools script>")


# --- sessions on the script ----------------------------------------------------------------------------------------


#: Goal 2's sessions: (settings, labels drawn). Everything on; without the panels and heads-up line; without any
#: label (hovered names and readouts too: the tools' balls and rods only). Between them they split what the
#: session adds to a bare frame into overlay, labels and panels.
VARIANTS = {"full": (SessionConfig(hud=True, panels=True), True),
            "no_panels": (SessionConfig(hud=False, panels=False), True),
            "no_labels": (SessionConfig(hud=False, panels=False), False)}  # fmt: skip


@dataclass
class Run:
    """A session over the script and the simulated headset that samples its frames (without rendering)."""

    session: LocalSession
    backend: SimBackend
    intents: Counter[str] = field(default_factory=Counter)
    next_index: int = 0

    def step(self, frame: FrameState) -> None:
        for intent in self.session.step(frame):
            self.intents[intent.kind + ("" if intent.final else " (live)")] += 1
        self.next_index = frame.index + 1

    def step_to(self, target: int) -> FrameState:
        """Step the frames before ``target`` (so that gestures play out); returns ``target``'s frame, not stepped."""
        while self.next_index < target:
            self.step(self.backend.sample(self.next_index))
        return self.backend.sample(target)


def new_run(twin: Twin, picker: Picker, cycles: int, config: SessionConfig | None = None, width: int = 720,
            height: int = 800) -> Run:  # fmt: skip
    session = LocalSession(working_scene(twin), config or VARIANTS["full"][0], picker)
    motion = tools_script(cycles).with_aims(aim_resolver(session))
    backend = SimBackend(SimConfig(frames=None, rate_hz=RATE_HZ, width=width, height=height, motion=motion))
    return Run(session, backend)


def summarise(values_ms: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values_ms, dtype=np.float64)
    return {"median_ms": round(float(np.median(a)), 4), "p99_ms": round(float(np.percentile(a, 99)), 4),
            "mean_ms": round(float(a.mean()), 4), "min_ms": round(float(a.min()), 4), "max_ms": round(float(a.max()), 4),
            "frames": len(a)}  # fmt: skip


def label_texts(scene: Scene) -> tuple[str, ...]:
    return tuple(label.text for label in scene.labels())


def is_hud(text: str) -> bool:
    return text.startswith("CPU ")


@dataclass
class LabelChanges:
    """Over frames that follow the frame before (after :meth:`reset`, the next frame only starts a run): those
    whose set of label texts differs from the frame before (each rebuilds the renderer's glyph instances),
    those where only the heads-up line differs, and the renderer's actual rebuilds when told."""

    last: tuple[str, ...] | None = None
    frames: int = 0
    changes: int = 0
    hud_only: int = 0
    uploads: int = 0

    def reset(self) -> None:
        self.last = None

    def see(self, texts: tuple[str, ...], uploaded: bool = False) -> None:
        if self.last is not None:
            self.frames += 1
            self.uploads += uploaded
            if texts != self.last:
                self.changes += 1
                if tuple(t for t in texts if not is_hud(t)) == tuple(t for t in self.last if not is_hud(t)):
                    self.hud_only += 1
        self.last = texts

    def as_dict(self) -> dict[str, Any]:
        n = max(self.frames, 1)
        return {"frames": self.frames, "text_changes_per_frame": round(self.changes / n, 4),
                "hud_only_per_frame": round(self.hud_only / n, 4), "uploads_per_frame": round(self.uploads / n, 4),
                "text_changes": self.changes, "hud_only": self.hud_only, "uploads": self.uploads}  # fmt: skip


# --- goal 1: the session step ------------------------------------------------------------------------------------


class PartTimer:
    """Wraps named callables of a session's objects (instance attributes shadowing the methods) and adds up
    each one's thread CPU time per frame; :meth:`restore` takes the wrappers off."""

    def __init__(self) -> None:
        self.frame: dict[str, float] = {}
        self.series: dict[str, list[float]] = {}
        self._wrapped: list[tuple[Any, str]] = []

    def wrap(self, owner: Any, method: str, part: str) -> None:
        original: Callable[..., Any] = getattr(owner, method)
        self.series.setdefault(part, [])

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                self.frame[part] = self.frame.get(part, 0.0) + time.thread_time() - t0

        setattr(owner, method, timed)
        self._wrapped.append((owner, method))

    def end_frame(self) -> None:
        for part, series in self.series.items():
            series.append(self.frame.get(part, 0.0) * 1000.0)
        self.frame = {}

    def restore(self) -> None:
        for owner, method in self._wrapped:
            delattr(owner, method)
        self._wrapped = []


def step_pass(twin: Twin, picker: Picker, frames: int, mode: str = "time") -> dict[str, Any]:
    """Step a fresh session through the warm-up cycle, then ``frames`` timed frames. ``mode``: ``time``
    (step_ms and thread CPU), ``parts`` (the breakdown) or ``profile`` (cProfile over the timed steps)."""
    cycles = 1 + math.ceil(frames / CYCLE_FRAMES)
    run = new_run(twin, picker, cycles)
    session = run.session
    hud_stats = FrameStats(rate_hz=RATE_HZ)
    session.frame_stats = hud_stats  # the heads-up line shows each step's own time as "CPU"
    for i in range(CYCLE_FRAMES):
        run.step(run.backend.sample(i))
        hud_stats.record_cpu(session.step_ms.cpu_ms[-1])
    run.intents.clear()
    refused_before = session.workspace.refused
    timed_from = len(session.step_ms.cpu_ms)
    parts = PartTimer()
    if mode == "parts":
        parts.wrap(picker, "pick_hands", "picking_both_hands")
        parts.wrap(session.scene, "update", "scene_update")
        parts.wrap(session.belt, "update", "tools")
        parts.wrap(session.workspace, "apply", "workspace")
        parts.wrap(session, "_draw_overlay", "overlay_and_panels")
        parts.wrap(session, "_panel_labels", "panels")
    profiler = cProfile.Profile() if mode == "profile" else None
    thread_ms: list[float] = []
    labels = LabelChanges()
    gc.collect()
    try:
        for i in range(CYCLE_FRAMES, CYCLE_FRAMES + frames):
            frame = run.backend.sample(i)
            if profiler is not None:
                profiler.enable()
            c0 = time.thread_time()
            run.step(frame)
            thread_ms.append((time.thread_time() - c0) * 1000.0)
            if profiler is not None:
                profiler.disable()
            hud_stats.record_cpu(session.step_ms.cpu_ms[-1])
            parts.end_frame()
            labels.see(label_texts(session.scene))
    finally:
        parts.restore()
    step_ms = list(session.step_ms.cpu_ms)[timed_from:]
    out: dict[str, Any] = {"step": summarise(step_ms), "thread_cpu": summarise(thread_ms), "labels": labels.as_dict(),
                           "intents": dict(sorted(run.intents.items())),
                           "refused": session.workspace.refused - refused_before}  # fmt: skip
    if mode == "parts":
        series = {part: np.asarray(values) for part, values in parts.series.items()}
        series["overlay_excl_panels"] = series["overlay_and_panels"] - series["panels"]
        covered = sum(series[p] for p in ("picking_both_hands", "scene_update", "tools", "workspace", "overlay_and_panels"))
        series["rest"] = np.asarray(thread_ms) - covered
        out["parts"] = {part: summarise(list(values)) for part, values in series.items()}
    if profiler is not None:
        out["profile"] = top_functions(profiler, frames)
    return out


def top_functions(profiler: cProfile.Profile, frames: int, top: int = TOP) -> dict[str, list[dict[str, Any]]]:
    """The ``top`` functions by own time and by cumulative time, microseconds per frame."""
    stats = pstats.Stats(profiler)
    entries = []
    for (filename, line, name), (_, ncalls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = Path(filename)
        short = f"{where.parent.name}/{where.name}:{line}" if line else filename
        per_frame = {"calls_per_frame": round(ncalls / frames, 2), "own_us": round(tottime / frames * 1e6, 1),
                     "cumulative_us": round(cumtime / frames * 1e6, 1)}  # fmt: skip
        entries.append({"function": f"{name} ({short})", **per_frame})
    by_own = sorted(entries, key=lambda e: -e["own_us"])[:top]
    by_cum = sorted(entries, key=lambda e: -e["cumulative_us"])[:top]
    return {"by_own_time": by_own, "by_cumulative_time": by_cum}


# --- goal 2: frame time, full against bare -----------------------------------------------------------------------


def frame_time(twin: Twin, picker: Picker, width: int, height: int, render_frames: int, block: int,
               profile: bool | None = None) -> dict[str, Any]:  # fmt: skip
    """Each of :data:`VARIANTS` (step + draw + finish) and bare frames (draw + finish) of the same frames,
    interleaved in blocks; then :data:`PROFILE_FRAMES` full frames under cProfile when ``profile`` is True,
    or None and the goal missed."""
    from xrcore.gl.context import create_context  # noqa: PLC0415 - GL only for this part
    from xrcore.render import Renderer, RendererConfig  # noqa: PLC0415

    # blocks of consecutive frames (the glyph re-uploads counted are those of a 90 Hz run), spread over a cycle
    blocks = math.ceil(render_frames / block)
    spacing = CYCLE_FRAMES // blocks
    drawn = [CYCLE_FRAMES + b * spacing + k for b in range(blocks) for k in range(block)][:render_frames]
    cycles = 3  # warm-up, measured, and the start of the next one for the profile
    ctx = create_context("egl", width=width, height=height)
    try:
        config = RendererConfig(width=width, height=height, samples=SAMPLES, rate_hz=RATE_HZ)
        names = [*VARIANTS, "bare", "same_twin"]
        renderers = {name: Renderer(ctx, config) for name in names}
        runs = {name: new_run(twin, picker, cycles, VARIANTS[name][0], width, height) for name in VARIANTS}
        for name, run in runs.items():
            run.session.frame_stats = renderers[name].stats  # as sessions.run.run does: the heads-up line's figures
            run.session.scene.show_labels = VARIANTS[name][1]
        bare_scene = Scene(twin)
        # "same_twin": the bare renderer drawing the twin as the session left it (pose, cuts, selection and hover
        # highlights), without the session's marks, overlay, labels or panels: what the tools and panels add
        # to the twin's own rendering, since a cut changes that rendering whoever draws it
        twin_scene = Scene(twin)
        times: dict[str, dict[str, list[float]]] = {n: {"frame": [], "step": [], "draw": [], "finish": []} for n in names}
        # CPU time of every thread of the process (the rasteriser's too) per frame: the work a frame costs, which
        # load from other processes stretches in wall time but does not change
        work: dict[str, list[float]] = {n: [] for n in names}
        # CPU time of this thread in Renderer.draw: Python and the driver's work on the calling thread
        draw_cpu: dict[str, list[float]] = {n: [] for n in names}
        labels = {name: LabelChanges() for name in VARIANTS}

        def session_frame(name: str, target: int) -> tuple[FrameState, tuple[float, float, float]]:
            run, renderer = runs[name], renderers[name]
            frame = run.step_to(target)
            c0 = time.process_time()
            t0 = time.perf_counter()
            run.step(frame)
            t1 = time.perf_counter()
            uploads = renderer.label_uploads
            d0 = time.thread_time()
            renderer.draw(run.session.scene, frame.views)
            draw_cpu[name].append((time.thread_time() - d0) * 1000.0)
            t2 = time.perf_counter()
            renderer.finish()
            t3 = time.perf_counter()
            work[name].append((time.process_time() - c0) * 1000.0)
            renderer.stats.record_frame((t3 - t0) * 1000.0)
            labels[name].see(label_texts(run.session.scene), renderer.label_uploads > uploads)
            return frame, (t1 - t0, t2 - t1, t3 - t2)

        def bare_frame(frame: FrameState, name: str = "bare") -> tuple[float, float, float]:
            scene = runs["full"].session.scene  # where the twin was in that frame
            target = bare_scene if name == "bare" else twin_scene
            target.twin_pose, target.twin_scale = scene.twin_pose, scene.twin_scale
            if name == "same_twin":
                target.clip_planes = list(scene.clip_planes)
                if (target.selected, target.hovered) != (scene.selected, scene.hovered):
                    target.selected, target.hovered = set(scene.selected), set(scene.hovered)
                    target.version += 1
            c0 = time.process_time()
            t0 = time.perf_counter()
            d0 = time.thread_time()
            renderers[name].draw(target, frame.views)
            draw_cpu[name].append((time.thread_time() - d0) * 1000.0)
            t1 = time.perf_counter()
            renderers[name].finish()
            t2 = time.perf_counter()
            work[name].append((time.process_time() - c0) * 1000.0)
            return 0.0, t1 - t0, t2 - t1

        def record(name: str, parts: tuple[float, float, float]) -> None:
            for key, seconds in zip(("step", "draw", "finish"), parts, strict=True):
                times[name][key].append(seconds * 1000.0)
            times[name]["frame"].append(sum(parts) * 1000.0)

        # warm-up: the first cycle stepped, its last frames drawn (uploads, glyph atlas, shaders)
        for target in range(CYCLE_FRAMES - 4, CYCLE_FRAMES):
            for name in VARIANTS:
                frame, _ = session_frame(name, target)
            bare_frame(frame)
            bare_frame(frame, "same_twin")
        cpu_from = {name: len(r.stats.cpu_ms) for name, r in renderers.items()}
        gpu_from = {name: len(r.stats.gpu_ms) for name, r in renderers.items()}
        gc.collect()
        for start in range(0, len(drawn), block):
            targets = drawn[start : start + block]
            for name in VARIANTS:
                labels[name].reset()
                for target in targets:
                    _, parts = session_frame(name, target)
                    record(name, parts)
            for name in ("bare", "same_twin"):
                for target in targets:
                    # the full session's twin is now as the block's last frame left it; it moves only in a grab
                    record(name, bare_frame(runs["full"].backend.sample(target), name))
            if sys.stdout.isatty():
                print(f"  drawn {min(start + block, len(drawn))}/{len(drawn)} frames of each", end="\r", flush=True)
        if sys.stdout.isatty():
            print(" " * 40, end="\r")
        bare = times["bare"]["frame"]
        result: dict[str, Any] = {
            "width": width, "height": height, "samples": renderers["bare"].samples, "stereo": renderers["bare"].stereo,
            "gl_renderer": ctx.info.get("renderer"), "frames_drawn": len(drawn), "block": block, "block_spacing": spacing,
        }  # fmt: skip
        for name in names:
            frame_ms = times[name]["frame"]
            r = renderers[name]
            gpu = list(r.stats.gpu_ms)[gpu_from[name] :]
            entry: dict[str, Any] = {
                **summarise(frame_ms),
                "parts": {k: summarise(v) for k, v in times[name].items() if k != "frame" and any(v)},
                "renderer_cpu": summarise(list(r.stats.cpu_ms)[cpu_from[name] :]),
                "process_cpu": summarise(work[name]),
                "draw_thread_cpu": summarise(draw_cpu[name]),
                "gpu": summarise(gpu) if gpu else None,
            }
            if name in VARIANTS:
                paired = np.asarray(frame_ms) / np.asarray(bare)
                twin_ms = times["same_twin"]["frame"]
                entry.update({
                    "over_bare_median": round(float(np.median(frame_ms) / np.median(bare)), 4),
                    "over_bare_p99": round(float(np.percentile(frame_ms, 99) / np.percentile(bare, 99)), 4),
                    "over_bare_paired_median": round(float(np.median(paired)), 4),
                    "process_cpu_over_bare_median": round(float(np.median(work[name]) / np.median(work["bare"])), 4),
                    "over_twin_median": round(float(np.median(frame_ms) / np.median(twin_ms)), 4),
                    "over_twin_paired_median": round(float(np.median(np.asarray(frame_ms) / np.asarray(twin_ms))), 4),
                    "process_cpu_over_twin_median": round(float(np.median(work[name]) / np.median(work["same_twin"])), 4),
                    "labels": labels[name].as_dict(),
                    "intents": dict(sorted(runs[name].intents.items())), "refused": runs[name].session.workspace.refused,
                })  # fmt: skip
            result[name] = entry
        result["gl_errors"] = sum(r.gl_errors for r in renderers.values())
        result["load_average"] = [round(v, 2) for v in os.getloadavg()]
        if profile or (profile is None and result["full"]["over_bare_median"] > RATIO_GOAL):
            profiler = cProfile.Profile()
            for target in range(2 * CYCLE_FRAMES, 2 * CYCLE_FRAMES + PROFILE_FRAMES):  # the next cycle's start
                runs["full"].step_to(target)
                profiler.enable()
                session_frame("full", target)
                profiler.disable()
            result["profile_full_frame"] = top_functions(profiler, PROFILE_FRAMES)
        for r in renderers.values():
            r.close()
    finally:
        ctx.close()
    return result


# --- main --------------------------------------------------------------------------------------------------------


def meets_step_goal(summary: dict[str, float]) -> bool:
    return summary["median_ms"] < STEP_MEDIAN_GOAL_MS and summary["p99_ms"] < STEP_P99_GOAL_MS


def print_profile(title: str, profile: dict[str, list[dict[str, Any]]], top: int = 12) -> None:
    print(f"{title} (us per frame; own time, then cumulative):")
    for e in profile["by_own_time"][:top]:
        print(f"  {e['own_us']:8.1f} own  {e['cumulative_us']:8.1f} cum  {e['calls_per_frame']:7.2f}x  {e['function']}")
    print("  --")
    for e in profile["by_cumulative_time"][:top]:
        print(f"  {e['own_us']:8.1f} own  {e['cumulative_us']:8.1f} cum  {e['calls_per_frame']:7.2f}x  {e['function']}")


def render_part(args: argparse.Namespace, twin: Twin, picker: Picker) -> dict[str, Any]:
    """Goal 2 on ``twin``: measured, printed, and returned with its ``goal_met`` and the time the tools and
    panels add to a frame."""
    print(f"frame time on {twin.name} ({twin.triangle_count:,} triangles) at {args.width}x{args.height} per eye, "
          f"{SAMPLES}x MSAA: {args.render_frames} full/bare pairs ...", flush=True)  # fmt: skip
    ft = frame_time(twin, picker, args.width, args.height, args.render_frames, args.block, True if args.profile else None)
    ft["twin"] = {"name": twin.name, "structures": len(twin.structures), "triangles": twin.triangle_count}
    ft["goal_met"] = ft["full"]["over_bare_median"] <= RATIO_GOAL
    # what the session's tools and panels add to a frame, in ms and as a share of a 90 Hz frame (11.1 ms): the
    # figure that matters where the bare frame is short (a GPU), so that any fixed cost is a large ratio of it
    added = ft["full"]["median_ms"] - ft["bare"]["median_ms"]
    ft["added_ms_median"] = round(added, 4)
    ft["added_share_of_90hz_frame"] = round(added / (1000.0 / RATE_HZ), 4)
    print_frame_time(ft, ft["gl_renderer"])
    return ft


def print_frame_time(ft: dict[str, Any], what: str) -> None:
    print(f"  {what}, stereo {ft['stereo']}, load average {ft['load_average'][0]}; wall ms per frame "
          f"(median / p99 / min; parts: step, draw, finish medians); CPU per draw: Renderer.stats.cpu_ms and this "
          f"thread's CPU time; CPU of all the process's threads per frame (medians):")  # fmt: skip
    for name in (*VARIANTS, "bare", "same_twin"):
        e = ft[name]
        split = ", ".join(f"{k} {v['median_ms']:.2f}" for k, v in e["parts"].items())
        print(f"    {name:9s} {e['median_ms']:6.1f} / {e['p99_ms']:6.1f} / {e['min_ms']:6.1f}  ({split}); draw CPU "
              f"{e['renderer_cpu']['median_ms']:.2f}, thread {e['draw_thread_cpu']['median_ms']:.2f}; "
              f"all threads {e['process_cpu']['median_ms']:.1f}")  # fmt: skip
    goal = f"; goal <= {RATIO_GOAL:.2f} (wall medians): {'met' if ft['goal_met'] else 'MISSED'}"
    for name in VARIANTS:
        e = ft[name]
        print(f"  {name}/bare: wall {e['over_bare_median']:.3f} (medians), {e['over_bare_p99']:.3f} (p99), "
              f"{e['over_bare_paired_median']:.3f} (median of same-frame ratios); CPU of all threads "
              f"{e['process_cpu_over_bare_median']:.3f}"
              + (goal if name == "full" else ""))  # fmt: skip
    e = ft["full"]
    print(f"  full/twin (the bare renderer with the same cuts and highlights): wall {e['over_twin_median']:.3f} "
          f"(medians), {e['over_twin_paired_median']:.3f} (median of same-frame ratios); CPU of all threads "
          f"{e['process_cpu_over_twin_median']:.3f}")  # fmt: skip
    print(f"  tools and panels add {ft['added_ms_median']:.2f} ms to a frame (medians, full - bare): "
          f"{100 * ft['added_share_of_90hz_frame']:.1f}% of a 90 Hz frame")  # fmt: skip
    lc = ft["full"]["labels"]
    print(f"  glyph re-uploads (full): {lc['uploads']} in {lc['frames']} frames that follow the frame before "
          f"({lc['uploads_per_frame']:.2f} per frame); label texts changed on {lc['text_changes']}, the heads-up "
          f"line alone on {lc['hud_only']}; GL errors {ft['gl_errors']}")  # fmt: skip
    if "profile_full_frame" in ft:
        print_profile("  profile of a full frame (step + draw + finish)", ft["profile_full_frame"])


def is_mesa_gallium(renderer: str | None) -> bool:
    """Whether GL comes from one of Mesa's software rasterisers, where ``GALLIUM_NOOP=1`` drops the drawing."""
    return bool(renderer) and any(name in str(renderer) for name in ("llvmpipe", "softpipe"))


def no_gpu_peer(args: argparse.Namespace) -> dict[str, Any] | None:
    """Goal 2 again in a child process under ``GALLIUM_NOOP=1`` (read when Mesa loads its driver, hence the
    process): the frame as an infinitely fast GPU would give it, all of it the CPU's work (Python, PyOpenGL and
    Mesa's state tracking). None, said in one line, if the child fails."""
    out = args.out.with_name(args.out.stem + "-no-gpu.json")
    command = [sys.executable, str(Path(__file__).resolve()), "--skip-step", "--no-gpu-peer-off", "--width",
               str(args.width), "--height", str(args.height), "--render-frames", str(args.render_frames), "--block",
               str(args.block), "--render-twin", args.render_twin, "--out", str(out)]  # fmt: skip
    if args.profile:
        command.append("--profile")
    print("frame time again, on a GPU that takes no time ...", flush=True)
    done = subprocess.run(command, check=False, env={**os.environ, "GALLIUM_NOOP": "1"}, capture_output=True, text=True)
    if done.returncode != 0 or not out.exists():
        print(f"  no-GPU peer failed (exit code {done.returncode}): {(done.stderr or done.stdout).strip()[-300:]}")
        return None
    ft: dict[str, Any] = json.loads(out.read_text())["frame_time"]
    out.unlink()
    return ft


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=2700, help="timed session steps for goal 1 (90 Hz frames)")
    ap.add_argument("--width", type=int, default=720, help="pixels per eye for goal 2")
    ap.add_argument("--height", type=int, default=800)
    ap.add_argument("--render-frames", type=int, default=60, help="frames drawn per variant for goal 2, over one cycle")
    ap.add_argument("--render-twin", choices=RENDER_TWINS, default="brain",
                    help="twin drawn for goal 2 (brain-1m: about 2 s a frame on llvmpipe)")  # fmt: skip
    ap.add_argument("--block", type=int, default=5, help="frames per block of the full/bare interleave")
    ap.add_argument("--profile", action="store_true", help="profile even when the goals are met")
    ap.add_argument("--skip-render", action="store_true", help="goal 1 only")
    ap.add_argument("--skip-step", action="store_true", help="goal 2 only")
    ap.add_argument("--no-gpu-peer-off", dest="no_gpu_peer", action="store_false",
                    help="on a Mesa software rasteriser, do not measure goal 2 again with GALLIUM_NOOP=1")  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="900 steps, 30 frame pairs: a smoke run")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.quick:
        args.frames, args.render_frames = 900, 20
    if args.frames < 1 or not 1 <= args.render_frames <= CYCLE_FRAMES or not 1 <= args.block <= args.render_frames:
        ap.error(f"need --frames >= 1, 1 <= --render-frames <= {CYCLE_FRAMES} and 1 <= --block <= --render-frames")

    twin: Twin | None = None
    picker: Picker | None = None
    result: dict[str, Any] = {
        "benchmark": "interaction",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "processor": platform.processor() or platform.machine()},
        "script": {"cycle_s": CYCLE_S, "rate_hz": RATE_HZ, "warm_up_frames": CYCLE_FRAMES},
        "goals": {"step_median_ms": STEP_MEDIAN_GOAL_MS, "step_p99_ms": STEP_P99_GOAL_MS, "full_over_bare": RATIO_GOAL},
    }  # fmt: skip

    if not args.skip_step:
        t0 = time.perf_counter()
        twin = million_twin()
        picker = Picker(twin)
        print(f"twin {twin.name}: {twin.triangle_count:,} triangles in {len(twin.structures)} structures; "
              f"picker built; {time.perf_counter() - t0:.1f} s")  # fmt: skip
        result["twin"] = {"name": twin.name, "structures": len(twin.structures), "triangles": twin.triangle_count}
        timed = step_pass(twin, picker, args.frames)
        parts = step_pass(twin, picker, args.frames, mode="parts")
        step, cpu = timed["step"], timed["thread_cpu"]
        met = meets_step_goal(cpu)
        met_wall = meets_step_goal(step)
        load = [round(v, 2) for v in os.getloadavg()]
        result["session_step"] = {**timed, "parts": parts["parts"], "goal_met": met, "goal_met_wall": met_wall,
                                  "load_average": load}  # fmt: skip
        print(f"session step, {args.frames} frames without rendering (goal: median < {STEP_MEDIAN_GOAL_MS:g} ms, "
              f"p99 < {STEP_P99_GOAL_MS:g} ms):")  # fmt: skip
        print(f"  Python CPU (thread time): median {cpu['median_ms']:.3f} ms, p99 {cpu['p99_ms']:.3f} ms, "
              f"max {cpu['max_ms']:.2f} ms: {'met' if met else 'MISSED'}")  # fmt: skip
        print(f"  wall (LocalSession.step_ms): median {step['median_ms']:.3f} ms, p99 {step['p99_ms']:.3f} ms, "
              f"max {step['max_ms']:.2f} ms: {'met' if met_wall else 'MISSED'} (load average {load[0]} on "
              f"{os.cpu_count()} cores: the gap to CPU time is time spent waiting for a core)")  # fmt: skip
        print("  parts, thread CPU (median / p99 ms): " + ", ".join(f"{name} {p['median_ms']:.3f}/{p['p99_ms']:.3f}"
                                                         for name, p in parts["parts"].items()))  # fmt: skip
        print(f"  intents per {args.frames} frames: " + ", ".join(f"{k} {v}" for k, v in timed["intents"].items())
              + f"; refused {timed['refused']}")  # fmt: skip
        lab = timed["labels"]
        print(f"  label texts changed on {lab['text_changes_per_frame']:.2f} of frames (each change rebuilds the "
              f"glyph instances; here the heads-up line shows the step's own time: frame_time counts it with the "
              f"renderer's)")  # fmt: skip
        if not (met and met_wall) or args.profile:
            profiled = step_pass(twin, picker, args.frames, mode="profile")
            result["session_step"]["profile"] = profiled["profile"]
            print_profile("  profile of LocalSession.step", profiled["profile"])

    if not args.skip_render:
        if twin is None or args.render_twin != twin.name:
            twin = build(args.render_twin)
            picker = Picker(twin)
        assert picker is not None
        ft = result["frame_time"] = render_part(args, twin, picker)
        if args.no_gpu_peer and is_mesa_gallium(ft["gl_renderer"]):
            peer = no_gpu_peer(args)
            if peer is not None:
                result["frame_time_no_gpu"] = peer
                print_frame_time(peer, "a GPU that takes no time (Mesa's GALLIUM_NOOP: every GL call is made, nothing is "
                                       "drawn; the same frames, in a process of its own)")  # fmt: skip

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
