"""xAPI 1.0.3 statements: the builder's shape, and two validators (ours and Learning Locker's) that agree."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from sessions.profiles import xapi

REPO = Path(__file__).resolve().parents[3]
VALIDATOR = REPO / "tools" / "node_modules" / "@learninglocker" / "xapi-validation"

# Reads a JSON list of statements on stdin, prints one list of warnings per statement.
_NODE_SCRIPT = """
const validate = require(process.argv[1]).default;
let input = '';
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const out = JSON.parse(input).map((stmt) => validate(stmt).map(
    (w) => ({path: w.path.join('.'), kind: w.constructor.name, type: w.typeName || null})));
  process.stdout.write(JSON.stringify(out));
});
"""


def learning_locker(statements: list[Any]) -> list[list[dict[str, Any]]]:
    """Warnings of ``@learninglocker/xapi-validation`` (installed in tools/node_modules) per statement."""
    node = shutil.which("node")
    assert node, "node is not on PATH: the xAPI tests compare with Learning Locker's validator (npm, in tools/)"
    assert VALIDATOR.is_dir(), f"{VALIDATOR} is missing: run `npm install` in tools/ (see the Makefile)"
    done = subprocess.run([node, "-e", _NODE_SCRIPT, str(VALIDATOR)], input=json.dumps(statements),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    out: list[list[dict[str, Any]]] = json.loads(done.stdout)
    return out


REGISTRATION = str(uuid.uuid4())
T0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z


def build(verb: str, **kwargs: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"trainee": "alice", "verb": verb, "module_id": "brain-central-gyri",
                            "module_name": "Identify the central gyri", "registration": REGISTRATION,
                            "timestamp": T0 + 1.5}
    args.update(kwargs)
    return xapi.statement(**args)


def every_verb() -> list[dict[str, Any]]:
    """One statement per verb, on the module and on a step, with and without results."""
    metrics = {f"{xapi.ACTIVITY_ROOT}/ext/metrics": {"path_length_m": 1.25, "idle_s": 3.0}}
    out = []
    for verb in xapi.VERBS:
        out.append(build(verb))
        out.append(build(verb, step_id="precentral", step_name="Left precentral gyrus",
                         extensions={f"{xapi.ACTIVITY_ROOT}/ext/structure": "Precentral_L"}))
    out.append(build("passed", step_id="precentral", result=xapi.result(
        scaled=0.85, raw=8.5, min=0, max=10, success=True, completion=True, duration_s=12.34)))
    out.append(build("failed", step_id="postcentral", result=xapi.result(scaled=-0.2, success=False, duration_s=75)))
    out.append(build("completed", result=xapi.result(scaled=1.0, completion=True, duration_s=3725.5, extensions=metrics)))
    return out


def test_every_verb_builds_a_statement_both_validators_accept() -> None:
    """Each verb, on a module and on a step, with results and extensions: no problem in Python, none in Learning Locker."""
    statements = every_verb()
    assert len(statements) == 2 * len(xapi.VERBS) + 3
    for stmt in statements:
        assert xapi.validate(stmt) == [], stmt["verb"]["id"]
    warnings = learning_locker(statements)
    assert warnings == [[] for _ in statements]


def test_statement_shape_follows_the_contract() -> None:
    """A step statement: account actor, ADL verb, step object, module as parent and grouping, UTC ms timestamp."""
    stmt = build("answered", step_id="precentral", step_name="Left precentral gyrus", statement_id=None)
    assert stmt["actor"] == {"objectType": "Agent", "name": "alice",
                             "account": {"homePage": xapi.HOMEPAGE, "name": "alice"}}
    assert stmt["verb"]["id"] == "http://adlnet.gov/expapi/verbs/answered"
    module_iri = f"{xapi.ACTIVITY_ROOT}/modules/brain-central-gyri"
    assert stmt["object"]["id"] == f"{module_iri}/steps/precentral"
    assert stmt["object"]["definition"]["name"] == {"en-US": "Left precentral gyrus"}
    assert stmt["object"]["definition"]["type"] == "http://adlnet.gov/expapi/activities/interaction"
    ctx = stmt["context"]
    assert ctx["registration"] == REGISTRATION
    assert [a["id"] for a in ctx["contextActivities"]["parent"]] == [module_iri]
    assert [a["id"] for a in ctx["contextActivities"]["grouping"]] == [module_iri]
    assert ctx["contextActivities"]["grouping"][0]["definition"]["type"] == "http://adlnet.gov/expapi/activities/module"
    assert stmt["timestamp"] == "2024-05-01T12:00:01.500Z"
    assert stmt["version"] == "1.0.3"
    assert uuid.UUID(stmt["id"]).version == 4
    module_stmt = build("launched")
    assert module_stmt["object"]["id"] == module_iri
    assert "parent" not in module_stmt["context"]["contextActivities"]
    assert build("launched")["id"] != module_stmt["id"]
    assert build("launched", statement_id=module_stmt["id"])["id"] == module_stmt["id"]


def test_medverse_verbs_live_under_the_activity_root() -> None:
    """ADL has no verb for a hint or an error: ours are IRIs under ACTIVITY_ROOT/verbs/."""
    assert xapi.VERBS["requested-hint"] == f"{xapi.ACTIVITY_ROOT}/verbs/requested-hint"
    assert xapi.VERBS["committed-error"] == f"{xapi.ACTIVITY_ROOT}/verbs/committed-error"
    adl = {k for k, v in xapi.VERBS.items() if v.startswith("http://adlnet.gov/expapi/verbs/")}
    assert adl == {"launched", "initialized", "experienced", "interacted", "attempted", "answered", "passed",
                   "failed", "completed", "suspended", "resumed", "terminated"}


@pytest.mark.parametrize(("seconds", "expected"), [
    (0, "PT0S"), (0.004, "PT0S"), (12.34, "PT12.34S"), (12.345678, "PT12.35S"), (60, "PT1M"),
    (59.999, "PT1M"), (90.5, "PT1M30.5S"), (3600, "PT1H"), (3725.5, "PT1H2M5.5S"), (100 * 3600 + 0.1, "PT100H0.1S"),
])
def test_duration_is_iso_8601_to_the_centisecond(seconds: float, expected: str) -> None:
    """Durations round to 0.01 s (the precision xAPI asks an LRS to keep) and carry into minutes and hours."""
    assert xapi.duration(seconds) == expected


@pytest.mark.parametrize(("call", "message"), [
    (lambda: xapi.duration(-1), "duration"),
    (lambda: xapi.duration(float("nan")), "duration"),
    (lambda: xapi.result(scaled=1.5), "scaled"),
    (lambda: xapi.result(raw=11, min=0, max=10), "raw"),
    (lambda: xapi.result(min=5, max=1), "min"),
    (lambda: xapi.result(success="yes"), "success"),  # type: ignore[arg-type]
    (lambda: xapi.result(extensions={"metrics": 1}), "IRI"),
    (lambda: build("selected"), "unknown verb"),
    (lambda: build("passed", registration="attempt-1"), "registration"),
    (lambda: build("passed", statement_id="42"), "statement id"),
    (lambda: build("passed", module_id="has space"), "module_id"),
])
def test_builder_refuses_bad_input_with_one_line(call: Any, message: str) -> None:
    """A value an LRS would refuse is refused when the statement is built, in one line naming the field."""
    with pytest.raises(ValueError, match=message) as info:
        call()
    assert "\n" not in str(info.value)


def _mutate(path: str, value: Any) -> Any:
    def apply(stmt: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(stmt)
        *parents, last = path.split(".")
        node = out
        for key in parents:
            node = node[key]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
        return out
    return apply


_DELETE = object()

BAD = {
    "verb id not an IRI": ("verb.id", "passed"),
    "mbox without mailto:": ("actor.mbox", "alice@example.org"),  # also: two identifiers with the account
    "no actor identifier": ("actor.account", _DELETE),
    "account homePage not an IRI": ("actor.account.homePage", "medverse trainees"),
    "timestamp month 13": ("timestamp", "2024-13-01T12:00:00.000Z"),
    "timestamp not a date": ("timestamp", "yesterday"),
    "scaled above 1": ("result.score.scaled", 1.5),
    "raw above max": ("result.score.raw", 11),
    "duration in words": ("result.duration", "12 seconds"),
    "success not a boolean": ("result.success", "true"),
    "id not a UUID": ("id", "statement-1"),
    "registration not a UUID": ("context.registration", "attempt-1"),
    "object missing": ("object", _DELETE),
    "actor missing": ("actor", _DELETE),
    "unknown property": ("mood", "happy"),
    "version 2.0": ("version", "2.0.0"),
    "activity id not an IRI": ("object.id", "precentral"),
    "display key not a language": ("verb.display", {"english!": "passed"}),
    "extension key not an IRI": ("context.extensions", {"structure": "Precentral_L"}),
    "parent not a list": ("context.contextActivities.parent", {"id": "https://medverse.example/xapi/modules/m"}),
}


@pytest.mark.parametrize("label", list(BAD))
def test_bad_statement_is_flagged_by_both_validators(label: str) -> None:
    """Each defect is reported by our validator (one line naming the path) and by Learning Locker's."""
    good = build("passed", step_id="precentral", result=xapi.result(scaled=0.5, raw=5, min=0, max=10, success=True,
                                                                    duration_s=3.0))
    path, value = BAD[label]
    bad = _mutate(path, value)(good)
    problems = xapi.validate(bad)
    assert problems, f"{label}: not flagged by xapi.validate"
    assert all("\n" not in p for p in problems)
    assert any(p.startswith(path.split(".")[0]) or p.startswith("statement") for p in problems), problems
    assert learning_locker([good, bad])[0] == []
    assert learning_locker([bad])[0], f"{label}: Learning Locker's validator accepted it"


def test_validate_names_every_problem_and_survives_garbage() -> None:
    """Two defects give two lines; a non-object or wrongly typed parts give problems, not exceptions."""
    stmt = build("passed")
    stmt["verb"]["id"] = "passed"
    stmt["timestamp"] = "2024-02-30T00:00:00Z"
    problems = xapi.validate(stmt)
    assert [p.split(":")[0] for p in problems] == ["verb.id", "timestamp"]
    assert xapi.validate([])  # type: ignore[arg-type]
    for junk in ({"actor": 1, "verb": [], "object": "x"}, {"actor": {"objectType": "Group"}, "verb": {"id": 3},
                                                            "object": {"objectType": "SubStatement"}}):
        assert len(xapi.validate(junk)) >= 3
