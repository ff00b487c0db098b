"""What a PACS search asks and answers, independent of the protocol that carries it.

A search runs at two levels, as both DIMSE (C-FIND, Study Root) and DICOMweb (QIDO-RS) allow on every
PACS: studies matching the patient, date and modality, then the series of each study. Each client
answers with pydicom datasets holding the attributes listed here; ``SeriesMatch`` is one row of the
result.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from pydicom import Dataset

from assets.pacs.errors import PacsQueryError

#: Attributes asked for at the study level (returned keys; the query's own values are added to them).
STUDY_KEYS = ("StudyInstanceUID", "PatientName", "PatientID", "PatientBirthDate", "StudyDate", "StudyDescription",
              "AccessionNumber", "ModalitiesInStudy")
#: Attributes asked for at the series level.
SERIES_KEYS = ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
               "NumberOfSeriesRelatedInstances")

log = logging.getLogger(__name__)

_DATE = re.compile(r"^(\d{8})?(-(\d{8})?)?$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_MODALITY = re.compile(r"^[A-Z0-9_]{1,16}$")


@dataclass(frozen=True)
class StudyQuery:
    """A study search. Empty fields match anything.

    ``patient``: Patient's Name, ``*`` and ``?`` wildcards allowed (``Doe*``); ``patient_id``: Patient ID;
    ``modality``: a modality in the study (CT, MR, ...), also used to keep only its series;
    ``study_date``: ``YYYYMMDD``, or a range ``YYYYMMDD-YYYYMMDD`` (either end may be left open);
    ``study_uid``: one study; ``limit``: the most studies to list (0: no limit).
    """

    patient: str = ""
    patient_id: str = ""
    modality: str = ""
    study_date: str = ""
    study_uid: str = ""
    limit: int = 0

    def __post_init__(self) -> None:
        if self.limit < 0:
            raise PacsQueryError("", f"limit {self.limit} is negative (0 lists every study)")
        if self.study_date and not (_DATE.match(self.study_date) and self.study_date != "-"):
            raise PacsQueryError("", f"study date {self.study_date!r} is not YYYYMMDD or a range YYYYMMDD-YYYYMMDD")
        if self.modality and not _MODALITY.match(self.modality):
            raise PacsQueryError("", f"modality {self.modality!r} is not a DICOM modality code such as CT or MR")
        if self.study_uid and not is_uid(self.study_uid):
            raise PacsQueryError("", f"study UID {self.study_uid!r} is not a DICOM UID (digits and dots)")
        for label, value in (("patient", self.patient), ("patient ID", self.patient_id)):
            if "\\" in value or len(value) > 64:
                raise PacsQueryError("", f"{label} {value!r} is not a DICOM value (at most 64 characters, no backslash)")

    def filters(self) -> dict[str, str]:
        """The matching keys this query sets, by DICOM keyword."""
        pairs = {"PatientName": self.patient, "PatientID": self.patient_id, "ModalitiesInStudy": self.modality,
                 "StudyDate": self.study_date, "StudyInstanceUID": self.study_uid}
        return {k: v for k, v in pairs.items() if v}


def is_uid(value: str) -> bool:
    """True for a syntactically valid DICOM UID (PS3.5 9.1: digits and dots, at most 64 characters)."""
    return len(value) <= 64 and bool(_UID.match(value))


@dataclass(frozen=True)
class SeriesMatch:
    """One series a search found, with its study and patient (values as the PACS holds them)."""

    patient_name: str
    patient_id: str
    patient_birth_date: str
    study_uid: str
    study_date: str
    study_description: str
    accession_number: str
    series_uid: str
    series_number: str
    modality: str
    series_description: str
    instances: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def series_match(study: Dataset, series: Dataset) -> SeriesMatch:
    """The row for ``series`` of ``study`` (both as a client returned them)."""
    count = _text(series, "NumberOfSeriesRelatedInstances")
    return SeriesMatch(
        patient_name=_text(study, "PatientName"),
        patient_id=_text(study, "PatientID"),
        patient_birth_date=_text(study, "PatientBirthDate"),
        study_uid=_text(study, "StudyInstanceUID") or _text(series, "StudyInstanceUID"),
        study_date=_text(study, "StudyDate"),
        study_description=_text(study, "StudyDescription"),
        accession_number=_text(study, "AccessionNumber"),
        series_uid=_text(series, "SeriesInstanceUID"),
        series_number=_text(series, "SeriesNumber"),
        modality=_text(series, "Modality"),
        series_description=_text(series, "SeriesDescription"),
        instances=int(count) if count.strip().isdigit() else None,
    )


#: Called with each retrieved instance (a dataset with its ``file_meta``), in the order received.
InstanceSink = Callable[[Dataset], None]


class PacsClient(Protocol):
    """What medverse needs of a PACS, over DICOMweb or DIMSE. Use as a context manager."""

    def echo(self) -> None:
        """Check that the PACS answers, with these credentials (C-ECHO; DICOMweb: a one-study search)."""
        ...

    def find_studies(self, query: StudyQuery) -> list[Dataset]:
        """Studies matching ``query``, with ``STUDY_KEYS``."""
        ...

    def find_series(self, study_uid: str = "", series_uid: str = "", modality: str = "") -> list[Dataset]:
        """Series of one study, or the series with one UID, optionally of one modality, with ``SERIES_KEYS``."""
        ...

    def retrieve_series(self, study_uid: str, series_uid: str, sink: InstanceSink) -> int:
        """Every instance of a series, each handed to ``sink`` as it arrives; returns how many."""
        ...

    def __enter__(self) -> PacsClient: ...

    def __exit__(self, *exc: object) -> None: ...


def iter_matches(client: PacsClient, query: StudyQuery) -> Iterator[SeriesMatch]:
    """Every series of every study matching ``query`` (of ``query.modality`` only, when given); of the
    first ``query.limit`` studies only, with a warning, when more match."""
    studies = client.find_studies(query)
    if query.limit and len(studies) > query.limit:
        log.warning("more than %d studies match: the first %d are listed (narrow the search, or raise the limit)",
                    query.limit, query.limit)
        studies = studies[: query.limit]
    for study in studies:
        uid = _text(study, "StudyInstanceUID")
        if not uid:
            continue
        for series in client.find_series(study_uid=uid, modality=query.modality):
            yield series_match(study, series)


__all__ = ["SERIES_KEYS", "STUDY_KEYS", "InstanceSink", "PacsClient", "SeriesMatch", "StudyQuery", "is_uid",
           "iter_matches", "series_match"]
