"""mailflow's exception tree.

Adapters translate library errors (sqlite3, psycopg, imaplib, smtplib, OSError ...) into these at
the boundary, so callers handle one family and the CLI can print one clear line with a hint.
Messages never contain secrets: adapters build them from names and hosts, not credentials.
"""

from __future__ import annotations


class MailflowError(Exception):
    """Base of every error mailflow raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(MailflowError):
    """The configuration file or environment is wrong; nothing was started."""


class SecretError(ConfigError):
    """A secret (password, token) is missing or unreadable. Never includes its value."""


class StorageError(MailflowError):
    """The database refused an operation."""


class StorageUnavailable(StorageError):
    """The database cannot commit right now (locked, read-only, down): retry later."""


class MigrationError(StorageError):
    """The schema is missing, too old or too new for this version."""


class MailServerError(MailflowError):
    """A remote mail server (IMAP, SMTP) failed or refused us."""


class ImapError(MailServerError):
    """IMAP connection, TLS, login or protocol failure."""


class SmtpError(MailServerError):
    """SMTP connection, TLS, login or protocol failure."""


class MessageError(MailflowError):
    """A message could not be parsed or processed; it is quarantined, never dropped."""
