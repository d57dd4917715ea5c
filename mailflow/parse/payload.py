"""A part's decoded bytes, without the stdlib's copies for large base64 attachments.

`Message.get_payload(decode=True)` splits a base64 body into lines and joins them again: for a
30 MB attachment that is several transient copies. binascii decodes the ASCII text directly;
anything unusual (non-ASCII, bad padding) goes the stdlib way, which tolerates it.
"""

from __future__ import annotations

import binascii
from email.message import Message


def payload_bytes(part: Message) -> bytes:
    payload = part.get_payload()
    if isinstance(payload, list):
        return b""
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if encoding == "base64" and isinstance(payload, str) and payload.isascii():
        try:
            return binascii.a2b_base64(payload)
        except (binascii.Error, ValueError):
            pass
    decoded = part.get_payload(decode=True)
    return decoded if isinstance(decoded, bytes) else b""
