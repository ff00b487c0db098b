"""``consult join`` with every rendering backend in one room: a surgeon in the simulator, an expert in a
headset (the OpenXR backend against the repo's headless test runtime, chosen by ``--backend auto``) and
an expert at a desktop window (Xvfb; ``auto`` without a runtime falls back to the window, saying so)
who places a landmark with the mouse. Everyone sees everyone's poses, reports motion-to-display for
the poses it drew, and ends with the same state, the desktop expert's landmark and the surgeon's cut in it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

MEDVERSE = str(Path(sys.executable).with_name("medverse"))
SCRIPTS = Path(__file__).parents[3] / "sessions" / "consult" / "scripts"


def _token(env: dict[str, str], name: str, role: str) -> str:
    return subprocess.run([MEDVERSE, "consult", "token", "--room", "ward", "--participant", name, "--role", role],
                          env=env, capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip


def _join(env: dict[str, str], server: str, name: str, role: str, report: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([MEDVERSE, "consult", "join", "--server", server, "--token", _token(env, name, role),
                             "--report", str(report), *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _window(display: str, timeout: float = 40.0) -> str:
    """The id of medverse's window on ``display``, once it is mapped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", "medverse"], check=False,
                               capture_output=True, text=True, env={"DISPLAY": display}, timeout=10)  # fmt: skip
        if found.stdout.strip():
            return found.stdout.split()[0]
        time.sleep(0.2)
    raise AssertionError("the desktop participant's window never appeared")


@pytest.mark.slow
def test_sim_headset_and_desktop_participants_share_one_room(
    served: str, env: dict[str, str], tmp_path: Path, runtime_manifest: Path, desktop_display: Any
) -> None:
    reports = {name: tmp_path / f"{name}.json" for name in ("ann", "xr", "desk")}
    surgeon = _join(env, served, "ann", "surgeon", reports["ann"], "--backend", "sim", "--twin", "brain",
                    "--script", str(SCRIPTS / "surgeon-cut.json"), "--width", "64", "--height", "64",
                    "--rate", "20", "--duration", "26")  # fmt: skip
    assert surgeon.stdout is not None
    deadline = time.monotonic() + 30
    while not surgeon.stdout.readline().startswith("heads-up"):  # the room's twin is named
        assert time.monotonic() < deadline and surgeon.poll() is None, surgeon.stderr.read() if surgeon.stderr else ""
    headset_env = {**env, "XR_RUNTIME_JSON": str(runtime_manifest), "MEDVERSE_XR_TEST": ""}
    headset_env.pop("DISPLAY", None)  # the runtime's EGL binding; no window
    headset = _join(headset_env, served, "xr", "expert", reports["xr"], "--backend", "auto", "--duration", "8")
    desk_env = {**env, "DISPLAY": desktop_display.display}
    desk_env.pop("XR_RUNTIME_JSON", None)
    desk = _join(desk_env, served, "desk", "expert", reports["desk"], "--backend", "auto", "--width", "320",
                 "--height", "240", "--duration", "10")  # fmt: skip
    window = _window(desktop_display.display)
    time.sleep(1.0)  # a few frames shown
    x_env = {"DISPLAY": desktop_display.display}
    for action in (["mousemove", "--window", window, "160", "130"], ["key", "2"], ["click", "1"]):
        subprocess.run(["xdotool", *action], check=True, timeout=10, env=x_env)
        time.sleep(0.3)
    outs = {}
    for name, proc in (("xr", headset), ("desk", desk), ("ann", surgeon)):
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, f"{name}: {err[-3000:]}"
        outs[name] = out
    assert "joining in a desktop window" in outs["desk"]
    got = {name: json.loads(path.read_text()) for name, path in reports.items()}
    assert {n: r["consult"]["backend"] for n, r in got.items()} == {"ann": "sim", "xr": "openxr", "desk": "desktop"}
    for name, r in got.items():
        consult = r["consult"]
        assert consult["frames"] > 10 and consult["gl_errors"] == 0, (name, consult["frames"], consult["gl_errors"])
        others = set(got) - {name}
        # poses from both others arrived and were drawn: motion-to-display measured for each of them
        links = r["latency"]["links"]
        assert all((links.get(o) or {}).get("pose", {}).get("count", 0) > 0 for o in others), (name, links.keys())
        drawn = consult["motion_to_display"]
        assert drawn is not None and set(drawn["by"]) == others, (name, drawn)
        assert drawn["room"]["count"] > 0 and drawn["room"]["min_ms"] >= 0.0
    # the desktop expert's landmark (a click with the landmark tool) and the surgeon's cut, everywhere
    desk_intents = [i["kind"] for i in got["desk"]["consult"]["intents"]]
    assert "landmark" in desk_intents, desk_intents
    for r in got.values():
        shared = r["consult"]["workspace"]
        assert len(shared["landmarks"]) == 1 and len(shared["planes"]) == 1, shared
    assert len({r["state"]["digest"] for r in got.values()}) == 1
