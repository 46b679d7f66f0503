"""``grant_once``: the only writer of ledger rows. One entry per order and per gateway payment,
enforced by the database's unique constraints, in the caller's transaction."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from db import queries
from db.models import LedgerEntry, Order, Organisation
from gateways.port import RemotePayment
from worker.domain.order_state import Plan

PRO_TERM = timedelta(days=365)


def grant_once(session: Session, order: Order, payment: RemotePayment, *, now: datetime) -> bool:
    """Give the customer what the paid order bought. Returns False if it was already given."""
    plan = Plan(order.plan)
    kind = {Plan.PAYG: "credits", Plan.PRO: "pro_plan", Plan.CUSTOM: "payment_recorded"}[plan]
    entry_id = queries.insert_ignore(session, LedgerEntry, {
        "organisation_id": order.organisation_id, "order_id": order.id, "gateway": order.gateway,
        "gateway_payment_id": payment.gateway_payment_id, "kind": kind,
        "credits": order.credits if plan == Plan.PAYG else 0,
        "amount_minor": payment.amount_minor, "currency": payment.currency, "created_at": now,
    }, conflict=["order_id"])
    if entry_id is None:
        return False
    if plan == Plan.PAYG:
        queries.add_credits(session, order.organisation_id, order.credits)
    elif plan == Plan.PRO:
        organisation = session.get(Organisation, order.organisation_id, with_for_update=True)
        if organisation.plan == "enterprise":  # never downgraded by a Pro order (refused when ordered)
            return True
        start = max(now, organisation.plan_expires_at or now)
        organisation.plan, organisation.plan_expires_at = "pro", start + PRO_TERM
    return True
