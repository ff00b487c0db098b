"""xrcore fixtures: one real EGL context (Mesa llvmpipe in CI) shared by every rendering test, the
real ``brain`` twin, and renderers checked for GL errors after each test (the moderngl idea: the
context is made in exactly one place and checked around each test)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from assets.twin import Twin


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


@pytest.fixture
def renderer(renderer_factory: Any) -> Iterator[Any]:
    """A 160x160-per-eye stereo renderer; the test fails if it raised any GL error."""
    r = renderer_factory()
    before = r.gl_errors
    yield r
    assert r.gl_errors == before, "GL errors during the test (see the log)"
