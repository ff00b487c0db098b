"""Module files: every kind of bad file is refused with one line naming the file, the step and the
field; the published JSON Schema is valid JSON and agrees with the loader on good and bad modules."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from assets.twin import Twin
from sessions.training.loader import SCHEMA_PATH, ModuleError, load_module, parse_module

DATA = Path(__file__).parent / "data"
LEFT = "left cerebral hemisphere (pial)"


def good() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((DATA / "brain-basics.json").read_text())
    return doc


def write(tmp_path: Path, doc: Any, name: str = "m.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc) if name.endswith(".json") else doc)
    return path


def refused(path: Path, brain: Twin) -> str:
    with pytest.raises(ModuleError) as info:
        load_module(path, twin=brain)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)), message
    return message


def test_the_test_module_loads_with_every_kind_resolved(brain: Twin) -> None:
    m = load_module(DATA / "brain-basics.json", twin=brain)
    assert [s.target.kind for s in m.steps] == ["select", "landmark", "landmark", "measure", "section"]
    assert m.script is not None and m.script.name == "brain-basics-pass.json"
    assert m.steps[3].target.distance_mm == pytest.approx(38.321, abs=0.001)  # type: ignore[union-attr]
    assert m.steps[1].watch == ("outside_tolerance", "wrong_structure", "out_of_order", "timeout")


@pytest.mark.parametrize(
    ("mutate", "expect"),
    [
        (lambda d: d["steps"][1]["target"].update(kind="poke"),
         r"steps\[1\] 'frontal-pole': target.kind: unknown target kind 'poke'"),
        (lambda d: d["steps"][0]["target"].update(structure="left hemisphere"),
         r"steps\[0\] 'hemisphere': target.structure: twin 'brain' has no structure 'left hemisphere' \(close: left cerebral"),
        (lambda d: d["steps"][4]["target"].update(shows=[LEFT, "cerebellum"]),
         r"steps\[4\] 'coronal': target.shows\[1\]: twin 'brain' has no structure 'cerebellum'"),
        (lambda d: d["steps"][1]["target"].update(tolerance_mm=0),
         r"steps\[1\] 'frontal-pole': target.tolerance_mm: must be > 0"),
        (lambda d: d["steps"][1]["target"].update(tolerance_mm=-2),
         r"target.tolerance_mm: must be > 0 and at most 200 mm, got -2"),
        (lambda d: d["steps"][2]["target"].update(tolerance_mm=5000),
         r"steps\[2\] 'lateral': target.tolerance_mm: .*at most 200"),
        (lambda d: d["steps"][4]["target"].update(angle_tolerance_deg=120), r"target.angle_tolerance_deg: .*at most 90"),
        (lambda d: d["steps"][4]["target"].update(normal=[0, 0, 0]), r"steps\[4\] 'coronal': target.normal: the normal is zero"),
        (lambda d: d["steps"][1]["target"].update(colour="red"), r"steps\[1\] 'frontal-pole': target: unknown field\(s\) colour"),
        (lambda d: d["steps"][0].update(points=3), r"steps\[0\] 'hemisphere': step: unknown field\(s\) points"),
        (lambda d: d.update(author="me"), r"top level: module: unknown field\(s\) author"),
        (lambda d: d["steps"][2].update(id="frontal-pole"),
         r"steps\[2\] 'frontal-pole': id: step id 'frontal-pole' is used twice \(also steps\[1\]\)"),
        (lambda d: d["steps"][0].update(watch=["no_go_contact"]), r"watch\[0\]: a select step cannot make 'no_go_contact'"),
        (lambda d: d["steps"][0].update(time_limit_s=-1), r"steps\[0\] 'hemisphere': time_limit_s: must be > 0"),
        (lambda d: d["steps"][3]["target"].update(distance_mm=50), r"target.distance_mm: 50 mm disagrees with from_mm-to_mm"),
        (lambda d: d["steps"][1]["target"].update(tolerance_floor_mm=9),
         r"target.tolerance_floor_mm: the floor 9 is above the tolerance 5"),
        (lambda d: d.update(schema="medverse.module/2"), r"top level: schema: expected 'medverse.module/1'"),
        (lambda d: d["steps"][1].pop("target"), r"steps\[1\] 'frontal-pole': target: missing"),
        (lambda d: d.update(script="nobody.json"), r"top level: script: nobody.json: no such script file"),
    ],
)  # fmt: skip
def test_bad_modules_are_refused_in_one_line(tmp_path: Path, brain: Twin, mutate: Any, expect: str) -> None:
    doc = good()
    doc["script"] = str(DATA / "brain-basics-pass.json")
    mutate(doc)
    message = refused(write(tmp_path, doc), brain)
    assert re.search(expect, message), message


def test_yaml_modules_load_and_their_errors_name_the_line(tmp_path: Path, brain: Twin) -> None:
    text = f"""schema: medverse.module/1
id: y
title: YAML
twin: brain
steps:
  - id: a
    title: A
    instructions: Select the left hemisphere.
    target: {{kind: select, structure: "{LEFT}"}}
"""
    assert load_module(write(tmp_path, text, "ok.yaml"), twin=brain).steps[0].target.structure == LEFT  # type: ignore[union-attr]
    broken = text.replace("title: A", "title: [A")
    assert re.search(r"bad.yaml: not valid YAML: .* at line \d+ column \d+", refused(write(tmp_path, broken, "bad.yaml"), brain))
    nan = text.replace('target: {kind: select, structure: "' + LEFT + '"}',
                       "target: {kind: landmark, point_mm: [0, 0, 0], tolerance_mm: .nan}")  # fmt: skip
    assert re.search(
        r"steps\[0\] 'a': target.tolerance_mm: must be a finite number", refused(write(tmp_path, nan, "nan.yaml"), brain)
    )


def test_json_nan_and_syntax_errors_are_refused(tmp_path: Path, brain: Twin) -> None:
    path = tmp_path / "nan.json"
    path.write_text(json.dumps(good()).replace('"tolerance_mm": 5}', '"tolerance_mm": NaN}', 1))
    assert "NaN is not a number a module may hold" in refused(path, brain)
    path.write_text('{"schema": ')
    assert re.search(r"not valid JSON: .* at line 1 column \d+", refused(path, brain))


def test_an_unknown_twin_is_refused_before_the_run(tmp_path: Path) -> None:
    doc = good()
    doc["twin"] = "no-such-twin"
    doc.pop("script")
    with pytest.raises(ModuleError, match=r"top level: twin: .*no-such-twin"):
        load_module(write(tmp_path, doc))


# --- the published JSON Schema agrees with the loader ------------------------------------------------


def schema_errors(value: Any, schema: dict[str, Any], root: dict[str, Any], path: str = "$") -> list[str]:
    """A small JSON Schema (2020-12) evaluator for the keywords module.schema.json uses (no
    validator package is installed here): enough to hold the schema against the loader."""
    if "$ref" in schema:
        node: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        return schema_errors(value, node, root, path)
    errs: list[str] = []
    kinds = {"object": dict, "array": list, "string": str}
    if "type" in schema:
        t = schema["type"]
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)) if t == "number" else isinstance(value, kinds[t])
        if not ok:
            return [f"{path}: not {t}"]
    if "const" in schema and value != schema["const"]:
        errs.append(f"{path}: not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errs.append(f"{path}: not in enum")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errs.append(f"{path}: below minimum")
        if "maximum" in schema and value > schema["maximum"]:
            errs.append(f"{path}: above maximum")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            errs.append(f"{path}: not above exclusiveMinimum")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errs.append(f"{path}: too short")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errs.append(f"{path}: pattern")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", 10**9):
            errs.append(f"{path}: item count")
        if schema.get("uniqueItems") and len({json.dumps(v) for v in value}) != len(value):
            errs.append(f"{path}: items not unique")
        for i, item in enumerate(value):
            errs += schema_errors(item, schema.get("items", {}), root, f"{path}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        errs += [f"{path}: missing {k}" for k in schema.get("required", []) if k not in value]
        if schema.get("additionalProperties") is False:
            errs += [f"{path}: unknown {k}" for k in value if k not in props]
        for k, deps in schema.get("dependentRequired", {}).items():
            if k in value:
                errs += [f"{path}: {k} needs {d}" for d in deps if d not in value]
        for k, sub in props.items():
            if k in value:
                errs += schema_errors(value[k], sub, root, f"{path}.{k}")
    if "oneOf" in schema and sum(not schema_errors(value, s, root, path) for s in schema["oneOf"]) != 1:
        errs.append(f"{path}: not exactly one of oneOf")
    if "anyOf" in schema and not any(not schema_errors(value, s, root, path) for s in schema["anyOf"]):
        errs.append(f"{path}: none of anyOf")
    return errs


def test_the_published_schema_is_json_and_agrees_with_the_loader(brain: Twin) -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    assert (
        schema["$schema"].startswith("https://json-schema.org/")
        and schema["properties"]["schema"]["const"] == "medverse.module/1"
    )
    doc = good()
    doc.pop("script")
    assert schema_errors(doc, schema, schema) == []
    parse_module(doc, "good", structures={s.name for s in brain.structures})
    instrument = {
        "kind": "instrument", "instrument": {"name": "needle", "length_mm": 35, "hand": "right"}, "target_mm": [1, 2, 3],
        "tolerance_mm": 3, "path_mm": [[0, 0, 0], [1, 2, 3]], "path_tolerance_mm": 8, "no_go": [LEFT], "no_go_margin_mm": 2,
    }  # fmt: skip
    doc["steps"].append({"id": "needle", "title": "Needle", "instructions": "Guide it.", "target": instrument})
    assert schema_errors(doc, schema, schema) == []
    parse_module(doc, "good")
    # what the schema can say, both refuse
    mutations: tuple[Any, ...] = (
        lambda d: d["steps"][1]["target"].update(kind="poke"),
        lambda d: d["steps"][1]["target"].update(tolerance_mm=0),
        lambda d: d["steps"][1]["target"].update(tolerance_mm=201),
        lambda d: d["steps"][1]["target"].update(extra=1),
        lambda d: d.update(extra=1),
        lambda d: d["steps"][0].update(id="has space"),
        lambda d: d["steps"][0].update(watch=["bored"]),
        lambda d: d["steps"][5]["target"].pop("path_tolerance_mm"),
        lambda d: d["steps"][3]["target"].pop("to_mm"),
        lambda d: d["steps"][5]["target"]["instrument"].update(hand="both"),
        lambda d: d.update(steps=[]),
    )
    for mutate in mutations:
        bad = copy.deepcopy(doc)
        mutate(bad)
        assert schema_errors(bad, schema, schema), bad
        with pytest.raises(ModuleError):
            parse_module(bad, "bad")
