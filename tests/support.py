"""Helpers shared by tests: settings for a temporary service, and running it in a thread."""

from __future__ import annotations

import asyncio
import smtplib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from mailflow.service import App, build, serve
from mailflow.settings import DatabaseSettings, ServiceSettings, Settings, SmtpIntakeSettings
from mailflow.store import migrate
from mailflow.store.models import Message
from tests.servers.ports import free_port


def settings_for(tmp_path: Path, db_url: str, **intake: Any) -> Settings:
    return Settings(
        service=ServiceSettings(data_dir=tmp_path / "data"),
        database=DatabaseSettings(url=db_url, busy_timeout_ms=200),
        smtp_intake=SmtpIntakeSettings(port=free_port(), **intake),
    )


@contextmanager
def migrated_app(settings: Settings) -> Iterator[App]:
    migrate.upgrade(settings.database_url)
    app = build(settings)
    try:
        yield app
    finally:
        app.close()


@contextmanager
def running(app: App) -> Iterator[App]:
    """Serve in a background thread with its own event loop; stop and join on exit."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    started = threading.Event()
    failure: list[BaseException] = []

    def target() -> None:
        try:
            loop.run_until_complete(serve(app, stop=stop, started=started))
        except BaseException as exc:  # surfaced in the test thread below
            failure.append(exc)
            started.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert started.wait(10), "service did not start"
    if failure:
        raise failure[0]
    try:
        yield app
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(15)
        loop.close()
        assert not thread.is_alive(), "service did not stop"


def send(settings: Settings, raw: bytes, to: str = "report@localhost", lmtp: bool = False) -> Any:
    intake = settings.smtp_intake
    client = (
        smtplib.LMTP(intake.host, intake.port)
        if lmtp
        else smtplib.SMTP(intake.host, intake.port, timeout=10)
    )
    with client:
        return client.sendmail("sender@example.org", [to], raw)


def message_count(app: App) -> int:
    with app.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Message)) or 0)


def replace_intake(settings: Settings, **changes: Any) -> Settings:
    return replace(settings, smtp_intake=replace(settings.smtp_intake, **changes))
