"""The demo's consultation (``medverse demo``, last part): three rendering participants on
loopback, the surgeon's recording replayed; run as the demo runs it, into a temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sessions.cli.demo import DEMO_CONSULT, consultation


@pytest.mark.slow
def test_demo_consultation_converges_and_its_replay_reaches_the_same_state(tmp_path: Path) -> None:
    """Every participant writes frames and a report with the same state digest, and replaying the
    recording renders PNGs and ends at that digest."""
    folder = tmp_path / "consult"
    report = consultation(folder, seconds=10.0, size=160)
    assert json.loads((folder / "latency.json").read_text()) == report
    assert (folder / "consult.secret").stat().st_mode & 0o077 == 0
    for name, _, _ in DEMO_CONSULT:
        person = report["participants"][name]
        assert person["frames"] > 0 and person["pngs"], name
        assert all(Path(p).is_file() and Path(p).parent == folder / "frames" / name for p in person["pngs"])
        assert person["pose"]["count"] > 0, name
    digests = {p["digest"] for p in report["participants"].values()}
    assert len(digests) == 1 and report["converged"]
    # the expert's two landmarks and measurement and the surgeon's cut made it into that state
    assert report["participants"]["surgeon"]["op_count"] >= 4
    assert (folder / "session.mvr").stat().st_size > 0
    assert report["replay"]["problem"] is None and report["replay"]["pngs"] > 0
    assert len(list((folder / "replay").glob("*.png"))) == report["replay"]["pngs"]
    assert report["replay"]["digest"] in digests and report["replay_matches"]
