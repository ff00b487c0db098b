"""Errors of PACS access: each one line naming the server (``pacs NAME: what is wrong``).

They are ``AssetError`` subclasses, so the CLI turns every one of them into a one-line message and exit
code 2, like a bad file.
"""

from __future__ import annotations

from assets.errors import AssetError


class PacsError(AssetError):
    """Base class: something went wrong talking to a PACS (``source`` is ``pacs NAME``)."""

    def __init__(self, server: str, message: str) -> None:
        super().__init__(f"pacs {server}" if server else "pacs", message)


class PacsConfigError(PacsError):
    """The configuration file is missing, malformed, or does not describe the server asked for."""


class PacsConnectionError(PacsError):
    """The PACS cannot be reached: refused, unknown host, timed out, or the association was aborted."""


class PacsAuthError(PacsError):
    """The PACS refused who we are: wrong user or password, or an AE title it does not know."""


class PacsQueryError(PacsError):
    """A search or retrieval asked for something malformed (a date, a UID, a modality code)."""


class PacsRequestError(PacsError):
    """The PACS answered a query or retrieval with a failure status."""


class PacsNotFoundError(PacsError):
    """No study or series matches the UID asked for."""


__all__ = ["PacsAuthError", "PacsConfigError", "PacsConnectionError", "PacsError", "PacsNotFoundError",
           "PacsQueryError", "PacsRequestError"]
