"""What the signaling server shows, and to whom: the Origin check, ``/stats`` readers, the ``Server`` header.

- **Origin**: a browser sends ``Origin`` with every WebSocket handshake, and a page on any site may
  open a WebSocket to any server, so the handshake's Origin must be one this server serves: its own
  names (the bound address, ``localhost``, the machine's host names, the names in its certificate)
  with its own scheme and port, or one listed with ``serve --allow-origin``. A client that is not a
  browser sends no Origin and is let through (its token is what admits it). The host is checked
  through the Origin, not the ``Host`` header: a DNS-rebinding page gets the right ``Host`` but
  cannot fake its own Origin.
- **/stats**: aggregates for anyone; names, roles, rooms and links only for a token whose role
  :data:`net.roles.STATS_SCOPE` lets read them (a surgeon its own room, an instructor every room).
- **Versions**: no response names the software or its version (``Server: medverse``, and ``/health``
  has no version field).
- **Logs**: the access log records paths, never query strings (``?token=``); a malformed HTTP request
  is one counted line naming the problem's kind, never a traceback quoting the request.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp.web_response
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from net.limits import QuietLog

#: What the ``Server`` header says: the product, never a version.
SERVER_HEADER = "medverse"


def hide_versions() -> None:
    """Make aiohttp's default ``Server`` header (``Python/3.x aiohttp/3.y``) say :data:`SERVER_HEADER`.

    aiohttp sets the header from a module constant for every response, the error responses it writes
    itself for malformed requests included (no application hook sees those), so the constant is what
    has to change. It only affects aiohttp servers in this process.
    """
    aiohttp.web_response.SERVER_SOFTWARE = SERVER_HEADER  # type: ignore[attr-defined]


def machine_names(host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """Host names a browser may reach this server by: ``host``, loopback names, the machine's names, ``extra``."""
    names = {host, "localhost", "127.0.0.1", "::1", *extra}
    if host in ("0.0.0.0", "::"):
        try:
            names |= {socket.gethostname(), socket.getfqdn()}
            names |= {str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None)}
        except OSError:
            pass
    return frozenset(n.lower().strip("[]") for n in names if n)


def origin_allowed(origin: str | None, *, scheme: str, port: int, names: frozenset[str], allowed: frozenset[str]) -> bool:
    """True when a handshake with this ``Origin`` header may go on.

    Parameters
    ----------
    origin : str or None
        The header as sent; None (no header: not a browser) is allowed.
    scheme : str
        ``http`` or ``https``, what this server speaks.
    port : int
        The port it listens on.
    names : frozenset of str
        Its host names and addresses, lower case (:func:`machine_names`).
    allowed : frozenset of str
        Extra origins, exactly as a browser writes them (``https://portal.example.org``).
    """
    if origin is None:
        return True
    if origin in allowed:
        return True
    try:
        parts = urlsplit(origin)
        origin_port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return False
    return parts.scheme == scheme and origin_port == port and (parts.hostname or "") in names


class PathOnlyAccessLogger(AbstractAccessLogger):
    """Access log without query strings: ``?token=`` must never reach a log file."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info('%s "%s %s" %s %.3fs', request.remote, request.method, request.path, response.status, time)


class ServerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's per-connection logger: a malformed HTTP request (an oversized header, say) is one counted
    line naming the problem's kind, not a traceback quoting the request (and the token in it)."""

    def __init__(self, counters: MutableMapping[str, int], quiet: QuietLog) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self.counters = counters
        self.quiet = quiet

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            self.counters["malformed_http"] += 1
            self.quiet.info("malformed-http", f"refused a malformed HTTP request from {args[0] if args else '?'}: "
                           f"{type(exc).__name__} ({exc.code})")
            return
        super().log(level, msg, *args, **kwargs)
