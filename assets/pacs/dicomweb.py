"""A PACS over DICOMweb (PS3.18): QIDO-RS to search (``requests``), WADO-RS to retrieve
(``dicomweb-client``, which decodes its multipart answers).

Authentication is HTTP basic (``user`` and the password from ``password_env``) or a bearer token
(``token_env``). Every failure of the transport becomes one ``PacsError`` line: refused or unreachable
server, timeout, HTTP 401/403 (credentials), 404 (no such study or series, or a URL that is not the
DICOMweb root), any other status.
"""

from __future__ import annotations

import logging
import re
import string
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from pydicom import Dataset

from assets.pacs.config import PacsServer
from assets.pacs.errors import (
    PacsAuthError,
    PacsConnectionError,
    PacsError,
    PacsNotFoundError,
    PacsRequestError,
)
from assets.pacs.query import SERIES_KEYS, STUDY_KEYS, InstanceSink, StudyQuery

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

#: dicomweb-client logs every request, UIDs included, at INFO: keep identifiers out of medverse's logs.
logging.getLogger("dicomweb_client").setLevel(logging.WARNING)

_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")
_TLS_PROBLEM = re.compile(r"certificate verify failed: ([^('\")]+)")


def _reason(exc: BaseException) -> str:
    """The useful end of a requests error ("Connection refused", "Name or service not known")."""
    found = _ERRNO.findall(str(exc))
    return found[-1].strip() if found else type(exc).__name__


#: Characters a query value can carry as they are: requests sends them unchanged and no server has
#: to decode them. ``*`` and ``?`` are the DICOM wildcards.
_PLAIN = frozenset(string.ascii_letters + string.digits + "-._~!$'(),/:;@*?")


def query_value(value: str) -> str:
    """``value`` for a QIDO-RS query string: other ASCII characters become the ``?`` wildcard, and
    runs of other characters ``*``.

    Why: requests percent-encodes ``^`` (the PN component separator), spaces and non-ASCII letters,
    as RFC 3986 wants, but Orthanc's DICOMweb plugin (1.7, Debian 12) matches query values without
    decoding them, so ``PatientName=Doe%5EJane`` found nothing where ``Doe^Jane`` is stored. A ``?``
    matches the same character on every server, a ``*`` a letter that UTF-8 makes several bytes (a
    server may match ``?`` against one byte); ``matches`` then drops what the wider pattern let in.
    """
    out: list[str] = []
    for c in value:
        wide = "*" if not c.isascii() else c if c in _PLAIN else "?"
        if not (wide == "*" and out and out[-1] == "*"):
            out.append(wide)
    return "".join(out)


def matches(pattern: str, value: str) -> bool:
    """Whether ``value`` matches the DICOM pattern (``*`` any run, ``?`` one character), ignoring case."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.IGNORECASE | re.DOTALL) is not None


class DicomWebClient:
    """QIDO-RS and WADO-RS against ``server.url`` (see ``assets.pacs.query.PacsClient``)."""

    def __init__(self, server: PacsServer) -> None:
        import requests  # noqa: PLC0415 - HTTP only for DICOMweb servers
        from dicomweb_client.api import DICOMwebClient  # noqa: PLC0415

        self.server = server
        self._session = requests.Session()
        self._headers: dict[str, str] = {}
        if server.user:
            self._session.auth = (server.user, server.password() or "")
        if server.ca_file or server.cert_file:
            server.ssl_context()  # a file that cannot be used is one line here, not a requests traceback later
        if server.ca_file:
            self._session.verify = server.ca_file
        if server.cert_file:
            self._session.cert = (server.cert_file, server.key_file)
        token = server.token()
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._client = DICOMwebClient(server.url.rstrip("/"), session=self._session, headers=self._headers,
                                      timeout=server.timeout)
        # Retry what a busy server answers (429, 503, ...) twice, half a second apart at first.
        self._client.set_http_retry_params(retry=True, max_attempts=3, wait_exponential_multiplier=500)

    def __enter__(self) -> DicomWebClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._session.close()

    @contextmanager
    def _errors(self, what: str, missing: Callable[[], PacsError] | None = None) -> Iterator[None]:
        """Turn a transport failure during ``what`` into one ``PacsError`` line."""
        import requests  # noqa: PLC0415

        name, url = self.server.name, self.server.url
        try:
            yield
        except requests.exceptions.HTTPError as exc:
            response: requests.Response | None = exc.response
            status = response.status_code if response is not None else 0
            if status in (401, 403):
                who = (f"user {self.server.user!r} with the password from ${self.server.password_env}"
                       if self.server.user else "the token" if self.server.token_env else "no credentials")
                raise PacsAuthError(name, f"{what}: HTTP {status}: {url} refused {who}") from None
            if status == 404 and missing is not None:
                raise missing() from None
            if status == 404:
                raise PacsRequestError(name, f"{what}: HTTP 404 from {url}: is that the DICOMweb root?") from None
            reason = response.reason if response is not None else ""
            raise PacsRequestError(name, f"{what}: HTTP {status} {reason} from {url}") from None
        except requests.exceptions.SSLError as exc:
            found = _TLS_PROBLEM.search(str(exc))
            problem = found.group(1).strip() if found else "SSLError"
            raise PacsConnectionError(name, f"{what}: TLS with {url} failed ({problem}): if a CA of your own signed "
                                      "its certificate, set ca_file (or point REQUESTS_CA_BUNDLE at it)") from None
        except requests.exceptions.Timeout:
            raise PacsConnectionError(name, f"{what}: no answer from {url} within {self.server.timeout:g} s") from None
        except requests.exceptions.ConnectionError as exc:
            raise PacsConnectionError(name, f"{what}: cannot connect to {url} ({_reason(exc)})") from None
        except requests.exceptions.RequestException as exc:
            raise PacsRequestError(name, f"{what}: {type(exc).__name__}: {_reason(exc)}") from None
        except (ValueError, KeyError, TypeError) as exc:  # a malformed answer: JSON, multipart, DICOM
            detail = (str(exc).splitlines() or [""])[0][:160]
            raise PacsRequestError(name, f"{what}: malformed answer from {url} ({type(exc).__name__}: {detail})") from None

    def echo(self) -> None:
        """The DICOMweb root answers a one-study search with these credentials (a ``PacsError`` otherwise)."""
        with self._errors("QIDO-RS"):
            self._qido("studies", {}, (), limit=1)

    def _qido(self, resource: str, filters: dict[str, str], keys: tuple[str, ...], limit: int = 0) -> list[Dataset]:
        """A QIDO-RS search of ``resource`` (``studies``, ``studies/UID/series``, ``series``).

        Text values go as ``query_value`` makes them and the answers are filtered by the values as given.
        """
        pairs = [*((k, query_value(v)) for k, v in filters.items()), *(("includefield", key) for key in keys)]
        if limit:
            pairs.append(("limit", str(limit)))
        query = "&".join(f"{k}={v}" for k, v in pairs)
        response = self._session.get(f"{self.server.url.rstrip('/')}/{resource}?{query}", timeout=self.server.timeout,
                                     headers={"Accept": "application/dicom+json", **self._headers})
        response.raise_for_status()
        if "Warning" in response.headers:  # PS3.18 8.3.4.4.2: the server returned only part of the matches
            log.warning("pacs %s: %s", self.server.name, response.headers["Warning"])
        found = response.json() if response.content.strip() else []
        if not isinstance(found, list) or not all(isinstance(item, dict) for item in found):
            raise ValueError("a QIDO-RS answer is not a JSON array of datasets")
        datasets = [Dataset.from_json(item) for item in found]
        widened = {k: v for k, v in filters.items() if query_value(v) != v}
        return [ds for ds in datasets if all(matches(v, str(ds.get(k, "") or "")) for k, v in widened.items())]

    def find_studies(self, query: StudyQuery) -> list[Dataset]:
        with self._errors("QIDO-RS study search"):
            # One more than the limit, so that the caller can tell that more match.
            return self._qido("studies", query.filters(), STUDY_KEYS, query.limit + 1 if query.limit else 0)

    def find_series(self, study_uid: str = "", series_uid: str = "", modality: str = "") -> list[Dataset]:
        filters = {k: v for k, v in (("SeriesInstanceUID", series_uid), ("Modality", modality)) if v}
        with self._errors("QIDO-RS series search"):
            return self._qido(f"studies/{study_uid}/series" if study_uid else "series", filters, SERIES_KEYS)

    def retrieve_series(self, study_uid: str, series_uid: str, sink: InstanceSink) -> int:
        count = 0

        def missing() -> PacsError:
            return PacsNotFoundError(self.server.name, "WADO-RS: the PACS has no such series")

        with self._errors("WADO-RS series retrieval", missing):
            for instance in self._client.iter_series(study_uid, series_uid):
                count += 1
                if count > self.server.max_instances:
                    raise PacsRequestError(self.server.name, f"the series has more than {self.server.max_instances} "
                                           "instances (max_instances)")
                sink(instance)
        return count


__all__ = ["DicomWebClient"]
