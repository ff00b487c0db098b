"""DIMSE over TLS against a real Orthanc whose DICOM port speaks only TLS and asks for medverse's
certificate, and ``pacs echo`` against both PACSes as a user runs it.

The certificates come from the ``openssl`` command (``conftest.tls_files``): a test CA signs the PACS's
certificate (for 127.0.0.1) and medverse's; another CA signs nothing here.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from assets.pacs import PacsConfigError, PacsConnectionError, PacsServer, StudyQuery, echo, find, retrieve_series
from assets.pacs.dimse import _speaks_tls

MEDVERSE = str(Path(sys.executable).with_name("medverse"))


def _tls(orthanc_tls: Any, tls_files: Any, **overrides: Any) -> PacsServer:
    """medverse's side of the TLS PACS: its CA trusted, its own certificate presented (as overridden)."""
    options = {"host": "127.0.0.1", "port": orthanc_tls.dicom_port, "called_aet": orthanc_tls.aet,
               "calling_aet": orthanc_tls.calling_aet, "tls": True, "ca_file": str(tls_files.ca),
               "cert_file": str(tls_files.client_cert), "key_file": str(tls_files.client_key), "timeout": 10}
    return PacsServer(name="secure", **{**options, **overrides})


def test_find_echo_c_get_and_c_move_over_tls(orthanc_tls: Any, tls_files: Any, ct_study: Any, tmp_path: Path) -> None:
    """With the PACS's CA and medverse's certificate: C-ECHO answers, C-FIND finds the study, C-GET brings
    the series back on its association and C-MOVE delivers it to medverse's TLS listener."""
    server = _tls(orthanc_tls, tls_files)
    assert echo(server) < 10.0
    found = find(server, StudyQuery(patient_id=ct_study.identity["PatientID"], modality="CT"))
    assert {m.series_uid for m in found} == {ct_study.series_uid, ct_study.scout_uid}
    got = retrieve_series(server, tmp_path / "get", study_uid=ct_study.study_uid, series_uid=ct_study.scout_uid)
    assert got.instances == 4 == len(list((tmp_path / "get").iterdir()))
    mover = _tls(orthanc_tls, tls_files, retrieve="move", move_host="127.0.0.1", move_port=orthanc_tls.move_port)
    moved = retrieve_series(mover, tmp_path / "move", study_uid=ct_study.study_uid, series_uid=ct_study.scout_uid)
    assert moved.instances == 4 == len(list((tmp_path / "move").iterdir()))


@pytest.mark.parametrize(("overrides", "message"), [
    ({"ca_file": ""}, r"TLS with 127\.0\.0\.1:\d+ failed \(self.signed certificate in certificate chain\): set ca_file"),
    ({"ca_file": "STRANGER"}, r"failed \(self.signed certificate in certificate chain\): set ca_file"),
    ({"cert_file": "", "key_file": ""}, r"failed \(.*certificate required\) \(does the PACS ask for medverse's certificate"),
    ({"tls": False, "ca_file": "", "cert_file": "", "key_file": ""},
     r"C-ECHO: the PACS aborted the association request: 127\.0\.0\.1:\d+ speaks TLS \(set tls = true"),
])
def test_tls_mistakes_are_one_line_with_the_reason(orthanc_tls: Any, tls_files: Any, overrides: dict[str, Any],
                                                   message: str) -> None:
    """The system's CAs (or another CA) do not trust the PACS; no client certificate where the PACS asks
    for one; plain DIMSE to a TLS port: each one line saying what failed and what to set."""
    if overrides.get("ca_file") == "STRANGER":
        overrides = {**overrides, "ca_file": str(tls_files.stranger_ca)}
    with pytest.raises(PacsConnectionError, match=message) as caught:
        echo(_tls(orthanc_tls, tls_files, **overrides))
    assert "\n" not in str(caught.value)


def test_only_a_port_that_answers_tls_is_called_one(orthanc: Any, orthanc_tls: Any) -> None:
    """The hint for plain DIMSE to a TLS port rests on a probe: the TLS port answers a ClientHello (its
    handshake asks for a certificate that is not sent), the plain DICOM port does not."""
    for pacs, expected in ((orthanc_tls, True), (orthanc, False)):
        with socket.create_connection(("127.0.0.1", pacs.dicom_port), timeout=5) as sock:
            assert _speaks_tls(sock) is expected


@pytest.mark.parametrize(("options", "message"), [
    ({"url": "https://pacs.example.org/dicom-web", "tls": True}, "tls is for DIMSE"),
    ({"host": "pacs", "called_aet": "PACS", "ca_file": "ca.pem"}, "add tls = true"),
    ({"host": "pacs", "called_aet": "PACS", "tls": True, "cert_file": "a.pem"}, "cert_file and key_file go together"),
    ({"host": "pacs", "called_aet": "PACS", "tls": True, "retrieve": "move", "move_port": 11113},
     "C-MOVE over TLS needs cert_file and key_file"),
])
def test_tls_settings_that_cannot_work_are_refused_when_read(options: dict[str, Any], message: str) -> None:
    with pytest.raises(PacsConfigError, match=message):
        PacsServer(name="x", **options)


def test_an_unusable_tls_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    for options, message in (({"ca_file": str(tmp_path / "missing.pem")}, "TLS file not found"),
                             ({"ca_file": str(tmp_path / "ca.pem")}, "TLS files unusable")):
        with pytest.raises(PacsConfigError, match=message):
            echo(PacsServer(name="x", host="127.0.0.1", port=1, called_aet="PACS", tls=True, **options))


def test_pacs_echo_as_a_user_runs_it(orthanc: Any, orthanc_tls: Any, tls_files: Any, pacs_config: Path,
                                     tmp_path: Path) -> None:
    """`pacs echo` over DICOMweb, plain DIMSE and DIMSE over TLS answers in one line with the time; a
    server that does not answer is one line on stderr and exit code 2."""
    config = tmp_path / "config.toml"
    config.write_text(pacs_config.read_text() + f"""
[pacs.secure]
host = "127.0.0.1"
port = {orthanc_tls.dicom_port}
called_aet = "{orthanc_tls.aet}"
tls = true
ca_file = "{tls_files.ca}"
cert_file = "{tls_files.client_cert}"
key_file = "{tls_files.client_key}"
""")
    env = {k: v for k, v in os.environ.items() if k != "MEDVERSE_PACS"} | {"MEDVERSE_CONFIG": str(config)}
    for name, said in (("web", "answered a QIDO-RS search in"), ("dimse", "answered C-ECHO in"),
                       ("secure", "(C-GET, TLS)): answered C-ECHO in")):
        done = subprocess.run([MEDVERSE, "pacs", "echo", "--pacs", name], env=env, capture_output=True, text=True,
                              timeout=60, check=False)  # fmt: skip
        assert done.returncode == 0 and said in done.stdout and done.stdout.count("\n") == 1, (name, done.stdout, done.stderr)
    down = subprocess.run([MEDVERSE, "pacs", "echo", "--pacs", "dimse-down"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert down.returncode == 2 and down.stderr.count("\n") == 1 and "cannot connect" in down.stderr, down.stderr
