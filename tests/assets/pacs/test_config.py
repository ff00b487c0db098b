"""The [pacs.NAME] configuration: what it accepts, what it refuses in one line, and which server wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from assets.pacs import PacsConfigError, PacsQueryError, StudyQuery, load_servers, resolve_server

WEB = '[pacs.web]\nurl = "https://pacs.example.org/dicom-web"\nuser = "u"\npassword_env = "PW"\n'
DIMSE = '[pacs.ris]\nhost = "10.0.0.5"\ncalled_aet = "PACS"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_servers_are_read_with_their_protocol_from_url_or_host(tmp_path: Path) -> None:
    """A table with url is DICOMweb, one with host DIMSE (C-GET, calling AE MEDVERSE, port 104 by default)."""
    servers, default = load_servers(write(tmp_path, WEB + DIMSE))
    assert default is None
    assert servers["web"].protocol == "dicomweb" and servers["web"].user == "u"
    ris = servers["ris"]
    assert (ris.protocol, ris.port, ris.calling_aet, ris.retrieve) == ("dimse", 104, "MEDVERSE", "get")
    assert ris.describe() == "PACS@10.0.0.5:104 as MEDVERSE (C-GET)"


def test_the_flag_beats_the_environment_which_beats_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--pacs over $MEDVERSE_PACS over [pacs] default; with neither, a file holding two servers asks which."""
    path = write(tmp_path, WEB + DIMSE)
    monkeypatch.delenv("MEDVERSE_PACS", raising=False)
    with pytest.raises(PacsConfigError, match="2 servers are configured"):
        resolve_server(None, path)
    path = write(tmp_path, '[pacs]\ndefault = "web"\n' + WEB + DIMSE)
    assert resolve_server(None, path).name == "web"
    monkeypatch.setenv("MEDVERSE_PACS", "ris")
    assert resolve_server(None, path).name == "ris"
    assert resolve_server("web", path).name == "web"
    monkeypatch.setenv("MEDVERSE_CONFIG", str(path))
    assert resolve_server("web").url == "https://pacs.example.org/dicom-web"


@pytest.mark.parametrize(("text", "message"), [
    ('[pacs.web]\nurl = "https://h/dicom-web"\nuser = "u"\npassword = "x"\n', "a password does not go in the file"),
    ('[pacs.web]\nurl = "https://h/dicom-web"\nusr = "u"\n', "unknown key 'usr'"),
    ('[pacs.web]\nurl = "ftp://h/dicom-web"\n', "is not an http(s) URL"),
    ('[pacs.ris]\nhost = "h"\ncalled_aet = "A_TITLE_LONGER_THAN_16"\n', "is not an AE title"),
    ('[pacs.ris]\nhost = "h"\ncalled_aet = "PACS"\nretrieve = "move"\n', "needs move_port"),
    ('[pacs.ris]\nhost = "h"\ncalled_aet = "PACS"\nport = 70000\n', "port 70000 is not a TCP port"),
    ('[pacs.ris]\nhost = "h"\ncalled_aet = "PACS"\ntimeout = -1\n', "timeout -1 is not a number of seconds"),
    ('[pacs.ris]\ncalled_aet = "PACS"\n', "needs host"),
    ("[pacs.web\n", "is not valid TOML"),
])
def test_a_bad_configuration_is_one_line_naming_the_problem(tmp_path: Path, text: str, message: str) -> None:
    """Each mistake is refused while reading, in one line that says what to change."""
    with pytest.raises(PacsConfigError) as caught:
        load_servers(write(tmp_path, text))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_missing_file_server_and_secret_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No file, no such server, an unset password variable: each says where to look."""
    with pytest.raises(PacsConfigError, match=r"no configuration file at .*nothing\.toml"):
        load_servers(tmp_path / "nothing.toml")
    path = write(tmp_path, WEB)
    with pytest.raises(PacsConfigError, match=r"no \[pacs.other\] table .* \(configured: web\)"):
        resolve_server("other", path)
    monkeypatch.delenv("PW", raising=False)
    with pytest.raises(PacsConfigError, match=r"read from \$PW, which is not set"):
        resolve_server("web", path).password()
    monkeypatch.setenv("PW", "pw")
    assert resolve_server("web", path).password() == "pw"


@pytest.mark.parametrize(("fields", "message"), [
    ({"study_date": "2026-01-15"}, "is not YYYYMMDD"),
    ({"modality": "ct scan"}, "is not a DICOM modality code"),
    ({"study_uid": "1.2.abc"}, "is not a DICOM UID"),
    ({"patient": "Doe\\Jane"}, "no backslash"),
])
def test_a_malformed_search_is_refused_before_any_connection(fields: dict[str, str], message: str) -> None:
    """Dates, modality codes, UIDs and names are checked before a query leaves medverse."""
    with pytest.raises(PacsQueryError, match=message):
        StudyQuery(**fields)
    assert StudyQuery(study_date="20260101-").filters() == {"StudyDate": "20260101-"}


def test_pacs_servers_lists_every_server_and_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """`medverse pacs servers` names each server, its protocol and address, the default, and no password."""
    from sessions.cli import main

    monkeypatch.setenv("PW", "hunter2-secret")
    path = write(tmp_path, '[pacs]\ndefault = "ris"\n' + WEB + DIMSE)
    assert main(["pacs", "servers", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ris (default)" in out and "PACS@10.0.0.5:104 as MEDVERSE (C-GET)" in out
    assert "https://pacs.example.org/dicom-web" in out and "u / $PW" in out and "hunter2" not in out
