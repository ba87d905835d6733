"""What the server prints about itself, with secrets left out."""

from __future__ import annotations

import re

__all__ = ["mask_password"]

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
