"""Benchmark: the signaling server under attack while a consultation runs (issue 16's figures).

- the server runs in its own process (``medverse consult serve``, its default limits);
- a consultation of two headless participants (``medverse consult join``, real aiortc peers, poses at
  90 Hz, a few ops a second) runs in room ``clinic``; each measures the same window of ``--duration``
  seconds (``--measure-from/--measure-until``);
- during that window, each attack in a process of its own (``--as flood|idle``, so that neither starves
  the other nor this process, which measures):
  - **a flood**: one holder of a valid token for room ``clinic`` sends signals at the other
    participants at ``--flood-rate`` (10,000 a second by default), rejoining with its resume ticket
    (or, refused, trying again 10 ms later) whenever the server closes it;
  - **idle sockets**: ``--idle`` (1,000) TCP connections from one other loopback address
    (127.0.0.2) that never send a byte, each one the server closes opened again a second later;
  - **legitimate joins**: every second a fresh participant joins room ``lobby`` from 127.0.0.1 and the
    time to its ``welcome`` is measured, and ``/health`` is read;
- the window is run twice: once quiet (the baseline), once under attack.

On loopback the attackers share the machine's cores with the server and the participants, which a real
attacker elsewhere would not: they run at ``nice 19`` (``--attacker-nice``), so that what is measured is
what the server's handling of the attack costs the consultation, and their CPU share is reported.

Figures: the consultation's pose one-way latency p50/p99 (the worse participant's), the legitimate
joins' time to welcome (max and median), ``/health`` answered, the server's resident memory (peak over
the run, from ``/proc``), what the attack achieved (signals sent, delivered rate, idle sockets held)
and the server's counters. Goals: join < 1 s, pose p99 < 5 ms, RSS < 200 MB.

Writes ``bench/results/signaling_attack.json``. ``.venv/bin/python bench/signaling_attack.py``
(about 40 s); on a shared machine the latency figures carry the load of everything else running.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# bench/assets.py, a sibling benchmark, would shadow the assets package while this folder is on the path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import aiohttp  # noqa: E402

from net.signaling_client import SignalingClient, SignalingError  # noqa: E402
from net.tokens import issue_token  # noqa: E402

MEDVERSE = str(Path(sys.executable).with_name("medverse"))
SECRET = os.urandom(32).hex()
GOALS = {"join_max_s": 1.0, "pose_p99_ms": 5.0, "server_rss_mb": 200.0}
ATTACKER_ADDRESS = "127.0.0.2"


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> tuple[float, float]:
    """Resident and peak resident memory of a live process, MB, from /proc."""
    found = {"VmRSS:": 0.0, "VmHWM:": 0.0}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split()[0] if line else ""
        if key in found:
            found[key] = int(line.split()[1]) / 1024
    return found["VmRSS:"], found["VmHWM:"]


class Attack:
    """The flood, the idle sockets and their tallies."""

    def __init__(self, url: str, port: int, flood_rate: float, idle: int) -> None:
        self.url, self.port, self.flood_rate, self.idle_target = url, port, flood_rate, idle
        self.sent = self.rejoins = self.refused_joins = 0
        self.connected_s = 0.0  # time the flooder held a connection (the server closes and bars it)
        self.idle_open = 0
        self.idle_opened = 0
        self.idle_held_max = 0
        self.stop = asyncio.Event()

    async def flood(self) -> None:
        client = SignalingClient(self.url, issue_token(SECRET.encode(), "clinic", "mallory", "expert"), timeout_s=5.0)
        batch = max(1, int(self.flood_rate / 100))  # 100 batches a second
        next_at = time.monotonic()
        connected = False
        since = 0.0
        while not self.stop.is_set():
            if not connected:
                try:
                    await client.connect()
                    connected, since = True, time.monotonic()
                    next_at = since
                    self.rejoins += 1
                except SignalingError:
                    self.refused_joins += 1
                    await asyncio.sleep(0.01)
                    continue
            try:
                for i in range(batch):
                    await client.send_signal("p1" if i % 2 else "p2", {"type": "answer", "sdp": "x"})
                self.sent += batch
            except SignalingError:
                connected = False
                self.connected_s += time.monotonic() - since
                continue
            if client._ws is not None and client._ws.closed:
                connected = False
                self.connected_s += time.monotonic() - since
            next_at += 0.01
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        if connected:
            self.connected_s += time.monotonic() - since
        await client.close()

    async def _idle_one(self) -> None:
        while not self.stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port, local_addr=(ATTACKER_ADDRESS, 0))
            except OSError:
                await asyncio.sleep(0.05)
                continue
            self.idle_opened += 1
            self.idle_open += 1
            self.idle_held_max = max(self.idle_held_max, self.idle_open)
            try:
                stop = asyncio.ensure_future(self.stop.wait())
                closed = asyncio.ensure_future(reader.read(1))
                await asyncio.wait({stop, closed}, return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
                closed.cancel()
            except (ConnectionError, OSError):
                pass
            finally:
                self.idle_open -= 1
                writer.close()
            await asyncio.sleep(1.0)  # the server closed it: open it again

    async def idle_sockets(self) -> None:
        await asyncio.gather(*(self._idle_one() for _ in range(self.idle_target)))


async def legitimate(url: str, stop: asyncio.Event, joins: list[float], health: list[bool]) -> None:
    """Every second: a fresh participant joins room ``lobby`` (time to welcome), and /health is read."""
    n = 0
    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            n += 1
            client = SignalingClient(url, issue_token(SECRET.encode(), "lobby", f"guest{n}", "observer"), timeout_s=5.0)
            started = time.monotonic()
            try:
                await client.connect()
                joins.append(time.monotonic() - started)
            except SignalingError:
                joins.append(float("inf"))
            finally:
                await client.close()
            try:
                async with http.get(url + "/health", timeout=aiohttp.ClientTimeout(total=5)) as response:
                    health.append(response.status == 200)
            except (aiohttp.ClientError, TimeoutError):
                health.append(False)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


async def run_window(url: str, port: int, server_pid: int, env: dict[str, str], args: argparse.Namespace,
                     workdir: Path, attacked: bool) -> dict[str, Any]:  # fmt: skip
    """One consultation window, quiet or attacked; its figures."""
    label = "attacked" if attacked else "quiet"
    measure_from = time.time() + args.warmup
    measure_until = measure_from + args.duration
    procs = []
    for name in ("p1", "p2"):
        report = workdir / f"{label}-{name}.json"
        proc = await asyncio.create_subprocess_exec(
            MEDVERSE, "consult", "join", "--server", url,
            "--token", issue_token(SECRET.encode(), "clinic" if attacked else "clinic-quiet", name, "expert"),
            "--leave-at", f"{measure_until + 1.5:.3f}", "--measure-from", f"{measure_from:.3f}",
            "--measure-until", f"{measure_until:.3f}", "--ops-rate", "2", "--report", str(report),
            env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        procs.append((name, report, proc))
    stop = asyncio.Event()
    joins: list[float] = []
    health: list[bool] = []
    rss_max = 0.0
    await asyncio.sleep(max(0.0, measure_from - time.time()))
    tasks = [asyncio.ensure_future(legitimate(url, stop, joins, health))]
    attackers = []
    if attacked:
        for kind in ("flood", "idle"):
            attackers.append(await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--as", kind, "--url", url, "--secret", SECRET,
                "--duration", f"{measure_until - time.time():.2f}", "--flood-rate", str(args.flood_rate),
                "--idle", str(args.idle), "--nice", str(args.attacker_nice), env=env, stdout=asyncio.subprocess.PIPE,
            ))  # fmt: skip
    t0, cpu0 = time.monotonic(), _cpu_s(server_pid)
    attackers_cpu0 = [_cpu_s(a.pid) for a in attackers]
    attackers_cpu = 0.0
    while time.time() < measure_until:
        with contextlib.suppress(OSError):  # an attacker may have ended a moment early
            attackers_cpu = sum(_cpu_s(a.pid) for a in attackers) - sum(attackers_cpu0)
        rss_max = max(rss_max, _rss_mb(server_pid)[0])
        await asyncio.sleep(0.25)
    elapsed = time.monotonic() - t0
    server_cpu = (_cpu_s(server_pid) - cpu0) / elapsed
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    tallies: dict[str, Any] = {}
    for attacker in attackers:
        out, _ = await asyncio.wait_for(attacker.communicate(), 30)
        tallies |= json.loads(out.decode().strip().splitlines()[-1])
    for _, _, proc in procs:
        await asyncio.wait_for(proc.wait(), 60)
    reports = {name: json.loads(report.read_text()) for name, report, _ in procs if report.exists()}
    poses = [r["latency"]["room"]["pose"] or {} for r in reports.values()]
    finite = [j for j in joins if j != float("inf")]
    return {
        "window_s": round(elapsed, 2),
        "pose_p50_ms": max((p.get("p50_ms", float("nan")) for p in poses), default=None),
        "pose_p99_ms": max((p.get("p99_ms", float("nan")) for p in poses), default=None),
        "pose_count": sum(p.get("count", 0) for p in poses),
        "digests_equal": len({r["state"]["digest"] for r in reports.values()}) == 1 and len(reports) == 2,
        "joins": len(joins),
        "joins_failed": len(joins) - len(finite),
        "join_max_s": round(max(finite), 4) if finite else None,
        "join_median_s": round(statistics.median(finite), 4) if finite else None,
        "health_ok": f"{sum(health)}/{len(health)}",
        "server_rss_mb_max": round(rss_max, 1),
        "server_cpu_share": round(server_cpu, 3),
        "attackers_cpu_share": round(attackers_cpu / elapsed, 3),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "attack": tallies or None,
        "participants_server_errors": {n: r["counters"].get("server_errors", 0) for n, r in reports.items()},
    }  # fmt: skip


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    env = {**os.environ, "MEDVERSE_SECRET": SECRET, "MEDVERSE_HOME": str(workdir / "home")}
    server = await asyncio.create_subprocess_exec(
        MEDVERSE, "consult", "serve", "--port", "0", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert server.stdout is not None
    line = (await asyncio.wait_for(server.stdout.readline(), 30)).decode()
    url = line.split("serving on ")[1].split()[0]
    port = int(url.rsplit(":", 1)[1])
    try:
        quiet = await run_window(url, port, server.pid, env, args, workdir, attacked=False)
        attacked = await run_window(url, port, server.pid, env, args, workdir, attacked=True)
        rss, peak = _rss_mb(server.pid)
        reader = issue_token(SECRET.encode(), "any", "bench", "instructor")
        async with aiohttp.ClientSession() as http, http.get(url + "/stats", headers={"Authorization": f"Bearer {reader}"}) as r:
            counters = (await r.json())["counters"]
    finally:
        server.terminate()
        await server.wait()
    return {"quiet": quiet, "attacked": attacked, "server_rss_mb_end": round(rss, 1), "server_rss_mb_peak": round(peak, 1),
            "server_counters": {k: v for k, v in counters.items() if v}}  # fmt: skip


async def attack_process(kind: str, url: str, seconds: float, flood_rate: float, idle: int) -> dict[str, Any]:
    """``--as flood|idle``: run one attack for ``seconds``; its tallies."""
    attack = Attack(url, int(url.rsplit(":", 1)[1]), flood_rate, idle)
    task = asyncio.ensure_future(attack.flood() if kind == "flood" else attack.idle_sockets())
    started = time.monotonic()
    await asyncio.sleep(seconds)
    attack.stop.set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(task, 10)
    elapsed = time.monotonic() - started
    if kind == "flood":
        return {"signals_sent": attack.sent, "signals_per_s": round(attack.sent / elapsed),
                "flooder_connected_s": round(attack.connected_s, 2),
                "signals_per_s_while_connected": round(attack.sent / attack.connected_s) if attack.connected_s else None,
                "flooder_rejoins": attack.rejoins, "flooder_refused_joins": attack.refused_joins}  # fmt: skip
    return {"idle_sockets_opened": attack.idle_opened, "idle_sockets_held_max": attack.idle_held_max}


def main() -> int:
    if "--as" in sys.argv:  # an attacker process started by run_window
        sub = argparse.ArgumentParser()
        for flag in ("--as", "--url", "--secret"):
            sub.add_argument(flag, required=True)
        sub.add_argument("--duration", type=float, required=True)
        sub.add_argument("--flood-rate", type=float, required=True)
        sub.add_argument("--idle", type=int, required=True)
        sub.add_argument("--nice", type=int, default=0)
        a = sub.parse_args()
        os.nice(a.nice)
        global SECRET
        SECRET = a.secret
        print(json.dumps(asyncio.run(attack_process(getattr(a, "as"), a.url, a.duration, a.flood_rate, a.idle))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=12.0, help="measured seconds per window (default %(default)s)")
    parser.add_argument("--warmup", type=float, default=4.0, help="seconds before measuring (default %(default)s)")
    parser.add_argument("--flood-rate", type=float, default=10_000.0, help="signals a second (default %(default)s)")
    parser.add_argument("--idle", type=int, default=1000, help="idle sockets from one address (default %(default)s)")
    parser.add_argument("--attacker-nice", type=int, default=19,
                        help="niceness of the attacker processes, which on loopback share the cores (default %(default)s)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "signaling_attack.json"),
                        help="JSON output (default %(default)s)")
    args = parser.parse_args()
    if args.duration <= 0 or args.warmup < 0 or args.flood_rate <= 0 or args.idle < 0:
        parser.error("--duration and --flood-rate must be positive, --warmup and --idle >= 0")
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        figures = asyncio.run(run(args, Path(tmp)))
    attacked = figures["attacked"]
    goals = {
        "join_max_s": {"goal": GOALS["join_max_s"], "value": attacked["join_max_s"]},
        "pose_p99_ms": {"goal": GOALS["pose_p99_ms"], "value": attacked["pose_p99_ms"]},
        "server_rss_mb": {"goal": GOALS["server_rss_mb"], "value": figures["server_rss_mb_peak"]},
    }
    for goal in goals.values():
        goal["met"] = goal["value"] is not None and goal["value"] < goal["goal"]
    result = {
        "benchmark": "signaling_attack",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_avg_start": [round(x, 2) for x in load_start],
                    "load_avg_end": [round(x, 2) for x in os.getloadavg()]},
        "config": {"duration_s": args.duration, "warmup_s": args.warmup, "flood_rate": args.flood_rate, "idle": args.idle,
                   "attacker_nice": args.attacker_nice},
        **figures,
        "goals": goals,
    }
    for label in ("quiet", "attacked"):
        w = figures[label]
        print(f"{label:9s} pose p50 {w['pose_p50_ms']} ms p99 {w['pose_p99_ms']} ms ({w['pose_count']} poses); "
              f"joins {w['joins']} (failed {w['joins_failed']}) max {w['join_max_s']} s median {w['join_median_s']} s; "
              f"/health {w['health_ok']}; server RSS max {w['server_rss_mb_max']} MB, CPU {w['server_cpu_share']:.0%}; "
              f"attackers' CPU {w['attackers_cpu_share']:.0%}; load {w['load_avg_1min']}")  # fmt: skip
    print(f"attack: {json.dumps(attacked['attack'])}")
    print(f"server RSS peak {figures['server_rss_mb_peak']} MB; counters {json.dumps(figures['server_counters'])}")
    print("goals: " + ", ".join(f"{k} {v['value']} < {v['goal']}: {'met' if v['met'] else 'MISSED'}" for k, v in goals.items()))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
