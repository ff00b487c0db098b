"""Select: a trigger pull (or pinch, or left click) selects the structure under the pointer; the same
in empty space clears the selection."""

from __future__ import annotations

from sessions import intents as it
from sessions.tools.base import HandFrame, Overlay, ToolContext


class SelectTool:
    name = "select"
    hint = "press on a structure to select it"

    def update(self, ctx: ToolContext, hand: HandFrame) -> list[it.Intent]:
        if not hand.pressed:
            return []
        return [it.Select(ctx.user, ctx.time, hand.hit.structure if hand.hit is not None else None)]

    def preview(self, ctx: ToolContext, hand: HandFrame) -> Overlay:
        return [], []

    def cancel(self) -> None:
        pass
