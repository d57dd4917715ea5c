"""`mailflow send`: run the delivery worker, once or until interrupted."""

from __future__ import annotations

import argparse
import threading

from sqlalchemy.orm import Session, sessionmaker

from mailflow.delivery import PassResult, deliver_due, make_transport, run_delivery
from mailflow.delivery.worker import utcnow
from mailflow.service import build, prepare_database
from mailflow.settings import Settings


def add_delivery_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "send", parents=[common], help="send queued outbound mail (relay, or the Maildir outbox)"
    )
    p.add_argument(
        "--once", action="store_true", help="send everything due now, then exit (for cron)"
    )
    p.set_defaults(handler=cmd_send)


def cmd_send(args: argparse.Namespace, settings: Settings) -> int:
    app = build(settings)
    try:
        prepare_database(app)
        if not args.once:
            # Until Ctrl-C / SIGTERM: the KeyboardInterrupt ends the wait, main() exits 130.
            run_delivery(app.sessions, settings, threading.Event())
            return 0
        total = _send_once(app.sessions, settings)
    finally:
        app.close()
    print(
        f"sent {total.sent}, retrying {total.retrying}, failed {total.failed}, "
        f"skipped {total.skipped}"
    )
    return 1 if total.stopped_early else 0


def _send_once(sessions: sessionmaker[Session], settings: Settings) -> PassResult:
    """Passes until nothing more is due now (or the transport gives out)."""
    transport = make_transport(settings)
    now = utcnow()
    total = PassResult()
    try:
        while True:
            result = deliver_due(sessions, settings, transport, now, settings.outbound.batch_size)
            total += result
            if result.stopped_early or result.claimed < settings.outbound.batch_size:
                return total
    finally:
        transport.close()
