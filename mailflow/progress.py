"""A one-line progress display for long commands (backfill now, campaign sending later).

It draws only on a terminal: redirected to a file or a pipe, a redrawn line is noise, and the
caller prints a plain summary instead. Redraws are throttled, so a fast loop does not spend
its time writing to the terminal. No dependency, no threads: the caller's loop drives it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

BAR_WIDTH = 24
DEFAULT_COLUMNS = 80
# Carriage return, then erase to the end of the line: the next draw replaces the last one.
_RETURN_AND_CLEAR = "\r\x1b[K"


class Progress:
    """``advance(n)`` as work gets done, ``close()`` at the end (or use it as a context).

    ``total`` may be None when the amount of work is unknown: then there is no bar and no ETA.
    ``status`` is free text shown after the figures (counts of outcomes, say).
    """

    def __init__(
        self,
        total: int | None,
        stream: TextIO,
        *,
        label: str = "",
        unit: str = "",
        isatty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        interval: float = 0.2,
        columns: int | None = None,
    ) -> None:
        self.total = total
        self.stream = stream
        self.label = label
        self.unit = unit
        self.enabled = _isatty(stream) if isatty is None else isatty
        self.clock = clock
        self.interval = interval
        self.columns = columns
        self.done = 0
        self.status = ""
        self._started = clock()
        self._drawn_at: float | None = None
        self._visible = False
        self._closed = False

    def advance(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled or self._closed:
            return
        now = self.clock()
        if self._drawn_at is None or now - self._drawn_at >= self.interval:
            self._draw(now)

    def write(self, line: str) -> None:
        """Print a line of text without mangling the bar; the bar comes back on the next draw."""
        self.clear()
        self.stream.write(line + "\n")
        self.stream.flush()

    def clear(self) -> None:
        """Erase the bar, so that someone else can write to the stream (a log line, say)."""
        if self._visible:
            self.stream.write(_RETURN_AND_CLEAR)
            self.stream.flush()
            self._visible = False
            self._drawn_at = None  # redraw at the next advance, whatever the throttle says

    def close(self) -> None:
        """Draw the final state and end the line; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.enabled:
            self._draw(self.clock())
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def render(self, now: float) -> str:
        """The line as it would be drawn at time ``now`` (a ``clock()`` value)."""
        elapsed = now - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        unit = f" {self.unit}" if self.unit else ""
        parts = [self.label] if self.label else []
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            filled = int(fraction * BAR_WIDTH)
            parts.append("[" + "#" * filled + "-" * (BAR_WIDTH - filled) + "]")
            parts.append(f"{fraction:.0%} {self.done}/{self.total}{unit}")
        else:
            parts.append(f"{self.done}{unit}")
        parts.append(f"{rate:.1f}{unit}/s")
        if self.total:
            left = max(self.total - self.done, 0)
            parts.append("ETA " + (format_duration(left / rate) if rate > 0 else "--:--"))
        if self.status:
            parts.append(self.status)
        # One character short of the width: writing into the last column wraps on some terminals.
        return "  ".join(parts)[: self._width() - 1]

    def _draw(self, now: float) -> None:
        self.stream.write(_RETURN_AND_CLEAR + self.render(now))
        self.stream.flush()
        self._drawn_at = now
        self._visible = True

    def _width(self) -> int:
        if self.columns:
            return self.columns
        # $COLUMNS first, as shutil.get_terminal_size does; but ask our stream's terminal, not
        # stdout's, which is often redirected while stderr shows the bar.
        columns = os.environ.get("COLUMNS", "")
        if columns.isdigit() and int(columns) > 0:
            return int(columns)
        try:
            return os.get_terminal_size(self.stream.fileno()).columns or DEFAULT_COLUMNS
        except (AttributeError, OSError, ValueError):
            return DEFAULT_COLUMNS


def format_duration(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``."""
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False
