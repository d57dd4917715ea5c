"""Process stored-but-unprocessed messages, on several cores.

Durable intake (fetch, store, commit) must never wait for parsing, so processing can be
deferred and caught up here. Each worker process opens its own database connections and takes
the ids with ``id % workers == k``: no two workers ever process the same message.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

from mailflow import logs
from mailflow.service import build
from mailflow.settings import Settings


def process_all(settings: Settings, workers: int = 1) -> int:
    """Process every pending message; returns how many were processed."""
    if workers <= 1:
        return _partition(settings, 0, 1)
    # spawn, not fork: a forked child would share the parent's database connections.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(_partition, settings, index, workers) for index in range(workers)]
        return sum(future.result() for future in futures)


def _partition(settings: Settings, index: int, count: int) -> int:
    logs.configure(settings.service.log_level, settings.service.log_format)
    app = build(settings)
    try:
        return app.intake.process_pending(partition=(index, count))
    finally:
        app.close()
