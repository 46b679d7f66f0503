"""The one place where an order's state is decided. Pure: no I/O, no clock, no database.

Webhooks, checkout callbacks, sweeps and support rechecks all describe what the gateway
knows as :class:`Evidence`; :func:`decide` turns the order we hold plus that evidence into a
:class:`Decision`; the service layer applies it in one transaction.

Lifecycle::

    created ──► pending ──► paid ◄──────────────┐
       │           │          │ odd money         │ support: credit (or any decision
       │           ├─► failed ┤                   │ on an order already credited)
       │           │          ▼                   │
       │           └─► abandoned ──► needs_review ┤
       │                                          └──► closed (support: close | refund, no credit)
       └──────────────────────┘   (late authorisation: failed/abandoned may still be paid)

Payments are judged by the most advanced status known for each (:func:`freshest`): a stale snapshot
(a webhook delivered late, a replayed body) never undoes a newer one. Entering needs_review never
grants; a credit granted earlier stays, and an order once credited is never granted again.
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
    CLOSED = "closed"  #: support closed an uncredited order in review without credit (close or refund)


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
    OrderState.CREATED: frozenset({OrderState.PENDING, OrderState.PAID, OrderState.FAILED, OrderState.ABANDONED,
                                   OrderState.NEEDS_REVIEW}),
    OrderState.PENDING: frozenset({OrderState.PAID, OrderState.FAILED, OrderState.ABANDONED, OrderState.NEEDS_REVIEW}),
    OrderState.FAILED: frozenset({OrderState.PAID, OrderState.NEEDS_REVIEW}),
    OrderState.ABANDONED: frozenset({OrderState.PAID, OrderState.NEEDS_REVIEW}),
    OrderState.PAID: frozenset({OrderState.NEEDS_REVIEW}),
    # Only a support decision leaves needs_review (:func:`decide_review`); :func:`decide` never does.
    OrderState.NEEDS_REVIEW: frozenset({OrderState.PAID, OrderState.CLOSED}),
    OrderState.CLOSED: frozenset({OrderState.NEEDS_REVIEW}),  # money that arrives after support closed it
}

#: Where every order starts: stored, about to be created at the gateway.
INITIAL_STATE = OrderState.CREATED

#: The support decisions on an order in review.
REVIEW_DECISIONS = frozenset({"credit", "close", "refund"})

#: States in which we still wait for money and apply timeouts.
OPEN_STATES = frozenset({OrderState.CREATED, OrderState.PENDING})
#: Payment statuses that keep an open order from closing while its payment window is open.
IN_FLIGHT = frozenset({RemoteStatus.CREATED, RemoteStatus.AUTHORIZED, RemoteStatus.UNKNOWN})
#: ... and once it has passed: a payment still ``created`` then was never completed (an untouched
#: PayGlocal page stays CREATED forever); the order is abandoned and may still be paid late.
IN_FLIGHT_AFTER_WINDOW = frozenset({RemoteStatus.AUTHORIZED, RemoteStatus.UNKNOWN})

#: Statuses only move forward: created → authorized → captured → refunded, and failed may still become
#: authorized or captured (late authorisation). UNKNOWN ranks lowest: it never overrides what we know.
STATUS_RANK: dict[RemoteStatus, int] = {RemoteStatus.UNKNOWN: 0, RemoteStatus.CREATED: 0, RemoteStatus.FAILED: 1,
                                        RemoteStatus.AUTHORIZED: 2, RemoteStatus.CAPTURED: 3,
                                        RemoteStatus.REFUNDED: 4}


def _progress(payment: RemotePayment) -> tuple[int, int]:
    return STATUS_RANK[payment.status], payment.amount_refunded_minor


def freshest(known: RemotePayment | None, new: RemotePayment) -> RemotePayment:
    """The more advanced of two snapshots of one payment (ties: the one with more refunded)."""
    return new if known is None or _progress(new) >= _progress(known) else known


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
    #: The gateway's auto-capture window, from the payment's creation (after-capture.md §1.2: A, 12 minutes at
    #: least): an authorisation inside it is captured by the gateway at once, one after it stays authorised.
    auto_capture_window: timedelta = timedelta(minutes=12)
    #: How long such a fresh authorisation, reported by a webhook or callback, is left for the gateway to
    #: capture before a check captures it if it did not.
    auto_capture_grace: timedelta = timedelta(minutes=1)
    #: A second captured payment on an order already credited: ``refund`` it at once (audited; the order
    #: stays paid) or send the order to ``review``.
    duplicate_payment: str = "refund"
    #: A reversal may take the balance below zero (else what was spent is recorded as a shortfall).
    allow_negative_balance: bool = False


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
    check_by: datetime | None = None  #: check the order at the gateway no later than this
    #: payments to refund now (a duplicate on a credited order under the refund policy; support's review)
    refund: tuple[RemotePayment, ...] = ()

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
    """Decide the next state of ``order`` given ``evidence``. Never raises for odd input.

    ``evidence.payments`` should already hold the freshest snapshot of each payment (see :func:`freshest`).
    """
    payments = tuple(p for p in evidence.payments if p.gateway_order_id in (None, order.gateway_order_id))
    if order.state == OrderState.NEEDS_REVIEW:
        return Decision(order.state, order.state, "awaiting_review")
    if order.granted_payment_id is not None:  # credited once: whatever state it is in, never granted again
        return _decide_credited(order, payments, policy)
    if order.state == OrderState.CLOSED:
        return _decide_closed(order, payments)
    if evidence.order_missing:
        return Decision(order.state, OrderState.NEEDS_REVIEW, "unknown_at_gateway")
    return _decide_unpaid(order, evidence, payments, now=now, policy=policy)


def _unflagged(order: OrderSnapshot, payments: tuple[RemotePayment, ...]) -> list[RemotePayment]:
    """Payments no person has been asked about yet."""
    return [p for p in payments if p.gateway_payment_id not in order.flagged_payment_ids]


def _decide_closed(order: OrderSnapshot, payments: tuple[RemotePayment, ...]) -> Decision:
    """Support closed it without credit; money that arrives afterwards needs a person again."""
    new_money = [p for p in _unflagged(order, payments) if _money_kept(p)]
    if new_money:
        return Decision(order.state, OrderState.NEEDS_REVIEW, "money_after_close", flagged=tuple(new_money))
    return Decision(order.state, order.state, "closed_by_support")


def _decide_credited(order: OrderSnapshot, payments: tuple[RemotePayment, ...], policy: Policy) -> Decision:
    """A credited order: new evidence may send it to a person, never to a second grant.

    A refund of the credited payment leaves the order paid (so does Razorpay, after-capture.md §2.3): the
    refund's own lifecycle (:mod:`worker.domain.refund_state`) takes the credits back once it is processed.
    A second captured payment is refunded at once under the ``refund`` policy (the order stays paid) or
    sent to a person."""
    new_money = [p for p in _unflagged(order, payments)
                 if p.status == RemoteStatus.CAPTURED and p.gateway_payment_id != order.granted_payment_id]
    if new_money and policy.duplicate_payment == "refund":
        return Decision(order.state, order.state, "duplicate_payment_refunded", flagged=tuple(new_money),
                        refund=tuple(new_money))
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
    # Entering review never grants: the good payment waits for the person who decides (needs_review gets
    # no credit), so no credit is ever given for an order whose money disagrees with it.
    if odd:
        reason = "amount_or_currency_mismatch" if any(not matches(order, p) for p in odd) else "partly_refunded"
        return Decision(order.state, OrderState.NEEDS_REVIEW, reason, flagged=tuple(odd))
    if len(good) > 1:
        return Decision(order.state, OrderState.NEEDS_REVIEW, "second_captured_payment", flagged=tuple(good[1:]))
    if good:
        return Decision(order.state, OrderState.PAID, "late_payment" if late else "captured", grant=good[0])
    authorized = sorted((p for p in payments if p.status == RemoteStatus.AUTHORIZED),
                        key=lambda p: p.gateway_payment_id)
    if any(not matches(order, p) for p in authorized):
        return Decision(order.state, OrderState.NEEDS_REVIEW, "amount_or_currency_mismatch",
                        flagged=tuple(p for p in authorized if not matches(order, p)))
    # An authorised payment is captured whatever the order's capture mode: past an auto-capture window
    # (12 min) Razorpay leaves a late authorisation uncaptured and refunds it days later (razorpay.md
    # §3.4). One at a time: a second authorisation on the order is left for the gateway to refund.
    capture = tuple(authorized[:1])
    if late:
        return Decision(order.state, order.state,
                        "late_authorized_capturing" if capture else "still_" + order.state.value, capture=capture)
    seen_attempt = bool(payments) or evidence.source == Source.CALLBACK
    base = OrderState.PENDING if seen_attempt or order.state == OrderState.PENDING else OrderState.CREATED
    if capture and _left_to_auto_capture(order, evidence, capture[0], now=now, policy=policy):
        # payment.authorized comes just before payment.captured on an auto-capture order: capturing now
        # would cost a capture and a fetch for nothing. A check soon captures it if the gateway did not.
        return Decision(order.state, base, "authorized_awaiting_auto_capture",
                        check_by=now + policy.auto_capture_grace)
    if capture:
        return Decision(order.state, base, "authorized_capturing", capture=capture)
    timed_out = now >= window_closes_at(order, policy)
    in_flight = IN_FLIGHT_AFTER_WINDOW if timed_out else IN_FLIGHT
    if not evidence.complete or not timed_out or any(p.status in in_flight for p in payments):
        return Decision(order.state, base, _waiting_reason(payments))
    return _close(order, payments)


def _left_to_auto_capture(order: OrderSnapshot, evidence: Evidence, payment: RemotePayment, *, now: datetime,
                          policy: Policy) -> bool:
    """A fresh authorisation on an auto-capture order, reported by a webhook or callback: the gateway is
    capturing it. A late one (created before the window), or one of unknown age, we capture."""
    if order.manual_capture or evidence.source not in (Source.WEBHOOK, Source.CALLBACK) or payment.created_at is None:
        return False
    return now.timestamp() - payment.created_at < policy.auto_capture_window.total_seconds()


def _waiting_reason(payments: tuple[RemotePayment, ...]) -> str:
    if not payments:
        return "awaiting_payment"
    if any(p.status in IN_FLIGHT for p in payments):
        return "attempt_in_progress"
    return "attempt_failed"


def _close(order: OrderSnapshot, payments: tuple[RemotePayment, ...]) -> Decision:
    """The window has passed with nothing captured or in flight: failed or abandoned, with why."""
    tried = [p for p in payments if p.status != RemoteStatus.CREATED]  # never completed: no attempt
    kinds = {p.failure_kind or FailureKind.OTHER for p in tried}
    if not tried:
        return Decision(order.state, OrderState.ABANDONED, "no_attempt")
    if kinds == {FailureKind.DECLINED}:
        return Decision(order.state, OrderState.FAILED, "declined")
    if FailureKind.GATEWAY_ERROR in kinds:
        return Decision(order.state, OrderState.ABANDONED, "gateway_error")
    if FailureKind.WINDOW_CLOSED in kinds:
        return Decision(order.state, OrderState.ABANDONED, "window_closed")
    return Decision(order.state, OrderState.ABANDONED, "attempts_failed")


def evolve(order: OrderSnapshot, decision: Decision) -> OrderSnapshot:
    """The snapshot after ``decision`` is applied (what the service layer persists).

    Raises:
        IllegalTransition: the move is not in :data:`ALLOWED`, or the decision would grant an order
            already credited or grant on the way into review.
    """
    check_transition(order.state, decision.to_state)
    if decision.grant is not None and (order.granted_payment_id is not None
                                       or decision.to_state != OrderState.PAID):
        raise IllegalTransition(order.state, decision.to_state)
    flagged = order.flagged_payment_ids | {p.gateway_payment_id for p in decision.flagged}
    granted = decision.grant.gateway_payment_id if decision.grant else order.granted_payment_id
    return replace(order, state=decision.to_state, granted_payment_id=granted, flagged_payment_ids=flagged)


def decide_creation_failed(order: OrderSnapshot) -> Decision:
    """The gateway refused or failed to create the order: no checkout exists, so nothing can be paid.
    Closed as abandoned (nothing is left to check)."""
    if order.gateway_order_id:
        raise IllegalTransition(order.state, OrderState.ABANDONED)
    return Decision(order.state, OrderState.ABANDONED, "gateway_error")


def decide_review(order: OrderSnapshot, decision: str, payments: tuple[RemotePayment, ...]) -> Decision:
    """Support's decision on an order in review, as the state machine's move.

    ``credit`` grants the order on a captured payment (a matching one first), unless it is already
    credited; ``close`` ends it without credit; ``refund`` also marks the money we hold for a refund:
    on an order already credited, only the payments beyond the credited one. An order credited before
    it went to review stays ``paid`` whatever the decision: its credit stands.

    Raises:
        ValueError: an unknown decision, or ``credit`` with no captured payment to credit.
        IllegalTransition: the order is not in review.
    """
    if decision not in REVIEW_DECISIONS:
        raise ValueError(f"decision must be one of {sorted(REVIEW_DECISIONS)}")
    if order.state != OrderState.NEEDS_REVIEW:
        raise IllegalTransition(order.state, OrderState.PAID if decision == "credit" else OrderState.CLOSED)
    reason = f"review_{decision}"
    held = tuple(p for p in payments if p.status in (RemoteStatus.CAPTURED, RemoteStatus.AUTHORIZED)
                 and p.gateway_payment_id != order.granted_payment_id)
    to_refund = held if decision == "refund" else ()
    if order.granted_payment_id is not None:
        return Decision(order.state, OrderState.PAID, reason, flagged=to_refund, refund=to_refund)
    if decision != "credit":
        return Decision(order.state, OrderState.CLOSED, reason, flagged=to_refund, refund=to_refund)
    captured = sorted((p for p in payments if p.status == RemoteStatus.CAPTURED),
                      key=lambda p: (not matches(order, p), p.gateway_payment_id))
    if not captured:
        raise ValueError(f"order {order.order_id} has no captured payment to credit")
    return Decision(order.state, OrderState.PAID, reason, grant=captured[0])
