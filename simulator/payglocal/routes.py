"""PayGlocal's ``/gl/v1/payments`` HTTP API over :class:`~simulator.payglocal.state.PayGlocalSim`, and how its
edge answers injected faults.

Every route checks ``x-gl-token-external`` as PayGlocal would (see
:mod:`simulator.payglocal.keys`): the digest covers the raw JWE body of a POST and the
request path of a GET status. POST bodies are compact JWEs sent as ``text/plain``. A status URL
carrying PayGlocal's own ``?x-gl-token=`` (from the initiate answer) is served without a merchant
token, as the plugins use it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from simulator.faults import FaultAnswers
from simulator.payglocal.codec import PayGlocalApiError
from simulator.payglocal.state import PayGlocalSim

PREFIX = "/gl/v1/payments"


def rate_limited() -> Response:
    """A 429 in PayGlocal's envelope; "on 429 honour Retry-After if present" (payglocal.md §5, §0.8: "a 429 may
    carry Retry-After"), so this one carries it."""
    body = PayGlocalApiError(429, "Too many requests", reason_code="GL-429-001").body()
    return JSONResponse(body, status_code=429, headers={"Retry-After": "1"})


def server_error(status: int) -> Response:
    """A 5xx in PayGlocal's envelope (payglocal.md §5: 501 = system error; SYSTEM_ERROR "retry later")."""
    error = PayGlocalApiError(status, "System error", reason_code=f"GL-{status}-001", status_text="SYSTEM_ERROR")
    return JSONResponse(error.body(), status_code=status)


FAULTS = FaultAnswers(prefix="/gl/", rate_limited=rate_limited, server_error=server_error)


def _raw_path(request: Request) -> bytes:
    """The path exactly as sent (still percent-encoded): what the merchant's digest covers."""
    raw = request.scope.get("raw_path")
    return raw.split(b"?", 1)[0] if isinstance(raw, bytes) and raw else request.url.path.encode("utf-8")


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def build_router(pg: PayGlocalSim) -> APIRouter:
    """The ``/gl/v1/payments`` routes of one simulated PayGlocal merchant account."""
    router = APIRouter(prefix=PREFIX)

    async def signed_payload(request: Request) -> Any:
        body = await request.body()
        pg.keys.verify_request(request.headers, body)
        return pg.keys.decrypt(body)

    @router.post("/initiate/paycollect")
    async def initiate(request: Request) -> JSONResponse:
        payload = await signed_payload(request)
        return JSONResponse(pg.initiate(payload, _base_url(request)), status_code=201)

    @router.get("/{identifier}/status")
    async def status(identifier: str, request: Request) -> JSONResponse:
        own = request.query_params.get("x-gl-token")
        if own and "x-gl-token-external" not in request.headers:
            claims = pg.keys.verify_own(own)
            if claims is None or identifier not in (claims.get("x-gl-gid"), claims.get("gid")):
                raise PayGlocalApiError(401, "Invalid x-gl-token", reason_code="GL-401-002")
        else:
            pg.keys.verify_request(request.headers, _raw_path(request))
        return JSONResponse(pg.status(identifier))

    @router.post("/{gid}/capture")
    async def capture(gid: str, request: Request) -> JSONResponse:
        payload = await signed_payload(request)
        return JSONResponse(pg.capture(gid, payload))

    @router.post("/{gid}/refund")
    async def refund(gid: str, request: Request) -> JSONResponse:
        """after-capture.md §5.1; 201 like every transaction response, a failed one included (payglocal.md §5)."""
        payload = await signed_payload(request)
        return JSONResponse(pg.create_refund(gid, payload), status_code=201)

    return router
