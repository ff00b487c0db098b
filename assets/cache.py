"""Content-addressed binary cache of twins: a twin built once loads again as memory-mapped arrays.

An entry is a directory named by its key, holding two files:

- ``arrays.bin``: every vertex and face array of the twin (level 0 and each level of detail), raw
  little-endian, each starting at a multiple of ``ALIGN`` bytes. One file per entry means one
  ``open`` and one ``mmap`` per load, however many structures and levels the twin has (the
  benchmark ``bench/assets.py`` compares it with one ``.npy`` per array).
- ``manifest.json``: ``{"sha256": <hex of the canonical body>, "body": {...}}``; the body describes
  the twin (names, colours, codes, units, metadata, provenance) and gives each array's offset, dtype
  and shape, plus the size and sha256 of ``arrays.bin``. The checksum is taken over the body encoded
  as ``json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` in UTF-8.

Entries are written into a temporary directory, fsynced, then renamed into place: a killed writer
leaves a temporary directory (swept later), never a half entry under the key. ``get`` checks the
manifest checksum, the format version, every field's type, and that each array's dtype, shape and
byte range fit the file that is really there *before* mapping anything, so a damaged or hostile entry
is a miss (logged once, counted, removed), never a crash and never a huge or out-of-range mapping.
The bulk data is not hashed on every ``get`` (that would read every page and defeat the mapping);
``get(key, verify=True)`` does, and catches bit rot inside an otherwise intact entry.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import mmap
import os
import shutil
import struct
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from assets.errors import CacheError, UnreadableAssetError
from assets.twin import UNIT_SCALE, LevelOfDetail, Structure, Twin

log = logging.getLogger(__name__)

#: Bumped whenever the entry layout or the meaning of a key changes; it is hashed into every key.
FORMAT_VERSION = 2  # 2: twins imported from glTF are rotated from +Y up into RAS (+Z up)
FORMAT_NAME = "medverse-twin-cache"
MANIFEST = "manifest.json"
ARRAYS = "arrays.bin"
TEMP_DIR = ".tmp"
#: Byte alignment of every array inside ``arrays.bin`` (a cache line; SIMD loads stay aligned).
ALIGN = 64
#: A manifest larger than this is not read (it only describes arrays; real ones are a few kB).
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
#: An entry whose data file is larger than this is refused rather than mapped.
MAX_ENTRY_BYTES = 16 * 1024**3
#: Temporary directories older than this (seconds) belong to writers that died; ``put`` sweeps them.
STALE_TEMP_S = 3600.0

#: Expected dtype of each array role; anything else in a manifest is damage.
_DTYPES = {"vertices": "<f4", "faces": "<i4"}
_KEY_CHARS = frozenset("0123456789abcdef")
_CHUNK = 1 << 20


def default_root() -> Path:
    """Cache directory: ``$MEDVERSE_CACHE``, else ``$XDG_CACHE_HOME/medverse/twins`` (``~/.cache``)."""
    explicit = os.environ.get("MEDVERSE_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "medverse" / "twins"


def _feed(digest: Any, tag: bytes, data: bytes) -> None:
    # Tag and length prefix make the encoding unambiguous: ("ab", "c") and ("a", "bc") differ.
    digest.update(tag + struct.pack("<Q", len(data)) + data)


def _feed_file(digest: Any, path: Path) -> None:
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            digest.update(b"F" + struct.pack("<Q", size))
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise UnreadableAssetError(path, f"cannot read for the cache key: {exc.strerror or exc}") from exc


def _walk_files(directory: Path) -> Iterator[Path]:
    """Files under ``directory`` in a stable order (sorted relative paths), so keys do not depend on
    the order the file system lists them."""
    found: list[Path] = []
    for parent, dirs, files in os.walk(directory):
        dirs.sort()
        found.extend(Path(parent) / name for name in files)
    yield from sorted(found, key=lambda p: p.relative_to(directory).as_posix())


def content_key(*parts: bytes | str | Path) -> str:
    """Cache key: sha256 over the cache format version and each part, in order.

    Parameters
    ----------
    *parts
        ``Path``: a source file (its bytes) or a directory (every file's relative name and bytes,
        e.g. a DICOM series); ``str``: an option string (``"units=mm"``); ``bytes``: raw bytes.

    Returns
    -------
    64 lowercase hex characters.

    Raises
    ------
    UnreadableAssetError
        A path part cannot be read.
    """
    digest = hashlib.sha256()
    _feed(digest, b"V", f"{FORMAT_NAME}/{FORMAT_VERSION}".encode())
    for part in parts:
        if isinstance(part, Path):
            if part.is_dir():
                files = list(_walk_files(part))
                _feed(digest, b"D", str(len(files)).encode())
                for file in files:
                    _feed(digest, b"N", file.relative_to(part).as_posix().encode())
                    _feed_file(digest, file)
            else:
                _feed_file(digest, part)
        elif isinstance(part, str):
            _feed(digest, b"S", part.encode())
        elif isinstance(part, (bytes, bytearray, memoryview)):
            _feed(digest, b"B", bytes(part))
        else:
            raise TypeError(f"content_key parts are bytes, str or Path, not {type(part).__name__}")
    return digest.hexdigest()


@dataclass
class CacheStats:
    """Counters of one ``TwinCache``: ``damaged`` entries were found broken, dropped and missed."""

    hits: int = 0
    misses: int = 0
    damaged: int = 0
    writes: int = 0


class _Damaged(Exception):
    """An entry failed a check; the message says which."""


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _check_key(key: str) -> None:
    # The key becomes a directory name: only our own hex digests, so no "..", no slashes.
    if not isinstance(key, str) or len(key) != 64 or not set(key) <= _KEY_CHARS:
        raise ValueError(f"cache key must be 64 lowercase hex characters (from content_key), got {key!r}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------------
# Reading a manifest: every field checked before it is used.


def _need(condition: bool, message: str) -> None:
    if not condition:
        raise _Damaged(message)


def _int(value: Any, what: str, upper: int = 2**62) -> int:
    _need(type(value) is int and 0 <= value <= upper, f"{what} is not an integer in 0..{upper}")
    return int(value)


def _float(value: Any, what: str) -> float:
    _need(type(value) in (int, float) and math.isfinite(value), f"{what} is not a finite number")
    return float(value)


def _str(value: Any, what: str) -> str:
    _need(isinstance(value, str), f"{what} is not a string")
    return str(value)


def _dict(value: Any, what: str) -> dict[str, Any]:
    _need(isinstance(value, dict), f"{what} is not an object")
    return dict(value)


def _list(value: Any, what: str) -> list[Any]:
    _need(isinstance(value, list), f"{what} is not a list")
    return list(value)


class _ArrayTable:
    """The manifest's array table checked against the data file's real size."""

    def __init__(self, table: Any, data_size: int) -> None:
        self.entries: list[tuple[int, str, int]] = []  # offset, dtype, rows
        for i, raw in enumerate(_list(table, "arrays")):
            item = _dict(raw, f"arrays[{i}]")
            dtype = _str(item.get("dtype"), f"arrays[{i}].dtype")
            _need(dtype in _DTYPES.values(), f"arrays[{i}] has dtype {dtype!r}")
            shape = _list(item.get("shape"), f"arrays[{i}].shape")
            _need(len(shape) == 2 and shape[1] == 3, f"arrays[{i}] has shape {shape!r}, expected (n, 3)")
            rows = _int(shape[0], f"arrays[{i}].shape[0]", 2**31 - 1)
            offset = _int(item.get("offset"), f"arrays[{i}].offset")
            _need(offset % ALIGN == 0, f"arrays[{i}] offset {offset} is not aligned to {ALIGN}")
            end = offset + rows * 3 * 4
            _need(end <= data_size, f"arrays[{i}] ends at byte {end}, past the data file ({data_size} bytes)")
            self.entries.append((offset, dtype, rows))

    def role(self, index: Any, role: str, what: str) -> int:
        """Index of an array that must exist and hold ``role`` ("vertices" or "faces")."""
        _need(type(index) is int and 0 <= index < len(self.entries), f"{what} refers to no array")
        _need(self.entries[index][1] == _DTYPES[role], f"{what} is not a {role} array")
        return int(index)


def _read_manifest(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        _need(size <= MAX_MANIFEST_BYTES, f"manifest is {size} bytes, above {MAX_MANIFEST_BYTES}")
        raw = f.read(MAX_MANIFEST_BYTES + 1)
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise _Damaged(f"manifest is not valid JSON ({exc})") from exc
    doc = _dict(doc, "manifest")
    body = _dict(doc.get("body"), "manifest body")
    try:
        actual = hashlib.sha256(_canonical(body)).hexdigest()
    except (TypeError, ValueError) as exc:  # NaN or similar smuggled into the body
        raise _Damaged(f"manifest body cannot be re-encoded ({exc})") from exc
    _need(doc.get("sha256") == actual, "manifest checksum does not match its body")
    _need(body.get("format") == FORMAT_NAME, f"not a {FORMAT_NAME} manifest")
    _need(body.get("version") == FORMAT_VERSION, f"format version {body.get('version')!r}, expected {FORMAT_VERSION}")
    return body


# ---------------------------------------------------------------------------------------------------


class TwinCache:
    """Content-addressed store of twins under ``root`` (default: ``default_root()``).

    ``get`` returns twins whose arrays are read-only views of one memory-mapped file per entry;
    ``put`` stores a twin atomically. Damaged entries never reach the caller: ``get`` drops them and
    returns None, counting them in ``stats.damaged``.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_root()
        self.stats = CacheStats()
        self._reported: set[str] = set()

    def path_for(self, key: str) -> Path:
        """Directory of the entry for ``key`` (it may not exist)."""
        _check_key(key)
        return self.root / key

    # -- reading ------------------------------------------------------------------------------------

    def get(self, key: str, *, verify: bool = False) -> Twin | None:
        """The twin stored under ``key``, or None on a miss (absent or damaged entry).

        Parameters
        ----------
        key
            From ``content_key``.
        verify
            Also hash the whole data file against the manifest (reads every byte: slower, catches
            corruption inside the arrays that the structural checks cannot see).

        Returns
        -------
        A ``Twin`` whose vertex (N, 3) float32 and face (M, 3) int32 arrays, levels of detail
        included, are read-only and memory-mapped from the entry; None on a miss.
        """
        entry = self.path_for(key)
        try:
            twin = self._load(entry, key, verify)
        except FileNotFoundError:
            self.stats.misses += 1
            return None
        except (_Damaged, OSError) as exc:
            self._drop(entry, key, str(exc))
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return twin

    def _load(self, entry: Path, key: str, verify: bool) -> Twin:
        try:
            body = _read_manifest(entry / MANIFEST)
        except FileNotFoundError:
            if entry.is_dir():  # a directory without a manifest is debris, not an absent entry
                raise _Damaged("manifest is missing") from None
            raise
        _need(body.get("key") == key, "manifest belongs to another key")
        data = _dict(body.get("data"), "data")
        expected_size = _int(data.get("size"), "data.size", MAX_ENTRY_BYTES)
        try:
            f = open(entry / ARRAYS, "rb")  # noqa: SIM115 - only open's FileNotFoundError means "missing"
        except FileNotFoundError:
            raise _Damaged("data file is missing") from None
        with f:
            size = os.fstat(f.fileno()).st_size
            _need(size == expected_size, f"data file is {size} bytes, manifest says {expected_size}")
            table = _ArrayTable(body.get("arrays"), size)
            if verify:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
                _need(digest == data.get("sha256"), "data file checksum does not match the manifest")
            # A zero-length file cannot be mapped; a twin of empty arrays needs no mapping anyway.
            buffer: mmap.mmap | bytes = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) if size else b""

        def array(index: int) -> np.ndarray:
            offset, dtype, rows = table.entries[index]
            return np.frombuffer(buffer, dtype=dtype, count=rows * 3, offset=offset).reshape(rows, 3)

        return self._build_twin(_dict(body.get("twin"), "twin"), table, array)

    @staticmethod
    def _build_twin(spec: dict[str, Any], table: _ArrayTable, array: Any) -> Twin:
        structures = []
        for i, raw in enumerate(_list(spec.get("structures"), "structures")):
            where = f"structures[{i}]"
            s = _dict(raw, where)
            vertices = array(table.role(s.get("vertices"), "vertices", f"{where}.vertices"))
            faces = array(table.role(s.get("faces"), "faces", f"{where}.faces"))
            color = _list(s.get("color"), f"{where}.color")
            _need(len(color) == 4, f"{where}.color has {len(color)} components")
            codes = _dict(s.get("codes"), f"{where}.codes")
            _need(all(isinstance(v, str) for v in codes.values()), f"{where}.codes values are not strings")
            lods = []
            for j, raw_level in enumerate(_list(s.get("lods"), f"{where}.lods")):
                lw = f"{where}.lods[{j}]"
                level = _dict(raw_level, lw)
                lods.append(
                    LevelOfDetail(
                        target_triangles=_int(level.get("target_triangles"), f"{lw}.target_triangles"),
                        vertices=array(table.role(level.get("vertices"), "vertices", f"{lw}.vertices")),
                        faces=array(table.role(level.get("faces"), "faces", f"{lw}.faces")),
                        error_mm=_float(level.get("error_mm"), f"{lw}.error_mm"),
                    )
                )
            structures.append(
                Structure(
                    name=_str(s.get("name"), f"{where}.name"),
                    vertices=vertices,
                    faces=faces,
                    color=tuple(_float(c, f"{where}.color") for c in color),  # type: ignore[arg-type]
                    codes=codes,
                    lods=lods,
                )
            )
        units = _str(spec.get("source_units"), "source_units")
        _need(units in UNIT_SCALE, f"source_units {units!r} is not one of {sorted(UNIT_SCALE)}")
        detected = spec.get("units_detected")
        _need(isinstance(detected, bool), "units_detected is not a boolean")
        return Twin(
            name=_str(spec.get("name"), "name"),
            structures=structures,
            source_units=units,
            units_detected=bool(detected),
            metadata=_dict(spec.get("metadata"), "metadata"),
            provenance=_dict(spec.get("provenance"), "provenance"),
        )

    def _drop(self, entry: Path, key: str, reason: str) -> None:
        self.stats.damaged += 1
        if key not in self._reported:
            self._reported.add(key)
            log.warning("cache entry %s is damaged (%s): dropped, the twin will be rebuilt", entry, reason)
        self._remove_dir(entry)

    def _remove_dir(self, entry: Path) -> None:
        # Rename first so a concurrent reader sees either the whole entry or none of it.
        trash = self.root / TEMP_DIR / f"trash.{uuid.uuid4().hex}"
        try:
            trash.parent.mkdir(parents=True, exist_ok=True)
            os.rename(entry, trash)
        except OSError:
            return  # already gone (another process dropped it) or not removable: a miss either way
        shutil.rmtree(trash, ignore_errors=True)

    def remove(self, key: str) -> bool:
        """Delete the entry for ``key``; True when there was one."""
        entry = self.path_for(key)
        existed = entry.exists()
        self._remove_dir(entry)
        return existed and not entry.exists()

    # -- writing ------------------------------------------------------------------------------------

    def put(self, key: str, twin: Twin) -> Path:
        """Store ``twin`` under ``key`` atomically and return the entry directory.

        If a valid entry for ``key`` already exists (another writer won the race) it is kept: keys
        are content addresses, so both describe the same twin.

        Raises
        ------
        CacheError
            The entry cannot be written (disk full, permissions) or the twin's metadata or
            provenance is not JSON-serialisable.
        """
        final = self.path_for(key)
        temp_root = self.root / TEMP_DIR
        temp = temp_root / f"{key}.{os.getpid()}.{uuid.uuid4().hex}"
        try:
            temp_root.mkdir(parents=True, exist_ok=True)
            self._sweep_stale(temp_root)
            temp.mkdir()
            self._write_entry(temp, key, twin)
            self._publish(temp, final, key)
        except OSError as exc:
            raise CacheError(final, f"cannot write cache entry: {exc.strerror or exc}") from exc
        finally:
            shutil.rmtree(temp, ignore_errors=True)
        self.stats.writes += 1
        return final

    def _publish(self, temp: Path, final: Path, key: str) -> None:
        for _ in range(3):
            try:
                os.rename(temp, final)
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            else:
                _fsync_dir(self.root)
                return
            try:
                self._load(final, key, verify=False)
                return  # a concurrent writer published the same content first
            except FileNotFoundError:
                continue  # it vanished between our rename and the check: try again
            except (_Damaged, OSError) as damage:
                self._drop(final, key, str(damage))
        raise OSError(errno.EEXIST, "the entry kept changing under concurrent writers")

    @staticmethod
    def _sweep_stale(temp_root: Path) -> None:
        cutoff = time.time() - STALE_TEMP_S
        for child in temp_root.iterdir():
            try:
                if child.stat().st_mtime < cutoff:
                    shutil.rmtree(child, ignore_errors=True)
            except OSError:
                continue  # removed by another process meanwhile

    @staticmethod
    def _write_entry(directory: Path, key: str, twin: Twin) -> None:
        arrays: list[dict[str, Any]] = []
        digest = hashlib.sha256()
        offset = 0

        with open(directory / ARRAYS, "wb") as f:

            def add(values: np.ndarray, role: str) -> int:
                nonlocal offset
                a = np.ascontiguousarray(values, dtype=_DTYPES[role]).reshape(-1, 3)
                pad = -offset % ALIGN
                if pad:
                    f.write(b"\0" * pad)
                    digest.update(b"\0" * pad)
                    offset += pad
                arrays.append({"offset": offset, "dtype": _DTYPES[role], "shape": [len(a), 3]})
                f.write(a.data)
                digest.update(a.data)
                offset += a.nbytes
                return len(arrays) - 1

            structures = [
                {
                    "name": s.name,
                    "color": [float(c) for c in s.color],
                    "codes": dict(s.codes),
                    "vertices": add(s.vertices, "vertices"),
                    "faces": add(s.faces, "faces"),
                    "lods": [
                        {
                            "target_triangles": int(level.target_triangles),
                            "error_mm": float(level.error_mm),
                            "vertices": add(level.vertices, "vertices"),
                            "faces": add(level.faces, "faces"),
                        }
                        for level in s.lods
                    ],
                }
                for s in twin.structures
            ]
            f.flush()
            os.fsync(f.fileno())

        body = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "key": key,
            "data": {"size": offset, "sha256": digest.hexdigest()},
            "arrays": arrays,
            "twin": {
                "name": twin.name,
                "source_units": twin.source_units,
                "units_detected": bool(twin.units_detected),
                "metadata": twin.metadata,
                "provenance": twin.provenance,
                "structures": structures,
            },
        }
        try:
            # Round-trip through JSON so that Paths and numpy scalars become plain values whose
            # canonical encoding is the same when the reader re-encodes the parsed body.
            body = json.loads(json.dumps(body, default=_json_default, allow_nan=False))
            manifest = json.dumps({"sha256": hashlib.sha256(_canonical(body)).hexdigest(), "body": body}, indent=1)
        except (TypeError, ValueError) as exc:
            raise CacheError(twin.name, f"twin metadata or provenance cannot be cached: {exc}") from exc
        with open(directory / MANIFEST, "w", encoding="utf-8") as text:
            text.write(manifest)
            text.flush()
            os.fsync(text.fileno())
        _fsync_dir(directory)
