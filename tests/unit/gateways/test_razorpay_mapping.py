"""Razorpay JSON -> port DTOs: statuses, refunds, notes, failure kinds, webhook envelopes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateways.errors import MalformedEvent
from gateways.port import FailureKind, RemoteStatus
from gateways.razorpay.mapping import (
    STATUS_MAP,
    classify_failure,
    order_from_json,
    parse_notes,
    parse_webhook,
    payment_from_json,
    payments_from_collection,
)


def payment(**fields: Any) -> dict[str, Any]:
    """A Razorpay payment entity shaped like the docs' samples, with ``fields`` overriding."""
    entity: dict[str, Any] = {
        "id": "pay_DESlfW9H8K9uqM",
        "entity": "payment",
        "amount": 29500,
        "currency": "INR",
        "status": "captured",
        "order_id": "order_DESlLckIVRkHWj",
        "method": "netbanking",
        "amount_refunded": 0,
        "refund_status": None,
        "captured": True,
        "notes": [],
        "error_code": None,
        "error_description": None,
        "error_source": None,
        "error_step": None,
        "error_reason": None,
        "created_at": 1567674599,
    }
    entity.update(fields)
    return entity


ORDER = {
    "id": "order_DESlLckIVRkHWj",
    "entity": "order",
    "amount": 29500,
    "amount_paid": 29500,
    "amount_due": 0,
    "currency": "INR",
    "receipt": "rcptid #1",
    "offer_id": None,
    "status": "paid",
    "attempts": 2,
    "notes": [],
    "created_at": 1567674581,
}


def envelope(event: str, **payload: dict[str, Any]) -> bytes:
    body = {
        "entity": "event",
        "account_id": "acc_BFQ7uQEaa7j2z7",
        "event": event,
        "contains": list(payload),
        "payload": {name: {"entity": entity} for name, entity in payload.items()},
        "created_at": 1567674606,
    }
    return json.dumps(body).encode("utf-8")


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ("created", RemoteStatus.CREATED),
        ("authorized", RemoteStatus.AUTHORIZED),
        ("captured", RemoteStatus.CAPTURED),
        ("failed", RemoteStatus.FAILED),
        ("refunded", RemoteStatus.REFUNDED),
    ],
)
def test_every_documented_status_maps_to_its_remote_status(wire: str, expected: RemoteStatus) -> None:
    """The five documented payment statuses map one to one, keeping the wire status."""
    mapped = payment_from_json(payment(status=wire))
    assert mapped.status is expected
    assert mapped.wire_status == wire
    assert STATUS_MAP[wire] is expected


@pytest.mark.parametrize("wire", ["pending", "authorised", "CAPTURED", "", None])
def test_an_unknown_status_is_unknown_never_failed(wire: str | None) -> None:
    """Statuses we do not know (even the British spelling) map to UNKNOWN with no failure kind."""
    mapped = payment_from_json(payment(status=wire))
    assert mapped.status is RemoteStatus.UNKNOWN
    assert mapped.failure_kind is None


def test_status_is_authoritative_over_the_captured_flag() -> None:
    """An authorised payment that says ``captured: true`` (as some samples do) is still only authorised."""
    assert payment_from_json(payment(status="authorized", captured=True)).status is RemoteStatus.AUTHORIZED
    assert payment_from_json(payment(status="captured", captured=False)).status is RemoteStatus.CAPTURED


def test_a_partly_refunded_captured_payment_maps_to_refunded() -> None:
    """A partial refund keeps Razorpay's status at captured; we report REFUNDED with the refunded amount."""
    mapped = payment_from_json(payment(status="captured", amount_refunded=10000, refund_status="partial"))
    assert mapped.status is RemoteStatus.REFUNDED
    assert mapped.amount_refunded_minor == 10000
    assert mapped.amount_minor == 29500
    assert mapped.wire_status == "captured"


def test_a_captured_payment_maps_its_ids_and_money() -> None:
    """Ids, integer minor-unit amount and currency are carried over; no failure fields."""
    mapped = payment_from_json(payment())
    assert mapped.gateway_payment_id == "pay_DESlfW9H8K9uqM"
    assert mapped.gateway_order_id == "order_DESlLckIVRkHWj"
    assert (mapped.amount_minor, mapped.currency) == (29500, "INR")
    assert mapped.amount_refunded_minor == 0
    assert mapped.failure_kind is None and mapped.failure_reason is None


def test_a_payment_without_an_order_has_no_order_id() -> None:
    """``order_id`` is nullable on payments (payments made outside the Orders API)."""
    assert payment_from_json(payment(order_id=None)).gateway_order_id is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"amount": 295.0}, "integer"),
        ({"amount": "29500"}, "integer"),
        ({"amount": True}, "integer"),
        ({"amount": None}, "integer"),
        ({"id": None}, "'id'"),
        ({"currency": ""}, "'currency'"),
        ({"amount_refunded": 1.5}, "amount_refunded"),
        ({"status": 3}, "'status'"),
    ],
)
def test_a_malformed_payment_is_refused_with_the_field_named(fields: dict[str, Any], message: str) -> None:
    """Money must be an int in minor units; a float, string or bool is never accepted."""
    with pytest.raises(MalformedEvent, match=message):
        payment_from_json(payment(**fields))


@pytest.mark.parametrize("notes", [[], {}, None, {"customer": "c_1"}])
def test_notes_may_be_an_empty_list_or_an_object(notes: Any) -> None:
    """Razorpay serialises empty notes as ``[]``; payments and orders parse either way."""
    assert payment_from_json(payment(notes=notes)).status is RemoteStatus.CAPTURED
    assert order_from_json({**ORDER, "notes": notes}).gateway_order_id == ORDER["id"]


def test_parse_notes_normalises_list_and_object_forms() -> None:
    """``[]`` and ``null`` give an empty dict; objects give string values; other shapes are refused."""
    assert parse_notes([]) == {}
    assert parse_notes(None) == {}
    assert parse_notes({"merchant_order_id": "random order id", "n": 5}) == {
        "merchant_order_id": "random order id",
        "n": "5",
    }
    with pytest.raises(MalformedEvent, match="notes"):
        parse_notes(["a"])


@pytest.mark.parametrize(
    ("source", "reason", "code", "expected"),
    [
        ("customer", "payment_cancelled", "BAD_REQUEST_ERROR", FailureKind.WINDOW_CLOSED),
        (None, "payment_cancelled", None, FailureKind.WINDOW_CLOSED),
        ("customer", "payment_cancelled_by_customer", "", FailureKind.WINDOW_CLOSED),
        ("bank", "payment_timed_out", "BAD_REQUEST_ERROR", FailureKind.TIMED_OUT),
        ("gateway", "payment_pending", "GATEWAY_ERROR", FailureKind.TIMED_OUT),
        ("bank", "deemed_transaction", "", FailureKind.TIMED_OUT),
        ("internal", "server_error", "SERVER_ERROR", FailureKind.GATEWAY_ERROR),
        ("gateway", "payment_failed", "BAD_REQUEST_ERROR", FailureKind.GATEWAY_ERROR),
        ("bank", "", "GATEWAY_ERROR", FailureKind.GATEWAY_ERROR),
        ("bank", "payment_failed", "BAD_REQUEST_ERROR", FailureKind.DECLINED),
        ("issuer_bank", "card_declined", "BAD_REQUEST_ERROR", FailureKind.DECLINED),
        ("customer", "incorrect_otp", "BAD_REQUEST_ERROR", FailureKind.DECLINED),
        ("customer", "insufficient_funds", "BAD_REQUEST_ERROR", FailureKind.DECLINED),
        (None, "payment_failed", None, FailureKind.DECLINED),
        ("business", "input_validation_failed", "BAD_REQUEST_ERROR", FailureKind.OTHER),
        (None, None, None, FailureKind.OTHER),
        ("", "", "", FailureKind.OTHER),
    ],
)
def test_failure_classification(source: str | None, reason: str | None, code: str | None,
                                expected: FailureKind) -> None:
    """Window closed, then timed out, then gateway error, then declined, else other."""
    assert classify_failure(error_source=source, error_reason=reason, error_code=code) is expected


def test_a_failed_payment_carries_its_failure_kind_and_reason() -> None:
    """The docs' netbanking payment.failed sample is a bank decline with a readable reason."""
    mapped = payment_from_json(
        payment(
            status="failed",
            captured=False,
            error_code="BAD_REQUEST_ERROR",
            error_description="Payment failed",
            error_source="bank",
            error_step="payment_authorization",
            error_reason="payment_failed",
        )
    )
    assert mapped.status is RemoteStatus.FAILED
    assert mapped.failure_kind is FailureKind.DECLINED
    assert mapped.failure_reason == "payment_failed: Payment failed"


def test_empty_string_error_fields_are_treated_as_absent() -> None:
    """``error_code: ""`` (seen in an official sample) does not break mapping."""
    mapped = payment_from_json(payment(status="failed", error_code="", error_description="", error_reason=""))
    assert mapped.failure_kind is FailureKind.OTHER
    assert mapped.failure_reason is None
    assert payment_from_json(payment(status="authorized", error_code="")).failure_kind is None


def test_order_and_its_payment_collection_map_together() -> None:
    """The fetch-payments sample (one failed UPI attempt, one captured) gives both attempts."""
    collection = {
        "entity": "collection",
        "count": 2,
        "items": [
            payment(id="pay_failed000001", status="failed", method="upi", error_reason="payment_failed"),
            payment(id="pay_captured0001"),
        ],
    }
    order = order_from_json(ORDER, payments_from_collection(collection))
    assert order.gateway_order_id == "order_DESlLckIVRkHWj"
    assert (order.amount_minor, order.currency, order.receipt, order.wire_status) == (29500, "INR", "rcptid #1", "paid")
    assert [p.status for p in order.payments] == [RemoteStatus.FAILED, RemoteStatus.CAPTURED]


@pytest.mark.parametrize("collection", [{}, {"items": None}, {"items": {"a": 1}}, []])
def test_a_collection_without_items_is_malformed(collection: Any) -> None:
    """A payments response without an ``items`` list is refused."""
    with pytest.raises(MalformedEvent, match="items"):
        payments_from_collection(collection)


def test_order_paid_webhook_maps_payment_order_id_and_created_at() -> None:
    """The §5.2 order.paid envelope gives a captured payment on the order."""
    event = parse_webhook(envelope("order.paid", payment=payment(), order=ORDER), "evt_A")
    assert (event.event_id, event.event_type) == ("evt_A", "order.paid")
    assert event.gateway_order_id == "order_DESlLckIVRkHWj"
    assert event.payment is not None and event.payment.status is RemoteStatus.CAPTURED
    assert event.created_at == 1567674606


def test_order_id_falls_back_to_the_order_entity() -> None:
    """When the payment has no order_id, the order entity's id is used."""
    event = parse_webhook(envelope("order.paid", payment=payment(order_id=None), order=ORDER), "evt_B")
    assert event.gateway_order_id == "order_DESlLckIVRkHWj"


def test_payment_failed_webhook_maps_to_a_failed_attempt() -> None:
    """payment.failed gives a FAILED payment with a failure kind."""
    failed = payment(status="failed", error_source="customer", error_reason="payment_cancelled")
    event = parse_webhook(envelope("payment.failed", payment=failed), "evt_C")
    assert event.payment is not None
    assert event.payment.status is RemoteStatus.FAILED
    assert event.payment.failure_kind is FailureKind.WINDOW_CLOSED


def test_refund_webhook_maps_the_refunded_payment() -> None:
    """refund.processed carries the payment with amount_refunded: it maps to REFUNDED."""
    refund = {"id": "rfnd_1", "entity": "refund", "amount": 500, "currency": "INR", "payment_id": "pay_DESlfW9H8K9uqM"}
    body = envelope("refund.processed", refund=refund, payment=payment(amount_refunded=500, refund_status="partial"))
    event = parse_webhook(body, "evt_D")
    assert event.payment is not None
    assert event.payment.status is RemoteStatus.REFUNDED
    assert event.payment.amount_refunded_minor == 500


def test_other_event_types_parse_without_a_payment() -> None:
    """Events we do not act on (downtime, unknown dispute events) never fail for lack of a payment; the six
    documented dispute events do carry theirs (test_razorpay_refunds.py)."""
    event = parse_webhook(envelope("payment.downtime.started", **{"payment.downtime": {"id": "down_1"}}), "evt_E")
    assert event.event_type == "payment.downtime.started"
    assert event.payment is None and event.gateway_order_id is None
    odd = parse_webhook(envelope("payment.dispute.escalated", payment={"id": "pay_x", "amount": "??"}), "evt_F")
    assert odd.payment is None and odd.dispute is None
    with pytest.raises(MalformedEvent, match="integer"):
        parse_webhook(envelope("payment.dispute.created", payment={"id": "pay_x", "amount": "??"}), "evt_F")


def test_unknown_payment_status_in_a_webhook_is_unknown() -> None:
    """A payment.captured whose payment status is new to us maps to UNKNOWN, not failed."""
    event = parse_webhook(envelope("payment.captured", payment=payment(status="on_hold")), "evt_G")
    assert event.payment is not None and event.payment.status is RemoteStatus.UNKNOWN


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b"", "not JSON"),
        (b"{\"event\": ", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"order.paid"', "JSON object"),
        (b"{}", "'event'"),
        (b'{"event": 7}', "'event'"),
        (b'{"event": "order.paid", "payload": []}', "payload"),
        (b'{"event": "payment.captured", "payload": {}}', "payload.payment.entity"),
        (b'{"event": "payment.captured", "payload": {"payment": {"entity": []}}}', "payload.payment.entity"),
        (b'{"event": "refund.created", "payload": {"refund": {"entity": {}}}}', "payload.payment.entity"),
    ],
)
def test_malformed_webhook_bodies_raise_with_a_clear_message(body: bytes, message: str) -> None:
    """Bodies that are not a UTF-8 JSON object with what we need raise MalformedEvent."""
    with pytest.raises(MalformedEvent, match=message):
        parse_webhook(body, "evt_X")


def test_a_malformed_payment_in_a_payment_event_is_refused() -> None:
    """A payment event whose payment has a float amount is malformed, not silently mapped."""
    with pytest.raises(MalformedEvent, match="integer"):
        parse_webhook(envelope("payment.captured", payment=payment(amount=295.0)), "evt_Y")


@pytest.mark.parametrize("event_id", ["", "   "])
def test_a_webhook_needs_an_event_id(event_id: str) -> None:
    """The event id (from the header) is the dedupe key, so it must be present."""
    with pytest.raises(MalformedEvent, match="event id"):
        parse_webhook(envelope("order.paid", payment=payment(), order=ORDER), event_id)
