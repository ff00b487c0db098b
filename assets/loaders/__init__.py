"""Load files into ``Twin`` objects: meshes, GIFTI surfaces, NIfTI volumes and DICOM series.

``load`` picks the reader by suffix (or, for unknown suffixes, by content), converts to metres
(``assets.units``), repairs and validates (``assets.validate``), and records what it did in
``twin.provenance``. It raises ``AssetError`` subclasses only: any other exception from a
third-party parser is wrapped into ``UnreadableAssetError`` with a one-line message naming the file.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from collections.abc import Callable
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from assets import regions
from assets import units as units_mod
from assets import validate as validation
from assets.errors import AssetError, EmptyMeshError, ResourceLimitError, UnreadableAssetError, UnsupportedFormatError
from assets.loaders import formats
from assets.loaders.limits import DEFAULT_LIMITS, Limits, check_count, read_source
from assets.twin import UNIT_SCALE, Structure, Twin

log = logging.getLogger(__name__)

#: Suffixes (lower case, longest first) and the format each one means.
SUFFIXES: dict[str, str] = {
    **formats.SUFFIXES,
    ".gii.gz": "gifti", ".nii.gz": "nifti", ".gii": "gifti", ".nii": "nifti", ".dcm": "dicom",
    ".dicom": "dicom", ".glb": "glb", ".gltf": "gltf", ".obj": "obj", ".stl": "stl", ".ply": "ply",
}

#: Formats whose coordinates have a stated unit.
_DECLARED_UNITS = {"glb": "m", "gltf": "m", "gifti": "mm", "dicom": "mm"}

Progress = Callable[[str, float], None]


def _sniff(head: bytes) -> str | None:
    """The format whose signature ``head`` (a file's first bytes) carries, if any.

    Only signatures no other format starts with count here; STL has none (see ``_looks_like_stl``).
    """
    if head[128:132] == b"DICM":
        return "dicom"
    if head[:4] == b"glTF":
        return "glb"
    if head[:4] == b"ply\n" or head[:5] == b"ply\r\n":
        return "ply"
    return None


def _looks_like_stl(head: bytes, size: int) -> bool:
    """ASCII STL opens with ``solid`` and its first facet; binary STL's triangle count (bytes 80-84)
    must account for the file's size exactly, 84 + 50 bytes per triangle. An arbitrary binary file
    fails that test (it used to be read as an STL declaring billions of triangles)."""
    if head[:5].lower() == b"solid" and b"facet" in head and b"\x00" not in head:
        return True
    if size < 84 or len(head) < 84:
        return False
    (count,) = struct.unpack_from("<I", head, 80)
    return size == 84 + 50 * int(count)


def detect_format(path: Path) -> str:
    """The format of ``path``: by an unambiguous signature in its first bytes, else by suffix, else
    as STL when its content is one; a directory is a DICOM series.

    Raises
    ------
    UnsupportedFormatError
        Neither the content nor the suffix is a known format.
    """
    if path.is_dir():
        return "dicom"
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(1024)
    except OSError as exc:
        raise UnreadableAssetError(path, f"cannot be read ({exc.strerror or exc})") from None
    sniffed = _sniff(head)
    if sniffed is not None:
        return sniffed
    name = path.name.lower()
    for suffix, kind in SUFFIXES.items():
        if name.endswith(suffix):
            return kind
    if _looks_like_stl(head, size):
        return "stl"
    raise UnsupportedFormatError(path, "is not a known format (glTF/GLB, OBJ, STL, PLY, VTK, GIFTI, NIfTI, NRRD, "
                                 "MetaImage, DICOM; see docs/formats.md)")


def _package_versions(*names: str) -> dict[str, str]:
    result = {}
    for name in names:
        try:
            result[name] = version(name)
        except PackageNotFoundError:
            continue
    return result


def _digest(path: Path) -> str:
    """sha256 of a file, or of a folder's files in name order."""
    sha = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for file in files:
        with file.open("rb") as handle:
            while block := handle.read(1 << 20):
                sha.update(block)
    return sha.hexdigest()


#: Name of the structure a file without named parts becomes (never the file name: see ``neutral_name``).
STRUCTURE_NAME = "surface"


def neutral_name(kind: str, modality: str, sha256: str) -> str:
    """A twin name that says what the data is and nothing about whom: the modality (else the format)
    and the first 10 hex digits of the content's sha256, e.g. ``ct-3f9a1c2b7d``.

    File and folder names are patient data (``Doe_John.dcm``, ``Smith^Jane/``): they never become a
    twin's name, its structures' names or its provenance, so they reach neither the catalogue, the
    cache nor an exported file.
    """
    label = "".join(c for c in (modality or kind).lower() if c.isascii() and c.isalnum()) or "twin"
    return f"{label[:16]}-{sha256[:10]}"


def _read(path: Path, kind: str, stem: str, threshold: float | None, limits: Limits,
          provenance: dict[str, Any], labels: Path | None = None,
          keep: regions.Keep | None = None) -> tuple[list[Structure], str | None, dict[str, str]]:
    """Structures in source units, the unit the file states (None: unknown) and imaging metadata."""
    if kind in formats.STRUCTURES or labels is not None:
        provenance["versions"] = _package_versions(*formats.LIBRARIES.get(kind, ()))
        return formats.read_structures(path, kind, limits, provenance, labels)
    if kind in ("glb", "gltf", "obj", "stl", "ply"):
        from assets.loaders import mesh  # noqa: PLC0415 - each format's reader (and its parser library) on first use

        data = read_source(path, limits, decompress=False)
        structures = mesh.load_mesh_file(data, kind, path, base=path.parent, default_name=stem, limits=limits)
        provenance["versions"] = _package_versions("trimesh")
        return structures, _DECLARED_UNITS.get(kind), {}
    if kind == "gifti":
        from assets.loaders import gifti  # noqa: PLC0415 - as above

        structure = gifti.load_gifti(read_source(path, limits), path, default_name=stem, limits=limits)
        provenance["versions"] = _package_versions("nibabel")
        return [structure], "mm", {}
    from assets.loaders import volume as volumes  # noqa: PLC0415 - as above

    if kind in formats.VOLUMES:
        vol = formats.read_volume(path, kind, limits)
    else:
        vol = volumes.read_nifti(path, limits) if kind == "nifti" else volumes.read_dicom(path, limits)
    volumes.detect_modality(vol)
    level = volumes.default_threshold(vol, path) if threshold is None else float(threshold)
    if keep is not None:
        voxel_mm3 = abs(float(np.linalg.det(vol.affine[:3, :3]))) * (UNIT_SCALE.get(vol.units or "mm", 1e-3) * 1e3) ** 3
        vol.data, counts = regions.keep_voxels(vol.data, level, voxel_mm3, keep)
        if counts["kept"] == 0:
            raise EmptyMeshError(path, f"no region above the threshold measures {keep.describe()}")
        provenance["keep"] = {"rule": keep.describe(), "by": "voxel regions", **counts}
    vertices, faces = volumes.surface(vol, level, path)
    check_count(path, "surface triangles", len(faces), limits.max_faces)
    structures = [Structure(stem, vertices.astype(np.float32), faces.astype(np.int32))]
    if vol.beside:  # a study folder's SEG and RTSTRUCT objects: their structures join the surface
        beside = formats.structures_beside(vol, limits)
        check_count(path, "structures", len(beside) + 1, limits.max_structures)
        check_count(path, "surface triangles", sum(len(s.faces) for s in [*structures, *beside]), limits.max_faces)
        taken = {stem}
        for structure in beside:  # twins look structures up by name: a name met again gets a number
            name, n = structure.name, 2
            while name in taken:
                name, n = f"{structure.name} ({n})", n + 1
            structure.name = name
            taken.add(name)
        structures += beside
    provenance.update(threshold=level, threshold_units="HU" if vol.modality == "CT" else "intensity",
                      voxels=list(vol.data.shape), notes=vol.notes,
                      versions=_package_versions("nibabel", "pydicom", "scikit-image", *formats.LIBRARIES.get(kind, ())))
    if vol.modality:
        provenance["modality"] = vol.modality
    return structures, vol.units, vol.metadata


def _keep_pieces(structures: list[Structure], keep: regions.Keep, source: Path,
                 provenance: dict[str, Any]) -> list[Structure]:
    """Each structure with only the pieces ``keep`` selects; structures left with none are dropped."""
    kept, total = [], {"regions": 0, "kept": 0}
    for structure in structures:
        piece, counts = regions.keep_pieces(structure, keep)
        total = {k: total[k] + counts[k] for k in total}
        if piece.triangle_count:
            kept.append(piece)
    if not kept:
        raise EmptyMeshError(source, f"no piece of the surface measures {keep.describe()}")
    provenance["keep"] = {"rule": keep.describe(), "by": "mesh pieces", **total}
    return kept


def _smooth(structure: Structure, iterations: int) -> Structure:
    import trimesh  # noqa: PLC0415 - trimesh only when smoothing is asked for

    mesh = trimesh.Trimesh(structure.vertices.astype(np.float64), structure.faces, process=False, validate=False)
    trimesh.smoothing.filter_taubin(mesh, iterations=iterations)
    return replace(structure, vertices=np.asarray(mesh.vertices, dtype=np.float32))


def _decimate(structures: list[Structure], target: int, provenance: dict[str, Any]) -> list[Structure]:
    """Quadric-simplify so the twin has about ``target`` triangles, shared in proportion to size."""
    from assets.lod import simplify  # noqa: PLC0415 - simplification only when a triangle budget is given

    total = sum(s.triangle_count for s in structures)
    if target >= total:
        return structures
    result, errors_mm = [], {}
    for structure in structures:
        share = max(4, round(target * structure.triangle_count / total))
        if share >= structure.triangle_count:
            result.append(structure)
            continue
        level = simplify(structure, share)
        errors_mm[structure.name] = round(level.error_mm, 4)
        result.append(replace(structure, vertices=level.vertices, faces=level.faces, lods=[]))
    provenance["decimation"] = {"target_triangles": int(target), "from_triangles": int(total),
                                "error_mm": errors_mm}
    return result


def _repair_all(structures: list[Structure], source: Path, actions: list[str]) -> list[Structure]:
    repaired = []
    for structure in structures:
        fixed, report = validation.repair(structure, source)
        actions.extend(report.actions)
        repaired.append(fixed)
    return repaired


def load(path: str | Path, *, name: str | None = None, units: str | None = None, threshold: float | None = None,
         smooth_iterations: int = 0, decimate_to: int | None = None, repair: bool = True,
         check: bool = True, labels: str | Path | None = None, keep: regions.Keep | None = None,
         limits: Limits = DEFAULT_LIMITS, progress: Progress | None = None) -> Twin:
    """Load a mesh, surface, volume or DICOM series into a twin in metres.

    Parameters
    ----------
    path : a .gltf/.glb/.obj/.stl/.ply/.vtk/.vtp/.gii/.gii.gz/.nii/.nii.gz/.nrrd/.nhdr/.seg.nrrd/.mha/.mhd/.dcm
        file (a DICOM image, SEG or RTSTRUCT) or a DICOM folder (``docs/formats.md``).
    name : twin name; default ``neutral_name`` (modality or format and a content hash), never the
        file name, which is patient data as often as not.
    units : unit of the file's coordinates (``"mm"``, ``"m"``, ...), overriding what the format states
        or what the extent suggests.
    threshold : iso-value for volumes (HU for CT); default 300 HU for CT (stated by DICOM, or detected
        from the values' Hounsfield range), Otsu's threshold otherwise (MR).
    smooth_iterations : Taubin smoothing passes (volume-derived surfaces are stair-stepped).
    decimate_to : simplify to about this many triangles in total.
    repair : repair each structure (``assets.validate.repair``) and validate the result; without it
        only the fatal problems (empty, non-finite, bad indices, implausible size) raise.
    check : False: raise no geometry problem at all, only what makes the file unreadable (``twin
        validate`` lists the problems of the file as it is, with ``repair=False``).
    labels : a colour table (3D Slicer ``.ctbl``, FreeSurfer LUT, ITK-SNAP label file) naming the values
        of a label-map volume (NIfTI, NRRD, MetaImage): one named, coloured structure per label
        instead of one threshold surface (``assets.loaders.labels``).
    keep : which connected pieces to keep (``assets.regions.Keep``: the largest, the N largest, or
        those of at least a volume), to drop a CT's headrest and specks; volumes are judged by their
        voxel regions before marching cubes, meshes by their pieces after repair.
    limits : resource guards (``assets.loaders.limits.Limits``).
    progress : called with a stage name and a fraction 0..1.

    Raises
    ------
    AssetError
        Only subclasses of it, each naming the file: ``UnreadableAssetError``, ``UnsupportedFormatError``,
        ``ResourceLimitError``, ``GeometryError`` subclasses.
    """
    source = Path(path)
    report = progress or (lambda stage, fraction: None)
    try:
        if not source.exists():
            raise UnreadableAssetError(source, "does not exist")
        kind = formats.refine(source, detect_format(source))
        provenance: dict[str, Any] = {"format": kind, "sha256": _digest(source),
                                      "options": {"units": units, "threshold": threshold,
                                                  "smooth_iterations": smooth_iterations,
                                                  "decimate_to": decimate_to, "repair": repair,
                                                  "labels": labels is not None,
                                                  "keep": keep.describe() if keep is not None else None}}
        report(f"reading {source.name}", 0.0)
        structures, stated, metadata = _read(source, kind, STRUCTURE_NAME, threshold, limits, provenance,
                                             None if labels is None else Path(labels), keep)
        report("converting units", 0.4)
        all_vertices = np.concatenate([s.vertices for s in structures])
        unit, detected = units_mod.resolve_units(units or stated, all_vertices, str(source))
        structures = [replace(s, vertices=units_mod.to_metres(s.vertices, unit)) for s in structures]
        actions: list[str] = []
        if repair:
            report("repairing", 0.5)
            structures = _repair_all(structures, source, actions)
        if keep is not None and "keep" not in provenance:
            structures = _keep_pieces(structures, keep, source, provenance)
        if smooth_iterations > 0:
            report("smoothing", 0.6)
            structures = [_smooth(s, smooth_iterations) for s in structures]
        if decimate_to is not None:
            report("decimating", 0.7)
            structures = _decimate(structures, int(decimate_to), provenance)
        default = neutral_name(kind, str(provenance.get("modality", "")), provenance["sha256"])
        twin = Twin(name or default, structures, source_units=unit, units_detected=detected, metadata=metadata,
                    provenance=provenance)
        report("validating", 0.9)
        if repair and (smooth_iterations > 0 or decimate_to is not None):
            twin.structures = _repair_all(twin.structures, source, actions)
        if check and repair and decimate_to is None:
            validation.validate_twin(twin, source)
        elif check:
            # Without repair, or after a lossy simplification the user asked for (it can pinch a few
            # edges non-manifold, which repair cannot undo), only unusable meshes raise; what remains
            # is listed in provenance["remaining"].
            for structure in twin.structures:
                fatal = [p for p in validation.check(structure, source) if p.fatal]
                if fatal:
                    raise fatal[0].exception(source)
        provenance["repair"] = actions
        provenance["remaining"] = sorted({p.kind for s in twin.structures for p in validation.check(s, source)})
        report("loaded", 1.0)
        log.info("loaded %s: %d structures, %d triangles, %s (%s)", source, len(twin.structures),
                 twin.triangle_count, unit, "detected" if detected else "stated")
        return twin
    except AssetError:
        raise
    except MemoryError:
        raise ResourceLimitError(source, "ran out of memory while loading (file too large)") from None
    except RecursionError:
        raise UnreadableAssetError(source, "is nested too deeply to parse") from None
    except Exception as exc:  # third-party parsers raise anything; the user gets one line
        detail = (str(exc).strip().splitlines() or [""])[0][:160]
        log.debug("loading %s failed", source, exc_info=True)
        raise UnreadableAssetError(source, f"cannot be parsed ({type(exc).__name__}: {detail})") from exc


__all__ = ["STRUCTURE_NAME", "SUFFIXES", "Limits", "detect_format", "load", "neutral_name"]
