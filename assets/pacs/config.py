"""Which PACS to talk to and how: the ``[pacs.NAME]`` tables of medverse's TOML configuration file.

The file is ``--config FILE``, else ``$MEDVERSE_CONFIG``, else ``config.toml`` in the medverse home
(``$MEDVERSE_HOME``, default ``~/.medverse``). The server is ``--pacs NAME``, else ``$MEDVERSE_PACS``,
else ``[pacs] default = "NAME"``, else the only server the file describes. Example::

    [pacs]
    default = "hospital"

    [pacs.hospital]                  # DICOMweb: QIDO-RS to search, WADO-RS to retrieve
    url = "https://pacs.example.org/dicom-web"
    user = "medverse"
    password_env = "HOSPITAL_PACS_PASSWORD"   # the password itself never goes in the file

    [pacs.modality]                  # DIMSE: C-FIND to search, C-GET (or C-MOVE) to retrieve
    host = "10.1.2.3"
    port = 104
    called_aet = "PACS"
    calling_aet = "MEDVERSE"
    retrieve = "move"                # C-MOVE: the PACS sends to calling_aet, which it must know as
    move_port = 11113                # this machine at this port

    [pacs.secure]                    # DIMSE over TLS (DICOM PS3.15 B.1), as a hospital network asks
    host = "pacs.example.org"
    port = 2762
    called_aet = "PACS"
    tls = true
    ca_file = "/etc/medverse/hospital-ca.pem"     # the CA that signed the PACS's certificate
    cert_file = "/etc/medverse/medverse.pem"      # medverse's own certificate and key, for a PACS
    key_file = "/etc/medverse/medverse.key"       # that asks for one (and for C-MOVE's listener)

Secrets stay out of the file: ``password_env`` and ``token_env`` name environment variables. ``ca_file``,
``cert_file`` and ``key_file`` serve DICOMweb over https too.
"""

from __future__ import annotations

import math
import os
import re
import ssl
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from assets.pacs.errors import PacsConfigError

#: Environment variable naming the configuration file.
CONFIG_ENV = "MEDVERSE_CONFIG"
#: Environment variable naming the server to use when no flag does.
SERVER_ENV = "MEDVERSE_PACS"

PROTOCOLS = ("dicomweb", "dimse")
RETRIEVE_METHODS = ("get", "move")
#: An AE title: 1-16 characters of the default repertoire, no backslash, not only spaces (PS3.5 6.2).
_AET = re.compile(r"^[ -\[\]-~]{1,16}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def config_path(explicit: str | Path | None = None) -> Path:
    """The configuration file: ``explicit``, else ``$MEDVERSE_CONFIG``, else ``config.toml`` in the home."""
    if explicit:
        return Path(explicit).expanduser()
    from_env = os.environ.get(CONFIG_ENV)
    if from_env:
        return Path(from_env).expanduser()
    from assets.library import home  # noqa: PLC0415 - the library (and its loaders) only when needed

    return home() / "config.toml"


@dataclass(frozen=True)
class PacsServer:
    """One PACS as the configuration describes it.

    Attributes
    ----------
    name : the table's name (``[pacs.NAME]``).
    protocol : ``dicomweb`` or ``dimse`` (default: ``dicomweb`` when ``url`` is given, else ``dimse``).
    url : DICOMweb base URL (the QIDO-RS/WADO-RS root, e.g. ``https://host/dicom-web``).
    user, password_env : HTTP basic authentication; the password is read from the environment variable
        ``password_env`` names.
    token_env : an environment variable holding a bearer token (instead of user and password).
    host, port : DIMSE peer.
    called_aet : the PACS's AE title; calling_aet : medverse's (the PACS must know it).
    retrieve : ``get`` (C-GET, one association) or ``move`` (C-MOVE to calling_aet, which the PACS must
        map to this machine and ``move_port``).
    move_port : local port medverse listens on for C-MOVE's C-STORE sub-operations.
    move_host : local address to listen on (default: every interface).
    timeout : seconds to wait for a connection or for any answer.
    max_instances : the most instances one retrieval accepts (a guard against a runaway study).
    tls : DIMSE over TLS (DICOMweb: an https ``url``); the PACS's certificate must name ``host``.
    ca_file : the CA (PEM) to trust for the PACS's certificate instead of the system's.
    cert_file, key_file : medverse's certificate and key (PEM), for a PACS that asks for one; C-MOVE
        over TLS needs them, since the PACS connects to medverse's listener.
    """

    name: str
    protocol: str = ""
    url: str = ""
    user: str = ""
    password_env: str = ""
    token_env: str = ""
    host: str = ""
    port: int = 104
    called_aet: str = ""
    calling_aet: str = "MEDVERSE"
    retrieve: str = "get"
    move_port: int = 0
    move_host: str = ""
    timeout: float = 30.0
    max_instances: int = 4096
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise PacsConfigError(self.name, "a server name uses letters, digits, '.', '_' or '-'")
        if not self.protocol:
            object.__setattr__(self, "protocol", "dicomweb" if self.url else "dimse")
        if self.protocol not in PROTOCOLS:
            self._fail(f"protocol {self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        if not (isinstance(self.timeout, (int, float)) and math.isfinite(self.timeout) and 0 < self.timeout <= 3600):
            self._fail(f"timeout {self.timeout!r} is not a number of seconds between 0 and 3600")
        if not (isinstance(self.max_instances, int) and self.max_instances > 0):
            self._fail(f"max_instances {self.max_instances!r} is not a positive integer")
        if bool(self.cert_file) != bool(self.key_file):
            self._fail("cert_file and key_file go together (medverse's certificate and its key)")
        if self.protocol == "dicomweb":
            parsed = urlparse(self.url)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                self._fail(f"url {self.url!r} is not an http(s) URL (the DICOMweb root)")
            if self.password_env and not self.user:
                self._fail("password_env is set but user is not")
            if self.token_env and self.user:
                self._fail("give either user and password_env or token_env, not both")
            if self.tls:
                self._fail("tls is for DIMSE: a DICOMweb server is reached over TLS when its url is https")
        else:
            if not self.host:
                self._fail("a DIMSE server needs host (or url, for DICOMweb)")
            for key in ("port", "move_port"):
                value = getattr(self, key)
                if not (isinstance(value, int) and 0 <= value <= 65535) or (key == "port" and value == 0):
                    self._fail(f"{key} {value!r} is not a TCP port")
            for key in ("called_aet", "calling_aet"):
                value = getattr(self, key)
                if not _AET.match(value) or not value.strip():
                    self._fail(f"{key} {value!r} is not an AE title (1-16 characters, no backslash)")
            if self.retrieve not in RETRIEVE_METHODS:
                self._fail(f"retrieve {self.retrieve!r} is not one of {', '.join(RETRIEVE_METHODS)}")
            if self.retrieve == "move" and not self.move_port:
                self._fail("retrieve = \"move\" needs move_port (where medverse listens for the PACS's C-STORE)")
            if (self.ca_file or self.cert_file) and not self.tls:
                self._fail("ca_file and cert_file are for TLS: add tls = true")
            if self.tls and self.retrieve == "move" and not self.cert_file:
                self._fail("C-MOVE over TLS needs cert_file and key_file: the PACS connects to medverse's listener, "
                           "which must present a certificate")

    def _fail(self, message: str) -> None:
        raise PacsConfigError(self.name, message)

    def _secret(self, env: str, what: str) -> str | None:
        if not env:
            return None
        value = os.environ.get(env)
        if value is None:
            raise PacsConfigError(self.name, f"{what} is read from ${env}, which is not set")
        return value

    def password(self) -> str | None:
        """The HTTP password, from the variable ``password_env`` names (None without one)."""
        return self._secret(self.password_env, "the password")

    def token(self) -> str | None:
        """The bearer token, from the variable ``token_env`` names (None without one)."""
        return self._secret(self.token_env, "the token")

    def describe(self) -> str:
        """Where the server is, without secrets: a URL, or ``AET@host:port``."""
        if self.protocol == "dicomweb":
            return self.url
        tls = ", TLS" if self.tls else ""
        return f"{self.called_aet}@{self.host}:{self.port} as {self.calling_aet} (C-{self.retrieve.upper()}{tls})"

    def ssl_context(self, *, server_side: bool = False) -> ssl.SSLContext:
        """The TLS context for this server (``server_side``: C-MOVE's listener, which the PACS connects
        to): ``ca_file`` (else the system's CAs) verifies the peer, ``cert_file``/``key_file`` identify
        medverse. Raises :class:`PacsConfigError` in one line when a file cannot be used."""
        purpose = ssl.Purpose.CLIENT_AUTH if server_side else ssl.Purpose.SERVER_AUTH
        try:
            context = ssl.create_default_context(purpose, cafile=self.ca_file or None)
            if self.cert_file:
                context.load_cert_chain(self.cert_file, self.key_file)
        except FileNotFoundError as exc:
            raise PacsConfigError(self.name, f"TLS file not found: {exc.filename}") from None
        except (ssl.SSLError, OSError) as exc:
            raise PacsConfigError(self.name, f"TLS files unusable ({getattr(exc, 'reason', None) or exc}): ca_file "
                                  "is a PEM CA certificate, cert_file and key_file a PEM certificate and its key") from None
        if server_side and self.ca_file:
            context.verify_mode = ssl.CERT_REQUIRED  # only the PACS, whose CA is given, may deliver
        return context


_KEYS = {f.name for f in fields(PacsServer)} - {"name"}


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PacsConfigError("", f"no configuration file at {path}: describe the server in a [pacs.NAME] "
                              f"table there, or point ${CONFIG_ENV} or --config at one (see docs/pacs.md)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PacsConfigError("", f"cannot read {path}: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PacsConfigError("", f"{path} is not valid TOML: {exc}") from None


def load_servers(path: str | Path | None = None) -> tuple[dict[str, PacsServer], str | None]:
    """Every ``[pacs.NAME]`` server of the configuration file, and its ``[pacs] default`` (or None).

    Raises
    ------
    PacsConfigError
        The file is missing or malformed, or a server's table has an unknown key or a bad value.
    """
    where = config_path(path)
    section = _read(where).get("pacs", {})
    if not isinstance(section, dict):
        raise PacsConfigError("", f"{where}: 'pacs' is not a table")
    default = section.get("default")
    if default is not None and not isinstance(default, str):
        raise PacsConfigError("", f"{where}: [pacs] default is not a server name")
    servers = {}
    for name, table in section.items():
        if name == "default":
            continue
        if not isinstance(table, dict):
            raise PacsConfigError(name, f"{where}: pacs.{name} is not a table")
        unknown = sorted(set(table) - _KEYS)
        if "password" in unknown:
            raise PacsConfigError(name, f"{where}: a password does not go in the file; put it in an environment "
                                  "variable and name that with password_env")
        if unknown:
            raise PacsConfigError(name, f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(_KEYS))}")
        wrong = [k for k, v in table.items() if k != "tls" and (not isinstance(v, (str, int, float)) or isinstance(v, bool))]
        if wrong:
            raise PacsConfigError(name, f"{where}: {wrong[0]} must be a string or a number")
        if not isinstance(table.get("tls", False), bool):
            raise PacsConfigError(name, f"{where}: tls must be true or false")
        servers[name] = PacsServer(name=name, **table)
    return servers, default


def resolve_server(name: str | None = None, path: str | Path | None = None) -> PacsServer:
    """The server to use: ``name``, else ``$MEDVERSE_PACS``, else the file's default, else its only one.

    Raises
    ------
    PacsConfigError
        No such server, none configured, or several and no way to choose.
    """
    servers, default = load_servers(path)
    chosen = name or os.environ.get(SERVER_ENV) or default
    if chosen is None:
        if len(servers) == 1:
            return next(iter(servers.values()))
        if not servers:
            raise PacsConfigError("", f"{config_path(path)} describes no PACS: add a [pacs.NAME] table (see docs/pacs.md)")
        raise PacsConfigError("", f"{len(servers)} servers are configured ({', '.join(sorted(servers))}): choose one "
                              f"with --pacs, ${SERVER_ENV} or [pacs] default")
    if chosen not in servers:
        known = ", ".join(sorted(servers)) or "none"
        raise PacsConfigError(chosen, f"no [pacs.{chosen}] table in {config_path(path)} (configured: {known})")
    return servers[chosen]


__all__ = ["CONFIG_ENV", "PROTOCOLS", "SERVER_ENV", "PacsServer", "config_path", "load_servers", "resolve_server"]
