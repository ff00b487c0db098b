"""Suite-wide set-up: every test run gets its own twin cache and medverse home.

Tests never read or write the user's ``~/.cache/medverse`` or ``~/.medverse``; subprocesses started by
tests (the ``medverse`` CLI, peers) inherit the same folders through the environment. Under
pytest-xdist each worker is a process of its own, with its own folders.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assets.twin import Twin


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


@pytest.fixture(scope="session")
def gl_context() -> Iterator[Any]:
    """An offscreen OpenGL core context through EGL, current on the test thread."""
    from xrcore.gl.context import create_context

    ctx = create_context("egl", width=128, height=128)
    yield ctx
    ctx.close()


@pytest.fixture(scope="session")
def brain() -> Twin:
    """The bundled ``brain`` twin: nilearn's fsaverage5 pial surfaces, two hemispheres, metres."""
    from assets.library import build

    return build("brain")


@pytest.fixture(scope="module")
def renderer_factory(gl_context: Any) -> Iterator[Any]:
    """Make renderers on the shared context (cached per settings); each is closed at module end."""
    from xrcore.render import Renderer

    made: dict[tuple[Any, ...], Any] = {}

    def make(width: int = 160, height: int = 160, stereo: str = "auto", samples: int = 4) -> Any:
        key = (width, height, stereo, samples)
        # a test that made and closed a context of its own (the CLI) leaves none current
        gl_context.make_current()
        if key not in made:
            made[key] = Renderer(gl_context, width=width, height=height, stereo=stereo, samples=samples)
        return made[key]

    yield make
    for r in made.values():
        r.close()
