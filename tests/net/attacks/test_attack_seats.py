"""Seat takeover (issue 16, item 2): a leaked or replayed join token, two clients on one token, stolen
resume tickets, and revocation with ``medverse consult revoke``, against a real server with real aiortc
participants on loopback."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from net.participant import Participant, ParticipantConfig
from net.seats import RESUME_HEADER
from net.signaling import CLOSE_REVOKED, ServerConfig, SignalingServer
from net.signaling_client import SignalingClient, SignalingClosedError, SignalingRefusedError
from net.tokens import verify_token
from sessions.consult.scripted import ScriptedOps, procedural_poses

pytestmark = pytest.mark.asyncio(loop_scope="module")

MEDVERSE = str(Path(sys.executable).with_name("medverse"))


async def participant(server: SignalingServer, token: str) -> Participant:
    p = Participant(server.url, token, ParticipantConfig(report_interval_s=1.0), poses=procedural_poses, ops=ScriptedOps())
    await p.start()
    return p


async def hears(listener: Participant, count: int = 30, timeout: float = 10.0) -> None:
    """``listener`` applies ``count`` more poses within ``timeout``."""
    start = listener.counters["poses_applied"]
    deadline = time.monotonic() + timeout
    while listener.counters["poses_applied"] < start + count:
        assert time.monotonic() < deadline, "poses stopped arriving"
        await asyncio.sleep(0.05)


async def test_a_leaked_token_cannot_take_a_seat(
    server: SignalingServer, home: Any, bystanders: Any, log_lines: Callable[[], list[str]]
) -> None:
    """Bob's token, replayed by someone else while bob is in the room, is refused (401, spent); a fresh token
    for bob's seat is refused too (409, seat taken); bob stays, keeps his link to alice, nobody is replaced;
    each refusal is counted and logged in one line that holds no token."""
    bob_token = home.token("ward", "bob")
    alice = await participant(server, home.token("ward", "alice", "surgeon"))
    bob = await participant(server, bob_token)
    try:
        await hears(alice)
        before = dict(server.counters)
        # The attack of issue 16: the same token again (it used to replace bob and receive the room as bob).
        with pytest.raises(SignalingRefusedError) as replayed:
            await SignalingClient(server.url, bob_token, timeout_s=5.0).connect()
        assert replayed.value.status == 401 and "already used" in replayed.value.reason
        fresh = home.token("ward", "bob")
        with pytest.raises(SignalingRefusedError) as taken:
            await SignalingClient(server.url, fresh, timeout_s=5.0).connect()
        assert taken.value.status == 409 and "already connected" in taken.value.reason
        assert server.counters["refused_token_reused"] == before["refused_token_reused"] + 1
        assert server.counters["refused_seat_taken"] == before["refused_seat_taken"] + 1
        assert server.counters["replaced"] == before["replaced"]
        assert server.rooms["ward"].members["bob"].connection.claims.token_id == verify_token(home.secret, bob_token).token_id
        await hears(alice)  # bob's poses still reach alice: his link was never torn down
        lines = log_lines()
        assert sum("join token already used" in line for line in lines) == 1
        for secret in (bob_token, fresh, bob_token.split(".")[1], fresh.split(".")[1]):
            assert not any(secret in line for line in lines)
        await bystanders.still_working()
    finally:
        await bob.stop()
        await alice.stop()


async def test_two_clients_on_one_token_do_not_kick_each_other(server: SignalingServer, home: Any, bystanders: Any) -> None:
    """A second client with the holder's token is refused every time it tries; the holder is never closed."""
    tok = home.token("ward-2", "dana")
    holder = SignalingClient(server.url, tok, timeout_s=5.0)
    await holder.connect()
    try:
        for _ in range(4):
            with pytest.raises(SignalingRefusedError):
                await SignalingClient(server.url, tok, timeout_s=5.0).connect()
            await asyncio.sleep(0.1)
        with pytest.raises(TimeoutError):  # nothing arrives, no close in particular
            await asyncio.wait_for(holder.recv(), 0.5)
        assert holder.connected
        await bystanders.still_working()
    finally:
        await holder.close()


async def test_a_resume_ticket_reconnects_once_and_a_copy_goes_stale(
    server: SignalingServer, home: Any, bystanders: Any
) -> None:
    """The welcome's resume ticket rejoins the same seat and index (the token is not needed again); that
    rejoin gives a new ticket, so a copy of the old one is refused (401, stale); a server restarted with
    the same secret accepts the current ticket (it carries its own proof)."""
    client = SignalingClient(server.url, home.token("ward-3", "erin"), timeout_s=5.0)
    first = await client.connect()
    stolen = client._resume
    assert stolen is not None
    again = await client.connect()  # a reconnect: presents the ticket, not the token
    assert again["index"] == first["index"] and client._resume != stolen
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(server.ws_url, headers={RESUME_HEADER: stolen})
        assert refused.value.status == 401 and "stale" in (refused.value.headers or {}).get("X-Medverse-Reason", "")
        assert client.connected
        current = client._resume
        await client.close()
        restarted = SignalingServer(type(server.config)(secret=server.config.secret, port=0))
        await restarted.start()
        try:
            ws = await http.ws_connect(restarted.ws_url, headers={RESUME_HEADER: current})
            welcome = await asyncio.wait_for(ws.receive_json(), 5.0)
            assert welcome["participant"] == "erin" and welcome["room"] == "ward-3"
            await ws.close()
        finally:
            await restarted.stop()
    await bystanders.still_working()


async def test_a_restart_with_the_state_file_still_refuses_a_spent_token_and_a_stale_ticket(home: Any, tmp_path: Path) -> None:
    """The thief of issue 16 waits for a signaling restart: with the server's state file the restarted server
    refuses the leaked token (spent) and the copied ticket (stale), and takes the owner's current ticket;
    the state file is 0600 and holds no token, ticket or display name."""
    state = tmp_path / "signaling.rooms.json"
    config = {"secret": home.secret, "port": 0, "state_file": state}
    first = SignalingServer(ServerConfig(**config))
    await first.start()
    token = home.token("ward-5", "gail", name="Dr Gail Hart")
    client = SignalingClient(first.url, token, timeout_s=5.0)
    try:
        welcome = await client.connect()
        copied = client._resume
        await client.connect()  # the owner reconnects once: the copy is now stale
        current = client._resume
        await client.close()
    finally:
        await first.stop()
    text = state.read_text()
    assert state.stat().st_mode & 0o777 == 0o600
    for secret in (token, token.split(".")[1], str(copied), str(current), "Gail Hart"):
        assert secret not in text
    again = SignalingServer(ServerConfig(**config))
    await again.start()
    try:
        with pytest.raises(SignalingRefusedError) as replayed:
            await SignalingClient(again.url, token, timeout_s=5.0).connect()
        assert replayed.value.status == 401 and "already used" in replayed.value.reason
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError) as stale:
                await http.ws_connect(again.ws_url, headers={RESUME_HEADER: str(copied)})
            assert stale.value.status == 401 and "stale" in (stale.value.headers or {}).get("X-Medverse-Reason", "")
            ws = await http.ws_connect(again.ws_url, headers={RESUME_HEADER: str(current)})
            rejoined = await asyncio.wait_for(ws.receive_json(), 5.0)
            assert (rejoined["participant"], rejoined["index"]) == ("gail", welcome["index"])
            await ws.close()
        assert again.counters["refused_token_reused"] == 1 and again.counters["refused_stale_resume"] == 1
    finally:
        await again.stop()


def revoke(home: Any, *args: str) -> str:
    result = subprocess.run(
        [MEDVERSE, "consult", "revoke", *args, "--secret-file", str(home.secret_file),
         "--revocation-file", str(home.revocation_file)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return result.stdout


async def test_revoke_closes_the_live_connection_and_refuses_its_return(
    server: SignalingServer, home: Any, bystanders: Any
) -> None:
    """``consult revoke --token`` closes the connection that token opened (4004) within seconds and refuses
    its resume; ``--room/--participant`` does the same for a seat, and a token issued after it works."""
    carol_token = home.token("ward-4", "carol")
    carol = SignalingClient(server.url, carol_token, timeout_s=5.0)
    dave = SignalingClient(server.url, home.token("ward-4", "dave"), timeout_s=5.0)
    await carol.connect()
    await dave.connect()
    before = dict(server.counters)
    try:
        out = await asyncio.to_thread(revoke, home, "--token", carol_token)
        assert "revoked token" in out and carol_token not in out
        with pytest.raises(SignalingClosedError) as closed:
            while True:
                await asyncio.wait_for(carol.recv(), 5.0)
        # 4004, or unknown when the socket was torn down while the client answered a ping
        assert closed.value.code in (CLOSE_REVOKED, None)
        assert "carol" not in server.rooms["ward-4"].members
        with pytest.raises(SignalingRefusedError) as refused:
            await carol.connect()  # with its resume ticket
        assert refused.value.status == 401 and "revoked" in refused.value.reason
        assert server.counters["revoked"] == before["revoked"] + 1
        assert server.counters["refused_revoked"] == before["refused_revoked"] + 1

        await asyncio.to_thread(revoke, home, "--room", "ward-4", "--participant", "dave")
        with pytest.raises(SignalingClosedError):
            while True:
                await asyncio.wait_for(dave.recv(), 5.0)
        with pytest.raises(SignalingRefusedError):
            await SignalingClient(server.url, home.token("ward-4", "dave", now=time.time() - 5), timeout_s=5.0).connect()
        later = SignalingClient(server.url, home.token("ward-4", "dave", now=time.time() + 2), timeout_s=5.0)
        assert (await later.connect())["participant"] == "dave"
        await later.close()
        await bystanders.still_working()
    finally:
        await carol.close()
        await dave.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--token", "not-a-token"], "token"),
        (["--participant", "bob"], "--participant needs --room"),
    ],
)
async def test_revoke_mistakes_are_one_line_errors(home: Any, args: list[str], message: str) -> None:
    """A token that is not one, or a participant without its room: exit 2, one line, nothing written."""
    before = home.revocation_file.read_text() if home.revocation_file.exists() else ""
    result = await asyncio.to_thread(
        subprocess.run,
        [MEDVERSE, "consult", "revoke", *args, "--secret-file", str(home.secret_file),
         "--revocation-file", str(home.revocation_file)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert (home.revocation_file.read_text() if home.revocation_file.exists() else "") == before
