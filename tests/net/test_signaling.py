"""Signaling server and client against a real aiohttp server on 127.0.0.1 (port 0).

Join with tokens, presence, refusals (401/403), sender stamping, ``/health`` and ``/stats``, and hostile
messages that are dropped and counted without taking the server down.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from net.seats import RESUME_HEADER
from net.signaling import (
    CLOSE_REPLACED,
    REASON_HEADER,
    ServerConfig,
    ServerConfigError,
    SignalingServer,
    is_loopback,
)
from net.signaling_client import SignalingClient, SignalingClosedError, SignalingRefusedError
from net.tokens import issue_token

SECRET = b"signaling-tests-secret-0123456789"
OTHER_SECRET = b"another-servers-secret-0123456789"
TIMEOUT_S = 5.0

ServerFactory = Callable[..., Awaitable[SignalingServer]]
Connect = Callable[..., Awaitable[SignalingClient]]


def token(room: str, participant: str, role: str = "expert", **kwargs: Any) -> str:
    return issue_token(SECRET, room, participant, role, **kwargs)


@pytest.fixture
async def make_server() -> AsyncIterator[ServerFactory]:
    """Start signaling servers on a free loopback port; all are stopped after the test."""
    servers: list[SignalingServer] = []

    async def start(**overrides: Any) -> SignalingServer:
        server = SignalingServer(ServerConfig(**{"secret": SECRET, "port": 0, "heartbeat_s": 30.0, **overrides}))
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def server(make_server: ServerFactory) -> SignalingServer:
    return await make_server()


@pytest.fixture
async def connect(server: SignalingServer) -> AsyncIterator[Connect]:
    """Join ``server`` as a participant with a fresh valid token; clients are closed after the test."""
    clients: list[SignalingClient] = []

    async def join(participant: str, room: str = "ward-3", role: str = "expert", **kwargs: Any) -> SignalingClient:
        client = SignalingClient(server.url, token(room, participant, role, **kwargs), timeout_s=TIMEOUT_S)
        await client.connect()
        clients.append(client)
        return client

    yield join
    for client in clients:
        await client.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def next_message(client: SignalingClient, kind: str) -> dict[str, Any]:
    """The next message of type ``kind`` (others are skipped)."""

    async def wait() -> dict[str, Any]:
        while True:
            message = await client.recv()
            if message["type"] == kind:
                return message

    return await asyncio.wait_for(wait(), TIMEOUT_S)


async def raw_socket(http: aiohttp.ClientSession, server: SignalingServer, tok: str) -> aiohttp.ClientWebSocketResponse:
    """A bare WebSocket that has read its welcome, for sending what no well-behaved client would."""
    ws = await http.ws_connect(server.ws_url, headers={"Authorization": f"Bearer {tok}"})
    welcome = await asyncio.wait_for(ws.receive_json(), TIMEOUT_S)
    assert welcome["type"] == "welcome"
    return ws


async def stats(http: aiohttp.ClientSession, server: SignalingServer) -> dict[str, Any]:
    """/stats as an instructor reads it: every room in detail (anyone else sees aggregates)."""
    headers = {"Authorization": f"Bearer {token('any', 'inspector', 'instructor')}"}
    async with http.get(server.url + "/stats", headers=headers) as response:
        assert response.status == 200 and response.content_type == "application/json"
        return await response.json()


# ---------------------------------------------------------------------------------------------------
# joining and presence
# ---------------------------------------------------------------------------------------------------


async def test_join_and_presence(connect: Connect) -> None:
    """A valid token joins; the welcome lists who is in with their role, and the others hear of the newcomer."""
    alice = await connect("alice", role="surgeon", name="Dr Alice")
    assert alice.welcome is not None
    assert alice.welcome == {
        "type": "welcome", "room": "ward-3", "participant": "alice", "index": 1, "role": "surgeon",
        "name": "Dr Alice", "peers": [], "topology": "mesh", "relay": None, "twin": None,
    }
    bob = await connect("bob", role="trainee")
    assert bob.welcome is not None
    assert bob.welcome["index"] == 2
    assert bob.welcome["peers"] == [{"participant": "alice", "index": 1, "name": "Dr Alice", "role": "surgeon"}]
    joined = await next_message(alice, "peer-joined")
    assert joined["peer"] == {"participant": "bob", "index": 2, "name": "bob", "role": "trainee"}
    await bob.close()
    assert (await next_message(alice, "peer-left"))["participant"] == "bob"


async def test_stats_and_health_show_rooms_roles_and_links(
    server: SignalingServer, connect: Connect, http: aiohttp.ClientSession
) -> None:
    """/health and /stats are JSON; /stats lists each participant's role and the links from their reports."""
    alice = await connect("alice", role="surgeon")
    await connect("bob", role="observer")
    await connect("carol", room="ward-9")
    await alice.send_stats({"links": {"bob": {"p50_ms": 0.4, "p99_ms": 1.2, "note": "ignored"}}})
    async with http.get(server.url + "/health") as response:
        health = await response.json()
    assert health["ok"] is True and health["rooms"] == 2 and health["participants"] == 3
    assert isinstance(health["uptime_s"], float)

    async def report_arrived() -> dict[str, Any]:
        while True:
            snapshot = await stats(http, server)
            ward = next(r for r in snapshot["rooms"] if r["room"] == "ward-3")
            if ward["links"]:
                return snapshot
            await asyncio.sleep(0.02)

    snapshot = await asyncio.wait_for(report_arrived(), TIMEOUT_S)
    ward = next(r for r in snapshot["rooms"] if r["room"] == "ward-3")
    assert [(p["participant"], p["role"], p["index"]) for p in ward["participants"]] == [
        ("alice", "surgeon", 1),
        ("bob", "observer", 2),
    ]
    assert ward["links"] == [{"from": "bob", "to": "alice", "p50_ms": 0.4, "p99_ms": 1.2}]
    assert ward["topology"] == "mesh" and ward["relay_stats"] is None
    assert snapshot["counters"]["connections"] == 3
    assert snapshot["mesh_limit"] == 4


async def test_resume_replaces_and_keeps_index(connect: Connect, server: SignalingServer, http: aiohttp.ClientSession) -> None:
    """A second connection presenting the session's resume ticket closes the first (4001) and keeps its index."""
    alice = await connect("alice")
    bob = await connect("bob")
    await next_message(alice, "peer-joined")
    assert bob._resume is not None and "resume" not in (bob.welcome or {})
    again = await http.ws_connect(server.ws_url, headers={RESUME_HEADER: bob._resume})
    welcome = await asyncio.wait_for(again.receive_json(), TIMEOUT_S)
    assert welcome["participant"] == "bob" and welcome["index"] == 2 and welcome["resume"] != bob._resume
    with pytest.raises(SignalingClosedError) as closed:
        await next_message(bob, "never")
    assert closed.value.code == CLOSE_REPLACED
    assert (await next_message(alice, "peer-left"))["participant"] == "bob"
    assert (await next_message(alice, "peer-joined"))["peer"]["index"] == 2
    await again.close()


async def test_the_resume_tickets_observer_hears_each_new_ticket(server: SignalingServer) -> None:
    """``on_resume_ticket`` is told each ticket as the client takes it (the first welcome, every rejoin),
    before ``connect`` returns, and not when it is set to the one it holds; an observer that raises is
    logged, and the join goes on."""
    client = SignalingClient(server.url, token("ward-3", "erin"), timeout_s=TIMEOUT_S)
    heard: list[str | None] = []
    client.on_resume_ticket = heard.append
    try:
        await client.connect()
        assert heard == [client.resume_ticket] and heard[0] is not None
        await client.connect()  # a rejoin with the ticket: the server hands out the next one
        assert len(heard) == 2 and heard[1] == client.resume_ticket != heard[0]
        client.resume_ticket = heard[1]
        assert len(heard) == 2

        def failing(ticket: str | None) -> None:
            raise RuntimeError("observer broken")

        client.on_resume_ticket = failing
        assert (await client.connect())["participant"] == "erin" and client.resume_ticket != heard[1]
    finally:
        await client.close()


# ---------------------------------------------------------------------------------------------------
# refusals
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make_token", "counter", "reason"),
    [
        (lambda: None, "refused_missing_token", "missing"),
        (lambda: issue_token(OTHER_SECRET, "ward-3", "mallory", "surgeon"), "refused_invalid_token", "signature"),
        (lambda: token("ward-3", "alice", ttl_s=60, now=1_000_000.0), "refused_expired_token", "expired"),
        (lambda: token("ward-3", "alice")[:-3] + "AAA", "refused_invalid_token", "invalid"),
        (lambda: "not-a-token", "refused_invalid_token", "invalid"),
    ],
    ids=["missing", "forged", "expired", "tampered", "garbage"],
)
async def test_refused_with_401_and_counted(
    server: SignalingServer, http: aiohttp.ClientSession, make_token: Callable[[], str | None], counter: str, reason: str
) -> None:
    """No token, a forged, expired, tampered or garbage token: 401 before the upgrade, with the reason, counted."""
    tok = make_token()
    headers = {"Authorization": f"Bearer {tok}"} if tok else {}
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(server.ws_url, headers=headers)
    assert refused.value.status == 401
    assert reason in (refused.value.headers or {}).get(REASON_HEADER, "")
    snapshot = await stats(http, server)
    assert snapshot["counters"][counter] == 1
    assert snapshot["rooms"] == []


async def test_token_in_query_string_works(server: SignalingServer, http: aiohttp.ClientSession) -> None:
    """?token= is accepted too (browsers cannot set headers on WebSockets)."""
    ws = await http.ws_connect(server.ws_url, params={"token": token("ward-3", "dana")})
    assert (await asyncio.wait_for(ws.receive_json(), TIMEOUT_S))["participant"] == "dana"
    await ws.close()


async def test_token_never_reaches_the_access_log(
    server: SignalingServer, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """The access log records the path only: a token passed as ?token= does not appear in it."""
    caplog.set_level("INFO", logger="aiohttp.access")
    tok = token("ward-3", "dana")
    ws = await http.ws_connect(server.ws_url, params={"token": tok})
    await ws.close()
    async with http.get(server.url + "/health", params={"token": tok}) as response:
        assert response.status == 200
    access = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert any("/health" in line for line in access)
    assert not any(tok in line or "token=" in line for line in access)


async def test_client_raises_refused_error(server: SignalingServer) -> None:
    """The client turns a refusal into SignalingRefusedError with the status and the server's reason."""
    client = SignalingClient(server.url, issue_token(OTHER_SECRET, "ward-3", "eve", "expert"))
    with pytest.raises(SignalingRefusedError) as refused:
        await client.connect()
    assert refused.value.status == 401 and "signature" in refused.value.reason


async def test_token_for_another_room_is_refused(server: SignalingServer, http: aiohttp.ClientSession) -> None:
    """A client that names its room is refused (401) when the token is for a different room."""
    client = SignalingClient(server.url, token("ward-9", "eve"), room="ward-3")
    with pytest.raises(SignalingRefusedError) as refused:
        await client.connect()
    assert refused.value.status == 401 and "another room" in refused.value.reason
    assert (await stats(http, server))["counters"]["refused_invalid_token"] == 1
    ok = SignalingClient(server.url, token("ward-3", "eve"), room="ward-3")
    assert (await ok.connect())["room"] == "ward-3"
    await ok.close()


async def test_signals_never_leave_the_room(connect: Connect) -> None:
    """A participant of another room cannot reach anyone here, and does not appear in its presence."""
    alice = await connect("alice", room="ward-3")
    eve = await connect("eve", room="ward-9")
    assert eve.welcome is not None and eve.welcome["peers"] == []
    await eve.send_signal("alice", {"type": "offer", "sdp": "v=0"})
    error = await next_message(eve, "error")
    assert "no participant 'alice'" in error["reason"]
    bob = await connect("bob", room="ward-3")
    await bob.send_signal("alice", {"type": "offer", "sdp": "from bob"})
    # The first signal alice gets is bob's: eve's never arrived.
    assert (await next_message(alice, "signal"))["from"] == "bob"


async def test_room_full_is_refused_with_403(make_server: ServerFactory) -> None:
    """A join beyond max_participants gets 403; a reconnect of someone already in does not count."""
    server = await make_server(max_participants=2)
    clients = [SignalingClient(server.url, token("r", p)) for p in ("a", "b")]
    try:
        for client in clients:
            await client.connect()
        await clients[0].connect()  # a reconnect (with its resume ticket)
        with pytest.raises(SignalingRefusedError) as refused:
            await SignalingClient(server.url, token("r", "c")).connect()
        assert refused.value.status == 403
        assert server.counters["refused_room_full"] == 1
    finally:
        for client in clients:
            await client.close()


# ---------------------------------------------------------------------------------------------------
# who speaks
# ---------------------------------------------------------------------------------------------------


async def test_server_stamps_the_sender(connect: Connect, server: SignalingServer, http: aiohttp.ClientSession) -> None:
    """A signal arrives with 'from' set by the server; one that sets 'from' itself is refused as spoofed."""
    alice = await connect("alice")
    ws = await raw_socket(http, server, token("ward-3", "mallory"))
    await ws.send_json({"type": "signal", "to": "alice", "from": "bob", "data": {"type": "offer", "sdp": "x"}})
    error = await asyncio.wait_for(ws.receive_json(), TIMEOUT_S)
    assert error == {"type": "error", "reason": "'from' is set by the server, never by a client"}
    await ws.send_json({"type": "signal", "to": "alice", "data": {"type": "offer", "sdp": "y"}})
    signal = await next_message(alice, "signal")
    assert signal == {"type": "signal", "from": "mallory", "data": {"type": "offer", "sdp": "y"}}
    assert server.counters["spoofed"] == 1
    await ws.close()


async def test_signal_to_oneself_or_nobody_is_refused(connect: Connect, server: SignalingServer) -> None:
    """Signals to oneself, to an absent participant, or to 'relay' in a mesh room are unknown targets."""
    alice = await connect("alice")
    for to in ("alice", "zed", "relay"):
        await alice.send_signal(to, {"type": "offer"})
        await next_message(alice, "error")
    assert server.counters["unknown_target"] == 3


# ---------------------------------------------------------------------------------------------------
# hostile input
# ---------------------------------------------------------------------------------------------------

HOSTILE: list[tuple[str | bytes, str]] = [
    ("not json", "malformed"),
    ("[1, 2, 3]", "malformed"),
    ('"signal"', "malformed"),
    ("{}", "malformed"),
    ('{"type": 7}', "malformed"),
    ('{"type": "signal", "to": "bob"}', "malformed"),
    ('{"type": "signal", "to": ["bob"], "data": {}}', "malformed"),
    ('{"type": "signal", "to": "bob", "data": "offer"}', "malformed"),
    ('{"type": "signal", "to": "bob", "data": {}, "extra": 1}', "malformed"),
    ('{"type": "stats"}', "malformed"),
    ('{"type": "stats", "report": [1]}', "malformed"),
    ("[" * 100_000 + "]" * 100_000, "oversized"),
    ("[" * 20_000 + "]" * 20_000, "malformed"),  # nesting too deep for the parser
    ('{"type": "signal", "to": "bob", "data": ' + "[" * 40 + "]" * 40 + "}", "malformed"),  # too deep to forward
    ('{"type": "signal", "to": "bob", "data": {"x": NaN}}', "malformed"),  # not JSON for a browser
    ('{"type": "signal", "to": "bob", "data": {"sdp": "' + "x" * 70_000 + '"}}', "oversized"),
    (json.dumps({"type": "stats", "report": {"pad": "x" * 20_000}}), "oversized"),
    ('{"type": "hello"}', "unknown_type"),
    ('{"type": "welcome", "room": "ward-3"}', "unknown_type"),
    (b"\x00\x01binary", "binary"),
    ('{"type": "signal", "to": "bob", "data": {}, "from": "alice"}', "spoofed"),
]


async def test_hostile_messages_are_dropped_counted_and_survived(
    server: SignalingServer, connect: Connect, http: aiohttp.ClientSession
) -> None:
    """Each malformed, oversized, binary, unknown or spoofed message gets an error, is counted in /stats,
    never reaches anyone, and the connection and the server keep working."""
    bob = await connect("bob")
    ws = await raw_socket(http, server, token("ward-3", "mallory"))
    await next_message(bob, "peer-joined")
    for payload, _ in HOSTILE:
        if isinstance(payload, bytes):
            await ws.send_bytes(payload)
        else:
            await ws.send_str(payload)
        reply = await asyncio.wait_for(ws.receive_json(), TIMEOUT_S)
        assert reply["type"] == "error" and reply["reason"]
    expected: dict[str, int] = {}
    for _, counter in HOSTILE:
        expected[counter] = expected.get(counter, 0) + 1
    counters = (await stats(http, server))["counters"]
    assert {name: counters[name] for name in expected} == expected
    assert counters["messages"] == sum(1 for p, _ in HOSTILE if isinstance(p, str))
    # Still connected, still forwarding; bob received nothing but the good signal.
    await ws.send_json({"type": "signal", "to": "bob", "data": {"ok": True}})
    assert await next_message(bob, "signal") == {"type": "signal", "from": "mallory", "data": {"ok": True}}
    await ws.close()


async def test_frame_over_the_hard_limit_closes_only_that_socket(
    make_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    """A frame above max_frame_bytes closes that socket with 1009 and is counted; the server carries on."""
    server = await make_server(max_frame_bytes=256 * 1024)
    ws = await raw_socket(http, server, token("ward-3", "mallory"))
    await ws.send_str("x" * (300 * 1024))
    closing = await asyncio.wait_for(ws.receive(), TIMEOUT_S)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    assert server.counters["oversized"] == 1
    client = SignalingClient(server.url, token("ward-3", "alice"))
    assert (await client.connect())["participant"] == "alice"
    await client.close()


async def test_flood_is_rate_limited(make_server: ServerFactory, http: aiohttp.ClientSession) -> None:
    """Past the burst, messages are refused as rate_limited until the bucket refills; the sender is told
    once (not once per message: answering a flood would be a flood)."""
    server = await make_server(burst=5, rate_per_s=0.5)
    ws = await raw_socket(http, server, token("ward-3", "mallory"))
    for _ in range(15):
        await ws.send_json({"type": "stats", "report": {}})
    reply = await asyncio.wait_for(ws.receive_json(), TIMEOUT_S)
    assert reply["type"] == "error" and "rate limit" in reply["reason"]
    while server.counters["rate_limited"] < 10:
        await asyncio.sleep(0.01)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.receive_json(), 0.3)
    assert server.counters["rate_limited"] == 10
    await ws.close()


async def test_many_mutated_messages_never_break_the_server(
    make_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    """500 byte-mutated signaling messages: each one is either forwarded, stamped, to its target or
    answered with exactly one error; the counters add up and /health still answers."""
    # Queues big enough for every reply: this test is about parsing, not about slow readers.
    server = await make_server(burst=10_000, rate_per_s=10_000, send_queue=1024)
    rng = random.Random(5)
    bob = await raw_socket(http, server, token("ward-3", "bob"))
    ws = await raw_socket(http, server, token("ward-3", "mallory"))
    assert (await asyncio.wait_for(bob.receive_json(), TIMEOUT_S))["type"] == "peer-joined"
    seed = json.dumps({"type": "signal", "to": "bob", "data": {"type": "offer", "sdp": "v=0\r\n"}}).encode()

    async def drain(sock: aiohttp.ClientWebSocketResponse, is_end: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        got = []
        while not is_end(message := await asyncio.wait_for(sock.receive_json(), TIMEOUT_S)):
            got.append(message)
        return got

    bob_reads = asyncio.ensure_future(drain(bob, lambda m: m.get("data") == {"end": True}))
    mallory_reads = asyncio.ensure_future(drain(ws, lambda m: "end-marker" in m.get("reason", "")))
    for _ in range(500):
        data = bytearray(seed)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        await ws.send_str(data.decode("utf-8", errors="replace"))
    # Markers: one more signal for bob, one more error for mallory; both queues are in order.
    await ws.send_json({"type": "signal", "to": "bob", "data": {"end": True}})
    await ws.send_json({"type": "end-marker"})
    signals, errors = await asyncio.gather(bob_reads, mallory_reads)
    assert all(m["type"] == "signal" and m["from"] == "mallory" for m in signals)
    assert all(m["type"] == "error" for m in errors)
    assert len(signals) + len(errors) == 500
    counters = (await stats(http, server))["counters"]
    counted = sum(counters[k] for k in ("malformed", "oversized", "unknown_type", "spoofed", "unknown_target"))
    assert counted == len(errors) + 1  # the end marker is an unknown type
    assert counters["messages"] == 502 and counters["dropped"] == 0
    async with http.get(server.url + "/health") as response:
        assert (await response.json())["ok"] is True
    await ws.close()
    await bob.close()


# ---------------------------------------------------------------------------------------------------
# transport security
# ---------------------------------------------------------------------------------------------------


def test_plain_http_off_loopback_is_refused() -> None:
    """Binding a public address without TLS is a configuration error; loopback is fine."""
    for host in ("0.0.0.0", "192.168.1.20", "::", "example.org"):
        with pytest.raises(ServerConfigError, match="TLS"):
            SignalingServer(ServerConfig(secret=SECRET, host=host))
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.8.9.10", "::1", "localhost"))
    SignalingServer(ServerConfig(secret=SECRET, host="::1"))


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for localhost / 127.0.0.1 and its key, as PEM files (``net.tls``)."""
    from net.tls import self_signed as make

    cert, key, _ = make(tmp_path_factory.mktemp("tls"), ["localhost", "127.0.0.1"])
    return str(cert), str(key)


async def test_tls_with_a_self_signed_certificate(make_server: ServerFactory, self_signed: tuple[str, str]) -> None:
    """With a certificate the server speaks HTTPS/WSS: a client that trusts it joins and reads /health;
    one that does not trust it cannot connect."""
    import ssl

    from net.signaling import server_ssl_context
    from net.signaling_client import ServerUnreachableError

    cert, key = self_signed
    server = await make_server(ssl_context=server_ssl_context(cert, key))
    assert server.url.startswith("https://") and server.ws_url.startswith("wss://")
    trust = ssl.create_default_context(cafile=cert)
    client = SignalingClient(server.url, token("ward-3", "alice"), ssl=trust)
    assert (await client.connect())["participant"] == "alice"
    await client.close()
    async with aiohttp.ClientSession() as session, session.get(server.url + "/health", ssl=trust) as response:
        assert (await response.json())["participants"] == 0
    stranger = SignalingClient(server.url, token("ward-3", "bob"))
    with pytest.raises(ServerUnreachableError):
        await stranger.connect()
    # Off loopback, TLS makes the configuration acceptable.
    SignalingServer(ServerConfig(secret=SECRET, host="0.0.0.0", ssl_context=trust))


def test_unreadable_certificate_is_a_config_error(tmp_path: Any, self_signed: tuple[str, str]) -> None:
    """A missing certificate, or a key that is not the certificate's, is refused with a clear error."""
    from net.signaling import server_ssl_context

    cert, _ = self_signed
    with pytest.raises(ServerConfigError, match="cannot load TLS"):
        server_ssl_context(str(tmp_path / "absent.pem"), str(tmp_path / "absent.key"))
    with pytest.raises(ServerConfigError, match="cannot load TLS"):
        server_ssl_context(cert, cert)


async def test_stop_closes_everyone_with_going_away(make_server: ServerFactory) -> None:
    """Stopping the server closes each participant's socket with 1001."""
    server = await make_server()
    client = SignalingClient(server.url, token("ward-3", "alice"))
    await client.connect()
    await server.stop()
    with pytest.raises(SignalingClosedError) as closed:
        await asyncio.wait_for(client.recv(), TIMEOUT_S)
    assert closed.value.code == aiohttp.WSCloseCode.GOING_AWAY
    await client.close()


# ---------------------------------------------------------------------------------------------------
# participants that vanish
# ---------------------------------------------------------------------------------------------------


async def test_killed_participant_leaves_and_the_room_carries_on(server: SignalingServer, connect: Connect) -> None:
    """A participant process killed with SIGKILL is reported as left to the others, who keep working."""
    import signal
    import sys

    alice = await connect("alice")
    script = (
        "import asyncio, sys\n"
        "from net.signaling_client import SignalingClient\n"
        "async def main():\n"
        "    client = SignalingClient(sys.argv[1], sys.argv[2])\n"
        "    await client.connect()\n"
        "    print('joined', flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, server.url, token("ward-3", "bob"), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 20.0) == b"joined\n"
        assert (await next_message(alice, "peer-joined"))["peer"]["participant"] == "bob"
        proc.send_signal(signal.SIGKILL)
        assert (await next_message(alice, "peer-left"))["participant"] == "bob"
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    carol = await connect("carol")
    await carol.send_signal("alice", {"type": "offer", "sdp": "v=0"})
    assert (await next_message(alice, "signal"))["from"] == "carol"


async def test_silent_socket_is_dropped_by_the_heartbeat(make_server: ServerFactory, http: aiohttp.ClientSession) -> None:
    """A socket that stops answering pings is closed and its participant leaves the room."""
    server = await make_server(heartbeat_s=1.0)  # pong due within 0.5 s: ample for alice on a busy machine
    alice = SignalingClient(server.url, token("ward-3", "alice"), heartbeat_s=None)
    await alice.connect()
    try:
        headers = {"Authorization": f"Bearer {token('ward-3', 'mute')}"}
        mute = await http.ws_connect(server.ws_url, headers=headers, autoping=False)
        assert (await next_message(alice, "peer-joined"))["peer"]["participant"] == "mute"
        # mute never reads, so it never answers a ping; alice's client answers them as it reads.
        assert (await next_message(alice, "peer-left"))["participant"] == "mute"
        assert [p["participant"] for p in server.snapshot()["rooms"][0]["participants"]] == ["alice"]
        await mute.close()
    finally:
        await alice.close()


# ---------------------------------------------------------------------------------------------------
# relay mode
# ---------------------------------------------------------------------------------------------------


async def test_room_above_the_mesh_limit_switches_to_the_relay(
    make_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    """The join that takes a room above the mesh limit starts the relay: those in hear 'topology'
    before the newcomer's 'peer-joined', the newcomer is welcomed in relay mode, a signal the relay
    cannot use is answered with an error and counted, and the relay goes when the room empties."""
    server = await make_server(mesh_limit=2)
    clients = [SignalingClient(server.url, token("big", p)) for p in ("a", "b", "c")]
    try:
        welcomes = [await client.connect() for client in clients]
        assert [w["topology"] for w in welcomes] == ["mesh", "mesh", "relay"]
        assert welcomes[2]["relay"] == "relay"
        first = clients[0]
        assert (await next_message(first, "peer-joined"))["peer"]["participant"] == "b"
        following = [await asyncio.wait_for(first.recv(), TIMEOUT_S) for _ in range(2)]
        assert following == [
            {"type": "topology", "mode": "relay", "relay": "relay"},
            {"type": "peer-joined", "peer": {"participant": "c", "index": 3, "name": "c", "role": "expert"}},
        ]
        await clients[2].send_signal("relay", {"type": "answer", "sdp": "not an offer"})
        assert "relay rejected" in (await next_message(clients[2], "error"))["reason"]
        snapshot = await stats(http, server)
        room = snapshot["rooms"][0]
        assert room["topology"] == "relay" and room["relay"] == "relay"
        assert isinstance(room["relay_stats"], dict)
        assert snapshot["counters"]["relay_errors"] == 1
        # Fewer participants do not switch the room back.
        await clients[2].close()
        assert (await next_message(first, "peer-left"))["participant"] == "c"
        assert (await stats(http, server))["rooms"][0]["topology"] == "relay"
    finally:
        for client in clients:
            await client.close()
    deadline = asyncio.get_running_loop().time() + TIMEOUT_S
    while server.rooms and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    assert server.rooms == {}
