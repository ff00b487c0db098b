"""The room's twin is the room's: signaling stores the first surgeon's announced twin (or its own
configured one), every welcome carries it, those already in the room are told when it is named, and
a join resolves its twin against it (a different twin is refused in one line)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from net.signaling import ServerConfig, SignalingServer
from net.signaling_client import RoomTwin, SignalingClient, SignalingError, SignalingRefusedError
from net.tokens import issue_token
from sessions.consult.room import TwinMismatchError, announced, resolve_twin, twin_hash

SECRET = b"room-twin-tests-secret-0123456789"
BRAIN = RoomTwin("brain", "0123456789abcdef")


@pytest.fixture
async def server() -> AsyncIterator[SignalingServer]:
    server = SignalingServer(ServerConfig(secret=SECRET, port=0, heartbeat_s=30.0))
    await server.start()
    yield server
    await server.stop()


async def _join(server: SignalingServer, name: str, role: str, twin: RoomTwin | None = None) -> SignalingClient:
    client = SignalingClient(server.url, issue_token(SECRET, "ward", name, role), timeout_s=5.0, twin=twin)
    await client.connect()
    return client


async def _until(client: SignalingClient, kind: str) -> dict[str, Any]:
    async def wait() -> dict[str, Any]:
        while (message := await client.recv())["type"] != kind:
            pass
        return message

    return await asyncio.wait_for(wait(), 5.0)


async def test_the_first_surgeons_twin_is_the_rooms_and_reaches_everyone(server: SignalingServer) -> None:
    """An expert's announcement names nothing; the first surgeon's does: the expert already there is
    told (a ``twin`` message), later joiners' welcomes carry it, a second surgeon's other twin does not
    replace it, and /stats shows it; the room's twin goes with the room."""
    expert = await _join(server, "eve", "expert", RoomTwin("skull", "ffffffffffffffff"))
    assert expert.welcome is not None and expert.welcome["twin"] is None and expert.room_twin is None
    surgeon = await _join(server, "sam", "surgeon", BRAIN)
    assert surgeon.room_twin == BRAIN
    assert (await _until(expert, "twin"))["twin"] == {"name": "brain", "sha256": BRAIN.sha256}
    assert expert.room_twin == BRAIN
    other = await _join(server, "sue", "surgeon", RoomTwin("skull", "ffffffffffffffff"))
    trainee = await _join(server, "tim", "trainee")
    assert other.room_twin == trainee.room_twin == BRAIN
    assert server.snapshot()["rooms"][0]["twin"] == BRAIN.message()
    for client in (expert, surgeon, other, trainee):
        await client.close()
    for _ in range(100):
        if not server.rooms:
            break
        await asyncio.sleep(0.02)
    assert server.twins == {}


async def test_the_servers_twin_names_every_room_and_a_bad_announcement_is_refused(server: SignalingServer) -> None:
    """``serve --twin`` names each room's twin before anyone joins (a surgeon's announcement does not
    replace it); a malformed announcement is refused with 400 before the upgrade, and counted."""
    configured = SignalingServer(ServerConfig(secret=SECRET, port=0, heartbeat_s=30.0, twin=BRAIN))
    await configured.start()
    try:
        client = await _join(configured, "sam", "surgeon", RoomTwin("skull", "ffffffffffffffff"))
        assert client.room_twin == BRAIN
        await client.close()
    finally:
        await configured.stop()
    bad = SignalingClient(server.url, issue_token(SECRET, "ward", "sam", "surgeon"), timeout_s=5.0)
    bad.twin = object.__new__(RoomTwin)  # skip validation: what a foreign client might send
    object.__setattr__(bad.twin, "name", "../etc")
    object.__setattr__(bad.twin, "sha256", "xyz")
    with pytest.raises(SignalingRefusedError) as refused:
        await bad.connect()
    assert refused.value.status == 400 and "twin" in refused.value.reason
    assert server.counters["refused_bad_twin"] == 1
    assert RoomTwin.parse("brain:0123456789abcdef") == BRAIN
    with pytest.raises(SignalingError):
        RoomTwin.parse("brain")


def test_a_join_resolves_its_twin_against_the_rooms(brain: Any) -> None:
    """The room's twin is loaded and checked by content hash; another name or other content is refused
    in one line; with none named, one's own (or the default) is taken unchecked."""
    loads: list[str] = []

    def load(name: str) -> Any:
        loads.append(name)
        return brain

    held = announced(brain)
    assert held == RoomTwin(brain.name, twin_hash(brain))
    assert resolve_twin(held, None, load, "brain") is brain and loads == [brain.name]
    assert resolve_twin(held, brain.name, load, "brain", mine=brain) is brain and loads == [brain.name]
    with pytest.raises(TwinMismatchError, match=f"the room's twin is {brain.name!r}, not 'skull'"):
        resolve_twin(held, "skull", load, "brain")
    with pytest.raises(TwinMismatchError, match="another version of it"):
        resolve_twin(RoomTwin(brain.name, "0" * 16), None, load, "brain")
    assert resolve_twin(None, None, load, "brain") is brain and loads[-1] == "brain"
    assert resolve_twin(None, "x", load, "brain", mine=brain) is brain
