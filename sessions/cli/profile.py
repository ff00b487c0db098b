"""`medverse profile`: a trainee's record of practice, read, checked, exported and sent on.

Every action goes through :func:`sessions.profiles.access.authorise` and so into the store's audit log.
Who is asking comes from a profile token (``--token`` or ``$MEDVERSE_PROFILE_TOKEN``, made with
``medverse profile token``): a trainee reads only their own profile, an instructor reads all. Without a
token the command acts for the *operator*: whoever can read the token secret (``--secret-file``,
``$MEDVERSE_SECRET`` or ``$MEDVERSE_HOME/consult.secret``) can mint any token anyway, so the operator is
let in as an instructor, under the name ``operator:<login>`` in the audit log. A deployment where
trainees share a machine keeps the secret file unreadable to them.

The profile store is ``--profile`` (a SQLite file or a ``postgresql://`` URL), else ``$MEDVERSE_PROFILES``,
else ``profiles.sqlite`` in the medverse home. See docs/profiles.md.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.table import Table

from net.tokens import SecretError, TokenError, load_secret, verify_token
from sessions.cli.twin import console
from sessions.profiles import ProfileError, ProfileStore, open_store
from sessions.profiles.access import (
    PROFILE_ROOM,
    ROLE_INSTRUCTOR,
    ROLE_TRAINEE,
    Principal,
    authorise,
    issue_profile_token,
)
from sessions.profiles.lrs import LRS_PASSWORD_ENV, LRS_USER_ENV

USER_ERRORS: tuple[type[BaseException], ...] = (ProfileError, SecretError, TokenError)

TOKEN_ENV = "MEDVERSE_PROFILE_TOKEN"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``profile list|show|verify|checkpoint|export|report|push|audit|token``."""
    profile = sub.add_parser("profile", help="trainee profiles: show, verify, export, report, push to an LRS",
                             description="Read and check trainees' hash-chained records of practice (xAPI statements).")
    actions = profile.add_subparsers(dest="profile_command", metavar="ACTION")
    actions.required = True

    def action(name: str, help_text: str, *, trainee: bool = True) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = actions.add_parser(name, help=help_text, description=help_text)
        if trainee:
            p.add_argument("trainee", help="the trainee's id")
        p.add_argument("--profile", help="profile store: a SQLite file or a postgresql:// URL "
                       "(default: $MEDVERSE_PROFILES, else profiles.sqlite in the medverse home)")
        p.add_argument("--token", help=f"a profile token (default ${TOKEN_ENV}; none: the operator, see --help)")
        p.add_argument("--secret-file", help="file holding the token secret (as for 'medverse consult serve')")
        return p

    action("list", "list the trainees in the store, with their record counts (instructor)", trainee=False).set_defaults(
        func=_list)
    action("show", "a trainee's attempts: module, date, score, pass/fail, duration").set_defaults(func=_show)
    p = action("verify", "check a profile's hash chain (and a signed checkpoint); exit 1 naming the first bad record")
    p.add_argument("--checkpoint", type=Path, help="a checkpoint file from 'medverse profile checkpoint'")
    p.set_defaults(func=_verify)
    p = action("checkpoint", "sign the profile's current head, so that a later rewrite can be proved (instructor)")
    p.add_argument("--out", type=Path, required=True, help="where to write the checkpoint (JSON)")
    p.set_defaults(func=_checkpoint)
    p = action("export", "write the profile's statements as an xAPI 1.0.3 JSON array")
    p.add_argument("--xapi", type=Path, required=True, help="output file (JSON)")
    p.set_defaults(func=_export)
    p = action("report", "write a self-contained HTML report: learning curves and per-step metrics")
    p.add_argument("--out", type=Path, required=True, help="output file (.html)")
    p.set_defaults(func=_report)
    p = action("push", "send the profile's statements to a Learning Record Store through the durable outbox")
    p.add_argument("--lrs", required=True, help="the LRS's base URL (statements go to <URL>/xAPI/statements)")
    p.add_argument("--user", default=os.environ.get(LRS_USER_ENV), help=f"LRS user (default ${LRS_USER_ENV})")
    p.add_argument("--password-env", default=LRS_PASSWORD_ENV,
                   help="environment variable holding the LRS password (default %(default)s; never on the command line)")
    p.add_argument("--outbox", type=Path, help="outbox file (default lrs-outbox.sqlite in the medverse home)")
    p.add_argument("--attempts", type=int, default=8, help="requests to try while the LRS is down before giving up "
                   "for now (default %(default)s; what is not sent stays queued for the next push)")
    p.set_defaults(func=_push)
    p = action("audit", "the audit log: who read, exported or checked which profile (instructor)", trainee=False)
    p.add_argument("trainee", nargs="?", help="only this trainee's profile")
    p.set_defaults(func=_audit)
    p = actions.add_parser("token", help="issue a profile token for a trainee or an instructor",
                           description="Sign a profile token with the medverse secret; print it.")
    p.add_argument("who", help="the holder's id (a trainee's id for role trainee)")
    p.add_argument("--role", choices=(ROLE_TRAINEE, ROLE_INSTRUCTOR), required=True)
    p.add_argument("--ttl", type=float, default=3600.0, help="lifetime in seconds (default %(default)s)")
    p.add_argument("--secret-file", help="file holding the token secret")
    p.set_defaults(func=_token)


# -- who is asking ---------------------------------------------------------------------------------


@contextmanager
def _opened(args: argparse.Namespace, action: str, trainee: str | None) -> Iterator[tuple[ProfileStore, Principal]]:
    """The store, and the principal allowed to do ``action`` on ``trainee``'s profile (None: on every
    profile, which only an instructor may). Decisions, refusals included, go into the audit log."""
    token = args.token or os.environ.get(TOKEN_ENV)
    store = open_store(args.profile)
    try:
        # the operator's first command on a machine makes the secret, as 'consult token' does
        secret, _ = load_secret(args.secret_file)
        if not token:
            # whoever holds the secret could mint an instructor token: let them in as one, and say so
            principal = Principal(f"operator:{getpass.getuser()}", ROLE_INSTRUCTOR)
            store.audit(principal.who, action, trainee or "*", "role=instructor (holds the token secret)")
        elif trainee is not None:
            principal = authorise(token, trainee, action, secret=secret, store=store)
        else:
            principal = _instructor(token, action, secret, store)
        yield store, principal
    finally:
        store.close()


def _instructor(token: str, action: str, secret: bytes, store: ProfileStore) -> Principal:
    """The holder of ``token`` if it is an instructor's profile token (for actions on every profile)."""
    try:
        claims = verify_token(secret, token)
    except TokenError as exc:
        store.audit("-", action, "*", f"denied: profile token refused: {exc}")
        raise ProfileError(f"profile token refused: {exc}") from None
    if claims.room != PROFILE_ROOM or claims.role != ROLE_INSTRUCTOR:
        why = f"{claims.participant} ({claims.role}) may not {action} every profile (instructors only)"
        store.audit(claims.participant, action, "*", f"denied: {why}")
        raise ProfileError(why)
    store.audit(claims.participant, action, "*", "role=instructor")
    return Principal(claims.participant, claims.role)


# -- actions ---------------------------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    with _opened(args, "read", None) as (store, _):
        table = Table(title="trainee profiles")
        table.add_column("trainee")
        table.add_column("statements", justify="right")
        for trainee in store.trainees():
            table.add_row(trainee, f"{store.count(trainee):,}")
        console.print(table)
    return 0


def _show(args: argparse.Namespace) -> int:
    from sessions.profiles.metrics import attempts  # noqa: PLC0415 - numpy and the metrics load only for show

    with _opened(args, "show", args.trainee) as (store, _):
        records = list(store.statements(args.trainee))
        check = store.verify(args.trainee)
    found = attempts(records)
    table = Table(title=f"profile of {args.trainee}: {len(records):,} statements, {len(found)} attempts; "
                  f"chain {'intact' if check.ok else 'BROKEN: ' + check.reason}")
    for column in ("#", "module", "started (UTC)", "score", "result", "time", "errors", "accuracy (mm)"):
        table.add_column(column, justify="left" if column in ("module", "started (UTC)", "result") else "right")
    for a in found:
        errors, accuracy = a.value("errors"), a.value("accuracy_mm")
        table.add_row(str(a.number), a.module_name or a.module_id, a.timestamp[:19].replace("T", " "),
                      "-" if a.score is None else f"{a.score * 100:.0f}%",
                      {True: "passed", False: "failed", None: "-"}[a.success],
                      "-" if a.duration_s is None else f"{a.duration_s:.1f} s",
                      "-" if errors is None else f"{errors:.0f}", "-" if accuracy is None else f"{accuracy:.1f}")
    console.print(table)
    return 0 if check.ok else 1


def _verify(args: argparse.Namespace) -> int:
    from sessions.profiles import Checkpoint  # noqa: PLC0415 - keeps the import list of the other actions short

    with _opened(args, "verify", args.trainee) as (store, _):
        result = store.verify(args.trainee)
        cp_result = None
        if args.checkpoint is not None:
            try:
                cp = Checkpoint.from_dict(json.loads(args.checkpoint.read_text()))
            except (OSError, ValueError) as exc:
                raise ProfileError(f"{args.checkpoint}: not a checkpoint file ({exc})") from None
            if cp.trainee != args.trainee:
                raise ProfileError(f"{args.checkpoint} is a checkpoint of {cp.trainee}, not {args.trainee}")
            key, _ = load_secret(args.secret_file)
            cp_result = store.verify_checkpoint(args.trainee, cp, key)
    print(f"{args.trainee}: {'ok' if result.ok else 'TAMPERED'}: {result.reason}")
    if not result.ok:
        print(f"first bad record: {result.first_bad_seq}")
    if cp_result is not None:
        print(f"checkpoint {args.checkpoint}: {'ok' if cp_result.ok else 'FAILED'}: {cp_result.reason}")
    return 0 if result.ok and (cp_result is None or cp_result.ok) else 1


def _checkpoint(args: argparse.Namespace) -> int:
    with _opened(args, "checkpoint", args.trainee) as (store, _):
        key, _ = load_secret(args.secret_file)
        cp = store.checkpoint(args.trainee, key)
    _write(args.out, json.dumps(cp.to_dict(), indent=2) + "\n")
    print(f"{args.trainee}: checkpoint of {cp.seq} records (head {cp.hash[:16]}...) written to {args.out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    with _opened(args, "export", args.trainee) as (store, _):
        statements = [stored.statement for stored in store.statements(args.trainee)]
    _write(args.xapi, json.dumps(statements, indent=1, ensure_ascii=False) + "\n")
    print(f"{args.trainee}: {len(statements)} xAPI 1.0.3 statements written to {args.xapi}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from sessions.profiles.report import write_report  # noqa: PLC0415 - the report's code loads only for report

    with _opened(args, "report", args.trainee) as (store, _):
        path = write_report(store, args.trainee, args.out)
    print(f"{args.trainee}: report written to {path.resolve()}")
    return 0


def _push(args: argparse.Namespace) -> int:
    from sessions.profiles.lrs import LRSError, Outbox, OutboxError, push_profile  # noqa: PLC0415 - only push sends

    password = os.environ.get(args.password_env)
    if not args.user or password is None:
        raise ProfileError(f"the LRS needs a user (--user or ${LRS_USER_ENV}) and a password (${args.password_env})")
    with _opened(args, "push", args.trainee) as (store, _):
        try:
            with Outbox(args.outbox) as outbox:
                result = push_profile(store, args.trainee, args.lrs, username=args.user, password=password,
                                      outbox=outbox, max_attempts=args.attempts)
        except (LRSError, OutboxError) as exc:
            raise ProfileError(str(exc)) from None
    print(f"{args.trainee}: {result.sent} sent, {result.already} already at the LRS, {result.rejected} refused "
          f"by it, {result.pending} still queued ({result.requests} requests, {result.retries} retries)")
    for statement_id in result.rejected_ids:
        print(f"  refused: {statement_id}")
    return 0 if result.complete and not result.rejected else 1


def _audit(args: argparse.Namespace) -> int:
    # the audit log is for instructors, whichever profile it is narrowed to
    with _opened(args, "audit", None) as (store, _):
        rows: list[dict[str, Any]] = store.audit_log(args.trainee)
    table = Table(title="profile audit log" + (f" for {args.trainee}" if args.trainee else ""))
    keys = list(rows[0]) if rows else ["time", "who", "action", "trainee", "detail"]
    for key in keys:
        table.add_column(key)
    for row in rows:
        table.add_row(*(str(row[k]) for k in keys))
    console.print(table)
    return 0


def _token(args: argparse.Namespace) -> int:
    secret, _ = load_secret(args.secret_file)
    print(issue_profile_token(secret, args.who, args.role, ttl_s=args.ttl))
    return 0


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"cannot write {path}: {exc.strerror}") from None
