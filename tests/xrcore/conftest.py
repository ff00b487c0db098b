"""xrcore fixtures: one real EGL context (Mesa llvmpipe in CI) shared by every rendering test, the
real ``brain`` twin, renderers checked for GL errors after each test (the moderngl idea: the
context is made in exactly one place and checked around each test), and X servers of the tests' own
(Xvfb) for the desktop window and the GLX binding."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def renderer(renderer_factory: Any) -> Iterator[Any]:
    """A 160x160-per-eye stereo renderer; the test fails if it raised any GL error."""
    r = renderer_factory()
    before = r.gl_errors
    yield r
    assert r.gl_errors == before, "GL errors during the test (see the log)"
