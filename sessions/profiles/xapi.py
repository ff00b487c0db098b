"""xAPI 1.0.3 statements for training: the vocabulary, a builder, and an offline validator.

Every trainee action becomes one statement so that any Learning Record Store can read a profile
(xAPI 1.0.3, https://github.com/adlnet/xAPI-Spec/blob/1.0.3/xAPI-Data.md). The builder fixes the
shape the rest of medverse relies on:

- actor: an Agent identified by an account (``HOMEPAGE`` + the trainee id), never an e-mail, so a
  profile names no personal address;
- verb: ADL's vocabulary (``http://adlnet.gov/expapi/verbs/...``) where it has the verb, medverse
  IRIs under ``ACTIVITY_ROOT/verbs/`` for the two it lacks (``requested-hint``, ``committed-error``);
- object: the step's activity when a step is given, else the module's;
- context: ``registration`` (one UUID per attempt), ``contextActivities.parent`` = the module for a
  step, ``grouping`` = the module always (one query finds every statement of a module);
- timestamp: ISO 8601 UTC with milliseconds; id: a uuid4; version "1.0.3".

``validate`` repeats offline the checks Learning Locker's validator
(``@learninglocker/xapi-validation``) makes, a little stricter where the spec is (IRIs without
spaces, real calendar dates, no booleans as numbers), so a statement can be checked before it is
stored or sent; the tests run both validators on the same statements.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeGuard
from urllib.parse import quote

XAPI_VERSION = "1.0.3"
HOMEPAGE = "https://medverse.example/trainees"
ACTIVITY_ROOT = "https://medverse.example/xapi"

_ADL_VERBS = "http://adlnet.gov/expapi/verbs"
_ADL_ACTIVITIES = "http://adlnet.gov/expapi/activities"

# short name -> IRI. "experienced": a step was shown; "interacted": a tool action (select, place,
# measure, cut); "suspended"/"resumed": paused and back; "terminated": the attempt finished.
VERBS: dict[str, str] = {
    **{
        name: f"{_ADL_VERBS}/{name}"
        for name in (
            "launched", "initialized", "experienced", "interacted", "attempted", "answered",
            "passed", "failed", "completed", "suspended", "resumed", "terminated",
        )
    },
    "requested-hint": f"{ACTIVITY_ROOT}/verbs/requested-hint",
    "committed-error": f"{ACTIVITY_ROOT}/verbs/committed-error",
}

MODULE_TYPE = f"{_ADL_ACTIVITIES}/module"
STEP_TYPE = f"{_ADL_ACTIVITIES}/interaction"
LANGUAGE = "en-US"


def _check_id(kind: str, value: str) -> str:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise ValueError(f"xapi: {kind} must be a non-empty string without spaces, got {value!r}")
    return value


def duration(seconds: float) -> str:
    """ISO 8601 duration of ``seconds`` (>= 0), to the 0.01 s xAPI asks for: ``PT1H2M5.5S``."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"xapi: a duration needs a finite number of seconds >= 0, got {seconds!r}")
    centi = round(seconds * 100)
    hours, centi = divmod(centi, 360_000)
    minutes, centi = divmod(centi, 6_000)
    whole, frac = divmod(centi, 100)
    out = "PT"
    if hours:
        out += f"{hours}H"
    if minutes:
        out += f"{minutes}M"
    if whole or frac or out == "PT":
        out += f"{whole}.{frac:02d}".rstrip("0").rstrip(".") + "S"
    return out


def timestamp(epoch_s: float) -> str:
    """ISO 8601 UTC with milliseconds (``2024-05-01T12:00:00.123Z``) of seconds since the epoch."""
    if not isinstance(epoch_s, int | float) or isinstance(epoch_s, bool) or not math.isfinite(epoch_s):
        raise ValueError(f"xapi: a timestamp needs seconds since the epoch, got {epoch_s!r}")
    return datetime.fromtimestamp(epoch_s, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_format_timestamp = timestamp  # statement() takes a parameter named ``timestamp``


def activity_id(module_id: str, step_id: str | None = None) -> str:
    """The activity IRI of a module, or of one of its steps."""
    iri = f"{ACTIVITY_ROOT}/modules/{quote(_check_id('module_id', module_id), safe='')}"
    if step_id is not None:
        iri += f"/steps/{quote(_check_id('step_id', step_id), safe='')}"
    return iri


def activity(module_id: str, step_id: str | None = None, *, name: str, description: str = "",
             activity_type: str | None = None) -> dict[str, Any]:
    """An Activity object with its definition (name and description in en-US, type IRI).

    The type defaults to ADL's ``module`` for a module and ``interaction`` for a step.
    """
    definition: dict[str, Any] = {
        "name": {LANGUAGE: name or (step_id or module_id)},
        "type": activity_type or (STEP_TYPE if step_id is not None else MODULE_TYPE),
    }
    if description:
        definition["description"] = {LANGUAGE: description}
    if not _is_iri(definition["type"]):
        raise ValueError(f"xapi: activity type must be an IRI, got {definition['type']!r}")
    return {"objectType": "Activity", "id": activity_id(module_id, step_id), "definition": definition}


def _number(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"xapi: result {name} must be a finite number, got {value!r}")
    return value


def _check_extensions(where: str, extensions: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if extensions is None:
        return None
    bad = [key for key in extensions if not _is_iri(key)]
    if bad:
        raise ValueError(f"xapi: {where} extension keys must be IRIs, got {bad[0]!r}")
    return dict(extensions)


def result(*, scaled: float | None = None, raw: float | None = None, min: float | None = None,
           max: float | None = None, success: bool | None = None, completion: bool | None = None,
           duration_s: float | None = None, extensions: dict[str, Any] | None = None) -> dict[str, Any]:
    """A Result: score (scaled in [-1, 1]; raw within [min, max]), success, completion, duration.

    Only the parts given appear. Out-of-range values raise ``ValueError`` here rather than produce
    a statement an LRS refuses later.
    """
    score = {k: v for k, v in (("scaled", _number("scaled", scaled)), ("raw", _number("raw", raw)),
                               ("min", _number("min", min)), ("max", _number("max", max))) if v is not None}
    if "scaled" in score and not -1 <= score["scaled"] <= 1:
        raise ValueError(f"xapi: result scaled must be in [-1, 1], got {scaled}")
    if "min" in score and "max" in score and score["min"] > score["max"]:
        raise ValueError(f"xapi: result min {min} is above max {max}")
    if "raw" in score and (("min" in score and score["raw"] < score["min"]) or ("max" in score and score["raw"] > score["max"])):
        raise ValueError(f"xapi: result raw {raw} is outside [{min}, {max}]")
    out: dict[str, Any] = {}
    if score:
        out["score"] = score
    for name, flag in (("success", success), ("completion", completion)):
        if flag is not None:
            if not isinstance(flag, bool):
                raise ValueError(f"xapi: result {name} must be true or false, got {flag!r}")
            out[name] = flag
    if duration_s is not None:
        out["duration"] = duration(duration_s)
    ext = _check_extensions("result", extensions)
    if ext is not None:
        out["extensions"] = ext
    return out


def statement(*, trainee: str, verb: str, module_id: str, module_name: str, step_id: str | None = None,
              step_name: str | None = None, registration: str, timestamp: float,
              result: dict[str, Any] | None = None, extensions: dict[str, Any] | None = None,
              statement_id: str | None = None) -> dict[str, Any]:
    """One complete statement: ``trainee`` did ``verb`` (a key of ``VERBS``) to the module or step.

    ``registration`` is the attempt's UUID, ``timestamp`` seconds since the epoch (when it
    happened, not when it is stored), ``extensions`` go to the context.
    """
    if verb not in VERBS:
        raise ValueError(f"xapi: unknown verb {verb!r} (known: {', '.join(VERBS)})")
    if not _is_uuid(registration):
        raise ValueError(f"xapi: registration must be a UUID, got {registration!r}")
    if statement_id is not None and not _is_uuid(statement_id):
        raise ValueError(f"xapi: statement id must be a UUID, got {statement_id!r}")
    _check_id("trainee", trainee)
    module = activity(module_id, name=module_name)
    obj = module if step_id is None else activity(module_id, step_id, name=step_name or step_id)
    context_activities: dict[str, Any] = {"grouping": [module]}
    if step_id is not None:
        context_activities["parent"] = [module]
    context: dict[str, Any] = {"registration": registration, "contextActivities": context_activities,
                               "platform": "medverse", "language": LANGUAGE}
    ext = _check_extensions("context", extensions)
    if ext is not None:
        context["extensions"] = ext
    stmt: dict[str, Any] = {
        "id": statement_id or str(uuid.uuid4()),
        "actor": {"objectType": "Agent", "name": trainee, "account": {"homePage": HOMEPAGE, "name": trainee}},
        "verb": {"id": VERBS[verb], "display": {LANGUAGE: verb.replace("-", " ")}},
        "object": obj,
        "context": context,
        "timestamp": _format_timestamp(timestamp),
        "version": XAPI_VERSION,
    }
    if result is not None:
        stmt["result"] = result
    return stmt


# ---------------------------------------------------------------------------------------------
# Validation: one line per problem, "path: what is wrong".

_IRI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", re.IGNORECASE)
_MAILTO = re.compile(r"^mailto:[A-Z0-9.`'_%+-]+@[A-Z0-9.-]+\.[A-Z]{1,63}$", re.IGNORECASE)
_SHA1 = re.compile(r"^[0-9a-f]{40}$", re.IGNORECASE)
_VERSION = re.compile(r"^1\.0(\.[0-9]+)?$")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$")
_DURATION = re.compile(r"^P(?=\d|T\d)(\d+Y)?(\d+M)?(\d+[DW])?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)$")
_INTERACTION_TYPES = {"choice", "sequencing", "likert", "matching", "performance", "true-false", "fill-in",
                      "long-fill-in", "numeric", "other"}
_IFIS = ("mbox", "mbox_sha1sum", "openid", "account")


def _is_iri(value: object) -> bool:
    return isinstance(value, str) and bool(_IRI.match(value))


def _is_uuid(value: object) -> bool:
    return isinstance(value, str) and bool(_UUID.match(value))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_timestamp(value: object) -> bool:
    if not isinstance(value, str) or not _TIMESTAMP.match(value):
        return False
    try:  # the pattern admits month 13 and February 30; the calendar does not
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


class _Checker:
    """Collects problems while walking a statement; ``path`` strings read like ``actor.account.name``."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def keys(self, path: str, data: Mapping[str, Any], allowed: set[str]) -> None:
        for key in data:
            if key not in allowed:
                self.add(path, f"unknown property {key!r}")

    def obj(self, data: object, path: str) -> TypeGuard[dict[str, Any]]:
        if not isinstance(data, dict):
            self.add(path, f"must be an object, got {type(data).__name__}")
            return False
        return True

    def iri(self, path: str, value: object) -> None:
        if not _is_iri(value):
            self.add(path, f"not an IRI: {value!r}")

    def string(self, path: str, value: object) -> None:
        if not isinstance(value, str):
            self.add(path, f"must be a string, got {value!r}")

    def boolean(self, path: str, value: object) -> None:
        if not isinstance(value, bool):
            self.add(path, f"must be true or false, got {value!r}")

    def uuid(self, path: str, value: object) -> None:
        if not _is_uuid(value):
            self.add(path, f"not a UUID: {value!r}")

    def timestamp(self, path: str, value: object) -> None:
        if not _is_timestamp(value):
            self.add(path, f"not an ISO 8601 timestamp: {value!r}")

    def language_map(self, path: str, value: object) -> None:
        if not self.obj(value, path):
            return
        for tag, text in value.items():
            if not isinstance(tag, str) or not _LANGUAGE.match(tag):
                self.add(path, f"not a language tag: {tag!r}")
            self.string(f"{path}.{tag}", text)

    def extensions(self, path: str, value: object) -> None:
        if self.obj(value, path):
            for key in value:
                self.iri(f"{path} key", key)

    def agent(self, path: str, data: object, *, need_ifi: bool = True) -> None:
        if not self.obj(data, path):
            return
        self.keys(path, data, {"objectType", "name", *_IFIS})
        if "objectType" in data and data["objectType"] != "Agent":
            self.add(f"{path}.objectType", f"must be 'Agent', got {data['objectType']!r}")
        if "name" in data:
            self.string(f"{path}.name", data["name"])
        self.ifis(path, data, need_ifi=need_ifi)

    def ifis(self, path: str, data: dict[str, Any], *, need_ifi: bool) -> None:
        used = [key for key in _IFIS if key in data]
        if len(used) > 1:
            self.add(path, f"has {len(used)} identifiers ({', '.join(used)}); exactly one is allowed")
        elif not used and need_ifi:
            self.add(path, "has no identifier (mbox, mbox_sha1sum, openid or account)")
        if "mbox" in data and not (isinstance(data["mbox"], str) and _MAILTO.match(data["mbox"])):
            self.add(f"{path}.mbox", f"not a mailto: address: {data['mbox']!r}")
        if "mbox_sha1sum" in data and not (isinstance(data["mbox_sha1sum"], str) and _SHA1.match(data["mbox_sha1sum"])):
            self.add(f"{path}.mbox_sha1sum", f"not a SHA-1 hex digest: {data['mbox_sha1sum']!r}")
        if "openid" in data:
            self.iri(f"{path}.openid", data["openid"])
        if "account" in data and self.obj(data["account"], f"{path}.account"):
            account = data["account"]
            self.keys(f"{path}.account", account, {"homePage", "name"})
            if "homePage" not in account:
                self.add(f"{path}.account", "missing homePage")
            else:
                self.iri(f"{path}.account.homePage", account["homePage"])
            if "name" not in account:
                self.add(f"{path}.account", "missing name")
            else:
                self.string(f"{path}.account.name", account["name"])

    def group(self, path: str, data: dict[str, Any]) -> None:
        self.keys(path, data, {"objectType", "name", "member", *_IFIS})
        if "name" in data:
            self.string(f"{path}.name", data["name"])
        anonymous = not any(key in data for key in _IFIS)
        self.ifis(path, data, need_ifi=False)
        members = data.get("member")
        if members is None:
            if anonymous:
                self.add(path, "an anonymous Group needs members")
            return
        if not isinstance(members, list):
            self.add(f"{path}.member", "must be a list")
            return
        if anonymous and not members:
            self.add(f"{path}.member", "an anonymous Group needs at least one member")
        for i, member in enumerate(members):
            self.agent(f"{path}.member[{i}]", member)

    def actor(self, path: str, data: object) -> None:
        if not self.obj(data, path):
            return
        kind = data.get("objectType", "Agent")
        if kind == "Group":
            self.group(path, data)
        elif kind == "Agent":
            self.agent(path, data)
        else:
            self.add(f"{path}.objectType", f"must be 'Agent' or 'Group', got {kind!r}")

    def activity(self, path: str, data: object) -> None:
        if not self.obj(data, path):
            return
        self.keys(path, data, {"objectType", "id", "definition"})
        if "objectType" in data and data["objectType"] != "Activity":
            self.add(f"{path}.objectType", f"must be 'Activity', got {data['objectType']!r}")
        if "id" not in data:
            self.add(path, "missing id")
        else:
            self.iri(f"{path}.id", data["id"])
        if "definition" in data:
            self.definition(f"{path}.definition", data["definition"])

    def definition(self, path: str, data: object) -> None:
        if not self.obj(data, path):
            return
        components = {"choices", "scale", "source", "target", "steps"}
        self.keys(path, data, {"name", "description", "type", "moreInfo", "extensions", "interactionType",
                               "correctResponsesPattern", *components})
        for key in ("name", "description"):
            if key in data:
                self.language_map(f"{path}.{key}", data[key])
        for key in ("type", "moreInfo"):
            if key in data:
                self.iri(f"{path}.{key}", data[key])
        if "extensions" in data:
            self.extensions(f"{path}.extensions", data["extensions"])
        kind = data.get("interactionType")
        if kind is not None and kind not in _INTERACTION_TYPES:
            self.add(f"{path}.interactionType", f"unknown interaction type {kind!r}")
        if "correctResponsesPattern" in data and kind is None:
            self.add(path, "correctResponsesPattern needs an interactionType")
        supported = {"choice": {"choices"}, "sequencing": {"choices"}, "likert": {"scale"},
                     "matching": {"source", "target"}, "performance": {"steps"}}.get(kind or "", set())
        for key in sorted(components & set(data) - supported):
            self.add(f"{path}.{key}", f"not allowed for interaction type {kind!r}")

    def target(self, path: str, data: object, *, sub: bool = False) -> None:
        if not self.obj(data, path):
            return
        kind = data.get("objectType", "Activity")
        if kind == "Activity":
            self.activity(path, data)
        elif kind in ("Agent", "Group"):
            self.actor(path, data)
        elif kind == "StatementRef":
            self.keys(path, data, {"objectType", "id"})
            self.uuid(f"{path}.id", data.get("id"))
        elif kind == "SubStatement" and not sub:
            self.statement(path, data, sub=True)
        elif kind == "SubStatement":
            self.add(path, "a SubStatement cannot hold another SubStatement")
        else:
            self.add(f"{path}.objectType", f"unknown object type {kind!r}")

    def result(self, path: str, data: object) -> None:
        if not self.obj(data, path):
            return
        self.keys(path, data, {"score", "success", "completion", "response", "duration", "extensions"})
        score = data.get("score")
        if score is not None and self.obj(score, f"{path}.score"):
            self.keys(f"{path}.score", score, {"scaled", "raw", "min", "max"})
            for key in ("scaled", "raw", "min", "max"):
                if key in score and not _is_number(score[key]):
                    self.add(f"{path}.score.{key}", f"must be a number, got {score[key]!r}")
            nums = {k: v for k, v in score.items() if k in ("scaled", "raw", "min", "max") and _is_number(v)}
            if "scaled" in nums and not -1 <= nums["scaled"] <= 1:
                self.add(f"{path}.score.scaled", f"must be in [-1, 1], got {nums['scaled']}")
            if "raw" in nums and "min" in nums and nums["raw"] < nums["min"]:
                self.add(f"{path}.score.raw", f"{nums['raw']} is below min {nums['min']}")
            if "raw" in nums and "max" in nums and nums["raw"] > nums["max"]:
                self.add(f"{path}.score.raw", f"{nums['raw']} is above max {nums['max']}")
            if "min" in nums and "max" in nums and nums["min"] > nums["max"]:
                self.add(f"{path}.score.min", f"{nums['min']} is above max {nums['max']}")
        for key in ("success", "completion"):
            if key in data:
                self.boolean(f"{path}.{key}", data[key])
        if "response" in data:
            self.string(f"{path}.response", data["response"])
        if "duration" in data and not (isinstance(data["duration"], str) and _DURATION.match(data["duration"])):
            self.add(f"{path}.duration", f"not an ISO 8601 duration: {data['duration']!r}")
        if "extensions" in data:
            self.extensions(f"{path}.extensions", data["extensions"])

    def context(self, path: str, data: object, *, object_is_activity: bool) -> None:
        if not self.obj(data, path):
            return
        self.keys(path, data, {"registration", "instructor", "team", "contextActivities", "revision", "platform",
                               "language", "statement", "extensions"})
        if "registration" in data:
            self.uuid(f"{path}.registration", data["registration"])
        if "instructor" in data:
            self.actor(f"{path}.instructor", data["instructor"])
        if "team" in data and self.obj(data["team"], f"{path}.team"):
            if data["team"].get("objectType") != "Group":
                self.add(f"{path}.team.objectType", "must be 'Group'")
            else:
                self.group(f"{path}.team", data["team"])
        activities = data.get("contextActivities")
        if activities is not None and self.obj(activities, f"{path}.contextActivities"):
            self.keys(f"{path}.contextActivities", activities, {"parent", "grouping", "category", "other"})
            for key, items in activities.items():
                if not isinstance(items, list):
                    self.add(f"{path}.contextActivities.{key}", "must be a list of activities")
                    continue
                for i, item in enumerate(items):
                    self.activity(f"{path}.contextActivities.{key}[{i}]", item)
        for key in ("revision", "platform"):
            if key in data:
                self.string(f"{path}.{key}", data[key])
                if not object_is_activity:
                    self.add(f"{path}.{key}", "only allowed when the object is an Activity")
        if "language" in data and not (isinstance(data["language"], str) and _LANGUAGE.match(data["language"])):
            self.add(f"{path}.language", f"not a language tag: {data['language']!r}")
        if "statement" in data:
            self.target(f"{path}.statement", {"objectType": "StatementRef", **data["statement"]}
                        if isinstance(data["statement"], dict) else data["statement"])
        if "extensions" in data:
            self.extensions(f"{path}.extensions", data["extensions"])

    def statement(self, path: str, data: dict[str, Any], *, sub: bool = False) -> None:
        top = {"id", "stored", "authority", "version", "attachments"}
        self.keys(path or "statement", data,
                  {"actor", "verb", "object", "result", "context", "timestamp", "attachments", "objectType"}
                  | (set() if sub else top))
        prefix = f"{path}." if path else ""
        for key in ("actor", "verb", "object"):
            if key not in data:
                self.add(path or "statement", f"missing {key}")
        if "id" in data:
            self.uuid(f"{prefix}id", data["id"])
        if "actor" in data:
            self.actor(f"{prefix}actor", data["actor"])
        verb = data.get("verb")
        if verb is not None and self.obj(verb, f"{prefix}verb"):
            self.keys(f"{prefix}verb", verb, {"id", "display"})
            self.iri(f"{prefix}verb.id", verb.get("id"))
            if "display" in verb:
                self.language_map(f"{prefix}verb.display", verb["display"])
        if "object" in data:
            self.target(f"{prefix}object", data["object"], sub=sub)
        obj = data.get("object")
        is_activity = isinstance(obj, dict) and obj.get("objectType", "Activity") == "Activity"
        if isinstance(verb, dict) and verb.get("id") == f"{_ADL_VERBS}/voided" and not (
                isinstance(obj, dict) and obj.get("objectType") == "StatementRef"):
            self.add(f"{prefix}object", "a voiding statement's object must be a StatementRef")
        if "result" in data:
            self.result(f"{prefix}result", data["result"])
        if "context" in data:
            self.context(f"{prefix}context", data["context"], object_is_activity=is_activity)
        for key in ("timestamp", "stored"):
            if key in data:
                self.timestamp(f"{prefix}{key}", data[key])
        if "version" in data and not (isinstance(data["version"], str) and _VERSION.match(data["version"])):
            self.add(f"{prefix}version", f"not an xAPI 1.0.x version: {data['version']!r}")
        if "authority" in data:
            self.actor(f"{prefix}authority", data["authority"])
        if "attachments" in data:
            self.attachments(f"{prefix}attachments", data["attachments"])

    def attachments(self, path: str, data: object) -> None:
        if not isinstance(data, list):
            self.add(path, "must be a list")
            return
        for i, item in enumerate(data):
            where = f"{path}[{i}]"
            if not self.obj(item, where):
                continue
            self.keys(where, item, {"usageType", "display", "description", "contentType", "length", "sha2", "fileUrl"})
            for key in ("usageType", "display", "contentType", "length", "sha2"):
                if key not in item:
                    self.add(where, f"missing {key}")
            if "usageType" in item:
                self.iri(f"{where}.usageType", item["usageType"])
            if "fileUrl" in item:
                self.iri(f"{where}.fileUrl", item["fileUrl"])
            for key in ("display", "description"):
                if key in item:
                    self.language_map(f"{where}.{key}", item[key])
            if "length" in item and not (isinstance(item["length"], int) and not isinstance(item["length"], bool)):
                self.add(f"{where}.length", "must be an integer")
            for key in ("contentType", "sha2"):
                if key in item:
                    self.string(f"{where}.{key}", item[key])


def validate(stmt: dict[str, Any]) -> list[str]:
    """Structural problems of one statement, one line each (``path: what is wrong``); [] when valid.

    Offline: no LRS is asked. Checks IRIs, the one identifier of an agent, mailto addresses,
    timestamps, score ranges, duration syntax, UUID ids and registrations, language maps, and
    unknown properties, as an LRS would before accepting the statement.
    """
    checker = _Checker()
    if not isinstance(stmt, dict):
        return [f"statement: must be an object, got {type(stmt).__name__}"]
    checker.statement("", stmt)
    return checker.problems
