"""The backend interface every XR backend implements (StereoKit's init / step / shutdown split).

Every backend is driven the same way (the loop itself is the session's, :func:`sessions.run.run`)::

    backend.start()
    for frame in backend.frames():      # blocks until the next frame is due (headset) or not (sim)
        session.step(frame)             # input, tools, intents, the scene
        renderer.draw(scene, frame.views)
        backend.submit(frame)
    backend.stop()
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from xrcore.types import FrameState

logger = logging.getLogger(__name__)


class BackendError(RuntimeError):
    """A backend cannot start or run; the message says what is missing and what to do."""


class BackendUnavailableError(BackendError):
    """The backend's device or runtime is not present here (no OpenXR runtime, no display)."""


@dataclass(frozen=True)
class BackendInfo:
    """What a started backend drives: a name for logs, view count and recommended eye size (pixels),
    and the environment blend mode it submits with (``xrcore.types.BLEND_MODES``) among those it
    offers: anything but ``"opaque"`` means the room shows through where nothing is drawn, so the
    session clears to transparent black and draws no floor or backdrop."""

    name: str
    view_count: int
    width: int
    height: int
    rate_hz: float
    blend_mode: str = "opaque"
    blend_modes: tuple[str, ...] = ("opaque",)


class Backend(abc.ABC):
    """One source of frames and sink of rendered images.

    ``frames()`` yields :class:`~xrcore.types.FrameState` with the views to render; the caller renders
    them with the renderer (bound to :attr:`context`) and hands the frame back with ``submit``.
    The iterator ends when the backend has no more frames (script finished, session exited).
    """

    #: the GL context the renderer must draw with; set by ``start()``
    context: Any = None
    #: the renderer drawing this backend's frames; set by :meth:`attach` (the frame loop does it)
    renderer: Any = None

    def attach(self, renderer: Any) -> None:
        """Give the backend the renderer whose images ``submit`` presents or records."""
        self.renderer = renderer

    def haptic_pulse(self, hand: int, amplitude: float = 0.5, duration_s: float = 0.05, frequency_hz: float = 0.0) -> None:
        """Vibrate controller ``hand`` (0 left, 1 right); ``frequency_hz`` 0 lets the runtime choose.

        Backends without haptics log the request at debug level.
        """
        logger.debug("haptic pulse ignored by %s: hand %d amplitude %.2f for %.3f s",
                     type(self).__name__, hand, amplitude, duration_s)  # fmt: skip

    @property
    @abc.abstractmethod
    def info(self) -> BackendInfo:
        """Recommended views and rate; valid after ``start()``."""

    @abc.abstractmethod
    def start(self) -> None:
        """Acquire the device / runtime and the GL context. Raises :class:`BackendError`."""

    @abc.abstractmethod
    def frames(self) -> Iterator[FrameState]:
        """Yield frames until done; each yielded frame must be handed to :meth:`submit` before the next."""

    @abc.abstractmethod
    def submit(self, frame: FrameState) -> None:
        """Present (or record) what the renderer drew for ``frame``."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Release everything ``start`` acquired; safe to call twice."""

    def __enter__(self) -> Backend:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
