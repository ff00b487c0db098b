"""Who may do what in a consultation room: the role policy as data, and the one check everyone runs.

A participant's role comes from its join token (``net.tokens``) and may be changed during the session
by a surgeon's ``SET_ROLE`` op, the latest of which wins (``SharedState.roles``). :data:`POLICY` says,
for each role and op kind, whether the role may make it at all and on whose marks:

- ``ANY``: on any mark (or the op names no mark: the twin transform, a clip plane, the selection);
- ``OWN``: only a new mark, or a mark the sender created (a stroke, landmark or measurement belongs
  to whoever created it, docs/protocol.md); ``CLEAR_MARKS`` only ever touches the sender's own;
- absent: never.

Poses are not ops: everyone, observers too, may look around and point.

:func:`check` is the one decision, made in the same way by the sender before it applies its own op
(``net.participant.sync``), by the relay before it forwards one (``net.relay``), and by every receiver
before it applies one (a peer-to-peer op never passes the server). ``docs/roles.md`` holds the
table :func:`policy_table` writes; ``tests/net/test_roles.py`` keeps the two equal.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Protocol

from net.protocol import ROOM_ROLES, OpKind, StateOp


class Scope(enum.Enum):
    """On which marks a role may make an op kind."""

    OWN = "own"
    ANY = "any"


OWN, ANY = Scope.OWN, Scope.ANY

#: role -> op kind -> scope; a kind a role lacks is refused. Roles outside ``ROOM_ROLES`` (``instructor``,
#: which is for trainee profiles) may make no op, like an observer.
POLICY: Mapping[str, Mapping[OpKind, Scope]] = {
    # everything, on anyone's marks, and the only role that grants or revokes roles
    "surgeon": {kind: ANY for kind in OpKind},
    # annotate (strokes, landmarks), measure, cut (clip planes), move the twin, select; own marks only
    "expert": {
        OpKind.STROKE_ADD: OWN, OpKind.STROKE_ERASE: OWN,
        OpKind.LANDMARK_PLACE: OWN, OpKind.LANDMARK_MOVE: OWN, OpKind.LANDMARK_DELETE: OWN,
        OpKind.CLIP_SET: ANY, OpKind.CLIP_CLEAR: ANY,
        OpKind.TRANSFORM: ANY, OpKind.SELECT: ANY,
        OpKind.MEASURE: OWN, OpKind.MEASURE_DELETE: OWN,
        OpKind.CLEAR_MARKS: OWN,
    },
    # point (a pose), own landmarks and strokes; the selection, the twin and the cut are the room's,
    # which a trainee follows rather than steers
    "trainee": {
        OpKind.STROKE_ADD: OWN, OpKind.STROKE_ERASE: OWN,
        OpKind.LANDMARK_PLACE: OWN, OpKind.LANDMARK_MOVE: OWN, OpKind.LANDMARK_DELETE: OWN,
        OpKind.CLEAR_MARKS: OWN,
    },
    # look and point: no state op at all
    "observer": {},
}  # fmt: skip

#: Op kinds that name a mark by its ``id`` (the mark's owner is checked for an ``OWN`` scope).
MARK_OPS = frozenset({
    OpKind.STROKE_ADD, OpKind.STROKE_ERASE,
    OpKind.LANDMARK_PLACE, OpKind.LANDMARK_MOVE, OpKind.LANDMARK_DELETE,
    OpKind.MEASURE, OpKind.MEASURE_DELETE,
})  # fmt: skip
#: Op kinds that create a mark: with an ``OWN`` scope, a new id is allowed (a move or removal needs a held mark).
CREATE_OPS = frozenset({OpKind.STROKE_ADD, OpKind.LANDMARK_PLACE, OpKind.MEASURE})

#: What each op kind does, in words (refusal reasons and the docs table).
ACTIONS: Mapping[OpKind, str] = {
    OpKind.STROKE_ADD: "draw a stroke",
    OpKind.STROKE_ERASE: "erase a stroke",
    OpKind.LANDMARK_PLACE: "place a landmark",
    OpKind.LANDMARK_MOVE: "move a landmark",
    OpKind.LANDMARK_DELETE: "delete a landmark",
    OpKind.CLIP_SET: "set a clip plane",
    OpKind.CLIP_CLEAR: "clear a clip plane",
    OpKind.TRANSFORM: "move the twin",
    OpKind.SELECT: "select a structure",
    OpKind.MEASURE: "measure",
    OpKind.MEASURE_DELETE: "delete a measurement",
    OpKind.CLEAR_MARKS: "clear their own marks",
    OpKind.SET_ROLE: "grant or revoke a role",
}


#: Who may read the signaling server's detailed ``/stats`` (names, roles, rooms, links), with a token in
#: ``Authorization: Bearer``: a surgeon sees its own room (it runs the consultation); an instructor,
#: who supervises and already reads every trainee's profile, sees every room. Any other role, and a
#: request without a token, gets aggregates only (docs/signaling.md, "HTTP endpoints").
STATS_SCOPE: Mapping[str, str] = {"surgeon": "room", "instructor": "server"}

class MarkOwners(Protocol):
    """What :func:`check` needs of the state: who created a mark (``SharedState`` is one)."""

    def mark_owner(self, kind: OpKind, mark_id: str) -> int | None:
        """The participant index that created the mark ``kind`` names, or None when none is held."""


def scope(role: str, kind: OpKind) -> Scope | None:
    """What ``role`` may do with ops of ``kind``: ``ANY``, ``OWN``, or None (never)."""
    return POLICY.get(role, {}).get(kind)


def check_kind(role: str, kind: OpKind) -> str | None:
    """Why a participant of ``role`` may make no op of ``kind`` at all (whose marks aside), or None."""
    return _kind_refused(role, kind) if scope(role, kind) is None else None


def _kind_refused(role: str, kind: OpKind) -> str:
    return f"{role or 'a participant without a role'} may not {ACTIONS[kind]}"


def check(role: str, op: StateOp, state: MarkOwners | None) -> str | None:
    """Why a participant of ``role`` may not make ``op``, or None when it may.

    Parameters
    ----------
    role : str
        The sender's role now (its token's, or the latest ``SET_ROLE`` for it).
    op : StateOp
        The op; its ``participant`` is the sender.
    state : MarkOwners or None
        Who created each mark, to check an ``OWN`` scope; None (the relay before it holds the room's
        state) checks the kind alone and leaves marks to the receivers.

    Returns
    -------
    str or None
        One line for the refusal (``"observer may not move the twin"``), or None.
    """
    allowed = scope(role, op.kind)
    if allowed is None:
        return _kind_refused(role, op.kind)
    action = ACTIONS[op.kind]
    if allowed is ANY or op.kind not in MARK_OPS or state is None:
        return None
    mark_id = str(op.payload["id"])
    owner = state.mark_owner(op.kind, mark_id)
    if owner is None:
        return None if op.kind in CREATE_OPS else f"{role} may not {action} {mark_id!r}: no such mark held"
    if owner != op.participant:
        return f"{role} may not {action} {mark_id!r} of participant {owner}: only their own"
    return None


def policy_table() -> str:
    """The policy as a Markdown table (op kinds down, roles across): what docs/roles.md shows."""
    head = "| op kind | what it does | " + " | ".join(ROOM_ROLES) + " |"
    rule = "|" + "---|" * (2 + len(ROOM_ROLES))
    rows = [head, rule]
    marks = {ANY: "yes", OWN: "own", None: "—"}
    for kind in OpKind:
        cells = [marks[scope(role, kind)] for role in ROOM_ROLES]
        rows.append(f"| {kind.value} `{kind.name}` | {ACTIONS[kind]} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"
