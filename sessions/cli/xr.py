"""`medverse sim` and `medverse view`: the headless simulator and looking at a twin.

``medverse sim --twin brain [--script path.json | --motion orbit] [--frames N] --out frames/ [--every N]``
runs a session (:mod:`sessions.sim`) on the simulator backend's fixed-step clock: a scripted user
works on the twin with the tools, both eyes are rendered offscreen (EGL), PNGs written (both eyes
side by side); it prints the frame statistics and the intents applied (and, with ``--json``, writes
them). A script runs to its end unless ``--frames`` says otherwise.

``medverse view [--twin brain] [--backend auto|openxr|sim] [--frames N] [--seconds S]`` shows a twin
in a headset through OpenXR, or, without one, in a desktop window (``auto`` falls back with one log
line); the window closes by itself after ``--frames`` frames or ``--seconds`` seconds.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from assets.errors import AssetError
from assets.twin import Twin
from sessions.intents import describe
from xrcore.backends.base import BackendError
from xrcore.gl import GLContextError
from xrcore.motion import PROCEDURAL, ScriptError, load_script
from xrcore.scene import SceneError

logger = logging.getLogger(__name__)



class CliError(ValueError):
    """A bad command-line value (message says which and what is allowed)."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    AssetError, ScriptError, SceneError, BackendError, GLContextError, CliError,
)  # fmt: skip


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``sim`` and ``view``."""
    p = sub.add_parser(
        "sim",
        help="run the headless XR simulator on a twin and write stereo PNGs",
        description="Run the headless simulator: a virtual headset on a fixed-step clock renders both eyes "
        "offscreen (EGL); prints frame statistics and writes PNGs with both eyes side by side.",
    )
    p.add_argument("--twin", default="brain", help="bundled or imported twin name, or a mesh/volume file (default %(default)s)")
    motion = p.add_mutually_exclusive_group()
    motion.add_argument("--script", type=Path, help="JSON motion script (keyframes of head/hand poses)")
    motion.add_argument("--motion", choices=sorted(PROCEDURAL), default="orbit", help="procedural motion (default %(default)s)")
    p.add_argument("--frames", type=int, help="frames to run (default: a script to its end; a motion 180)")
    p.add_argument("--out", type=Path, help="folder for PNGs (none written without it)")
    p.add_argument("--every", type=int, help="write every Nth frame (0: only the script's named keyframes; "
                   "default: 30 with --motion, 0 with --script)")
    p.add_argument("--width", type=int, default=720, help="pixels per eye, horizontally (default %(default)s)")
    p.add_argument("--height", type=int, default=800, help="pixels per eye, vertically (default %(default)s)")
    p.add_argument("--rate", type=float, default=90.0, help="display rate, Hz (default %(default)s)")
    p.add_argument("--samples", type=int, default=4, help="MSAA samples (default %(default)s)")
    p.add_argument("--stereo", choices=("auto", "multiview", "layered", "two-pass"), default="auto",
                   help="stereo rendering mode (default %(default)s)")
    p.add_argument("--json", type=Path, help="also write the statistics, written files and intents as JSON here")
    p.add_argument("--geodesic", action="store_true", help="measurements also give the distance along the surface")
    p.add_argument("--hud", action="store_true", help="show the heads-up timing line (wall-clock figures: "
                   "frames then differ from run to run)")
    p.set_defaults(func=_sim)

    v = sub.add_parser(
        "view",
        help="look at a twin in a headset, or in a desktop window without one",
        description="Show a twin through OpenXR in a headset; without an OpenXR runtime ('auto' falls back, "
        "or '--backend sim') in a desktop window: left-click/drag uses the tool (1-5 or the menu choose it), "
        "right-drag moves the twin, middle-drag orbits, Shift+middle pans, the wheel zooms, R resets the view, "
        "Ctrl+Z undoes, Escape quits.",
    )
    v.add_argument("--twin", default="brain", help="bundled or imported twin name, or a file (default %(default)s)")
    v.add_argument("--backend", choices=("auto", "openxr", "sim"), default="auto", help="default %(default)s")
    v.add_argument("--width", type=int, default=1280, help="window width in pixels (default %(default)s)")
    v.add_argument("--height", type=int, default=800, help="window height in pixels (default %(default)s)")
    v.add_argument("--seconds", type=float, help="close after this many seconds (desktop window)")
    v.add_argument("--frames", type=int, help="close after this many frames")
    v.add_argument("--blend", choices=("auto", "opaque", "alpha", "additive"), default="auto",
                   help="headset: how the image meets the room: 'alpha' over passthrough video, 'additive' on an "
                   "optical see-through display, 'opaque' for VR; 'auto' takes the runtime's preferred mode "
                   "(default %(default)s)")
    v.add_argument("--geodesic", action="store_true", help="measurements also give the distance along the surface "
                   "(computed beside the frame loop: a measurement appears once it is, a few frames later)")
    v.set_defaults(func=_view)


def load_twin(name: str) -> Twin:
    """A library twin by name, or a twin loaded from a file path; raises ``AssetError``."""
    path = Path(name)
    if path.suffix and path.exists():
        from assets.loaders import load  # noqa: PLC0415

        return load(path)
    from assets.library import build  # noqa: PLC0415

    return build(name)


def _positive(value: int | float, flag: str) -> None:
    if value <= 0:
        raise CliError(f"{flag} must be positive, got {value}")


def _sim(args: argparse.Namespace) -> int:
    from sessions.run import SessionConfig  # noqa: PLC0415
    from sessions.sim import simulate  # noqa: PLC0415 - GL only for this command

    if args.frames is not None:
        _positive(args.frames, "--frames")
    _positive(args.width, "--width")
    _positive(args.height, "--height")
    _positive(args.rate, "--rate")
    _positive(args.samples, "--samples")
    if args.every is not None and args.every < 0:
        raise CliError(f"--every must be >= 0, got {args.every}")
    every = args.every if args.every is not None else (0 if args.script else 30)
    motion: Any = load_script(args.script) if args.script else args.motion
    twin = load_twin(args.twin)
    run = simulate(
        twin, frames=args.frames, out_dir=args.out, every=every, motion=motion, width=args.width,
        height=args.height, rate_hz=args.rate, samples=args.samples, stereo=args.stereo,
        session=SessionConfig(hud=args.hud, geodesic=args.geodesic),
    )  # fmt: skip
    s = run.stats

    def fmt(key: str) -> str:
        d = s[key]
        return "n/a" if d["median"] is None else f"median {d['median']:.2f} ms, p99 {d['p99']:.2f} ms"

    r = run.renderer
    print(f"twin {twin.name}: {len(twin.structures)} structures, {twin.triangle_count} triangles")
    print(f"renderer: {r['gl_renderer']} ({r['egl_platform']}), {r['width']}x{r['height']} per eye, "
          f"{r['samples']}x MSAA, stereo {r['stereo']}")
    print(f"frames: {run.frames} at {s['rate_hz']:g} Hz; dropped {s['dropped']} (over {s['period_ms']:.2f} ms)")
    print(f"frame time: {fmt('frame_ms')}")
    print(f"CPU time:   {fmt('cpu_ms')}")
    print(f"GPU time:   {fmt('gpu_ms')}")
    session = run.session_ms
    if session.get("median") is not None:
        print(f"session:    median {session['median']:.2f} ms, p99 {session['p99']:.2f} ms (input, picking, tools, panels)")
    if run.script_frames is not None and run.frames < run.script_frames:
        print(f"warning: the script needs {run.script_frames} frames; only {run.frames} ran (--frames)")
    for record in run.intents:
        if record["kind"] != "tool":
            print(f"  {record['time']:7.3f} s  {describe(record)}")
    if run.out_dir is not None:
        print(f"wrote {len(run.written)} PNGs (both eyes side by side) to {run.out_dir}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"twin": twin.name, **run.as_dict()}, indent=2) + "\n")
        print(f"statistics written to {args.json}")
    return 1 if r["gl_errors"] else 0


def _view(args: argparse.Namespace) -> int:
    from xrcore.backends import create  # noqa: PLC0415
    from xrcore.backends.sim import SimBackend  # noqa: PLC0415

    _positive(args.width, "--width")
    _positive(args.height, "--height")
    if args.frames is not None:
        _positive(args.frames, "--frames")
    if args.seconds is not None:
        _positive(args.seconds, "--seconds")
    if args.blend != "auto" and args.backend == "sim":
        raise CliError("--blend needs a headset (--backend openxr or auto): a desktop window is always opaque")
    twin = load_twin(args.twin)
    from sessions.run import SessionConfig  # noqa: PLC0415

    config = SessionConfig(geodesic=args.geodesic)
    options = {"blend": args.blend} if args.backend != "sim" else {}
    backend = None if args.backend == "sim" else create(args.backend, **options)
    if backend is not None and not isinstance(backend, SimBackend):
        from sessions.headset import run_headset  # noqa: PLC0415 - GL and OpenXR only for this command

        done = run_headset(backend, twin, config=config, max_frames=args.frames)
        print(f"{done.stats.format()}; blend mode {backend.info.blend_mode}")
        for intent in done.session.workspace.applied:
            if intent.kind != "tool":
                print(f"  {intent.time:7.3f} s  {describe(intent.record())}")
        return 0
    from sessions.desktop import view_on_desktop  # noqa: PLC0415 - GL only for this command

    run = view_on_desktop(twin, width=args.width, height=args.height, max_seconds=args.seconds, max_frames=args.frames,
                          config=config)  # fmt: skip
    frame = run.stats["frame_ms"]
    timing = "" if frame["median"] is None else f", frame time median {frame['median']:.2f} ms, p99 {frame['p99']:.2f} ms"
    print(f"{run.frames} frames shown{timing}")
    for record in run.intents:
        if record["kind"] != "tool":
            print(f"  {record['time']:7.3f} s  {describe(record)}")
    return 0
