"""Backend selection (xrcore.backends.create): auto tries OpenXR for real and falls back to the simulator.

CI machines have no OpenXR runtime (the loader finds no active_runtime.json), so these tests exercise
the real failure path of the real loader, not a mock of it.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from xrcore.backends import BACKEND_NAMES, create
from xrcore.backends.base import BackendError, BackendUnavailableError
from xrcore.backends.sim import SimBackend


def test_auto_falls_back_to_the_simulator_with_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    """No runtime here: auto returns the simulator and says why in exactly one warning line."""
    with caplog.at_level(logging.DEBUG, logger="xrcore"):
        backend = create("auto", frames=3)
    assert isinstance(backend, SimBackend) and backend.config.frames == 3
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    line = warnings[0].getMessage()
    assert "OpenXR unavailable" in line and "no OpenXR runtime" in line and "simulator" in line
    assert "\n" not in line


def test_auto_is_the_default_and_names_are_case_insensitive() -> None:
    """create() with no name is auto; 'SIM' is the simulator."""
    assert isinstance(create(), SimBackend)
    assert isinstance(create("SIM"), SimBackend)
    assert BACKEND_NAMES == ("auto", "openxr", "sim")


def test_explicit_openxr_without_a_runtime_is_one_clear_error() -> None:
    """--backend openxr with no runtime: BackendUnavailableError, one line, saying what is missing and what to do."""
    with pytest.raises(BackendUnavailableError) as info:
        create("openxr")
    message = str(info.value)
    assert isinstance(info.value, BackendError)
    assert "\n" not in message
    assert "no OpenXR runtime" in message and "Monado" in message and "--backend sim" in message


def test_broken_runtime_manifest_is_also_unavailable(tmp_path: Path) -> None:
    """XR_RUNTIME_JSON naming a library that is not there: openxr refuses, auto still falls back (real loader)."""
    manifest = tmp_path / "runtime.json"
    manifest.write_text(json.dumps({"file_format_version": "1.0.0",
                                    "runtime": {"name": "gone", "library_path": str(tmp_path / "libgone.so")}}))
    # A fresh process: the loader reads XR_RUNTIME_JSON itself, and nothing of this one leaks in.
    script = textwrap.dedent("""
        import logging, sys
        logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(levelname)s %(message)s")
        from xrcore.backends import create
        from xrcore.backends.base import BackendUnavailableError
        print("auto ->", type(create("auto")).__name__)
        try:
            create("openxr")
        except BackendUnavailableError as exc:
            print("openxr ->", exc)
    """)
    out = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60,
                         env={"XR_RUNTIME_JSON": str(manifest), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert "auto -> SimBackend" in lines
    assert sum(line.startswith("WARNING") for line in lines) == 1
    assert any(line.startswith("openxr -> OpenXR backend unavailable") for line in lines)
    assert "OpenXR-Loader" not in out.stderr  # the loader's own stderr chatter is silenced


def test_unknown_backend_name_is_refused_with_the_choices() -> None:
    """A typo gets a BackendError listing the valid names."""
    with pytest.raises(BackendError, match="unknown backend 'vr'; choose one of auto, openxr, sim"):
        create("vr")


def test_unknown_setting_is_refused_naming_it() -> None:
    """A setting no candidate backend has is an error naming it, not silently dropped."""
    with pytest.raises(BackendError, match="no setting\\(s\\) warp_factor"):
        create("sim", warp_factor=9)
    with pytest.raises(BackendError, match="warp_factor"):
        create("auto", warp_factor=9)


def test_openxr_only_settings_are_not_passed_to_the_fallback() -> None:
    """auto with an OpenXR setting and a simulator setting: the simulator gets only its own."""
    backend = create("auto", reference_space="local", frames=5)
    assert isinstance(backend, SimBackend) and backend.config.frames == 5


def test_sim_never_loads_pyopenxr() -> None:
    """Choosing the simulator imports neither the OpenXR backend nor pyopenxr (fresh process)."""
    script = textwrap.dedent("""
        import sys
        from xrcore.backends import create
        create("sim")
        print("xr" in sys.modules, "xrcore.backends.openxr" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "False"]
