"""The outbound delivery path: ledger, worker, relay and Maildir transports, composition.

Real SMTP throughout (the aiosmtpd sink); every database test runs on SQLite and PostgreSQL.
Time is passed in (`now`), so backoff is checked by value, never by waiting.
"""

from __future__ import annotations

import mailbox
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from mailflow import cli
from mailflow.delivery import (
    InvalidOutbound,
    MaildirTransport,
    OutboundMessage,
    SmtpTransport,
    deliver_due,
    enqueue,
    make_transport,
)
from mailflow.delivery.ledger import SENDING_LEASE, Queued, claim_next, enqueue_many, suppress
from mailflow.settings import DatabaseSettings, OutboundSettings, ServiceSettings, Settings
from mailflow.store import make_engine, session_factory, upgrade
from mailflow.store.models import Blob, Delivery, Suppression
from tests.servers.smtp_sink import ReceivedMessage, SMTPSink
from tests.support import migrated_app, running

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
BOUNCES = "bounces.example.org"


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    upgrade(db_url)
    engine = make_engine(db_url)
    yield session_factory(engine)
    engine.dispose()


def settings_for(
    tmp_path: Path, db_url: str, sink: SMTPSink | None, **outbound: object
) -> Settings:
    relay = (
        {"relay_host": sink.host, "relay_port": sink.port, "relay_security": "none"}
        if sink is not None
        else {}
    )
    values = {"from_address": "committee@example.org", "bounce_domain": BOUNCES, **relay}
    return Settings(
        service=ServiceSettings(data_dir=tmp_path / "data"),
        database=DatabaseSettings(url=db_url),
        outbound=OutboundSettings(**{**values, **outbound}),  # type: ignore[arg-type]
    )


def outbound(to: str = "speaker@parliament.example", **changes: object) -> OutboundMessage:
    message = OutboundMessage(
        purpose="decision",
        to_address=to,
        from_address="committee@example.org",
        from_name="The Committee",
        subject="A decision",
        text="Please find the decision attached.\n",
        language="en",
    )
    return replace(message, **changes)  # type: ignore[arg-type]


def queue(
    sessions: sessionmaker[Session], *messages: OutboundMessage, now: datetime = T0
) -> list[int]:
    with sessions.begin() as session:
        return [enqueue(session, message, now=now).id for message in messages]


def row(sessions: sessionmaker[Session], delivery_id: int) -> Delivery:
    with sessions() as session:
        return session.get_one(Delivery, delivery_id)


def parsed(received: ReceivedMessage) -> EmailMessage:
    message = message_from_bytes(received.data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def always(_address: str) -> bool:
    return True


# -- the ledger and the worker ----------------------------------------------------------------


class Observing:
    """A transport that looks at the ledger, from another session, while the send happens."""

    def __init__(self, inner: SmtpTransport, sessions: sessionmaker[Session]) -> None:
        self.inner = inner
        self.sessions = sessions
        self.seen: list[tuple[str, int]] = []

    def send(self, envelope_from: str, recipient: str, raw: bytes) -> str:
        with self.sessions() as session:
            [(state, attempts)] = session.execute(
                select(Delivery.state, Delivery.attempts).where(Delivery.to_address == recipient)
            ).all()
        self.seen.append((state, attempts))
        return self.inner.send(envelope_from, recipient, raw)

    def close(self) -> None:
        self.inner.close()


def test_ledger_row_is_committed_before_the_send_and_updated_after(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], smtp_sink: SMTPSink
) -> None:
    settings = settings_for(tmp_path, db_url, smtp_sink)
    [delivery_id] = queue(sessions, outbound())
    queued = row(sessions, delivery_id)
    assert (queued.state, queued.attempts, queued.sent_at) == ("pending", 0, None)
    with sessions() as session:
        blob = session.get_one(Blob, queued.body_sha256)
        assert queued.message_id.encode() in blob.data  # the bytes to send, stored with the row
    assert smtp_sink.messages == []

    transport = Observing(SmtpTransport(settings.outbound), sessions)
    result = deliver_due(sessions, settings, transport, T0, 10)
    transport.close()

    assert transport.seen == [("sending", 1)]  # committed before the SMTP transaction began
    sent = row(sessions, delivery_id)
    assert (sent.state, sent.sent_at, sent.next_attempt_at) == ("sent", T0, None)
    assert sent.smtp_response is not None and sent.smtp_response.startswith("250")
    assert result.sent == 1 and result.claimed == 1
    [received] = smtp_sink.messages
    assert received.data.replace(b"\r\n", b"\n") == blob.data.replace(b"\r\n", b"\n")
    assert deliver_due(sessions, settings, make_transport(settings), T0, 10).claimed == 0


def test_temporary_refusal_is_retried_with_growing_backoff_then_delivered(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], smtp_sink: SMTPSink
) -> None:
    settings = settings_for(tmp_path, db_url, smtp_sink, retry_initial_seconds=300)
    [delivery_id] = queue(sessions, outbound())
    smtp_sink.reply_for(always, "451 4.7.1 Greylisted, try later")
    transport = SmtpTransport(settings.outbound)

    assert deliver_due(sessions, settings, transport, T0, 10).retrying == 1
    first = row(sessions, delivery_id)
    assert (first.state, first.attempts) == ("pending", 1)
    assert first.next_attempt_at == T0 + timedelta(seconds=300)
    assert first.last_error is not None and "451" in first.last_error

    # Not due yet: nothing is attempted.
    assert deliver_due(sessions, settings, transport, T0 + timedelta(seconds=299), 10).claimed == 0
    second_try = T0 + timedelta(seconds=300)
    assert deliver_due(sessions, settings, transport, second_try, 10).retrying == 1
    second = row(sessions, delivery_id)
    assert second.attempts == 2
    assert second.next_attempt_at == second_try + timedelta(seconds=600)  # doubled

    smtp_sink.reset()
    third_try = second_try + timedelta(seconds=600)
    assert deliver_due(sessions, settings, transport, third_try, 10).sent == 1
    transport.close()
    done = row(sessions, delivery_id)
    assert (done.state, done.attempts, done.sent_at) == ("sent", 3, third_try)
    assert len(smtp_sink.messages) == 1


def test_temporary_failures_give_up_after_the_retry_period(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], smtp_sink: SMTPSink
) -> None:
    settings = settings_for(tmp_path, db_url, smtp_sink, retry_for_hours=2)
    [delivery_id] = queue(sessions, outbound())
    smtp_sink.reply_for(always, "452 4.2.2 Mailbox full")
    transport = SmtpTransport(settings.outbound)
    deliver_due(sessions, settings, transport, T0, 10)
    assert row(sessions, delivery_id).state == "pending"
    result = deliver_due(sessions, settings, transport, T0 + timedelta(hours=2), 10)
    transport.close()
    assert result.failed == 1
    failed = row(sessions, delivery_id)
    assert (failed.state, failed.next_attempt_at) == ("failed", None)
    with sessions() as session:  # a temporary failure never suppresses the address
        assert session.get(Suppression, failed.to_address) is None


def test_permanent_refusal_of_the_recipient_fails_and_suppresses_it(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], smtp_sink: SMTPSink
) -> None:
    settings = settings_for(tmp_path, db_url, smtp_sink)
    gone, fine = "gone@parliament.example", "fine@parliament.example"
    ids = queue(sessions, outbound(gone), outbound(fine))
    smtp_sink.reply_for(lambda address: address == gone, "550 5.1.1 No such user")
    transport = SmtpTransport(settings.outbound)
    result = deliver_due(sessions, settings, transport, T0, 10)
    assert (result.failed, result.sent) == (1, 1)  # the connection survived the refusal
    refused = row(sessions, ids[0])
    assert refused.state == "failed"
    assert refused.smtp_response == "550 at RCPT"
    with sessions() as session:
        suppression = session.get_one(Suppression, gone)
        assert suppression.reason == "hard_bounce"
        assert suppression.detail is not None and "550" in suppression.detail

    # Never mailed again: queued as suppressed, and the worker skips it.
    [again] = queue(sessions, outbound(gone))
    assert row(sessions, again).state == "suppressed"
    assert deliver_due(sessions, settings, transport, T0, 10).claimed == 0
    transport.close()
    assert [m.rcpt_tos for m in smtp_sink.messages] == [[fine]]


def test_permanent_refusal_of_the_message_fails_without_suppressing(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], smtp_sink: SMTPSink
) -> None:
    settings = settings_for(tmp_path, db_url, smtp_sink)
    [delivery_id] = queue(sessions, outbound())
    smtp_sink.reply_on_data("554 5.6.0 Message refused")
    transport = SmtpTransport(settings.outbound)
    assert deliver_due(sessions, settings, transport, T0, 10).failed == 1
    transport.close()
    failed = row(sessions, delivery_id)
    assert (failed.state, failed.smtp_response) == ("failed", "554 at DATA")
    with sessions() as session:
        assert session.scalars(select(Suppression)).all() == []


def test_dropped_connection_is_retried_and_the_next_message_reconnects(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], smtp_sink: SMTPSink
) -> None:
    settings = settings_for(tmp_path, db_url, smtp_sink)
    addresses = [f"member{n}@parliament.example" for n in range(3)]
    ids = queue(sessions, *(outbound(a) for a in addresses))
    smtp_sink.drop_every(2)  # the second DATA: the relay hangs up without a reply
    transport = SmtpTransport(settings.outbound)
    result = deliver_due(sessions, settings, transport, T0, 10)
    assert (result.sent, result.retrying) == (2, 1)
    assert smtp_sink.dropped == 1
    dropped = row(sessions, ids[1])
    assert (dropped.state, dropped.attempts) == ("pending", 1)
    assert dropped.last_error is not None and "connection lost" in dropped.last_error

    smtp_sink.drop_every(0)
    assert deliver_due(sessions, settings, transport, dropped.next_attempt_at or T0, 10).sent == 1
    transport.close()
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.messages) == addresses


def test_unreachable_relay_defers_one_row_and_ends_the_pass(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], smtp_sink: SMTPSink
) -> None:
    settings = settings_for(tmp_path, db_url, smtp_sink)
    ids = queue(sessions, outbound("a@parliament.example"), outbound("b@parliament.example"))
    smtp_sink.stop()  # nothing listens on the port any more
    result = deliver_due(sessions, settings, SmtpTransport(settings.outbound), T0, 10)
    assert (result.retrying, result.stopped_early) == (1, True)
    assert row(sessions, ids[0]).state == "pending" and row(sessions, ids[0]).attempts == 1
    assert row(sessions, ids[1]).attempts == 0  # not tried: the relay is down for all


def test_row_left_sending_by_a_crash_is_sent_once_its_lease_ran_out(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], smtp_sink: SMTPSink
) -> None:
    settings = settings_for(tmp_path, db_url, smtp_sink)
    [delivery_id] = queue(sessions, outbound())
    with sessions.begin() as session:  # a worker claimed it, then died before recording
        assert claim_next(session, T0) is not None
    transport = SmtpTransport(settings.outbound)
    # Still within the lease: it may be another worker's transaction in flight.
    assert deliver_due(sessions, settings, transport, T0 + timedelta(minutes=1), 10).claimed == 0
    assert deliver_due(sessions, settings, transport, T0 + SENDING_LEASE, 10).sent == 1
    transport.close()
    assert row(sessions, delivery_id).attempts == 2
    assert len(smtp_sink.messages) == 1


def test_two_workers_never_send_a_row_twice(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], smtp_sink: SMTPSink
) -> None:
    settings = settings_for(tmp_path, db_url, smtp_sink)
    count = 24
    queue(sessions, *(outbound(f"mp{n}@parliament.example") for n in range(count)))
    results = []
    errors: list[BaseException] = []

    def work() -> None:
        transport = SmtpTransport(settings.outbound)
        try:
            results.append(deliver_due(sessions, settings, transport, T0, count))
        except BaseException as exc:
            errors.append(exc)
        finally:
            transport.close()

    workers = [threading.Thread(target=work) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert errors == [] and len(results) == 2
    assert sum(result.sent for result in results) == count
    ids = [parsed(m)["Message-ID"] for m in smtp_sink.messages]
    assert len(ids) == count and len(set(ids)) == count
    with sessions() as session:
        assert set(session.scalars(select(Delivery.state))) == {"sent"}


def test_skip_locked_lets_a_worker_pass_a_row_another_holds(
    tmp_path: Path, postgres_url: str, smtp_sink: SMTPSink
) -> None:
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    sessions = session_factory(engine)
    settings = settings_for(tmp_path, postgres_url, smtp_sink)
    ids = queue(sessions, *(outbound(f"mp{n}@parliament.example") for n in range(3)))
    holder = engine.connect()
    transaction = holder.begin()
    holder.execute(text("SELECT id FROM deliveries WHERE id = :id FOR UPDATE"), {"id": ids[0]})
    results = []
    worker = threading.Thread(
        target=lambda: results.append(
            deliver_due(sessions, settings, SmtpTransport(settings.outbound), T0, 10)
        )
    )
    worker.start()
    worker.join(60)  # a guard against a hang (FOR UPDATE without SKIP LOCKED would wait)
    stuck = worker.is_alive()
    transaction.rollback()
    holder.close()
    worker.join(60)
    try:
        assert not stuck, "the worker waited for the locked row instead of skipping it"
        assert results[0].sent == 2
        assert row(sessions, ids[0]).state == "pending"
        assert deliver_due(sessions, settings, make_transport(settings), T0, 10).sent == 1
    finally:
        engine.dispose()


# -- transports -------------------------------------------------------------------------------


def test_maildir_outbox_is_used_when_no_relay_is_configured(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session]
) -> None:
    settings = settings_for(tmp_path, db_url, None)
    transport = make_transport(settings)
    assert isinstance(transport, MaildirTransport)
    [delivery_id] = queue(sessions, outbound())
    assert deliver_due(sessions, settings, transport, T0, 10).sent == 1
    sent = row(sessions, delivery_id)
    assert sent.state == "sent"
    assert sent.smtp_response is not None and sent.smtp_response.startswith("maildir ")
    [stored] = list(mailbox.Maildir(settings.outbox_dir, create=False))
    assert stored["Return-Path"] == f"<bounces+{sent.verp_token}@{BOUNCES}>"
    assert stored["Envelope-To"] == "speaker@parliament.example"
    assert stored["Message-ID"] == sent.message_id


# -- composition and headers ------------------------------------------------------------------


def test_envelope_and_headers_are_per_recipient(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], smtp_sink: SMTPSink
) -> None:
    settings = settings_for(tmp_path, db_url, smtp_sink)
    reply = outbound(
        "a@parliament.example",
        in_reply_to="report-1@sender.example",
        references=("<root@sender.example>", "not a message id at all"),
        auto_submitted="auto-replied",
    )
    ids = queue(sessions, reply, replace(reply, to_address="b@parliament.example"))
    transport = SmtpTransport(settings.outbound)
    assert deliver_due(sessions, settings, transport, T0, 10).sent == 2
    transport.close()
    rows = [row(sessions, i) for i in ids]
    received = {m.rcpt_tos[0]: m for m in smtp_sink.messages}
    for delivery in rows:
        message = received[delivery.to_address]
        assert message.envelope_from == f"bounces+{delivery.verp_token}@{BOUNCES}"
        headers = parsed(message)
        assert headers["Message-ID"] == delivery.message_id
        assert delivery.reply_token is not None and delivery.reply_token in delivery.message_id
        assert headers["Auto-Submitted"] == "auto-replied"
        assert headers["In-Reply-To"] == "<report-1@sender.example>"
        assert headers["References"] == "<root@sender.example> <report-1@sender.example>"
        assert headers["From"] == "The Committee <committee@example.org>"
    assert rows[0].message_id != rows[1].message_id
    assert rows[0].verp_token != rows[1].verp_token


def test_header_injection_in_subject_and_names_is_stripped(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], smtp_sink: SMTPSink
) -> None:
    settings = settings_for(tmp_path, db_url, smtp_sink)
    sneaky = outbound(
        subject="Hello\r\nBcc: victim@elsewhere.example\r\n\r\nforged body",
        to_name="Eve\nX-Injected: yes",
        from_name="Committee\x00\rReply-To: attacker@evil.example",
        extra_headers=(("X-Campaign", "7\r\nX-Also-Injected: 1"),),
    )
    queue(sessions, sneaky)
    transport = SmtpTransport(settings.outbound)
    deliver_due(sessions, settings, transport, T0, 10)
    transport.close()
    [received] = smtp_sink.messages
    message = parsed(received)
    names = {name.lower() for name in message}
    assert not {"bcc", "x-injected", "reply-to", "x-also-injected"} & names
    assert message["Subject"] == "Hello Bcc: victim@elsewhere.example forged body"
    assert "\x00" not in received.data.decode("ascii")
    assert received.rcpt_tos == ["speaker@parliament.example"]
    body = message.get_content()
    assert "forged body" not in body


@pytest.mark.parametrize(
    "address",
    [
        "speaker@parliament.example\r\nRCPT TO:<extra@evil.example>",
        "speaker@parliament.example>\nBcc: x@evil.example",
        "not an address",
        "",
    ],
)
def test_unusable_addresses_are_refused_before_anything_is_queued(
    address: str, db_url: str, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        with pytest.raises(InvalidOutbound):
            enqueue(session, outbound(address), now=T0)
        assert session.scalars(select(Delivery)).all() == []


def test_non_ascii_text_is_sent_7bit_and_reads_back_exactly(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], smtp_sink: SMTPSink
) -> None:
    settings = settings_for(tmp_path, db_url, smtp_sink)
    words = "Décision du Comité — قرار اللجنة\n"
    queue(sessions, outbound(subject="Décision — قرار", text=words, language="ar"))
    deliver_due(sessions, settings, make_transport(settings), T0, 10)
    [received] = smtp_sink.messages
    assert all(byte < 0x80 for byte in received.data)  # no 8BITMIME needed
    message = parsed(received)
    assert message["Subject"] == "Décision — قرار"
    assert message["Content-Language"] == "ar"
    assert message.get_content().replace("\r\n", "\n") == words  # canonical CRLF inside


def test_a_batch_is_queued_as_one_message_at_a_time_is(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], smtp_sink: SMTPSink
) -> None:
    """enqueue_many (campaigns): the same rows and bytes as enqueue, suppression included."""
    with sessions.begin() as session:
        suppress(session, "gone@parliament.example", "hard_bounce", "550", T0)
    messages = [
        outbound(f"speaker{n}@parliament.example", to_name=f"Speaker {n}") for n in range(3)
    ]
    items = [Queued(m, unsubscribe_token=f"tok{n}") for n, m in enumerate(messages)]
    with sessions.begin() as session:
        enqueue_many(session, [*items, Queued(outbound("Gone@Parliament.example"))], now=T0)
        with pytest.raises(InvalidOutbound):  # refused before anything of the batch is written
            enqueue_many(session, [Queued(outbound("no address"))], now=T0)
    with sessions() as session:
        rows = session.scalars(select(Delivery).order_by(Delivery.id)).all()
        assert [(r.to_address, r.state, r.unsubscribe_token) for r in rows] == [
            ("speaker0@parliament.example", "pending", "tok0"),
            ("speaker1@parliament.example", "pending", "tok1"),
            ("speaker2@parliament.example", "pending", "tok2"),
            ("gone@parliament.example", "suppressed", None),
        ]
        assert len({r.message_id for r in rows}) == len({r.body_sha256 for r in rows}) == 4
    settings = settings_for(tmp_path, db_url, smtp_sink)
    deliver_due(sessions, settings, make_transport(settings), T0, 10)
    assert [parsed(m)["To"] for m in smtp_sink.messages] == [
        f"Speaker {n} <speaker{n}@parliament.example>" for n in range(3)
    ]


# -- the command and the service ---------------------------------------------------------------


def test_send_once_command_delivers_what_is_due(
    tmp_path: Path,
    db_url: str,
    sessions: sessionmaker[Session],
    smtp_sink: SMTPSink,
    capsys: pytest.CaptureFixture[str],
) -> None:
    queue(sessions, outbound(), now=datetime.now(UTC) - timedelta(seconds=1))
    environ = {
        "MAILFLOW_DATABASE_URL": db_url,
        "MAILFLOW_SERVICE_DATA_DIR": str(tmp_path / "data"),
        "MAILFLOW_OUTBOUND_RELAY_HOST": smtp_sink.host,
        "MAILFLOW_OUTBOUND_RELAY_PORT": str(smtp_sink.port),
        "MAILFLOW_OUTBOUND_RELAY_SECURITY": "none",
    }
    assert cli.main(["send", "--once"], environ) == 0
    assert "sent 1, retrying 0, failed 0" in capsys.readouterr().out
    assert len(smtp_sink.messages) == 1


def test_the_service_runs_the_delivery_worker(
    tmp_path: Path, db_url: str, smtp_sink: SMTPSink
) -> None:
    settings = settings_for(tmp_path, db_url, smtp_sink)
    with migrated_app(settings) as app:
        queue(app.sessions, outbound(), now=datetime.now(UTC) - timedelta(seconds=1))
        with running(app):
            [received] = smtp_sink.wait_for_messages(1, timeout=20)
    assert received.rcpt_tos == ["speaker@parliament.example"]
