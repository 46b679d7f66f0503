"""Who may use the support console, and what each role may do.

Accounts are named people from ``RECON_CONSOLE_ACCOUNTS`` with one or more roles and an Argon2id password hash
(argon2-cffi's ``PasswordHasher``: its defaults are RFC 9106's recommended parameters). Roles:

- ``viewer``: read orders, lists and deliveries;
- ``support``: viewer, plus recheck (and dry run), refund, inbox, dead-letter and event replay;
- ``reviewer``: viewer, plus review decisions (credit, close, refund an order in needs_review).
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from worker.settings import ConsoleAccount

PERMISSIONS = {
    "viewer": frozenset({"read"}),
    "support": frozenset({"read", "recheck", "refund", "replay"}),
    "reviewer": frozenset({"read", "review"}),
}

_HASHER = PasswordHasher()


@cache
def _unknown() -> str:
    """Verified when the name is unknown, so an unknown name costs as long as a wrong password (no name probing)."""
    return _HASHER.hash("no account has this password")


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    roles: tuple[str, ...]

    def may(self, permission: str) -> bool:
        return any(permission in PERMISSIONS[role] for role in self.roles)


def hash_password(password: str) -> str:
    """An Argon2id hash to put in ``RECON_CONSOLE_ACCOUNTS`` (``recon console hash-password``)."""
    return _HASHER.hash(password)


def fingerprint(account: ConsoleAccount) -> str:
    """Names the account's password hash inside a session: a changed password ends every session it signed."""
    return hashlib.sha256(account.password_hash.get_secret_value().encode()).hexdigest()[:16]


def authenticate(accounts: dict[str, ConsoleAccount], name: str, password: str) -> Person | None:
    """The person, if ``name`` is an account and ``password`` its password."""
    account = accounts.get(name)
    try:
        _HASHER.verify(account.password_hash.get_secret_value() if account else _unknown(), password)
    except (VerificationError, InvalidHashError):
        return None
    return Person(name, tuple(account.roles)) if account else None


class SignInThrottle:
    """After ``attempts`` failed sign-ins for one name within ``window_s``, refuse that name for ``window_s``
    (guessing passwords online). Per process: with N web processes a guesser gets N × attempts per window."""

    def __init__(self, attempts: int = 5, window_s: float = 900.0):
        self.attempts, self.window_s = attempts, window_s
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, name: str) -> bool:
        with self._lock:
            recent = [at for at in self._failures.get(name, ()) if at > time.monotonic() - self.window_s]
            self._failures[name] = recent
            return len(recent) >= self.attempts

    def failed(self, name: str) -> None:
        with self._lock:
            self._failures.setdefault(name, []).append(time.monotonic())

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(name, None)
