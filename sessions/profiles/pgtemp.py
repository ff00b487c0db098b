"""A throwaway PostgreSQL server on its own port and data folder, for tests and benchmarks.

The profile store's tests and ``bench/profiles.py`` run against a real PostgreSQL, never a system
service: :class:`TempPostgres` runs ``initdb`` and ``pg_ctl`` from Debian's ``postgresql`` package
(``/usr/lib/postgresql/<version>/bin``, or ``$MEDVERSE_PG_BIN``) on a free loopback port, with trust
authentication, and removes everything when stopped. PostgreSQL refuses to run as root, so under root
the server runs as the ``postgres`` user that the Debian package creates, in a data folder it owns.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

from sessions.profiles.errors import ProfileError

log = logging.getLogger(__name__)

PG_BIN_ENV = "MEDVERSE_PG_BIN"
#: The user a root process runs the server as (created by Debian's postgresql package).
SERVER_USER = "postgres"


def find_pg_bin() -> Path:
    """Folder with ``initdb`` and ``pg_ctl``: ``$MEDVERSE_PG_BIN``, else the newest Debian install."""
    env = os.environ.get(PG_BIN_ENV)
    candidates = [Path(env)] if env else sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version, reverse=True)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    raise ProfileError(f"PostgreSQL server programs (initdb, pg_ctl) not found: install Debian's postgresql or set ${PG_BIN_ENV}")


def _version(folder: Path) -> float:
    try:
        return float(folder.parent.name)
    except ValueError:
        return 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TempPostgres:
    """A PostgreSQL server that lives as long as this object (a context manager).

    Attributes
    ----------
    port : int
        Loopback TCP port it listens on.
    root : Path
        Its folder: ``data/`` (the cluster), ``log`` and the Unix socket.
    """

    def __init__(self) -> None:
        self.bin = find_pg_bin()
        self.port = 0
        self.root = Path(tempfile.mkdtemp(prefix="medverse-pg-"))
        self._as_user: list[str] = []
        self._started = False
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise ProfileError(f"running as root and there is no {SERVER_USER!r} user to run PostgreSQL as") from None
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            self._as_user = ["runuser", "-u", SERVER_USER, "--"]

    def _run(self, *args: str) -> None:
        cmd = [*self._as_user, *args]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=self.root)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise ProfileError(f"{Path(args[0]).name} failed (exit {done.returncode}): {tail[0]}")

    def start(self) -> TempPostgres:
        """initdb and start; tries a few ports in case another process takes the one picked."""
        data = self.root / "data"
        self._run(str(self.bin / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres", "-E", "UTF8",
                  "--locale=C", "--no-sync")  # fmt: skip
        last: ProfileError | None = None
        for _ in range(3):
            self.port = _free_port()
            options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
            try:
                self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.root / "log"), "-w", "-t", "60",
                          "-o", options, "start")  # fmt: skip
            except ProfileError as exc:
                last = exc
                continue
            self._started = True
            log.info("PostgreSQL %s started on 127.0.0.1:%d (%s)", self.bin.parent.name, self.port, self.root)
            return self
        raise ProfileError(f"PostgreSQL did not start: {last}; see {self.root / 'log'}")

    def url(self, database: str = "postgres") -> str:
        """Connection URL of ``database`` on this server (user postgres, no password)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (a fresh random name by default) and return its URL."""
        import psycopg  # noqa: PLC0415 - optional dependency, only for PostgreSQL

        name = name or f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its folder."""
        if self._started:
            self._started = False
            try:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")
            except ProfileError as exc:
                log.warning("stopping PostgreSQL: %s", exc)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> TempPostgres:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
