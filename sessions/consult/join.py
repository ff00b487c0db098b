"""``medverse consult join --backend sim|openxr|desktop|auto``: a participant in the room with the twin rendered.

Joins the room, learns (or, as its first surgeon, names) the room's twin and checks its content hash:
with ``--twin NAME`` the twin is loaded first and announced to signaling (name and content hash),
which makes it the room's when the room has none and the token's role is surgeon. A participant that
finds no twin named waits up to ``--twin-wait`` seconds for one (a surgeon joining a moment later),
then loads its own ``--twin`` (or ``brain``) unchecked, saying so in one line. Then it runs the session
loop with the chosen backend:

- ``sim``: the simulator, played by ``--script`` (a motion script, as ``medverse sim`` takes), writing
  its frames as PNG to ``--out``, paced at ``--rate``;
- ``openxr``: a headset, through :func:`sessions.headset.run_headset` (the twin on a table in front of
  the user; the runtime paces the frames);
- ``desktop``: a window, through :class:`sessions.desktop.DesktopSession` (mouse and keys as in
  ``medverse view``), ``--width`` x ``--height`` pixels;
- ``auto``: a headset when an OpenXR runtime offers one, else a window when there is a display, else
  the simulator.

Once a second it prints the heads-up line of every remote
(``heads-up NAME t=...: bob: 3.1 ms, 100% within 30 ms; carol: STALE (1.2 s)``), and one line per
refusal of its own intents or ops (``refused NAME #n: observer may not move the twin``). The JSON report
(``--report``) is the participant's, with a ``consult`` section: the backend, the twin, frames, PNGs
written, the workspace as shown, heads-up lines, STALE transitions (UNIX times), the bridge's counters,
motion-to-display (from the moment a remote sampled a pose to the end of the submit of our first frame
that showed it, within the measurement window) and every intent applied.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

from assets.twin import Twin
from net.participant import Participant, ParticipantConfig
from net.tls import client_ssl
from sessions.consult.bridge import workspace_view
from sessions.consult.netproc import NetProcess, NetProcessError, NetSpec
from sessions.consult.network import SIM_FRAME_NICE, FrameRoom, NetThread, Network, favour_network
from sessions.consult.room import (
    ConsultSession,
    Pump,
    TwinMismatchError,
    announced,
    resolve_twin,
    twin_hash,
)
from sessions.run import FrameWriter, SessionConfig, SessionFactory, run
from sessions.sim import aim_resolver, working_scene
from xrcore.input import Picker
from xrcore.motion import ScriptError, load_script, procedural
from xrcore.scene import Scene


class JoinError(ValueError):
    """A rendered join cannot go ahead (the message says why, in one line)."""


def join_rendered(args: argparse.Namespace, config: ParticipantConfig, clock: Any, duration: float) -> int:
    """Run ``join`` with a rendering backend (see the module docstring); returns the exit code.

    The participant joins first (its loop in a process of its own, or a thread: ``--net``), then the twin
    and the GL context are made: the links open and stay alive while start-up blocks the frame thread."""
    if args.width < 1 or args.height < 1 or args.rate <= 0 or args.every < 0:
        raise JoinError("--width, --height and --rate must be positive and --every >= 0")
    # poses go out once a frame, from the frame loop; the participant's own pose loop stays off
    config = dataclasses.replace(config, pose_rate_hz=0.0, ops_rate_hz=0.0)
    try:
        net = _network(args, config, clock)
    except NetProcessError as exc:
        raise JoinError(f"the network process: {exc}") from None
    if args.record:
        net.record(args.record)
    stop = {"now": False}
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.update(now=True))
    wait_s = getattr(args, "twin_wait", TWIN_WAIT_S)
    try:
        mine = _load_twin(args.twin) if args.twin else None
        if mine is not None:
            net.announce_twin(announced(mine))
        welcome = net.start()
        held = net.room_twin(wait_s)
        if held is None:
            name = mine.name if mine is not None else "brain"
            print(f"medverse consult: no twin named in room {net.participant.room} after {wait_s:g} s: "
                  f"loading {name} unchecked", flush=True)  # fmt: skip
        try:
            twin = resolve_twin(held, args.twin, _load_twin, "brain", mine)
        except TwinMismatchError as exc:
            raise JoinError(str(exc)) from None
        room = FrameRoom(net)
        if args.record:
            net.begin_recording(twin.name, twin_hash(twin), welcome)
        try:
            report = _render(args, net, room, twin, duration, stop)
        except ScriptError as exc:
            raise JoinError(str(exc)) from None
    except NetProcessError as exc:  # the network process failed or is gone: one line, not a traceback
        raise JoinError(f"the network process: {exc}") from None
    finally:
        net.stop()
    if args.record:
        report["recording"] = args.record
    pose = report["latency"]["room"]["pose"] or {}
    print(f"medverse consult: {report['participant']} in {report['room']} with {report['consult']['twin']}: "
          f"{report['consult']['frames']} frames, {report['counters'].get('poses_applied', 0)} poses "
          f"(p50 {pose.get('p50_ms', float('nan')):.2f} ms, p99 {pose.get('p99_ms', float('nan')):.2f} ms), "
          f"{report['state']['op_count']} ops; digest {report['state']['digest'][:16]}", flush=True)  # fmt: skip
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=1) + "\n")
    return 0


def _network(args: argparse.Namespace, config: ParticipantConfig, clock: Any) -> Network:
    """The participant's network: in a process of its own (``--net process``, the default: no GIL shared
    with the frame loop, ``sessions.consult.netproc``) or in a thread of this one (``--net thread``)."""
    loop = getattr(args, "loop", "auto")
    if getattr(args, "net", "process") == "thread":
        participant = Participant(args.server, args.token, config, clock=clock, ssl=client_ssl(args.ca_file, args.insecure))
        return NetThread(participant, loop)
    spec = NetSpec(args.server, args.token, config, clock_offset=float(getattr(args, "clock_offset", 0.0) or 0.0),
                   ca_file=args.ca_file, insecure=bool(args.insecure), loop=loop,
                   log_level=logging.getLogger().getEffectiveLevel())  # fmt: skip
    return NetProcess(spec)


#: How long a participant that finds no twin named in the room waits for one (s), by default.
TWIN_WAIT_S = 10.0


def _load_twin(name: str) -> Twin:
    from sessions.cli.xr import load_twin  # noqa: PLC0415 - the CLI's resolver of names and files

    return load_twin(name)


def _render(args: argparse.Namespace, net: Network, room: FrameRoom, twin: Twin, duration: float,
            stop: dict[str, bool]) -> dict[str, Any]:  # fmt: skip
    participant = net.participant
    kind, headset = _backend(args.backend)
    # the simulator shares its machine with other participants (tests, benchmarks): its frames may wait;
    # a headset's or a window's frame thread keeps its priority against the machine's other programs
    nice = getattr(args, "frame_nice", None)
    favour_network((SIM_FRAME_NICE if kind == "sim" else 0) if nice is None else nice)
    sessions: list[ConsultSession] = []

    def make_session(scene: Scene, config: SessionConfig | None, picker: Picker) -> ConsultSession:
        config = dataclasses.replace(config or SessionConfig(), user=participant.name, hud=kind != "sim",
                                     geodesic=bool(getattr(args, "geodesic", False)))
        session = ConsultSession(scene, config, picker, net, room)
        if args.present:
            session.present()
        if args.follow:
            session.follow(args.follow)
        sessions.append(session)
        return session

    printed = [0.0]
    told = [0]

    def heads_up(elapsed: float) -> None:
        session = sessions[0]
        refusals = session.bridge.refusals
        for n in range(told[0], len(refusals)):  # each refusal once, counted, as it happens
            print(f"refused {participant.name} #{n + 1}: {refusals[n]}", flush=True)
        told[0] = len(refusals)
        if elapsed - printed[0] >= 1.0:
            printed[0] = elapsed
            lines = session.presence.lines(participant.clock())
            print(f"heads-up {participant.name} t={elapsed:.1f}s: " + ("; ".join(lines) or "alone"), flush=True)

    # the simulator is paced here; a headset's runtime and a window's buffer swap pace themselves
    pump = Pump(args.rate, duration, stop=lambda: stop["now"], tick=heads_up, pace=kind == "sim")
    writer = FrameWriter(args.out, args.every) if args.out and kind == "sim" else None
    if kind == "openxr":
        from sessions.headset import run_headset  # noqa: PLC0415 - OpenXR only for a headset

        def shown(frame: Any) -> bool:
            sessions[0].displayed()
            return pump(frame)

        done = run_headset(headset, twin, session_factory=make_session, on_frame=shown)
        gl_errors = done.gl_errors
    elif kind == "desktop":
        gl_errors = _run_desktop(args, twin, make_session, pump, sessions)
    else:
        gl_errors = _run_sim(args, twin, make_session, pump, writer, sessions)
    session = sessions[0]
    session.close()  # a measurement still measuring along the surface goes out now, before the last ops
    # a last moment for ops in flight, then the state everyone should share
    net.linger(0.3)
    for op, name in room.take():
        session.bridge.note_op(op, name)
    session.bridge.reconcile(force=True)
    report = net.report()
    report["consult"] = {
        "backend": kind,
        "twin": f"{twin.name} {twin_hash(twin)}",
        "frames": pump.frames,
        "gl_errors": gl_errors,
        "written": [str(w.path) for w in writer.written] if writer else [],
        "workspace": workspace_view(session.workspace),
        "heads_up": session.presence.lines(participant.clock()),
        "stale_events": [dataclasses.asdict(e) for e in session.stale_events],
        "bridge": dataclasses.asdict(session.bridge.counters),
        "motion_to_display": session.motion_to_display(),
        "geodesics": session.geodesics.counts if session.geodesics is not None else None,
        "intents": [i.record() for i in session.workspace.applied],
    }
    return report


def _backend(wanted: str) -> tuple[str, Any]:
    """The backend kind to join with (``sim``, ``openxr`` or ``desktop``) and, for ``openxr``, the backend
    (made, not started). ``auto``: a headset when an OpenXR runtime offers one, else a desktop window when
    there is a display, else the simulator; each fallback said in one line."""
    if wanted in ("sim", "desktop"):
        return wanted, None
    from xrcore.backends import BackendUnavailableError, create  # noqa: PLC0415 - OpenXR only when asked

    try:
        return "openxr", create("openxr")
    except BackendUnavailableError as exc:
        if wanted == "openxr":
            raise JoinError(str(exc)) from None
        reason = str(exc).split(";")[0]
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        print(f"medverse consult: {reason}: joining in a desktop window", flush=True)
        return "desktop", None
    print(f"medverse consult: {reason}, and no display: joining in the simulator", flush=True)
    return "sim", None


def _run_sim(args: argparse.Namespace, twin: Twin, make_session: SessionFactory, pump: Pump,
             writer: FrameWriter | None, sessions: list[ConsultSession]) -> int:  # fmt: skip
    """The join in the simulator, played by ``--script`` (or looking around), frames to ``--out``;
    returns the renderer's GL error count."""
    from xrcore.backends.sim import SimBackend, SimConfig  # noqa: PLC0415 - GL only when rendering
    from xrcore.render import Renderer, RendererConfig  # noqa: PLC0415

    scene = working_scene(twin)
    make_session(scene, None, Picker(twin))
    session = sessions[0]
    if args.script:
        motion: Any = load_script(args.script).with_aims(aim_resolver(session))
    else:
        centre, size = scene.twin_center_and_size()
        motion = procedural("look-around", centre.tolist(), size)
    backend = SimBackend(SimConfig(frames=None, rate_hz=args.rate, width=args.width, height=args.height, motion=motion))

    def after_submit(frame: Any, renderer: Any) -> None:
        session.displayed()  # before the PNG is written: the frame was shown when it was submitted
        if writer is not None:
            writer(frame, renderer)

    backend.start()
    try:
        renderer = Renderer(backend.context, RendererConfig(width=args.width, height=args.height, samples=1, rate_hz=args.rate))
        try:
            run(backend, session, renderer, writer=after_submit, on_frame=pump)
            return int(renderer.gl_errors)
        finally:
            renderer.close()
    finally:
        backend.stop()


def _run_desktop(args: argparse.Namespace, twin: Twin, make_session: SessionFactory, pump: Pump,
                 sessions: list[ConsultSession]) -> int:  # fmt: skip
    """The join in a desktop window (mouse and keys as in ``medverse view``) until the window closes or the
    time is up; returns the renderer's GL error count."""
    from sessions.desktop import DesktopSession  # noqa: PLC0415 - a window only when asked
    from xrcore.gl import GLContextError  # noqa: PLC0415

    try:
        desktop = DesktopSession(twin, width=args.width, height=args.height, session_factory=make_session)
    except GLContextError as exc:
        raise JoinError(f"cannot open a desktop window: {exc}") from None
    with desktop:
        while desktop.step():
            sessions[0].displayed()
            if pump(None):
                break
        return int(desktop.renderer.gl_errors)
