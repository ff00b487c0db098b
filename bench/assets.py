"""Benchmark: loading a ~1,000,000-triangle twin from the twin cache vs trimesh and numpy.

Run: ``.venv/bin/python bench/assets.py [--repeats 15] [--out bench/results/assets.json]``

The twin is real data: the ``brain-mni`` surface (MNI152 template, ~940k triangles) plus the ``brain``
hemispheres subdivided once (~164k), about 1.1M triangles in three structures. In one run it measures
(medians and p99 over ``--repeats`` loads, warm page cache):

- ``trimesh``: ``trimesh.load`` of the same twin exported as GLB (what a Python user does today);
- ``numpy``: ``numpy.load`` of each structure's vertex and face arrays from ``.npy`` files (the floor);
- ``cache``: ``TwinCache.get`` (checked manifest, memory-mapped arrays: what ``Library.build`` does);
- ``cache+touch``: the same, then reading every byte of every array (what a first upload to the GPU
  costs on top of the mapping).

Goals from the foundation issue: cache at least 50x faster than trimesh, within 3x of numpy; peak
resident memory of a cache load plus a full read at most 2x the twin's array bytes above the
interpreter's baseline (measured in a fresh subprocess).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assets.cache import TwinCache, content_key  # noqa: E402
from assets.export import export_glb  # noqa: E402
from assets.library import Library  # noqa: E402
from assets.twin import Structure, Twin  # noqa: E402

_MEMORY_PROBE = """
import sys
sys.path.insert(0, {root!r})
import numpy as np
from assets.cache import TwinCache
def status_kb(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
def rss_kb():
    return status_kb("VmRSS")
base = rss_kb()
twin = TwinCache({cache!r}).get({key!r})
total = 0.0
for s in twin.structures:
    total += float(s.vertices.sum(dtype=np.float64)) + float(s.faces.sum(dtype=np.int64))
# VmHWM, not ru_maxrss: after fork+exec Linux's ru_maxrss still holds the parent's peak.
peak = status_kb("VmHWM")
print(base, rss_kb(), peak, total)
"""


def million_triangle_twin() -> Twin:
    library = Library()
    mni = library.build("brain-mni")
    brain = library.build("brain")
    structures = [Structure(s.name, np.array(s.vertices), np.array(s.faces), s.color) for s in mni.structures]
    for s in brain.structures:
        vertices, faces = trimesh.remesh.subdivide(np.asarray(s.vertices, dtype=np.float64), np.asarray(s.faces))
        structures.append(Structure(s.name, vertices, faces, s.color))
    return Twin("bench-1m", structures, source_units="mm")


def timed(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    fn()  # warm the page cache and imports
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    samples.sort()
    return {
        "median_ms": statistics.median(samples) * 1000.0,
        "p99_ms": samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))] * 1000.0,
        "min_ms": samples[0] * 1000.0,
        "repeats": repeats,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "assets.json")
    args = parser.parse_args()

    twin = million_triangle_twin()
    array_bytes = twin.nbytes()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        glb = export_glb(twin, work / "twin.glb")
        npy = []
        for i, s in enumerate(twin.structures):
            for role, array in (("v", s.vertices), ("f", s.faces)):
                path = work / f"{i}{role}.npy"
                np.save(path, np.ascontiguousarray(array))
                npy.append(path)
        cache = TwinCache(work / "cache")
        key = content_key("bench-1m")
        cache.put(key, twin)

        def via_cache() -> Twin:
            loaded = cache.get(key)
            assert loaded is not None
            return loaded

        def via_cache_touch() -> float:
            return sum(float(s.vertices.sum(dtype=np.float64)) + float(s.faces.sum(dtype=np.int64))
                       for s in via_cache().structures)

        results = {
            "trimesh": timed(lambda: trimesh.load(glb), max(3, args.repeats // 3)),
            "numpy": timed(lambda: [np.load(p) for p in npy], args.repeats),
            "cache": timed(via_cache, args.repeats),
            "cache+touch": timed(via_cache_touch, args.repeats),
        }
        probe = subprocess.run([sys.executable, "-c", _MEMORY_PROBE.format(root=str(ROOT), cache=str(cache.root),
                                                                             key=key)],
                               capture_output=True, text=True, check=True)
        base_kb, _, peak_kb, _ = probe.stdout.split()

    cache_ms = results["cache"]["median_ms"]
    added = (int(peak_kb) - int(base_kb)) * 1024
    report: dict[str, Any] = {
        "twin": {"triangles": twin.triangle_count, "structures": len(twin.structures), "array_bytes": array_bytes},
        "results": results,
        "ratios": {
            "trimesh_over_cache": results["trimesh"]["median_ms"] / cache_ms,
            "cache_over_numpy": cache_ms / results["numpy"]["median_ms"],
            "cache_touch_over_numpy": results["cache+touch"]["median_ms"] / results["numpy"]["median_ms"],
        },
        "memory": {"baseline_rss_bytes": int(base_kb) * 1024, "peak_rss_bytes": int(peak_kb) * 1024,
                   "added_bytes": added, "added_over_array_bytes": added / array_bytes},
        "goals": {"trimesh_over_cache_min": 50.0, "cache_over_numpy_max": 3.0, "added_over_array_bytes_max": 2.0},
    }
    report["goals_met"] = (report["ratios"]["trimesh_over_cache"] >= 50.0
                           and report["ratios"]["cache_over_numpy"] <= 3.0
                           and report["memory"]["added_over_array_bytes"] <= 2.0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"twin: {twin.triangle_count:,} triangles in {len(twin.structures)} structures, "
          f"{array_bytes / 1e6:.1f} MB of arrays")
    for name, r in results.items():
        print(f"  {name:12s} median {r['median_ms']:9.3f} ms   p99 {r['p99_ms']:9.3f} ms")
    ratios = report["ratios"]
    print(f"  trimesh / cache       {ratios['trimesh_over_cache']:8.1f}x  (goal >= 50x)")
    print(f"  cache / numpy         {ratios['cache_over_numpy']:8.3f}x  (goal <= 3x)")
    print(f"  cache+touch / numpy   {ratios['cache_touch_over_numpy']:8.3f}x")
    print(f"  memory added by a cache load + full read: {added / 1e6:.1f} MB = "
          f"{report['memory']['added_over_array_bytes']:.2f}x the array bytes (goal <= 2x)")
    print(f"wrote {args.out}")
    return 0 if report["goals_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
