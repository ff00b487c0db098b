"""The published test vectors (docs/protocol-vectors.json): every message type and op kind, byte for byte."""

from __future__ import annotations

import json
from typing import Any

import make_vectors as mv
import pytest

from net import protocol as p

FILE: dict[str, Any] = json.loads(mv.PATH.read_text(encoding="utf-8"))
VECTORS: list[dict[str, Any]] = FILE["vectors"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_each_vector_decodes_to_its_value_and_encodes_to_its_bytes(vector: dict[str, Any]) -> None:
    """The hex decodes to the value, and the value (read as a browser would read the JSON) encodes to the hex."""
    data = bytes.fromhex(vector["hex"])
    assert p.MessageType(data[1]).name == vector["type"]
    assert mv.to_value(mv.decode(vector["channel"], data)) == vector["value"]
    assert mv.encode(vector["channel"], mv.from_value(vector["type"], vector["value"])) == data


def test_vectors_cover_every_message_type_and_op_kind() -> None:
    """One vector at least for each message type and each op kind of this protocol version."""
    assert FILE["protocol_version"] == p.PROTOCOL_VERSION
    assert {v["type"] for v in VECTORS} == {t.name for t in p.MessageType}
    assert {v["value"]["kind"] for v in VECTORS if v["type"] == "STATE_OP"} == {k.name for k in p.OpKind}


def test_the_file_is_what_the_generator_writes() -> None:
    """Regenerating the vectors gives the committed file, character for character (deterministic)."""
    assert mv.text() == mv.PATH.read_text(encoding="utf-8")
