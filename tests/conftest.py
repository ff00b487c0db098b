"""Suite-wide set-up: every test run gets its own twin cache and medverse home.

Tests never read or write the user's ``~/.cache/medverse`` or ``~/.medverse``; subprocesses started by
tests (the ``medverse`` CLI, peers) inherit the same folders through the environment. Under
pytest-xdist each worker is a process of its own, with its own folders.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
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


@pytest.fixture(scope="module")
def desktop_display(start_xvfb: Callable[..., Xvfb]) -> Iterator[Xvfb]:
    """A 480x360 X server whose screen can be read back, DISPLAY pointing at it for the module (the
    desktop window's tests); GLFW is shut down before the server goes (Xlib exits on a lost server)."""
    server = start_xvfb(screen=(480, 360), framebuffer=True)
    saved = {k: os.environ.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY")}
    os.environ["DISPLAY"] = server.display
    os.environ.pop("WAYLAND_DISPLAY", None)
    try:
        yield server
    finally:
        import glfw

        glfw.terminate()
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def runtime_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The headless test OpenXR runtime (``tests/xrcore/test_openxr_runtime.c``) compiled into a shared
    library, and the runtime manifest pointing at it (give it to the loader as ``XR_RUNTIME_JSON``)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler is needed to build the test OpenXR runtime (apt-get install gcc)"
    root = tmp_path_factory.mktemp("xr-runtime")
    library = root / "libmedverse_xr_test.so"
    source = Path(__file__).parent / "xrcore" / "test_openxr_runtime.c"
    build = subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(library), str(source), "-lm"],
                           check=False, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert build.returncode == 0, f"building the test runtime failed (needs libopenxr-dev):\n{build.stderr[-2000:]}"
    manifest = root / "runtime.json"
    runtime = {"name": "medverse headless test runtime", "library_path": str(library)}
    manifest.write_text(json.dumps({"file_format_version": "1.0.0", "runtime": runtime}))
    return manifest
