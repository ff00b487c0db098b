"""The client-to-server signaling messages (``docs/signaling.md``, "Client to server"), checked by one pure
function, :func:`parse_client_message`, which the server calls on every text frame and the fuzz tests
drive directly. Besides the schema it refuses NaN/Infinity (not JSON to a browser) and nesting deeper
than :data:`MAX_NESTING`; each refusal names the ``/stats`` counter it goes to.
"""

from __future__ import annotations

import json
from typing import Any

from net.errors import NetError


class SignalingMessageError(NetError):
    """A client's signaling message breaks the schema; ``counter`` names the ``/stats`` counter it goes to.

    Parameters
    ----------
    counter : str
        One of ``malformed``, ``oversized``, ``unknown_type``, ``spoofed``.
    reason : str
        One line for the ``error`` message sent back.
    """

    def __init__(self, counter: str, reason: str) -> None:
        self.counter = counter
        self.reason = reason
        super().__init__(reason)


#: Deepest nesting of objects and lists in a client message (an SDP signal needs 2, a stats report 4);
#: it keeps re-serialising forwarded messages far from the interpreter's recursion limit.
MAX_NESTING = 16


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            level += 1
            deepest = max(deepest, level)
            if level > MAX_NESTING:
                break
            stack.extend((child, level) for child in item)
    return deepest


def parse_client_message(
    text: str, max_message_bytes: int = 64 * 1024, max_report_bytes: int = 16 * 1024
) -> dict[str, Any]:
    """Parse and check one client-to-server message (``docs/signaling.md``, "Client to server").

    Pure: what depends on the room (is the target there?) is the server's to check.

    Parameters
    ----------
    text : str
        The text frame as received.
    max_message_bytes : int
        Largest message, bytes of UTF-8.
    max_report_bytes : int
        Largest ``stats`` report, bytes of compact JSON.

    Returns
    -------
    dict
        ``{"type": "signal", "to": str, "data": dict}`` or ``{"type": "stats", "report": dict}``.

    Raises
    ------
    SignalingMessageError
        For anything else, with the counter it belongs to.
    """
    if len(text) > max_message_bytes or len(text.encode("utf-8", "surrogatepass")) > max_message_bytes:
        raise SignalingMessageError("oversized", f"message larger than {max_message_bytes} bytes")
    try:
        # NaN and Infinity are not JSON: a browser peer could not parse them once forwarded.
        message = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise SignalingMessageError("malformed", "message is not JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise SignalingMessageError("malformed", "message must be a JSON object with a string 'type'")
    if _depth(message) > MAX_NESTING:
        raise SignalingMessageError("malformed", f"message nested deeper than {MAX_NESTING} levels")
    kind = message["type"]
    if kind == "signal":
        if "from" in message:
            raise SignalingMessageError("spoofed", "'from' is set by the server, never by a client")
        extra = set(message) - {"type", "to", "data"}
        to, data = message.get("to"), message.get("data")
        if extra or not isinstance(to, str) or not isinstance(data, dict):
            what = f"unexpected field(s) {sorted(extra)[:5]}" if extra else "'to' must be a string and 'data' an object"
            raise SignalingMessageError("malformed", f"signal: {what}")
        return {"type": "signal", "to": to, "data": data}
    if kind == "stats":
        report = message.get("report")
        if set(message) != {"type", "report"} or not isinstance(report, dict):
            raise SignalingMessageError("malformed", "stats: expected exactly {'type': 'stats', 'report': {...}}")
        if len(json.dumps(report, separators=(",", ":"))) > max_report_bytes:
            raise SignalingMessageError("oversized", f"stats report larger than {max_report_bytes} bytes")
        return {"type": "stats", "report": report}
    raise SignalingMessageError("unknown_type", f"unknown message type {kind[:40]!r}")
