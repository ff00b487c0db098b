"""`medverse train`: run a training module for a trainee and record it in their profile.

``medverse train --module M --trainee alice [--backend sim|openxr|desktop|auto] [--script S]
[--out DIR] [--profile DB|URL] [--attempts N]`` runs module ``M`` (a shipped id or a file): in the
simulator a scripted trainee plays (the module's own, or ``--script``); in a window or headset the
instructions and feedback appear in the panels. ``--next`` picks the module and steps the trainee
most needs to practise (``docs/training.md``). Each attempt ends with a score table in the terminal.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from assets.errors import AssetError
from sessions.profiles.lrs import LRS_PASSWORD_ENV, LRS_URL_ENV, LRS_USER_ENV
from sessions.training.loader import ModuleError
from xrcore.backends.base import BackendError
from xrcore.gl import GLContextError
from xrcore.motion import ScriptError

logger = logging.getLogger(__name__)



def _user_errors() -> tuple[type[BaseException], ...]:
    from sessions.profiles.errors import ProfileError  # noqa: PLC0415 - profiles only for this command

    return (ModuleError, ScriptError, AssetError, BackendError, GLContextError, ProfileError)


USER_ERRORS: tuple[type[BaseException], ...] = _user_errors()


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``train``."""
    p = sub.add_parser(
        "train",
        help="run a training module for a trainee and record it in their profile",
        description="Run a training module: in the simulator a scripted trainee plays it; in a window or headset "
        "you do, with the instructions and feedback in the panels (right menu button or F1: a hint; left menu "
        "button or P: pause). Every action is an xAPI statement in the trainee's profile; each run ends with a score table.",
    )
    p.add_argument("--module", help="a shipped module id or a module file (JSON or YAML)")
    p.add_argument("--trainee", required=True, help="who is training (their profile gets the statements)")
    p.add_argument("--backend", choices=("sim", "openxr", "desktop", "auto"), default="sim", help="default %(default)s")
    p.add_argument("--script", help="the scripted trainee in the simulator (a file, or a name in sessions/training/scripts/)")
    p.add_argument("--out", type=Path, help="folder for each attempt's JSON (summary and statements), and PNGs with --render")
    p.add_argument("--profile", help="profile store: a SQLite file or a postgresql:// URL (default ~/.medverse/profiles.sqlite)")
    p.add_argument("--attempts", type=int, default=1, help="attempts in a row (default %(default)s)")
    p.add_argument("--next", action="store_true", help="practise what the trainee most needs: the module and steps "
                   "with the lowest recent scores, failures, or never tried")  # fmt: skip
    p.add_argument("--no-adapt", action="store_true", help="run the module as written, not adapted to the trainee's record")
    p.add_argument("--render", action="store_true", help="simulator: render and write the script's named keyframes as PNG")
    p.add_argument("--seconds", type=float, help="window or headset: end the run after this many seconds")
    p.add_argument("--lrs", default=os.environ.get(LRS_URL_ENV),
                   help=f"also send the profile to this Learning Record Store after the run (default ${LRS_URL_ENV}; "
                   f"user ${LRS_USER_ENV}, password ${LRS_PASSWORD_ENV}); what it cannot take now stays in the "
                   "outbox for the next run or 'medverse profile push'")  # fmt: skip
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from sessions.profiles.writer import ProfileWriter  # noqa: PLC0415
    from sessions.training.run import train  # noqa: PLC0415

    if args.attempts < 1:
        raise ModuleError(f"--attempts must be at least 1, got {args.attempts}")
    if args.seconds is not None and args.seconds <= 0:
        raise ModuleError(f"--seconds must be positive, got {args.seconds}")
    if not args.trainee.strip() or any(c.isspace() for c in args.trainee):
        raise ModuleError(f"--trainee must be a name without spaces, got {args.trainee!r}")
    module: Any = args.module
    steps = None
    if args.next:
        module, steps = _choose(args)
    elif module is None:
        raise ModuleError("give --module M (a shipped id or a file), or --next")
    with ProfileWriter(args.profile) as writer:
        for _ in range(args.attempts):
            result = train(module, args.trainee, backend=args.backend, script=args.script, writer=writer, store=args.profile,
                           out=args.out, adapt=not args.no_adapt, steps=steps, render=args.render,
                           max_seconds=args.seconds)  # fmt: skip
            print_summary(result)
    if args.lrs:
        _push(args)
    return 0


#: Requests a run's automatic push makes while the LRS is down before it leaves the rest queued.
AUTO_PUSH_ATTEMPTS = 3


def _push(args: argparse.Namespace) -> None:
    """The automatic mode of the LRS outbox: push after the run, never failing the run for it."""
    from sessions.profiles import open_store  # noqa: PLC0415
    from sessions.profiles.lrs import LRSError, OutboxError, push_profile  # noqa: PLC0415 - only when --lrs is given

    user, password = os.environ.get(LRS_USER_ENV), os.environ.get(LRS_PASSWORD_ENV)
    if not user or password is None:
        print(f"LRS: not sent: set ${LRS_USER_ENV} and ${LRS_PASSWORD_ENV}")
        return
    try:
        with open_store(args.profile) as store:
            result = push_profile(store, args.trainee, args.lrs, username=user, password=password,
                                  max_attempts=AUTO_PUSH_ATTEMPTS)  # fmt: skip
    except (LRSError, OutboxError) as exc:
        print(f"LRS: not sent: {exc}")
        return
    print(f"LRS: {result.sent} statements sent, {result.already} already there, {result.rejected} refused, "
          f"{result.pending} left in the outbox for the next push")


def _choose(args: argparse.Namespace) -> tuple[Any, list[str] | None]:
    from sessions.training.adapt import pick_next, read_record  # noqa: PLC0415
    from sessions.training.loader import load_module, shipped_modules  # noqa: PLC0415

    sources = [args.module] if args.module else [str(p) for p in shipped_modules()]
    if not sources:
        raise ModuleError("--next: no shipped modules to choose from; give --module")
    modules = [load_module(s, check_twin=False) for s in sources]
    choice = pick_next(modules, read_record(args.profile, args.trainee))
    needs = ", ".join(f"{m} {n:.2f}" for m, n in choice.needs.items())
    print(f"next for {args.trainee}: {choice.module.id} (need {choice.needs[choice.module.id]:.2f}; all: {needs})")
    if args.backend == "sim":
        print("  the simulator runs every step: its scripted trainee was written for the whole module")
        return choice.module.source, None
    print(f"  steps: {', '.join(choice.steps)}")
    return choice.module.source, list(choice.steps)


def print_summary(result: Any) -> None:
    """The score table of one attempt (rich), and where the profile is."""
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    s = result.summary
    title = f"{s.title} ({s.module}) - {s.trainee}, attempt {s.attempt}"
    table = Table(title=title, title_justify="left")
    for name, justify in (("step", "left"), ("kind", "left"), ("score", "right"), ("result", "left"), ("errors", "right"),
                          ("hints", "right"), ("time s", "right"), ("accuracy mm", "right")):  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in s.steps:
        kinds = ", ".join(f"{k} {n}" for k, n in r.error_kinds.items())
        table.add_row(
            r.id, r.kind, f"{r.score:.2f}", "passed" if r.passed else f"failed ({r.reason})",
            f"{r.errors}" + (f" ({kinds})" if kinds else ""), str(r.hints), f"{r.duration_s:.1f}",
            "-" if r.accuracy_mm is None else f"{r.accuracy_mm:.1f}",
        )  # fmt: skip
    accuracy = "-" if s.accuracy_mm is None else f"{s.accuracy_mm:.1f}"
    table.add_row("total", "", f"{s.score:.2f}", "passed" if s.success else "not passed", str(s.errors), str(s.hints),
                  f"{s.duration_s:.1f}", accuracy, end_section=True)  # fmt: skip
    # as wide as the terminal, or 160 columns on a pipe or log (rich would wrap the table at 80)
    console = Console(width=None if sys.stdout.isatty() else 160, highlight=False)
    console.print(table)
    if result.adaptation:
        changed = "; ".join(f"{k}: {', '.join(f'{a}={b}' for a, b in v.items())}" for k, v in result.adaptation.items())
        console.print(f"adapted to the record: {changed}", soft_wrap=True)
    console.print(f"profile: {result.profile} ({result.stored} of {len(result.statements)} statements stored)", soft_wrap=True)
    if result.written is not None:
        console.print(f"attempt written to {result.written}", soft_wrap=True)
