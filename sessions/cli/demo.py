"""`medverse demo`: the headless demo on the bundled twins, what `make demo` runs.

It builds (or maps from the cache) every bundled twin from the real anatomical data in installed
packages and prints each one's summary, then runs a session in the headless simulator
(:mod:`sessions.sim`) on the demo twin: a scripted user (``sessions/scripts/brain-tools.json``) selects
a hemisphere, places two landmarks and measures between them, cuts a cross-section, scales the twin
with both hands, draws a stroke and undoes it, at 90 Hz, both eyes rendered offscreen through EGL;
the frame of each step is written as PNG (left eye on the left). A twin other than ``brain`` is
orbited instead.

Then a scripted trainee takes a training module on the skull three times, getting better each time
(:data:`DEMO_MODULE`, scripts ``<module>-attempt1..3`` in ``sessions/training/scripts/``): every
action goes as an xAPI statement into a fresh profile (``<out>/profiles.sqlite``), each attempt ends
with its score table, and the trainee's HTML report is written (``<out>/report.html``). Everything it
made, the intents and the attempts included, is listed in ``<out>/demo.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from assets.errors import AssetError
from assets.library import BUNDLED, DEFAULT_TWIN, Library
from assets.twin import Twin
from assets.validate import is_watertight
from sessions.cli.twin import console, progress_bar, summary
from sessions.intents import describe

USER_ERRORS: tuple[type[BaseException], ...] = (AssetError,)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``demo``."""
    p = sub.add_parser("demo", help="headless demo on the bundled twins (what 'make demo' runs)",
                       description="Build the bundled twins from real anatomical data and summarise them.")
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default %(default)s)")
    p.add_argument("--twin", default=DEFAULT_TWIN, choices=sorted(BUNDLED),
                   help="the twin the simulator renders (default %(default)s)")
    p.add_argument("--frames", type=int, help="simulated frames at 90 Hz (default: the whole script; 90 orbiting)")
    p.add_argument("--every", type=int, default=0, help="also write every Nth frame as PNG (default: each step's frame)")
    p.add_argument("--width", type=int, default=720, help="pixels per eye, horizontally (default %(default)s)")
    p.add_argument("--height", type=int, default=800, help="pixels per eye, vertically (default %(default)s)")
    p.set_defaults(func=_demo)


def twin_record(twin: Twin, seconds: float) -> dict[str, Any]:
    """JSON-ready summary of a twin: structures, triangles, bounds (mm), watertightness."""
    return {
        "name": twin.name,
        "seconds": round(seconds, 4),
        "triangles": twin.triangle_count,
        "source_units": twin.source_units,
        "bounds_mm": (twin.bounds() * 1000.0).round(2).tolist(),
        "structures": [
            {"name": s.name, "triangles": s.triangle_count, "vertices": s.vertex_count,
             "bounds_mm": (s.bounds() * 1000.0).round(2).tolist(), "watertight": is_watertight(s),
             "lods": [{"triangles": lod.triangle_count, "error_mm": round(lod.error_mm, 3)} for lod in s.lods]}
            for s in twin.structures
        ],
    }


#: The demo's scripted user, shipped with the package.
DEMO_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "brain-tools.json"


def _demo(args: argparse.Namespace) -> int:
    from sessions.run import SessionConfig  # noqa: PLC0415
    from sessions.sim import simulate  # noqa: PLC0415 - GL is loaded only when the demo renders
    from xrcore.motion import load_script  # noqa: PLC0415

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    library = Library()
    report: dict[str, Any] = {"twins": []}
    twins: dict[str, Twin] = {}
    for name in sorted(BUNDLED, key=lambda n: n != args.twin):
        started = time.perf_counter()
        with progress_bar(f"twin {name}") as progress:
            twins[name] = library.build(name, progress=progress)
        report["twins"].append(twin_record(twins[name], time.perf_counter() - started))
        console.print(summary(twins[name]))
    scripted = args.twin == "brain"
    motion: Any = load_script(DEMO_SCRIPT) if scripted else "orbit"
    what = "a scripted user working on" if scripted else "orbiting"
    with progress_bar(f"simulating {what} {args.twin}") as progress:
        progress("rendering", 0.0)
        run = simulate(
            twins[args.twin], frames=args.frames if args.frames or scripted else 90, out_dir=out / "frames",
            every=args.every if args.every or scripted else 30, motion=motion, width=args.width, height=args.height,
            session=SessionConfig(user="demo", hud=True, geodesic=True),
        ).as_dict()  # fmt: skip
    report["simulator"] = run
    stats = run["stats"]
    cpu, gpu = stats.get("cpu_ms", {}), stats.get("gpu_ms", {})
    console.print(f"simulator: {run['frames']} frames of {args.twin!r}, {run['renderer']['width']}x"
                  f"{run['renderer']['height']} per eye, stereo {run['renderer']['stereo']}, "
                  f"{run['renderer']['gl_renderer']}; CPU ms median {cpu.get('median', float('nan')):.2f}"
                  f" p99 {cpu.get('p99', float('nan')):.2f}, GPU ms median {gpu.get('median', float('nan')):.2f}")
    for record in run["intents"]:
        if record["kind"] != "tool":
            console.print(f"  {record['time']:6.2f} s  {describe(record)}")
    for path in run["written"]:
        console.print(f"  frame: {path}")
    report["training"] = _training(out)
    path = out / "demo.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    console.print(f"demo output: {out.resolve()} (summary {path.name}, {len(run['written'])} stereo PNGs in frames/)")
    return 0


#: The module the demo's scripted trainee takes three times, and who they are.
DEMO_MODULE = "skull-craniometric-landmarks"
DEMO_TRAINEE = "demo-trainee"
DEMO_ATTEMPTS = 3


def _training(out: Path) -> dict[str, Any]:
    """Three attempts at :data:`DEMO_MODULE` into a fresh profile, then the trainee's report."""
    from sessions.cli.train import print_summary  # noqa: PLC0415 - training loads only when the demo gets here
    from sessions.profiles import ProfileWriter, open_store  # noqa: PLC0415
    from sessions.profiles.report import write_report  # noqa: PLC0415
    from sessions.training.run import train  # noqa: PLC0415

    profile = out / "profiles.sqlite"
    for stale in (profile, profile.with_name(profile.name + "-wal"), profile.with_name(profile.name + "-shm")):
        stale.unlink(missing_ok=True)  # the demo's trainee starts with an empty record every run
    attempts: list[dict[str, Any]] = []
    console.print(f"training: {DEMO_TRAINEE} takes {DEMO_MODULE!r} {DEMO_ATTEMPTS} times (scripted, simulator)")
    with ProfileWriter(profile) as writer:
        for n in range(1, DEMO_ATTEMPTS + 1):
            result = train(DEMO_MODULE, DEMO_TRAINEE, script=f"{DEMO_MODULE}-attempt{n}", writer=writer, store=profile,
                           out=out / "training")  # fmt: skip
            print_summary(result)
            attempts.append({"attempt": n, "score": round(result.score, 4), "passed": result.success,
                             "errors": result.summary.errors, "seconds": round(result.summary.duration_s, 2),
                             "accuracy_mm": result.summary.accuracy_mm, "statements": len(result.statements),
                             "adapted": result.adaptation})  # fmt: skip
    with open_store(profile) as store:
        check = store.verify(DEMO_TRAINEE)
        html = write_report(store, DEMO_TRAINEE, out / "report.html")
    scores = " -> ".join(f"{a['score']:.2f}" for a in attempts)
    console.print(f"training: scores {scores}; profile {profile.resolve()} ({check.count} statements, chain "
                  f"{'intact' if check.ok else 'BROKEN'}); report {html.resolve()}")  # fmt: skip
    return {"module": DEMO_MODULE, "trainee": DEMO_TRAINEE, "attempts": attempts, "profile": str(profile),
            "chain": check.reason, "report": str(html)}
