"""`medverse pacs find` and `medverse twin import --pacs` as a user runs them, against the real Orthanc.

(The CLI lives in sessions/cli; its tests are here because they need this folder's PACS fixtures.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-pacs")


def medverse(*args: str, home: Path, config: Path) -> subprocess.CompletedProcess[str]:
    """The installed console script, with its own cache, home and configuration file (no terminal)."""
    env = dict(os.environ, MEDVERSE_HOME=str(home / "home"), MEDVERSE_CACHE=str(home / "cache"),
               MEDVERSE_CONFIG=str(config))
    env.pop("MEDVERSE_PACS", None)
    script = Path(sys.executable).with_name("medverse")
    return subprocess.run([str(script), *args], check=False, capture_output=True, text=True, env=env, timeout=120)


def test_find_prints_the_series_as_json_and_as_a_table(home: Path, pacs_config: Path, ct_study: Any) -> None:
    """`pacs find --json` gives one object per series; without it a table holds the same UIDs."""
    found = medverse("pacs", "find", "--pacs", "dimse", "--patient", "Doe*", "--modality", "ct", "--json",
                     home=home, config=pacs_config)
    assert found.returncode == 0, found.stderr
    rows = json.loads(found.stdout)
    patient = ct_study.identity["PatientID"]
    assert {(r["series_uid"], r["instances"], r["patient_id"]) for r in rows} == {
        (ct_study.series_uid, 54, patient), (ct_study.scout_uid, 4, patient)}
    # no --pacs: the configuration's default server, web
    table = medverse("pacs", "find", "--patient-id", ct_study.identity["PatientID"], home=home, config=pacs_config)
    assert table.returncode == 0, table.stderr
    assert "pacs web: 2 series" in table.stdout and "Head 3 mm" in table.stdout and "Scout" in table.stdout


def test_twin_import_from_the_pacs_by_series(home: Path, pacs_config: Path, ct_study: Any) -> None:
    """`twin import --pacs dimse --series UID` makes a named twin and says what de-identification did."""
    done = medverse("twin", "import", "--pacs", "dimse", "--series", ct_study.series_uid, "--name", "head-ct",
                    "--threshold", str(ct_study.bone_hu), home=home, config=pacs_config)
    assert done.returncode == 0, done.stderr
    assert "54 instances of CT from pacs dimse, de-identified" in done.stdout and "imported as 'head-ct'" in done.stdout
    catalogue = (home / "home" / "twins.json").read_text()
    assert "head-ct" in json.loads(catalogue)["twins"]
    assert ct_study.identity["PatientID"] not in catalogue and ct_study.series_uid not in catalogue


@pytest.mark.parametrize(("args", "message"), [
    (("pacs", "find", "--pacs", "web-wrong-password", "--patient", "Doe*"), "HTTP 401"),
    (("pacs", "find", "--pacs", "nowhere"), "no [pacs.nowhere] table"),
    (("twin", "import", "--pacs", "web"), "give --study UID or --series UID (or both)"),
])
def test_mistakes_end_in_one_line(home: Path, pacs_config: Path, args: tuple[str, ...], message: str) -> None:
    """Wrong credentials, an unknown server, a missing UID: exit 2 and one line (the library's tests cover
    the other mistakes, each raised as one line)."""
    result = medverse(*args, home=home, config=pacs_config)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
