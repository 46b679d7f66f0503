"""Pure functions from Razorpay JSON to the port's DTOs. No I/O, no clock.

Rules taken from docs/gateways/razorpay.md:

- ``status`` is authoritative; the ``captured`` flag contradicts it in some official samples and is ignored.
- A wire status we do not know maps to ``RemoteStatus.UNKNOWN``, never to failed.
- A ``captured`` payment with ``amount_refunded > 0`` (a partial refund keeps ``captured``) maps to REFUNDED.
- ``notes`` may be ``{}`` or ``[]``; empty error fields may be ``""`` rather than ``null``.
- Amounts are integers in minor units; anything else (float, string, bool) is rejected.
- A refund's state is its own ``status`` (after-capture.md §2.4: the ``refund.created`` sample already says
  ``processed``), never the event name; ``created`` (undocumented, mapped so by Hyperswitch) is pending.
- ``refund.*`` and ``payment.dispute.*`` events carry the payment too (``contains: ["refund"|"dispute", "payment"]``).

Shape errors raise :class:`gateways.errors.MalformedEvent` with a message naming the field.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from gateways import settlement_lines
from gateways.errors import MalformedEvent
from gateways.port import (
    DisputeStatus,
    FailureKind,
    RefundStatus,
    RemoteDispute,
    RemoteOrder,
    RemotePayment,
    RemoteRefund,
    RemoteSettlement,
    RemoteStatus,
    SettlementLine,
    WebhookEvent,
)

#: Razorpay payment statuses (docs §3.3) -> our normalised status. Anything else is UNKNOWN.
STATUS_MAP: Mapping[str, RemoteStatus] = {
    "created": RemoteStatus.CREATED,
    "authorized": RemoteStatus.AUTHORIZED,
    "captured": RemoteStatus.CAPTURED,
    "failed": RemoteStatus.FAILED,
    "refunded": RemoteStatus.REFUNDED,
}

#: Razorpay refund statuses (after-capture.md §2.2) -> ours. ``created`` is undocumented; Hyperswitch maps it to
#: pending, and so do we (never done). Anything else is UNKNOWN (treated as still pending).
REFUND_STATUS_MAP: Mapping[str, RefundStatus] = {
    "pending": RefundStatus.PENDING,
    "created": RefundStatus.PENDING,
    "processed": RefundStatus.PROCESSED,
    "failed": RefundStatus.FAILED,
}

#: Razorpay dispute statuses (after-capture.md §3.1) -> ours. ``payment.dispute.action_required`` keeps ``open``.
DISPUTE_STATUS_MAP: Mapping[str, DisputeStatus] = {
    "open": DisputeStatus.OPEN,
    "under_review": DisputeStatus.UNDER_REVIEW,
    "won": DisputeStatus.WON,
    "lost": DisputeStatus.LOST,
    "closed": DisputeStatus.CLOSED,
}

#: Webhook events whose payload must carry a payment entity (``refund.*`` too, see §5.1, and the disputes).
PAYMENT_EVENTS = frozenset({"payment.authorized", "payment.captured", "payment.failed", "order.paid"})

#: Refund events (after-capture.md §2.4): each carries ``payload.refund.entity`` and ``payload.payment.entity``.
#: Any other ``refund.*`` event must carry both as well.
REFUND_EVENTS = frozenset({"refund.created", "refund.processed", "refund.failed", "refund.speed_changed"})

#: Dispute events (after-capture.md §3.2): each carries ``payload.dispute.entity`` and ``payload.payment.entity``.
DISPUTE_EVENTS = frozenset({
    "payment.dispute.created", "payment.dispute.under_review", "payment.dispute.action_required",
    "payment.dispute.won", "payment.dispute.lost", "payment.dispute.closed",
})
#: The event announcing a dispute (also sent when a won case is reopened in a later phase).
DISPUTE_OPENED = "payment.dispute.created"
#: The only settlement event (after-capture.md §4.1): carries ``payload.settlement.entity``, no payment.
SETTLEMENT_PROCESSED = "settlement.processed"

#: error_reason values meaning the customer closed or cancelled the checkout.
WINDOW_CLOSED_REASONS = frozenset({"payment_cancelled", "payment_cancelled_by_user", "user_cancelled"})

#: error_reason values meaning the bank did not answer in time; a late authorisation may follow.
TIMED_OUT_REASONS = frozenset({"payment_timed_out", "payment_pending", "deemed_transaction", "bank_timeout"})

#: error_code / error_source values meaning a technical error at Razorpay, the gateway or the bank's switch.
GATEWAY_ERROR_CODES = frozenset({"GATEWAY_ERROR", "SERVER_ERROR"})
GATEWAY_ERROR_SOURCES = frozenset({"gateway", "internal"})
GATEWAY_ERROR_REASONS = frozenset({"server_error", "gateway_technical_error", "bank_technical_error"})

#: Who declines: the bank, the issuer, or the customer (wrong OTP, no funds).
DECLINED_SOURCES = frozenset({"bank", "issuer_bank", "customer"})
DECLINED_REASONS = frozenset(
    {
        "payment_failed",
        "payment_declined",
        "card_declined",
        "transaction_declined",
        "insufficient_funds",
        "incorrect_otp",
        "invalid_otp",
        "incorrect_pin",
        "invalid_pin",
        "authentication_failed",
        "card_expired",
        "payment_risk_check_failed",
    }
)


def classify_failure(*, error_source: str | None, error_reason: str | None, error_code: str | None) -> FailureKind:
    """Why a failed payment failed, from Razorpay's ``error_source``, ``error_reason`` and ``error_code``.

    Checked in this order: window closed, timed out, gateway error, declined, other.
    """
    source = (error_source or "").strip().lower()
    reason = (error_reason or "").strip().lower()
    code = (error_code or "").strip().upper()
    if reason in WINDOW_CLOSED_REASONS or (source == "customer" and "cancel" in reason):
        return FailureKind.WINDOW_CLOSED
    if reason in TIMED_OUT_REASONS or "timed_out" in reason:
        return FailureKind.TIMED_OUT
    if code in GATEWAY_ERROR_CODES or source in GATEWAY_ERROR_SOURCES or reason in GATEWAY_ERROR_REASONS:
        return FailureKind.GATEWAY_ERROR
    if reason in DECLINED_REASONS or source in DECLINED_SOURCES:
        return FailureKind.DECLINED
    return FailureKind.OTHER


def parse_notes(value: object) -> dict[str, str]:
    """``notes`` as a dict: Razorpay serialises empty notes as ``[]`` (and sometimes ``null``)."""
    if value is None or value == []:
        return {}
    if isinstance(value, Mapping):
        return {str(key): "" if item is None else str(item) for key, item in value.items()}
    raise MalformedEvent(f"notes must be an object or an empty list, got {type(value).__name__}")


def payment_from_json(entity: Mapping[str, Any]) -> RemotePayment:
    """A Razorpay payment entity as a :class:`RemotePayment`.

    Raises:
        MalformedEvent: when ``id``, ``amount`` or ``currency`` is missing or mistyped.
    """
    if not isinstance(entity, Mapping):
        raise MalformedEvent(f"payment entity must be an object, got {type(entity).__name__}")
    wire_status = _optional_str(entity, "status", "payment") or ""
    amount_refunded = _optional_int(entity, "amount_refunded", "payment") or 0
    status = STATUS_MAP.get(wire_status, RemoteStatus.UNKNOWN)
    if status is RemoteStatus.CAPTURED and amount_refunded > 0:
        status = RemoteStatus.REFUNDED
    failure_kind = failure_reason = None
    if status is RemoteStatus.FAILED:
        failure_kind = classify_failure(
            error_source=_optional_str(entity, "error_source", "payment"),
            error_reason=_optional_str(entity, "error_reason", "payment"),
            error_code=_optional_str(entity, "error_code", "payment"),
        )
        failure_reason = _failure_reason(entity)
    return RemotePayment(
        gateway_payment_id=_required_str(entity, "id", "payment"),
        gateway_order_id=_optional_str(entity, "order_id", "payment"),
        status=status,
        amount_minor=_required_int(entity, "amount", "payment"),
        currency=_required_str(entity, "currency", "payment").upper(),
        amount_refunded_minor=amount_refunded,
        failure_kind=failure_kind,
        failure_reason=failure_reason,
        wire_status=wire_status,
        created_at=entity["created_at"] if isinstance(entity.get("created_at"), int) else None,
    )


def payments_from_collection(collection: Mapping[str, Any]) -> tuple[RemotePayment, ...]:
    """The payments of a ``{"entity": "collection", "items": [...]}`` response."""
    items = collection.get("items") if isinstance(collection, Mapping) else None
    if not isinstance(items, list):
        raise MalformedEvent("payments collection lacks an 'items' list")
    return tuple(payment_from_json(item) for item in items)


def order_from_json(
    entity: Mapping[str, Any], payments: Sequence[RemotePayment] = (), *, checkout: Mapping[str, str] | None = None
) -> RemoteOrder:
    """A Razorpay order entity (plus its payments) as a :class:`RemoteOrder`."""
    if not isinstance(entity, Mapping):
        raise MalformedEvent(f"order entity must be an object, got {type(entity).__name__}")
    return RemoteOrder(
        gateway_order_id=_required_str(entity, "id", "order"),
        amount_minor=_required_int(entity, "amount", "order"),
        currency=_required_str(entity, "currency", "order").upper(),
        receipt=_optional_str(entity, "receipt", "order"),
        wire_status=_optional_str(entity, "status", "order") or "",
        payments=tuple(payments),
        checkout=dict(checkout or {}),
    )


def refund_from_json(entity: Mapping[str, Any], payment: Mapping[str, Any] | None = None) -> RemoteRefund:
    """A Razorpay refund entity as a :class:`RemoteRefund`; ``payment`` is the payment entity a webhook
    carries with it (its ``captured`` flag is False for an auto-refund, after-capture.md §2.4).

    Raises:
        MalformedEvent: ``id``, ``payment_id``, ``amount`` or ``currency`` missing or mistyped, or bad ``notes``.
    """
    if not isinstance(entity, Mapping):
        raise MalformedEvent(f"refund entity must be an object, got {type(entity).__name__}")
    wire_status = _optional_str(entity, "status", "refund") or ""
    captured = payment.get("captured") if isinstance(payment, Mapping) else None
    return RemoteRefund(
        gateway_refund_id=_required_str(entity, "id", "refund"),
        gateway_payment_id=_required_str(entity, "payment_id", "refund"),
        amount_minor=_amount(entity, "refund"),
        currency=_required_str(entity, "currency", "refund").upper(),
        status=REFUND_STATUS_MAP.get(wire_status, RefundStatus.UNKNOWN),
        wire_status=wire_status,
        payment_captured=captured if isinstance(captured, bool) else None,
        idempotency_key=parse_notes(entity.get("notes")).get("idempotency_key") or None,
        created_at=_created_at(entity),
    )


def refunds_from_collection(collection: Mapping[str, Any]) -> tuple[RemoteRefund, ...]:
    """The refunds of a ``GET /v1/payments/{id}/refunds`` collection."""
    items = collection.get("items") if isinstance(collection, Mapping) else None
    if not isinstance(items, list):
        raise MalformedEvent("refunds collection lacks an 'items' list")
    return tuple(refund_from_json(item) for item in items)


def dispute_from_json(entity: Mapping[str, Any]) -> RemoteDispute:
    """A Razorpay dispute entity (after-capture.md §3.1) as a :class:`RemoteDispute`.

    Raises:
        MalformedEvent: ``id``, ``payment_id``, ``amount`` or ``currency`` missing or mistyped.
    """
    if not isinstance(entity, Mapping):
        raise MalformedEvent(f"dispute entity must be an object, got {type(entity).__name__}")
    wire_status = _optional_str(entity, "status", "dispute") or ""
    respond_by = entity.get("respond_by")
    return RemoteDispute(
        gateway_dispute_id=_required_str(entity, "id", "dispute"),
        gateway_payment_id=_required_str(entity, "payment_id", "dispute"),
        amount_minor=_amount(entity, "dispute"),
        currency=_required_str(entity, "currency", "dispute").upper(),
        status=DISPUTE_STATUS_MAP.get(wire_status, DisputeStatus.UNKNOWN),
        phase=_optional_str(entity, "phase", "dispute") or "",
        reason_code=_optional_str(entity, "reason_code", "dispute") or "",
        respond_by=respond_by if _is_int(respond_by) else None,
        amount_deducted_minor=_optional_int(entity, "amount_deducted", "dispute") or 0,
        wire_status=wire_status,
        created_at=_created_at(entity),
    )


#: Recon row ``type`` → our kind (after-capture.md §4.2); any other type is kept as ``adjustment``'s cousin
#: ``other`` so a row is never lost (it lands among the unmatched rows).
RECON_KINDS = {"payment": "payment", "refund": "refund", "adjustment": "adjustment", "transfer": "transfer"}


def recon_line_from_json(row: Mapping[str, Any]) -> SettlementLine:
    """One recon row (``GET /v1/settlements/recon/combined``). Raises MalformedEvent if it lacks its id, type
    or integer amounts, or breaks :func:`gateways.settlement_lines.problem`."""
    kind = _required_str(row, "type", "recon row")
    line = SettlementLine(
        entity_id=_required_str(row, "entity_id", "recon row"), kind=RECON_KINDS.get(kind, "other"),
        amount_minor=_required_int(row, "amount", "recon row"),
        currency=(_optional_str(row, "currency", "recon row") or "INR").upper(),  # Razorpay settles in INR (§4.3)
        fee_minor=_optional_int(row, "fee", "recon row") or 0, tax_minor=_optional_int(row, "tax", "recon row") or 0,
        credit_minor=_optional_int(row, "credit", "recon row") or 0,
        debit_minor=_optional_int(row, "debit", "recon row") or 0,
        settlement_id=_optional_str(row, "settlement_id", "recon row"),
        utr=_optional_str(row, "settlement_utr", "recon row"),
        settled_at=_optional_int(row, "settled_at", "recon row"),
        payment_id=_optional_str(row, "payment_id", "recon row"),
        gateway_order_id=_optional_str(row, "order_id", "recon row"),
        dispute_id=_optional_str(row, "dispute_id", "recon row"), raw=dict(row))
    wrong = settlement_lines.problem(line)
    if wrong:
        raise MalformedEvent(f"recon row {line.entity_id[:80]!r}: {wrong}")
    return line


def recon_lines_from_collection(collection: Mapping[str, Any]) -> tuple[SettlementLine, ...]:
    items = collection.get("items")
    if not isinstance(items, list) or not all(isinstance(item, Mapping) for item in items):
        raise MalformedEvent("recon answer lacks an items list of objects")
    return tuple(recon_line_from_json(item) for item in items)


def settlement_from_json(entity: Mapping[str, Any]) -> RemoteSettlement:
    """A ``setl_…`` settlement entity (after-capture.md §4.1). Its ``created_at`` must be within the last 400 days
    or the next two (it names the day to pull again): anything else is a broken event, refused."""
    created_at = _optional_int(entity, "created_at", "settlement")
    if created_at is not None and not time.time() - 400 * 86_400 < created_at < time.time() + 2 * 86_400:
        raise MalformedEvent(f"settlement created_at {created_at} is not a time of the last 400 days")
    return RemoteSettlement(
        gateway_settlement_id=_required_str(entity, "id", "settlement"),
        amount_minor=_required_int(entity, "amount", "settlement"),
        fees_minor=_optional_int(entity, "fees", "settlement") or 0,
        tax_minor=_optional_int(entity, "tax", "settlement") or 0,
        utr=_optional_str(entity, "utr", "settlement"), status=_optional_str(entity, "status", "settlement") or "",
        created_at=created_at)


def parse_webhook(raw_body: bytes, event_id: str) -> WebhookEvent:
    """Parse a (signature-checked) webhook body into a :class:`WebhookEvent`.

    ``payment.*``, ``order.paid``, ``refund.*`` and the :data:`DISPUTE_EVENTS` must carry
    ``payload.payment.entity``; ``refund.*`` also ``payload.refund.entity`` (-> ``refund``), and the
    dispute events ``payload.dispute.entity`` (-> ``dispute``). Other event types (downtime...) get
    ``payment=None`` when their payment entity is absent or does not parse, so an event we do not act
    on never blocks the webhook.

    Raises:
        MalformedEvent: the body is not a UTF-8 JSON object, lacks ``event``, or a required
            payment entity is missing or malformed; or ``event_id`` is empty.
    """
    if not event_id or not event_id.strip():
        raise MalformedEvent("webhook has no event id (X-Razorpay-Event-Id)")
    envelope = _json_object(raw_body)
    event_type = envelope.get("event")
    if not isinstance(event_type, str) or not event_type:
        raise MalformedEvent("webhook body lacks a string 'event' field")
    payload = envelope.get("payload") or {}
    if not isinstance(payload, Mapping):
        raise MalformedEvent("webhook 'payload' must be an object")

    payment_entity = _entity(payload, "payment")
    order_entity = _entity(payload, "order")
    is_refund, is_dispute = event_type.startswith("refund."), event_type in DISPUTE_EVENTS
    needs_payment = event_type in PAYMENT_EVENTS or is_refund or is_dispute
    payment: RemotePayment | None = None
    if needs_payment:
        if payment_entity is None:
            raise MalformedEvent(f"{event_type} webhook lacks a payload.payment.entity object")
        payment = payment_from_json(payment_entity)
    elif payment_entity is not None:
        try:
            payment = payment_from_json(payment_entity)
        except MalformedEvent:
            payment = None
    refund = refund_from_json(_required_entity(payload, "refund", event_type), payment_entity) if is_refund else None
    dispute = dispute_from_json(_required_entity(payload, "dispute", event_type)) if is_dispute else None
    settlement = (settlement_from_json(_required_entity(payload, "settlement", event_type))
                  if event_type == SETTLEMENT_PROCESSED else None)
    if dispute is not None and event_type == DISPUTE_OPENED:
        dispute = replace(dispute, opening=True)

    gateway_order_id = payment.gateway_order_id if payment else None
    if gateway_order_id is None and order_entity is not None:
        order_id = order_entity.get("id")
        gateway_order_id = order_id if isinstance(order_id, str) and order_id else None
    created_at = envelope.get("created_at")
    if not _is_int(created_at):  # refund.speed_changed puts it inside the payload (after-capture.md §2.4)
        created_at = payload.get("created_at")
    return WebhookEvent(
        event_id=event_id.strip(),
        event_type=event_type,
        gateway_order_id=gateway_order_id,
        payment=payment,
        created_at=created_at if _is_int(created_at) else None,
        refund=refund,
        dispute=dispute,
        settlement=settlement,
    )


# Helpers -------------------------------------------------------------------------------


def _json_object(raw_body: bytes) -> Mapping[str, Any]:
    try:
        text = bytes(raw_body).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedEvent(f"webhook body is not UTF-8: {exc.reason} at byte {exc.start}") from exc
    try:
        envelope = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedEvent(f"webhook body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    if not isinstance(envelope, dict):
        raise MalformedEvent(f"webhook body must be a JSON object, got {type(envelope).__name__}")
    return envelope


def _entity(payload: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    """``payload[name]["entity"]`` when it is an object, else ``None``."""
    wrapper = payload.get(name)
    entity = wrapper.get("entity") if isinstance(wrapper, Mapping) else None
    return entity if isinstance(entity, Mapping) else None


def _required_entity(payload: Mapping[str, Any], name: str, event_type: str) -> Mapping[str, Any]:
    entity = _entity(payload, name)
    if entity is None:
        raise MalformedEvent(f"{event_type} webhook lacks a payload.{name}.entity object")
    return entity


def _amount(entity: Mapping[str, Any], kind: str) -> int:
    """A refund's or dispute's ``amount``: a non-negative integer in minor units."""
    amount = _required_int(entity, "amount", kind)
    if amount < 0:
        raise MalformedEvent(f"{kind} 'amount' must not be negative, got {amount}")
    return amount


def _created_at(entity: Mapping[str, Any]) -> int | None:
    value = entity.get("created_at")
    return value if _is_int(value) else None


def _failure_reason(entity: Mapping[str, Any]) -> str | None:
    parts = [
        _optional_str(entity, "error_reason", "payment"),
        _optional_str(entity, "error_description", "payment"),
    ]
    text = ": ".join(part for part in parts if part)
    return text or _optional_str(entity, "error_code", "payment")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _required_int(entity: Mapping[str, Any], key: str, kind: str) -> int:
    value = entity.get(key)
    if not _is_int(value):
        raise MalformedEvent(f"{kind} '{key}' must be an integer amount in minor units, got {value!r}")
    return value


def _optional_int(entity: Mapping[str, Any], key: str, kind: str) -> int | None:
    value = entity.get(key)
    if value is None:
        return None
    return _required_int(entity, key, kind)


def _required_str(entity: Mapping[str, Any], key: str, kind: str) -> str:
    value = _optional_str(entity, key, kind)
    if value is None:
        raise MalformedEvent(f"{kind} lacks '{key}'")
    return value


def _optional_str(entity: Mapping[str, Any], key: str, kind: str) -> str | None:
    """A string field; ``null`` and ``""`` (Razorpay uses both for "none") give ``None``."""
    value = entity.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MalformedEvent(f"{kind} '{key}' must be a string, got {type(value).__name__}")
    return value


def claimed_order_id(raw_body: bytes) -> str | None:
    """The order id an *unverified* webhook body names, or None. Never trusted for state, only to
    prompt a gateway check of an order we hold; never raises."""
    try:
        envelope = _json_object(raw_body)
        payload = envelope.get("payload")
        payment = _entity(payload, "payment") if isinstance(payload, Mapping) else None
        order = _entity(payload, "order") if isinstance(payload, Mapping) else None
        for candidate in ((payment or {}).get("order_id"), (order or {}).get("id")):
            if isinstance(candidate, str) and 0 < len(candidate) <= 64:
                return candidate
    except (MalformedEvent, AttributeError, TypeError, ValueError):
        return None
    return None
