"""A session in a headset: the session loop on an OpenXR backend (``medverse view`` with a headset).

The twin stands where a user would set it on a table in front of them: :data:`TABLE_CENTRE` in the
runtime's stage space (metres, +Y up from the floor, -Z ahead), :data:`~sessions.sim.WORKING_SIZE_M`
across. When the runtime blends with the room (``alpha`` on passthrough headsets, ``additive`` on
optical see-through ones), the scene clears to transparent black and draws no backdrop, so the twin
stands in the real room; the backend submits the projection layer with that blend mode (and, for
``alpha``, the premultiplied-alpha layer flag).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from assets.twin import Twin
from sessions.run import LocalSession, SessionConfig, SessionFactory, run
from sessions.sim import WORKING_SIZE_M, working_scene
from xrcore.input import Picker
from xrcore.stats import FrameStats

logger = logging.getLogger(__name__)

#: Where the twin's centre goes in stage space: chest height, half a metre ahead.
TABLE_CENTRE = (0.0, 1.2, -0.5)
#: What the scene clears to when the room shows through (premultiplied: transparent black).
CLEAR_FOR_THE_ROOM = (0.0, 0.0, 0.0, 0.0)


@dataclass
class HeadsetRun:
    """What :func:`run_headset` did: the session (its workspace holds every intent applied), the frame
    statistics, and the renderer's GL error count."""

    session: LocalSession
    stats: FrameStats
    gl_errors: int


def run_headset(
    backend: Any,
    twin: Twin,
    *,
    config: SessionConfig | None = None,
    centre: tuple[float, float, float] = TABLE_CENTRE,
    size_m: float = WORKING_SIZE_M,
    max_frames: int | None = None,
    renderer_class: Any = None,
    on_session: Callable[[LocalSession], None] | None = None,
    session_factory: SessionFactory | None = None,
    on_frame: Callable[[Any], bool | None] | None = None,
) -> HeadsetRun:
    """Start ``backend`` (an OpenXR backend, not yet started), run a session on ``twin`` until the
    runtime ends it (or ``max_frames``), stop the backend, and say what happened.

    ``renderer_class`` replaces :class:`xrcore.render.Renderer` (tests); ``on_session`` sees the
    session before the first frame (a training runner hooks in there); ``session_factory`` makes the
    session from (scene, config, picker) instead of :class:`~sessions.run.LocalSession` (a
    consultation's); ``on_frame(frame)`` runs after each submit and ends the run by returning True.
    """
    from xrcore.render import Renderer  # noqa: PLC0415 - GL only when rendering

    backend.start()
    try:
        info = backend.info
        scene = working_scene(twin, size_m, centre)
        if info.blend_mode != "opaque":
            scene.background = CLEAR_FOR_THE_ROOM
            logger.info("blend mode %s: the twin is drawn over the room", info.blend_mode)
        session = (session_factory or LocalSession)(scene, config, Picker(twin))
        if on_session is not None:
            on_session(session)
        renderer = (renderer_class or Renderer)(backend.context, width=info.width, height=info.height, rate_hz=info.rate_hz)
        try:
            stats = run(backend, session, renderer, max_frames=max_frames, on_frame=on_frame)
            session.close()  # a measurement still measuring along the surface is applied
            errors = int(renderer.gl_errors)
        finally:
            renderer.close()
    finally:
        backend.stop()
    return HeadsetRun(session, stats, errors)
