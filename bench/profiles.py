"""Benchmark: trainee profiles: durable appends, the frame loop's cost of submitting, and verify.

Run: ``.venv/bin/python bench/profiles.py [--no-postgres] [--verify-records 1000000] [--out ...]``

Statements are real xAPI 1.0.3 statements from ``sessions.profiles.xapi``, in the mix a scripted
attempt produces (step shown, tool actions, a hint, step passed, module completed with its metrics;
1.2 KB of canonical JSON on average, 1.1-1.5 KB). In one run it measures:

- ``appends``: durable statements per second through :meth:`ProfileStore.append`, one per call (one
  commit, one disk flush each) and in batches of ``--batch`` (one commit per batch), on SQLite (WAL,
  ``synchronous=FULL``) and on PostgreSQL (a throwaway server on its own port and data folder,
  ``synchronous_commit`` on, as ``sessions.profiles.pgtemp`` starts it for the tests).
  Goal: at least 10,000 a second batched on SQLite.
- ``frame_loop``: a scripted trainee at 90 actions a second in a 90 Hz loop (with a burst of 30 every
  2 s) submitting through :class:`ProfileWriter`: the time each frame spends in ``submit`` (p50, p99,
  max), and the frame's own work (a fixed 2 ms of Python) with and without the writer running, which
  shows what the writer thread takes from the loop through the GIL. Goal: added time per frame
  p99 < 0.1 ms.
- ``verify``: :meth:`ProfileStore.verify` of a ``--verify-records`` profile on SQLite (built directly:
  canonical texts and hashes computed here and inserted in bulk, as appends would have stored them),
  and the time ``open_store`` takes on that file (its ``PRAGMA quick_check``). Goal: < 5 s for 1,000,000.

Writes ``bench/results/profiles.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# bench/assets.py, a sibling benchmark, would shadow the assets package while this folder is on the path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from sessions.profiles import xapi  # noqa: E402
from sessions.profiles.chain import GENESIS, canonical_json  # noqa: E402
from sessions.profiles.errors import ProfileError  # noqa: E402
from sessions.profiles.pgtemp import TempPostgres  # noqa: E402
from sessions.profiles.store import ProfileStore, SQLiteProfileStore, open_store  # noqa: E402
from sessions.profiles.writer import ProfileWriter  # noqa: E402

REGISTRATION = str(uuid.uuid4())


#: One step of a scripted attempt, as the training runner records it: shown, eight tool actions, a
#: hint, passed; the module's completion (with the attempt's metrics) closes every twelfth statement.
_MIX = ("experienced", *("interacted",) * 8, "requested-hint", "passed", "completed")


def make_statement(n: int, trainee: str = "alice") -> dict[str, Any]:
    """The ``n``-th statement of a realistic mix (about 1.2 KB of canonical JSON on average)."""
    verb = _MIX[n % len(_MIX)]
    step = None if verb == "completed" else f"step-{n // len(_MIX) % 6}"
    result, context = None, None
    if verb == "interacted":
        context = {f"{xapi.ACTIVITY_ROOT}/ext/tool": "select", f"{xapi.ACTIVITY_ROOT}/ext/structure": "Precentral_L"}
    elif verb == "passed":
        result = xapi.result(scaled=0.82, success=True, duration_s=12.34)
    elif verb == "completed":
        result = xapi.result(scaled=0.82, raw=82.0, min=0.0, max=100.0, success=True, completion=True, duration_s=95.5,
                             extensions={f"{xapi.ACTIVITY_ROOT}/ext/metrics": {
                                 "path_length_m.left": 0.412, "path_length_m.right": 1.873, "economy": 1.62,
                                 "idle_s": 2.25, "sparc": -1.93, "ldlj": -7.41, "errors": 1, "accuracy_mm": 2.7}})  # fmt: skip
    return xapi.statement(
        trainee=trainee, verb=verb, module_id="brain-central-gyri", module_name="Identify the central gyri",
        step_id=step, step_name="Left precentral gyrus" if step else None, registration=REGISTRATION,
        timestamp=1_800_000_000.0 + n * 0.011, result=result, extensions=context,
    )  # fmt: skip


def bench_appends(target: str, *, single: int, batches: int, batch: int) -> dict[str, Any]:
    """Durable appends per second, one per transaction and ``batch`` per transaction."""
    with open_store(target) as store:
        made = [make_statement(i) for i in range(single)]
        t0 = time.perf_counter()
        for s in made:
            store.append("alice", [s])
        one = single / (time.perf_counter() - t0)
        groups = [[make_statement(i, "bob") for i in range(k * batch, (k + 1) * batch)] for k in range(batches)]
        t0 = time.perf_counter()
        for group in groups:
            store.append("bob", group)
        batched = batches * batch / (time.perf_counter() - t0)
        if not (store.verify("alice").ok and store.verify("bob").ok):
            raise SystemExit("the benchmark's own chains do not verify")
        size = round(statistics.mean(len(canonical_json(s).encode()) for s in made[: 10 * len(_MIX)]))
    return {"one_at_a_time_per_s": round(one), "batched_per_s": round(batched), "batch": batch, "statement_bytes_mean": size}


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1


def bench_frame_loop(target: str, *, frames: int) -> dict[str, Any]:
    """A 90 Hz loop with a scripted trainee submitting 90 actions a second (plus bursts)."""
    period = 1 / 90
    statements = [make_statement(i) for i in range(frames + frames // 180 * 30 + 10)]

    def run(writer: ProfileWriter | None) -> tuple[list[float], list[float]]:
        submit_ms, work_ms = [], []
        k = 0
        start = time.perf_counter()
        for frame in range(frames):
            t0 = time.perf_counter()
            _busy(0.002)  # the frame's own work: input, tools, scoring
            t1 = time.perf_counter()
            actions = 30 if frame % 180 == 179 else 1  # a burst every 2 s (step passed, feedback, hint)
            if writer is not None:
                for _ in range(actions):
                    writer.submit("alice", statements[k])
                    k += 1
            t2 = time.perf_counter()
            work_ms.append((t1 - t0) * 1e3)
            submit_ms.append((t2 - t1) * 1e3)
            time.sleep(max(0.0, start + (frame + 1) * period - time.perf_counter()))
        return submit_ms, work_ms

    _, work_alone = run(None)
    with ProfileWriter(target) as writer:
        submit_ms, work_with = run(writer)
        writer.flush()
        if writer.errors:
            raise SystemExit(f"the writer failed {writer.errors} statements")
        batches = writer.batches

    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4)

    return {
        "frames": frames, "batches": batches,
        "submit_ms_per_frame_p50": pct(submit_ms, 0.5), "submit_ms_per_frame_p99": pct(submit_ms, 0.99),
        "submit_ms_per_frame_max": round(max(submit_ms), 4),
        "work_ms_p99_without_writer": pct(work_alone, 0.99), "work_ms_p99_with_writer": pct(work_with, 0.99),
        "work_ms_p50_without_writer": pct(work_alone, 0.5), "work_ms_p50_with_writer": pct(work_with, 0.5),
    }  # fmt: skip


def build_profile(store: SQLiteProfileStore, trainee: str, count: int) -> None:
    """Fill ``trainee``'s chain with ``count`` records directly, as appends would have stored them."""
    templates = [canonical_json(make_statement(i, trainee)) for i in range(1200)]
    ids = [json.loads(t)["id"] for t in templates]
    conn = store.conn
    conn.execute("PRAGMA synchronous=OFF")  # a benchmark fixture: building it durably would take minutes
    prev_raw, prev = bytes(32), GENESIS
    chunk: list[tuple[str, int, str, str, str, str]] = []
    conn.execute("BEGIN")
    for seq in range(1, count + 1):
        sid = f"{seq:08x}-0000-4000-8000-{seq:012x}"
        body = templates[seq % 1200].replace(ids[seq % 1200], sid)
        raw = hashlib.sha256(prev_raw + body.encode()).digest()
        digest = raw.hex()
        chunk.append((trainee, seq, sid, body, prev, digest))
        prev_raw, prev = raw, digest
        if len(chunk) == 50_000:
            conn.executemany("INSERT INTO statements VALUES (?, ?, ?, ?, ?, ?)", chunk)
            chunk.clear()
    conn.executemany("INSERT INTO statements VALUES (?, ?, ?, ?, ?, ?)", chunk)
    conn.execute("INSERT INTO heads (trainee, seq, hash) VALUES (?, ?, ?)", (trainee, count, prev))
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def bench_verify(folder: Path, records: int) -> dict[str, Any]:
    path = folder / "million.sqlite"
    t0 = time.perf_counter()
    with open_store(path) as store:
        assert isinstance(store, SQLiteProfileStore)
        build_profile(store, "alice", records)
    built = time.perf_counter() - t0
    t0 = time.perf_counter()
    store2: ProfileStore = open_store(path)
    opened = time.perf_counter() - t0
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        result = store2.verify("alice")
        times.append(time.perf_counter() - t0)
        if not result.ok or result.count != records:
            raise SystemExit(f"verify failed on the built profile: {result.reason}")
    store2.close()
    return {
        "records": records, "file_mb": round(path.stat().st_size / 2**20), "build_s": round(built, 1),
        "open_store_s": round(opened, 2), "verify_s_median": round(statistics.median(times), 2),
        "verify_s_min": round(min(times), 2), "verify_records_per_s": round(records / statistics.median(times)),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-postgres", action="store_true", help="leave PostgreSQL out (say so in the output)")
    parser.add_argument("--single", type=int, default=500, help="appends one per transaction (default %(default)s)")
    parser.add_argument("--batch", type=int, default=256, help="statements per batched append (default %(default)s)")
    parser.add_argument("--batches", type=int, default=80, help="batched appends (default %(default)s)")
    parser.add_argument("--frames", type=int, default=1800, help="90 Hz frames for the frame-loop test (default %(default)s)")
    parser.add_argument("--verify-records", type=int, default=1_000_000, help="profile size for verify (default %(default)s)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "profiles.json"))
    args = parser.parse_args()

    # The machine may be shared: the load average says how much of it the numbers had.
    results: dict[str, Any] = {"appends": {}, "goals": {}, "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory(prefix="medverse-bench-profiles-") as tmp:
        folder = Path(tmp)
        sqlite = bench_appends(str(folder / "appends.sqlite"), single=args.single, batches=args.batches, batch=args.batch)
        results["appends"]["sqlite"] = sqlite
        print(f"SQLite      appends: one at a time {sqlite['one_at_a_time_per_s']:7d}/s   batched ({args.batch}) "
              f"{sqlite['batched_per_s']:7d}/s   ({sqlite['statement_bytes_mean']} B a statement on average)")  # fmt: skip
        if args.no_postgres:
            results["appends"]["postgresql"] = {"skipped": "--no-postgres"}
            print("PostgreSQL  appends: skipped (--no-postgres)")
        else:
            try:
                with TempPostgres() as server:
                    pg = bench_appends(server.create_database(), single=args.single, batches=args.batches, batch=args.batch)
            except ProfileError as exc:
                results["appends"]["postgresql"] = {"skipped": str(exc)}
                print(f"PostgreSQL  appends: SKIPPED, not measured: {exc}")
            else:
                results["appends"]["postgresql"] = pg
                print(f"PostgreSQL  appends: one at a time {pg['one_at_a_time_per_s']:7d}/s   batched ({args.batch}) "
                      f"{pg['batched_per_s']:7d}/s")  # fmt: skip

        loop = bench_frame_loop(str(folder / "loop.sqlite"), frames=args.frames)
        results["frame_loop"] = loop
        print(f"frame loop  90 Hz, 90 actions/s + bursts, {loop['frames']} frames ({loop['batches']} commits): submit per frame "
              f"p50 {loop['submit_ms_per_frame_p50']:.4f} ms  p99 {loop['submit_ms_per_frame_p99']:.4f} ms  "
              f"max {loop['submit_ms_per_frame_max']:.4f} ms")  # fmt: skip
        print(f"            frame work (2 ms) p50/p99 without writer {loop['work_ms_p50_without_writer']:.3f}/"
              f"{loop['work_ms_p99_without_writer']:.3f} ms, with writer {loop['work_ms_p50_with_writer']:.3f}/"
              f"{loop['work_ms_p99_with_writer']:.3f} ms")  # fmt: skip

        ver = bench_verify(folder, args.verify_records)
        results["verify"] = ver
        print(f"verify      {ver['records']:,} records ({ver['file_mb']} MB): {ver['verify_s_median']:.2f} s "
              f"({ver['verify_records_per_s']:,}/s); open_store (quick_check) {ver['open_store_s']:.2f} s; "
              f"built in {ver['build_s']:.0f} s")  # fmt: skip

    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["goals"] = {
        "sqlite_batched_per_s_at_least_10000": sqlite["batched_per_s"] >= 10_000,
        "submit_p99_ms_below_0.1": loop["submit_ms_per_frame_p99"] < 0.1,
        "verify_1m_below_5_s": ver["records"] >= 1_000_000 and ver["verify_s_median"] < 5.0,
    }
    print("goals: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in results["goals"].items()))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
