"""The runner's events as xAPI 1.0.3 statements in the trainee's profile.

:func:`statements_for` is the translation, a pure function (one event -> its statements), so a test
holds each event against the statements it must make. :class:`Recorder` is what a run hands the
runner as ``emit``: it translates each event and submits the statements to a
:class:`~sessions.profiles.writer.ProfileWriter`, which never blocks the frame loop.

=====================  ====================================  ==========================================
event                  verb(s)                               object, result
=====================  ====================================  ==========================================
started                launched, initialized                 module; context: attempt, adaptation
step_shown             experienced                           step; context: the step's settings
interacted             interacted                            step; result.extensions: what was done
error                  committed-error                       step; success false, the error's kind
hint                   requested-hint                        step; the hint, its number, auto or asked
step_passed / failed   passed / failed                       step; score, success, completion, duration
paused / resumed       suspended / resumed                   module (the step in the context)
finished               completed (when every step ran to     module; score, success, completion,
                       its end), terminated                  duration, metrics (ext/metrics)
=====================  ====================================  ==========================================

Extensions live under ``f"{ACTIVITY_ROOT}/ext/..."``; timestamps are the run's wall-clock start plus
the event's session time, so a simulated run's statements are spaced as its frames were.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sessions.profiles import xapi
from sessions.training.schema import Module

logger = logging.getLogger(__name__)

EXT = f"{xapi.ACTIVITY_ROOT}/ext"
EXT_METRICS = f"{EXT}/metrics"
EXT_STEP = f"{EXT}/step"
EXT_ATTEMPT = f"{EXT}/attempt"
EXT_ADAPTATION = f"{EXT}/adaptation"
EXT_SETTINGS = f"{EXT}/settings"
EXT_INTERACTION = f"{EXT}/interaction"
EXT_ERROR = f"{EXT}/error"
EXT_HINT = f"{EXT}/hint"
EXT_STEP_RESULT = f"{EXT}/step-result"
EXT_SUMMARY = f"{EXT}/summary"
EXT_SESSION_TIME = f"{EXT}/session-time"

Submit = Callable[[str, dict[str, Any]], Any]


def statements_for(event: dict[str, Any], *, trainee: str, module: Module, wall_start: float) -> list[dict[str, Any]]:
    """The xAPI statements one runner event makes (see the module docstring)."""
    kind = event["type"]
    t = float(event["t"])
    step_id = event.get("step")
    step_name = event.get("step_title")
    context = {EXT_ATTEMPT: event.get("attempt", 1), EXT_SESSION_TIME: t}

    def make(
        verb: str, *, on_step: bool = True, result: dict[str, Any] | None = None, extensions: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return xapi.statement(
            trainee=trainee, verb=verb, module_id=module.id, module_name=module.title,
            step_id=step_id if on_step else None, step_name=step_name if on_step else None,
            registration=event["registration"], timestamp=wall_start + t, result=result,
            extensions={**context, **(extensions or {})},
        )  # fmt: skip

    if kind == "started":
        extra = {EXT_ADAPTATION: event.get("adaptation") or {}}
        return [make("launched", on_step=False, extensions=extra), make("initialized", on_step=False, extensions=extra)]
    if kind == "step_shown":
        return [make("experienced", extensions={EXT_SETTINGS: event.get("settings", {})})]
    if kind == "interacted":
        detail = {k: v for k, v in event.items() if k not in _ENVELOPE}
        return [make("interacted", result=xapi.result(extensions={EXT_INTERACTION: detail}))]
    if kind == "error":
        detail = {k: v for k, v in event.items() if k not in _ENVELOPE}
        return [make("committed-error", result=xapi.result(success=False, extensions={EXT_ERROR: detail}))]
    if kind == "hint":
        detail = {"text": event["text"], "number": event["number"], "auto": bool(event["auto"])}
        return [make("requested-hint", result=xapi.result(extensions={EXT_HINT: detail}))]
    if kind in ("step_passed", "step_failed"):
        r = event["result"]
        res = xapi.result(
            scaled=r["score"], raw=r["score"], min=0.0, max=1.0, success=bool(r["passed"]), completion=bool(r["reached"]),
            duration_s=r["duration_s"], extensions={EXT_STEP_RESULT: _step_result(r)},
        )  # fmt: skip
        return [make("passed" if kind == "step_passed" else "failed", result=res)]
    if kind in ("paused", "resumed"):
        extra = {EXT_STEP: step_id} if step_id is not None else {}
        return [make("suspended" if kind == "paused" else "resumed", on_step=False, extensions=extra)]
    if kind == "finished":
        s = event["summary"]
        completed = all(step["reason"] != "ended" for step in s["steps"])
        steps = [_step_result(step) for step in s["steps"]]

        def final() -> dict[str, Any]:
            return xapi.result(
                scaled=s["score"], raw=s["score"], min=0.0, max=1.0, success=bool(s["success"]), completion=completed,
                duration_s=s["duration_s"], extensions={EXT_METRICS: dict(s["metrics"]), EXT_SUMMARY: {
                    "errors": s["errors"], "hints": s["hints"], "accuracy_mm": s["accuracy_mm"], "steps": steps}},
            )  # fmt: skip

        out = [make("completed", on_step=False, result=final())] if completed else []
        return [*out, make("terminated", on_step=False, result=final())]
    raise ValueError(f"unknown training event {kind!r}")


_ENVELOPE = frozenset({"type", "t", "module", "registration", "attempt", "step", "step_index", "step_title"})


def _step_result(r: dict[str, Any]) -> dict[str, Any]:
    return {k: r[k] for k in ("id", "kind", "passed", "reached", "score", "errors", "error_kinds", "hints", "hints_asked",
                              "duration_s", "accuracy_mm", "reason", "settings")}  # fmt: skip


class Recorder:
    """``emit`` for a :class:`~sessions.training.runner.TrainingRunner`: each event becomes its xAPI
    statements, kept in :attr:`statements` and handed to ``submit(trainee, statement)`` (a
    :meth:`ProfileWriter.submit`, which returns at once). ``events`` keeps the raw events."""

    def __init__(self, trainee: str, module: Module, submit: Submit | None = None, *, wall_start: float | None = None) -> None:
        self.trainee = trainee
        self.module = module
        self.submit = submit
        self.wall_start = time.time() if wall_start is None else wall_start
        self.events: list[dict[str, Any]] = []
        self.statements: list[dict[str, Any]] = []
        self.futures: list[Any] = []

    def __call__(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        for stmt in statements_for(event, trainee=self.trainee, module=self.module, wall_start=self.wall_start):
            self.statements.append(stmt)
            if self.submit is not None:
                self.futures.append(self.submit(self.trainee, stmt))
