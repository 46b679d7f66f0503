"""A fake Razorpay for unit tests, at the HTTP boundary only (``httpx.MockTransport``)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import httpx

from gateways.port import RemoteOrder
from gateways.razorpay import RazorpayGateway

KEY_ID = "rzp_test_1DP5mmOlF5G5ag"
KEY_SECRET = "thisIsTheApiSecret0001"
EXPECTED_AUTH = "Basic " + base64.b64encode(f"{KEY_ID}:{KEY_SECRET}".encode()).decode()

Handler = Callable[[httpx.Request], httpx.Response]


class FakeRazorpay:
    """Records every request, checks Basic auth on each, and answers with ``handler``."""

    def __init__(self, handler: Handler):
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == EXPECTED_AUTH
        assert request.url.host == "api.razorpay.com"
        self.requests.append(request)
        return self.handler(request)

    def calls(self, method: str | None = None) -> list[tuple[str, str]]:
        """``(method, path)`` of each request so far, optionally only one method."""
        return [(r.method, r.url.path) for r in self.requests if method in (None, r.method)]


def make_gateway(
    handler: Handler,
    sleeps: list[float] | None = None,
    wrap: Callable[[httpx.BaseTransport], httpx.BaseTransport] = lambda transport: transport,
    **overrides: Any,
) -> tuple[RazorpayGateway, FakeRazorpay]:
    """A gateway wired to a FakeRazorpay (through ``wrap(transport)``, e.g. a rate-limited transport);
    sleeps of the GET retry are recorded in ``sleeps``."""
    fake = FakeRazorpay(handler)
    recorded = sleeps if sleeps is not None else []
    gateway = RazorpayGateway(
        key_id=KEY_ID,
        key_secret=KEY_SECRET,
        webhook_secrets=["whsec"],
        transport=wrap(httpx.MockTransport(fake)),
        sleep=recorded.append,
        **overrides,
    )
    return gateway, fake


def razorpay_error(status: int, description: str, code: str = "BAD_REQUEST_ERROR", **headers: str) -> httpx.Response:
    """A Razorpay-shaped error response (docs §6)."""
    body = {
        "error": {
            "code": code,
            "description": description,
            "source": "business",
            "step": "payment_initiation",
            "reason": "input_validation_failed",
            "metadata": {},
        }
    }
    return httpx.Response(status, json=body, headers=headers)


def payment_json(payment_id: str = "pay_29QQoUBi66xm2f", status: str = "captured", **fields: Any) -> dict[str, Any]:
    """A payment entity for order_DaZlswtdcn9UNV (500.00 INR)."""
    return {
        "id": payment_id,
        "entity": "payment",
        "amount": 50000,
        "currency": "INR",
        "status": status,
        "order_id": "order_DaZlswtdcn9UNV",
        "amount_refunded": 0,
        "captured": status == "captured",
        "notes": [],
        **fields,
    }


def order_json(receipt: str = "topup-42", **fields: Any) -> dict[str, Any]:
    """An order entity shaped like the docs' sample."""
    return {
        "id": "order_DaZlswtdcn9UNV",
        "entity": "order",
        "amount": 50000,
        "amount_paid": 0,
        "amount_due": 50000,
        "currency": "INR",
        "receipt": receipt,
        "offer_id": None,
        "status": "created",
        "attempts": 0,
        "notes": {"order_id": "42"},
        "created_at": 1572502745,
        **fields,
    }


def create(gateway: RazorpayGateway, **overrides: Any) -> RemoteOrder:
    """Create the standard test order (receipt topup-42, 500.00 INR), with ``overrides``."""
    arguments = {"receipt": "topup-42", "amount_minor": 50000, "currency": "INR", "notes": {"order_id": "42"}}
    arguments.update(overrides)
    return gateway.create_order(**arguments)
