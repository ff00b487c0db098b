"""`medverse consult`: run the signaling server, issue join tokens, join a consultation.

- ``serve``: the signaling server (``net.signaling``), with a relay peer for rooms above the mesh limit;
- ``token``: print a signed join token for one participant of one room;
- ``revoke``: revoke a token, or every token and session of a seat (``net.seats``), on the running server too;
- ``join``: take part in a consultation as a headless participant (``net.participant.Participant``):
  stream procedural poses at 90 Hz, optionally make scripted state ops (both from
  ``sessions.consult.scripted``), measure latency, write a report.

``serve`` and ``token`` find the same secret (``--secret-file``, ``$MEDVERSE_SECRET`` or
``$MEDVERSE_HOME/consult.secret``); see docs/signaling.md.

``serve`` and ``join`` run on uvloop when it is installed (``--loop auto``, the default; see
``net.eventloop`` for why); ``--loop asyncio`` keeps the standard library's loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from net.eventloop import LOOPS, EventLoopError, run_on_loop, running_loop_name
from net.protocol import RELAY_POSE_LEAD_S
from net.relay import DEFAULT_POSE_BUDGET_HZ, DEFAULT_POSE_SUBTICKS
from net.seats import append_revocation, revocation_path
from net.signaling import ServerConfig, ServerConfigError, SignalingServer, server_ssl_context
from net.signaling_client import RoomTwin, SignalingError
from net.tls import TlsError, client_ssl, machine_tls_names, self_signed
from net.tokens import DEFAULT_TTL_S, ROLES, SecretError, TokenError, issue_token, load_secret, verify_token
from sessions.recording.format import RecordingError

if TYPE_CHECKING:
    from net.participant import Participant

log = logging.getLogger(__name__)


class JoinArgumentError(ValueError):
    """A ``consult join`` option is out of range."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    TokenError,
    SecretError,
    ServerConfigError,
    SignalingError,
    JoinArgumentError,
    EventLoopError,
    RecordingError,
    TlsError,
)


def _add_loop_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--loop",
        choices=LOOPS,
        default="auto",
        help="event loop: uvloop (faster message handling), asyncio, or auto: uvloop when installed (default %(default)s)",
    )


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``consult serve``, ``consult token`` and ``consult join``."""
    consult = sub.add_parser("consult", help="remote consultation: signaling server, join tokens, participants")
    actions = consult.add_subparsers(dest="consult_command", metavar="ACTION")
    actions.required = True

    serve = actions.add_parser("serve", help="run the signaling server (and relay) until interrupted")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind; plain HTTP only on loopback (default %(default)s)")
    serve.add_argument("--port", type=int, default=8443, help="TCP port, 0 for any free one (default %(default)s)")
    serve.add_argument("--cert", help="TLS certificate chain (PEM); with --key serves HTTPS/WSS")
    serve.add_argument("--key", help="TLS private key (PEM)")
    serve.add_argument("--tls-self-signed", action="store_true",
                       help="serve HTTPS/WSS with a self-signed certificate for this machine's names (made beside the "
                       "secret file, reused while valid; its fingerprint is printed; clients use join --ca-file)")
    serve.add_argument("--secret-file",
                       help="file holding the token secret (default: $MEDVERSE_SECRET, else $MEDVERSE_HOME/consult.secret)")
    serve.add_argument("--mesh-limit", type=int, default=4,
                       help="largest room connected peer to peer; larger rooms use the relay (default %(default)s)")
    serve.add_argument(
        "--relay-pose-budget",
        type=float,
        default=DEFAULT_POSE_BUDGET_HZ,
        help="pose bundles per second the relay sends in all (one per receiver per flush); 0 for no limit (default %(default)s)",
    )
    serve.add_argument(
        "--relay-pose-subticks",
        type=int,
        default=DEFAULT_POSE_SUBTICKS,
        help="relay flush ticks per 90 Hz period: a pose that misses a tick waits 1/(90 x this) s at most (default %(default)s)",
    )
    serve.add_argument("--max-rooms", type=int, default=64, help="rooms on the server (default %(default)s)")
    serve.add_argument("--twin", metavar="NAME[:SHA256]",
                       help="every room's twin: a twin name (its content hash computed as join does) or NAME:SHA256; "
                       "default: the first surgeon to join a room names it")
    serve.add_argument("--max-participants", type=int, default=32, help="participants per room (default %(default)s)")
    serve.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                       help="a browser origin allowed besides the server's own names, e.g. https://portal.example.org "
                       "(repeatable; clients without an Origin header are always allowed)")
    serve.add_argument("--revocation-file",
                       help="revocation list to read (default: consult.revoked beside the secret file)")
    serve.add_argument("--state-file", metavar="FILE",
                       help="the rooms' index tables, kept so that a restarted server gives no index twice (default: "
                       "signaling-PORT.rooms.json beside the secret file; none with --port 0; 'none' to keep them in memory)")
    _add_loop_option(serve)
    serve.set_defaults(func=_serve)

    token = actions.add_parser("token", help="print a signed join token")
    token.add_argument("--room", required=True, help="room id")
    token.add_argument("--participant", required=True, help="participant id, unique in the room")
    token.add_argument("--role", required=True, choices=ROLES, help="participant's role")
    token.add_argument("--name", help="display name (default: the participant id)")
    token.add_argument("--ttl", type=float, default=DEFAULT_TTL_S,
                       help="lifetime in seconds: the time to join in, not to stay (default %(default)s)")
    token.add_argument("--secret-file", help="file holding the token secret (as for serve)")
    token.set_defaults(func=_token)
    _register_revoke(actions)

    join = actions.add_parser("join", help="join a consultation as a headless participant and report latency")
    join.add_argument("--server", required=True, help="signaling server URL, e.g. http://127.0.0.1:8443")
    join.add_argument("--token", required=True, help="join token (from 'medverse consult token')")
    join.add_argument("--duration", type=float, default=10.0, help="seconds to stay in the room (default %(default)s)")
    join.add_argument("--report", help="write the JSON report (latency, clocks, traffic, state digest) to this file")
    join.add_argument("--pose-rate", type=float, default=90.0, help="pose records per second, 0 for none (default %(default)s)")
    join.add_argument("--ops-rate", type=float, default=0.0, help="scripted state ops per second (default %(default)s: none)")
    join.add_argument("--ops-start", type=float, default=0.5,
                      help="seconds after joining that scripted ops start (default %(default)s)")
    join.add_argument("--ops-stop", type=float, help="seconds after joining that scripted ops stop (default: never)")
    join.add_argument("--relay-pose-lead", type=float, default=RELAY_POSE_LEAD_S * 1e3,
                      help="in a relay room, ms before the relay's tick a pose should reach it (default %(default)s)")
    join.add_argument("--ops-stop-at", type=float, help="UNIX time at which scripted ops stop (several processes stop together)")
    join.add_argument("--warmup", type=float, default=0.0,
                      help="seconds after joining before latency is recorded (default %(default)s)")
    join.add_argument("--measure-from", type=float, metavar="UNIX_TIME",
                      help="record latency from this moment on (several processes measure the same window)")
    join.add_argument("--measure-until", type=float, metavar="UNIX_TIME", help="record latency until this moment")
    join.add_argument("--leave-at", type=float, metavar="UNIX_TIME", help="leave at this moment instead of after --duration")
    join.add_argument("--delay-ms", type=float, default=0.0,
                      help="extra one-way delay injected on this participant's connections, ms")
    join.add_argument("--loss", type=float, default=0.0,
                      help="share of datagrams dropped on this participant's connections, 0..1")
    join.add_argument("--clock-offset", type=float, default=0.0,
                      help="seconds added to this participant's clock (tests clock sync)")
    join.add_argument("--insecure", action="store_true", help="do not verify the server's TLS certificate (testing only)")
    join.add_argument("--ca-file", help="trust this CA or certificate file (PEM) for the server's TLS, e.g. the one "
                      "'serve --tls-self-signed' printed")
    join.add_argument("--liveness-timeout", type=float, default=12.0, metavar="S",
                      help="a mesh link silent this long is closed and rebuilt through signaling; 0 never "
                      "(default %(default)s)")
    join.add_argument("--connect-timeout", type=float, default=3.0, metavar="S",
                      help="a rebuilt link not open after this long is offered again; 0 never (default %(default)s)")
    join.add_argument("--backend", choices=("none", "sim", "openxr", "desktop", "auto"), default="none",
                      help="none: a headless participant streaming scripted poses and ops (benchmarks); sim: in the room "
                      "with the twin rendered in the simulator (default %(default)s)")
    join.add_argument("--twin", help="this participant's twin, announced to the room (the first surgeon's, or the "
                      "server's --twin, is the room's; a different one is refused in one line); default: the room's")
    join.add_argument("--twin-wait", type=float, default=10.0, metavar="S",
                      help="with no twin named in the room yet, wait this long for one, then load --twin (or brain) "
                      "unchecked (default %(default)s)")
    join.add_argument("--net", choices=("process", "thread"), default="process",
                      help="with a rendering backend: the network in a process of its own (no GIL shared with the "
                      "frame loop) or in a thread of the frame's (default %(default)s)")
    join.add_argument("--frame-nice", type=int, metavar="N",
                      help="with a rendering backend: raise the frame thread's nice value by N, so that the network and "
                      "the machine's other programs come first (default: 10 in the simulator, which shares its machine "
                      "with others in tests and benchmarks; 0 with a headset or a window)")
    join.add_argument("--script", type=Path, help="with --backend sim: JSON motion script that plays this participant")
    join.add_argument("--out", type=Path, help="with --backend sim: folder for this participant's frames as PNG")
    join.add_argument("--every", type=int, default=30,
                      help="with --out: write every Nth frame and the script's keyframes (default %(default)s)")
    join.add_argument("--width", type=int, default=320, help="with --backend sim: pixels per eye (default %(default)s)")
    join.add_argument("--height", type=int, default=320, help="with --backend sim: pixels per eye (default %(default)s)")
    join.add_argument("--rate", type=float, default=30.0, help="with --backend sim: frames per second (default %(default)s)")
    join.add_argument("--geodesic", action="store_true", help="with a rendering backend: measurements also give the "
                      "distance along the surface (computed beside the frame loop, sent once it is)")
    join.add_argument("--present", action="store_true",
                      help="present (any role): the others may follow this participant's view")
    join.add_argument("--follow", metavar="NAME", nargs="?", const="*",
                      help="render from presenter NAME's viewpoint while they present; without NAME, from whoever "
                      "presents (the latest to start)")
    _add_loop_option(join)
    join.add_argument("--record", metavar="FILE.mvr", help="record the consultation as this participant sees it")
    join.set_defaults(func=_join)
    _register_replay(actions)


def _serve(args: argparse.Namespace) -> int:
    if bool(args.cert) != bool(args.key):
        raise ServerConfigError("give both --cert and --key for TLS, or neither")
    if args.tls_self_signed and args.cert:
        raise ServerConfigError("give --cert/--key or --tls-self-signed, not both")
    secret, where = load_secret(args.secret_file)
    names: list[str] = []
    tls_line = ""
    if args.tls_self_signed:
        names = machine_tls_names(args.host)
        cert, key, print_ = self_signed(revocation_path(where).parent, names)
        args.cert, args.key = str(cert), str(key)
        tls_line = f"medverse consult: TLS certificate {cert} (self-signed, SHA-256 {print_}) for {', '.join(names)}"
    config = ServerConfig(
        secret=secret,
        host=args.host,
        port=args.port,
        ssl_context=server_ssl_context(args.cert, args.key) if args.cert else None,
        mesh_limit=args.mesh_limit,
        max_rooms=args.max_rooms,
        max_participants=args.max_participants,
        relay_options={"pose_budget_hz": args.relay_pose_budget or None, "pose_subticks": args.relay_pose_subticks},
        twin=_server_twin(args.twin) if args.twin else None,
        revocation_file=Path(args.revocation_file) if args.revocation_file else revocation_path(where),
        allowed_origins=tuple(args.allow_origin),
        state_file=_state_file(args, where),
        server_names=tuple(names),
    )
    server = SignalingServer(config)
    run_on_loop(lambda: _run_server(server, where, tls_line), args.loop)
    return 0


def _state_file(args: argparse.Namespace, secret_source: str) -> Path | None:
    """``serve --state-file``: as given, None for 'none', else beside the secret (per port: one per server)."""
    if args.state_file is not None:
        return None if args.state_file == "none" else Path(args.state_file)
    if args.port == 0:
        return None  # a server on a free port is not restarted on the same one
    return revocation_path(secret_source).with_name(f"signaling-{args.port}.rooms.json")


def _server_twin(text: str) -> RoomTwin:
    """``serve --twin``: ``NAME:SHA256`` as given, or a twin name whose content hash is computed here."""
    if ":" in text:
        return RoomTwin.parse(text)
    from sessions.cli.xr import load_twin  # noqa: PLC0415 - only a server that names the twin loads it
    from sessions.consult.room import announced  # noqa: PLC0415

    return announced(load_twin(text))


async def _run_server(server: SignalingServer, secret_source: str, tls_line: str = "") -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    # One line on stdout with the bound URL: scripts (and tests) started with --port 0 read it.
    print(f"medverse consult: serving on {server.url} (token secret from {secret_source}; "
          f"event loop {running_loop_name()})", flush=True)
    if tls_line:
        print(tls_line, flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()


def _token(args: argparse.Namespace) -> int:
    secret, _ = load_secret(args.secret_file)
    print(issue_token(secret, args.room, args.participant, args.role, name=args.name, ttl_s=args.ttl))
    return 0


def _register_revoke(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    revoke = actions.add_parser("revoke", help="revoke a join token, or a seat's tokens and sessions (applies to "
                                "live connections within a second)")
    what = revoke.add_mutually_exclusive_group(required=True)
    what.add_argument("--token", help="the token to revoke (expired ones too: the session it opened ends)")
    what.add_argument("--participant", help="revoke every token of this participant issued until now, and its sessions")
    revoke.add_argument("--room", help="with --participant: the room")
    revoke.add_argument("--secret-file", help="file holding the token secret (as for serve)")
    revoke.add_argument("--revocation-file", help="revocation list (default: consult.revoked beside the secret file)")
    revoke.set_defaults(func=_revoke)


def _revoke(args: argparse.Namespace) -> int:
    secret, where = load_secret(args.secret_file, create=False)
    path = Path(args.revocation_file) if args.revocation_file else revocation_path(where)
    if args.token is not None:
        claims = verify_token(secret, args.token.strip(), expired_ok=True)
        append_revocation(path, f"token {claims.token_id}")
        what = f"token {claims.token_id} of {claims.room}/{claims.participant}"
    else:
        if not args.room:
            raise TokenError("--participant needs --room")
        append_revocation(path, f"seat {args.room} {args.participant} {time.time():.3f}")
        what = f"every token and session of {args.room}/{args.participant} until now"
    print(f"medverse consult: revoked {what} (in {path})", flush=True)
    return 0


def _join(args: argparse.Namespace) -> int:
    from net.participant import Participant, ParticipantConfig, local_clock  # noqa: PLC0415 - aiortc is heavy; only join needs it
    from sessions.consult.scripted import ScriptedOps, procedural_poses  # noqa: PLC0415 - with the participant

    duration = args.duration if args.leave_at is None else args.leave_at - time.time()
    if duration <= 0:
        raise JoinArgumentError("--duration must be positive (and --leave-at in the future)")
    if not 0.0 <= args.loss < 1.0 or args.delay_ms < 0:
        raise JoinArgumentError("--loss must be in [0, 1) and --delay-ms >= 0")
    if args.liveness_timeout < 0 or args.connect_timeout < 0:
        raise JoinArgumentError("--liveness-timeout and --connect-timeout must be >= 0 (0: never)")
    faults = None
    if args.loss or args.delay_ms:
        from net.faults import FaultPlan  # noqa: PLC0415 - only fault-injection runs need it

        faults = FaultPlan(loss=args.loss, delay_s=args.delay_ms / 1e3)
    config = ParticipantConfig(
        pose_rate_hz=args.pose_rate,
        ops_rate_hz=args.ops_rate,
        ops_start_s=args.ops_start,
        warmup_s=args.warmup,
        measure_from=args.measure_from,
        measure_until=args.measure_until,
        ops_stop_s=args.ops_stop if args.ops_stop is not None else float("inf"),
        ops_stop_at=args.ops_stop_at,
        relay_pose_lead_s=args.relay_pose_lead / 1e3,
        faults=faults,
        liveness_timeout_s=args.liveness_timeout,
        connect_timeout_s=args.connect_timeout,
    )
    clock = local_clock(args.clock_offset)
    if args.backend != "none":
        from sessions.consult.join import JoinError, join_rendered  # noqa: PLC0415 - GL only when rendering

        try:
            return join_rendered(args, config, clock, duration)
        except JoinError as exc:
            raise JoinArgumentError(str(exc)) from None
    participant = Participant(args.server, args.token, config, clock=clock, ssl=client_ssl(args.ca_file, args.insecure),
                              poses=procedural_poses, ops=ScriptedOps())
    if args.record:
        report = run_on_loop(lambda: _run_recorded(participant, duration, args.record, getattr(args, "twin", None)), args.loop)
    else:
        report = run_on_loop(lambda: _run_participant(participant, duration), args.loop)
    pose = report["latency"]["room"]["pose"] or {}
    state = report["latency"]["room"]["state"] or {}
    print(
        f"medverse consult: {report['participant']} in {report['room']} ({report['topology']}): "
        f"{report['counters'].get('poses_applied', 0)} poses, p50 {pose.get('p50_ms', float('nan')):.2f} ms, "
        f"p99 {pose.get('p99_ms', float('nan')):.2f} ms; {report['state']['op_count']} ops "
        f"(state p99 {state.get('p99_ms', float('nan')):.2f} ms); digest {report['state']['digest'][:16]}; "
        f"event loop {report['event_loop']}",
        flush=True,
    )
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=1) + "\n")
    return 0


async def _run_participant(participant: Participant, duration_s: float) -> dict[str, Any]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Leave cleanly, and still write the report, when interrupted.
        loop.add_signal_handler(signum, stop.set)
    report = await participant.run(duration_s, stop=stop)
    return {**report, "event_loop": running_loop_name()}


# --- recording and replay ----------------------------------------------------------------------------


async def _run_recorded(participant: Participant, duration_s: float, path: str, twin: str | None) -> dict[str, Any]:
    """``_run_participant`` with a :class:`~sessions.recording.recorder.SessionRecorder` attached."""
    from sessions.recording.recorder import SessionRecorder  # noqa: PLC0415 - only a recorded join needs it

    recorder = SessionRecorder(path, twin_name=twin)
    recorder.attach(participant)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        recorder.begin(await participant.start())
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), duration_s)
        report = participant.report()
    finally:
        await participant.stop()
        recorder.close()
    return {**report, "event_loop": running_loop_name(), "recording": path}


def _register_replay(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    replay = actions.add_parser("replay", help="render a recorded consultation again, or print its state at a time")
    replay.add_argument("recording", help="the .mvr file (from 'consult join --record')")
    replay.add_argument("--out", help="folder for the PNGs (required unless --json)")
    view = replay.add_mutually_exclusive_group()
    view.add_argument("--from", dest="viewer", metavar="PARTICIPANT", help="view from this participant's recorded head")
    view.add_argument("--camera", choices=("free",), default="free", help="orbit the twin (default)")
    replay.add_argument("--at", type=float, metavar="T", help="seconds into the recording: one frame (or the state) then")
    replay.add_argument("--every", type=float, default=1.0, metavar="S", help="seconds between PNGs (default %(default)s)")
    replay.add_argument("--rate", type=float, default=30.0, help="frames per second replayed (default %(default)s)")
    replay.add_argument("--width", type=int, default=480, help="pixels per eye (default %(default)s)")
    replay.add_argument("--height", type=int, default=480, help="pixels per eye (default %(default)s)")
    replay.add_argument("--twin", help="the twin to load (default: the one the recording names)")
    replay.add_argument("--json", action="store_true", help="print the shared state at --at (default: the end) as JSON")
    replay.set_defaults(func=_replay)


def _replay(args: argparse.Namespace) -> int:
    from sessions.recording.format import read_recording  # noqa: PLC0415 - replay only
    from sessions.recording.replay import render, state_report  # noqa: PLC0415

    recording = read_recording(args.recording)
    if recording.problem is not None:
        print(f"medverse consult replay: {recording.problem}; replaying what precedes it", file=sys.stderr)
    if args.at is not None and not args.at >= 0.0:
        raise RecordingError(f"--at must be >= 0 s, got {args.at}")
    if args.json:
        print(json.dumps(state_report(recording, args.at), indent=1, sort_keys=True))
        return 0
    if not args.out:
        raise RecordingError("give --out DIR for the PNGs (or --json for the state)")
    if args.every <= 0 or args.rate <= 0 or args.width <= 0 or args.height <= 0:
        raise RecordingError("--every, --rate, --width and --height must be positive")
    name = args.twin or recording.header.twin_name
    if not name:
        raise RecordingError(f"{args.recording}: the recording names no twin; give --twin NAME")
    from assets.errors import AssetError  # noqa: PLC0415
    from sessions.cli.xr import load_twin  # noqa: PLC0415

    try:
        twin = load_twin(name)
    except AssetError as exc:
        raise RecordingError(f"cannot load the recording's twin {name!r}: {exc}") from None
    result = render(recording, twin, args.out, viewer=args.viewer, at=args.at, every_s=args.every, rate_hz=args.rate,
                    width=args.width, height=args.height)  # fmt: skip
    print(f"medverse consult replay: {recording.path} ({result.view}): {result.frames} frames, "
          f"{len(result.written)} PNGs in {args.out}; {result.op_count} ops, digest {result.digest[:16]}", flush=True)
    return 0
