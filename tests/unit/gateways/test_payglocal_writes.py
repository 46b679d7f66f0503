"""PayGlocal writes: capture with a new merchantTxnId, and finding a lost create again by merchantTxnId."""

from __future__ import annotations

import httpx
import pytest

from gateways.errors import GatewayPermanent, GatewayRateLimited, GatewayTransient
from gateways.payglocal import tokens
from gateways.port import RemoteStatus
from tests.unit.gateways.payglocal_fakes import GID, create, error_json, make_gateway, read_jwe, read_jws, status_json

# Capture -----------------------------------------------------------------------------------


def test_capture_posts_a_new_merchant_txn_id_then_reads_the_status_again() -> None:
    """An AUTHORIZED gid is captured with captureType F and a new merchantTxnId; the re-read shows CAPTURED."""
    states = ["AUTHORIZED", "SENT_FOR_CAPTURE"]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json=status_json(states.pop(0)))
        assert request.url.path == f"/gl/v1/payments/{GID}/capture"
        assert request.headers["content-type"] == "text/plain"
        _, claims = read_jws(request.headers["x-gl-token-external"])
        assert claims["digest"] == tokens.digest_of(request.content)
        payload = read_jwe(request.content.decode())[1]
        assert payload["captureType"] == "F" and payload["paymentData"] == {"totalAmount": "500.00"}
        assert payload["merchantTxnId"] not in (GID, "order-42")
        return httpx.Response(200, json=status_json("SENT_FOR_CAPTURE"))

    gateway, fake = make_gateway(handler)
    payment = gateway.capture(GID, amount_minor=50000, currency="INR")
    assert payment.status is RemoteStatus.CAPTURED
    assert [method for method, _ in fake.calls()] == ["GET", "POST", "GET"]


def test_capture_of_a_captured_payment_returns_it_and_other_states_are_refused() -> None:
    """Already SENT_FOR_CAPTURE: no POST. Declined, or authorised for another amount: GatewayPermanent, no POST."""
    gateway, fake = make_gateway(lambda request: httpx.Response(200, json=status_json("SENT_FOR_CAPTURE")))
    assert gateway.capture(GID, amount_minor=50000, currency="INR").status is RemoteStatus.CAPTURED
    authorized, authorized_fake = make_gateway(lambda request: httpx.Response(200, json=status_json("AUTHORIZED")))
    with pytest.raises(GatewayPermanent, match="not 40000 INR"):
        authorized.capture(GID, amount_minor=40000, currency="INR")
    declined, declined_fake = make_gateway(lambda request: httpx.Response(200, json=status_json("ISSUER_DECLINE")))
    with pytest.raises(GatewayPermanent, match="ISSUER_DECLINE, not AUTHORIZED"):
        declined.capture(GID, amount_minor=50000, currency="INR")
    assert all(method == "GET" for method, _ in fake.calls() + authorized_fake.calls() + declined_fake.calls())


def test_a_repeated_capture_refused_as_duplicate_returns_the_captured_payment() -> None:
    """A 400 on capture is followed by a status read; if it shows the capture, that payment is returned."""
    states = ["AUTHORIZED", "SENT_FOR_CAPTURE"]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return error_json(400, "Duplicate merchantTxnId", "GL-400-002")
        return httpx.Response(200, json=status_json(states.pop(0)))

    gateway, _ = make_gateway(handler)
    assert gateway.capture(GID, amount_minor=50000, currency="INR").status is RemoteStatus.CAPTURED


# Lost creates --------------------------------------------------------------------------------


def test_a_lost_create_is_found_by_merchant_txn_id() -> None:
    """After a 503 on initiate the status is read by merchantTxnId; the found transaction is returned."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return error_json(503, "Service unavailable", "GL-503-001")
        assert request.url.path == "/gl/v1/payments/order-42/status"
        assert read_jws(request.headers["x-gl-token-external"])[1]["digest"] == tokens.digest_of(request.url.path)
        return httpx.Response(200, json=status_json("CREATED"))

    gateway, fake = make_gateway(handler)
    order = create(gateway)
    assert (order.gateway_order_id, order.receipt, order.checkout) == (GID, "order-42", {"gid": GID})
    assert fake.calls()[0] == ("POST", "/gl/v1/payments/initiate/paycollect")


def test_a_duplicate_initiate_400_also_finds_the_earlier_transaction() -> None:
    """A 400 (duplicate merchantTxnId from a lost earlier create) is resolved the same way."""
    responses = [error_json(400, "Duplicate merchantTxnId", "GL-400-002"),
                 httpx.Response(200, json=status_json("CREATED"))]
    gateway, _ = make_gateway(lambda request: responses.pop(0))
    assert create(gateway).gateway_order_id == GID


def test_a_lost_create_that_is_not_found_re_raises_the_original_error() -> None:
    """Nothing under the receipt: the caller gets the create's GatewayTransient to retry later."""
    responses = [error_json(504, "Gateway timeout", "GL-504-001"),
                 error_json(404, "Transaction not found", "GL-404-001")]
    gateway, _ = make_gateway(lambda request: responses.pop(0))
    with pytest.raises(GatewayTransient) as caught:
        create(gateway)
    assert caught.value.status == 504


def test_a_found_transaction_for_another_amount_is_permanent_and_a_429_is_not_looked_up() -> None:
    """The receipt's transaction must match the amount; a rate-limited create is raised without a lookup."""
    responses = [error_json(500, "boom", "GL-500-001"), httpx.Response(200, json=status_json(amount="499.00"))]
    gateway, _ = make_gateway(lambda request: responses.pop(0))
    with pytest.raises(GatewayPermanent, match="49900 INR, not 50000 INR"):
        create(gateway)
    gateway, fake = make_gateway(lambda request: error_json(429, "slow", "GL-429-001"))
    with pytest.raises(GatewayRateLimited):
        create(gateway)
    assert len(fake.requests) == 1
