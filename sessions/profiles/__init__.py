"""Trainee profiles: hash-chained xAPI statements per trainee, written off the frame loop.

The store (:mod:`.store`), its tamper evidence (:mod:`.chain`), the background writer (:mod:`.writer`)
and who may read which profile (:mod:`.access`). The access names load on first use: they need
``net.tokens``, and importing ``net`` tunes aiortc, which a process that only appends (the training
runner's writer, the kill test's child) should not pay for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sessions.profiles.chain import GENESIS, Checkpoint, VerifyResult, canonical_json
from sessions.profiles.errors import AccessError, CorruptProfileError, ProfileError
from sessions.profiles.store import ProfileStore, Receipt, StoredStatement, open_store
from sessions.profiles.writer import ProfileWriter

if TYPE_CHECKING:
    from sessions.profiles.access import Principal, authorise, issue_profile_token

__all__ = [
    "GENESIS",
    "AccessError",
    "Checkpoint",
    "CorruptProfileError",
    "Principal",
    "ProfileError",
    "ProfileStore",
    "ProfileWriter",
    "Receipt",
    "StoredStatement",
    "VerifyResult",
    "authorise",
    "canonical_json",
    "issue_profile_token",
    "open_store",
]

_LAZY = {"Principal", "authorise", "issue_profile_token"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from sessions.profiles import access  # noqa: PLC0415 - net (aiortc) loads only when access is used

        return getattr(access, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
