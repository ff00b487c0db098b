"""The instructor's HTML report (sessions.profiles.report): built from a real SQLite profile, opened in real Chromium."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from sessions.profiles import xapi
from sessions.profiles.errors import ProfileError
from sessions.profiles.metrics import METRICS_EXTENSION, PoseTrack, attempt_metrics, attempts
from sessions.profiles.report import write_report
from sessions.profiles.store import ProfileStore, open_store

ROOT = Path(__file__).resolve().parents[3]
PLAYWRIGHT = ROOT / "tools" / "node_modules" / "playwright-core"
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACT = ROOT / "out" / "test-artifacts" / "profile-report.png"
STEP_RESULT = f"{xapi.ACTIVITY_ROOT}/ext/step-result"

HOSTILE_MODULE = 'Skull <b>landmarks</b> & "nerve" block'
HOSTILE_STEP = "<script>alert('pwned')</script><img src=x onerror=alert(1)>"
DAY = 86400.0
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC).timestamp()

#: (module id, title, steps) and per attempt: (day, score, passed, duration s, errors, accuracy mm, wobble)
MODULES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "brain-central-gyri": ("Identify the central gyri",
                           [("precentral", "Left precentral gyrus"), ("postcentral", "Left postcentral gyrus")]),
    "ianb": (HOSTILE_MODULE, [("nasion", "Nasion"), ("approach", HOSTILE_STEP), ("foramen", "Mandibular foramen")]),
}
ATTEMPTS: list[tuple[str, float, float, bool, float, int, float, float]] = [
    ("brain-central-gyri", 0, 0.45, False, 142.0, 4, 9.5, 0.03),
    ("ianb", 1, 0.38, False, 305.0, 6, 7.25, 0.04),
    ("brain-central-gyri", 2, 0.72, True, 96.0, 2, 5.5, 0.015),
    ("ianb", 3, 0.66, True, 211.0, 3, 4.75, 0.02),
    ("brain-central-gyri", 5, 0.93, True, 61.0, 0, 2.25, 0.005),
    ("ianb", 6, 0.88, True, 158.0, 1, 2.5, 0.008),
]


SELF_CONTAINED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "main", "header", "footer", "section", "h1", "h2", "h3", "p", "span",
    "div", "table", "thead", "tbody", "tr", "th", "td", "figure", "figcaption", "dl", "dt", "dd",
    "svg", "line", "polyline", "circle", "text",
}  # fmt: skip


class Markup(HTMLParser):
    """The tags, attribute names and style sheet text of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self.style = ""
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes |= {name for name, _ in attrs}
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style += data


def reach_track(wobble: float) -> PoseTrack:
    """A 3 s, 0.3 m minimum-jerk reach with three lateral wobbles of ``wobble`` m (less each attempt)."""
    times = np.linspace(0.0, 3.0, 91)
    tau = times / 3.0
    x = 0.3 * (10 * tau**3 - 15 * tau**4 + 6 * tau**5)
    y = wobble * np.sin(2 * np.pi * 3 * tau)
    return PoseTrack(times, np.c_[x, y, np.zeros_like(x)])


def attempt_statements(trainee: str, module_id: str, day: float, score: float, passed: bool, duration: float,
                       errors: int, accuracy: float, wobble: float) -> list[dict[str, Any]]:
    """The statements a training run makes for one attempt (the shape of sessions.training.record)."""
    title, steps = MODULES[module_id]
    registration = str(uuid.uuid4())
    t0 = START + day * DAY
    common = {"trainee": trainee, "module_id": module_id, "module_name": title, "registration": registration}
    out = [xapi.statement(verb="launched", timestamp=t0, **common), xapi.statement(verb="initialized", timestamp=t0, **common)]
    per_step = duration / len(steps)
    for i, (step_id, step_name) in enumerate(steps):
        at = t0 + i * per_step
        on_step = {**common, "step_id": step_id, "step_name": step_name}
        out.append(xapi.statement(verb="experienced", timestamp=at, **on_step))
        step_errors = errors // len(steps) + (1 if i < errors % len(steps) else 0)
        hints = 1 if (i == 1 and not passed) else 0
        out += [xapi.statement(verb="committed-error", timestamp=at + 1 + k, **on_step) for k in range(step_errors)]
        out += [xapi.statement(verb="requested-hint", timestamp=at + 2, **on_step) for _ in range(hints)]
        step_score = min(1.0, score + 0.05 * i)
        detail = {"id": step_id, "score": step_score, "errors": step_errors, "hints": hints, "accuracy_mm": accuracy + i}
        result = xapi.result(scaled=step_score, success=step_score >= 0.6, completion=True, duration_s=per_step,
                             extensions={STEP_RESULT: detail})
        verb = "passed" if step_score >= 0.6 else "failed"
        out.append(xapi.statement(verb=verb, timestamp=at + per_step, result=result, **on_step))
    metrics = attempt_metrics({"right": reach_track(wobble)}, duration_s=duration, needed_m={"right": 0.3},
                              errors=errors, accuracy_mm=accuracy, score=score).as_dict()
    final = xapi.result(scaled=score, success=passed, completion=True, duration_s=duration,
                        extensions={METRICS_EXTENSION: metrics})
    out.append(xapi.statement(verb="completed", timestamp=t0 + duration, result=final, **common))
    out.append(xapi.statement(verb="terminated", timestamp=t0 + duration, result=final, **common))
    return out


def fill(store: ProfileStore, profiles: dict[str, list[list[dict[str, Any]]]]) -> ProfileStore:
    for trainee, batches in profiles.items():
        for batch in batches:
            store.append(trainee, batch)
    return store


def make_profiles() -> dict[str, list[list[dict[str, Any]]]]:
    """alice's six attempts at two modules and bob's one, as the batches of statements a run appends."""
    alice = [attempt_statements("alice", *attempt) for attempt in ATTEMPTS]
    assert all(xapi.validate(s) == [] for batch in alice for s in batch)
    return {"alice": alice, "bob": [attempt_statements("bob", "ianb", 0, 0.99, True, 33.0, 0, 0.5, 0.0)]}


@pytest.fixture
def profile(tmp_path: Path) -> Iterator[tuple[ProfileStore, Path]]:
    """A real SQLite profile store holding alice's and bob's attempts."""
    path = tmp_path / "profiles.sqlite"
    store = fill(open_store(path), make_profiles())
    yield store, path
    store.close()


def test_report_content(profile: tuple[ProfileStore, Path], tmp_path: Path) -> None:
    """Every attempt's numbers are in the page, the latest attempts step by step, untrusted names escaped, nothing external."""
    store, _ = profile
    out = write_report(store, "alice", tmp_path / "reports" / "alice.html", generated=datetime(2026, 11, 9, tzinfo=UTC))
    page = out.read_text(encoding="utf-8")
    assert out == tmp_path / "reports" / "alice.html"
    assert "Training report: <span id=\"trainee\">alice</span>" in page
    assert "Record intact" in page and f"hash chain of {store.count('alice')} statements verified" in page
    # Six attempts, each with its date, score, pass/fail, duration, errors and accuracy.
    table = page[page.index('<table id="attempts">') : page.index("</table>", page.index('<table id="attempts">'))]
    assert table.count("<tr>") == 1 + len(ATTEMPTS)
    for cell in ("2026-11-02 09:00", "2026-11-08 09:00", "45%", "93%", "88%", "2 min 22 s", "5 min 05 s", "61.0 s",
                 "9.5 mm", "2.2 mm", "7.2 mm"):
        assert cell in table, cell
    assert table.count('class="badge pass"') == 4 and table.count('class="badge fail"') == 2
    # Learning curves: six charts per module, each point's value labelled.
    assert page.count("<svg") == 12
    assert "score 45% &rarr; 93%" in page and "errors 6 &rarr; 1" in page
    # The latest attempt of each module, step by step (bob's attempt is not alice's).
    assert page.count('<table class="steps">') == 2
    assert "Left postcentral gyrus" in page and "Mandibular foramen" in page
    # Untrusted names arrive escaped, never as markup.
    assert HOSTILE_STEP not in page and "<script" not in page.lower() and "<img" not in page.lower()
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in page
    assert "Skull &lt;b&gt;landmarks&lt;/b&gt; &amp; &quot;nerve&quot; block" in page
    # Self-contained: only inline markup, no attribute or style that could load anything, no URL at all.
    parsed = Markup()
    parsed.feed(page)
    assert parsed.tags <= SELF_CONTAINED_TAGS, parsed.tags - SELF_CONTAINED_TAGS
    assert not parsed.attributes & {"src", "href", "xlink:href", "srcset", "action", "poster", "data", "background"}
    assert "://" not in page and not re.search(r"url\(|@import", parsed.style, re.IGNORECASE)


def test_report_flags_a_tampered_profile(profile: tuple[ProfileStore, Path], tmp_path: Path) -> None:
    """A score edited in the database after the fact turns the banner red and names the first bad record."""
    store, path = profile
    store.close()
    with sqlite3.connect(path) as db:
        seq, body = db.execute("SELECT seq, body FROM statements WHERE trainee = 'alice' AND body LIKE '%completed%' "
                               "ORDER BY seq LIMIT 1").fetchone()
        edited = body.replace('"scaled":0.45', '"scaled":0.95')
        assert edited != body
        db.execute("UPDATE statements SET body = ? WHERE trainee = 'alice' AND seq = ?", (edited, seq))
    with open_store(path) as reopened:
        page = write_report(reopened, "alice", tmp_path).read_text(encoding="utf-8")
    assert (tmp_path / "alice-report.html").is_file()
    assert 'class="chain bad"' in page and 'class="chain ok"' not in page
    assert "Record tampered" in page and f"first bad record #{seq}" in page


def test_report_refuses_unknown_and_invalid_trainees(profile: tuple[ProfileStore, Path], tmp_path: Path) -> None:
    """No report for a trainee without statements, nor for a name that is not a trainee id: one line each."""
    store, _ = profile
    with pytest.raises(ProfileError, match=r"^trainee carol: no statements") as caught:
        write_report(store, "carol", tmp_path / "carol.html")
    assert "\n" not in str(caught.value)
    with pytest.raises(ProfileError, match="trainee id"):
        write_report(store, "<script>x</script>", tmp_path / "x.html")
    assert not list(tmp_path.glob("*.html"))


def test_attempts_read_back_from_the_store(profile: tuple[ProfileStore, Path]) -> None:
    """Completed and terminated of one registration are one attempt; metrics and results come back per module."""
    store, _ = profile
    found = attempts(store.statements("alice"), module_id="ianb")
    assert [a.number for a in found] == [1, 2, 3]
    assert [a.score for a in found] == [0.38, 0.66, 0.88]
    assert [a.success for a in found] == [False, True, True]
    assert [a.duration_s for a in found] == [305.0, 211.0, 158.0]
    assert [a.value("accuracy_mm") for a in found] == [7.25, 4.75, 2.5]
    assert all(a.module_name == HOSTILE_MODULE and a.verb == "terminated" and a.seq is not None for a in found)
    economy = [a.value("economy") for a in found]
    assert all(e is not None and e > 1.0 for e in economy) and economy == sorted(economy, reverse=True)


@pytest.mark.slow
def test_report_is_the_same_from_postgresql(pg_url: str, tmp_path: Path) -> None:
    """The same statements in PostgreSQL and in SQLite give the same page, byte for byte."""
    profiles = make_profiles()
    when = datetime(2026, 11, 9, tzinfo=UTC)
    with open_store(tmp_path / "profiles.sqlite") as lite, open_store(pg_url) as pg:
        pages = [write_report(fill(store, profiles), "alice", tmp_path / f"{name}.html", generated=when).read_bytes()
                 for name, store in (("sqlite", lite), ("postgresql", pg))]
    assert pages[0] == pages[1] and b"Record intact" in pages[0] and pages[0].count(b"<svg") == 12


SCREENSHOT_JS = r"""
// Open a report in headless Chromium, record what it asked the network for, measure it, screenshot it.
const [playwrightPath, chromium, page_url, png, userData] = process.argv.slice(2);
const { chromium: browserType } = require(playwrightPath);
(async () => {
  const context = await browserType.launchPersistentContext(userData, {
    executablePath: chromium, headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--no-first-run'],
    viewport: { width: 1280, height: 900 },
  });
  const page = context.pages()[0] || await context.newPage();
  const requests = [];
  const problems = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
  page.on('pageerror', (e) => problems.push(String(e)));
  await page.goto(page_url, { waitUntil: 'load' });
  const dom = await page.evaluate(() => ({
    svgs: document.querySelectorAll('svg').length,
    circles: document.querySelectorAll('svg circle').length,
    scripts: document.scripts.length,
    images: document.images.length,
    trainee: document.getElementById('trainee').textContent,
    chain: document.getElementById('chain').className,
    stepNames: Array.from(document.querySelectorAll('table.steps td:first-child')).map((td) => td.textContent),
    height: document.documentElement.scrollHeight,
    chartWidth: document.querySelector('figure.chart svg').getBoundingClientRect().width,
  }));
  await page.screenshot({ path: png, fullPage: true });
  await context.close();
  console.log(JSON.stringify({ requests, problems, dom }));
})().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
"""


@pytest.mark.slow
def test_report_in_headless_chromium(profile: tuple[ProfileStore, Path], tmp_path: Path) -> None:
    """Chromium renders the report with no request but the file itself: 12 charts, the hostile step as text; screenshot kept."""
    store, _ = profile
    assert PLAYWRIGHT.is_dir(), f"playwright-core missing at {PLAYWRIGHT}: run `make setup` (npm install in tools/)"
    assert CHROMIUM.is_file(), f"Chromium missing at {CHROMIUM}: run `make setup` (Debian package chromium)"
    node = shutil.which("node")
    assert node, "node missing: run `make setup` (Debian package nodejs)"
    report = write_report(store, "alice", tmp_path / "alice.html")
    script = tmp_path / "shot.cjs"
    script.write_text(SCREENSHOT_JS, encoding="utf-8")
    png = tmp_path / "profile-report.png"
    done = subprocess.run(
        [node, str(script), str(PLAYWRIGHT), str(CHROMIUM), report.as_uri(), str(png), str(tmp_path / "chromium-profile")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, f"screenshot script failed: {done.stderr.strip()[-2000:]}"
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["requests"] == [report.as_uri()], seen["requests"]
    assert seen["problems"] == []
    dom = seen["dom"]
    assert dom["svgs"] == 12 and dom["circles"] == 6 * 6  # six curves of three attempts for each of two modules
    assert dom["scripts"] == 0 and dom["images"] == 0
    assert dom["trainee"] == "alice" and dom["chain"] == "chain ok"
    assert HOSTILE_STEP in dom["stepNames"]
    assert dom["chartWidth"] > 250  # three charts a row fill the page, not squeezed into a corner

    image = Image.open(png).convert("RGB")
    pixels = np.asarray(image)
    width, height = image.size
    assert width == 1280 and height == dom["height"] and height > 2000
    # Ink: pixels that are neither the page's grey nor the white of the panels (text, lines, badges).
    ink = np.ones(pixels.shape[:2], dtype=bool)
    for paper in ([245, 247, 250], [255, 255, 255], [251, 252, 253]):
        ink &= np.abs(pixels.astype(int) - paper).max(axis=2) > 12
    assert ink.mean() > 0.04, f"the page looks blank ({ink.mean():.1%} ink)"
    # The curves' blue lines and the green "Record intact" banner are really drawn.
    blue = np.all(np.abs(pixels.astype(int) - [31, 111, 235]) < 30, axis=2).sum()
    banner = np.all(np.abs(pixels.astype(int) - [218, 251, 225]) < 6, axis=2).sum()
    assert blue > 2000 and banner > 5000, (blue, banner)

    kept = png
    try:
        ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, ARTIFACT)
        kept = ARTIFACT
    except OSError:
        pass
    print(f"report screenshot: {kept} ({width}x{height})")
