"""The RAPI users file: parsing, password checks and reload on change.

Mirrors ``ganeti.http.auth.ParsePasswordFile`` and
``HttpServerRequestAuthentication.VerifyBasicAuthPassword``. One user per
line: ``<name> <password> [option,option...]``; ``#`` comments and blank
lines are ignored, lines with fewer than two fields are skipped. Passwords
are plain text, ``{cleartext}secret`` or ``{HA1}<md5 hex>`` where the hash is
``MD5("<user>:Ganeti Remote API:<password>")`` (RFC 2617 H(A1)).

Passwords are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from corral.rapi import RAPI_REALM

log = logging.getLogger(__name__)

CLEARTEXT_SCHEME = "{CLEARTEXT}"
HA1_SCHEME = "{HA1}"


@dataclass(frozen=True)
class User:
    """One entry of the users file; ``options`` keeps every token given."""

    name: str
    password: str = field(repr=False)
    options: tuple[str, ...] = ()


def parse_users(contents: str) -> dict[str, User]:
    """Parse users-file text into ``{name: User}``; a later line wins."""
    users: dict[str, User] = {}
    for lineno, raw in enumerate(contents.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 2:
            log.warning("Ignoring line %d of the RAPI users file: less than two fields",
                        lineno)
            continue
        options: tuple[str, ...] = ()
        if len(parts) == 3:
            options = tuple(p.strip() for p in parts[2].split(",") if p.strip())
        users[parts[0]] = User(parts[0], parts[1], options)
    return users


def ha1(username: str, password: str, realm: str = RAPI_REALM) -> str:
    """Hex H(A1) = MD5("user:realm:password") as stored after ``{HA1}``."""
    data = f"{username}:{realm}:{password}".encode()
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _eq(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"),
                               b.encode("utf-8", "surrogatepass"))


def verify_password(username: str, given: str, stored: str, realm: str = RAPI_REALM) -> bool:
    """True when ``given`` matches the stored password form (constant time).

    An unknown ``{SCHEME}`` or an empty scheme never matches.
    """
    if not stored.startswith("{"):
        stored = CLEARTEXT_SCHEME + stored
    end = stored.find("}", 1)
    if end <= 1:
        log.warning("Invalid password scheme for RAPI user '%s'", username)
        return False
    scheme = stored[:end + 1].upper()
    expected = stored[end + 1:]
    if scheme == CLEARTEXT_SCHEME:
        return _eq(given, expected)
    if scheme == HA1_SCHEME:
        return _eq(ha1(username, given, realm), expected.lower())
    log.warning("Unknown password scheme %s for RAPI user '%s'", scheme, username)
    return False


class UsersFile:
    """The users file at ``path``, re-read whenever its mtime or size changes.

    A missing or unreadable file means no users.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._users: dict[str, User] = {}

    def _current_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def users(self) -> dict[str, User]:
        """The current users (re-parsed if the file changed)."""
        stamp = self._current_stamp()
        with self._lock:
            if stamp != self._stamp:
                if stamp is None:
                    self._users = {}
                else:
                    try:
                        text = self.path.read_text(encoding="utf-8", errors="replace")
                    except OSError as err:
                        log.warning("Cannot read RAPI users file %s: %s", self.path,
                                    err.strerror)
                        text = ""
                    self._users = parse_users(text)
                    log.info("Loaded %d RAPI user(s) from %s", len(self._users), self.path)
                self._stamp = stamp
            return self._users

    def get(self, name: str) -> User | None:
        return self.users().get(name)

    def authenticate(self, name: str, password: str) -> User | None:
        """The user when ``name``/``password`` are valid, else None."""
        user = self.get(name)
        if user is None:
            # Spend comparable time so unknown users are not told apart.
            verify_password(name, password, "{HA1}" + "0" * 32)
            return None
        return user if verify_password(name, password, user.password) else None
