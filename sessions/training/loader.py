"""Reading a training module: find it, parse JSON or YAML, validate, check it against its twin.

The rules are those of the published JSON Schema (``module.schema.json`` beside this file) applied by
hand, plus what a schema cannot say: every structure name exists in the twin, step ids are unique,
normals are not zero, floors are not above their tolerances, numbers are finite. A bad file is
refused before any run with :class:`ModuleError`, one line naming the file, the step and the field,
because a trainee (or a teacher writing a module) must learn what to fix without reading a traceback.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

from sessions.training.schema import (
    DEFAULT_INSTRUMENT_LENGTH_MM,
    DEFAULT_MODULE_PASS_SCORE,
    DEFAULT_NO_GO_MARGIN_MM,
    ERROR_KINDS,
    MAX_TOLERANCE_MM,
    SCHEMA_ID,
    TARGET_ERRORS,
    Instrument,
    InstrumentTarget,
    LandmarkTarget,
    MeasureTarget,
    Module,
    Scoring,
    SectionTarget,
    SelectTarget,
    Step,
    Target,
    Vec3,
)

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
#: Shipped modules and scripted trainees (package data).
MODULES_DIR = HERE / "modules"
SCRIPTS_DIR = HERE / "scripts"
SCHEMA_PATH = HERE / "module.schema.json"
SUFFIXES = (".json", ".yaml", ".yml")
MAX_MODULE_BYTES = 4 * 1024 * 1024
_IDENT = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
#: Coordinates beyond this (mm) are not anatomy.
MAX_COORD_MM = 10_000.0
#: How far a given ``distance_mm`` may differ from its ends' distance (mm).
DISTANCE_AGREEMENT_MM = 0.5


class ModuleError(ValueError):
    """A module cannot be used; the message (one line) names the file, the step and the field."""


# --- finding ----------------------------------------------------------------------------------------


def shipped_modules() -> list[Path]:
    """The shipped module files, by id."""
    if not MODULES_DIR.is_dir():
        return []
    return sorted((p for p in MODULES_DIR.iterdir() if p.suffix in SUFFIXES and p.is_file()), key=lambda p: p.stem)


def find_module(name: str | Path) -> Path:
    """The file of module ``name``: a path to a file, or a shipped module id."""
    path = Path(name)
    if path.is_file():
        return path
    text = str(name)
    if _IDENT.match(text):
        for suffix in SUFFIXES:
            candidate = MODULES_DIR / f"{text}{suffix}"
            if candidate.is_file():
                return candidate
    known = ", ".join(p.stem for p in shipped_modules()) or "none"
    raise ModuleError(f"{name}: no such module file or shipped module (shipped: {known})")


def find_script(name: str | Path, base_dir: Path | None = None) -> Path:
    """A scripted trainee's file: a path, or a bare name in ``base_dir`` or :data:`SCRIPTS_DIR` (with
    or without its ``.json``/``.yaml`` ending)."""
    path = Path(name)
    if path.is_file():
        return path
    folders = [d for d in (base_dir, SCRIPTS_DIR if len(path.parts) == 1 else None) if d is not None]
    for folder in folders:
        for candidate in (folder / path, *(folder / f"{path}{suffix}" for suffix in (".json", ".yaml", ".yml"))):
            if candidate.is_file():
                return candidate
    raise ModuleError(f"{name}: no such script file (bare names are looked up in {SCRIPTS_DIR})")


# --- reading ----------------------------------------------------------------------------------------


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a number a module may hold")


def read_document(path: Path) -> Any:
    """Parse ``path`` as JSON or (by suffix) YAML; raises :class:`ModuleError` with the line."""
    try:
        size = path.stat().st_size
        if size > MAX_MODULE_BYTES:
            raise ModuleError(f"{path}: {size} bytes, more than the {MAX_MODULE_BYTES} byte limit for a module")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModuleError(f"{path}: cannot read the module: {exc}") from None
    if path.suffix in (".yaml", ".yml"):
        import yaml  # type: ignore[import-untyped]  # noqa: PLC0415 - only YAML modules need it

        try:
            return yaml.safe_load(text)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            where = f"line {mark.line + 1} column {mark.column + 1}" if mark is not None else "somewhere"
            raise ModuleError(f"{path}: not valid YAML: {exc.problem or exc} at {where}") from None
        except yaml.YAMLError as exc:
            raise ModuleError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    try:
        return json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise ModuleError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:
        raise ModuleError(f"{path}: not valid JSON: {exc}") from None


# --- validating -------------------------------------------------------------------------------------


class _Checker:
    """Validates one document; ``fail`` makes the one-line error."""

    def __init__(self, source: str, structures: Collection[str] | None, twin_name: str | None) -> None:
        self.source = source
        self.structures = structures
        self.twin_name = twin_name
        self.where = "top level"

    def fail(self, field: str, message: str) -> ModuleError:
        return ModuleError(f"{self.source}: {self.where}: {field}: {message}")

    def keys(self, obj: Any, field: str, required: tuple[str, ...], allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise self.fail(field, f"expected an object, got {_kind(obj)}")
        bad = sorted(str(k) for k in obj if k not in allowed)
        if bad:
            raise self.fail(field, f"unknown field(s) {', '.join(bad)}; allowed: {', '.join(sorted(allowed))}")
        for key in required:
            if key not in obj:
                raise self.fail(_join(field, key), "missing (required)")
        return obj

    def text(self, value: Any, field: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(field, f"expected a non-empty string, got {value!r}")
        return value

    def ident(self, value: Any, field: str) -> str:
        if not isinstance(value, str) or not _IDENT.match(value):
            raise self.fail(field, f"expected 1-100 of letters, digits, '.', '_' or '-', got {value!r}")
        return value

    def number(self, value: Any, field: str, lo: float, hi: float, *, lo_open: bool = False, what: str = "") -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(field, f"expected a number, got {value!r}")
        v = float(value)
        if not math.isfinite(v):
            raise self.fail(field, f"must be a finite number, got {value!r}")
        if (v <= lo if lo_open else v < lo) or v > hi:
            rel = ">" if lo_open else ">="
            raise self.fail(field, f"must be {rel} {lo:g} and at most {hi:g}{what}, got {value!r}")
        return v

    def tolerance(self, value: Any, field: str) -> float:
        return self.number(value, field, 0.0, MAX_TOLERANCE_MM, lo_open=True, what=" mm")

    def fraction(self, value: Any, field: str) -> float:
        return self.number(value, field, 0.0, 1.0)

    def point(self, value: Any, field: str) -> Vec3:
        if not isinstance(value, list) or len(value) != 3:
            raise self.fail(field, f"expected [x, y, z] in twin millimetres, got {value!r}")
        x, y, z = (self.number(v, f"{field}[{i}]", -MAX_COORD_MM, MAX_COORD_MM) for i, v in enumerate(value))
        return (x, y, z)

    def structure(self, value: Any, field: str) -> str:
        name = self.text(value, field)
        if self.structures is not None and name not in self.structures:
            close = difflib.get_close_matches(name, list(self.structures), n=3, cutoff=0.6)
            hint = (
                f" (close: {', '.join(close)})"
                if close
                else f" ({len(self.structures)} structures; `medverse twin info` lists them)"
            )
            raise self.fail(field, f"twin {self.twin_name!r} has no structure {name!r}{hint}")
        return name

    def structure_list(self, value: Any, field: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail(field, f"expected a non-empty list of structure names, got {value!r}")
        names = tuple(self.structure(v, f"{field}[{i}]") for i, v in enumerate(value))
        if len(set(names)) != len(names):
            raise self.fail(field, "a structure is named twice")
        return names

    def floor(self, target: dict[str, Any], key: str, tolerance: float, field: str, hi: float = MAX_TOLERANCE_MM) -> float | None:
        if key not in target:
            return None
        value = self.number(target[key], _join(field, key), 0.0, hi, lo_open=True)
        if value > tolerance:
            raise self.fail(_join(field, key), f"the floor {value:g} is above the tolerance {tolerance:g}")
        return value

    # --- targets ------------------------------------------------------------------------------------

    def target(self, obj: Any) -> Target:
        field = "target"
        if not isinstance(obj, dict):
            raise self.fail(field, f"expected an object with 'kind', got {_kind(obj)}")
        kind = obj.get("kind")
        if kind not in TARGET_ERRORS:
            raise self.fail(f"{field}.kind", f"unknown target kind {kind!r}; known: {', '.join(TARGET_ERRORS)}")
        method = getattr(self, f"_{kind}")
        result: Target = method(obj, field)
        return result

    def _select(self, t: dict[str, Any], f: str) -> SelectTarget:
        self.keys(t, f, ("kind", "structure"), ("kind", "structure"))
        return SelectTarget(self.structure(t["structure"], f"{f}.structure"))

    def _landmark(self, t: dict[str, Any], f: str) -> LandmarkTarget:
        self.keys(t, f, ("kind", "point_mm", "tolerance_mm"),
                  ("kind", "point_mm", "tolerance_mm", "tolerance_floor_mm", "structure", "label"))  # fmt: skip
        tol = self.tolerance(t["tolerance_mm"], f"{f}.tolerance_mm")
        return LandmarkTarget(
            self.point(t["point_mm"], f"{f}.point_mm"), tol,
            self.structure(t["structure"], f"{f}.structure") if "structure" in t else None,
            self.text(t["label"], f"{f}.label") if "label" in t else None,
            self.floor(t, "tolerance_floor_mm", tol, f),
        )  # fmt: skip

    def _measure(self, t: dict[str, Any], f: str) -> MeasureTarget:
        self.keys(t, f, ("kind", "tolerance_mm"),
                  ("kind", "from_mm", "to_mm", "distance_mm", "match", "tolerance_mm", "tolerance_floor_mm"))  # fmt: skip
        tol = self.tolerance(t["tolerance_mm"], f"{f}.tolerance_mm")
        if ("from_mm" in t) != ("to_mm" in t):
            raise self.fail(f"{f}.{'to_mm' if 'from_mm' in t else 'from_mm'}", "from_mm and to_mm go together")
        a = self.point(t["from_mm"], f"{f}.from_mm") if "from_mm" in t else None
        b = self.point(t["to_mm"], f"{f}.to_mm") if "to_mm" in t else None
        ends = math.dist(a, b) if a is not None and b is not None else None
        if ends is not None and ends <= 0:
            raise self.fail(f"{f}.to_mm", "the two ends are the same point")
        if "distance_mm" in t:
            distance = self.number(t["distance_mm"], f"{f}.distance_mm", 0.0, 2000.0, lo_open=True, what=" mm")
            if ends is not None and abs(distance - ends) > DISTANCE_AGREEMENT_MM:
                raise self.fail(f"{f}.distance_mm", f"{distance:g} mm disagrees with from_mm-to_mm ({ends:.2f} mm)")
        elif ends is not None:
            distance = ends
        else:
            raise self.fail(f, "give from_mm and to_mm, or distance_mm")
        match = t.get("match", "endpoints" if a is not None else "distance")
        if match not in ("endpoints", "distance"):
            raise self.fail(f"{f}.match", f"expected 'endpoints' or 'distance', got {match!r}")
        if match == "endpoints" and a is None:
            raise self.fail(f"{f}.match", "'endpoints' needs from_mm and to_mm")
        return MeasureTarget(tol, distance, a, b, match, self.floor(t, "tolerance_floor_mm", tol, f))

    def _section(self, t: dict[str, Any], f: str) -> SectionTarget:
        self.keys(t, f, ("kind", "point_mm", "normal", "angle_tolerance_deg", "offset_tolerance_mm"),
                  ("kind", "point_mm", "normal", "angle_tolerance_deg", "offset_tolerance_mm", "shows",
                   "angle_tolerance_floor_deg", "offset_tolerance_floor_mm"))  # fmt: skip
        n = self.point(t["normal"], f"{f}.normal")
        length = math.sqrt(sum(v * v for v in n))
        if length < 1e-9:
            raise self.fail(f"{f}.normal", "the normal is zero")
        angle = self.number(t["angle_tolerance_deg"], f"{f}.angle_tolerance_deg", 0.0, 90.0, lo_open=True, what=" degrees")
        offset = self.tolerance(t["offset_tolerance_mm"], f"{f}.offset_tolerance_mm")
        return SectionTarget(
            self.point(t["point_mm"], f"{f}.point_mm"), (n[0] / length, n[1] / length, n[2] / length), angle, offset,
            self.structure_list(t["shows"], f"{f}.shows") if "shows" in t else (),
            self.floor(t, "angle_tolerance_floor_deg", angle, f, 90.0),
            self.floor(t, "offset_tolerance_floor_mm", offset, f),
        )  # fmt: skip

    def _instrument(self, t: dict[str, Any], f: str) -> InstrumentTarget:
        self.keys(t, f, ("kind", "target_mm", "tolerance_mm"),
                  ("kind", "instrument", "target_mm", "tolerance_mm", "tolerance_floor_mm", "path_mm",
                   "path_tolerance_mm", "no_go", "no_go_margin_mm"))  # fmt: skip
        inst = Instrument()
        if "instrument" in t:
            spec = self.keys(t["instrument"], f"{f}.instrument", (), ("name", "length_mm", "hand"))
            hand = spec.get("hand", "right")
            if hand not in ("left", "right"):
                raise self.fail(f"{f}.instrument.hand", f"expected 'left' or 'right', got {hand!r}")
            inst = Instrument(
                self.text(spec["name"], f"{f}.instrument.name") if "name" in spec else "needle",
                self.number(spec.get("length_mm", DEFAULT_INSTRUMENT_LENGTH_MM), f"{f}.instrument.length_mm", 0.0, 500.0,
                            lo_open=True, what=" mm"),
                hand,
            )  # fmt: skip
        tol = self.tolerance(t["tolerance_mm"], f"{f}.tolerance_mm")
        path: tuple[Vec3, ...] = ()
        path_tol = None
        if ("path_mm" in t) != ("path_tolerance_mm" in t):
            raise self.fail(
                f"{f}.{'path_tolerance_mm' if 'path_mm' in t else 'path_mm'}", "path_mm and path_tolerance_mm go together"
            )
        if "path_mm" in t:
            raw = t["path_mm"]
            if not isinstance(raw, list) or not 2 <= len(raw) <= 1000:
                raise self.fail(f"{f}.path_mm", f"expected a list of 2 to 1000 points [x, y, z], got {_kind(raw)}")
            path = tuple(self.point(p, f"{f}.path_mm[{i}]") for i, p in enumerate(raw))
            path_tol = self.tolerance(t["path_tolerance_mm"], f"{f}.path_tolerance_mm")
        return InstrumentTarget(
            self.point(t["target_mm"], f"{f}.target_mm"), tol, inst, path, path_tol,
            self.structure_list(t["no_go"], f"{f}.no_go") if "no_go" in t else (),
            self.number(t.get("no_go_margin_mm", DEFAULT_NO_GO_MARGIN_MM), f"{f}.no_go_margin_mm", 0.0, 50.0, what=" mm"),
            self.floor(t, "tolerance_floor_mm", tol, f),
        )  # fmt: skip

    # --- steps and module ---------------------------------------------------------------------------

    def step(self, obj: Any, index: int) -> Step:
        raw_id = obj.get("id") if isinstance(obj, dict) else None
        self.where = f"steps[{index}]" + (f" {raw_id!r}" if isinstance(raw_id, str) else "")
        self.keys(obj, "step", ("id", "title", "instructions", "target"),
                  ("id", "title", "instructions", "hints", "time_limit_s", "weight", "watch", "scoring", "target"))  # fmt: skip
        step_id = self.ident(obj["id"], "id")
        hints_raw = obj.get("hints", [])
        if not isinstance(hints_raw, list) or len(hints_raw) > 20:
            raise self.fail("hints", f"expected a list of up to 20 strings, got {_kind(hints_raw)}")
        hints = tuple(self.text(h, f"hints[{i}]") for i, h in enumerate(hints_raw))
        limit = (
            self.number(obj["time_limit_s"], "time_limit_s", 0.0, 3600.0, lo_open=True, what=" s")
            if "time_limit_s" in obj
            else None
        )
        weight = self.number(obj.get("weight", 1.0), "weight", 0.0, 100.0, lo_open=True)
        target = self.target(obj["target"])
        possible = TARGET_ERRORS[target.kind]
        if "watch" in obj:
            watch_raw = obj["watch"]
            if not isinstance(watch_raw, list):
                raise self.fail("watch", f"expected a list of error kinds, got {_kind(watch_raw)}")
            for i, w in enumerate(watch_raw):
                if w not in ERROR_KINDS:
                    raise self.fail(f"watch[{i}]", f"unknown error {w!r}; known: {', '.join(ERROR_KINDS)}")
                if w not in possible:
                    raise self.fail(f"watch[{i}]", f"a {target.kind} step cannot make {w!r}; it can make {', '.join(possible)}")
            if len(set(watch_raw)) != len(watch_raw):
                raise self.fail("watch", "an error is listed twice")
            watch = tuple(watch_raw)
        else:
            watch = possible
        scoring = Scoring()
        if "scoring" in obj:
            s = self.keys(obj["scoring"], "scoring", (), ("pass_score", "error_penalty", "hint_penalty"))
            scoring = Scoring(
                self.fraction(s.get("pass_score", scoring.pass_score), "scoring.pass_score"),
                self.fraction(s.get("error_penalty", scoring.error_penalty), "scoring.error_penalty"),
                self.fraction(s.get("hint_penalty", scoring.hint_penalty), "scoring.hint_penalty"),
            )
        return Step(step_id, self.text(obj["title"], "title"), self.text(obj["instructions"], "instructions"),
                    target, hints, limit, weight, watch, scoring)  # fmt: skip

    def module(self, doc: Any, base_dir: Path | None) -> Module:
        self.where = "top level"
        allowed = ("schema", "id", "title", "twin", "description", "script", "pass_score", "steps")
        self.keys(doc, "module", ("schema", "id", "title", "twin", "steps"), allowed)
        if doc["schema"] != SCHEMA_ID:
            raise self.fail("schema", f"expected {SCHEMA_ID!r}, got {doc['schema']!r}")
        module_id = self.ident(doc["id"], "id")
        twin = self.text(doc["twin"], "twin")
        if self.twin_name is None:
            self.twin_name = twin
        elif self.twin_name != twin:
            raise self.fail("twin", f"the module is for twin {twin!r}, not {self.twin_name!r}")
        script = None
        if "script" in doc:
            try:
                script = find_script(self.text(doc["script"], "script"), base_dir)
            except ModuleError as exc:
                raise self.fail("script", str(exc)) from None
        description = doc.get("description", "")
        if not isinstance(description, str):
            raise self.fail("description", f"expected a string, got {_kind(description)}")
        pass_score = self.fraction(doc.get("pass_score", DEFAULT_MODULE_PASS_SCORE), "pass_score")
        raw_steps = doc["steps"]
        if not isinstance(raw_steps, list) or not 1 <= len(raw_steps) <= 200:
            raise self.fail("steps", f"expected a list of 1 to 200 steps, got {_kind(raw_steps)}")
        steps: list[Step] = []
        seen: dict[str, int] = {}
        for i, raw in enumerate(raw_steps):
            step = self.step(raw, i)
            if step.id in seen:
                raise self.fail("id", f"step id {step.id!r} is used twice (also steps[{seen[step.id]}])")
            seen[step.id] = i
            steps.append(step)
        self.where = "top level"
        return Module(module_id, self.text(doc["title"], "title"), twin, tuple(steps), description, script, pass_score)


def _kind(value: Any) -> str:
    return type(value).__name__ if not isinstance(value, (list, dict)) else f"a {type(value).__name__} of {len(value)}"


def _join(field: str, key: str) -> str:
    return key if field in ("module", "step") else f"{field}.{key}"


def parse_module(
    doc: Any,
    source: str = "<module>",
    *,
    structures: Collection[str] | None = None,
    twin_name: str | None = None,
    base_dir: Path | None = None,
) -> Module:
    """Validate a parsed document; with ``structures`` (the twin's names) every structure is checked.
    Raises :class:`ModuleError`."""
    return _Checker(source, structures, twin_name).module(doc, base_dir)


def load_module(name: str | Path, *, twin: Any = None, check_twin: bool = True) -> Module:
    """Load module ``name`` (a shipped id or a file path) and validate it.

    ``twin``: the :class:`~assets.twin.Twin` to check structure names against; by default the
    module's twin is built through :mod:`assets.library` (``check_twin=False`` skips the check:
    for listing modules without building twins). Raises :class:`ModuleError`.
    """
    path = find_module(name)
    doc = read_document(path)
    source = str(path)
    structures: Collection[str] | None = None
    twin_name: str | None = None
    if twin is not None:
        structures = {s.name for s in twin.structures}
        twin_name = twin.name
    elif check_twin:
        # parse once without the twin: a broken file says so before a twin is built for it
        draft = parse_module(doc, source, base_dir=path.parent)
        twin = _build_twin(draft.twin, source)
        structures = {s.name for s in twin.structures}
        twin_name = twin.name
    module = parse_module(doc, source, structures=structures, twin_name=twin_name, base_dir=path.parent)
    module = _with_source(module, path)
    logger.info("loaded module %s (%s): %d steps on twin %s", module.id, path, len(module.steps), module.twin)
    return module


def _build_twin(name: str, source: str) -> Any:
    from assets.errors import AssetError  # noqa: PLC0415 - assets only when a twin is checked
    from assets.library import build  # noqa: PLC0415

    try:
        return build(name)
    except AssetError as exc:
        raise ModuleError(f"{source}: top level: twin: {exc}") from None


def _with_source(module: Module, path: Path) -> Module:
    from dataclasses import replace  # noqa: PLC0415

    return replace(module, source=path)
