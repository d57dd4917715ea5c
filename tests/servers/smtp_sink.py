"""An SMTP sink on loopback that records what it accepts and can be told to misbehave.

It is a real aiosmtpd server in a background thread (aiosmtpd's ``Controller``), so the code
under test talks SMTP over TCP exactly as it would to a relay. Misbehaviour is implemented in
the handler hooks (``handle_RCPT``, ``handle_DATA``); nothing is monkeypatched.
"""

from __future__ import annotations

import asyncio
import errno
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, Self

from aiosmtpd.controller import Controller

from .ports import LOOPBACK, free_port

if TYPE_CHECKING:
    from aiosmtpd.smtp import SMTP, Envelope, Session

_START_ATTEMPTS = 3  # free_port() can race with another process; retry with a new port

RcptPredicate = Callable[[str], bool]


@dataclass(frozen=True)
class ReceivedMessage:
    """One message the sink accepted (answered 250 to its DATA)."""

    envelope_from: str
    rcpt_tos: list[str]  # accepted recipients only, in RCPT order (a list, like aiosmtpd's)
    data: bytes  # as transferred, CRLF line ends, dot-stuffing removed
    peer: tuple[str, int]  # the client's (address, port)


class _SinkHandler:
    """aiosmtpd handler: records accepted messages and applies the configured misbehaviour.

    Hooks run on the Controller's event-loop thread while tests configure and read from the test
    thread, so every piece of state is guarded by one condition variable.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._messages: list[ReceivedMessage] = []
        self._rcpt_rules: list[tuple[RcptPredicate, str]] = []
        self._data_reply: str | None = None
        self._drop_every = 0  # 0: never drop
        self._data_seen = 0  # DATA transfers since drop_every() was set
        self._dropped = 0

    # -- configuration, called from tests ----------------------------------------------------

    def reply_for(self, predicate: RcptPredicate, reply: str) -> None:
        with self._cond:
            self._rcpt_rules.append((predicate, reply))

    def reply_on_data(self, reply: str | None) -> None:
        with self._cond:
            self._data_reply = reply

    def drop_every(self, n: int) -> None:
        if n < 0:
            raise ValueError(f"drop_every needs n >= 1 (or 0 to stop dropping), got {n}")
        with self._cond:
            self._drop_every = n
            self._data_seen = 0

    def reset(self) -> None:
        with self._cond:
            self._messages.clear()
            self._rcpt_rules.clear()
            self._data_reply = None
            self._drop_every = self._data_seen = self._dropped = 0

    # -- observation, called from tests ------------------------------------------------------

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._cond:
            return list(self._messages)

    @property
    def dropped(self) -> int:
        with self._cond:
            return self._dropped

    def wait_for_messages(self, count: int, timeout: float) -> list[ReceivedMessage]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"SMTP sink received {len(self._messages)} of {count} messages "
                        f"within {timeout}s"
                    )
                self._cond.wait(remaining)
            return list(self._messages)

    # -- aiosmtpd hooks, called on the event-loop thread -------------------------------------

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self._rcpt_reply(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._cond:
            self._data_seen += 1
            drop = self._drop_every > 0 and self._data_seen % self._drop_every == 0
            if drop:
                self._dropped += 1
            reply = self._data_reply
            if not drop and reply is None:
                self._messages.append(_received(session, envelope))
                self._cond.notify_all()
        if drop:
            await _drop_connection(server)
        return reply or "250 OK"

    def _rcpt_reply(self, address: str) -> str | None:
        with self._cond:
            rules = list(self._rcpt_rules)
        # Predicates are test code: call them outside the lock.
        for predicate, reply in rules:
            if predicate(address):
                return reply
        return None


def _received(session: Session, envelope: Envelope) -> ReceivedMessage:
    # aiosmtpd annotates `peer` as str, but over TCP it is the socket's (address, port, ...).
    peer: Any = session.peer
    return ReceivedMessage(
        envelope_from=envelope.mail_from or "",
        rcpt_tos=list(envelope.rcpt_tos),
        data=envelope.original_content or b"",
        peer=(str(peer[0]), int(peer[1])),
    )


async def _drop_connection(server: SMTP) -> NoReturn:
    """Close the client's TCP connection without replying, like a relay that crashed mid-DATA.

    ``abort()`` closes the socket without flushing anything. aiosmtpd's ``connection_lost()``
    then cancels the session task, which is waiting right here; so no reply is ever written
    to the dead transport (writing one would raise inside aiosmtpd).
    """
    transport = server.transport  # None: the client hung up first, and we are cancelled anyway
    if isinstance(transport, asyncio.Transport):
        transport.abort()
    elif transport is not None:
        transport.close()
    await asyncio.get_running_loop().create_future()  # never resolved: we are cancelled
    raise AssertionError("unreachable: connection_lost() cancels this task")


class SMTPSink:
    """A running SMTP sink on 127.0.0.1; use as a context manager or call start()/stop()."""

    host: str = LOOPBACK

    def __init__(self) -> None:
        self._handler = _SinkHandler()
        self._controller: Controller | None = None
        self.port = 0

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        for attempt in range(1, _START_ATTEMPTS + 1):
            port = free_port()
            controller = Controller(self._handler, hostname=self.host, port=port)
            try:
                controller.start()
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or attempt == _START_ATTEMPTS:
                    raise
                continue
            self._controller, self.port = controller, port
            return

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    # -- the test-facing API -----------------------------------------------------------------

    @property
    def messages(self) -> list[ReceivedMessage]:
        """A snapshot of the accepted messages, oldest first."""
        return self._handler.messages

    @property
    def dropped(self) -> int:
        """How many connections drop_every() has cut so far."""
        return self._handler.dropped

    def wait_for_messages(self, count: int, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Block until at least ``count`` messages were accepted; TimeoutError otherwise."""
        return self._handler.wait_for_messages(count, timeout)

    def reply_for(self, predicate: RcptPredicate, reply: str) -> None:
        """Answer RCPT TO with ``reply`` (e.g. "451 4.7.1 Try later") for matching addresses.

        Rules are tried in the order they were added; unmatched recipients are accepted.
        """
        self._handler.reply_for(predicate, reply)

    def reply_on_data(self, reply: str | None) -> None:
        """Answer every DATA with ``reply`` (e.g. "554 5.0.0 no") instead of accepting it.

        ``None`` restores normal acceptance. Refused messages are not recorded.
        """
        self._handler.reply_on_data(reply)

    def drop_every(self, n: int) -> None:
        """Cut the TCP connection, with no reply, on every n-th DATA from now on (0: never).

        Counting restarts at each call, so after ``drop_every(2)`` the 2nd, 4th, ... message
        transfer is dropped. Dropped messages are not recorded; see :attr:`dropped`.
        """
        self._handler.drop_every(n)

    def reset(self) -> None:
        """Forget recorded messages, the drop count and every misbehaviour."""
        self._handler.reset()
