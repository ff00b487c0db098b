"""The shared consultation state: a conflict-free replicated state built from ``StateOp`` messages.

Every peer holds a :class:`SharedState` and applies the same operations in whatever order they arrive;
the result is the same everywhere because

- an op is identified by (participant, seq) and applied at most once;
- clip planes, the twin transform, the selection, and each landmark's position and label are
  last-writer-wins registers ordered by the stamp (lamport, participant, seq), a total order;
- strokes, landmarks and measurements are add/remove sets whose removal is final (a tombstone that
  also wins over an add that arrives after it);
- a participant's "clear my marks" (``CLEAR_MARKS``) removes, finally, every stroke, landmark and
  measurement that participant created with a stamp below the clear's: those already held, and those
  that arrive later with an older stamp. A mark belongs to whoever created it (the stamp of its
  stroke, of its landmark's placement, of its measurement); a landmark someone else moved is still
  its placer's. As with deletes, a mark's id names one mark: an id created again after it was
  removed stays removed;
- a participant's role granted during the session (``SET_ROLE``) is a last-writer-wins register per
  participant index (:attr:`SharedState.roles`); who may make which op is not the state's business
  but ``net.roles``' (checked by ``net.participant.sync`` and ``net.relay`` before an op is applied).

A late joiner asks for a :meth:`SharedState.snapshot` and :meth:`SharedState.merge_snapshot` s it: the
merge takes the newer stamp of every register and the union of tombstones and applied op ids, so ops
received before, during or after the snapshot are neither lost nor applied twice. :meth:`digest` is
the sha256 of the canonical state, equal on every peer that applied the same ops.

Time is an input: ``make_op`` takes the sender time from its caller.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from net.errors import NetError, ProtocolError
from net.protocol import MAX_LAMPORT, OpKind, StateOp, canonical_json, parse_json, validate_payload

log = logging.getLogger(__name__)

#: Version of the snapshot layout (``SharedState.snapshot()``); 2 added measurements and clears, 3 roles.
SNAPSHOT_VERSION = 3

Stamp = tuple[int, int, int]  # lamport, participant, seq: the total order of writes
#: Vets one stamped entry of a snapshot: (op kind that wrote it, writer's index, stamp) -> a reason to
#: refuse it, or None (``SharedState.merge_snapshot``).
EntryPermit = Callable[[OpKind, int, Stamp], "str | None"]


class OpRefusedError(NetError):
    """A local op that the local role does not allow (``SharedState.make_op``'s ``permit``): not made, not sent.

    Attributes
    ----------
    op : StateOp
        The op as it would have been.
    reason : str
        One line saying why (``net.roles.check``).
    """

    def __init__(self, op: StateOp, reason: str) -> None:
        self.op = op
        self.reason = reason
        super().__init__(f"{op.kind.name} refused: {reason}")


@dataclass(frozen=True)
class ApplyResult:
    """What ``SharedState.apply`` did: ``applied`` False for a duplicate (already applied) op."""

    applied: bool
    op: StateOp


def _ranges(seqs: Iterable[int]) -> list[list[int]]:
    """Sorted integers as inclusive ``[lo, hi]`` runs (applied op ids stay small in snapshots)."""
    out: list[list[int]] = []
    for s in sorted(seqs):
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return out


class _Register(dict[str, dict[str, Any]]):
    """A last-writer-wins register map that keeps each entry's canonical JSON (``"key":{...}``).

    The state digest hashes the whole canonical state; with the entries' text kept, a digest after
    one op re-serialises one entry instead of every stroke and landmark held (6 ms -> 0.5 ms for
    2,400 ops). Only ``[key] = value`` and ``pop`` may change it: a value is replaced, never edited.
    """

    def __init__(self) -> None:
        super().__init__()
        self._text: dict[Any, bytes] = {}
        self._whole: bytes | None = None

    def __setitem__(self, key: Any, value: Any) -> None:
        self._text.pop(key, None)
        self._whole = None
        super().__setitem__(key, value)

    def pop(self, key: Any, *default: Any) -> Any:
        self._text.pop(key, None)
        self._whole = None
        return super().pop(key, *default)

    def canonical(self) -> bytes:
        """``canonical_json(self)`` (keys as strings, sorted), from the kept entry texts."""
        if self._whole is not None:
            return self._whole
        text = self._text
        parts = []
        for key in sorted(self, key=str):
            entry = text.get(key)
            if entry is None:
                entry = text[key] = canonical_json(str(key)) + b":" + canonical_json(self[key])
            parts.append(entry)
        self._whole = b"{" + b",".join(parts) + b"}"
        return self._whole


class SharedState:
    """Annotations, landmarks, clip planes, twin transform and selection, replicated by ops.

    Parameters
    ----------
    participant : int
        This peer's index in the room (the ``participant`` of the ops it makes).
    """

    def __init__(self, participant: int) -> None:
        self.participant = participant
        self.lamport = 0
        self.seq = 0
        self._applied: dict[int, set[int]] = {}
        self._strokes: _Register = _Register()  # id -> {"stamp", ...payload}
        self._erased: set[str] = set()
        self._landmark_pos: _Register = _Register()  # id -> {"stamp", "position"}
        self._landmark_info: _Register = _Register()  # id -> {"stamp", "label", "structure"}
        self._deleted: set[str] = set()
        self._clip: dict[int, dict[str, Any]] = {}  # index -> {"stamp", "plane": {...} | None}
        self._transform: dict[str, Any] | None = None  # {"stamp", "value"}
        self._selection: dict[str, Any] | None = None  # {"stamp", "structure"}
        self._measures: _Register = _Register()  # id -> {"stamp", "a_mm", "b_mm", "distance_mm", "label", "geodesic_mm"}
        self._measures_deleted: set[str] = set()
        self._cleared: dict[int, list[int]] = {}  # participant -> stamp of its latest CLEAR_MARKS
        self._roles: dict[int, dict[str, Any]] = {}  # participant -> {"stamp", "role"}: the latest SET_ROLE
        # participant -> every (stamp, role) held, in stamp order: whose role an op had when it was made
        # (``role_at``). Not state: a snapshot carries the latest grant only.
        self._role_history: dict[int, list[tuple[Stamp, str]]] = {}
        #: Why entries of the last merged snapshot were left out (``merge_snapshot`` with a permit).
        self.refused_entries: list[str] = []
        # The digest is asked for on every digest message from every peer (15 a second in a room of 16):
        # cached until the state changes, and the large registers keep their entries' JSON text.
        self._digest: bytes | None = None

    # ------------------------------------------------------------------ ops

    @property
    def op_count(self) -> int:
        """Number of distinct ops applied (directly or through a snapshot)."""
        return sum(len(s) for s in self._applied.values())

    def has(self, participant: int, seq: int) -> bool:
        """True when op (participant, seq) is already applied."""
        return seq in self._applied.get(participant, ())

    def renumber(self, participant: int) -> None:
        """Make the next local ops as ``participant``, continuing after the ops of it the state holds."""
        self.participant = participant
        self.seq = max(self._applied.get(participant, ()), default=0)

    def make_op(
        self,
        kind: OpKind | int,
        payload: Mapping[str, Any],
        sender_time: float,
        permit: Callable[[StateOp], str | None] | None = None,
    ) -> StateOp:
        """Make a local op (next seq, Lamport clock + 1), apply it, and return it for sending.

        Parameters
        ----------
        kind : OpKind
            What to do.
        payload : mapping
            The op's payload (validated and normalised; ``ProtocolError`` when invalid).
        sender_time : float
            Local monotonic time, seconds.
        permit : callable, optional
            ``permit(op)`` -> a reason to refuse the op, or None (``net.roles.check`` with the local role):
            a refused op raises :class:`OpRefusedError` and changes nothing, not even the seq or clock.
        """
        normalised = validate_payload(kind, payload)
        if self.lamport + 1 > MAX_LAMPORT:
            raise ProtocolError("Lamport clock exhausted", "state")
        op = StateOp(self.participant, self.seq + 1, self.lamport + 1, OpKind(kind), normalised, sender_time)
        reason = permit(op) if permit is not None else None
        if reason is not None:
            raise OpRefusedError(op, reason)
        self.seq, self.lamport = op.seq, op.lamport
        self._apply(op)
        return op

    def apply(self, op: StateOp) -> ApplyResult:
        """Apply a received op once; a duplicate is ignored (``applied`` False).

        The Lamport clock moves to ``max(local, op.lamport) + 1`` on receipt, as in docs/protocol.md.
        """
        self.lamport = max(self.lamport, op.lamport) + 1
        if self.has(op.participant, op.seq):
            return ApplyResult(False, op)
        self._apply(op)
        return ApplyResult(True, op)

    def _apply(self, op: StateOp) -> None:
        self._digest = None
        self._applied.setdefault(op.participant, set()).add(op.seq)
        stamp: Stamp = (op.lamport, op.participant, op.seq)
        p = op.payload
        kind = op.kind
        if kind is OpKind.STROKE_ADD:
            if self._cleared_mark(stamp):
                self._erase_stroke(p["id"])
            elif p["id"] not in self._erased:
                self._write(self._strokes, p["id"], stamp, {k: v for k, v in p.items() if k != "id"})
        elif kind is OpKind.STROKE_ERASE:
            self._erase_stroke(p["id"])
        elif kind is OpKind.LANDMARK_PLACE:
            if self._cleared_mark(stamp):
                self._delete_landmark(p["id"])
            elif p["id"] not in self._deleted:
                self._write(self._landmark_pos, p["id"], stamp, {"position": p["position"]})
                self._write(self._landmark_info, p["id"], stamp, {"label": p["label"], "structure": p["structure"]})
        elif kind is OpKind.LANDMARK_MOVE:
            if p["id"] not in self._deleted:
                self._write(self._landmark_pos, p["id"], stamp, {"position": p["position"]})
        elif kind is OpKind.LANDMARK_DELETE:
            self._delete_landmark(p["id"])
        elif kind is OpKind.CLIP_SET:
            self._write(self._clip, p["index"], stamp, {"plane": {"normal": p["normal"], "d": p["d"]}})
        elif kind is OpKind.CLIP_CLEAR:
            self._write(self._clip, p["index"], stamp, {"plane": None})
        elif kind is OpKind.TRANSFORM:
            if self._transform is None or tuple(self._transform["stamp"]) < stamp:
                self._transform = {"stamp": list(stamp), "value": dict(p)}
        elif kind is OpKind.SELECT:
            if self._selection is None or tuple(self._selection["stamp"]) < stamp:
                self._selection = {"stamp": list(stamp), "structure": p["structure"]}
        elif kind is OpKind.MEASURE:
            if self._cleared_mark(stamp):
                self._delete_measure(p["id"])
            elif p["id"] not in self._measures_deleted:
                self._write(self._measures, p["id"], stamp, {k: v for k, v in p.items() if k != "id"})
        elif kind is OpKind.MEASURE_DELETE:
            self._delete_measure(p["id"])
        elif kind is OpKind.CLEAR_MARKS:
            held = self._cleared.get(op.participant)
            if held is None or tuple(held) < stamp:
                self._cleared[op.participant] = list(stamp)
            self._sweep()
        elif kind is OpKind.SET_ROLE:
            self._grant(p["participant"], stamp, p["role"])

    def _grant(self, participant: int, stamp: Stamp, role: str) -> None:
        self._write(self._roles, participant, stamp, {"role": role})
        history = self._role_history.setdefault(participant, [])
        if (stamp, role) not in history:
            history.append((stamp, role))
            history.sort()

    def _erase_stroke(self, stroke_id: str) -> None:
        self._erased.add(stroke_id)
        self._strokes.pop(stroke_id, None)

    def _delete_landmark(self, landmark_id: str) -> None:
        self._deleted.add(landmark_id)
        self._landmark_pos.pop(landmark_id, None)
        self._landmark_info.pop(landmark_id, None)

    def _delete_measure(self, measure_id: str) -> None:
        self._measures_deleted.add(measure_id)
        self._measures.pop(measure_id, None)

    def _cleared_mark(self, stamp: Stamp | list[int]) -> bool:
        """True when a mark created at ``stamp`` predates its creator's latest clear."""
        cleared = self._cleared.get(stamp[1])
        return cleared is not None and tuple(stamp) < tuple(cleared)

    def _sweep(self) -> None:
        """Remove every held mark its creator has cleared since (after a clear, or a snapshot's clears)."""
        if not self._cleared:
            return
        for stroke_id in [k for k, v in self._strokes.items() if self._cleared_mark(v["stamp"])]:
            self._erase_stroke(stroke_id)
        for landmark_id in [k for k, v in self._landmark_info.items() if self._cleared_mark(v["stamp"])]:
            self._delete_landmark(landmark_id)
        for measure_id in [k for k, v in self._measures.items() if self._cleared_mark(v["stamp"])]:
            self._delete_measure(measure_id)

    @staticmethod
    def _write(register: dict[Any, dict[str, Any]], key: Any, stamp: Stamp, value: dict[str, Any]) -> None:
        """Last writer wins: keep ``value`` only if its stamp is newer than the one held."""
        held = register.get(key)
        if held is None or tuple(held["stamp"]) < stamp:
            register[key] = {"stamp": list(stamp), **value}

    # ------------------------------------------------------------------ views

    @property
    def strokes(self) -> dict[str, dict[str, Any]]:
        """Visible strokes: id -> {"points", "color", "width"}."""
        return {k: {f: v for f, v in s.items() if f != "stamp"} for k, s in self._strokes.items()}

    @property
    def landmarks(self) -> dict[str, dict[str, Any]]:
        """Placed, undeleted landmarks: id -> {"position", "label", "structure"} (a move without a place is hidden)."""
        out = {}
        for k, info in self._landmark_info.items():
            out[k] = {"position": self._landmark_pos[k]["position"], "label": info["label"], "structure": info["structure"]}
        return out

    @property
    def clip_planes(self) -> dict[int, dict[str, Any]]:
        """Active clip planes: index -> {"normal", "d"}."""
        return {i: c["plane"] for i, c in self._clip.items() if c["plane"] is not None}

    @property
    def transform(self) -> dict[str, Any] | None:
        """Twin transform {"position", "orientation", "scale"} or None when never set."""
        return dict(self._transform["value"]) if self._transform else None

    @property
    def selection(self) -> str | None:
        """Selected structure or None."""
        return self._selection["structure"] if self._selection else None

    @property
    def measurements(self) -> dict[str, dict[str, Any]]:
        """Undeleted measurements: id -> {"a_mm", "b_mm", "distance_mm", "label", "geodesic_mm"} (twin mm)."""
        return {k: {f: v for f, v in m.items() if f != "stamp"} for k, m in self._measures.items()}

    @property
    def roles(self) -> dict[int, str]:
        """Roles granted during the session (``SET_ROLE``): participant index -> role. A participant
        not listed has the role of its join token."""
        return {i: r["role"] for i, r in self._roles.items()}

    def role_at(self, participant: int, stamp: Stamp) -> str | None:
        """The role granted to ``participant`` by the latest ``SET_ROLE`` held that is older than ``stamp``
        (an op's (lamport, participant, seq)): the role it had when it made that op, as far as this state
        knows; None when no such grant is held (its join token's role applies)."""
        role = None
        for held, granted in self._role_history.get(participant, ()):
            if held >= stamp:
                break
            role = granted
        return role

    def mark_owner(self, kind: OpKind, mark_id: str) -> int | None:
        """Who created the mark an op of ``kind`` names (its stroke, landmark or measurement), or None
        when no such mark is held (never created here, or removed)."""
        if kind in (OpKind.STROKE_ADD, OpKind.STROKE_ERASE):
            held = self._strokes.get(mark_id)
        elif kind in (OpKind.LANDMARK_PLACE, OpKind.LANDMARK_MOVE, OpKind.LANDMARK_DELETE):
            held = self._landmark_info.get(mark_id)
        elif kind in (OpKind.MEASURE, OpKind.MEASURE_DELETE):
            held = self._measures.get(mark_id)
        else:
            return None
        return None if held is None else int(held["stamp"][1])

    # ------------------------------------------------------------------ snapshot and digest

    def _content(self) -> dict[str, Any]:
        """Everything that defines the state (not the local Lamport clock or seq counter)."""
        return {
            "applied": {str(p): _ranges(s) for p, s in sorted(self._applied.items())},
            "strokes": self._strokes,
            "erased": sorted(self._erased),
            "landmark_pos": self._landmark_pos,
            "landmark_info": self._landmark_info,
            "deleted": sorted(self._deleted),
            "clip": {str(i): c for i, c in sorted(self._clip.items())},
            "transform": self._transform,
            "selection": self._selection,
            "measures": self._measures,
            "measures_deleted": sorted(self._measures_deleted),
            "cleared": {str(p): s for p, s in sorted(self._cleared.items())},
            "roles": {str(p): r for p, r in sorted(self._roles.items())},
        }

    def _canonical(self, **extra: Any) -> bytes:
        """``canonical_json({**self._content(), **extra})``, the registers written from their kept entry texts."""
        parts = []
        for key, value in sorted({**self._content(), **extra}.items()):
            text = value.canonical() if isinstance(value, _Register) else canonical_json(value)
            parts.append(canonical_json(key) + b":" + text)
        return b"{" + b",".join(parts) + b"}"

    def digest(self) -> bytes:
        """sha256 (32 bytes) of the canonical state: equal on peers that applied the same ops."""
        if self._digest is None:
            self._digest = hashlib.sha256(self._canonical()).digest()
        return self._digest

    def snapshot(self) -> dict[str, Any]:
        """The whole state as JSON-ready data, for a late joiner (``merge_snapshot``)."""
        return {"v": SNAPSHOT_VERSION, "lamport": self.lamport, **self._content()}

    def snapshot_bytes(self) -> bytes:
        """``snapshot()`` as canonical JSON (what travels in snapshot chunks)."""
        return self._canonical(v=SNAPSHOT_VERSION, lamport=self.lamport)

    def merge_snapshot(self, snapshot: Mapping[str, Any] | bytes, permit: EntryPermit | None = None) -> int:
        """Merge a snapshot from another peer; returns how many op ids were new.

        ``permit(kind, writer, stamp)`` vets each stamped entry as the op that wrote it would have been
        vetted (a reason to refuse, or None): grants first (so that the others are judged with them),
        then every mark, plane, placement, selection and clearing. A refused entry is left out and its
        reason kept in :attr:`refused_entries` (for this merge). Unstamped parts (which op ids were
        applied, which marks were erased) cannot be vetted.

        Raises
        ------
        ProtocolError
            The snapshot is not a valid snapshot of this version (nothing is changed then).
        """
        data = parse_json(snapshot, "snapshot") if isinstance(snapshot, bytes) else snapshot
        try:
            parsed = _parse_snapshot(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProtocolError(f"malformed snapshot: {exc!r}"[:200], "state") from None
        applied, strokes, erased, pos, info, deleted, clip, transform, selection, lamport, measures, gone, cleared, roles = parsed
        before = self.op_count
        self._digest = None
        self.refused_entries = []
        if permit is not None:
            roles = self._vetted(roles, permit, lambda _: OpKind.SET_ROLE)
            for participant, role in roles.items():  # now: the other entries are judged with these grants
                self._grant(participant, tuple(role["stamp"]), role["role"])
            strokes = self._vetted(strokes, permit, lambda _: OpKind.STROKE_ADD)
            placed, info = info, self._vetted(info, permit, lambda _: OpKind.LANDMARK_PLACE)
            # a refused landmark goes whole; a position written by another than its creator was moved
            pos = {key: value for key, value in pos.items() if key in info or key not in placed}
            pos = self._vetted(pos, permit, lambda key: OpKind.LANDMARK_PLACE if (
                key in info and info[key]["stamp"][1] == pos[key]["stamp"][1]) else OpKind.LANDMARK_MOVE)  # fmt: skip
            clip = self._vetted(clip, permit, lambda key: OpKind.CLIP_SET if clip[key]["plane"] else OpKind.CLIP_CLEAR)
            measures = self._vetted(measures, permit, lambda _: OpKind.MEASURE)
            cleared = {p: stamp for p, stamp in cleared.items() if self._allowed(permit, OpKind.CLEAR_MARKS, stamp)}
            if transform is not None and not self._allowed(permit, OpKind.TRANSFORM, transform["stamp"]):
                transform = None
            if selection is not None and not self._allowed(permit, OpKind.SELECT, selection["stamp"]):
                selection = None
        for p, seqs in applied.items():
            self._applied.setdefault(p, set()).update(seqs)
        self._erased |= erased
        self._deleted |= deleted
        for key, value in strokes.items():
            self._write(self._strokes, key, tuple(value["stamp"]), {k: v for k, v in value.items() if k != "stamp"})
        for key, value in pos.items():
            self._write(self._landmark_pos, key, tuple(value["stamp"]), {"position": value["position"]})
        for key, value in info.items():
            entry = {"label": value["label"], "structure": value["structure"]}
            self._write(self._landmark_info, key, tuple(value["stamp"]), entry)
        for index, value in clip.items():
            self._write(self._clip, index, tuple(value["stamp"]), {"plane": value["plane"]})
        self._measures_deleted |= gone
        for key, value in measures.items():
            self._write(self._measures, key, tuple(value["stamp"]), {k: v for k, v in value.items() if k != "stamp"})
        for measure_id in self._measures_deleted:
            self._measures.pop(measure_id, None)
        for participant, stamp in cleared.items():
            held = self._cleared.get(participant)
            if held is None or tuple(held) < tuple(stamp):
                self._cleared[participant] = stamp
        for participant, role in roles.items():
            self._grant(participant, tuple(role["stamp"]), role["role"])
        for stroke_id in self._erased:
            self._strokes.pop(stroke_id, None)
        for landmark_id in self._deleted:
            self._landmark_pos.pop(landmark_id, None)
            self._landmark_info.pop(landmark_id, None)
        if transform is not None and (self._transform is None or tuple(self._transform["stamp"]) < tuple(transform["stamp"])):
            self._transform = transform
        if selection is not None and (self._selection is None or tuple(self._selection["stamp"]) < tuple(selection["stamp"])):
            self._selection = selection
        self._sweep()
        self.lamport = max(self.lamport, lamport)
        # A participant that rejoins with a fresh process resumes its own sequence after what the room holds.
        self.seq = max(self.seq, 0, *self._applied.get(self.participant, ()))
        return self.op_count - before


    def _allowed(self, permit: EntryPermit, kind: OpKind, stamp: Any) -> bool:
        writer_stamp = (int(stamp[0]), int(stamp[1]), int(stamp[2]))
        reason = permit(kind, writer_stamp[1], writer_stamp)
        if reason is not None:
            self.refused_entries.append(reason)
        return reason is None

    def _vetted(self, entries: dict[Any, dict[str, Any]], permit: EntryPermit,
                kind_of: Callable[[Any], OpKind]) -> dict[Any, dict[str, Any]]:  # fmt: skip
        return {key: value for key, value in entries.items() if self._allowed(permit, kind_of(key), value["stamp"])}


def _stamp(value: Any) -> list[int]:
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    ):
        raise ValueError(f"bad stamp {value!r}")
    return value


def _parse_snapshot(data: Any) -> tuple[Any, ...]:
    """Validate a snapshot's structure (values of ops are re-validated through ``validate_payload``)."""
    if not isinstance(data, Mapping) or data.get("v") != SNAPSHOT_VERSION:
        raise ValueError(f"not a version-{SNAPSHOT_VERSION} snapshot")
    applied: dict[int, set[int]] = {}
    for p, runs in data["applied"].items():
        seqs: set[int] = set()
        for lo, hi in runs:
            if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi and hi - lo < 10_000_000):
                raise ValueError(f"bad op range {lo!r}..{hi!r}")
            seqs.update(range(lo, hi + 1))
        applied[int(p)] = seqs
    strokes = {}
    for key, value in data["strokes"].items():
        payload = validate_payload(OpKind.STROKE_ADD, {"id": key, **{k: v for k, v in value.items() if k != "stamp"}})
        strokes[key] = {"stamp": _stamp(value["stamp"]), **{k: v for k, v in payload.items() if k != "id"}}
    pos = {}
    for key, value in data["landmark_pos"].items():
        payload = validate_payload(OpKind.LANDMARK_MOVE, {"id": key, "position": value["position"]})
        pos[key] = {"stamp": _stamp(value["stamp"]), "position": payload["position"]}
    info = {}
    for key, value in data["landmark_info"].items():
        payload = validate_payload(
            OpKind.LANDMARK_PLACE, {"id": key, "position": [0, 0, 0], "label": value["label"], "structure": value["structure"]}
        )
        info[key] = {"stamp": _stamp(value["stamp"]), "label": payload["label"], "structure": payload["structure"]}
    clip = {}
    for index, value in data["clip"].items():
        plane = value["plane"]
        if plane is not None:
            plane = {k: v for k, v in validate_payload(OpKind.CLIP_SET, {"index": int(index), **plane}).items() if k != "index"}
        else:
            validate_payload(OpKind.CLIP_CLEAR, {"index": int(index)})
        clip[int(index)] = {"stamp": _stamp(value["stamp"]), "plane": plane}
    transform = data["transform"]
    if transform is not None:
        transform = {"stamp": _stamp(transform["stamp"]), "value": validate_payload(OpKind.TRANSFORM, transform["value"])}
    selection = data["selection"]
    if selection is not None:
        structure = validate_payload(OpKind.SELECT, {"structure": selection["structure"]})["structure"]
        selection = {"stamp": _stamp(selection["stamp"]), "structure": structure}
    erased = {validate_payload(OpKind.STROKE_ERASE, {"id": k})["id"] for k in data["erased"]}
    deleted = {validate_payload(OpKind.LANDMARK_DELETE, {"id": k})["id"] for k in data["deleted"]}
    lamport = data["lamport"]
    if not isinstance(lamport, int) or not 0 <= lamport <= MAX_LAMPORT:
        raise ValueError("bad lamport")
    measures = {}
    for key, value in data["measures"].items():
        payload = validate_payload(OpKind.MEASURE, {"id": key, **{k: v for k, v in value.items() if k != "stamp"}})
        measures[key] = {"stamp": _stamp(value["stamp"]), **{k: v for k, v in payload.items() if k != "id"}}
    gone = {validate_payload(OpKind.MEASURE_DELETE, {"id": k})["id"] for k in data["measures_deleted"]}
    cleared = {int(p): _stamp(stamp) for p, stamp in data["cleared"].items()}
    roles = {}
    for p, value in data["roles"].items():
        payload = validate_payload(OpKind.SET_ROLE, {"participant": int(p), "role": value["role"]})
        roles[payload["participant"]] = {"stamp": _stamp(value["stamp"]), "role": payload["role"]}
    return applied, strokes, erased, pos, info, deleted, clip, transform, selection, lamport, measures, gone, cleared, roles
