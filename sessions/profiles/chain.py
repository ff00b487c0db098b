"""Tamper evidence for trainee profiles: a hash chain per trainee and signed checkpoints.

Each trainee's statements form a chain, as Certificate-Transparency-style logs do: record ``seq``
(1, 2, ...) stores the statement as canonical JSON text and

    hash(seq) = SHA-256(digest(seq - 1) + UTF-8 bytes of the canonical JSON)

where ``digest`` is the raw 32-byte hash of the previous record and the record before the first is
:data:`GENESIS` (32 zero bytes, 64 zeros in hex). Hashes are stored in hex beside each record together
with the previous record's hash, so :func:`walk` can name the first record whose content was edited,
that was deleted, inserted or moved.

The chain alone cannot show that a profile was rewritten from some record on and re-hashed
consistently. A :class:`Checkpoint` closes that gap: an HMAC-SHA256 over (trainee, seq, head hash,
time) made with a key the instructor holds; a later :func:`verify_prefix` recomputes the hash at
``seq`` from the stored records and compares. The key is the medverse secret that also signs tokens
(:func:`net.tokens.load_secret`); the signed message starts with :data:`CHECKPOINT_DOMAIN`, so a
checkpoint MAC can never be replayed as a token signature or the reverse.

The text is hashed exactly as stored, so verifying never parses or re-serialises JSON: a
1,000,000-record profile verifies in a few seconds (``bench/profiles.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sessions.profiles.errors import ProfileError

#: The hash "before" record 1 of every chain.
GENESIS = "0" * 64
#: Prefix of every signed checkpoint message: domain separation from the token signatures.
CHECKPOINT_DOMAIN = b"medverse.profile-checkpoint/1\n"

#: One stored record as :func:`walk` reads it: (seq, the bytes ``"id":"<statement id>"`` as the
#: statement id column says, the canonical JSON as UTF-8 bytes, prev_hash hex, hash hex). The database
#: builds the id marker, so the walk only searches for it.
Row = tuple[int, bytes, bytes, str, str]


def canonical_json(statement: Mapping[str, Any]) -> str:
    """The one text of a statement that is stored and hashed: sorted keys, no spaces, UTF-8 as is.

    Raises
    ------
    ProfileError
        The statement is not JSON (a NaN, a set, a lone surrogate, a cycle).
    """
    try:
        text = json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")
    except (ValueError, TypeError, RecursionError, UnicodeEncodeError) as exc:
        raise ProfileError(f"statement is not JSON: {str(exc).splitlines()[0]}") from None
    return text


def record_hash(prev_hash: str, canonical: bytes) -> str:
    """Hash (hex) of a record that follows the record whose hash (hex) is ``prev_hash``."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    """What a verification found.

    Attributes
    ----------
    ok : bool
        True when every record checked is intact.
    count : int
        Records that verified before the first bad one (all of them when ``ok``).
    first_bad_seq : int or None
        Seq of the first record that is edited, missing, inserted or out of place.
    reason : str
        One line saying what was found.
    head_hash : str
        Hash (hex) of the last record that verified (:data:`GENESIS` when none did).
    """

    ok: bool
    count: int
    first_bad_seq: int | None
    reason: str
    head_hash: str = GENESIS


def walk(
    batches: Iterable[Sequence[Row]], *, first_seq: int = 1, prev_hash: str | None = GENESIS, upto: int | None = None
) -> VerifyResult:
    """Walk a chain in seq order and stop at the first record that is not intact.

    Checks, for each record: its seq follows the last one (a gap is a deletion), its prev_hash is
    the hash of the record before (else a record before it was deleted, inserted or moved), its hash
    is the hash of its stored text (else the text was edited), and its statement id column is the
    id in the text.

    Parameters
    ----------
    batches : iterable of lists of :data:`Row`
        The records from ``first_seq`` on, e.g. pages of a database cursor; none after ``upto``.
    first_seq : int
        Seq of the first record expected (1 for a whole chain; more for one range of it).
    prev_hash : str or None
        Hash (hex) of record ``first_seq - 1``; None when unknown (that record is missing, which the
        range before reports): the first record's own prev_hash is taken then.
    upto : int, optional
        The last seq that must be present (a checkpoint's, or the end of a range).

    Returns
    -------
    VerifyResult
        ``count`` is the number of records that verified in this walk.
    """
    sha256 = hashlib.sha256
    expected = first_seq
    prev_hex = prev_hash
    prev_raw = bytes.fromhex(prev_hash) if prev_hash is not None else b""
    for batch in batches:
        for seq, marker, body, stored_prev, stored_hash in batch:
            if seq != expected or stored_prev != prev_hex:
                if prev_hex is None and seq == expected:
                    prev_hex = stored_prev
                    prev_raw = _unhex(stored_prev)
                else:
                    return _broken(expected, first_seq, seq, prev_hex)
            digest = sha256(prev_raw)
            digest.update(body)
            raw = digest.digest()
            hex_hash = raw.hex()
            if hex_hash != stored_hash:
                why = f"record {seq} does not match its hash: its content was edited"
                return VerifyResult(False, seq - first_seq, seq, why, prev_hex or GENESIS)
            if marker not in body:
                statement_id = marker[6:-1].decode("utf-8", errors="replace")
                why = f"record {seq}: the statement id column ({statement_id}) is not the statement's id: edited"
                return VerifyResult(False, seq - first_seq, seq, why, prev_hex)
            prev_raw, prev_hex = raw, hex_hash
            expected += 1
    count = expected - first_seq
    head = prev_hex or GENESIS
    if upto is not None and expected <= upto:
        why = f"record {expected} is missing (records up to {upto} expected): deleted"
        return VerifyResult(False, count, expected, why, head)
    return VerifyResult(True, count, None, f"{count} records intact" if count else "empty profile", head)


def _unhex(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        return b""  # not a hash: the record's own hash check fails next


def _broken(expected: int, first_seq: int, seq: int, prev_hex: str | None) -> VerifyResult:
    """The result for a record out of sequence or not linked to the one before."""
    head = prev_hex or GENESIS
    if seq > expected:
        why = f"record {expected} is missing (the next stored record is {seq}): deleted"
        return VerifyResult(False, expected - first_seq, expected, why, head)
    if seq < expected:
        return VerifyResult(False, expected - first_seq, seq, f"record {seq} is stored twice or out of order", head)
    why = (f"record {seq} does not follow record {seq - 1} (its prev_hash differs): a record was deleted, "
           "inserted or moved before it")  # fmt: skip
    return VerifyResult(False, seq - first_seq, seq, why, head)


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement that a trainee's chain had ``seq`` records ending in ``hash`` at ``time``.

    Attributes
    ----------
    trainee : str
    seq : int
        Records covered (0 for an empty profile).
    hash : str
        Hash (hex) of record ``seq`` (:data:`GENESIS` when 0).
    time : float
        When it was made, Unix seconds.
    mac : str
        HMAC-SHA256 (hex) of :data:`CHECKPOINT_DOMAIN` + the canonical JSON of the other fields.
    """

    trainee: str
    seq: int
    hash: str
    time: float
    mac: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields, to hand to the instructor or keep in a file."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Checkpoint:
        """Read back :meth:`to_dict`; one-line :class:`ProfileError` on a malformed checkpoint."""
        try:
            trainee, seq, head, when, mac = (data[k] for k in ("trainee", "seq", "hash", "time", "mac"))
        except (KeyError, TypeError) as exc:
            raise ProfileError(f"checkpoint lacks field {exc}") from None
        if not isinstance(trainee, str) or not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ProfileError("checkpoint trainee must be text and seq a whole number >= 0")
        if not isinstance(when, int | float) or isinstance(when, bool) or not math.isfinite(when):
            raise ProfileError("checkpoint time must be a number (Unix seconds)")
        for name, value in (("hash", head), ("mac", mac)):
            if not isinstance(value, str) or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
                raise ProfileError(f"checkpoint {name} must be 64 lowercase hex digits")
        return cls(trainee, seq, head, float(when), mac)


def _checkpoint_message(trainee: str, seq: int, head: str, when: float) -> bytes:
    fields = {"trainee": trainee, "seq": seq, "hash": head, "time": when}
    return CHECKPOINT_DOMAIN + canonical_json(fields).encode("utf-8")


def sign_checkpoint(key: bytes, trainee: str, seq: int, head: str, when: float) -> Checkpoint:
    """Sign a chain head with ``key`` (at least 16 bytes: the medverse secret)."""
    if len(key) < 16:
        raise ProfileError("checkpoint key must be at least 16 bytes")
    mac = hmac.new(key, _checkpoint_message(trainee, seq, head, when), hashlib.sha256).hexdigest()
    return Checkpoint(trainee, seq, head, when, mac)


def checkpoint_signed(cp: Checkpoint, key: bytes) -> bool:
    """Whether ``cp`` was signed with ``key`` and not altered since (constant-time comparison)."""
    expected = hmac.new(key, _checkpoint_message(cp.trainee, cp.seq, cp.hash, cp.time), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, cp.mac)


def verify_prefix(cp: Checkpoint, key: bytes, walk_upto: Callable[[int], VerifyResult]) -> VerifyResult:
    """Check a signed checkpoint against a chain: the first ``cp.seq`` records are unchanged since.

    A forged or altered checkpoint fails first, before anything is read. Then ``walk_upto(cp.seq)``
    walks the chain up to ``cp.seq`` (:func:`walk` with ``upto``); a broken record names itself, and
    a chain that is intact but ends at ``cp.seq`` with another hash was rewritten and re-hashed after
    the checkpoint.
    """
    if not checkpoint_signed(cp, key):
        return VerifyResult(False, 0, None, "checkpoint signature does not match (forged, altered, or another key)")
    result = walk_upto(cp.seq)
    if not result.ok:
        return result
    if result.head_hash != cp.hash:
        why = f"records 1-{cp.seq} were rewritten since the checkpoint (the hash at {cp.seq} differs)"
        return VerifyResult(False, 0, cp.seq, why, result.head_hash)
    return VerifyResult(True, cp.seq, None, f"records 1-{cp.seq} unchanged since the checkpoint", result.head_hash)
