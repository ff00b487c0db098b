"""Fixtures for the tests that run real aiortc peers through a real signaling server on loopback.

A test module changes the server or the participants by overriding ``server_options`` or
``participant_options``; tokens are signed with ``server.config.secret``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from net.participant import Participant, ParticipantConfig
from net.signaling import ServerConfig, SignalingServer
from net.tokens import issue_token
from sessions.consult.scripted import ScriptedOps, procedural_poses

Until = Callable[..., Awaitable[None]]


@pytest.fixture
def server_options() -> dict[str, Any]:
    """Extra ``ServerConfig`` fields (``mesh_limit``, ``relay_options``...)."""
    return {}


@pytest.fixture
async def server(server_options: dict[str, Any]) -> AsyncIterator[SignalingServer]:
    """A signaling server on a free loopback port."""
    srv = SignalingServer(ServerConfig(secret=b"net-tests-secret-0123456789abcdef", port=0, **server_options))
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
def participant_options() -> dict[str, Any]:
    """``ParticipantConfig`` fields every participant started by ``join`` gets."""
    return {"report_interval_s": 0.3}


@pytest.fixture
async def join(server: SignalingServer, participant_options: dict[str, Any]
               ) -> AsyncIterator[Callable[..., Awaitable[Participant]]]:
    """``await join(name, room="ward", role="expert", **config)`` starts a participant streaming the scripted
    poses (and, at ``ops_rate_hz``, ops) of ``medverse consult join``; all stop at the end."""
    started: list[Participant] = []

    async def start(name: str, *, room: str = "ward", role: str = "expert", **config: Any) -> Participant:
        token = issue_token(server.config.secret, room, name, role)
        p = Participant(server.url, token, ParticipantConfig(**{**participant_options, **config}),
                        poses=procedural_poses, ops=ScriptedOps())
        started.append(p)
        await p.start()
        return p

    yield start
    for p in started:
        await p.stop()


@pytest.fixture
def until() -> Until:
    """``await until(condition, timeout=15.0)``: poll ``condition()`` every 20 ms; fail on timeout."""

    async def wait(condition: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "condition not met in time"
            await asyncio.sleep(0.02)

    return wait
