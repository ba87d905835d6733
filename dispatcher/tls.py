"""Transport security: the center's certificate for SIP over TLS and the console over HTTPS.

The config names a PEM certificate (its chain may follow it in the same file) and a PEM
private key. :func:`check_pair` proves at load time that both can be read and belong
together, so a wrong path is a config error rather than a silent plain-text center.
:func:`install_for_asterisk` copies them into the run directory, because Asterisk in a root
filesystem sees only the center's state directory, and may run as a user of its own there.
:func:`https_options` builds the console's TLS context.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dialplans.contract import ASTERISK_CERT_FILE, ASTERISK_KEY_FILE

if TYPE_CHECKING:
    from twisted.internet.ssl import CertificateOptions

__all__ = [
    "ASTERISK_CERT_FILE",
    "ASTERISK_KEY_FILE",
    "TlsFileError",
    "asterisk_files",
    "check_pair",
    "https_options",
    "install_for_asterisk",
]

# ASTERISK_CERT_FILE/ASTERISK_KEY_FILE: the copies Asterisk reads, in the generated
# configuration's folder (pjsip.conf names them too: dialplans.contract).


class TlsFileError(ValueError):
    """The certificate or the key cannot be used; ``which`` is ``"certificate"`` or ``"key"``."""

    def __init__(self, which: str, reason: str) -> None:
        super().__init__(reason)
        self.which = which
        self.reason = reason


@dataclass(frozen=True)
class _Pair:
    cert_pem: bytes
    key_pem: bytes


def _read(path: Path, which: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TlsFileError(which, f"{path} does not exist") from None
    except IsADirectoryError:
        raise TlsFileError(which, f"{path} is a directory, not a PEM file") from None
    except OSError as exc:
        raise TlsFileError(which, f"cannot read {path}: {exc.strerror}") from None


def _load(cert_path: Path, key_path: Path) -> _Pair:
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    cert_pem = _read(cert_path, "certificate")
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise TlsFileError("certificate",
                           f"{cert_path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
                           ) from None
    key_pem = _read(key_path, "key")
    # A key anyone on the machine can read is a key anyone can impersonate the center with.
    mode = key_path.stat().st_mode
    if mode & 0o004:
        raise TlsFileError("key", f"{key_path} is readable by every user (mode "
                                  f"{mode & 0o777:04o}); make it 0600 or 0640")
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise TlsFileError("key", f"{key_path} is encrypted; Asterisk and the console need it "
                                  "unencrypted (protect it with the file's mode)") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise TlsFileError("key", f"{key_path} holds no usable PEM private key ({exc})") from None

    def spki(public_key: object) -> bytes:
        return public_key.public_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    if spki(chain[0].public_key()) != spki(key.public_key()):
        raise TlsFileError("key", f"{key_path} is not the key of the certificate in {cert_path}")
    return _Pair(cert_pem, key_pem)


def check_pair(cert_path: Path, key_path: Path) -> None:
    """Raise :class:`TlsFileError` unless both files read, parse and belong together."""
    _load(cert_path, key_path)


def asterisk_files(etc: Path) -> tuple[Path, Path]:
    """Where Asterisk reads the certificate and key: beside its generated configuration."""
    return etc / ASTERISK_CERT_FILE, etc / ASTERISK_KEY_FILE


def install_for_asterisk(cert_path: Path, key_path: Path, etc: Path) -> tuple[Path, Path]:
    """Copy the certificate and key next to Asterisk's configuration; return the copies.

    The copies get the generated files' mode (0640, replaced atomically): whoever may read
    the configuration (which holds the SIP passwords) may read the key, and nobody else.
    """
    pair = _load(cert_path, key_path)
    targets = asterisk_files(etc)
    for target, data in zip(targets, (pair.cert_pem, pair.key_pem), strict=True):
        tmp = target.with_name(f".{target.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o640)  # O_CREAT's mode does not apply to a file left by a crash
        os.replace(tmp, target)
    return targets


def https_options(cert_path: Path, key_path: Path) -> CertificateOptions:
    """The console's TLS server context: the center's certificate (and chain), TLS 1.2+."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from twisted.internet import ssl

    pair = _load(cert_path, key_path)
    chain = x509.load_pem_x509_certificates(pair.cert_pem)
    key = serialization.load_pem_private_key(pair.key_pem, password=None)
    return ssl.CertificateOptions(
        privateKey=key, certificate=chain[0], extraCertChain=chain[1:],
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
    )
