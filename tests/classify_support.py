"""Shared by the classification tests: a rule set of the kind concerns only, and a
ParsedMessage builder with only what a test needs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mailflow.classify.rules import RuleSet
from mailflow.parse.model import Address, ParsedMessage

RULES_DIR = Path(__file__).resolve().parent.parent / "rules"
MY_RULES = ("kinds", "spam", "autoreply", "bounces", "language")


def kind_rules(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    """Only this concern's rule files, so a colleague's file in progress cannot break these."""
    directory = tmp_path_factory.mktemp("rules")
    for name in MY_RULES:
        shutil.copy(RULES_DIR / f"{name}.toml", directory)
    return RuleSet.load(directory)


def msg(
    subject: str = "",
    new_text: str = "",
    *,
    text: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
    sender: str = "someone@example.org",
    to: str = "hrp-intake@ipu.example",
    **fields: object,
) -> ParsedMessage:
    """A ParsedMessage as the parser would give it, with only what a test needs."""
    name, _, email = sender.rpartition(" ")
    address = Address(name, email.strip("<>")) if name else Address("", sender)
    base: dict[str, object] = {
        "message_id": "m1@example.org",
        "in_reply_to": None,
        "references": (),
        "subject": subject,
        "from_": address,
        "sender": None,
        "reply_to": (),
        "to": (Address("", to),),
        "cc": (),
        "date": None,
        "headers": (("from", sender), ("to", to), ("subject", subject), *headers),
        "content_type": "text/plain",
        "content_language": "",
        "text": new_text if text is None else text,
        "new_text": new_text,
        "quoted_text": "",
        "signature": "",
        "html_converted": False,
        "forwarded": (),
        "attachments": (),
        "delivery_status": "",
        "returned_headers": "",
        "defects": (),
    }
    base.update(fields)
    return ParsedMessage(**base)  # type: ignore[arg-type]
