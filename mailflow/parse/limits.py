"""Size and nesting limits, checked on the raw bytes before any parser sees them.

The stdlib parser recurses once per nested multipart or message part, so a hostile message can
exhaust the interpreter stack (RecursionError) or allocate one object per part. The structure
scan here walks the bytes without recursion and refuses such messages up front.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mailflow.errors import MessageError

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Bounds for one parse. Exceeding a `max_bytes`, `max_depth` or `max_parts` bound raises
    `ParseLimitExceeded`; the text bounds truncate (and record a defect) instead, because a
    long body is still a legitimate message."""

    max_bytes: int = 50 * MIB
    max_depth: int = 50  # nesting of multipart and message/* parts, the top level being 1
    max_parts: int = 1_000
    max_text_chars: int = 1_000_000  # `text` (and each forwarded text)
    max_html_chars: int = 5_000_000  # HTML handed to the converter
    max_attachment_text_chars: int = 200_000  # text extracted from one attachment
    max_pdf_pages: int = 200
    max_zip_entries_listed: int = 200


class ParseLimitExceeded(MessageError):
    """The message is larger or deeper than `ParseLimits` allows."""

    def __init__(self, limit: str, value: int, found: str) -> None:
        super().__init__(
            f"parse limit exceeded: {limit}={value} ({found})",
            hint=f"raise ParseLimits.{limit} if such messages are legitimate",
        )
        self.limit = limit
        self.value = value


def check_size(raw: bytes, limits: ParseLimits) -> None:
    if len(raw) > limits.max_bytes:
        raise ParseLimitExceeded("max_bytes", limits.max_bytes, f"message has {len(raw)} bytes")


_HEADER_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]+:|[ \t]|From ")
_CONTENT_TYPE = re.compile(rb"content-type[ \t]*:(.*)", re.IGNORECASE | re.DOTALL)
_BOUNDARY = re.compile(rb"""boundary[ \t]*=[ \t]*(?:"([^"]*)"|([^\s;"]+))""", re.IGNORECASE)
_MAIN_TYPE = re.compile(rb"[ \t]*([a-z0-9!#$%&'*+.^_`{|}~-]+)/([a-z0-9!#$%&'*+.^_`{|}~-]+)", re.I)


@dataclass(slots=True)
class _Scan:
    raw: bytes
    limits: ParseLimits
    pos: int = 0
    parts: int = 0
    # One entry per open container: (boundary, is_digest) for a multipart, (None, False) for
    # a message/* part, whose end only an outer boundary marks.
    stack: list[tuple[bytes | None, bool]] = field(default_factory=list)


def check_structure(raw: bytes, limits: ParseLimits) -> None:
    """Raise `ParseLimitExceeded` when the MIME tree is deeper or wider than allowed.

    It follows the boundaries the way the stdlib parser does (an outer boundary closes every
    inner part, a digest's parts default to message/rfc822).
    """
    scan = _Scan(raw, limits)
    default_message = False
    while scan.pos < len(raw):
        kind, boundary, is_digest = _header_block(scan, default_message=default_message)
        default_message = False
        if kind == "message":
            _push(scan, (None, False))
            continue  # the body of a message/* part starts with the inner message's headers
        if kind == "multipart" and boundary:
            _push(scan, (boundary, is_digest))
        found = _next_delimiter(scan)
        if found is None:
            return
        default_message = found


def _push(scan: _Scan, entry: tuple[bytes | None, bool]) -> None:
    scan.stack.append(entry)
    if len(scan.stack) >= scan.limits.max_depth:
        raise ParseLimitExceeded(
            "max_depth", scan.limits.max_depth, f"parts nested {len(scan.stack) + 1} deep"
        )


def _header_block(scan: _Scan, *, default_message: bool) -> tuple[str, bytes | None, bool]:
    """Consume one header block; return the part's kind, boundary and whether it is a digest."""
    scan.parts += 1
    if scan.parts > scan.limits.max_parts:
        raise ParseLimitExceeded(
            "max_parts", scan.limits.max_parts, f"more than {scan.limits.max_parts} MIME parts"
        )
    content_type: bytes | None = None
    raw = scan.raw
    while scan.pos < len(raw):
        end = raw.find(b"\n", scan.pos)
        end = len(raw) if end < 0 else end + 1
        line = raw[scan.pos : end]
        blank = not line.strip()
        if blank or not _HEADER_LINE.match(line):
            scan.pos = end if blank else scan.pos
            break
        scan.pos = end
        found = _CONTENT_TYPE.match(line)
        if found is not None:
            content_type = found.group(1)
        elif line[:1] in (b" ", b"\t") and content_type is not None:
            content_type += line
    return _kind(content_type, default_message)


def _kind(content_type: bytes | None, default_message: bool) -> tuple[str, bytes | None, bool]:
    main = _MAIN_TYPE.match(content_type or b"")
    if main is None:
        return ("message" if default_message else "leaf"), None, False
    maintype, subtype = main.group(1).lower(), main.group(2).lower()
    if maintype == b"message" and subtype != b"delivery-status":
        return "message", None, False
    if maintype != b"multipart":
        return "leaf", None, False
    found = _BOUNDARY.search(content_type or b"")
    value = b"" if found is None else (found.group(1) or found.group(2) or b"")
    return "multipart", value.strip() or None, subtype == b"digest"


def _next_delimiter(scan: _Scan) -> bool | None:
    """Move to the line after the next delimiter of an open multipart.

    Returns None at the end of the input, else whether the next part defaults to
    message/rfc822 (a digest's child)."""
    raw = scan.raw
    while scan.stack:
        start = raw.find(b"\n--", scan.pos - 1) if scan.pos > 0 else _first_dash(raw)
        if start < 0:
            break
        start = start + 1 if raw[start : start + 1] == b"\n" else start
        end = raw.find(b"\n", start)
        end = len(raw) if end < 0 else end + 1
        scan.pos = end
        line = raw[start + 2 : end].rstrip()
        for depth in range(len(scan.stack) - 1, -1, -1):
            boundary, is_digest = scan.stack[depth]
            if boundary is None or not line.startswith(boundary):
                continue
            rest = line[len(boundary) :]
            if rest not in (b"", b"--"):
                continue
            if rest:  # closing delimiter: the parent's epilogue follows
                del scan.stack[depth:]
                break
            del scan.stack[depth + 1 :]
            return is_digest
    scan.pos = len(raw)
    return None


def _first_dash(raw: bytes) -> int:
    return 0 if raw.startswith(b"--") else raw.find(b"\n--")
