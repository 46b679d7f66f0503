"""RazorpayGateway writes over a fake Razorpay: create_order (with receipt recovery) and capture."""

from __future__ import annotations

import json

import httpx
import pytest

from gateways.errors import GatewayError, GatewayNotFound, GatewayPermanent, GatewayTransient
from gateways.port import RemoteStatus
from tests.unit.gateways.razorpay_fakes import (
    KEY_ID,
    KEY_SECRET,
    Handler,
    create,
    make_gateway,
    order_json,
    payment_json,
    razorpay_error,
)

# Create order --------------------------------------------------------------------------


def test_create_order_posts_receipt_notes_and_capture_settings() -> None:
    """POST /v1/orders carries integer amount, receipt, notes and the per-order capture object."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("POST", "/v1/orders")
        assert request.headers["Content-Type"] == "application/json"
        body = json.loads(request.content)
        assert body == {
            "amount": 50000,
            "currency": "INR",
            "receipt": "topup-42",
            "notes": {"order_id": "42"},
            "payment": {
                "capture": "automatic",
                "capture_options": {
                    "automatic_expiry_period": 12,
                    "manual_expiry_period": 7200,
                    "refund_speed": "optimum",
                },
            },
        }
        return httpx.Response(200, json=order_json())

    gateway, fake = make_gateway(handler)
    order = create(gateway, manual_capture=False)
    assert order.gateway_order_id == "order_DaZlswtdcn9UNV"
    assert (order.amount_minor, order.currency, order.receipt) == (50000, "INR", "topup-42")
    assert dict(order.checkout) == {
        "key_id": KEY_ID,
        "order_id": "order_DaZlswtdcn9UNV",
        "amount": "50000",
        "currency": "INR",
    }
    assert KEY_SECRET not in json.dumps(dict(order.checkout))
    assert len(fake.requests) == 1


@pytest.mark.parametrize(("default", "argument"), [(False, True), (True, None)])
def test_manual_capture_comes_from_the_argument_or_the_default(default: bool, argument: bool | None) -> None:
    """Manual capture sends capture=manual without an automatic expiry."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert json.loads(request.content)["payment"] == {
            "capture": "manual",
            "capture_options": {"manual_expiry_period": 7200, "refund_speed": "optimum"},
        }
        return httpx.Response(200, json=order_json())

    gateway, _ = make_gateway(handler, manual_capture_default=default)
    create(gateway, manual_capture=argument)


def times_out(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("response lost", request=request)


def gateway_timeout(request: httpx.Request) -> httpx.Response:
    return razorpay_error(504, "Gateway timed out", code="GATEWAY_ERROR")


@pytest.mark.parametrize("failure", [times_out, gateway_timeout], ids=["read-timeout", "504"])
def test_a_lost_create_response_is_recovered_by_receipt(failure: Handler) -> None:
    """POST once; on a transient error, GET /v1/orders?receipt= finds the order that was made."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return failure(request)
        assert request.url.path == "/v1/orders"
        assert request.url.params["receipt"] == "topup-42"
        items = [order_json(receipt="topup-4"), order_json()]
        return httpx.Response(200, json={"entity": "collection", "count": 2, "items": items})

    gateway, fake = make_gateway(handler)
    order = create(gateway)
    assert order.gateway_order_id == "order_DaZlswtdcn9UNV" and order.receipt == "topup-42"
    assert order.checkout["order_id"] == "order_DaZlswtdcn9UNV"
    assert fake.calls("POST") == [("POST", "/v1/orders")]


def test_a_lost_create_with_no_order_found_reraises_the_create_error() -> None:
    """If the lookup finds no order with exactly our receipt, the original transient error is raised."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            raise httpx.ReadTimeout("lost", request=request)
        return httpx.Response(200, json={"entity": "collection", "count": 1, "items": [order_json(receipt="other")]})

    gateway, fake = make_gateway(handler)
    with pytest.raises(GatewayTransient) as caught:
        create(gateway)
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
    assert fake.calls() == [("POST", "/v1/orders"), ("GET", "/v1/orders")]


def test_a_lost_create_whose_lookup_also_fails_reraises_the_create_error() -> None:
    """A failing lookup (retried as a GET) still surfaces the create's own error."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return razorpay_error(503, "create down", code="SERVER_ERROR")
        return razorpay_error(503, "lookup down", code="SERVER_ERROR")

    sleeps: list[float] = []
    gateway, fake = make_gateway(handler, sleeps)
    with pytest.raises(GatewayTransient, match="POST /v1/orders"):
        create(gateway)
    assert len(fake.calls("POST")) == 1 and len(fake.calls("GET")) == 3


def test_a_refused_create_is_permanent_without_a_lookup() -> None:
    """A 400 on create (e.g. amount too small) is not a lost response: no receipt lookup."""
    gateway, fake = make_gateway(lambda request: razorpay_error(400, "The amount must be at least INR 1.00"))
    with pytest.raises(GatewayPermanent, match=r"at least INR 1\.00"):
        create(gateway, amount_minor=50)
    assert fake.calls() == [("POST", "/v1/orders")]


def test_a_recovered_order_for_another_amount_is_refused() -> None:
    """A receipt that found an order for a different amount is never returned as ours."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(502, text="<html>bad gateway</html>")
        return httpx.Response(200, json={"entity": "collection", "items": [order_json(amount=100)]})

    gateway, _ = make_gateway(handler)
    with pytest.raises(GatewayPermanent, match="not 50000 INR"):
        create(gateway)


def test_create_order_refuses_non_integer_money_before_any_request() -> None:
    """Float amounts never reach the wire."""
    gateway, fake = make_gateway(lambda request: httpx.Response(200, json=order_json()))
    with pytest.raises(TypeError, match="minor units"):
        create(gateway, amount_minor=500.0)
    assert fake.requests == []


# Capture -------------------------------------------------------------------------------


def test_capture_posts_amount_and_currency() -> None:
    """POST /v1/payments/{id}/capture with the authorised amount; the captured payment is returned."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("POST", "/v1/payments/pay_29QQoUBi66xm2f/capture")
        assert json.loads(request.content) == {"amount": 50000, "currency": "INR"}
        return httpx.Response(200, json=payment_json())

    gateway, fake = make_gateway(handler)
    payment = gateway.capture("pay_29QQoUBi66xm2f", amount_minor=50000, currency="INR")
    assert payment.status is RemoteStatus.CAPTURED
    assert len(fake.requests) == 1


def test_capturing_an_already_captured_payment_refetches_it() -> None:
    """Razorpay's 400 "already been captured" turns into a re-fetch of the payment."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return razorpay_error(400, "This payment has already been captured")
        assert request.url.path == "/v1/payments/pay_29QQoUBi66xm2f"
        return httpx.Response(200, json=payment_json())

    gateway, fake = make_gateway(handler)
    payment = gateway.capture("pay_29QQoUBi66xm2f", amount_minor=50000, currency="INR")
    assert payment.status is RemoteStatus.CAPTURED
    assert fake.calls() == [
        ("POST", "/v1/payments/pay_29QQoUBi66xm2f/capture"),
        ("GET", "/v1/payments/pay_29QQoUBi66xm2f"),
    ]


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (razorpay_error(400, "Capture amount must be equal to the amount authorized"), GatewayPermanent),
        (razorpay_error(400, "Your payment has been declined as the order is already paid."), GatewayPermanent),
        (razorpay_error(400, "The id provided does not exist"), GatewayNotFound),
        (razorpay_error(503, "down", code="SERVER_ERROR"), GatewayTransient),
    ],
)
def test_other_capture_failures_are_raised_and_never_retried(response: httpx.Response,
                                                             error: type[GatewayError]) -> None:
    """Capture is a POST: one attempt, the mapped error, no re-fetch."""
    sleeps: list[float] = []
    gateway, fake = make_gateway(lambda request: response, sleeps)
    with pytest.raises(error):
        gateway.capture("pay_29QQoUBi66xm2f", amount_minor=50000, currency="INR")
    assert fake.calls() == [("POST", "/v1/payments/pay_29QQoUBi66xm2f/capture")] and sleeps == []
