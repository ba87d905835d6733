"""Secrets generated on first run: the AMI secret, one SIP password per extension, one
console password per operator and supervisor, the center's master key, and the password of
the self-test's SIP endpoint.

They live in ``<state_dir>/secrets.yaml`` with mode 0600, never in the repository or in the
center's config. Existing secrets are kept; extensions added to the config get new ones;
removed extensions' passwords are dropped.

What is stored in clear, and why: the AMI secret and the SIP passwords are given to Asterisk
(its configuration) and to the phones (``siaga accounts``), which need them as they are; the
console passwords are handed to staff by ``siaga accounts``. Keys only the server uses are
not stored at all: the devices' HMAC keys are derived from the master key
(:mod:`dispatcher.keys`), so the file holds one key instead of many. Console sessions need no
key: they are random tokens the server keeps (:mod:`dispatcher.web.sessions`).
"""

from __future__ import annotations

import os
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dispatcher.config.model import Center

AMI_USERNAME = "siaga"
FILE_NAME = "secrets.yaml"
# The token operators' tools send to the API's operator endpoints (its own file: it is
# handed to the console's machine, the other secrets are not).
OPERATOR_TOKEN_FILE = "operator-api.token"


@dataclass(frozen=True)
class Credentials:
    """What the center's parts authenticate with."""

    ami_username: str
    ami_secret: str
    sip_passwords: dict[str, str]
    console_passwords: dict[str, str] = field(default_factory=dict)
    master_key: bytes = field(default=b"", repr=False)
    # The self-test's own SIP endpoint (dispatcher.selftest): no person's phone knows it.
    selftest_password: str = field(default="", repr=False)

    def password(self, extension: str) -> str:
        """The SIP password of an extension."""
        return self.sip_passwords[extension]


def _new_secret(nbytes: int = 18) -> str:
    # URL-safe base64: no quote, semicolon or space that could break an Asterisk config line.
    # Never a leading '-' (one secret in 64 would have one): typed after an option on a
    # command line (`siaga phone --password -Xk3...`), it is read as another option.
    while True:
        secret = secrets.token_urlsafe(nbytes)
        if not secret.startswith("-"):
            return secret


def ensure_credentials(center: Center) -> Credentials:
    """Load the center's secrets, generating what is missing, and save them (mode 0600)."""
    path = center.state_dir / FILE_NAME
    data: dict = {}
    if path.exists():
        loaded = yaml.safe_load(path.read_text()) or {}
        if isinstance(loaded, dict):
            data = loaded
    ami = data.get("ami") if isinstance(data.get("ami"), dict) else {}
    ami_secret = str(ami.get("secret") or _new_secret(24))
    old_sip = data.get("sip") if isinstance(data.get("sip"), dict) else {}
    sip = {ext: str(old_sip.get(ext) or _new_secret()) for ext in center.extensions()}
    # Console logins are separate from SIP passwords: a softphone's stored secret does not
    # open the console.
    old_console = data.get("console") if isinstance(data.get("console"), dict) else {}
    staff = [op.extension for op in center.operators] + list(center.supervisors)
    console = {ext: str(old_console.get(ext) or _new_secret(12)) for ext in staff}
    master = str(data.get("master_key") or _new_secret(32))
    selftest = str(data.get("selftest") or _new_secret())
    creds = Credentials(AMI_USERNAME, ami_secret, sip, console, master.encode("ascii"),
                        selftest)
    # A session_key stored by an older version is dropped: sessions are server-side now.
    new = {"ami": {"username": AMI_USERNAME, "secret": ami_secret}, "sip": sip,
           "console": console, "master_key": master, "selftest": selftest}
    if new != data:
        _write_private(path, yaml.safe_dump(new, sort_keys=True))
    elif path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    return creds


def ensure_operator_token(state_dir: Path) -> str:
    """The operator API token in ``<state_dir>/operator-api.token`` (mode 0600), made once."""
    path = Path(state_dir) / OPERATOR_TOKEN_FILE
    if path.exists():
        token = path.read_text().strip()
        if token:
            return token
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def _write_private(path: Path, text: str) -> None:
    """Write atomically, readable by the owner only from the first byte on."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".secrets-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
