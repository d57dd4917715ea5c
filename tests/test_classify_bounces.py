"""Bounces: RFC 3464 DSNs and the common non-standard reports, recipients and hard/soft."""

from __future__ import annotations

import pytest

from mailflow.classify import classify
from mailflow.classify.bounces import parse_delivery_status
from mailflow.classify.rules import RuleSet
from mailflow.parse import parse_message
from mailflow.parse.model import ParsedMessage
from tests.classify_support import kind_rules, msg


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    return kind_rules(tmp_path_factory)


DAEMON = "Mail Delivery System <MAILER-DAEMON@mx.sender.test>"
TWO_BLOCKS = """Reporting-MTA: dns; mx.sender.test
Arrival-Date: Tue, 3 Mar 2026 10:00:00 +0100

Final-Recipient: rfc822; First.Clerk@Assembly.test
Original-Recipient: rfc822;first.clerk@assembly.test
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <first.clerk@assembly.test>:
 Recipient address rejected: User unknown

Final-Recipient: rfc822; desk@senate.test
Action: delayed
Status: 4.4.1
Diagnostic-Code: X-Postfix; connect to mx.senate.test: Connection timed out
"""


def dsn(
    delivery_status: str, subject: str = "Undelivered Mail Returned to Sender"
) -> ParsedMessage:
    return msg(
        subject,
        "This is the mail system at host mx.sender.test.\n\nYour message could not be delivered.",
        sender=DAEMON,
        content_type="multipart/report",
        delivery_status=delivery_status,
        headers=(("auto-submitted", "auto-replied"),),
    )


def test_delivery_status_blocks_are_read_per_recipient() -> None:
    blocks = parse_delivery_status(TWO_BLOCKS)
    assert [(b.address, b.action, b.status) for b in blocks] == [
        ("first.clerk@assembly.test", "failed", "5.1.1"),
        ("desk@senate.test", "delayed", "4.4.1"),
    ]


def test_dsn_with_two_recipients_one_failed_is_hard(rules: RuleSet) -> None:
    result = classify(dsn(TWO_BLOCKS), rules)
    assert result.kind == "bounce"
    assert result.bounced_recipients == ("first.clerk@assembly.test", "desk@senate.test")
    assert result.bounce_type == "hard"
    rules_fired = {f.rule for f in result.fired}
    assert "bounces.delivery_status" in rules_fired
    assert any(f.field == "bounce_type" and f.value == "hard" for f in result.fired)


def test_delay_notice_is_a_soft_bounce_despite_auto_submitted(rules: RuleSet) -> None:
    delayed = TWO_BLOCKS.split("\n\n", 2)[2]  # the delayed block alone
    result = classify(
        dsn("Reporting-MTA: dns; mx\n\n" + delayed, "Delivery Status Notification (Delay)"), rules
    )
    assert (result.kind, result.bounced_recipients, result.bounce_type) == (
        "bounce",
        ("desk@senate.test",),
        "soft",
    )


def test_success_dsn_is_not_a_bounce(rules: RuleSet) -> None:
    delivered = (
        "Reporting-MTA: dns; mx\n\n"
        "Final-Recipient: rfc822; a@b.test\nAction: delivered\nStatus: 2.0.0\n"
    )
    result = classify(dsn(delivered, "Delivery Status Notification (Success)"), rules)
    assert result.kind == "auto_reply"
    assert result.bounced_recipients == () and result.bounce_type is None


def test_qmail_failure_notice_with_two_recipients(rules: RuleSet) -> None:
    body = (
        "Hi. This is the qmail-send program at mail.house.test.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        "<Speaker@house.test>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n"
        "<intl@house.test>:\nThis address no longer accepts mail. (#5.1.1)\n\n"
        "--- Below this line is a copy of the message.\n\n"
        "From: Secretariat <hrp-intake@ipu.example>\nTo: <other@house.test>\n"
        "Subject: Request\n\nPlease write to <cc@house.test>: thanks.\n"
    )
    result = classify(msg("failure notice", body, sender="MAILER-DAEMON@mail.house.test"), rules)
    assert result.kind == "bounce"
    assert result.bounced_recipients == ("speaker@house.test", "intl@house.test")
    assert result.bounce_type == "hard"


def test_exim_report_lists_indented_addresses(rules: RuleSet) -> None:
    body = (
        "This message was created automatically by mail delivery software.\n\n"
        "A message that you sent could not be delivered to one or more of its\n"
        "recipients. This is a permanent error. The following address(es) failed:\n\n"
        "  clerk@majlis.test\n    host mx.majlis.test [192.0.2.1]\n"
        "    SMTP error from remote mail server after RCPT TO:<clerk@majlis.test>:\n"
        "    550 5.1.1 User unknown\n"
        "  ir@majlis.test\n    Unrouteable address\n\n"
        "------ This is a copy of the message, including all the headers. ------\n"
        "To: someone.else@majlis.test\n"
    )
    result = classify(
        msg(
            "Mail delivery failed: returning message to sender",
            body,
            sender="Mail Delivery System <Mailer-Daemon@mx.sender.test>",
        ),
        rules,
    )
    assert result.bounced_recipients == ("clerk@majlis.test", "ir@majlis.test")
    assert result.bounce_type == "hard"


def test_exim_delay_warning_is_soft(rules: RuleSet) -> None:
    body = (
        "This message was created automatically by mail delivery software.\n"
        "A message that you sent has not yet been delivered to one or more of its\n"
        "recipients after more than 24 hours on the queue on mx.sender.test.\n\n"
        "The address to which the message has not yet been delivered is:\n\n"
        "  office@parliament.test\n    Delay reason: connection timed out\n\n"
        "No action is required on your part. Delivery attempts will continue.\n"
    )
    result = classify(
        msg(
            "Warning: message 1abc delayed 24 hours",
            body,
            sender="Mail Delivery System <Mailer-Daemon@mx.sender.test>",
        ),
        rules,
    )
    assert (result.bounced_recipients, result.bounce_type) == (("office@parliament.test",), "soft")


def test_office365_ndr_names_the_recipient_and_mailbox_full_5_x_is_hard(rules: RuleSet) -> None:
    body = (
        "Your message to relations@congress.test couldn't be delivered.\n\n"
        "The recipient's mailbox is full and can't accept messages now.\n\n"
        "hrp-intake        Office 365        relations\nSender            Action Required\n\n"
        "Diagnostic information for administrators:\n\nGenerating server: AB1CD.prod.test\n\n"
        "relations@congress.test\n"
        "Remote Server returned '552 5.2.2 STOREDRV.Deliver; mailbox full'\n\n"
        "Original message headers:\n\nTo: someone@else.test\n"
    )
    result = classify(
        msg(
            "Undeliverable: Follow-up",
            body,
            sender="Microsoft Outlook <postmaster@congress.test>",
            headers=(("x-ms-exchange-message-is-ndr", ""),),
        ),
        rules,
    )
    assert (result.kind, result.bounced_recipients, result.bounce_type) == (
        "bounce",
        ("relations@congress.test",),
        "hard",
    )


def test_exchange_recipient_list_with_mailto_links(rules: RuleSet) -> None:
    body = (
        "Delivery has failed to these recipients or groups:\n\n"
        "Chief Clerk<mailto:Chief.Clerk@house.test>\n"
        "The email address you entered couldn't be found.\n\n"
        "Diagnostic information for administrators:\n"
    )
    result = classify(msg("Undeliverable: Decisions", body, sender="postmaster@house.test"), rules)
    assert result.bounced_recipients == ("chief.clerk@house.test",)


def test_french_exchange_ndr(rules: RuleSet) -> None:
    body = (
        "Votre message à greffe@assemblee.test n'a pas pu être remis.\n\n"
        "greffe est introuvable sur assemblee.test.\n\n"
        "Le serveur distant a retourné '550 5.1.10 RESOLVER.ADR.RecipientNotFound'\n"
    )
    result = classify(
        msg(
            "Non remis : Décisions du Comité",
            body,
            sender="Microsoft Outlook <postmaster@assemblee.test>",
        ),
        rules,
    )
    assert (result.kind, result.bounced_recipients, result.bounce_type) == (
        "bounce",
        ("greffe@assemblee.test",),
        "hard",
    )


def test_x_failed_recipients_header(rules: RuleSet) -> None:
    body = (
        "** Address not found **\n\n"
        "Your message wasn't delivered because the address couldn't be found."
    )
    result = classify(
        msg(
            "Delivery Status Notification (Failure)",
            body,
            sender="Mail Delivery Subsystem <mailer-daemon@mail.test>",
            headers=(("x-failed-recipients", "Press.Desk@news.test, b@news.test"),),
        ),
        rules,
    )
    assert result.bounced_recipients == ("press.desk@news.test", "b@news.test")
    assert result.bounce_type == "hard"


def test_gmail_temporary_problem_is_soft(rules: RuleSet) -> None:
    body = (
        "** Delivery incomplete **\n\nThere was a temporary problem delivering your message to "
        "info@chamber.test. Gmail will retry for 46 more hours.\n"
    )
    result = classify(
        msg(
            "Delivery Status Notification (Delay)",
            body,
            sender="Mail Delivery Subsystem <mailer-daemon@mail.test>",
        ),
        rules,
    )
    assert (result.bounced_recipients, result.bounce_type) == (("info@chamber.test",), "soft")


def test_sendmail_permanent_fatal_errors(rules: RuleSet) -> None:
    body = (
        "The original message was received at Mon, 2 Mar 2026 from [192.0.2.9]\n\n"
        "   ----- The following addresses had permanent fatal errors -----\n"
        "<nobody@senado.test>\n    (reason: 550 5.1.1 User unknown)\n\n"
        "   ----- Transcript of session follows -----\n"
    )
    result = classify(
        msg(
            "Returned mail: see transcript for details",
            body,
            sender="Mail Delivery Subsystem <MAILER-DAEMON@relay.test>",
        ),
        rules,
    )
    assert (result.bounced_recipients, result.bounce_type) == (("nobody@senado.test",), "hard")


def test_our_own_address_is_never_a_failed_recipient(rules: RuleSet) -> None:
    body = (
        "Your message to hrp-intake@ipu.example couldn't be delivered.\n"
        "<hrp-intake@ipu.example>: 550 5.1.1"
    )
    result = classify(msg("Undeliverable: x", body, sender="postmaster@relay.test"), rules)
    assert result.kind == "bounce"
    assert "hrp-intake@ipu.example" not in result.bounced_recipients


def test_person_writing_about_returned_mail_is_not_a_bounce(rules: RuleSet) -> None:
    result = classify(
        msg(
            "Returned mail",
            "Dear colleagues, the letter you sent us came back to "
            "our office by post last week. Could you send it again?",
            sender="Ana <ana@example.org>",
        ),
        rules,
    )
    assert result.kind != "bounce"
    assert result.bounced_recipients == () and result.bounce_type is None


RAW_DSN = b"""From: MAILER-DAEMON@out.sender.test (Mail Delivery System)\r
To: hrp-intake@ipu.example\r
Subject: Undelivered Mail Returned to Sender\r
Message-ID: <dsn1@out.sender.test>\r
MIME-Version: 1.0\r
Content-Type: multipart/report; report-type=delivery-status; boundary="BB"\r
\r
--BB\r
Content-Type: text/plain\r
\r
I'm sorry to have to inform you that your message could not\r
be delivered to one or more recipients.\r
\r
<clerk@house.test>: host mx.house.test said: 550 5.1.1 unknown\r
--BB\r
Content-Type: message/delivery-status\r
\r
Reporting-MTA: dns; out.sender.test\r
\r
Final-Recipient: rfc822; clerk@house.test\r
Action: failed\r
Status: 5.1.1\r
--BB--\r
"""


def test_raw_dsn_through_the_parser(rules: RuleSet) -> None:
    result = classify(parse_message(RAW_DSN), rules)
    assert (result.kind, result.bounced_recipients, result.bounce_type) == (
        "bounce",
        ("clerk@house.test",),
        "hard",
    )
    assert result.language == "en"
