"""`medverse demo`: the headless demo on the bundled twins, what `make demo` runs.

It builds (or maps from the cache) every bundled twin from the real anatomical data in installed
packages and prints each one's summary, then runs a session in the headless simulator
(:mod:`sessions.sim`) on the demo twin: a scripted user (``sessions/scripts/brain-tools.json``) selects
a hemisphere, places two landmarks and measures between them, cuts a cross-section, scales the twin
with both hands, draws a stroke and undoes it, at 90 Hz, both eyes rendered offscreen through EGL;
the frame of each step is written as PNG (left eye on the left). A twin other than ``brain`` is
orbited instead.

Then a scripted trainee takes a training module on the skull three times, getting better each time
(:data:`DEMO_MODULE`, scripts ``<module>-attempt1..3`` in ``sessions/training/scripts/``): every
action goes as an xAPI statement into a fresh profile (``<out>/profiles.sqlite``), each attempt ends
with its score table, and the trainee's HTML report is written (``<out>/report.html``).

Last, a short consultation on loopback (:func:`consultation`, in ``<out>/consult/``): a signaling
server on a free port with a fresh secret, and three ``medverse consult join --backend sim`` processes
(real aiortc peers, each rendering the twin): the surgeon cuts a cross-section, the expert places two
landmarks and measures between them, the trainee points (``sessions/consult/scripts/``); each writes
its frames as PNG, and the surgeon records the room (``--record``); the recording is replayed
(``consult replay``) to PNGs, and its final state digest is checked against the participants'. The
latency report is ``<out>/consult/latency.json``.
Everything it made, the intents and the attempts included, is listed in ``<out>/demo.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from assets.errors import AssetError
from assets.library import BUNDLED, DEFAULT_TWIN, Library
from assets.twin import Twin
from assets.validate import is_watertight
from sessions.cli.twin import console, progress_bar, summary
from sessions.intents import describe


class DemoError(RuntimeError):
    """A part of the demo did not finish (the message says which, and where its log is)."""


USER_ERRORS: tuple[type[BaseException], ...] = (AssetError, DemoError)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``demo``."""
    p = sub.add_parser("demo", help="headless demo on the bundled twins (what 'make demo' runs)",
                       description="Build the bundled twins from real anatomical data and summarise them.")
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default %(default)s)")
    p.add_argument("--twin", default=DEFAULT_TWIN, choices=sorted(BUNDLED),
                   help="the twin the simulator renders (default %(default)s)")
    p.add_argument("--frames", type=int, help="simulated frames at 90 Hz (default: the whole script; 90 orbiting)")
    p.add_argument("--every", type=int, default=0, help="also write every Nth frame as PNG (default: each step's frame)")
    p.add_argument("--width", type=int, default=720, help="pixels per eye, horizontally (default %(default)s)")
    p.add_argument("--height", type=int, default=800, help="pixels per eye, vertically (default %(default)s)")
    p.set_defaults(func=_demo)


def twin_record(twin: Twin, seconds: float) -> dict[str, Any]:
    """JSON-ready summary of a twin: structures, triangles, bounds (mm), watertightness."""
    return {
        "name": twin.name,
        "seconds": round(seconds, 4),
        "triangles": twin.triangle_count,
        "source_units": twin.source_units,
        "bounds_mm": (twin.bounds() * 1000.0).round(2).tolist(),
        "structures": [
            {"name": s.name, "triangles": s.triangle_count, "vertices": s.vertex_count,
             "bounds_mm": (s.bounds() * 1000.0).round(2).tolist(), "watertight": is_watertight(s),
             "lods": [{"triangles": lod.triangle_count, "error_mm": round(lod.error_mm, 3)} for lod in s.lods]}
            for s in twin.structures
        ],
    }


#: The demo's scripted user, shipped with the package.
DEMO_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "brain-tools.json"


def _demo(args: argparse.Namespace) -> int:
    from sessions.run import SessionConfig  # noqa: PLC0415
    from sessions.sim import simulate  # noqa: PLC0415 - GL is loaded only when the demo renders
    from xrcore.motion import load_script  # noqa: PLC0415

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    library = Library()
    report: dict[str, Any] = {"twins": []}
    twins: dict[str, Twin] = {}
    for name in sorted(BUNDLED, key=lambda n: n != args.twin):
        started = time.perf_counter()
        with progress_bar(f"twin {name}") as progress:
            twins[name] = library.build(name, progress=progress)
        report["twins"].append(twin_record(twins[name], time.perf_counter() - started))
        console.print(summary(twins[name]))
    scripted = args.twin == "brain"
    motion: Any = load_script(DEMO_SCRIPT) if scripted else "orbit"
    what = "a scripted user working on" if scripted else "orbiting"
    with progress_bar(f"simulating {what} {args.twin}") as progress:
        progress("rendering", 0.0)
        run = simulate(
            twins[args.twin], frames=args.frames if args.frames or scripted else 90, out_dir=out / "frames",
            every=args.every if args.every or scripted else 30, motion=motion, width=args.width, height=args.height,
            session=SessionConfig(user="demo", hud=True, geodesic=True),
        ).as_dict()  # fmt: skip
    report["simulator"] = run
    stats = run["stats"]
    cpu, gpu = stats.get("cpu_ms", {}), stats.get("gpu_ms", {})
    console.print(f"simulator: {run['frames']} frames of {args.twin!r}, {run['renderer']['width']}x"
                  f"{run['renderer']['height']} per eye, stereo {run['renderer']['stereo']}, "
                  f"{run['renderer']['gl_renderer']}; CPU ms median {cpu.get('median', float('nan')):.2f}"
                  f" p99 {cpu.get('p99', float('nan')):.2f}, GPU ms median {gpu.get('median', float('nan')):.2f}")
    for record in run["intents"]:
        if record["kind"] != "tool":
            console.print(f"  {record['time']:6.2f} s  {describe(record)}")
    for path in run["written"]:
        console.print(f"  frame: {path}")
    report["training"] = _training(out)
    report["consultation"] = consultation(out / "consult")
    path = out / "demo.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    console.print(f"demo output: {out.resolve()} (summary {path.name}, {len(run['written'])} stereo PNGs in frames/)")
    return 0


#: The module the demo's scripted trainee takes three times, and who they are.
DEMO_MODULE = "skull-craniometric-landmarks"
DEMO_TRAINEE = "demo-trainee"
DEMO_ATTEMPTS = 3


def _training(out: Path) -> dict[str, Any]:
    """Three attempts at :data:`DEMO_MODULE` into a fresh profile, then the trainee's report."""
    from sessions.cli.train import print_summary  # noqa: PLC0415 - training loads only when the demo gets here
    from sessions.profiles import ProfileWriter, open_store  # noqa: PLC0415
    from sessions.profiles.report import write_report  # noqa: PLC0415
    from sessions.training.run import train  # noqa: PLC0415

    profile = out / "profiles.sqlite"
    for stale in (profile, profile.with_name(profile.name + "-wal"), profile.with_name(profile.name + "-shm")):
        stale.unlink(missing_ok=True)  # the demo's trainee starts with an empty record every run
    attempts: list[dict[str, Any]] = []
    console.print(f"training: {DEMO_TRAINEE} takes {DEMO_MODULE!r} {DEMO_ATTEMPTS} times (scripted, simulator)")
    with ProfileWriter(profile) as writer:
        for n in range(1, DEMO_ATTEMPTS + 1):
            result = train(DEMO_MODULE, DEMO_TRAINEE, script=f"{DEMO_MODULE}-attempt{n}", writer=writer, store=profile,
                           out=out / "training")  # fmt: skip
            print_summary(result)
            attempts.append({"attempt": n, "score": round(result.score, 4), "passed": result.success,
                             "errors": result.summary.errors, "seconds": round(result.summary.duration_s, 2),
                             "accuracy_mm": result.summary.accuracy_mm, "statements": len(result.statements),
                             "adapted": result.adaptation})  # fmt: skip
    with open_store(profile) as store:
        check = store.verify(DEMO_TRAINEE)
        html = write_report(store, DEMO_TRAINEE, out / "report.html")
    scores = " -> ".join(f"{a['score']:.2f}" for a in attempts)
    console.print(f"training: scores {scores}; profile {profile.resolve()} ({check.count} statements, chain "
                  f"{'intact' if check.ok else 'BROKEN'}); report {html.resolve()}")  # fmt: skip
    return {"module": DEMO_MODULE, "trainee": DEMO_TRAINEE, "attempts": attempts, "profile": str(profile),
            "chain": check.reason, "report": str(html)}


#: The demo's consultation: (participant id, role, script in ``sessions/consult/scripts/``).
DEMO_CONSULT = (("surgeon", "surgeon", "surgeon-cut"), ("expert", "expert", "expert-measure"),
                ("trainee", "trainee", "trainee-point"))  # fmt: skip
CONSULT_SCRIPTS = Path(__file__).resolve().parents[1] / "consult" / "scripts"
#: Seconds the demo's surgeon waits before cutting, beyond its script: the others join after it.
SURGEON_WAITS_S = 3.0
#: Seconds after joining before latency counts: loading the twin and the GL context, links opening.
WARMUP_S = 2.0
#: Frames a second each participant renders. A script's time is its frames over this rate, so a
#: participant that cannot keep it acts late: three software renderers on two cores keep 20 Hz (at 30
#: the first one in, slowed by the others' start-up, reached its cut after the room had ended).
CONSULT_RATE_HZ = 20.0
#: Seconds a participant may stay beyond the consultation's length: they are told to leave together.
LEAVE_CAP_S = 60.0


def consultation(folder: Path, seconds: float = 10.0, size: int = 240) -> dict[str, Any]:
    """A consultation of :data:`DEMO_CONSULT` on loopback for ``seconds``, recorded and replayed.

    Runs ``medverse`` as commands (the server, each participant, the replay), as a user would, into
    ``folder``: ``consult.secret`` (fresh each run), ``frames/<participant>/`` (``size`` x ``size``
    pixels per eye at :data:`CONSULT_RATE_HZ`), ``<participant>.json`` (each one's report), ``session.mvr`` (the
    recording), ``replay/`` (its PNGs), ``latency.json`` (the latency report), ``*.log``.

    Returns
    -------
    dict
        The latency report: per participant one-way latency of poses and ops after :data:`WARMUP_S`
        (ms, and the share within 30 ms), frames, PNGs and state digest; whether everyone converged; the replay's digest and
        whether it equals theirs.

    Raises
    ------
    DemoError
        A process failed or the server did not start (the message names its log).
    """
    from net.tokens import issue_token, load_secret  # noqa: PLC0415 - only the consultation needs them

    medverse = str(Path(sys.executable).with_name("medverse"))
    folder.mkdir(parents=True, exist_ok=True)
    for made in ("frames", "replay"):
        shutil.rmtree(folder / made, ignore_errors=True)
    recording = folder / "session.mvr"
    recording.unlink(missing_ok=True)
    secret_file = folder / "consult.secret"
    secret_file.unlink(missing_ok=True)
    descriptor = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    secret, _ = load_secret(str(secret_file))
    room = "demo-consult"
    console.print(f"consultation: {', '.join(f'{n} ({s})' for n, _, s in DEMO_CONSULT)} in room {room!r} on loopback, "
                  f"{seconds:g} s, recorded by the surgeon")  # fmt: skip
    logs: list[Any] = []

    def start(name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(folder / f"{name}.log", "wb")  # noqa: SIM115 - closed once every process is done
        logs.append(log)
        return subprocess.Popen([medverse, "consult", *argv], stdout=log, stderr=subprocess.STDOUT)

    def failed(name: str, what: str) -> DemoError:
        return DemoError(f"consultation: {name} {what}; see {folder / (name + '.log')}")

    server = subprocess.Popen([medverse, "consult", "serve", "--port", "0", "--secret-file", str(secret_file)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if "serving on " not in line:
            raise DemoError(f"consultation: the signaling server did not start: {line.strip() or 'no output'}")
        url = line.split("serving on ")[1].split()[0]

        def token(name: str, role: str) -> str:
            return issue_token(secret, room, name, role, ttl_s=600)

        for name, role, script in DEMO_CONSULT:
            path = CONSULT_SCRIPTS / f"{script}.json"
            if role == "surgeon":
                # the surgeon joins first and cuts after the expert has measured: later by the others' head start
                late = json.loads(path.read_text())
                for keyframe in late["keyframes"][1:]:
                    keyframe["t"] += SURGEON_WAITS_S
                path = folder / f"{script}.json"
                path.write_text(json.dumps(late))
            # the surgeon names the room's twin and records
            twin = ["--twin", "brain", "--record", str(recording)] if role == "surgeon" else []
            procs[name] = start(name, [
                "join", "--backend", "sim", "--server", url, "--token", token(name, role), *twin,
                "--script", str(path), "--out", str(folder / "frames" / name),
                "--width", str(size), "--height", str(size), "--rate", f"{CONSULT_RATE_HZ:g}",
                "--every", f"{CONSULT_RATE_HZ:g}",
                "--duration", f"{seconds + LEAVE_CAP_S:g}", "--warmup", f"{WARMUP_S:g}",
                "--report", str(folder / f"{name}.json")])  # fmt: skip
            if role == "surgeon":
                # The others join once the surgeon is in the room (its recording has begun), so the room's
                # twin is named (by signaling, from the surgeon's announcement) when they arrive.
                _wait_for_room(recording, procs[name], timeout_s=60.0)
        # Everyone leaves together, `seconds` after the last one drew its first frame (its first PNG; SIGTERM:
        # a join leaves in order): each draws for `seconds` at least and the first ones in for longer, so
        # nobody leaves while another may still act on its script.
        def until(done: Any, limit_s: float, what: str) -> None:
            deadline = time.monotonic() + limit_s
            while not done():
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        raise failed(name, f"exited early with {proc.returncode}")
                if time.monotonic() > deadline:
                    raise DemoError(f"consultation: {what} within {limit_s:g} s; see the logs in {folder}")
                time.sleep(0.1)

        until(lambda: all(any((folder / "frames" / n).glob("*.png")) for n in procs), 60.0, "not everyone drew a frame")
        together = time.monotonic() + seconds
        until(lambda: time.monotonic() >= together, seconds + 1.0, "the consultation did not end")
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for name, _, _ in DEMO_CONSULT:
            if procs[name].wait(timeout=120) != 0:
                raise failed(name, f"exited with {procs[name].returncode}")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        server.terminate()
        server.wait(timeout=10)
        for log in logs:
            log.close()
    replay_dir = folder / "replay"
    with open(folder / "replay.log", "wb") as log:
        replay = [medverse, "consult", "replay", str(recording), "--out", str(replay_dir), "--every", "1",
                  "--width", str(size), "--height", str(size)]  # fmt: skip
        if subprocess.run(replay, stdout=log, stderr=subprocess.STDOUT, check=False).returncode:
            raise failed("replay", "failed")
    state = subprocess.run([medverse, "consult", "replay", str(recording), "--json"], capture_output=True, text=True,
                           check=False)  # fmt: skip
    if state.returncode:
        raise DemoError(f"consultation: consult replay --json failed: {state.stderr.strip()[-300:]}")
    replayed = json.loads(state.stdout)
    return _consult_report(folder, recording, replay_dir, replayed)


def _wait_for_room(recording: Path, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Wait until the surgeon (``proc``) is in the room: its recording's header is written once it has
    joined (and so named the room's twin, which signaling holds). DemoError if ``proc`` exits or time
    runs out."""
    from sessions.recording.format import RecordingError, read_recording  # noqa: PLC0415

    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(OSError, RecordingError):  # not created, or no header yet
            read_recording(recording)
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise DemoError(f"consultation: the surgeon did not join; see {recording.parent / 'surgeon.log'}")
        time.sleep(0.1)


def _consult_report(folder: Path, recording: Path, replay_dir: Path, replayed: dict[str, Any]) -> dict[str, Any]:
    """The consultation's latency report (see :func:`consultation`), written to ``latency.json`` and printed."""
    people: dict[str, Any] = {}
    for name, role, _ in DEMO_CONSULT:
        r = json.loads((folder / f"{name}.json").read_text())
        people[name] = {
            "role": role,
            "pose": r["latency"]["room"]["pose"],
            "state": r["latency"]["room"]["state"],
            "links": r["latency"]["links"],
            "op_count": r["state"]["op_count"],
            "digest": r["state"]["digest"],
            "frames": r.get("consult", {}).get("frames"),
            "pngs": r.get("consult", {}).get("written", []),
            "report": str(folder / f"{name}.json"),
        }
    digests = {p["digest"] for p in people.values()}
    report = {
        "room": "demo-consult",
        "budget_ms": 30.0,
        "participants": people,
        "converged": len(digests) == 1,
        "recording": str(recording),
        "replay": {
            "folder": str(replay_dir),
            "pngs": len(list(replay_dir.glob("*.png"))),
            "digest": replayed["digest"],
            "op_count": replayed["op_count"],
            "problem": replayed["problem"],
        },
        "replay_matches": digests == {replayed["digest"]},
    }
    path = folder / "latency.json"
    path.write_text(json.dumps(report, indent=1) + "\n")

    def ms(summary: dict[str, Any] | None) -> str:
        if not summary:
            return "-"
        return f"p50 {summary['p50_ms']:.1f} ms, p99 {summary['p99_ms']:.1f} ms, {summary['within_budget']:.0%} within 30 ms"

    for name, p in people.items():
        frames = f"{p['frames']} frames, {len(p['pngs'])} PNGs in {folder / 'frames' / name}"
        console.print(f"  {name} ({p['role']}): poses {ms(p['pose'])}; ops {ms(p['state'])}; {frames}; "
                      f"digest {p['digest'][:16]}")  # fmt: skip
    console.print(f"consultation: {'converged' if report['converged'] else 'NOT converged'} ({len(digests)} digest(s)); "
                  f"recording {recording}; replay {len(list(replay_dir.glob('*.png')))} PNGs in {replay_dir}, digest "
                  f"{replayed['digest'][:16]} {'=' if report['replay_matches'] else '!='} the participants'; "
                  f"latency report {path}")  # fmt: skip
    return report
