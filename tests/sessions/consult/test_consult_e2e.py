"""Three ``medverse consult join --backend sim`` processes in one room on loopback (real aiortc, real
signaling server, real EGL): one cuts, one places two landmarks and measures, one points."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

MEDVERSE = str(Path(sys.executable).with_name("medverse"))
SCRIPTS = Path(__file__).resolve().parents[3] / "sessions" / "consult" / "scripts"
PEOPLE = {"surgeon": "surgeon-cut", "expert": "expert-measure", "trainee": "trainee-point"}


def _token(env: dict[str, str], name: str) -> str:
    return subprocess.run([MEDVERSE, "consult", "token", "--room", "ward", "--participant", name, "--role", name],
                          env=env, capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip


def _colour_pixels(path: str, role: str) -> int:
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    if role == "expert":  # magenta
        return int(np.sum((r > 180) & (g < 140) & (b > 160)))
    return int(np.sum((r < 140) & (g > 170) & (b > 170)))  # trainee: cyan


@pytest.mark.slow
def test_three_participants_converge_see_each_other_and_a_frozen_one_goes_stale(
    served: str, env: dict[str, str], tmp_path: Path
) -> None:
    """Everyone ends with the same state digest and workspace, each one's PNGs show the others' avatars,
    and the trainee frozen with SIGSTOP is reported STALE by the others within a second."""
    procs = {}
    for name, script in PEOPLE.items():
        twin = ["--twin", "brain"] if name == "surgeon" else []
        procs[name] = subprocess.Popen(
            [MEDVERSE, "consult", "join", "--backend", "sim", "--server", served, "--token", _token(env, name),
             "--duration", "9", "--script", str(SCRIPTS / f"{script}.json"), "--out", str(tmp_path / name),
             "--width", "160", "--height", "160", "--rate", "30", "--report", str(tmp_path / f"{name}.json"), *twin],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    time.sleep(7.0)
    frozen_at = time.time()
    procs["trainee"].send_signal(signal.SIGSTOP)
    time.sleep(1.5)
    procs["trainee"].send_signal(signal.SIGCONT)
    outs = {name: p.communicate(timeout=60) for name, p in procs.items()}
    # on failure: who failed, and the end of what they said
    assert all(p.returncode == 0 for p in procs.values()), {
        name: (p.returncode, outs[name][1][-800:] or outs[name][0][-800:]) for name, p in procs.items() if p.returncode
    }
    reports = {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in PEOPLE}
    digests = {r["state"]["digest"] for r in reports.values()}
    assert len(digests) == 1
    views = [r["consult"]["workspace"] for r in reports.values()]
    assert views[0] == views[1] == views[2]
    assert len(views[0]["landmarks"]) == 2 and len(views[0]["measurements"]) == 1 and len(views[0]["planes"]) == 1
    for r in reports.values():
        assert r["consult"]["gl_errors"] == 0 and r["consult"]["written"]
    # the surgeon sees the expert (magenta) and the trainee (cyan) in some frame
    written = reports["surgeon"]["consult"]["written"]
    assert max(_colour_pixels(p, "expert") for p in written) > 5
    assert max(_colour_pixels(p, "trainee") for p in written) > 5
    for name in ("surgeon", "expert"):
        went = [e["at"] for e in reports[name]["consult"]["stale_events"] if e["name"] == "trainee" and e["stale"]
                and e["at"] >= frozen_at - 0.05]  # fmt: skip
        assert went and went[0] - frozen_at < 1.0, reports[name]["consult"]["stale_events"]
        assert "heads-up" in outs[name][0]
