"""Adaptive practice: tolerances, hints and time limits that follow a trainee's record, and the choice
of what to practise next (``medverse train --next``).

The record is the trainee's xAPI statements (``open_store(...).statements(trainee)``): each step's
``passed``/``failed`` statements, oldest first, give its history. The rules (``docs/training.md``):

* after a step is passed twice in a row its tolerances shrink by :data:`TIGHTEN` (20 %), and again
  for every further two passes in a row, never below the module's floor (default half the tolerance);
* after a failure its first hint shows when the step starts, and its time limit grows by
  :data:`GROW` (25 %) per failure in a row, up to :data:`MAX_GROWTH` times the written limit;
* the *need* of a step is 1 when never tried, else ``1 - mean(last three scores)``, plus 0.25 when its
  latest attempt failed (at most 1); ``--next`` runs the module of highest mean need, its steps of
  need at least :data:`NEED_MIN`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sessions.training.schema import InstrumentTarget, LandmarkTarget, MeasureTarget, Module, SectionTarget, Step

logger = logging.getLogger(__name__)

TIGHTEN = 0.8
GROW = 1.25
MAX_GROWTH = 2.0
FLOOR_FRACTION = 0.5
NEED_MIN = 0.25
RECENT = 3


@dataclass(frozen=True)
class Outcome:
    """One attempt at a step: passed or not, its score, the registration and the statement's time."""

    passed: bool
    score: float
    registration: str = ""
    timestamp: str = ""


def _statement(item: Any) -> dict[str, Any]:
    stmt = item.get("statement", item) if isinstance(item, dict) and "statement" in item else getattr(item, "statement", item)
    return stmt if isinstance(stmt, dict) else {}


def step_history(record: Iterable[Any], module_id: str) -> dict[str, list[Outcome]]:
    """Per step id of ``module_id``: its outcomes, oldest first, from statements (or StoredStatements)."""
    from sessions.profiles import xapi  # noqa: PLC0415 - profiles only when a record is read

    prefix = xapi.activity_id(module_id) + "/steps/"
    verbs = {xapi.VERBS["passed"]: True, xapi.VERBS["failed"]: False}
    out: dict[str, list[Outcome]] = {}
    for item in record:
        stmt = _statement(item)
        verb = (stmt.get("verb") or {}).get("id")
        obj_id = (stmt.get("object") or {}).get("id", "")
        if verb not in verbs or not isinstance(obj_id, str) or not obj_id.startswith(prefix):
            continue
        from urllib.parse import unquote  # noqa: PLC0415

        step_id = unquote(obj_id[len(prefix) :])
        score = ((stmt.get("result") or {}).get("score") or {}).get("scaled", 1.0 if verbs[verb] else 0.0)
        reg = (stmt.get("context") or {}).get("registration", "")
        out.setdefault(step_id, []).append(Outcome(verbs[verb], float(score), reg, str(stmt.get("timestamp", ""))))
    return out


def _streak(history: Sequence[Outcome], passed: bool) -> int:
    n = 0
    for o in reversed(history):
        if o.passed != passed:
            break
        n += 1
    return n


def _tighter(value: float, factor: float, floor: float | None) -> float:
    lowest = floor if floor is not None else value * FLOOR_FRACTION
    return max(lowest, value * factor)


def adapt_step(step: Step, history: Sequence[Outcome]) -> tuple[Step, dict[str, Any]]:
    """``step`` adjusted to its ``history``, and what changed (empty when nothing did)."""
    notes: dict[str, Any] = {}
    passes = _streak(history, True)
    fails = _streak(history, False)
    target = step.target
    if passes >= 2:
        factor = TIGHTEN ** (passes // 2)
        if isinstance(target, (LandmarkTarget, MeasureTarget, InstrumentTarget, SectionTarget)):
            notes["tightened"] = round(factor, 4)
        if isinstance(target, (LandmarkTarget, MeasureTarget, InstrumentTarget)):
            target = dataclasses.replace(target, tolerance_mm=_tighter(target.tolerance_mm, factor, target.tolerance_floor_mm))
            notes["tolerance_mm"] = round(target.tolerance_mm, 4)
        elif isinstance(target, SectionTarget):
            target = dataclasses.replace(
                target,
                angle_tolerance_deg=_tighter(target.angle_tolerance_deg, factor, target.angle_tolerance_floor_deg),
                offset_tolerance_mm=_tighter(target.offset_tolerance_mm, factor, target.offset_tolerance_floor_mm),
            )
            notes["angle_tolerance_deg"] = round(target.angle_tolerance_deg, 4)
            notes["offset_tolerance_mm"] = round(target.offset_tolerance_mm, 4)
    limit = step.time_limit_s
    auto = step.auto_hints
    if fails >= 1:
        if step.hints:
            auto = max(auto, 1)
            notes["auto_hints"] = auto
        if limit is not None:
            limit = min(step.time_limit_s * MAX_GROWTH, step.time_limit_s * GROW**fails)  # type: ignore[operator]
            notes["time_limit_s"] = round(limit, 3)
    if not notes:
        return step, {}
    return dataclasses.replace(step, target=target, time_limit_s=limit, auto_hints=auto), notes


def adapt_module(module: Module, record: Iterable[Any]) -> tuple[Module, dict[str, dict[str, Any]]]:
    """``module`` with every step adjusted to the trainee's ``record``; and per step what changed."""
    history = step_history(record, module.id)
    steps: list[Step] = []
    notes: dict[str, dict[str, Any]] = {}
    for step in module.steps:
        adjusted, changed = adapt_step(step, history.get(step.id, []))
        steps.append(adjusted)
        if changed:
            notes[step.id] = changed
    if notes:
        logger.info("adapted %s to the record: %s", module.id, notes)
    return dataclasses.replace(module, steps=tuple(steps)), notes


def need(history: Sequence[Outcome]) -> float:
    """How much a step needs practice, 0..1 (see the module docstring)."""
    if not history:
        return 1.0
    recent = history[-RECENT:]
    value = 1.0 - sum(o.score for o in recent) / len(recent)
    if not history[-1].passed:
        value += 0.25
    return round(max(0.0, min(1.0, value)), 4)


@dataclass
class Choice:
    """What ``--next`` picked: the module, the steps to run, and every module's need."""

    module: Module
    steps: tuple[str, ...]
    needs: dict[str, float] = field(default_factory=dict)
    step_needs: dict[str, float] = field(default_factory=dict)


def pick_next(modules: Sequence[Module], record: Iterable[Any]) -> Choice:
    """The module (and its steps) most in need of practice; see the module docstring."""
    if not modules:
        raise ValueError("no modules to choose from")
    stored = list(record)
    rated: list[tuple[float, str, str, Module, dict[str, float]]] = []
    for module in modules:
        history = step_history(stored, module.id)
        per_step = {s.id: need(history.get(s.id, [])) for s in module.steps}
        mean = sum(per_step.values()) / len(per_step)
        last = max((o.timestamp for hs in history.values() for o in hs), default="")
        # highest need first; then least recently practised (the empty stamp sorts first); then id
        rated.append((-mean, last, module.id, module, per_step))
    rated.sort(key=lambda r: (r[0], r[1], r[2]))
    _, _, _, module, per_step = rated[0]
    steps = tuple(sid for sid, n in per_step.items() if n >= NEED_MIN) or tuple(per_step)
    return Choice(module, steps, {r[2]: round(-r[0], 4) for r in rated}, per_step)


def only_steps(module: Module, step_ids: Sequence[str]) -> Module:
    """``module`` with only the steps ``step_ids`` (in the module's order)."""
    wanted = set(step_ids)
    return dataclasses.replace(module, steps=tuple(s for s in module.steps if s.id in wanted))


def read_record(store_target: str | os.PathLike[str] | None, trainee: str) -> list[dict[str, Any]]:
    """The trainee's statements, oldest first, from the profile store at ``store_target``."""
    from sessions.profiles.store import open_store  # noqa: PLC0415 - profiles only when a record is read

    store = open_store(store_target)
    try:
        return [s.statement for s in store.statements(trainee)]
    finally:
        store.close()
