"""De-identification of DICOM metadata with the PS3.15 Basic Profile (assets.deid, assets.deid_profile)."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import deid_data
import pydicom
import pytest
from pydicom import Dataset, Sequence
from pydicom.data import get_testdata_file
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import RawDataElement
from pydicom.dataset import FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from assets import deid_profile
from assets.deid import METHOD_VALUES, TWIN_KEYWORDS, deidentify, new_uid, resolve, twin_metadata

DEID_DATA = Path(deid_data.__file__).parent / "data"
PYDICOM_TEST_FILES = Path(get_testdata_file("CT_small.dcm")).parent
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
SALT = b"test-import-salt"
#: Where every string that should not survive lives: markers in values, a date, a UID root.
MARKER = "PHI"
ORIGINAL_DATE = "20010203"
ORIGINAL_UID_ROOT = "1.2.826.0.1.3680043.99."

REAL_FILES = {
    "CT_small": get_testdata_file("CT_small.dcm"),
    "MR_small": get_testdata_file("MR_small.dcm"),
    "rtstruct": get_testdata_file("rtstruct.dcm"),
    "ctbrain1": DEID_DATA / "humans" / "ctbrain1.dcm",
    "us_greyscale": DEID_DATA / "ultrasounds" / "GREYSCALE_IMAGE.dcm",
    "cookie_image1": DEID_DATA / "dicom-cookies" / "image1.dcm",
}
IDENTIFYING = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "StudyDate",
    "AccessionNumber",
    "ReferringPhysicianName",
    "InstitutionName",
    "InstitutionAddress",
    "StationName",
    "OperatorsName",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
)


def _value_for(vr: str, index: int) -> object:
    """A valid, recognisable original value of ``vr`` for the ``index``-th table row."""
    text = f"{MARKER}{index:04d}"
    return {
        "AE": text,
        "AS": "042Y",
        "CS": text,
        "DA": ORIGINAL_DATE,
        "DT": ORIGINAL_DATE + "040506",
        "TM": "040506",
        "DS": "1.5",
        "IS": "7",
        "UI": f"{ORIGINAL_UID_ROOT}{index}",
        "UR": f"http://{MARKER.lower()}.example/{index}",
        "US": 7,
        "OB": MARKER.encode() + b"!",
        "UN": MARKER.encode() + b"!",
    }.get(vr, text)


def _nested_item(referenced_uid: str) -> Dataset:
    """A sequence item with an attribute to empty, a reference to replace and a private tag."""
    item = Dataset()
    item.PatientName = f"{MARKER}^Nested"
    item.ReferencedSOPClassUID = CT_IMAGE
    item.ReferencedSOPInstanceUID = referenced_uid
    item.TextValue = "free text"  # not in the table: kept, except inside a sequence whose action is D
    item.add_new(0x00110010, "LO", "ACME")
    item.add_new(0x00111001, "LO", f"{MARKER} private nested")
    return item


@pytest.fixture
def full_dataset() -> Dataset:
    """A CT dataset holding every attribute Table E.1-1 names, plus curves, overlays and private tags."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CT_IMAGE
    sop_instance = f"{ORIGINAL_UID_ROOT}0"
    for index, (tag, _, _, _) in enumerate(deid_profile.BASIC_PROFILE, start=1):
        vr = dictionary_VR(tag).split(" or ")[0]
        target = ds.file_meta if tag >> 16 == 0x0002 else ds
        if vr == "SQ":
            target.add_new(tag, vr, Sequence([_nested_item(sop_instance)]))
        else:
            target.add_new(tag, vr, _value_for(vr, index))
    ds.SOPInstanceUID = sop_instance
    ds.file_meta.MediaStorageSOPInstanceUID = sop_instance
    ds.SOPClassUID = CT_IMAGE
    ds.Modality = "CT"
    ds.Manufacturer = "Kept Manufacturer"
    # Curves (retired, 50xx), an overlay with data (6000) and one with only a comment (6002).
    ds.add_new(0x50000005, "US", 1)
    ds.add_new(0x50003000, "OB", f"{MARKER} curve".encode() + b"\x00")
    ds.add_new(0x50020022, "LO", f"{MARKER} curve description")
    ds.add_new(0x60000010, "US", 2)
    ds.add_new(0x60000011, "US", 8)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60003000, "OW", b"\x01\x00")
    ds.add_new(0x60004000, "LT", f"{MARKER} overlay comment")
    ds.add_new(0x60020022, "LO", "Kept overlay description")
    ds.add_new(0x60024000, "LT", f"{MARKER} second overlay comment")
    ds.add_new(0x00090010, "LO", "ACME 1.0")
    ds.add_new(0x00091001, "LO", f"{MARKER} private")
    ds.add_new(0x00091002, "SQ", Sequence([_nested_item(sop_instance)]))
    return ds


def _is_empty(value: object) -> bool:
    return value is None or len(value) == 0  # type: ignore[arg-type]


def _check_row(ds: Dataset, original: Dataset, tag: int, action: str) -> str | None:
    """Why the row's action did not happen to ``tag``, or None when it did."""
    container = ds.file_meta if tag >> 16 == 0x0002 else ds
    was = (original.file_meta if tag >> 16 == 0x0002 else original)[tag]
    assert was.value, "the fixture gives every attribute a value"
    if action == "X":
        return "still present" if tag in container else None
    if tag not in container:
        return "removed"
    elem = container[tag]
    if action == "Z":
        return None if _is_empty(elem.value) else f"not emptied: {elem.value!r}"
    if elem.VR == "SQ":  # D and U* keep the sequence; its items are processed attribute by attribute
        item = elem.value[0]
        if len(elem.value) != 1 or not _is_empty(item.PatientName) or 0x00111001 in item:
            return "sequence item not de-identified"
        if item.ReferencedSOPInstanceUID != ds.SOPInstanceUID:
            return "reference inside the sequence not replaced like the SOP Instance UID"
        if item.ReferencedSOPClassUID != CT_IMAGE:
            return "class UID inside the sequence changed"
        expected_text = "DEIDENTIFIED" if action == "D" else "free text"
        return None if item.TextValue == expected_text else f"free text: {item.TextValue!r}"
    if action == "U" or elem.VR == "UI":
        return None if elem.value == new_uid(str(was.value), SALT) else f"UID not replaced: {elem.value}"
    if _is_empty(elem.value) or elem.value == was.value:
        return f"no dummy value: {elem.value!r}"
    return None


def test_every_attribute_of_the_profile_gets_its_action(full_dataset: Dataset) -> None:
    """Each of the table's 617 attributes is removed, emptied, dummied, UID-replaced or kept as resolved."""
    original = copy.deepcopy(full_dataset)
    report = deidentify(full_dataset, salt=SALT)
    failures = []
    for tag, keyword, _, action in deid_profile.BASIC_PROFILE:
        resolved = resolve(action, tag, CT_IMAGE)
        problem = _check_row(full_dataset, original, tag, resolved)
        if problem:
            failures.append(f"{keyword} ({action} -> {resolved}): {problem}")
    assert failures == []
    # A few rows spelled out, independent of the table: Z, X, D, U, and U inside the file meta.
    assert full_dataset.PatientName == "" and full_dataset.PatientBirthDate == ""
    assert "PatientAddress" not in full_dataset and "PatientAge" not in full_dataset
    assert full_dataset.ClinicalTrialSubjectID == "DEIDENTIFIED"
    assert full_dataset.VerifyingObserverName == "DEIDENTIFIED"
    assert full_dataset.StudyInstanceUID == new_uid(original.StudyInstanceUID, SALT)
    assert full_dataset.file_meta.MediaStorageSOPInstanceUID == full_dataset.SOPInstanceUID
    assert full_dataset.ContentSequence[0].TextValue == "DEIDENTIFIED"
    assert report.malformed == []
    assert report.counts["X"] > 400 and report.counts["U"] > 50 and report.counts["D"] > 80
    assert "ReferencedImageSequence[0].ReferencedSOPInstanceUID" in report.actions["U"]
    assert "ContentSequence[0].TextValue" in report.actions["D"]
    assert "(0009,1001)" in report.actions["X"] and "Modality" in report.actions["K"]
    assert report.summary().startswith("D=") and "malformed=0" in report.summary()


def test_ranges_private_tags_and_kept_attributes(full_dataset: Dataset) -> None:
    """Curves, overlay data with its group, overlay comments and private tags go; unlisted attributes stay."""
    deidentify(full_dataset, salt=SALT)
    groups = {tag >> 16 for tag in full_dataset.keys()}  # noqa: SIM118 - a Dataset iterates over elements, not tags
    assert not any(0x5000 <= g <= 0x50FF for g in groups)
    assert 0x6000 not in groups  # overlay data removed, and with it the rest of its overlay
    assert 0x60024000 not in full_dataset and full_dataset[0x60020022].value == "Kept overlay description"
    assert not [elem.tag for elem in full_dataset.iterall() if elem.tag.is_private]
    assert full_dataset.Modality == "CT" and full_dataset.Manufacturer == "Kept Manufacturer"
    assert full_dataset.SOPClassUID == CT_IMAGE


def test_full_dataset_writes_and_no_original_value_survives(full_dataset: Dataset) -> None:
    """After de-identification the dataset round-trips and its bytes hold no marker, date or original UID."""
    deidentify(full_dataset, salt=SALT)
    for tag in [t for t in full_dataset.keys() if t >> 16 == 0]:  # noqa: SIM118 - as above
        del full_dataset[tag]  # command elements cannot be stored in a file (pydicom refuses them)
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, full_dataset, enforce_file_format=True)
    data = buffer.getvalue()
    for needle in (MARKER, MARKER.lower(), ORIGINAL_DATE, ORIGINAL_UID_ROOT):
        assert needle.encode() not in data, needle
    back = pydicom.dcmread(io.BytesIO(data))
    assert back.SOPInstanceUID == full_dataset.SOPInstanceUID == back.file_meta.MediaStorageSOPInstanceUID
    assert back.PatientIdentityRemoved == "YES"


def test_compound_actions_resolve_by_the_attribute_type_in_the_iod() -> None:
    """X/Z, X/D, X/Z/D, Z/D and X/Z/U* become the strictest action that keeps each IOD valid."""
    pet, enhanced_ct, segmentation = (
        "1.2.840.10008.5.1.4.1.1.128",
        "1.2.840.10008.5.1.4.1.1.2.1",
        "1.2.840.10008.5.1.4.1.1.66.4",
    )
    series_date, acquisition_date, content_date, serial = 0x00080021, 0x00080022, 0x00080023, 0x00181000
    assert resolve("X/D", series_date, CT_IMAGE) == "X"
    assert resolve("X/D", series_date, pet) == "D"  # PET Series: Type 1
    assert resolve("X/Z", acquisition_date, CT_IMAGE) == "X"
    assert resolve("X/Z", acquisition_date, pet) == "Z"  # PET Image: Type 2
    assert resolve("Z/D", content_date, CT_IMAGE) == "Z"
    assert resolve("Z/D", content_date, enhanced_ct) == "D"  # Multi-frame Functional Groups: Type 1
    assert resolve("X/Z/D", serial, CT_IMAGE) == "X"
    assert resolve("X/Z/D", serial, segmentation) == "D"  # Enhanced General Equipment: Type 1
    assert resolve("Z/D", 0x00100020, CT_IMAGE) == "Z"  # Patient ID: Type 2
    assert resolve("X/Z/U*", 0x00081140, CT_IMAGE) == "U"
    assert resolve("X/Z", 0x00400555, CT_IMAGE) == "Z"  # Acquisition Context Sequence: Type 2
    assert resolve("X", 0x00100010, CT_IMAGE) == "X"


def test_profile_table_is_complete_and_agrees_with_pydicom() -> None:
    """Every row names a known tag with pydicom's keyword, a table action and, if compound, a type."""
    tags = [row[0] for row in deid_profile.BASIC_PROFILE]
    assert len(tags) == len(set(tags)) == 617 and tags == sorted(tags)
    actions = {"D", "Z", "X", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"}
    for tag, keyword, name, action in deid_profile.BASIC_PROFILE:
        assert keyword_for_tag(tag) == keyword and name and action in actions, (hex(tag), keyword)
        assert ("/" in action) == (tag in deid_profile.ATTRIBUTE_TYPES), keyword
    assert {row[5] for row in deid_profile.RANGE_ROWS} == {"X"} and deid_profile.PRIVATE_ACTION == "X"


@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_real_file_is_deidentified_and_round_trips(name: str) -> None:
    """A real file loses identities and private tags, records the method, writes and reads back intact."""
    path = REAL_FILES[name]
    ds = pydicom.dcmread(path, force=True)
    manufacturer = str(ds.get("Manufacturer", ""))
    # Identifying strings from the file (a short one also inside the kept Manufacturer, as MR_small's
    # institution "TOSHIBA" in "TOSHIBA_MEC", cannot be told apart in the bytes and is left out).
    secrets = {str(ds.get(k, "")) for k in IDENTIFYING} - {""}
    secrets = {s.strip() for s in secrets if len(s.strip()) >= 4 and s.strip() not in manufacturer}
    assert secrets
    had_private = any(elem.tag.is_private for elem in ds.iterall())
    pixels = ds.get("PixelData")

    report = deidentify(ds, salt=SALT)
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds)
    data = buffer.getvalue()
    back = pydicom.dcmread(io.BytesIO(data), force=True)

    assert [s for s in secrets if s.encode() in data] == []
    assert not any(elem.tag.is_private for elem in back.iterall())
    assert back.PatientIdentityRemoved == "YES"
    assert list(back.DeidentificationMethod) == list(METHOD_VALUES)
    assert all(len(value) <= 64 for value in METHOD_VALUES)  # LO
    assert "burned-in" in report.method and "Basic Application Level Confidentiality" in report.method
    codes = back.DeidentificationMethodCodeSequence
    assert [(c.CodeValue, c.CodingSchemeDesignator) for c in codes] == [("113100", "DCM")]
    assert back.get("PixelData") == pixels  # pixel data untouched
    assert back.StudyInstanceUID.startswith("2.25.") and back.SOPInstanceUID.startswith("2.25.")
    assert report.malformed == []
    assert report.counts.get("X", 0) > 0 or not had_private


def test_series_keeps_consistent_uids_and_references() -> None:
    """Four slices of one CT series share study/series/frame UIDs after de-identification with one salt."""
    paths = sorted((PYDICOM_TEST_FILES / "dicomdirtests" / "77654033" / "CT2").iterdir())
    slices = [pydicom.dcmread(path) for path in paths]
    assert len(slices) == 4 and len({s.SeriesInstanceUID for s in slices}) == 1
    study, series = slices[0].StudyInstanceUID, slices[0].SeriesInstanceUID
    for ds in slices:
        deidentify(ds, salt=SALT)
    assert {ds.StudyInstanceUID for ds in slices} == {new_uid(study, SALT)}
    assert {ds.SeriesInstanceUID for ds in slices} == {new_uid(series, SALT)}
    assert len({ds.FrameOfReferenceUID for ds in slices}) == 1
    assert len({ds.SOPInstanceUID for ds in slices}) == 4
    for ds in slices:
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert len(ds.SOPInstanceUID) <= 64 and int(ds.SOPInstanceUID[5:]) < 2**128


def test_same_instance_with_different_private_tags_maps_to_the_same_uids() -> None:
    """deid-data's two copies of one CT slice (different private tags) get identical UIDs and metadata."""
    copies = [pydicom.dcmread(DEID_DATA / "humans" / f"ctbrain{i}.dcm") for i in (1, 2)]
    assert copies[0].SOPInstanceUID == copies[1].SOPInstanceUID
    for ds in copies:
        deidentify(ds, salt=SALT)
    assert copies[0].SOPInstanceUID == copies[1].SOPInstanceUID
    assert twin_metadata(copies[0]) == twin_metadata(copies[1])


def test_references_from_a_derived_object_follow_the_referenced_image() -> None:
    """A derived object's references (nested sequences) point at the de-identified CT image's new UIDs."""
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    derived = Dataset()
    derived.SOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"
    derived.SOPInstanceUID = generate_uid()
    derived.StudyInstanceUID = ct.StudyInstanceUID
    derived.FrameOfReferenceUID = ct.FrameOfReferenceUID
    instance = Dataset()
    instance.ReferencedSOPClassUID = ct.SOPClassUID
    instance.ReferencedSOPInstanceUID = ct.SOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = ct.SeriesInstanceUID
    series.ReferencedInstanceSequence = Sequence([instance])
    derived.ReferencedSeriesSequence = Sequence([series])
    source = Dataset()
    source.ReferencedSOPClassUID = ct.SOPClassUID
    source.ReferencedSOPInstanceUID = ct.SOPInstanceUID
    derived.SourceImageSequence = Sequence([source])

    deidentify(ct, salt=SALT)
    deidentify(derived, salt=SALT)
    ref_series = derived.ReferencedSeriesSequence[0]
    assert ref_series.SeriesInstanceUID == ct.SeriesInstanceUID
    assert ref_series.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == ct.SOPInstanceUID
    assert derived.SourceImageSequence[0].ReferencedSOPInstanceUID == ct.SOPInstanceUID
    assert derived.SourceImageSequence[0].ReferencedSOPClassUID == ct.SOPClassUID  # class UIDs are kept
    assert derived.StudyInstanceUID == ct.StudyInstanceUID
    assert derived.FrameOfReferenceUID == ct.FrameOfReferenceUID


def test_different_or_missing_salt_unlinks_uids() -> None:
    """Another salt, or none (a fresh random one), gives UIDs unrelated to those of the first import."""
    path = get_testdata_file("CT_small.dcm")
    uids = []
    for salt in (SALT, b"another-import", None, None):
        ds = pydicom.dcmread(path)
        deidentify(ds, salt=salt)
        uids.append(ds.StudyInstanceUID)
    assert len(set(uids)) == 4


def test_malformed_element_is_removed_and_reported() -> None:
    """An element that cannot be decoded is removed and listed; de-identification still completes."""
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    rows = Tag(0x00280010)  # kept by the profile, so its value must be read
    ds[rows] = RawDataElement(rows, "US", 3, b"\x01\x02\x03", 0, False, True)
    broken_sequence = Tag(0x00081115)  # Referenced Series Sequence, kept: its items must be read
    ds[broken_sequence] = RawDataElement(broken_sequence, "SQ", 5, b"\x01\x02\x03\x04\x05", 0, False, True)
    name = Tag(0x00100010)  # removed or emptied by the profile regardless of its bytes
    ds[name] = RawDataElement(name, "PN", 4, b"Doe^", 0, False, True)

    report = deidentify(ds, salt=SALT)
    assert rows not in ds and broken_sequence not in ds
    assert sorted(entry.split(":")[0] for entry in report.malformed) == ["ReferencedSeriesSequence", "Rows"]
    assert ds.PatientName == "" and ds.PatientIdentityRemoved == "YES"


def test_twin_metadata_carries_only_deidentified_attributes() -> None:
    """twin_metadata gives modality, geometry, equipment and replaced UIDs; never age or sex."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    assert ds.PatientSex and ds.PatientAge
    with pytest.raises(ValueError, match="not de-identified"):
        twin_metadata(ds)
    deidentify(ds, salt=SALT)
    meta = twin_metadata(ds)
    assert meta["Modality"] == "CT"
    assert meta["PixelSpacing"] == "0.661468\\0.661468" and float(meta["SliceThickness"]) == 5.0
    assert meta["ManufacturerModelName"] == "RHAPSODE"
    assert meta["StudyInstanceUID"] == ds.StudyInstanceUID and meta["SeriesInstanceUID"].startswith("2.25.")
    assert meta["PatientIdentityRemoved"] == "YES"
    assert meta["DeidentificationMethod"].startswith("DICOM PS3.15 E.2 Basic Application Level")
    assert "PatientAge" not in TWIN_KEYWORDS and "PatientSex" not in TWIN_KEYWORDS
    assert "PatientAge" not in meta and "PatientSex" not in meta
    assert all(isinstance(v, str) for v in meta.values())


def test_twin_metadata_reads_pixel_measures_of_enhanced_images() -> None:
    """For an enhanced image, spacing comes from the shared functional groups."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"
    ds.Modality = "MR"
    measures = Dataset()
    measures.PixelSpacing = [0.5, 0.5]
    measures.SliceThickness = 1.2
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    ds.ContentDate = ORIGINAL_DATE
    deidentify(ds)
    assert ds.ContentDate == "19000101"  # Type 1 in the enhanced MR IOD: dummy, not emptied
    meta = twin_metadata(ds)
    assert meta["PixelSpacing"] == "0.5\\0.5" and meta["SliceThickness"] == "1.2"
