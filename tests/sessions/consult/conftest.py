"""What the consultation tests share: a medverse home of the test's own and a signaling server in a process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

MEDVERSE = str(Path(sys.executable).with_name("medverse"))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment for ``medverse`` processes: a fresh home (and so a fresh token secret)."""
    env = {k: v for k, v in os.environ.items() if k != "MEDVERSE_SECRET"}
    return {**env, "MEDVERSE_HOME": str(tmp_path / "home")}


@pytest.fixture
def served(env: dict[str, str]) -> Iterator[str]:
    """``medverse consult serve`` on a free port; yields its URL."""
    proc = subprocess.Popen([MEDVERSE, "consult", "serve", "--port", "0"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "serving on" in line, line
    yield line.split("serving on ")[1].split()[0]
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
