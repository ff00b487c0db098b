"""The simulator backend: frames on a fixed-step clock, views with square pixels, a script's events."""

from __future__ import annotations

import math
from typing import Any

import pytest

from xrcore.backends.base import BackendError
from xrcore.backends.sim import QUEST_LEFT_FOV, SimBackend, square_pixels
from xrcore.motion import parse_script


def test_frames_must_be_submitted_in_order(gl_context: Any) -> None:
    """Asking for the next frame before submitting the current one is a clear BackendError."""
    backend = SimBackend(frames=3, width=16, height=16, context=gl_context)
    backend.start()
    frames = backend.frames()
    first = next(frames)
    with pytest.raises(BackendError, match="not submitted"):
        next(frames)
    backend.stop()
    backend = SimBackend(frames=3, width=16, height=16, context=gl_context)
    backend.start()
    frame = next(backend.frames())
    with pytest.raises(BackendError, match="expected the frame just yielded"):
        backend.submit(type(frame)(index=frame.index + 1, predicted_display_time=0.0, period=frame.period))
    assert first.predicted_display_time == 0.0 and frame.views[0].eye == 0 and frame.views[1].eye == 1
    backend.stop()



@pytest.mark.parametrize(("width", "height"), [(720, 800), (1000, 500), (64, 64)])
def test_views_have_square_pixels_whatever_the_image_size(width: int, height: int) -> None:
    """The eye's tangent extent per pixel is the same across and down (a sphere stays round)."""
    fov = square_pixels(QUEST_LEFT_FOV, width, height)
    across = (math.tan(fov.angle_right) - math.tan(fov.angle_left)) / width
    down = (math.tan(fov.angle_up) - math.tan(fov.angle_down)) / height
    assert across == pytest.approx(down, rel=1e-9)
    assert fov.angle_left == QUEST_LEFT_FOV.angle_left and fov.angle_right == QUEST_LEFT_FOV.angle_right


def test_script_tool_choices_arrive_as_events_on_the_nearest_frame() -> None:
    """A keyframe's ``tool`` reaches the frame nearest its time as ``tool:HAND:TOOL``, beside keyframe names."""
    script = parse_script({"version": 1, "keyframes": [
        {"t": 0.0, "name": "a", "head": {"position": [0, 0, 1]}},
        {"t": 0.1, "tool": {"left": "measure", "right": "draw"}, "head": {"position": [0, 0, 1]}},
    ]}, "test")  # fmt: skip
    backend = SimBackend(frames=12, width=16, height=16, motion=script)
    assert backend.sample(0).events == ("keyframe:a",)
    assert set(backend.sample(9).events) == {"tool:left:measure", "tool:right:draw"}
    assert backend.sample(5).events == ()
