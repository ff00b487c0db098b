"""What every tool sees of a frame, and the interface a tool implements.

A :class:`HandFrame` is one hand this frame as tools read it: its input, where its pointer ray hits
the twin (the picker ran once for it), and the edges of its buttons (pressed or released since the
last frame). Triggers and pinches are the same "press"; squeezes and closed fists the same "grab".

A tool's :meth:`Tool.update` returns intents (applied by the session's workspace, never by the tool)
and its :meth:`Tool.preview` the overlay of a gesture under way (the line of a measurement being
made, a stroke being drawn), drawn only for this user.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from sessions import intents as it
from xrcore.input import Hit, grab_strength, pinch_strength
from xrcore.scene import Label, Scene, Segment, Sphere
from xrcore.types import HandInput, Pose

if TYPE_CHECKING:
    from sessions.geodesics import GeodesicQuery, Geodesics
    from sessions.workspace import Workspace
    from xrcore.input import Picker

#: A trigger, pinch, squeeze or fist counts as pressed above this and released below the lower one
#: (hysteresis: a value hovering at the threshold does not chatter).
PRESS, RELEASE = 0.6, 0.4
#: Metres from the controller to a point drawn in the air (in front of the controller's tip).
AIR_TIP_M = 0.05

Overlay = tuple[list[Sphere | Segment], list[Label]]


@dataclass
class HandFrame:
    """One hand, this frame.

    ``side``: ``"left"`` or ``"right"``; ``hit``: the pointer's hit on the twin (or None);
    ``press``/``grab``: held now; ``pressed``/``released``: the press began / ended this frame
    (likewise ``grabbed``/``let_go``); ``buttons_pressed``: buttons that went down this frame.
    """

    side: str
    hand: HandInput
    hit: Hit | None = None
    press: bool = False
    pressed: bool = False
    released: bool = False
    grab: bool = False
    grabbed: bool = False
    let_go: bool = False
    buttons_pressed: frozenset[str] = frozenset()
    stick_flick: int = 0  # -1 thumbstick flicked left this frame, +1 right, 0 neither

    @property
    def tracked(self) -> bool:
        return self.hand.aim is not None

    @property
    def aim(self) -> Pose | None:
        return self.hand.aim

    def tip_world(self) -> np.ndarray | None:
        """(3,) world metres: a point just in front of the controller, where air strokes go."""
        if self.hand.aim is None:
            return None
        return np.asarray(self.hand.aim.position, dtype=np.float64) + self.hand.aim.forward() * AIR_TIP_M


@dataclass
class HandEdges:
    """Button state carried from one frame to the next, to find each press's start and end."""

    press: bool = False
    grab: bool = False
    buttons: frozenset[str] = frozenset()
    stick_x: float = 0.0

    def step(self, side: str, hand: HandInput, hit: Hit | None) -> HandFrame:
        """This frame's :class:`HandFrame` of ``hand`` (updating the carried state)."""
        press_value = max(hand.trigger, pinch_strength(hand))
        grab_value = max(hand.squeeze, grab_strength(hand))
        press = press_value >= (RELEASE if self.press else PRESS) and hand.aim is not None
        grab = grab_value >= (RELEASE if self.grab else PRESS) and (hand.grip or hand.aim) is not None
        flick = 0
        x = hand.thumbstick[0]
        if abs(x) >= 0.7 > abs(self.stick_x):
            flick = 1 if x > 0 else -1
        frame = HandFrame(
            side=side, hand=hand, hit=hit, press=press, pressed=press and not self.press,
            released=self.press and not press, grab=grab, grabbed=grab and not self.grab,
            let_go=self.grab and not grab, buttons_pressed=hand.buttons - self.buttons, stick_flick=flick,
        )  # fmt: skip
        self.press, self.grab, self.buttons, self.stick_x = press, grab, hand.buttons, x
        return frame


@dataclass
class ToolContext:
    """What a tool may read: the workspace (and through it the scene), the picker, who the user is
    and the session time (s). ``geodesics`` measures along the surface when it can
    (:mod:`sessions.geodesics`); a measurement whose distance along the surface is still being computed
    waits in ``held`` (its query, and the intent to apply once answered: the session applies it)."""

    workspace: Workspace
    picker: Picker
    user: str
    time: float = 0.0
    geodesics: Geodesics | None = None
    held: list[tuple[GeodesicQuery, it.Measure]] = field(default_factory=list)

    @property
    def scene(self) -> Scene:
        return self.workspace.scene

    def twin_mm(self, world: np.ndarray) -> tuple[float, float, float]:
        """A world point (m) in the twin's own coordinates, millimetres."""
        inv = self.workspace.scene.twin_from_world()
        p = inv[:3, :3] @ np.asarray(world, dtype=np.float64) + inv[:3, 3]
        return (float(p[0] * 1000.0), float(p[1] * 1000.0), float(p[2] * 1000.0))

    def world(self, point_mm: tuple[float, float, float] | np.ndarray) -> tuple[float, float, float]:
        """A twin point (mm) in world metres."""
        m = self.workspace.scene.model_matrix()
        p = m[:3, :3] @ (np.asarray(point_mm, dtype=np.float64) / 1000.0) + m[:3, 3]
        return (float(p[0]), float(p[1]), float(p[2]))


class Tool(Protocol):
    """A tool held in one hand: turns that hand's frames into intents."""

    name: str
    #: a few words for the panels: what the tool does (the controls differ by device, so they are in
    #: the docs, not here: a press is a trigger pull, a pinch or a left click)
    hint: str

    def update(self, ctx: ToolContext, hand: HandFrame) -> list[it.Intent]:
        """This frame's intents from ``hand`` (most frames: none)."""
        ...

    def preview(self, ctx: ToolContext, hand: HandFrame) -> Overlay:
        """Overlay balls, rods and labels of a gesture under way (empty when idle)."""
        ...

    def cancel(self) -> None:
        """Drop a gesture under way (the tool was put away)."""
        ...
