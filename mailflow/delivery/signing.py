"""DKIM signing (dkimpy, the optional `dkim` extra), applied by the transports at send time.

Signing at send time, not at enqueue: the ledger keeps the bytes as composed, so a key that is
rotated while a campaign is queued signs what is still to go with the new key. dkimpy's
exceptions are translated here; a key that cannot sign is a configuration problem for every
message alike, so the worker stops its pass rather than fail each row.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from mailflow.errors import ConfigError
from mailflow.settings import Settings

# Headers a relay or list does not rewrite; Received and the like are left out on purpose.
SIGNED_HEADERS = (
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"Reply-To",
    b"In-Reply-To",
    b"References",
    b"Content-Type",
    b"Content-Transfer-Encoding",
    b"MIME-Version",
    b"Content-Language",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
)


@dataclass(frozen=True)
class DkimSigner:
    selector: str
    domain: str
    key: bytes  # PEM

    def sign(self, raw: bytes) -> bytes:
        """`raw` with a DKIM-Signature header in front (relaxed/relaxed, rsa-sha256)."""
        dkim = _dkim()
        try:
            header = dkim.sign(
                raw,
                self.selector.encode("ascii"),
                self.domain.encode("ascii"),
                self.key,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=list(SIGNED_HEADERS),
                linesep=b"\r\n",
            )
        except (dkim.DKIMException, ValueError, IndexError, TypeError) as exc:
            raise ConfigError(
                f"DKIM signing with selector {self.selector!r} failed: {exc}",
                hint="check outbound.dkim_key_file (a PEM RSA private key)",
            ) from None
        return bytes(header) + raw


def load_signer(settings: Settings) -> DkimSigner | None:
    """The signer the settings ask for, or None when outbound.dkim_key_file is not set."""
    outbound = settings.outbound
    if str(outbound.dkim_key_file) in ("", "."):
        return None
    _dkim()  # fail at start, not at the first message, when the extra is missing
    if not outbound.dkim_selector:
        raise ConfigError(
            "outbound.dkim_key_file is set but outbound.dkim_selector is not",
            hint="set the selector under which the public key is published in DNS",
        )
    try:
        key = outbound.dkim_key_file.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read outbound.dkim_key_file {outbound.dkim_key_file}: {exc.strerror}"
        ) from None
    domain = outbound.dkim_domain or outbound.from_address.rpartition("@")[2]
    return DkimSigner(outbound.dkim_selector, domain.strip().lower(), key)


def _dkim() -> ModuleType:
    # Imported by name: dkimpy is an optional extra and ships no type information.
    try:
        return importlib.import_module("dkim")
    except ImportError:
        raise ConfigError(
            "DKIM signing needs dkimpy", hint="pip install 'mailflow[dkim]' (or dkimpy)"
        ) from None
