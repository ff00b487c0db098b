"""`medverse demo`: the headless demo on the bundled twins, what `make demo` runs.

It builds (or maps from the cache) every bundled twin from the real anatomical data in installed
packages, prints each one's summary, and writes a JSON summary to the output folder.
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
                   help="the twin the demo centres on (default %(default)s)")
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
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    library = Library()
    report: dict[str, Any] = {"twins": []}
    for name in sorted(BUNDLED, key=lambda n: n != args.twin):
        started = time.perf_counter()
        with progress_bar(f"twin {name}") as progress:
            twin = library.build(name, progress=progress)
        report["twins"].append(twin_record(twin, time.perf_counter() - started))
        console.print(summary(twin))
    path = out / "twins.json"
    path.write_text(json.dumps(report, indent=2))
    console.print(f"demo output: {path.resolve()}")
    return 0
