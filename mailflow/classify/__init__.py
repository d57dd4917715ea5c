"""Classification: from a parsed message to the label fields of SCHEMA.md, with reasons.

`classify` is pure: the same message and rules give the same Classification. The kind is
decided in order of certainty: the report form's e-mail, automatic replies and bounces (the
headers and structure of mail programs), spam, then the kinds of human mail. The language and
the content fields follow; every decision leaves `Fired` entries for `mailflow explain`.
"""

from __future__ import annotations

from mailflow.classify.autoreply import detect_auto_reply
from mailflow.classify.bounces import BounceVerdict, detect_bounce
from mailflow.classify.content import extract_content
from mailflow.classify.form import detect_form
from mailflow.classify.kinds import collect_signals, human_kind, spam_verdict
from mailflow.classify.language import detect_language
from mailflow.classify.model import Classification, Fired, FormSubmission
from mailflow.classify.rules import Document, RuleSet
from mailflow.parse.model import ParsedMessage

__all__ = ["Classification", "classify", "document"]


def document(parsed: ParsedMessage) -> Document:
    """The searchable scopes of a message (see SCOPES in rules.py)."""
    return Document(
        {
            "subject": parsed.subject,
            "new_text": parsed.new_text,
            "quoted_text": parsed.quoted_text,
            "text": parsed.text,
            "signature": parsed.signature,
            "attachments": "\n\n".join(a.text for a in parsed.attachments if a.text),
            "forwarded": "\n\n".join(f.text for f in parsed.forwarded if f.text),
            "headers": "\n".join(f"{name}: {value}" for name, value in parsed.headers),
        }
    )


def classify(parsed: ParsedMessage, rules: RuleSet) -> Classification:
    doc = document(parsed)
    kind, form, bounce, fired = _kind(doc, parsed, rules)
    language = detect_language(doc, rules, form=form, content_language=parsed.content_language)
    content = extract_content(doc, parsed, rules, kind=kind, language=language.language, form=form)
    return Classification(
        kind=kind,
        language=language.language,
        case_codes=content.case_codes,
        mp_names=content.mp_names,
        country=content.country,
        violations=content.violations,
        urgent=content.urgent,
        reporter_type=content.reporter_type,
        reporting_parliament=content.reporting_parliament,
        action_types=content.action_types,
        # Bounce fields apply to bounces only (SCHEMA.md).
        bounced_recipients=bounce.recipients if kind == "bounce" else (),
        bounce_type=bounce.bounce_type if kind == "bounce" else None,
        fired=(*fired, *language.fired, *content.fired),
        form=form,
    )


def _kind(
    doc: Document, parsed: ParsedMessage, rules: RuleSet
) -> tuple[str, FormSubmission | None, BounceVerdict, tuple[Fired, ...]]:
    no_bounce = BounceVerdict(False)
    form = detect_form(parsed)
    if form.form is not None:
        return "report", form.form, no_bounce, form.fired
    # A DSN is checked before auto-reply headers: mail systems mark their failure reports
    # `Auto-Submitted: auto-replied` too, and the failed recipients matter more.
    bounce = detect_bounce(doc, parsed, rules)
    if bounce.is_bounce:
        return "bounce", None, bounce, bounce.fired
    auto = detect_auto_reply(doc, rules)
    if auto.is_auto_reply or bounce.success_notice:
        return "auto_reply", None, no_bounce, (*bounce.fired, *auto.fired)
    spam = spam_verdict(doc, rules)
    if spam is not None:
        return "spam", None, no_bounce, spam.fired
    verdict = human_kind(collect_signals(doc, parsed, rules))
    return verdict.kind, None, no_bounce, verdict.fired
