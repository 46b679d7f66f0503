"""RazorpayClient / RazorpayGateway reads over a fake Razorpay: paths, auth, error mapping, bounded retries."""

from __future__ import annotations

import httpx
import pytest

from gateways.errors import GatewayError, GatewayNotFound, GatewayPermanent, GatewayRateLimited, GatewayTransient
from gateways.port import RemoteStatus
from gateways.razorpay.client import RazorpayClient
from tests.unit.gateways.razorpay_fakes import (
    EXPECTED_AUTH,
    KEY_ID,
    KEY_SECRET,
    make_gateway,
    order_json,
    payment_json,
    razorpay_error,
)

# Reads ---------------------------------------------------------------------------------


def test_fetch_payment_gets_the_payment_path_with_basic_auth() -> None:
    """GET /v1/payments/{id} with Basic auth maps to a RemotePayment."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("GET", "/v1/payments/pay_29QQoUBi66xm2f")
        return httpx.Response(200, json=payment_json())

    gateway, fake = make_gateway(handler)
    payment = gateway.fetch_payment("pay_29QQoUBi66xm2f")
    assert payment.status is RemoteStatus.CAPTURED
    assert (payment.amount_minor, payment.currency) == (50000, "INR")
    assert len(fake.requests) == 1


def test_fetch_order_combines_the_order_and_all_its_payments() -> None:
    """fetch_order reads the order and its payments collection, failed attempts included."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/orders/order_DaZlswtdcn9UNV":
            return httpx.Response(200, json=order_json(status="paid"))
        assert request.url.path == "/v1/orders/order_DaZlswtdcn9UNV/payments"
        items = [payment_json("pay_failed00000001", "failed", error_reason="payment_failed"), payment_json()]
        return httpx.Response(200, json={"entity": "collection", "count": 2, "items": items})

    gateway, fake = make_gateway(handler)
    order = gateway.fetch_order("order_DaZlswtdcn9UNV")
    assert order.wire_status == "paid"
    assert [p.gateway_payment_id for p in order.payments] == ["pay_failed00000001", "pay_29QQoUBi66xm2f"]
    assert [p.status for p in order.payments] == [RemoteStatus.FAILED, RemoteStatus.CAPTURED]
    assert order.checkout["order_id"] == "order_DaZlswtdcn9UNV"
    assert fake.calls() == [
        ("GET", "/v1/orders/order_DaZlswtdcn9UNV"),
        ("GET", "/v1/orders/order_DaZlswtdcn9UNV/payments"),
    ]


@pytest.mark.parametrize("description", ["The id provided does not exist", "order_x is not a valid id"])
def test_a_400_for_an_unknown_id_is_not_found_and_not_retried(description: str) -> None:
    """Razorpay says "not found" with a 400; it becomes GatewayNotFound with its evidence."""
    sleeps: list[float] = []
    gateway, fake = make_gateway(
        lambda request: razorpay_error(400, description, **{"x-razorpay-request-id": "req_123"}), sleeps
    )
    with pytest.raises(GatewayNotFound) as caught:
        gateway.fetch_order("order_DaZlswtdcn9UNV")
    assert caught.value.status == 400
    assert caught.value.request_id == "req_123"
    assert description in caught.value.body
    assert len(fake.requests) == 1 and sleeps == []


@pytest.mark.parametrize(
    "response",
    [
        razorpay_error(503, "Service unavailable", code="SERVER_ERROR"),
        razorpay_error(500, "We are facing some trouble", code="SERVER_ERROR"),
        razorpay_error(504, "Gateway timed out", code="GATEWAY_ERROR"),
        httpx.Response(502, text="<html><body><h1>502 Bad Gateway</h1></body></html>"),
        httpx.Response(503, text=""),
    ],
    ids=["503-json", "500-json", "504-json", "502-html", "503-empty"],
)
def test_server_errors_are_transient_and_gets_retry_a_bounded_number_of_times(response: httpx.Response) -> None:
    """5xx (JSON or HTML) is GatewayTransient after exactly 3 GET attempts and 2 sleeps."""
    sleeps: list[float] = []
    gateway, fake = make_gateway(lambda request: response, sleeps)
    with pytest.raises(GatewayTransient) as caught:
        gateway.fetch_payment("pay_29QQoUBi66xm2f")
    assert not isinstance(caught.value, GatewayRateLimited)
    assert caught.value.status == response.status_code
    assert len(fake.requests) == 3
    assert len(sleeps) == 2 and all(0 < s <= 5.0 for s in sleeps)


@pytest.mark.parametrize("error",
                         [httpx.ReadTimeout, httpx.ConnectTimeout, httpx.ConnectError, httpx.RemoteProtocolError])
def test_timeouts_and_connection_errors_are_transient_with_the_cause_kept(error: type[httpx.HTTPError]) -> None:
    """httpx transport failures become GatewayTransient (raise ... from exc), retried 3 times."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise error("boom", request=request)

    sleeps: list[float] = []
    gateway, fake = make_gateway(handler, sleeps)
    with pytest.raises(GatewayTransient) as caught:
        gateway.fetch_payment("pay_29QQoUBi66xm2f")
    assert isinstance(caught.value.__cause__, error)
    assert caught.value.status is None
    assert len(fake.requests) == 3 and len(sleeps) == 2


def test_retry_settings_bound_the_attempts() -> None:
    """retry_attempts=1 means a single GET, no sleep."""
    sleeps: list[float] = []
    gateway, fake = make_gateway(lambda r: httpx.Response(503, text="down"), sleeps, retry_attempts=1)
    with pytest.raises(GatewayTransient):
        gateway.fetch_payment("pay_29QQoUBi66xm2f")
    assert len(fake.requests) == 1 and sleeps == []


def test_a_get_that_recovers_on_retry_returns_the_result() -> None:
    """One 503 then a 200: the caller sees only the payment."""
    responses = iter([httpx.Response(503, text="busy"), httpx.Response(200, json=payment_json(status="authorized"))])
    sleeps: list[float] = []
    gateway, fake = make_gateway(lambda request: next(responses), sleeps)
    assert gateway.fetch_payment("pay_29QQoUBi66xm2f").status is RemoteStatus.AUTHORIZED
    assert len(fake.requests) == 2 and len(sleeps) == 1


def test_429_is_rate_limited_with_retry_after_and_bounded_retries() -> None:
    """429 gives GatewayRateLimited carrying Retry-After; the wait used is the server's."""
    sleeps: list[float] = []
    response = razorpay_error(429, "Too many requests", **{"Retry-After": "2"})
    gateway, fake = make_gateway(lambda request: response, sleeps)
    with pytest.raises(GatewayRateLimited) as caught:
        gateway.fetch_payment("pay_29QQoUBi66xm2f")
    assert caught.value.retry_after == 2.0
    assert caught.value.status == 429
    assert len(fake.requests) == 3 and sleeps == [2.0, 2.0]


def test_429_without_retry_after_has_none_and_is_still_bounded() -> None:
    """Razorpay documents no Retry-After: retry_after is None and attempts stay at 3."""
    sleeps: list[float] = []
    gateway, fake = make_gateway(lambda request: httpx.Response(429, text="slow down"), sleeps)
    with pytest.raises(GatewayRateLimited) as caught:
        gateway.fetch_payment("pay_29QQoUBi66xm2f")
    assert caught.value.retry_after is None
    assert len(fake.requests) == 3 and len(sleeps) == 2


def test_429_asking_for_a_long_wait_is_not_retried_in_call() -> None:
    """A Retry-After longer than the in-call backoff cap is left to the caller's scheduler."""
    sleeps: list[float] = []
    gateway, fake = make_gateway(lambda request: httpx.Response(429, headers={"Retry-After": "120"}), sleeps)
    with pytest.raises(GatewayRateLimited) as caught:
        gateway.fetch_payment("pay_29QQoUBi66xm2f")
    assert caught.value.retry_after == 120.0
    assert len(fake.requests) == 1 and sleeps == []


@pytest.mark.parametrize(
    "response",
    [
        razorpay_error(400, "Order older than 180 days, please use reports"),
        razorpay_error(401, "Authentication failed"),
        razorpay_error(404, "The requested URL was not found on the server."),
    ],
    ids=["400-too-old", "401-auth", "404-url"],
)
def test_other_4xx_is_permanent_and_not_retried(response: httpx.Response) -> None:
    """Other 4xx with a JSON body is GatewayPermanent after a single attempt."""
    sleeps: list[float] = []
    gateway, fake = make_gateway(lambda request: response, sleeps)
    with pytest.raises(GatewayPermanent) as caught:
        gateway.fetch_order("order_DaZlswtdcn9UNV")
    assert not isinstance(caught.value, GatewayNotFound)
    assert caught.value.status == response.status_code
    assert len(fake.requests) == 1 and sleeps == []


def test_a_4xx_with_a_non_json_body_is_transient() -> None:
    """An HTML 4xx (a proxy page, not Razorpay) is treated as transient."""
    gateway, _ = make_gateway(lambda request: httpx.Response(403, text="<html>Forbidden</html>"))
    with pytest.raises(GatewayTransient):
        gateway.fetch_payment("pay_29QQoUBi66xm2f")


def test_a_success_that_is_not_json_is_transient() -> None:
    """A 200 with an HTML body cannot be trusted: GatewayTransient."""
    gateway, _ = make_gateway(lambda request: httpx.Response(200, text="<html>captive portal</html>"))
    with pytest.raises(GatewayTransient, match="not a JSON object"):
        gateway.fetch_payment("pay_29QQoUBi66xm2f")


def test_an_unexpected_response_shape_is_permanent() -> None:
    """A 200 payment with a float amount is a contract problem: GatewayPermanent."""
    gateway, _ = make_gateway(lambda request: httpx.Response(200, json=payment_json(amount=500.0)))
    with pytest.raises(GatewayPermanent, match="unexpected response shape"):
        gateway.fetch_payment("pay_29QQoUBi66xm2f")


def test_the_key_secret_never_appears_in_errors() -> None:
    """Error messages, bodies and reprs carry no key secret."""
    gateway, _ = make_gateway(lambda request: razorpay_error(400, "Authentication failed"))
    with pytest.raises(GatewayError) as caught:
        gateway.fetch_payment("pay_29QQoUBi66xm2f")
    for text in (str(caught.value), repr(caught.value), caught.value.body, repr(gateway)):
        assert KEY_SECRET not in text
        assert EXPECTED_AUTH.split()[1] not in text


def test_ids_are_quoted_into_a_single_path_segment() -> None:
    """An id with a slash cannot reach another endpoint."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.raw_path == b"/v1/payments/..%2Forders"
        return razorpay_error(400, "The id provided does not exist")

    gateway, _ = make_gateway(handler)
    with pytest.raises(GatewayNotFound):
        gateway.fetch_payment("../orders")


# The bare client -----------------------------------------------------------------------


def test_client_find_order_by_receipt_returns_none_when_nothing_matches() -> None:
    """An empty collection means no order with that receipt."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == EXPECTED_AUTH
        assert str(request.url) == "https://api.razorpay.com/v1/orders?receipt=topup+42"
        return httpx.Response(200, json={"entity": "collection", "count": 0, "items": []})

    client = RazorpayClient(key_id=KEY_ID, key_secret=KEY_SECRET, transport=httpx.MockTransport(handler))
    assert client.find_order_by_receipt("topup 42") is None
    assert KEY_SECRET not in repr(client)


def test_client_event_hooks_see_every_request() -> None:
    """event_hooks (for latency metrics) are passed through to httpx."""
    seen: list[str] = []
    client = RazorpayClient(
        key_id=KEY_ID,
        key_secret=KEY_SECRET,
        transport=httpx.MockTransport(lambda request: httpx.Response(200, json=payment_json())),
        event_hooks={"response": [lambda response: seen.append(response.request.url.path)]},
    )
    client.fetch_payment("pay_29QQoUBi66xm2f")
    assert seen == ["/v1/payments/pay_29QQoUBi66xm2f"]
