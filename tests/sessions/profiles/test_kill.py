"""Nothing acknowledged is lost: a process appending through ProfileWriter is SIGKILLed 100+ times."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sessions.profiles import open_store

ROOT = Path(__file__).resolve().parents[3]

#: The appending process: a scripted trainee pair acting at about 90 statements a second, with bursts
#: (a step passed, a hint, an error at once). Each statement id is printed once its receipt arrives,
#: i.e. after the commit, with one write(2) per line so a kill never leaves half a line.
CHILD = r"""
import os, random, sys, time, uuid
from sessions.profiles.writer import ProfileWriter

path, seed = sys.argv[1], int(sys.argv[2])
os.write(1, b"ready\n")
sys.stdin.readline()
writer = ProfileWriter(path, batch_max=64)
rng = random.Random(seed)

def ack(future):
    if future.exception() is None:
        os.write(1, (future.result().statement_id + "\n").encode())

n = 0
start = time.perf_counter()
while True:
    burst = rng.randint(20, 80) if rng.random() < 0.08 else 1
    for _ in range(burst):
        n += 1
        trainee = "alice" if n % 3 else "bob"
        statement = {
            "id": str(uuid.uuid4()),
            "actor": {"account": {"homePage": "https://medverse.example/trainees", "name": trainee}},
            "verb": {"id": "http://adlnet.gov/expapi/verbs/interacted"},
            "object": {"id": "https://medverse.example/xapi/modules/m/steps/s%d" % (n % 7)},
            "result": {"extensions": {"n": n, "t": time.time()}},
        }
        writer.submit(trainee, statement).add_done_callback(ack)
    time.sleep(max(0.0, start + n / 90.0 - time.perf_counter()))
"""


def _start(path: Path, seed: int) -> subprocess.Popen[bytes]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(seed)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    return child


@pytest.mark.slow
def test_sigkill_loses_no_acknowledged_statement(tmp_path: Path) -> None:
    """After each of 100+ SIGKILLs at random moments, every acked id is stored, the file is sound, and both chains verify."""
    path = tmp_path / "profiles.sqlite"
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    acked: set[str] = set()
    kills = kills_mid_stream = 0
    deadline = time.monotonic() + 90
    upcoming = _start(path, rng.randrange(1 << 30))
    while kills < 110 and time.monotonic() < deadline:
        child = upcoming
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline() == b"ready\n", child.stderr.read().decode() if child.stderr else ""
        child.stdin.write(b"go\n")
        child.stdin.flush()
        upcoming = _start(path, rng.randrange(1 << 30))  # starts (imports) while this one runs
        time.sleep(rng.uniform(0.02, 0.3))
        os.kill(child.pid, signal.SIGKILL)
        out, err = child.communicate()
        assert child.returncode == -signal.SIGKILL, f"seed {seed}: child exited by itself: {err.decode()[-500:]}"
        lines = out.decode().split("\n")
        new = {line for line in lines[:-1] if len(line) == 36}  # the last piece is after the final newline
        kills += 1
        kills_mid_stream += bool(new)
        acked |= new
        with open_store(path) as store:
            stored = {row[0] for row in store._query("SELECT statement_id FROM statements")}
            lost = acked - stored
            assert not lost, f"seed {seed}, kill {kills}: {len(lost)} acknowledged statements lost"
            for trainee in store.trainees():
                result = store.verify(trainee)
                assert result.ok, f"seed {seed}, kill {kills}: {trainee}: {result.reason}"
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)], f"seed {seed}, kill {kills}"
        conn.close()
    upcoming.kill()
    upcoming.communicate()
    print(f"seed {seed}: {kills} kills, {kills_mid_stream} with acks in flight, {len(acked)} acknowledged statements kept")
    assert kills >= 100, f"only {kills} kills in the time allowed"
    assert kills_mid_stream >= 80 and len(acked) >= 2000, (kills_mid_stream, len(acked))
