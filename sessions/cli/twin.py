"""`medverse twin`: list, inspect, build, import, validate and export anatomical twins.

Every subcommand works on the twin library (``assets.library``): bundled twins built from data in
installed packages, and twins imported from files. Bad input ends with a one-line error (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from assets.errors import AssetError
from assets.library import Library
from assets.regions import Keep
from assets.twin import Twin
from assets.validate import check, is_watertight
from sessions.cli.pacs import add_import_arguments, import_from_pacs

USER_ERRORS: tuple[type[BaseException], ...] = (AssetError,)

#: Tables are wide: on a pipe or a log (no terminal to ask) draw them 160 columns wide, not rich's 80.
console = Console(width=None if sys.stdout.isatty() else 160)


@contextmanager
def progress_bar(title: str) -> Iterator[Callable[[str, float], None]]:
    """A rich progress bar for long work; yields the ``progress(stage, fraction)`` callback that
    ``assets`` functions take. Drawn only on a terminal, so logs and pipes stay clean."""
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True,
                  disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task(title, total=1.0)

        def update(stage: str, fraction: float) -> None:
            bar.update(task, completed=max(0.0, min(1.0, fraction)), description=f"{title}: {stage}")

        yield update


def summary(twin: Twin) -> Table:
    """The twin as a table: one row per structure with triangles, bounds (mm) and watertightness."""
    table = Table(title=f"twin {twin.name!r}: {len(twin.structures)} structures, {twin.triangle_count:,} triangles,"
                  f" source units {twin.source_units} ({'detected' if twin.units_detected else 'declared'})")
    for column in ("structure", "triangles", "vertices", "bounds min .. max (mm)", "size (mm)", "watertight",
                   "LODs (error)"):
        table.add_column(column, justify="left" if column == "structure" else "right")
    for s in twin.structures:
        lo, hi = s.bounds() * 1000.0
        table.add_row(s.name, f"{s.triangle_count:,}", f"{s.vertex_count:,}",
                      f"({', '.join(f'{x:.1f}' for x in lo)}) .. ({', '.join(f'{x:.1f}' for x in hi)})",
                      " x ".join(f"{x:.1f}" for x in hi - lo), "yes" if is_watertight(s) else "no",
                      ", ".join(f"{lod.triangle_count:,} ({lod.error_mm:.2f} mm)" for lod in s.lods) or "-")
    return table


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``twin list|info|build|import|validate|export``."""
    twin = sub.add_parser("twin", help="anatomical twins: list, inspect, build, import, validate, export",
                          description="Work with the twin library: bundled twins built from real anatomical "
                          "data in installed packages, and twins imported from mesh, surface, volume or DICOM files.")
    actions = twin.add_subparsers(dest="twin_command", metavar="ACTION")
    actions.required = True

    p = actions.add_parser("list", help="list bundled and imported twins")
    p.set_defaults(func=_list)

    p = actions.add_parser("info", help="build (or map from the cache) a twin and describe it")
    p.add_argument("name", help="twin name (see 'medverse twin list')")
    p.set_defaults(func=_info)

    p = actions.add_parser("build", help="build a twin and store it in the cache")
    p.add_argument("name", help="twin name (see 'medverse twin list')")
    p.add_argument("--rebuild", action="store_true", help="build again even when the cache has it")
    p.set_defaults(func=_build)

    p = actions.add_parser("import", help="load a file or DICOM folder into the library",
                           description="Load glTF/GLB, OBJ, STL, PLY, VTK, GIFTI, NIfTI, NRRD, MetaImage, Slicer "
                           "segmentations or DICOM (images, SEG or RTSTRUCT; a file or a series "
                           "folder), repair it, de-identify imaging metadata, and store it as a named twin.")
    p.add_argument("path", type=Path, nargs="?", help="file or DICOM folder (or --pacs)")
    p.add_argument("--name", help="twin name (default: the modality or format and a content hash, never the "
                   "file name, which may name the patient)")
    p.add_argument("--units", choices=("m", "cm", "mm", "um"), help="unit of the file's coordinates "
                   "(default: what the format states, else detected from the size)")
    p.add_argument("--threshold", type=float, help="iso-value for volumes (HU for CT; default 300 HU for CT, "
                   "as DICOM states or the values' Hounsfield range shows, Otsu otherwise, e.g. MR)")
    p.add_argument("--keep", nargs="+", metavar="RULE", help="connected pieces to keep: 'largest', a number N "
                   "(the N largest) or 'min-volume MM3' (pieces of at least MM3 cubic mm): drops a CT's headrest "
                   "and specks")
    p.add_argument("--smooth", type=int, metavar="N", help="N passes of Taubin smoothing (keeps the volume, "
                   "unlike plain averaging): softens the voxel steps of a volume's surface")
    p.add_argument("--decimate", type=int, metavar="TRIANGLES", help="simplify to about this many triangles")
    p.add_argument("--labels", type=Path, metavar="TABLE", help="colour table (Slicer .ctbl, FreeSurfer LUT, "
                   "ITK-SNAP label file) naming a label-map volume's values: one structure per label")
    add_import_arguments(p)
    p.set_defaults(func=_import)

    p = actions.add_parser("validate", help="check a file's meshes without changing them (exit 1 on problems)")
    p.add_argument("path", type=Path, help="file or DICOM folder")
    p.add_argument("--units", choices=("m", "cm", "mm", "um"), help="unit of the file's coordinates")
    p.set_defaults(func=_validate)

    p = actions.add_parser("export", help="write a twin as glTF 2.0 binary (GLB)")
    p.add_argument("name", help="twin name (see 'medverse twin list')")
    p.add_argument("--glb", type=Path, required=True, metavar="OUT", help="output .glb file")
    p.set_defaults(func=_export)


def _list(args: argparse.Namespace) -> int:
    library = Library()
    table = Table(title="twins")
    for column in ("name", "kind", "cached", "description"):
        table.add_column(column)
    for entry in library.entries():
        table.add_row(entry.name, entry.kind, "yes" if library.is_built(entry.name) else "no", entry.description)
    console.print(table)
    return 0


def _load_named(name: str) -> Twin:
    with progress_bar(f"twin {name}") as progress:
        return Library().build(name, progress=progress)


def _info(args: argparse.Namespace) -> int:
    twin = _load_named(args.name)
    console.print(summary(twin))
    for key in ("recipe", "data", "source", "format", "sha256", "threshold", "repair"):
        if twin.provenance.get(key) not in (None, "", [], {}):
            console.print(f"{key}: {twin.provenance[key]}")
    if twin.metadata:
        console.print("imaging metadata (de-identified): " + ", ".join(f"{k}={v}" for k, v in sorted(twin.metadata.items())))
    return 0


def _build(args: argparse.Namespace) -> int:
    library = Library()
    with progress_bar(f"twin {args.name}") as progress:
        twin = library.build(args.name, progress=progress, rebuild=args.rebuild)
    console.print(summary(twin))
    console.print(f"cached at {library.cache.path_for(library.key(args.name))}")
    return 0


def _import(args: argparse.Namespace) -> int:
    library = Library()
    try:
        keep = Keep.parse(args.keep) if args.keep else None
    except ValueError as exc:
        raise AssetError(None, f"--keep: {exc}") from None
    options = {"units": args.units, "threshold": args.threshold, "smooth_iterations": args.smooth,
               "decimate_to": args.decimate, "labels": args.labels, "keep": keep}
    # Only the options the user gave: None means "not given"; 0 is a value (--threshold 0 is water in HU).
    given = {k: v for k, v in options.items() if v is not None}
    if args.pacs is not None or args.study or args.series:
        with progress_bar("import from PACS") as progress:
            twin = import_from_pacs(args, library, progress, given)
    elif args.path is None:
        raise AssetError(None, "give a file or DICOM folder to import, or --pacs with --study or --series")
    else:
        with progress_bar(f"import {args.path.name}") as progress:
            twin = library.import_twin(args.path, name=args.name, progress=progress, **given)
    console.print(summary(twin))
    for action in twin.provenance.get("repair", []):
        console.print(f"repaired: {action}")
    for note in twin.provenance.get("notes", []):
        console.print(f"note: {note}")
    console.print(f"imported as {twin.name!r}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from assets.loaders import load  # noqa: PLC0415 - a command loads only what it needs

    # Problems are reported, not raised: exit 1 lists what import would repair (or refuse); exit 2 is
    # left to files that cannot be read at all.
    twin = load(args.path, units=args.units, repair=False, check=False)
    problems = [p for s in twin.structures for p in check(s, args.path)]
    console.print(summary(twin))
    for problem in problems:
        console.print(f"{args.path}: {problem.message} [{problem.kind}]", markup=False)  # [..] is not rich markup
    if problems:
        console.print(f"{len(problems)} problems; 'medverse twin import' repairs what can be repaired")
        return 1
    console.print(f"{args.path}: valid")
    return 0


def _export(args: argparse.Namespace) -> int:
    from assets.export import export_glb  # noqa: PLC0415 - a command loads only what it needs

    twin = _load_named(args.name)
    path = export_glb(twin, args.glb)
    console.print(f"wrote {path} ({path.stat().st_size:,} bytes, {len(twin.structures)} structures)")
    return 0
