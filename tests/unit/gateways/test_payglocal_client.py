"""PayGlocalClient / PayGlocalGateway over a fake PayGlocal: wire shapes, error mapping, retries, callbacks."""

from __future__ import annotations

import httpx
import pytest

from gateways.errors import (
    GatewayNotFound,
    GatewayPermanent,
    GatewayRateLimited,
    GatewayTransient,
)
from gateways.payglocal import PayGlocalGateway, tokens
from gateways.port import FailureKind, PaymentGateway, RemoteStatus
from tests.unit.gateways.payglocal_fakes import (
    CALLBACK_URL,
    GID,
    MID,
    NOW_MS,
    create,
    error_json,
    gateway_kwargs,
    initiate_json,
    make_gateway,
    read_jwe,
    read_jws,
    status_json,
)

STATUS_PATH = f"/gl/v1/payments/{GID}/status"


# Wire shapes -------------------------------------------------------------------------------


def test_the_gateway_satisfies_the_port() -> None:
    """PayGlocalGateway is a PaymentGateway named payglocal."""
    gateway, _ = make_gateway(lambda request: httpx.Response(500))
    assert isinstance(gateway, PaymentGateway) and gateway.name == "payglocal"
    assert "PRIVATE" not in repr(gateway)


def test_initiate_posts_a_jwe_as_text_plain_with_a_jws_over_it() -> None:
    """POST /gl/v1/payments/initiate/paycollect: text/plain JWE body, x-gl-token-external digest of that body."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("POST", "/gl/v1/payments/initiate/paycollect")
        assert request.headers["content-type"] == "text/plain"
        body = request.content.decode("ascii")
        _, claims = read_jws(request.headers["x-gl-token-external"])
        assert claims["digest"] == tokens.digest_of(body) and claims["iat"] == str(NOW_MS)
        _, payload = read_jwe(body)
        assert payload == {
            "merchantTxnId": "order-42",
            "merchantUniqueId": "order-42",
            "paymentData": {"totalAmount": "500.00", "txnCurrency": "INR"},
            "merchantCallbackURL": CALLBACK_URL,
            "captureTxn": True,
        }
        return httpx.Response(201, json=initiate_json())

    gateway, fake = make_gateway(handler)
    order = create(gateway)
    assert (order.gateway_order_id, order.receipt, order.amount_minor, order.currency) == (
        GID, "order-42", 50000, "INR")
    assert order.checkout == {"redirect_url": initiate_json()["data"]["redirectUrl"], "gid": GID}
    assert len(fake.requests) == 1


def test_manual_capture_and_three_decimal_currencies_shape_the_payload() -> None:
    """manual_capture=True sends captureTxn false; KWD amounts get three decimals."""
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(read_jwe(request.content.decode())[1])
        return httpx.Response(201, json=initiate_json())

    gateway, _ = make_gateway(handler)
    create(gateway, amount_minor=1234, currency="kwd", manual_capture=True)
    assert seen["captureTxn"] is False and seen["paymentData"] == {"totalAmount": "1.234", "txnCurrency": "KWD"}


def test_status_is_a_get_without_body_signed_over_the_path() -> None:
    """GET /gl/v1/payments/{gid}/status carries a JWS whose digest is SHA-256 of the path; data.status decides."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path, request.content) == ("GET", STATUS_PATH, b"")
        header, claims = read_jws(request.headers["x-gl-token-external"])
        assert claims["digest"] == "gudDUpKXGsu0BtpLKuXbNGKf5xJU4s4ebErBt99mD+E="
        assert header["x-gl-merchantId"] == MID
        return httpx.Response(200, json=status_json("SENT_FOR_CAPTURE", top="CREATED"))

    gateway, _ = make_gateway(handler)
    order = gateway.fetch_order(GID)
    assert order.gateway_order_id == GID and order.wire_status == "SENT_FOR_CAPTURE"
    assert [p.status for p in order.payments] == [RemoteStatus.CAPTURED]
    assert gateway.fetch_payment(GID).status is RemoteStatus.CAPTURED


# Error classification ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        error_json(404, "Transaction not found", "GL-404-001"),
        error_json(400, "Invalid request", "GL-400-999"),
        error_json(400, "Transaction not found", "GL-400-001"),
        httpx.Response(404, json={"status": "REQUEST_ERROR", "errors": {"displayMessage": "Invalid gid"}}),
    ],
)
def test_both_not_found_forms_become_gateway_not_found_without_retry(response: httpx.Response) -> None:
    """PayGlocal's 404 envelope and the 400 GL-400-999 / "Transaction not found" variant are GatewayNotFound,
    asked once."""
    sleeps: list[float] = []
    gateway, fake = make_gateway(lambda request: response, sleeps)
    with pytest.raises(GatewayNotFound) as caught:
        gateway.fetch_order(GID)
    assert caught.value.status == response.status_code
    assert len(fake.requests) == 1 and sleeps == []


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(404, text="<html><body>404 Not Found</body></html>", headers={"Content-Type": "text/html"}),
        httpx.Response(404, text="Not Found"),
        httpx.Response(404),
        httpx.Response(404, json={"timestamp": "2026-06-02T16:22:10Z", "status": 404, "error": "Not Found",
                                  "path": STATUS_PATH}),  # a framework's JSON 404, not PayGlocal's
        httpx.Response(404, json={"message": "no Route matched with those values"}),  # an API gateway's
        httpx.Response(403, text="<html><body>Request blocked</body></html>", headers={"Content-Type": "text/html"}),
    ],
)
def test_a_404_or_4xx_that_is_not_payglocals_envelope_is_transient(response: httpx.Response) -> None:
    """A proxy's HTML (or any non-JSON, or foreign JSON) 404 says nothing about the transaction:
    GatewayTransient, retried like a server error, never GatewayNotFound (that sends a live order to review)."""
    sleeps: list[float] = []
    gateway, fake = make_gateway(lambda request: response, sleeps)
    with pytest.raises(GatewayTransient) as caught:
        gateway.fetch_order(GID)
    assert not isinstance(caught.value, GatewayNotFound) and caught.value.status == response.status_code
    assert len(fake.requests) == 3 and len(sleeps) == 2


def test_a_proxy_404_then_the_real_answer_reads_the_payment() -> None:
    """One HTML 404 from a proxy mid-call does not lose the order: the retried GET gets PayGlocal's answer."""
    html = httpx.Response(404, text="<html><body>404 Not Found</body></html>", headers={"Content-Type": "text/html"})
    responses = [html, httpx.Response(200, json=status_json())]
    gateway, fake = make_gateway(lambda request: responses.pop(0))
    assert gateway.fetch_payment(GID).status is RemoteStatus.CAPTURED and len(fake.requests) == 2


@pytest.mark.parametrize(
    ("status", "reason"),
    [(400, "GL-400-001"), (401, "GL-401-002"), (403, "GL-403-001"), (409, "GL-409-001"), (422, "GL-422-001")],
)
def test_other_4xx_are_permanent_and_not_retried(status: int, reason: str) -> None:
    """Bad request, bad or expired token, unknown kid: GatewayPermanent with its evidence, one request."""
    sleeps: list[float] = []
    gateway, fake = make_gateway(lambda request: error_json(status, "Token signature verification failed", reason),
                                 sleeps)
    with pytest.raises(GatewayPermanent) as caught:
        gateway.fetch_payment(GID)
    assert caught.value.status == status and reason in str(caught.value) and reason in caught.value.body
    assert len(fake.requests) == 1 and sleeps == []


@pytest.mark.parametrize("status", [500, 501, 502, 503, 504, 408])
def test_server_errors_are_transient_and_gets_are_retried_a_bounded_number_of_times(status: int) -> None:
    """5xx (501 is PayGlocal's system error) and 408: three attempts, then GatewayTransient."""
    sleeps: list[float] = []
    gateway, fake = make_gateway(lambda request: error_json(status, "System error", "GL-500-001"), sleeps)
    with pytest.raises(GatewayTransient):
        gateway.fetch_order(GID)
    assert len(fake.requests) == 3 and len(sleeps) == 2


def test_each_retried_get_is_signed_afresh() -> None:
    """A retry after a 503 carries a new token (the clock moved on)."""
    ticks = iter(range(NOW_MS, NOW_MS + 10_000, 1_000))
    responses = [error_json(503, "busy", "GL-503-001"), httpx.Response(200, json=status_json())]
    gateway, fake = make_gateway(lambda request: responses.pop(0), now_ms=lambda: next(ticks))
    assert gateway.fetch_order(GID).payments[0].status is RemoteStatus.CAPTURED
    tokens_sent = [r.headers["x-gl-token-external"] for r in fake.requests]
    assert len(set(tokens_sent)) == 2


def test_a_429_retry_after_is_honoured() -> None:
    """Retry-After: 2 is slept exactly before the next attempt."""
    sleeps: list[float] = []
    responses = [error_json(429, "Too many requests", "GL-429-001", **{"Retry-After": "2"}),
                 httpx.Response(200, json=status_json())]
    gateway, fake = make_gateway(lambda request: responses.pop(0), sleeps)
    assert gateway.fetch_payment(GID).status is RemoteStatus.CAPTURED
    assert sleeps == [2.0] and len(fake.requests) == 2


def test_a_long_retry_after_is_left_to_the_caller() -> None:
    """Retry-After: 30 is longer than an in-call wait: GatewayRateLimited(retry_after=30) at once."""
    sleeps: list[float] = []
    response = error_json(429, "slow down", "GL-429-001", **{"Retry-After": "30"})
    gateway, fake = make_gateway(lambda request: response, sleeps)
    with pytest.raises(GatewayRateLimited) as caught:
        gateway.fetch_order(GID)
    assert caught.value.retry_after == 30.0 and len(fake.requests) == 1 and sleeps == []


def test_timeouts_and_garbage_success_bodies_are_transient() -> None:
    """A read timeout and a 200 that is not JSON are GatewayTransient, never a failed payment."""

    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    gateway, fake = make_gateway(timeout)
    with pytest.raises(GatewayTransient, match="timed out"):
        gateway.fetch_order(GID)
    assert len(fake.requests) == 3
    gateway, _ = make_gateway(lambda request: httpx.Response(200, text="<html>maintenance</html>"))
    with pytest.raises(GatewayTransient, match="not a JSON object"):
        gateway.fetch_order(GID)


def test_a_timeout_is_mandatory_and_the_encryption_kid_must_be_configured() -> None:
    """timeout=None and an unknown payglocal_public_kid are refused at construction."""
    with pytest.raises(ValueError, match="timeout"):
        PayGlocalGateway(timeout=None, **gateway_kwargs())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="payglocal_public_kid"):
        PayGlocalGateway(**gateway_kwargs(payglocal_public_kid="nope"))


def test_a_failed_status_keeps_its_failure_kind_through_the_gateway() -> None:
    """CONDITIONAL_DECLINE arrives as FAILED/TIMED_OUT so the order keeps a late check."""
    gateway, _ = make_gateway(lambda request: httpx.Response(200, json=status_json("CONDITIONAL_DECLINE")))
    payment = gateway.fetch_payment(GID)
    assert (payment.status, payment.failure_kind) == (RemoteStatus.FAILED, FailureKind.TIMED_OUT)


# The payments-v2 status answer (after-capture.md §6.2) -------------------------------------


def v2_status_json(status: str = "SENT_FOR_CAPTURE", *, amount: str = "500.00", currency: str = "INR") -> dict:
    """payments-v2: top-level status is the transaction state; data has totalAmount / txnCurrency, no Amount."""
    return {
        "gid": GID, "status": status, "message": "Transaction Successful", "timestamp": "02/06/2026 21:52:10",
        "reasonCode": "200",
        "data": {"merchantTxnId": "order-42", "merchantUniqueId": "order-42", "status": status, "paymentMethod": "CARD",
                 "totalAmount": amount, "txnCurrency": currency,
                 "cardData": {"maskedCardNumber": "411111XXXXXX1111", "cardScheme": "VISA", "cardType": "CREDIT"}},
        "errors": None,
    }


def test_the_gateway_reads_a_payments_v2_status_answer() -> None:
    """fetch_order over HTTP with the v2 shape: CAPTURED for 500.00 INR, not a GatewayPermanent dead letter."""
    gateway, fake = make_gateway(lambda request: httpx.Response(200, json=v2_status_json()))
    order = gateway.fetch_order(GID)
    [payment] = order.payments
    assert (payment.status, payment.amount_minor, payment.currency) == (RemoteStatus.CAPTURED, 50000, "INR")
    assert (order.receipt, fake.calls()) == ("order-42", [("GET", STATUS_PATH)])


def test_a_v2_transaction_pending_capture_is_captured_once() -> None:
    """AUTHORIZED_PENDING_CAPTURE (v2 shape) is money held: capture posts once, the re-read shows CAPTURED."""
    state = {"status": "AUTHORIZED_PENDING_CAPTURE"}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            state["status"] = "SENT_FOR_CAPTURE"
        return httpx.Response(200, json=v2_status_json(state["status"]))

    gateway, fake = make_gateway(handler)
    assert gateway.fetch_payment(GID).status is RemoteStatus.AUTHORIZED
    captured = gateway.capture(GID, amount_minor=50000, currency="INR")
    assert (captured.status, captured.amount_minor) == (RemoteStatus.CAPTURED, 50000)
    assert [method for method, _ in fake.calls()].count("POST") == 1
