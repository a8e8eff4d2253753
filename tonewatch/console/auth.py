"""Who may use the console: the users file, password checks, signed session cookies and the sign-in rate limit.

Library choices: argon2-cffi's ``PasswordHasher`` (argon2id, salted, parameters inside the hash) and
itsdangerous's serializer sign the cookie. Starlette's ``SessionMiddleware`` was declined: it fixes the Secure flag
at start-up, while ours follows each request's scheme, and it has no expiry we can test with a fake clock. The rate
limit is a small in-process sliding window: limiters such as slowapi count requests, not failed sign-ins.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, URLSafeSerializer

from tonewatch.core.errors import ConfigError, InvalidInput

Role = Literal["analyst", "ops", "viewer"]
ROLES: tuple[str, ...] = get_args(Role)
# roles that may change something (ack, relabel, verdict); a viewer only reads
WRITERS = frozenset({"analyst", "ops"})
_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
COOKIE = "tonewatch_console"
ANONYMOUS_S = 3600.0  # the sign-in form's own session: long enough to type a password


class UsersFileError(ConfigError):
    """The users file cannot be read, or a user in it is malformed."""


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    hash: str


def _user(name: Any, entry: Any) -> User:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput(f"user name {name!r}: use 1-64 letters, digits, '_', '.', '@' or '-'")
    if not isinstance(entry, dict) or entry.get("role") not in ROLES or not isinstance(entry.get("hash"), str):
        raise InvalidInput(f"user {name!r}: expected {{\"role\": {' | '.join(ROLES)}, \"hash\": argon2 hash}}")
    return User(name, entry["role"], entry["hash"])


def load_users(path: Path) -> dict[str, User]:
    """The users in the file by name; none when the file does not exist."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise InvalidInput("expected a JSON object of users by name")
        return {name: _user(name, entry) for name, entry in data.items()}
    except (OSError, ValueError) as exc:  # json's errors and InvalidInput are ValueErrors
        raise UsersFileError(f"users file {path}: {exc}") from exc


def add_user(path: Path, name: str, role: str, password: str, hasher: PasswordHasher | None = None) -> User:
    """Add or replace a user; the file is rewritten whole, 0600 from its creation on (never briefly readable)."""
    if not password:
        raise InvalidInput("the password is empty")
    user = _user(name, {"role": role, "hash": (hasher or PasswordHasher()).hash(password)})
    users = load_users(path)
    users[name] = user
    body = json.dumps({u.name: {"role": u.role, "hash": u.hash} for u in users.values()}, indent=2) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".users-", dir=path.parent)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(body)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return user


class Authenticator:
    """Checks a name and password against the users read at start."""

    def __init__(self, users: Mapping[str, User], hasher: PasswordHasher | None = None) -> None:
        self.users = dict(users)
        self._hasher = hasher or PasswordHasher()
        # an unknown name is checked against this, so it costs as long as a wrong password: no user enumeration
        self._decoy = self._hasher.hash(secrets.token_urlsafe(16))

    def check(self, name: str, password: str) -> User | None:
        user = self.users.get(name)
        try:
            self._hasher.verify(user.hash if user else self._decoy, password)
        except (VerificationError, InvalidHashError):
            return None
        return user


@dataclass(frozen=True)
class Session:
    """What the cookie holds: the user (None before sign-in), their role, the CSRF token and the expiry."""

    user: str | None
    role: Role | None
    csrf: str
    expires: float

    @property
    def can_write(self) -> bool:
        return self.role in WRITERS


class Sessions:
    """Signs sessions into cookie values and reads them back; a forged, altered or expired one reads as None."""

    def __init__(self, secret: str, hours: float, clock: Callable[[], float]) -> None:
        self._serializer = URLSafeSerializer(secret, salt="tonewatch-console-session")
        self._seconds = hours * 3600.0
        self._clock = clock

    def anonymous(self) -> Session:
        return Session(None, None, secrets.token_urlsafe(32), self._clock() + ANONYMOUS_S)

    def signed_in(self, user: User) -> Session:
        """A fresh session with a new CSRF token: the sign-in form's token never carries over."""
        return Session(user.name, user.role, secrets.token_urlsafe(32), self._clock() + self._seconds)

    def dump(self, session: Session) -> str:
        return str(self._serializer.dumps([session.user, session.role, session.csrf, session.expires]))

    def load(self, value: str | None) -> Session | None:
        if not value:
            return None
        try:
            user, role, csrf, expires = self._serializer.loads(value)
        except (BadSignature, TypeError, ValueError):
            return None
        if not isinstance(csrf, str) or not isinstance(expires, int | float) or expires <= self._clock():
            return None
        return Session(user, role, csrf, float(expires))

    def max_age(self, session: Session) -> int:
        return max(int(session.expires - self._clock()), 0)


class LoginLimiter:
    """Sign-in attempts per (user, client address) in a sliding window. Each attempt counts as a failure until it
    succeeds (which clears its key), so concurrent guesses cannot slip past the limit between check and count."""

    def __init__(self, attempts: int, window_s: float, clock: Callable[[], float], max_keys: int = 10_000) -> None:
        self._attempts = attempts
        self._window_s = window_s
        self._clock = clock
        self._max_keys = max_keys  # names are anyone's to invent: the table must not grow without bound
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()  # sign-ins run on the server's worker threads

    def _recent(self, key: tuple[str, str]) -> deque[float]:
        times = self._failures.get(key, deque())
        while times and times[0] <= self._clock() - self._window_s:
            times.popleft()
        return times

    def attempt(self, key: tuple[str, str]) -> bool:
        """False when the key has used up its attempts (the password must then not be checked); else counts one."""
        with self._lock:
            times = self._recent(key)
            if len(times) >= self._attempts:
                return False
            if key not in self._failures and len(self._failures) >= self._max_keys:
                self._prune()
            times.append(self._clock())
            self._failures[key] = times
            return True

    def succeeded(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def _prune(self) -> None:
        """Forget keys with no failure left in the window; if that is not enough, the stalest half."""
        for key in [k for k in self._failures if not self._recent(k)]:
            del self._failures[key]
        if len(self._failures) >= self._max_keys:
            stalest = sorted(self._failures, key=lambda k: self._failures[k][-1] if self._failures[k] else 0.0)
            for key in stalest[: len(stalest) // 2]:
                del self._failures[key]
