"""mailflow's one outbound delivery path: acknowledgements now, campaigns (#5) on the same path.

`enqueue` writes the ledger row and the rendered bytes in the caller's transaction;
`deliver_due` (the worker) sends what is due through a `Transport`: the SMTP relay, or the
local Maildir outbox while no relay is configured.
"""

from __future__ import annotations

from mailflow.delivery.compose import OutboundMessage, clean_header, return_path
from mailflow.delivery.errors import ConnectionLost, InvalidOutbound, RelayUnavailable, SendRefused
from mailflow.delivery.ledger import enqueue, last_queued_at
from mailflow.delivery.transport import MaildirTransport, SmtpTransport, Transport, make_transport
from mailflow.delivery.worker import PassResult, Worker, deliver_due, run_delivery

__all__ = [
    "ConnectionLost",
    "InvalidOutbound",
    "MaildirTransport",
    "OutboundMessage",
    "PassResult",
    "RelayUnavailable",
    "SendRefused",
    "SmtpTransport",
    "Transport",
    "Worker",
    "clean_header",
    "deliver_due",
    "enqueue",
    "last_queued_at",
    "make_transport",
    "return_path",
    "run_delivery",
]
