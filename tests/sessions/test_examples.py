"""The example files under docs/examples work as the README says they do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


@pytest.mark.slow
def test_example_script_renders_its_named_keyframes_with_the_brain_in_both_eyes(tmp_path: Path) -> None:
    """`medverse sim --script docs/examples/inspect-and-point.json` writes one stereo PNG per named
    keyframe, and the brain is in view of both eyes in each."""
    script = Path(sys.executable).with_name("medverse")
    out, stats = tmp_path / "frames", tmp_path / "stats.json"
    result = subprocess.run(
        [str(script), "sim", "--twin", "brain", "--script", str(EXAMPLES / "inspect-and-point.json"),
         "--frames", "181", "--width", "160", "--height", "176", "--out", str(out), "--json", str(stats)],
        check=False, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["frame_000000_front.png", "frame_000090_left-side.png", "frame_000180_point-at-cortex.png"]
    for name in names:
        image = np.asarray(Image.open(out / name).convert("RGB"), dtype=np.int16)
        background = image[0, 0]
        for eye in np.split(image, 2, axis=1):
            covered = (np.abs(eye - background).sum(axis=2) > 60).mean()
            assert 0.03 < covered < 0.6, (name, covered)
    report = json.loads(stats.read_text())
    assert report["frames"] == 181
