"""Razorpay's ``/v1`` HTTP API over :class:`~gateways.simulator.razorpay.RazorpaySim`.

Every route requires HTTP Basic auth with ``key_id:key_secret``; errors are raised as
:class:`~gateways.simulator.razorpay_rules.RazorpayApiError` and rendered by the app's handler.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from gateways.simulator.razorpay import RazorpaySim
from gateways.simulator.razorpay_rules import RazorpayApiError


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

    router = APIRouter(prefix="/v1", dependencies=[Depends(require_auth)])

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

    return router
