"""Suite-wide set-up: every test run gets its own twin cache and medverse home.

Tests never read or write the user's ``~/.cache/medverse`` or ``~/.medverse``; subprocesses started by
tests (the ``medverse`` CLI, peers) inherit the same folders through the environment.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def isolated_medverse_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("medverse")
    saved = {k: os.environ.get(k) for k in ("MEDVERSE_CACHE", "MEDVERSE_HOME")}
    os.environ["MEDVERSE_CACHE"] = str(root / "cache")
    os.environ["MEDVERSE_HOME"] = str(root / "home")
    yield root
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
