"""``consult serve --tls-self-signed`` and ``consult join --ca-file``: a certificate for the machine's names,
its fingerprint printed, trusted by a client given the file and by no one else."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from net.signaling_client import ServerUnreachableError, SignalingClient
from net.tls import TlsError, client_context, fingerprint, self_signed
from net.tokens import issue_token, load_secret

MEDVERSE = str(Path(sys.executable).with_name("medverse"))


def test_certificate_is_made_once_for_the_names_and_remade_for_new_ones(tmp_path: Path) -> None:
    """The certificate holds every name, its key is private (0600), a second call reuses it (same
    fingerprint), and asking for a name it lacks makes a new one."""
    from cryptography import x509

    cert, key, first = self_signed(tmp_path, ["localhost", "127.0.0.1", "ward.example"])
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", first) and fingerprint(cert.read_bytes()) == first
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    san = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert set(san.value.get_values_for_type(x509.DNSName)) == {"localhost", "ward.example"}
    assert self_signed(tmp_path, ["localhost", "127.0.0.1"])[2] == first
    assert self_signed(tmp_path, ["localhost", "theatre.example"])[2] != first


def test_an_unreadable_ca_file_is_a_tls_error(tmp_path: Path) -> None:
    """``--ca-file`` naming a missing or non-PEM file is one TlsError line."""
    (tmp_path / "junk.pem").write_text("not a certificate")
    for path in (tmp_path / "absent.pem", tmp_path / "junk.pem"):
        with pytest.raises(TlsError, match="cannot read CA file"):
            client_context(path)


@pytest.fixture
def served_tls(tmp_path: Path) -> Iterator[tuple[str, str, str, dict[str, str]]]:
    """``consult serve --tls-self-signed --port 0``: its URL, the certificate path and fingerprint it printed."""
    env = {**{k: v for k, v in os.environ.items() if k != "MEDVERSE_SECRET"}, "MEDVERSE_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen([MEDVERSE, "consult", "serve", "--port", "0", "--tls-self-signed"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    serving, tls = proc.stdout.readline(), proc.stdout.readline()
    assert "serving on https://127.0.0.1:" in serving, serving + tls
    found = re.search(r"TLS certificate (\S+) \(self-signed, SHA-256 ([0-9A-F:]{95})\) for (.*)", tls)
    assert found is not None, tls
    assert {"localhost", "127.0.0.1"} <= set(found.group(3).split(", "))
    yield serving.split("serving on ")[1].split()[0], found.group(1), found.group(2), env
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def test_serve_tls_self_signed_is_trusted_with_its_ca_file_only(served_tls: tuple[str, str, str, dict[str, str]]) -> None:
    """A client given the printed certificate joins over WSS; one without it cannot; the printed
    fingerprint is the file's; ``consult join --ca-file`` runs a participant over it."""
    url, cert, printed, env = served_tls
    assert fingerprint(Path(cert).read_bytes()) == printed
    secret, _ = load_secret(Path(env["MEDVERSE_HOME"]) / "consult.secret")

    async def attempt() -> None:
        trusted = SignalingClient(url, issue_token(secret, "ward", "ann", "expert"), ssl=client_context(cert))
        assert (await trusted.connect())["participant"] == "ann"
        await trusted.close()
        with pytest.raises(ServerUnreachableError):
            await SignalingClient(url, issue_token(secret, "ward", "ben", "expert")).connect()

    asyncio.run(attempt())
    token = issue_token(secret, "ward", "cat", "expert")
    joined = subprocess.run([MEDVERSE, "consult", "join", "--server", url, "--token", token, "--duration", "1",
                             "--ca-file", cert], env=env, capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert joined.returncode == 0 and "cat in ward" in joined.stdout, joined.stderr[-2000:]
