"""The cheap header pass must be total: whatever arrives, it returns, and its text is storable."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from mailflow.headers import basic_headers, clean_text, quick_message_id


def test_decodes_rfc2047_subject_address_and_zone() -> None:
    raw = (
        b"Message-ID: <abc.123@example.org>\r\n"
        b"From: =?utf-8?q?Fatou_Diop?= <Fatou.Diop@Example.ORG>\r\n"
        b"Subject: =?utf-8?b?U2lnbmFsZXIgdW4gcGFybGVtZW50YWlyZSBlbiBkYW5nZXI=?=\r\n"
        b"Date: Tue, 03 Nov 2026 09:15:00 +0300\r\n\r\nbody\r\n"
    )
    headers = basic_headers(raw)
    assert headers.message_id == "<abc.123@example.org>"
    assert headers.subject == "Signaler un parlementaire en danger"
    assert headers.from_address == "fatou.diop@example.org"
    assert headers.date == datetime(2026, 11, 3, 6, 15, tzinfo=UTC)


def test_message_id_is_extracted_from_surrounding_noise() -> None:
    raw = b"Message-ID: junk <id@example.net> (comment)\n\n"
    assert basic_headers(raw).message_id == "<id@example.net>"


def test_missing_and_broken_headers_give_none() -> None:
    headers = basic_headers(b"Date: not a date\nSubject: =?x-unknown?q?abc?=\n\nbody")
    assert headers.date is None
    assert headers.message_id is None
    assert headers.subject is not None  # kept raw rather than dropped


def test_nul_and_control_characters_are_removed() -> None:
    headers = basic_headers(b"Subject: a\x00b\x07c\nMessage-ID: <x\x00y@z>\n\n")
    assert headers.subject == "abc"
    assert headers.message_id is not None and "\x00" not in headers.message_id


def test_clean_text_drops_lone_surrogates_and_caps_length() -> None:
    assert clean_text("a\udcffb") == "a?b"
    assert len(clean_text("x" * 10_000, 50)) == 50


@given(st.binary(max_size=2000))
def test_never_raises_and_returns_storable_text(raw: bytes) -> None:
    headers = basic_headers(raw)
    for value in (headers.message_id, headers.subject, headers.from_address):
        if value is not None:
            assert "\x00" not in value
            value.encode("utf-8")  # no lone surrogates


def test_message_id_is_capped_in_bytes_for_the_index() -> None:
    raw = ("Message-ID: <" + "é" * 900 + "@example.org>\n\n").encode()
    message_id = basic_headers(raw).message_id
    assert message_id is not None and len(message_id.encode()) <= 998


def test_only_the_header_block_is_read() -> None:
    body = b"Subject: not a header\r\n" * 1000
    raw = b"Subject: real\r\nMessage-ID: <h@x>\r\n\r\n" + body
    headers = basic_headers(raw)
    assert headers.subject == "real" and headers.message_id == "<h@x>"
    assert basic_headers(b"Subject: lf only\n\nSubject: body\n").subject == "lf only"


@given(st.binary(max_size=600))
def test_quick_message_id_agrees_with_the_full_parse(noise: bytes) -> None:
    for raw in (
        b"Subject: x\r\nMessage-ID:\r\n <folded@example.org>\r\n\r\n" + noise,
        b"message-id: junk <a@b> (c)\n\n" + noise,
        b"Subject: none\r\n\r\nMessage-ID: <in-body@x>\r\n" + noise,
        noise,
    ):
        assert quick_message_id(raw) == basic_headers(raw).message_id
