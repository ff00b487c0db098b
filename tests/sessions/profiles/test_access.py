"""Profile access: trainees read only their own profile, instructors read all, every decision audited."""

from __future__ import annotations

from pathlib import Path

import pytest

from net.tokens import ID_PATTERN, issue_token
from sessions.profiles import AccessError, ProfileStore, open_store
from sessions.profiles.access import ACTIONS, PROFILE_ROOM, Principal, authorise, issue_profile_token
from sessions.profiles.store import TRAINEE_ID

SECRET = b"profiles-test-secret-0123456789ab"
NOW = 1_800_000_000.0


@pytest.fixture
def sqlite_store(tmp_path: Path) -> ProfileStore:
    return open_store(tmp_path / "profiles.sqlite")


def token(who: str, role: str, **kw: float) -> str:
    return issue_profile_token(SECRET, who, role, now=NOW, **kw)


def test_trainee_ids_are_token_participant_ids() -> None:
    """The store accepts exactly the ids a token can carry, so a trainee's token can name their profile."""
    assert ID_PATTERN.pattern == TRAINEE_ID


def test_trainee_reads_only_their_own_profile() -> None:
    """A trainee token grants show/export/report/verify/push on its own profile and nothing on others."""
    alice = token("alice", "trainee")
    for action in ("show", "read", "export", "report", "verify", "push"):
        assert authorise(alice, "alice", action, secret=SECRET, now=NOW) == Principal("alice", "trainee")
        with pytest.raises(AccessError, match="may not"):
            authorise(alice, "bob", action, secret=SECRET, now=NOW)
    for action in ("checkpoint", "audit"):
        with pytest.raises(AccessError, match="instructors only"):
            authorise(alice, "alice", action, secret=SECRET, now=NOW)


def test_instructor_reads_all_and_checkpoints() -> None:
    """An instructor token allows every action on every trainee's profile."""
    ines = token("ines", "instructor")
    for trainee in ("alice", "bob"):
        for action in ACTIONS:
            assert authorise(ines, trainee, action, secret=SECRET, now=NOW) == Principal("ines", "instructor")


def test_refusals_are_one_line() -> None:
    """No token, forged, expired, another room's, another role's, unknown action: one-line AccessError each."""
    other_secret = b"another-server-secret-0123456789"
    cases = [
        (None, "alice", "show", "required"),
        ("", "alice", "show", "required"),
        (issue_profile_token(other_secret, "ines", "instructor", now=NOW), "alice", "show", "signature"),
        (token("ines", "instructor", ttl_s=60), "alice", "show", "expired"),
        (issue_token(SECRET, "consult-room", "ines", "instructor", now=NOW), "alice", "show", "room"),
        (issue_token(SECRET, PROFILE_ROOM, "sam", "surgeon", now=NOW), "alice", "show", "no access"),
        (token("ines", "instructor"), "alice", "delete", "unknown profile action"),
        (token("ines", "instructor"), "not a trainee", "show", "trainee id"),
    ]
    for tok, trainee, action, words in cases:
        with pytest.raises(AccessError) as info:
            authorise(tok, trainee, action, secret=SECRET, now=NOW + 120)
        assert words in str(info.value) and "\n" not in str(info.value)


def test_only_trainee_and_instructor_tokens_are_issued() -> None:
    """issue_profile_token refuses consultation roles and bad ids with one line."""
    for who, role in (("sam", "surgeon"), ("al ice", "trainee")):
        with pytest.raises(AccessError) as info:
            issue_profile_token(SECRET, who, role)
        assert "\n" not in str(info.value)


def test_every_decision_is_audited(sqlite_store: ProfileStore) -> None:
    """Granted and refused reads both land in the audit log, with who asked."""
    authorise(token("alice", "trainee"), "alice", "export", secret=SECRET, store=sqlite_store, now=NOW)
    authorise(token("ines", "instructor"), "bob", "checkpoint", secret=SECRET, store=sqlite_store, now=NOW)
    with pytest.raises(AccessError):
        authorise(token("alice", "trainee"), "bob", "show", secret=SECRET, store=sqlite_store, now=NOW)
    with pytest.raises(AccessError):
        authorise("forged.token", "bob", "show", secret=SECRET, store=sqlite_store, now=NOW)
    log = [(e["who"], e["action"], e["trainee"], e["detail"].split(":")[0]) for e in sqlite_store.audit_log()]
    assert log == [
        ("alice", "export", "alice", "role=trainee"),
        ("ines", "checkpoint", "bob", "role=instructor"),
        ("alice", "show", "bob", "denied"),
        ("-", "show", "bob", "denied"),
    ]
    sqlite_store.close()
