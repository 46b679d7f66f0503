"""The one place where an order's state is decided. Pure: no I/O, no clock, no database.

Webhooks, checkout callbacks, sweeps and support rechecks all describe what the gateway
knows as :class:`Evidence`; :func:`decide` turns the order we hold plus that evidence into a
:class:`Decision`; the service layer applies it in one transaction.

Lifecycle::

    created ──► pending ──► paid ──► needs_review
       │           │          ▲
       │           ├─► failed ┤  (late authorisation: failed/abandoned may still be paid)
       │           └─► abandoned
       └──────────────────────┘
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from gateways.port import FailureKind, RemotePayment, RemoteStatus


class OrderState(StrEnum):
    CREATED = "created"  #: order made at the gateway, no attempt seen yet
    PENDING = "pending"  #: checkout under way: attempts seen, none captured
    PAID = "paid"  #: a payment was captured and granted (credited) once
    FAILED = "failed"  #: every attempt was declined and the payment window has passed
    ABANDONED = "abandoned"  #: window closed, gateway error or no attempt before the timeout
    NEEDS_REVIEW = "needs_review"  #: money and order disagree: a person decides


class Source(StrEnum):
    """Which input produced the evidence."""

    WEBHOOK = "webhook"
    CALLBACK = "callback"
    POLL = "poll"
    RECHECK = "recheck"


class Plan(StrEnum):
    PAYG = "payg"
    PRO = "pro"
    CUSTOM = "custom"
    ENTERPRISE = "enterprise"


#: Every move the state machine may make. Forward only, except late payment of failed/abandoned.
ALLOWED: dict[OrderState, frozenset[OrderState]] = {
    OrderState.CREATED: frozenset(set(OrderState) - {OrderState.CREATED}),
    OrderState.PENDING: frozenset({OrderState.PAID, OrderState.FAILED, OrderState.ABANDONED, OrderState.NEEDS_REVIEW}),
    OrderState.FAILED: frozenset({OrderState.PAID, OrderState.NEEDS_REVIEW}),
    OrderState.ABANDONED: frozenset({OrderState.PAID, OrderState.NEEDS_REVIEW}),
    OrderState.PAID: frozenset({OrderState.NEEDS_REVIEW}),
    OrderState.NEEDS_REVIEW: frozenset(),  # the machine never leaves it: only a support decision does
}

#: What each support decision on an order in review leads to; the only way out of needs_review.
REVIEW_DECISIONS: dict[str, OrderState] = {"credit": OrderState.PAID, "close": OrderState.FAILED,
                                           "refund": OrderState.FAILED}

#: States in which we still wait for money and apply timeouts.
OPEN_STATES = frozenset({OrderState.CREATED, OrderState.PENDING})
#: Payment statuses that mean an attempt is still in flight: no timeout while one exists.
IN_FLIGHT = frozenset({RemoteStatus.CREATED, RemoteStatus.AUTHORIZED, RemoteStatus.UNKNOWN})


class IllegalTransition(Exception):
    """A move that :data:`ALLOWED` forbids."""

    def __init__(self, from_state: OrderState, to_state: OrderState):
        super().__init__(f"an order cannot move from {from_state} to {to_state}")
        self.from_state, self.to_state = from_state, to_state


def check_transition(from_state: OrderState, to_state: OrderState) -> None:
    if to_state != from_state and to_state not in ALLOWED[from_state]:
        raise IllegalTransition(from_state, to_state)


@dataclass(frozen=True, slots=True)
class Policy:
    """Timing rules. Defaults follow the product doc and the gateways' late-authorisation horizon."""

    abandon_after: timedelta = timedelta(minutes=30)
    late_payment_horizon: timedelta = timedelta(days=5)


@dataclass(frozen=True, slots=True)
class OrderSnapshot:
    """What the state machine needs to know about one of our orders."""

    order_id: str
    state: OrderState
    plan: Plan
    amount_minor: int
    currency: str
    gateway_order_id: str
    created_at: datetime
    manual_capture: bool = False
    granted_payment_id: str | None = None
    flagged_payment_ids: frozenset[str] = frozenset()
    last_attempt_at: datetime | None = None  #: when the latest payment attempt was first seen


@dataclass(frozen=True, slots=True)
class Evidence:
    """What one input learnt from the gateway about this order."""

    source: Source
    payments: tuple[RemotePayment, ...] = ()
    order_missing: bool = False  #: the gateway says it does not know the order
    complete: bool = False  #: ``payments`` is every attempt on the order (a fresh poll)


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of :func:`decide`. ``grant`` is the payment to credit, at most once per order."""

    from_state: OrderState
    to_state: OrderState
    reason: str
    grant: RemotePayment | None = None
    capture: tuple[RemotePayment, ...] = ()
    flagged: tuple[RemotePayment, ...] = field(default=())

    @property
    def changed(self) -> bool:
        return self.to_state != self.from_state


def window_closes_at(order: OrderSnapshot, policy: Policy) -> datetime:
    """The payment window runs ``abandon_after`` from creation or from the latest attempt."""
    start = max(order.created_at, order.last_attempt_at or order.created_at)
    return start + policy.abandon_after


def horizon_at(order: OrderSnapshot, policy: Policy) -> datetime:
    """After this, no late authorisation is expected: checks stop (a webhook can still finalise)."""
    return order.created_at + policy.late_payment_horizon


def matches(order: OrderSnapshot, payment: RemotePayment) -> bool:
    """True when the payment is for exactly this order's amount and currency."""
    return payment.amount_minor == order.amount_minor and payment.currency == order.currency


def decide(order: OrderSnapshot, evidence: Evidence, *, now: datetime, policy: Policy) -> Decision:
    """Decide the next state of ``order`` given ``evidence``. Never raises for odd input."""
    payments = tuple(p for p in evidence.payments if p.gateway_order_id in (None, order.gateway_order_id))
    if order.state == OrderState.NEEDS_REVIEW:
        return Decision(order.state, order.state, "awaiting_review")
    if order.state == OrderState.PAID:
        return _decide_paid(order, payments)
    if evidence.order_missing:
        return Decision(order.state, OrderState.NEEDS_REVIEW, "unknown_at_gateway")
    return _decide_unpaid(order, evidence, payments, now=now, policy=policy)


def _decide_paid(order: OrderSnapshot, payments: tuple[RemotePayment, ...]) -> Decision:
    new_money = [
        p for p in payments
        if p.status == RemoteStatus.CAPTURED and p.gateway_payment_id != order.granted_payment_id
        and p.gateway_payment_id not in order.flagged_payment_ids
    ]
    refunded = [p for p in payments if p.status == RemoteStatus.REFUNDED and p.gateway_payment_id == order.granted_payment_id]
    if refunded:
        return Decision(order.state, OrderState.NEEDS_REVIEW, "refunded_after_credit", flagged=tuple(refunded))
    if new_money:
        return Decision(order.state, OrderState.NEEDS_REVIEW, "second_captured_payment", flagged=tuple(new_money))
    return Decision(order.state, order.state, "already_paid")


def _money_kept(payment: RemotePayment) -> bool:
    if payment.status == RemoteStatus.CAPTURED:
        return True
    return payment.status == RemoteStatus.REFUNDED and payment.amount_refunded_minor < payment.amount_minor


def _decide_unpaid(
    order: OrderSnapshot, evidence: Evidence, payments: tuple[RemotePayment, ...], *, now: datetime, policy: Policy
) -> Decision:
    kept = sorted((p for p in payments if _money_kept(p)), key=lambda p: p.gateway_payment_id)
    good = [p for p in kept if p.status == RemoteStatus.CAPTURED and matches(order, p)]
    odd = [p for p in kept if p not in good]
    late = order.state in (OrderState.FAILED, OrderState.ABANDONED)
    if odd:
        reason = "amount_or_currency_mismatch" if any(not matches(order, p) for p in odd) else "partly_refunded"
        return Decision(order.state, OrderState.NEEDS_REVIEW, reason, grant=good[0] if good else None, flagged=tuple(odd))
    if good:
        grant, rest = good[0], good[1:]
        if rest:
            return Decision(order.state, OrderState.NEEDS_REVIEW, "second_captured_payment", grant=grant, flagged=tuple(rest))
        return Decision(order.state, OrderState.PAID, "late_payment" if late else "captured", grant=grant)
    authorized = [p for p in payments if p.status == RemoteStatus.AUTHORIZED]
    if authorized and any(not matches(order, p) for p in authorized):
        return Decision(order.state, OrderState.NEEDS_REVIEW, "amount_or_currency_mismatch", flagged=tuple(authorized))
    capture = tuple(authorized) if order.manual_capture else ()
    if late:
        return Decision(order.state, order.state, "late_authorized_capturing" if capture else "still_" + order.state.value, capture=capture)
    seen_attempt = bool(payments) or evidence.source == Source.CALLBACK
    base = OrderState.PENDING if seen_attempt or order.state == OrderState.PENDING else OrderState.CREATED
    if authorized:
        return Decision(order.state, base, "authorized_capturing" if capture else "authorized_awaiting_capture", capture=capture)
    timed_out = now >= window_closes_at(order, policy)
    if not evidence.complete or not timed_out or any(p.status in IN_FLIGHT for p in payments):
        return Decision(order.state, base, "attempt_failed" if payments else "awaiting_payment")
    return _close(order, payments)


def _close(order: OrderSnapshot, payments: tuple[RemotePayment, ...]) -> Decision:
    """The window has passed with nothing captured or in flight: failed or abandoned, with why."""
    kinds = {p.failure_kind or FailureKind.OTHER for p in payments}
    if not payments:
        return Decision(order.state, OrderState.ABANDONED, "no_attempt")
    if kinds == {FailureKind.DECLINED}:
        return Decision(order.state, OrderState.FAILED, "declined")
    if FailureKind.GATEWAY_ERROR in kinds:
        return Decision(order.state, OrderState.ABANDONED, "gateway_error")
    if FailureKind.WINDOW_CLOSED in kinds:
        return Decision(order.state, OrderState.ABANDONED, "window_closed")
    return Decision(order.state, OrderState.ABANDONED, "attempts_failed")


def evolve(order: OrderSnapshot, decision: Decision) -> OrderSnapshot:
    """The snapshot after ``decision`` is applied (what the service layer persists)."""
    check_transition(order.state, decision.to_state)
    if decision.grant is not None and order.granted_payment_id is not None:
        raise IllegalTransition(order.state, decision.to_state)
    flagged = order.flagged_payment_ids | {p.gateway_payment_id for p in decision.flagged}
    granted = decision.grant.gateway_payment_id if decision.grant else order.granted_payment_id
    return replace(order, state=decision.to_state, granted_payment_id=granted, flagged_payment_ids=flagged)
