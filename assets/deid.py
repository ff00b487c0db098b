"""De-identification of DICOM metadata: PS3.15 Annex E, Basic Application Level Confidentiality Profile.

``deidentify`` applies every row of Table E.1-1 (``assets.deid_profile``) to a pydicom dataset in place,
recursively through sequences and through the file meta information: attributes are removed (X),
emptied (Z), replaced by a dummy value of their VR (D) or given a new UID (U); private attributes, curve
data and overlay data and comments are removed; attributes the table does not list are kept. Compound
actions are resolved from the attribute's type in the dataset's IOD (see ``assets.deid_profile``).

UIDs are replaced by ``2.25.<decimal>`` UIDs whose integer is a UUID (RFC 9562 version 8) made of the
first 128 bits of HMAC-SHA256(salt, original UID): the same UID gives the same replacement wherever it
occurs (``ReferencedSOPInstanceUID`` inside sequences included) and in every file de-identified with
the same salt, so one import of a series keeps its references; without the salt nothing links the new
UIDs to the old ones.

A sequence whose action is D (Content Sequence, Graphic Annotation Sequence, Verifying Observer Sequence
and a few more) keeps its items, since its contents are Type 1 where it is used, but nothing in it is
kept as it was: besides the table's own action for each attribute, every other value of a free-text,
name, date or time VR is replaced by a dummy (coded values, numbers and UIDs other than the table's U
rows stay, so SOP Class UIDs and the structure survive).

Pixel data is not touched: text burned into the pixels is not removed, and the recorded method says so.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import metadata

from pydicom import Dataset, Sequence
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

from assets import deid_profile as profile

log = logging.getLogger(__name__)

try:
    _VERSION = metadata.version("medverse")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    _VERSION = "unknown"

#: Values of De-identification Method (0012,0063), LO with VM 1-n: each value at most 64 characters.
METHOD_VALUES: tuple[str, ...] = (
    "DICOM PS3.15 E.2 Basic Application Level Confidentiality Profile",
    f"Table E.1-1 {profile.STANDARD_EDITION}; medverse {_VERSION}",
    "Pixel data not modified: burned-in annotation not removed",
)
METHOD = "; ".join(METHOD_VALUES)

#: De-identification Method Code Sequence item for the Basic Profile (PS3.16 CID 7050).
PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")

#: Dummy values (action D) per VR; UI gets a replaced UID and SQ is kept with its items processed.
_DUMMY: dict[str, object] = {
    "AE": "DEIDENTIFIED",
    "AS": "000Y",
    "CS": "DEIDENTIFIED",
    "DA": "19000101",
    "DT": "19000101000000.000000",
    "TM": "000000.00",
    "DS": "0",
    "IS": "0",
    "LO": "DEIDENTIFIED",
    "LT": "DEIDENTIFIED",
    "PN": "DEIDENTIFIED",
    "SH": "DEIDENTIFIED",
    "ST": "DEIDENTIFIED",
    "UC": "DEIDENTIFIED",
    "UT": "DEIDENTIFIED",
    "UR": "urn:deidentified",
    "FL": 0.0,
    "FD": 0.0,
    "SL": 0,
    "SS": 0,
    "SV": 0,
    "UL": 0,
    "US": 0,
    "UV": 0,
    "AT": 0,
}
#: VRs that can hold free text, names, dates or times: dummied inside sequences whose action is D.
_FREE_VALUE_VRS = frozenset({"AE", "AS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UR", "UT"})
#: Binary VRs take two zero bytes (the shortest even, non-zero length).
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})

_ROWS: dict[int, tuple[str, str]] = {
    tag: (keyword, action) for tag, keyword, _, action in profile.BASIC_PROFILE
}
_OVERLAY_DATA = 0x3000

#: Attributes worth carrying with a twin, before the profile is consulted; ``TWIN_KEYWORDS`` drops any
#: the profile removes or empties (Patient's Age is X and Patient's Sex is Z, so neither travels).
_TWIN_CANDIDATES = (
    "Modality",
    "BodyPartExamined",
    "SliceThickness",
    "SpacingBetweenSlices",
    "PixelSpacing",
    "Manufacturer",
    "ManufacturerModelName",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
    "PatientAge",
    "PatientSex",
    "PatientIdentityRemoved",
    "DeidentificationMethod",
)
_ACTION_BY_KEYWORD = {keyword: action for keyword, action in _ROWS.values()}
TWIN_KEYWORDS: tuple[str, ...] = tuple(
    kw for kw in _TWIN_CANDIDATES if _ACTION_BY_KEYWORD.get(kw) not in ("X", "Z")
)
#: Pixel measures that enhanced (multi-frame) images carry in the shared functional groups instead.
_PIXEL_MEASURES = ("SliceThickness", "SpacingBetweenSlices", "PixelSpacing")


@dataclass
class DeidReport:
    """What ``deidentify`` did to one dataset.

    ``actions`` maps an action code (X, Z, D, U, K) to the attributes it was applied to, as paths such
    as ``ReferencedImageSequence[0].ReferencedSOPInstanceUID`` (private and unnamed tags as
    ``(gggg,eeee)``); K lists the attributes kept because the table does not name them (C, clean, is
    never applied: no row of the Basic Profile column uses it, only the profile's options). ``malformed``
    lists elements that could not be read and were removed (``path: reason``); they are in X too.
    ``uids_replaced`` counts distinct original UIDs. ``method`` is the recorded method.
    """

    method: str = METHOD
    actions: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    malformed: list[str] = field(default_factory=list)
    uids_replaced: int = 0

    @property
    def counts(self) -> dict[str, int]:
        """Number of attributes per action code."""
        return {action: len(paths) for action, paths in sorted(self.actions.items())}

    def summary(self) -> str:
        """One line for logs and the CLI, e.g. ``X=41 Z=6 D=2 U=5 K=120 malformed=0``."""
        counts = " ".join(f"{a}={n}" for a, n in self.counts.items())
        return f"{counts} uids={self.uids_replaced} malformed={len(self.malformed)}"


def new_uid(uid: str, key: bytes) -> str:
    """The replacement of ``uid`` under ``key``: ``2.25.`` and the decimal of a version-8 UUID.

    Deterministic for a given key, at most 44 characters (UIDs may have 64).
    """
    digest = hmac.new(key, uid.encode("ascii", "replace"), hashlib.sha256).digest()
    value = int.from_bytes(digest[:16], "big")
    # Version (bits 76-79) and variant (bits 62-63) make the integer a well-formed UUID (ITU-T X.667).
    value = (value & ~(0xF << 76)) | (0x8 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return f"2.25.{value}"


def resolve(action: str, tag: int, sop_class_uid: str = "") -> str:
    """The single action (X, Z, D or U) a Table E.1-1 action stands for in a given IOD.

    A compound action takes its first option unless the attribute's type requires a later one:
    Type 3 allows removal, Type 2 requires presence (Z, else D), Type 1 a value (D, or U for ``U*``).
    """
    if "/" not in action:
        return action
    options = action.rstrip("*").split("/")
    attribute_type = profile.IOD_ATTRIBUTE_TYPES.get(sop_class_uid, {}).get(
        tag, profile.ATTRIBUTE_TYPES.get(tag, 3)
    )
    allowed = {3: "XZDU", 2: "ZDU", 1: "DU"}[attribute_type]
    return next(option for option in options if option in allowed)


def _path(prefix: str, tag: BaseTag) -> str:
    name = keyword_for_tag(tag) or f"({tag.group:04X},{tag.element:04X})"
    return f"{prefix}.{name}" if prefix else name


def _base_vr(vr: str) -> str:
    # Dictionary VRs such as "US or SS" / "OB or OW" for elements that were never read from a file.
    return vr.split(" or ")[0]


class _Deidentifier:
    """One pass over a dataset: its key, the IOD's SOP class and the report being filled."""

    def __init__(self, key: bytes, sop_class_uid: str, report: DeidReport) -> None:
        self.key = key
        self.sop_class_uid = sop_class_uid
        self.report = report
        self.uid_map: dict[str, str] = {}

    def uid(self, value: str) -> str:
        original = str(value).strip("\x00 ")
        if original not in self.uid_map:
            self.uid_map[original] = new_uid(original, self.key)
        return self.uid_map[original]

    def dataset(self, ds: Dataset, prefix: str = "", in_dummy: bool = False) -> None:
        """Process every element of ``ds``; ``in_dummy`` is true inside a sequence whose action is D."""
        overlay_groups = {
            tag >> 16
            for tag in ds.keys()  # noqa: SIM118 - iterating a pydicom Dataset gives its elements, not tags
            if 0x6000 <= tag >> 16 <= 0x60FF and tag & 0xFFFF == _OVERLAY_DATA and not (tag >> 16) % 2
        }
        for key in list(ds.keys()):
            tag = BaseTag(key)
            path = _path(prefix, tag)
            try:
                self.element(ds, tag, path, overlay_groups, in_dummy)
            except Exception as exc:  # a malformed element is removed and reported, never fatal
                if tag in ds:
                    del ds[tag]
                self.report.actions["X"].append(path)
                self.report.malformed.append(f"{path}: {exc}")
                log.warning("removed malformed element %s: %s", path, exc)

    def action_for(self, tag: BaseTag, overlay_groups: set[int]) -> str | None:
        if tag.is_private:
            return profile.PRIVATE_ACTION
        if tag.element == 0 and tag.group != 0x0002:
            return "X"  # group lengths are retired and would be wrong after removals
        row = _ROWS.get(int(tag))
        if row is not None:
            return resolve(row[1], int(tag), self.sop_class_uid)
        if tag.group in overlay_groups:
            # Overlay Data is removed (below); the rest of its group would describe an overlay that is
            # no longer there, which the Overlay Plane module does not allow, so it goes too.
            return "X"
        for first, last, element, _, _, action in profile.RANGE_ROWS:
            if first <= tag.group <= last and not tag.group % 2 and element in (None, tag.element):
                return action
        return None

    def element(
        self, ds: Dataset, tag: BaseTag, path: str, overlay_groups: set[int], in_dummy: bool
    ) -> None:
        action = self.action_for(tag, overlay_groups)
        if action == "X":
            del ds[tag]  # no value is read: a removed element cannot be malformed
            self.report.actions["X"].append(path)
            return
        elem = ds[tag]
        vr = _base_vr(elem.VR)
        if action is None and in_dummy and vr in _FREE_VALUE_VRS:
            action = "D"
        if action is None or (action == "D" and vr == "SQ") or (action == "U" and vr == "SQ"):
            # Kept, or a sequence whose action is D or U*: the sequence stays and every attribute in
            # its items gets its own action from the table.
            if vr == "SQ":
                for index, item in enumerate(elem.value):
                    self.dataset(item, f"{path}[{index}]", in_dummy or action == "D")
            self.report.actions[action or "K"].append(path)
            return
        if action == "Z":
            elem.value = Sequence() if vr == "SQ" else elem.empty_value
        elif action == "U" or (action == "D" and vr == "UI"):
            self.replace_uids(elem)
        elif action == "D":
            self.dummy(ds, elem, vr)
        else:
            raise ValueError(f"unknown profile action {action!r}")
        self.report.actions[action].append(path)

    def replace_uids(self, elem: DataElement) -> None:
        if elem.VM == 0:
            return
        values = elem.value if isinstance(elem.value, MultiValue) else [elem.value]
        new = [self.uid(value) for value in values]
        elem.value = new if len(new) > 1 else new[0]

    def dummy(self, ds: Dataset, elem: DataElement, vr: str) -> None:
        if vr in _BINARY_VRS:
            # Re-create the element: a value read from a file may carry an undefined length.
            ds[elem.tag] = DataElement(elem.tag, vr, b"\x00\x00")
        else:
            elem.value = _DUMMY[vr]


def deidentify(ds: Dataset, *, salt: bytes | None = None) -> DeidReport:
    """De-identify ``ds`` in place with the Basic Application Level Confidentiality Profile.

    Parameters
    ----------
    ds
        A dataset as read by ``pydicom.dcmread`` (its ``file_meta`` is processed too) or built in memory.
    salt
        Key of the UID hash. Pass the same salt (for example ``os.urandom(32)`` once per import) for
        every file of one import so that UIDs and references stay consistent across files; ``None``
        draws a fresh random salt, which links nothing beyond this one dataset.

    Returns
    -------
    DeidReport
        What was done. Malformed elements are removed and listed; nothing is raised for them.
    """
    key = salt if salt is not None else os.urandom(32)
    report = DeidReport()
    sop_class_uid = str(ds.get("SOPClassUID", "") or "")
    worker = _Deidentifier(key, sop_class_uid, report)
    file_meta = getattr(ds, "file_meta", None)
    if file_meta is not None:
        worker.dataset(file_meta)
    worker.dataset(ds)
    if getattr(ds, "preamble", None):
        # The 128-byte preamble is free for applications (TIFF headers, vendor data): clear it.
        ds.preamble = b"\x00" * 128
    _record_method(ds)
    report.actions = dict(report.actions)
    report.uids_replaced = len(worker.uid_map)
    log.debug("de-identified %s: %s", sop_class_uid or "dataset", report.summary())
    return report


def _record_method(ds: Dataset) -> None:
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = list(METHOD_VALUES)
    codes = ds.get("DeidentificationMethodCodeSequence") or Sequence()
    if not any(str(item.get("CodeValue", "")) == PROFILE_CODE[0] for item in codes):
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = PROFILE_CODE
        codes.append(item)
    ds.DeidentificationMethodCodeSequence = codes
    # Dates and times were removed, emptied or replaced by dummies (PS3.3 C.12.1, defined term REMOVED).
    ds.LongitudinalTemporalInformationModified = "REMOVED"


def _text(value: object) -> str:
    if isinstance(value, MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value)


def twin_metadata(ds: Dataset) -> dict[str, str]:
    """The de-identified attributes that travel with a twin, by DICOM keyword.

    Only ``TWIN_KEYWORDS`` that are present and non-empty: modality, body part, slice thickness and
    spacing (mm; from the shared functional groups of enhanced images when not at the top level),
    pixel spacing (mm, ``row\\column``), manufacturer and model, the replaced study, series and frame
    of reference UIDs, Patient Identity Removed and De-identification Method (its values joined by
    ``\\``).

    Raises
    ------
    ValueError
        If ``ds`` has not been de-identified (Patient Identity Removed is not YES).
    """
    if str(ds.get("PatientIdentityRemoved", "")).upper() != "YES":
        raise ValueError("dataset is not de-identified: call assets.deid.deidentify first")
    shared = ds.get("SharedFunctionalGroupsSequence")
    measures_seq = shared[0].get("PixelMeasuresSequence") if shared else None
    measures = measures_seq[0] if measures_seq else Dataset()
    result: dict[str, str] = {}
    for keyword in TWIN_KEYWORDS:
        value = ds.get(keyword)
        if value in (None, "") and keyword in _PIXEL_MEASURES:
            value = measures.get(keyword)
        if value not in (None, ""):
            result[keyword] = _text(value)
    return result
