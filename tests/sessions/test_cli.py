"""The ``medverse`` entry point imports only the module of the command it runs."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _loaded_after(argv: list[str]) -> set[str]:
    code = (
        "import sys; from sessions.cli import build_parser; build_parser(sys.argv[1:]); "
        "print(' '.join(m for m in ('aiortc', 'OpenGL', 'rich') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.slow
def test_a_command_loads_only_what_it_needs() -> None:
    """``sim`` does not load aiortc (about 90 MB of the simulator's peak memory), ``consult`` not OpenGL;
    help and unknown commands load every command so that all of them are listed."""
    assert "aiortc" not in _loaded_after(["sim", "--frames", "1"])
    assert "aiortc" not in _loaded_after(["-v", "twin", "list"])
    assert "OpenGL" not in _loaded_after(["consult", "token", "--room", "r"])
    assert {"aiortc", "rich"} <= _loaded_after(["--help"])
    assert {"aiortc", "rich"} <= _loaded_after(["bogus"])
