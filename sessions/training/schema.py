"""The records a loaded training module is made of (``medverse.module/1``, see ``docs/training.md``).

A module file becomes a :class:`Module` of :class:`Step` s, each with exactly one target record
(:class:`SelectTarget`, :class:`LandmarkTarget`, :class:`MeasureTarget`, :class:`SectionTarget`,
:class:`InstrumentTarget`). The records are frozen: adaptive practice makes adjusted copies
(:func:`dataclasses.replace`) instead of changing what was loaded. Coordinates are the twin's own
millimetres, as in :mod:`sessions.intents`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

Vec3 = tuple[float, float, float]

SCHEMA_ID = "medverse.module/1"
#: The errors a step can watch for.
ERROR_KINDS: tuple[str, ...] = ("wrong_structure", "outside_tolerance", "no_go_contact", "off_path", "timeout", "out_of_order")
#: The target kinds, and the errors each can make (its default ``watch`` list).
TARGET_ERRORS: dict[str, tuple[str, ...]] = {
    "select": ("wrong_structure", "out_of_order", "timeout"),
    "landmark": ("outside_tolerance", "wrong_structure", "out_of_order", "timeout"),
    "measure": ("outside_tolerance", "timeout"),
    "section": ("outside_tolerance", "timeout"),
    "instrument": ("no_go_contact", "off_path", "timeout"),
}
#: Largest tolerance (mm) a module may give: anything wider scores nothing.
MAX_TOLERANCE_MM = 200.0
DEFAULT_INSTRUMENT_LENGTH_MM = 40.0
DEFAULT_NO_GO_MARGIN_MM = 2.0
DEFAULT_MODULE_PASS_SCORE = 0.6


@dataclass(frozen=True)
class Scoring:
    """How a step is scored: passed at ``pass_score`` or more; each error and each hint asked for
    takes ``error_penalty`` / ``hint_penalty`` off the step's score."""

    pass_score: float = 0.5
    error_penalty: float = 0.1
    hint_penalty: float = 0.05


@dataclass(frozen=True)
class SelectTarget:
    """Select the structure ``structure``."""

    structure: str
    kind = "select"


@dataclass(frozen=True)
class LandmarkTarget:
    """Place a landmark within ``tolerance_mm`` of ``point_mm`` (on ``structure`` when given)."""

    point_mm: Vec3
    tolerance_mm: float
    structure: str | None = None
    label: str | None = None
    tolerance_floor_mm: float | None = None
    kind = "landmark"


@dataclass(frozen=True)
class MeasureTarget:
    """Measure ``from_mm``-``to_mm`` (``match="endpoints"``) or a distance of ``distance_mm``
    (``match="distance"``) within ``tolerance_mm``."""

    tolerance_mm: float
    distance_mm: float
    from_mm: Vec3 | None = None
    to_mm: Vec3 | None = None
    match: str = "endpoints"
    tolerance_floor_mm: float | None = None
    kind = "measure"


@dataclass(frozen=True)
class SectionTarget:
    """A cut through ``point_mm`` with normal ``normal`` (unit, either sign), within the angle and
    offset tolerances, cutting every structure of ``shows``."""

    point_mm: Vec3
    normal: Vec3
    angle_tolerance_deg: float
    offset_tolerance_mm: float
    shows: tuple[str, ...] = ()
    angle_tolerance_floor_deg: float | None = None
    offset_tolerance_floor_mm: float | None = None
    kind = "section"


@dataclass(frozen=True)
class Instrument:
    """The held instrument: ``length_mm`` along the ray of hand ``hand``."""

    name: str = "needle"
    length_mm: float = DEFAULT_INSTRUMENT_LENGTH_MM
    hand: str = "right"


@dataclass(frozen=True)
class InstrumentTarget:
    """Bring the instrument's tip within ``tolerance_mm`` of ``target_mm``, along ``path_mm`` (within
    ``path_tolerance_mm``), keeping ``no_go_margin_mm`` from every ``no_go`` structure."""

    target_mm: Vec3
    tolerance_mm: float
    instrument: Instrument = field(default_factory=Instrument)
    path_mm: tuple[Vec3, ...] = ()
    path_tolerance_mm: float | None = None
    no_go: tuple[str, ...] = ()
    no_go_margin_mm: float = DEFAULT_NO_GO_MARGIN_MM
    tolerance_floor_mm: float | None = None
    kind = "instrument"


Target = SelectTarget | LandmarkTarget | MeasureTarget | SectionTarget | InstrumentTarget


@dataclass(frozen=True)
class Step:
    """One step: shown with ``instructions``, passed by reaching ``target``."""

    id: str
    title: str
    instructions: str
    target: Target
    hints: tuple[str, ...] = ()
    time_limit_s: float | None = None
    weight: float = 1.0
    watch: tuple[str, ...] = ()
    scoring: Scoring = field(default_factory=Scoring)
    #: shown automatically when the step starts (adaptive practice after a failure)
    auto_hints: int = 0


@dataclass(frozen=True)
class Module:
    """A loaded, validated module. ``source``: the file it came from; ``script``: the resolved path of
    its scripted trainee (None: none named)."""

    id: str
    title: str
    twin: str
    steps: tuple[Step, ...]
    description: str = ""
    script: Path | None = None
    pass_score: float = DEFAULT_MODULE_PASS_SCORE
    source: Path | None = None

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(f"module {self.id!r} has no step {step_id!r}")

    def structures(self) -> set[str]:
        """Every structure name the module's targets refer to."""
        names: set[str] = set()
        for step in self.steps:
            t = step.target
            if isinstance(t, (SelectTarget, LandmarkTarget)):
                names.update([t.structure] if t.structure is not None else [])
            elif isinstance(t, SectionTarget):
                names.update(t.shows)
            elif isinstance(t, InstrumentTarget):
                names.update(t.no_go)
        return names
