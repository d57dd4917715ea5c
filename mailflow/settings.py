"""The configuration as typed, frozen values: the single source of truth for every key.

Each field carries its documentation in ``metadata["doc"]``. The loader (``config.py``) validates
a TOML file and the environment against these classes, and ``mailflow config example`` renders
the documented example file from them, so the docs cannot drift from the code.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mailflow.secret import Secret


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses: where plaintext and no-AUTH are acceptable."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def doc(text: str, default: Any, *, env: bool = True) -> Any:
    """A field with its documentation; ``env=False`` means no MAILFLOW_* override exists."""
    return field(default=default, metadata={"doc": text, "env": env})


@dataclass(frozen=True)
class ServiceSettings:
    data_dir: Path = doc(
        "Directory for the SQLite database, the outbound Maildir and spooled files. "
        "Relative paths are taken from the config file's directory.",
        Path("mailflow-data"),
    )
    log_level: Literal["debug", "info", "warning", "error"] = doc(
        "Least severe log level written to stderr.", "info"
    )
    log_format: Literal["text", "json"] = doc(
        "'text' writes key=value lines for people, 'json' one object per line for collectors.",
        "text",
    )
    rules_dir: Path = doc(
        "Classification rules (rules/README.md). Empty means the rules/ directory shipped "
        "beside the package. A bad rule file stops the start, naming the file and the rule.",
        Path(""),
    )


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = doc(
        "SQLAlchemy URL. Empty means a SQLite file in data_dir. For PostgreSQL: "
        "postgresql+psycopg://user@host/dbname (password from MAILFLOW_DATABASE_URL or "
        "~/.pgpass, never this file).",
        "",
    )
    busy_timeout_ms: int = doc(
        "SQLite only: how long a writer waits for a lock before giving up.", 5000
    )
    auto_upgrade: bool = doc(
        "Apply pending schema migrations when the service starts. Set false where "
        "a DBA runs 'mailflow db upgrade' by hand.",
        True,
    )


@dataclass(frozen=True)
class SmtpIntakeSettings:
    enabled: bool = doc("Accept mail over SMTP (or LMTP) from an MTA or a web form.", True)
    host: str = doc(
        "Address to listen on. Reports carry sensitive data: off loopback, set tls_cert and "
        "tls_key (and usually require_starttls); a non-loopback address without them is "
        "allowed but logs a warning at start.",
        "127.0.0.1",
    )
    port: int = doc("TCP port to listen on.", 2525)
    protocol: Literal["smtp", "lmtp"] = doc(
        "'lmtp' for delivery from Postfix/Exim as a local mailbox.", "smtp"
    )
    recipients: tuple[str, ...] = doc(
        "Report addresses accepted (case-insensitive); others get 550. Empty accepts any "
        "recipient, which is only sensible on loopback.",
        (),
    )
    max_message_bytes: int = doc("Larger messages are refused with 552.", 50 * 1024 * 1024)
    hostname: str = doc("Name announced in the SMTP greeting. Empty uses the host name.", "")
    tls_cert: Path = doc(
        "PEM certificate chain (server certificate first) offered with STARTTLS. Set together "
        "with tls_key; empty means no STARTTLS. Read at start: restart after renewing it.",
        Path(""),
    )
    tls_key: Path = doc(
        "PEM private key of tls_cert, not encrypted; make it readable by the service user only.",
        Path(""),
    )
    require_starttls: bool = doc(
        "Refuse MAIL with 530 until the client has issued STARTTLS. Needs tls_cert.", False
    )
    auth_username: str = doc(
        "When set, every message needs AUTH (PLAIN or LOGIN) with this name and "
        "auth_password; MAIL before AUTH gets 530. AUTH is offered only after STARTTLS, "
        "except when host is a loopback address (a local web form). Empty: no AUTH.",
        "",
    )
    auth_password: Secret | None = doc(
        "Password for auth_username: set auth_password_env or auth_password_file, never the "
        "password itself. Default variable: MAILFLOW_SMTP_INTAKE_AUTH_PASSWORD.",
        None,
    )

    @property
    def tls(self) -> bool:
        """Whether STARTTLS is configured (an empty path reads back as ".")."""
        return str(self.tls_cert) not in ("", ".")


@dataclass(frozen=True)
class OutboundSettings:
    from_address: str = doc("Sender of acknowledgements and campaigns.", "mailflow@localhost")
    maildir: Path = doc(
        "Where outbound mail is written while no relay is configured. Empty means data_dir/outbox.",
        Path(""),
    )
    relay_host: str = doc("SMTP relay (smarthost). Empty writes outbound mail to the Maildir.", "")
    relay_port: int = doc("Relay port: 587 for STARTTLS, 465 for TLS.", 587)
    relay_security: Literal["starttls", "tls", "none"] = doc(
        "How to protect the relay connection. 'none' is refused unless the relay is on "
        "loopback: credentials and reporters' data must not cross a network in clear.",
        "starttls",
    )
    relay_username: str = doc("Relay login; empty means no AUTH.", "")
    relay_password: Secret | None = doc(
        "Relay password: set relay_password_env or relay_password_file, never the "
        "password itself. Default variable: MAILFLOW_OUTBOUND_RELAY_PASSWORD.",
        None,
    )
    bounce_domain: str = doc(
        "Domain of the envelope sender (return path) bounces+TOKEN@bounce_domain, one token "
        "per recipient, so a bounce names the delivery it is about. It must deliver back to "
        "mailflow's intake. Empty uses the domain of from_address.",
        "",
    )
    retry_for_hours: int = doc(
        "How long a message the relay refuses temporarily (4xx, connection failure) is "
        "retried, counted from when it was queued; then it is marked failed.",
        120,
    )
    retry_initial_seconds: int = doc(
        "Wait before the first retry; each further retry waits twice as long as the one "
        "before, up to retry_max_seconds.",
        300,
    )
    retry_max_seconds: int = doc("Longest wait between two retries.", 4 * 3600)
    send_interval_seconds: int = doc(
        "How often the service's delivery worker looks for messages due to be sent.", 30
    )
    batch_size: int = doc(
        "Rows a delivery worker claims per transaction, shared by its connections. Rows "
        "claimed and not yet sent when it stops are given back at once; after a crash they "
        "wait for sending_lease_seconds. Lower it if several workers share a small queue.",
        500,
    )
    connections: int = doc(
        "Relay connections used at once, each reused across messages with one message in "
        "flight at a time. A crash can send at most one message per connection twice.",
        4,
    )
    rate_per_second: int = doc(
        "Most messages sent per second by one worker (mailflow send, or the service), "
        "across every connection, with bursts of up to one second's worth; 0: no limit.",
        0,
    )
    domain_rate_per_minute: int = doc(
        "Most messages per minute to any one recipient domain, per worker, with bursts of "
        "up to a tenth of that; messages over the limit wait in the queue, none is dropped. "
        "0: no limit.",
        0,
    )
    sending_lease_seconds: int = doc(
        "How long a message being sent belongs to the worker that took it. One left "
        "'sending' by a crashed worker is sent again after this; keep it well above the "
        "time one batch takes to send.",
        600,
    )
    dkim_key_file: Path = doc(
        "PEM RSA private key to DKIM-sign outbound mail with (needs the 'dkim' extra: "
        "pip install mailflow[dkim]). Empty: no signing.",
        Path(""),
    )
    dkim_selector: str = doc(
        "DKIM selector: the public key is published at <selector>._domainkey.<dkim_domain>.",
        "",
    )
    dkim_domain: str = doc("DKIM signing domain (d=). Empty uses the domain of from_address.", "")
    templates_dir: Path = doc(
        "Directory of the e-mail templates: <purpose>/<language>.txt (and optional .html). "
        "Empty uses the templates shipped with mailflow.",
        Path(""),
    )


@dataclass(frozen=True)
class AcknowledgementSettings:
    enabled: bool = doc(
        "Acknowledge new reports and action reports by e-mail, in the sender's language, "
        "with their reference. Until a relay is configured they wait in the local outbox.",
        True,
    )
    from_address: str = doc(
        "Sender of acknowledgements. Empty uses outbound.from_address.",
        "",
    )
    window_hours: int = doc(
        "At most one acknowledgement per sender address within this many hours, so a "
        "sender writing often (or an unnoticed mail loop) gets one, not one per message.",
        24,
    )
    reference_prefix: str = doc(
        "Put before the reference in the subject tag, e.g. '[Ref. R-2026-000123]', so a "
        "reply quoting the subject can be tied to its report. Keep it neutral: the subject "
        "shows on lock screens and notifications.",
        "Ref.",
    )
    quote_subject: bool = doc(
        "Answer under 'Re: <the sender's subject>' instead of the reference tag alone. Off "
        "by default: a subject naming a person or an event shows on a lock screen, and an "
        "acknowledgement must say nothing that would endanger a reporter.",
        False,
    )


@dataclass(frozen=True)
class CampaignSettings:
    from_address: str = doc("Sender of campaigns. Empty uses outbound.from_address.", "")
    from_name: str = doc(
        "Display name of the campaigns' sender.",
        "IPU Committee on the Human Rights of Parliamentarians",
    )
    list_id_domain: str = doc(
        "Domain of the List-Id header of campaign mail (<c12-name.lists.DOMAIN>), which lets "
        "recipients' mail systems file and filter a mailing. Empty uses the bounce domain.",
        "",
    )
    unsubscribe_url_base: str = doc(
        "HTTPS address the opt-out token is appended to (https://example.org/unsubscribe/), "
        "for the one-click List-Unsubscribe of RFC 8058. Empty: the mailto form alone "
        "(unsubscribe+TOKEN@bounce domain), which needs no web server.",
        "",
    )
    official_roles: tuple[str, ...] = doc(
        "Recipient roles written to as official correspondents (a parliament, a ministry, an "
        "embassy): no List-Unsubscribe, since the Committee must be able to reach them. Every "
        "other role (media, NGOs, MPs...) is a bulk audience and gets one. A confidential "
        "decision is mailed to these roles only.",
        ("speaker", "ipu_group", "hr_committee", "mfa", "ambassador"),
    )
    attach_documents: bool = doc(
        "Attach the decision's documents (in the recipient's language, else English, else "
        "French). False links to them instead, under document_url_base.",
        True,
    )
    document_url_base: str = doc(
        "Address the documents are published under when not attached: a link is this, the "
        "document's sha256 and its file name (https://example.org/decisions/SHA256/NAME).",
        "",
    )
    batch_size: int = doc("Recipients queued per transaction by `campaign send`.", 500)
    reminder_after_days: int = doc(
        "Days after a campaign was sent before a parliament that has sent no action report "
        "is reminded (`mailflow campaign remind`).",
        60,
    )
    reminder_every_days: int = doc("At most one reminder per parliament in this many days.", 30)
    reminder_max: int = doc("Most reminders a parliament gets for one campaign.", 2)


@dataclass(frozen=True)
class ImapAccountSettings:
    name: str = doc("Short unique name used in logs, status and checkpoints.", "", env=False)
    host: str = doc("IMAP server.", "", env=False)
    port: int = doc("993 for TLS, 143 for STARTTLS or plain.", 993, env=False)
    security: Literal["tls", "starttls", "plain"] = doc(
        "'tls' (IMAPS) or 'starttls'; a failed STARTTLS is an error, never a fallback. "
        "'plain' is refused unless host is a loopback address.",
        "tls",
        env=False,
    )
    tls_ca_file: Path = doc(
        "PEM file of the CA certificate(s) that sign the server's certificate, used instead "
        "of the system's CAs (a private CA). Empty means the system's CAs.",
        Path(""),
        env=False,
    )
    username: str = doc("Login name.", "", env=False)
    auth: Literal["password", "oauth2"] = doc(
        "'oauth2' uses XOAUTH2 with oauth2_token.", "password", env=False
    )
    password: Secret | None = doc(
        "Set password_env or password_file (re-read at every connection). Default variable: "
        "MAILFLOW_IMAP_<NAME>_PASSWORD.",
        None,
        env=False,
    )
    oauth2_token: Secret | None = doc(
        "Set oauth2_token_file (re-read at every connection) or oauth2_token_command (run "
        "again at every connection, so an expired token is replaced).",
        None,
        env=False,
    )
    folders: tuple[str, ...] = doc("Folders to poll.", ("INBOX",), env=False)
    after_commit: Literal["none", "flag", "move"] = doc(
        "What to do with a message once it is stored: nothing, set a flag, or move it. "
        "mailflow never deletes.",
        "none",
        env=False,
    )
    move_to: str = doc("Folder for after_commit = 'move'.", "", env=False)
    poll_interval_seconds: int = doc("Seconds between polls of this account.", 60, env=False)
    batch_size: int = doc(
        "Messages fetched and committed per batch (and at most 8 MiB of them): one commit, "
        "one fsync, per batch.",
        400,
        env=False,
    )


@dataclass(frozen=True)
class Settings:
    """The whole configuration. ``source`` is the file it came from, if any."""

    service: ServiceSettings = field(default_factory=ServiceSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    smtp_intake: SmtpIntakeSettings = field(default_factory=SmtpIntakeSettings)
    outbound: OutboundSettings = field(default_factory=OutboundSettings)
    acknowledgement: AcknowledgementSettings = field(default_factory=AcknowledgementSettings)
    campaigns: CampaignSettings = field(default_factory=CampaignSettings)
    imap_accounts: tuple[ImapAccountSettings, ...] = ()
    source: Path | None = None

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{self.service.data_dir / 'mailflow.db'}"

    @property
    def outbox_dir(self) -> Path:
        if str(self.outbound.maildir) not in ("", "."):
            return self.outbound.maildir
        return self.service.data_dir / "outbox"

    @property
    def rules_dir(self) -> Path:
        if str(self.service.rules_dir) not in ("", "."):
            return self.service.rules_dir
        return Path(__file__).resolve().parent.parent / "rules"

    @property
    def templates_dir(self) -> Path:
        if str(self.outbound.templates_dir) not in ("", "."):
            return self.outbound.templates_dir
        # The templates/ directory beside the package (a source checkout or editable install).
        return Path(__file__).resolve().parent.parent / "templates"

    @property
    def bounce_domain(self) -> str:
        if self.outbound.bounce_domain:
            return self.outbound.bounce_domain.strip().lower()
        return self.outbound.from_address.rpartition("@")[2].strip().lower()

    @property
    def ack_from_address(self) -> str:
        return self.acknowledgement.from_address or self.outbound.from_address


SECTIONS: dict[str, type[Any]] = {
    "service": ServiceSettings,
    "database": DatabaseSettings,
    "smtp_intake": SmtpIntakeSettings,
    "outbound": OutboundSettings,
    "acknowledgement": AcknowledgementSettings,
    "campaigns": CampaignSettings,
}
ACCOUNT_LIST = "imap_accounts"
