"""Helpers for the content-extraction tests: a ParsedMessage from a few fields, and one call."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from mailflow.classify import document
from mailflow.classify.content import ContentFindings, extract_content
from mailflow.classify.model import FormSubmission
from mailflow.classify.rules import RuleSet
from mailflow.parse.model import Address, Attachment, ParsedMessage

RULES = RuleSet.load(Path(__file__).resolve().parents[1] / "rules")


def message(
    new_text: str,
    *,
    subject: str = "",
    quoted: str = "",
    signature: str = "",
    sender: str = "A Writer <writer@example.org>",
    attachment_text: str = "",
    date: datetime | None = None,
) -> ParsedMessage:
    name, _, email = sender.partition(" <")
    attachments = ()
    if attachment_text:
        attachments = (
            Attachment(
                0,
                "report.pdf",
                "report.pdf",
                "application/pdf",
                "application/pdf",
                10,
                "0" * 64,
                b"",
                attachment_text,
            ),
        )
    return ParsedMessage(
        message_id="m1@example.org",
        in_reply_to=None,
        references=(),
        subject=subject,
        from_=Address(name, email.rstrip(">")),
        sender=None,
        reply_to=(),
        to=(),
        cc=(),
        date=date or datetime(2025, 5, 1, 9, 0, tzinfo=UTC),
        headers=(),
        content_type="text/plain",
        content_language="",
        text=new_text + quoted,
        new_text=new_text,
        quoted_text=quoted,
        signature=signature,
        html_converted=False,
        forwarded=(),
        attachments=attachments,
        delivery_status="",
        returned_headers="",
        defects=(),
    )


def extract(
    parsed: ParsedMessage, kind: str = "report", form: FormSubmission | None = None
) -> ContentFindings:
    return extract_content(document(parsed), parsed, RULES, kind=kind, language=None, form=form)


def form(**fields: str) -> FormSubmission:
    """A form submission; keyword names are the labels with spaces as underscores."""
    return FormSubmission(tuple((k.replace("_", " "), v) for k, v in fields.items()), "en")
