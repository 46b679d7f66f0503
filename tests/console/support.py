"""Console accounts for tests: one per role, passwords hashed once per run (Argon2 is slow on purpose)."""

from __future__ import annotations

import dataclasses
from functools import cache

from ops.console.people import hash_password
from tests.runtime import CURRENT
from worker.settings import ConsoleAccount, Settings

PASSWORDS = {"vera": "viewer-password-1", "sam": "support-password-1", "rita": "reviewer-password-1"}
ROLES = {"vera": ["viewer"], "sam": ["support"], "rita": ["reviewer"]}


@cache
def accounts() -> dict[str, ConsoleAccount]:
    return {name: ConsoleAccount(roles=ROLES[name], password_hash=hash_password(password))
            for name, password in PASSWORDS.items()}


def with_accounts(deps, accounts_by_name: dict[str, ConsoleAccount] | None = None):
    """The test's Deps with console accounts, installed for the app (``CURRENT``)."""
    chosen = accounts() if accounts_by_name is None else accounts_by_name
    settings = Settings.model_validate({**deps.settings.model_dump(), "console_accounts": {
        name: {"roles": a.roles, "password_hash": a.password_hash.get_secret_value()} for name, a in chosen.items()}})
    CURRENT["deps"] = dataclasses.replace(deps, settings=settings)
    return CURRENT["deps"]
