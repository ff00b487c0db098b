"""A signaling-server restart during a consultation: indices stay unique, healthy links stay up, nothing splits.

Four real aiortc participants on loopback make ops; the server is stopped and a new one started on the
same port (same state file), and a newcomer joins the moment it is back, before the four (backing off)
have re-registered. Before indices were re-negotiated on rejoin, the newcomer got index 1, already
alice's: its poses were dropped as "unknown participant", its ops as duplicates, and the digests split.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from net.participant import Participant, ParticipantConfig
from net.signaling import ServerConfig, SignalingServer
from net.tokens import issue_token
from sessions.consult.scripted import ScriptedOps, procedural_poses

pytestmark = pytest.mark.slow

SECRET = b"restart-tests-secret-0123456789ab"


@pytest.fixture
async def servers(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[SignalingServer]]]:
    """``await servers(port=0)`` starts a server with the test's state file; all are stopped at the end."""
    started: list[SignalingServer] = []

    async def start(port: int = 0, **options: Any) -> SignalingServer:
        options.setdefault("state_file", tmp_path / "signaling-state.json")
        srv = SignalingServer(ServerConfig(secret=SECRET, port=port, mesh_limit=8, **options))
        await srv.start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        await srv.stop()


@pytest.fixture
async def people() -> AsyncIterator[Callable[..., Awaitable[Participant]]]:
    """``await people(url, name, role)``: a participant streaming scripted poses and 10 ops/s."""
    started: list[Participant] = []

    async def start(url: str, name: str, role: str = "expert", **config: Any) -> Participant:
        token = issue_token(SECRET, "ward", name, role)
        cfg = ParticipantConfig(**{"report_interval_s": 0.3, "ops_rate_hz": 10.0, "pose_rate_hz": 30.0, **config})
        p = Participant(url, token, cfg, poses=procedural_poses, ops=ScriptedOps())
        started.append(p)
        await p.start()
        return p

    yield start
    for p in started:
        await p.stop()


def _all_linked(room: list[Participant]) -> bool:
    return all(len(p.link_set.open_links()) == len(room) - 1 for p in room)


def _lost_ops(room: list[Participant]) -> int:
    """Ops some participant made that some other participant's state lacks."""
    return sum(not q.state.has(p.index, seq) for p in room for q in room for seq in range(1, p.state.seq + 1))


async def _wait(condition: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``condition()`` holds (polled every 20 ms); fails after ``timeout``."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "condition not met in time"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def test_restart_with_newcomer_keeps_indices_unique_and_state_whole(
    servers: Callable[..., Awaitable[SignalingServer]], people: Callable[..., Awaitable[Participant]]
) -> None:
    """Restart under four participants, a newcomer first in: five distinct indices, links kept, one state, no op lost."""
    first = await servers()
    url, port = first.url, first.port
    room = [await people(url, "alice", "surgeon")] + [await people(url, n) for n in ("bob", "cat", "dan")]
    await _wait(lambda: _all_linked(room), 20.0)
    await asyncio.sleep(1.5)  # ops flow
    links_before = {p.name: dict(p.links) for p in room}
    await first.stop()
    await asyncio.sleep(1.0)  # the four notice and back off; their links carry on
    seq_at_restart = {p.name: p.state.seq for p in room}
    second = await servers(port=port)
    eve = await people(url, "eve")  # first in after the restart
    room.append(eve)
    assert len({p.index for p in room}) == 5, {p.name: p.index for p in room}
    agreed_after = await _wait(lambda: _all_linked(room) and len({p.state.digest() for p in room}) == 1, 20.0)
    for p in room[:4]:  # made ops while the server was away, over links that stayed up
        assert p.state.seq > seq_at_restart[p.name] - 5
        assert all(p.links[name] is link for name, link in links_before[p.name].items()), p.name
    assert {m.index for m in second.rooms["ward"].members.values()} == {p.index for p in room}
    for p in room[:4]:
        outages = p.report()["signaling"]
        assert outages["outages"] == 1 and 1.0 < outages["outage_total_s"] < 10.0
    # Stop making ops, let them settle, and check every op of everyone is everywhere.
    for p in room:
        p.config.ops_stop_at = time.time()
    await _wait(lambda: len({p.state.digest() for p in room}) == 1 and _lost_ops(room) == 0, 10.0)
    assert eve.counters["unknown_participant"] == 0 and all(p.counters["ops_duplicate"] < 50 for p in room)
    print(f"restart with a newcomer: indices {sorted(p.index for p in room)}, digests agreed {agreed_after:.2f} s "
          f"after the newcomer joined, lost ops {_lost_ops(room)}")


@pytest.mark.latency
def test_killed_server_figure(tmp_path: Path) -> None:
    """The issue's figure (bench/restart.py, one run): signaling SIGKILLed under four, restarted from its index
    file, a newcomer first in: five distinct indices, digests agree within 5 s of the restart, no op lost."""
    out = tmp_path / "restart.json"
    bench = Path(__file__).parents[2] / "bench" / "restart.py"
    done = subprocess.run([sys.executable, str(bench), "--out", str(out)], check=False, capture_output=True, text=True,
                          timeout=120)
    assert out.exists(), done.stderr[-2000:]
    result = json.loads(out.read_text())
    run = result["runs"][0]
    print(done.stdout.splitlines()[-2] if done.stdout else done.stderr[-500:])
    assert sorted(run["indices"].values()) == [1, 2, 3, 4, 5] and run["newcomer_index"] == 5
    assert run["agree_after_restart_s"] is not None and run["agree_after_restart_s"] < 5.0
    assert run["lost_ops"] == 0 and run["ops_made_while_down"] > 0
    assert run["links_kept"] == run["links_before"] == 12  # no peer link was torn down by the restart
    assert all(o["outages"] == 1 and o["connected"] for o in run["outages"].values())
    assert run["unknown_participant"] == run["index_conflicts"] == run["state_splits"] == 0
    assert done.returncode == 0
