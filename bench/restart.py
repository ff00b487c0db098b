"""Benchmark: the signaling server killed (SIGKILL) and restarted under a consultation, a newcomer joining after.

The server runs as its own process (``medverse consult serve`` with its index file, ``--state-file``);
``--participants`` participants (default 4, one a surgeon) join it from this process, stream poses and
make state ops. Once everyone is linked the server is killed, stays down ``--down`` seconds, and is
started again on the same port; a newcomer joins the moment it is back, before the others (backing off)
have re-registered. Measured, per run:

- the indices everyone ends with, and whether two participants share one (the issue's failure);
- how long after the server came back all participants were linked to each other with equal state
  digests (``agree_after_restart_s``; the issue's target: under 5 s), and after the newcomer's welcome;
- whether the participants' peer links survived the outage (the same connections before and after) and
  how many ops they made while the server was away;
- each participant's signaling outage (its report's ``signaling``: outages, total and longest seconds);
- once ops stop: ops some participant made that another's state lacks (``lost_ops``; target 0).

Writes ``bench/results/restart.json``. ``.venv/bin/python bench/restart.py [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# bench/assets.py, a sibling benchmark, would shadow the assets package while this folder is on the path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from net.participant import Participant, ParticipantConfig  # noqa: E402
from net.tokens import issue_token  # noqa: E402
from sessions.consult.scripted import ScriptedOps, procedural_poses  # noqa: E402

# the medverse beside this interpreter (a venv's), else the first on PATH (bench/device/run.sh puts one there)
MEDVERSE = str(Path(sys.executable).with_name("medverse"))
if not Path(MEDVERSE).exists():
    MEDVERSE = shutil.which("medverse") or MEDVERSE
ROOM = "ward"
NAMES = ("alice", "bob", "cat", "dan", "eli", "fay", "gus", "hal")
GOAL_AGREE_S = 5.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _serve(port: int, workdir: Path, secret: str) -> asyncio.subprocess.Process:
    """``consult serve`` on ``port`` with the run's index file; returns once it is listening."""
    env = {**os.environ, "MEDVERSE_SECRET": secret, "MEDVERSE_HOME": str(workdir / "home")}
    server = await asyncio.create_subprocess_exec(
        MEDVERSE, "consult", "serve", "--port", str(port), "--mesh-limit", "16",
        "--state-file", str(workdir / "rooms.json"), "--loop", "asyncio",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert server.stdout is not None
    line = (await asyncio.wait_for(server.stdout.readline(), 30)).decode()
    if "serving on" not in line:
        raise RuntimeError(f"consult serve did not start: {line!r}")
    return server


def _linked(room: list[Participant]) -> bool:
    return all(len(p.link_set.open_links()) == len(room) - 1 for p in room)


def _agree(room: list[Participant]) -> bool:
    return _linked(room) and len({p.state.digest() for p in room}) == 1


def _lost_ops(room: list[Participant]) -> int:
    """Ops some participant made that another participant's state lacks."""
    return sum(not q.state.has(p.index, seq) for p in room for q in room for seq in range(1, p.state.seq + 1))


async def _until(condition: Any, timeout: float) -> float | None:
    """Seconds until ``condition()`` held (polled every 10 ms), or None after ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            return None
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def run_once(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One kill-and-restart run; returns its figures."""
    secret = os.urandom(32).hex()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    config = {"ops_rate_hz": args.ops_rate, "pose_rate_hz": args.pose_rate}
    room: list[Participant] = []

    async def join(name: str, role: str) -> Participant:
        token = issue_token(secret.encode(), ROOM, name, role)
        p = Participant(url, token, ParticipantConfig(**config), poses=procedural_poses, ops=ScriptedOps())
        room.append(p)
        await p.start()
        return p

    server = await _serve(port, workdir, secret)
    try:
        for i, name in enumerate(NAMES[: args.participants]):
            await join(name, "surgeon" if i == 0 else "expert")
        if await _until(lambda: _agree(room), 30.0) is None:
            raise RuntimeError("the room never linked up before the kill")
        await asyncio.sleep(args.before)
        links_before = {p.name: dict(p.links) for p in room}
        server.send_signal(signal.SIGKILL)
        await server.wait()
        seq_at_kill = {p.name: p.state.seq for p in room}
        await asyncio.sleep(args.down)
        seq_at_restart = {p.name: p.state.seq for p in room}
        server = await _serve(port, workdir, secret)
        back = time.monotonic()
        newcomer = await join(NAMES[args.participants], "expert")
        joined_s = time.monotonic() - back
        agreed = await _until(lambda: _agree(room), 20.0)
        rejoined = await _until(lambda: all(p.outages.since is None for p in room), 20.0)
        indices = {p.name: p.index for p in room}
        kept = sum(p.links.get(name) is link for p in room[:-1] for name, link in links_before[p.name].items())
        for p in room:
            p.config.ops_stop_at = time.time()
        settled = await _until(lambda: len({p.state.digest() for p in room}) == 1 and _lost_ops(room) == 0, 15.0)
        return {
            "indices": indices,
            "indices_unique": len(set(indices.values())) == len(indices),
            "newcomer_index": newcomer.index,
            "newcomer_joined_s": round(joined_s, 3),
            "agree_after_restart_s": None if agreed is None else round(joined_s + agreed, 3),
            "agree_after_newcomer_s": None if agreed is None else round(agreed, 3),
            "all_rejoined_after_restart_s": None if rejoined is None else round(joined_s + (agreed or 0) + rejoined, 3),
            "links_kept": kept,
            "links_before": sum(len(v) for v in links_before.values()),
            "ops_made_while_down": sum(seq_at_restart[n] - seq_at_kill[n] for n in seq_at_kill),
            "ops_total": sum(p.state.seq for p in room),
            "lost_ops": _lost_ops(room),
            "settled_s": None if settled is None else round(settled, 3),
            "outages": {p.name: p.report()["signaling"] for p in room[:-1]},
            "state_splits": sum(p.sync.splits.detected for p in room),
            "unknown_participant": sum(p.counters["unknown_participant"] for p in room),
            "spoofed": sum(p.counters["spoofed"] for p in room),
            "index_conflicts": sum(p.counters["index_conflicts"] for p in room),
            "load_average": os.getloadavg()[0],
        }
    finally:
        for p in room:
            with contextlib.suppress(Exception):
                await p.stop()
        if server.returncode is None:
            server.send_signal(signal.SIGTERM)
            await asyncio.wait_for(server.wait(), 10)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="medverse-restart-") as tmp:
            run = await run_once(args, Path(tmp))
        runs.append(run)
        print(f"run {i + 1}: indices {sorted(run['indices'].values())} (newcomer {run['newcomer_index']}), "
              f"digests agree {run['agree_after_restart_s']} s after the restart, links kept "
              f"{run['links_kept']}/{run['links_before']}, {run['ops_made_while_down']} ops made while down, "
              f"lost ops {run['lost_ops']} of {run['ops_total']}", flush=True)
    agree = [r["agree_after_restart_s"] for r in runs]
    summary = {
        "runs": len(runs),
        "indices_unique": all(r["indices_unique"] for r in runs),
        "agree_after_restart_s_max": None if None in agree else max(agree),
        "lost_ops": sum(r["lost_ops"] for r in runs),
        "links_kept": f"{sum(r['links_kept'] for r in runs)}/{sum(r['links_before'] for r in runs)}",
        "goal_agree_s": GOAL_AGREE_S,
    }
    summary["met"] = bool(summary["indices_unique"] and summary["lost_ops"] == 0
                          and summary["agree_after_restart_s_max"] is not None
                          and summary["agree_after_restart_s_max"] < GOAL_AGREE_S)
    return {
        "benchmark": "signaling restart",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "config": vars(args) | {"out": str(args.out)},
        "summary": summary,
        "runs": runs,
    }


def _args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=4, help="participants before the restart (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=1, help="kill-and-restart runs (default %(default)s)")
    parser.add_argument("--before", type=float, default=2.0, help="seconds of consultation before the kill (default %(default)s)")
    parser.add_argument("--down", type=float, default=2.0, help="seconds the server stays down (default %(default)s)")
    parser.add_argument("--ops-rate", type=float, default=10.0, help="ops per second per participant (default %(default)s)")
    parser.add_argument("--pose-rate", type=float, default=30.0, help="poses per second per link (default %(default)s)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "restart.json")
    args = parser.parse_args(argv)
    if not 1 <= args.participants < len(NAMES):
        parser.error(f"--participants must be 1-{len(NAMES) - 1}")
    return args


if __name__ == "__main__":
    arguments = _args()
    result = asyncio.run(main(arguments))
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"]), flush=True)
    sys.exit(0 if result["summary"]["met"] else 1)
