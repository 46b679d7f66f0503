"""Razorpay refunds and disputes over a fake Razorpay: create_refund (idempotency key, full or partial, each
error class), fetch_refunds, and the refund.* and payment.dispute.* webhooks (after-capture.md §2–§3)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from gateways.errors import GatewayNotFound, GatewayPermanent, GatewayRateLimited, GatewayTransient, MalformedEvent
from gateways.port import DisputeStatus, RefundStatus, RemoteStatus
from gateways.razorpay.signature import sign
from tests.unit.gateways.razorpay_fakes import make_gateway, payment_json, razorpay_error

PAYMENT_ID = "pay_29QQoUBi66xm2f"
KEY = "refund-42-attempt-1"


def refund_json(refund_id: str = "rfnd_FP8QHiV938haTz", status: str = "processed", **fields: Any) -> dict[str, Any]:
    """A refund entity shaped like after-capture.md §2.2 (the create-normal sample)."""
    return {
        "id": refund_id,
        "entity": "refund",
        "amount": 20000,
        "currency": "INR",
        "payment_id": PAYMENT_ID,
        "notes": {"reason": "customer asked", "idempotency_key": KEY},
        "receipt": None,
        "acquirer_data": {"arn": None},
        "created_at": 1597078866,
        "batch_id": None,
        "status": status,
        "speed_processed": "normal",
        "speed_requested": "normal",
        **fields,
    }


def refund(gateway: Any, *, full: bool = False, amount_minor: int = 20000, key: str = KEY, reason: str = "asked"):
    return gateway.create_refund(PAYMENT_ID, amount_minor=amount_minor, currency="INR", full=full,
                                 idempotency_key=key, reason=reason)


# Create ------------------------------------------------------------------------------------


def test_a_partial_refund_posts_amount_normal_speed_notes_and_the_idempotency_header() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("POST", f"/v1/payments/{PAYMENT_ID}/refund")
        assert request.headers["X-Refund-Idempotency"] == KEY
        assert json.loads(request.content) == {"amount": 20000, "speed": "normal",
                                               "notes": {"reason": "asked", "idempotency_key": KEY}}
        return httpx.Response(200, json=refund_json(status="pending"))

    gateway, fake = make_gateway(handler)
    made = refund(gateway)
    assert (made.gateway_refund_id, made.gateway_payment_id) == ("rfnd_FP8QHiV938haTz", PAYMENT_ID)
    assert (made.amount_minor, made.currency, made.status, made.wire_status) == (20000, "INR", RefundStatus.PENDING,
                                                                                  "pending")
    assert made.idempotency_key == KEY and made.created_at == 1597078866 and made.payment_captured is None
    assert len(fake.requests) == 1


def test_a_full_refund_omits_the_amount_and_the_reason_is_cut_to_250_characters() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert "amount" not in body and body["speed"] == "normal"
        assert body["notes"] == {"reason": "x" * 250, "idempotency_key": KEY}
        return httpx.Response(200, json=refund_json(amount=50000, notes=[]))

    gateway, _ = make_gateway(handler)
    made = refund(gateway, full=True, amount_minor=50000, reason="x" * 300)
    assert made.amount_minor == 50000 and made.status is RefundStatus.PROCESSED
    assert made.idempotency_key == KEY  # notes not echoed: the key we sent


@pytest.mark.parametrize("response", [
    razorpay_error(409, "Request for the same idempotency key is still in progress"),
    razorpay_error(500, "Failed to fetch idempotency record", code="SERVER_ERROR"),
], ids=["409-in-progress", "500-idempotency-record"])
def test_an_in_flight_or_unreadable_key_is_retried_with_the_same_key_and_body(response: httpx.Response) -> None:
    """The key makes the POST safe to repeat: it goes through the GET retry (same key, same body)."""
    answers = [response, httpx.Response(200, json=refund_json())]

    def handler(request: httpx.Request) -> httpx.Response:
        return answers.pop(0)

    sleeps: list[float] = []
    gateway, fake = make_gateway(handler, sleeps)
    assert refund(gateway).gateway_refund_id == "rfnd_FP8QHiV938haTz"
    assert fake.calls() == [("POST", f"/v1/payments/{PAYMENT_ID}/refund")] * 2
    assert {r.headers["X-Refund-Idempotency"] for r in fake.requests} == {KEY}
    assert len({r.content for r in fake.requests}) == 1 and len(sleeps) == 1


@pytest.mark.parametrize("response", [
    razorpay_error(409, "Request for the same idempotency key is still in progress"),
    razorpay_error(502, "Bad gateway", code="SERVER_ERROR"),
])
def test_transient_refund_errors_stay_transient_when_retries_run_out(response: httpx.Response) -> None:
    gateway, fake = make_gateway(lambda request: response)
    with pytest.raises(GatewayTransient) as caught:
        refund(gateway)
    assert not isinstance(caught.value, GatewayPermanent) and caught.value.status == response.status_code
    assert len(fake.requests) == 3


def test_a_timeout_is_transient_and_retried() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("lost", request=request)

    gateway, fake = make_gateway(handler)
    with pytest.raises(GatewayTransient):
        refund(gateway)
    assert len(fake.requests) == 3


@pytest.mark.parametrize(("status", "description"), [
    (400, "The refund amount provided is greater than amount captured."),
    (400, "The payment has been fully refunded already."),
    (400, "The payment status should be captured for action to be taken"),
    (400, "Different request with the same idempotency key has already been processed"),
    (409, "Different request with the same idempotency key has already been processed"),
])
def test_refusals_are_permanent_with_the_gateways_description_and_not_retried(status: int, description: str) -> None:
    gateway, fake = make_gateway(lambda request: razorpay_error(status, description))
    with pytest.raises(GatewayPermanent, match=description.rstrip(".")) as caught:
        refund(gateway)
    assert caught.value.status == status and len(fake.requests) == 1


def test_an_unknown_payment_is_not_found_and_429_is_rate_limited() -> None:
    gateway, _ = make_gateway(lambda request: razorpay_error(400, "The id provided does not exist"))
    with pytest.raises(GatewayNotFound):
        refund(gateway)
    limited, _ = make_gateway(lambda request: razorpay_error(429, "Too many requests", code="TOO_MANY_REQUESTS"))
    with pytest.raises(GatewayRateLimited):
        refund(limited)


@pytest.mark.parametrize("key", ["short", "x" * 41, "has space 123", "semi;colon12"])
def test_a_bad_key_or_amount_is_refused_before_anything_is_sent(key: str) -> None:
    gateway, fake = make_gateway(lambda request: httpx.Response(200, json=refund_json()))
    with pytest.raises(ValueError, match="idempotency key"):
        refund(gateway, key=key)
    with pytest.raises(ValueError, match="positive"):
        refund(gateway, amount_minor=0)
    with pytest.raises(TypeError):
        refund(gateway, amount_minor=200.0)
    assert fake.requests == []


def test_an_unreadable_refund_answer_is_permanent() -> None:
    gateway, _ = make_gateway(lambda request: httpx.Response(200, json={"id": "rfnd_1", "amount": "200"}))
    with pytest.raises(GatewayPermanent, match="unexpected response shape"):
        refund(gateway)


# Fetch -------------------------------------------------------------------------------------


def test_fetch_refunds_is_one_get_of_up_to_100_and_maps_every_status() -> None:
    items = [refund_json("rfnd_1", "pending"), refund_json("rfnd_2", "processed"), refund_json("rfnd_3", "failed"),
             refund_json("rfnd_4", "created"), refund_json("rfnd_5", "reversed", notes=[])]

    def handler(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("GET", f"/v1/payments/{PAYMENT_ID}/refunds")
        assert request.url.params["count"] == "100"
        return httpx.Response(200, json={"entity": "collection", "count": len(items), "items": items})

    gateway, fake = make_gateway(handler)
    refunds = gateway.fetch_refunds(PAYMENT_ID, known=("rfnd_1",))
    assert [(r.gateway_refund_id, r.status) for r in refunds] == [
        ("rfnd_1", RefundStatus.PENDING), ("rfnd_2", RefundStatus.PROCESSED), ("rfnd_3", RefundStatus.FAILED),
        ("rfnd_4", RefundStatus.PENDING), ("rfnd_5", RefundStatus.UNKNOWN)]
    assert refunds[4].wire_status == "reversed" and refunds[4].idempotency_key is None
    assert refunds[0].idempotency_key == KEY and len(fake.requests) == 1


def test_fetch_refunds_of_an_unknown_payment_is_not_found_and_a_bad_collection_permanent() -> None:
    gateway, _ = make_gateway(lambda request: razorpay_error(400, "The id provided does not exist"))
    with pytest.raises(GatewayNotFound):
        gateway.fetch_refunds(PAYMENT_ID)
    odd, _ = make_gateway(lambda request: httpx.Response(200, json={"entity": "collection", "items": [{"id": 1}]}))
    with pytest.raises(GatewayPermanent):
        odd.fetch_refunds(PAYMENT_ID)


# Webhooks ----------------------------------------------------------------------------------

#: after-capture.md §2.4's refund.processed sample, its "..." filled in.
REFUND_PAYMENT = {"id": "pay_FPoJKWQQ8lK13n", "entity": "payment", "amount": 500000, "currency": "INR",
                  "status": "captured", "order_id": "order_FPoIeimWki9j8A", "amount_refunded": 190000,
                  "refund_status": "partial", "captured": True, "fee": 11800, "tax": 1800, "notes": []}
REFUND_ENTITY = {"id": "rfnd_FS8TWyPrCsa0OB", "entity": "refund", "amount": 50000, "currency": "INR",
                 "payment_id": "pay_FPoJKWQQ8lK13n", "notes": {"comment": "Customer Notes for Webhooks."},
                 "receipt": None, "acquirer_data": {"arn": None}, "created_at": 1597734071, "batch_id": None,
                 "status": "processed", "speed_processed": "normal", "speed_requested": "optimum"}


def delivery(event: str, created_at: int | None = 1597734071, **payload: dict[str, Any]) -> tuple[bytes, dict]:
    envelope: dict[str, Any] = {"entity": "event", "account_id": "acc_E7OQJcEANmBHTC", "event": event,
                                "contains": list(payload),
                                "payload": {name: {"entity": entity} for name, entity in payload.items()}}
    if created_at is not None:
        envelope["created_at"] = created_at
    body = json.dumps(envelope).encode()
    return body, {"X-Razorpay-Signature": sign("whsec", body), "X-Razorpay-Event-Id": "evt_refund_1"}


def verified(event: str, **payload: dict[str, Any]):
    gateway, _ = make_gateway(lambda request: httpx.Response(500))
    return gateway.verify_webhook(*delivery(event, **payload))


def test_refund_processed_carries_the_refund_and_its_refunded_payment() -> None:
    event = verified("refund.processed", refund=REFUND_ENTITY, payment=REFUND_PAYMENT)
    assert (event.event_type, event.gateway_order_id, event.created_at) == ("refund.processed",
                                                                            "order_FPoIeimWki9j8A", 1597734071)
    assert event.refund is not None and event.dispute is None
    assert (event.refund.gateway_refund_id, event.refund.gateway_payment_id) == ("rfnd_FS8TWyPrCsa0OB",
                                                                                "pay_FPoJKWQQ8lK13n")
    assert (event.refund.amount_minor, event.refund.currency, event.refund.status) == (50000, "INR",
                                                                                       RefundStatus.PROCESSED)
    assert event.refund.payment_captured is True and event.refund.idempotency_key is None
    assert event.payment is not None and event.payment.status is RemoteStatus.REFUNDED
    assert event.payment.amount_refunded_minor == 190000


def test_refund_failed_is_failed_and_keeps_our_key() -> None:
    entity = {**REFUND_ENTITY, "status": "failed", "notes": {"idempotency_key": KEY, "reason": "asked"}}
    event = verified("refund.failed", refund=entity, payment=REFUND_PAYMENT)
    assert event.refund is not None and event.refund.status is RefundStatus.FAILED
    assert event.refund.idempotency_key == KEY


def test_refund_created_trusts_the_refund_status_not_the_event_name() -> None:
    """The §2.4 refund.created sample already says processed: it is processed."""
    event = verified("refund.created", refund=REFUND_ENTITY, payment=REFUND_PAYMENT)
    assert event.refund is not None and event.refund.status is RefundStatus.PROCESSED
    pending = verified("refund.processed", refund={**REFUND_ENTITY, "status": "pending"}, payment=REFUND_PAYMENT)
    assert pending.refund is not None and pending.refund.status is RefundStatus.PENDING


def test_an_auto_refund_has_payment_captured_false() -> None:
    """An authorisation never captured and refunded by Razorpay (after-capture.md §0.1)."""
    auto = {**REFUND_PAYMENT, "status": "refunded", "captured": False, "amount_refunded": 500000,
            "refund_status": "full"}
    event = verified("refund.processed", refund={**REFUND_ENTITY, "amount": 500000}, payment=auto)
    assert event.refund is not None and event.refund.payment_captured is False
    assert event.payment is not None and event.payment.status is RemoteStatus.REFUNDED


def test_refund_speed_changed_reads_created_at_inside_the_payload() -> None:
    gateway, _ = make_gateway(lambda request: httpx.Response(500))
    entity = {**REFUND_ENTITY, "acquirer_data": {}, "notes": [], "status": "pending"}
    body, headers = delivery("refund.speed_changed", None, refund=entity, payment=REFUND_PAYMENT)
    envelope = json.loads(body)
    envelope["payload"]["created_at"] = 1597734099
    body = json.dumps(envelope).encode()
    event = gateway.verify_webhook(body, {**headers, "X-Razorpay-Signature": sign("whsec", body)})
    assert event.created_at == 1597734099 and event.refund is not None
    assert event.refund.status is RefundStatus.PENDING


@pytest.mark.parametrize(("payload", "message"), [
    ({"payment": REFUND_PAYMENT}, "payload.refund.entity"),
    ({"refund": REFUND_ENTITY}, "payload.payment.entity"),
    ({"refund": {**REFUND_ENTITY, "amount": 500.0}, "payment": REFUND_PAYMENT}, "integer"),
    ({"refund": {**REFUND_ENTITY, "amount": -1}, "payment": REFUND_PAYMENT}, "negative"),
    ({"refund": {**REFUND_ENTITY, "payment_id": None}, "payment": REFUND_PAYMENT}, "payment_id"),
])
def test_a_refund_event_without_a_readable_refund_or_payment_is_malformed(payload: dict, message: str) -> None:
    with pytest.raises(MalformedEvent, match=message) as caught:
        verified("refund.processed", **payload)
    assert caught.value.signed


#: after-capture.md §3.2's payment.dispute.created sample, its "..." filled in.
DISPUTE_PAYMENT = {"id": "pay_EFtmUsbwpXwBHI", "entity": "payment", "amount": 5297600, "currency": "INR",
                   "status": "captured", "order_id": "order_EFtmM0NhW6Ybs2", "amount_refunded": 700000,
                   "refund_status": "partial", "captured": True, "method": "card", "notes": []}
DISPUTE_ENTITY = {"id": "disp_EsIAlDcoUr8CaQ", "entity": "dispute", "payment_id": "pay_EFtmUsbwpXwBHI",
                  "amount": 39000, "currency": "INR", "amount_deducted": 0,
                  "reason_code": "processed_invalid_expired_card", "respond_by": 1590431400, "status": "open",
                  "phase": "chargeback", "created_at": 1589907957,
                  "evidence": {"amount": 39000, "summary": None, "submitted_at": None}}


@pytest.mark.parametrize(("event_type", "fields", "expected"), [
    ("payment.dispute.created", {}, DisputeStatus.OPEN),
    ("payment.dispute.action_required", {}, DisputeStatus.OPEN),
    ("payment.dispute.under_review", {"status": "under_review", "amount": 130000,
                                      "evidence": {"amount": 100000}}, DisputeStatus.UNDER_REVIEW),
    ("payment.dispute.won", {"status": "won"}, DisputeStatus.WON),
    ("payment.dispute.lost", {"status": "lost", "amount_deducted": 39000}, DisputeStatus.LOST),
    ("payment.dispute.closed", {"status": "closed", "phase": "fraud"}, DisputeStatus.CLOSED),
])
def test_every_dispute_event_carries_its_dispute_and_its_payment(event_type: str, fields: dict,
                                                                 expected: DisputeStatus) -> None:
    entity = {**DISPUTE_ENTITY, **fields}
    event = verified(event_type, payment=DISPUTE_PAYMENT, dispute=entity)
    assert event.dispute is not None and event.refund is None
    dispute = event.dispute
    assert (dispute.gateway_dispute_id, dispute.gateway_payment_id) == ("disp_EsIAlDcoUr8CaQ", "pay_EFtmUsbwpXwBHI")
    assert (dispute.status, dispute.wire_status) == (expected, entity["status"])
    assert (dispute.amount_minor, dispute.currency) == (entity["amount"], "INR")
    assert (dispute.phase, dispute.reason_code) == (entity["phase"], "processed_invalid_expired_card")
    assert (dispute.respond_by, dispute.created_at) == (1590431400, 1589907957)
    assert dispute.amount_deducted_minor == entity["amount_deducted"]
    assert event.payment is not None and event.payment.gateway_payment_id == "pay_EFtmUsbwpXwBHI"
    assert event.gateway_order_id == "order_EFtmM0NhW6Ybs2"


def test_the_won_sample_keeps_its_implausible_payment_as_sent() -> None:
    """The §3.2 won sample shows the payment authorized / captured false: mapped as it says, not invented."""
    payment = {**DISPUTE_PAYMENT, "status": "authorized", "captured": False, "amount_refunded": 0}
    event = verified("payment.dispute.won", payment=payment, dispute={**DISPUTE_ENTITY, "status": "won"})
    assert event.payment is not None and event.payment.status is RemoteStatus.AUTHORIZED
    assert event.dispute is not None and event.dispute.status is DisputeStatus.WON


@pytest.mark.parametrize(("payload", "message"), [
    ({"payment": DISPUTE_PAYMENT}, "payload.dispute.entity"),
    ({"dispute": DISPUTE_ENTITY}, "payload.payment.entity"),
    ({"payment": DISPUTE_PAYMENT, "dispute": {**DISPUTE_ENTITY, "currency": None}}, "currency"),
])
def test_a_dispute_event_without_its_dispute_or_payment_is_malformed(payload: dict, message: str) -> None:
    with pytest.raises(MalformedEvent, match=message):
        verified("payment.dispute.lost", **payload)


def test_an_unknown_dispute_status_is_unknown() -> None:
    event = verified("payment.dispute.created", payment=DISPUTE_PAYMENT,
                     dispute={**DISPUTE_ENTITY, "status": "pre_arbitration_open", "respond_by": None})
    assert event.dispute is not None and event.dispute.status is DisputeStatus.UNKNOWN
    assert event.dispute.respond_by is None


def test_a_payment_event_carries_neither_refund_nor_dispute() -> None:
    event = verified("payment.captured", payment=payment_json())
    assert event.refund is None and event.dispute is None and event.payment is not None
