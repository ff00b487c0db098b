"""Join tokens: HMAC-SHA256 signed claims that admit one participant, with one role, to one room.

A token is ``base64url(payload) "." base64url(signature)`` (no padding), where ``payload`` is compact
JSON and ``signature = HMAC-SHA256(secret, first segment as ASCII)``. The signature is compared in
constant time and checked before the payload is parsed, so a forged token never reaches the JSON
parser. The claims are:

``v``     format version (2), an integer
``jti``   token id: 16 random bytes, base64url (a revocation names it; a token is exchanged once)
``room``  room id
``sub``   participant id, unique in the room
``name``  display name
``role``  one of :data:`ROLES`
``iat``   issued at, Unix seconds
``exp``   expires at, Unix seconds; ``exp - iat`` at most :data:`MAX_TTL_S`

Each segment has exactly one base64url spelling (unused low bits zero), so a token cannot be re-spelt
into a second string that verifies: revocation lists and logs compare tokens by their id, never by
text, but no second spelling should exist at all.

The secret is shared by ``medverse consult serve`` and ``medverse consult token``: see
:func:`load_secret`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from net.errors import NetError

log = logging.getLogger(__name__)

TOKEN_VERSION = 2
#: ``instructor`` is for trainee profiles (``sessions.profiles.access``): it reads every trainee's profile.
ROLES: tuple[str, ...] = ("surgeon", "expert", "trainee", "observer", "instructor")
#: Participant id the server uses for its own relay peer; no token may claim it.
RELAY_ID = "relay"
#: Room and participant ids: short, printable, safe in URLs, logs and file names.
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_NAME_CHARS = 64
#: Longest token string accepted; anything longer is refused before decoding.
MAX_TOKEN_CHARS = 2048
#: Shortest accepted secret, bytes (128 bits).
MIN_SECRET_BYTES = 16
#: Fewest distinct byte values in an accepted secret: 16 bytes of one repeated character (or of a short
#: repeated pattern) have the right length and almost no entropy.
MIN_SECRET_DISTINCT = 8
#: Default lifetime, seconds: a token is needed to join, not to stay in the room (a session resumes
#: with its resume ticket, ``net.seats``), so it need not outlive the minutes before the join.
DEFAULT_TTL_S = 15 * 60.0
#: Longest accepted lifetime, seconds (one week): tokens are bearer credentials.
MAX_TTL_S = 7 * 24 * 3600
#: Tolerated clock difference between the issuing and the checking machine, seconds.
CLOCK_SKEW_S = 30.0
SECRET_ENV = "MEDVERSE_SECRET"
SECRET_FILE_NAME = "consult.secret"


class TokenError(NetError):
    """A join token is malformed, forged, tampered with or not valid for this use."""


class TokenExpiredError(TokenError):
    """A join token was genuine but its lifetime is over."""


class SecretError(NetError):
    """The HMAC secret cannot be read, is too short or is readable by other users."""


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says about its holder.

    Attributes
    ----------
    room, participant : str
        Room id and participant id (both match :data:`ID_PATTERN`).
    name : str
        Display name shown to the other participants.
    role : str
        One of :data:`ROLES`.
    issued_at, expires_at : float
        Unix time, seconds.
    token_id : str
        The token's ``jti`` (what a revocation names; never secret, never the token itself).
    """

    room: str
    participant: str
    name: str
    role: str
    issued_at: float
    expires_at: float
    token_id: str = ""


def b64url_encode(raw: bytes) -> str:
    """Unpadded base64url (tokens and resume tickets)."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url, accepting only its canonical spelling (the one :func:`b64url_encode` writes)."""
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise TokenError("segment is not base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TokenError("segment is not base64url") from exc
    # A last character with non-zero unused bits decodes to the same bytes as the canonical one.
    if b64url_encode(raw) != text:
        raise TokenError("segment is not canonical base64url")
    return raw


def _sign(secret: bytes, signing_input: bytes) -> bytes:
    return hmac.new(secret, signing_input, hashlib.sha256).digest()


def _check_id(kind: str, value: object) -> str:
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise TokenError(f"{kind} must be 1-64 characters of letters, digits, '_', '.', '-' (got {value!r})")
    return value


def _check_claims(room: object, participant: object, name: object, role: object) -> None:
    _check_id("room", room)
    _check_id("participant", participant)
    if participant == RELAY_ID:
        raise TokenError(f"participant id {RELAY_ID!r} is reserved for the server's relay")
    if role not in ROLES:
        raise TokenError(f"role must be one of {', '.join(ROLES)} (got {role!r})")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS or not name.isprintable():
        raise TokenError(f"name must be 1-{MAX_NAME_CHARS} printable characters")


def issue_token(
    secret: bytes,
    room: str,
    participant: str,
    role: str,
    *,
    name: str | None = None,
    ttl_s: float = DEFAULT_TTL_S,
    now: float | None = None,
) -> str:
    """Sign a join token.

    Parameters
    ----------
    secret : bytes
        HMAC key, at least :data:`MIN_SECRET_BYTES` long.
    room, participant : str
        Room and participant ids (:data:`ID_PATTERN`; ``"relay"`` is reserved).
    role : str
        One of :data:`ROLES`.
    name : str, optional
        Display name; defaults to the participant id.
    ttl_s : float
        Lifetime in seconds, ``0 < ttl_s <=`` :data:`MAX_TTL_S`.
    now : float, optional
        Issue time, Unix seconds (default: the wall clock).

    Returns
    -------
    str
        The compact token.

    Raises
    ------
    TokenError
        A claim is invalid.
    SecretError
        The secret is too short.
    """
    _check_secret(secret)
    name = participant if name is None else name
    _check_claims(room, participant, name, role)
    if not 0 < ttl_s <= MAX_TTL_S:
        raise TokenError(f"ttl must be between 1 s and {MAX_TTL_S} s (got {ttl_s})")
    issued = time.time() if now is None else now
    payload = {
        "v": TOKEN_VERSION,
        "jti": b64url_encode(secrets.token_bytes(16)),
        "room": room,
        "sub": participant,
        "name": name,
        "role": role,
        "iat": int(issued),
        "exp": int(issued + ttl_s),
    }
    body = b64url_encode(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    return f"{body}.{b64url_encode(_sign(secret, body.encode('ascii')))}"


def verify_token(secret: bytes, token: str, *, now: float | None = None, expired_ok: bool = False) -> TokenClaims:
    """Check a token's signature and lifetime and return its claims.

    Parameters
    ----------
    secret : bytes
        The HMAC key the token was signed with.
    token : str
        The compact token.
    now : float, optional
        Check time, Unix seconds (default: the wall clock).
    expired_ok : bool
        Return the claims of a genuine token even if it has expired (``consult revoke`` revokes the
        session an expired token opened).

    Raises
    ------
    TokenExpiredError
        The token is genuine but expired.
    TokenError
        The token is malformed, its signature does not match (forged or tampered with), or a claim
        is invalid.
    """
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise TokenError("token is missing or too long")
    parts = token.split(".")
    if len(parts) != 2:
        raise TokenError("token must have two dot-separated parts")
    body, sig = parts
    expected = _sign(secret, body.encode("ascii", errors="replace"))
    # Signature first, in constant time: nothing from an unsigned payload is interpreted.
    if not hmac.compare_digest(b64url_decode(sig), expected):
        raise TokenError("token signature does not match (forged, tampered with, or another server's)")
    try:
        payload = json.loads(b64url_decode(body).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise TokenError("token payload is not JSON") from exc
    # type() and not ==: True == 1.0 == 1 in Python, and a version is an integer in JSON.
    if not isinstance(payload, dict) or type(payload.get("v")) is not int or payload["v"] != TOKEN_VERSION:
        raise TokenError(f"token version is not {TOKEN_VERSION}")
    jti = payload.get("jti")
    if not isinstance(jti, str) or not re.fullmatch(r"[A-Za-z0-9_-]{16,32}", jti):
        raise TokenError("token id (jti) must be 16-32 base64url characters")
    room, participant, name, role = (payload.get(k) for k in ("room", "sub", "name", "role"))
    _check_claims(room, participant, name, role)
    iat, exp = payload.get("iat"), payload.get("exp")
    if not (isinstance(iat, int) and isinstance(exp, int)) or isinstance(iat, bool) or isinstance(exp, bool):
        raise TokenError("token times must be integers")
    current = time.time() if now is None else now
    if iat > current + CLOCK_SKEW_S:
        raise TokenError("token is issued in the future (check the clocks)")
    if not 0 < exp - iat <= MAX_TTL_S:
        raise TokenError(f"token lifetime must be 1-{MAX_TTL_S} s (it says {exp - iat} s)")
    if exp <= current and not expired_ok:
        raise TokenExpiredError(f"token expired {current - exp:.0f} s ago")
    return TokenClaims(
        room=str(room), participant=str(participant), name=str(name), role=str(role),
        issued_at=float(iat), expires_at=float(exp), token_id=jti,
    )  # fmt: skip


def _check_secret(secret: bytes) -> bytes:
    if len(secret) < MIN_SECRET_BYTES:
        raise SecretError(f"secret must be at least {MIN_SECRET_BYTES} bytes")
    if len(set(secret)) < MIN_SECRET_DISTINCT:
        raise SecretError(
            f"secret is too weak: only {len(set(secret))} distinct byte values (at least {MIN_SECRET_DISTINCT}); "
            "use the generated file, or e.g. 'python -c \"import secrets; print(secrets.token_hex(32))\"'"
        )
    return secret


def default_secret_path() -> Path:
    """``$MEDVERSE_HOME/consult.secret``, ``MEDVERSE_HOME`` defaulting to ``~/.local/share/medverse``."""
    home = os.environ.get("MEDVERSE_HOME")
    root = Path(home) if home else Path.home() / ".local" / "share" / "medverse"
    return root / SECRET_FILE_NAME


def _read_secret_file(path: Path) -> bytes:
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SecretError(f"secret file {path} is accessible by other users (mode {mode & 0o777:o}): chmod 600 {path}")
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise SecretError(f"cannot read secret file {path}: {exc.strerror or exc}") from exc
    try:
        return _check_secret(secret)
    except SecretError as exc:
        raise SecretError(f"secret file {path}: {exc}") from None


def _create_secret_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
        # link() fails if the name exists: when serve and token start together, the first wins and
        # the other reads its complete file.
        os.link(tmp, path)
        log.info("generated a new consultation secret in %s", path)
    except FileExistsError:
        pass
    except OSError as exc:
        raise SecretError(f"cannot create secret file {path}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def load_secret(secret_file: str | os.PathLike[str] | None = None, *, create: bool = True) -> tuple[bytes, str]:
    """Find the HMAC secret: ``secret_file``, else ``$MEDVERSE_SECRET``, else the default file.

    The default file (:func:`default_secret_path`) is created with 32 random bytes (hex) and mode
    0600 when missing and ``create`` is true, so ``serve`` and ``token`` on one machine agree without
    set-up. Files readable by other users are refused.

    Returns
    -------
    tuple[bytes, str]
        The secret and a description of where it came from (for logs; never the secret itself).

    Raises
    ------
    SecretError
        The secret is missing, unreadable, too short or too widely readable.
    """
    if secret_file is not None:
        path = Path(secret_file).expanduser()
        return _read_secret_file(path), str(path)
    env = os.environ.get(SECRET_ENV)
    if env:
        try:
            return _check_secret(env.encode("utf-8")), f"${SECRET_ENV}"
        except SecretError as exc:
            raise SecretError(f"${SECRET_ENV}: {exc}") from None
    path = default_secret_path()
    if not path.exists() and create:
        _create_secret_file(path)
    return _read_secret_file(path), str(path)
