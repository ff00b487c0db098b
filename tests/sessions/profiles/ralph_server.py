"""A real Learning Record Store for the tests: Ralph (PyPI ``ralph-malph``) with its filesystem backend.

The tests import ``Ralph``, ``free_port`` and the ``ralph`` fixture from here. Each Ralph runs in its
own process on a free port, with its own app folder (``auth.json`` holding credentials made by
``ralph auth``) and its own data folder, and can be stopped and started again on the same port and
data (an LRS outage in the middle of a push).

Why not ``ralph runserver -b fs`` itself: in Ralph 5.1 the filesystem LRS backend writes every POST
with the "create" operation to the one file ``fs_lrs.jsonl``, so the second POST that brings any new
statement fails with HTTP 500 ("already exists and overwrite is not allowed"); only the first POST
of a server's life can store anything. This file, run as a script, serves the same application
(``ralph.api:app`` through uvicorn, configured by the same environment variables that ``runserver``
writes) with that backend's default operation set to "append", and without ``runserver``'s
auto-reloader (which watches the working directory for changed ``*.py`` files). Everything a client
meets (routes, authentication, validation, duplicate handling, the stored JSON lines) is Ralph's own.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

VENV_BIN = Path(sys.executable).parent
USERNAME = "medverse"
PASSWORD = "lrs-test-secret"
MBOX = "mailto:lrs@medverse.example"


def free_port() -> int:
    """A TCP port nothing listens on now (tests run in parallel: never a fixed port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def make_credentials(app_dir: Path, username: str = USERNAME, password: str = PASSWORD) -> Path:
    """Write ``app_dir/auth.json`` with the credentials ``ralph auth`` makes (bcrypt hash, scope all)."""
    ralph = VENV_BIN / "ralph"
    assert ralph.exists(), f"{ralph} is missing: install ralph-malph[backend-lrs,lrs,cli] in the venv"
    app_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "RALPH_APP_DIR": str(app_dir), "RALPH_RUNSERVER_BACKEND": "fs"}
    done = subprocess.run([str(ralph), "auth", "-u", username, "-p", password, "-s", "all", "-M", MBOX, "-w"],
                          env=env, cwd=app_dir, capture_output=True, text=True, timeout=120, check=False)
    auth = app_dir / "auth.json"
    assert done.returncode == 0 and auth.exists(), f"ralph auth failed: {done.stderr[-2000:]}"
    users = json.loads(auth.read_text())
    assert [u["username"] for u in users] == [username], users
    return auth


@dataclass
class Ralph:
    """One Ralph LRS process; ``url`` is its base (``http://127.0.0.1:PORT``), the xAPI under ``/xAPI``."""

    root: Path
    port: int = field(default_factory=free_port)
    username: str = USERNAME
    password: str = PASSWORD
    stock: bool = False  # True: plain `ralph runserver -b fs` (only its first storing POST succeeds)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def app_dir(self) -> Path:
        return self.root / "app"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "ralph.log"

    def start(self, timeout: float = 60.0, *, wait: bool = True) -> None:
        """Start the server (credentials made on first start); with ``wait``, return once it answers."""
        assert self.process is None, "already running"
        if not (self.app_dir / "auth.json").exists():
            make_credentials(self.app_dir, self.username, self.password)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "RALPH_APP_DIR": str(self.app_dir), "RALPH_RUNSERVER_BACKEND": "fs",
               "RALPH_BACKENDS__LRS__FS__DEFAULT_DIRECTORY_PATH": str(self.data_dir)}
        command = [sys.executable, __file__, str(self.port)]
        if self.stock:
            command = [str(VENV_BIN / "ralph"), "runserver", "-b", "fs", "--fs-default-directory-path", str(self.data_dir),
                       "-h", "127.0.0.1", "-p", str(self.port)]
        with self.log_path.open("ab") as log:
            # its own session: stop() signals the whole group (runserver's reloader and its worker)
            self.process = subprocess.Popen(command, env=env, cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        if wait:
            self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"Ralph exited with {self.process.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/__heartbeat__", timeout=2) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"Ralph did not answer on {self.url} within {timeout} s: {self.log_tail()}")

    def stop(self) -> None:
        """Stop the server (SIGINT: uvicorn's clean shutdown), then make sure it is gone."""
        if self.process is None:
            return
        group = self.process.pid  # start_new_session: the group id is the leader's pid
        if self.process.poll() is None:
            os.killpg(group, signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(group, signal.SIGKILL)
                self.process.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):  # a worker the leader left behind
            os.killpg(group, signal.SIGKILL)
        self.process = None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else "(no log)"

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One authenticated xAPI request; returns (status, decoded JSON body or None)."""
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method, headers={
            "Authorization": f"Basic {token}", "X-Experience-API-Version": "1.0.3", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            raw = error.read()
            return error.code, json.loads(raw) if raw else None

    def statements(self) -> list[dict[str, Any]]:
        """Every statement the LRS holds, read back with ``GET /xAPI/statements`` (following ``more``)."""
        out: list[dict[str, Any]] = []
        path = "/xAPI/statements?limit=100"
        while path:
            status, page = self.request("GET", path)
            assert status == 200, (status, page)
            out += page["statements"]
            path = page.get("more") or ""
        return out


@pytest.fixture
def ralph(tmp_path: Path) -> Iterator[Ralph]:
    """A running Ralph LRS of its own; stopped after the test."""
    server = Ralph(tmp_path / "ralph")
    server.root.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _serve(port: int) -> None:
    import uvicorn
    from ralph.backends.data.base import BaseOperationType
    from ralph.backends.lrs.fs import FSLRSBackend

    # See the module docstring: without this every POST after the first that stores something fails.
    FSLRSBackend.default_operation_type = BaseOperationType.APPEND
    uvicorn.run("ralph.api:app", host="127.0.0.1", port=port, log_level="info")


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
