"""The direct composer (compose.render, mime.py) against the `email` package.

What it makes must parse back, with `email.policy.default`, to the values it was given (cleaned
of control characters): the bodies, parts and attachments exactly as what `EmailMessage` made
of the same message parse back to, the headers to the cleaned values themselves (stricter:
`EmailMessage` sometimes folds away the space between an encoded-word and the next word, so
"Comité —" came back "Comité—"). And it must stay 7-bit with CRLF line ends, so no
caller-supplied value can add a header.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailflow.delivery import mime
from mailflow.delivery.compose import (
    Attachment,
    OutboundMessage,
    clean_header,
    list_headers,
    new_identity,
    render,
)
from tests.compose_reference import render_reference

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def summary(raw: bytes) -> dict[str, Any]:
    """What a reader gets from the bytes: header values, parts, bodies, attachments."""
    mail = message_from_bytes(raw, policy=policy.default)
    assert isinstance(mail, EmailMessage)
    heads: dict[str, Any] = {}
    for name in ("Subject", "Auto-Submitted", "List-Id", "List-Unsubscribe", "References"):
        heads[name] = str(mail[name]) if name in mail else None
    heads["In-Reply-To"] = str(mail["In-Reply-To"]) if "In-Reply-To" in mail else None
    heads["Content-Language"] = str(mail["Content-Language"])
    for name in ("From", "To", "Reply-To"):
        if name in mail:
            (addr,) = mail[name].addresses
            heads[name] = (addr.display_name, addr.addr_spec)
    parts = []
    for part in mail.walk():
        assert isinstance(part, EmailMessage)
        if part.is_multipart():
            parts.append(part.get_content_type())
        elif part.get_content_disposition() == "attachment":
            parts.append((part.get_content_type(), part.get_filename(), part.get_content()))
        else:
            parts.append((part.get_content_type(), part.get_content()))
    heads["parts"] = parts
    heads["defects"] = [type(d).__name__ for p in mail.walk() for d in p.defects]
    return heads


def check_wire(raw: bytes) -> None:
    """7-bit, CRLF only, no line over 998, header lines within 78 unless one long token."""
    assert raw.isascii()
    assert b"\r" not in raw.replace(b"\r\n", b"") and b"\n" not in raw.replace(b"\r\n", b"")
    head, _, _ = raw.partition(b"\r\n\r\n")
    for line in raw.split(b"\r\n"):
        assert len(line) <= 998
    for line in head.split(b"\r\n"):
        assert len(line) <= mime.MAX_LINE or b" " not in line.strip()


def both(message: OutboundMessage) -> tuple[dict[str, Any], dict[str, Any]]:
    identity = new_identity("ipu.example")
    fast = render(message, identity, NOW)
    check_wire(fast)
    return summary(fast), summary(render_reference(message, identity, NOW))


PDF = b"%PDF-1.4\n" + bytes(range(256)) * 400
BASE = OutboundMessage(
    purpose="decision",
    to_address="speaker@parliament.example",
    from_address="committee@ipu.example",
    subject="Decision of the Committee",
    text="Dear Speaker,\n\nThe decision is attached.\n",
)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"html": "<p>Décision</p>"},
        {"to_name": "Fatou Diop", "from_name": "Comité des droits de l'homme"},
        {"to_name": "محمد عبد الله", "subject": "قرار اللجنة بشأن البرلمانيين", "language": "ar"},
        {"to_name": 'Dupont, Jean "le Grand" \\ O.B.E.', "subject": "Re: [IPU] 176th (final)"},
        {"subject": "Décision du Comité — session 176 " * 8, "text": "Très long " * 500},
        {"text": "ligne\r\nautre\rencore\n.\nFrom me\n\x00\x0b end  \n", "html": ""},
        {"subject": "Hi\r\nBcc: victim@x.example\x00", "to_name": "Eve\r\nBcc: x@evil.example"},
        {"subject": "=?utf-8?q?not_encoded?= text", "to_name": "=?utf-8?b?QQ==?="},
        {"in_reply_to": "abc@x.example", "references": ("<a@x>", "junk<>", "<b@x>")},
        {"auto_submitted": "auto-replied", "reply_to": "office@parliament.example"},
        {
            "extra_headers": list_headers(
                "decisions.ipu.example", ["https://u.example/x"], one_click=True
            )
        },
        {
            "attachments": (
                Attachment("décision n° 12 — version française.pdf", "application/pdf", PDF),
            )
        },
        {
            "html": "<p>x</p>",
            "attachments": (
                Attachment("decision.pdf", "application/pdf", PDF),
                Attachment("قرار " * 40 + ".pdf", "text/plain", b"plain\n"),
                Attachment('a "quoted" \\ name.txt', "multipart/mixed", b""),
            ),
        },
    ],
)
def test_parses_back_as_the_email_package_composes(changes: dict[str, Any]) -> None:
    message = OutboundMessage(**{**BASE.__dict__, **changes})
    fast, reference = both(message)
    assert fast["parts"] == reference["parts"]
    assert fast["Subject"] == clean_header(message.subject)[:250]
    assert fast["To"] == (clean_header(message.to_name), message.to_address)
    assert fast["defects"] == []
    same = [k for k in fast if k not in ("parts", "Subject", "To", "From") and k != "defects"]
    assert {k: fast[k] for k in same} == {k: reference[k] for k in same}


@pytest.mark.parametrize(
    "name", ["محمد بن سلمان العبد الله الطويل — رئيس لجنة حقوق الإنسان للبرلمانيين", "é" * 100]
)
def test_long_names_read_back_by_rfc_2047_rules(name: str) -> None:
    """A name too long for one encoded-word takes several; RFC 2047 (6.2) readers drop the
    space between them. (Python 3.11's address parser keeps it: it reads a space too many.)"""
    raw = render(replace(BASE, to_name=name), new_identity("ipu.example"), NOW)
    check_wire(raw)
    folded = message_from_bytes(raw, policy=policy.compat32)["To"]
    phrase, _, _ = " ".join(folded.split()).rpartition(" <")
    assert str(make_header(decode_header(phrase))) == name


def test_attachment_base64_is_encoded_once_per_document() -> None:
    cache = mime.Base64Cache(max_bytes=4 * len(PDF))
    first = cache(PDF)
    assert cache(bytes(PDF)) is first  # equal bytes, another object: found by digest
    assert hashlib.sha256(PDF).hexdigest() in cache._encoded
    for n in range(10):  # bounded: older documents are dropped
        cache(PDF + bytes([n]))
    assert cache._size <= cache.max_bytes


# Values a header may be given: French, Arabic, quotes, specials, control characters and
# things that look like encoded-words; bodies: any text, line ends of every kind.
_HEADER_CHARS = st.one_of(
    st.sampled_from(list("aZ09 .,;:@<>()[]\"\\'=?_-é€ñçمحد\r\n\t\x00\x7f")),
    st.characters(codec="utf-8", exclude_categories=("Cs",)),
)
header_text = st.text(_HEADER_CHARS, max_size=120)
# Names a single encoded-word holds (see mime.phrase); longer ones: test_long_names_...
names = header_text.filter(lambda name: len(clean_header(name).encode()) <= 45)
addresses = st.from_regex(
    r"[a-z0-9](\.?[a-z0-9_+-]){0,20}@[a-z0-9-]{1,20}(\.[a-z]{2,6}){1,2}", fullmatch=True
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    to_name=names,
    from_name=names,
    subject=st.text(_HEADER_CHARS, max_size=300),
    to_address=addresses,
    text=st.text(max_size=400),
    html=st.none() | st.text(max_size=200),
    filename=st.none() | st.text(_HEADER_CHARS, max_size=220),
    language=st.sampled_from(["en", "fr", "ar", "es-419"]),
)
def test_fast_composer_matches_the_email_package(
    to_name: str,
    from_name: str,
    subject: str,
    to_address: str,
    text: str,
    html: str | None,
    filename: str | None,
    language: str,
) -> None:
    attachments = () if filename is None else (Attachment(filename, "application/pdf", b"%PDF"),)
    message = OutboundMessage(
        purpose="decision",
        to_address=to_address,
        from_address="committee@ipu.example",
        subject=subject,
        text=text,
        html=html,
        to_name=to_name,
        from_name=from_name,
        language=language,
        attachments=attachments,
    )
    fast, reference = both(message)
    assert fast["Subject"] == clean_header(subject)[:250]
    assert fast["To"] == (clean_header(to_name), to_address)
    assert fast["From"] == (clean_header(from_name), "committee@ipu.example")
    assert fast["defects"] == []
    assert fast["parts"] == reference["parts"]
    assert fast["Content-Language"] == reference["Content-Language"] == language
