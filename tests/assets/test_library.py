"""The twin library: bundled twins from installed packages' real data, the cache, imports (assets.library)."""

from __future__ import annotations

import json
import mmap
from pathlib import Path

import numpy as np
import pydicom
import pytest

from assets.cache import TwinCache
from assets.errors import AssetError, UnknownTwinError
from assets.library import BUNDLED, Library
from assets.validate import check, is_watertight

DICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


@pytest.fixture
def library(tmp_path: Path) -> Library:
    return Library(TwinCache(tmp_path / "cache"), tmp_path / "home")


def test_brain_is_both_real_pial_hemispheres_in_metres_with_levels(library: Library) -> None:
    twin = library.build("brain")
    assert [s.triangle_count for s in twin.structures] == [20_480, 20_480]
    names = [s.name for s in twin.structures]
    assert names[0].startswith("left") and names[1].startswith("right")
    left, right = (s.vertices.mean(axis=0) for s in twin.structures)
    assert left[0] < 0 < right[0]  # RAS: the left hemisphere lies at negative x
    size = np.ptp(twin.bounds(), axis=0)
    assert 0.12 < size[0] < 0.16 and 0.15 < size[1] < 0.20  # a brain is about 14 cm wide, 17 cm long
    for structure in twin.structures:
        assert is_watertight(structure) and check(structure) == []
        assert structure.lods and structure.lods[0].triangle_count < structure.triangle_count
    assert twin.provenance["sources"][0].endswith("pial_left.gii.gz")


def test_second_build_maps_the_cached_arrays(library: Library) -> None:
    first = library.build("brain")
    assert library.is_built("brain")
    again = library.build("brain")
    vertices = again.structures[0].vertices
    base = vertices
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    assert isinstance(base, mmap.mmap) and not vertices.flags.writeable
    assert np.array_equal(vertices, first.structures[0].vertices)
    assert library.cache.stats.hits >= 1


@pytest.mark.slow
def test_brain_mni_comes_from_the_template_volume(library: Library) -> None:
    """The MNI152 T1 template through marching cubes: one closed surface the size of a brain."""
    twin = library.build("brain-mni")
    (structure,) = twin.structures
    assert structure.triangle_count > 500_000
    assert twin.provenance["format"] == "nifti" and twin.provenance["threshold"] > 0
    size_mm = np.ptp(twin.bounds(), axis=0) * 1000.0
    assert np.all((size_mm > 120) & (size_mm < 200))
    assert is_watertight(structure)


def test_unknown_twin_names_the_known_ones(library: Library) -> None:
    with pytest.raises(UnknownTwinError, match="brain, brain-mni"):
        library.build("heart")


def test_import_records_a_named_twin_that_builds_from_the_cache(library: Library) -> None:
    twin = library.import_twin(DICOM_FILES / "CT_small.dcm", name="ct-slice")
    assert twin.metadata["PatientIdentityRemoved"] == "YES"
    names = [e.name for e in library.entries()]
    assert names == [*BUNDLED, "ct-slice"]
    again = library.build("ct-slice")
    assert again.triangle_count == twin.triangle_count and again.metadata == twin.metadata
    catalogue = json.loads(library.catalogue_path.read_text())
    record = catalogue["twins"]["ct-slice"]
    assert record["format"] == "dicom" and record["sha256"] == twin.provenance["sha256"]


@pytest.mark.parametrize("name", ["brain", "../escape", "a b"])
def test_import_refuses_bundled_and_unsafe_names(library: Library, name: str) -> None:
    with pytest.raises(AssetError, match=r"name|bundled"):
        library.import_twin(DICOM_FILES / "CT_small.dcm", name=name)


def test_damaged_catalogue_is_a_clear_error(library: Library) -> None:
    library.root.mkdir(parents=True)
    library.catalogue_path.write_text("{not json")
    with pytest.raises(AssetError, match="catalogue"):
        library.entries()


def test_reimport_under_the_same_name_replaces_the_old_cache_entry(library: Library, tmp_path: Path) -> None:
    """Importing another file as 'ct' removes the first import's cache entry; only the new one is left."""
    first = library.import_twin(DICOM_FILES / "CT_small.dcm", name="ct")
    old = library.cache.path_for(library.key("ct"))
    assert old.is_dir() and first.name == "ct"
    library.import_twin(DICOM_FILES / "CT_small.dcm", name="ct", threshold=0.0)
    new = library.cache.path_for(library.key("ct"))
    assert new != old and new.is_dir() and not old.exists()
    assert sorted(p.name for p in library.cache.root.iterdir() if not p.name.startswith(".")) == [new.name]
    library.import_twin(DICOM_FILES / "CT_small.dcm", name="other")
    assert new.is_dir()  # another name's import leaves it alone


def test_file_and_folder_names_reach_no_written_byte(library: Library, tmp_path: Path) -> None:
    """`Doe_John/Doe_John.dcm` (a real CT slice whose PatientName is Doe^John too) and `Doe_John.stl`
    import under neutral names; neither the catalogue, the cache entries nor the exported GLBs hold
    any spelling of the name, and the twins' names say modality or format and a hash."""
    import trimesh

    from assets.export import export_glb

    folder = tmp_path / "Doe_John"
    folder.mkdir()
    ds = pydicom.dcmread(DICOM_FILES / "CT_small.dcm")
    ds.PatientName = "Doe^John"
    ds.save_as(folder / "Doe_John.dcm")
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=40.0)
    mesh.export(tmp_path / "Doe_John.stl")
    twins = [library.import_twin(folder / "Doe_John.dcm"), library.import_twin(folder),
             library.import_twin(tmp_path / "Doe_John.stl")]
    assert [t.name.split("-")[0] for t in twins] == ["ct", "ct", "stl"]
    assert all(s.name == "surface" for t in twins for s in t.structures)
    out = tmp_path / "exports"
    written = [export_glb(t, out / f"{i}.glb") for i, t in enumerate(twins)]
    written += [library.catalogue_path, *(p for p in library.cache.root.rglob("*") if p.is_file())]
    assert len(written) >= 3 + 1 + 4  # the folder and its one file are the same content: one twin
    for path in written:
        data = path.read_bytes().lower()
        for spelling in (b"doe_john", b"doe^john", b"doe john", b"john"):
            assert spelling not in data, f"{spelling!r} in {path.relative_to(tmp_path)}"
