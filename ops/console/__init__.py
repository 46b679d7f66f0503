"""The support console: server-rendered pages on ``recon web`` under ``/console`` (Jinja2, plain forms, no
front-end build). Support staff have no shell in production: this is where they find an order, read its
story and act on it, signed in as themselves (:mod:`ops.console.people`, :mod:`ops.console.session`).

A sub-application of its own: its session cookie, its CSRF check and its HTML error pages stay off the JSON API.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from ops.console import actions, pages, render
from ops.console.session import COOKIE, CsrfRejected, NotAllowed, SignInRequired
from worker.actors import Actors
from worker.deps import Deps
from worker.domain.errors import UnknownOrder

STATIC = Path(__file__).parent / "static"


def _sign_in(request: Request, _exc: SignInRequired) -> RedirectResponse:
    return RedirectResponse(render.sign_in_url(request), status_code=303)


def _not_allowed(request: Request, exc: NotAllowed) -> HTMLResponse:
    return render.page(request, "error.html", exc.person, status=403, title="Not allowed",
                       message=f"Your role does not allow this: {exc}. Ask a colleague who has the role.")


def _csrf(request: Request, _exc: CsrfRejected) -> HTMLResponse:
    return render.page(request, "error.html", None, status=403, title="Form refused",
                       message="This form did not come from your console session (it expired, or another site "
                               "sent it). Nothing was done. Reload the page and try again.")


def _unknown(request: Request, exc: UnknownOrder) -> HTMLResponse:
    return render.page(request, "error.html", None, status=404, title="No such order", message=str(exc))


#: Every console answer: never framed (clickjacking), never cached (a shared machine's back button), nothing
#: loaded from elsewhere (the pages use their own stylesheet only, no script).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


async def _secured(request: Request, call_next) -> Response:
    answer = await call_next(request)
    answer.headers.update(SECURITY_HEADERS)
    return answer


def create_console(deps: Callable[[], Deps], actors: Callable[[], Actors], *, secret: str, secure_cookies: bool,
                   session_s: int) -> FastAPI:
    """The console app, to mount at ``/console``. ``secret`` signs the session cookie: the same on every web
    process, or a session signed by one is refused by the next."""
    console = FastAPI(title="gateway-recon console", docs_url=None, redoc_url=None, openapi_url=None)
    console.state.deps, console.state.actors = deps, actors
    console.middleware("http")(_secured)
    console.add_middleware(SessionMiddleware, secret_key=secret, session_cookie=COOKIE, max_age=session_s,
                           path="/console", same_site="strict", https_only=secure_cookies)
    console.add_exception_handler(SignInRequired, _sign_in)
    console.add_exception_handler(NotAllowed, _not_allowed)
    console.add_exception_handler(CsrfRejected, _csrf)
    console.add_exception_handler(UnknownOrder, _unknown)
    console.include_router(pages.router)
    console.include_router(actions.router)
    console.mount("/static", StaticFiles(directory=STATIC), name="static")
    return console
