"""A CT head found and imported from a running Orthanc over DICOMweb and DIMSE, de-identified.

Every test here talks to the real PACS of ``conftest.py`` (Orthanc as a plain process, filled with
the CT study built from ``Cranium.inv3``).
"""

from __future__ import annotations

import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from assets.cache import TwinCache
from assets.library import Library
from assets.pacs import (
    PacsAuthError,
    PacsConnectionError,
    PacsNotFoundError,
    PacsRequestError,
    StudyQuery,
    find,
    import_series,
    resolve_server,
    retrieve_series,
)
from assets.validate import is_watertight

PROTOCOLS = ("web", "dimse")


@pytest.mark.parametrize("server", PROTOCOLS)
def test_find_by_patient_and_modality(server: str, pacs_config: Path, ct_study: Any) -> None:
    """A wildcard name and CT find both series of the study, with the patient as the PACS holds it."""
    found = find(resolve_server(server, pacs_config), StudyQuery(patient="Doe^Jane*", modality="CT"))
    assert sorted((m.series_uid, m.instances) for m in found) == sorted(
        [(ct_study.series_uid, 54), (ct_study.scout_uid, 4)])
    head = next(m for m in found if m.series_uid == ct_study.series_uid)
    assert (head.patient_name, head.patient_id, head.patient_birth_date) == (
        ct_study.identity["PatientName"], ct_study.identity["PatientID"], ct_study.identity["PatientBirthDate"])
    assert (head.study_uid, head.modality, head.series_description, head.study_date) == (
        ct_study.study_uid, "CT", "Head 3 mm", ct_study.identity["StudyDate"])
    assert find(resolve_server(server, pacs_config), StudyQuery(patient="Doe^Jane*", modality="MR")) == []
    assert find(resolve_server(server, pacs_config), StudyQuery(patient="Roe*")) == []


@pytest.mark.parametrize("server", PROTOCOLS)
def test_find_a_name_beyond_ascii(server: str, pacs_config: Path) -> None:
    """'Müller^J*' finds Jürgen Müller and nobody else (DICOMweb sends what HTTP would encode as
    wildcards and filters the answers; DIMSE declares UTF-8)."""
    found = find(resolve_server(server, pacs_config), StudyQuery(patient="Müller^J*"))
    assert [(m.patient_name, m.patient_id, m.instances) for m in found] == [("Müller^Jürgen", "MV-PACS-0815", 1)]
    assert find(resolve_server(server, pacs_config), StudyQuery(patient="Müllers*")) == []


@pytest.mark.parametrize("server", PROTOCOLS)
def test_a_search_lists_at_most_limit_studies_and_says_so(server: str, pacs_config: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """With two studies on the PACS, limit 1 lists the series of one of them and warns that more match."""
    pacs = resolve_server(server, pacs_config)
    assert len({m.study_uid for m in find(pacs, StudyQuery())}) == 2 and not caplog.records
    with caplog.at_level("WARNING"):
        limited = find(pacs, StudyQuery(limit=1))
    assert len({m.study_uid for m in limited}) == 1
    assert [r.getMessage() for r in caplog.records] == [
        "more than 1 studies match: the first 1 are listed (narrow the search, or raise the limit)"]


@pytest.mark.parametrize("server", PROTOCOLS)
def test_find_by_patient_id_and_study_date_range(server: str, pacs_config: Path, ct_study: Any) -> None:
    """The patient ID with a date range around the study finds it; a range that misses it finds nothing."""
    pacs = resolve_server(server, pacs_config)
    hit = find(pacs, StudyQuery(patient_id=ct_study.identity["PatientID"], study_date="20260101-20260131"))
    assert {m.study_uid for m in hit} == {ct_study.study_uid} and len(hit) == 2
    assert find(pacs, StudyQuery(patient_id=ct_study.identity["PatientID"], study_date="20250101-20251231")) == []


#: Server and UID kind of each import; C-MOVE (the ``move`` server) is covered by the retrieval test below.
CASES = [("web", "study"), ("web", "series"), ("dimse", "study"), ("dimse", "series")]


@pytest.mark.parametrize(("server", "by"), CASES, ids=[f"{s}-by-{b}" for s, b in CASES])
def test_import_makes_the_skull_and_stores_nothing_identifying(server: str, by: str, pacs_config: Path, ct_study: Any,
                                                              tmp_path: Path) -> None:
    """Imported by study or series UID, the twin is one closed surface around the bone of the 54-slice
    series (not the 4-slice scout): within one voxel outside the box of voxels >= 300 HU, not inside it.
    Name, ID, birth date, accession, institution, physician, study date and every original UID are in
    no byte of the cache, the catalogue or an exported GLB, and no temporary folder is left behind.

    (One test per import: an import takes seconds, and a fixture shared by two tests would run on both
    pytest-xdist workers.)"""
    from assets.export import export_glb

    stored, temp = tmp_path / "stored", tmp_path / "temp"
    temp.mkdir()
    library = Library(cache=TwinCache(stored / "cache"), root=stored / "home")
    uid = {"study_uid": ct_study.study_uid} if by == "study" else {"series_uid": ct_study.series_uid}
    saved, tempfile.tempdir = tempfile.tempdir, str(temp)
    try:
        twin, retrieval = import_series(resolve_server(server, pacs_config), library=library,
                                        threshold=ct_study.bone_hu, **uid)
    finally:
        tempfile.tempdir = saved
    assert retrieval.instances == 54 and retrieval.modality == "CT"
    (surface,) = twin.structures
    assert surface.triangle_count > 20_000 and is_watertight(surface)
    low, high = surface.bounds() * 1000.0
    box_low, box_high = ct_study.bone_box_mm
    voxel = float(ct_study.voxel_mm.max())
    assert np.all(low <= box_low + 0.01) and np.all(low >= box_low - voxel), (low, box_low)
    assert np.all(high >= box_high - 0.01) and np.all(high <= box_high + voxel), (high, box_high)
    assert 140.0 < high[2] - low[2] < 170.0  # the whole series (54 x 3 mm), not the scout's 12 mm
    assert twin.metadata["Modality"] == "CT" and twin.metadata["PatientIdentityRemoved"] == "YES"

    export_glb(twin, tmp_path / "twin.glb")
    files = [p for p in stored.rglob("*") if p.is_file()] + [tmp_path / "twin.glb"]
    assert len(files) >= 3 and any(p.name == "twins.json" for p in files)
    for path in files:
        data = path.read_bytes()
        for value in ct_study.identifiers:
            assert value.encode() not in data, f"{value!r} is stored in {path.name}"
    assert list(temp.iterdir()) == []


def test_retrieved_instances_are_deidentified_with_consistent_uids(pacs_config: Path, ct_study: Any,
                                                                  tmp_path: Path) -> None:
    """What retrieval writes (here by C-MOVE, the series named within its study) is already
    de-identified: Patient Identity Removed, no identifying value, and new UIDs that still tie the
    series together (one study, one series, one frame of reference)."""
    retrieval = retrieve_series(resolve_server("move", pacs_config), tmp_path, study_uid=ct_study.study_uid,
                                series_uid=ct_study.series_uid)
    files = sorted(tmp_path.iterdir())
    assert len(files) == retrieval.instances == 54 and retrieval.actions["U"] >= 4 * 54
    datasets = [pydicom.dcmread(p) for p in files]
    for path in files:
        data = path.read_bytes()
        assert not [v for v in ct_study.identifiers if v.encode() in data], path.name
    assert {ds.PatientIdentityRemoved for ds in datasets} == {"YES"}
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        values = {str(ds.get(keyword)) for ds in datasets}
        assert len(values) == 1 and values.pop().startswith("2.25."), keyword
    assert len({ds.SOPInstanceUID for ds in datasets}) == 54
    assert all(ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID for ds in datasets)


def test_wrong_password_is_one_line(pacs_config: Path) -> None:
    """DICOMweb with the wrong password: the PACS's 401, named as such, in one line."""
    with pytest.raises(PacsAuthError) as caught:
        find(resolve_server("web-wrong-password", pacs_config), StudyQuery(patient="Doe*"))
    assert "HTTP 401" in str(caught.value) and "\n" not in str(caught.value)


def test_unknown_calling_ae_title_is_one_line(pacs_config: Path, ct_study: Any) -> None:
    """DIMSE from an AE title Orthanc does not know: search and retrieval both end in one line naming it."""
    pacs = resolve_server("dimse-unknown-ae", pacs_config)
    with pytest.raises(PacsAuthError, match="'STRANGER'") as caught:
        find(pacs, StudyQuery(patient="Doe*"))
    assert "\n" not in str(caught.value)
    with pytest.raises(PacsAuthError, match="'STRANGER'"):
        retrieve_series(pacs, Path(tempfile.mkdtemp()), study_uid=ct_study.study_uid, series_uid=ct_study.series_uid)


def test_a_move_destination_the_pacs_cannot_reach_is_explained(pacs_config: Path, ct_study: Any, tmp_path: Path) -> None:
    """C-MOVE while medverse listens on another port than the PACS sends to: the PACS's failure, and
    what to check, in one line."""
    with pytest.raises(PacsRequestError, match=r"C-MOVE failed: status 0x.*does the PACS map 'MEDVERSE' to this "
                       r"machine and that port\?") as caught:
        retrieve_series(resolve_server("move-elsewhere", pacs_config), tmp_path, series_uid=ct_study.series_uid)
    assert "\n" not in str(caught.value) and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("server", ["web-down", "dimse-down"])
def test_unreachable_pacs_is_one_line_within_seconds(server: str, pacs_config: Path) -> None:
    """A port nothing listens on: 'Connection refused' in one line, at once."""
    start = time.perf_counter()
    with pytest.raises(PacsConnectionError, match="Connection refused") as caught:
        find(resolve_server(server, pacs_config), StudyQuery(patient="Doe*"))
    assert "\n" not in str(caught.value) and time.perf_counter() - start < 5.0


@pytest.mark.parametrize("server", PROTOCOLS)
def test_unknown_series_is_not_found(server: str, pacs_config: Path, tmp_path: Path) -> None:
    """A well-formed UID the PACS does not hold: not found, nothing written."""
    with pytest.raises(PacsNotFoundError, match=r"no series with UID 2\.25\.1234"):
        retrieve_series(resolve_server(server, pacs_config), tmp_path / "out", series_uid="2.25.1234")
    assert not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_pacs_that_never_answers_times_out_in_one_line(protocol: str) -> None:
    """A port that accepts connections and never answers (a hung PACS): one line once the configured
    timeout has passed, saying that no answer came."""
    from assets.pacs import PacsServer

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        where = ({"url": f"http://127.0.0.1:{port}/dicom-web"} if protocol == "web"
                 else {"host": "127.0.0.1", "port": port, "called_aet": "PACS"})
        start = time.perf_counter()
        with pytest.raises(PacsConnectionError, match=r"no (answer|association) .*within 1 s") as caught:
            find(PacsServer(name="hung", timeout=1, **where), StudyQuery(patient="Doe*"))
    assert "\n" not in str(caught.value) and 0.9 < time.perf_counter() - start < 4.0


def test_an_untrusted_https_certificate_is_one_line_and_a_ca_bundle_trusts_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An https server whose certificate no known CA signed: refused in one line that says how to trust
    it; with its CA in REQUESTS_CA_BUNDLE the same server is reached (it answers 404 at the root given).

    (A Python HTTPS server: Debian's Orthanc 1.10 crashes on its first HTTPS request here.)"""
    import http.server
    import ssl
    import subprocess
    import threading

    from assets.pacs import PacsRequestError, PacsServer

    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem")], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        pacs = PacsServer(name="tls", url=f"https://127.0.0.1:{server.server_address[1]}/dicom-web", timeout=5)
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        with pytest.raises(PacsConnectionError, match=r"self-signed certificate.*REQUESTS_CA_BUNDLE") as caught:
            find(pacs, StudyQuery(patient="Doe*"))
        assert "\n" not in str(caught.value)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "cert.pem"))
        with pytest.raises(PacsRequestError, match="HTTP 501"):
            find(pacs, StudyQuery(patient="Doe*"))
    finally:
        server.shutdown()
        server.server_close()
