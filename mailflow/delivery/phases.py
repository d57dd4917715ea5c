"""A message's hand-over split in phases, so that one thread can drive several connections.

The senders (senders.py) run a round of messages, one per connection, phase by phase across
all of them: every envelope is written, then the earlier outcomes are committed, then every
message is handed over, then every verdict read. SMTP is such a transport
(transport.SmtpTransport); any other transport (the Maildir outbox, a test's) hands the whole
message over in one call, in the hand-over phase, which comes after the commit.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from mailflow.delivery.transport import Transport


@runtime_checkable
class Phases(Protocol):
    """Each phase may raise what Transport.send raises; a phase returning a string has the
    relay's acceptance already, and the later phases are skipped."""

    def start(self, envelope_from: str, recipient: str, raw: bytes) -> str | None:
        """Open the transaction: write the envelope, read no more than needed."""
        ...

    def hand_over(self) -> str | None:
        """The point of no return: the message text and its end (SMTP's final dot)."""
        ...

    def finish(self) -> str:
        """The relay's acceptance reply."""
        ...

    def abort(self) -> None:
        """Give up the transaction before its hand-over: nothing is delivered."""
        ...


class _Whole:
    """A transport without phases: the whole send in the hand-over phase."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._message: tuple[str, str, bytes] | None = None

    def start(self, envelope_from: str, recipient: str, raw: bytes) -> None:
        self._message = (envelope_from, recipient, raw)

    def hand_over(self) -> str:
        assert self._message is not None, "start() comes first"
        message, self._message = self._message, None
        return self.transport.send(*message)

    def finish(self) -> str:
        raise AssertionError("hand_over() returned the acceptance")

    def abort(self) -> None:
        self._message = None


def phases_of(transport: Transport) -> Phases:
    return transport if isinstance(transport, Phases) else _Whole(transport)
