"""Content-addressed twin cache: memory-mapped round trips, keys, damage, concurrency (assets.cache)."""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import nilearn
import numpy as np
import pytest

from assets.cache import ARRAYS, MANIFEST, MAX_MANIFEST_BYTES, TEMP_DIR, TwinCache, content_key, default_root
from assets.errors import CacheError
from assets.lod import build_lods
from assets.twin import Structure, Twin

FSAVERAGE5 = Path(nilearn.__file__).parent / "datasets" / "data" / "fsaverage5"


@pytest.fixture(scope="module")
def brain() -> Twin:
    """Both fsaverage5 pial hemispheres (mm -> m), the left one with a level of detail."""
    structures = []
    for side, color in (("left", (0.9, 0.7, 0.65, 1.0)), ("right", (0.85, 0.7, 0.7, 0.5))):
        image = nib.load(FSAVERAGE5 / f"pial_{side}.gii.gz")
        structures.append(
            Structure(
                f"{side}-pial",
                image.darrays[0].data / 1000.0,
                image.darrays[1].data,
                color=color,
                codes={"FMA": "242199" if side == "left" else "242198"},
            )
        )
    structures[0].lods = build_lods(structures[0], (4_000,))
    return Twin(
        "brain",
        structures,
        source_units="mm",
        units_detected=True,
        metadata={"Modality": "MR", "PatientIdentityRemoved": "YES"},
        provenance={"files": [str(FSAVERAGE5 / "pial_left.gii.gz")], "nilearn": nilearn.__version__},
    )


@pytest.fixture
def cache(tmp_path: Path) -> TwinCache:
    return TwinCache(tmp_path / "cache")


@pytest.fixture
def stored(cache: TwinCache, brain: Twin) -> str:
    """Key of an entry holding ``brain``."""
    key = content_key(FSAVERAGE5 / "pial_left.gii.gz", "test")
    cache.put(key, brain)
    return key


@pytest.fixture
def rewrite_manifest(cache: TwinCache) -> Callable[[str, Callable[[dict[str, Any]], None]], None]:
    """Change an entry's manifest body and re-sign it, as a hostile writer would."""

    def rewrite(key: str, change: Callable[[dict[str, Any]], None]) -> None:
        path = cache.path_for(key) / MANIFEST
        body = json.loads(path.read_text())["body"]
        change(body)
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        path.write_text(json.dumps({"sha256": hashlib.sha256(canonical).hexdigest(), "body": body}))

    return rewrite


def is_memory_mapped(array: np.ndarray) -> bool:
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    return isinstance(base, mmap.mmap)


def assert_same_twin(got: Twin, want: Twin) -> None:
    assert (got.name, got.source_units, got.units_detected) == (want.name, want.source_units, want.units_detected)
    assert got.metadata == want.metadata and got.provenance == want.provenance
    assert [s.name for s in got.structures] == [s.name for s in want.structures]
    for g, w in zip(got.structures, want.structures, strict=True):
        assert g.color == w.color and g.codes == w.codes
        np.testing.assert_array_equal(g.vertices, w.vertices)
        np.testing.assert_array_equal(g.faces, w.faces)
        assert (g.vertices.dtype, g.faces.dtype) == (np.float32, np.int32)
        assert len(g.lods) == len(w.lods)
        for gl, wl in zip(g.lods, w.lods, strict=True):
            assert (gl.target_triangles, gl.error_mm) == (wl.target_triangles, wl.error_mm)
            np.testing.assert_array_equal(gl.vertices, wl.vertices)
            np.testing.assert_array_equal(gl.faces, wl.faces)


def test_round_trip_gives_equal_read_only_memory_mapped_arrays(cache: TwinCache, brain: Twin, stored: str) -> None:
    """A stored twin comes back equal in every field, its arrays read-only views of a mapped file."""
    got = TwinCache(cache.root).get(stored)
    assert got is not None
    assert_same_twin(got, brain)
    arrays = [a for s in got.structures for a in (s.vertices, s.faces, *(x for lod in s.lods for x in (lod.vertices, lod.faces)))]
    assert len(arrays) == 6
    for array in arrays:
        assert is_memory_mapped(array)
        assert not array.flags.writeable
    with pytest.raises(ValueError):
        got.structures[0].vertices[0, 0] = 1.0


def test_absent_key_is_a_counted_miss(cache: TwinCache) -> None:
    """An unknown key returns None and counts a miss, not damage."""
    assert cache.get(content_key("nothing stored")) is None
    assert (cache.stats.misses, cache.stats.damaged, cache.stats.hits) == (1, 0, 0)


def test_key_depends_on_bytes_options_and_their_boundaries(tmp_path: Path) -> None:
    """Same bytes and options give the same key wherever the file is; any change gives another."""
    source = FSAVERAGE5 / "pial_left.gii.gz"
    copy = tmp_path / "elsewhere.gii.gz"
    shutil.copyfile(source, copy)
    base = content_key(source, "units=mm")
    assert len(base) == 64 and int(base, 16) >= 0
    assert content_key(copy, "units=mm") == base
    changed = bytearray(copy.read_bytes())
    changed[len(changed) // 2] ^= 0x01
    copy.write_bytes(bytes(changed))
    others = {
        content_key(copy, "units=mm"),  # one bit of the source
        content_key(source, "units=m"),  # an option
        content_key(source),  # an option fewer
        content_key("units=mm", source),  # order
        content_key(source, b"units=mm"),  # bytes are not strings
    }
    assert base not in others and len(others) == 5
    assert content_key("ab", "c") != content_key("a", "bc")


def test_directory_key_covers_names_and_contents(tmp_path: Path) -> None:
    """A directory source (a DICOM series) keys on every file's relative name and bytes."""
    series = tmp_path / "series"
    (series / "sub").mkdir(parents=True)
    (series / "a.dcm").write_bytes(b"one")
    (series / "sub" / "b.dcm").write_bytes(b"two")
    first = content_key(series)
    assert content_key(series) == first
    (series / "sub" / "b.dcm").write_bytes(b"tw0")
    second = content_key(series)
    (series / "sub" / "b.dcm").rename(series / "sub" / "c.dcm")
    assert len({first, second, content_key(series)}) == 3


def test_unreadable_source_raises_asset_error(tmp_path: Path) -> None:
    """A source path that cannot be read is an UnreadableAssetError naming it."""
    from assets.errors import UnreadableAssetError

    with pytest.raises(UnreadableAssetError, match=r"missing\.gii"):
        content_key(tmp_path / "missing.gii")


def test_malformed_key_is_refused(cache: TwinCache) -> None:
    """Keys become directory names: anything but a 64-hex digest is a ValueError."""
    for key in ("../../etc", "A" * 64, "0" * 63, ""):
        with pytest.raises(ValueError):
            cache.get(key)


def _truncate_data(entry: Path) -> None:
    data = entry / ARRAYS
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])


DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated data": _truncate_data,
    "missing data": lambda entry: (entry / ARRAYS).unlink(),
    "missing manifest": lambda entry: (entry / MANIFEST).unlink(),
    "manifest not JSON": lambda entry: (entry / MANIFEST).write_text('{"sha256": "ab", "body": {'),
    "manifest not UTF-8": lambda entry: (entry / MANIFEST).write_bytes(b"\xff\xfe{}"),
    "manifest truncated": lambda entry: (entry / MANIFEST).write_bytes((entry / MANIFEST).read_bytes()[:100]),
    "manifest body edited without its checksum": lambda entry: (entry / MANIFEST).write_text(
        (entry / MANIFEST).read_text().replace('"left-pial"', '"left-pia1"')
    ),
    "oversized manifest": lambda entry: (entry / MANIFEST).write_bytes(b" " * (MAX_MANIFEST_BYTES + 1)),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_entry_is_dropped_logged_once_and_rebuilt(
    cache: TwinCache, brain: Twin, stored: str, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A damaged entry is a miss: counted, one warning, removed; a new put then loads."""
    DAMAGE[damage](cache.path_for(stored))
    with caplog.at_level(logging.WARNING, logger="assets.cache"):
        assert cache.get(stored) is None
    assert (cache.stats.damaged, cache.stats.misses) == (1, 1)
    assert len([r for r in caplog.records if "damaged" in r.getMessage()]) == 1
    assert not cache.path_for(stored).exists()
    cache.put(stored, brain)
    got = cache.get(stored)
    assert got is not None
    assert_same_twin(got, brain)


HOSTILE: dict[str, Callable[[dict[str, Any]], None]] = {
    "gigabytes of vertices": lambda b: b["arrays"][0].update(shape=[2**31 - 1, 3]),
    "offset past the end": lambda b: b["arrays"][0].update(offset=b["data"]["size"] + 64),
    "negative offset": lambda b: b["arrays"][0].update(offset=-64),
    "unaligned offset": lambda b: b["arrays"][1].update(offset=b["arrays"][1]["offset"] + 4),
    "float64 dtype": lambda b: b["arrays"][0].update(dtype="<f8"),
    "object dtype": lambda b: b["arrays"][0].update(dtype="|O"),
    "four columns": lambda b: b["arrays"][0].update(shape=[10, 4]),
    "three dimensions": lambda b: b["arrays"][0].update(shape=[10, 3, 1]),
    "string row count": lambda b: b["arrays"][0].update(shape=["10", 3]),
    "boolean row count": lambda b: b["arrays"][0].update(shape=[True, 3]),
    "array index out of range": lambda b: b["twin"]["structures"][0].update(vertices=99),
    "faces used as vertices": lambda b: b["twin"]["structures"][0].update(vertices=b["twin"]["structures"][0]["faces"]),
    "claims a larger data file": lambda b: b["data"].update(size=b["data"]["size"] * 1000),
    "another key": lambda b: b.update(key="0" * 64),
    "future version": lambda b: b.update(version=99),
    "unknown units": lambda b: b["twin"].update(source_units="furlong"),
    "colour of three": lambda b: b["twin"]["structures"][0].update(color=[1, 0, 0]),
    "infinite LOD error": lambda b: b["twin"]["structures"][0]["lods"][0].update(error_mm=1e999),
    "codes not strings": lambda b: b["twin"]["structures"][0].update(codes={"FMA": 5}),
    "structures not a list": lambda b: b["twin"].update(structures={"a": 1}),
}


@pytest.mark.parametrize("change", list(HOSTILE))
def test_hostile_manifest_with_valid_checksum_is_a_miss(
    cache: TwinCache, stored: str, change: str, rewrite_manifest: Callable[..., None]
) -> None:
    """A correctly signed manifest that lies about arrays or fields is refused before any mapping."""
    rewrite_manifest(stored, HOSTILE[change])
    assert cache.get(stored) is None
    assert cache.stats.damaged == 1 and cache.stats.hits == 0
    assert not cache.path_for(stored).exists()


def test_verify_catches_a_flipped_byte_inside_the_arrays(cache: TwinCache, stored: str) -> None:
    """Structural checks cannot see a flipped data byte; verify=True hashes the data and does."""
    data = cache.path_for(stored) / ARRAYS
    raw = bytearray(data.read_bytes())
    raw[1000] ^= 0xFF
    data.write_bytes(bytes(raw))
    assert cache.get(stored) is not None
    assert cache.get(stored, verify=True) is None
    assert cache.stats.damaged == 1


def test_put_replaces_debris_left_under_the_key(cache: TwinCache, brain: Twin) -> None:
    """A directory under the key without a valid entry does not block a put."""
    key = content_key("debris")
    debris = cache.path_for(key)
    debris.mkdir(parents=True)
    (debris / "junk").write_bytes(b"x")
    cache.put(key, brain)
    got = cache.get(key)
    assert got is not None and got.triangle_count == brain.triangle_count


def test_unserialisable_metadata_is_a_cache_error_and_leaves_nothing(cache: TwinCache, brain: Twin) -> None:
    """Metadata JSON cannot hold raises CacheError; no entry and no temporary directory remain."""
    odd = Twin("odd", brain.structures, metadata={"when": object()})
    key = content_key("odd")
    with pytest.raises(CacheError, match="cannot be cached"):
        cache.put(key, odd)
    assert not cache.path_for(key).exists()
    assert list((cache.root / TEMP_DIR).iterdir()) == []


def test_stale_temporary_directories_are_swept(cache: TwinCache, brain: Twin) -> None:
    """Temporary directories of dead writers (an hour old) go at the next put; fresh ones stay."""
    temp = cache.root / TEMP_DIR
    stale, fresh = temp / "stale", temp / "fresh"
    for d in (stale, fresh):
        d.mkdir(parents=True)
        (d / ARRAYS).write_bytes(b"partial")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    cache.put(content_key("sweep"), brain)
    assert not stale.exists() and fresh.exists()


def test_default_root_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """$MEDVERSE_CACHE wins; otherwise the XDG cache directory."""
    monkeypatch.setenv("MEDVERSE_CACHE", str(tmp_path / "explicit"))
    assert TwinCache().root == tmp_path / "explicit"
    monkeypatch.delenv("MEDVERSE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_root() == tmp_path / "xdg" / "medverse" / "twins"


def _write_when_released(root: str, key: str, twin: Twin, barrier: Any) -> None:
    barrier.wait()
    TwinCache(root).put(key, twin)


def test_concurrent_writers_of_one_key_leave_a_loadable_entry(cache: TwinCache, brain: Twin) -> None:
    """Four processes putting the same key at once leave one complete entry and no temporaries."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(4)
    key = content_key("race")
    writers = [context.Process(target=_write_when_released, args=(str(cache.root), key, brain, barrier)) for _ in range(4)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(30)
    assert [w.exitcode for w in writers] == [0, 0, 0, 0]
    got = cache.get(key, verify=True)
    assert got is not None
    assert_same_twin(got, brain)
    assert list((cache.root / TEMP_DIR).iterdir()) == []


WRITER = """
import sys, numpy as np
from assets.cache import TwinCache, content_key
from assets.twin import Structure, Twin
rng = np.random.default_rng(0)
v = rng.random((400_000, 3), dtype=np.float32)
f = rng.integers(0, len(v), (800_000, 3), dtype=np.int32)
twin = Twin("big", [Structure("a", v, f), Structure("b", v[::-1], f)])
cache = TwinCache(sys.argv[1])
print("ready", flush=True)
for i in range(1000):
    cache.put(content_key(str(i)), twin)
"""


def test_killed_writer_never_leaves_an_entry_that_loads_half(cache: TwinCache) -> None:
    """SIGKILL during a stream of puts: every entry under a key loads whole; the rest are misses."""
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(cache.root)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 60
    while (not cache.root.is_dir() or len(list(cache.root.iterdir())) < 2) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)  # into the next put, which writes about 40 MB
    writer.send_signal(signal.SIGKILL)
    writer.wait(10)
    published = [p.name for p in cache.root.iterdir() if p.name != TEMP_DIR]
    assert published, "the writer published nothing before it was killed"
    for key in published:
        twin = cache.get(key, verify=True)
        assert twin is not None and twin.triangle_count == 1_600_000
    assert cache.stats.damaged == 0
    # The writer was killed mid-put with high probability: its temporary directory is not an entry.
    unpublished = [str(i) for i in range(len(published), len(published) + 2)]
    assert all(cache.get(content_key(k)) is None for k in unpublished)
