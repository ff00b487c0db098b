"""The ``medverse`` command line: one entry point, one subcommand module per area.

Each module in ``_COMMANDS`` defines ``register(subparsers)``, which adds its subcommands with
``set_defaults(func=handler)``, and ``USER_ERRORS``, the exception types that mean "the user gave bad
input": those end the command with a one-line message and exit code 2, never a traceback.

Only the module of the command being run is imported (all of them for help or an unknown command):
``medverse sim`` does not load aiortc, nor ``consult join`` the renderer (about 90 MB of peak
memory between them).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

#: The module that registers each command.
_COMMANDS = {
    "twin": "sessions.cli.twin",
    "sim": "sessions.cli.xr",
    "view": "sessions.cli.xr",
    "consult": "sessions.cli.consult",
    "demo": "sessions.cli.demo",
    "train": "sessions.cli.train",
    "profile": "sessions.cli.profile",
    "pacs": "sessions.cli.pacs",
}


def _modules_for(argv: Sequence[str] | None) -> list[str]:
    """The command modules to import for ``argv``: the command's own, or all when it names none we know."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in args if not a.startswith("-")), None)
    if command in _COMMANDS and not any(a in ("-h", "--help") for a in args[: args.index(command)]):
        return [_COMMANDS[command]]
    return list(dict.fromkeys(_COMMANDS.values()))


def build_parser(argv: Sequence[str] | None = None) -> tuple[argparse.ArgumentParser, tuple[type[BaseException], ...]]:
    parser = argparse.ArgumentParser(
        prog="medverse",
        description="Immersive training and remote consultation around anatomical digital twins.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    user_errors: list[type[BaseException]] = []
    for name in _modules_for(argv):
        module = importlib.import_module(name)
        module.register(sub)
        user_errors.extend(getattr(module, "USER_ERRORS", ()))
    return parser, tuple(user_errors)


def _configure_logging(verbosity: int) -> None:
    level_name = os.environ.get("MEDVERSE_LOG")
    if verbosity:
        level = logging.DEBUG if verbosity > 1 else logging.INFO
    elif level_name:
        level = getattr(logging, level_name.upper(), logging.WARNING)
    else:
        level = logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    parser, user_errors = build_parser(argv)
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("medverse: interrupted", file=sys.stderr)
        return 130
    except user_errors as exc:
        print(f"medverse: error: {exc}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
