"""PayGlocal refunds over a fake PayGlocal: the signed JWE request, the four answer shapes of after-capture.md
§5.2, duplicates, errors, and fetch_refunds by status enquiry (known refunds, or a dashboard refund)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from gateways.errors import GatewayNotFound, GatewayPermanent, GatewayRateLimited, GatewayTransient
from gateways.payglocal import PayGlocalGateway, tokens
from gateways.port import RefundStatus
from tests.unit.gateways.payglocal_fakes import GID, error_json, make_gateway, read_jwe, read_jws, status_json

KEY = "rfnd42attempt1"
REFUND_GID = "gl_14299664-72da-403a-881f-e0c49a337f32"


def refund(gateway: PayGlocalGateway, *, full: bool = False, amount_minor: int = 1000, currency: str = "INR"):
    return gateway.create_refund(GID, amount_minor=amount_minor, currency=currency, full=full,
                                 idempotency_key=KEY, reason="customer asked")


def raw(body: str, status: int = 200) -> httpx.Response:
    """An answer sent byte for byte (a JSON number such as ``100.00`` kept as PayGlocal writes it)."""
    return httpx.Response(status, content=body.encode(), headers={"content-type": "application/json"})


# The four answer shapes of after-capture.md §5.2 -------------------------------------------------

SHAPE_1 = {"gid": REFUND_GID, "status": "SENT_FOR_REFUND", "message": "Refund request sent successfully",
           "timestamp": "15/11/2021 19:44:34", "reasonCode": "GL-201-001",
           "data": {"merchantTxnId": KEY, "refundCurrency": "INR", "refundAmount": "10.00"}, "errors": None}
SHAPE_2 = {"gid": "gl_refund_abcdef123", "status": "SENT_FOR_REFUND",
           "data": {"gid": "gl_refund_abcdef123", "originalGid": GID, "status": "SENT_FOR_REFUND",
                    "refundAmount": "25.00"}}
SHAPE_3 = {"gid": "gl-13bbd3c4-refund", "status": "SENT_FOR_REFUND", "message": "Refund Initiated Successfully",
           "data": {"Amount": "10.00", "Currency": "INR", "merchantTxnId": KEY}}
SHAPE_4 = ('{"status":"SUCCESS","code":"GC000","data":{"gid":"GID-1","refundId":"RFD-1","refundType":"F",'
           '"refundStatus":"INITIATED","refundAmount":100.00,"currency":"INR"}}')


@pytest.mark.parametrize(("answer", "expected"), [
    (httpx.Response(200, json=SHAPE_1), (REFUND_GID, 1000, RefundStatus.PROCESSED, "SENT_FOR_REFUND")),
    (httpx.Response(200, json=SHAPE_2), ("gl_refund_abcdef123", 2500, RefundStatus.PROCESSED, "SENT_FOR_REFUND")),
    (httpx.Response(200, json=SHAPE_3), ("gl-13bbd3c4-refund", 1000, RefundStatus.PROCESSED, "SENT_FOR_REFUND")),
    (raw(SHAPE_4), ("RFD-1", 10000, RefundStatus.PENDING, "INITIATED")),
], ids=["uat-2021", "openapi", "service-pages", "api-reference"])
def test_each_answer_shape_gives_the_refunds_id_amount_and_status(answer: httpx.Response, expected: tuple) -> None:
    gateway, _ = make_gateway(lambda request: answer)
    made = refund(gateway)
    assert (made.gateway_refund_id, made.amount_minor, made.status, made.wire_status) == expected
    assert (made.gateway_payment_id, made.currency, made.idempotency_key) == (GID, "INR", KEY)


def test_a_partial_refund_is_a_signed_jwe_with_type_p_and_the_decimal_amount() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("POST", f"/gl/v1/payments/{GID}/refund")
        assert request.headers["content-type"] == "text/plain"
        _, claims = read_jws(request.headers["x-gl-token-external"])
        assert claims["digest"] == tokens.digest_of(request.content)
        assert read_jwe(request.content.decode())[1] == {
            "merchantTxnId": KEY, "merchantUniqueId": KEY, "refundType": "P", "paymentData": {"totalAmount": "10.00"}}
        return httpx.Response(200, json=SHAPE_1)

    gateway, fake = make_gateway(handler)
    assert refund(gateway).status is RefundStatus.PROCESSED
    assert fake.calls() == [("POST", f"/gl/v1/payments/{GID}/refund")]


def test_a_full_refund_is_type_f_without_an_amount_and_uses_the_currencys_exponent() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert read_jwe(request.content.decode())[1] == {"merchantTxnId": KEY, "merchantUniqueId": KEY,
                                                         "refundType": "F"}
        return httpx.Response(200, json={"gid": REFUND_GID, "status": "SENT_FOR_REFUND", "data": {}})

    gateway, _ = make_gateway(handler)
    made = refund(gateway, full=True, amount_minor=50000)
    assert (made.amount_minor, made.currency) == (50000, "INR")  # no amount in the answer: the one asked for

    def partial_jpy(request: httpx.Request) -> httpx.Response:
        assert read_jwe(request.content.decode())[1]["paymentData"] == {"totalAmount": "500"}
        return httpx.Response(200, json={"gid": REFUND_GID, "status": "SENT_FOR_REFUND", "data": {}})

    jpy, _ = make_gateway(partial_jpy)
    assert refund(jpy, amount_minor=500, currency="jpy").currency == "JPY"


@pytest.mark.parametrize(("answer", "expected"), [
    ({"gid": REFUND_GID, "status": "REQUEST_ERROR", "data": {}}, RefundStatus.FAILED),
    ({"gid": REFUND_GID, "status": "SYSTEM_ERROR", "data": {}}, RefundStatus.FAILED),
    ({"gid": REFUND_GID, "status": "REFUND_STARTED", "data": {}}, RefundStatus.PENDING),
    ({"gid": REFUND_GID, "status": "SUCCESS", "data": {}}, RefundStatus.UNKNOWN),
    ({"gid": REFUND_GID, "status": "REFUND_VOIDED", "data": None}, RefundStatus.UNKNOWN),
])
def test_refund_statuses_map_and_anything_else_is_unknown(answer: dict, expected: RefundStatus) -> None:
    gateway, _ = make_gateway(lambda request: httpx.Response(200, json=answer))
    assert refund(gateway).status is expected


@pytest.mark.parametrize("answer", [
    {"status": "SENT_FOR_REFUND", "data": {"refundAmount": "10.00"}},
    {"gid": GID, "status": "SENT_FOR_REFUND", "data": {"refundAmount": "ten"}},
])
def test_an_answer_naming_no_refund_id_or_an_unreadable_amount_falls_back_to_what_we_sent(answer: dict) -> None:
    """The refund was accepted: its id becomes our key (status accepts it, §5.3) and the amount ours."""
    gateway, _ = make_gateway(lambda request: httpx.Response(200, json=answer))
    made = refund(gateway)
    assert (made.gateway_refund_id, made.status) == (KEY, RefundStatus.PROCESSED)
    assert made.amount_minor == 1000


def test_a_refund_is_not_retried_in_call_and_errors_keep_their_class() -> None:
    cases: list[tuple[httpx.Response, type]] = [
        (error_json(400, "Amount exceeds refundable amount", "GL-400-006"), GatewayPermanent),
        (error_json(400, "Transaction not found", "GL-400-999"), GatewayNotFound),
        (error_json(404, "Transaction not found", "GL-404-001"), GatewayNotFound),
        (error_json(403, "MID not allowed to refund", "GL-403-001"), GatewayPermanent),
        (error_json(503, "Service unavailable", "GL-503-001"), GatewayTransient),
        (error_json(429, "slow down", "GL-429-001"), GatewayRateLimited),
    ]
    for answer, error in cases:
        gateway, fake = make_gateway(lambda request, answer=answer: answer)
        with pytest.raises(error) as caught:
            refund(gateway)
        assert caught.value.status == answer.status_code and len(fake.requests) == 1, answer.status_code


def test_a_timeout_is_transient_and_not_retried() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("lost", request=request)

    gateway, fake = make_gateway(handler)
    with pytest.raises(GatewayTransient):
        refund(gateway)
    assert len(fake.requests) == 1


# Duplicates ----------------------------------------------------------------------------------


def refund_status_json(status: str = "SENT_FOR_REFUND", *, gid: str = REFUND_GID, txn: str = KEY,
                       **data: Any) -> dict[str, Any]:
    answer = status_json(status, gid=gid, amount="10.00")
    answer["data"] = {**answer["data"], "merchantTxnId": txn, **data}
    return answer


@pytest.mark.parametrize("duplicate", [
    error_json(409, "Duplicate request", "GL-409-001"),
    error_json(400, "Duplicate merchantTxnId", "GL-400-002"),
], ids=["409", "400-duplicate"])
def test_a_duplicate_is_the_earlier_refund_when_the_status_of_our_key_finds_it(duplicate: httpx.Response) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return duplicate
        assert request.url.path == f"/gl/v1/payments/{KEY}/status"
        return httpx.Response(200, json=refund_status_json())

    gateway, fake = make_gateway(handler)
    made = refund(gateway)
    assert (made.gateway_refund_id, made.gateway_payment_id, made.status) == (REFUND_GID, GID,
                                                                              RefundStatus.PROCESSED)
    assert (made.amount_minor, made.idempotency_key) == (1000, KEY)
    assert [method for method, _ in fake.calls()] == ["POST", "GET"]


@pytest.mark.parametrize("lookup", [
    error_json(404, "Transaction not found", "GL-404-001"),
    httpx.Response(200, json=status_json("SENT_FOR_CAPTURE")),  # the original payment (merchantTxnId order-42)
    error_json(503, "Service unavailable", "GL-503-001"),
], ids=["not-found", "another-transaction", "status-down"])
def test_a_duplicate_not_found_again_is_transient_never_permanent(lookup: httpx.Response) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return error_json(409, "Duplicate request", "GL-409-001") if request.method == "POST" else lookup

    gateway, _ = make_gateway(handler, retry_attempts=1)
    with pytest.raises(GatewayTransient, match="duplicate") as caught:
        refund(gateway)
    assert caught.value.status == 409 and not isinstance(caught.value, GatewayPermanent)


def test_a_duplicate_whose_status_names_the_original_gid_is_named_by_our_key() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return error_json(409, "Duplicate request", "GL-409-001")
        return httpx.Response(200, json=refund_status_json(gid=GID, refundAmount="4.00"))

    gateway, _ = make_gateway(handler)
    made = refund(gateway)
    assert (made.gateway_refund_id, made.amount_minor) == (KEY, 400)


def test_a_bad_key_or_amount_is_refused_before_anything_is_sent() -> None:
    gateway, fake = make_gateway(lambda request: httpx.Response(200, json=SHAPE_1))
    with pytest.raises(ValueError, match="idempotency key"):
        gateway.create_refund(GID, amount_minor=100, currency="INR", full=False, idempotency_key="short",
                              reason="")
    with pytest.raises(ValueError, match="positive"):
        gateway.create_refund(GID, amount_minor=-5, currency="INR", full=False, idempotency_key=KEY, reason="")
    assert fake.requests == []


# Fetch ---------------------------------------------------------------------------------------


def test_fetch_refunds_reads_the_status_of_each_known_refund() -> None:
    answers = {GID: status_json("SENT_FOR_CAPTURE"),  # the original first: nothing refunded without us
               REFUND_GID: refund_status_json(),
               "gl_refund_2": refund_status_json("REFUND_STARTED", gid="gl_refund_2", refundAmount="2.50",
                                                 refundCurrency="INR"),
               "gl_refund_3": refund_status_json("REQUEST_ERROR", gid="gl_refund_3"),
               "gl_refund_4": refund_status_json("SENT_FOR_CAPTURE", gid="gl_refund_4")}

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.method == "GET"
        refund_id = request.url.path.split("/")[-2]
        return httpx.Response(200, json=answers[refund_id])

    gateway, fake = make_gateway(handler)
    refunds = gateway.fetch_refunds(GID, known=tuple(answers)[1:])
    assert [(r.gateway_refund_id, r.status, r.amount_minor) for r in refunds] == [
        (REFUND_GID, RefundStatus.PROCESSED, 1000), ("gl_refund_2", RefundStatus.PENDING, 250),
        ("gl_refund_3", RefundStatus.FAILED, 1000), ("gl_refund_4", RefundStatus.UNKNOWN, 1000)]
    assert all(r.gateway_payment_id == GID and r.currency == "INR" for r in refunds)
    assert fake.calls() == [("GET", f"/gl/v1/payments/{refund_id}/status") for refund_id in answers]


def test_fetch_refunds_of_an_unknown_refund_is_not_found() -> None:
    gateway, _ = make_gateway(lambda request: error_json(404, "Transaction not found", "GL-404-001"))
    with pytest.raises(GatewayNotFound):
        gateway.fetch_refunds(GID, known=(REFUND_GID,))


def test_with_none_known_a_refunded_original_is_one_dashboard_refund() -> None:
    """SENT_FOR_REFUND on the original gid, no refund of ours: one refund, named after the gid."""
    answer = status_json("SENT_FOR_REFUND")
    answer["data"] = {**answer["data"], "refundAmount": "200.00"}

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == f"/gl/v1/payments/{GID}/status"
        return httpx.Response(200, json=answer)

    gateway, fake = make_gateway(handler)
    (made,) = gateway.fetch_refunds(GID)
    assert (made.gateway_refund_id, made.gateway_payment_id) == (f"{GID}:refunded@20000", GID)
    assert (made.amount_minor, made.currency, made.status, made.wire_status) == (20000, "INR",
                                                                                 RefundStatus.PROCESSED,
                                                                                 "SENT_FOR_REFUND")
    assert made.idempotency_key is None and len(fake.requests) == 1
    whole, _ = make_gateway(lambda request: httpx.Response(200, json=status_json("SENT_FOR_REFUND")))
    assert [r.amount_minor for r in whole.fetch_refunds(GID)] == [50000]  # no refundAmount: all of it
    started, _ = make_gateway(lambda request: httpx.Response(200, json=status_json("REFUND_STARTED")))
    assert [r.status for r in started.fetch_refunds(GID)] == [RefundStatus.PENDING]


@pytest.mark.parametrize("status", ["SENT_FOR_CAPTURE", "AUTHORIZED", "REVERSED", "ISSUER_DECLINE"])
def test_with_none_known_an_original_not_refunded_has_no_refunds(status: str) -> None:
    gateway, _ = make_gateway(lambda request: httpx.Response(200, json=status_json(status)))
    assert gateway.fetch_refunds(GID) == ()


def test_the_refund_request_body_never_carries_the_reason() -> None:
    """PayGlocal has no reason field: nothing but the documented fields is sent."""
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(read_jwe(request.content.decode())[1])
        return httpx.Response(200, json=SHAPE_1)

    gateway, _ = make_gateway(handler)
    refund(gateway)
    assert "customer asked" not in json.dumps(seen)


def _original_and_ours(original: dict[str, Any], ours: dict[str, Any]):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=original if request.url.path == f"/gl/v1/payments/{GID}/status" else ours)
    return make_gateway(handler)


def test_a_dashboard_refund_after_one_of_ours_is_the_rest_of_what_the_original_shows_refunded() -> None:
    """Ours refunded 10.00 of 500.00; the dashboard refunded the rest, so the original reads SENT_FOR_REFUND."""
    gateway, fake = _original_and_ours(status_json("SENT_FOR_REFUND"), refund_status_json())
    mine, rest = gateway.fetch_refunds(GID, known=(REFUND_GID,))
    assert (mine.gateway_refund_id, mine.amount_minor) == (REFUND_GID, 1000)
    assert (rest.gateway_refund_id, rest.amount_minor, rest.status) == (f"{GID}:refunded@49000", 49000,
                                                                        RefundStatus.PROCESSED)
    assert fake.calls() == [("GET", f"/gl/v1/payments/{GID}/status"), ("GET", f"/gl/v1/payments/{REFUND_GID}/status")]
    # the same picture again: the same refunds, nothing new
    again = gateway.fetch_refunds(GID, known=(REFUND_GID, rest.gateway_refund_id))
    assert [(r.gateway_refund_id, r.amount_minor) for r in again] == [(REFUND_GID, 1000),
                                                                      (rest.gateway_refund_id, 49000)]


def test_dashboard_refunds_are_told_once_each_and_a_pending_one_is_told_again_when_processed() -> None:
    started = status_json("REFUND_STARTED")
    started["data"] = {**started["data"], "refundAmount": "200.00"}
    gateway, _ = _original_and_ours(started, refund_status_json())
    (first,) = gateway.fetch_refunds(GID)
    assert (first.gateway_refund_id, first.amount_minor, first.status) == (f"{GID}:refunded@20000", 20000,
                                                                           RefundStatus.PENDING)
    gateway, _ = _original_and_ours(status_json("SENT_FOR_REFUND"), refund_status_json())  # all 500.00 now
    told = gateway.fetch_refunds(GID, known=(first.gateway_refund_id,))
    assert [(r.gateway_refund_id, r.amount_minor, r.status) for r in told] == [
        (f"{GID}:refunded@20000", 20000, RefundStatus.PROCESSED),
        (f"{GID}:refunded@50000", 30000, RefundStatus.PROCESSED)]


def test_a_refund_of_ours_still_pending_is_not_taken_for_a_dashboard_refund() -> None:
    gateway, _ = _original_and_ours(status_json("SENT_FOR_CAPTURE"), refund_status_json("REFUND_STARTED"))
    assert [r.gateway_refund_id for r in gateway.fetch_refunds(GID, known=(REFUND_GID,))] == [REFUND_GID]
