"""A throwaway certificate authority and a server certificate for 127.0.0.1 and localhost.

Made with the ``openssl`` command line (the ``cryptography`` package is not a dependency), so
tests run real TLS on loopback: clients verify the server against the CA file, exactly as a
sending MTA verifies a production certificate, instead of turning verification off.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import ServerStartError, require

DAYS = "2"
# Extensions of a leaf certificate that OpenSSL and Python's strict verification accept.
SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # PEM certificate of the CA, for the client's cafile=
    cert: Path  # PEM server certificate, signed by the CA
    key: Path  # PEM server private key, not encrypted


def find_openssl() -> str | None:
    return shutil.which("openssl")


def make_tls_files(directory: Path, openssl: str = "openssl") -> TlsFiles:
    """Write ca.pem, server.pem and server.key into ``directory`` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, csr = directory / "server.pem", directory / "server.key", directory / "server.csr"
    extensions = directory / "server.ext"
    extensions.write_text(SERVER_EXTENSIONS, encoding="ascii")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    self_signed = ("-subj", "/CN=mailflow test CA", "-days", DAYS)
    ca_extensions = (
        *("-addext", "basicConstraints=critical,CA:TRUE"),
        *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
    )
    _run(openssl, "req", "-x509", *ec, *self_signed, *ca_extensions, "-keyout", ca_key, "-out", ca)
    _run(openssl, "req", *ec, "-subj", "/CN=localhost", "-keyout", key, "-out", csr)
    signed_by_ca = ("-CA", ca, "-CAkey", ca_key, "-set_serial", "2", "-days", DAYS)
    _run(openssl, "x509", "-req", *signed_by_ca, "-extfile", extensions, "-in", csr, "-out", cert)
    return TlsFiles(ca=ca, cert=cert, key=key)


def _run(*command: str | Path) -> None:
    done = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise ServerStartError(f"openssl {command[1]} failed: {done.stderr.strip()}")


def throwaway_tls(directory: Path) -> TlsFiles:
    """A CA and a server certificate; skipped (failed under CI) without openssl."""
    openssl = find_openssl()
    require(openssl is not None, "the openssl command is not installed")
    assert openssl is not None
    return make_tls_files(directory, openssl)
