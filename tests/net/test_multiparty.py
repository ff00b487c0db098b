"""Four and five participants, each in its own process (``medverse consult join``): mesh and relay rooms.

The signaling server (and, in relay rooms, the relay) runs in the test process; every participant is a
separate Python process with its own aiortc stack, streaming poses at 90 Hz and making state ops.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from net.signaling import SignalingServer
from net.tokens import issue_token

pytestmark = [pytest.mark.latency, pytest.mark.slow]

MEDVERSE = str(Path(sys.executable).with_name("medverse"))


async def run_room(server: SignalingServer, room: str, names: list[str], tmp_path: Path, duration: float) -> list[dict]:
    """Run one ``consult join`` process per name at once; return their JSON reports."""
    procs = []
    for name in names:
        token = issue_token(server.config.secret, room, name, "expert")
        report = tmp_path / f"{name}.json"
        args = ["consult", "join", "--server", server.url, "--token", token, "--duration", str(duration),
                "--ops-rate", "10", "--ops-stop", "2.5", "--report", str(report)]  # fmt: skip
        pipe = asyncio.subprocess.PIPE
        proc = await asyncio.create_subprocess_exec(MEDVERSE, *args, stdout=pipe, stderr=pipe)
        procs.append((report, proc))
    reports = []
    for report, proc in procs:
        out, err = await asyncio.wait_for(proc.communicate(), duration + 30)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert b"digest" in out
        reports.append(json.loads(report.read_text()))
    return reports


def check_room(reports: list[dict], topology: str) -> None:
    """Delivery from everyone to everyone, one state, latency figures inside the budget."""
    names = {r["participant"] for r in reports}
    digests = {r["state"]["digest"] for r in reports}
    ops_made = sum(r["counters"].get("ops_sent", 0) for r in reports)
    assert len(digests) == 1, [(r["participant"], r["state"]) for r in reports]
    assert all(r["state"]["op_count"] == ops_made for r in reports) and ops_made >= 15 * len(reports)
    for r in reports:
        assert r["topology"] == topology
        assert r["counters"].get("ops_sent", 0) >= 10, r["counters"]
        links = r["latency"]["links"]
        assert set(links) == names - {r["participant"]}
        for peer, figures in links.items():
            # Every other participant's poses arrived at 90 Hz for a good part of the run.
            assert figures["pose_total"] > 100, (r["participant"], peer, figures)
            assert figures["state"] is not None and figures["state"]["count"] > 0
        room = r["latency"]["room"]["pose"]
        assert 0 < room["p50_ms"] < 30 and room["within_budget"] > 0.9, room
        assert r["clocks"] and all(c["synchronized"] and c["rtt_ms"] < 30 for c in r["clocks"].values())
        assert r["max_rss_mb"] < 150


async def test_four_processes_in_a_mesh(server: SignalingServer, tmp_path: Path) -> None:
    """Four participant processes connect pairwise, deliver poses and ops to each other and converge."""
    reports = await run_room(server, "mesh-room", ["p1", "p2", "p3", "p4"], tmp_path, duration=5.0)
    check_room(reports, "mesh")
    assert all("relay" not in r["links"] for r in reports)


async def test_five_processes_through_the_relay(server: SignalingServer, tmp_path: Path) -> None:
    """Five participant processes (limit 4) end up on the relay, still deliver to everyone and converge."""
    reports = await run_room(server, "relay-room", ["q1", "q2", "q3", "q4", "q5"], tmp_path, duration=6.0)
    check_room(reports, "relay")
    assert all(list(r["links"]) == ["relay"] for r in reports)
