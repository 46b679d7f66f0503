"""Razorpay's JSON entities as the simulator makes them (razorpay.md §2 order object, §3.2 payment object,
§5.2 webhook envelope; after-capture.md §2.2/§2.4 refund entity, §3.1 dispute entity, §4.1 settlement entity,
§4.2 recon row)."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from simulator.razorpay.codec import webhook_signature
from simulator.webhooks import WebhookEvent


def order_entity(
    order_id: str, amount: int, currency: str, receipt: str | None, notes: Any, now: int
) -> dict[str, Any]:
    """A new order as ``POST /v1/orders`` returns it (razorpay.md §2)."""
    return {
        "id": order_id, "entity": "order", "amount": amount, "amount_paid": 0, "amount_due": amount,
        "currency": currency, "receipt": receipt, "offer_id": None, "status": "created", "attempts": 0,
        "notes": notes, "created_at": now,
    }


def payment_entity(payment_id: str, order: Mapping[str, Any], amount: int, currency: str, now: int,
                   method: str = "netbanking") -> dict[str, Any]:
    """A new payment (status ``created``) on ``order``; it carries the order's notes (razorpay.md §3.2)."""
    return {
        "id": payment_id, "entity": "payment", "amount": amount, "currency": currency, "status": "created",
        "order_id": order["id"], "invoice_id": None, "international": False, "method": method,
        "amount_refunded": 0, "refund_status": None, "captured": False, "description": None, "card_id": None,
        "bank": "HDFC" if method == "netbanking" else None, "wallet": None, "vpa": None,
        "email": "customer@example.com", "contact": "+919000090000",
        "notes": copy.deepcopy(order["notes"]), "fee": None, "tax": None, "error_code": None,
        "error_description": None, "error_source": None, "error_step": None, "error_reason": None,
        "acquirer_data": {"bank_transaction_id": None}, "created_at": now,
    }


def refund_entity(refund_id: str, payment: Mapping[str, Any], amount: int, now: int, *, speed: str = "normal",
                  notes: Any = None, receipt: str | None = None) -> dict[str, Any]:
    """A new (``pending``) refund of ``amount`` on ``payment`` (after-capture.md §2.2, §2.4 sample). Empty notes
    are ``[]`` (§2.2); ``speed_processed`` is ``instant`` for an ``optimum`` request, else ``normal`` (§2.2);
    ``acquirer_data.arn`` stays null: "usually" set before the ARN arrives (§0.2)."""
    return {
        "id": refund_id, "entity": "refund", "amount": amount, "currency": payment["currency"],
        "payment_id": payment["id"], "notes": notes or [], "receipt": receipt, "acquirer_data": {"arn": None},
        "created_at": now, "batch_id": None, "status": "pending",
        "speed_processed": "instant" if speed == "optimum" else "normal", "speed_requested": speed,
    }


def dispute_entity(dispute_id: str, payment: Mapping[str, Any], amount: int, *, phase: str, reason_code: str,
                   respond_by: int, now: int) -> dict[str, Any]:
    """A new (``open``) dispute on ``payment`` (after-capture.md §3.1, §3.2 sample): ``amount_deducted`` is 0
    "unless ... lost"; ``evidence.amount`` is the contested amount, by default all of it."""
    return {
        "id": dispute_id, "entity": "dispute", "payment_id": payment["id"], "amount": amount,
        "currency": payment["currency"], "amount_deducted": 0, "reason_code": reason_code,
        "respond_by": respond_by, "status": "open", "phase": phase, "created_at": now,
        "evidence": {"amount": amount, "summary": None, "submitted_at": None},
    }


def settlement_entity(settlement_id: str, *, amount: int, status: str, fees: int, tax: int, utr: str | None,
                      created_at: int) -> dict[str, Any]:
    """A settlement (after-capture.md §4.1, and the ``settlement.processed`` sample's key order): ``amount`` is
    the net paid out; ``fees`` (tax included, like the payment's ``fee``) and ``tax`` of its rows. The UTR is
    null until it is ``processed`` (our reading: the entity says string; test mode's "mock UTR" comes with
    processing, §4.3)."""
    return {"id": settlement_id, "entity": "settlement", "amount": amount, "status": status, "fees": fees,
            "tax": tax, "utr": utr, "created_at": created_at}


def recon_row(*, entity_id: str, kind: str, debit: int, credit: int, amount: int, currency: str, fee: int, tax: int,
              created_at: int, settled_at: int, settlement_id: str, settlement_utr: str | None,
              info: Mapping[str, Any]) -> dict[str, Any]:
    """One row of ``GET /v1/settlements/recon/combined`` (after-capture.md §4.2): the sample's keys in the
    sample's order, then the other documented ones (``order_receipt``, ``card_*``, ``description``, ``notes``).
    ``payment_id`` is the parent of a refund or adjustment, null for a payment; ``on_hold`` is always false
    (holds are not modelled); ``notes`` is the entity's notes object (the docs' type; samples show a string)."""
    return {
        "entity_id": entity_id, "type": kind, "debit": debit, "credit": credit, "amount": amount, "currency": currency,
        "fee": fee, "tax": tax, "on_hold": False, "settled": True, "created_at": created_at, "settled_at": settled_at,
        "settlement_id": settlement_id, "settlement_utr": settlement_utr, "payment_id": info.get("payment_id"),
        "order_id": info.get("order_id"), "method": info.get("method"), "dispute_id": info.get("dispute_id"),
        "order_receipt": info.get("order_receipt"), "card_network": None, "card_issuer": None, "card_type": None,
        "description": info.get("description"), "notes": copy.deepcopy(info.get("notes", [])),
    }


def webhook_event(name: str, event_id: str, *, account_id: str, webhook_secret: str, now: int,
                  entities: Mapping[str, dict[str, Any]]) -> WebhookEvent:
    """A webhook with a snapshot of ``entities`` as they are now, serialised once and signed over those bytes.

    razorpay.md §5.2: top-level keys entity/account_id/event/contains/payload/created_at and no event id in the
    body; the id travels only in ``X-Razorpay-Event-Id`` (§5.3), the HMAC over the raw body in
    ``X-Razorpay-Signature``. "Payload = snapshot at event time" (§5.1).
    """
    envelope = {
        "entity": "event", "account_id": account_id, "event": name, "contains": list(entities),
        "payload": {key: {"entity": value} for key, value in entities.items()}, "created_at": now,
    }
    body = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    headers = {
        "Content-Type": "application/json",
        "X-Razorpay-Signature": webhook_signature(webhook_secret, body),
        "X-Razorpay-Event-Id": event_id,
        "User-Agent": "Razorpay-Webhook/v1 (simulator)",
    }
    return WebhookEvent(event_id=event_id, event=name, body=body, headers=headers, created_at=now, gateway="razorpay")
