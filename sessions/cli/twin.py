"""`medverse` subcommands: twin (being written)."""

from __future__ import annotations

import argparse

USER_ERRORS: tuple[type[BaseException], ...] = ()


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add this module's subcommands."""
