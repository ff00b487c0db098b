"""XR backends behind one interface (:class:`~xrcore.backends.base.Backend`) and the factory that picks one.

``create("sim")`` is the headless simulator, ``create("openxr")`` a headset through an OpenXR runtime,
and ``create("auto")`` (the default) tries OpenXR for real (creates an instance and asks for a
head-mounted system) and falls back to the simulator with one warning line saying why. Backends are
imported only when chosen: the simulator never loads the OpenXR loader, and a broken OpenXR
installation cannot stop the simulator from running.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from xrcore.backends.base import Backend, BackendError, BackendInfo, BackendUnavailableError

logger = logging.getLogger(__name__)

#: The names :func:`create` accepts.
BACKEND_NAMES: tuple[str, ...] = ("auto", "openxr", "sim")

__all__ = ["BACKEND_NAMES", "Backend", "BackendError", "BackendInfo", "BackendUnavailableError", "create"]


def _config_class(name: str) -> type:
    if name == "openxr":
        from xrcore.backends.openxr import OpenXRConfig  # noqa: PLC0415 - loads the OpenXR loader

        return OpenXRConfig
    from xrcore.backends.sim import SimConfig  # noqa: PLC0415

    return SimConfig


def _fields(name: str) -> set[str]:
    try:
        return {f.name for f in dataclasses.fields(_config_class(name))}
    except ImportError:  # pyopenxr broken: reported by _openxr_unavailable; its settings are unknown
        return set()


def _openxr_unavailable(options: dict[str, Any]) -> str | None:
    """Why OpenXR cannot run here (one line), or None when a runtime with a headset answered."""
    try:
        from xrcore.backends.openxr import probe  # noqa: PLC0415
    except Exception as exc:  # pyopenxr or its loader library broken: that is "unavailable" too
        return f"pyopenxr cannot be loaded ({type(exc).__name__}: {exc})"
    return probe(api_layers=tuple(options.get("api_layers", ())))


def create(name: str = "auto", **options: Any) -> Backend:
    """Make a backend (not yet started) by name.

    Parameters
    ----------
    name
        ``"auto"``, ``"openxr"`` or ``"sim"`` (case-insensitive).
    **options
        Settings of the chosen backend's configuration (:class:`~xrcore.backends.sim.SimConfig`,
        :class:`~xrcore.backends.openxr.OpenXRConfig`). With ``"auto"`` each backend takes the
        settings it knows, so simulator settings (frames, motion, out_dir) can be given alongside
        OpenXR ones.

    Raises
    ------
    BackendUnavailableError
        ``"openxr"`` was asked for and no runtime with a headset is here (one line saying why).
    BackendError
        An unknown backend name or a setting no candidate backend has.
    """
    key = str(name).strip().lower()
    if key not in BACKEND_NAMES:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
    candidates = ("openxr", "sim") if key == "auto" else (key,)
    known = set().union(*(_fields(c) for c in candidates))
    unknown = sorted(set(options) - known)
    if unknown:
        raise BackendError(f"backend {key!r} has no setting(s) {', '.join(unknown)}; it takes {', '.join(sorted(known))}")
    if key in ("auto", "openxr"):
        reason = _openxr_unavailable(options)
        if reason is None:
            key = "openxr"
        elif key == "openxr":
            raise BackendUnavailableError(f"OpenXR backend unavailable: {reason}; use --backend sim to run without a headset")
        else:
            logger.warning("OpenXR unavailable: %s. Falling back to the headless simulator (--backend sim)", reason)
            key = "sim"
    taken = {k: v for k, v in options.items() if k in _fields(key)}
    config = _config_class(key)(**taken)
    if key == "openxr":
        from xrcore.backends.openxr import OpenXRBackend  # noqa: PLC0415

        return OpenXRBackend(config)
    from xrcore.backends.sim import SimBackend  # noqa: PLC0415

    return SimBackend(config)
