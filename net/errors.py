"""Errors raised by ``net``: one small hierarchy with one-line messages.

Every error a remote party can cause (a malformed message, a forged token, an unknown participant) is a
``NetError``; callers count it and carry on, they never crash a session because of one. Other modules
subclass ``NetError`` beside their code (``net.tokens.TokenError`` for example).
"""

from __future__ import annotations


class NetError(Exception):
    """Base class: something that came from, or is about to go to, the network is wrong."""


class ProtocolError(NetError):
    """A wire message cannot be encoded or decoded.

    Parameters
    ----------
    reason:
        One line saying what is wrong ("pose: truncated: 19 bytes, need 20").
    channel:
        The data channel the message belongs to (``"pose"``, ``"state"``, ``"clock"``) or ``None``.
    """

    def __init__(self, reason: str, channel: str | None = None) -> None:
        self.reason = reason
        self.channel = channel
        super().__init__(f"{channel}: {reason}" if channel else reason)
