"""Benchmark: the shared state's digest, after one new op, against writing the whole state afresh.

Every peer sends its state digest once a second and compares each one it receives with its own, so
a participant in a room of N hashes its state up to N - 1 times a second, each time after ops have
changed it. The state is built from ``scripted_op`` ops of 16 participants (what ``bench/sync.py``
makes), then for each size one more op is applied before each timed digest. Beside it, in the same
run, the digest written the plain way (``sha256(canonical_json(state))``, every entry serialised
again), which is what peers computed before the registers kept their entries' text.

Writes ``bench/results/state.json``. Run: ``.venv/bin/python bench/state.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
import time
from pathlib import Path

# bench/assets.py, a sibling benchmark, would shadow the assets package while this folder is on the path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from net.errors import ProtocolError  # noqa: E402
from net.protocol import canonical_json  # noqa: E402
from net.state import SharedState  # noqa: E402
from sessions.consult.scripted import scripted_op  # noqa: E402


def _room_ops(state: SharedState, authors: list[SharedState], rng: random.Random, count: int, counter: list[int]) -> None:
    """Apply ``count`` ops made by the 16 authors in turn to ``state``."""
    made = 0
    while made < count:
        counter[0] += 1
        author = authors[counter[0] % len(authors)]
        kind, payload = scripted_op(rng, author.participant, author.seq + 1)
        try:
            op = author.make_op(kind, payload, 1.0)
        except ProtocolError:
            continue
        state.apply(op)
        made += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="300,1200,2400,4800", help="ops held before timing (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=60, help="timed digests per size (default %(default)s)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "state.json"))
    args = parser.parse_args()

    rng = random.Random(7)
    authors = [SharedState(i) for i in range(1, 17)]
    state = SharedState(99)
    counter = [0]
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        _room_ops(state, authors, rng, size - state.op_count, counter)
        kept, plain = [], []
        for _ in range(args.repeat):
            _room_ops(state, authors, rng, 1, counter)
            t0 = time.perf_counter()
            digest = state.digest()
            t1 = time.perf_counter()
            reference = hashlib.sha256(canonical_json(state._content())).digest()
            t2 = time.perf_counter()
            if digest != reference:
                raise SystemExit("the kept-text digest differs from the plain one")
            kept.append((t1 - t0) * 1e3)
            plain.append((t2 - t1) * 1e3)
        kept.sort()
        plain.sort()
        row = {
            "ops": state.op_count,
            "state_bytes": len(canonical_json(state._content())),
            "digest_ms_p50": round(statistics.median(kept), 3),
            "digest_ms_p99": round(kept[int(0.99 * (len(kept) - 1))], 3),
            "plain_ms_p50": round(statistics.median(plain), 3),
            "plain_ms_p99": round(plain[int(0.99 * (len(plain) - 1))], 3),
        }
        row["plain_over_kept"] = round(row["plain_ms_p50"] / row["digest_ms_p50"], 1)
        rows.append(row)
        print(f"{row['ops']:6d} ops {row['state_bytes'] / 1024:7.0f} KiB  digest after one op p50 {row['digest_ms_p50']:.3f} ms "
              f"p99 {row['digest_ms_p99']:.3f}  |  written afresh p50 {row['plain_ms_p50']:.3f} ms  ({row['plain_over_kept']}x)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "repeat": args.repeat}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
