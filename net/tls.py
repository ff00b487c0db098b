"""TLS for the signaling server and its clients: a self-signed certificate for this machine's names, and
client contexts that trust a given CA file.

A browser on another machine needs a secure context (HTTPS) for WebRTC and WebXR, so ``consult serve
--tls-self-signed`` makes a certificate for the names the machine is reached by and prints its SHA-256
fingerprint, which whoever installs or accepts it compares; ``consult join --ca-file`` trusts it.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import socket
import ssl
from collections.abc import Iterable
from pathlib import Path

from net.errors import NetError

log = logging.getLogger(__name__)

#: Lifetime of a generated certificate, days; it is made again when fewer than :data:`RENEW_DAYS` remain.
VALID_DAYS = 90
RENEW_DAYS = 7


class TlsError(NetError):
    """A certificate cannot be made, read or trusted."""


def machine_tls_names(host: str) -> list[str]:
    """The names a certificate for this machine should hold: ``host`` (unless a wildcard address),
    loopback names, the host name and fully qualified name, and the machine's own addresses."""
    names = ["localhost", "127.0.0.1", "::1"]
    if host not in ("0.0.0.0", "::", ""):
        names.append(host)
    try:
        hostname = socket.gethostname()
        names += [hostname, socket.getfqdn()]
        names += [str(info[4][0]) for info in socket.getaddrinfo(hostname, None)]
    except OSError:
        pass
    return sorted(set(names), key=names.index)


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 fingerprint of a PEM certificate, as browsers show it (``AB:CD:...``)."""
    from cryptography import x509  # noqa: PLC0415 - cryptography is heavy; only TLS set-up needs it
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415

    digest = x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in digest)


def self_signed(folder: Path, names: Iterable[str], *, now: datetime.datetime | None = None) -> tuple[Path, Path, str]:
    """A self-signed certificate (EC P-256) for ``names`` in ``folder``: reused when it holds every name and
    has more than :data:`RENEW_DAYS` left, else made again. The key file is mode 0600.

    Returns
    -------
    tuple
        Certificate path, key path, SHA-256 fingerprint.

    Raises
    ------
    TlsError
        The folder cannot be written.
    """
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    wanted = list(dict.fromkeys(names))
    cert_path, key_path = folder / "consult-tls-cert.pem", folder / "consult-tls-key.pem"
    now = now or datetime.datetime.now(datetime.UTC)
    if cert_path.exists() and key_path.exists():
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            held = {str(n) for n in san.get_values_for_type(x509.DNSName)}
            held |= {str(a) for a in san.get_values_for_type(x509.IPAddress)}
            if set(wanted) <= held and cert.not_valid_after_utc - now > datetime.timedelta(days=RENEW_DAYS):
                return cert_path, key_path, fingerprint(cert_path.read_bytes())
        except (OSError, ValueError, x509.ExtensionNotFound):
            pass  # unreadable or not ours: make a new one
    entries: list[x509.GeneralName] = []
    for name in wanted:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"medverse consult on {socket.gethostname()}"[:64])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(entries), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
        cert_path.write_bytes(pem)
    except OSError as exc:
        raise TlsError(f"cannot write the self-signed certificate in {folder}: {exc.strerror or exc}") from exc
    log.info("made a self-signed certificate %s for %s", cert_path, ", ".join(wanted))
    return cert_path, key_path, fingerprint(pem)


def client_context(ca_file: str | os.PathLike[str]) -> ssl.SSLContext:
    """A client context that trusts the certificates in ``ca_file`` (``join --ca-file``), names checked.

    Raises
    ------
    TlsError
        The file cannot be read or holds no certificate.
    """
    try:
        return ssl.create_default_context(cafile=os.fspath(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"cannot read CA file {ca_file}: {getattr(exc, 'strerror', None) or exc}") from exc


def client_ssl(ca_file: str | None, insecure: bool) -> ssl.SSLContext | bool | None:
    """What a client verifies the server's TLS with (``join --ca-file`` / ``--insecure``): a context that
    trusts ``ca_file``, nothing at all (False, testing only), or the system's store (None)."""
    if ca_file:
        return client_context(ca_file)
    return False if insecure else None
