"""Orders in needs_review leave it only by an explicit, audited support decision, with a reason."""

from __future__ import annotations

from dataclasses import dataclass

from db import queries
from db.models import OrderTransition, SupportAction
from gateways.port import RemotePayment, RemoteStatus
from worker.deps import Deps
from worker.domain.errors import ReconError, UnknownOrder
from worker.domain.order_state import REVIEW_DECISIONS, OrderState
from worker.logging import get_logger
from worker.services.credit import grant_once


class NotInReview(ReconError):
    """The order is not waiting for a review decision."""


@dataclass(frozen=True, slots=True)
class Resolution:
    order_id: str
    decision: str
    state: str
    granted: bool


def resolve_review(order_id: str, decision: str, *, reason: str, requested_by: str, deps: Deps) -> Resolution:
    """Credit the order, close it without credit, or mark it for refund at the gateway."""
    if decision not in REVIEW_DECISIONS:
        raise ValueError(f"decision must be one of {sorted(REVIEW_DECISIONS)}")
    if not reason or not reason.strip():
        raise ValueError("a reason is mandatory")
    now = deps.clock.now()
    with deps.sessions.begin() as session:
        order = queries.get_order(session, order_id, lock=True)
        if order is None:
            raise UnknownOrder(f"no order {order_id!r}")
        if order.state != OrderState.NEEDS_REVIEW.value:
            raise NotInReview(f"order {order_id} is {order.state}, not needs_review")
        to_state = REVIEW_DECISIONS[decision]
        granted = decision == "credit" and _grant_best_payment(session, order, now=now)
        if decision == "refund":
            for payment in queries.payments_of(session, order_id):
                if payment.status in ("captured", "authorized"):
                    payment.flag_reason = "refund_requested"
        session.add(OrderTransition(order_id=order_id, from_state=order.state, to_state=to_state.value,
                                    reason=f"review_{decision}", source="support", created_at=now))
        session.add(SupportAction(order_id=order_id, action=f"review_{decision}", requested_by=requested_by,
                                  reason=reason, outcome={"from_state": order.state, "state": to_state.value,
                                                          "granted": granted}, created_at=now))
        order.state, order.state_reason, order.next_check_at, order.updated_at = (
            to_state.value, f"review_{decision}", None, now)
    get_logger(order_id=order_id, gateway=order.gateway).info("review_resolved", decision=decision,
                                                              requested_by=requested_by)
    return Resolution(order_id, decision, to_state.value, granted)


def _grant_best_payment(session, order, *, now) -> bool:
    """Grant the order once on the captured payment we hold (support has checked it)."""
    if order.granted_payment_id:
        return False
    captured = [p for p in queries.payments_of(session, order.id) if p.status == "captured"]
    if not captured:
        raise NotInReview(f"order {order.id} has no captured payment to credit")
    row = captured[0]
    payment = RemotePayment(row.gateway_payment_id, order.gateway_order_id, RemoteStatus.CAPTURED, row.amount_minor,
                            row.currency)
    if grant_once(session, order, payment, now=now):
        order.granted_payment_id, order.paid_at = row.gateway_payment_id, now
        return True
    return False
