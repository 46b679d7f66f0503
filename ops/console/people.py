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
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
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
    """At most ``attempts`` sign-ins per key (a name, a client address) within ``window_s`` until one succeeds
    (guessing passwords online). An attempt counts when it starts, before the slow password check, so requests
    in flight at once cannot pass together. At most ``max_keys`` keys are remembered (the oldest go first), so
    a flood of made-up names cannot grow it without bound. Per process: N web processes allow N × attempts."""

    def __init__(self, attempts: int = 5, window_s: float = 900.0, max_keys: int = 10_000):
        self.attempts, self.window_s, self.max_keys = attempts, window_s, max_keys
        self._attempts: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def attempt(self, key: str) -> bool:
        """Count an attempt for ``key``; False (nothing counted) if it already had its share in the window."""
        now = time.monotonic()
        with self._lock:
            recent = [at for at in self._attempts.pop(key, ()) if at > now - self.window_s]
            allowed = len(recent) < self.attempts
            self._attempts[key] = [*recent, now] if allowed else recent
            while len(self._attempts) > self.max_keys:
                self._attempts.popitem(last=False)
            return allowed

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._attempts.pop(key, None)


class PasswordChecks:
    """At most ``at_once`` Argon2 checks at a time per process (each takes 64 MiB and about 0.1-0.5 s): more
    sign-ins at once are told to retry, so a flood cannot starve the API's thread pool or its memory."""

    def __init__(self, at_once: int = 2):
        self._slots = threading.BoundedSemaphore(at_once)

    @contextmanager
    def slot(self) -> Iterator[bool]:
        """True (and a slot held until the block ends) if a check may run now."""
        got = self._slots.acquire(blocking=False)
        try:
            yield got
        finally:
            if got:
                self._slots.release()
