"""The twin library: bundled twins built from real data in installed packages, and imported twins.

Bundled twins are recipes, not files: their source data stays inside the installed package that ships
it (nilearn) and is read at build time, never copied into this repository. A built twin is stored in
the content-addressed cache (``assets.cache``), keyed by the source files' bytes and the recipe, so
the second ``build`` of the same twin maps its arrays instead of parsing anything.

Imported twins (``import_twin``) are recorded in ``$MEDVERSE_HOME/twins.json`` (default
``~/.medverse``): a name, the cache key of the built twin and where it came from. The catalogue is
written atomically; a damaged catalogue is reported as an ``AssetError`` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assets.cache import TwinCache, content_key
from assets.errors import AssetError, UnknownTwinError
from assets.loaders import Progress, load
from assets.lod import DEFAULT_TARGETS, add_lods
from assets.twin import Color, Twin

log = logging.getLogger(__name__)

#: Bumped whenever a recipe changes what it builds: it is part of every bundled twin's cache key.
RECIPE_VERSION = 3  # 2: marching-cubes faces wound outwards by the loader; 3: simplified by meshoptimizer
CATALOGUE = "twins.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _nilearn_data() -> Path:
    try:
        import nilearn  # noqa: PLC0415 - only the bundled brain templates need nilearn (slow to import)
    except ImportError as exc:  # a dependency; only a broken install gets here
        raise AssetError("nilearn", f"the bundled twins need nilearn installed ({exc})") from None
    return Path(nilearn.__file__).parent / "datasets" / "data"


@dataclass(frozen=True)
class Recipe:
    """How one bundled twin is built.

    ``sources``: the input files, found in installed packages; ``build``: makes the twin from them
    (geometry in metres), reporting progress.
    """

    name: str
    description: str
    sources: Callable[[], list[Path]]
    build: Callable[[list[Path], Progress], Twin]


#: Cortex colour for brain surfaces (linear RGB, a pale pink-grey).
_CORTEX: Color = (0.86, 0.66, 0.62, 1.0)


def _brain_sources() -> list[Path]:
    folder = _nilearn_data() / "fsaverage5"
    return [folder / "pial_left.gii.gz", folder / "pial_right.gii.gz"]


def _build_brain(sources: list[Path], progress: Progress) -> Twin:
    structures = []
    for index, (path, side) in enumerate(zip(sources, ("left", "right"), strict=True)):
        progress(f"loading {path.name}", index / len(sources))
        part = load(path, name=f"{side}-hemisphere")
        structure = part.structures[0]
        structure.name = f"{side} cerebral hemisphere (pial)"
        structure.color = _CORTEX
        structures.append(structure)
    return Twin(
        "brain",
        structures,
        source_units="mm",
        provenance={
            "recipe": f"brain/{RECIPE_VERSION}",
            "data": "FreeSurfer fsaverage5 pial surfaces, as shipped in the nilearn package",
            "sources": [str(p) for p in sources],
            "package_versions": part.provenance.get("versions", {}),
        },
    )


def _brain_mni_sources() -> list[Path]:
    return [_nilearn_data() / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"]


def _build_brain_mni(sources: list[Path], progress: Progress) -> Twin:
    progress("marching cubes", 0.0)
    twin = load(sources[0], name="brain-mni")
    structure = twin.structures[0]
    structure.name = "brain (MNI152 template surface)"
    structure.color = _CORTEX
    structure.codes = {"FMA": "50801"}  # Brain
    twin.provenance.update(
        recipe=f"brain-mni/{RECIPE_VERSION}",
        data="ICBM 2009a nonlinear symmetric MNI152 T1 template, as shipped in the nilearn package",
    )
    return twin


def _skull_sources() -> list[Path]:
    from assets.skull import SOURCE  # noqa: PLC0415 - the skull recipe's module only when it is asked for

    return [SOURCE]


def _build_skull(sources: list[Path], progress: Progress) -> Twin:
    from assets.skull import build_skull  # noqa: PLC0415 - as above (scipy, scikit-image)

    return build_skull(sources, progress)


def _brain_aal_sources() -> list[Path]:
    from assets.atlas import AAL_SOURCES  # noqa: PLC0415 - the atlas recipe's module only when it is asked for

    return list(AAL_SOURCES)


def _build_brain_aal(sources: list[Path], progress: Progress) -> Twin:
    from assets.atlas import build_aal  # noqa: PLC0415 - as above (nibabel, scipy, scikit-image)

    return build_aal(sources, progress)


BUNDLED: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe("brain", "both cerebral hemispheres, fsaverage5 pial surfaces (nilearn)", _brain_sources,
               _build_brain),
        Recipe("brain-mni", "brain surface of the MNI152 T1 template volume, by marching cubes (nilearn)",
               _brain_mni_sources, _build_brain_mni),
        Recipe("brain-aal", "the 116 regions of the AAL atlas in MNI space, one structure each, by marching cubes"
               " (Debian mricron-data)", _brain_aal_sources, _build_brain_aal),
        Recipe("skull", "bony skull of a CT head at 226 HU, largest region, simplified (Debian invesalius-examples)",
               _skull_sources, _build_skull),
    )
}
DEFAULT_TWIN = "brain"


def home() -> Path:
    """Where medverse keeps user data: ``$MEDVERSE_HOME``, else ``~/.medverse``."""
    return Path(os.environ.get("MEDVERSE_HOME") or Path.home() / ".medverse").expanduser()


@dataclass(frozen=True)
class Entry:
    """One twin the library knows: bundled (a recipe) or imported (a cache key)."""

    name: str
    kind: str  # "bundled" or "imported"
    description: str
    key: str | None = None


class Library:
    """Bundled and imported twins, built through one cache.

    Parameters
    ----------
    cache : the twin cache; default ``TwinCache()`` at its default root.
    root : folder of the imported-twin catalogue; default ``home()``.
    """

    def __init__(self, cache: TwinCache | None = None, root: str | Path | None = None) -> None:
        self.cache = cache if cache is not None else TwinCache()
        self.root = Path(root) if root is not None else home()

    # -- catalogue of imported twins ------------------------------------------------------------------

    @property
    def catalogue_path(self) -> Path:
        return self.root / CATALOGUE

    def _imported(self) -> dict[str, dict[str, Any]]:
        path = self.catalogue_path
        if not path.exists():
            return {}
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise AssetError(path, f"the twin catalogue cannot be read ({exc}); fix or delete it") from None
        twins = document.get("twins") if isinstance(document, dict) else None
        if not isinstance(twins, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("key"), str) for v in twins.values()
        ):
            raise AssetError(path, "the twin catalogue is not a {'twins': {name: {'key': ...}}} document")
        return twins

    def _write_imported(self, twins: dict[str, dict[str, Any]]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=".twins.", dir=self.root)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"twins": twins}, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, self.catalogue_path)

    # -- queries --------------------------------------------------------------------------------------

    def entries(self) -> list[Entry]:
        """Every twin by name: bundled first, then imported."""
        found = [Entry(r.name, "bundled", r.description) for r in BUNDLED.values()]
        for name, record in sorted(self._imported().items()):
            found.append(Entry(name, "imported", f"imported {record.get('format', '?')} "
                               f"(sha256 {str(record.get('sha256', '?'))[:12]})", record["key"]))
        return found

    def key(self, name: str) -> str:
        """The cache key of twin ``name`` (bundled: over its source files and recipe version)."""
        recipe = BUNDLED.get(name)
        if recipe is not None:
            sources = recipe.sources()
            missing = [p for p in sources if not p.exists()]
            if missing:
                raise AssetError(missing[0], f"source of the bundled twin {name!r} is missing; reinstall the package "
                                 "that ships it (nilearn, mricron-data or invesalius-examples)")
            lods = ",".join(str(t) for t in DEFAULT_TARGETS)
            return content_key(f"recipe={name}/{RECIPE_VERSION}", f"lods={lods}", *sources)
        record = self._imported().get(name)
        if record is None:
            known = ", ".join(e.name for e in self.entries())
            raise UnknownTwinError(name, f"no such twin; known twins: {known}")
        return str(record["key"])

    def is_built(self, name: str) -> bool:
        """True when twin ``name`` is in the cache (a ``build`` would only map it)."""
        return self.cache.path_for(self.key(name)).exists()

    # -- building -------------------------------------------------------------------------------------

    def build(self, name: str, *, progress: Progress | None = None, rebuild: bool = False) -> Twin:
        """Twin ``name`` from the cache, or built (with levels of detail) and cached.

        Raises
        ------
        UnknownTwinError
            Neither bundled nor imported under that name.
        AssetError
            The source data is missing or unreadable (imported twins whose cache entry was removed
            must be imported again).
        """
        report = progress or (lambda stage, fraction: None)
        key = self.key(name)
        if not rebuild:
            cached = self.cache.get(key)
            if cached is not None:
                report("mapped from cache", 1.0)
                return cached
        recipe = BUNDLED.get(name)
        if recipe is None:
            raise AssetError(name, f"the cached build of imported twin {name!r} is gone;"
                             " import it again")
        log.info("building bundled twin %s", name)
        twin = recipe.build(recipe.sources(), lambda stage, f: report(stage, 0.6 * f))
        report("levels of detail", 0.6)
        twin = add_lods(twin)
        report("caching", 0.9)
        self.cache.put(key, twin)
        report("built", 1.0)
        return twin

    def import_twin(self, path: str | Path, *, name: str | None = None, progress: Progress | None = None,
                    **options: Any) -> Twin:
        """Load ``path`` (any format ``assets.loaders.load`` reads), cache it and record it by name.

        ``options`` go to ``load`` (``units``, ``threshold``, ``smooth_iterations``, ``decimate_to``,
        ``labels``).
        DICOM metadata is de-identified by the loader before it reaches the twin.

        Raises
        ------
        AssetError
            The file cannot be loaded, or ``name`` is invalid or taken by a bundled twin.
        """
        source = Path(path)
        report = progress or (lambda stage, fraction: None)
        twin = load(source, name=name, progress=lambda s, f: report(s, 0.7 * f), **options)
        if not _NAME.match(twin.name):
            raise AssetError(source, f"twin name {twin.name!r} is not allowed; use letters, digits, '.', '_' or '-'"
                             " (give --name)")
        if twin.name in BUNDLED:
            raise AssetError(source, f"{twin.name!r} is a bundled twin; import under another --name")
        report("levels of detail", 0.7)
        twin = add_lods(twin)
        recorded = dict(options)
        if recorded.get("labels") is not None:  # a colour table by its content too: its path may name the patient
            recorded["labels"] = "sha256:" + hashlib.sha256(Path(recorded["labels"]).read_bytes()).hexdigest()
        option_text = json.dumps(recorded, sort_keys=True, default=str)
        key = content_key(f"import/{twin.name}", option_text, source.resolve())
        report("caching", 0.9)
        self.cache.put(key, twin)
        twins = self._imported()
        previous = twins.get(twin.name, {}).get("key")
        # Where it came from by content, never by path: file and folder names are patient data.
        twins[twin.name] = {"key": key, "format": twin.provenance.get("format"), "sha256": twin.provenance.get("sha256"),
                            "options": json.loads(option_text)}
        self._write_imported(twins)
        if previous not in (None, key) and all(record["key"] != previous for record in twins.values()):
            # Re-imported under the same name: the catalogue no longer reaches the old build.
            self.cache.remove(previous)
            log.info("replaced twin %s: its previous cache entry was removed", twin.name)
        report("imported", 1.0)
        return twin


def build(name: str, *, progress: Progress | None = None) -> Twin:
    """Twin ``name`` through the default library and cache (see ``Library.build``)."""
    return Library().build(name, progress=progress)


__all__ = ["BUNDLED", "DEFAULT_TWIN", "Entry", "Library", "Recipe", "build", "home"]
