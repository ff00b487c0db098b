"""A real PACS for the PACS tests: Orthanc with its DICOMweb plugin, started as a plain process.

Each pytest worker starts its own Orthanc (``/usr/sbin/Orthanc CONFIG.json``) on free loopback ports,
with its storage in a temporary folder, HTTP basic authentication, and medverse's AE title registered
(``DicomModalities``) for C-FIND, C-GET and C-MOVE. It is filled with one study of a real CT head: the
volume inside Debian's ``invesalius-examples`` ``Cranium.inv3``, downsampled to 54 axial slices of
86 x 86 voxels and written as a DICOM series with a made-up identity (name, ID, birth date, accession
number, institution, referring physician), plus a 4-slice scout series in the same study and one
slice of another patient (a name beyond ASCII) in a study of its own; uploaded through
``POST /instances``.
"""

from __future__ import annotations

import io
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
CRANIUM = Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3")

#: Downsampling of the CT (slices, rows, columns): 108 x 256 x 256 voxels become 54 x 86 x 86.
STEP = (2, 3, 3)
#: Bone threshold the tests import at, HU.
BONE_HU = 300.0
#: The identity written into every instance; none of it may reach anything medverse stores.
IDENTITY = {
    "PatientName": "Doe^Jane^Quincy",
    "PatientID": "MV-PACS-4711",
    "PatientBirthDate": "19580317",
    "AccessionNumber": "ACC99812",
    "InstitutionName": "St Elsewhere General",
    "ReferringPhysicianName": "House^Gregory",
    "StudyDate": "20260115",
    "StudyID": "STUDY7731",
}
#: A second patient, whose name is beyond ASCII (one slice, in a study of its own).
OTHER_PATIENT = {**IDENTITY, "PatientName": "Müller^Jürgen", "PatientID": "MV-PACS-0815"}
PASSWORD_ENV = "MEDVERSE_TEST_PACS_PASSWORD"
WRONG_PASSWORD_ENV = "MEDVERSE_TEST_PACS_WRONG_PASSWORD"


@dataclass(frozen=True)
class CtStudy:
    """The study as written: its files, UIDs, and where its bone is (RAS mm, from the voxels)."""

    files: tuple[bytes, ...]
    identity: dict[str, str]  # IDENTITY
    bone_hu: float  # BONE_HU
    study_uid: str
    series_uid: str
    scout_uid: str
    other_uids: tuple[str, ...]  # every SOP instance UID and the frame of reference
    bone_box_mm: np.ndarray  # (2, 3): min and max RAS corner of the voxels >= BONE_HU
    voxel_mm: np.ndarray  # (3,): voxel size along the slices, rows, columns

    @property
    def identifiers(self) -> list[str]:
        """Every identifying value: the identity, and each original UID (the profile replaces them all)."""
        return [*self.identity.values(), "Quincy", self.study_uid, self.series_uid, self.scout_uid, *self.other_uids]


def _slice(volume: np.ndarray, k: int, lps: np.ndarray, uids: dict[str, str], number: int, description: str,
           identity: dict[str, str] = IDENTITY) -> bytes:
    """One CT slice as a DICOM file: slice ``k`` of ``volume`` (HU), placed by the LPS affine ``lps``."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = uids["sop"]
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, uids["sop"]
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8
    for keyword, value in identity.items():
        setattr(ds, keyword, value)
    ds.PatientSex, ds.StudyTime = "F", "101500"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = uids["study"], uids["series"], uids["frame"]
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber, ds.SeriesDescription = "CT", number, k + 1, description
    ds.ImageOrientationPatient = [float(v) for v in (*(lps[:3, 2] / np.linalg.norm(lps[:3, 2])),
                                                      *(lps[:3, 1] / np.linalg.norm(lps[:3, 1])))]
    ds.ImagePositionPatient = [float(v) for v in (lps @ np.array([k, 0.0, 0.0, 1.0]))[:3]]
    ds.PixelSpacing = [float(np.linalg.norm(lps[:3, 1])), float(np.linalg.norm(lps[:3, 2]))]
    ds.SliceThickness = float(np.linalg.norm(lps[:3, 0]))
    ds.Rows, ds.Columns = volume.shape[1:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope = 0, 1
    ds.PixelData = np.ascontiguousarray(volume[k].astype("<i2")).tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.fixture(scope="session")
def ct_study() -> CtStudy:
    from assets.loaders.inv3 import read_inv3

    source = read_inv3(CRANIUM)
    volume = source.data[:: STEP[0], :: STEP[1], :: STEP[2]]
    affine = source.affine.copy()
    affine[:3, :3] = affine[:3, :3] * np.array(STEP, dtype=float)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # DICOM positions are LPS
    study, frame = generate_uid(), generate_uid()
    series, scout = generate_uid(), generate_uid()
    files, sops = [], []
    for k in range(volume.shape[0]):
        sops.append(generate_uid())
        files.append(_slice(volume, k, lps, {"sop": sops[-1], "study": study, "series": series, "frame": frame},
                            2, "Head 3 mm"))
    middle = volume.shape[0] // 2
    for k in range(middle, middle + 4):  # a scout: 4 adjacent slices, 12 mm of the head
        sops.append(generate_uid())
        files.append(_slice(volume, k, lps, {"sop": sops[-1], "study": study, "series": scout, "frame": frame},
                            1, "Scout"))
    other = {"sop": generate_uid(), "study": generate_uid(), "series": generate_uid(), "frame": generate_uid()}
    files.append(_slice(volume, middle, lps, other, 1, "Axial", OTHER_PATIENT))  # another patient, another study
    inside = np.argwhere(volume >= BONE_HU)
    lo, hi = inside.min(0), inside.max(0)
    corners = np.array([[i, j, k, 1.0] for i in (lo[0], hi[0]) for j in (lo[1], hi[1]) for k in (lo[2], hi[2])])
    ras = (affine @ corners.T).T[:, :3]
    return CtStudy(tuple(files), dict(IDENTITY), BONE_HU, study, series, scout, (*sops, frame),
                   np.array([ras.min(0), ras.max(0)]), np.linalg.norm(affine[:3, :3], axis=0))


def free_port() -> int:
    """A TCP port nothing listens on now (the OS's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Orthanc:
    """A running Orthanc: its ports and credentials."""

    http_port: int
    dicom_port: int
    move_port: int
    user: str = "medverse"
    password: str = "s3cret-pacs"
    aet: str = "TESTPACS"
    calling_aet: str = "MEDVERSE"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/dicom-web"


def _wait_until_up(process: subprocess.Popen[bytes], url: str, auth: tuple[str, str], log: Path) -> None:
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {process.returncode}:\n{log.read_text(errors='replace')[-2000:]}")
        try:
            if requests.get(url, auth=auth, timeout=1.0).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"Orthanc did not answer within 30 s:\n{log.read_text(errors='replace')[-2000:]}")


@contextmanager
def running_orthanc(root: Path, ct_study: CtStudy, tls: TlsFiles | None = None) -> Iterator[Orthanc]:
    """Orthanc on free ports under ``root``, holding ``ct_study``; with ``tls``, its DICOM port speaks
    only TLS (its certificate signed by ``tls.ca``, clients' certificates required and checked against
    the same CA, and C-MOVE's deliveries to medverse over TLS too)."""
    import json

    server = Orthanc(http_port=free_port(), dicom_port=free_port(), move_port=free_port())
    medverse: Any = [server.calling_aet, "127.0.0.1", server.move_port]
    config: dict[str, Any] = {
        "Name": "TESTPACS", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"),
        "HttpPort": server.http_port, "DicomPort": server.dicom_port, "DicomAet": server.aet,
        "RemoteAccessAllowed": False, "AuthenticationEnabled": True,
        "RegisteredUsers": {server.user: server.password},
        "Plugins": [str(DICOMWEB_PLUGIN)], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "StorageCompression": False, "SaveJobs": False, "HttpTimeout": 10, "DicomScuTimeout": 10,
    }  # fmt: skip
    if tls is not None:
        config.update(DicomTlsEnabled=True, DicomTlsCertificate=str(tls.pacs_cert), DicomTlsPrivateKey=str(tls.pacs_key),
                      DicomTlsTrustedCertificates=str(tls.ca), DicomTlsRemoteCertificateRequired=True)
        medverse = {"AET": server.calling_aet, "Host": "127.0.0.1", "Port": server.move_port, "UseDicomTls": True}
    # medverse's AE title: C-FIND, C-GET and C-MOVE are refused to callers not listed here
    config["DicomModalities"] = {"medverse": medverse}
    path = root / "orthanc.json"
    path.write_text(json.dumps(config))
    log = root / "orthanc.log"
    with log.open("wb") as out:
        process = subprocess.Popen([str(ORTHANC), str(path)], stdout=out, stderr=subprocess.STDOUT, cwd=root)
    try:
        auth = (server.user, server.password)
        base = f"http://127.0.0.1:{server.http_port}"
        _wait_until_up(process, f"{base}/system", auth, log)
        with requests.Session() as session:
            session.auth = auth
            for data in ct_study.files:
                session.post(f"{base}/instances", data=data, headers={"Content-Type": "application/dicom"},
                             timeout=10).raise_for_status()
        yield server
    finally:
        process.terminate()  # Orthanc takes about 4 s to stop; its storage is thrown away anyway
        try:
            process.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory, ct_study: CtStudy) -> Iterator[Orthanc]:
    """Orthanc on free ports, holding ``ct_study``; stopped (and its storage dropped) at the end."""
    with running_orthanc(tmp_path_factory.mktemp("orthanc"), ct_study) as server:
        yield server


@dataclass(frozen=True)
class TlsFiles:
    """A test CA, the PACS's certificate (for 127.0.0.1) and medverse's, each signed by it, and another
    CA's self-signed certificate that signed nothing here (PEM files)."""

    ca: Path
    pacs_cert: Path
    pacs_key: Path
    client_cert: Path
    client_key: Path
    stranger_ca: Path


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """Made with the openssl command, as an administrator would."""
    root = tmp_path_factory.mktemp("tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=root)

    for ca in ("ca", "stranger"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=medverse tests {ca}",
                "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    (root / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for who in ("pacs", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", f"{who}.key",
                "-out", f"{who}.csr")
        openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-out", f"{who}.pem", "-extfile", "san.ext")
    return TlsFiles(root / "ca.pem", root / "pacs.pem", root / "pacs.key", root / "client.pem", root / "client.key",
                    root / "stranger.pem")


@pytest.fixture(scope="session")
def orthanc_tls(tmp_path_factory: pytest.TempPathFactory, ct_study: CtStudy, tls_files: TlsFiles) -> Iterator[Orthanc]:
    """A second Orthanc whose DICOM port speaks only TLS (``running_orthanc``)."""
    with running_orthanc(tmp_path_factory.mktemp("orthanc-tls"), ct_study, tls_files) as server:
        yield server


@pytest.fixture(scope="session")
def pacs_config(tmp_path_factory: pytest.TempPathFactory, orthanc: Orthanc) -> Iterator[Path]:
    """A medverse configuration naming the Orthanc several ways, right and wrong.

    ``web`` (DICOMweb), ``dimse`` (C-GET) and ``move`` (C-MOVE) reach it; ``web-wrong-password``,
    ``dimse-unknown-ae`` (a calling AE title it does not know), ``web-down`` and ``dimse-down`` (ports
    nothing listens on) do not. The passwords are in the environment, as the configuration asks.
    """
    down = free_port()
    text = f"""
[pacs]
default = "web"

[pacs.web]
url = "{orthanc.url}"
user = "{orthanc.user}"
password_env = "{PASSWORD_ENV}"
timeout = 10

[pacs.web-wrong-password]
url = "{orthanc.url}"
user = "{orthanc.user}"
password_env = "{WRONG_PASSWORD_ENV}"

[pacs.web-down]
url = "http://127.0.0.1:{down}/dicom-web"

[pacs.dimse]
host = "127.0.0.1"
port = {orthanc.dicom_port}
called_aet = "{orthanc.aet}"
calling_aet = "{orthanc.calling_aet}"
timeout = 10

[pacs.move]
host = "127.0.0.1"
port = {orthanc.dicom_port}
called_aet = "{orthanc.aet}"
calling_aet = "{orthanc.calling_aet}"
retrieve = "move"
move_host = "127.0.0.1"
move_port = {orthanc.move_port}
timeout = 10

[pacs.move-elsewhere]
host = "127.0.0.1"
port = {orthanc.dicom_port}
called_aet = "{orthanc.aet}"
calling_aet = "{orthanc.calling_aet}"
retrieve = "move"
move_host = "127.0.0.1"
move_port = {free_port()}
timeout = 10

[pacs.dimse-unknown-ae]
host = "127.0.0.1"
port = {orthanc.dicom_port}
called_aet = "{orthanc.aet}"
calling_aet = "STRANGER"
timeout = 10

[pacs.dimse-down]
host = "127.0.0.1"
port = {down}
called_aet = "{orthanc.aet}"
"""
    path = tmp_path_factory.mktemp("config") / "config.toml"
    path.write_text(text)
    with pytest.MonkeyPatch.context() as env:
        env.setenv(PASSWORD_ENV, orthanc.password)
        env.setenv(WRONG_PASSWORD_ENV, "not-" + orthanc.password)
        yield path
