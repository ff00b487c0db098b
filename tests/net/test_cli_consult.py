"""``medverse consult serve``, ``token`` and ``join`` as a user runs them, in separate processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.latency

MEDVERSE = str(Path(sys.executable).with_name("medverse"))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A private MEDVERSE_HOME, so serve and token share a fresh secret file."""
    env = {k: v for k, v in os.environ.items() if k != "MEDVERSE_SECRET"}
    return {**env, "MEDVERSE_HOME": str(tmp_path / "home")}


@pytest.fixture
def served(env: dict[str, str]) -> Iterator[str]:
    """``medverse consult serve --port 0``; yields the URL it prints, stops it with SIGTERM."""
    proc = subprocess.Popen([MEDVERSE, "consult", "serve", "--port", "0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "serving on http://127.0.0.1:" in line, line + proc.stderr.read()  # type: ignore[union-attr]
    yield line.split("serving on ")[1].split()[0]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def medverse(*args: str, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MEDVERSE, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.slow
def test_serve_token_join_end_to_end(served: str, env: dict[str, str], tmp_path: Path) -> None:
    """Two ``consult join`` processes with tokens from ``consult token`` meet, exchange, and write reports;
    one stays 4 s, the other until a UNIX time and measures only a 1 s window given in UNIX time."""
    tokens = [
        medverse("consult", "token", "--room", "clinic", "--participant", p, "--role", "expert", env=env).stdout.strip()
        for p in ("ann", "ben")
    ]
    t0 = time.time()
    timing = [["--duration", "4"],
              ["--leave-at", f"{t0 + 4:.3f}", "--measure-from", f"{t0 + 2.5:.3f}", "--measure-until", f"{t0 + 3.5:.3f}"]]
    procs = [
        subprocess.Popen(
            [MEDVERSE, "consult", "join", "--server", served, "--token", token, *timing[i], "--ops-rate", "5",
             "--ops-stop", "2", "--report", str(tmp_path / f"{i}.json")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i, token in enumerate(tokens)
    ]
    outs = [p.communicate(timeout=40) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert all("p99" in out and "digest" in out for out, _ in outs)
    reports = [json.loads((tmp_path / f"{i}.json").read_text()) for i in range(2)]
    assert {r["participant"] for r in reports} == {"ann", "ben"}
    assert reports[0]["state"] == {**reports[1]["state"], "lamport": reports[0]["state"]["lamport"]}
    assert reports[0]["state"]["op_count"] >= 10
    assert reports[0]["latency"]["room"]["pose"]["count"] > 150
    assert 50 <= reports[1]["latency"]["room"]["pose"]["count"] <= 92  # 1 s of ann's 90 Hz, no more
    with urllib.request.urlopen(served + "/health", timeout=5) as response:
        assert json.load(response)["ok"] is True


@pytest.mark.parametrize(
    "args, message",
    [
        (["--token", "not-a-token"], "401"),
        (["--token", "x", "--duration", "0"], "--duration must be positive"),
        (["--token", "x", "--leave-at", "1000"], "--leave-at in the future"),
        (["--token", "x", "--loss", "1.5"], "--loss must be in [0, 1)"),
        (["--token", "x", "--liveness-timeout", "-1"], "--liveness-timeout and --connect-timeout must be >= 0"),
    ],
)
def test_join_refusals_are_one_line_errors(served: str, env: dict[str, str], args: list[str], message: str) -> None:
    """A bad token or option ends ``consult join`` with exit code 2 and one line, no traceback."""
    result = medverse("consult", "join", "--server", served, *args, env=env)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_join_without_a_server_is_a_one_line_error(env: dict[str, str]) -> None:
    """Nothing listening at the URL: exit code 2 and a line that says so."""
    result = medverse("consult", "join", "--server", "http://127.0.0.1:9", "--token", "x", "--duration", "1", env=env)
    assert result.returncode == 2
    assert "cannot reach signaling server" in result.stderr and "Traceback" not in result.stderr
