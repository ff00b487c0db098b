"""Twins from a PACS: search it, retrieve a series de-identified, and import that like a DICOM folder.

Two protocols behind one client interface (``query.PacsClient``): DICOMweb (``dicomweb``: QIDO-RS,
WADO-RS) and DIMSE (``dimse``: C-FIND, C-GET or C-MOVE). Which server, and how to reach it, comes from
the ``[pacs.NAME]`` tables of medverse's TOML configuration (``config``). Whatever is retrieved is
de-identified (``assets.deid``) in memory before it is written anywhere (``retrieve``).

The clients import ``requests``/``dicomweb-client`` or ``pynetdicom`` only when a server of their
protocol is used.
"""

from __future__ import annotations

from assets.pacs.config import PacsServer, config_path, load_servers, resolve_server
from assets.pacs.errors import (
    PacsAuthError,
    PacsConfigError,
    PacsConnectionError,
    PacsError,
    PacsNotFoundError,
    PacsQueryError,
    PacsRequestError,
)
from assets.pacs.query import SeriesMatch, StudyQuery
from assets.pacs.retrieve import Retrieval, connect, echo, find, import_series, retrieve_series

__all__ = [
    "PacsAuthError",
    "PacsConfigError",
    "PacsConnectionError",
    "PacsError",
    "PacsNotFoundError",
    "PacsQueryError",
    "PacsRequestError",
    "PacsServer",
    "Retrieval",
    "SeriesMatch",
    "StudyQuery",
    "config_path",
    "connect",
    "echo",
    "find",
    "import_series",
    "load_servers",
    "resolve_server",
    "retrieve_series",
]
