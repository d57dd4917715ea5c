"""The claim query reads only rows still to send, in id order, and stops at its LIMIT.

A campaign's ledger keeps every sent row; if each claim sorted all waiting rows (as it did
with the index on (state, next_attempt_at)), sending a campaign would be quadratic in its
size. These tests read the plan the database chose for the real claim statement.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from mailflow.delivery import ledger
from mailflow.store import make_engine, session_factory, upgrade
from tests.delivery_support import T0, address, make_campaign


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    upgrade(db_url)
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def claim_statement(engine: Engine, sessions: sessionmaker[Session]) -> tuple[str, Any]:
    """The SELECT that claim_due runs, with its parameters, as sent to the driver."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "LIMIT" in statement.upper():
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        with sessions.begin() as session:
            claims = ledger.claim_due(session, T0 + timedelta(minutes=1), 5)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(claims) == 5
    assert seen, "claim_due ran no SELECT ... LIMIT"
    return seen[0]


def test_the_claim_walks_the_partial_index_without_sorting(engine: Engine) -> None:
    sessions = session_factory(engine)
    make_campaign(sessions, [address(n) for n in range(60)])
    statement, parameters = claim_statement(engine, sessions)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            plan = " | ".join(
                row[3]
                for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            )
            assert "USING INDEX ix_deliveries_claimable" in plan, plan
        else:
            # PostgreSQL chooses by its statistics: on a 60-row table, anything goes. With
            # the other plans priced out, the plan shows that the partial index's predicate
            # matches the query and that its order serves the ORDER BY ... LIMIT.
            for plan_kind in ("seqscan", "bitmapscan", "sort"):
                conn.execute(text(f"SET enable_{plan_kind} = off"))
            rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters)
            plan = " | ".join(str(row[0]) for row in rows)
            assert "Index Scan using ix_deliveries_claimable" in plan, plan
        assert "TEMP B-TREE FOR ORDER BY" not in plan and " Sort " not in f" {plan} ", plan


def test_rows_already_sent_are_outside_the_claim_index(engine: Engine) -> None:
    sessions = session_factory(engine)
    make_campaign(sessions, [address(n) for n in range(30)])
    with sessions.begin() as session:
        claimed = ledger.claim_due(session, T0 + timedelta(minutes=1), 10)
        ledger.record_outcomes(
            session,
            [ledger.Sent(c.id, "250 ok", T0) for c in claimed if isinstance(c, ledger.Claimed)],
        )
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            count = "SELECT count(*) FROM deliveries INDEXED BY ix_deliveries_claimable"
            where = " WHERE state IN ('pending', 'sending')"
            assert conn.exec_driver_sql(count + where).scalar_one() == 20
        else:
            predicate = conn.execute(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_deliveries_claimable'")
            ).scalar_one()
            assert "pending" in predicate and "sending" in predicate and "WHERE" in predicate
