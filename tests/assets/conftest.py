"""Fixtures shared by the asset tests: writers of files that no library at hand writes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

#: One region of a structure set: name, 8-bit display colour, contours (each an (N, 3) array, LPS mm).
Region = tuple[str, tuple[int, int, int], list[np.ndarray]]


@pytest.fixture(scope="session")
def dicom_object() -> Callable[[str, str], Any]:
    """``new(sop_class_uid, modality)``: an empty DICOM dataset with its file meta information, ready
    to be filled and saved as a Part 10 file."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    def new(sop_class_uid: str, modality: str) -> Dataset:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class_uid
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = sop_class_uid, meta.MediaStorageSOPInstanceUID, modality
        return ds

    return new


@pytest.fixture(scope="session")
def write_rtstruct(dicom_object: Callable[[str, str], Any]) -> Callable[..., Path]:
    """A writer of DICOM RT Structure Sets as planning systems save them (highdicom writes none):
    ``write(path, regions, declared=None, frame_of_reference=None)``, one ROI per region with its
    CLOSED_PLANAR contours; ``declared`` forges every contour's NumberOfContourPoints."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import generate_uid

    def write(path: Path, regions: list[Region], declared: int | None = None,
              frame_of_reference: str | None = None) -> Path:
        ds = dicom_object("1.2.840.10008.5.1.4.1.1.481.3", "RTSTRUCT")
        ds.PatientName, ds.PatientID, ds.StructureSetLabel = "Doe^John", "12345678", "head"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.StructureSetROISequence, ds.ROIContourSequence, ds.RTROIObservationsSequence = Sequence(), Sequence(), Sequence()
        for number, (name, colour, contours) in enumerate(regions, start=1):
            roi = Dataset()
            roi.ROINumber, roi.ROIName, roi.ROIGenerationAlgorithm = number, name, "AUTOMATIC"
            roi.ReferencedFrameOfReferenceUID = frame_of_reference or generate_uid()
            ds.StructureSetROISequence.append(roi)
            region = Dataset()
            region.ReferencedROINumber, region.ROIDisplayColor = number, list(colour)
            region.ContourSequence = Sequence()
            for points in contours:
                item = Dataset()
                item.ContourGeometricType = "CLOSED_PLANAR"
                item.NumberOfContourPoints = declared if declared is not None else len(points)
                item.ContourData = [round(float(v), 4) for v in np.asarray(points).ravel()]
                region.ContourSequence.append(item)
            ds.ROIContourSequence.append(region)
            observation = Dataset()
            observation.ObservationNumber, observation.ReferencedROINumber = number, number
            observation.RTROIInterpretedType = "ORGAN"
            ds.RTROIObservationsSequence.append(observation)
        ds.save_as(path, enforce_file_format=True)
        return path

    return write
