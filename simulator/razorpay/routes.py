"""Razorpay's ``/v1`` HTTP API over :class:`~simulator.razorpay.state.RazorpaySim`, and how its edge
answers injected faults.

Every route requires HTTP Basic auth with ``key_id:key_secret``; the scheme must be exactly ``Basic``
(razorpay.md §1). Errors are raised as :class:`~simulator.razorpay.codec.RazorpayApiError`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from simulator.faults import FaultAnswers
from simulator.razorpay.codec import RazorpayApiError, error_body
from simulator.razorpay.state import RazorpaySim

PREFIX = "/v1"

_HTML = "<html>\r\n<head><title>{0}</title></head>\r\n<body>\r\n<center><h1>{0}</h1></center>\r\n</body>\r\n</html>\r\n"
#: razorpay.md §6: GATEWAY_ERROR comes with 504 and SERVER_ERROR with 500 (SDK tests); a 502/503 from the
#: edge is an HTML page ("A non-JSON error body (HTML 502)", §0.6).
_SERVER_ERROR_BODIES: dict[int, tuple[str, str]] = {
    500: ("SERVER_ERROR", "The server encountered an error. The incident has been reported to admins."),
    504: ("GATEWAY_ERROR", "Gateway timed out. Please try again."),
}
_SERVER_ERROR_HTML = {502: "502 Bad Gateway", 503: "503 Service Temporarily Unavailable"}


def server_error(status: int) -> Response:
    """A 5xx as Razorpay's edge returns it: JSON for 500/504, an HTML page for 502/503."""
    if status in _SERVER_ERROR_HTML:
        return HTMLResponse(_HTML.format(_SERVER_ERROR_HTML[status]), status_code=status)
    code, description = _SERVER_ERROR_BODIES[status]
    return JSONResponse(error_body(code, description), status_code=status)


def rate_limited() -> Response:
    """A 429 with no ``Retry-After`` and no ``X-RateLimit-*`` header: none is documented (razorpay.md §0.8, §6);
    the body's exact text is unconfirmed (§6)."""
    return JSONResponse(error_body("BAD_REQUEST_ERROR", "Too many requests"), status_code=429)


FAULTS = FaultAnswers(prefix=PREFIX + "/", rate_limited=rate_limited, server_error=server_error)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise RazorpayApiError(400, "The request body is not valid JSON.") from None


def build_router(rzp: RazorpaySim) -> APIRouter:
    """The ``/v1`` routes of one simulated Razorpay account."""

    def require_auth(request: Request) -> None:
        header = request.headers.get("authorization")
        if not header:
            raise RazorpayApiError(401, "Please provide your api key for authentication purposes.")
        scheme, _, token = header.partition(" ")
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        key_id, sep, secret = decoded.partition(":")
        ok = scheme == "Basic" and sep == ":"
        ok = _same(key_id, rzp.config.key_id) & _same(secret, rzp.config.key_secret) & ok
        if not ok:
            raise RazorpayApiError(401, "Authentication failed")

    router = APIRouter(prefix=PREFIX, dependencies=[Depends(require_auth)])

    @router.post("/orders")
    async def create_order(request: Request) -> JSONResponse:
        return JSONResponse(rzp.create_order(await _json_body(request)))

    @router.get("/orders")
    async def list_orders(request: Request) -> JSONResponse:
        return JSONResponse(rzp.list_orders(request.query_params))

    @router.get("/orders/{order_id}")
    async def fetch_order(order_id: str) -> JSONResponse:
        return JSONResponse(rzp.fetch_order(order_id))

    @router.get("/orders/{order_id}/payments")
    async def order_payments(order_id: str) -> JSONResponse:
        return JSONResponse(rzp.order_payments(order_id))

    @router.get("/payments")
    async def list_payments(request: Request) -> JSONResponse:
        return JSONResponse(rzp.list_payments(request.query_params))

    @router.get("/payments/{payment_id}")
    async def fetch_payment(payment_id: str) -> JSONResponse:
        return JSONResponse(rzp.fetch_payment(payment_id))

    @router.post("/payments/{payment_id}/capture")
    async def capture(payment_id: str, request: Request) -> JSONResponse:
        return JSONResponse(rzp.capture(payment_id, await _json_body(request)))

    _add_refund_and_dispute_routes(router, rzp)
    _add_settlement_routes(router, rzp)
    return router


def _add_refund_and_dispute_routes(router: APIRouter, rzp: RazorpaySim) -> None:
    """after-capture.md §2.1 (refunds) and §3.3 (disputes)."""

    @router.post("/payments/{payment_id}/refund")
    async def create_refund(payment_id: str, request: Request) -> JSONResponse:
        key = request.headers.get("x-refund-idempotency")
        return JSONResponse(rzp.create_refund(payment_id, await _json_body(request), key))

    @router.get("/payments/{payment_id}/refunds")
    async def payment_refunds(payment_id: str, request: Request) -> JSONResponse:
        return JSONResponse(rzp.payment_refunds(payment_id, request.query_params))

    @router.get("/payments/{payment_id}/refunds/{refund_id}")
    async def payment_refund(payment_id: str, refund_id: str) -> JSONResponse:
        return JSONResponse(rzp.fetch_refund(refund_id, payment_id))

    @router.get("/refunds")
    async def list_refunds(request: Request) -> JSONResponse:
        return JSONResponse(rzp.list_refunds(request.query_params))

    @router.get("/refunds/{refund_id}")
    async def fetch_refund(refund_id: str) -> JSONResponse:
        return JSONResponse(rzp.fetch_refund(refund_id))

    @router.get("/disputes")
    async def list_disputes(request: Request) -> JSONResponse:
        return JSONResponse(rzp.list_disputes(request.query_params))

    @router.get("/disputes/{dispute_id}")
    async def fetch_dispute(dispute_id: str) -> JSONResponse:
        return JSONResponse(rzp.fetch_dispute(dispute_id))

    @router.post("/disputes/{dispute_id}/accept")
    async def accept_dispute(dispute_id: str) -> JSONResponse:
        return JSONResponse(rzp.accept_dispute(dispute_id))


def _add_settlement_routes(router: APIRouter, rzp: RazorpaySim) -> None:
    """after-capture.md §4.1-4.2 (the recon path before ``{settlement_id}``)."""

    @router.get("/settlements")
    async def list_settlements(request: Request) -> JSONResponse:
        return JSONResponse(rzp.settlements.list_settlements(request.query_params))

    @router.get("/settlements/recon/combined")
    async def recon(request: Request) -> JSONResponse:
        return JSONResponse(rzp.settlements.recon(request.query_params))

    @router.get("/settlements/{settlement_id}")
    async def fetch_settlement(settlement_id: str) -> JSONResponse:
        return JSONResponse(rzp.settlements.fetch_settlement(settlement_id))
