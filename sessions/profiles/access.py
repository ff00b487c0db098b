"""Who may do what with which trainee's profile, from the same signed tokens as consultations.

A profile token is a :mod:`net.tokens` token for the room :data:`PROFILE_ROOM` (a consultation's join
token, handed to everyone in a room, grants nothing here). Its participant id is the holder and its
role decides:

``trainee``     their own profile only: show, read, export, report, verify, push
``instructor``  every profile, every action, including checkpoint and reading the audit log

Every decision, granted or refused, is written to the store's audit log when a store is given, so a
read or an export leaves a trace.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from net.tokens import SecretError, TokenError, issue_token, verify_token
from sessions.profiles.errors import AccessError, ProfileError
from sessions.profiles.store import check_trainee

if TYPE_CHECKING:
    from sessions.profiles.store import ProfileStore

log = logging.getLogger(__name__)

#: The room every profile token names.
PROFILE_ROOM = "profiles"
ROLE_TRAINEE = "trainee"
ROLE_INSTRUCTOR = "instructor"
#: Actions on a profile, as the ``medverse profile`` subcommands name them ("read" for other readers).
ACTIONS: tuple[str, ...] = ("show", "read", "export", "report", "push", "verify", "checkpoint", "audit")
#: What a trainee may do with their own profile; an instructor may do everything with any.
TRAINEE_ACTIONS = frozenset({"show", "read", "export", "report", "push", "verify"})


@dataclass(frozen=True)
class Principal:
    """Whoever a verified profile token names: their id and role."""

    who: str
    role: str


def issue_profile_token(
    secret: bytes, who: str, role: str, *, ttl_s: float = 3600.0, now: float | None = None
) -> str:
    """Sign a profile token for a trainee (``role="trainee"``, ``who`` their trainee id) or an instructor.

    Raises
    ------
    AccessError
        ``role`` is not trainee or instructor, ``who`` is not a valid id, or the secret is too short.
    """
    if role not in (ROLE_TRAINEE, ROLE_INSTRUCTOR):
        raise AccessError(f"profile tokens are for the roles {ROLE_TRAINEE} and {ROLE_INSTRUCTOR} (got {role!r})")
    try:
        return issue_token(secret, PROFILE_ROOM, who, role, ttl_s=ttl_s, now=now)
    except (TokenError, SecretError) as exc:
        raise AccessError(f"cannot issue a profile token: {exc}") from None


def _decide(token: str | None, trainee: str, action: str, secret: bytes, now: float | None) -> Principal:
    if action not in ACTIONS:
        raise AccessError(f"unknown profile action {action!r} (one of {', '.join(ACTIONS)})")
    try:
        check_trainee(trainee)
    except ProfileError as exc:
        raise AccessError(str(exc)) from None
    if not token:
        raise AccessError("a profile token is required (issue one with role trainee or instructor)")
    try:
        claims = verify_token(secret, token, now=now)
    except TokenError as exc:
        raise AccessError(f"profile token refused: {exc}") from None
    if claims.room != PROFILE_ROOM:
        raise AccessError(f"token is for room {claims.room!r}, not a profile token (room {PROFILE_ROOM!r})")
    principal = Principal(claims.participant, claims.role)
    if claims.role == ROLE_INSTRUCTOR:
        return principal
    if claims.role == ROLE_TRAINEE:
        if claims.participant != trainee:
            raise AccessError(f"trainee {claims.participant} may not {action} the profile of {trainee}")
        if action not in TRAINEE_ACTIONS:
            raise AccessError(f"trainee {claims.participant} may not {action} a profile (instructors only)")
        return principal
    raise AccessError(f"role {claims.role!r} has no access to profiles (trainee or instructor)")


def authorise(
    token: str | None,
    trainee: str,
    action: str,
    *,
    secret: bytes,
    store: ProfileStore | None = None,
    now: float | None = None,
) -> Principal:
    """Check that ``token`` allows ``action`` on ``trainee``'s profile, and log the decision.

    Parameters
    ----------
    token : str or None
        A profile token (:func:`issue_profile_token`).
    trainee : str
        Whose profile.
    action : str
        One of :data:`ACTIONS`.
    secret : bytes
        The HMAC secret the tokens are signed with (:func:`net.tokens.load_secret`).
    store : ProfileStore, optional
        When given, the decision goes into its audit log: granted as ``(who, action, trainee,
        "role=...")``, refused as ``(who or "-", action, trainee, "denied: reason")``.
    now : float, optional
        Check time, Unix seconds (default: the wall clock).

    Raises
    ------
    AccessError
        No token, a forged or expired one, another room's, or a role that does not allow it.
    """
    try:
        principal = _decide(token, trainee, action, secret, now)
    except AccessError as exc:
        if store is not None:
            who = "-"
            if token:
                with contextlib.suppress(TokenError):
                    who = verify_token(secret, token, now=now).participant
            store.audit(who, action, str(trainee), f"denied: {exc}")
        log.info("profile access denied: %s", exc)
        raise
    if store is not None:
        store.audit(principal.who, action, trainee, f"role={principal.role}")
    return principal
