"""Order events for the billing backend: which changes make one, their names, and the status in the customer's
words. Pure: the outbox (:mod:`worker.services.outbox`) writes them in the change's own transaction.

The payload follows Standard Webhooks' recommended shape, ``{"type", "timestamp", "data"}``; ``data`` always
carries ``event_id``, the order's ``sequence`` (1, 2, 3 … per order: a receiver can tell a gap or a
reordering) and a snapshot of the order. ``ops/contract/order-event.schema.json`` documents it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from worker.domain.order_state import OrderState


class EventType(StrEnum):
    ORDER_PENDING = "order.pending"
    ORDER_PAID = "order.paid"
    ORDER_FAILED = "order.failed"
    ORDER_ABANDONED = "order.abandoned"
    ORDER_NEEDS_REVIEW = "order.needs_review"
    ORDER_CLOSED = "order.closed"
    ORDER_REFUNDED = "order.refunded"
    ORDER_PARTLY_REFUNDED = "order.partly_refunded"
    REFUND_PROCESSED = "refund.processed"  #: of a payment that was never credited (a duplicate): the order stays Paid
    REFUND_FAILED = "refund.failed"
    DISPUTE_OPENED = "dispute.opened"
    DISPUTE_UNDER_REVIEW = "dispute.under_review"
    DISPUTE_WON = "dispute.won"
    DISPUTE_LOST = "dispute.lost"
    DISPUTE_CLOSED = "dispute.closed"
    CREDITS_REVERSED = "credits.reversed"
    CREDITS_RESTORED = "credits.restored"


#: The order's own moves that make an event (``created`` is where every order starts: no event).
FOR_STATE = {OrderState.PENDING: EventType.ORDER_PENDING, OrderState.PAID: EventType.ORDER_PAID,
             OrderState.FAILED: EventType.ORDER_FAILED, OrderState.ABANDONED: EventType.ORDER_ABANDONED,
             OrderState.NEEDS_REVIEW: EventType.ORDER_NEEDS_REVIEW, OrderState.CLOSED: EventType.ORDER_CLOSED}
FOR_DISPUTE = {"open": EventType.DISPUTE_OPENED, "under_review": EventType.DISPUTE_UNDER_REVIEW,
               "won": EventType.DISPUTE_WON, "lost": EventType.DISPUTE_LOST, "closed": EventType.DISPUTE_CLOSED}

_CUSTOMER_WORDS = {OrderState.CREATED: "Pending", OrderState.PENDING: "Pending", OrderState.PAID: "Paid",
                   OrderState.FAILED: "Failed", OrderState.ABANDONED: "Abandoned",
                   OrderState.NEEDS_REVIEW: "Under review", OrderState.CLOSED: "Failed"}


def customer_status(state: str, *, amount_minor: int, refunded_minor: int) -> str:
    """The status the customer sees in Billing & Transactions: a paid order refunded in full reads
    Refunded, in part Partly refunded."""
    if state == OrderState.PAID.value and refunded_minor > 0:
        return "Refunded" if refunded_minor >= amount_minor else "Partly refunded"
    return _CUSTOMER_WORDS[OrderState(state)]


def refund_event(refunded_minor: int, amount_minor: int) -> EventType:
    return EventType.ORDER_REFUNDED if refunded_minor >= amount_minor else EventType.ORDER_PARTLY_REFUNDED


def event_id(order_id: str, sequence: int) -> str:
    """Stable and unique: one order's n-th event has one id, whatever path wrote it."""
    return "evt_" + hashlib.sha256(f"{order_id}:{sequence}".encode()).hexdigest()[:32]


def payload(kind: EventType, *, event: str, sequence: int, at: datetime, order: Mapping[str, Any],
            details: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": kind.value, "timestamp": at.isoformat(),
            "data": {"event_id": event, "sequence": sequence, "order": dict(order), **details}}
