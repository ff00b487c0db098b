"""Floods and exhaustion (issue 16, items 3 and 4): limits that reconnecting does not reset, a flooding
connection closed with back-off, idle and half-sent connections capped per address and timed out, while
``/health``, legitimate joins and a consultation in another room keep working."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from net.limits import Limits
from net.participant import Participant, ParticipantConfig
from net.signaling import CLOSE_FLOODING, SignalingServer
from net.signaling_client import SignalingClient, SignalingClosedError, SignalingRefusedError
from sessions.consult.scripted import ScriptedOps, procedural_poses

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def limits() -> Limits:
    """Small caps and a short header timeout, so that exhausting them takes tens of sockets and seconds."""
    return Limits(max_connections_per_address=20, max_connections=80, header_timeout_s=2.0, flood_close_after=300)


@pytest_asyncio.fixture(loop_scope="module")
async def clinician(server: SignalingServer, home: Any) -> Any:
    """``doc``, a real participant in room ``clinic``, counting the signals that reach it from ``mal``."""
    doc = Participant(server.url, home.token("clinic", "doc", "surgeon"), ParticipantConfig(report_interval_s=1.0),
                      poses=procedural_poses, ops=ScriptedOps())  # fmt: skip
    doc.from_mal = 0  # type: ignore[attr-defined]

    def count(message: dict[str, Any]) -> None:
        if message.get("type") == "signal" and message.get("from") == "mal":
            doc.from_mal += 1  # type: ignore[attr-defined]

    doc.on_signal = count
    await doc.start()
    yield doc
    await doc.stop()


async def test_reconnecting_does_not_reset_the_rate_limit(
    server: SignalingServer, home: Any, bystanders: Any, clinician: Any, log_lines: Any
) -> None:
    """Issue 16's attack: an in-room user reconnects as fast as it can for 3 s, sending 100 signals at the
    clinician on each connection. The identity's bucket (burst 60, 20/s) holds across its connections, so
    the clinician receives at most burst + 20/s x time; rejoining past the identity's join rate is refused
    429 with Retry-After and backs off; the clinician is never rate-limited itself."""
    mal = SignalingClient(server.url, home.token("clinic", "mal"), timeout_s=5.0)
    before = dict(server.counters)
    joins = refused = sent = 0
    retry_after: list[str] = []
    started = time.monotonic()
    while time.monotonic() - started < 3.0:
        try:
            await mal.connect()
        except SignalingRefusedError as exc:
            assert exc.status == 429 and "retry in" in exc.reason
            refused += 1
            if not retry_after:  # still barred: what a client that reads headers is told
                async with aiohttp.ClientSession() as http:
                    with pytest.raises(aiohttp.WSServerHandshakeError) as barred:
                        await http.ws_connect(server.ws_url, headers={"X-Medverse-Resume": mal._resume or ""})
                refused += 1
                assert barred.value.status == 429
                retry_after.append((barred.value.headers or {}).get("Retry-After", ""))
            await asyncio.sleep(0.02)
            continue
        joins += 1
        for _ in range(100):
            await mal.send_signal("doc", {"type": "answer", "sdp": "x"})
            sent += 1
    elapsed = time.monotonic() - started
    await mal.close()
    await asyncio.sleep(0.5)  # what was forwarded has arrived
    assert sent >= 500 and refused > 0 and 3 <= joins <= 12, (sent, joins, refused)
    assert clinician.from_mal <= 60 + 20 * elapsed + 5, (clinician.from_mal, elapsed)
    assert server.counters["rate_limited"] - before["rate_limited"] >= sent - clinician.from_mal - 5
    assert server.counters["refused_rate_limited"] - before["refused_rate_limited"] == refused
    assert retry_after[0].isdigit() and int(retry_after[0]) >= 1
    assert clinician.counters["server_errors"] == 0  # doc's own answers were never refused
    # hundreds of refused joins, one log line (per kind per 10 s), no token in it
    refusals = [line for line in log_lines() if "too many joins" in line]
    assert len(refusals) == 1, refusals
    assert not any(mal._token.split(".")[1] in line for line in log_lines())
    await bystanders.still_working()


async def test_a_flooding_connection_is_closed_and_its_identity_backs_off(
    server: SignalingServer, home: Any, bystanders: Any, log_lines: Any
) -> None:
    """A holder of a valid token sending as fast as it can is closed (4008) after 300 messages over its
    limit, counted, logged once; its identity is barred from rejoining for 1 s, then 2 s after a second
    flood; another identity from the same address joins meanwhile."""
    flooder = SignalingClient(server.url, home.token("loud", "fay"), timeout_s=5.0)
    await flooder.connect()
    before = server.counters["flood_closed"]
    backoffs = []
    for _round in range(2):
        with pytest.raises(SignalingClosedError) as closed:
            for _ in range(5000):
                await flooder.send_signal("nobody", {"x": 1})
            while True:
                await asyncio.wait_for(flooder.recv(), 5.0)
        assert closed.value.code == CLOSE_FLOODING
        with pytest.raises(SignalingRefusedError) as barred:
            await flooder.connect()
        assert barred.value.status == 429
        backoffs.append(float(barred.value.reason.split("retry in ")[1].split()[0]))
        neighbour = SignalingClient(server.url, home.token("loud", f"ned{_round}"), timeout_s=5.0)
        assert (await neighbour.connect())["room"] == "loud"
        await neighbour.close()
        await asyncio.sleep(backoffs[-1] + 0.1)
        await flooder.connect()
    assert server.counters["flood_closed"] == before + 2
    assert 0.5 <= backoffs[0] <= 1.0 and 1.5 <= backoffs[1] <= 2.0, backoffs
    closures = [line for line in log_lines() if "for flooding" in line]
    assert closures == ["room loud: closed fay's connection from 127.0.0.1 for flooding; joins barred for 1 s"]
    await flooder.close()
    await bystanders.still_working()


async def open_idle(address: str, port: int, count: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    return list(await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))
                                       for _ in range(count))))  # fmt: skip


async def closed_soon(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), within) == b""
    except ConnectionError:  # reset: the server closed it while we were still writing
        return True
    except TimeoutError:
        return False


async def test_idle_connections_are_capped_per_address_and_timed_out(
    server: SignalingServer, home: Any, bystanders: Any, log_lines: Any
) -> None:
    """50 idle sockets from one address: 20 are kept (the per-address cap) and 30 closed at once, counted;
    /health and a join from elsewhere work meanwhile; the 20 are closed after the 2 s header timeout, and
    so is a socket that sends its headers one byte at a time (slowloris)."""
    before = dict(server.counters)
    sockets = await open_idle("127.0.0.21", server.port, 50)
    shut = await asyncio.gather(*(closed_soon(r, 0.5) for r, _ in sockets))
    assert sum(shut) == 30 and server.counters["refused_connections"] - before["refused_connections"] == 30
    assert server.guard.by_address.get("127.0.0.21") == 20
    assert [line for line in log_lines() if "refused connection: 127.0.0.21" in line] == [
        "refused connection: 127.0.0.21 has 20 connections open"
    ]  # 30 refusals, one line
    async with aiohttp.ClientSession() as http, http.get(server.url + "/health") as response:
        assert response.status == 200 and (await response.json())["ok"] is True
    await bystanders.still_working()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port, local_addr=("127.0.0.22", 0))
    started = time.monotonic()
    for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200:
        if reader.at_eof() or writer.is_closing():
            break
        writer.write(bytes([byte]))
        await asyncio.sleep(0.05)
    assert await closed_soon(reader, 3.0) and time.monotonic() - started < 5.0
    kept = [r for (r, _), gone in zip(sockets, shut, strict=True) if not gone]
    assert all(await asyncio.gather(*(closed_soon(r, 3.0) for r in kept)))
    assert server.guard.by_address.get("127.0.0.21") is None
    for _, w in sockets:
        w.close()
    writer.close()


async def test_at_the_total_cap_idle_sockets_make_room_for_health_and_joins(
    server: SignalingServer, home: Any, bystanders: Any
) -> None:
    """Idle sockets from several addresses fill the server's total cap (80); a /health request and a join
    still get in, each closing the oldest socket that never sent a request (counted)."""
    before = server.counters["evicted_idle"]
    sockets = []
    for n in range(5):
        sockets += await open_idle(f"127.0.1.{n + 1}", server.port, 20)
    assert server.guard.total == 80
    async with aiohttp.ClientSession() as http, http.get(server.url + "/health") as response:
        assert response.status == 200
    assert server.counters["evicted_idle"] > before
    await bystanders.still_working()
    for _, w in sockets:
        w.close()
