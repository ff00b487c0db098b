"""`medverse twin import` of the formats of issue 17 as a user runs it: a label map with its colour
table (--labels), and a colour table that is wrong refused in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from assets.atlas import AAL_SOURCES, read_labels


def medverse(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """Run the installed console script with its own cache and home (no terminal: no progress bars)."""
    env = dict(os.environ, MEDVERSE_HOME=str(home / "home"), MEDVERSE_CACHE=str(home / "cache"))
    script = Path(sys.executable).with_name("medverse")
    return subprocess.run([str(script), *args], check=False, capture_output=True, text=True, env=env, timeout=120)


def test_label_map_imports_with_its_colour_table(tmp_path: Path) -> None:
    """Two AAL regions as a NIfTI label map with a Slicer colour table: one named structure each; the
    catalogue records the table by content, not by its path."""
    names = read_labels(AAL_SOURCES[1])
    full = nib.load(AAL_SOURCES[0])
    box = np.argwhere(np.isin(np.asarray(full.dataobj), (1, 2)))
    lo, hi = box.min(axis=0) - 2, box.max(axis=0) + 3
    atlas = full.slicer[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]  # nibabel keeps the affine right
    labels = np.asarray(atlas.dataobj).astype(np.int16)
    labels[~np.isin(labels, (1, 2))] = 0
    path = tmp_path / "Doe_John_labels.nii.gz"
    nib.save(nib.Nifti1Image(labels, atlas.affine), path)
    table = tmp_path / "Doe_John.ctbl"
    table.write_text("0 Background 0 0 0 0\n" + "".join(f"{v} {names[v]} {40 * v} 100 150 255\n" for v in (1, 2)))
    imported = medverse("twin", "import", str(path), "--labels", str(table), "--name", "aal2", home=tmp_path)
    assert imported.returncode == 0, imported.stderr
    info = medverse("twin", "info", "aal2", home=tmp_path)
    assert info.returncode == 0 and names[1] in info.stdout and names[2] in info.stdout
    catalogue = (tmp_path / "home" / "twins.json").read_text()
    assert json.loads(catalogue)["twins"]["aal2"]["options"]["labels"].startswith("sha256:")
    assert "Doe_John" not in catalogue
    table.write_text("1 Precentral_L 10 20\n")
    refused = medverse("twin", "import", str(path), "--labels", str(table), "--name", "aal3", home=tmp_path)
    assert refused.returncode != 0 and "line 1" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
