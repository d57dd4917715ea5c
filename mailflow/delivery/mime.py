"""MIME bytes built directly: header encoding and folding, body encodings, multiparts. Pure.

The stdlib `email` package builds a header object (and a new header class) per header and
folds through a token parser: about 3 ms for a text + HTML message, most of a campaign's
enqueue. Here every value is a plain string the caller has already cleaned (no control
characters, single spaces), so encoding is a few string operations and `binascii` calls.
The output parses back with `email.policy.default` to the values given: tests compare it with
what the `email` package makes of the same message (tests/test_mime.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from collections import OrderedDict
from collections.abc import Iterator, Sequence

CRLF = b"\r\n"
MAX_LINE = 78  # RFC 5322 2.1.1: SHOULD; folding keeps every line we make within it
# UTF-8 bytes per encoded-word: 52 base64 characters, a 64-character word, so that even after
# "Subject: " or "Content-Disposition: " the first line stays within MAX_LINE.
_WORD_BYTES = 39
_ATEXT_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]+")
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
# A display name's encoded-word: 60 base64 characters, 72 in all, the longest RFC 2047 allows
# (75) in whole base64 quanta; "From: " and it make 78.
_PHRASE_WORD_BYTES = 45
_ATTRIBUTE_CHARS = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$&+-.^_`|~"
)
_ASCII = bytes(range(128))
_MAX_QUOTED = 60  # a longer (ASCII) display name or file name is encoded, so it can be folded
_SECTION_CHARS = 60  # RFC 2231 section length, so each `filename*N*=` line fits


def encoded_words(text: str, size: int = _WORD_BYTES) -> list[str]:
    """RFC 2047 B-encoded words for `text`, `size` UTF-8 bytes each at most, split on
    character boundaries."""
    data = text.encode("utf-8")
    return [f"=?utf-8?b?{base64.b64encode(c).decode('ascii')}?=" for c in _chunks(data, size)]


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    start = 0
    while start < len(data):
        end = min(start + size, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # never split a character
            end -= 1
        yield data[start:end]
        start = end


def unstructured(value: str) -> list[str]:
    """Tokens of an unstructured value (Subject...). Encoded as a whole when it holds non-ASCII
    or something a reader would take for an encoded-word ("=?"): whitespace between two
    encoded-words is not part of the text, so no word may stand between them."""
    if value.isascii() and "=?" not in value:
        return value.split(" ")
    return encoded_words(value)


def phrase(name: str) -> list[str]:
    """Tokens of a display name: atoms, a quoted-string, or atoms and encoded-words.

    Only the runs of words that need it are encoded, each run in as few words as possible:
    RFC 2047 readers drop the space between two encoded-words, but Python's address parser
    (3.11) keeps it, so a run split in two reads back with a space too many there. A run
    of up to _PHRASE_WORD_BYTES (a name of about 22 Arabic or 40 accented Latin letters)
    is one word, and reads back the same everywhere."""
    if not name:
        return []
    if name.isascii() and "=?" not in name:
        if _ATEXT_PHRASE.fullmatch(name):
            return name.split(" ")
        if len(name) <= _MAX_QUOTED:
            return ['"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"']
    tokens: list[str] = []
    run: list[str] = []
    for word in name.split(" "):
        if _ATOM.fullmatch(word) and "=?" not in word:
            if run:
                tokens += encoded_words(" ".join(run), _PHRASE_WORD_BYTES)
                run = []
            tokens.append(word)
        else:
            run.append(word)
    if run:
        tokens += encoded_words(" ".join(run), _PHRASE_WORD_BYTES)
    return tokens


def address(name: str, spec: str) -> list[str]:
    """Tokens of one mailbox; `spec` is an addr-spec already checked by the caller."""
    return [*phrase(name), f"<{spec}>"] if name else [spec]


def header(name: str, tokens: Sequence[str]) -> bytes:
    """`Name: tokens` with CRLF, folded (CRLF SP) between tokens to keep lines within
    MAX_LINE. A single token longer than that gets a line of its own."""
    lines: list[str] = []
    line = name + ":"
    fresh = True  # nothing but the name (or the fold's space) on the line yet
    for token in tokens:
        if not fresh and len(line) + 1 + len(token) > MAX_LINE:
            lines.append(line)
            line, fresh = "", True
        line = f"{line} {token}"
        fresh = False
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


# -- bodies -----------------------------------------------------------------------------------


def text_part(text: str, subtype: str) -> bytes:
    """A text/* entity (headers, blank line, body) in UTF-8: 7bit when it is short-lined
    ASCII, else quoted-printable or base64, whichever is shorter for it. Line ends become
    CRLF, and the body ends with one, as the `email` package does."""
    lines = text.encode("utf-8").splitlines()
    body = b"\n".join(lines) + b"\n"
    high = len(body.translate(None, _ASCII))  # the non-ASCII bytes
    if high == 0 and max(map(len, lines), default=0) <= MAX_LINE:
        cte, encoded = "7bit", body
    elif high * 6 < len(body):  # QP spends 3 bytes on each non-ASCII byte, base64 4/3 on all
        cte, encoded = "quoted-printable", binascii.b2a_qp(body, istext=True)
    else:  # the text in canonical form (CRLF line ends, RFC 2046 4.1.1), as `email` does
        cte, encoded = "base64", base64.encodebytes(body.replace(b"\n", b"\r\n"))
    head = (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n\r\n'
    )
    return head.encode("ascii") + encoded.replace(b"\n", b"\r\n")


class Base64Cache:
    """Attachments' base64, encoded once per document however many recipients get it.

    Keyed by sha256: a decision's PDF goes to thousands of recipients; the digest costs a
    fraction of encoding. Bounded in total size, so memory stays flat across campaigns."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._size = 0
        self._encoded: OrderedDict[str, bytes] = OrderedDict()

    def __call__(self, data: bytes) -> bytes:
        key = hashlib.sha256(data).hexdigest()
        found = self._encoded.get(key)
        if found is not None:
            self._encoded.move_to_end(key)
            return found
        encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
        if len(encoded) <= self.max_bytes:
            self._encoded[key] = encoded
            self._size += len(encoded)
            while self._size > self.max_bytes:
                _, dropped = self._encoded.popitem(last=False)
                self._size -= len(dropped)
        return encoded


BASE64 = Base64Cache()


def attachment_part(filename: str, content_type: str, data: bytes) -> bytes:
    """An attachment entity, base64, with `Content-Disposition: attachment; filename=...`."""
    head = (
        f"Content-Type: {content_type}\r\n".encode("ascii")
        + header("Content-Disposition", ["attachment;", *_filename_params(filename)])
        + b"Content-Transfer-Encoding: base64\r\n\r\n"
    )
    return head + BASE64(data)


def _filename_params(name: str) -> list[str]:
    """`filename="..."`, or RFC 2231 `filename*=utf-8''...` (in numbered sections if long)
    for a name that is not short plain ASCII."""
    if name.isascii() and "=?" not in name and len(name) <= _MAX_QUOTED:
        return ['filename="' + name.replace("\\", "\\\\").replace('"', '\\"') + '"']
    pieces = [chr(b) if b in _ATTRIBUTE_CHARS else f"%{b:02X}" for b in name.encode("utf-8")]
    sections: list[str] = []
    current = "utf-8''"
    for piece in pieces:
        if len(current) + len(piece) > _SECTION_CHARS:
            sections.append(current)
            current = ""
        current += piece
    sections.append(current)
    if len(sections) == 1:
        return [f"filename*={sections[0]}"]
    params = [f"filename*{n}*={value};" for n, value in enumerate(sections)]
    params[-1] = params[-1].rstrip(";")
    return params


def new_boundary() -> str:
    """A boundary no body can contain: "=_" never occurs in quoted-printable (a "=" there is
    followed by hex digits or a line end) nor in base64, and 7bit text would have to hold
    these 128 random bits."""
    return f"=_mf_{secrets.token_hex(16)}"


def multipart(subtype: str, parts: Sequence[bytes], boundary: str) -> tuple[bytes, bytes]:
    """(Content-Type header, body) of a multipart. Each part ends with CRLF, and the CRLF
    before a delimiter belongs to the delimiter (RFC 2046 5.1.1): a part's body is kept
    whole."""
    head = header("Content-Type", [f"multipart/{subtype};", f'boundary="{boundary}"'])
    delimiter = b"--" + boundary.encode("ascii")
    body = b"".join(delimiter + CRLF + part + CRLF for part in parts) + delimiter + b"--" + CRLF
    return head, body
