"""Benchmark: a consultation of four rendering participants, with and without 22.5 ms of one-way delay.

The issue's budget: the reference consultations kept network latency under 30 ms across 4,500 km, and
light in fibre needs about 22.5 ms one way for that distance, so medverse's own share must stay under
7.5 ms at p99. This benchmark puts that on loopback:

- the signaling server runs in its own process (``medverse consult serve``) and each participant is a
  ``medverse consult join --backend sim`` process (real aiortc peers in a mesh, the twin rendered
  through EGL at a reduced size, ``--width``/``--height``/``--rate``), played by a generated motion
  script: a surgeon who cuts a cross-section and clears it every 2 s, two experts who each place a
  landmark and undo it every second (two ops a second each), a trainee who points; every head sways,
  so every pose differs from the one before;
- the delay is injected by each participant's own ``net.faults`` proxies (``join --delay-ms``). A
  participant's proxies delay everything that crosses them, and on a link whose two ends both inject,
  a datagram crosses one proxy of each end: so every participant injects half the one-way delay, and
  every link, in each direction, gets it once (checked: two headless peers at 11.25 ms each measure
  23.6 ms one way, one at 22.5 ms and one at 0 measure 23.2 ms; the 0.5-1 ms above is the proxies'
  timers, counted below as medverse's share);
- the scripts act in the first 60% of the time until the window ends (then everyone holds still, poses
  still go out every frame), so that the ops end inside the window even when frames fall behind;
- everyone measures the same steady-state window of ``--duration`` seconds (``join --measure-from/
  --measure-until``, UNIX times), which starts ``--warmup`` seconds after the last participant was
  started (twin loading, GL context, links and clock filtering are not measured) and ends before
  anyone leaves.

From each participant's JSON report it takes, per participant and for the room: one-way latency p50/p99
of the poses and of the state ops it applied, and their share within 30 ms; the frame rate each one
achieved in the window (poses it sent per second, counted by its receivers: one pose per frame); CPU
share; whether everyone ended with the same state digest. Room figures: p50 the median of the
participants', p99 the worst of theirs, shares weighted by samples. Medverse's share is the room's p99
minus the injected delay.

Motion-to-remote-display (from the moment a pose is sampled at the sender to the first frame the
receiver displays with it) is read from the join report's ``consult.motion_to_display`` where the
rendered join reports it, and listed as not measured otherwise. Its parts are printed too (p50/p99 of
each, ``sessions.consult.room.MOTION_PARTS``): the network to the receiver, the wait for the next frame
to take it (up to a frame period, whatever the machine), and that frame.

``--renderers N`` renders only the first N participants; the others join headless (``--backend none``),
sending a pose per frame at ``--rate`` and two scripted ops a second. With ``--renderers 1 --rate 90
--delays 0`` the one renderer has the cores to itself, so its motion-to-display is the pipeline's at
90 Hz (fetch, step, draw, finish) rather than four software renderers waiting for two cores.

Clocks: each participant paces its frames (and poses) by its own clock, as headsets do. Were every clock
at exactly ``--rate``, the time from a pose's arrival to the receiver's next frame would be fixed for the
whole run by when each process happened to start, and one run's motion-to-display p99 could land anywhere
in a frame's width (13.8 and 18.2 ms in two runs of the same room here). So the ``i``-th participant runs
``i`` frames faster over the measured window (90.07 Hz for the second at 90 Hz over 15 s): every pair
slips by whole frame periods, every phase is sampled alike, and the p99 holds the worst phase too, as a
long consultation between independent headsets would.

Writes ``bench/results/consult.json``. The issue's run: ``.venv/bin/python bench/consult.py`` (one room
on loopback, one with 22.5 ms; about 90 s). Faster: ``--duration 8``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# bench/assets.py, a sibling benchmark, would shadow the assets package while this folder is on the path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from net.latency import BUDGET_S  # noqa: E402
from net.tokens import issue_token  # noqa: E402

# the medverse beside this interpreter (a venv's), else the first on PATH (bench/device/run.sh puts one there)
MEDVERSE = str(Path(sys.executable).with_name("medverse"))
if not Path(MEDVERSE).exists():
    MEDVERSE = shutil.which("medverse") or MEDVERSE
SECRET = os.urandom(32).hex()
#: One-way delay of light in fibre over 4,500 km, ms: what the issue's budget leaves room for.
FIBRE_MS = 22.5
#: The display rate the motion-to-display goal is counted in, Hz.
DISPLAY_HZ = 90.0


def participant_rate(rate: float, index: int, window_s: float) -> float:
    """The frame (and pose) rate of the ``index``-th participant: ``rate`` made faster by ``index`` frames over
    the measured window, so that any two participants' frames slip past each other by at least one whole frame
    period in the window (module docstring: Clocks)."""
    return rate * (1.0 + index / (rate * window_s))


GOALS = {
    "pose_p99_ms_with_fibre_delay": BUDGET_S * 1e3,
    "state_p99_ms_with_fibre_delay": BUDGET_S * 1e3,
    "motion_to_display_p99_ms_loopback": 1e3 / DISPLAY_HZ + 5.0,
}
#: Share of the time until the window ends in which the scripts act (see run_room).
ACTION_SHARE = 0.6
#: Who takes part: (participant id, role, what their script does).
PEOPLE = (
    ("surgeon", "surgeon", "cut"),
    ("expert1", "expert", "landmarks-left"),
    ("expert2", "expert", "landmarks-right"),
    ("trainee", "trainee", "point"),
)

# ------------------------------------------------------------------------------------------------ scripts


def _sway(t: float, side: float) -> dict[str, Any]:
    """A head beside the twin (``side`` -1 left, +1 right, 0 front), swaying 4 cm either way every 2 s."""
    dx = 0.04 if int(t / 0.5) % 2 else -0.04
    return {"position": [round(side * 0.3 + dx, 3), 0.25, 0.45], "look_at": [0.0, 0.0, 0.0]}


def make_script(action: str, length_s: float) -> dict[str, Any]:
    """A motion script (docs/scripts.md) of ``length_s`` seconds for one of :data:`PEOPLE`'s actions.

    Hands are placed in world metres, pointing at the twin at the origin (no aims to resolve: a
    resolved aim is a few picks, a hitch in the frame it falls on).
    """
    side = {"landmarks-left": -1.0, "landmarks-right": 1.0, "cut": 0.5, "point": -0.5}[action]
    frames: list[dict[str, Any]] = []
    t = 0.0
    if action == "cut":
        frames.append({"t": 0.0, "name": "start", "head": _sway(0, side), "tool": {"right": "section"}})
        while t < length_s:
            y = -0.05 + 0.02 * (int(t / 2) % 3)
            out = {"position": [0.35, y, -0.1], "look_at": [-1.0, y, -0.1]}  # beside the twin, ray across it
            cut = {"position": [0.05, y, -0.1], "look_at": [-1.0, y, -0.1]}  # the plane through the twin
            frames += [
                {"t": t + 0.5, "head": _sway(t + 0.5, side), "right": {**out, "trigger": 0.0}},
                {"t": t + 0.6, "right": {**out, "trigger": 1.0}},
                {"t": t + 1.0, "head": _sway(t + 1.0, side), "right": {**cut, "trigger": 1.0}},
                {"t": t + 1.1, "right": {**cut, "trigger": 0.0}},
                {"t": t + 1.5, "head": _sway(t + 1.5, side), "right": {**cut, "buttons": ["thumbstick"]}},  # clear it
                {"t": t + 1.6, "right": {**cut, "buttons": []}},
                {"t": t + 2.0, "head": _sway(t + 2.0, side)},
            ]  # fmt: skip
            t += 2.0
    elif action.startswith("landmarks"):
        frames.append({"t": 0.0, "name": "start", "head": _sway(0, side), "tool": {"right": "landmark"}})
        k = 0
        t = 0.5 if side < 0 else 1.0  # the two experts take turns
        while t < length_s:
            x, y = side * (0.02 + 0.01 * (k % 3)), 0.01 * (k % 2)
            hand = {"position": [x, y + 0.02, 0.3], "look_at": [x * 0.5, y, 0.0]}
            frames += [
                {"t": t, "head": _sway(t, side), "right": {**hand, "trigger": 0.0}},
                {"t": t + 0.1, "right": {**hand, "trigger": 1.0}},
                {"t": t + 0.2, "right": {**hand, "trigger": 0.0}},
                {"t": t + 0.5, "head": _sway(t + 0.5, side), "right": {**hand, "buttons": ["b"]}},  # undo it
                {"t": t + 0.6, "right": {**hand, "buttons": []}},
            ]
            k += 1
            t += 1.0
    else:  # point: the right hand's ray sweeps across the twin, trigger never pressed
        frames.append({"t": 0.0, "name": "start", "head": _sway(0, side), "tool": {"right": "select"}})
        while t < length_s:
            t += 0.5
            x = 0.04 if int(t / 0.5) % 2 else -0.04
            frames.append({"t": t, "head": _sway(t, side), "right": {"position": [-0.15, 0.0, 0.3], "look_at": [x, 0.0, 0.0]}})
    frames.append({"t": round(t + 0.5, 3), "name": "end"})
    return {"version": 1, "description": f"bench/consult.py: {action}", "keyframes": frames}


# ------------------------------------------------------------------------------------------------ a room


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_room(delay_ms: float, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One consultation of :data:`PEOPLE` with ``delay_ms`` of one-way delay on every link; its figures."""
    env = {**os.environ, "MEDVERSE_SECRET": SECRET, "MEDVERSE_HOME": str(workdir / "home")}
    load_before = os.getloadavg()[0]
    server = await asyncio.create_subprocess_exec(
        MEDVERSE, "consult", "serve", "--port", "0", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert server.stdout is not None
    line = (await asyncio.wait_for(server.stdout.readline(), 30)).decode()
    url = line.split("serving on ")[1].split()[0]
    room = f"consult-{delay_ms:g}ms".replace(".", "_")
    people = PEOPLE[: args.people]
    n = len(people)
    measure_from = time.time() + args.stagger * n + args.warmup
    measure_until = measure_from + args.duration
    # Nobody leaves before every op has reached everyone, so that the final digests can be compared.
    leave_at = measure_until + 3.0
    procs = []
    try:
        for i, (name, role, action) in enumerate(people):
            script = workdir / f"{room}-{name}.json"
            # Script time is frames / rate from this participant's first frame: on a machine that cannot keep
            # the rate it falls behind the wall clock, and an op made after the others left would keep the
            # digests apart. So the scripts take the first 60% of the time left (then everyone holds still;
            # poses still go out every frame): ops end inside the window unless frames fall below 60% of the rate.
            script.write_text(json.dumps(make_script(action, ACTION_SHARE * (measure_until - time.time()))))
            report = workdir / f"{room}-{name}.report.json"
            log = open(workdir / f"{room}-{name}.log", "wb")  # noqa: SIM115 (closed after the run)
            # Half the delay at each end: a datagram crosses one proxy of each end (module docstring).
            delay = ["--delay-ms", f"{delay_ms / 2:g}"] if delay_ms else []
            twin = ["--twin", args.twin] if i == 0 else []
            rate = f"{participant_rate(args.rate, i, args.duration):.6f}"
            if i < args.renderers:
                nice = [] if args.frame_nice is None else ["--frame-nice", str(args.frame_nice)]
                how = ["--backend", "sim", "--script", str(script), "--width", str(args.width), "--height",
                       str(args.height), "--rate", rate, *nice]  # fmt: skip
            else:  # headless: a pose a frame, two ops a second
                how = ["--backend", "none", "--pose-rate", rate, "--ops-rate", "2",
                       "--ops-stop-at", f"{time.time() + ACTION_SHARE * (measure_until - time.time()):.3f}"]  # fmt: skip
            proc = await asyncio.create_subprocess_exec(
                MEDVERSE, "consult", "join", "--server", url,
                "--token", issue_token(SECRET.encode(), room, name, role), *twin, *how,
                "--leave-at", f"{leave_at:.3f}", "--measure-from", f"{measure_from:.3f}",
                "--measure-until", f"{measure_until:.3f}", "--report", str(report), "--net", args.net, *delay,
                env=env, stdout=log, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            procs.append((name, role, report, log, proc))
            # one at a time: loading the twin and creating a GL context take a core for a second
            await asyncio.sleep(args.stagger)
        await asyncio.sleep(max(0.0, measure_from - time.time()))
        cpu0, t0 = _proc_cpu(server.pid), time.monotonic()
        await asyncio.sleep(max(0.0, measure_until - time.time()))
        server_cpu = (_proc_cpu(server.pid) - cpu0) / (time.monotonic() - t0)
        load_window = os.getloadavg()[0]
        failures = []
        for name, _, _, log, proc in procs:
            await asyncio.wait_for(proc.wait(), args.duration + 120)
            log.close()
            if proc.returncode != 0:
                failures.append(f"{name}: exit {proc.returncode}: {Path(log.name).read_text()[-400:]}")
    finally:
        for *_, proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        server.terminate()
        await server.wait()
    reports = {name: json.loads(report.read_text()) for name, _, report, _, _ in procs if report.exists()}
    figures = summarize_room(reports, delay_ms, args.duration)
    figures["roles"] = {name: role for name, role, *_ in procs}
    figures["failures"] = failures
    figures["server_cpu_share"] = round(server_cpu, 3)
    figures["load_avg_1min"] = [round(load_before, 2), round(load_window, 2)]
    return figures


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def _kind_figures(summaries: list[dict[str, Any]], delay_ms: float) -> dict[str, Any]:
    """Room figures of one kind from per-participant summaries (``net.latency`` JSON form)."""
    summaries = [s for s in summaries if s]
    if not summaries:
        return {"count": 0, "p50_ms": None, "p99_ms": None, "within_budget": None, "medverse_p99_ms": None}
    count = sum(s["count"] for s in summaries)
    p99 = max(s["p99_ms"] for s in summaries)
    return {
        "count": count,
        "p50_ms": _median([s["p50_ms"] for s in summaries]),
        "p99_ms": round(p99, 3),
        "max_ms": round(max(s["max_ms"] for s in summaries), 3),
        "within_budget": round(sum(s["within_budget"] * s["count"] for s in summaries) / count, 4),
        "medverse_p99_ms": round(p99 - delay_ms, 3),
    }


def summarize_room(reports: dict[str, dict[str, Any]], delay_ms: float, window_s: float) -> dict[str, Any]:
    """Per-participant and room figures of one consultation from its participants' reports."""
    each: dict[str, Any] = {}
    for name, r in reports.items():
        room = r["latency"]["room"]
        # The poses each one sent in the window, counted by its receivers: one per rendered frame.
        sent = [links[name]["pose"]["count"] for other, o in reports.items() if other != name
                for links in [o["latency"]["links"]] if links.get(name, {}).get("pose")]  # fmt: skip
        mtd = r.get("consult", {}).get("motion_to_display")
        each[name] = {
            "pose": room["pose"],
            "state": room["state"],
            "fps_in_window": round(statistics.median(sent) / window_s, 1) if sent else None,
            "frames": r.get("consult", {}).get("frames"),
            "cpu_share": r.get("cpu_share"),
            "op_count": r["state"]["op_count"],
            "digest": r["state"]["digest"][:16],
            "motion_to_display": mtd.get("room", mtd) if isinstance(mtd, dict) else None,
            "motion_to_display_parts": mtd.get("parts") if isinstance(mtd, dict) else None,
            "gl_errors": r.get("consult", {}).get("gl_errors"),
        }
    mtd_each = [e["motion_to_display"] for e in each.values() if e["motion_to_display"]]
    return {
        "delay_ms": delay_ms,
        "participants": len(reports),
        "pose": _kind_figures([e["pose"] for e in each.values()], delay_ms),
        "state": _kind_figures([e["state"] for e in each.values()], delay_ms),
        "motion_to_display": _kind_figures(mtd_each, delay_ms) if mtd_each else None,
        "fps_in_window_min": min((e["fps_in_window"] for e in each.values() if e["fps_in_window"]), default=None),
        "fps_in_window_median": _median([e["fps_in_window"] for e in each.values() if e["fps_in_window"]]),
        "converged": len({r["state"]["digest"] for r in reports.values()}) == 1,
        "each": each,
    }


def check_goals(rooms: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's goals, each with the measured value and whether it was met (None: not measured)."""
    delayed = next((r for r in rooms if abs(r["delay_ms"] - FIBRE_MS) < 1e-9), None)
    loopback = next((r for r in rooms if r["delay_ms"] == 0), None)

    def goal(value: float | None, limit: float) -> dict[str, Any]:
        return {"value": value, "limit": round(limit, 3), "met": None if value is None else value < limit}

    mtd = loopback["motion_to_display"] if loopback else None
    return {
        "pose_p99_ms_with_fibre_delay": goal(delayed["pose"]["p99_ms"] if delayed else None,
                                             GOALS["pose_p99_ms_with_fibre_delay"]),
        "state_p99_ms_with_fibre_delay": goal(delayed["state"]["p99_ms"] if delayed else None,
                                              GOALS["state_p99_ms_with_fibre_delay"]),
        "motion_to_display_p99_ms_loopback": goal(mtd["p99_ms"] if mtd else None,
                                                  GOALS["motion_to_display_p99_ms_loopback"]),
    }  # fmt: skip


def _ms(value: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def print_table(rooms: list[dict[str, Any]], goals: dict[str, Any]) -> None:
    print(f"{'delay':>6} {'who':9} {'pose p50':>8} {'p99':>7} {'<30ms':>6} {'op p50':>7} {'p99':>7} {'<30ms':>6} "
          f"{'n ops':>5} {'m2d p99':>7} {'fps':>5} {'cpu':>5}")  # fmt: skip
    for r in rooms:
        rows = [(name, e["pose"] or {}, e["state"] or {}, e["motion_to_display"] or {}, e["fps_in_window"],
                 e["cpu_share"]) for name, e in r["each"].items()]  # fmt: skip
        rows.append(("ROOM", r["pose"], r["state"], r["motion_to_display"] or {}, r["fps_in_window_median"], None))
        for name, pose, state, mtd, fps, cpu in rows:
            print(f"{r['delay_ms']:>6g} {name:9} {_ms(pose.get('p50_ms')):>8} {_ms(pose.get('p99_ms')):>7} "
                  f"{_ms(pose.get('within_budget'), '{:.1%}'):>6} {_ms(state.get('p50_ms')):>7} "
                  f"{_ms(state.get('p99_ms')):>7} {_ms(state.get('within_budget'), '{:.1%}'):>6} "
                  f"{state.get('count', 0):>5} {_ms(mtd.get('p99_ms')):>7} {_ms(fps, '{:.1f}'):>5} "
                  f"{_ms(cpu):>5}")  # fmt: skip
        print(f"{'':>6} medverse's share at p99 (p99 - {r['delay_ms']:g} ms): poses {_ms(r['pose']['medverse_p99_ms'])} ms, "
              f"ops {_ms(r['state']['medverse_p99_ms'])} ms; converged {r['converged']}; server cpu "
              f"{r['server_cpu_share']}; load {r['load_avg_1min'][0]}-{r['load_avg_1min'][1]}"
              + (f"; FAILURES: {r['failures']}" if r["failures"] else ""))  # fmt: skip
        for name, e in r["each"].items():
            parts, whole = e.get("motion_to_display_parts"), e["motion_to_display"]
            if parts and whole:
                said = ", ".join(f"{part.replace('_', ' ')} {_ms(f['p50_ms'])}/{_ms(f['p99_ms'])}"
                                 for part, f in parts.items())  # fmt: skip
                print(f"{'':>6} {name}'s motion-to-display p50/p99 ms: {_ms(whole['p50_ms'])}/{_ms(whole['p99_ms'])}"
                      f" = {said}")  # fmt: skip
    for name, g in goals.items():
        verdict = "not measured" if g["met"] is None else "met" if g["met"] else "NOT met"
        print(f"goal {name}: {g['value']} (limit {g['limit']}) -> {verdict}")


async def run_rooms(args: argparse.Namespace, delays: list[float]) -> list[dict[str, Any]]:
    rooms = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.keep) if args.keep else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for delay in delays:
            print(f"running a consultation of {args.people} ({min(args.renderers, args.people)} rendering) at "
                  f"{args.width}x{args.height} per eye, {args.rate:g} Hz, "
                  f"{delay:g} ms one way on every link, network in a {args.net}, {args.duration:g} s measured "
                  f"(load {os.getloadavg()[0]:.2f}) ...",
                  flush=True)  # fmt: skip
            rooms.append(await run_room(delay, args, workdir))
    return rooms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delays", default=f"0,{FIBRE_MS:g}",
                        help="one-way delays to run, ms, comma-separated: one room each (default %(default)s)")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per room (default %(default)s)")
    parser.add_argument("--warmup", type=float, default=6.0,
                        help="seconds after the last participant started before measuring (default %(default)s)")
    parser.add_argument("--stagger", type=float, default=1.5, help="seconds between participants starting (default %(default)s)")
    parser.add_argument("--width", type=int, default=160, help="pixels per eye (default %(default)s)")
    parser.add_argument("--height", type=int, default=160, help="pixels per eye (default %(default)s)")
    parser.add_argument("--rate", type=float, default=45.0,
                        help="frames (and poses) per second; four renderers at 90 Hz do not fit two cores (default %(default)s)")
    parser.add_argument("--twin", default="brain", help="the room's twin (default %(default)s)")
    parser.add_argument("--people", type=int, default=len(PEOPLE), choices=range(2, len(PEOPLE) + 1),
                        help="how many take part: the first N of surgeon, expert1, expert2, trainee (default %(default)s)")
    parser.add_argument("--renderers", type=int, default=len(PEOPLE),
                        help="how many participants render (the first N); the others join headless (default %(default)s)")
    parser.add_argument("--net", choices=("process", "thread"), default="process",
                        help="each participant's network in a process of its own or a thread of the frame's (join --net)")
    parser.add_argument("--frame-nice", type=int, help="the renderers' join --frame-nice (default: join's)")
    parser.add_argument("--keep", help="keep the scripts, logs and reports in this folder")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "consult.json"),
                        help="JSON output (default %(default)s)")
    args = parser.parse_args()
    try:
        delays = [float(d) for d in args.delays.split(",")]
    except ValueError:
        parser.error("--delays takes numbers, e.g. 0,22.5")
    if min(args.duration, args.rate) <= 0 or min(args.width, args.height, args.renderers) < 1 or any(d < 0 for d in delays):
        parser.error("--duration, --rate, --width, --height and --renderers must be positive, --delays >= 0")
    load_start = os.getloadavg()
    rooms = asyncio.run(run_rooms(args, delays))
    goals = check_goals(rooms)
    people = [{"id": p, "role": r, "script": a, "rate": round(participant_rate(args.rate, i, args.duration), 6)}
              for i, (p, r, a) in enumerate(PEOPLE[: args.people])]  # fmt: skip
    result = {
        "benchmark": "consult",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_avg_start": [round(x, 2) for x in load_start],
            "load_avg_end": [round(x, 2) for x in os.getloadavg()],
        },
        "config": {k: getattr(args, k)
                   for k in ("duration", "warmup", "stagger", "width", "height", "rate", "twin", "net", "renderers",
                           "frame_nice")}
        | {"delays_ms": delays, "people": people},
        "rooms": rooms,
        "goals": goals,
    }
    print_table(rooms, goals)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
