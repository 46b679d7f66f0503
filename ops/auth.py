"""Bearer tokens for the support and billing endpoints: several, named, so they can be rotated, each with the
least it needs.

``RECON_API_TOKENS='{"billing": "…", "support-2026-11": "…"}'`` and
``RECON_API_TOKEN_SCOPES='{"billing": ["billing"], "support-2026-11": ["support"]}'``. Every configured token is
compared in constant time; the caller's name (never the token) is what the audit records. Scopes:

- ``billing``: create and verify orders, read transactions and ledgers;
- ``support``: recheck, refund, record chargebacks, read and replay event deliveries;
- ``reviewer``: review decisions;
- ``finance``: the settlement report.

Reading one order (``GET /orders/{id}``) needs any scope. Outside its scopes a token gets 403.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ops.context import DepsParam

bearer = HTTPBearer(auto_error=False, description="A named API token from RECON_API_TOKENS")


def caller(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
           deps: DepsParam) -> str:
    """The name of the token presented: 401 without a bearer token, 403 for an unknown one."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise HTTPException(status_code=401, detail="a bearer token is required",
                            headers={"WWW-Authenticate": "Bearer"})
    presented = credentials.credentials.encode()
    found = None
    for name, token in deps.settings.api_tokens.items():
        if hmac.compare_digest(token.get_secret_value().encode(), presented):
            found = name
    if found is None:
        raise HTTPException(status_code=403, detail="this token is not allowed")
    return found


Caller = Annotated[str, Depends(caller)]


ALL_SCOPES = ("billing", "support", "reviewer", "finance")


def scopes_of(name: str, deps) -> tuple[str, ...]:
    """A token's scopes; one the settings do not list has all of them (``recon web`` warns at start)."""
    listed = deps.settings.api_token_scopes.get(name)
    return ALL_SCOPES if listed is None else tuple(listed)


def requires(scope: str):
    """A dependency: the caller's name, if its token has ``scope``; 403 otherwise."""

    def check(who: Caller, deps: DepsParam) -> str:
        if scope not in scopes_of(who, deps):
            raise HTTPException(status_code=403, detail=f"token {who!r} lacks the {scope!r} scope")
        return who

    return Depends(check)


Billing = Annotated[str, requires("billing")]
Support = Annotated[str, requires("support")]
Reviewer = Annotated[str, requires("reviewer")]
Finance = Annotated[str, requires("finance")]
