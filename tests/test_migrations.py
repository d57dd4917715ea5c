"""Alembic migrations: they build exactly the models' schema, on SQLite and PostgreSQL alike.

Tests taking `db_url` run on both backends (see conftest.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    CheckConstraint,
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    inspect,
    select,
    text,
)
from sqlalchemy.orm import Session

from mailflow import vocabulary
from mailflow.errors import MigrationError, StorageError
from mailflow.store import check_current, current, downgrade, head, make_engine, upgrade
from mailflow.store.models import VOCABULARY_TABLES, Base, Blob, Delivery, Message
from mailflow.vocabulary import codes

SCHEMA_MD = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "SCHEMA.md"
POSTGRES_MAX_NAME = 63


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def _differences(connection: Connection, metadata: MetaData) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


def test_upgrade_builds_exactly_the_models_schema(db_url: str, engine: Engine) -> None:
    upgrade(db_url)
    assert current(db_url) == head()
    with engine.connect() as connection:
        assert _differences(connection, Base.metadata) == []
        # The comparison can see a difference: a model with one more column is not the same.
        altered = MetaData(naming_convention=Base.metadata.naming_convention)
        for table in Base.metadata.tables.values():
            table.to_metadata(altered)
        altered.tables["blobs"].append_column(Column("extra", Integer))
        assert [diff[0] for diff in _differences(connection, altered)] == ["add_column"]


def test_reflected_tables_and_columns_are_the_models(db_url: str, engine: Engine) -> None:
    upgrade(db_url)
    with engine.connect() as connection:
        inspector = inspect(connection)
        reflected = {
            table: [column["name"] for column in inspector.get_columns(table)]
            for table in _tables(connection)
        }
    expected = {name: list(table.columns.keys()) for name, table in Base.metadata.tables.items()}
    assert reflected == expected  # same tables, same columns in the same order, either backend


def _constraint_names(connection: Connection, table: str) -> set[str]:
    inspector = inspect(connection)
    names = {inspector.get_pk_constraint(table)["name"]}
    names |= {fk["name"] for fk in inspector.get_foreign_keys(table)}
    names |= {uq["name"] for uq in inspector.get_unique_constraints(table)}
    names |= {ck["name"] for ck in inspector.get_check_constraints(table)}
    # PostgreSQL also lists the index behind each unique constraint; it has the same name.
    names |= {ix["name"] for ix in inspector.get_indexes(table)}
    return {name for name in names if name is not None}


def _model_constraint_names(table: str) -> set[str]:
    model = Base.metadata.tables[table]
    names = {str(constraint.name) for constraint in model.constraints}
    return names | {str(index.name) for index in model.indexes}


def test_every_constraint_is_named_as_in_the_models(db_url: str, engine: Engine) -> None:
    # Later migrations drop constraints by name: the names must be the same on both backends.
    upgrade(db_url)
    with engine.connect() as connection:
        for table in Base.metadata.tables:
            assert _constraint_names(connection, table) == _model_constraint_names(table), table


def test_check_constraints_say_what_the_models_say(tmp_path: Path) -> None:
    # compare_metadata ignores CHECK constraints. SQLite keeps their SQL text verbatim, so
    # compare it there; the migration is the same code on PostgreSQL.
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            inspector = inspect(connection)
            for table in Base.metadata.tables.values():
                reflected = {
                    ck["name"]: ck["sqltext"] for ck in inspector.get_check_constraints(table.name)
                }
                expected = {
                    str(ck.name): str(ck.sqltext)
                    for ck in table.constraints
                    if isinstance(ck, CheckConstraint)
                }
                assert reflected == expected, table.name
    finally:
        engine.dispose()


def test_names_fit_postgresql_identifier_limit() -> None:
    # PostgreSQL truncates longer names, which would make the backends' names differ.
    for table in Base.metadata.tables:
        for name in _model_constraint_names(table) | {table}:
            assert len(name) <= POSTGRES_MAX_NAME, name


def test_downgrade_to_base_drops_everything_and_upgrade_works_again(
    db_url: str, engine: Engine
) -> None:
    upgrade(db_url)
    with Session(engine) as session, session.begin():
        # Rows on both sides of the messages <-> deliveries foreign-key cycle.
        session.add(Blob(sha256="a" * 64, size=1, data=b"x"))
        message = Message(sha256="a" * 64)
        session.add(message)
        session.flush()
        delivery = Delivery(
            in_reply_to_message_pk=message.id,
            purpose="ack",
            to_address="r@example.org",
            language="fr",
            message_id="<ack@mailflow>",
            verp_token="t",
        )
        session.add(delivery)
        session.flush()
        message.delivery_id = delivery.id
    engine.dispose()  # let the downgrade have the database to itself

    downgrade(db_url, "base")
    assert current(db_url) is None
    with engine.connect() as connection:
        assert _tables(connection) == set()

    upgrade(db_url)
    assert current(db_url) == head()
    with engine.connect() as connection:
        assert _tables(connection) == set(Base.metadata.tables)
        assert connection.scalar(text("SELECT count(*) FROM violations")) == len(
            vocabulary.VIOLATIONS
        )


def test_failed_upgrade_changes_nothing(db_url: str, engine: Engine) -> None:
    # A table in the way makes the migration fail half-way through: the whole of it, tables
    # already created included, must roll back (SQLite too: make_engine makes DDL transactional).
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE audit_log (x INTEGER)"))
    with pytest.raises(StorageError):
        upgrade(db_url)
    assert current(db_url) is None
    with engine.connect() as connection:
        assert _tables(connection) == {"audit_log"}


def test_vocabulary_tables_hold_the_vocabulary_module(db_url: str, engine: Engine) -> None:
    upgrade(db_url)
    with engine.connect() as connection:
        for table, terms in VOCABULARY_TABLES.items():
            model = Base.metadata.tables[table]
            rows = connection.execute(select(model.c.code, model.c.label_en, model.c.label_fr))
            assert set(rows) == {(t.code, t.label_en, t.label_fr) for t in terms}, table


def test_check_current_refuses_an_empty_database(engine: Engine, db_url: str) -> None:
    with pytest.raises(MigrationError) as caught:
        check_current(engine)
    assert f"this mailflow needs {head()}" in str(caught.value)
    assert caught.value.hint == "run `mailflow db upgrade`"
    upgrade(db_url)
    check_current(engine)  # at head: no error


def test_check_current_refuses_a_newer_schema(engine: Engine, db_url: str) -> None:
    upgrade(db_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    with pytest.raises(MigrationError, match=r"f00d.*does not know"):
        check_current(engine)


def test_upgrade_to_an_unknown_revision_is_a_migration_error(db_url: str) -> None:
    with pytest.raises(MigrationError):
        upgrade(db_url, "nonexistent")


# -- the vocabulary against the corpus' SCHEMA.md -----------------------------------------------


def test_vocabulary_codes_are_unique_and_labelled() -> None:
    tuples = [*VOCABULARY_TABLES.values(), vocabulary.CASE_STATUSES, vocabulary.MP_STATUSES]
    for terms in tuples:
        assert len(codes(terms)) == len(terms)
        for term in terms:
            assert re.fullmatch(r"[a-z][a-z0-9_]*", term.code)
            assert term.label_en.strip() and term.label_fr.strip(), term.code


def _section(markdown: str, title: str) -> str:
    match = re.search(rf"^## {title}\b.*?$(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    assert match is not None, f"no section {title} in SCHEMA.md"
    return match.group(1)


def _listed_codes(section: str) -> set[str]:
    """`code` description · `code` description ..."""
    return set(re.findall(r"(?:^|· )`([a-z_0-9]+)`", section, re.M))


def _table_rows(section: str) -> dict[str, list[str]]:
    """| `code` | English | French | rows, as {code: [labels]}."""
    rows = {}
    for line in section.splitlines():
        match = re.match(r"^\| `([a-z_0-9]+)` \|(.*)\|\s*$", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


@pytest.fixture
def schema_md() -> str:
    if not SCHEMA_MD.is_file():
        pytest.skip(f"{SCHEMA_MD} is not here (the shared corpus sits beside the repository)")
    return SCHEMA_MD.read_text(encoding="utf-8")


def test_vocabulary_has_every_code_of_schema_md(schema_md: str) -> None:
    kinds = _listed_codes(_section(schema_md, "KIND"))
    reporter_types = _listed_codes(_section(schema_md, "REPORTER_TYPE"))
    violations = _table_rows(_section(schema_md, "VIOLATION"))
    action_types = _table_rows(_section(schema_md, "ACTION_TYPE"))
    assert len(kinds) == 7 and len(reporter_types) == 10  # the parsing found the lists
    assert kinds == codes(vocabulary.KINDS)
    assert reporter_types == codes(vocabulary.REPORTER_TYPES)
    assert set(violations) == codes(vocabulary.VIOLATIONS)
    assert set(action_types) == codes(vocabulary.ACTION_TYPES)
    # Where SCHEMA.md gives the labels, they are the Committee's wording: use them verbatim.
    for term in vocabulary.VIOLATIONS:
        assert violations[term.code] == [term.label_en, term.label_fr]
    for term in vocabulary.ACTION_TYPES:
        assert action_types[term.code] == [term.label_en]


def test_postgresql_stores_blobs_uncompressed(postgres_url: str) -> None:
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as conn:
            storage = conn.exec_driver_sql(
                "SELECT attstorage FROM pg_attribute "
                "WHERE attrelid = 'blobs'::regclass AND attname = 'data'"
            ).scalar()
    finally:
        engine.dispose()
    assert storage == "e"  # EXTERNAL: out of line, not compressed
