"""SMTP PIPELINING (RFC 2920) in SmtpTransport: MAIL, RCPT and DATA in one write when the relay
offers it, the same refusals and reconnects as without it.

The relay is aiosmtpd (a real SMTP server on loopback) whose EHLO offers PIPELINING or not, seen
through a proxy we own that records how the client's bytes arrived: a pipelined group comes in
one read, while sequential commands cannot, since each waits for the reply to the one before.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest
from aiosmtpd.controller import Controller

from mailflow.delivery import SmtpTransport
from mailflow.delivery.errors import ConnectionLost, SendRefused
from mailflow.settings import OutboundSettings
from tests.servers.ports import LOOPBACK, free_port, wait_until

if TYPE_CHECKING:
    from aiosmtpd.smtp import SMTP, Envelope, Session

SENDER = "bounces+1@bounces.example.org"
GOOD = "speaker@parliament.example"
BAD = "gone@parliament.example"
# A line starting with a dot: the dot-stuffing must survive the pipelined path too.
RAW = (
    b"From: committee@example.org\r\nTo: speaker@parliament.example\r\nSubject: Decision\r\n\r\n"
    + b"The Committee adopted the decision below.\r\n" * 100
    + b".a line that starts with a dot\r\n.\r\nthe end\r\n"
)
GROUP = f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{GOOD}>\r\nDATA\r\n".encode()


@dataclass
class Relay:
    """aiosmtpd handler: offers PIPELINING or not, refuses MAIL or chosen recipients on demand.

    Tests set the replies before sending and read `messages` after send() returned, which is
    after handle_DATA appended: no lock needed."""

    pipelining: bool = True
    mail_reply: str | None = None
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # a 5-argument EHLO hook does this itself
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.mail_reply is not None:
            return self.mail_reply
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.messages.append((envelope.mail_from or "", list(envelope.rcpt_tos), content))
        return "250 2.0.0 queued"


class RecordingProxy:
    """Forwards loopback connections to the relay, recording each read of the client's bytes.

    `cut_all()` drops the connections open now, as a relay that closed them would; with
    `cut_on` set, a connection is dropped as soon as a read starts with those bytes."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server((LOOPBACK, 0))
        self.port: int = self.listener.getsockname()[1]
        self.chunks: list[tuple[int, bytes]] = []  # (connection number from 1, bytes read)
        self.connections = 0
        self.ended: set[int] = set()  # connections whose client side was closed
        self.cut_on: bytes | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        # close() alone does not wake a thread blocked in accept() on Linux; shutdown() does.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.cut_all()

    def cut_all(self) -> None:
        with self._lock:
            sockets, self._open = self._open, []
        _cut(*sockets)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            with self._lock:
                self.connections += 1
                self._open += [client, server]
                number = self.connections
            threading.Thread(target=self._pump, args=(client, server, number), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, 0), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, number: int) -> None:
        """Forward until either side closes; `number` is 0 for the relay's side."""
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if number:
                    with self._lock:
                        self.chunks.append((number, data))
                    if self.cut_on is not None and data.startswith(self.cut_on):
                        break
                sink.sendall(data)
        with self._lock:
            self.ended.add(number)
        _cut(source, sink)

    def sent_on(self, number: int) -> bytes:
        with self._lock:
            return b"".join(data for n, data in self.chunks if n == number)


def _cut(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


@dataclass
class Setup:
    relay: Relay
    proxy: RecordingProxy
    transport: SmtpTransport

    def commands(self) -> list[bytes]:
        """The client's reads that carry SMTP commands (not EHLO, QUIT or message text)."""
        verbs = (b"MAIL", b"RCPT", b"DATA", b"RSET")  # smtplib sends "rset" in lower case
        return [chunk for _, chunk in self.proxy.chunks if chunk.upper().startswith(verbs)]


def start(relay: Relay) -> Controller:
    for attempt in range(3):  # free_port() can race with another process
        controller = Controller(relay, hostname=LOOPBACK, port=free_port())
        try:
            controller.start()
        except OSError:
            if attempt == 2:
                raise
            continue
        return controller
    raise AssertionError("unreachable")


@pytest.fixture(params=[True], ids=["pipelining"])
def setup(request: pytest.FixtureRequest) -> Iterator[Setup]:
    relay = Relay(pipelining=request.param)
    controller = start(relay)
    proxy = RecordingProxy((LOOPBACK, controller.port))
    settings = OutboundSettings(
        from_address="committee@example.org",
        relay_host=LOOPBACK,
        relay_port=proxy.port,
        relay_security="none",
    )
    transport = SmtpTransport(settings)
    try:
        yield Setup(relay, proxy, transport)
    finally:
        transport.close()
        proxy.close()
        controller.stop()


def delivered(setup: Setup) -> list[tuple[str, list[str], bytes]]:
    return setup.relay.messages


def test_mail_rcpt_and_data_go_in_one_write_and_the_message_arrives_intact(setup: Setup) -> None:
    reply = setup.transport.send(SENDER, GOOD, RAW)
    assert reply == "250 2.0.0 queued"
    assert delivered(setup) == [(SENDER, [GOOD], RAW)]
    assert setup.commands() == [GROUP]  # the three commands arrived in one read
    dot_first = b".the first line starts with a dot\r\n" + RAW  # stuffed at offset 0 too
    setup.transport.send(SENDER, GOOD, dot_first)
    assert delivered(setup)[1] == (SENDER, [GOOD], dot_first)
    assert setup.commands() == [GROUP, GROUP]
    assert setup.proxy.connections == 1  # the connection was reused for the second


@pytest.mark.parametrize("setup", [False], ids=["no-pipelining"], indirect=True)
def test_a_relay_without_pipelining_gets_one_command_at_a_time(setup: Setup) -> None:
    for _ in range(2):
        assert setup.transport.send(SENDER, GOOD, RAW) == "250 2.0.0 queued"
    assert delivered(setup) == [(SENDER, [GOOD], RAW)] * 2
    one = [f"MAIL FROM:<{SENDER}>\r\n".encode(), f"RCPT TO:<{GOOD}>\r\n".encode(), b"DATA\r\n"]
    assert setup.commands() == one * 2
    assert setup.proxy.connections == 1


@pytest.mark.parametrize(
    ("reply", "permanent"), [("451 4.7.1 Greylisted", False), ("550 5.1.1 No such user", True)]
)
def test_refused_recipient_raises_at_rcpt_and_the_connection_sends_the_next(
    setup: Setup, reply: str, permanent: bool
) -> None:
    setup.relay.rcpt_replies[BAD] = reply
    with pytest.raises(SendRefused) as refused:
        setup.transport.send(SENDER, BAD, RAW)
    code = int(reply[:3])
    assert (refused.value.stage, refused.value.code, refused.value.permanent) == (
        "rcpt",
        code,
        permanent,
    )
    assert refused.value.about_recipient
    assert reply in str(refused.value)
    # All three replies were read (aiosmtpd answers DATA 503: no recipient), then RSET: the
    # next message's replies line up with its own commands.
    assert setup.transport.send(SENDER, GOOD, RAW) == "250 2.0.0 queued"
    assert delivered(setup) == [(SENDER, [GOOD], RAW)]
    bad_group = GROUP.replace(GOOD.encode(), BAD.encode())
    assert setup.commands() == [bad_group, b"rset\r\n", GROUP]
    assert setup.proxy.connections == 1


@pytest.mark.parametrize(
    ("reply", "permanent"), [("451 4.3.0 Try later", False), ("553 5.7.1 Sender refused", True)]
)
def test_refused_sender_raises_at_mail_and_the_connection_sends_the_next(
    setup: Setup, reply: str, permanent: bool
) -> None:
    setup.relay.mail_reply = reply
    with pytest.raises(SendRefused) as refused:
        setup.transport.send(SENDER, GOOD, RAW)
    assert (refused.value.stage, refused.value.code, refused.value.permanent) == (
        "mail",
        int(reply[:3]),
        permanent,
    )
    assert not refused.value.about_recipient
    setup.relay.mail_reply = None
    assert setup.transport.send(SENDER, GOOD, RAW) == "250 2.0.0 queued"
    assert delivered(setup) == [(SENDER, [GOOD], RAW)]
    assert setup.commands() == [GROUP, b"rset\r\n", GROUP]
    assert setup.proxy.connections == 1


def test_reused_connection_closed_by_the_relay_is_replaced_once(setup: Setup) -> None:
    setup.transport.send(SENDER, GOOD, RAW)
    setup.proxy.cut_all()  # the relay hangs up between two messages
    assert setup.transport.send(SENDER, GOOD, RAW) == "250 2.0.0 queued"
    assert delivered(setup) == [(SENDER, [GOOD], RAW)] * 2
    assert setup.proxy.connections == 2

    # Once only: when the new connection fails too, the message's failure is reported.
    setup.proxy.cut_on = b"MAIL"
    with pytest.raises(ConnectionLost):
        setup.transport.send(SENDER, GOOD, RAW)
    assert setup.proxy.connections == 3  # the reused second one (cut), one more (cut)
    assert len(delivered(setup)) == 2


def test_without_pipelining_a_reused_connection_closed_is_replaced_once(setup: Setup) -> None:
    setup.relay.pipelining = False  # read at EHLO: every connection of this test
    setup.transport.send(SENDER, GOOD, RAW)
    setup.proxy.cut_all()  # found closed at MAIL, a round trip of its own here
    assert setup.transport.send(SENDER, GOOD, RAW) == "250 2.0.0 queued"
    assert delivered(setup) == [(SENDER, [GOOD], RAW)] * 2
    assert setup.proxy.connections == 2


def test_a_new_connection_that_fails_is_not_retried(setup: Setup) -> None:
    setup.proxy.cut_on = b"MAIL"
    with pytest.raises(ConnectionLost):
        setup.transport.send(SENDER, GOOD, RAW)
    assert setup.proxy.connections == 1
    assert delivered(setup) == []


def test_421_at_mail_is_a_lost_connection(setup: Setup) -> None:
    setup.transport.send(SENDER, GOOD, RAW)
    setup.relay.mail_reply = "421 4.3.2 Shutting down"
    with pytest.raises(ConnectionLost, match="421"):
        setup.transport.send(SENDER, GOOD, RAW)
    assert setup.proxy.connections == 2  # reused, so tried once more on a new connection
    setup.relay.mail_reply = None
    assert setup.transport.send(SENDER, GOOD, RAW) == "250 2.0.0 queued"
    assert setup.proxy.connections == 3


def test_a_transaction_aborted_before_its_hand_over_delivers_nothing(setup: Setup) -> None:
    # The senders abort when the previous round's outcomes could not be committed.
    setup.transport.start(SENDER, BAD, RAW)
    setup.transport.abort()
    assert setup.transport.send(SENDER, GOOD, RAW) == "250 2.0.0 queued"
    assert delivered(setup) == [(SENDER, [GOOD], RAW)]  # not the aborted one
    assert setup.proxy.connections == 2
    assert wait_until(lambda: 1 in setup.proxy.ended, timeout=5)
    # The envelope, and nothing after it: no text, no final dot, not even a QUIT.
    bad_group = GROUP.replace(GOOD.encode(), BAD.encode())
    assert setup.proxy.sent_on(1).endswith(bad_group)
