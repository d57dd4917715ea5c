"""Wiring: build the long-lived parts from a Settings value, and run the service.

This is the one place that knows every adapter; library modules never read the environment
or exit the process.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mailflow.classify.rules import RuleSet
from mailflow.delivery import run_delivery
from mailflow.errors import MailflowError
from mailflow.intake import Intake, utcnow
from mailflow.logs import fields
from mailflow.outbox import MaildirOutbox
from mailflow.poller import ImapPoller
from mailflow.settings import Settings
from mailflow.smtp_in import IntakeHandler, start_server
from mailflow.stages import default_stages
from mailflow.store import migrate
from mailflow.store.engine import describe_url, make_engine, session_factory

log = logging.getLogger(__name__)
THREAD_JOIN_SECONDS = 35.0
SWEEP_INTERVAL = timedelta(seconds=60)
SWEEP_GRACE = timedelta(seconds=60)


@dataclass
class App:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    intake: Intake
    outbox: MaildirOutbox

    def close(self) -> None:
        self.engine.dispose()


def build(settings: Settings) -> App:
    engine, sessions = open_store(settings)
    # Rules are loaded once here: a bad rule file stops the start, naming the file and rule.
    stages = default_stages(RuleSet.load(settings.rules_dir), settings)
    intake = Intake(sessions, stages)
    return App(settings, engine, sessions, intake, MaildirOutbox(settings.outbox_dir))


def open_store(settings: Settings) -> tuple[Engine, sessionmaker[Session]]:
    """The database alone, for commands that neither parse nor classify (`mailflow send`):
    loading and compiling the rules would be most of their start-up time."""
    engine = make_engine(settings.database_url, busy_timeout_ms=settings.database.busy_timeout_ms)
    return engine, session_factory(engine)


def prepare_database(app: App) -> None:
    """Bring the schema to this version's head, or refuse to run on a stale one."""
    prepare_schema(app.settings, app.engine)


def prepare_schema(settings: Settings, engine: Engine) -> None:
    if settings.database.auto_upgrade:
        migrate.upgrade(settings.database_url)
    else:
        migrate.check_current(engine)


def pollers(app: App, *, defer_processing: bool = False) -> list[ImapPoller]:
    return [
        ImapPoller(account, app.intake, utcnow, defer_processing=defer_processing)
        for account in app.settings.imap_accounts
    ]


def sweep_pending(app: App, stop: threading.Event, started_at: datetime) -> None:
    """Process what a crash or an outage left in 'received'; then keep an eye out for more.

    Messages newer than SWEEP_GRACE are left to the channel that received them, which is
    processing them right now.
    """
    older_than = started_at
    while True:
        try:
            count = app.intake.process_pending(older_than=older_than)
            if count:
                log.info("processed pending messages", extra=fields(count=count))
        except MailflowError as exc:
            log.error("processing pending messages failed", extra=fields(error=str(exc)))
        if stop.wait(SWEEP_INTERVAL.total_seconds()):
            return
        older_than = utcnow() - SWEEP_GRACE


async def serve(
    app: App, stop: asyncio.Event | None = None, started: threading.Event | None = None
) -> None:
    """Run SMTP intake and the IMAP pollers until SIGINT/SIGTERM (or ``stop`` is set).

    Signal handlers are only installed when no ``stop`` event is given: embedding callers
    (tests, a supervisor thread) own their own shutdown.
    """
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM) if stop is None else ()
    stop = stop or asyncio.Event()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    settings = app.settings
    app.outbox.ensure()
    handler = IntakeHandler(app.intake, settings.smtp_intake, settings.bounce_domain)
    server = (
        await start_server(handler, settings.smtp_intake) if settings.smtp_intake.enabled else None
    )
    poll_stop = threading.Event()
    threads = [
        threading.Thread(
            target=poller.run, args=(poll_stop,), name=f"imap-{poller.account.name}", daemon=True
        )
        for poller in pollers(app)
    ]
    threads.append(
        threading.Thread(
            target=sweep_pending, args=(app, poll_stop, utcnow()), name="sweeper", daemon=True
        )
    )
    # Outbound mail (acknowledgements, campaigns) queued in the ledger: relay or Maildir.
    threads.append(
        threading.Thread(
            target=run_delivery,
            args=(app.sessions, settings, poll_stop),
            name="delivery",
            daemon=True,
        )
    )
    for thread in threads:
        thread.start()
    _log_started(settings, enabled=server is not None, accounts=len(app.settings.imap_accounts))
    if started is not None:
        started.set()
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        if server is not None:
            server.close()
            await server.wait_closed()
        await handler.drain()
        poll_stop.set()
        for thread in threads:
            await asyncio.to_thread(thread.join, THREAD_JOIN_SECONDS)
        for sig in signals:
            loop.remove_signal_handler(sig)
        log.info("stopped")


def _log_started(settings: Settings, *, enabled: bool, accounts: int) -> None:
    intake = settings.smtp_intake
    relay = settings.outbound.relay_host
    log.info(
        "mailflow serving",
        extra=fields(
            smtp=f"{intake.protocol}://{intake.host}:{intake.port}" if enabled else "off",
            recipients=",".join(intake.recipients) or "any",
            imap_accounts=accounts,
            outbound=f"relay {relay}" if relay else f"maildir {settings.outbox_dir}",
            database=describe_url(settings.database_url),
        ),
    )
    if enabled and not intake.recipients:
        log.warning("smtp_intake.recipients is empty: accepting mail for any recipient")
