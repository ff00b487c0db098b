"""`medverse consult`: run the signaling server, issue join tokens, join a consultation.

- ``serve``: the signaling server (``net.signaling``), with a relay peer for rooms above the mesh limit;
- ``token``: print a signed join token for one participant of one room;
- ``join``: take part in a consultation as a headless participant (``net.peer.run_participant``).

``serve`` and ``token`` find the same secret (``--secret-file``, ``$MEDVERSE_SECRET`` or
``$MEDVERSE_HOME/consult.secret``); see docs/signaling.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from net.signaling import ServerConfig, ServerConfigError, SignalingServer, server_ssl_context
from net.signaling_client import SignalingError
from net.tokens import ROLES, SecretError, TokenError, issue_token, load_secret

log = logging.getLogger(__name__)

USER_ERRORS: tuple[type[BaseException], ...] = (TokenError, SecretError, ServerConfigError, SignalingError)


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
    serve.add_argument("--secret-file", help="file holding the token secret (default: $MEDVERSE_SECRET, else $MEDVERSE_HOME/consult.secret)")
    serve.add_argument("--mesh-limit", type=int, default=4, help="largest room connected peer to peer; larger rooms use the relay (default %(default)s)")
    serve.add_argument("--max-rooms", type=int, default=64, help="rooms on the server (default %(default)s)")
    serve.add_argument("--max-participants", type=int, default=32, help="participants per room (default %(default)s)")
    serve.set_defaults(func=_serve)

    token = actions.add_parser("token", help="print a signed join token")
    token.add_argument("--room", required=True, help="room id")
    token.add_argument("--participant", required=True, help="participant id, unique in the room")
    token.add_argument("--role", required=True, choices=ROLES, help="participant's role")
    token.add_argument("--name", help="display name (default: the participant id)")
    token.add_argument("--ttl", type=float, default=3600.0, help="lifetime in seconds (default %(default)s)")
    token.add_argument("--secret-file", help="file holding the token secret (as for serve)")
    token.set_defaults(func=_token)


def _serve(args: argparse.Namespace) -> int:
    if bool(args.cert) != bool(args.key):
        raise ServerConfigError("give both --cert and --key for TLS, or neither")
    secret, where = load_secret(args.secret_file)
    config = ServerConfig(
        secret=secret,
        host=args.host,
        port=args.port,
        ssl_context=server_ssl_context(args.cert, args.key) if args.cert else None,
        mesh_limit=args.mesh_limit,
        max_rooms=args.max_rooms,
        max_participants=args.max_participants,
    )
    server = SignalingServer(config)
    asyncio.run(_run_server(server, where))
    return 0


async def _run_server(server: SignalingServer, secret_source: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    # One line on stdout with the bound URL: scripts (and tests) started with --port 0 read it.
    print(f"medverse consult: serving on {server.url} (token secret from {secret_source})", flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()


def _token(args: argparse.Namespace) -> int:
    secret, _ = load_secret(args.secret_file)
    print(issue_token(secret, args.room, args.participant, args.role, name=args.name, ttl_s=args.ttl))
    return 0
