"""Seats: who may sit in a room as a participant, and how a seat is kept across reconnects.

A join token (``net.tokens``) is a bearer credential that may leak (a chat message, a screenshot, a
shared terminal). So it is **exchanged once**: the first join with a token opens a *session* on the
participant's seat, bound to that connection, and the server gives the client a **resume ticket** in
its ``welcome``. From then on:

- a second join with the same token is refused (``refused_token_reused``), whether the seat is taken
  or free: the token has been spent;
- a join with another, unspent token for a seat whose connection is alive is refused
  (``refused_seat_taken``): nobody is replaced by presenting a token;
- a reconnect presents the resume ticket (``X-Medverse-Resume`` header or ``?resume=``), which proves
  possession of the session: it replaces the old connection (a client whose socket died before the
  server noticed) and gets a new ticket; the old ticket is then stale (``refused_stale_resume``), so
  two copies of a ticket cannot kick each other out, and a stolen ticket stops working once its
  owner reconnects (and the owner finds out, refused).

A resume ticket is HMAC-signed with a key derived from the server's secret (never usable as a join
token, nor the other way round), so a restarted server with the same secret accepts the tickets its
predecessor gave out; it names the session and a generation that every resume advances. The server
keeps the book of spent tokens and current generations in its state file (``net.rooms.IndexFile``),
so a restart refuses a spent token or a stale ticket as the server before it did.

Revocation: ``medverse consult revoke`` appends to a small text file next to the secret
(:func:`revocation_path`), one entry a line; the server reads it when it changes, refuses revoked
tokens and tickets at join, and closes live connections they opened (``revoked``)::

    token <jti>                           # that token, and the session it was exchanged for
    seat <room> <participant> <at>        # every token of that seat issued at or before <at>, and
                                          # every session on it opened at or before <at> (Unix s)

Lines starting with ``#`` are comments; a line that is neither form is skipped with a warning.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from net.tokens import ID_PATTERN, MAX_TTL_S, TokenClaims, TokenError, b64url_decode, b64url_encode

log = logging.getLogger(__name__)

#: Request header (or ``?resume=`` for browsers) that carries a resume ticket.
RESUME_HEADER = "X-Medverse-Resume"
#: How long a resume ticket is good for, seconds: longer than any consultation, since leaving the
#: room is what ends a session; every resume gives a fresh one.
RESUME_TTL_S = 24 * 3600.0
#: Longest resume ticket accepted, characters.
MAX_TICKET_CHARS = 1024
#: File name of the revocation list, beside the secret file.
REVOCATION_FILE_NAME = "consult.revoked"
_TICKET_PREFIX = "r1"
_KEY_LABEL = b"medverse resume ticket v1"


class SeatError(TokenError):
    """A resume ticket is malformed, forged or stale, or a revocation entry is invalid."""


@dataclass(frozen=True)
class Session:
    """A seat's session: what a resume ticket proves.

    Attributes
    ----------
    claims : TokenClaims
        The claims of the token the session was opened with (room, participant, name, role, token id).
    session_id : str
        Random id of the session (not secret on its own: a ticket needs the server's signature).
    generation : int
        Advanced by every resume; only the seat's current generation is accepted.
    opened_at : float
        Unix time the session was opened, seconds.
    """

    claims: TokenClaims
    session_id: str
    generation: int
    opened_at: float


def _ticket_key(secret: bytes) -> bytes:
    return hmac.new(secret, _KEY_LABEL, hashlib.sha256).digest()


def issue_ticket(secret: bytes, session: Session, *, now: float | None = None) -> str:
    """Sign a resume ticket for ``session`` (``r1.<payload>.<signature>``, base64url)."""
    c = session.claims
    payload = {
        "room": c.room, "sub": c.participant, "name": c.name, "role": c.role, "jti": c.token_id,
        "iat": int(c.issued_at), "texp": int(c.expires_at), "sid": session.session_id, "gen": session.generation,
        "opened": int(session.opened_at), "exp": int((time.time() if now is None else now) + RESUME_TTL_S),
    }  # fmt: skip
    body = b64url_encode(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    signing = f"{_TICKET_PREFIX}.{body}".encode("ascii")
    return f"{_TICKET_PREFIX}.{body}.{b64url_encode(hmac.new(_ticket_key(secret), signing, hashlib.sha256).digest())}"


def verify_ticket(secret: bytes, ticket: str, *, now: float | None = None) -> Session:
    """Check a resume ticket's signature and lifetime; return the session it names.

    Raises
    ------
    SeatError
        Malformed, forged, tampered with or expired.
    """
    if not isinstance(ticket, str) or not 0 < len(ticket) <= MAX_TICKET_CHARS:
        raise SeatError("resume ticket is missing or too long")
    parts = ticket.split(".")
    if len(parts) != 3 or parts[0] != _TICKET_PREFIX:
        raise SeatError("resume ticket must be r1.<payload>.<signature>")
    expected = hmac.new(_ticket_key(secret), f"{parts[0]}.{parts[1]}".encode("ascii", "replace"), hashlib.sha256).digest()
    if not hmac.compare_digest(b64url_decode(parts[2]), expected):
        raise SeatError("resume ticket signature does not match (forged, tampered with, or another server's)")
    try:
        p = json.loads(b64url_decode(parts[1]).decode("utf-8"))
        claims = TokenClaims(
            room=_id(p["room"]), participant=_id(p["sub"]), name=str(p["name"]), role=str(p["role"]),
            issued_at=float(p["iat"]), expires_at=float(p["texp"]), token_id=str(p["jti"]),
        )  # fmt: skip
        session = Session(claims, str(p["sid"]), int(p["gen"]), float(p["opened"]))
        expires = float(p["exp"])
    except (KeyError, TypeError, ValueError, UnicodeDecodeError):
        raise SeatError("resume ticket payload is invalid") from None
    if expires <= (time.time() if now is None else now):
        raise SeatError("resume ticket expired: join again with a new token")
    return session


def _id(value: object) -> str:
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise ValueError("bad id")
    return value


# --------------------------------------------------------------------------------------- revocation


def revocation_path(secret_source: str) -> Path:
    """The revocation list beside the secret: ``<secret file's folder>/consult.revoked``; for a secret
    from ``$MEDVERSE_SECRET``, in ``$MEDVERSE_HOME`` (where the default secret file would be)."""
    from net.tokens import default_secret_path  # noqa: PLC0415 - one helper, kept beside its twin

    folder = default_secret_path().parent if secret_source.startswith("$") else Path(secret_source).parent
    return folder / REVOCATION_FILE_NAME


def append_revocation(path: Path, entry: str) -> None:
    """Append one entry line (``token <jti>`` or ``seat <room> <participant> <at>``), mode 0600."""
    parse_revocation_line(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (entry.strip() + "\n").encode("ascii"))
    finally:
        os.close(fd)


def parse_revocation_line(line: str) -> tuple[str, tuple[str, ...], float]:
    """``("token", (jti,), 0.0)`` or ``("seat", (room, participant), at)``.

    Raises
    ------
    SeatError
        The line is not one of the two forms.
    """
    words = line.split()
    try:
        if len(words) == 2 and words[0] == "token" and re.fullmatch(r"[A-Za-z0-9_-]{16,32}", words[1]):
            return "token", (words[1],), 0.0
        if len(words) == 4 and words[0] == "seat":
            return "seat", (_id(words[1]), _id(words[2])), float(words[3])
    except ValueError:
        pass
    raise SeatError(f"revocation entry must be 'token <jti>' or 'seat <room> <participant> <at>' (got {line[:80]!r})")


@dataclass
class RevocationList:
    """The revocation file as the server knows it, read again whenever its modification time changes.

    Parameters
    ----------
    path : Path or None
        The file (None: nothing is ever revoked). A missing file revokes nothing; an unreadable line
        is skipped and logged once.
    """

    path: Path | None
    tokens: set[str] = field(default_factory=set)  # jti
    seats: dict[tuple[str, str], float] = field(default_factory=dict)  # (room, participant) -> at
    _stamp: tuple[int, int] | None = None

    def refresh(self) -> bool:
        """Read the file again if it changed; True when it did."""
        if self.path is None:
            return False
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        tokens: set[str] = set()
        seats: dict[tuple[str, str], float] = {}
        try:
            lines = self.path.read_text("ascii", errors="replace").splitlines() if stamp else []
        except OSError as exc:
            log.warning("cannot read the revocation list %s: %s", self.path, exc.strerror or exc)
            lines = []
        for number, line in enumerate(lines, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                kind, key, when = parse_revocation_line(line)
            except SeatError as exc:
                log.warning("%s:%d: skipped: %s", self.path, number, exc)
                continue
            if kind == "token":
                tokens.add(key[0])
            else:
                seats[(key[0], key[1])] = max(when, seats.get((key[0], key[1]), when))
        self.tokens, self.seats = tokens, seats
        log.info("revocation list %s: %d token(s), %d seat(s)", self.path, len(tokens), len(seats))
        return True

    def reason(self, claims: TokenClaims, opened_at: float | None = None) -> str | None:
        """Why a token (or a session opened at ``opened_at`` with it) is revoked; None when it is not."""
        if claims.token_id in self.tokens:
            return "join token revoked"
        at = self.seats.get((claims.room, claims.participant))
        if at is not None and (claims.issued_at <= at or (opened_at is not None and opened_at <= at)):
            return f"seat {claims.room}/{claims.participant} revoked"
        return None


# --------------------------------------------------------------------------------------- the book


class _Current(NamedTuple):
    """What the book keeps of a seat's current session: enough to tell its current ticket from a stale one."""

    session_id: str
    generation: int
    opened_at: float
    updated: float  # when it was opened or last resumed (its newest ticket was issued then)


@dataclass
class SeatBook:
    """Spent tokens and each seat's current session.

    Pure bookkeeping, like :class:`net.rooms.Room`: the server asks before it upgrades a connection
    (:meth:`check`) and again, atomically, when it admits it (:meth:`open` / :meth:`resume`). The server
    keeps the book in its state file (:meth:`state`, :meth:`restore`), so a restart forgets neither which
    tokens were spent nor which ticket of a seat is current: a leaked token or a stale ticket is refused
    after a restart as before it.
    """

    #: token id -> its expiry (Unix s): a spent token is remembered until it could not verify anyway
    spent: dict[str, float] = field(default_factory=dict)
    #: (room, participant) -> the seat's current session
    sessions: dict[tuple[str, str], _Current] = field(default_factory=dict)

    def check_token(self, claims: TokenClaims, seat_taken: bool) -> tuple[str, str] | None:
        """``(counter, reason)`` refusing a join with this token, or None when it may open a session."""
        if claims.token_id in self.spent:
            return "refused_token_reused", "join token already used: resume with the session's ticket, or get a new token"
        if seat_taken:
            return "refused_seat_taken", f"participant {claims.participant!r} is already connected with another session"
        return None

    def check_ticket(self, session: Session) -> tuple[str, str] | None:
        """``(counter, reason)`` refusing a resume with this ticket, or None."""
        current = self.sessions.get((session.claims.room, session.claims.participant))
        if current is None:
            return None  # a server that never saw the seat (no state file): the signature is the proof
        if current.session_id != session.session_id or current.generation != session.generation:
            return "refused_stale_resume", "resume ticket is stale (the session was resumed or replaced elsewhere)"
        return None

    def open(self, claims: TokenClaims, now: float) -> Session:
        """Spend the token and open a new session on its seat (replacing any older session)."""
        self.spent[claims.token_id] = min(claims.expires_at, now + MAX_TTL_S)
        self._prune(now)
        session = Session(claims, secrets.token_urlsafe(12), 1, now)
        self.sessions[(claims.room, claims.participant)] = _Current(session.session_id, 1, now, now)
        return session

    def resume(self, session: Session, now: float) -> Session:
        """The session's next generation, now the seat's current one."""
        self.spent.setdefault(session.claims.token_id, session.claims.expires_at)
        nxt = Session(session.claims, session.session_id, session.generation + 1, session.opened_at)
        self.sessions[(session.claims.room, session.claims.participant)] = _Current(
            nxt.session_id, nxt.generation, nxt.opened_at, now)
        return nxt

    def state(self, now: float) -> dict[str, Any]:
        """The book as JSON-ready data, without what can no longer matter: tokens past their expiry and
        sessions whose newest ticket has expired."""
        return {
            "spent": {jti: until for jti, until in sorted(self.spent.items()) if until > now},
            "sessions": [[room, participant, c.session_id, c.generation, c.opened_at, c.updated]
                         for (room, participant), c in sorted(self.sessions.items())
                         if now - c.updated < RESUME_TTL_S],
        }  # fmt: skip

    def restore(self, state: object, now: float) -> None:
        """Take back a book written by :meth:`state`. What is malformed is skipped, counted in one log
        line: the server still starts (its seats then accept any genuine ticket, as without a file)."""
        spent = state.get("spent") if isinstance(state, dict) else None
        sessions = state.get("sessions") if isinstance(state, dict) else None
        skipped = 0
        for jti, until in (spent.items() if isinstance(spent, dict) else ()):
            if isinstance(jti, str) and isinstance(until, (int, float)) and until > now:
                self.spent[jti] = float(until)
            else:
                skipped += 1
        for entry in (sessions if isinstance(sessions, list) else ()):
            try:
                room, participant, sid, generation, opened, updated = entry
                current = _Current(str(sid), int(generation), float(opened), float(updated))
                key = (_id(room), _id(participant))
            except (TypeError, ValueError):
                skipped += 1
                continue
            if now - current.updated < RESUME_TTL_S:
                self.sessions[key] = current
        if skipped or (state is not None and not (isinstance(spent, dict) and isinstance(sessions, list))):
            log.warning("seat book in the state file: %d malformed entr%s skipped", skipped, "y" if skipped == 1 else "ies")

    def _prune(self, now: float) -> None:
        if len(self.spent) > 1024:
            self.spent = {jti: until for jti, until in self.spent.items() if until > now}
        if len(self.sessions) > 4096:
            # A session whose newest ticket has expired can resume no more: forget it.
            self.sessions = {k: v for k, v in self.sessions.items() if now - v.updated < RESUME_TTL_S}
