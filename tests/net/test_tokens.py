"""Join tokens: signing, verification, refusal of forged/tampered/expired tokens, and the shared secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
from pathlib import Path

import pytest

from net.tokens import (
    MAX_TOKEN_CHARS,
    ROLES,
    SecretError,
    TokenClaims,
    TokenError,
    TokenExpiredError,
    default_secret_path,
    issue_token,
    load_secret,
    verify_token,
)

SECRET = b"s3cret-for-tests-0123456789abcdef"
NOW = 1_800_000_000.0


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _payload(token: str) -> dict:
    body = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


@pytest.fixture
def secret_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty MEDVERSE_HOME and no MEDVERSE_SECRET."""
    monkeypatch.setenv("MEDVERSE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MEDVERSE_SECRET", raising=False)
    return tmp_path


@pytest.mark.parametrize("role", ROLES)
def test_round_trip_keeps_every_claim(role: str) -> None:
    """A token verifies to exactly the room, participant, name, role and times it was issued with."""
    token = issue_token(SECRET, "ward-3", "alice", role, name="Dr Alice Ünal", ttl_s=600, now=NOW)
    claims = verify_token(SECRET, token, now=NOW + 10)
    assert claims == TokenClaims("ward-3", "alice", "Dr Alice Ünal", role, NOW, NOW + 600, _payload(token)["jti"])


def test_name_defaults_to_participant() -> None:
    """Without a name the participant id is the display name."""
    assert verify_token(SECRET, issue_token(SECRET, "r", "bob", "expert", now=NOW), now=NOW).name == "bob"


def test_forged_with_another_secret_is_refused() -> None:
    """A token signed with a different secret does not verify."""
    token = issue_token(b"another-secret-0123456789abcdef!", "r", "mallory", "surgeon", now=NOW)
    with pytest.raises(TokenError, match="signature"):
        verify_token(SECRET, token, now=NOW)


def test_tampered_payload_is_refused() -> None:
    """Changing a claim (observer -> surgeon) and keeping the signature breaks verification."""
    token = issue_token(SECRET, "r", "eve", "observer", now=NOW)
    payload = _payload(token)
    payload["role"] = "surgeon"
    forged = _b64(json.dumps(payload, separators=(",", ":")).encode()) + "." + token.split(".")[1]
    with pytest.raises(TokenError, match="signature"):
        verify_token(SECRET, forged, now=NOW)


def test_every_single_character_change_is_refused() -> None:
    """Flipping any one character of a token makes it invalid."""
    token = issue_token(SECRET, "r", "eve", "observer", now=NOW)
    refused = 0
    for i, ch in enumerate(token):
        mutated = token[:i] + ("A" if ch != "A" else "B") + token[i + 1 :]
        try:
            verify_token(SECRET, mutated, now=NOW)
        except TokenError:
            refused += 1
    # Even where a change only touches the unused low bits of a segment's last character (the same
    # bytes once decoded), the token is refused: only the canonical spelling verifies.
    assert refused == len(token)


def test_a_second_spelling_of_the_signature_is_refused() -> None:
    """Flipping the unused low bits of the signature's last base64 character decodes to the same HMAC; it
    is refused anyway, so a token has exactly one string (issue 16, item 7)."""
    token = issue_token(SECRET, "r", "eve", "observer", now=NOW)
    body, sig = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    respelt = sig[:-1] + alphabet[alphabet.index(sig[-1]) ^ 1]  # 32 bytes: the last character has 2 unused bits
    assert base64.urlsafe_b64decode(respelt + "=") == base64.urlsafe_b64decode(sig + "=")
    with pytest.raises(TokenError, match="canonical"):
        verify_token(SECRET, f"{body}.{respelt}", now=NOW)


def _signed(payload: dict) -> str:
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    return f"{body}.{_b64(hmac.new(SECRET, body.encode(), hashlib.sha256).digest())}"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"v": True}, "version"),
        ({"v": 2.0}, "version"),
        ({"v": 1}, "version"),
        ({"jti": "short"}, "jti"),
        ({"iat": int(NOW), "exp": int(NOW) + 8 * 24 * 3600}, "lifetime"),
        ({"iat": int(NOW), "exp": int(NOW)}, "lifetime"),
    ],
    ids=["version-true", "version-float", "version-1", "bad-jti", "longer-than-a-week", "zero-lifetime"],
)
def test_signed_claims_outside_the_rules_are_refused(change: dict, match: str) -> None:
    """A genuinely signed token whose version is not the integer 2, whose id is malformed, or whose
    lifetime exceeds the one-week cap (or is empty) is refused on verify, not only on issue."""
    payload = _payload(issue_token(SECRET, "r", "eve", "expert", now=NOW)) | change
    with pytest.raises(TokenError, match=match):
        verify_token(SECRET, _signed(payload), now=NOW + 1)


def test_default_lifetime_is_fifteen_minutes() -> None:
    """A token is for joining, not for staying: 15 minutes unless asked otherwise."""
    claims = verify_token(SECRET, issue_token(SECRET, "r", "a", "expert", now=NOW), now=NOW)
    assert claims.expires_at - claims.issued_at == 15 * 60


@pytest.mark.parametrize("weak", [b"a" * 16, b"ab" * 16, b"0123456" * 4])
def test_weak_secrets_are_refused(weak: bytes, secret_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret of the right length but few distinct bytes (one repeated character, a short pattern) is refused,
    when signing and when loaded from the environment."""
    with pytest.raises(SecretError, match="too weak"):
        issue_token(weak, "r", "a", "expert")
    monkeypatch.setenv("MEDVERSE_SECRET", weak.decode())
    with pytest.raises(SecretError, match="too weak"):
        load_secret()


def test_expired_token_is_refused_with_its_own_error() -> None:
    """A genuine token past its expiry raises TokenExpiredError."""
    token = issue_token(SECRET, "r", "alice", "expert", ttl_s=60, now=NOW)
    verify_token(SECRET, token, now=NOW + 59)
    with pytest.raises(TokenExpiredError, match="expired"):
        verify_token(SECRET, token, now=NOW + 60)


def test_token_from_the_future_is_refused() -> None:
    """A token issued well after the verifier's clock is refused."""
    token = issue_token(SECRET, "r", "alice", "expert", now=NOW + 3600)
    with pytest.raises(TokenError, match="future"):
        verify_token(SECRET, token, now=NOW)


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b.c", "!!!.???", "e30.", ".abc", "x" * (MAX_TOKEN_CHARS + 1), "é.é"],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    """Garbage in any shape raises TokenError, never anything else."""
    with pytest.raises(TokenError):
        verify_token(SECRET, token, now=NOW)


def test_signed_garbage_payload_is_refused() -> None:
    """A correctly signed payload that is not a version-1 claims object is refused."""
    bad_role = b'{"v":2,"jti":"AAAAAAAAAAAAAAAAAAAAAA","room":"r","sub":"a","name":"a","role":"king","iat":1,"exp":9999}'
    for payload in (b"[1,2]", b"not json", b'{"v":2}', b'{"v":3}', bad_role):
        body = _b64(payload)
        sig = _b64(hmac.new(SECRET, body.encode(), hashlib.sha256).digest())
        with pytest.raises(TokenError):
            verify_token(SECRET, f"{body}.{sig}", now=NOW)


@pytest.mark.parametrize(
    ("room", "participant", "role", "name", "ttl", "match"),
    [
        ("r", "relay", "expert", None, 60, "reserved"),
        ("r", "a b", "expert", None, 60, "participant"),
        ("", "a", "expert", None, 60, "room"),
        ("r", "a", "king", None, 60, "role"),
        ("r", "a", "expert", "x" * 65, 60, "name"),
        ("r", "a", "expert", "bad\nname", 60, "name"),
        ("r", "a", "expert", None, 0, "ttl"),
        ("r", "a", "expert", None, 30 * 24 * 3600, "ttl"),
    ],
)
def test_invalid_claims_are_refused_at_issue(
    room: str, participant: str, role: str, name: str | None, ttl: float, match: str
) -> None:
    """issue_token refuses ids, roles, names and lifetimes outside the documented ranges."""
    with pytest.raises(TokenError, match=match):
        issue_token(SECRET, room, participant, role, name=name, ttl_s=ttl, now=NOW)


def test_short_secret_is_refused() -> None:
    """A secret under 16 bytes cannot sign tokens."""
    with pytest.raises(SecretError):
        issue_token(b"short", "r", "a", "expert")


def test_default_secret_file_is_generated_private_and_reused(secret_env: Path) -> None:
    """Without flag or env the secret is generated once, mode 0600, and read back the same."""
    secret, where = load_secret()
    path = default_secret_path()
    assert where == str(path) and path.parent == secret_env / "home"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(secret) == 64
    assert load_secret() == (secret, where)


def test_env_secret_overrides_default_file(secret_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MEDVERSE_SECRET wins over the default file, and creates none."""
    monkeypatch.setenv("MEDVERSE_SECRET", "env-secret-0123456789")
    assert load_secret() == (b"env-secret-0123456789", "$MEDVERSE_SECRET")
    assert not default_secret_path().exists()


def test_secret_file_flag_overrides_env(secret_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit secret file wins over MEDVERSE_SECRET."""
    monkeypatch.setenv("MEDVERSE_SECRET", "env-secret-0123456789")
    path = secret_env / "flag.secret"
    path.write_text("file-secret-0123456789\n")
    path.chmod(0o600)
    assert load_secret(path)[0] == b"file-secret-0123456789"


def test_secret_file_readable_by_others_is_refused(secret_env: Path) -> None:
    """A secret file with group/other permissions is refused with the chmod to fix it."""
    path = secret_env / "loose.secret"
    path.write_text("file-secret-0123456789\n")
    os.chmod(path, 0o644)
    with pytest.raises(SecretError, match="chmod 600"):
        load_secret(path)


def test_missing_or_short_secret_file_is_refused(secret_env: Path) -> None:
    """A missing secret file and one holding too few bytes both raise SecretError."""
    with pytest.raises(SecretError, match="cannot read"):
        load_secret(secret_env / "absent")
    path = secret_env / "short.secret"
    path.write_text("short")
    path.chmod(0o600)
    with pytest.raises(SecretError, match="at least"):
        load_secret(path)
