"""Outreach commands: `contacts import | export | list | suppress | unsuppress` and
`decision add | list | show`.

A contacts import is all or nothing: every bad row is reported (file:line: reason) and, if
there is one, nothing is written and the exit code is 1. Values that came from a file
(names, organisations, file names) are printed with control characters escaped.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeAlias

from sqlalchemy.exc import IntegrityError

from mailflow.cli_intake import human_size, printable
from mailflow.errors import MailflowError
from mailflow.outreach import contacts as csvc
from mailflow.outreach import decisions as dec
from mailflow.service import App, build, prepare_database
from mailflow.settings import Settings
from mailflow.store import contacts as stored
from mailflow.store import decisions as decided
from mailflow.store.engine import translate_db_errors
from mailflow.store.types import utcnow

# A string: argparse._SubParsersAction is generic only to type checkers.
Sub: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_commands(sub: Sub, common: argparse.ArgumentParser) -> None:
    _contacts_commands(sub, common)
    _decision_commands(sub, common)


def _contacts_commands(sub: Sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "contacts", parents=[common], help="import, export, list and suppress outreach contacts"
    )
    csub = p.add_subparsers(dest="contacts_command", metavar="ACTION", required=True)
    c = csub.add_parser(
        "import", parents=[common], help="add or update contacts from a CSV file (all or nothing)"
    )
    c.add_argument("file", type=Path, metavar="FILE")
    c.add_argument("--dry-run", action="store_true", help="validate only; write nothing")
    c = csub.add_parser("export", parents=[common], help="write every contact as CSV")
    c.add_argument("file", type=Path, nargs="?", metavar="FILE", help="default: stdout")
    c.add_argument("--bom", action="store_true", help="start with a UTF-8 BOM (for Excel)")
    c = csub.add_parser("list", parents=[common], help="contacts, by role and country")
    c.add_argument("--role", metavar="ROLE", help="a recipient role (code or English label)")
    c.add_argument("--country", metavar="ISO3", help="an ISO 3166-1 alpha-3 code")
    c = csub.add_parser("suppress", parents=[common], help="never mail an address again")
    c.add_argument("address", metavar="ADDRESS")
    c.add_argument("--reason", required=True, choices=stored.MANUAL_REASONS)
    c.add_argument("--detail", metavar="TEXT", help="why, for whoever looks later")
    c = csub.add_parser("unsuppress", parents=[common], help="lift an address's suppression")
    c.add_argument("address", metavar="ADDRESS")
    p.set_defaults(handler=cmd_contacts)


def _decision_commands(sub: Sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "decision", parents=[common], help="add, list or show decisions and their documents"
    )
    dsub = p.add_subparsers(dest="decision_command", metavar="ACTION", required=True)
    d = dsub.add_parser("add", parents=[common], help="store a decision with its documents")
    d.add_argument("--session", required=True, help='e.g. "213th session"')
    d.add_argument("--date", required=True, metavar="YYYY-MM-DD", help="date of adoption")
    d.add_argument("--body", required=True, help='e.g. "Governing Council"')
    d.add_argument("--symbol", help="document symbol, e.g. CL/213/11(b)-R.1")
    d.add_argument(
        "--case", dest="cases", action="append", default=[], metavar="CODE", required=True
    )
    d.add_argument("--visibility", choices=["public", "confidential"], default="confidential")
    d.add_argument(
        "--doc",
        dest="docs",
        action="append",
        default=[],
        metavar="LANG=PATH",
        help="the text in one language (PDF, HTML or UTF-8 text); en and fr are official",
    )
    dsub.add_parser("list", parents=[common], help="every decision, latest first")
    d = dsub.add_parser("show", parents=[common], help="one decision: cases and documents")
    d.add_argument("id", type=int, metavar="ID")
    p.set_defaults(handler=cmd_decision)


@contextmanager
def _database(settings: Settings) -> Iterator[App]:
    app = build(settings)
    try:
        prepare_database(app)
        yield app
    finally:
        app.close()


@contextmanager
def _one_writer() -> Iterator[None]:
    """Database errors as mailflow's; a unique-key conflict means someone else wrote the same
    contact or document at the same moment, and nothing of ours was committed."""
    try:
        with translate_db_errors():
            yield
    except IntegrityError:
        raise MailflowError(
            "another command wrote the same records at the same time; nothing was written",
            hint="run the command again",
        ) from None


# -- contacts ------------------------------------------------------------------------------------


def cmd_contacts(args: argparse.Namespace, settings: Settings) -> int:
    if args.contacts_command == "import":
        return _import(args.file, settings, dry_run=args.dry_run)
    with _database(settings) as app:
        if args.contacts_command == "export":
            return _export(app, args.file, bom=args.bom)
        if args.contacts_command == "list":
            return _list_contacts(app, args.role, args.country)
        if args.contacts_command == "suppress":
            return _suppress(app, args.address, args.reason, args.detail)
        return _unsuppress(app, args.address)


def _import(path: Path, settings: Settings, *, dry_run: bool) -> int:
    parsed = csvc.parse_contacts(csvc.decode(_read(path)))
    name = printable(str(path))
    for error in parsed.errors:
        print(f"{name}:{error.line}: {printable(error.reason)}", file=sys.stderr)
    if parsed.errors:
        lines = len({error.line for error in parsed.errors})
        print(f"{len(parsed.errors)} problem(s) on {lines} line(s): nothing imported")
        return 1
    with _database(settings) as app, _one_writer(), app.sessions() as session:
        counts = stored.upsert_contacts(session, parsed.rows, utcnow())
        if dry_run:
            session.rollback()
        else:
            session.commit()
    if dry_run:
        print(
            f"dry run, nothing written: {len(parsed.rows)} contact(s) valid; would add "
            f"{counts.added}, update {counts.updated}, leave {counts.unchanged} unchanged"
        )
    else:
        print(f"{counts.added} added, {counts.updated} updated, {counts.unchanged} unchanged")
    return 0


def _export(app: App, path: Path | None, *, bom: bool) -> int:
    with translate_db_errors(), app.sessions() as session:
        listed = stored.list_contacts(session)
    text = ("\ufeff" if bom else "") + csvc.render_contacts(listed)
    if path is None:
        sys.stdout.write(text)
        return 0
    try:
        path.write_text(text, encoding="utf-8", newline="")
    except OSError as exc:
        raise MailflowError(f"cannot write {path}: {exc.strerror}") from None
    print(f"{len(listed)} contact(s) written to {printable(str(path))}", file=sys.stderr)
    return 0


def _list_contacts(app: App, role: str | None, country: str | None) -> int:
    roles = [csvc.clean_role(role)] if role else []
    countries = [code for code in [csvc.clean_country(country or "")] if code]
    with translate_db_errors(), app.sessions() as session:
        listed = stored.list_contacts(session, roles=roles, countries=countries)
    if not listed:
        print("no contacts")
        return 0
    print(f"{'ID':>6}  {'ROLE':<12}  {'CTRY':<4}  {'LANG':<8}  {'EMAIL':<40}  NAME")
    for item in listed:
        row = item.contact
        name = " / ".join(part for part in (row.person, row.organisation) if part)
        flag = f"  [suppressed: {item.suppressed}]" if item.suppressed else ""
        print(
            f"{item.id:>6}  {row.role:<12}  {row.country or '-':<4}  "
            f"{','.join(row.languages):<8}  {row.email:<40}  {printable(name)}{flag}"
        )
    suppressed = sum(1 for item in listed if item.suppressed)
    print(f"{len(listed)} contact(s), {suppressed} suppressed")
    return 0


def _suppress(app: App, address: str, reason: str, detail: str | None) -> int:
    email = csvc.clean_address(address)
    with translate_db_errors(), app.sessions() as session:
        existing = stored.suppress(session, email, reason, utcnow(), detail)
        session.commit()
    if existing is not None:
        print(f"{email}: already suppressed ({existing.reason} since {existing.created_at:%F})")
    else:
        print(f"{email}: suppressed ({reason})")
    return 0


def _unsuppress(app: App, address: str) -> int:
    email = csvc.clean_address(address)
    with translate_db_errors(), app.sessions() as session:
        removed = stored.unsuppress(session, email)
        session.commit()
    if removed is None:
        print(f"{email}: was not suppressed")
        return 1
    print(f"{email}: suppression lifted (was {removed.reason} since {removed.created_at:%F})")
    return 0


# -- decisions -----------------------------------------------------------------------------------


def cmd_decision(args: argparse.Namespace, settings: Settings) -> int:
    if args.decision_command == "add":
        new = _new_decision(args)  # everything checked before the database is touched
        for warning in new.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        with _database(settings) as app:
            return _add_decision(app, new)
    with _database(settings) as app:
        if args.decision_command == "list":
            return _list_decisions(app)
        return _show_decision(app, args.id)


def _new_decision(args: argparse.Namespace) -> dec.NewDecision:
    documents = []
    for option in args.docs:
        language, path = dec.split_doc_option(option)
        documents.append(dec.make_document(language, _read(Path(path)), Path(path).name))
    return dec.new_decision(
        session=args.session,
        adopted_on=dec.parse_date(args.date),
        body=args.body,
        symbol=args.symbol,
        visibility=args.visibility,
        case_codes=args.cases,
        documents=documents,
    )


def _add_decision(app: App, new: dec.NewDecision) -> int:
    with _one_writer(), app.sessions() as session:
        added = decided.add_decision(session, new, utcnow())
        session.commit()
    created = f" (new: {', '.join(added.new_cases)})" if added.new_cases else ""
    print(f"decision {added.id} added: {len(new.case_codes)} case(s){created}")
    for doc in new.documents:
        kind = doc.media_type.split(";")[0]
        print(f"  {doc.language}: {kind}, {human_size(len(doc.data))}{_official(doc.official)}")
    print(f"{added.new_blobs} new document file(s) stored; visibility {new.visibility}")
    return 0


def _list_decisions(app: App) -> int:
    with translate_db_errors(), app.sessions() as session:
        found = decided.list_decisions(session)
    if not found:
        print("no decisions")
        return 0
    print(f"{'ID':>5}  {'ADOPTED':<10}  {'VISIBILITY':<12}  {'LANG':<8}  BODY / SESSION / CASES")
    for info in found:
        what = f"{info.body}, {info.session}: {', '.join(info.case_codes)}"
        print(
            f"{info.id:>5}  {info.adopted_on:%Y-%m-%d}  {info.visibility:<12}  "
            f"{','.join(info.languages):<8}  {printable(what)}"
        )
    print(f"{len(found)} decision(s); `mailflow decision show ID` for one")
    return 0


def _show_decision(app: App, decision_id: int) -> int:
    with translate_db_errors(), app.sessions() as session:
        info = decided.decision_info(session, decision_id)
    if info is None:
        raise MailflowError(
            f"no decision with id {decision_id}", hint="`mailflow decision list` shows the ids"
        )
    print(f"decision {info.id}: {info.visibility}")
    for label, value in (
        ("session", info.session),
        ("adopted", f"{info.adopted_on:%Y-%m-%d}"),
        ("body", info.body),
        ("symbol", info.symbol or "-"),
        ("cases", ", ".join(info.case_codes)),
        ("added", f"{info.created_at:%Y-%m-%d %H:%M:%S} UTC"),
    ):
        print(f"  {label + ':':<9} {printable(value)}")
    print("documents:")
    for doc in info.documents:
        name = printable(doc.filename or "-")
        print(
            f"  {doc.id:>5}  {doc.language:<3} {doc.media_type.split(';')[0]:<16} "
            f"{human_size(doc.size):>9}  {doc.sha256[:12]}  {name}{_official(doc.official)}"
        )
    return 0


# -- helpers -------------------------------------------------------------------------------------


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise MailflowError(f"cannot read {printable(str(path))}: {exc.strerror}") from None


def _official(official: bool) -> str:
    return " (official)" if official else ""
