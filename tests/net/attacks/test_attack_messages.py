"""Forged and edited tokens, replay across rooms, hostile messages, spoofed senders and offers aimed at
another room (issue 16, "an attack suite"): each is refused with the answer asserted here and counted,
and the consultation in room ``bystanders`` never notices."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import aiohttp
import pytest

from net.seats import RESUME_HEADER
from net.signaling import REASON_HEADER, SignalingServer
from net.tokens import issue_token

pytestmark = pytest.mark.asyncio(loop_scope="module")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def edited(token: str, **changes: Any) -> str:
    """The token with claims changed and its signature kept (what an attacker without the secret can do)."""
    body, sig = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return _b64(json.dumps(payload | changes, separators=(",", ":")).encode()) + "." + sig


FORGERIES: dict[str, Any] = {
    "another-secret": lambda home: issue_token(b"an-attackers-own-secret-123456789", "bystanders", "sam", "surgeon"),
    "role-raised": lambda home: edited(home.token("ward-9", "eve", "observer"), role="surgeon"),
    "room-changed": lambda home: edited(home.token("ward-9", "eve"), room="bystanders"),
    "participant-changed": lambda home: edited(home.token("ward-9", "eve"), sub="sam"),
    "expiry-extended": lambda home: edited(home.token("ward-9", "eve", ttl_s=60), exp=int(time.time()) + 86_400),
    "unsigned": lambda home: home.token("ward-9", "eve").split(".")[0] + ".",
    "expired": lambda home: home.token("ward-9", "eve", ttl_s=60, now=time.time() - 120),
    "resume-ticket-as-token": lambda home: "r1.e30.AAAA",
}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
async def test_forged_and_edited_tokens_are_refused(
    server: SignalingServer, home: Any, bystanders: Any, forgery: str
) -> None:
    """A token signed with another secret, edited (role, room, participant, expiry) under its old
    signature, unsigned, expired or not a token at all: 401 before the upgrade, counted, no seat taken."""
    before = dict(server.counters)
    members = {name: set(room.members) for name, room in server.rooms.items()}
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(server.ws_url, headers={"Authorization": f"Bearer {FORGERIES[forgery](home)}"})
    assert refused.value.status == 401
    counter = "refused_expired_token" if forgery == "expired" else "refused_invalid_token"
    assert server.counters[counter] == before[counter] + 1
    assert {name: set(room.members) for name, room in server.rooms.items()} == members
    await bystanders.still_working()


async def test_replay_into_another_room_is_refused(server: SignalingServer, home: Any, bystanders: Any) -> None:
    """A token (or a resume ticket) for one room, presented by a client that asks for another room, is
    refused (401) rather than taking it anywhere; the same credential still works for its own room."""
    token = home.token("ward-9", "ivy")
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(server.ws_url, headers={"Authorization": f"Bearer {token}"}, params={"room": "bystanders"})
        assert refused.value.status == 401 and "another room" in (refused.value.headers or {})[REASON_HEADER]
        ws = await http.ws_connect(server.ws_url, headers={"Authorization": f"Bearer {token}"}, params={"room": "ward-9"})
        welcome = await asyncio.wait_for(ws.receive_json(), 5.0)
        with pytest.raises(aiohttp.WSServerHandshakeError) as ticket_refused:
            await http.ws_connect(server.ws_url, headers={RESUME_HEADER: welcome["resume"]}, params={"room": "bystanders"})
        assert ticket_refused.value.status == 401
        await ws.close()
    assert "ivy" not in server.rooms["bystanders"].members
    await bystanders.still_working()


HOSTILE: list[tuple[str | bytes, str]] = [
    ("not json", "malformed"),
    ('{"type": "signal", "to": "sam", "data": {"x": NaN}}', "malformed"),
    ("[" * 20_000 + "]" * 20_000, "malformed"),
    ('{"type": "signal", "to": "sam", "data": {"sdp": "' + "x" * 70_000 + '"}}', "oversized"),
    ('{"type": "welcome", "room": "bystanders"}', "unknown_type"),
    (b"\x00binary", "binary"),
    ('{"type": "signal", "to": "sam", "from": "eli", "data": {"type": "offer", "sdp": "v=0"}}', "spoofed"),
    ('{"type": "signal", "to": "sam", "data": {"type": "offer", "sdp": "v=0"}}', "unknown_target"),
    ('{"type": "signal", "to": "relay", "data": {"type": "offer", "sdp": "v=0"}}', "unknown_target"),
]


async def test_hostile_messages_and_offers_into_another_room(server: SignalingServer, home: Any, bystanders: Any) -> None:
    """From inside room ``ward-9``: malformed, oversized, binary and unknown messages, a signal claiming to
    come from a bystander, and offers addressed to a bystander and to a relay: each is answered with one
    error and counted, and no bystander receives anything (their signal-error counters do not move)."""
    errors_before = [p.counters["signal_errors"] for p in bystanders.people]
    before = dict(server.counters)
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(server.ws_url, headers={"Authorization": f"Bearer {home.token('ward-9', 'mal')}"})
        assert (await asyncio.wait_for(ws.receive_json(), 5.0))["type"] == "welcome"
        for payload, _ in HOSTILE:
            await (ws.send_bytes(payload) if isinstance(payload, bytes) else ws.send_str(payload))
            reply = await asyncio.wait_for(ws.receive_json(), 5.0)
            assert reply["type"] == "error" and reply["reason"], payload[:40]
        expected: dict[str, int] = {}
        for _, counter in HOSTILE:
            expected[counter] = expected.get(counter, 0) + 1
        assert {k: server.counters[k] - before[k] for k in expected} == expected
        # A frame above the hard limit (1 MiB) closes this socket only.
        await ws.send_str("x" * (1024 * 1024 + 1))
        await asyncio.wait_for(ws.receive(), 5.0)
        assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    await bystanders.still_working()
    assert [p.counters["signal_errors"] for p in bystanders.people] == errors_before
