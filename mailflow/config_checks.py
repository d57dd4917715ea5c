"""Checks that need the whole configuration: combinations of keys, files they name, secrets.

Each problem is an ``Issue`` naming the file (or "environment") and the dotted key, with a hint.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mailflow.settings import (
    ACCOUNT_LIST,
    ImapAccountSettings,
    Settings,
    SmtpIntakeSettings,
    is_loopback,
)

ENV_PREFIX = "MAILFLOW_"


@dataclass(frozen=True)
class Issue:
    severity: Literal["error", "warning"]
    where: str
    key: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        text = f"{self.where}: {self.key}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text


class Collector:
    """What one load reads from (environment, base directory) and the issues it found.

    Issues accumulate so one run reports every mistake, not just the first.
    """

    def __init__(self, where: str, environ: Mapping[str, str], base: Path) -> None:
        self.where = where
        self.environ = environ
        self.base = base
        self.issues: list[Issue] = []

    def error(self, key: str, message: str, hint: str | None = None, where: str = "") -> None:
        self.issues.append(Issue("error", where or self.where, key, message, hint))

    def warn(self, key: str, message: str, hint: str | None = None, where: str = "") -> None:
        self.issues.append(Issue("warning", where or self.where, key, message, hint))


def check_semantics(settings: Settings, out: Collector) -> None:
    intake = settings.smtp_intake
    if not 0 < intake.port < 65536:
        out.error("smtp_intake.port", f"{intake.port} is not a TCP port")
    for address in intake.recipients:
        if "@" not in address:
            out.error("smtp_intake.recipients", f"{address!r} is not an e-mail address")
    _check_intake_security(intake, out)
    relay = settings.outbound
    if relay.relay_host and relay.relay_security == "none" and not is_loopback(relay.relay_host):
        out.error(
            "outbound.relay_security",
            "'none' is only allowed for a relay on loopback",
            "use 'starttls' or 'tls'",
        )
    if relay.relay_host and relay.relay_username and relay.relay_password is None:
        out.error(
            "outbound.relay_password",
            "missing secret",
            "set MAILFLOW_OUTBOUND_RELAY_PASSWORD or outbound.relay_password_file",
        )
    names: set[str] = set()
    for index, account in enumerate(settings.imap_accounts):
        _check_account(index, account, names, out)


def _check_intake_security(intake: SmtpIntakeSettings, out: Collector) -> None:
    """STARTTLS and AUTH settings that would silently leave the intake less safe than asked."""
    cert, key = (str(path) not in ("", ".") for path in (intake.tls_cert, intake.tls_key))
    if cert != key:
        present, missing = ("tls_cert", "tls_key") if cert else ("tls_key", "tls_cert")
        out.error(f"smtp_intake.{missing}", f"is required when {present} is set")
    elif cert:
        _check_tls_files(intake.tls_cert, intake.tls_key, out)
    # aiosmtpd ignores require_starttls without a certificate; refuse instead of running open.
    if intake.require_starttls and not cert:
        out.error("smtp_intake.require_starttls", "needs tls_cert and tls_key")
    if intake.auth_username and intake.auth_password is None:
        out.error(
            "smtp_intake.auth_password",
            "missing secret",
            "set MAILFLOW_SMTP_INTAKE_AUTH_PASSWORD or smtp_intake.auth_password_file",
        )
    if intake.auth_password is not None and not intake.auth_username:
        out.error(
            "smtp_intake.auth_username",
            "is required when auth_password is set",
            "set it, or unset the password to accept mail without AUTH",
        )
    if intake.auth_username and not cert and not is_loopback(intake.host):
        # AUTH is only offered over TLS off loopback: every message would be refused.
        out.error(
            "smtp_intake.auth_username",
            "AUTH on a non-loopback address needs TLS",
            "set smtp_intake.tls_cert and smtp_intake.tls_key",
        )


def _check_tls_files(cert: Path, key: Path, out: Collector) -> None:
    readable = True
    for name, path in (("tls_cert", cert), ("tls_key", key)):
        try:
            path.open("rb").close()
        except OSError as exc:
            out.error(f"smtp_intake.{name}", f"cannot read {path}: {exc.strerror}")
            readable = False
    if not readable:
        return
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_verify_locations(cafile=cert)
    except ssl.SSLError:
        out.error("smtp_intake.tls_cert", f"{cert} holds no PEM certificate")
        return
    try:
        # A password callback, so an encrypted key fails here instead of prompting on a tty.
        context.load_cert_chain(cert, key, password=_no_key_password)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            out.error("smtp_intake.tls_key", f"{key} is not the key of {cert}")
        else:
            # OpenSSL says only "PEM lib" here: a file of another kind, or a passphrase.
            out.error(
                "smtp_intake.tls_key",
                f"{key} is not a PEM private key without a passphrase",
                f"write one with: openssl pkey -in {key} -out new.key",
            )


def _no_key_password() -> str:
    return ""


def _check_account(
    index: int, account: ImapAccountSettings, names: set[str], out: Collector
) -> None:
    prefix = f"{ACCOUNT_LIST}[{index}]"
    for key in ("name", "host", "username"):
        if not getattr(account, key):
            out.error(f"{prefix}.{key}", "is required")
    if account.name in names:
        out.error(f"{prefix}.name", f"{account.name!r} is used by another account")
    names.add(account.name)
    if account.security == "plain" and account.host and not is_loopback(account.host):
        out.error(
            f"{prefix}.security",
            "'plain' sends the password in clear and is only allowed on loopback",
            "use 'tls' (port 993) or 'starttls' (port 143)",
        )
    secret_key = "password" if account.auth == "password" else "oauth2_token"
    if getattr(account, secret_key) is None:
        env = f"{ENV_PREFIX}IMAP_{env_token(account.name)}_{secret_key.upper()}"
        out.error(f"{prefix}.{secret_key}", "missing secret", f"set {env} or {secret_key}_file")
    if str(account.tls_ca_file) not in ("", "."):
        try:
            ssl.create_default_context(cafile=account.tls_ca_file)
        except (OSError, ssl.SSLError) as exc:
            out.error(
                f"{prefix}.tls_ca_file",
                f"cannot load CA certificates from {account.tls_ca_file}: "
                f"{getattr(exc, 'strerror', None) or exc}",
                "give a readable PEM file with the CA certificate(s)",
            )
    if account.after_commit == "move" and not account.move_to:
        out.error(f"{prefix}.move_to", "is required when after_commit = 'move'")
    if account.batch_size < 1 or account.poll_interval_seconds < 1:
        out.error(f"{prefix}.batch_size", "batch_size and poll_interval_seconds must be >= 1")


def env_token(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()
