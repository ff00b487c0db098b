"""xrcore fixtures: one real EGL context (Mesa llvmpipe in CI) shared by every rendering test, the
real ``brain`` twin, renderers checked for GL errors after each test (the moderngl idea: the
context is made in exactly one place and checked around each test), and X servers of the tests' own
(Xvfb) for the desktop window and the GLX binding."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest


@pytest.fixture
def renderer(renderer_factory: Any) -> Iterator[Any]:
    """A 160x160-per-eye stereo renderer; the test fails if it raised any GL error."""
    r = renderer_factory()
    before = r.gl_errors
    yield r
    assert r.gl_errors == before, "GL errors during the test (see the log)"


class Xvfb:
    """An X server without a screen on a free display number (``-displayfd``). With ``fbdir`` its
    screen is kept in a file there (``-fbdir``), which :meth:`screen` reads back."""

    def __init__(self, screen: tuple[int, int] = (320, 240), fbdir: Path | None = None) -> None:
        read_fd, write_fd = os.pipe()
        framebuffer = ["-fbdir", str(fbdir)] if fbdir is not None else []
        self.process = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{screen[0]}x{screen[1]}x24", *framebuffer,
             "-nolisten", "tcp", "-noreset"],
            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(write_fd)
        with os.fdopen(read_fd) as f:
            number = f.readline().strip()  # written once the server accepts connections
        if not number:
            self.process.kill()
            raise RuntimeError("Xvfb did not start (apt-get install xvfb)")
        self.display = f":{number}"
        self.fb_file = fbdir / "Xvfb_screen0" if fbdir is not None else None

    def screen(self) -> np.ndarray:
        """The screen as the server holds it (XWD: big-endian header, then 32-bit pixels), RGB."""
        assert self.fb_file is not None, "started without fbdir"
        raw = self.fb_file.read_bytes()
        header = np.frombuffer(raw[:100], dtype=">u4")
        header_size, width, height, byte_order, bpp, stride, ncolors = (
            int(header[k]) for k in (0, 4, 5, 7, 11, 12, 19)
        )
        assert bpp == 32, bpp
        start = header_size + 12 * ncolors
        pixels = np.frombuffer(raw[start : start + stride * height], dtype=np.uint8).reshape(height, stride)
        pixels = pixels[:, : 4 * width].reshape(height, width, 4)
        return pixels[..., [2, 1, 0]] if byte_order == 0 else pixels[..., [1, 2, 3]]

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def start_xvfb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Xvfb]]:
    """``start_xvfb(screen=(w, h), framebuffer=False)`` starts an X server; all stop with the module."""
    started: list[Xvfb] = []

    def start(*, screen: tuple[int, int] = (320, 240), framebuffer: bool = False) -> Xvfb:
        server = Xvfb(screen, tmp_path_factory.mktemp("xvfb") if framebuffer else None)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
