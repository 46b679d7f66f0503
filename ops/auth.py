"""Bearer tokens for the support and billing endpoints: several, named, so they can be rotated.

``RECON_API_TOKENS='{"billing": "…", "support-2026-11": "…"}'``. Every configured token is
compared in constant time; the caller's name (never the token) is what the audit records.
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
