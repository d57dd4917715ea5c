"""Outbound adapters: the local Maildir outbox and the relay connection."""

from __future__ import annotations

import mailbox
from pathlib import Path

import pytest

from mailflow.errors import SmtpError
from mailflow.outbox import MaildirOutbox
from mailflow.settings import OutboundSettings
from mailflow.smtp_out import relay_session
from tests.servers.smtp_sink import SMTPSink


def test_maildir_outbox_writes_complete_messages(tmp_path: Path) -> None:
    outbox = MaildirOutbox(tmp_path / "outbox")
    assert outbox.count() == 0
    key = outbox.deliver(b"Subject: decision\r\n\r\nbody\r\n")
    assert outbox.count() == 1
    assert list((tmp_path / "outbox" / "tmp").iterdir()) == []  # nothing half-written
    stored = mailbox.Maildir(tmp_path / "outbox", create=False).get_bytes(key)
    assert stored.replace(b"\r\n", b"\n") == b"Subject: decision\n\nbody\n"


def test_unwritable_outbox_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory", encoding="utf-8")
    with pytest.raises(Exception, match="cannot create the outbox Maildir"):
        MaildirOutbox(blocker / "outbox").ensure()


def test_relay_session_sends_through_a_loopback_relay(smtp_sink: SMTPSink) -> None:
    settings = OutboundSettings(
        relay_host=smtp_sink.host, relay_port=smtp_sink.port, relay_security="none"
    )
    with relay_session(settings) as client:
        client.sendmail(
            "committee@example.org", ["speaker@example.net"], b"Subject: x\r\n\r\ny\r\n"
        )
    [message] = smtp_sink.messages
    assert message.rcpt_tos == ["speaker@example.net"]


def test_relay_without_starttls_is_refused_not_downgraded(smtp_sink: SMTPSink) -> None:
    settings = OutboundSettings(
        relay_host=smtp_sink.host, relay_port=smtp_sink.port, relay_security="starttls"
    )
    with pytest.raises(SmtpError) as caught, relay_session(settings):
        pass
    assert caught.value.hint is not None and "STARTTLS" in caught.value.hint
    assert smtp_sink.messages == []
