"""Benchmark: pointer-ray picking on a 1,000,000-triangle twin, Embree BVH vs brute force.

The twin is 25 copies of the bundled ``brain`` twin (both fsaverage5 pial hemispheres, nilearn's data) on a
5x5 grid: 50 structures, 1,024,000 triangles. Rays start 30 cm outside the twin's box and aim at random
points inside it, as pointer rays do. Measured in the same run:

- ``embree_single``: one :meth:`xrcore.input.Picker.pick` call per ray (what the frame loop does,
  one or two rays per frame), median microseconds per ray and rays/s;
- ``embree_batch``: :meth:`~xrcore.input.Picker.pick_many` over all rays at once;
- ``brute_force``: a vectorised numpy Moller-Trumbore test of each ray against every triangle (the
  floor a Python user without an acceleration structure gets);
- ``bvh_build_s``: building the picker (once per twin).

Writes ``bench/results/picking.json``. Run: ``.venv/bin/python bench/picking.py [--rays 2000]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# bench/assets.py, a sibling benchmark, would shadow the assets package while this folder is on the path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402

from assets.library import build  # noqa: E402
from assets.twin import Structure, Twin  # noqa: E402
from xrcore.input import Picker  # noqa: E402


def million_triangle_twin() -> Twin:
    """50 structures, 1,024,000 triangles: the brain repeated on a 5x5 grid 20 cm apart."""
    hemispheres = build("brain").structures
    structures = []
    for i in range(5):
        for j in range(5):
            shift = np.array([0.2 * i, 0.2 * j, 0.0], dtype=np.float32)
            for h in hemispheres:
                structures.append(Structure(f"{h.name}-{i}{j}", h.vertices + shift, h.faces))
    return Twin("brain-x25", structures)


def brute_force_pick(tri0: np.ndarray, e1: np.ndarray, e2: np.ndarray, o: np.ndarray, d: np.ndarray) -> float:
    """Nearest hit distance of one ray over all triangles (Moller-Trumbore, float64), inf on a miss."""
    p = np.cross(d, e2)
    det = np.einsum("ij,ij->i", e1, p)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / det
        s = o - tri0
        u = np.einsum("ij,ij->i", s, p) * inv
        q = np.cross(s, e1)
        v = (q @ d) * inv
        t = np.einsum("ij,ij->i", e2, q) * inv
    hit = (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
    return float(t[hit].min()) if hit.any() else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rays", type=int, default=2000, help="rays for the Embree measurements")
    parser.add_argument("--brute-rays", type=int, default=10, help="rays for the brute-force reference")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "picking.json")
    args = parser.parse_args()

    twin = million_triangle_twin()
    t0 = time.perf_counter()
    picker = Picker(twin)
    build_s = time.perf_counter() - t0

    rng = np.random.default_rng(0)
    lo, hi = twin.bounds()
    targets = lo + rng.random((args.rays, 3)) * (hi - lo)
    dirs = rng.normal(size=(args.rays, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    origins = targets - dirs * (0.3 + np.linalg.norm(hi - lo))

    per_ray = []
    hits = 0
    for o, d in zip(origins, dirs, strict=True):
        t = time.perf_counter()
        hit = picker.pick(o, d)
        per_ray.append(time.perf_counter() - t)
        hits += hit is not None
    t = time.perf_counter()
    structure, _ = picker.pick_many(origins, dirs)
    batch_s = time.perf_counter() - t

    tri = np.concatenate([s.vertices.astype(np.float64)[s.faces] for s in twin.structures])
    tri0, e1, e2 = tri[:, 0], tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    brute = []
    agree = 0
    for o, d in zip(origins[: args.brute_rays], dirs[: args.brute_rays], strict=True):
        t = time.perf_counter()
        dist = brute_force_pick(tri0, e1, e2, o, d)
        brute.append(time.perf_counter() - t)
        hit = picker.pick(o, d)
        agree += (hit is None and dist == float("inf")) or (hit is not None and abs(hit.distance_m - dist) < 1e-6)

    single_med = statistics.median(per_ray)
    brute_med = statistics.median(brute)
    result: dict[str, Any] = {
        "benchmark": "picking",
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine()},
        "twin": {"structures": len(twin.structures), "triangles": twin.triangle_count},
        "bvh_build_s": build_s,
        "embree_single": {
            "rays": args.rays,
            "hit_fraction": hits / args.rays,
            "median_us": single_med * 1e6,
            "p99_us": float(np.percentile(per_ray, 99)) * 1e6,
            "rays_per_s": 1.0 / single_med,
        },
        "embree_batch": {"rays": args.rays, "total_s": batch_s, "rays_per_s": args.rays / batch_s,
                         "hit_fraction": float((structure >= 0).mean())},
        "brute_force": {"rays": len(brute), "median_ms": brute_med * 1e3, "rays_per_s": 1.0 / brute_med,
                        "agreeing_with_embree": agree},
        "speedup_single_vs_brute": brute_med / single_med,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"twin: {twin.triangle_count:,} triangles in {len(twin.structures)} structures; BVH built in {build_s:.2f} s")
    print(f"embree, one ray per call: median {single_med * 1e6:.1f} us, p99 {result['embree_single']['p99_us']:.1f} us "
          f"({1 / single_med:,.0f} rays/s, {hits / args.rays:.0%} hit)")
    print(f"embree, batched:          {args.rays / batch_s:,.0f} rays/s")
    print(f"brute force numpy:        median {brute_med * 1e3:.1f} ms per ray ({1 / brute_med:,.1f} rays/s); "
          f"{agree}/{len(brute)} agree with embree")
    print(f"speed-up per ray: {brute_med / single_med:,.0f}x; written to {args.out}")


if __name__ == "__main__":
    main()
