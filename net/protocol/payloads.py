"""The payload schemas of state operations, one per op kind: checked and normalised alike everywhere.

An op's payload is a JSON object whose keys depend on its kind (``OpKind``). ``validate_payload`` is
total: it returns the normalised payload (floats for numbers, lists for vectors, defaults filled in,
positions rounded) or raises ``ProtocolError`` with a one-line reason, so that the sender's copy and
every receiver's copy are equal value for value (the state digest depends on it).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from typing import Any

from net.errors import ProtocolError


class OpKind(enum.IntEnum):
    """Kind byte (offset 2) of a ``STATE_OP`` message; the payload schema depends on it."""

    STROKE_ADD = 1
    STROKE_ERASE = 2
    LANDMARK_PLACE = 3
    LANDMARK_MOVE = 4
    LANDMARK_DELETE = 5
    CLIP_SET = 6
    CLIP_CLEAR = 7
    TRANSFORM = 8
    SELECT = 9
    MEASURE = 10
    MEASURE_DELETE = 11
    CLEAR_MARKS = 12
    SET_ROLE = 13


#: Op kinds that create a mark of their sender's (what ``CLEAR_MARKS`` removes).
MARK_KINDS = frozenset({OpKind.STROKE_ADD, OpKind.LANDMARK_PLACE, OpKind.MEASURE})


#: The roles of a consultation room, from most to least able (``net.roles`` says what each may do); the
#: values a ``SET_ROLE`` payload's ``role`` may take.
ROOM_ROLES: tuple[str, ...] = ("surgeon", "expert", "trainee", "observer")
#: Participant indices a ``SET_ROLE`` may name (0 is the relay).
MAX_PARTICIPANT = 0xFFFF

#: Payload limits of state operations.
MAX_STROKE_POINTS = 1024
MAX_ID_CHARS = 64
MAX_TEXT_CHARS = 128
MAX_COORD_M = 100.0
MAX_CLIP_PLANES = 6
#: Measurement endpoints are in the twin's own coordinates, millimetres, |coordinate| <= 10 m.
MAX_TWIN_MM = 10_000.0
#: A measurement's ``distance_mm`` may differ this much from its endpoints' distance (both rounded to 1 um).
MEASURE_TOLERANCE_MM = 0.01
#: Longest surface (geodesic) distance of a measurement, mm.
MAX_GEODESIC_MM = 1e6
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-")


def _num(value: object, what: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError(f"{what} must be a number, got {type(value).__name__}", "state")
    f = float(value)
    if not math.isfinite(f) or not lo <= f <= hi:
        raise ProtocolError(f"{what} must be in {lo}..{hi}, got {value!r}", "state")
    return f


def _vec(value: object, n: int, what: str, lo: float, hi: float) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise ProtocolError(f"{what} must be a list of {n} numbers", "state")
    return [_num(v, what, lo, hi) for v in value]


def _position(value: object, what: str) -> list[float]:
    # Rounded to 0.1 mm (the pose quantum) so that local and remote copies are bit-identical and
    # payloads stay short; round(round(x, 4), 4) == round(x, 4), so normalising twice changes nothing.
    return [round(c, 4) for c in _vec(value, 3, what, -MAX_COORD_M, MAX_COORD_M)]


def _ident(value: object, what: str = "id") -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_CHARS or not set(value) <= _ID_CHARS:
        raise ProtocolError(f"{what} must be 1..{MAX_ID_CHARS} characters of [A-Za-z0-9_.:-]", "state")
    return value


def _text(value: object, what: str, optional: bool) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT_CHARS or not value.isprintable():
        raise ProtocolError(f"{what} must be printable text of at most {MAX_TEXT_CHARS} characters", "state")
    return value


def _index(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_CLIP_PLANES:
        raise ProtocolError(f"clip plane index must be an integer in 0..{MAX_CLIP_PLANES - 1}", "state")
    return value


_SCHEMA_KEYS: dict[OpKind, tuple[frozenset[str], frozenset[str]]] = {
    # kind: (required keys, optional keys)
    OpKind.STROKE_ADD: (frozenset({"id", "points"}), frozenset({"color", "width"})),
    OpKind.STROKE_ERASE: (frozenset({"id"}), frozenset()),
    OpKind.LANDMARK_PLACE: (frozenset({"id", "position"}), frozenset({"label", "structure"})),
    OpKind.LANDMARK_MOVE: (frozenset({"id", "position"}), frozenset()),
    OpKind.LANDMARK_DELETE: (frozenset({"id"}), frozenset()),
    OpKind.CLIP_SET: (frozenset({"index", "normal", "d"}), frozenset()),
    OpKind.CLIP_CLEAR: (frozenset({"index"}), frozenset()),
    OpKind.TRANSFORM: (frozenset({"position", "orientation"}), frozenset({"scale"})),
    OpKind.SELECT: (frozenset(), frozenset({"structure"})),
    OpKind.MEASURE: (frozenset({"id", "a_mm", "b_mm", "distance_mm"}), frozenset({"label", "geodesic_mm"})),
    OpKind.MEASURE_DELETE: (frozenset({"id"}), frozenset()),
    OpKind.CLEAR_MARKS: (frozenset(), frozenset()),
    OpKind.SET_ROLE: (frozenset({"participant", "role"}), frozenset()),
}

#: Defaults filled in by ``validate_payload`` for optional keys.
DEFAULT_STROKE_COLOR = (1.0, 0.8, 0.0, 1.0)
DEFAULT_STROKE_WIDTH_M = 0.002


def validate_payload(kind: OpKind | int, payload: object) -> dict[str, Any]:
    """Check ``payload`` against the schema of ``kind`` and return its normalised form.

    Schemas (positions metres, rounded to 0.1 mm, |coordinate| <= 100 m):

    - STROKE_ADD ``{"id", "points": [[x, y, z], ...] (1..1024), "color": [r, g, b, a] 0..1,
      "width": metres in (0, 0.05]}``
    - STROKE_ERASE, LANDMARK_DELETE ``{"id"}``
    - LANDMARK_PLACE ``{"id", "position", "label": text, "structure": text | null}``
    - LANDMARK_MOVE ``{"id", "position"}``
    - CLIP_SET ``{"index": 0..5, "normal": [x, y, z] non-zero, "d": metres}``; CLIP_CLEAR ``{"index"}``
    - TRANSFORM ``{"position", "orientation": unit quaternion (x, y, z, w), "scale": 0.01..100}``
    - SELECT ``{"structure": text | null}``
    - MEASURE ``{"id", "a_mm": [x, y, z], "b_mm": [x, y, z] (twin mm, rounded to 0.001 mm, |c| <= 10,000),
      "distance_mm": |b - a| within 0.01 mm, "label": text, "geodesic_mm": mm >= distance | null}``
    - MEASURE_DELETE ``{"id"}``; CLEAR_MARKS ``{}`` (the sender's strokes, landmarks and measurements)
    - SET_ROLE ``{"participant": index 1..65535, "role": one of ROOM_ROLES}`` (a surgeon grants or revokes)

    Returns a new dict with numbers as floats, vectors as lists and defaults filled in, so that the
    sender's copy and every receiver's copy are equal value for value (the state digest depends on it).
    Raises ``ProtocolError`` for an unknown kind, missing or unknown keys, wrong types, non-finite or
    out-of-range values.
    """
    try:
        kind = OpKind(kind)
    except ValueError:
        raise ProtocolError(f"unknown op kind {kind!r}", "state") from None
    if not isinstance(payload, Mapping):
        raise ProtocolError(f"{kind.name} payload must be an object", "state")
    required, optional = _SCHEMA_KEYS[kind]
    keys = set(payload)
    if not required <= keys:
        raise ProtocolError(f"{kind.name} payload lacks {sorted(required - keys)}", "state")
    if not keys <= required | optional:
        unknown = sorted(map(str, keys - required - optional))
        raise ProtocolError(f"{kind.name} payload has unknown keys {unknown}", "state")
    p = payload
    if kind is OpKind.STROKE_ADD:
        points = p["points"]
        if not isinstance(points, (list, tuple)) or not 1 <= len(points) <= MAX_STROKE_POINTS:
            raise ProtocolError(f"stroke points must be a list of 1..{MAX_STROKE_POINTS} points", "state")
        return {
            "id": _ident(p["id"]),
            "points": [_position(pt, "stroke point") for pt in points],
            "color": _vec(p.get("color", DEFAULT_STROKE_COLOR), 4, "stroke color", 0.0, 1.0),
            "width": _num(p.get("width", DEFAULT_STROKE_WIDTH_M), "stroke width", 1e-5, 0.05),
        }
    if kind in (OpKind.STROKE_ERASE, OpKind.LANDMARK_DELETE, OpKind.MEASURE_DELETE):
        return {"id": _ident(p["id"])}
    if kind is OpKind.LANDMARK_PLACE:
        return {
            "id": _ident(p["id"]),
            "position": _position(p["position"], "landmark position"),
            "label": _text(p.get("label", ""), "landmark label", optional=False),
            "structure": _text(p.get("structure"), "landmark structure", optional=True),
        }
    if kind is OpKind.LANDMARK_MOVE:
        return {"id": _ident(p["id"]), "position": _position(p["position"], "landmark position")}
    if kind is OpKind.CLIP_SET:
        normal = _vec(p["normal"], 3, "clip plane normal", -1e3, 1e3)
        if math.sqrt(sum(c * c for c in normal)) < 1e-6:
            raise ProtocolError("clip plane normal is zero", "state")
        d = _num(p["d"], "clip plane d", -MAX_COORD_M, MAX_COORD_M)
        return {"index": _index(p["index"]), "normal": normal, "d": d}
    if kind is OpKind.CLIP_CLEAR:
        return {"index": _index(p["index"])}
    if kind is OpKind.TRANSFORM:
        q = _vec(p["orientation"], 4, "transform orientation", -1.0, 1.0)
        if abs(math.sqrt(sum(c * c for c in q)) - 1.0) > 1e-3:
            raise ProtocolError("transform orientation is not a unit quaternion", "state")
        return {
            "position": _position(p["position"], "transform position"),
            "orientation": q,
            "scale": _num(p.get("scale", 1.0), "transform scale", 0.01, 100.0),
        }
    if kind is OpKind.SELECT:
        return {"structure": _text(p.get("structure"), "selected structure", optional=True)}
    if kind is OpKind.MEASURE:
        return _measurement(p)
    if kind is OpKind.SET_ROLE:
        who = p["participant"]
        if isinstance(who, bool) or not isinstance(who, int) or not 1 <= who <= MAX_PARTICIPANT:
            raise ProtocolError(f"SET_ROLE participant must be an integer in 1..{MAX_PARTICIPANT}", "state")
        if p["role"] not in ROOM_ROLES:
            raise ProtocolError(f"SET_ROLE role must be one of {', '.join(ROOM_ROLES)}, got {str(p['role'])[:40]!r}", "state")
        return {"participant": who, "role": p["role"]}
    # CLEAR_MARKS: no keys
    return {}


def _twin_point(value: object, what: str) -> list[float]:
    # Rounded to 1 um, as the tools round intents: bit-identical copies, idempotent like _position.
    return [round(c, 3) for c in _vec(value, 3, what, -MAX_TWIN_MM, MAX_TWIN_MM)]


def _measurement(p: Mapping[str, Any]) -> dict[str, Any]:
    a = _twin_point(p["a_mm"], "measurement a_mm")
    b = _twin_point(p["b_mm"], "measurement b_mm")
    distance = round(_num(p["distance_mm"], "measurement distance_mm", 0.0, 2 * math.sqrt(3) * MAX_TWIN_MM), 3)
    span = math.dist(a, b)
    if abs(distance - span) > MEASURE_TOLERANCE_MM:
        raise ProtocolError(f"measurement distance_mm {distance} is not its endpoints' distance {span:.3f}", "state")
    geodesic = p.get("geodesic_mm")
    if geodesic is not None:
        geodesic = round(_num(geodesic, "measurement geodesic_mm", 0.0, MAX_GEODESIC_MM), 3)
        if geodesic < distance - MEASURE_TOLERANCE_MM:
            raise ProtocolError(f"measurement geodesic_mm {geodesic} is shorter than the straight line {distance}", "state")
    return {
        "id": _ident(p["id"]),
        "a_mm": a,
        "b_mm": b,
        "distance_mm": distance,
        "label": _text(p.get("label", ""), "measurement label", optional=False),
        "geodesic_mm": geodesic,
    }


