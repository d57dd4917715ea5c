"""`mailflow campaign ...`: create, check, approve and send a decision's mailing; reminders.

Nothing is sent before a named person approves (`approve --by NAME`), and `send` refuses when
anything changed since (see mailflow.outreach.campaigns.approval_digest). `send` only queues
ledger rows; the delivery worker (`mailflow serve`, or `mailflow send`) sends them.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mailflow.outreach.audience import (
    Audience,
    ContactFacts,
    audience_from_json,
    audience_from_toml,
)
from mailflow.outreach.campaigns import CampaignError
from mailflow.progress import Progress
from mailflow.settings import Settings
from mailflow.store import campaign_mail as mail
from mailflow.store import campaigns as store
from mailflow.store import make_engine, migrate, session_factory, translate_db_errors
from mailflow.store.campaigns import Workspace
from mailflow.store.models import Campaign, Contact


def add_campaign_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser("campaign", parents=[common], help="mail a decision to an audience")
    csub = p.add_subparsers(dest="campaign_command", metavar="ACTION", required=True)
    c = csub.add_parser("create", parents=[common], help="a new draft campaign")
    c.add_argument("--name", required=True)
    c.add_argument("--purpose", default="decision", help="template set (default: decision)")
    c.add_argument("--decision", type=int, required=True, metavar="ID")
    _content_options(c, audience_required=True)
    c.add_argument("--by", required=True, metavar="NAME", help="who creates it")
    c = csub.add_parser("edit", parents=[common], help="change a draft (withdraws approval)")
    c.add_argument("--name")
    _content_options(c, audience_required=False)
    csub.add_parser("list", parents=[common], help="every campaign, newest first")
    c = csub.add_parser("show", parents=[common], help="a campaign, and who would get it")
    c.add_argument("--recipients", action="store_true", help="list the resolved recipients")
    c = csub.add_parser("preview", parents=[common], help="the exact message for a recipient")
    c.add_argument("--to", required=True, metavar="ADDRESS_OR_CONTACT_ID")
    c.add_argument("--out", type=Path, metavar="FILE.eml", help="default: stdout")
    _as_options(c)
    c = csub.add_parser("test", parents=[common], help="queue [TEST] copies to given addresses")
    c.add_argument("--to", required=True, action="append", metavar="ADDRESS_OR_CONTACT_ID")
    _as_options(c)
    c = csub.add_parser("approve", parents=[common], help="approve the current content")
    c.add_argument("--by", required=True, metavar="NAME")
    csub.add_parser("send", parents=[common], help="queue the mailing (approved campaigns)")
    for action in ("pause", "resume", "cancel"):
        csub.add_parser(action, parents=[common], help=f"{action} the sending")
    c = csub.add_parser("status", parents=[common], help="deliveries by state")
    c.add_argument("--watch", action="store_true", help="a progress bar until all is sent")
    c = csub.add_parser("remind", parents=[common], help="remind parliaments that did not act")
    c.add_argument("--dry-run", action="store_true", help="only list who would be reminded")
    for name, parser in csub.choices.items():
        if name not in ("create", "list"):
            parser.add_argument("id", type=int, metavar="ID")
    p.set_defaults(handler=cmd_campaign)


def _content_options(parser: argparse.ArgumentParser, *, audience_required: bool) -> None:
    group = parser.add_mutually_exclusive_group(required=audience_required)
    group.add_argument("--audience", type=Path, metavar="FILE", help="a .json or .toml file")
    group.add_argument("--audience-json", metavar="JSON")
    for language in ("en", "fr", "es"):
        parser.add_argument(f"--subject-{language}", metavar="TEXT")


def _as_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--language", default="en", help="for an address that is no contact")
    parser.add_argument("--role", default="speaker", help="for an address that is no contact")


@contextmanager
def _database(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings.database_url, busy_timeout_ms=settings.database.busy_timeout_ms)
    try:
        if settings.database.auto_upgrade:
            migrate.upgrade(settings.database_url)
        else:
            migrate.check_current(engine)
        yield session_factory(engine)
    finally:
        engine.dispose()


def cmd_campaign(args: argparse.Namespace, settings: Settings) -> int:
    ws = Workspace.from_settings(settings)
    action = args.campaign_command.replace("-", "_")
    with _database(settings) as sessions:
        result: int = _ACTIONS[action](args, ws, sessions)
        return result


def _now() -> datetime:
    return datetime.now(UTC)


def _audience(args: argparse.Namespace, ws: Workspace) -> Audience | None:
    if args.audience_json is not None:
        return audience_from_json(args.audience_json, ws.geography)
    if args.audience is None:
        return None
    try:
        text = args.audience.read_text(encoding="utf-8")
    except OSError as exc:
        raise CampaignError(f"cannot read {args.audience}: {exc.strerror}") from None
    if args.audience.suffix.lower() == ".toml":
        return audience_from_toml(text, ws.geography)
    return audience_from_json(text, ws.geography)


def _subjects(args: argparse.Namespace) -> dict[str, str]:
    given = {lang: getattr(args, f"subject_{lang}") for lang in ("en", "fr", "es")}
    return {lang: text for lang, text in given.items() if text is not None}


def _create(args: argparse.Namespace, ws: Workspace, sessions: sessionmaker[Session]) -> int:
    audience = _audience(args, ws)
    assert audience is not None  # argparse requires one of the two options
    with translate_db_errors(), sessions.begin() as session:
        campaign = store.create(
            session,
            ws,
            name=args.name,
            purpose=args.purpose,
            decision_id=args.decision,
            audience=audience,
            subjects=_subjects(args),
            by=args.by,
            now=_now(),
        )
        print(f"campaign {campaign.id} created (draft): check it with `campaign show`")
    return 0


def _edit(args: argparse.Namespace, ws: Workspace, sessions: sessionmaker[Session]) -> int:
    subjects = _subjects(args)
    with translate_db_errors(), sessions.begin() as session:
        campaign = store.edit(
            session, args.id, name=args.name, audience=_audience(args, ws), subjects=subjects
        )
        print(f"campaign {campaign.id} changed: it needs approving (again) before sending")
    return 0


def _list(args: argparse.Namespace, ws: Workspace, sessions: sessionmaker[Session]) -> int:
    with translate_db_errors(), sessions() as session:
        for c in session.scalars(select(Campaign).order_by(Campaign.id.desc())):
            print(f"{c.id}\t{c.status}\t{c.purpose}\tdecision {c.decision_id}\t{c.name}")
    return 0


def _show(args: argparse.Namespace, ws: Workspace, sessions: sessionmaker[Session]) -> int:
    with translate_db_errors(), sessions.begin() as session:
        store.withdraw_stale_approval(session, ws, args.id)
        campaign = store.get(session, args.id)
        approval = (
            f"approved by {campaign.approved_by} at {campaign.approved_at:%Y-%m-%d %H:%M} UTC"
            if campaign.approved_at is not None
            else "NOT approved"
        )
        print(f"campaign {campaign.id}: {campaign.name}")
        print(f"  status: {campaign.status}; {approval}; created by {campaign.created_by}")
        print(f"  purpose: {campaign.purpose}; decision: {campaign.decision_id}")
        print(f"  subjects: {campaign.subjects}")
        print(f"  audience: {campaign.audience}")
        resolution = store.recipients(session, ws, campaign)
        print(
            f"  recipients: {len(resolution.recipients)}; "
            f"suppressed (left out): {len(resolution.suppressed)}"
        )
        if args.recipients:
            _print_recipients(session, resolution.recipients, resolution.suppressed)
    return 0


def _print_recipients(
    session: Session, kept: Sequence[ContactFacts], dropped: Sequence[ContactFacts]
) -> None:
    for label, group in (("", kept), ("suppressed\t", dropped)):
        for facts in group:
            contact = session.get_one(Contact, facts.id)
            name = contact.person_name or contact.organisation or ""
            print(
                f"{label}{contact.id}\t{contact.email}\t{contact.role}\t"
                f"{contact.country or '-'}\t{contact.languages}\t{name}"
            )


def _preview(args: argparse.Namespace, ws: Workspace, sessions: sessionmaker[Session]) -> int:
    with translate_db_errors(), sessions() as session:
        target = mail.find_recipient(session, args.to, language=args.language, role=args.role)
        raw = mail.preview(session, ws, args.id, target, _now())
    if args.out is not None:
        args.out.write_bytes(raw)
        print(f"wrote {args.out} ({len(raw)} bytes)")
    else:
        sys.stdout.buffer.write(raw)
        sys.stdout.flush()
    return 0


def _test(args: argparse.Namespace, ws: Workspace, sessions: sessionmaker[Session]) -> int:
    with translate_db_errors(), sessions.begin() as session:
        targets = [
            mail.find_recipient(session, to, language=args.language, role=args.role)
            for to in args.to
        ]
        rows = mail.queue_tests(session, ws, args.id, targets, _now())
        print(f"queued {len(rows)} test message(s); the delivery worker sends them")
    return 0


def _approve(args: argparse.Namespace, ws: Workspace, sessions: sessionmaker[Session]) -> int:
    with translate_db_errors(), sessions.begin() as session:
        mail.approve(session, ws, args.id, args.by, _now())
        print(f"campaign {args.id} approved by {args.by.strip()}")
    return 0


def _send(args: argparse.Namespace, ws: Workspace, sessions: sessionmaker[Session]) -> int:
    now = _now()
    try:
        plan = mail.plan_send(sessions, ws, args.id, now)
    except CampaignError:
        with translate_db_errors(), sessions.begin() as session:
            store.withdraw_stale_approval(session, ws, args.id)
        raise
    with Progress(len(plan.to_queue), sys.stderr, label="queue", unit="msg") as bar:
        queued = mail.send(sessions, ws, args.id, plan=plan, now=now, progress=bar.advance)
    print(
        f"queued {queued} message(s); {plan.already} already queued, "
        f"{plan.suppressed} suppressed address(es) left out"
    )
    return 0


def _change(args: argparse.Namespace, ws: Workspace, sessions: sessionmaker[Session]) -> int:
    with translate_db_errors(), sessions.begin() as session:
        campaign = store.change_status(session, args.id, args.campaign_command)
        print(f"campaign {campaign.id} is {campaign.status}")
    return 0


def _status(args: argparse.Namespace, ws: Workspace, sessions: sessionmaker[Session]) -> int:
    watch = args.watch and sys.stderr.isatty()
    bar: Progress | None = None
    while True:
        with translate_db_errors(), sessions.begin() as session:
            campaign = store.get(session, args.id)
            store.refresh_done(session, campaign)
            counts = store.counts(session, args.id)
            status, purpose = campaign.status, campaign.purpose
        mailing = counts.get(purpose, {})
        if not watch:
            print(f"campaign {args.id}: {status}")
            for kind, states in sorted(counts.items()):
                print(f"  {kind}: " + ", ".join(f"{s} {n}" for s, n in sorted(states.items())))
            return 0
        bar = bar or Progress(sum(mailing.values()), sys.stderr, label=f"campaign {args.id}")
        finished = sum(n for s, n in mailing.items() if s not in store.ACTIVE_STATES)
        bar.advance(finished - bar.done)
        bar.status = ", ".join(f"{s} {n}" for s, n in sorted(mailing.items()))
        if status not in ("sending",):
            bar.close()
            return 0
        time.sleep(1)


def _remind(args: argparse.Namespace, ws: Workspace, sessions: sessionmaker[Session]) -> int:
    with translate_db_errors(), sessions.begin() as session:
        campaign = store.get(session, args.id)
        plan = mail.plan_reminders(session, ws, campaign, _now())
        print(
            f"{len(plan.due)} reminder(s) due; parliaments that reported: "
            f"{', '.join(plan.reported) or 'none'}; {plan.waiting} contact(s) not due yet"
        )
        if args.dry_run:
            for contact_id, round_ in plan.due:
                print(f"  contact {contact_id}: reminder {round_}")
            return 0  # nothing was written
        queued = mail.queue_reminders(session, ws, campaign, plan, _now())
        print(f"queued {queued} reminder(s)")
    return 0


_ACTIONS = {
    "create": _create,
    "edit": _edit,
    "list": _list,
    "show": _show,
    "preview": _preview,
    "test": _test,
    "approve": _approve,
    "send": _send,
    "pause": _change,
    "resume": _change,
    "cancel": _change,
    "status": _status,
    "remind": _remind,
}
