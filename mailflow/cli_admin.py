"""Administrative commands: init, config check/show/example, status."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from mailflow import config, imap
from mailflow.config_doc import render_example
from mailflow.errors import ConfigError, MailflowError
from mailflow.service import build
from mailflow.settings import ImapAccountSettings, Settings
from mailflow.smtp_out import relay_session
from mailflow.store import migrate
from mailflow.store.engine import describe_url
from mailflow.store.status import FolderStatus, intake_status

INIT_CONFIG = """\
# Written by `mailflow init`. Every key, its meaning and default: `mailflow config example`.
[service]
data_dir = "data"

[smtp_intake]
host = "127.0.0.1"
port = 2525
# The report addresses this service accepts mail for; empty accepts any (loopback only!).
recipients = []
"""


def cmd_init(args: argparse.Namespace) -> int:
    target: Path = args.dir
    path = target / "mailflow.toml"
    if path.exists():
        raise ConfigError(f"{path} already exists", hint="choose an empty directory")
    try:
        target.mkdir(parents=True, exist_ok=True)
        path.write_text(INIT_CONFIG, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    settings = config.load(path, {})
    migrate.upgrade(settings.database_url)
    print(f"wrote {path}")
    print(f"created {describe_url(settings.database_url)}")
    print(f"next: mailflow --config {path} serve")
    return 0


def cmd_config(args: argparse.Namespace, path: Path | None, environ: Mapping[str, str]) -> int:
    if args.config_command == "example":
        sys.stdout.write(render_example())
        return 0
    if args.config_command == "show":
        _show(config.load(path, environ))
        return 0
    settings, issues = config.check(path, environ)
    for issue in issues:
        print(f"{issue.severity}: {issue}", file=sys.stderr)
    errors = [issue for issue in issues if issue.severity == "error"]
    if errors or settings is None:
        print(f"{len(errors)} error(s) in {path or 'the defaults'}", file=sys.stderr)
        return 2
    if args.connect:
        failed = _connect_all(settings)
        if failed:
            return 1
    print(f"{path or 'built-in defaults'}: configuration is valid")
    return 0


def _connect_all(settings: Settings) -> int:
    """Try the database and every server; report each, one line, and count failures."""
    failed = 0
    checks: list[tuple[str, Callable[[], str]]] = [
        (f"database {describe_url(settings.database_url)}", partial(_check_db, settings)),
    ]
    for account in settings.imap_accounts:
        name = f"imap {account.name} ({account.host}:{account.port})"
        checks.append((name, partial(_check_imap, account)))
    relay = settings.outbound
    if relay.relay_host:
        name = f"relay {relay.relay_host}:{relay.relay_port}"
        checks.append((name, partial(_check_relay, settings)))
    for name, check in checks:
        try:
            print(f"ok: {name}: {check()}")
        except MailflowError as exc:
            failed += 1
            hint = f" (hint: {exc.hint})" if exc.hint else ""
            print(f"failed: {name}: {exc}{hint}", file=sys.stderr)
    return failed


def _check_db(settings: Settings) -> str:
    app = build(settings)
    try:
        migrate.check_current(app.engine)
        return f"schema at {migrate.head()}"
    finally:
        app.close()


def _check_imap(account: ImapAccountSettings) -> str:
    with imap.session(account) as client:
        missing = imap.check_folders(client, account)
    if missing:
        raise MailflowError(
            f"folders not found: {', '.join(missing)}",
            hint="check the folder names with your mail client",
        )
    return f"logged in, folders {', '.join(account.folders)} found"


def _check_relay(settings: Settings) -> str:
    with relay_session(settings.outbound) as client:
        code, _ = client.noop()
    return f"connected, NOOP answered {code}"


def _show(settings: Settings) -> None:
    for spec in fields(settings):
        value = getattr(settings, spec.name)
        if spec.name == "source":
            print(f"# source: {value or 'built-in defaults'}")
        elif isinstance(value, tuple):
            for item in value:
                print(f"\n[[{spec.name}]]")
                _show_fields(item)
        else:
            print(f"\n[{spec.name}]")
            _show_fields(value)


def _show_fields(section: Any) -> None:
    assert is_dataclass(section)
    for spec in fields(section):
        value = getattr(section, spec.name)
        if spec.name == "url" and value:
            value = describe_url(value)
        print(
            f"{spec.name} = {value!r}"
            if not isinstance(value, Path)
            else f'{spec.name} = "{value}"'
        )


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    app = build(settings)
    try:
        migrate.check_current(app.engine)
        with app.sessions() as session:
            status = intake_status(session)
        print(f"database: {describe_url(settings.database_url)}")
        states = ("received", "processed", "quarantined")
        print("messages: " + ", ".join(f"{s} {status.by_status.get(s, 0)}" for s in states))
        if status.by_kind:
            print("kinds: " + ", ".join(f"{k} {n}" for k, n in sorted(status.by_kind.items())))
        if status.urgent_untriaged:
            print(f"URGENT: {status.urgent_untriaged} urgent report(s) not triaged yet")
        print(f"outbox: {app.outbox.count()} message(s) in {app.outbox.path}")
        for folder in status.folders:
            print(_folder_line(folder, status.quarantined_by_account.get(folder.account, 0)))
    finally:
        app.close()
    return 0


def _folder_line(folder: FolderStatus, quarantined: int) -> str:
    backlog = "unknown" if folder.backlog is None else str(folder.backlog)
    line = (
        f"imap {folder.account}/{folder.folder}: {'FAILING' if folder.failing else 'ok'}, "
        f"last success {_when(folder.last_success_at)}, backlog {backlog}, "
        f"quarantined {quarantined}, uidvalidity {folder.uidvalidity}, last uid {folder.last_uid}"
    )
    if folder.last_error:
        line += f", last error {_when(folder.last_error_at)}: {folder.last_error}"
    return line


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ") if moment else "never"
