"""What support works from: finding an order by any id it is known by, and the lists of orders that need a
person (in review, open too long, disputes near their deadline). Reads only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select

from db.models import Dispute, GatewayPayment, Order, Refund
from worker.deps import Deps
from worker.domain.dispute_state import AWAITING_US
from worker.domain.order_state import OPEN_STATES, OrderState

#: An order still open this long after creation is on support's list (the product page's "within 2 hours").
OPEN_TOO_LONG = timedelta(hours=2)
#: A dispute to answer within this long is on support's list (the DisputeResponseDueSoon alert pages at a day).
DISPUTE_DUE_WITHIN = timedelta(days=3)


@dataclass(frozen=True, slots=True)
class OrderRow:
    """One line of a search result or a list."""

    order_id: str
    organisation_id: str
    plan: str
    credits: int
    amount_minor: int
    currency: str
    gateway: str
    gateway_order_id: str | None
    state: str
    state_reason: str | None
    created_at: datetime


def _rows(query, limit: int, *, deps: Deps) -> list[OrderRow]:
    with deps.sessions() as session:
        found = session.execute(query.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit)).scalars()
        return [OrderRow(o.id, o.organisation_id, o.plan, o.credits, o.amount_minor, o.currency, o.gateway,
                         o.gateway_order_id, o.state, o.state_reason, o.created_at) for o in found]


def find_orders(*, deps: Deps, text: str | None = None, state: str | None = None,
                older_than: timedelta | None = None, limit: int = 100) -> list[OrderRow]:
    """Orders matching every filter given, newest first. ``text`` is matched exactly against our order id, the
    gateway's order id, a payment or refund id at the gateway, and the organisation id."""
    query = select(Order)
    if text:
        paid_by = select(GatewayPayment.order_id).where(GatewayPayment.gateway_payment_id == text)
        refunded_by = select(Refund.order_id).where(Refund.gateway_refund_id == text)
        query = query.where(or_(Order.id == text, Order.gateway_order_id == text, Order.organisation_id == text,
                                Order.id.in_(paid_by), Order.id.in_(refunded_by)))
    if state:
        query = query.where(Order.state == state)
    if older_than is not None:
        query = query.where(Order.created_at < deps.clock.now() - older_than)
    return _rows(query, limit, deps=deps)


def needs_review(*, deps: Deps, limit: int = 200) -> list[OrderRow]:
    return find_orders(deps=deps, state=OrderState.NEEDS_REVIEW.value, limit=limit)


def open_too_long(*, deps: Deps, limit: int = 200) -> list[OrderRow]:
    """Created or pending orders older than :data:`OPEN_TOO_LONG`: the customer is still waiting."""
    cutoff = deps.clock.now() - OPEN_TOO_LONG
    query = select(Order).where(Order.state.in_(sorted(OPEN_STATES)), Order.created_at < cutoff)
    return _rows(query, limit, deps=deps)


@dataclass(frozen=True, slots=True)
class DisputeRow:
    order_id: str
    gateway: str
    dispute_id: str
    state: str
    phase: str | None
    amount_minor: int
    currency: str
    respond_by: datetime


def disputes_due(*, deps: Deps, within: timedelta = DISPUTE_DUE_WITHIN, limit: int = 200) -> list[DisputeRow]:
    """Disputes waiting for our answer whose deadline is within ``within`` (or passed), soonest first."""
    query = (select(Dispute).where(Dispute.state.in_(sorted(AWAITING_US)), Dispute.respond_by.is_not(None),
                                   Dispute.respond_by < deps.clock.now() + within)
             .order_by(Dispute.respond_by, Dispute.id).limit(limit))
    with deps.sessions() as session:
        return [DisputeRow(d.order_id, d.gateway, d.gateway_dispute_id, d.state, d.phase, d.amount_minor, d.currency,
                           d.respond_by) for d in session.execute(query).scalars()]
