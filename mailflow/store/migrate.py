"""Schema migrations, driven from Python: no alembic.ini needed, nothing to find on disk.

The Alembic scripts live in the `mailflow.migrations` package, so they ship with mailflow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from mailflow.errors import MigrationError
from mailflow.store.engine import describe_url, make_engine, translate_db_errors

log = logging.getLogger(__name__)

SCRIPT_LOCATION = Path(__file__).resolve().parent.parent / "migrations"
UPGRADE_HINT = "run `mailflow db upgrade`"


def alembic_config() -> Config:
    """An Alembic Config pointing at mailflow's migrations, with no URL in it.

    Callers pass a Connection in `config.attributes["connection"]` (see env.py), so the URL,
    and its password, never go through Alembic's configuration or its logging.
    """
    config = Config()
    # Config values are ConfigParser-interpolated: a literal % must be doubled.
    config.set_main_option("script_location", str(SCRIPT_LOCATION).replace("%", "%%"))
    return config


def head() -> str:
    """The revision the code of this mailflow needs."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if revision is None:
        raise MigrationError(f"no migrations found in {SCRIPT_LOCATION}")
    return revision


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Migrate the database at `url` up to `revision` (all of it, or none of it)."""
    log.info("upgrading database %s to %s", describe_url(url), revision)
    _run(url, lambda config: command.upgrade(config, revision))


def downgrade(url: str | URL, revision: str) -> None:
    """Migrate the database at `url` down to `revision` ("base" drops every table)."""
    log.info("downgrading database %s to %s", describe_url(url), revision)
    _run(url, lambda config: command.downgrade(config, revision))


def current(url: str | URL) -> str | None:
    """The revision the database at `url` is at; None for a database never migrated."""
    engine = make_engine(url)
    try:
        return _current_revision(engine)
    finally:
        engine.dispose()


def check_current(engine: Engine) -> None:
    """Raise MigrationError unless the database's schema is the one this code needs."""
    found = _current_revision(engine)
    needed = head()
    if found == needed:
        return
    if found is not None and not _is_known(found):
        raise MigrationError(
            f"database schema is at {found}, which this mailflow does not know (a newer "
            f"mailflow migrated it?); this mailflow needs {needed}",
            hint="run the newer mailflow, or downgrade the database with it",
        )
    shown = found if found is not None else "base (no mailflow tables)"
    raise MigrationError(
        f"database schema is at {shown}, this mailflow needs {needed}", hint=UPGRADE_HINT
    )


def _run(url: str | URL, action: Callable[[Config], None]) -> None:
    engine = make_engine(url)
    try:
        with translate_db_errors(engine), engine.connect() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            try:
                action(config)
            except CommandError as error:  # e.g. an unknown revision: no secret in the text
                raise MigrationError(str(error)) from error
    finally:
        engine.dispose()


def _current_revision(engine: Engine) -> str | None:
    with translate_db_errors(engine), engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _is_known(revision: str) -> bool:
    script = ScriptDirectory.from_config(alembic_config())
    try:
        return script.get_revision(revision) is not None
    except (CommandError, RevisionError):
        return False
