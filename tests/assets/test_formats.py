"""The imaging formats of issue 17, each written by its own library (or, where Slicer's own code is
the only writer, with the header fields Slicer writes) from real data, then imported: NRRD and Slicer
segmentations, MetaImage, VTK polydata, label maps with colour tables, DICOM SEG and RTSTRUCT.

Real data: the CT head in Debian's invesalius-examples (``Cranium.inv3``), the AAL atlas in Debian's
mricron-data, and pydicom's test files. Bounds are checked in mm against the voxels they come from.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import nilearn
import numpy as np
import pydicom
import pytest

from assets.atlas import AAL_SOURCES, read_labels, read_lut
from assets.loaders import detect_format, load
from assets.loaders.inv3 import read_inv3
from assets.loaders.labels import rgb_color
from assets.loaders.volume import read_nifti
from assets.skull import SOURCE
from assets.twin import Twin
from assets.validate import check

DICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
FSAVERAGE5 = Path(nilearn.__file__).parent / "datasets" / "data" / "fsaverage5"
#: The bone threshold InVesalius used on this CT (HU).
BONE_HU = 226.0
#: The CT crop: the lower 24 slices (maxilla, teeth, rami), rows and columns trimmed to the head.
CROP = (slice(0, 24), slice(40, 200), slice(40, 220))
#: AAL labels used for segmentations: Precentral_L, Postcentral_L, Frontal_Sup_L.
AAL_VALUES = (1, 57, 3)


def _shifted(affine: np.ndarray, start: tuple[int, int, int]) -> np.ndarray:
    """The affine of a crop that starts at voxel ``start``."""
    out = affine.copy()
    out[:3, 3] = affine[:3, :3] @ np.asarray(start, dtype=np.float64) + affine[:3, 3]
    return out


def _box_mm(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(2, 3) min and max corners (mm) of the centres of the voxels in ``mask``, through ``affine``."""
    index = np.argwhere(mask).astype(np.float64)
    points = index @ affine[:3, :3].T + affine[:3, 3]
    return np.array([points.min(axis=0), points.max(axis=0)])


def _assert_bounds_near(actual_mm: np.ndarray, expected_mm: np.ndarray, tolerance_mm: float) -> None:
    """A surface around voxel centres lies at most about one voxel outside their box, never inside by more."""
    assert np.all(np.abs(actual_mm - expected_mm) <= tolerance_mm), f"{actual_mm} vs {expected_mm}"


@pytest.fixture(scope="module")
def ct() -> tuple[np.ndarray, np.ndarray]:
    """(int16 HU voxels, RAS affine mm) of a real CT head crop: 24 x 160 x 180 voxels."""
    volume = read_inv3(SOURCE)
    data = volume.data[CROP].astype(np.int16)
    return data, _shifted(volume.affine, (CROP[0].start, CROP[1].start, CROP[2].start))


@pytest.fixture(scope="module")
def aal() -> tuple[np.ndarray, np.ndarray]:
    """(int16 labels, RAS affine mm) of the AAL atlas, cropped to the labels in ``AAL_VALUES``."""
    volume = read_nifti(AAL_SOURCES[0])
    labels = np.rint(volume.data).astype(np.int16)
    keep = np.isin(labels, AAL_VALUES)
    box = np.argwhere(keep)
    lo, hi = box.min(axis=0) - 2, box.max(axis=0) + 3
    crop = labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    return np.where(np.isin(crop, AAL_VALUES), crop, 0).astype(np.int16), _shifted(volume.affine, tuple(lo))


def _bone_twin_matches(twin: Twin, ct: tuple[np.ndarray, np.ndarray]) -> None:
    data, affine = ct
    assert twin.source_units == "mm" and twin.provenance["threshold"] == BONE_HU
    _assert_bounds_near(twin.bounds() * 1000.0, _box_mm(data >= BONE_HU, affine), 1.6)


# ------------------------------------------------------------------------------------------- NRRD


def _nrrd_header(affine_ras: np.ndarray, space: str) -> dict[str, object]:
    to_space = np.diag([-1.0, -1.0, 1.0, 1.0]) if space == "left-posterior-superior" else np.eye(4)
    spaced = to_space @ affine_ras
    return {"space": space, "space directions": spaced[:3, :3].T, "space origin": spaced[:3, 3]}


@pytest.mark.parametrize("space", ["left-posterior-superior", "right-anterior-superior"])
def test_nrrd_ct_lands_in_ras_from_either_space(tmp_path: Path, ct: tuple[np.ndarray, np.ndarray], space: str) -> None:
    """The CT head written by pynrrd in LPS (as ITK writes) and in RAS (as Slicer 5 writes), gzip:
    the bone surface's bounds match the bone voxels' RAS box in mm either way."""
    import nrrd

    data, affine = ct
    path = tmp_path / "head.nrrd"
    nrrd.write(str(path), data, {**_nrrd_header(affine, space), "encoding": "gzip"})
    assert detect_format(path) == "nrrd"
    twin = load(path, threshold=BONE_HU)
    _bone_twin_matches(twin, ct)
    assert all(not [p for p in check(s) if p.fatal] for s in twin.structures)


def test_nhdr_reads_its_detached_raw_data(tmp_path: Path, ct: tuple[np.ndarray, np.ndarray]) -> None:
    """A detached header (``.nhdr``) beside its raw data file, as Slicer and teem write it."""
    import nrrd

    data, affine = ct
    path = tmp_path / "head.nhdr"
    nrrd.write(str(path), data, {**_nrrd_header(affine, "left-posterior-superior"), "encoding": "raw"})
    assert (tmp_path / "head.raw").exists() and "data file: head.raw" in path.read_text()
    twin = load(path, threshold=BONE_HU)
    _bone_twin_matches(twin, ct)


# ------------------------------------------------------------------------------------------- Slicer segmentation


def _slicer_fields(segments: list[tuple[str, int, int, tuple[float, float, float], str]]) -> dict[str, str]:
    """The ``SegmentN_*`` fields Slicer (5.x) writes into a .seg.nrrd header."""
    fields = {"Segmentation_MasterRepresentation": "Binary labelmap",
              "Segmentation_ContainedRepresentationNames": "Binary labelmap|Closed surface|",
              "Segmentation_ConversionParameters": "Smoothing factor|0.5|Smoothing factor.&",
              "Segmentation_ReferenceImageExtentOffset": "0 0 0"}
    for index, (name, layer, value, color, code) in enumerate(segments):
        fields.update({
            f"Segment{index}_ID": f"Segment_{index + 1}",
            f"Segment{index}_Name": name,
            f"Segment{index}_NameAutoGenerated": "0",
            f"Segment{index}_Color": " ".join(f"{c:.6f}" for c in color),
            f"Segment{index}_ColorAutoGenerated": "0",
            f"Segment{index}_LabelValue": str(value),
            f"Segment{index}_Layer": str(layer),
            f"Segment{index}_Extent": "0 1 0 1 0 1",
            f"Segment{index}_Tags": "Segmentation.Status:inprogress|TerminologyEntry:Segmentation category and type - "
                                    f"3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure~SCT^{code}^{name}"
                                    "~^^~Anatomic codes - DICOM master list~^^~^^|",
        })
    return fields


def test_slicer_segmentation_gives_one_named_coloured_structure_per_segment(
        tmp_path: Path, aal: tuple[np.ndarray, np.ndarray]) -> None:
    """Three AAL regions as a one-layer .seg.nrrd in LPS: names, colours, SCT codes and bounds come
    through, in the header's order."""
    import nrrd

    labels, affine = aal
    names = read_labels(AAL_SOURCES[1])
    colors = [(0.9, 0.3, 0.2), (0.2, 0.6, 0.9), (0.95, 0.85, 0.1)]
    segments = [(names[v], 0, v, colors[i], str(1000 + i)) for i, v in enumerate(AAL_VALUES)]
    header = {**_nrrd_header(affine, "left-posterior-superior"), "encoding": "gzip", **_slicer_fields(segments)}
    path = tmp_path / "regions.seg.nrrd"
    nrrd.write(str(path), labels.astype(np.uint8), header)
    assert detect_format(path) == "seg-nrrd"
    twin = load(path)
    assert [s.name for s in twin.structures] == [names[v] for v in AAL_VALUES]
    for structure, value, color, (*_, code) in zip(twin.structures, AAL_VALUES, colors, segments, strict=True):
        assert structure.color == rgb_color(list(color), 1.0)
        assert structure.codes["SCT"] == code
        _assert_bounds_near(structure.bounds() * 1000.0, _box_mm(labels == value, affine), 1.5)
        assert check(structure) == [], structure.name


def test_slicer_segmentation_layers_hold_overlapping_segments(tmp_path: Path, aal: tuple[np.ndarray, np.ndarray]) -> None:
    """Overlapping segments sit in separate layers (a 4-D .seg.nrrd, first axis 'list'): the union of
    two regions in layer 1 overlaps both regions in layer 0, and all three come out."""
    import nrrd

    labels, affine = aal
    first, second = AAL_VALUES[0], AAL_VALUES[1]
    layer0 = np.where(np.isin(labels, (first, second)), labels, 0).astype(np.uint8)
    layer0[layer0 == second] = 2
    layer0[layer0 == first] = 1
    layer1 = np.isin(labels, (first, second)).astype(np.uint8)
    stack = np.stack([layer0, layer1])
    segments = [("precentral", 0, 1, (1.0, 0.0, 0.0), "1"), ("postcentral", 0, 2, (0.0, 1.0, 0.0), "2"),
                ("sensorimotor strip", 1, 1, (0.0, 0.0, 1.0), "3")]
    header = {**_nrrd_header(affine, "right-anterior-superior"), "encoding": "gzip", **_slicer_fields(segments),
              "kinds": ["list", "domain", "domain", "domain"]}
    header["space directions"] = np.vstack([np.full(3, np.nan), np.asarray(header["space directions"])])
    path = tmp_path / "strip.seg.nrrd"
    nrrd.write(str(path), stack, header)
    twin = load(path)
    assert [s.name for s in twin.structures] == ["precentral", "postcentral", "sensorimotor strip"]
    union = _box_mm(layer1 > 0, affine)
    _assert_bounds_near(twin.structure("sensorimotor strip").bounds() * 1000.0, union, 1.5)
    _assert_bounds_near(twin.structure("postcentral").bounds() * 1000.0, _box_mm(labels == second, affine), 1.5)


# ------------------------------------------------------------------------------------------- MetaImage


def _metaimage_fields(affine_ras: np.ndarray) -> dict[str, object]:
    """MetaIO geometry as ITK writes it: LPS, directions as columns (metaimageio's convention)."""
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_ras
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    return {"ElementSpacing": spacing, "TransformMatrix": lps[:3, :3] / spacing, "Offset": lps[:3, 3]}


@pytest.mark.parametrize("suffix", [".mha", ".mhd"])
def test_metaimage_ct_lands_in_ras(tmp_path: Path, ct: tuple[np.ndarray, np.ndarray], suffix: str) -> None:
    """The CT head written by metaimageio, inline and compressed (.mha) or beside a raw file (.mhd),
    with the permuted, mirrored axis directions of this scan: bounds match the bone voxels' RAS box,
    the modality comes through."""
    import metaimageio

    data, affine = ct
    path = tmp_path / f"head{suffix}"
    metaimageio.write(path, data.transpose(2, 1, 0), CompressedData=suffix == ".mha", Modality="MET_MOD_CT",
                      **_metaimage_fields(affine))
    assert detect_format(path) == "metaimage"
    if suffix == ".mhd":
        assert (tmp_path / "head.raw").exists()
    twin = load(path, threshold=BONE_HU)
    _bone_twin_matches(twin, ct)
    assert twin.provenance["modality"] == "CT"


# ------------------------------------------------------------------------------------------- VTK polydata


@pytest.fixture(scope="module")
def pial_mm() -> tuple[np.ndarray, np.ndarray]:
    """(vertices mm, faces) of a bundled twin's surface: fsaverage5's left pial surface (nilearn)."""
    twin = load(FSAVERAGE5 / "pial_left.gii.gz")
    structure = twin.structures[0]
    return structure.vertices.astype(np.float64) * 1000.0, structure.faces


def _polydata(vertices: np.ndarray, faces: np.ndarray) -> object:
    from vtkmodules.util.numpy_support import numpy_to_vtk, numpy_to_vtkIdTypeArray
    from vtkmodules.vtkCommonCore import vtkPoints
    from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData

    points = vtkPoints()
    points.SetData(numpy_to_vtk(np.ascontiguousarray(vertices, dtype=np.float32), deep=True))
    cells = vtkCellArray()
    offsets = np.arange(0, 3 * len(faces) + 1, 3, dtype=np.int64)
    cells.SetData(numpy_to_vtkIdTypeArray(offsets, deep=True),
                  numpy_to_vtkIdTypeArray(np.ascontiguousarray(faces.ravel(), dtype=np.int64), deep=True))
    polydata = vtkPolyData()
    polydata.SetPoints(points)
    polydata.SetPolys(cells)
    return polydata


@pytest.mark.parametrize(("suffix", "mode"), [(".vtk", "ascii"), (".vtk", "binary"), (".vtp", "appended"),
                                              (".vtp", "ascii")])
def test_vtk_polydata_keeps_a_bundled_surface(tmp_path: Path, pial_mm: tuple[np.ndarray, np.ndarray],
                                              suffix: str, mode: str) -> None:
    """The brain twin's pial surface written by VTK's own writers, legacy and XML, each encoding:
    the same 20,480 triangles, the same bounds in mm, stated as detected millimetres."""
    from vtkmodules.vtkIOLegacy import vtkPolyDataWriter
    from vtkmodules.vtkIOXML import vtkXMLPolyDataWriter

    vertices, faces = pial_mm
    path = tmp_path / f"cortex{suffix}"
    if suffix == ".vtk":
        writer = vtkPolyDataWriter()
        writer.SetFileTypeToBinary() if mode == "binary" else writer.SetFileTypeToASCII()
    else:
        writer = vtkXMLPolyDataWriter()
        writer.SetDataModeToAppended() if mode == "appended" else writer.SetDataModeToAscii()
    writer.SetFileName(str(path))
    writer.SetInputData(_polydata(vertices, faces))
    assert writer.Write() == 1
    assert detect_format(path) == suffix[1:]
    twin = load(path)
    assert twin.triangle_count == len(faces) and (twin.source_units, twin.units_detected) == ("mm", True)
    np.testing.assert_allclose(twin.bounds() * 1000.0, [vertices.min(axis=0), vertices.max(axis=0)], atol=1e-3)


def test_slicer_lps_model_is_flipped_to_ras(tmp_path: Path, pial_mm: tuple[np.ndarray, np.ndarray]) -> None:
    """3D Slicer saves models in LPS and says so (``SPACE=LPS`` in the header): x and y change sign."""
    from vtkmodules.vtkIOLegacy import vtkPolyDataWriter

    vertices, faces = pial_mm
    lps = vertices * [-1.0, -1.0, 1.0]
    path = tmp_path / "model.vtk"
    writer = vtkPolyDataWriter()
    writer.SetHeader("vtk output SPACE=LPS")
    writer.SetFileName(str(path))
    writer.SetInputData(_polydata(lps, faces))
    assert writer.Write() == 1
    twin = load(path)
    np.testing.assert_allclose(twin.bounds() * 1000.0, [vertices.min(axis=0), vertices.max(axis=0)], atol=1e-3)
    assert any("SPACE=LPS" in note for note in twin.provenance["notes"])


def test_invesalius_skull_surface_vtp_imports(tmp_path: Path) -> None:
    """The skull surface InVesalius saved inside Cranium.inv3 (zlib-compressed, base64 XML, triangle
    strips): the strips give back every triangle they were made from, and the skull measures as a
    skull in mm."""
    import re
    import tarfile

    with tarfile.open(SOURCE) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("surface_1.vtp"))
        data = archive.extractfile(member).read()  # type: ignore[union-attr]
    path = tmp_path / "skull.vtp"
    path.write_bytes(data)
    # 53,543 triangle strips; the field data keeps the ids of the 280,251 triangles they were made from
    strips = int(re.findall(rb'NumberOfStrips="(\d+)"', data)[0])
    triangles = int(re.findall(rb'Name="vtkOriginalCellIds" NumberOfTuples="(\d+)"', data)[0])
    twin = load(path)
    assert twin.provenance["format"] == "vtp" and twin.source_units == "mm"
    assert strips > 50_000 and twin.triangle_count == triangles
    size = np.ptp(twin.bounds(), axis=0) * 1000.0
    assert 120 < size.max() < 260


# ------------------------------------------------------------------------------------------- label maps


def _colour_table(kind: str, names: dict[int, str], lut: np.ndarray) -> str:
    """AAL's names and MRIcron colours as each tool writes its colour table."""
    if kind == "ctbl":  # 3D Slicer's vtkMRMLColorTableStorageNode
        lines = ["# Color table file aal.ctbl", f"# {len(names) + 1} values", "0 Background 0 0 0 0"]
        lines += [f"{v} {names[v]} {lut[v][0]} {lut[v][1]} {lut[v][2]} 255" for v in sorted(names)]
    elif kind == "freesurfer":  # FreeSurferColorLUT.txt's columns
        lines = ["#$Id: FreeSurferColorLUT.txt $", "", "#No. Label Name:                            R   G   B   A", "",
                 f"{0:<5d}{'Unknown':<40s}{0:>4d}{0:>4d}{0:>4d}{0:>4d}"]
        lines += [f"{v:<5d}{names[v]:<40s}{lut[v][0]:>4d}{lut[v][1]:>4d}{lut[v][2]:>4d}{0:>4d}" for v in sorted(names)]
    else:  # ITK-SNAP's label description file
        lines = ["################################################", "# ITK-SnAP Label Description File",
                 "# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL", "################################################",
                 '    0     0    0    0        0  0  0    "Clear Label"']
        lines += [f'{v:5d} {lut[v][0]:5d} {lut[v][1]:4d} {lut[v][2]:4d} {1:8d} {1:2d} {1:2d}    "{names[v]} region"'
                  for v in sorted(names)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("table", "volume"), [("ctbl", ".nii.gz"), ("freesurfer", ".nii.gz"), ("itksnap", ".nii.gz"),
                                               ("ctbl", ".nrrd")])
def test_label_map_with_a_colour_table_gives_named_coloured_structures(
        tmp_path: Path, aal: tuple[np.ndarray, np.ndarray], table: str, volume: str) -> None:
    """Three AAL regions as a label map (NIfTI or NRRD) with the whole atlas's colour table in each
    tool's format: one structure per label present, named and coloured by the table, where the
    voxels are."""
    import nibabel as nib
    import nrrd

    labels, affine = aal
    names = read_labels(AAL_SOURCES[1])
    lut = read_lut(AAL_SOURCES[2])
    path = tmp_path / f"regions{volume}"
    if volume == ".nrrd":
        nrrd.write(str(path), labels.astype(np.uint8), {**_nrrd_header(affine, "left-posterior-superior"),
                                                        "encoding": "gzip"})
    else:
        nib.save(nib.Nifti1Image(labels, affine), path)
    colours = tmp_path / f"aal-colours.{'ctbl' if table == 'ctbl' else 'txt'}"
    colours.write_text(_colour_table(table, names, lut))
    twin = load(path, labels=colours)
    suffix = " region" if table == "itksnap" else ""
    assert [s.name for s in twin.structures] == [names[v] + suffix for v in sorted(AAL_VALUES)]
    for structure, value in zip(twin.structures, sorted(AAL_VALUES), strict=True):
        assert structure.color == rgb_color(lut[value], 255.0)
        assert structure.codes["label"] == str(value)
        _assert_bounds_near(structure.bounds() * 1000.0, _box_mm(labels == value, affine), 1.5)
    assert twin.source_units == "mm" and twin.provenance["options"]["labels"]


# ------------------------------------------------------------------------------------------- DICOM SEG and RTSTRUCT


@pytest.fixture(scope="module")
def ct_series(ct: tuple[np.ndarray, np.ndarray]) -> list[pydicom.Dataset]:
    """The first 20 slices of the CT crop as a DICOM CT series (pydicom's CT_small as the template):
    rows run posterior, columns to the patient's left, in LPS as DICOM states positions."""
    data, affine = ct
    template = pydicom.dcmread(DICOM_FILES / "CT_small.dcm")
    study, series, frame = (pydicom.uid.generate_uid() for _ in range(3))
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    images = []
    for k in range(20):
        ds = copy.deepcopy(template)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.Rows, ds.Columns = data.shape[1], data.shape[2]
        ds.PixelSpacing = [float(np.linalg.norm(lps[:3, 1])), float(np.linalg.norm(lps[:3, 2]))]
        ds.ImageOrientationPatient = [*(lps[:3, 2] / np.linalg.norm(lps[:3, 2])), *(lps[:3, 1] / np.linalg.norm(lps[:3, 1]))]
        ds.ImagePositionPatient = [float(x) for x in (lps @ [k, 0, 0, 1])[:3]]
        ds.SliceThickness = ds.SpacingBetweenSlices = float(np.linalg.norm(lps[:3, 0]))
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = np.ascontiguousarray(data[k]).tobytes()
        images.append(ds)
    return images


def test_dicom_seg_gives_one_named_coloured_coded_structure_per_segment(
        tmp_path: Path, ct: tuple[np.ndarray, np.ndarray], ct_series: list[pydicom.Dataset]) -> None:
    """Bone and dense bone of the CT head, overlapping, as a binary DICOM SEG written by highdicom
    (empty frames left out, as it does by default): names, colours, SCT codes and bounds in RAS,
    metadata de-identified."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    data, affine = ct
    part = data[:20]
    masks = np.stack([part >= BONE_HU, part >= 1200], axis=-1)
    colours = [(230, 220, 180), (250, 250, 250)]
    descriptions = [
        hd.seg.SegmentDescription(number, label, codes.SCT.Tissue, kind, hd.seg.SegmentAlgorithmTypeValues.MANUAL,
                                  display_color=hd.color.CIELabColor.from_rgb(*colour))
        for number, label, kind, colour in ((1, "Bone", codes.SCT.Bone, colours[0]),
                                            (2, "Dense bone", codes.SCT.Bone, colours[1]))]
    seg = hd.seg.Segmentation(ct_series, masks, hd.seg.SegmentationTypeValues.BINARY, descriptions,
                              pydicom.uid.generate_uid(), 2, pydicom.uid.generate_uid(), 1, "medverse", "tests", "1",
                              "1")
    path = tmp_path / "bone.dcm"
    seg.save_as(path)
    twin = load(path)
    assert twin.provenance["format"] == "dicom-seg"
    assert [s.name for s in twin.structures] == ["Bone", "Dense bone"]
    for structure, mask, colour in zip(twin.structures, np.moveaxis(masks, -1, 0), colours, strict=True):
        assert structure.codes["SCT"] == "272673000"  # bone
        np.testing.assert_allclose(structure.color, rgb_color(list(colour), 255.0), atol=0.02)
        _assert_bounds_near(structure.bounds() * 1000.0, _box_mm(mask, affine), 1.6)
    assert twin.metadata["PatientIdentityRemoved"] == "YES" and "PatientName" not in twin.metadata


def test_rtstruct_contours_of_the_ct_head_become_closed_surfaces(
        tmp_path: Path, ct: tuple[np.ndarray, np.ndarray], ct_series: list[pydicom.Dataset],
        write_rtstruct: Callable[..., Path]) -> None:
    """The head outline and the bone of 12 CT slices, contoured slice by slice (bone with its holes:
    the inner contours) and written as an RTSTRUCT: each region becomes a surface whose bounds match
    its voxels in RAS, named and coloured; the patient's name does not come through."""
    from skimage import measure

    data, affine = ct
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    masks = {"Head": data[:12] > -300, "Bone": data[:12] >= BONE_HU}
    regions = []
    for (name, mask), colour in zip(masks.items(), [(255, 200, 150), (240, 230, 200)], strict=True):
        contours = []
        for k in range(mask.shape[0]):
            for traced in measure.find_contours(np.pad(mask[k], 1).astype(np.float32), 0.5):
                line = traced[::2] if len(traced) > 16 else traced  # thinned, as planning systems store them
                index = np.column_stack([np.full(len(line), k), line - 1.0, np.ones(len(line))])  # (slice, row, col, 1)
                contours.append((index @ lps.T)[:, :3])
        regions.append((name, colour, contours))
    path = write_rtstruct(tmp_path / "structures.dcm", regions, frame_of_reference=ct_series[0].FrameOfReferenceUID)
    twin = load(path)
    assert twin.provenance["format"] == "rtstruct"
    assert [s.name for s in twin.structures] == ["Head", "Bone"]
    for structure, (name, colour, _) in zip(twin.structures, regions, strict=True):
        assert structure.color == rgb_color(list(colour), 255.0)
        _assert_bounds_near(structure.bounds() * 1000.0, _box_mm(masks[name], affine), 2.0)
    assert "Doe" not in repr(twin.metadata) and twin.metadata["PatientIdentityRemoved"] == "YES"


def test_a_study_folder_adds_the_structures_of_the_seg_and_rtstruct_beside_its_images(
        tmp_path: Path, ct: tuple[np.ndarray, np.ndarray], ct_series: list[pydicom.Dataset],
        write_rtstruct: Callable[..., Path]) -> None:
    """A folder as a PACS export leaves it: the CT slices, a SEG and an RTSTRUCT of the same frame of
    reference. The images make the surface, and the segment and the region join it as structures where
    the CT puts them; an RTSTRUCT of another frame of reference and an unreadable SEG are left out. Each
    is counted in a note that names no file (file names are patient data)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    data, affine = ct
    study = tmp_path / "Doe_John"
    study.mkdir()
    for k, ds in enumerate(ct_series):
        ds.save_as(study / f"ct{k:03d}.dcm", enforce_file_format=True)
    description = hd.seg.SegmentDescription(1, "Bone", codes.SCT.Tissue, codes.SCT.Bone,
                                            hd.seg.SegmentAlgorithmTypeValues.MANUAL)
    seg = hd.seg.Segmentation(ct_series, (data[:20] >= BONE_HU)[..., None], hd.seg.SegmentationTypeValues.BINARY,
                              [description], pydicom.uid.generate_uid(), 2, pydicom.uid.generate_uid(), 1,
                              "medverse", "tests", "1", "1")
    seg.save_as(study / "Doe_John_seg.dcm")
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    square = [np.array([[0.0, 0.0, z, 1.0], [0.0, 20.0, z, 1.0], [0.0, 20.0, z + 20.0, 1.0], [0.0, 0.0, z + 20.0, 1.0]]) @ lps.T
              for z in (5.0,)]  # fmt: skip
    write_rtstruct(study / "Doe_John_rt.dcm", [("Box", (255, 0, 0), [c[:, :3] for c in square])],
                   frame_of_reference=ct_series[0].FrameOfReferenceUID)
    twin = load(study, threshold=BONE_HU)
    assert twin.provenance["format"] == "dicom"
    assert sorted(s.name for s in twin.structures) == ["Bone", "Box", "surface"]  # the folder's file order
    notes = [n for n in twin.provenance["notes"] if "beside the images" in n]
    assert notes == ["added 2 structures from the 1 DICOM SEG object and 1 RTSTRUCT object beside the images"]
    surface, bone, box = (twin.structure(name) for name in ("surface", "Bone", "Box"))
    # the segment (the bone of the first 20 slices) lies within the CT's bone surface, in the same place
    lo, hi = surface.vertices.min(axis=0), surface.vertices.max(axis=0)
    assert np.all(bone.vertices.min(axis=0) >= lo - 0.002) and np.all(bone.vertices.max(axis=0) <= hi + 0.002)
    single = load(study / "Doe_John_seg.dcm")  # the SEG imported by itself, in its own twin's frame
    np.testing.assert_allclose(np.ptp(bone.vertices, axis=0), np.ptp(single.structures[0].vertices, axis=0), atol=1e-4)
    assert box.color != surface.color and "Doe" not in repr(twin.provenance)

    # another frame of reference, and a SEG that cannot be read: left out, counted
    write_rtstruct(study / "Doe_John_rt.dcm", [("Box", (255, 0, 0), [c[:, :3] for c in square])],
                   frame_of_reference=pydicom.uid.generate_uid())
    broken = pydicom.dcmread(study / "Doe_John_seg.dcm")
    del broken.PixelData
    broken.save_as(study / "Doe_John_seg.dcm")
    twin = load(study, threshold=BONE_HU)
    assert [s.name for s in twin.structures] == ["surface"]
    assert [n for n in twin.provenance["notes"] if "RTSTRUCT" in n or "SEG" in n] == [
        "1 RTSTRUCT object in another frame of reference than the images: not added (import each file by itself)",
        "1 DICOM SEG object beside the images could not be read: not added"]


def test_pydicom_rtstruct_outline_and_its_markers() -> None:
    """pydicom's own RTSTRUCT: the 'patient' outline (three contours 10 mm apart) becomes a surface
    over the contours' extent; the two isocentre markers (POINT contours) are noted, not surfaced."""
    twin = load(DICOM_FILES / "rtstruct.dcm")
    assert [s.name for s in twin.structures] == ["patient"]
    assert twin.structures[0].color == rgb_color([220, 160, 120], 255.0)
    lo, hi = twin.bounds() * 1000.0
    np.testing.assert_allclose(lo[:2], [-200.0, -150.0], atol=2.0)  # LPS (+-200, +-150) is symmetric in RAS
    np.testing.assert_allclose(hi[:2], [200.0, 150.0], atol=2.0)
    assert -205.0 < lo[2] < -200.0 and -180.0 < hi[2] < -175.0  # planes -200..-180, closed within half a gap
    assert sum("Isocenter" in note for note in twin.provenance["notes"]) == 2
