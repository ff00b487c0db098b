"""Benchmark: N participants streaming 90 Hz poses and making state ops, mesh and relay, beside the aiortc floor.

For each topology and room size N, the signaling server runs in its own process (``medverse consult
serve``; in relay rooms it also runs the relay, so its CPU and memory are the relay's), and each
participant is a ``medverse consult join`` process. Every participant sends poses at ``--rate`` and
state ops at ``--ops-rate``; all of them measure the same window of ``--duration`` seconds, which
starts once everyone has joined (connection set-up and clock filtering are not measured) and ends
before anyone leaves. From the participants' JSON reports the benchmark takes

- one-way pose latency: median of the participants' p50 and worst of their p99 (ms);
- state-op one-way latency, likewise; the share of updates within the 30 ms budget;
- pose delivery: poses applied / poses the others sent while it was there;
- CPU share (1.0 is one core) and bytes per second sent and received per participant; pose stream
  bit rate per link (payload, kbit/s); peak resident memory per participant and of the server/relay;
- whether all participants ended with the same state digest.

The floor, measured in the same run: a bare aiortc data-channel ping-pong (64 bytes) between two
processes, as round trip and half of it (one way), back to back and paced at 90 Hz.

``--loop asyncio,uvloop`` runs every room (and the floor) once on each event loop, the server and all
participants on the same one (``consult serve/join --loop``), alternating room by room so that a change
in the machine's load hits both alike; the load average is recorded beside each room.

Writes ``bench/results/sync.json``. Quick run (2 and 4 participants, 5 s):
``.venv/bin/python bench/sync.py``; the issue's run: ``.venv/bin/python bench/sync.py --sizes 2,4,8,16
--duration 20``; both loops side by side: add ``--loop asyncio,uvloop``; aiortc as shipped beside the
data path ``net.datapath`` tunes (which medverse runs): add ``--datapath tuned,stock``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

# bench/assets.py, a sibling benchmark, would shadow the assets package while this folder is on the path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from net.datapath import STOCK_ENV  # noqa: E402
from net.eventloop import LOOPS, EventLoopError, loop_factory, run_on_loop  # noqa: E402
from net.protocol import RELAY_POSE_LEAD_S  # noqa: E402
from net.relay import DEFAULT_POSE_BUDGET_HZ, DEFAULT_POSE_SUBTICKS  # noqa: E402
from net.tokens import issue_token  # noqa: E402

MEDVERSE = str(Path(sys.executable).with_name("medverse"))
SECRET = os.urandom(32).hex()
GOALS = {
    "pose_p99_ms_at_8": 5.0,
    "relay_pose_p99_ms_at_16": 10.0,
    "pose_stream_kbit_s": 50.0,
    "participant_rss_mb": 150.0,
    "relay_rss_mb_at_16": 300.0,
}

# ------------------------------------------------------------------------------------------------ floor

_FLOOR_CHILD = r"""
import asyncio, json, sys
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

async def main():
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    done = asyncio.Event()

    @pc.on("datachannel")
    def on_channel(channel):
        @channel.on("message")
        def on_message(message):
            channel.send(message)

        @channel.on("close")
        def on_close():
            done.set()

    offer = json.loads(sys.stdin.readline())
    await pc.setRemoteDescription(RTCSessionDescription(**offer))
    await pc.setLocalDescription(await pc.createAnswer())
    print(json.dumps({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)  # the parent closes stdin when it is done
    await pc.close()

from net.eventloop import run_on_loop
run_on_loop(main, sys.argv[1])
"""


async def measure_floor(count: int, paced_s: float, loop: str) -> dict[str, Any]:
    """Round trip of a 64-byte message over a bare aiortc data channel to another process.

    Parameters
    ----------
    count : int
        Back-to-back ping-pongs.
    paced_s : float
        Seconds of ping-pongs paced at 90 Hz after that.
    loop : str
        Event loop of the other process (``consult --loop`` choices); run this coroutine on the same.
    """
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription  # noqa: PLC0415 - aiortc bare, for the floor

    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _FLOOR_CHILD, loop, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert child.stdin is not None and child.stdout is not None
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    channel = pc.createDataChannel("floor", ordered=True)
    opened = asyncio.Event()
    replies: asyncio.Queue[float] = asyncio.Queue()
    channel.on("open", opened.set)
    channel.on("message", lambda message: replies.put_nowait(time.perf_counter()))
    await pc.setLocalDescription(await pc.createOffer())
    child.stdin.write((json.dumps({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}) + "\n").encode())
    await child.stdin.drain()
    answer = json.loads(await child.stdout.readline())
    await pc.setRemoteDescription(RTCSessionDescription(**answer))
    await asyncio.wait_for(opened.wait(), 20)
    payload = bytes(64)

    async def ping() -> float:
        sent = time.perf_counter()
        channel.send(payload)
        return (await asyncio.wait_for(replies.get(), 5)) - sent

    for _ in range(50):  # warm-up
        await ping()
    back_to_back = [await ping() for _ in range(count)]
    paced = []
    start = time.perf_counter()
    k = 0
    while time.perf_counter() - start < paced_s:
        k += 1
        await asyncio.sleep(max(0.0, start + k / 90 - time.perf_counter()))
        paced.append(await ping())
    await pc.close()
    child.stdin.close()
    await asyncio.wait_for(child.wait(), 10)

    def figures(rtts: list[float]) -> dict[str, float]:
        ms = sorted(r * 1e3 for r in rtts)
        p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
        return {"count": len(ms), "rtt_p50_ms": round(statistics.median(ms), 3), "rtt_p99_ms": round(p99, 3),
                "one_way_p50_ms": round(statistics.median(ms) / 2, 3), "one_way_p99_ms": round(p99 / 2, 3)}  # fmt: skip

    return {"loop": loop, "back_to_back": figures(back_to_back), "paced_90hz": figures(paced)}


# ------------------------------------------------------------------------------------------------ rooms


def _relay_counters(url: str, room: str) -> dict[str, Any] | None:
    """The relay's counters of ``room`` from the server's ``/stats`` (None when it cannot be read); the
    room's detail needs a reader's token (a surgeon's of that room)."""
    reader = issue_token(SECRET.encode(), room, "bench-reader", "surgeon")
    request = urllib.request.Request(f"{url.rstrip('/')}/stats", headers={"Authorization": f"Bearer {reader}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            stats = json.loads(response.read())
    except (OSError, ValueError):
        return None
    for entry in stats.get("rooms", []):
        if entry.get("room") == room and entry.get("relay_stats"):
            return {**entry["relay_stats"].get("counters", {}), "cpu_share": entry["relay_stats"].get("cpu_share")}
    return None


def _proc_stats(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) and peak resident memory (MB) of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    hwm = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return cpu, hwm


async def run_room(mode: str, n: int, args: argparse.Namespace, workdir: Path, loop: str, path: str) -> dict[str, Any]:
    """One room of ``n`` participants in ``mode`` (mesh or relay), server and participants on ``loop``,
    on aiortc's data path as ``net.datapath`` tunes it (``path`` "tuned") or as aiortc ships it ("stock")."""
    env = {**os.environ, "MEDVERSE_SECRET": SECRET}
    env.pop(STOCK_ENV, None)
    if path == "stock":
        env[STOCK_ENV] = "1"
    mesh_limit = 64 if mode == "mesh" else 1
    load_before = os.getloadavg()[0]
    server = await asyncio.create_subprocess_exec(
        MEDVERSE, "consult", "serve", "--port", "0", "--mesh-limit", str(mesh_limit),
        "--relay-pose-budget", str(args.relay_pose_budget), "--relay-pose-subticks", str(args.relay_pose_subticks),
        "--loop", loop, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert server.stdout is not None
    line = (await asyncio.wait_for(server.stdout.readline(), 30)).decode()
    url = line.split("serving on ")[1].split()[0]
    cpu0, _ = _proc_stats(server.pid)
    # Start-up of n aiortc processes on a small machine takes a while: give it time before measuring.
    warmup = 2.0 + (0.35 + args.stagger) * n
    room = f"{mode}-{n}-{loop}-{path}"
    procs = []
    logs = []
    started = time.monotonic()
    # One window for everyone, in UNIX time (the processes start seconds apart on a loaded machine, so
    # times relative to each one's start would not be the same moments): latency is recorded from
    # when all have joined until the window's end, ops go on until then too, and nobody leaves before
    # everyone's window is over (a leaving process's shutdown would load the others' measurement)
    # nor before every op has reached everyone, so that the final digests can be compared.
    measure_from = time.time() + warmup
    measure_until = measure_from + args.duration
    leave_at = measure_until + 2.0
    for i in range(n):
        token = issue_token(SECRET.encode(), room, f"p{i + 1}", "expert")
        report = workdir / f"{room}-p{i + 1}.json"
        # stderr to a file, not a pipe: a pipe nobody reads until the end blocks a chatty process.
        log_file = open(workdir / f"{room}-p{i + 1}.log", "wb")  # noqa: SIM115 (closed after the run)
        logs.append(log_file)
        nice = ["nice", "-n", str(args.participant_nice)] if args.participant_nice else []
        ops_start = max(0.5, measure_from - time.time())
        procs.append((report, await asyncio.create_subprocess_exec(
            *nice, MEDVERSE, "consult", "join", "--server", url, "--token", token, "--leave-at", f"{leave_at:.3f}",
            "--measure-from", f"{measure_from:.3f}", "--measure-until", f"{measure_until:.3f}",
            "--pose-rate", str(args.rate), "--ops-rate", str(args.ops_rate), "--relay-pose-lead", str(args.relay_pose_lead),
            "--ops-start", f"{ops_start:.3f}", "--ops-stop-at", f"{measure_until:.3f}", "--report", str(report), "--loop", loop,
            env=env, stdout=asyncio.subprocess.DEVNULL, stderr=log_file,
        )))  # fmt: skip
        # People join one after another, not within the same millisecond: sixteen simultaneous DTLS
        # handshakes with the relay on a 2-core machine lose packets, and SCTP's retransmission
        # back-off then stalls those associations for seconds.
        await asyncio.sleep(args.stagger)
    # The relay's counters (bundles, superseded and dropped poses), read just before the window ends.
    relay_counters = None
    if mode == "relay":
        await asyncio.sleep(max(0.0, measure_until - 0.5 - time.time()))
        relay_counters = await asyncio.to_thread(_relay_counters, url, room)
    failures = []
    for (_, proc), log_file in zip(procs, logs, strict=True):
        await proc.wait()
        log_file.close()
        if proc.returncode != 0:
            failures.append(Path(log_file.name).read_text()[-500:])
    wall = time.monotonic() - started
    cpu1, server_rss = _proc_stats(server.pid)
    server.terminate()
    await server.wait()
    reports = [json.loads(report.read_text()) for report, _ in procs if report.exists()]
    figures = summarize_room(mode, n, reports, failures, (cpu1 - cpu0) / wall, server_rss, args)
    # The loops the participants report they ran on, not the option given: proves what was measured.
    loops_ran = sorted({r.get("event_loop", "?") for r in reports})
    figures = {"loop": loop, "datapath": path, **figures, "participant_loops": loops_ran}
    if relay_counters is not None:
        figures["relay_counters"] = relay_counters
    return {**figures, "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def summarize_room(
    mode: str,
    n: int,
    reports: list[dict[str, Any]],
    failures: list[str],
    server_cpu: float,
    server_rss: float,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Figures of one room from its participants' reports."""
    pose = [r["latency"]["room"]["pose"] for r in reports if r["latency"]["room"]["pose"]]
    state = [r["latency"]["room"]["state"] for r in reports if r["latency"]["room"]["state"]]
    expected = args.rate * args.duration * (n - 1)
    delivered = [
        sum(link["pose_total"] for link in r["latency"]["links"].values()) / expected for r in reports
    ] if expected else []  # fmt: skip
    streams = [kbit for r in reports for kbit in r["pose_kbit_s_per_link"].values()]
    return {
        "mode": mode,
        "participants": n,
        "completed": len(reports),
        "failures": failures,
        "pose_p50_ms": _median([p["p50_ms"] for p in pose]),
        "pose_p99_ms": round(max(p["p99_ms"] for p in pose), 3) if pose else None,
        "pose_max_ms": round(max(p["max_ms"] for p in pose), 3) if pose else None,
        # In join order: shows whether the tail is everyone's or a few receivers'.
        "pose_p99_ms_each": [round(p["p99_ms"], 2) for p in pose],
        "pose_within_budget": _median([p["within_budget"] for p in pose]),
        "pose_delivery": _median(delivered),
        "state_p50_ms": _median([s["p50_ms"] for s in state]),
        "state_p99_ms": round(max(s["p99_ms"] for s in state), 3) if state else None,
        "state_ops": sum(r["counters"].get("ops_sent", 0) for r in reports),
        "converged": len({r["state"]["digest"] for r in reports}) == 1 and len(reports) == n,
        "cpu_share_per_participant": _median([r["cpu_share"] for r in reports]),
        "cpu_share_max": max((r["cpu_share"] for r in reports), default=None),
        "bytes_sent_per_s_per_participant": _median([r["bytes_sent_per_s"] for r in reports]),
        "bytes_received_per_s_per_participant": _median([r["bytes_received_per_s"] for r in reports]),
        "pose_stream_kbit_s_max": round(max(streams), 2) if streams else None,
        "participant_rss_mb_max": max((r["max_rss_mb"] for r in reports), default=None),
        "server_cpu_share": round(server_cpu, 4),
        "server_rss_mb": round(server_rss, 1),
        "pose_frames_skipped": sum(r["counters"].get("pose_frames_skipped", 0) for r in reports),
    }


def check_goals(rooms: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's goals, each with the measured value and whether it was met (None: not measured)."""

    def room(mode: str, n: int) -> dict[str, Any] | None:
        return next((r for r in rooms if r["mode"] == mode and r["participants"] == n), None)

    at8 = [r["pose_p99_ms"] for r in (room("mesh", 8), room("relay", 8)) if r and r["pose_p99_ms"] is not None]
    relay16 = room("relay", 16)
    streams = [r["pose_stream_kbit_s_max"] for r in rooms if r["pose_stream_kbit_s_max"] is not None]
    rss = [r["participant_rss_mb_max"] for r in rooms if r["participant_rss_mb_max"] is not None]

    def goal(value: float | None, limit: float) -> dict[str, Any]:
        return {"value": value, "limit": limit, "met": None if value is None else value < limit}

    return {
        "pose_p99_ms_at_8": goal(min(at8) if at8 else None, GOALS["pose_p99_ms_at_8"]),
        "relay_pose_p99_ms_at_16": goal(relay16["pose_p99_ms"] if relay16 else None, GOALS["relay_pose_p99_ms_at_16"]),
        "pose_stream_kbit_s": goal(max(streams) if streams else None, GOALS["pose_stream_kbit_s"]),
        "participant_rss_mb": goal(max(rss) if rss else None, GOALS["participant_rss_mb"]),
        "relay_rss_mb_at_16": goal(relay16["server_rss_mb"] if relay16 else None, GOALS["relay_rss_mb_at_16"]),
    }


#: The figures of the room table: heading, width, the room's key, scale and format.
_TABLE = [
    ("pose p50", 9, "pose_p50_ms", 1.0, "{:.2f}"),
    ("pose p99", 9, "pose_p99_ms", 1.0, "{:.2f}"),
    ("deliv", 6, "pose_delivery", 1.0, "{:.2f}"),
    ("op p50", 7, "state_p50_ms", 1.0, "{:.2f}"),
    ("op p99", 7, "state_p99_ms", 1.0, "{:.2f}"),
    ("cpu/p", 6, "cpu_share_per_participant", 1.0, "{:.2f}"),
    ("kB/s out", 9, "bytes_sent_per_s_per_participant", 1e-3, "{:.2f}"),
    ("kbit/s", 7, "pose_stream_kbit_s_max", 1.0, "{:.2f}"),
    ("rss MB", 7, "participant_rss_mb_max", 1.0, "{:.0f}"),
    ("srv cpu", 7, "server_cpu_share", 1.0, "{:.2f}"),
    ("srv MB", 7, "server_rss_mb", 1.0, "{:.0f}"),
]


def print_table(floors: dict[str, Any], rooms: list[dict[str, Any]], goals: dict[str, Any]) -> None:
    for loop, floor in floors.items():
        f = floor["back_to_back"]
        p = floor["paced_90hz"]
        print(f"floor on {loop} (bare aiortc, 2 processes): rtt p50 {f['rtt_p50_ms']} ms p99 {f['rtt_p99_ms']} ms; "
              f"paced 90 Hz rtt p50 {p['rtt_p50_ms']} ms p99 {p['rtt_p99_ms']} ms")
    figures = " ".join(f"{heading:>{width}}" for heading, width, *_ in _TABLE)
    print(f"{'loop':7} {'path':5} {'mode':6} {'N':>3} {figures} {'load':>9} conv")
    for r in rooms:
        figures = " ".join(
            f"{'-' if r[key] is None else fmt.format(r[key] * scale):>{width}}" for _, width, key, scale, fmt in _TABLE
        )
        load = "{:.1f}-{:.1f}".format(*r["load_avg_1min"])
        print(f"{r['loop']:7} {r['datapath']:5} {r['mode']:6} {r['participants']:>3} {figures} {load:>9} {r['converged']}")
    for loop, loop_goals in goals.items():
        for name, g in loop_goals.items():
            verdict = "not measured" if g["met"] is None else "met" if g["met"] else "NOT met"
            print(f"goal on {loop} {name}: {g['value']} (limit {g['limit']}) -> {verdict}")


async def run_rooms(args: argparse.Namespace, loops: list[str], paths: list[str]) -> list[dict[str, Any]]:
    """Every room of ``--modes`` x ``--sizes``, once per event loop and data path, alternating room by room."""
    rooms = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes.split(","):
            for n in (int(s) for s in args.sizes.split(",")):
                if mode == "mesh" and n > args.max_mesh:
                    print(f"skipping mesh room of {n} (--max-mesh {args.max_mesh})")
                    continue
                for loop in loops:
                    for path in paths:
                        load = os.getloadavg()[0]
                        print(f"running {mode} room of {n} on {loop}, {path} data path, for {args.duration:g} s "
                              f"(load {load:.2f}) ...", flush=True)
                        rooms.append(await run_room(mode, n, args, Path(tmp), loop, path))
    return rooms


def run_benchmark(args: argparse.Namespace, loops: list[str], paths: list[str]) -> dict[str, Any]:
    load_start = os.getloadavg()
    # The floor's two ends run on the loop being measured, each loop in a fresh one of its own.
    floors = {}
    for loop in loops:
        floors[loop] = run_on_loop(lambda loop=loop: measure_floor(args.floor_count, 2.0, loop), loop)  # type: ignore[misc]
    rooms = asyncio.run(run_rooms(args, loops, paths))
    # Goals per loop (and per data path when more than one ran: "uvloop/stock").
    goals = {
        loop if len(paths) == 1 else f"{loop}/{path}": check_goals(
            [r for r in rooms if r["loop"] == loop and r["datapath"] == path]
        )
        for loop in loops
        for path in paths
    }
    return {
        "benchmark": "sync",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_avg_start": [round(x, 2) for x in load_start],
            "load_avg_end": [round(x, 2) for x in os.getloadavg()],
        },
        "config": {
            "duration_s": args.duration,
            "pose_rate_hz": args.rate,
            "ops_rate_hz": args.ops_rate,
            "sizes": args.sizes,
            "modes": args.modes,
            "max_mesh": args.max_mesh,
            "relay_pose_budget": args.relay_pose_budget,
            "relay_pose_subticks": args.relay_pose_subticks,
            "relay_pose_lead_ms": args.relay_pose_lead,
            "participant_nice": args.participant_nice,
            "stagger_s": args.stagger,
            "loops": loops,
            "datapaths": paths,
        },
        "floor": floors,
        "rooms": rooms,
        "goals": goals,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2,4", help="room sizes, comma-separated (default %(default)s; the issue's: 2,4,8,16)")
    parser.add_argument("--modes", default="mesh,relay", help="topologies (default %(default)s)")
    parser.add_argument("--relay-pose-budget", type=float, default=DEFAULT_POSE_BUDGET_HZ,
                        help="relay's pose budget, bundles/s in all, 0 unlimited (default %(default)s)")
    parser.add_argument("--relay-pose-lead", type=float, default=RELAY_POSE_LEAD_S * 1e3,
                        help="participants' lead before the relay's tick, ms (default %(default)s)")
    parser.add_argument("--relay-pose-subticks", type=int, default=DEFAULT_POSE_SUBTICKS,
                        help="relay flush ticks per 90 Hz period (default %(default)s)")
    parser.add_argument("--participant-nice", type=int, default=0,
                        help="run participants at this nice level, so that the server/relay gets the CPU it would have "
                        "on its own machine (default %(default)s)")
    parser.add_argument("--stagger", type=float, default=0.3, help="seconds between participants joining (default %(default)s)")
    parser.add_argument("--max-mesh", type=int, default=16, help="largest mesh room to run (default %(default)s)")
    parser.add_argument("--duration", type=float, default=5.0,
                        help="measured seconds per room (default %(default)s; the issue's: 20)")
    parser.add_argument("--rate", type=float, default=90.0, help="pose records per second per participant (default %(default)s)")
    parser.add_argument("--ops-rate", type=float, default=5.0, help="state ops per second per participant (default %(default)s)")
    parser.add_argument("--floor-count", type=int, default=1000,
                        help="back-to-back ping-pongs for the floor (default %(default)s)")
    parser.add_argument("--loop", default="auto",
                        help=f"event loops to run on, comma-separated, of {', '.join(LOOPS)} (default %(default)s)")
    parser.add_argument("--datapath", default="tuned",
                        help="aiortc data paths, comma-separated, of tuned (net.datapath, what medverse runs) "
                        "and stock (aiortc as shipped) (default %(default)s)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "sync.json"),
                        help="JSON output (default %(default)s)")
    args = parser.parse_args()
    if args.duration <= 0:
        parser.error("--duration must be positive")
    # "auto" resolves here, so the results name the loop that actually ran.
    try:
        loops = list(dict.fromkeys(loop_factory(name.strip())[0] for name in args.loop.split(",")))
    except EventLoopError as exc:
        parser.error(str(exc))
    paths = list(dict.fromkeys(p.strip() for p in args.datapath.split(",")))
    if not set(paths) <= {"tuned", "stock"}:
        parser.error("--datapath takes tuned and/or stock")
    result = run_benchmark(args, loops, paths)
    print_table(result["floor"], result["rooms"], result["goals"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
