"""A PACS over DIMSE (PS3.7): C-FIND to search, C-GET or C-MOVE to retrieve, through ``pynetdicom``.

Each operation opens its own association (Study Root information model) from ``calling_aet`` to
``called_aet`` and releases it. C-GET takes the instances back over the same association, so medverse
proposes the SCP role for the storage SOP classes a volume can come as (``STORAGE_CLASSES``), in the
uncompressed transfer syntaxes (the PACS transcodes what it holds compressed). C-MOVE asks the PACS to
send them to ``calling_aet``: medverse listens on ``move_port`` for the duration, and the PACS must map
that AE title to this machine and port.

With ``tls = true`` every association, and C-MOVE's listener, runs over TLS (PS3.15 B.1): the PACS's
certificate is verified against ``ca_file`` (else the system's CAs) and must name ``host``; medverse
presents ``cert_file`` when the PACS asks. C-ECHO (``echo``) checks that the PACS answers.

Failures become one ``PacsError`` line: nothing listening (the socket's own reason), association
rejected or aborted (an AE title the PACS does not know), a TLS handshake that failed (with the reason
the TLS library gives), failure statuses with their code.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from pydicom import Dataset

from assets.errors import AssetError
from assets.pacs.config import PacsServer
from assets.pacs.errors import (
    PacsAuthError,
    PacsConnectionError,
    PacsError,
    PacsNotFoundError,
    PacsRequestError,
)
from assets.pacs.query import SERIES_KEYS, STUDY_KEYS, InstanceSink, StudyQuery

log = logging.getLogger(__name__)

#: pynetdicom logs a failed association at ERROR before medverse can say the same in one line.
logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)

#: Storage SOP classes accepted from C-GET and C-MOVE: the images a surface is made from, and the
#: segmentations and structure sets that travel with them.
STORAGE_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image
    "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT Image
    "1.2.840.10008.5.1.4.1.1.4",  # MR Image
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.4.4",  # Legacy Converted Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.128",  # PET Image
    "1.2.840.10008.5.1.4.1.1.130",  # Enhanced PET Image
    "1.2.840.10008.5.1.4.1.1.20",  # Nuclear Medicine Image
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
    "1.2.840.10008.5.1.4.1.1.481.3",  # RT Structure Set
    "1.2.840.10008.5.1.4.1.1.481.2",  # RT Dose
    "1.2.840.10008.5.1.4.1.1.13.1.3",  # Breast Tomosynthesis Image
    "1.2.840.10008.5.1.4.1.1.12.2",  # X-Ray Radiofluoroscopic Image (rotational series)
    "1.2.840.10008.5.1.4.1.1.3.1",  # Ultrasound Multi-frame Image
)
#: Uncompressed transfer syntaxes: pixel data that needs no codec.
TRANSFER_SYNTAXES = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.1.99")

_VERIFICATION = "1.2.840.10008.1.1"  # Verification (C-ECHO)
_FIND = "1.2.840.10008.5.1.4.1.2.2.1"  # Study Root Query/Retrieve Information Model - FIND
_GET = "1.2.840.10008.5.1.4.1.2.2.3"  # Study Root Query/Retrieve Information Model - GET
_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"  # Study Root Query/Retrieve Information Model - MOVE

_PENDING = (0xFF00, 0xFF01)
_STATUS = {
    0xA700: "out of resources", 0xA701: "out of resources (cannot count matches)",
    0xA702: "out of resources (cannot perform sub-operations)", 0xA801: "move destination unknown",
    0xA900: "identifier does not match the SOP class", 0xAA00: "no such attribute", 0xAA01: "invalid attribute value",
    0xB000: "some sub-operations failed", 0xFE00: "cancelled", 0x0122: "SOP class not supported",
}


class _QuickAckSocket:
    """A socket that asks the kernel to acknowledge at once before every read.

    Why: a PACS that writes a C-STORE request's command and data set as two PDUs without TCP_NODELAY
    (Orthanc does) sends the second only once the first is acknowledged, and Linux delays that
    acknowledgement by up to 40 ms: 54 CT slices of 33 kB took 3.2 s by C-GET or C-MOVE, 0.7 s with this.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def _quickack(self) -> None:
        with suppress(OSError):
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

    def recv(self, *args: Any) -> bytes:
        self._quickack()
        return self._sock.recv(*args)

    def recv_into(self, *args: Any) -> int:
        self._quickack()
        return self._sock.recv_into(*args)


def _speaks_tls(sock: socket.socket) -> bool:
    """Whether the peer on ``sock`` answers a TLS ClientHello as a TLS server does (a handshake, or a TLS
    alert such as "certificate required"), rather than as a plain DICOM port (which drops the connection
    or answers bytes that are no TLS record). Nothing is verified: this only names the likely mistake."""
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.check_hostname, probe.verify_mode = False, ssl.CERT_NONE
    try:
        with probe.wrap_socket(sock) as tls:
            tls.settimeout(1.0)
    except ssl.SSLError as exc:
        return "alert" in (exc.reason or "").lower()  # the server's TLS alert: it speaks TLS
    except OSError:
        return False  # dropped, or no answer
    return True


def _application_entity(title: str) -> Any:
    from pynetdicom import AE  # noqa: PLC0415 - pynetdicom only for DIMSE servers

    class QuickAckAE(AE):
        def _create_socket(self, assoc: Any, address: Any, tls_args: Any) -> Any:
            sock = super()._create_socket(assoc, address, tls_args)
            raw = getattr(sock, "socket", None)
            if hasattr(socket, "TCP_QUICKACK") and isinstance(raw, socket.socket):
                sock.socket = _QuickAckSocket(raw)  # type: ignore[assignment] # it delegates all but recv
            return sock

    return QuickAckAE(ae_title=title)


def _quickack_accepted(server: Any) -> None:
    """Give the sockets ``server`` accepts the same immediate acknowledgements (C-MOVE's C-STOREs)."""
    accept = getattr(server, "get_request", None)
    if accept is None or not hasattr(socket, "TCP_QUICKACK"):
        return

    def get_request() -> tuple[Any, Any]:
        sock, address = accept()
        return (_QuickAckSocket(sock) if isinstance(sock, socket.socket) else sock), address

    server.get_request = get_request


class DimseClient:
    """C-FIND, C-GET and C-MOVE against ``server`` (see ``assets.pacs.query.PacsClient``)."""

    def __init__(self, server: PacsServer) -> None:
        self.server = server

    def __enter__(self) -> DimseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    # -- associations ---------------------------------------------------------------------------------

    def _fail(self, error: type[PacsError], message: str) -> PacsError:
        return error(self.server.name, message)

    def _unreachable(self, what: str, aborted: bool, timed_out: bool) -> PacsError:
        """Why no association: no answer in time (pynetdicom then aborts, and says so), nothing
        listening (the socket says why; pynetdicom reports a refused connection as an abort too), or the
        PACS's abort."""
        s = self.server
        if timed_out:
            return self._fail(PacsConnectionError, f"{what}: no association with {s.host}:{s.port} within "
                              f"{s.timeout:g} s (is it a DICOM port, and does the PACS answer?)")
        speaks_tls = False
        try:
            with socket.create_connection((s.host, s.port), timeout=min(s.timeout, 5.0)) as sock:
                if s.tls:
                    problem = self._tls_problem(sock)
                    if problem is not None:
                        return problem
                elif aborted:
                    speaks_tls = _speaks_tls(sock)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            return self._fail(PacsConnectionError, f"{what}: cannot connect to {s.host}:{s.port} ({reason})")
        if speaks_tls:
            return self._fail(PacsConnectionError, f"{what}: the PACS aborted the association request: "
                              f"{s.host}:{s.port} speaks TLS (set tls = true, and ca_file, cert_file, key_file)")
        if aborted:
            return self._fail(PacsConnectionError, f"{what}: the PACS aborted the association request")
        return self._fail(PacsConnectionError, f"{what}: no association with {s.host}:{s.port}")

    def _tls_problem(self, sock: socket.socket) -> PacsError | None:
        """Why a TLS handshake over ``sock`` fails (the reason the TLS library gives, and what to check),
        or None when it succeeds."""
        s = self.server
        try:
            with s.ssl_context().wrap_socket(sock, server_hostname=s.host) as tls:
                tls.settimeout(0.5)
                with suppress(TimeoutError, ssl.SSLWantReadError):
                    tls.recv(1)  # TLS 1.3: a refused client certificate is told after the handshake
        except ssl.SSLCertVerificationError as exc:
            return self._fail(PacsConnectionError, f"TLS with {s.host}:{s.port} failed ({exc.verify_message}): set "
                              "ca_file to the CA that signed the PACS's certificate")
        except ssl.SSLError as exc:
            reason = (exc.reason or str(exc)).lower().replace("_", " ")
            asks = " (does the PACS ask for medverse's certificate: cert_file, key_file?)" if "certificate" in reason else ""
            return self._fail(PacsConnectionError, f"TLS with {s.host}:{s.port} failed ({reason}){asks}")
        except OSError:
            return None  # closed after a good handshake: the association itself failed
        return None

    @contextmanager
    def _association(self, what: str, contexts: Sequence[tuple[str, Sequence[str]]], roles: tuple[str, ...] = (),
                     handlers: list[Any] | None = None) -> Iterator[Any]:
        from pynetdicom import build_role  # noqa: PLC0415

        s = self.server
        ae = _application_entity(s.calling_aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = s.timeout
        ae.connection_timeout = s.timeout
        for abstract, syntaxes in contexts:
            ae.add_requested_context(abstract, list(syntaxes))
        start = time.monotonic()
        tls = (s.ssl_context(), s.host) if s.tls else None
        assoc = ae.associate(s.host, s.port, ae_title=s.called_aet, ext_neg=[build_role(c, scp_role=True) for c in roles],
                             evt_handlers=handlers or [], tls_args=tls)
        waited = time.monotonic() - start
        if assoc.is_rejected:
            raise self._fail(PacsAuthError, f"{what}: the PACS rejected the association (called AE title "
                             f"{s.called_aet!r}, calling AE title {s.calling_aet!r}: does it know both?)")
        if not assoc.is_established:
            raise self._unreachable(what, aborted=assoc.is_aborted, timed_out=waited >= 0.9 * s.timeout)
        try:
            yield assoc
        except BaseException:
            if assoc.is_established:  # mid-operation: an orderly release would wait for the PACS to finish
                assoc.abort()
            raise
        if assoc.is_established:
            assoc.release()

    def echo(self) -> None:
        """C-ECHO: the PACS accepts an association from ``calling_aet`` and answers (a ``PacsError`` otherwise)."""
        what = "C-ECHO"
        with self._association(what, [(_VERIFICATION, TRANSFER_SYNTAXES)]) as assoc:
            status = assoc.send_c_echo()
        if not status or "Status" not in status:
            raise self._refused(what)
        if int(status.Status) != 0x0000:
            raise self._status(what, status)

    def _refused(self, what: str) -> PacsError:
        s = self.server
        return self._fail(PacsAuthError, f"{what}: the PACS ended the association without an answer (does it allow "
                          f"calling AE title {s.calling_aet!r}? Orthanc: list it in DicomModalities)")

    def _status(self, what: str, status: Dataset) -> PacsError:
        code = int(status.Status)
        meaning = _STATUS.get(code) or ("unable to process" if 0xC000 <= code <= 0xCFFF else "failure")
        comment = str(status.get("ErrorComment", "") or "")
        return self._fail(PacsRequestError, f"{what} failed: status 0x{code:04X} ({meaning}{': ' + comment if comment else ''})")

    # -- C-FIND ---------------------------------------------------------------------------------------

    def _find(self, what: str, identifier: Dataset) -> list[Dataset]:
        found = []
        with self._association(what, [(_FIND, TRANSFER_SYNTAXES)]) as assoc:
            for status, answer in assoc.send_c_find(identifier, _FIND):
                if not status or "Status" not in status:
                    raise self._refused(what)
                if int(status.Status) in _PENDING:
                    if answer is not None:
                        found.append(answer)
                elif int(status.Status) != 0x0000:
                    raise self._status(what, status)
        return found

    def find_studies(self, query: StudyQuery) -> list[Dataset]:
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        for keyword in STUDY_KEYS:
            setattr(identifier, keyword, "")
        for keyword, value in query.filters().items():
            setattr(identifier, keyword, value)
        if not all(v.isascii() for v in query.filters().values()):
            identifier.SpecificCharacterSet = "ISO_IR 192"  # UTF-8, for names beyond the default repertoire
        return self._find("C-FIND (studies)", identifier)

    def find_series(self, study_uid: str = "", series_uid: str = "", modality: str = "") -> list[Dataset]:
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "SERIES"
        for keyword in SERIES_KEYS:
            setattr(identifier, keyword, "")
        identifier.StudyInstanceUID = study_uid
        identifier.SeriesInstanceUID = series_uid
        identifier.Modality = modality
        return self._find("C-FIND (series)", identifier)

    # -- C-GET / C-MOVE -------------------------------------------------------------------------------

    def retrieve_series(self, study_uid: str, series_uid: str, sink: InstanceSink) -> int:
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "SERIES"
        identifier.StudyInstanceUID = study_uid
        identifier.SeriesInstanceUID = series_uid
        receiver = _Receiver(self.server, sink)
        if self.server.retrieve == "move":
            self._move(identifier, receiver)
        else:
            self._get(identifier, receiver)
        return receiver.finish()

    def _get(self, identifier: Dataset, receiver: _Receiver) -> None:
        from pynetdicom import evt  # noqa: PLC0415

        what = "C-GET"
        contexts = [(_GET, TRANSFER_SYNTAXES)] + [(c, TRANSFER_SYNTAXES) for c in STORAGE_CLASSES]
        with self._association(what, contexts, roles=STORAGE_CLASSES,
                               handlers=[(evt.EVT_C_STORE, receiver.on_store)]) as assoc:
            self._follow(what, assoc.send_c_get(identifier, _GET), receiver)

    def _move(self, identifier: Dataset, receiver: _Receiver) -> None:
        from pynetdicom import evt  # noqa: PLC0415

        s = self.server
        what = "C-MOVE"
        scp = _application_entity(s.calling_aet)
        scp.network_timeout = scp.dimse_timeout = scp.acse_timeout = s.timeout
        for abstract in STORAGE_CLASSES:
            scp.add_supported_context(abstract, list(TRANSFER_SYNTAXES))
        try:
            server = scp.start_server((s.move_host, s.move_port), block=False,
                                      evt_handlers=[(evt.EVT_C_STORE, receiver.on_store)],
                                      ssl_context=s.ssl_context(server_side=True) if s.tls else None)
        except OSError as exc:
            raise self._fail(PacsConnectionError, f"{what}: cannot listen on port {s.move_port} for the PACS's "
                             f"C-STORE ({exc.strerror or exc})") from None
        _quickack_accepted(server)
        try:
            with self._association(what, [(_MOVE, TRANSFER_SYNTAXES)]) as assoc:
                self._follow(what, assoc.send_c_move(identifier, s.calling_aet, _MOVE), receiver)
        finally:
            server.shutdown()

    def _follow(self, what: str, responses: Iterator[tuple[Dataset, Dataset | None]], receiver: _Receiver) -> None:
        """Read C-GET/C-MOVE responses to the final one; raise on failure (the receiver's own error first)."""
        final: Dataset | None = None
        for status, _ in responses:
            if not status or "Status" not in status:
                receiver.raise_error()
                raise self._refused(what)
            if int(status.Status) not in _PENDING:
                final = status
        receiver.raise_error()
        if final is None:
            raise self._refused(what)
        code = int(final.Status)
        completed = int(final.get("NumberOfCompletedSuboperations", 0) or 0)
        failed = int(final.get("NumberOfFailedSuboperations", 0) or 0)
        if code == 0xA801:
            raise self._fail(PacsAuthError, f"{what}: the PACS does not know the move destination "
                             f"{self.server.calling_aet!r} (register it with host and move_port {self.server.move_port})")
        if code not in (0x0000, 0xB000):
            failure = self._status(what, final)
            if what == "C-MOVE" and receiver.count == 0:
                s = self.server
                raise self._fail(PacsRequestError, f"{failure.message}; nothing reached medverse on port {s.move_port}: "
                                 f"does the PACS map {s.calling_aet!r} to this machine and that port?")
            raise failure
        if receiver.count == 0 and completed == 0:
            raise self._fail(PacsNotFoundError, f"{what}: the PACS has no such series (nothing was sent)")
        if failed:
            log.warning("%s: %d of %d instances failed to arrive", what, failed, failed + completed)


class _Receiver:
    """Takes C-STORE sub-operations (from C-GET, or C-MOVE's incoming associations on other threads)."""

    def __init__(self, server: PacsServer, sink: InstanceSink) -> None:
        self.server = server
        self.sink = sink
        self.count = 0
        self.error: BaseException | None = None
        self._lock = threading.Lock()

    def on_store(self, event: Any) -> int:
        with self._lock:
            if self.error is not None:
                return 0xA700
            if self.count >= self.server.max_instances:
                self.error = PacsRequestError(self.server.name, f"the series has more than {self.server.max_instances} "
                                              "instances (max_instances)")
                return 0xA700
            try:
                dataset = event.dataset
                dataset.file_meta = event.file_meta
                self.sink(dataset)
            except AssetError as exc:
                self.error = exc
                return 0xA700
            except Exception as exc:  # an instance that cannot be decoded or stored stops the retrieval
                detail = (str(exc).splitlines() or [""])[0][:160]
                self.error = PacsRequestError(self.server.name, f"an instance cannot be read ({type(exc).__name__}: {detail})")
                return 0xC210
            self.count += 1
            return 0x0000

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def finish(self) -> int:
        self.raise_error()
        return self.count


__all__ = ["STORAGE_CLASSES", "DimseClient"]
