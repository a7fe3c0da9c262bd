"""RAPI access decision: HTTP Basic credentials against the users file.

Mirrors ``ganeti.server.rapi.RemoteApiHandler`` (``GetAuthRealm``,
``AuthenticateBasic``) and ``ganeti.http.auth``:

* authentication is required when the server requires it for everything or
  the handler's access list for the method is non-empty;
* credentials sent where none are required are still checked;
* ``Basic`` only; ``Basic`` without credentials is a 400, any other scheme,
  an unknown user or a wrong password is a 401 (with
  ``WWW-Authenticate: Basic realm="Ganeti Remote API"``);
* a valid user is allowed when the access list is empty or intersects the
  user's options, else 403.
"""

from __future__ import annotations

import base64
import binascii

from corral.rapi import RAPI_REALM
from corral.rapi.users import User, UsersFile


class HttpError(Exception):
    """An HTTP error answer: status code, message and extra headers."""

    def __init__(self, code: int, message: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message or "")
        self.code = code
        self.message = message
        self.headers = headers or {}


def unauthorized(message: str | None = None) -> HttpError:
    return HttpError(401, message,
                     {"WWW-Authenticate": f'Basic realm="{RAPI_REALM}"'})


def parse_basic(header: str) -> tuple[str, str] | None:
    """``(user, password)`` from an ``Authorization`` value, None if unusable.

    Raises :class:`HttpError` 400 for ``Basic`` without credentials.
    """
    parts = header.strip().split(None, 1)
    if not parts or parts[0].lower() != "basic":
        return None
    if len(parts) < 2 or not parts[1].strip():
        raise HttpError(400, "Basic authentication requires credentials")
    try:
        creds = base64.b64decode(parts[1].strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    if ":" not in creds:
        return None
    user, password = creds.split(":", 1)
    return user, password


def check_access(users: UsersFile, authorization: str | None, access: list[str],
                 require_authentication: bool = False) -> User | None:
    """Decide whether a request may proceed; returns the user (or None).

    ``access`` is the handler's ``<METHOD>_ACCESS`` list. Raises
    :class:`HttpError` 400/401/403 as described in the module docstring.
    """
    needed = require_authentication or bool(access)
    if not authorization:
        if needed:
            raise unauthorized()
        return None
    creds = parse_basic(authorization)
    if creds is None:
        raise unauthorized()
    user = users.authenticate(*creds)
    if user is None:
        raise unauthorized()
    if not access or set(user.options) & set(access):
        return user
    raise HttpError(403, "Insufficient permissions")
