"""`medverse pacs`: the PACS servers the configuration describes, and a search of one of them.

``pacs find`` lists the series of the studies that match (patient, patient ID, modality, study date),
as a table or as JSON; ``twin import --pacs [NAME] --study UID | --series UID`` retrieves one of them,
de-identified, into the twin library (the options it adds to ``twin import`` are defined here). The
server comes from ``--pacs``, else ``$MEDVERSE_PACS``, else the configuration's default; the file from
``--config``, else ``$MEDVERSE_CONFIG``, else ``config.toml`` in the medverse home (docs/pacs.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from assets.errors import AssetError

if TYPE_CHECKING:
    from assets.library import Library
    from assets.twin import Twin

USER_ERRORS: tuple[type[BaseException], ...] = (AssetError,)

#: A search's table has ten columns, two of them UIDs: on a pipe or a log draw it 200 columns wide.
console = Console(width=None if sys.stdout.isatty() else 200)


def _add_server_arguments(parser: argparse.ArgumentParser, *, optional_name: bool = False) -> None:
    if optional_name:
        parser.add_argument("--pacs", nargs="?", const="", metavar="SERVER",
                            help="import from a PACS: the [pacs.SERVER] of the configuration (default: $MEDVERSE_PACS, "
                            "else the configured default)")
    else:
        parser.add_argument("--pacs", metavar="SERVER", help="the [pacs.SERVER] table of the configuration "
                            "(default: $MEDVERSE_PACS, else [pacs] default, else the only one)")
    parser.add_argument("--config", metavar="FILE", help="configuration file (default: $MEDVERSE_CONFIG, else "
                        "config.toml in $MEDVERSE_HOME)")


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    """The options ``twin import`` takes to import from a PACS instead of a path."""
    group = parser.add_argument_group("from a PACS (instead of PATH; see docs/pacs.md)")
    _add_server_arguments(group, optional_name=True)  # type: ignore[arg-type] # a group takes the same calls
    group.add_argument("--study", metavar="UID", help="Study Instance UID: its largest CT (else MR, PET, NM) series")
    group.add_argument("--series", metavar="UID", help="Series Instance UID (with --study too for a PACS that "
                       "answers only hierarchical queries)")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``pacs servers|echo|find``."""
    pacs = sub.add_parser("pacs", help="search a PACS (DICOMweb or DIMSE) for imaging to import",
                          description="Search the PACS servers of the configuration file ([pacs.NAME] tables). "
                          "'medverse twin import --pacs' retrieves a study or series, de-identified.")
    actions = pacs.add_subparsers(dest="pacs_command", metavar="ACTION")
    actions.required = True

    p = actions.add_parser("servers", help="list the configured PACS servers (no secrets)")
    p.add_argument("--config", metavar="FILE", help="configuration file (default: $MEDVERSE_CONFIG, else "
                   "config.toml in $MEDVERSE_HOME)")
    p.set_defaults(func=_servers)

    p = actions.add_parser("echo", help="check that a PACS answers (C-ECHO; DICOMweb: a one-study search)",
                           description="Connect to the server as configured (AE titles, TLS, credentials) and ask "
                           "it to answer: C-ECHO over DIMSE, a one-study QIDO-RS search over DICOMweb. One line; "
                           "exit code 0 when it answers, 2 with the reason when it does not.")
    _add_server_arguments(p)
    p.set_defaults(func=_echo)

    p = actions.add_parser("find", help="list the series of the studies that match",
                           description="Studies matching every criterion given, and their series (of --modality "
                           "only, when given). Patient names take * and ? wildcards: --patient 'Doe^J*'.")
    _add_server_arguments(p)
    p.add_argument("--patient", default="", metavar="NAME", help="Patient's Name (DICOM PN: Family^Given; * ? wildcards)")
    p.add_argument("--patient-id", default="", metavar="ID", help="Patient ID")
    p.add_argument("--modality", default="", type=str.upper, metavar="CODE", help="a modality in the study: CT, MR, PT ...")
    p.add_argument("--study-date", default="", metavar="DATE", help="YYYYMMDD, or a range YYYYMMDD-YYYYMMDD")
    p.add_argument("--study", default="", metavar="UID", help="one study, by Study Instance UID")
    p.add_argument("--limit", type=int, default=50, metavar="N", help="list the series of the first N studies "
                   "that match, with a warning when more do (default %(default)s; 0: every study)")
    p.add_argument("--json", action="store_true", help="print the matches as a JSON array")
    p.set_defaults(func=_find)


def _servers(args: argparse.Namespace) -> int:
    from assets.pacs import config_path, load_servers  # noqa: PLC0415 - PACS code only for PACS commands

    servers, default = load_servers(args.config)
    table = Table(title=f"PACS servers in {config_path(args.config)}")
    for column in ("name", "protocol", "where", "credentials"):
        table.add_column(column)
    for name, server in sorted(servers.items()):
        who = (f"{server.user} / ${server.password_env}" if server.user else f"token ${server.token_env}"
               if server.token_env else "-") if server.protocol == "dicomweb" else "AE titles"
        table.add_row(name + (" (default)" if name == default else ""), server.protocol, server.describe(), who)
    console.print(table)
    return 0


def _echo(args: argparse.Namespace) -> int:
    from assets.pacs import echo, resolve_server  # noqa: PLC0415 - PACS code only for PACS commands

    server = resolve_server(args.pacs, args.config)
    seconds = echo(server)
    what = "C-ECHO" if server.protocol == "dimse" else "a QIDO-RS search"
    print(f"pacs {server.name} ({server.describe()}): answered {what} in {seconds * 1000:.0f} ms")
    return 0


def _find(args: argparse.Namespace) -> int:
    from assets.pacs import StudyQuery, find, resolve_server  # noqa: PLC0415 - PACS code only for PACS commands

    query = StudyQuery(patient=args.patient, patient_id=args.patient_id, modality=args.modality,
                       study_date=args.study_date, study_uid=args.study, limit=args.limit)
    server = resolve_server(args.pacs, args.config)
    matches = find(server, query)
    if args.json:
        print(json.dumps([m.as_dict() for m in matches], indent=2))
        return 0
    table = Table(title=f"pacs {server.name}: {len(matches)} series")
    for column in ("patient", "patient ID", "born", "study date", "modality", "series", "description", "instances",
                   "study UID", "series UID"):
        table.add_column(column, overflow="fold", justify="right" if column in ("series", "instances") else "left")
    for m in matches:
        table.add_row(m.patient_name, m.patient_id, m.patient_birth_date, m.study_date, m.modality, m.series_number,
                      m.series_description, "" if m.instances is None else str(m.instances), m.study_uid, m.series_uid)
    console.print(table)
    return 0


def import_from_pacs(args: argparse.Namespace, library: Library, progress: Callable[[str, float], None],
                     options: dict[str, Any]) -> Twin:
    """``twin import --pacs``: retrieve ``--study`` or ``--series`` de-identified and import it into ``library``."""
    from assets.pacs import PacsQueryError, import_series, resolve_server  # noqa: PLC0415

    if args.path is not None:
        raise PacsQueryError("", f"give either a path ({args.path}) or --pacs, not both")
    if not (args.study or args.series):
        raise PacsQueryError("", "give --study UID or --series UID (or both) with --pacs")
    server = resolve_server(args.pacs or None, args.config)
    twin, retrieval = import_series(server, study_uid=args.study or "", series_uid=args.series or "", name=args.name,
                                    library=library, progress=progress, **options)
    console.print(retrieval.summary())
    return twin


__all__ = ["USER_ERRORS", "add_import_arguments", "import_from_pacs", "register"]
