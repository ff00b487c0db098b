"""The event loop a consultation process runs on: uvloop when it is installed, else asyncio's own.

Every data-channel message passes through aiortc's SCTP and DTLS code on the event loop, and libuv's
loop roughly halves that cost (a 64-byte aiortc ping-pong in one process: 0.21 ms round trip on
asyncio's loop, 0.12 ms on uvloop). The signaling server, the relay, participants and the benchmarks
choose their loop here, by the names ``medverse consult --loop`` offers.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable, Coroutine
from importlib.metadata import version
from typing import Any, TypeVar

log = logging.getLogger(__name__)

#: Loop choices: ``auto`` is uvloop when it can be imported, else asyncio.
LOOPS = ("auto", "asyncio", "uvloop")

T = TypeVar("T")


class EventLoopError(RuntimeError):
    """The event loop asked for is not available."""


def loop_factory(choice: str = "auto") -> tuple[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The event loop that ``choice`` selects: its name and a function that makes a new one.

    Parameters
    ----------
    choice : str
        ``"auto"`` (uvloop if it can be imported, else asyncio), ``"uvloop"`` or ``"asyncio"``.

    Returns
    -------
    tuple of (str, callable)
        ``"uvloop"`` or ``"asyncio"``, and a factory for ``asyncio.Runner(loop_factory=...)``.

    Raises
    ------
    EventLoopError
        ``choice`` is ``"uvloop"`` and uvloop cannot be imported, or ``choice`` is unknown.
    """
    if choice not in LOOPS:
        raise EventLoopError(f"unknown event loop {choice!r}: choose one of {', '.join(LOOPS)}")
    if choice != "asyncio":
        try:
            import uvloop  # noqa: PLC0415 - optional: asyncio's loop when it is missing
        except ImportError:
            if choice == "uvloop":
                raise EventLoopError(
                    "--loop uvloop: uvloop is not installed (pip install uvloop), or use --loop asyncio"
                ) from None
            log.info("event loop: asyncio (uvloop is not installed)")
            return "asyncio", asyncio.new_event_loop
        log.info("event loop: uvloop %s (--loop %s)", version("uvloop"), choice)
        return "uvloop", uvloop.new_event_loop
    log.info("event loop: asyncio (--loop asyncio)")
    return "asyncio", asyncio.new_event_loop


def running_loop_name() -> str:
    """``"uvloop"`` or ``"asyncio"``: the package of the loop this coroutine actually runs on."""
    # From the running loop's class, not from the option: proves which loop the work ran on.
    return type(asyncio.get_running_loop()).__module__.partition(".")[0]


def run_on_loop(main: Callable[[], Coroutine[Any, Any, T]], choice: str = "auto") -> T:
    """Run ``main()`` to completion on a new event loop chosen by ``choice`` (see `loop_factory`).

    ``main`` is a function rather than a coroutine so that nothing is left un-awaited when the loop
    cannot be made.
    """
    _, factory = loop_factory(choice)
    # What start-up made (modules, classes, functions: most of the heap) lives as long as the
    # process. Frozen, a full collection never scans it again: in bench/sync.py the relay stopped
    # every room's traffic for 26 ms in a full collection, an outlier in every participant's p99.
    gc.collect()
    gc.freeze()
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())
