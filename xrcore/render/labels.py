"""Screen-space decluttering of text labels: which label goes where so that none covers another.

Pure numpy, no OpenGL: the renderer hands in the frame's labels and views and gets back, per label,
a vertical shift of its plate (in line units, along the label's own billboard "up") and whether it is
shown at all; its shader applies both.

How a frame is laid out (:meth:`LabelLayout.place`):

1. Each label is a billboard like the shader draws it: facing the point between the eyes, upright
   with the head, one line ``size`` metres tall (``size`` x distance for constant-angle labels) times
   the label's own scale. Its plate's four corners are projected into every view, for every candidate
   slot, giving pixel rectangles.
2. Pinned labels (the lines of a panel the session laid out itself, a measurement's readout) come
   first: each stays on its anchor and is shown, whatever it overlaps, and is an obstacle for the
   others, which move out of its way. Pinned labels are not checked against each other.
3. The other labels are taken greedily by priority: class first (the selection before landmarks and avatars),
   then distance, nearest first. Each takes the first free slot of ``0, +1, +2, ... up, then -1, ...
   down`` (a slot is one plate height plus a gap); free means its rectangle overlaps no already
   placed label's in *any* view. A label with no free slot is hidden.
4. One decision serves all views: both eyes shift a label by the same amount in the world, so the
   two images of a label stay a fusable stereo pair (per-eye layouts could differ and tear it apart).

Stability (no jitter from frame to frame): a label may stay in its previous slot while that slot is
free, and is pushed to a worse one only when it collides; moving to a *better* slot (back towards its
anchor, or reappearing after being hidden) needs that slot free by ``hysteresis_px`` more on every
side. A label that sat on its anchor last frame
sorts as if ``incumbent_bonus`` nearer, so two labels at nearly equal distance do not swap places
every frame.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from xrcore.render.frame import view_projections
from xrcore.types import View

#: Up to this many labels drawn in a view, a frame's layout starts from one table of every overlap (see ``place``).
TABLE_LABELS = 40
#: Slot order tried for each label, in steps of (plate height + gap): up first, then below the anchor.
DEFAULT_SLOTS: tuple[int, ...] = (0, 1, 2, 3, -1, -2)


@dataclass(frozen=True)
class Placement:
    """The layout of one frame.

    ``offsets``: (N,) float32, line units, shift of each label's plate along its up direction;
    ``visible``: (N,) bool; ``slots``: (N,) int, the slot taken (0 at the anchor);
    ``rects``: (V, N, 4) float64 pixel rectangles (x0, y0, x1, y1; y down) of each placed plate per
    view, NaN where a label is hidden or not in front of that view.
    """

    offsets: np.ndarray
    visible: np.ndarray
    slots: np.ndarray
    rects: np.ndarray


def billboard_axes(
    anchors: np.ndarray, head: np.ndarray, head_up: np.ndarray, head_right: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(right, up, distance) of each label's billboard, as ``label.vert`` builds them: facing
    ``head``, upright with ``head_up``; straight above or below the head, ``head_right`` is kept."""
    to = anchors - head
    dist = np.sqrt(np.einsum("ij,ij->i", to, to))
    fwd = to / np.maximum(dist, 1e-12)[:, None]
    at_head = dist <= 1e-6
    if at_head.any():  # an anchor at the head: looked at along the head's forward axis
        fwd[at_head] = _cross(head_up, head_right)
    right = fwd @ _skew(head_up)  # fwd x head_up, row by row
    norm = np.sqrt(np.einsum("ij,ij->i", right, right))
    right /= np.maximum(norm, 1e-12)[:, None]
    # right x fwd, for unit fwd and right = fwd x head_up / norm: head_up less its part along fwd, over norm
    up = (head_up - (fwd @ head_up)[:, None] * fwd) / np.maximum(norm, 1e-12)[:, None]
    flat = norm <= 1e-3
    if flat.any():  # straight above or below the head
        right[flat] = head_right
        up[flat] = _cross(right[flat], fwd[flat])
    return right, up, dist


def _skew(u: np.ndarray) -> np.ndarray:
    """The matrix K with ``a @ K == a x u`` for row vectors ``a``."""
    x, y, z = (float(c) for c in u)
    return np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cross product (``np.cross`` without its axis juggling, which costs more here)."""
    a1, a2, a3 = a[..., 0], a[..., 1], a[..., 2]
    b1, b2, b3 = b[..., 0], b[..., 1], b[..., 2]
    return np.stack([a2 * b3 - a3 * b2, a3 * b1 - a1 * b3, a1 * b2 - a2 * b1], axis=-1)


class LabelLayout:
    """Places labels frame after frame, remembering last frame's choices (see the module docstring).

    Parameters
    ----------
    plate_height
        A plate's height, line units (text line plus margins).
    gap
        Space between two stacked plates, line units.
    slots
        Candidate slots in order of preference.
    hysteresis_px
        Extra clearance (pixels, each side) a label needs to move to a better slot than its last one.
    margin_px
        Clearance every placement keeps from the labels already placed.
    incumbent_bonus
        A label that sat on its anchor last frame sorts as if this fraction nearer.
    """

    def __init__(
        self,
        *,
        plate_height: float,
        gap: float = 0.2,
        slots: Sequence[int] = DEFAULT_SLOTS,
        hysteresis_px: float = 4.0,
        margin_px: float = 1.0,
        incumbent_bonus: float = 0.1,
    ) -> None:
        if not slots or slots[0] != 0:
            raise ValueError("slots must start with 0 (the label at its anchor)")
        self.plate_height = float(plate_height)
        self.step = self.plate_height + float(gap)
        self.slots = np.asarray(slots, dtype=np.int64)
        self.hysteresis_px = float(hysteresis_px)
        self.margin_px = float(margin_px)
        self.incumbent_bonus = float(incumbent_bonus)
        #: key -> slot taken last frame, or None when the label was hidden
        self._previous: dict[Hashable, int | None] = {}

    def reset(self) -> None:
        """Forget the previous frame (the next layout starts fresh)."""
        self._previous.clear()

    def place(
        self,
        anchors: np.ndarray,
        half_widths: np.ndarray,
        views: Sequence[View],
        *,
        keys: Sequence[Hashable],
        priority: np.ndarray | None = None,
        head: np.ndarray,
        head_up: np.ndarray,
        head_right: np.ndarray,
        size: float,
        angular: bool,
        near: float = 0.05,
        scales: np.ndarray | None = None,
        pinned: np.ndarray | None = None,
    ) -> Placement:
        """Lay out N labels for this frame.

        ``anchors``: (N, 3) world metres, the middle of each plate's bottom edge at slot 0;
        ``half_widths``: (N,) half the plate's width, line units; ``keys``: a stable identity per
        label (what ties it to last frame's choice); ``priority``: (N,) int class, lower first
        (default all 0), distance decides within a class; ``head``, ``head_up``, ``head_right``: the
        billboards' common reference (the point between the eyes and the head's axes); ``size``:
        line height per metre of distance (``angular``) or in metres; ``near``: labels whose anchor
        is nearer than this in front of a view are not drawn there (as in the shader); ``scales``:
        (N,) each label's size as a multiple of ``size`` (default all 1); ``pinned``: (N,) bool,
        labels that keep their anchor and are always shown (default none).
        """
        anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 3)
        n, n_views = len(anchors), len(views)
        half_widths = np.asarray(half_widths, dtype=np.float64).reshape(n)
        priority = np.zeros(n, dtype=np.int64) if priority is None else np.asarray(priority).reshape(n)
        scales = np.ones(n) if scales is None else np.asarray(scales, dtype=np.float64).reshape(n)
        pinned = np.zeros(n, dtype=bool) if pinned is None else np.asarray(pinned, dtype=bool).reshape(n)
        if len(keys) != n:
            raise ValueError(f"{len(keys)} keys for {n} labels")
        offsets = np.zeros(n, dtype=np.float32)
        visible = np.ones(n, dtype=bool)
        slots_taken = np.zeros(n, dtype=np.int64)
        rects_out = np.full((n_views, n, 4), np.nan)
        if n == 0:
            self._previous = {}
            return Placement(offsets, visible, slots_taken, rects_out)

        head = np.asarray(head, dtype=np.float64)
        right, up, dist = billboard_axes(anchors, head, np.asarray(head_up, float), np.asarray(head_right, float))
        scale = (size * dist if angular else np.full(n, float(size))) * scales
        # Projection is linear in homogeneous coordinates: a corner's clip position is the anchor's
        # plus its offsets along the billboard's right and up axes, each mapped once per view.
        vp = view_projections(views, near, 100.0)[0]  # (V, 4, 4); the depth range plays no part here
        clip_anchor = anchors @ vp[:, :, :3].transpose(0, 2, 1) + vp[:, None, :, 3]  # (V, N, 4)
        in_front = clip_anchor[..., 3] > near  # (V, N): the shader's test, on the anchor
        # Rectangles only for labels in front of some view (one behind every eye, as many of a twin's
        # structure names are from one side, is drawn nowhere and has NaN rectangles): F of them.
        front = np.flatnonzero(in_front.any(axis=0))
        sel: slice | np.ndarray = slice(None) if len(front) == n else front
        clip_anchor_f = clip_anchor[:, sel]
        clip_right = (right[sel] * scale[sel, None]) @ vp[:, :, :3].transpose(0, 2, 1)  # per line unit
        clip_up = (up[sel] * scale[sel, None]) @ vp[:, :, :3].transpose(0, 2, 1)
        # corners (V, F, S, 4 corners, 4): x = +-half width, y = slot shift + (0 or plate height)
        x = half_widths[sel, None] * np.array([-1.0, 1.0, -1.0, 1.0])  # (F, 4)
        y = (self.slots * self.step)[:, None] + np.array([0.0, 0.0, 1.0, 1.0]) * self.plate_height  # (S, 4)
        clip = (
            clip_anchor_f[:, :, None, None, :]
            + clip_right[:, :, None, None, :] * x[None, :, None, :, None]
            + clip_up[:, :, None, None, :] * y[None, None, :, :, None]
        )
        w = np.maximum(clip[..., 3:], 1e-6)
        size_px = np.array([(view.width, view.height) for view in views], dtype=np.float64)
        # pixels (x right, y down) of each corner: (V, F, S, 4 corners, 2)
        corners = (clip[..., :2] / w * np.array([1.0, -1.0]) + 1.0) * (0.5 * size_px[:, None, None, None, :])
        rects_f = np.concatenate([corners.min(-2), corners.max(-2)], axis=-1)  # (V, F, S, 4): x0, y0, x1, y1
        on_screen = (
            (rects_f[..., 2] > 0)
            & (rects_f[..., 0] < size_px[:, 0, None, None])
            & (rects_f[..., 3] > 0)
            & (rects_f[..., 1] < size_px[:, 1, None, None])
        )
        if len(front) == n:
            rects, active = rects_f, in_front & on_screen.any(axis=2)  # drawn in this view and on its screen
        else:
            rects = np.full((n_views, n, len(self.slots), 4), np.nan)
            rects[:, front] = rects_f
            active = np.zeros((n_views, n), dtype=bool)
            active[:, front] = in_front[:, front] & on_screen.any(axis=2)
        rects[~in_front] = np.nan

        # pinned labels first, then greedy by (class, distance), incumbents slightly ahead
        fresh = np.array([k not in self._previous for k in keys])
        previous_slots = [self._previous.get(k, 0) for k in keys]  # a new label counts as at its anchor
        on_anchor = np.array([slot == 0 for slot in previous_slots]) & ~fresh  # ... but is no incumbent
        weighted = dist * np.where(on_anchor, 1.0 - self.incumbent_bonus, 1.0)
        order = np.lexsort((np.arange(n), weighted, priority, ~pinned))
        # each label's slot of last frame as a rank in the slot order (hidden: worse than every slot)
        rank = {int(slot): r for r, slot in enumerate(self.slots)}
        n_slots = len(self.slots)
        last_rank = np.array([n_slots if slot is None else rank.get(int(slot), n_slots) for slot in previous_slots])
        # moving to a better slot than last frame's (back towards the anchor, or reappearing) needs extra
        # clearance; staying, or being pushed further, does not; a new label is free to go anywhere
        better = np.arange(n_slots)[None, :] < last_rank[:, None]
        pads = self.margin_px + np.where(better & ~fresh[:, None], self.hysteresis_px, 0.0)  # (N, S)
        # Only labels drawn in some view take part in overlaps (one behind every eye or off every screen
        # blocks nothing): the tables below are over those, ``shown``, the usual handful of a frame whose
        # scene names a few dozen structures, marks and people.
        shown = active.any(axis=0)
        on = np.flatnonzero(shown)
        at = np.full(n, -1)  # a shown label's place in ``on``
        at[on] = np.arange(len(on))
        if len(on) == n:
            on_rects, on_active, on_pads = rects, active, pads
        else:  # (a fancy index leaves the views' axis inner in memory, which slows _overlaps twofold)
            on_rects, on_active, on_pads = np.ascontiguousarray(rects[:, on]), active[:, on], pads[on]
        # the common case: nothing overlaps at the anchors, and nobody was moved or hidden last frame
        if not last_rank.any():
            anchored = _overlaps(on_rects[:, :, :1], on_active, on_pads[:, :1], on_rects[:, :, :1], on_active)[:, 0, :, 0]
            on_pinned = pinned[on]
            at_anchor = anchored & ~(on_pinned[:, None] & on_pinned[None, :])  # pinned ones stay, overlapping or not
            np.fill_diagonal(at_anchor, False)
            if not at_anchor.any():
                rects_out = np.where(active[..., None], rects[:, :, 0], np.nan)
                self._previous = {k: 0 for k in keys}
                return Placement(offsets, visible, slots_taken, rects_out)
        # every candidate against every other label's every slot, at once, for up to TABLE_LABELS labels (a
        # frame's usual count: a handful of array operations in all, not a handful per label); past that the
        # table grows as N^2, and each label is checked against those placed before it instead
        table = _overlaps(on_rects, on_active, on_pads, on_rects, on_active) if len(on) <= TABLE_LABELS else None
        placed: list[int] = []  # labels placed so far, their places in ``on``, and the slot (index) each took
        placed_on: list[int] = []
        placed_slots: list[int] = []
        at_list = at.tolist()
        previous: dict[Hashable, int | None] = {}
        for i in order.tolist():
            key = keys[i]
            if not shown[i]:  # behind every eye or off every screen: blocks nothing, stays put
                previous[key] = self._previous.get(key, 0)
                continue
            chosen = 0  # a pinned label stays where the session put it, whatever it overlaps
            if placed and not pinned[i]:
                if table is not None:
                    blocked = table[at_list[i]][:, placed_on, placed_slots].any(axis=1)
                else:
                    mine = rects[:, i : i + 1], active[:, i : i + 1], pads[i : i + 1]
                    theirs = rects[:, placed, placed_slots][:, :, None], active[:, placed]
                    blocked = _overlaps(*mine, *theirs)[0, :, :, 0].any(axis=1)
                chosen = int(blocked.argmin())  # the first free slot, in order of preference
                if blocked[chosen]:
                    visible[i] = False
                    previous[key] = None
                    continue
            placed.append(i)
            placed_on.append(at_list[i])
            placed_slots.append(chosen)
            previous[key] = int(self.slots[chosen])
        if placed:
            slots_taken[placed] = self.slots[placed_slots]
            offsets[placed] = slots_taken[placed] * self.step
            rects_out[:, placed] = np.where(active[:, placed, None], rects[:, placed, placed_slots], np.nan)
        # a label that comes back keeps its history only while it is in the scene
        self._previous = previous
        return Placement(offsets, visible, slots_taken, rects_out)


def _overlaps(rects: np.ndarray, active: np.ndarray, pads: np.ndarray, others: np.ndarray,
              others_active: np.ndarray) -> np.ndarray:  # fmt: skip
    """(A, S, B, T) bool: whether candidate a in slot s, its rectangle grown by ``pads[a, s]`` px, overlaps
    label b in slot t in some view where both are drawn; from the candidates' rectangles ``rects``
    (V, A, S, 4) and the others' ``others`` (V, B, T, 4) (NaN, which overlaps nothing, where a label is
    behind a view), and where each is drawn, ``active`` (V, A) and ``others_active`` (V, B)."""
    r = rects[:, :, :, None, None, :]  # (V, A, S, 1, 1, 4): the candidate
    o = others[:, None, None, :, :, :]  # (V, 1, 1, B, T, 4): the other
    pad = pads[None, :, :, None, None]
    hit = (r[..., 0] - pad < o[..., 2]) & (o[..., 0] < r[..., 2] + pad)
    hit &= r[..., 1] - pad < o[..., 3]
    hit &= o[..., 1] < r[..., 3] + pad
    hit &= active[:, :, None, None, None] & others_active[:, None, None, :, None]
    out: np.ndarray = hit.any(axis=0)
    return out
