"""The `medverse` command line as a user runs it: twin subcommands, demo, help and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import trimesh

DICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
VALIDATOR = Path(__file__).resolve().parents[2] / "tools" / "validate_gltf.mjs"


def medverse(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """Run the installed console script with its own cache and home (no terminal: no progress bars)."""
    env = dict(os.environ, MEDVERSE_HOME=str(home / "home"), MEDVERSE_CACHE=str(home / "cache"))
    script = Path(sys.executable).with_name("medverse")
    return subprocess.run([str(script), *args], check=False, capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.mark.slow
def test_help_explains_every_subcommand(home: Path) -> None:
    top = medverse("--help", home=home)
    assert top.returncode == 0 and "twin" in top.stdout and "demo" in top.stdout
    for action in ("list", "info", "build", "import", "validate", "export"):
        result = medverse("twin", action, "--help", home=home)
        assert result.returncode == 0 and "usage: medverse twin " + action in result.stdout


def test_build_then_list_shows_the_cached_brain(home: Path) -> None:
    built = medverse("twin", "build", "brain", home=home)
    assert built.returncode == 0, built.stderr
    assert "40,960 triangles" in built.stdout and "cached at" in built.stdout
    listed = medverse("twin", "list", home=home)
    row = next(line for line in listed.stdout.splitlines() if " brain " in line)
    assert "bundled" in row and "yes" in row


def test_import_info_and_export_a_dicom_twin(home: Path, tmp_path: Path) -> None:
    imported = medverse("twin", "import", str(DICOM_FILES / "CT_small.dcm"), "--name", "ct", home=home)
    assert imported.returncode == 0, imported.stderr
    assert "imported as 'ct'" in imported.stdout
    info = medverse("twin", "info", "ct", home=home)
    assert info.returncode == 0 and "PatientIdentityRemoved=YES" in info.stdout
    assert "CompressedSamples" not in info.stdout and "PatientName" not in info.stdout
    out = tmp_path / "ct.glb"
    exported = medverse("twin", "export", "ct", "--glb", str(out), home=home)
    assert exported.returncode == 0, exported.stderr
    report = json.loads(subprocess.run(["node", str(VALIDATOR), str(out)], capture_output=True, text=True,
                                       check=True).stdout)
    assert report["issues"]["numErrors"] == 0
    assert len(trimesh.load(out, force="scene").geometry) == 1


def test_threshold_zero_is_used_not_dropped(home: Path) -> None:
    """`--threshold 0` (water, in HU) reaches the loader: the CLI once dropped every option equal to 0,
    so pydicom's CT_small silently got the 300 HU default."""
    imported = medverse("twin", "import", str(DICOM_FILES / "CT_small.dcm"), "--name", "ct-zero", "--threshold", "0",
                        home=home)
    assert imported.returncode == 0, imported.stderr
    info = medverse("twin", "info", "ct-zero", home=home)
    assert info.returncode == 0 and "threshold: 0.0" in info.stdout.splitlines(), info.stdout


def test_validate_reports_problems_with_exit_one(home: Path, tmp_path: Path) -> None:
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=40.0)
    good = tmp_path / "ball.stl"
    mesh.export(good)
    ok = medverse("twin", "validate", str(good), home=home)
    assert ok.returncode == 0 and "valid" in ok.stdout
    mesh.faces = mesh.faces[:-3]  # punch a hole
    holed = tmp_path / "holed.ply"
    mesh.export(holed)
    bad = medverse("twin", "validate", str(holed), home=home)
    assert bad.returncode == 1 and "boundary edges" in bad.stdout


def test_validate_exits_one_on_a_file_that_import_repairs(home: Path, tmp_path: Path) -> None:
    """A real surface (fsaverage5 pial, mm) with one NaN vertex: import repairs it (drops the faces on
    it) and succeeds; validate lists the problem with exit 1, as the README says, not exit 2."""
    import nibabel as nib
    import nilearn

    image = nib.load(Path(nilearn.__file__).parent / "datasets" / "data" / "fsaverage5" / "pial_left.gii.gz")
    vertices = np.array(image.darrays[0].data, dtype=np.float64)
    vertices[100] = np.nan
    path = tmp_path / "cortex.ply"
    path.write_bytes(trimesh.Trimesh(vertices, image.darrays[1].data, process=False).export(file_type="ply"))
    checked = medverse("twin", "validate", str(path), home=home)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "1 vertices are NaN or infinite [non-finite]" in checked.stdout
    imported = medverse("twin", "import", str(path), "--name", "nan-cortex", home=home)
    assert imported.returncode == 0, imported.stderr
    assert "repaired: " in imported.stdout and "non-finite" in imported.stdout


@pytest.mark.parametrize("args", [("twin", "info", "heart"), ("twin", "import", "/no/such/file.stl"),
                                  ("twin", "validate", "__garbage__")])
def test_bad_input_is_one_line_on_stderr_with_exit_two(home: Path, tmp_path: Path, args: tuple[str, ...]) -> None:
    if args[-1] == "__garbage__":
        garbage = tmp_path / "garbage.glb"
        garbage.write_bytes(b"glTF\x02\x00\x00\x00garbage")
        args = (*args[:-1], str(garbage))
    result = medverse(*args, home=home)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medverse: error: ") and "Traceback" not in result.stderr


@pytest.mark.slow
def test_demo_summarises_the_twins_and_shows_a_user_working_on_the_brain(home: Path, tmp_path: Path) -> None:
    """What `make demo` runs: real twins summarised, then a scripted user selects, measures and cuts the brain;
    the frame of each step is a stereo PNG where the last line says, and the cut shows in its frame."""
    from PIL import Image

    out = tmp_path / "demo"
    result = medverse("demo", "--out", str(out), "--width", "160", "--height", "160", home=home)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith(f"demo output: {out}")
    assert "measured" in result.stdout and "cut a cross-section" in result.stdout
    summary = json.loads((out / "demo.json").read_text())
    by_name = {t["name"]: t for t in summary["twins"]}
    assert by_name["brain"]["triangles"] == 40_960
    assert all(s["watertight"] for s in by_name["brain"]["structures"])
    assert by_name["brain-mni"]["triangles"] > 500_000
    kinds = [i["kind"] for i in summary["simulator"]["intents"]]
    assert {"select", "measure", "clip_plane"} <= set(kinds)
    frames = {Path(p).stem.split("_", 2)[2]: Path(p) for p in summary["simulator"]["written"]}
    assert {"selected", "measured", "cut"} <= set(frames)
    for name in ("selected", "measured", "cut"):
        image = np.asarray(Image.open(frames[name]).convert("RGB"), dtype=np.int16)
        background = image[0, 0]
        for eye in np.split(image, 2, axis=1):  # both eyes side by side
            assert (np.abs(eye - background).sum(axis=2) > 60).mean() > 0.02, name  # the brain is in view
