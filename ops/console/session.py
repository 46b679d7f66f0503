"""The console's session: a cookie signed by Starlette's ``SessionMiddleware`` (itsdangerous, with an expiry),
holding who signed in, until when, a fingerprint of their password hash, the CSRF token and flash messages.

CSRF: the synchronizer-token pattern (OWASP's first recommendation): a random token in the signed session, a
hidden field in every form, compared in constant time on every POST; the cookie is also ``SameSite=Strict``.
The session is read again on every request against the current settings, so an account removed, a role taken
away or a password changed takes effect at once. Signing out clears the cookie; a copied cookie stays valid
until its expiry (``RECON_CONSOLE_SESSION_S``) unless the password changes: it is not stored server-side.
"""

from __future__ import annotations

import hmac
import secrets
import time
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.datastructures import FormData

from ops.console.people import Person, fingerprint
from ops.context import DepsParam
from worker.settings import ConsoleAccount

COOKIE = "recon_console"


class SignInRequired(Exception):
    """No valid session: the page sends the browser to sign in, then back."""


class NotAllowed(Exception):
    def __init__(self, person: Person, permission: str):
        super().__init__(f"{person.name} ({', '.join(person.roles)}) may not {permission}")
        self.person, self.permission = person, permission


class CsrfRejected(Exception):
    """A form without this session's token: forged on another site, or from a session that has ended."""


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


async def checked_form(request: Request) -> FormData:
    """Every POST's form, once its CSRF token matches the session's."""
    form = await request.form()
    expected, given = request.session.get("csrf"), form.get("csrf_token")
    if not expected or not isinstance(given, str) or not hmac.compare_digest(expected.encode(), given.encode()):
        raise CsrfRejected()
    return form


CheckedForm = Annotated[FormData, Depends(checked_form)]


def begin(request: Request, person: Person, account: ConsoleAccount, *, lasts_s: int) -> None:
    """A fresh session for ``person`` (nothing of the signed-out one is kept, its CSRF token neither)."""
    request.session.clear()
    request.session.update(who=person.name, pw=fingerprint(account), until=int(time.time()) + lasts_s,
                           csrf=secrets.token_urlsafe(32))


def end(request: Request) -> None:
    request.session.clear()


def signed_in(request: Request, deps: DepsParam) -> Person:
    """The person signed in, as the settings describe them now; :class:`SignInRequired` otherwise."""
    session = request.session
    name = session.get("who")
    account = deps.settings.console_accounts.get(name) if isinstance(name, str) else None
    if account is None or session.get("pw") != fingerprint(account) or session.get("until", 0) < time.time():
        session.pop("who", None)
        raise SignInRequired()
    return Person(name, tuple(account.roles))


SignedIn = Annotated[Person, Depends(signed_in)]


def allowed(permission: str):
    """A dependency: the person signed in, if a role of theirs permits ``permission``; :class:`NotAllowed` else."""

    def check(person: SignedIn) -> Person:
        if not person.may(permission):
            raise NotAllowed(person, permission)
        return person

    return Depends(check)


def flash(request: Request, kind: str, message: str, detail: dict[str, Any] | None = None) -> None:
    """A message for the next page (the action redirects: post, redirect, get)."""
    request.session.setdefault("flash", []).append({"kind": kind, "message": message, "detail": detail})


def take_flashes(request: Request) -> list[dict[str, Any]]:
    return request.session.pop("flash", [])
