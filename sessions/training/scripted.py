"""Scripted trainees: motion scripts (``docs/scripts.md``) that may place the head and hands in twin
millimetres.

A trainee guiding a needle must put the needle's tip on anatomy, and anatomy is in twin millimetres;
the simulator's scripts are in world metres. So a training script may give ``position_mm`` and
``look_at_mm`` (twin mm) wherever a head or hand takes ``position``/``look_at``: :func:`load_trainee_script`
converts them to world metres where the twin stands in ``scene`` (the run's working placement) and
then validates the script as any other (:func:`xrcore.motion.parse_script`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from xrcore.motion import MAX_SCRIPT_BYTES, Script, ScriptError, parse_script

_TRACKS = ("head", "left", "right")


def to_world(doc: Any, model: np.ndarray, source: str) -> Any:
    """``doc`` with every ``position_mm``/``look_at_mm`` of its keyframes' tracks turned into
    ``position``/``look_at`` world metres through the twin-to-world matrix ``model``."""
    if not isinstance(doc, dict) or not isinstance(doc.get("keyframes"), list):
        return doc
    out = dict(doc)
    frames = []
    for i, original in enumerate(doc["keyframes"]):
        kf = original
        if isinstance(original, dict):
            kf = dict(original)
            for track in _TRACKS:
                obj = kf.get(track)
                if isinstance(obj, dict) and ("position_mm" in obj or "look_at_mm" in obj):
                    obj = dict(obj)
                    for key, plain in (("position_mm", "position"), ("look_at_mm", "look_at")):
                        if key not in obj:
                            continue
                        if plain in obj:
                            raise ScriptError(f"{source}: keyframes[{i}].{track}: give {key} or {plain}, not both")
                        value = obj.pop(key)
                        if not (
                            isinstance(value, list)
                            and len(value) == 3
                            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in value)
                        ):
                            raise ScriptError(
                                f"{source}: keyframes[{i}].{track}.{key}: expected [x, y, z] twin mm, got {value!r}"
                            )
                        p = model[:3, :3] @ (np.asarray(value, dtype=np.float64) / 1000.0) + model[:3, 3]
                        obj[plain] = [float(p[0]), float(p[1]), float(p[2])]
                    kf[track] = obj
        frames.append(kf)
    out["keyframes"] = frames
    return out


def load_trainee_script(path: str | Path, scene: Any) -> Script:
    """Read a trainee script for ``scene`` (a :class:`~xrcore.scene.Scene`); raises
    :class:`~xrcore.motion.ScriptError` with one line naming the file, keyframe and field."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_SCRIPT_BYTES:
            raise ScriptError(f"{path}: script is more than the {MAX_SCRIPT_BYTES} byte limit")
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScriptError(f"{path}: cannot read script: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ScriptError(f"{path}: cannot read script as UTF-8 text: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ScriptError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    return parse_script(to_world(doc, scene.model_matrix(), str(path)), str(path))
