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

from xrcore.types import View

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
    fwd = np.where(dist[:, None] > 1e-6, to / np.maximum(dist, 1e-12)[:, None], _cross(head_up, head_right))
    right = _cross(fwd, head_up)
    norm = np.sqrt(np.einsum("ij,ij->i", right, right))
    right = np.where(norm[:, None] > 1e-3, right / np.maximum(norm, 1e-12)[:, None], head_right)
    up = _cross(right, fwd)
    return right, up, dist


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
        vp = np.stack([view.fov.projection() @ view.view_matrix() for view in views])  # (V, 4, 4)
        clip_anchor = anchors @ vp[:, :, :3].transpose(0, 2, 1) + vp[:, None, :, 3]  # (V, N, 4)
        clip_right = (right * scale[:, None]) @ vp[:, :, :3].transpose(0, 2, 1)  # per line unit
        clip_up = (up * scale[:, None]) @ vp[:, :, :3].transpose(0, 2, 1)
        # corners (V, N, S, 4 corners, 4): x = +-half width, y = slot shift + (0 or plate height)
        x = half_widths[:, None] * np.array([-1.0, 1.0, -1.0, 1.0])  # (N, 4)
        y = (self.slots * self.step)[:, None] + np.array([0.0, 0.0, 1.0, 1.0]) * self.plate_height  # (S, 4)
        clip = (
            clip_anchor[:, :, None, None, :]
            + clip_right[:, :, None, None, :] * x[None, :, None, :, None]
            + clip_up[:, :, None, None, :] * y[None, None, :, :, None]
        )
        w = np.maximum(clip[..., 3], 1e-6)
        size_px = np.array([(view.width, view.height) for view in views], dtype=np.float64)
        px = (clip[..., 0] / w + 1.0) * (0.5 * size_px[:, 0, None, None, None])
        py = (1.0 - clip[..., 1] / w) * (0.5 * size_px[:, 1, None, None, None])
        rects = np.stack([px.min(-1), py.min(-1), px.max(-1), py.max(-1)], axis=-1)  # (V, N, S, 4)
        on_screen = (
            (rects[..., 2] > 0)
            & (rects[..., 0] < size_px[:, 0, None, None])
            & (rects[..., 3] > 0)
            & (rects[..., 1] < size_px[:, 1, None, None])
        )
        in_front = clip_anchor[..., 3] > near  # (V, N): the shader's test, on the anchor
        active = in_front & on_screen.any(axis=2)  # drawn in this view and on its screen
        rects[~in_front] = np.nan

        # pinned labels first, then greedy by (class, distance), incumbents slightly ahead
        on_anchor = np.array([self._previous.get(k) == 0 for k in keys])
        weighted = dist * np.where(on_anchor, 1.0 - self.incumbent_bonus, 1.0)
        order = np.lexsort((np.arange(n), weighted, priority, ~pinned))
        fresh = np.array([k not in self._previous for k in keys])
        last_slots = np.array([self._previous.get(k, 0) if self._previous.get(k, 0) is not None else 1 << 30 for k in keys])
        # the common case: nothing overlaps at the anchors, and nobody was moved or hidden last frame
        if np.all(last_slots == 0) and not _any_overlap(rects[:, :, 0], active, self.margin_px, pinned):
            rects_out = np.where(active[..., None], rects[:, :, 0], np.nan)
            self._previous = {k: 0 for k in keys}
            return Placement(offsets, visible, slots_taken, rects_out)
        rank = {int(slot): k for k, slot in enumerate(self.slots)}  # hidden: worse than every slot
        placed = np.zeros((n_views, n, 4))  # rectangles of placed labels, in placing order
        placed_views = np.zeros((n_views, n), dtype=bool)
        count = 0
        previous: dict[Hashable, int | None] = {}
        for i in order:
            key = keys[i]
            views_i = active[:, i]
            if not views_i.any():  # behind every eye or off every screen: blocks nothing, stays put
                previous[key] = self._previous.get(key, 0)
                continue
            if pinned[i]:
                chosen = 0  # where the session put it, whatever it overlaps
            else:
                # moving to a better slot than last frame's (back towards the anchor, or reappearing)
                # needs extra clearance; staying, or being pushed further, does not; a new label is free
                better = np.arange(len(self.slots)) < rank.get(int(last_slots[i]), len(self.slots))
                pads = self.margin_px + np.where(better & ~fresh[i], self.hysteresis_px, 0.0)
                blocked = _collisions(rects[:, i], views_i, placed[:, :count], placed_views[:, :count], pads)
                free = np.flatnonzero(~blocked)  # in order of preference
                if len(free) == 0:
                    visible[i] = False
                    previous[key] = None
                    continue
                chosen = int(free[0])
            slots_taken[i] = self.slots[chosen]
            offsets[i] = np.float32(self.slots[chosen] * self.step)
            placed[:, count] = rects[:, i, chosen]  # NaN (not in that view) overlaps nothing
            placed_views[:, count] = views_i
            rects_out[:, i] = np.where(views_i[:, None], rects[:, i, chosen], np.nan)
            count += 1
            previous[key] = int(self.slots[chosen])
        # a label that comes back keeps its history only while it is in the scene
        self._previous = previous
        return Placement(offsets, visible, slots_taken, rects_out)


def _collisions(
    rects: np.ndarray, views: np.ndarray, placed: np.ndarray, placed_views: np.ndarray, pads: np.ndarray
) -> np.ndarray:
    """(S,) bool: whether each candidate rectangle of ``rects`` (V, S, 4), grown by ``pads`` (S,) px,
    overlaps any placed rectangle (V, M, 4) in a view where both are drawn."""
    if placed.shape[1] == 0:
        return np.zeros(rects.shape[1], dtype=bool)
    r = rects[:, :, None, :]  # (V, S, 1, 4)
    p = placed[:, None, :, :]  # (V, 1, M, 4)
    pad = pads[None, :, None]
    overlap = (r[..., 0] - pad < p[..., 2]) & (p[..., 0] < r[..., 2] + pad) & (r[..., 1] - pad < p[..., 3]) & (
        p[..., 1] < r[..., 3] + pad
    )
    both = (views[:, None] & placed_views)[:, None, :]  # (V, 1, M)
    collides: np.ndarray = (overlap & both).any(axis=(0, 2))
    return collides


def _any_overlap(rects: np.ndarray, active: np.ndarray, pad: float, pinned: np.ndarray) -> bool:
    """Whether any two active rectangles of (V, N, 4) overlap (grown by ``pad``) in some view, not
    counting two ``pinned`` (N,) ones (they stay where they are, overlapping or not)."""
    a, b = rects[:, :, None, :], rects[:, None, :, :]
    overlap = (a[..., 0] - pad < b[..., 2]) & (b[..., 0] < a[..., 2] + pad) & (a[..., 1] - pad < b[..., 3]) & (
        b[..., 1] < a[..., 3] + pad
    )
    overlap &= active[:, :, None] & active[:, None, :]
    overlap &= ~(pinned[:, None] & pinned[None, :])
    n = rects.shape[1]
    overlap[:, np.arange(n), np.arange(n)] = False
    return bool(overlap.any())
