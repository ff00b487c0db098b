"""Training modules: the format (:mod:`.schema`, ``module.schema.json``), the loader, the runner that
scores a trainee from poses and intents, adaptive practice, and the xAPI record of every action.

See ``docs/training.md``. Importing this package loads no GL and no profile store; :func:`train`
brings them in when it runs.
"""

from __future__ import annotations

from sessions.training.loader import SCHEMA_PATH, ModuleError, find_module, load_module, parse_module, shipped_modules
from sessions.training.runner import RunSummary, StepResult, TrainingRunner
from sessions.training.schema import Module, Step

__all__ = [
    "SCHEMA_PATH",
    "Module",
    "ModuleError",
    "RunSummary",
    "Step",
    "StepResult",
    "TrainingResult",
    "TrainingRunner",
    "find_module",
    "load_module",
    "parse_module",
    "shipped_modules",
    "train",
]  # fmt: skip


def __getattr__(name: str) -> object:
    if name in ("train", "TrainingResult"):
        from sessions.training import run  # noqa: PLC0415 - the session loop only when a module runs

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
