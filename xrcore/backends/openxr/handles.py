"""OpenXR handles across a loss: an event's handle compared with ours, and teardown a lost runtime may refuse."""

from __future__ import annotations

import ctypes
import logging
from typing import Any

import xr

logger = logging.getLogger("xrcore.backends.openxr")  # the backend's one logger, named as before the split


def _same_handle(a: Any, b: Any) -> bool:
    """True when two OpenXR handles (ctypes pointers) are the same object; None matches nothing."""
    if a is None or b is None:
        return False
    return ctypes.cast(a, ctypes.c_void_p).value == ctypes.cast(b, ctypes.c_void_p).value


def _quietly(destroy: Any, handle: Any) -> None:
    """Destroy a handle during teardown; a lost runtime may refuse, which changes nothing for us."""
    try:
        destroy(handle)
    except xr.XrException as exc:
        logger.debug("%s failed during teardown: %s", getattr(destroy, "__name__", destroy), exc)
