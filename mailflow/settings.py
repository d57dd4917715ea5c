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


SECTIONS: dict[str, type[Any]] = {
    "service": ServiceSettings,
    "database": DatabaseSettings,
    "smtp_intake": SmtpIntakeSettings,
    "outbound": OutboundSettings,
}
ACCOUNT_LIST = "imap_accounts"
