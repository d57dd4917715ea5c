"""`mailflow send`: run the delivery worker, once or until interrupted."""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from mailflow.delivery import Worker, run_delivery
from mailflow.delivery.signing import load_signer
from mailflow.service import open_store, prepare_schema
from mailflow.settings import Settings


def add_delivery_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "send",
        parents=[common],
        help="send queued outbound mail (relay, or the Maildir outbox)",
        description="Send queued outbound mail over outbound.connections relay connections, "
        "within outbound.rate_per_second and outbound.domain_rate_per_minute.",
    )
    p.add_argument(
        "--once", action="store_true", help="send everything due now, then exit (for cron)"
    )
    p.set_defaults(handler=cmd_send)


def cmd_send(args: argparse.Namespace, settings: Settings) -> int:
    engine, sessions = open_store(settings)
    try:
        prepare_schema(settings, engine)
        if not args.once:
            load_signer(settings)  # a DKIM key that cannot be used is an error here, at once
            # Until Ctrl-C / SIGTERM: the KeyboardInterrupt lets each connection finish its
            # message in flight and gives the claimed rest back; main() exits 130.
            with _sigterm_interrupts():
                run_delivery(sessions, settings, threading.Event())
            return 0
        result = Worker(sessions, settings).send_due(threading.Event())
    finally:
        engine.dispose()
    print(
        f"sent {result.sent}, retrying {result.retrying}, failed {result.failed}, "
        f"skipped {result.skipped}, deferred {result.deferred}"
    )
    return 1 if result.stopped_early else 0


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (systemd, a supervisor) stops like Ctrl-C, not in the middle of a message."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
