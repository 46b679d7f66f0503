"""Feed evidence into the state machine and persist its decision, inside the caller's transaction."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlalchemy.orm import Session

from db import queries
from db.models import GatewayPayment, Order, OrderTransition
from gateways.port import FailureKind, RemotePayment, RemoteStatus
from worker.domain.events import FOR_STATE
from worker.domain.order_state import (
    Decision,
    Evidence,
    OrderSnapshot,
    OrderState,
    Plan,
    Policy,
    Source,
    decide,
    evolve,
    freshest,
    horizon_at,
    window_closes_at,
)
from worker.domain.schedule import Schedule, next_check_at
from worker.logging import get_logger
from worker.metrics import (
    CREDITS_GRANTED,
    GRANTS_BY_SOURCE,
    ORDER_TIME_TO_PAID,
    ORDERS_ABANDONED,
    ORDERS_GRANTED,
    ORDERS_LATE_PAID,
    ORDERS_NEEDS_REVIEW,
    UNKNOWN_STATUS,
)
from worker.services import outbox
from worker.services.credit import grant_once
from worker.services.money import catch_up_after_grant


def snapshot(session: Session, order: Order, payments: list | None = None) -> OrderSnapshot:
    payments = queries.payments_of(session, order.id) if payments is None else payments
    flagged = frozenset(p.gateway_payment_id for p in payments if p.flag_reason)
    return OrderSnapshot(
        order_id=order.id, state=OrderState(order.state), plan=Plan(order.plan), amount_minor=order.amount_minor,
        currency=order.currency, gateway_order_id=order.gateway_order_id or "", created_at=order.created_at,
        manual_capture=order.manual_capture, granted_payment_id=order.granted_payment_id, flagged_payment_ids=flagged,
        last_attempt_at=order.last_attempt_at,
    )


def stored_payment(row: GatewayPayment, order: Order) -> RemotePayment:
    """A stored payment row in the port's terms (the newest status we have seen of it)."""
    return RemotePayment(row.gateway_payment_id, order.gateway_order_id, RemoteStatus(row.status), row.amount_minor,
                         row.currency, amount_refunded_minor=row.amount_refunded_minor or 0,
                         failure_kind=FailureKind(row.failure_kind) if row.failure_kind else None,
                         failure_reason=row.failure_reason, wire_status=row.status)


def with_known_payments(evidence: Evidence, order: Order, stored: list[GatewayPayment]) -> Evidence:
    """The evidence plus every payment we stored, each at its most advanced known status.

    A webhook carries a snapshot from when it was sent, and Razorpay does not order them: a late
    ``payment.captured`` must not undo the ``refunded`` we already know (a replayed body with a fresh
    event id, which the signature does not cover, is just another stale snapshot)."""
    known = {row.gateway_payment_id: stored_payment(row, order) for row in stored}
    for payment in evidence.payments:
        if payment.gateway_order_id in (None, order.gateway_order_id):
            known[payment.gateway_payment_id] = freshest(known.get(payment.gateway_payment_id), payment)
    return replace(evidence, payments=tuple(known.values()))


def payment_values(payment: RemotePayment) -> dict:
    return {
        "gateway_payment_id": payment.gateway_payment_id, "status": payment.status.value,
        "amount_minor": payment.amount_minor, "currency": payment.currency,
        "amount_refunded_minor": payment.amount_refunded_minor,
        "failure_kind": payment.failure_kind.value if payment.failure_kind else None,
        "failure_reason": (payment.failure_reason or None) and payment.failure_reason[:200],
    }


def apply_evidence(session: Session, order: Order, evidence: Evidence, *, now: datetime, policy: Policy,
                   schedule: Schedule) -> Decision:
    """Decide on a row locked by the caller, then record payments, the grant, the transition and the
    order's next check."""
    stored = queries.payments_of(session, order.id)
    known = {p.gateway_payment_id for p in stored}
    new_attempt = any(p.gateway_payment_id not in known for p in evidence.payments
                      if p.gateway_order_id in (None, order.gateway_order_id))
    if new_attempt and evidence.source in (Source.WEBHOOK, Source.CALLBACK):
        order.last_attempt_at = now  # a customer retrying right now gets a fresh payment window; an attempt a
        # poll discovers happened at some unknown earlier time and does not extend it
    before = snapshot(session, order, stored)
    seen = with_known_payments(evidence, order, stored)
    decision = decide(before, seen, now=now, policy=policy)
    evolve(before, decision)  # raises IllegalTransition before anything is written
    reported = {p.gateway_payment_id for p in evidence.payments}
    rows = {row.gateway_payment_id: row for row in stored}
    for payment in seen.payments:
        if payment.gateway_payment_id in reported:
            queries.record_payment(session, order_id=order.id, gateway=order.gateway, values=payment_values(payment),
                                   now=now, known=rows)
    for payment in decision.flagged:
        queries.flag_payment(session, gateway=order.gateway, gateway_payment_id=payment.gateway_payment_id,
                             reason=decision.reason)
    apply_move(session, order, decision, source=evidence.source.value, now=now, policy=policy)
    log = get_logger(order_id=order.id, gateway=order.gateway)
    for payment in evidence.payments:
        if payment.status == RemoteStatus.UNKNOWN:
            UNKNOWN_STATUS.labels(order.gateway).inc()
            log.warning("gateway_status_unknown", payment_id=payment.gateway_payment_id,
                        wire_status=payment.wire_status)
    _reschedule(order, before, evidence, moved=decision.changed or new_attempt, now=now, policy=policy,
                schedule=schedule, check_by=decision.check_by)
    if session.is_modified(order, include_collections=False):  # a no-op (a late order.paid, a duplicate) writes nothing
        order.updated_at = now
    return decision


def apply_move(session: Session, order: Order, decision: Decision, *, source: str, now: datetime,
               policy: Policy) -> bool:
    """Grant what the decision grants (once) and record its state change; the one writer of both, for the
    machine's decisions and support's. Returns whether a grant was made."""
    log = get_logger(order_id=order.id, gateway=order.gateway)
    granted = decision.grant is not None and grant_once(session, order, decision.grant, now=now)
    if granted:
        order.granted_payment_id = decision.grant.gateway_payment_id
        order.paid_at = now
        log.info("order_granted", payment_id=decision.grant.gateway_payment_id, plan=order.plan, credits=order.credits)
        record_grant(order, now=now, source=source)
    if decision.changed:
        session.add(OrderTransition(order_id=order.id, from_state=order.state, to_state=decision.to_state.value,
                                    reason=decision.reason, source=source, created_at=now,
                                    gateway_payment_id=decision.grant.gateway_payment_id if decision.grant else None))
        log.info("order_state_changed", from_state=order.state, to_state=decision.to_state.value,
                 reason=decision.reason, source=source)
        record_transition(order.gateway, decision)
        order.state, order.state_reason = decision.to_state.value, decision.reason
        if decision.to_state in FOR_STATE:
            outbox.record(session, order, FOR_STATE[decision.to_state], now=now, reason=decision.reason,
                          source=source, credits_granted=order.credits if granted else 0,
                          payment_id=decision.grant.gateway_payment_id if decision.grant else None)
    if granted:  # refunds and disputes seen before the credit take their share now (after order.paid)
        catch_up_after_grant(session, order, now=now, policy=policy)
    return granted


def record_grant(order: Order, *, now: datetime, source: str) -> None:
    ORDERS_GRANTED.labels(order.gateway, order.plan).inc()
    GRANTS_BY_SOURCE.labels(order.gateway, source).inc()
    if order.plan == Plan.PAYG.value:
        CREDITS_GRANTED.labels(order.gateway).inc(order.credits)
    ORDER_TIME_TO_PAID.labels(order.gateway).observe(max(0.0, (now - order.created_at).total_seconds()))


def record_transition(gateway: str, decision: Decision) -> None:
    if decision.to_state in (OrderState.ABANDONED, OrderState.FAILED):
        ORDERS_ABANDONED.labels(gateway, decision.to_state.value, decision.reason).inc()
    elif decision.to_state == OrderState.NEEDS_REVIEW:
        ORDERS_NEEDS_REVIEW.labels(gateway, decision.reason).inc()
    elif decision.to_state == OrderState.PAID and decision.from_state in (OrderState.ABANDONED, OrderState.FAILED):
        ORDERS_LATE_PAID.labels(gateway).inc()


def _reschedule(order: Order, before: OrderSnapshot, evidence: Evidence, *, moved: bool, now: datetime,
                policy: Policy, schedule: Schedule, check_by: datetime | None = None) -> None:
    """A move resets the back-off; a poll or recheck counts as one more check; ``check_by`` (the
    decision's) brings the next check forward."""
    polled = evidence.source in (Source.POLL, Source.RECHECK)
    if moved:
        order.check_count = 0
    elif polled:
        order.check_count += 1
    if polled:
        order.last_checked_at = now
    order.next_check_at = next_check_at(
        state=OrderState(order.state), checks_done=order.check_count, now=now,
        window_closes_at=window_closes_at(before, policy), horizon_at=horizon_at(before, policy), schedule=schedule)
    if check_by is not None and order.next_check_at is not None:  # None: the schedule ends (horizon, paid)
        order.next_check_at = min(order.next_check_at, check_by)
