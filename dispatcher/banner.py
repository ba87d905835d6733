"""What the server prints about itself, with secrets left out."""

from __future__ import annotations

import re
from pathlib import Path

from dispatcher.config.model import Center

__all__ = ["banner_text", "mask_password"]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# A password given as a query parameter (libpq and psycopg accept ?password=...).
_QUERY_PASSWORD = re.compile(r"([?&](?:password|passwd|pwd)=)[^&#]*", re.IGNORECASE)


def mask_password(url: str) -> str:
    """``url`` with every password in it replaced by ``***``.

    ``postgresql+psycopg://siaga:secret@db/siaga`` → ``postgresql+psycopg://siaga:***@db/siaga``;
    ``...?password=secret`` → ``...?password=***``. Read by hand rather than with
    ``urlsplit``: a password may hold unquoted ``/``, ``?``, ``#`` or ``@``, which make a URL
    parser cut the user part short and print the rest of the password.
    """
    scheme = _SCHEME.match(url)
    if scheme is not None:
        rest = url[scheme.end():]
        userinfo, at, host = rest.rpartition("@")
        if at and ":" in userinfo:
            url = f"{scheme.group(0)}{userinfo.split(':', 1)[0]}:***@{host}"
    return _QUERY_PASSWORD.sub(r"\1***", url)


def banner_text(center: Center, logs: Path, recordings: Path) -> str:
    """What ``siaga up`` prints once the center is up (no secret in it: the AMI secret is
    named by its file, the database's password is masked)."""
    sip = f"{center.sip_transport}://{center.sip.host}:{center.sip.port}"
    web = "http"
    if center.tls is not None:
        sip += f", tls://{center.sip.host}:{center.tls.sip_port}"
        web = "https"
    secrets_file = center.state_dir / "secrets.yaml"
    return f"""
Siaga — {center.name}
  SIP         {sip}   hotline {', '.join(center.hotline)}
  AMI         {center.ami.host}:{center.ami.port} (loopback only; secret in {secrets_file})
  HTTP        {web}://{center.http.host}:{center.http.port}/
  logs        {logs}
  recordings  {recordings}
  database    {mask_password(center.database_url)}
  accounts    siaga accounts --config {center.source}
Stop with Ctrl-C."""
