"""parse_message on hostile and broken input: it returns a ParsedMessage or raises
MessageError (ParseLimitExceeded for limits), never anything else, and stays bounded."""

from __future__ import annotations

import contextlib
import io
import os
import time
import tracemalloc
import zipfile
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailflow.errors import MessageError
from mailflow.parse import ParsedMessage, ParseLimitExceeded, ParseLimits, parse_message
from tests.fixtures.parse.pdf import make_pdf


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


def test_malformed_mime_parameters() -> None:
    message = crlf(
        "Subject: params\nContent-Type: multipart/mixed;; boundary=b; boundary*0*=x'y'%ZZ\n\n"
        "--b\nContent-Type: text/plain; charset*=''%%%; format=;;=;\n\n"
        "body one\n--b\nContent-Type: application/pdf;; name*0*=utf-8'zz'%ZZ%;\n"
        "Content-Disposition: attachment; filename*=utf-8''%E2%80%; size=;\n"
        "Content-Transfer-Encoding: base64\n\n%%%not base64%%%\n--b--\n"
    )
    parsed = parse_message(message)
    assert "body one" in parsed.text
    (attachment,) = parsed.attachments
    assert attachment.declared_type == "application/pdf"


def test_parameters_that_crash_the_stdlib_are_a_message_error() -> None:
    # RFC 2231 "filename*=" mixed with "filename*1=": email.utils.decode_params raises
    # TypeError inside mail-parser; the message is quarantined with that reason.
    message = crlf(
        "Subject: p\nContent-Type: multipart/mixed; boundary=b\n\n--b\n"
        "Content-Type: application/pdf\n"
        "Content-Disposition: attachment; filename*=utf-8''a; filename*1=b\n\nx\n--b--\n"
    )
    with pytest.raises(MessageError, match="MIME parsing failed: TypeError"):
        parse_message(message)


def test_unterminated_boundary_parameter_keeps_the_words() -> None:
    message = crlf(
        'Subject: params\nContent-Type: multipart/mixed; boundary="unterminated\n\n'
        "--unterminated\nContent-Type: text/plain\n\nbody one\n--unterminated--\n"
    )
    parsed = parse_message(message)
    assert "body one" in parsed.text
    assert "multipart without a usable boundary read as text at /" in parsed.defects


def nested(depth: int, leaf: str = "deep") -> bytes:
    head = "".join(
        f"Content-Type: multipart/mixed; boundary=b{level}\n\n--b{level}\n"
        for level in range(depth)
    )
    tail = "".join(f"\n--b{level}--\n" for level in reversed(range(depth)))
    return crlf(f"Subject: nest\n{head}Content-Type: text/plain\n\n{leaf}{tail}")


def test_2000_level_nesting_is_refused_before_parsing() -> None:
    with pytest.raises(ParseLimitExceeded, match="max_depth=50"):
        parse_message(nested(2_000))


def test_2000_level_message_rfc822_nesting_is_refused() -> None:
    message = crlf("Subject: x\nContent-Type: message/rfc822\n\n" * 2_000 + "Subject: y\n\nhi\n")
    with pytest.raises(ParseLimitExceeded, match="max_depth"):
        parse_message(message)


def test_nesting_within_the_limit_parses() -> None:
    parsed = parse_message(nested(40))
    assert parsed.text.strip() == "deep"
    with pytest.raises(ParseLimitExceeded):
        parse_message(nested(40), ParseLimits(max_depth=20))


def test_many_sibling_multiparts_are_wide_not_deep() -> None:
    parts = "".join(
        f"--top\nContent-Type: multipart/alternative; boundary=in{n}\n\n"
        f"--in{n}\nContent-Type: text/plain\n\npart {n}\n--in{n}--\n"
        for n in range(80)
    )
    message = crlf(f"Content-Type: multipart/mixed; boundary=top\n\n{parts}--top--\n")
    parsed = parse_message(message)
    assert "part 79" in parsed.text


def text_message(charset: str, body: bytes, encoding: str = "8bit") -> bytes:
    head = crlf(
        f"Subject: cs\nContent-Type: text/plain; charset={charset}\n"
        f"Content-Transfer-Encoding: {encoding}\n\n"
    )
    return head + body


def test_unknown_charset_decodes_with_a_note() -> None:
    parsed = parse_message(text_message("x-klingon-42", "déjà vu\n".encode("cp1252")))
    assert parsed.text.strip() == "déjà vu"
    assert any("charset x-klingon-42 unknown; decoded as cp1252" in d for d in parsed.defects)


def test_unknown_8bit_charset() -> None:
    parsed = parse_message(text_message("unknown-8bit", b"caf\xe9 \x81\x8d\n"))
    assert parsed.text.startswith("café")
    assert any("decoded as latin-1" in d for d in parsed.defects)


def test_utf7_charset() -> None:
    parsed = parse_message(text_message("utf-7", b"Hi Mom -+Jjo--!\n", "7bit"))
    assert parsed.text.strip() == "Hi Mom -\u263a-!"


def test_broken_utf7_does_not_crash() -> None:
    parsed = parse_message(text_message("utf-7", b"+2D3dDA- +AAA\xff\n"))
    assert isinstance(parsed.text, str)
    parsed.text.encode("utf-8")  # no lone surrogates left


def test_wrong_declared_charset() -> None:
    parsed = parse_message(text_message("iso-8859-1", "Détention à Tunis\n".encode()))
    assert parsed.text.strip() == "Détention à Tunis"
    parsed = parse_message(text_message("us-ascii", "Детали\n".encode("koi8-r")))
    assert isinstance(parsed.text, str) and parsed.text.strip()


def test_non_text_codec_names_are_not_used() -> None:
    parsed = parse_message(text_message("base64", b"aGVsbG8=\n", "7bit"))
    assert parsed.text.strip() == "aGVsbG8="


def test_8bit_and_nul_bytes_in_headers() -> None:
    message = (
        b"From: Jos\xe9 <jose@example.org>\r\nSubject: Arr\xc3\xaat\x00 du d\xc3\xa9put\xc3\xa9\r\n"
        b"X-Junk: \x00\x01\x02\xff\xfe\r\n\r\nbody\x00 text\r\n"
    )
    parsed = parse_message(message)
    assert parsed.subject == "Arrêt du député"
    assert parsed.from_ is not None and parsed.from_.name == "José"
    for _name, value in parsed.headers:
        assert "\x00" not in value
        value.encode("utf-8")
    assert parsed.text.strip() == "body text"


def test_crlf_in_encoded_display_name() -> None:
    message = crlf("From: =?utf-8?q?Ana=0D=0ABcc=3A_x=40evil=2Eexample?= <ana@example.org>\n\nhi\n")
    parsed = parse_message(message)
    assert parsed.from_ is not None
    assert parsed.from_.email == "ana@example.org"
    assert "\n" not in parsed.from_.name and "\r" not in parsed.from_.name


def test_duplicate_from_uses_the_first_and_records_it() -> None:
    message = crlf("From: real@example.org\nFrom: spoof@evil.example\nSubject: x\n\nhi\n")
    parsed = parse_message(message)
    assert parsed.from_ is not None and parsed.from_.email == "real@example.org"
    assert parsed.header_all("from") == ("real@example.org", "spoof@evil.example")
    assert "duplicate from header (2); the first is used" in parsed.defects


def attachment_named(name: str) -> bytes:
    message = EmailMessage()
    message["Subject"] = "names"
    message.set_content("see attached")
    message.add_attachment(b"MZ\x90\x00evil", "application", "octet-stream", filename=name)
    return message.as_bytes()


def test_path_traversal_attachment_name() -> None:
    (attachment,) = parse_message(attachment_named("../../../home/user/.bashrc")).attachments
    assert attachment.original_filename == "../../../home/user/.bashrc"
    assert attachment.filename == "bashrc"
    assert attachment.sniffed_type == "application/x-msdownload"


def test_right_to_left_override_attachment_name() -> None:
    (attachment,) = parse_message(attachment_named("report\u202efdp.exe")).attachments
    assert attachment.original_filename == "report\u202efdp.exe"
    assert attachment.filename == "reportfdp.exe"
    assert attachment.filename.endswith(".exe")


def test_30_mb_attachment_parses_with_bounded_memory() -> None:
    message = EmailMessage()
    message["Subject"] = "big"
    message.set_content("see attached")
    payload = os.urandom(30 * 1024 * 1024)
    message.add_attachment(payload, "application", "octet-stream", filename="big.bin")
    data = message.as_bytes()
    del message
    tracemalloc.start()
    try:
        parsed = parse_message(data)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert parsed.attachments[0].content == payload
    assert peak < 8 * len(data), f"peak {peak / len(data):.1f}x the message size"


def test_zip_bomb_is_never_unpacked() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for n in range(4):
            archive.writestr(f"layer{n}.bin", bytes(64 * 1024 * 1024))
    bomb = buffer.getvalue()
    assert len(bomb) < 1024 * 1024
    message = EmailMessage()
    message["Subject"] = "bomb"
    message.set_content("open me")
    message.add_attachment(bomb, "application", "zip", filename="bomb.zip")
    data = message.as_bytes()
    tracemalloc.start()
    started = time.monotonic()
    try:
        (attachment,) = parse_message(data).attachments
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 5
    assert peak < 20 * len(data)  # 256 MiB inflated would dwarf this
    assert attachment.text == ""
    assert attachment.note.startswith("zip archive not unpacked; 4 entries, 268435456 bytes")


def test_zip_with_a_huge_directory_is_not_listed() -> None:
    eocd = b"PK\x05\x06" + b"\x00" * 6 + (60_000).to_bytes(2, "little") + b"\x00" * 10
    message = EmailMessage()
    message.set_content("x")
    message.add_attachment(b"PK\x03\x04" + b"\x00" * 100 + eocd, "application", "zip")
    (attachment,) = parse_message(message.as_bytes()).attachments
    assert attachment.note == "zip archive not unpacked; 60000 entries"


def test_non_bytes_input_is_a_message_error() -> None:
    with pytest.raises(MessageError):
        parse_message("From: x\n\nhi")  # type: ignore[arg-type]


def test_library_exceptions_become_message_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    import mailparser

    for error in (ValueError("v"), TypeError("t"), LookupError("l"), AssertionError("a")):

        def boom(*_args: object, error: Exception = error) -> None:
            raise error

        monkeypatch.setattr(mailparser, "MailParser", boom)
        with pytest.raises(MessageError, match=f"MIME parsing failed: {type(error).__name__}"):
            parse_message(b"Subject: x\r\n\r\nhi\r\n")

    def recurse(*_args: object) -> None:
        raise RecursionError

    monkeypatch.setattr(mailparser, "MailParser", recurse)
    with pytest.raises(ParseLimitExceeded, match="max_depth"):
        parse_message(b"Subject: x\r\n\r\nhi\r\n")


def test_pdf_bomb_pages_are_limited() -> None:
    message = EmailMessage()
    message.set_content("x")
    message.add_attachment(make_pdf("one page"), "application", "pdf", filename="a.pdf")
    parsed = parse_message(message.as_bytes(), ParseLimits(max_pdf_pages=0))
    assert parsed.attachments[0].text == ""
    assert "first 0 of 1 pages" in parsed.attachments[0].note


def test_empty_and_garbage_input() -> None:
    for data in (b"", b"\x00" * 100, b"\xff\xfe" * 50, b"--\r\n--\r\n", b":\r\n\r\n", b"\r\n"):
        assert isinstance(parse_message(data), ParsedMessage)


# --- property tests: mutations of valid messages -------------------------------------------


def seeds() -> list[bytes]:
    alternative = EmailMessage()
    alternative["From"] = "Ana <ana@example.org>"
    alternative["Subject"] = "Détention"
    alternative.set_content("Plain text.\n\nOn Mon, X wrote:\n> q\n")
    alternative.add_alternative("<p>HTML <b>text</b></p>", subtype="html")
    alternative.add_attachment(make_pdf("facts"), "application", "pdf", filename="f.pdf")
    forward = EmailMessage()
    forward["Subject"] = "Fwd"
    forward.set_content("see below")
    forward.add_attachment(alternative)
    dsn = (
        "From: MAILER-DAEMON@x\nContent-Type: multipart/report; boundary=B\n\n--B\n\nbounced\n"
        "--B\nContent-Type: message/delivery-status\n\nStatus: 5.1.1\n\n"
        "--B\nContent-Type: text/rfc822-headers\n\nMessage-ID: <a@b>\n--B--\n"
    )
    return [alternative.as_bytes(), forward.as_bytes(), crlf(dsn)]


SEEDS = seeds()


def mutate(data: bytes, draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["flip", "truncate", "duplicate", "boundary", "splice"]))
    if kind == "flip" and data:
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 20))):
            out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
        return bytes(out)
    if kind == "truncate":
        return data[: draw(st.integers(0, len(data)))]
    if kind == "duplicate":
        end = data.find(b"\n\n") if b"\r\n\r\n" not in data else data.find(b"\r\n\r\n")
        lines = data[: max(end, 0)].splitlines(keepends=True) or [b"X: y\n"]
        line = draw(st.sampled_from(lines))
        return line * draw(st.integers(1, 50)) + data
    if kind == "boundary":
        cut = draw(st.sampled_from([b"--", b"boundary=", b"Content-Type:", b"\n\n", b"\r\n"]))
        repl = draw(st.sampled_from([b"", b"-", b"--==x", b"\x00", b"multipart/mixed;"]))
        return data.replace(cut, repl, draw(st.integers(1, 5)))
    start = draw(st.integers(0, len(data)))
    return data[:start] + draw(st.binary(max_size=200)) + data[start:]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 3))):
        data = mutate(data, draw)
    return data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_messages_parse_or_raise_message_error(data: bytes) -> None:
    try:
        parsed = parse_message(data)
    except MessageError:
        return
    assert isinstance(parsed, ParsedMessage)
    for text in (parsed.text, parsed.new_text, parsed.subject, *(v for _k, v in parsed.headers)):
        text.encode("utf-8")  # no lone surrogates
        assert "\x00" not in text


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2_000))
def test_arbitrary_bytes_parse_or_raise_message_error(data: bytes) -> None:
    with contextlib.suppress(MessageError):
        parse_message(data)
