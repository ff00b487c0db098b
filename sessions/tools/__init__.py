"""The tools a user works on the twin with, and the tool belt that holds them.

Each hand holds one palette tool (:data:`PALETTE`: select, landmark, measure, section, draw, and the
instrument a training step hands over: a needle or probe whose tip the training runner follows); the
primary button (A / X) or a thumbstick flick changes it, the secondary button (B / Y) undoes the
user's last change, and a squeeze (or a closed fist) grabs the twin with either tool. Every tool
turns poses and buttons into :mod:`sessions.intents`; the session's workspace applies them.
"""

from __future__ import annotations

from sessions import intents as it
from sessions.tools.base import HandEdges, HandFrame, Overlay, Tool, ToolContext
from sessions.tools.draw import DrawTool
from sessions.tools.grab import Grab
from sessions.tools.instrument import InstrumentTool
from sessions.tools.landmark import LandmarkTool
from sessions.tools.measure import MeasureTool
from sessions.tools.section import SectionTool
from sessions.tools.select import SelectTool
from xrcore.scene import Label, Segment, Sphere

#: The palette, in the order the primary button steps through it.
PALETTE: tuple[str, ...] = ("select", "landmark", "measure", "section", "draw", "instrument")
_MAKERS: dict[str, type[Tool]] = {
    "select": SelectTool, "landmark": LandmarkTool, "measure": MeasureTool, "section": SectionTool, "draw": DrawTool,
    "instrument": InstrumentTool,
}  # fmt: skip
#: Buttons that step to the next tool / undo, per hand (Touch-style: A/B right, X/Y left).
NEXT_TOOL = {"left": "x", "right": "a"}
UNDO = {"left": "y", "right": "b"}

__all__ = ["PALETTE", "HandEdges", "HandFrame", "Overlay", "Tool", "ToolBelt", "ToolContext"]


class ToolBelt:
    """Both hands' tools, the palette buttons, undo and the grab gesture."""

    def __init__(self, left: str = "select", right: str = "select") -> None:
        self.tools: dict[str, Tool] = {side: _make(name) for side, name in (("left", left), ("right", right))}
        self.grab = Grab()

    def tool(self, side: str) -> Tool:
        return self.tools[side]

    def choose(self, ctx: ToolContext, side: str, name: str) -> list[it.Intent]:
        """Put tool ``name`` in hand ``side`` (the gesture under way with the old one is dropped)."""
        if side not in self.tools:
            raise ValueError(f"hand must be 'left' or 'right', got {side!r}")
        if self.tools[side].name == name:
            return []
        self.tools[side].cancel()
        self.tools[side] = _make(name)
        return [it.ChooseTool(ctx.user, ctx.time, side, name)]

    def update(self, ctx: ToolContext, left: HandFrame, right: HandFrame) -> list[it.Intent]:
        """This frame's intents from both hands: palette and undo buttons, grab, then each tool."""
        out: list[it.Intent] = []
        for hand in (left, right):
            step = 1 if NEXT_TOOL[hand.side] in hand.buttons_pressed else hand.stick_flick
            if step:
                current = PALETTE.index(self.tools[hand.side].name)
                out += self.choose(ctx, hand.side, PALETTE[(current + step) % len(PALETTE)])
            if UNDO[hand.side] in hand.buttons_pressed:
                out.append(it.Undo(ctx.user, ctx.time))
        out += self.grab.update(ctx, left, right)
        for hand in (left, right):
            if hand.grab or not hand.tracked:
                self.tools[hand.side].cancel()
                continue
            out += self.tools[hand.side].update(ctx, hand)
        return out

    def preview(self, ctx: ToolContext, left: HandFrame, right: HandFrame) -> Overlay:
        marks: list[Sphere | Segment] = []
        labels: list[Label] = []
        for hand in (left, right):
            m, t = self.tools[hand.side].preview(ctx, hand)
            marks += m
            labels += t
        return marks, labels


def _make(name: str) -> Tool:
    if name not in _MAKERS:
        raise ValueError(f"unknown tool {name!r}; the palette has {', '.join(PALETTE)}")
    tool: Tool = _MAKERS[name]()
    return tool
