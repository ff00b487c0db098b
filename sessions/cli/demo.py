"""`medverse demo`: the headless demo on the bundled twins, what `make demo` runs.

It builds (or maps from the cache) every bundled twin from the real anatomical data in installed
packages and prints each one's summary, then runs the headless simulator (``xrcore.backends.sim``)
around the demo twin: a head orbiting it at 90 Hz, stereo frames rendered offscreen through EGL, a
few of them written as PNG (left eye on the left). Everything it made is listed in
``<out>/demo.json``.
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

USER_ERRORS: tuple[type[BaseException], ...] = (AssetError,)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``demo``."""
    p = sub.add_parser("demo", help="headless demo on the bundled twins (what 'make demo' runs)",
                       description="Build the bundled twins from real anatomical data and summarise them.")
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default %(default)s)")
    p.add_argument("--twin", default=DEFAULT_TWIN, choices=sorted(BUNDLED),
                   help="the twin the simulator renders (default %(default)s)")
    p.add_argument("--frames", type=int, default=90, help="simulated frames at 90 Hz (default %(default)s)")
    p.add_argument("--every", type=int, default=30, help="write every Nth frame as PNG (default %(default)s)")
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


def _demo(args: argparse.Namespace) -> int:
    from sessions.sim import render_frames  # GL is loaded only when the demo renders

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
    with progress_bar(f"simulating {args.frames} stereo frames of {args.twin}") as progress:
        progress("rendering", 0.0)
        run = render_frames(twins[args.twin], out / "frames", frames=args.frames, every=args.every)
    report["simulator"] = run
    stats = run["stats"]
    cpu, gpu = stats.get("cpu_ms", {}), stats.get("gpu_ms", {})
    console.print(f"simulator: {run['frames']} frames of {args.twin!r}, {run['renderer']['width']}x"
                  f"{run['renderer']['height']} per eye, stereo {run['renderer']['stereo']}, "
                  f"{run['renderer']['gl_renderer']}; CPU ms median {cpu.get('median', float('nan')):.2f}"
                  f" p99 {cpu.get('p99', float('nan')):.2f}, GPU ms median {gpu.get('median', float('nan')):.2f}")
    for path in run["written"]:
        console.print(f"  frame: {path}")
    path = out / "demo.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    console.print(f"demo output: {out.resolve()} (summary {path.name}, {len(run['written'])} stereo PNGs in frames/)")
    return 0
