"""A module in a desktop window: the runner hooks into the window's session, its instructions are
what the gaze panel shows, and a run ended by time records the step as not done."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sessions.training.run import train

DATA = Path(__file__).parent / "data"


@pytest.mark.slow
def test_a_module_in_a_window_shows_its_step_and_records_it(desktop_display: Any, tmp_path: Path) -> None:
    result = train(DATA / "brain-basics.json", "dana", backend="desktop", store=tmp_path / "p.sqlite", max_seconds=1.5)
    assert result.frames > 0 and result.backend == "desktop"
    first = result.steps[0]
    assert (first.id, first.reason, first.passed) == ("hemisphere", "ended", False)
    shown = next(e for e in result.events if e["type"] == "step_shown")
    assert shown["instructions"] == "Select the left cerebral hemisphere."
    assert result.stored == len(result.statements) and result.statements[-1]["verb"]["id"].endswith("/terminated")
