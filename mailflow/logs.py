"""Structured, levelled logging to stderr.

Call sites log an event name plus fields: ``log.info("message stored", extra=fields(id=3))``.
Fields are rendered as ``key=value`` (text) or one JSON object per line (json). What goes into
fields is the caller's responsibility: ids, hashes, sizes, counts and host names, never message
contents, addresses of reporters, or secrets. ``Secret`` values render as their source anyway.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

FIELDS_ATTR = "mailflow_fields"


def fields(**values: Any) -> dict[str, Any]:
    """The ``extra=`` argument carrying structured fields for one log call."""
    return {FIELDS_ATTR: values}


class _Formatter(logging.Formatter):
    def __init__(self, fmt: str) -> None:
        super().__init__()
        self.fmt = fmt

    def format(self, record: logging.LogRecord) -> str:
        values: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        values.update(getattr(record, FIELDS_ATTR, {}))
        if record.exc_info and record.exc_info[0] is not None:
            values["exc"] = self.formatException(record.exc_info)
        if self.fmt == "json":
            return json.dumps(values, default=str, ensure_ascii=False)
        return " ".join(f"{key}={_quote(value)}" for key, value in values.items())


def _quote(value: Any) -> str:
    text = str(value)
    if text and not any(ch in text for ch in ' "=\n\r\t'):
        return text
    return json.dumps(text, ensure_ascii=False)


def configure(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Install one stderr handler on the root logger, replacing any earlier one of ours."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Formatter(fmt))
    handler.set_name("mailflow")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "mailflow"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Library chatter at info level (aiosmtpd logs every peer) would drown our own events.
    for noisy in ("mail.log", "aiosmtpd", "imapclient", "alembic", "mailparser"):
        logging.getLogger(noisy).setLevel(max(root.level, logging.WARNING))
