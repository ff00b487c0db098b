"""Benchmark: the frame that completes a measurement, with the surface distance answered in that frame
(inline, as ``medverse sim`` does) and in a process of its own (``view``, ``consult join`` with --geodesic).

On the bundled brain, placed as ``medverse sim`` places it, the right hand takes the Measure tool and
measures ``--pairs`` times between two random points on one hemisphere (each the first surface along a
ray from above: the hand aims there, the trigger goes down on the first point, then on the second). For
each session it reports the wall time of ``LocalSession.step`` on the frame of the second press (median,
p99, max), the steps of every other frame, and, for the process, how many frames and ms later the
measurement was applied. The process's start-up (preparing both hemispheres, about 2 s) runs before
the first pair, as it would while a user picks the tool and aims. Both sessions must give the same
distances (checked). Also how long a fresh process takes to answer a query asked the moment it starts
(the measurement of a user who measures in a session's first seconds waits that long).

Prints a summary and writes ``bench/results/geodesics.json``. Run::

    .venv/bin/python bench/geodesics.py [--pairs 40]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# bench/ holds benchmarks named like packages (bench/assets.py): drop this folder from the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402

from assets.library import build  # noqa: E402
from sessions import intents as it  # noqa: E402
from sessions.run import LocalSession, SessionConfig  # noqa: E402
from sessions.sim import working_scene  # noqa: E402
from xrcore.motion import look_rotation  # noqa: E402
from xrcore.types import FrameState, HandInput, InputState, Pose  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "geodesics.json"
PERIOD_S = 1 / 90.0


def targets(session: LocalSession, pairs: int, seed: int = 7) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pairs of world points on one hemisphere (each a surface hit from above), and where to aim from."""
    rng = np.random.default_rng(seed)
    scene = session.scene
    centre, size = scene.twin_center_and_size()
    out: list[tuple[np.ndarray, np.ndarray]] = []
    while len(out) < pairs:
        ends = []
        for _ in range(2):
            target = centre + np.array([rng.uniform(0.08, 0.25) * size, 0.0, rng.uniform(-0.3, 0.3) * size])
            hit = session.picker.pick_scene(scene, target + np.array([0.0, size, 0.0]), np.array([0.0, -1.0, 0.0]))
            ends.append(hit)
        if ends[0] is not None and ends[1] is not None and ends[0].index == ends[1].index == 0:
            out.append((np.asarray(session.ctx.world(ends[0].point_mm)), np.asarray(session.ctx.world(ends[1].point_mm))))
    return out


class Driver:
    """Frames for one session: the right hand aimed at a point, trigger up or down."""

    def __init__(self, session: LocalSession) -> None:
        self.session, self.index = session, 0
        centre, size = session.scene.twin_center_and_size()
        self.above = np.asarray(centre) + np.array([0.0, 0.6 * size, 0.0])

    def step(self, at: np.ndarray, trigger: float, events: tuple[str, ...] = ()) -> tuple[float, list[it.Intent]]:
        origin = at + np.array([0.0, 0.12, 0.0])
        aim = Pose(tuple(origin), look_rotation(tuple(origin), tuple(at)))
        head = Pose(tuple(self.above), look_rotation(tuple(self.above), tuple(at)))
        frame = FrameState(self.index, self.index * PERIOD_S, PERIOD_S, [], head=head,
                           inputs=InputState(right=HandInput(grip=aim, aim=aim, trigger=trigger)), events=events)  # fmt: skip
        self.index += 1
        t0 = time.perf_counter()
        applied = self.session.step(frame)
        return (time.perf_counter() - t0) * 1000.0, applied


def run(mode: str, twin: Any, pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    session = LocalSession(working_scene(twin), SessionConfig(hud=False, panels=False, geodesic=True,
                                                              geodesic_inline=mode == "inline"))  # fmt: skip
    drive = Driver(session)
    drive.step(pairs[0][0], 0.0, ("tool:right:measure",))
    time.sleep(3.0)  # both modes prepare their solvers meanwhile (inline: a thread; process: the child)
    second, other, later_frames, later_ms, distances = [], [], [], [], []
    for a, b in pairs:
        for point, _ in ((a, "a"), (b, "b")):
            ms, _ = drive.step(point, 0.0)
            other.append(ms)
        ms, _ = drive.step(a, 1.0)  # first point
        other.append(ms)
        ms, _ = drive.step(a, 0.0)
        other.append(ms)
        ms, applied = drive.step(b, 1.0)  # second point: the measurement is made here
        second.append(ms)
        asked = time.perf_counter()
        frames = 0
        while not any(isinstance(i, it.Measure) for i in applied):
            time.sleep(PERIOD_S)  # as a paced loop would between frames
            ms, applied = drive.step(b, 0.0)
            other.append(ms)
            frames += 1
            assert frames < 2000, "no answer"
        later_frames.append(frames)
        later_ms.append((time.perf_counter() - asked) * 1000.0)
        (m,) = [i for i in applied if isinstance(i, it.Measure)]
        distances.append(m.geodesic_mm)
        drive.step(b, 0.0)
    session.close()

    def stats(values: Sequence[float]) -> dict[str, float]:
        v = np.asarray(values, dtype=float)
        return {"median": round(float(np.median(v)), 3), "p99": round(float(np.percentile(v, 99)), 3),
                "max": round(float(v.max()), 3), "n": len(v)}  # fmt: skip

    return {"mode": mode, "second_press_step_ms": stats(second), "other_steps_ms": stats(other),
            "applied_after_frames": stats(later_frames), "applied_after_ms": stats(later_ms),
            "geodesic_mm": distances}  # fmt: skip


def first_answer(twin: Any, pairs: list[tuple[np.ndarray, np.ndarray]], session: LocalSession) -> dict[str, Any]:
    """Seconds from starting a solver process to its answer to a query asked at once, on the other
    hemisphere than the pairs' (the one the solver would otherwise prepare last: it prepares the one a
    waiting query needs first)."""
    from sessions.geodesics import GeodesicProcess  # noqa: PLC0415

    scene = session.scene
    centre, _ = scene.twin_center_and_size()
    hits = []
    for point in pairs[0]:
        mirrored = np.array([2.0 * centre[0] - point[0], point[1], point[2]])  # across the midline
        hits.append(session.picker.pick_scene(scene, mirrored + np.array([0.0, 0.3, 0.0]), np.array([0.0, -1.0, 0.0])))
    a, b = hits
    assert a is not None and b is not None and a.index == b.index != 0
    started = time.perf_counter()
    process = GeodesicProcess(twin)
    try:
        query = process.ask(a, b)
        while not query.done:
            time.sleep(0.005)
            process.poll()
        return {"seconds": round(time.perf_counter() - started, 3), "structure": a.index,
                "answered": query.mm is not None}  # fmt: skip
    finally:
        process.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=40)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    twin = build("brain")
    plain = LocalSession(working_scene(twin), SessionConfig(hud=False, panels=False))
    pairs = targets(plain, args.pairs)
    first = first_answer(twin, pairs, plain)
    results = {mode: run(mode, twin, pairs) for mode in ("inline", "process")}
    same = all(a == b or (a is not None and b is not None and abs(a - b) < 1e-6)
               for a, b in zip(results["inline"]["geodesic_mm"], results["process"]["geodesic_mm"], strict=True))  # fmt: skip
    answered = sum(d is not None for d in results["process"]["geodesic_mm"])
    print(f"brain, {args.pairs} measurements on one hemisphere ({answered} with a distance along the surface; "
          f"same distances inline and in the process: {same}); load average {__import__('os').getloadavg()[0]:.2f}")
    for mode, r in results.items():
        s, o = r["second_press_step_ms"], r["other_steps_ms"]
        line = (f"  {mode:8s} step of the second press: median {s['median']:.2f} ms, p99 {s['p99']:.2f}, max {s['max']:.2f}; "
                f"other steps median {o['median']:.2f}, p99 {o['p99']:.2f}")  # fmt: skip
        if mode == "process":
            f, w = r["applied_after_frames"], r["applied_after_ms"]
            line += f"; applied {f['median']:.0f} frames ({w['median']:.1f} ms) later at the median, {w['max']:.1f} ms at most"
        print(line)
    ratio = results["inline"]["second_press_step_ms"]["p99"] / max(results["process"]["second_press_step_ms"]["p99"], 1e-6)
    print(f"  second-press step p99, inline / process: {ratio:.1f}x")
    print(f"  a fresh process answered a query asked at once in {first['seconds']:.2f} s (structure {first['structure']}, "
          f"prepared first; answered with a distance: {first['answered']})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = {"machine": platform.platform(), "pairs": args.pairs, "same_distances": same,
               "inline_over_process_p99": round(ratio, 2), "first_answer": first}  # fmt: skip
    args.out.write_text(json.dumps({**summary, **results}, indent=1) + "\n")
    print(f"written to {args.out}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
