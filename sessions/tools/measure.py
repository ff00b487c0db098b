"""Measure: two trigger pulls on the surface give the distance between the two points, in mm in the
twin's own coordinates (so a twin scaled up to 3x still measures life size), and, when both points
lie on one structure, the distance along its surface (geodesic) as well. Where that distance is computed
beside the frame loop (:mod:`sessions.geodesics`), the measurement is held until it is answered, a few
frames later, and shown meanwhile with its straight distance.

While the second point is being chosen a line follows the cursor with the live distance.
A thumbstick click drops a half-made measurement.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sessions import intents as it
from sessions.tools.base import HandFrame, Overlay, ToolContext
from xrcore.input import Hit
from xrcore.scene import Label, Segment, Sphere

LINE_COLOR = (0.35, 0.85, 1.0, 1.0)


def measurement_overlay(ctx: ToolContext, a_mm: np.ndarray, b_mm: np.ndarray, text: str) -> Overlay:
    """The balls, rod and readout of a measurement from ``a_mm`` to ``b_mm`` (twin mm)."""
    a, b = ctx.world(a_mm), ctx.world(b_mm)
    r = 0.0018 * ctx.scene.twin_scale
    mid = tuple((pa + pb) / 2 for pa, pb in zip(a, b, strict=True))
    label = Label(text, (mid[0], mid[1] + 0.01, mid[2]), LINE_COLOR)
    return [Sphere(a, r, LINE_COLOR), Sphere(b, r, LINE_COLOR), Segment(a, b, r * 0.5, LINE_COLOR)], [label]


class MeasureTool:
    name = "measure"
    hint = "press two points on the surface"

    def __init__(self) -> None:
        self.start: Hit | None = None

    def update(self, ctx: ToolContext, hand: HandFrame) -> list[it.Intent]:
        if "thumbstick" in hand.buttons_pressed:
            self.start = None
        if not hand.pressed or hand.hit is None:
            return []
        if self.start is None:
            self.start = hand.hit
            return []
        a, b = self.start, hand.hit
        self.start = None
        distance = float(np.linalg.norm(b.point_mm - a.point_mm))
        measure = it.Measure(
            ctx.user, ctx.time, ctx.workspace.new_id(ctx.user, "M"),
            tuple(float(v) for v in a.point_mm), tuple(float(v) for v in b.point_mm),  # type: ignore[arg-type]
            distance, None, (a.structure, b.structure),
        )
        if a.index == b.index and a.face >= 0 and b.face >= 0 and ctx.geodesics is not None:
            query = ctx.geodesics.ask(a, b)
            if not query.done:  # answered in a later frame: the session applies it then
                ctx.held.append((query, measure))
                return []
            measure = dataclasses.replace(measure, geodesic_mm=query.mm)
        return [measure]

    def preview(self, ctx: ToolContext, hand: HandFrame) -> Overlay:
        if self.start is None or hand.hit is None:
            return [], []
        d = float(np.linalg.norm(hand.hit.point_mm - self.start.point_mm))
        return measurement_overlay(ctx, self.start.point_mm, hand.hit.point_mm, f"{d:.1f} mm")

    def cancel(self) -> None:
        self.start = None
