"""Billing & Transactions: an organisation's orders as the customer's dashboard lists them, and its ledger.

Newest first, by (created_at, id), with an opaque keyset cursor: a page never repeats or skips a row while
new orders arrive. The status is in the customer's words (:func:`worker.domain.events.customer_status`),
with refunds of the credited payment counted; Recheck is offered where a payment may still be found.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import ColumnElement, and_, func, or_, select

from db.models import LedgerEntry, Order, Organisation, Refund
from worker.deps import Deps
from worker.domain.errors import ReconError
from worker.domain.events import customer_status
from worker.domain.order_state import OrderState

#: The customer's statuses, as filters over our states and the refunded amount.
CustomerStatus = Literal["Pending", "Paid", "Failed", "Abandoned", "Refunded", "Partly refunded", "Under review"]
STATUSES: tuple[str, ...] = get_args(CustomerStatus)
#: Rows on which the dashboard offers Recheck: a payment may still turn up (a late one included).
RECHECK_OFFERED = frozenset({OrderState.CREATED.value, OrderState.PENDING.value, OrderState.ABANDONED.value,
                             OrderState.FAILED.value})


class BadCursor(ReconError):
    """A cursor this service did not make (or made for another listing)."""


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[dict[str, Any]]
    next_cursor: str | None


def _refunded():
    """Processed refunds of the order's credited payment (a duplicate's refund leaves the order Paid)."""
    return (select(func.coalesce(func.sum(Refund.amount_minor), 0))
            .where(Refund.order_id == Order.id, Refund.gateway_payment_id == Order.granted_payment_id,
                   Refund.state == "processed")
            .correlate(Order).scalar_subquery())


def _status_is(status: str, refunded) -> ColumnElement[bool]:
    paid = Order.state == OrderState.PAID.value
    return {
        "Pending": Order.state.in_([OrderState.CREATED.value, OrderState.PENDING.value]),
        "Paid": and_(paid, refunded == 0),
        "Refunded": and_(paid, refunded >= Order.amount_minor, refunded > 0),
        "Partly refunded": and_(paid, refunded > 0, refunded < Order.amount_minor),
        "Failed": Order.state.in_([OrderState.FAILED.value, OrderState.CLOSED.value]),
        "Abandoned": Order.state == OrderState.ABANDONED.value,
        "Under review": Order.state == OrderState.NEEDS_REVIEW.value,
    }[status]


def encode_cursor(created_at: datetime, order_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([created_at.isoformat(), order_id]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        at, order_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(at), str(order_id)
    except (ValueError, TypeError) as exc:
        raise BadCursor("this cursor was not made by GET /organisations/{id}/transactions") from exc


def transactions(organisation_id: str, *, deps: Deps, limit: int = 50, cursor: str | None = None,
                 statuses: list[str] | None = None, created_from: datetime | None = None,
                 created_to: datetime | None = None) -> Page:
    """One page of the organisation's orders, newest first."""
    refunded = _refunded().label("refunded")
    query = select(Order, refunded).where(Order.organisation_id == organisation_id)
    if statuses:
        query = query.where(or_(*(_status_is(s, _refunded()) for s in statuses)))
    if created_from is not None:
        query = query.where(Order.created_at >= created_from)
    if created_to is not None:
        query = query.where(Order.created_at < created_to)
    if cursor is not None:
        at, last_id = decode_cursor(cursor)
        query = query.where(or_(Order.created_at < at, and_(Order.created_at == at, Order.id < last_id)))
    with deps.sessions() as session:
        rows = session.execute(query.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit + 1)).all()
    page = [_row(order, int(done)) for order, done in rows[:limit]]
    last = rows[limit - 1][0] if len(rows) > limit else None
    return Page(page, encode_cursor(last.created_at, last.id) if last is not None else None)


def _row(order: Order, refunded: int) -> dict[str, Any]:
    return {"order_id": order.id, "date": order.created_at.isoformat(), "plan": order.plan, "credits": order.credits,
            "amount_minor": order.subtotal_minor, "tax_minor": order.tax_minor, "total_minor": order.amount_minor,
            "currency": order.currency, "gateway": order.gateway,
            "status": customer_status(order.state, amount_minor=order.amount_minor, refunded_minor=refunded),
            "refunded_minor": refunded, "recheck_offered": order.state in RECHECK_OFFERED,
            "paid_at": order.paid_at.isoformat() if order.paid_at else None}


def ledger(organisation_id: str, *, deps: Deps, limit: int = 100, before_id: int | None = None) -> dict[str, Any]:
    """The organisation's balance and its ledger, newest first (``before_id`` pages back)."""
    with deps.sessions() as session:
        organisation = session.get(Organisation, organisation_id)
        if organisation is None:
            raise LookupError(organisation_id)
        query = select(LedgerEntry).where(LedgerEntry.organisation_id == organisation_id)
        if before_id is not None:
            query = query.where(LedgerEntry.id < before_id)
        entries = list(session.execute(query.order_by(LedgerEntry.id.desc()).limit(limit + 1)).scalars())
        total = session.execute(select(func.coalesce(func.sum(LedgerEntry.credits), 0))
                                .where(LedgerEntry.organisation_id == organisation_id)).scalar_one()
    shown = entries[:limit]
    return {"organisation_id": organisation_id, "balance": organisation.credit_balance, "ledger_sum": int(total),
            "entries": [{"id": e.id, "order_id": e.order_id, "entry": e.entry, "kind": e.kind, "credits": e.credits,
                         "shortfall": e.shortfall, "amount_minor": e.amount_minor, "currency": e.currency,
                         "payment_id": e.gateway_payment_id, "at": e.created_at.isoformat()} for e in shown],
            "next_before_id": shown[-1].id if len(entries) > limit else None}
