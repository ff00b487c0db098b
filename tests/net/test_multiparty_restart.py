"""A participant process killed mid-session leaves the others running; restarted, it resumes its place."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest

from net.signaling import SignalingServer
from net.tokens import issue_token

pytestmark = [pytest.mark.latency, pytest.mark.slow]

MEDVERSE = str(Path(sys.executable).with_name("medverse"))


async def join(server: SignalingServer, name: str, duration: float, ops_stop: float, report: Path) -> asyncio.subprocess.Process:
    token = issue_token(server.config.secret, "ward", name, "expert")
    return await asyncio.create_subprocess_exec(
        MEDVERSE, "consult", "join", "--server", server.url, "--token", token, "--duration", str(duration),
        "--ops-rate", "10", "--ops-stop", str(ops_stop), "--report", str(report),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def test_killed_participant_returns_and_resynchronises(server: SignalingServer, tmp_path: Path) -> None:
    """SIGKILL one of three participants; the other two carry on; its restart rejoins, continues its ops and converges."""
    steady = [await join(server, name, 10.0, 7.0, tmp_path / f"{name}.json") for name in ("ann", "ben")]
    victim = await join(server, "cat", 30.0, 30.0, tmp_path / "cat-first.json")
    await asyncio.sleep(3.5)
    victim.send_signal(signal.SIGKILL)
    await victim.wait()
    await asyncio.sleep(0.5)
    assert {m.participant for m in server.rooms["ward"].members.values()} == {"ann", "ben"}
    back = await join(server, "cat", 6.0, 3.5, tmp_path / "cat.json")
    for proc in (*steady, back):
        _, err = await asyncio.wait_for(proc.communicate(), 40)
        assert proc.returncode == 0, err.decode()[-2000:]
    ann, ben, cat = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("ann", "ben", "cat"))
    assert not (tmp_path / "cat-first.json").exists()  # killed: no report, nothing graceful happened
    assert ann["state"]["digest"] == ben["state"]["digest"] == cat["state"]["digest"]
    made_after_restart = sum(r["counters"].get("ops_sent", 0) for r in (ann, ben, cat))
    # The ops cat made before it was killed are part of the state, and its new ops were not taken for duplicates.
    assert ann["state"]["op_count"] > made_after_restart >= 60
    assert cat["counters"]["snapshots_merged"] >= 1 and cat["counters"].get("ops_sent", 0) >= 20
    assert ann["latency"]["links"]["ben"]["pose_total"] > 500  # ann and ben never stopped hearing each other
    assert ann["latency"]["links"]["cat"]["pose_total"] > 100  # and hear cat again
