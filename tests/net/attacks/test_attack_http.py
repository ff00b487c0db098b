"""Attacks on the server's HTTP surface (issue 16, items 5 and 7): an oversized header, what ``/stats``,
``/health`` and the ``Server`` header give away, and WebSocket handshakes from other sites' pages."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from importlib import metadata
from typing import Any

import aiohttp
import pytest

from net.signaling import REASON_HEADER, SignalingServer

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def raw_request(server: SignalingServer, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(4096), 5.0)
    finally:
        writer.close()


async def test_an_oversized_header_is_one_counted_line_without_the_token(
    server: SignalingServer, home: Any, bystanders: Any, log_lines: Callable[[], list[str]]
) -> None:
    """A 12 KB Authorization header (a token padded past aiohttp's 8 KB line limit) gets 400; the log has one
    line naming the problem's kind, no traceback and no part of the token; it is counted."""
    token = home.token("ward", "mallory")
    padded = (token + ".") * (12_000 // len(token))
    before = server.counters["malformed_http"]
    answer = await raw_request(server, f"GET /ws HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {padded}\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0]
    assert b"\r\nServer: medverse\r\n" in answer
    assert server.counters["malformed_http"] == before + 1
    lines = log_lines()
    assert [line for line in lines if "malformed HTTP request" in line] == [
        "refused a malformed HTTP request from 127.0.0.1: LineTooLong (400)"
    ]
    assert not any("Traceback" in line or token[:24] in line or token.split(".")[1][:16] in line for line in lines)
    await bystanders.still_working()


async def test_no_software_version_is_public(server: SignalingServer, bystanders: Any) -> None:
    """``/health``, ``/stats`` without a token and a 404 say ``Server: medverse`` and name no version."""
    versions = [metadata.version(name) for name in ("aiohttp", "medverse")]
    async with aiohttp.ClientSession() as http:
        for path in ("/health", "/stats", "/nothing-here"):
            async with http.get(server.url + path) as response:
                text = await response.text()
                assert response.headers["Server"] == "medverse", path
                assert "version" not in text and not any(v in text for v in versions), (path, text[:200])
    await bystanders.still_working()


async def test_stats_names_nobody_without_a_reader_token(server: SignalingServer, home: Any, bystanders: Any) -> None:
    """Anyone gets aggregates only; an expert's token is refused (403); a surgeon's token shows its own room
    only; an instructor's shows every room. (/stats used to give anyone clinicians' names, roles, rooms.)"""
    async with aiohttp.ClientSession() as http:

        async def stats(token: str | None) -> tuple[int, Any]:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with http.get(server.url + "/stats", headers=headers) as response:
                return response.status, await response.json()

        status, public = await stats(None)
        assert status == 200 and set(public) == {"ok", "uptime_s", "rooms", "participants", "counters"}
        assert public["rooms"] >= 1 and public["participants"] >= 2
        assert "sam" not in json.dumps(public) and "bystanders" not in json.dumps(public)
        status, refused = await stats(home.token("bystanders", "eli", "expert"))
        assert status == 403 and "may not read" in refused["error"]
        status, own = await stats(home.token("bystanders", "sam", "surgeon"))
        assert status == 200 and [r["room"] for r in own["rooms"]] == ["bystanders"]
        assert {p["participant"] for p in own["rooms"][0]["participants"]} >= {"sam", "eli"}
        status, other = await stats(home.token("elsewhere", "sue", "surgeon"))
        assert status == 200 and other["rooms"] == []
        status, everything = await stats(home.token("office", "ida", "instructor"))
        assert status == 200 and "bystanders" in [r["room"] for r in everything["rooms"]]
    await bystanders.still_working()


@pytest.mark.parametrize(
    ("origin", "admitted"),
    [
        (None, True),  # not a browser: its token is what admits it
        ("http://127.0.0.1:{port}", True),
        ("http://localhost:{port}", True),
        ("https://portal.example.org", True),  # the server's allow-list (serve --allow-origin)
        ("https://evil.example", False),
        ("http://evil.example:{port}", False),  # DNS rebinding: the right port, another site's page
        ("http://127.0.0.1:1", False),
        ("null", False),
    ],
)
async def test_only_origins_the_server_serves_may_open_a_websocket(
    server: SignalingServer, home: Any, bystanders: Any, origin: str | None, admitted: bool
) -> None:
    """A handshake whose Origin is not one of the server's own (or allowed) origins is refused (403,
    counted) before the token is even looked at; a handshake without Origin goes on to the token."""
    who = f"o{sum(map(ord, str(origin)))}"  # one seat per case: a closed case's seat may not be free yet
    headers = {"Authorization": f"Bearer {home.token('origins', who)}"}
    if origin is not None:
        headers["Origin"] = origin.format(port=server.port)
    before = server.counters["refused_origin"]
    async with aiohttp.ClientSession() as http:
        if admitted:
            ws = await http.ws_connect(server.ws_url, headers=headers)
            assert (await asyncio.wait_for(ws.receive_json(), 5.0))["type"] == "welcome"
            await ws.close()
        else:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(server.ws_url, headers=headers)
            assert refused.value.status == 403 and "origin" in (refused.value.headers or {})[REASON_HEADER]
    assert server.counters["refused_origin"] == before + (0 if admitted else 1)
    await bystanders.still_working()
