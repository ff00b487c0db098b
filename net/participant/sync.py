"""State sync: the participant's ``SharedState``, its ops to and from every link, snapshots, digests and resuming.

- local ops go to every open link; received ops are applied once (``SharedState.apply``);
- every link that opens is asked for a snapshot; a late joiner merges it (``caught_up``);
- state digests go to the peers every report; a remote ahead of us twice in a row is asked for a
  snapshot again (anti-entropy);
- a remote whose digest differs from ours at the same op count for ``SPLIT_REPORTS`` reports in a row,
  resyncing notwithstanding, holds a different state under the same op ids (a split: two participants
  once made ops under one index). That is counted, logged in one line and kept in the report
  (``splits``); a participant that is not the room's authority (the surgeon with the lowest index,
  else the lowest index) then asks the authority for its snapshot and adopts it whole instead of
  merging it, resending those of its own ops that the authority lacks: the room converges on one state;
- when a link to a remote (or to the relay) it was linked with before opens, the participant holds
  its live ops back from that link, asks for a snapshot (the remote's; through the relay, any
  participant's), resends (in sequence order, from a log of its last ``resend_log`` ops) those of its
  own ops that the snapshot lacks, and only then sends live ops on it. A mesh remote resumes the same
  way, so its snapshot is merged once its resent ops are in (at most 2 s later): every op arrives
  once, in order, and the snapshot only fills in what no resend carries. Through the relay the
  snapshot is merged at once: the ops the others made meanwhile come from it.

Snapshot requests carry the requester's index in the upper 16 bits of ``request_id`` and the
participant whose snapshot is wanted in the lower 16 (0: any; ``net.protocol.routed_id``), so that
the relay routes the chunks back and asks only one peer.

Roles (docs/roles.md): a local op is made only if this participant's own role allows it
(``net.roles.check``; ``OpRefusedError`` otherwise, nothing applied or sent), and a received op only
if its sender's role does; a refused one is counted, answered to its sender with a
``StateRefusal``, and kept a while to be checked again when a role changes or a snapshot is merged
(a grant can arrive after an op its sender made once granted). Refusals of our own ops are counted
and handed to ``Participant.on_refused``, once per op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from net.errors import ProtocolError
from net.peer import PeerLink
from net.protocol import (
    OpKind,
    SnapshotAssembler,
    SnapshotChunk,
    SnapshotRequest,
    StateDigest,
    StateMessage,
    StateOp,
    StateRefusal,
    chunk_snapshot,
    encode_state,
    parse_json,
    refusal_reason,
    routed_id,
)
from net.roles import check, check_kind
from net.state import OpRefusedError, SharedState, Stamp
from net.tokens import RELAY_ID

if TYPE_CHECKING:
    from net.participant.config import OpSource
    from net.participant.room import Participant
    from net.participant.roster import RemotePeer

log = logging.getLogger(__name__)

#: Refused ops kept to be checked again when a role changes (a grant that arrives after the op), at most
#: this many, for at most ``HELD_REFUSED_S`` seconds.
HELD_REFUSED = 256
HELD_REFUSED_S = 30.0
#: Own ops whose refusal was handed to ``on_refused`` (a mesh refuses one op once per peer).
REFUSALS_REMEMBERED = 1024
#: Digests in a row at our op count but differing from ours that make a split (anti-entropy has asked for
#: a snapshot after two: ops in flight explain one or two such reports, not three).
SPLIT_REPORTS = 3


@dataclass
class StateSplits:
    """Splits seen with remotes (same op count, different digest, past resyncing) and how they were mended."""

    detected: int = 0
    adopted: int = 0  # the authority's snapshot taken whole
    resolved: int = 0  # a split remote's digest equal to ours again
    longest_s: float = 0.0  # from detection to equal digests

    def as_dict(self) -> dict[str, float]:
        """For the report."""
        return {"detected": self.detected, "adopted": self.adopted, "resolved": self.resolved,
                "longest_s": round(self.longest_s, 3)}


class StateSync:
    """The shared state of one participant and how it stays equal to everyone else's."""

    def __init__(self, host: Participant) -> None:
        self._host = host
        self.state = SharedState(0)
        self._assemblers: dict[int, SnapshotAssembler] = {}
        # Resuming a rebuilt link: own ops kept for resending, remotes that had an open link before, and
        # links waiting for the remote's snapshot before live ops go on them.
        self._own_ops: deque[StateOp] = deque(maxlen=max(0, host.config.resend_log))
        self._was_linked: set[str] = set()
        self._resuming: set[PeerLink] = set()
        self._last_request = -math.inf
        # Ops refused on arrival: (link, op, when), checked again when a role changes or a snapshot is merged.
        self._held: deque[tuple[PeerLink, StateOp, float]] = deque(maxlen=HELD_REFUSED)
        self._refused_seqs: deque[int] = deque(maxlen=REFUSALS_REMEMBERED)
        self.splits = StateSplits()
        self._adopt_from: int | None = None  # the authority whose next snapshot replaces our state

    def token_role(self, index: int) -> str:
        """The role the join token of participant ``index`` gives (signaling's peer entry, or our welcome)."""
        host = self._host
        if index == host.index:
            return host.token_role
        remote = host.roster.remotes.get(index)
        return remote.role if remote is not None else ""

    def role_of(self, index: int) -> str:
        """The role of participant ``index`` now: the latest ``SET_ROLE`` for it, else its join token's."""
        granted = self.state.roles.get(index)
        return granted if granted is not None else self.token_role(index)

    def permit(self, op: StateOp) -> str | None:
        """Why ``op`` may not be applied here, or None: ``net.roles.check`` with the role its sender had when
        it made it (the latest grant older than the op, ``SharedState.role_at``, else the token's), so that
        an op made before a grant stays refused after it, and every peer decides alike."""
        return check(self.role_then(op.participant, (op.lamport, op.participant, op.seq)), op, self.state)

    def role_then(self, index: int, stamp: Stamp, state: SharedState | None = None) -> str:
        """The role participant ``index`` had at ``stamp``: the latest grant older than it that ``state``
        (default ours) holds, else its join token's."""
        granted = (state or self.state).role_at(index, stamp)
        return granted if granted is not None else self.token_role(index)

    def permit_entry(self, kind: OpKind, writer: int, stamp: Stamp, state: SharedState | None = None) -> str | None:
        """Why a snapshot entry that ``writer`` wrote (an op of ``kind`` at ``stamp``) may not be taken, or
        None: the op's kind checked against the role the writer had then, as :meth:`permit` checks a live
        op. A writer this participant does not know (one who left before it joined) is taken on trust:
        nobody here can say what their token allowed. Grants are looked up in ``state`` (default ours)."""
        host = self._host
        if writer != host.index and writer not in host.roster.remotes:
            return None
        refused = check_kind(self.role_then(writer, stamp, state), kind)
        return None if refused is None else f"{refused} (participant {writer})"

    def _vet_count(self, state: SharedState, source: int) -> None:
        if state.refused_entries:
            self._host.counters["snapshot_entries_refused"] += len(state.refused_entries)
            log.warning("%s: %d entries of the snapshot from %d refused: %s", self._host.name,
                        len(state.refused_entries), source, state.refused_entries[0])  # fmt: skip

    def joined(self, index: int) -> None:
        """Start the state afresh as participant ``index``."""
        self.state = SharedState(index)

    def renumbered(self, index: int) -> None:
        """Make our next ops as participant ``index`` (the server could not give our old index back):
        the ops made under the old one stay what they are; the new sequence continues what the state holds."""
        self.state.renumber(index)

    def authority(self) -> int:
        """The index whose state a split is mended with: the lowest-indexed surgeon, else the lowest index."""
        indices = sorted({self._host.index, *self._host.roster.remotes})
        surgeons = [i for i in indices if self.role_of(i) == "surgeon"]
        return (surgeons or indices)[0]

    def forget_link(self, link: PeerLink) -> None:
        """``link`` is gone: it no longer waits to resume."""
        self._resuming.discard(link)

    # ------------------------------------------------------------------ links opening

    def link_opened(self, link: PeerLink) -> None:
        """Ask a link that just opened for a snapshot; a rebuilt one resumes first (see the module docstring)."""
        host = self._host
        remote_index = 0 if link.remote == RELAY_ID else host.roster.index_of(link.remote)
        if link.remote in self._was_linked and remote_index is not None:
            # A rebuilt link: no live op goes on it until a snapshot says which of our ops the other side
            # lacks, so that those are resent first and every op arrives in sequence order (_resume).
            # Through the relay any participant's snapshot will do (0: the relay picks one): everyone
            # got the same ops from the relay, in the same order.
            self._resuming.add(link)
            self.request_snapshot(link, remote_index)
            host.spawn(self._until_resumed(link, remote_index))
        else:
            self.request_snapshot(link)
        self._was_linked.add(link.remote)
        host.spawn(self._until_caught_up(link))

    async def _until_caught_up(self, link: PeerLink) -> None:
        """Ask again each second until a snapshot arrives (the relay may have had nobody to ask yet)."""
        host = self._host
        while not host.caught_up.is_set() and link.is_open and not host.stopping:
            await asyncio.sleep(1.0)
            if not host.caught_up.is_set() and link.is_open:
                self.request_snapshot(link)

    async def _until_resumed(self, link: PeerLink, remote_index: int) -> None:
        """Ask again each second until the remote's snapshot resumes ``link`` (a request can cross a close)."""
        while link in self._resuming and link.is_open and not self._host.stopping:
            await asyncio.sleep(1.0)
            if link in self._resuming and link.is_open:
                self.request_snapshot(link, remote_index)

    def request_snapshot(self, link: PeerLink, source: int = 0) -> None:
        """Ask for a snapshot on ``link``; through the relay, from participant ``source`` (0: any one)."""
        index = self._host.index
        request = encode_state(SnapshotRequest(index, routed_id(index, source)))
        self._last_request = time.monotonic()
        link.send("state", request)

    # ------------------------------------------------------------------ local ops

    def make_op(self, kind: OpKind | int, payload: Mapping[str, Any]) -> StateOp:
        """Apply a local op to the shared state and send it to every open link (see ``Participant.make_op``).

        Raises ``OpRefusedError`` (counted, nothing applied or sent) when our own role does not allow it.
        """
        host = self._host
        try:
            op = self.state.make_op(kind, payload, host.clock(), permit=self.permit)
        except OpRefusedError as exc:
            host.counters["ops_refused_local"] += 1
            log.info("%s: %s", host.name, exc)
            raise
        self._own_ops.append(op)
        if op.kind is OpKind.SET_ROLE:
            self.recheck_refused()
        data = encode_state(op)
        for link in host.link_set.open_links():
            if link not in self._resuming:  # a resuming link gets it with the resent ops, in order
                link.send("state", data)
        host.counters["ops_sent"] += 1
        if host.on_sent is not None:
            host.on_sent("state", data, op.sender_time)
        return op

    async def ops_loop(self, source: OpSource | None) -> None:
        """Make ``ops_rate_hz`` ops a second from ``source`` within the configured window."""
        host = self._host
        cfg = host.config
        if cfg.ops_rate_hz <= 0 or source is None:
            return
        await asyncio.sleep(cfg.ops_start_s)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(host.caught_up.wait(), 10.0)
        period = 1.0 / cfg.ops_rate_hz
        counter = self.state.seq  # the source's ids stay unique across a rejoin when made from the counter
        while not host.stopping and time.monotonic() - host.started < cfg.ops_stop_s \
                and (cfg.ops_stop_at is None or time.time() < cfg.ops_stop_at):
            counter += 1
            made = source(host.index, counter)
            if made is not None:
                with contextlib.suppress(OpRefusedError):  # counted; the source goes on with its next op
                    self.make_op(*made)
            await asyncio.sleep(period)

    def send_digests(self) -> None:
        """Send our state digest to every open link and compare the digests received since the last time."""
        host = self._host
        digest = encode_state(StateDigest(host.index, self.state.op_count, host.clock(), self.state.digest()))
        for link in host.link_set.open_links():
            link.send("state", digest)
        self._compare_digests()

    # ------------------------------------------------------------------ receiving

    def on_state(self, link: PeerLink, message: StateMessage, now: float) -> None:
        """Take a state-channel message from ``link`` (received at ``now``, our clock)."""
        host = self._host
        if isinstance(message, StateOp):
            remote = host.roster.source(link, message.participant, "op")
            if remote is None:
                return
            if self.state.has(message.participant, message.seq):
                self.state.apply(message)  # moves the Lamport clock, as every receipt does
                host.counters["ops_duplicate"] += 1
                return
            reason = self.permit(message)
            if reason is not None:
                self._refuse(link, message, reason, now)
                return
            self._apply(message, now)
        elif isinstance(message, StateRefusal):
            self._on_refusal(link, message)
        elif isinstance(message, SnapshotRequest):
            for chunk in chunk_snapshot(host.index, message.request_id, self.state.snapshot_bytes()):
                link.send("state", encode_state(chunk))
            host.counters["snapshots_sent"] += 1
        elif isinstance(message, SnapshotChunk):
            self._on_chunk(link, message)
        else:
            remote = host.roster.source(link, message.participant, "digest")
            if remote is None:
                return
            # Compared with ours at our next report (_compare_digests), not now: our digest after the
            # latest op costs a pass over the whole state (0.4 ms at 1,600 ops), and sixteen
            # participants' digests a second would cost every receiver that many times over.
            remote.digest = (message.op_count, message.digest)
            remote.digest_link = link

    def _apply(self, op: StateOp, now: float) -> None:
        """Apply a received op that its sender's role allows; a role change re-checks the ops held back."""
        host = self._host
        self.state.apply(op)
        host.counters["ops_applied"] += 1
        remote = host.roster.remotes.get(op.participant)
        latency = host.one_way.latency(remote, op.sender_time, now) if remote is not None else None
        if latency is not None and remote is not None:
            host.monitor.record(remote.name, "state", latency, now)
        if host.on_op is not None:
            host.on_op(op, latency)
        if op.kind is OpKind.SET_ROLE:
            self.recheck_refused()

    def _refuse(self, link: PeerLink, op: StateOp, reason: str, now: float) -> None:
        """Refuse a received op: apply nothing, count it, answer its sender, keep it to check again later."""
        host = self._host
        host.counters["ops_refused"] += 1
        log.info("%s: refused op %d of participant %d (%s): %s", host.name, op.seq, op.participant, op.kind.name, reason)
        # The clock moves as for any receipt: a grant made after this refusal is newer than the op, so that
        # the op stays refused when it is checked again (``permit``).
        self.state.lamport = max(self.state.lamport, op.lamport) + 1
        refusal = StateRefusal(host.index, op.participant, op.seq, op.kind, refusal_reason(reason))
        link.send("state", encode_state(refusal))
        self._held.append((link, op, time.monotonic()))

    def recheck_refused(self) -> None:
        """Apply the held refused ops that are allowed now (a grant, or a snapshot, came after them)."""
        host = self._host
        if not self._held:
            return
        fresh = time.monotonic() - HELD_REFUSED_S
        held, self._held = self._held, deque(maxlen=HELD_REFUSED)
        for link, op, at in held:
            if at < fresh or self.state.has(op.participant, op.seq):
                continue
            if self.permit(op) is None:
                host.counters["ops_applied_late"] += 1
                self._apply(op, host.clock())
            else:
                self._held.append((link, op, at))

    def _on_refusal(self, link: PeerLink, refusal: StateRefusal) -> None:
        """A peer (or the relay, as participant 0) refused one of our ops: count it, tell the caller once per op."""
        host = self._host
        if refusal.to != host.index:
            host.counters["misrouted"] += 1
            return
        if refusal.participant == 0:
            if link.remote != RELAY_ID:
                host.counters["spoofed"] += 1
                return
        elif host.roster.source(link, refusal.participant, "refusal") is None:
            return
        host.counters["refusals_received"] += 1
        if refusal.seq in self._refused_seqs:
            return
        self._refused_seqs.append(refusal.seq)
        log.info("%s: op %d (%s) refused by %d: %s", host.name, refusal.seq, refusal.kind.name,
                 refusal.participant, refusal.reason)  # fmt: skip
        if host.on_refused is not None:
            host.on_refused(refusal)

    def _on_chunk(self, link: PeerLink, message: SnapshotChunk) -> None:
        host = self._host
        if message.snapshot_id >> 16 != host.index:
            host.counters["misrouted"] += 1
            return
        assembler = self._assemblers.setdefault(message.participant, SnapshotAssembler())
        body = assembler.add(message)
        if body is None:
            return
        if message.participant == self._adopt_from:
            self._adopt_from = None
            self._adopt(link, message.participant, body)
            return
        source = host.roster.remotes.get(message.participant)
        resuming = link in self._resuming and source is not None and link.remote in (source.name, RELAY_ID)
        # A mesh remote resumes too and resends its own ops: wait for them before merging.
        # Through the relay nobody else resumes, so the snapshot is merged at once.
        if resuming and self._resume(link, message.participant, body) and link.remote != RELAY_ID:
            host.spawn(self._merge_later(message.participant, body))
            return
        self._merge(message.participant, body)

    def _compare_digests(self) -> None:
        """Compare every digest received since the last report with our state (digested once): a remote
        ahead of us (more ops, or as many but others) twice in a row is asked for a snapshot; one at our
        op count but with another digest ``SPLIT_REPORTS`` times in a row is split from us."""
        count = self.state.op_count
        for remote in self._host.roster.remotes.values():
            link, remote.digest_link = remote.digest_link, None
            if link is None or remote.digest is None:
                continue
            their_count, theirs = remote.digest
            ours = self.state.digest()
            ahead = their_count > count or (their_count == count and theirs != ours)
            self._watch_split(remote, their_count == count and theirs != ours, theirs == ours)
            remote.behind = remote.behind + 1 if ahead else 0
            # Two digests in a row: ops in flight explain one, not two a second apart.
            if remote.behind >= 2 and time.monotonic() - self._last_request > 2.0 and link.is_open:
                self._host.counters["resync_requests"] += 1
                self.request_snapshot(link, remote.index)
                remote.behind = 0

    def _watch_split(self, remote: RemotePeer, differs: bool, equal: bool) -> None:
        """Count digests at our op count that differ from ours; at ``SPLIT_REPORTS`` in a row, mend the split."""
        host = self._host
        if equal:
            if remote.split_at is not None:
                took = time.monotonic() - remote.split_at
                self.splits.resolved += 1
                self.splits.longest_s = max(self.splits.longest_s, took)
                log.info("%s: state equal to %s's again, %.2f s after the split was seen", host.name, remote.name, took)
            remote.split_reports, remote.split_at = 0, None
            return
        if not differs:
            return  # op counts differ: ops in flight, or anti-entropy's job
        remote.split_reports += 1
        if remote.split_reports != SPLIT_REPORTS:
            return
        remote.split_at = time.monotonic()
        self.splits.detected += 1
        host.counters["state_splits"] += 1
        authority = self.authority()
        source = host.links.get(RELAY_ID) if host.topology == "relay" else None
        if source is None and authority in host.roster.remotes:
            source = host.links.get(host.roster.remotes[authority].name)
        mend = "we hold the authoritative state" if authority == host.index else f"adopting the state of participant {authority}"
        log.warning("%s: state split from %s: %d ops each, different digests %d reports in a row; %s",
                    host.name, remote.name, self.state.op_count, SPLIT_REPORTS, mend)
        if authority != host.index and source is not None and source.is_open:
            self._adopt_from = authority
            self.request_snapshot(source, authority)

    # ------------------------------------------------------------------ resuming and merging

    def _adopt(self, link: PeerLink, source: int, body: bytes) -> None:
        """Replace our state with the authority's snapshot (a split), keeping and resending our own ops it lacks."""
        host = self._host
        fresh = SharedState(host.index)
        try:
            fresh.merge_snapshot(body, lambda kind, writer, stamp: self.permit_entry(kind, writer, stamp, fresh))
        except ProtocolError as exc:
            host.counters["malformed_state"] += 1
            log.debug("%s: dropped a snapshot from %d: %s", host.name, source, exc)
            return
        self._vet_count(fresh, source)
        missing = [op for op in self._own_ops if not fresh.has(op.participant, op.seq)]
        for op in missing:
            fresh.apply(op)
            link.send("state", encode_state(op))
        fresh.seq = max(fresh.seq, self.state.seq)
        fresh.lamport = max(fresh.lamport, self.state.lamport)
        self.state = fresh
        self.splits.adopted += 1
        host.counters["states_adopted"] += 1
        host.caught_up.set()
        log.info("%s: adopted the state of participant %d (%d ops; %d own ops resent)",
                 host.name, source, fresh.op_count, len(missing))

    def _resume(self, link: PeerLink, remote: int, body: bytes) -> bool:
        """Resend, in order, our ops that the snapshot ``body`` from ``remote`` lacks; open ``link`` to live ops.

        Returns True when the snapshot holds ops of ``remote`` that we lack: the remote resends those
        (it resumes too), so merging the snapshot should wait for them (see :meth:`_merge_later`).
        """
        host = self._host
        have = _applied(body, host.index)
        missing = [op for op in self._own_ops if op.seq not in have]
        for op in missing:
            link.send("state", encode_state(op))
        self._resuming.discard(link)
        host.counters["ops_resent"] += len(missing)
        log.info("%s: link to %s resumed (%d ops resent)", host.name, link.remote, len(missing))
        theirs = _applied(body, remote)
        return bool(theirs) and not self.state.has(remote, max(theirs))

    async def _merge_later(self, remote: int, body: bytes, wait_s: float = 2.0) -> None:
        """Merge a snapshot once ``remote``'s resent ops are in (they come in order), or after ``wait_s``."""
        theirs = _applied(body, remote)
        deadline = time.monotonic() + wait_s
        while not self.state.has(remote, max(theirs)) and time.monotonic() < deadline and not self._host.stopping:
            await asyncio.sleep(0.02)
        self._merge(remote, body)

    def _merge(self, source: int, body: bytes) -> None:
        host = self._host
        try:
            added = self.state.merge_snapshot(body, self.permit_entry)
        except ProtocolError as exc:
            host.counters["malformed_state"] += 1
            log.debug("%s: dropped a snapshot from %d: %s", host.name, source, exc)
            return
        self._vet_count(self.state, source)
        host.counters["snapshots_merged"] += 1
        host.caught_up.set()
        self.recheck_refused()
        log.info("%s: merged a snapshot from %d (%d new ops)", host.name, source, added)


def _applied(body: bytes, participant: int) -> set[int]:
    """The op sequence numbers of ``participant`` that a snapshot says are applied (empty if unreadable).

    Only used to choose what to resend: an unreadable snapshot means resending everything, and a
    duplicate op is dropped by the receiver.
    """
    try:
        runs = parse_json(body, "snapshot")["applied"].get(str(participant), [])
        return {s for lo, hi in runs if isinstance(lo, int) and isinstance(hi, int) and 0 < lo <= hi < lo + 10_000_000
                for s in range(lo, hi + 1)}
    except (ProtocolError, AttributeError, KeyError, TypeError, ValueError):
        return set()
