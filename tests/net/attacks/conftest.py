"""The attack suite's fixtures: one real signaling server per module, a consultation in another room that
must keep working through every attack, and clients that come from other loopback addresses.

Each test attacks the module's server as an outsider or an insider would, asserts what the server
answers, and then calls ``bystanders.still_working()``: the two aiortc participants of room
``bystanders`` must still receive each other's poses and the server must still admit a fresh join.
"""

from __future__ import annotations

import asyncio
import os
import time
import traceback
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from net.limits import Limits
from net.participant import Participant, ParticipantConfig
from net.signaling import ServerConfig, SignalingServer
from net.signaling_client import SignalingClient
from net.tokens import issue_token
from sessions.consult.scripted import ScriptedOps, procedural_poses

#: A browser origin the module's server allows besides its own names.
PORTAL = "https://portal.example.org"


@dataclass
class Home:
    """Where the module's server keeps its secret and its revocation list (the files ``consult revoke`` writes)."""

    folder: Path
    secret_file: Path
    revocation_file: Path
    secret: bytes

    def token(self, room: str, participant: str, role: str = "expert", **kwargs: Any) -> str:
        return issue_token(self.secret, room, participant, role, **kwargs)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    folder = tmp_path_factory.mktemp("attacks")
    secret = os.urandom(32).hex().encode()
    secret_file = folder / "consult.secret"
    secret_file.write_bytes(secret + b"\n")
    secret_file.chmod(0o600)
    return Home(folder, secret_file, folder / "consult.revoked", secret)


@pytest.fixture(scope="module")
def limits() -> Limits:
    """The module server's limits (a module overrides this to make an attack cheaper to mount)."""
    return Limits()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(home: Home, limits: Limits) -> AsyncIterator[SignalingServer]:
    # A long heartbeat: a test's bare client answers pings only while it reads, and some wait on a
    # subprocess (consult revoke) before they read again.
    srv = SignalingServer(ServerConfig(secret=home.secret, port=0, revocation_file=home.revocation_file,
                                       limits=limits, heartbeat_s=30.0, allowed_origins=(PORTAL,)))  # fmt: skip
    await srv.start()
    yield srv
    await srv.stop()


@dataclass
class Bystanders:
    """A consultation of two real participants in room ``bystanders``, running through the whole module."""

    server: SignalingServer
    home: Home
    people: list[Participant]

    async def still_working(self, timeout: float = 10.0) -> None:
        """Both keep receiving the other's poses, and a newcomer can join the room and be welcomed."""
        before = [p.counters["poses_applied"] for p in self.people]
        deadline = time.monotonic() + timeout
        while any(p.counters["poses_applied"] < b + 30 for p, b in zip(self.people, before, strict=True)):
            assert time.monotonic() < deadline, f"bystanders stopped hearing each other: {before} -> " + str(
                [p.counters["poses_applied"] for p in self.people]
            )
            await asyncio.sleep(0.05)
        newcomer = SignalingClient(self.server.url, self.home.token("bystanders", f"n{time.monotonic_ns()}"), timeout_s=5.0)
        started = time.monotonic()
        try:
            welcome = await newcomer.connect()
        finally:
            await newcomer.close()
        assert welcome["room"] == "bystanders" and len(welcome["peers"]) == 2
        assert time.monotonic() - started < 2.0, "a legitimate join took more than 2 s"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bystanders(server: SignalingServer, home: Home) -> AsyncIterator[Bystanders]:
    people = [
        Participant(server.url, home.token("bystanders", name, "surgeon" if name == "sam" else "expert"),
                    ParticipantConfig(report_interval_s=1.0), poses=procedural_poses, ops=ScriptedOps())
        for name in ("sam", "eli")
    ]  # fmt: skip
    for p in people:
        await p.start()
    group = Bystanders(server, home, people)
    await group.still_working(timeout=20.0)
    yield group
    for p in people:
        await p.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def from_address() -> AsyncIterator[Any]:
    """``from_address("127.0.0.7")``: an aiohttp session whose connections come from that loopback address."""
    sessions: list[aiohttp.ClientSession] = []

    def make(address: str) -> aiohttp.ClientSession:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0), limit=0))
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        await session.close()


@pytest.fixture
def log_lines(caplog: pytest.LogCaptureFixture) -> Any:
    """``log_lines()``: every record logged since the test began, as text with any traceback appended."""
    caplog.set_level("DEBUG")

    def lines() -> list[str]:
        out = []
        for record in caplog.records:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + "".join(traceback.format_exception(*record.exc_info))
            out.append(text)
        return out

    return lines
