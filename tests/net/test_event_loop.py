"""``consult serve`` and ``consult join`` run on the event loop that ``--loop`` names, uvloop by default."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from net.eventloop import EventLoopError, loop_factory, run_on_loop
from net.tokens import issue_token

pytestmark = pytest.mark.latency

MEDVERSE = str(Path(sys.executable).with_name("medverse"))
SECRET = "event-loop-tests-secret-0123456789abcdef"


@pytest.fixture
def env() -> dict[str, str]:
    return {**os.environ, "MEDVERSE_SECRET": SECRET}


@pytest.fixture
def relay_server(env: dict[str, str]) -> Iterator[tuple[str, str]]:
    """``consult serve --loop uvloop --mesh-limit 1``: every room goes through the relay, on uvloop.

    Yields the URL and the line it printed; stops the server with SIGTERM.
    """
    proc = subprocess.Popen([MEDVERSE, "consult", "serve", "--port", "0", "--mesh-limit", "1", "--loop", "uvloop"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "serving on http://127.0.0.1:" in line, line + proc.stderr.read()  # type: ignore[union-attr]
    yield line.split("serving on ")[1].split()[0], line
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def test_uvloop_and_asyncio_participants_share_a_relay_served_on_uvloop(
    relay_server: tuple[str, str], env: dict[str, str], tmp_path: Path
) -> None:
    """A relay on uvloop and participants on uvloop and on asyncio exchange poses and ops and converge."""
    url, served_line = relay_server
    assert served_line.rstrip().endswith("event loop uvloop)"), served_line
    loops = {"uv": "uvloop", "std": "asyncio"}
    procs = {
        name: subprocess.Popen(
            [MEDVERSE, "consult", "join", "--server", url, "--token", issue_token(SECRET.encode(), "ward", name, "expert"),
             "--duration", "3", "--ops-rate", "5", "--ops-stop", "2", "--loop", loop, "--report", str(tmp_path / f"{name}.json")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for name, loop in loops.items()
    }
    outs = {name: p.communicate(timeout=60) for name, p in procs.items()}
    assert all(p.returncode == 0 for p in procs.values()), outs
    reports = {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in loops}
    for name, loop in loops.items():
        # The loop the participant really ran on (from the running loop's class), in the report and the summary line.
        assert reports[name]["event_loop"] == loop, reports[name]["event_loop"]
        assert outs[name][0].rstrip().endswith(f"event loop {loop}"), outs[name][0]
        assert reports[name]["topology"] == "relay"
        assert reports[name]["latency"]["room"]["pose"]["count"] > 100
    assert reports["uv"]["state"]["digest"] == reports["std"]["state"]["digest"]
    assert reports["uv"]["state"]["op_count"] >= 10


def test_auto_is_uvloop_when_installed() -> None:
    """uvloop is a dependency, so ``--loop auto`` picks it; ``--loop asyncio`` keeps the standard loop."""
    name, factory = loop_factory("auto")
    loop = factory()
    try:
        assert name == "uvloop" and type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()
    assert loop_factory("asyncio")[0] == "asyncio"


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """With uvloop not importable, ``auto`` gives asyncio and ``uvloop`` a clear error saying what to do."""
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes ``import uvloop`` raise ImportError
    assert loop_factory("auto")[0] == "asyncio"
    with pytest.raises(EventLoopError, match="pip install uvloop"):
        loop_factory("uvloop")


def test_join_on_a_missing_uvloop_is_a_one_line_error(env: dict[str, str]) -> None:
    """``consult join --loop uvloop`` where uvloop cannot be imported: exit code 2, one line, no traceback."""
    code = "import sys; sys.modules['uvloop'] = None; from sessions.cli import main; sys.exit(main(sys.argv[1:]))"
    args = ["consult", "join", "--server", "http://127.0.0.1:9", "--token", "x", "--loop", "uvloop"]
    result = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "--loop uvloop: uvloop is not installed" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_heap_made_at_start_up_is_frozen_before_the_loop_runs() -> None:
    """``run_on_loop`` freezes what start-up made (modules, classes): a full collection during the
    session then scans only what the session made, not the whole heap (26 ms pauses of the relay)."""

    async def frozen() -> int:
        return gc.get_freeze_count()

    gc.unfreeze()
    try:
        assert gc.get_freeze_count() == 0
        assert run_on_loop(frozen, "asyncio") > 10_000  # pytest, numpy, aiortc... all imported here
    finally:
        gc.unfreeze()
