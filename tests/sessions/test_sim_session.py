"""``medverse sim`` and :func:`sessions.sim.simulate` on the real brain twin, rendered through EGL."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from sessions.cli import main
from sessions.sim import simulate
from xrcore.motion import parse_script

SCRIPT = {
    "version": 1,
    "keyframes": [
        {"t": 0.0, "name": "start", "head": {"position": [0.0, 0.02, 0.3], "look_at": [0, 0, 0]},
         "right": {"position": [0.1, -0.1, 0.2], "look_at": [0, 0, 0], "trigger": 0.0}},
        {"t": 0.1, "name": "side", "head": {"position": [0.25, 0.05, 0.15], "look_at": [0, 0, 0]},
         "right": {"position": [0.15, -0.1, 0.1], "look_at": [0, 0, 0], "trigger": 1.0}},
    ],
}


@pytest.mark.slow
def test_scripted_run_is_deterministic(gl_context: Any, brain: Any, tmp_path: Path) -> None:
    """The same script renders the same frames, byte for byte, on every run."""
    script = parse_script(SCRIPT, "test")
    runs = [
        simulate(brain, frames=10, out_dir=tmp_path / name, every=3, motion=script, width=96, height=96,
                 context=gl_context)
        for name in ("a", "b")
    ]  # fmt: skip
    a, b = (r.as_dict() for r in runs)
    assert a["sha256"] == b["sha256"]
    # every 3rd frame, plus the named keyframes (t=0.1 s is frame 9 at 90 Hz), names in the file name
    assert [Path(p).name for p in a["written"]] == [
        "frame_000000_start.png", "frame_000003.png", "frame_000006.png", "frame_000009_side.png",
    ]  # fmt: skip
    assert len(set(a["sha256"])) == 4  # the head moves: every written frame differs
    for path, digest in zip(a["written"], a["sha256"], strict=True):
        pixels = np.asarray(Image.open(path))
        assert pixels.shape == (96, 192, 4)  # both eyes side by side
        assert hashlib.sha256(pixels.tobytes()).hexdigest() == digest
    assert a["stats"]["frames"] == 10 and a["renderer"]["gl_errors"] == 0


def test_an_orbit_writes_every_nth_frame_and_reports_statistics(gl_context: Any, brain: Any, tmp_path: Path) -> None:
    """An orbiting run writes every Nth frame with the twin in view in both eyes."""
    result = simulate(brain, frames=6, out_dir=tmp_path, every=5, width=96, height=96, context=gl_context).as_dict()
    assert [Path(p).name for p in result["written"]] == ["frame_000000.png", "frame_000005.png"]
    stereo = np.asarray(Image.open(result["written"][1]))
    for eye in (stereo[:, :96], stereo[:, 96:]):
        assert np.any(eye != eye[0, 0], axis=-1).mean() > 0.01
    s = result["stats"]
    assert s["frames"] == 6 and s["frame_ms"]["median"] > 0 and s["gpu_ms"]["median"] is not None
    assert 0 <= s["dropped"] <= 6


@pytest.mark.slow
def test_medverse_sim_writes_pngs_and_prints_statistics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`medverse sim --script` runs end to end: statistics on stdout, PNGs and JSON on disk."""
    script = tmp_path / "script.json"
    script.write_text(json.dumps(SCRIPT))
    out = tmp_path / "frames"
    rc = main(["sim", "--twin", "brain", "--script", str(script), "--frames", "4", "--out", str(out),
               "--every", "2", "--width", "64", "--height", "64", "--json", str(tmp_path / "stats.json")])  # fmt: skip
    text = capsys.readouterr().out
    assert rc == 0
    assert "frame time: median" in text and "GPU time:" in text and "wrote 2 PNGs" in text
    assert sorted(p.name for p in out.glob("*.png")) == ["frame_000000_start.png", "frame_000002.png"]
    report = json.loads((tmp_path / "stats.json").read_text())
    assert report["twin"] == "brain" and report["stats"]["frames"] == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--frames", "0"], "--frames must be positive"),
        (["--twin", "no-such-twin"], "no such twin"),
        (["--script", "missing.json"], "cannot read script"),
    ],
)
def test_medverse_sim_bad_input_is_one_line(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Bad input ends with exit code 2 and one line naming the problem, no traceback."""
    assert main(["sim", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_medverse_view_without_a_display_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no headset and no display, `medverse view --backend sim` says so in one line (exit 2)."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["view", "--backend", "sim", "--seconds", "0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("medverse: error:") and "display" in err
