"""Benchmark: importing a real CT head into a cached twin, against VTK doing the same work in the same run.

The volume is the CT head of Debian's ``invesalius-examples`` (``Cranium.inv3``, read by
``assets.loaders.inv3``), written by this benchmark as a DICOM series (one CT slice per file, int16 with
rescale slope and intercept, LPS positions) and as NRRD (LPS, gzip), so that both importers read files
a hospital would hand over. For each file, in fresh subprocesses (``--repeats`` each, alternating):

- ``medverse``: ``Library.import_twin`` (what ``medverse twin import PATH --threshold 226 --keep
  largest`` does): read, de-identify, extract the surface at the threshold, keep the largest piece,
  repair and check, levels of detail (``assets.lod.DEFAULT_TARGETS``), store in the twin cache;
- ``vtk``: PyPI ``vtk`` (an extra of medverse, ``pip install vtk``): ``vtkDICOMImageReader`` or
  ``vtkNrrdReader``, ``vtkFlyingEdges3D`` at the same threshold, ``vtkPolyDataConnectivityFilter``
  (largest region), ``vtkQuadricDecimation`` to the triangle count of each of medverse's levels, and
  the arrays written to ``.npy`` files (the cache's share of the work).

Each subprocess reports its wall time for the import (after its imports of Python modules) and its peak
resident memory (``ru_maxrss``), and medverse its surface's triangle counts per level (which the VTK run
is given). Goals (issue 17): medverse no slower than VTK (median time ratio <= 1.0) and peak memory under
300 MB. Prints a table and writes ``bench/results/imaging.json``.

Run::

    .venv/bin/python bench/imaging.py [--repeats 3] [--threshold 226]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# bench/assets.py, a sibling benchmark, would shadow the assets package while this folder is on the path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CRANIUM = Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3")
GOAL_RATIO = 1.0
GOAL_PEAK_MB = 300.0


# --- the input files ---------------------------------------------------------------------------------------------


def write_inputs(folder: Path) -> dict[str, Any]:
    """The Cranium CT as a DICOM series and as NRRD in ``folder``; returns what was written."""
    import nrrd  # noqa: PLC0415 - pynrrd, a medverse dependency
    import pydicom  # noqa: PLC0415
    from pydicom.dataset import FileMetaDataset  # noqa: PLC0415
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid  # noqa: PLC0415

    from assets.loaders.inv3 import read_inv3  # noqa: PLC0415

    volume = read_inv3(CRANIUM)
    data = np.rint(volume.data).astype(np.int16)  # (I, J, K) HU, affine to RAS mm
    affine = np.asarray(volume.affine, dtype=np.float64)
    to_lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # RAS -> LPS, DICOM's and NRRD's space here
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    series = folder / "dicom"
    series.mkdir()
    study, series_uid, frame = generate_uid(), generate_uid(), generate_uid()
    # one file per slice across the coarsest axis, as a scanner writes them
    axis = int(np.argmax(spacing))
    col_axis, row_axis = [a for a in range(3) if a != axis]  # columns run along the first other axis
    row_dir, col_dir = to_lps[:3, col_axis] / spacing[col_axis], to_lps[:3, row_axis] / spacing[row_axis]
    for k in range(data.shape[axis]):
        index = [0, 0, 0, 1]
        index[axis] = k
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series_uid, frame
        ds.Modality, ds.PatientName, ds.PatientID = "CT", "Bench^Patient", "BENCH0001"
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [float(v) for v in (to_lps @ index)[:3]]
        ds.ImageOrientationPatient = [float(v) for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [float(spacing[row_axis]), float(spacing[col_axis])]
        ds.SliceThickness = float(spacing[axis])
        plane = np.take(data, k, axis=axis)  # (col_axis, row_axis) order: transposed, rows of columns
        ds.Rows, ds.Columns = plane.shape[1], plane.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = np.ascontiguousarray(plane.T).tobytes()
        ds.save_as(series / f"{k:04d}.dcm", enforce_file_format=True)
    header = {"space": "left-posterior-superior", "space directions": to_lps[:3, :3].T,
              "space origin": to_lps[:3, 3], "encoding": "gzip", "kinds": ["domain"] * 3}
    nrrd_path = folder / "ct.nrrd"
    nrrd.write(str(nrrd_path), data, header)
    return {"shape": list(data.shape), "spacing_mm": [round(float(s), 4) for s in spacing],
            "dicom": str(series), "nrrd": str(nrrd_path), "dicom_files": data.shape[axis]}


# --- the workers (each in its own process) ------------------------------------------------------------------------


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _resident_mb() -> float:
    """Resident memory now (ru_maxrss right after the start can still be the forking parent's)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def work_medverse(path: str, threshold: float, home: str) -> dict[str, Any]:
    os.environ["MEDVERSE_CACHE"] = str(Path(home) / "cache")
    os.environ["MEDVERSE_HOME"] = str(Path(home) / "home")
    from assets.library import Library  # noqa: PLC0415
    from assets.regions import Keep  # noqa: PLC0415

    library = Library()
    before = _resident_mb()
    t0 = time.perf_counter()
    twin = library.import_twin(path, name="bench-ct", threshold=threshold, keep=Keep.parse(["largest"]))
    seconds = time.perf_counter() - t0
    structure = twin.structures[0]
    return {"seconds": seconds, "peak_mb": _peak_mb(), "baseline_mb": before,
            "triangles": [structure.triangle_count, *(level.triangle_count for level in structure.lods)]}


def work_vtk(path: str, threshold: float, targets: list[int], out: str) -> dict[str, Any]:
    import vtkmodules.all as vtk  # noqa: PLC0415 - the peer (PyPI vtk, medverse's [vtk] extra)
    from vtkmodules.util.numpy_support import vtk_to_numpy  # noqa: PLC0415

    before = _resident_mb()
    t0 = time.perf_counter()
    if path.endswith(".nrrd"):
        reader: Any = vtk.vtkNrrdReader()
        reader.SetFileName(path)
    else:
        reader = vtk.vtkDICOMImageReader()
        reader.SetDirectoryName(path)
    surface = vtk.vtkFlyingEdges3D()
    surface.SetInputConnection(reader.GetOutputPort())
    surface.SetValue(0, threshold)
    surface.ComputeNormalsOff()
    largest = vtk.vtkPolyDataConnectivityFilter()
    largest.SetInputConnection(surface.GetOutputPort())
    largest.SetExtractionModeToLargestRegion()
    clean = vtk.vtkCleanPolyData()  # the connectivity filter keeps every point; drop the unused ones
    clean.SetInputConnection(largest.GetOutputPort())
    clean.Update()
    mesh = clean.GetOutput()
    counts = [mesh.GetNumberOfPolys()]

    def save(poly: Any, name: str) -> None:
        points = vtk_to_numpy(poly.GetPoints().GetData()).astype(np.float32)  # type: ignore[no-untyped-call]
        faces = vtk_to_numpy(poly.GetPolys().GetConnectivityArray())  # type: ignore[no-untyped-call]
        faces = faces.reshape(-1, 3).astype(np.int32)
        np.save(Path(out) / f"{name}-v.npy", points)
        np.save(Path(out) / f"{name}-f.npy", faces)

    save(mesh, "full")
    for target in targets:
        decimate = vtk.vtkQuadricDecimation()
        decimate.SetInputData(mesh)
        decimate.SetTargetReduction(1.0 - target / counts[0])
        decimate.Update()
        level = decimate.GetOutput()
        counts.append(level.GetNumberOfPolys())
        save(level, str(target))
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_mb": _peak_mb(), "baseline_mb": before, "triangles": counts}


def _run_worker(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True, check=False,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"worker {args[0]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _figures(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="imports per importer and file (default %(default)s)")
    ap.add_argument("--threshold", type=float, default=226.0, help="bone threshold, HU (default %(default)s)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "imaging.json"))
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        kind, path, *rest = args.worker
        if kind == "medverse":
            result = work_medverse(path, args.threshold, rest[0])
        else:
            result = work_vtk(path, args.threshold, [int(t) for t in rest[1:]], rest[0])
        print(json.dumps(result))
        return
    machine = {"python": platform.python_version(), "cpus": os.cpu_count(), "load_average": os.getloadavg()[0]}
    goals = {"time_ratio": GOAL_RATIO, "peak_mb": GOAL_PEAK_MB}
    results: dict[str, Any] = {"benchmark": "imaging", "machine": machine, "threshold_hu": args.threshold, "goals": goals}
    with tempfile.TemporaryDirectory(prefix="medverse-bench-imaging-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        results["input"] = inputs = write_inputs(folder)
        print(f"Cranium CT {inputs['shape']} voxels of {inputs['spacing_mm']} mm, written as {inputs['dicom_files']} "
              f"DICOM files and NRRD in {time.perf_counter() - t0:.1f} s", flush=True)  # fmt: skip
        for fmt in ("dicom", "nrrd"):
            runs: dict[str, list[dict[str, Any]]] = {"medverse": [], "vtk": []}
            for r in range(args.repeats):
                home = folder / f"home-{fmt}-{r}"
                runs["medverse"].append(_run_worker("medverse", inputs[fmt], str(home)))
                out = folder / f"vtk-{fmt}-{r}"
                out.mkdir()
                targets = [str(t) for t in runs["medverse"][-1]["triangles"][1:]]
                runs["vtk"].append(_run_worker("vtk", inputs[fmt], str(out), *targets))
            entry = {name: {"seconds": _figures([x["seconds"] for x in rs]), "peak_mb": _figures([x["peak_mb"] for x in rs]),
                            "baseline_mb": _figures([x["baseline_mb"] for x in rs]), "triangles": rs[-1]["triangles"]}
                     for name, rs in runs.items()}  # fmt: skip
            ratio = entry["medverse"]["seconds"]["median"] / entry["vtk"]["seconds"]["median"]
            entry["time_ratio"] = round(ratio, 3)
            entry["met"] = {"time": ratio <= GOAL_RATIO, "memory": entry["medverse"]["peak_mb"]["max"] < GOAL_PEAK_MB}
            results[fmt] = entry
            m, v = entry["medverse"], entry["vtk"]
            print(f"{fmt:6} medverse {m['seconds']['median']:6.2f} s, peak {m['peak_mb']['max']:6.0f} MB "
                  f"(after imports {m['baseline_mb']['median']:.0f}), triangles {m['triangles']}", flush=True)
            print(f"{'':6} vtk      {v['seconds']['median']:6.2f} s, peak {v['peak_mb']['max']:6.0f} MB "
                  f"(after imports {v['baseline_mb']['median']:.0f}), triangles {v['triangles']}", flush=True)
            print(f"{'':6} medverse/vtk time {ratio:.2f} (goal <= {GOAL_RATIO:g}): "
                  f"{'met' if entry['met']['time'] else 'missed'}; peak memory goal < {GOAL_PEAK_MB:g} MB: "
                  f"{'met' if entry['met']['memory'] else 'missed'}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
