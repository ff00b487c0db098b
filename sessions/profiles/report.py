"""A trainee's profile as one self-contained HTML page an instructor can read, print or mail.

The page holds everything it shows: the style sheet (``report.css``, package data) is inlined, the
learning curves are inline SVG drawn here, and a Content-Security-Policy of ``default-src 'none'`` tells
the browser it may fetch nothing, so opening a report never calls home and it reads the same offline.

What it shows, from the statements in the trainee's profile (:class:`ProfileStore`): whether the hash
chain verifies (a tampered profile is flagged at the top, the rest still shown), the modules attempted,
every attempt (date, module, score, pass/fail, duration, errors, accuracy, economy, smoothness), per
module the learning curves across attempts and the steps of the latest attempt (score, errors, hints,
time, accuracy). Metrics come from the ``completed``/``terminated`` statements' metrics extension
(:data:`sessions.profiles.metrics.METRICS_EXTENSION`); steps from the step-level statements of the
attempt's registration.

Every piece of text from a profile (trainee, module and step names, ids) is untrusted: it is escaped
wherever it lands, element text, attribute or SVG.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

from sessions.profiles.chain import VerifyResult
from sessions.profiles.errors import ProfileError
from sessions.profiles.metrics import (
    Attempt,
    activity_name,
    activity_path,
    attempts,
    flatten_metrics,
    parse_duration,
    registration,
)
from sessions.profiles.store import ProfileStore, StoredStatement
from sessions.profiles.xapi import VERBS

logger = logging.getLogger(__name__)

_VERB_BY_IRI = {iri: name for name, iri in VERBS.items()}


# -- what the page is made of ----------------------------------------------------------------------


@dataclass(frozen=True)
class Curve:
    """One learning-curve chart: a metric of the attempts, how to read it and how to print it."""

    metric: str
    title: str
    unit: str
    better: str  # shown under the title: which way is good
    fmt: Callable[[float], str]
    scale: float = 1.0  # stored value x scale = shown value (score 0..1 -> %)
    from_zero: bool = True  # the y axis starts at 0 (lengths, times, counts)
    reference: float | None = None  # a dashed line (economy's ideal 1.0)
    reference_label: str = ""


def _fmt_seconds(seconds: float) -> str:
    if seconds >= 90:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest:02d} s"
    return f"{seconds:.1f} s"


def _fmt_mm(mm: float) -> str:
    return f"{mm:.2f} mm" if abs(mm) < 1 else f"{mm:.1f} mm"


CURVES: tuple[Curve, ...] = (
    Curve("score", "Score", "%", "higher is better", lambda v: f"{v:.0f}%", scale=100.0),
    Curve("duration_s", "Completion time", "s", "lower is better", lambda v: f"{v:.0f} s" if v >= 10 else f"{v:.1f} s"),
    Curve("economy", "Economy of motion", "x", "closer to 1 is better", lambda v: f"{v:.2f}",
          reference=1.0, reference_label="straight line"),
    Curve("accuracy_mm", "Target accuracy", "mm", "lower is better", _fmt_mm),
    Curve("errors", "Errors", "", "lower is better", lambda v: f"{v:.0f}"),
    Curve("sparc", "Smoothness (SPARC)", "", "closer to 0 is better", lambda v: f"{v:.2f}", from_zero=False),
)


@dataclass
class StepRow:
    """One step of an attempt, gathered from its step-level statements."""

    step_id: str
    name: str
    success: bool | None = None
    score: float | None = None
    errors: int = 0
    hints: int = 0
    time_s: float | None = None
    accuracy_mm: float | None = None


def _numbers(result: Mapping[str, Any]) -> dict[str, float]:
    """Numbers a result carries in its extensions, by their own names.

    An extension holding an object (the metrics, the runner's step result) gives its numbers under their
    keys in it (``accuracy_mm``, ``errors``, ``hints``); one holding a number gives it under the last
    segment of the extension IRI.
    """
    extensions = result.get("extensions")
    if not isinstance(extensions, Mapping):
        return {}
    out: dict[str, float] = {}
    for key, value in extensions.items():
        if isinstance(value, Mapping):
            out.update(flatten_metrics(value))
        elif isinstance(key, str):
            out.update(flatten_metrics({key.rsplit("/", 1)[-1]: value}))
    return out


def steps_of(stored: Iterable[StoredStatement | Mapping[str, Any]], attempt: Attempt) -> list[StepRow]:
    """The steps of one attempt in the order they were first seen, from statements of its registration.

    Errors and hints are the ``committed-error`` and ``requested-hint`` statements on the step, unless
    the step's result reports a larger count itself; score, success, time and accuracy come from the
    step's last ``passed``/``failed`` (or ``completed``) result.
    """
    rows: dict[str, StepRow] = {}
    for item in stored:
        statement = item.statement if isinstance(item, StoredStatement) else item
        where = activity_path(statement)
        if where is None or where[1] is None or where[0] != attempt.module_id or registration(statement) != attempt.registration:
            continue
        step = where[1]
        row = rows.setdefault(step, StepRow(step, step))
        row.name = activity_name(statement) or row.name
        verb_field = statement.get("verb")
        verb_iri = verb_field.get("id") if isinstance(verb_field, Mapping) else None
        verb = _VERB_BY_IRI.get(verb_iri) if isinstance(verb_iri, str) else None
        if verb == "committed-error":
            row.errors += 1
        elif verb == "requested-hint":
            row.hints += 1
        result = statement.get("result")
        if verb not in ("passed", "failed", "completed") or not isinstance(result, Mapping):
            continue
        if isinstance(result.get("success"), bool):
            row.success = result["success"]
        score = result.get("score")
        if isinstance(score, Mapping) and isinstance(score.get("scaled"), int | float) and not isinstance(score["scaled"], bool):
            row.score = float(score["scaled"])
        row.time_s = parse_duration(result.get("duration")) or row.time_s
        numbers = _numbers(result)
        row.accuracy_mm = numbers.get("accuracy_mm", row.accuracy_mm)
        row.errors = max(row.errors, int(numbers.get("errors", 0)))
        row.hints = max(row.hints, int(numbers.get("hints", 0)))
    return list(rows.values())


# -- formatting -------------------------------------------------------------------------------------


def _when(stamp: str, *, zone: bool = True) -> str:
    """``2026-12-02 14:37 UTC`` from an xAPI timestamp (the text as given if it does not parse)."""
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M" + (" UTC" if zone else ""))


def _cell(value: float | None, fmt: Callable[[float], str]) -> str:
    return fmt(value) if value is not None else "&ndash;"


def _badge(success: bool | None) -> str:
    if success is None:
        return '<span class="badge none">not graded</span>'
    return '<span class="badge pass">pass</span>' if success else '<span class="badge fail">fail</span>'


def _nice_step(span: float) -> float:
    """A round tick step (1, 2, 2.5 or 5 times a power of ten) giving about four intervals over ``span``."""
    raw = span / 4
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * power >= raw)


# -- the SVG learning curve --------------------------------------------------------------------------

_W, _H = 320, 190
_LEFT, _RIGHT, _TOP, _BOTTOM = 46, 12, 14, 30


def line_chart(curve: Curve, points: Sequence[tuple[int, float]], attempts_total: int,
               passed: Mapping[int, bool | None] | None = None) -> str:
    """An inline SVG chart of ``(attempt number, value)`` points; attempts 1..``attempts_total`` on x.

    Points are coloured by pass/fail when ``passed`` is given (the score chart); each carries its value
    as a label and a ``<title>`` tooltip.
    """
    label = escape(f"{curve.title} by attempt")
    if not points:
        return (f'<svg viewBox="0 0 {_W} {_H}" role="img" aria-label="{label}">'
                f'<text x="{_W / 2}" y="{_H / 2}" text-anchor="middle" fill="#616e7c" font-size="13">'
                "not recorded</text></svg>")
    values = [v * curve.scale for _, v in points]
    extra = [curve.reference] if curve.reference is not None else []
    lo, hi = min(values + extra), max(values + extra)
    if curve.from_zero:
        lo = min(lo, 0.0)
    if curve.metric == "score":
        lo, hi = 0.0, 100.0
    if hi - lo < 1e-9:
        pad = abs(hi) * 0.1 or 1.0
        lo, hi = (lo - pad if not (curve.from_zero and lo == 0) else lo), hi + pad
    step = _nice_step(hi - lo)
    lo, hi = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def x_of(number: float) -> float:
        return _LEFT + plot_w * (number - 0.5) / max(attempts_total, 1)

    def y_of(value: float) -> float:
        return _TOP + plot_h * (1 - (value - lo) / (hi - lo))

    parts = [f'<svg viewBox="0 0 {_W} {_H}" role="img" aria-label="{label}" font-size="11" fill="#1f2933">']
    ticks = round((hi - lo) / step)
    for i in range(ticks + 1):
        value = lo + i * step
        y = y_of(value)
        parts.append(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e7eb"/>')
        text = f"{value:g}" if curve.metric != "score" else f"{value:.0f}"
        parts.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#616e7c">{escape(text)}</text>')
    every = max(1, math.ceil(attempts_total / 12))
    for number in range(1, attempts_total + 1, every):
        parts.append(f'<text x="{x_of(number):.1f}" y="{_H - _BOTTOM + 15}" text-anchor="middle" fill="#616e7c">{number}</text>')
    parts.append(f'<text x="{_LEFT + plot_w / 2:.1f}" y="{_H - 3}" text-anchor="middle" fill="#616e7c">attempt</text>')
    parts.append(f'<line x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{_TOP + plot_h}" stroke="#9aa5b1"/>')
    parts.append(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{_TOP + plot_h}" y2="{_TOP + plot_h}" stroke="#9aa5b1"/>')
    if curve.reference is not None:
        y = y_of(curve.reference)
        parts.append(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#7b8794" stroke-dasharray="4 3"/>')
        parts.append(f'<text x="{_W - _RIGHT - 2}" y="{y + 12:.1f}" text-anchor="end" fill="#7b8794" font-size="10">'
                     f"{escape(curve.reference_label)}</text>")
    coords = [(x_of(n), y_of(v * curve.scale)) for n, v in points]
    if len(coords) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#1f6feb" stroke-width="2.2" stroke-linejoin="round"/>')
    show_labels = len(points) <= 10
    for (number, value), (x, y) in zip(points, coords, strict=True):
        outcome = (passed or {}).get(number)
        colour = "#1a7f37" if outcome is True else "#b42318" if outcome is False else "#1f6feb"
        shown = curve.fmt(value * curve.scale)
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4.2" fill="{colour}" stroke="#fff" stroke-width="1.5">'
                     f"<title>{escape(f'attempt {number}: {shown}')}</title></circle>")
        if show_labels:
            label_y = y - 8 if y - 8 > _TOP + 4 else y + 16
            # A halo in the chart's background colour keeps the label readable where it crosses the line.
            parts.append(f'<text x="{x:.1f}" y="{label_y:.1f}" text-anchor="middle" font-weight="bold" stroke="#fbfcfd" '
                         f'stroke-width="3" paint-order="stroke">{escape(shown)}</text>')
    parts.append("</svg>")
    return "".join(parts)


# -- the page ------------------------------------------------------------------------------------------


def _chain_banner(check: VerifyResult) -> str:
    if check.ok:
        return (f'<div class="chain ok" id="chain"><span>&#10004; Record intact</span><span class="detail">'
                f"hash chain of {check.count} statements verified: none edited, deleted, inserted or reordered"
                "</span></div>")
    where = f"first bad record #{check.first_bad_seq}" if check.first_bad_seq is not None else "chain end"
    return (f'<div class="chain bad" id="chain"><span>&#10008; Record tampered</span><span class="detail">'
            f"{escape(where)}: {escape(check.reason)} ({check.count} records verified before it). "
            "Treat everything below as unverified.</span></div>")


def _summary(found: Sequence[Attempt], modules: Sequence[str]) -> str:
    passed = sum(1 for a in found if a.success)
    scores = [a.score for a in found if a.score is not None]
    practice = sum(a.value("duration_s") or 0.0 for a in found)
    cards = [
        (str(len(modules)), "modules attempted"),
        (str(len(found)), "attempts"),
        (f"{passed} / {len(found)}", "attempts passed"),
        (f"{max(scores) * 100:.0f}%" if scores else "&ndash;", "best score"),
        (_fmt_seconds(practice) if practice else "&ndash;", "time practising"),
    ]
    inner = "".join(f'<div class="card"><div class="value">{value}</div><div class="label">{label}</div></div>'
                    for value, label in cards)
    return f'<div class="cards">{inner}</div>'


def _attempts_table(found: Sequence[Attempt]) -> str:
    if not found:
        return '<p class="empty">No finished attempts yet.</p>'
    head = ("<tr><th>#</th><th>Started (UTC)</th><th>Module</th><th class=num>Score</th><th>Result</th>"
            "<th class=num>Duration</th><th class=num>Errors</th><th class=num>Accuracy</th>"
            "<th class=num>Economy</th><th class=num>Smoothness</th></tr>")
    rows = []
    for attempt in found:
        rows.append(
            f"<tr><td class=num>{attempt.number}</td><td class=date>{escape(_when(attempt.timestamp, zone=False))}</td>"
            f"<td>{escape(attempt.module_name)}</td>"
            f"<td class=num>{_cell(attempt.score, lambda v: f'{v * 100:.0f}%')}</td><td>{_badge(attempt.success)}</td>"
            f"<td class=num>{_cell(attempt.value('duration_s'), _fmt_seconds)}</td>"
            f"<td class=num>{_cell(attempt.value('errors'), lambda v: f'{v:.0f}')}</td>"
            f"<td class=num>{_cell(attempt.value('accuracy_mm'), _fmt_mm)}</td>"
            f"<td class=num>{_cell(attempt.value('economy'), lambda v: f'{v:.2f}')}</td>"
            f"<td class=num>{_cell(attempt.value('sparc'), lambda v: f'{v:.2f}')}</td></tr>"
        )
    return f'<table id="attempts"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _trend(tries: Sequence[Attempt]) -> str:
    """One sentence on how the module went from the first attempt to the latest."""
    if len(tries) < 2:
        return "One attempt so far."
    first, last = tries[0], tries[-1]
    said = [f"{len(tries)} attempts"]
    if first.score is not None and last.score is not None:
        said.append(f"score {first.score * 100:.0f}% &rarr; {last.score * 100:.0f}%")
    a, b = first.value("duration_s"), last.value("duration_s")
    if a is not None and b is not None:
        said.append(f"time {_fmt_seconds(a)} &rarr; {_fmt_seconds(b)}")
    a, b = first.value("errors"), last.value("errors")
    if a is not None and b is not None:
        said.append(f"errors {a:.0f} &rarr; {b:.0f}")
    return "; ".join(said) + " (first &rarr; latest)."


def _steps_table(rows: Sequence[StepRow]) -> str:
    if not rows:
        return '<p class="empty">No step-level statements in this attempt.</p>'
    head = ("<tr><th>Step</th><th>Result</th><th class=num>Score</th><th class=num>Errors</th>"
            "<th class=num>Hints</th><th class=num>Time</th><th class=num>Accuracy</th></tr>")
    body = "".join(
        f"<tr><td>{escape(row.name)}</td><td>{_badge(row.success)}</td>"
        f"<td class=num>{_cell(row.score, lambda v: f'{v * 100:.0f}%')}</td><td class=num>{row.errors}</td>"
        f"<td class=num>{row.hints}</td><td class=num>{_cell(row.time_s, _fmt_seconds)}</td>"
        f"<td class=num>{_cell(row.accuracy_mm, _fmt_mm)}</td></tr>"
        for row in rows
    )
    return f'<table class="steps"><thead>{head}</thead><tbody>{body}</tbody></table>'


def _module_section(module_id: str, tries: Sequence[Attempt], records: Sequence[StoredStatement]) -> str:
    # Attempts renumbered within the module: the x axis of its curves.
    numbered = [(i, a) for i, a in enumerate(tries, start=1)]
    passed = {i: a.success for i, a in numbered}
    charts = []
    for curve in CURVES:
        points = [(i, value) for i, a in numbered if (value := a.value(curve.metric)) is not None]
        svg = line_chart(curve, points, len(tries), passed if curve.metric == "score" else None)
        charts.append(f'<figure class="chart"><figcaption>{escape(curve.title)}'
                      f'<span class="hint">{escape(curve.better)}</span></figcaption>{svg}</figure>')
    latest = tries[-1]
    return (
        f'<section class="module"><h2>{escape(latest.module_name)}<span class="id">{escape(module_id)}</span></h2>'
        f'<p class="trend">{_trend(tries)}</p>'
        f'<div class="charts">{"".join(charts)}</div>'
        f"<h3>Steps of the latest attempt {_badge(latest.success)}</h3>"
        f'<p class="trend">Attempt {len(tries)} of {len(tries)} at this module (#{latest.number} overall), '
        f"started {escape(_when(latest.timestamp))}.</p>"
        f"{_steps_table(steps_of(records, latest))}</section>"
    )


_GLOSSARY = (
    ("Score", "the module's weighted step scores, 0-100%; pass or fail by the module's pass mark."),
    ("Economy of motion", "distance the hands travelled over the straight-line distance the task needed; "
                          "1.0 is a perfectly direct path."),
    ("Target accuracy", "distance in mm between what the trainee placed or aimed and the reference."),
    ("Smoothness (SPARC)", "spectral arc length of the hand's speed (Balasubramanian et al. 2015); "
                           "a single smooth reach scores about -1.4, hesitant or corrected movement lower."),
    ("Record intact", "every statement is hash-chained to the one before, so any edit, deletion, insertion "
                      "or reordering after the fact is detected."),
)


def render(trainee: str, records: Sequence[StoredStatement], check: VerifyResult, *, generated: datetime) -> str:
    """The report's HTML for ``trainee`` from their records and the chain check."""
    found = attempts(records)
    by_module: dict[str, list[Attempt]] = {}
    for attempt in found:
        by_module.setdefault(attempt.module_id, []).append(attempt)
    style = resources.files("sessions.profiles").joinpath("report.css").read_text(encoding="utf-8")
    who = escape(trainee)
    sections = "".join(_module_section(module, tries, records) for module, tries in by_module.items())
    glossary = "".join(f"<dt>{escape(term)}</dt><dd>{escape(text)}</dd>" for term, text in _GLOSSARY)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Training report: {who}</title><style>{style}</style></head><body><main>"
        f'<header><h1>Training report: <span id="trainee">{who}</span></h1>'
        f'<p class="meta">{len(records)} statements in the profile &middot; generated '
        f"{generated.astimezone(UTC).strftime('%Y-%m-%d %H:%M UTC')}</p>{_chain_banner(check)}</header>"
        f"<section><h2>Overview</h2>{_summary(found, list(by_module))}</section>"
        f"<section><h2>Attempts</h2>{_attempts_table(found)}</section>"
        f"{sections}"
        f"<footer><h3>About the measures</h3><dl>{glossary}</dl></footer>"
        "</main></body></html>\n"
    )


def write_report(store: ProfileStore, trainee: str, out: Path, *, generated: datetime | None = None) -> Path:
    """Write ``trainee``'s report as one HTML file and return its path.

    ``out`` is the file to write, or an existing folder to write ``<trainee>-report.html`` into;
    missing parent folders are created and the file is replaced whole (never left half written).
    A trainee with no statements is refused with a one-line :class:`ProfileError` (a misspelt name
    should not give an empty report). ``generated`` is the time printed on the page (now by default).
    """
    records = list(store.statements(trainee))
    if not records:
        raise ProfileError(f"trainee {trainee}: no statements in the profile store {store.target}")
    check = store.verify(trainee)
    page = render(trainee, records, check, generated=generated or datetime.now(UTC))
    path = Path(out)
    if path.is_dir():
        path = path / f"{trainee}-report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(page)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    logger.info("report: %s, %d statements, chain %s -> %s", trainee, len(records), "ok" if check.ok else "BROKEN", path)
    return path
