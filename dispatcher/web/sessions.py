"""Console logins: server-side sessions, a brake on password guessing, safe redirects.

Sans-IO: the clock is a function passed in, and the session table's persistence is a pair
of functions (:func:`load_sessions`, :func:`save_sessions` write the state directory's file);
nothing here touches a socket.

A session cookie is only a random token. The table of live sessions is the server's, keyed by
the token's SHA-256 (the file on disk is useless to whoever reads it): logging out deletes the
row, so a cookie captured before is worthless after; a user removed from the config or whose
role changed loses every session at the next request or restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "LoginThrottle",
    "SessionTable",
    "Staff",
    "check_password",
    "load_sessions",
    "safe_next",
    "save_sessions",
]

DEFAULT_PAGE = "/wallboard"


@dataclass(frozen=True)
class Staff:
    """Who is logged in to the console."""

    extension: str
    role: str  # "operator" or "supervisor"


def check_password(passwords: Mapping[str, str], extension: str, given: str) -> bool:
    """True when ``given`` is the console password of ``extension`` (constant time)."""
    expected = passwords.get(extension)
    # Compare against something even for an unknown user, so timing does not tell.
    return hmac.compare_digest((expected or "\0" * 16).encode(), given.encode()) and bool(
        expected)


# -- redirects after login -------------------------------------------------------------------

# A console page: one leading slash, then plain path characters, then an optional plain query.
# No '%', '\\', control characters or second leading slash: browsers read "//host",
# "/\\host", "/\t/host" (tab and newlines are stripped) as another site, and a '%' could be
# decoded into one of those by whatever reads the value next.
_NEXT_RE = re.compile(r"/(?![/\\])[A-Za-z0-9_./-]{0,100}(?:\?[A-Za-z0-9_.=&-]{0,200})?")


def safe_next(value: str | None, default: str = DEFAULT_PAGE) -> str:
    """``value`` when it is one of this site's paths, else ``default``.

    Parsed strictly (a whitelist, not a blacklist of tricks): anything that is not a plain
    absolute path on this site (schemes, ``//host``, backslashes, tabs, encoded characters,
    ``..`` segments) falls back to ``default``.
    """
    if not value or not _NEXT_RE.fullmatch(value):
        return default
    path = value.split("?", 1)[0]
    if any(segment in (".", "..") for segment in path.split("/")):
        return default
    return value


# -- the session table -----------------------------------------------------------------------

def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True)
class SessionRow:
    """One live session as the server keeps it (never the token itself)."""

    digest: str
    extension: str
    role: str
    expires: float


class SessionTable:
    """The console's live sessions.

    ``roles`` is asked on every lookup (the current config: extension → role); a session
    whose user is gone or whose role is no longer the one it was opened with is revoked on
    the spot. ``save`` gets every row after each change (to persist them), ``rows`` are the
    ones a previous run saved (expired or no longer valid ones are dropped on load).
    """

    def __init__(self, clock: Callable[[], float], roles: Callable[[], Mapping[str, str]],
                 lifetime: float = 12 * 3600, rows: Iterable[SessionRow] = (),
                 save: Callable[[list[SessionRow]], None] | None = None,
                 max_per_user: int = 20) -> None:
        self.clock = clock
        self.roles = roles
        self.lifetime = lifetime
        self.max_per_user = max_per_user
        self._save = save
        self._rows: dict[str, SessionRow] = {}
        current = roles()
        now = clock()
        saved = list(rows)
        for row in saved:
            if row.expires > now and current.get(row.extension) == row.role:
                self._rows[row.digest] = row
        if len(self._rows) != len(saved):  # a restart revokes what is no longer valid
            self._persist()

    def __len__(self) -> int:
        return len(self._rows)

    def open(self, staff: Staff) -> str:
        """A new session for ``staff``; returns the cookie's token (shown only this once)."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        self._drop_expired(now)
        mine = sorted((r for r in self._rows.values() if r.extension == staff.extension),
                      key=lambda r: r.expires)
        # A user logging in again and again (each browser, each day) keeps a bounded list.
        for old in mine[: max(0, len(mine) - self.max_per_user + 1)]:
            del self._rows[old.digest]
        row = SessionRow(_digest(token), staff.extension, staff.role, now + self.lifetime)
        self._rows[row.digest] = row
        self._persist()
        return token

    def lookup(self, token: str | None) -> Staff | None:
        """Who holds ``token`` now, or None (unknown, logged out, expired, user removed or
        role changed; the last three also delete the row)."""
        if not token or len(token) > 256:
            return None
        row = self._rows.get(_digest(token))
        if row is None:
            return None
        if row.expires <= self.clock() or self.roles().get(row.extension) != row.role:
            del self._rows[row.digest]
            self._persist()
            return None
        return Staff(row.extension, row.role)

    def close(self, token: str | None) -> bool:
        """Log out: forget the session of ``token``; True if there was one."""
        if not token or len(token) > 256:
            return False
        if self._rows.pop(_digest(token), None) is None:
            return False
        self._persist()
        return True

    def revoke_invalid(self) -> int:
        """Drop sessions of users no longer in the config or whose role changed (after a
        config reload); returns how many."""
        current = self.roles()
        stale = [d for d, r in self._rows.items() if current.get(r.extension) != r.role]
        for digest in stale:
            del self._rows[digest]
        if stale:
            self._persist()
        return len(stale)

    def _drop_expired(self, now: float) -> None:
        for digest in [d for d, r in self._rows.items() if r.expires <= now]:
            del self._rows[digest]

    def _persist(self) -> None:
        if self._save is not None:
            self._save(list(self._rows.values()))


def load_sessions(path: Path) -> list[SessionRow]:
    """The rows a previous run saved in ``path`` (none if the file is absent or unreadable:
    everyone logs in again, which is safe)."""
    try:
        doc = json.loads(path.read_text())
        return [SessionRow(str(r["digest"]), str(r["extension"]), str(r["role"]),
                           float(r["expires"])) for r in doc["sessions"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def save_sessions(path: Path, rows: list[SessionRow]) -> None:
    """Write ``rows`` to ``path`` atomically, readable by the owner only."""
    doc: dict[str, Any] = {"version": 1, "sessions": [
        {"digest": r.digest, "extension": r.extension, "role": r.role, "expires": r.expires}
        for r in rows]}
    tmp = path.with_name(path.name + ".tmp")
    # A leftover from a crash keeps its old mode through O_CREAT: start afresh.
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


# -- password guessing -----------------------------------------------------------------------

@dataclass
class _Failures:
    count: int
    last: float
    # For an account: the sources that failed on it, and when last.
    sources: dict[str, float] | None = None


class LoginThrottle:
    """Slows password guessing per source address and per account, never locking anyone out.

    Each key (a source address, an account) gets ``free`` failures; after that every further
    attempt must wait ``base * 2 ** (failures - free)`` seconds after the last failure (at
    most ``max_delay``). A key is forgotten ``window`` seconds after its last failure.

    The account's backoff applies only to the sources that failed on that account: the right
    password typed from an address that has not been guessing is always checked, so an
    attacker hammering a supervisor's account from elsewhere cannot lock the supervisor out.
    A distributed attacker still gets at most ``free`` guesses per address before the
    address's own backoff, and one per address once the account is under attack.
    """

    def __init__(self, clock: Callable[[], float], free: int = 5, base: float = 1.0,
                 max_delay: float = 300.0, window: float = 900.0,
                 max_keys: int = 10_000, max_sources: int = 256) -> None:
        self.clock = clock
        self.free = free
        self.base = base
        self.max_delay = max_delay
        self.window = window
        self.max_keys = max_keys
        self.max_sources = max_sources
        self._failures: dict[str, _Failures] = {}

    def _get(self, key: str, now: float) -> _Failures | None:
        entry = self._failures.get(key)
        if entry is not None and now - entry.last > self.window:
            del self._failures[key]
            return None
        return entry

    def _delay(self, entry: _Failures | None, since: float | None, now: float) -> float:
        if entry is None or entry.count < self.free:
            return 0.0
        delay = min(self.max_delay, self.base * 2.0 ** min(entry.count - self.free, 30))
        return max(0.0, (entry.last if since is None else since) + delay - now)

    def wait(self, account: str, source: str) -> float:
        """Seconds ``source`` must wait before trying ``account`` again (0: go ahead)."""
        now = self.clock()
        wait = self._delay(self._get(f"addr:{source}", now), None, now)
        acct = self._get(f"user:{account}", now)
        if acct is not None and acct.sources and source in acct.sources:
            # Counted from this source's own last failure, not the account's: a supervisor
            # who mistyped once during an attack waits at most max_delay, however long the
            # attack from elsewhere goes on.
            wait = max(wait, self._delay(acct, acct.sources[source], now))
        return wait

    def failed(self, account: str, source: str) -> None:
        """Count a failed attempt of ``source`` on ``account``."""
        now = self.clock()
        for key in (f"addr:{source}", f"user:{account}"):
            entry = self._get(key, now)
            if entry is None:
                entry = self._failures[key] = _Failures(0, now)
            entry.count += 1
            entry.last = now
        acct = self._failures[f"user:{account}"]
        if acct.sources is None:
            acct.sources = {}
        acct.sources.pop(source, None)
        acct.sources[source] = now
        while len(acct.sources) > self.max_sources:
            del acct.sources[next(iter(acct.sources))]
        if len(self._failures) > self.max_keys:  # a flood of made-up names must not eat memory
            oldest = sorted(self._failures, key=lambda k: self._failures[k].last)
            for key in oldest[: len(oldest) - self.max_keys // 2]:
                del self._failures[key]

    def succeeded(self, account: str, source: str) -> None:
        """A good login: the source's failures are forgiven (the account's count of other
        sources' failures stays)."""
        self._failures.pop(f"addr:{source}", None)
        acct = self._failures.get(f"user:{account}")
        if acct is not None and acct.sources:
            acct.sources.pop(source, None)
