"""Retrieve one series from a PACS, de-identified before a byte of it reaches the disk.

Each instance arrives in memory (a WADO-RS part, a C-STORE sub-operation), goes through
``assets.deid.deidentify`` with one salt per retrieval (so the replaced UIDs still tie the series
together) and only then is written, under a neutral name, into a folder the caller owns. ``import_series``
puts that folder in a private temporary directory, runs the normal DICOM-series import on it and
removes it, whatever happens: the twin cache and catalogue only ever see de-identified data.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom import Dataset

from assets.pacs.config import PacsServer
from assets.pacs.errors import PacsNotFoundError, PacsQueryError
from assets.pacs.query import PacsClient, SeriesMatch, StudyQuery, is_uid, iter_matches, series_match

if TYPE_CHECKING:
    from assets.library import Library
    from assets.twin import Twin

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]

#: Modalities whose series become surfaces, in order of preference when a study has several.
VOLUME_MODALITIES = ("CT", "MR", "PT", "NM")


def connect(server: PacsServer) -> PacsClient:
    """A client for ``server`` over its protocol (DICOMweb or DIMSE)."""
    if server.protocol == "dicomweb":
        from assets.pacs.dicomweb import DicomWebClient  # noqa: PLC0415 - requests only for DICOMweb

        return DicomWebClient(server)
    from assets.pacs.dimse import DimseClient  # noqa: PLC0415 - pynetdicom only for DIMSE

    return DimseClient(server)


def echo(server: PacsServer) -> float:
    """Seconds ``server`` took to answer a C-ECHO (DICOMweb: a one-study search); a ``PacsError`` otherwise."""
    start = time.perf_counter()
    with connect(server) as client:
        client.echo()
    return time.perf_counter() - start


def find(server: PacsServer, query: StudyQuery) -> list[SeriesMatch]:
    """Every series of every study on ``server`` that matches ``query``."""
    with connect(server) as client:
        return list(iter_matches(client, query))


#: What each de-identification action did, for the summary line.
_ACTION_WORDS = {"X": "removed", "Z": "emptied", "D": "given dummy values", "U": "given new UIDs", "K": "kept"}


@dataclass
class Retrieval:
    """What one retrieval did, counted over all its instances.

    ``instances``: received and stored; ``malformed``: elements removed because they could not be
    read; ``actions``: attributes per de-identification action (X, Z, D, U, K).
    """

    server: str
    modality: str = ""
    instances: int = 0
    malformed: int = 0
    actions: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: ``54 instances of CT from pacs web, de-identified (attributes: 108 removed, ...)``."""
        counts = ", ".join(f"{self.actions[a]} {w}" for a, w in _ACTION_WORDS.items() if self.actions.get(a))
        return (f"{self.instances} instances of {self.modality or '?'} from pacs {self.server}, de-identified "
                f"(attributes: {counts}; {self.malformed} malformed elements removed)")


def choose_series(client: PacsClient, server: PacsServer, study_uid: str = "", series_uid: str = "") -> SeriesMatch:
    """The series to retrieve: ``series_uid``, else the largest volume series of ``study_uid``.

    Raises
    ------
    PacsQueryError
        Neither UID, or one that is not a UID.
    PacsNotFoundError
        No such series or study, or a study without a CT, MR, PET or NM series.
    """
    for label, uid in (("study", study_uid), ("series", series_uid)):
        if uid and not is_uid(uid):
            raise PacsQueryError(server.name, f"{label} UID {uid!r} is not a DICOM UID (digits and dots)")
    if not (study_uid or series_uid):
        raise PacsQueryError(server.name, "give a study UID or a series UID")
    if series_uid:
        found = client.find_series(study_uid=study_uid, series_uid=series_uid)
        if not found:
            raise PacsNotFoundError(server.name, f"no series with UID {series_uid}"
                                    + (f" in study {study_uid}" if study_uid else ""))
        match = series_match(Dataset(), found[0])
        if not match.study_uid:
            match = replace(match, study_uid=study_uid)
        if not match.study_uid:
            raise PacsNotFoundError(server.name, f"the PACS did not say which study series {series_uid} belongs to: "
                                    "give its study UID too")
        return match
    candidates = [series_match(Dataset(), s) for s in client.find_series(study_uid=study_uid)]
    if not candidates:
        raise PacsNotFoundError(server.name, f"no study with UID {study_uid} (or it has no series)")
    volumes = [c for c in candidates if c.modality in VOLUME_MODALITIES]
    if not volumes:
        kinds = ", ".join(sorted({c.modality or "?" for c in candidates}))
        raise PacsNotFoundError(server.name, f"study {study_uid} has no CT, MR, PET or NM series (only {kinds})")
    chosen = max(volumes, key=lambda c: (-VOLUME_MODALITIES.index(c.modality), c.instances or 0))
    if len(candidates) > 1:
        log.info("study has %d series: the %s series of %s instances chosen", len(candidates), chosen.modality,
                 chosen.instances)
    return chosen


def retrieve_series(server: PacsServer, folder: Path, *, study_uid: str = "", series_uid: str = "",
                    salt: bytes | None = None, progress: Progress | None = None) -> Retrieval:
    """Retrieve a series (``series_uid``, or the volume series of ``study_uid``) de-identified into ``folder``.

    Every instance is de-identified in memory (``assets.deid``, one ``salt`` for the whole series: random
    unless given) before it is written as ``NNNNN.dcm``.
    """
    from pydicom import dcmwrite  # noqa: PLC0415

    from assets import deid  # noqa: PLC0415

    report = progress or (lambda stage, fraction: None)
    key = salt if salt is not None else os.urandom(32)
    result = Retrieval(server=server.name)
    folder.mkdir(parents=True, exist_ok=True)
    with connect(server) as client:
        report("searching", 0.0)
        chosen = choose_series(client, server, study_uid, series_uid)
        result.modality = chosen.modality
        expected = chosen.instances or 0

        def store(instance: Dataset) -> None:
            done = deid.deidentify(instance, salt=key)
            result.instances += 1
            result.malformed += len(done.malformed)
            for action, count in done.counts.items():
                result.actions[action] = result.actions.get(action, 0) + count
            dcmwrite(folder / f"{result.instances:05d}.dcm", instance, enforce_file_format=True)
            if expected:
                report(f"retrieved {result.instances} of {expected}", min(1.0, result.instances / expected))

        client.retrieve_series(chosen.study_uid, chosen.series_uid, store)
    if result.instances == 0:
        raise PacsNotFoundError(server.name, "the series holds no instances")
    log.info("%s", result.summary())
    return result


def import_series(server: PacsServer, *, study_uid: str = "", series_uid: str = "", name: str | None = None,
                  library: Library | None = None, progress: Progress | None = None,
                  **options: Any) -> tuple[Twin, Retrieval]:
    """Retrieve a series de-identified into a private temporary folder, import it as a twin, remove the folder.

    ``name`` defaults to the library's name for an unnamed import (modality and a content digest).
    ``options`` go to ``Library.import_twin`` (``threshold``, ``smooth_iterations``, ...). Returns the
    twin and what the retrieval did.
    """
    from assets.library import Library as DefaultLibrary  # noqa: PLC0415 - the loaders only when importing

    report = progress or (lambda stage, fraction: None)
    library = library if library is not None else DefaultLibrary()
    temp = Path(tempfile.mkdtemp(prefix="medverse-pacs-"))  # mode 0700: only this user reads it
    try:
        folder = temp / server.name
        retrieval = retrieve_series(server, folder, study_uid=study_uid, series_uid=series_uid,
                                    progress=lambda s, f: report(s, 0.4 * f))
        twin = library.import_twin(folder, name=name,
                                   progress=lambda s, f: report(s, 0.4 + 0.6 * f), **options)
        return twin, retrieval
    finally:
        shutil.rmtree(temp, ignore_errors=True)


__all__ = ["VOLUME_MODALITIES", "Retrieval", "choose_series", "connect", "find", "import_series",
           "retrieve_series"]
