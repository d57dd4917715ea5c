"""The `mailflow` command: parse arguments, load configuration, wire, run, report errors.

Errors a user can fix print one line and a hint, not a traceback (``--debug`` shows it).
Exit codes: 0 ok, 1 failure, 2 bad configuration or usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from mailflow import __version__, config, logs
from mailflow.cli_admin import cmd_config, cmd_init, cmd_status
from mailflow.cli_campaign import add_campaign_commands
from mailflow.cli_delivery import add_delivery_commands
from mailflow.cli_intake import cmd_ingest, cmd_quarantine
from mailflow.cli_outreach import add_commands as outreach_commands
from mailflow.cli_understand import add_commands as understanding_commands
from mailflow.errors import ConfigError, MailflowError
from mailflow.processing import process_all
from mailflow.service import build, pollers, prepare_database, serve
from mailflow.settings import Settings
from mailflow.store import migrate
from mailflow.store.engine import describe_url

log = logging.getLogger("mailflow")
Command = Callable[[argparse.Namespace, Settings], int]


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(args.debug) or environ.get("MAILFLOW_DEBUG", "") in ("1", "true")
    try:
        return _run(args, environ)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`mailflow status | head`): not an error of ours. Point stdout
        # at /dev/null so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except MailflowError as exc:
        if debug:
            raise
        _print_error(str(exc), exc.hint)
        return 2 if isinstance(exc, ConfigError) else 1
    except Exception as exc:
        if debug:
            raise
        _print_error(
            f"internal error: {type(exc).__name__}: {exc}",
            "run again with --debug for the traceback, and please report it",
        )
        return 70


def _run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    path = config.config_path(args.config, environ)
    if args.command == "config":
        return cmd_config(args, path, environ)
    if args.command == "init":
        return cmd_init(args)
    settings = config.load(path, environ)
    logs.configure(args.log_level or settings.service.log_level, settings.service.log_format)
    handler: Command = args.handler
    return handler(args, settings)


def _print_error(message: str, hint: str | None) -> None:
    print(f"mailflow: error: {message}", file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    app = build(settings)
    try:
        prepare_database(app)
        asyncio.run(serve(app))
    finally:
        app.close()
    return 0


def cmd_poll(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.imap_accounts:
        raise ConfigError(
            "no IMAP account is configured",
            hint="add an [[imap_accounts]] table; see mailflow.example.toml",
        )
    if not args.once:
        # Continuous polling is the service without the SMTP listener.
        quiet = replace(settings, smtp_intake=replace(settings.smtp_intake, enabled=False))
        return cmd_serve(args, quiet)
    app = build(settings)
    try:
        prepare_database(app)
        failed = 0
        for poller in pollers(app, defer_processing=args.defer_processing):
            try:
                count = poller.poll_once()
                print(f"{poller.account.name}: {count} new message(s)")
            except MailflowError as exc:  # one failing account never stops the others
                failed += 1
                _print_error(str(exc), exc.hint)
        return 1 if failed else 0
    finally:
        app.close()


def cmd_process(args: argparse.Namespace, settings: Settings) -> int:
    app = build(settings)
    try:
        prepare_database(app)
    finally:
        app.close()
    count = process_all(settings, workers=args.workers)
    print(f"processed {count} message(s)")
    return 0


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    url = settings.database_url
    if args.db_command == "upgrade":
        migrate.upgrade(url, args.revision)
        print(f"{describe_url(url)}: at {migrate.current(url)}")
    elif args.db_command == "downgrade":
        migrate.downgrade(url, args.revision)
        print(f"{describe_url(url)}: at {migrate.current(url) or 'base (empty)'}")
    else:
        current = migrate.current(url)
        head = migrate.head()
        state = "up to date" if current == head else f"needs upgrade to {head}"
        print(f"{describe_url(url)}: at {current or 'base (empty)'}, {state}")
    return 0


def _global_options(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=default,
        help="configuration file (default: $MAILFLOW_CONFIG, else built-in defaults)",
    )
    parser.add_argument(
        "--debug", action="store_true", default=default, help="show tracebacks on errors"
    )
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=default,
        help="override service.log_level",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailflow",
        description="E-mail intake and outreach for the human rights of parliamentarians.",
    )
    parser.add_argument("--version", action="version", version=f"mailflow {__version__}")
    _global_options(parser, None)
    # The same options after the command name (`mailflow serve --config X`); SUPPRESS keeps
    # them from overwriting values given before it.
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "serve", parents=[common], help="run the service: SMTP intake, IMAP pollers, outbox"
    )
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser(
        "init", parents=[common], help="write a working configuration and database into DIR"
    )
    p.add_argument("dir", type=Path, metavar="DIR")

    p = sub.add_parser(
        "config", parents=[common], help="check, show or print an example configuration"
    )
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    c = csub.add_parser(
        "check", parents=[common], help="report unknown keys, wrong types and missing secrets"
    )
    c.add_argument(
        "--connect",
        action="store_true",
        help="also connect to the database and every configured server",
    )
    csub.add_parser(
        "show", parents=[common], help="print the effective configuration (secrets masked)"
    )
    csub.add_parser("example", parents=[common], help="print the documented example configuration")

    p = sub.add_parser(
        "db", parents=[common], help="upgrade, downgrade or show the database schema version"
    )
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    d = dsub.add_parser(
        "upgrade", parents=[common], help="apply migrations (default: to the latest)"
    )
    d.add_argument("revision", nargs="?", default="head")
    d = dsub.add_parser(
        "downgrade", parents=[common], help="revert migrations to REVISION ('base' empties it)"
    )
    d.add_argument("revision")
    dsub.add_parser("current", parents=[common], help="show the schema version")
    p.set_defaults(handler=cmd_db)

    p = sub.add_parser("poll", parents=[common], help="fetch new mail from the IMAP accounts")
    p.add_argument("--once", action="store_true", help="one pass over every account, then exit")
    p.add_argument(
        "--defer-processing",
        action="store_true",
        help="only store and commit (durable intake); process later with `mailflow process`",
    )
    p.set_defaults(handler=cmd_poll)

    p = sub.add_parser(
        "process", parents=[common], help="process stored messages that are not processed yet"
    )
    p.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes")
    p.set_defaults(handler=cmd_process)

    p = sub.add_parser(
        "status", parents=[common], help="show messages by state and each IMAP account's progress"
    )
    p.set_defaults(handler=cmd_status)
    _intake_commands(sub, common)
    add_delivery_commands(sub, common)
    add_campaign_commands(sub, common)
    understanding_commands(sub, common)
    outreach_commands(sub, common)
    return parser


def _intake_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "ingest", parents=[common], help="store .eml files, Maildirs and mbox files (backfill)"
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.set_defaults(handler=cmd_ingest)

    p = sub.add_parser(
        "quarantine", parents=[common], help="list, show or retry messages that failed processing"
    )
    qsub = p.add_subparsers(dest="quarantine_command", metavar="ACTION", required=True)
    qsub.add_parser("list", parents=[common], help="id, time, size, error and subject of each")
    q = qsub.add_parser("show", parents=[common], help="one message: error, arrivals, headers")
    q.add_argument("id", type=int, metavar="ID")
    q.add_argument("--raw", action="store_true", help="write the raw message bytes to stdout")
    q = qsub.add_parser("retry", parents=[common], help="run the processing stages again")
    which = q.add_mutually_exclusive_group(required=True)
    which.add_argument("ids", nargs="*", type=int, default=[], metavar="ID", help="message ids")
    which.add_argument("--all", action="store_true", help="every quarantined message")
    p.set_defaults(handler=cmd_quarantine)


if __name__ == "__main__":
    sys.exit(main())
