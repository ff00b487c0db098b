"""Scripted participants: poses and state operations made up for demos, tests and benchmarks.

``procedural_poses`` is a pose source and ``ScriptedOps`` an op source for ``net.participant.Participant``
(``net.participant.config.PoseSource``, ``OpSource``): a headless ``medverse consult join`` streams
them, ``bench/sync.py`` and ``bench/state.py`` load rooms with them. Both are pure functions of their
inputs (time, participant index, a seeded generator), so a run is reproducible.
"""

from __future__ import annotations

import math
import random
from typing import Any

from net.protocol import OpKind, TrackedPoses, WirePose


def procedural_poses(t: float, index: int) -> TrackedPoses:
    """Head and two hands of a participant standing round the twin, swaying: a pure function of time.

    Parameters
    ----------
    t : float
        Seconds.
    index : int
        Participant index; spreads participants round a 1 m circle.

    Returns
    -------
    TrackedPoses
        ``head``, ``left`` and ``right`` poses (metres, unit quaternions).
    """
    angle = index * 0.9
    cx, cz = math.sin(angle), math.cos(angle)
    sway = 0.05 * math.sin(2 * math.pi * 0.5 * t + index)
    half = (angle + 0.2 * math.sin(t)) / 2
    q = (0.0, math.sin(half), 0.0, math.cos(half))
    head = WirePose((cx + sway, 1.65, cz), q)
    left = WirePose((cx - 0.2, 1.1 + 0.1 * math.sin(3 * t), cz - 0.3), q)
    right = WirePose((cx + 0.2, 1.1 + 0.1 * math.cos(3 * t), cz - 0.3), q)
    return {"head": head, "left": left, "right": right}


def scripted_op(rng: random.Random, index: int, counter: int) -> tuple[OpKind, dict[str, Any]]:
    """A plausible op for scripted participants: landmarks, strokes, clip planes, selection, transform."""
    choice = rng.random()
    own = f"{index}:{counter}"
    previous = f"{index}:{max(1, counter - 1)}"
    point = [round(rng.uniform(-0.2, 0.2), 4), round(rng.uniform(1.0, 1.4), 4), round(rng.uniform(-0.2, 0.2), 4)]
    if choice < 0.3:
        return OpKind.LANDMARK_PLACE, {"id": own, "position": point, "label": f"mark {counter}", "structure": None}
    if choice < 0.45:
        return OpKind.LANDMARK_MOVE, {"id": previous, "position": point}
    if choice < 0.65:
        points = [[c + 0.001 * i for c in point] for i in range(8)]
        return OpKind.STROKE_ADD, {"id": own, "points": points}
    if choice < 0.72:
        return OpKind.STROKE_ERASE, {"id": previous}
    if choice < 0.85:
        return OpKind.CLIP_SET, {"index": rng.randrange(6), "normal": [0.0, 0.0, -1.0], "d": round(rng.uniform(-0.1, 0.1), 4)}
    if choice < 0.93:
        return OpKind.SELECT, {"structure": rng.choice(["hippocampus", "thalamus", None, "insula"])}
    return OpKind.TRANSFORM, {"position": point, "orientation": [0.0, 0.0, 0.0, 1.0], "scale": 1.0}


class ScriptedOps:
    """An op source of ``scripted_op`` s, seeded with ``seed`` (default: the participant's index when the
    first op is asked for), so that every participant of a room makes its own reproducible sequence."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._rng: random.Random | None = None

    def __call__(self, index: int, counter: int) -> tuple[OpKind, dict[str, Any]]:
        """The ``counter``-th op of participant ``index``."""
        if self._rng is None:
            self._rng = random.Random(self.seed if self.seed is not None else index)
        return scripted_op(self._rng, index, counter)
