"""Rendering the console's pages (Jinja2, autoescaped) and its redirects."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from ops.console.people import Person
from ops.console.session import csrf_token, take_flashes

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")


def _when(moment: datetime | str | None) -> str:
    """Times as support reads them: UTC, to the second."""
    if moment is None:
        return "–"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _money(amount_minor: int | None, currency: str = "") -> str:
    return "–" if amount_minor is None else f"{amount_minor:,} {currency}".strip()


TEMPLATES.env.filters.update(when=_when, money=_money)


def root(request: Request) -> str:
    """Where the console is mounted (``/console``): every link and form is under it."""
    return request.scope.get("root_path", "")


def page(request: Request, template: str, person: Person | None, *, status: int = 200, **context: Any) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(request, template, status_code=status, context={
        "person": person, "csrf": csrf_token(request), "flashes": take_flashes(request), "root": root(request),
        **context})


def back_to(request: Request, path: str) -> RedirectResponse:
    """303 to a console page (after a POST: the browser GETs it)."""
    return RedirectResponse(root(request) + path, status_code=303)


def sign_in_url(request: Request) -> str:
    """The sign-in page, coming back to this page afterwards (only ever a console path: no open redirect)."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"{root(request)}/login?next={quote(here)}"


def is_console_path(path: str) -> bool:
    """A path under the console: no scheme or host, no backslash, no ``..`` (plain or percent-encoded), so
    the browser cannot resolve it to another page of the site, let alone another site."""
    lowered = unquote(path).lower()
    return (path.startswith("/") and not path.startswith("//") and "\\" not in lowered and ".." not in lowered
            and not any(ord(c) < 32 for c in lowered))


def safe_next(request: Request, wanted: str | None) -> str:
    """``next`` if it is a page of this console, else the console's home."""
    base = root(request)
    if wanted and wanted.startswith(base + "/") and is_console_path(wanted):
        return wanted
    return base + "/"
