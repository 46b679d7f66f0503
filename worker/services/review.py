"""Orders in needs_review leave it only by an explicit, audited support decision, with a reason.

The decision is the state machine's (:func:`worker.domain.order_state.decide_review`): this module
applies it through a unit of work, which locks the order, checks the move against the transition
table, flags what is to be refunded and writes the audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.deps import Deps
from worker.domain.errors import ReconError
from worker.domain.order_state import REVIEW_DECISIONS, IllegalTransition, decide_review
from worker.logging import get_logger
from worker.services.apply import stored_payment
from worker.services.refunds import RefundOutcome, refund_payments

#: What a payment support asked to refund is flagged with (the refund itself is a row of its own).
REFUND_REQUESTED = "refund_requested"


class NotInReview(ReconError):
    """The order is not waiting for a review decision."""


@dataclass(frozen=True, slots=True)
class Resolution:
    order_id: str
    decision: str
    state: str
    granted: bool
    refunds: tuple[RefundOutcome, ...] = ()  #: the refunds ``refund`` started


def resolve_review(order_id: str, decision: str, *, reason: str, requested_by: str, deps: Deps) -> Resolution:
    """Credit the order, close it without credit, or close it and refund the money we hold.

    An order credited before it went to review keeps its credit and returns to ``paid`` whatever the
    decision; ``refund`` then refunds only the captured payments beyond the credited one (an authorisation
    is released by the gateway itself). The refunds start after the decision is committed.
    """
    if decision not in REVIEW_DECISIONS:
        raise ValueError(f"decision must be one of {sorted(REVIEW_DECISIONS)}")
    if not reason or not reason.strip():
        raise ValueError("a reason is mandatory")
    with deps.unit() as uow:
        order = uow.order(order_id, lock=True)
        before = uow.snapshot(order)
        try:
            move = decide_review(before, decision, tuple(stored_payment(row, order) for row in uow.payments(order_id)))
        except IllegalTransition:
            raise NotInReview(f"order {order_id} is {order.state}, not needs_review") from None
        except ValueError as exc:
            raise NotInReview(str(exc)) from None
        granted = uow.move(order, move, source="support", flag_reason=REFUND_REQUESTED)
        uow.audit(move.reason, order_id=order_id, requested_by=requested_by, reason=reason,
                  outcome={"from_state": move.from_state.value, "state": move.to_state.value, "granted": granted,
                           "refund_requested": [p.gateway_payment_id for p in move.flagged]})
        order.next_check_at = None
        gateway_name = order.gateway
        uow.commit()
    get_logger(order_id=order_id, gateway=gateway_name).info("review_resolved", decision=decision,
                                                             requested_by=requested_by, state=move.to_state.value)
    started = refund_payments(order_id, move.refund, origin="review", reason=reason, requested_by=requested_by,
                              deps=deps) if move.refund else []
    return Resolution(order_id, decision, move.to_state.value, granted, tuple(started))
