"""The delivery path's errors: which of them a retry can cure, and which recipient refused.

The worker decides from the class alone: a refusal carries the relay's code and the stage of
the SMTP transaction (a 5xx at RCPT is about the recipient, a 5xx at MAIL or DATA about the
message), while a lost or impossible connection says nothing about the recipient at all.
"""

from __future__ import annotations

from typing import Literal

from mailflow.errors import MessageError, SmtpError

Stage = Literal["mail", "rcpt", "data"]


class SendRefused(SmtpError):
    """The relay answered the transaction with a refusal code (4xx: later; 5xx: never)."""

    def __init__(self, message: str, *, code: int, stage: Stage) -> None:
        super().__init__(message)
        self.code = code
        self.stage = stage

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600

    @property
    def about_recipient(self) -> bool:
        """A refusal of this recipient (RCPT), not of the sender or the message."""
        return self.stage == "rcpt"


class RelayUnavailable(SmtpError):
    """No usable relay connection: refused, TLS or login failed. Nothing was sent."""


class ConnectionLost(SmtpError):
    """The connection dropped during a transaction: the relay may or may not have the message.

    The next message reconnects; this one is retried (a possible duplicate, which SMTP cannot
    rule out once DATA was sent).
    """


class InvalidOutbound(MessageError):
    """An outbound message cannot be composed: e.g. an address that is not an address."""
