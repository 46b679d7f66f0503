"""The order state machine, case by case: one row per situation, each with a sentence for an id.

Every row runs :func:`decide` on a snapshot plus evidence, checks the whole decision (target
state, reason, grant, capture requests, flagged payments) and then applies it with
:func:`evolve`, which must accept it and record the grant and flags.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import product

import pytest

from gateways.port import FailureKind, RemotePayment, RemoteStatus
from worker.domain.order_state import (
    ALLOWED,
    Decision,
    Evidence,
    IllegalTransition,
    OrderSnapshot,
    OrderState,
    Plan,
    Policy,
    Source,
    check_transition,
    decide,
    decide_review,
    evolve,
    freshest,
    horizon_at,
    window_closes_at,
)

S = OrderState
RS = RemoteStatus

T0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
POLICY = Policy()  # abandon_after = 30 minutes
BEFORE_TIMEOUT = T0 + timedelta(minutes=5)
#: Creation times (Unix seconds) of an attempt inside the auto-capture window at BEFORE_TIMEOUT, and before it.
FRESH = int((BEFORE_TIMEOUT - timedelta(minutes=1)).timestamp())
LATE = int((BEFORE_TIMEOUT - timedelta(minutes=20)).timestamp())
JUST_BEFORE_TIMEOUT = T0 + POLICY.abandon_after - timedelta(seconds=1)
AT_TIMEOUT = T0 + POLICY.abandon_after
AFTER_TIMEOUT = T0 + timedelta(hours=2)

GOID = "order_G1"
OTHER_GOID = "order_OTHER"
AMOUNT = 1_180_000  # 5,000 credits at 2 INR + 18 % GST
CURRENCY = "INR"


def order(state: OrderState = S.CREATED, *, manual_capture: bool = False, granted: str | None = None,
          flagged: frozenset[str] = frozenset(), last_attempt: datetime | None = None) -> OrderSnapshot:
    return OrderSnapshot(order_id="ord_1", state=state, plan=Plan.PAYG, amount_minor=AMOUNT, currency=CURRENCY,
                         gateway_order_id=GOID, created_at=T0, manual_capture=manual_capture,
                         granted_payment_id=granted, flagged_payment_ids=flagged, last_attempt_at=last_attempt)


def pay(pid: str, status: RemoteStatus, *, amount: int = AMOUNT, currency: str = CURRENCY,
        goid: str | None = GOID, refunded: int = 0, kind: FailureKind | None = None,
        created: int | None = None) -> RemotePayment:
    return RemotePayment(gateway_payment_id=pid, gateway_order_id=goid, status=status, amount_minor=amount,
                         currency=currency, amount_refunded_minor=refunded, failure_kind=kind,
                         wire_status=status.value, created_at=created)


def captured(pid: str = "pay_1", **kw) -> RemotePayment:
    return pay(pid, RS.CAPTURED, **kw)


def authorized(pid: str = "pay_1", **kw) -> RemotePayment:
    return pay(pid, RS.AUTHORIZED, **kw)


def failed(pid: str = "pay_1", kind: FailureKind | None = FailureKind.DECLINED, **kw) -> RemotePayment:
    return pay(pid, RS.FAILED, kind=kind, **kw)


def webhook(*payments: RemotePayment) -> Evidence:
    return Evidence(Source.WEBHOOK, payments)


def callback(*payments: RemotePayment) -> Evidence:
    return Evidence(Source.CALLBACK, payments)


def poll(*payments: RemotePayment) -> Evidence:
    """A fresh fetch of the order: every attempt, so timeouts may apply."""
    return Evidence(Source.POLL, payments, complete=True)


def recheck(*payments: RemotePayment, complete: bool = True) -> Evidence:
    return Evidence(Source.RECHECK, payments, complete=complete)


MISSING = Evidence(Source.POLL, order_missing=True, complete=True)


@dataclass(frozen=True)
class Case:
    id: str
    order: OrderSnapshot
    evidence: Evidence
    now: datetime
    to: OrderState
    reason: str
    grant: str | None = None
    capture: tuple[str, ...] = ()
    flagged: tuple[str, ...] = ()


CASES = [
    # --- captured, matching: paid with exactly one grant -------------------------------------------------
    Case("a captured payment of the exact amount and currency on a created order marks it paid and grants it",
         order(S.CREATED), webhook(captured()), BEFORE_TIMEOUT, S.PAID, "captured", grant="pay_1"),
    Case("a captured matching payment on a pending order marks it paid and grants it",
         order(S.PENDING), webhook(captured()), BEFORE_TIMEOUT, S.PAID, "captured", grant="pay_1"),
    Case("a checkout callback pointing at a captured matching payment marks the order paid",
         order(S.CREATED), callback(captured()), BEFORE_TIMEOUT, S.PAID, "captured", grant="pay_1"),
    Case("a complete poll after the timeout that finds a captured matching payment pays, it does not abandon",
         order(S.PENDING), poll(failed("pay_0"), captured()), AFTER_TIMEOUT, S.PAID, "captured", grant="pay_1"),
    Case("a captured payment whose gateway_order_id is unknown (None) is still taken as this order's",
         order(S.CREATED), webhook(captured(goid=None)), BEFORE_TIMEOUT, S.PAID, "captured", grant="pay_1"),
    Case("a captured matching payment on a failed order is a late payment: paid with reason late_payment",
         order(S.FAILED), webhook(captured()), AFTER_TIMEOUT, S.PAID, "late_payment", grant="pay_1"),
    Case("a captured matching payment on an abandoned order is a late payment: paid with reason late_payment",
         order(S.ABANDONED), poll(captured()), AFTER_TIMEOUT, S.PAID, "late_payment", grant="pay_1"),
    # --- captured, wrong money: a person decides, nothing is granted ---------------------------------------
    Case("a captured payment of a different amount goes to needs_review without a grant",
         order(S.CREATED), webhook(captured(amount=AMOUNT - 1)), BEFORE_TIMEOUT, S.NEEDS_REVIEW,
         "amount_or_currency_mismatch", flagged=("pay_1",)),
    Case("a captured payment in a different currency goes to needs_review without a grant",
         order(S.PENDING), webhook(captured(currency="USD")), BEFORE_TIMEOUT, S.NEEDS_REVIEW,
         "amount_or_currency_mismatch", flagged=("pay_1",)),
    Case("a late captured payment of the wrong amount on an abandoned order goes to needs_review without a grant",
         order(S.ABANDONED), webhook(captured(amount=AMOUNT * 2)), AFTER_TIMEOUT, S.NEEDS_REVIEW,
         "amount_or_currency_mismatch", flagged=("pay_1",)),
    Case("a matching and a mismatching capture together go to needs_review with no credit: the person decides",
         order(S.PENDING), poll(captured("pay_2", amount=1), captured("pay_1")), BEFORE_TIMEOUT, S.NEEDS_REVIEW,
         "amount_or_currency_mismatch", flagged=("pay_2",)),
    Case("a good capture next to a partly refunded one goes to needs_review with no credit",
         order(S.PENDING), poll(captured("pay_1"), pay("pay_2", RS.REFUNDED, refunded=AMOUNT // 2)), BEFORE_TIMEOUT,
         S.NEEDS_REVIEW, "partly_refunded", flagged=("pay_2",)),
    Case("a partly refunded matching payment before any credit goes to needs_review without a grant",
         order(S.PENDING), webhook(pay("pay_1", RS.REFUNDED, refunded=AMOUNT // 2)), BEFORE_TIMEOUT,
         S.NEEDS_REVIEW, "partly_refunded", flagged=("pay_1",)),
    Case("a fully refunded payment on an unpaid order kept no money: nothing is granted and the order stays open",
         order(S.PENDING), webhook(pay("pay_1", RS.REFUNDED, refunded=AMOUNT)), BEFORE_TIMEOUT, S.PENDING,
         "attempt_failed"),
    # --- two captured at once ----------------------------------------------------------------------------
    Case("two matching captures in one poll go to needs_review with no credit and the second flagged",
         order(S.PENDING), poll(captured("pay_2"), captured("pay_1")), BEFORE_TIMEOUT, S.NEEDS_REVIEW,
         "second_captured_payment", flagged=("pay_2",)),
    # --- authorised, not captured --------------------------------------------------------------------------
    Case("an authorised matching payment on an auto-capture order is captured by us too (late past the window)",
         order(S.CREATED), webhook(authorized()), BEFORE_TIMEOUT, S.PENDING, "authorized_capturing",
         capture=("pay_1",)),
    Case("a fresh authorisation a webhook reports on an auto-capture order is left a minute for the gateway",
         order(S.CREATED), webhook(authorized(created=FRESH)), BEFORE_TIMEOUT, S.PENDING,
         "authorized_awaiting_auto_capture"),
    Case("an authorisation created before the auto-capture window is late: the webhook's is captured by us",
         order(S.CREATED), webhook(authorized(created=LATE)), BEFORE_TIMEOUT, S.PENDING, "authorized_capturing",
         capture=("pay_1",)),
    Case("a fresh authorisation a poll finds (a minute on) is captured by us: the gateway did not",
         order(S.PENDING), poll(authorized(created=FRESH)), BEFORE_TIMEOUT, S.PENDING, "authorized_capturing",
         capture=("pay_1",)),
    Case("manual capture: a fresh authorisation from a webhook is captured at once",
         order(S.CREATED, manual_capture=True), webhook(authorized(created=FRESH)), BEFORE_TIMEOUT, S.PENDING,
         "authorized_capturing", capture=("pay_1",)),
    Case("of two authorised matching payments only the lowest id is captured: never two on one order",
         order(S.PENDING), poll(authorized("pay_2"), authorized("pay_1")), BEFORE_TIMEOUT, S.PENDING,
         "authorized_capturing", capture=("pay_1",)),
    Case("an authorised matching payment with manual capture asks for that payment to be captured",
         order(S.CREATED, manual_capture=True), webhook(authorized()), BEFORE_TIMEOUT, S.PENDING,
         "authorized_capturing", capture=("pay_1",)),
    Case("an authorised payment is captured, not timed out, by a complete poll long after the window",
         order(S.PENDING), poll(authorized()), AFTER_TIMEOUT, S.PENDING, "authorized_capturing", capture=("pay_1",)),
    Case("a late authorisation on an abandoned order with manual capture is captured while the state stays abandoned",
         order(S.ABANDONED, manual_capture=True), webhook(authorized()), AFTER_TIMEOUT, S.ABANDONED,
         "late_authorized_capturing", capture=("pay_1",)),
    Case("a late authorisation on a failed auto-capture order is captured: Razorpay leaves it authorised",
         order(S.FAILED), webhook(authorized()), AFTER_TIMEOUT, S.FAILED, "late_authorized_capturing",
         capture=("pay_1",)),
    Case("an authorised payment of the wrong amount goes to needs_review and is not captured",
         order(S.PENDING, manual_capture=True), webhook(authorized(amount=AMOUNT + 100)), BEFORE_TIMEOUT,
         S.NEEDS_REVIEW, "amount_or_currency_mismatch", flagged=("pay_1",)),
    Case("an authorised payment in the wrong currency on an abandoned order goes to needs_review, not captured",
         order(S.ABANDONED, manual_capture=True), webhook(authorized(currency="USD")), AFTER_TIMEOUT,
         S.NEEDS_REVIEW, "amount_or_currency_mismatch", flagged=("pay_1",)),
    # --- failed attempts and the payment window ------------------------------------------------------------
    Case("a declined attempt before the timeout moves a created order to pending, not failed",
         order(S.CREATED), webhook(failed()), BEFORE_TIMEOUT, S.PENDING, "attempt_failed"),
    Case("a complete poll before the timeout with only declined attempts keeps the order pending",
         order(S.PENDING), poll(failed("pay_1"), failed("pay_2")), JUST_BEFORE_TIMEOUT, S.PENDING,
         "attempt_failed"),
    Case("a complete poll exactly at the timeout with no attempts abandons the order (no_attempt)",
         order(S.CREATED), poll(), AT_TIMEOUT, S.ABANDONED, "no_attempt"),
    Case("a complete poll after the timeout with no payments abandons a created order with reason no_attempt",
         order(S.CREATED), poll(), AFTER_TIMEOUT, S.ABANDONED, "no_attempt"),
    Case("a complete recheck after the timeout with no payments abandons a pending order with reason no_attempt",
         order(S.PENDING), recheck(), AFTER_TIMEOUT, S.ABANDONED, "no_attempt"),
    Case("a recent attempt keeps the window open: declines seen 20 minutes ago are not yet failed",
         order(S.PENDING, last_attempt=T0 + timedelta(minutes=20)), poll(failed()), T0 + timedelta(minutes=40),
         S.PENDING, "attempt_failed"),
    Case("the window runs from the latest attempt: 30 minutes after it, all-declined attempts mark the order failed",
         order(S.PENDING, last_attempt=T0 + timedelta(minutes=20)), poll(failed()), T0 + timedelta(minutes=50),
         S.FAILED, "declined"),
    Case("an attempt time before creation (clock skew) never shortens the window below creation + 30 minutes",
         order(S.PENDING, last_attempt=T0 - timedelta(hours=1)), poll(failed()), JUST_BEFORE_TIMEOUT, S.PENDING,
         "attempt_failed"),
    Case("a complete poll after the timeout where every attempt was declined marks the order failed/declined",
         order(S.PENDING), poll(failed("pay_1"), failed("pay_2")), AFTER_TIMEOUT, S.FAILED, "declined"),
    Case("a gateway error among the attempts after the timeout abandons the order with reason gateway_error",
         order(S.PENDING), poll(failed("pay_1"), failed("pay_2", kind=FailureKind.GATEWAY_ERROR)), AFTER_TIMEOUT,
         S.ABANDONED, "gateway_error"),
    Case("a customer who closed the checkout window gets an abandoned order with reason window_closed",
         order(S.PENDING), poll(failed(kind=FailureKind.WINDOW_CLOSED)), AFTER_TIMEOUT, S.ABANDONED,
         "window_closed"),
    Case("a bank timeout after the window is abandoned (attempts_failed), never failed, so late money still pays",
         order(S.PENDING), poll(failed(kind=FailureKind.TIMED_OUT)), AFTER_TIMEOUT, S.ABANDONED, "attempts_failed"),
    Case("a failed attempt with no failure kind after the window is abandoned with reason attempts_failed",
         order(S.PENDING), poll(failed(kind=None)), AFTER_TIMEOUT, S.ABANDONED, "attempts_failed"),
    Case("a declined attempt next to an unclassified one after the window is abandoned, not failed",
         order(S.PENDING), poll(failed("pay_1"), failed("pay_2", kind=FailureKind.OTHER)), AFTER_TIMEOUT,
         S.ABANDONED, "attempts_failed"),
    # --- in-flight attempts and incomplete evidence never time out ---------------------------------------
    Case("a created (in-flight) attempt blocks the timeout while the window is open",
         order(S.PENDING), poll(failed("pay_1"), pay("pay_2", RS.CREATED)), JUST_BEFORE_TIMEOUT, S.PENDING,
         "attempt_in_progress"),
    Case("past the window an attempt still created never completed: the declined one next to it fails the order",
         order(S.PENDING), poll(failed("pay_1"), pay("pay_2", RS.CREATED)), AFTER_TIMEOUT, S.FAILED, "declined"),
    Case("an untouched PayGlocal page (CREATED forever) past the window abandons the order: no_attempt",
         order(S.PENDING), poll(pay("pay_1", RS.CREATED)), AFTER_TIMEOUT, S.ABANDONED, "no_attempt"),
    Case("an attempt with an unknown status blocks the timeout",
         order(S.PENDING), poll(pay("pay_1", RS.UNKNOWN)), AFTER_TIMEOUT, S.PENDING, "attempt_in_progress"),
    Case("an unknown status alone never marks a created order failed: it is pending",
         order(S.CREATED), webhook(pay("pay_1", RS.UNKNOWN)), AFTER_TIMEOUT, S.PENDING, "attempt_in_progress"),
    Case("a declined webhook long after the timeout is incomplete evidence: pending, never failed",
         order(S.CREATED), webhook(failed()), AFTER_TIMEOUT, S.PENDING, "attempt_failed"),
    Case("an empty incomplete recheck long after the timeout leaves a created order created",
         order(S.CREATED), recheck(complete=False), AFTER_TIMEOUT, S.CREATED, "awaiting_payment"),
    Case("a complete poll before the timeout with no payments leaves a created order created",
         order(S.CREATED), poll(), BEFORE_TIMEOUT, S.CREATED, "awaiting_payment"),
    Case("a checkout callback without a payment shows an attempt: a created order becomes pending",
         order(S.CREATED), callback(), BEFORE_TIMEOUT, S.PENDING, "awaiting_payment"),
    Case("a complete poll with no payments does not move a failed order",
         order(S.FAILED), poll(), AFTER_TIMEOUT, S.FAILED, "still_failed"),
    Case("a complete poll with declined attempts does not move an abandoned order",
         order(S.ABANDONED), poll(failed()), AFTER_TIMEOUT, S.ABANDONED, "still_abandoned"),
    # --- already paid ----------------------------------------------------------------------------------
    Case("the granted payment seen again on a paid order changes nothing and grants nothing",
         order(S.PAID, granted="pay_1"), webhook(captured()), AFTER_TIMEOUT, S.PAID, "already_paid"),
    Case("a complete poll showing the granted payment and old declines on a paid order changes nothing",
         order(S.PAID, granted="pay_1"), poll(failed("pay_0"), captured()), AFTER_TIMEOUT, S.PAID, "already_paid"),
    Case("a second captured payment on a paid order is flagged and refunded (the default policy), not granted",
         order(S.PAID, granted="pay_1"), webhook(captured("pay_2")), AFTER_TIMEOUT, S.PAID,
         "duplicate_payment_refunded", flagged=("pay_2",)),
    Case("the granted payment refunded after credit leaves the order paid (the refund's lifecycle reverses)",
         order(S.PAID, granted="pay_1"), webhook(pay("pay_1", RS.REFUNDED, refunded=AMOUNT)), AFTER_TIMEOUT,
         S.PAID, "already_paid"),
    Case("the granted payment partly refunded after credit leaves it paid too",
         order(S.PAID, granted="pay_1"), poll(pay("pay_1", RS.REFUNDED, refunded=1)), AFTER_TIMEOUT,
         S.PAID, "already_paid"),
    Case("a refunded duplicate on a paid order leaves it paid",
         order(S.PAID, granted="pay_1"), poll(captured("pay_1"), pay("pay_2", RS.REFUNDED, refunded=AMOUNT)),
         AFTER_TIMEOUT, S.PAID, "already_paid"),
    Case("an authorised or failed extra attempt on a paid order changes nothing",
         order(S.PAID, granted="pay_1"), poll(captured(), authorized("pay_2"), failed("pay_3")), AFTER_TIMEOUT,
         S.PAID, "already_paid"),
    Case("a captured payment already flagged for review is not flagged again on a paid order",
         order(S.PAID, granted="pay_1", flagged=frozenset({"pay_2"})), webhook(captured("pay_2")), AFTER_TIMEOUT,
         S.PAID, "already_paid"),
    # --- the gateway does not know the order ----------------------------------------------------------------
    Case("a created order the gateway does not know goes to needs_review (unknown_at_gateway)",
         order(S.CREATED), MISSING, AFTER_TIMEOUT, S.NEEDS_REVIEW, "unknown_at_gateway"),
    Case("a pending order the gateway does not know goes to needs_review, not abandoned",
         order(S.PENDING), MISSING, BEFORE_TIMEOUT, S.NEEDS_REVIEW, "unknown_at_gateway"),
    Case("an abandoned order the gateway does not know goes to needs_review",
         order(S.ABANDONED), MISSING, AFTER_TIMEOUT, S.NEEDS_REVIEW, "unknown_at_gateway"),
    Case("evidence that both says the order is missing and shows a capture grants nothing and asks for review",
         order(S.PENDING), Evidence(Source.POLL, (captured(),), order_missing=True, complete=True), BEFORE_TIMEOUT,
         S.NEEDS_REVIEW, "unknown_at_gateway"),
    # --- needs_review is absorbing ----------------------------------------------------------------------
    Case("needs_review absorbs a captured matching payment: no grant, no move",
         order(S.NEEDS_REVIEW), webhook(captured()), AFTER_TIMEOUT, S.NEEDS_REVIEW, "awaiting_review"),
    Case("needs_review absorbs an authorisation even with manual capture: nothing is captured",
         order(S.NEEDS_REVIEW, manual_capture=True), webhook(authorized()), AFTER_TIMEOUT, S.NEEDS_REVIEW,
         "awaiting_review"),
    Case("needs_review absorbs a complete poll after the timeout with no payments",
         order(S.NEEDS_REVIEW), poll(), AFTER_TIMEOUT, S.NEEDS_REVIEW, "awaiting_review"),
    Case("needs_review absorbs an order-missing answer",
         order(S.NEEDS_REVIEW), MISSING, AFTER_TIMEOUT, S.NEEDS_REVIEW, "awaiting_review"),
    Case("needs_review on a credited order absorbs a refund and a second capture without flagging more",
         order(S.NEEDS_REVIEW, granted="pay_1"), poll(pay("pay_1", RS.REFUNDED, refunded=AMOUNT), captured("pay_2")),
         AFTER_TIMEOUT, S.NEEDS_REVIEW, "awaiting_review"),
    # --- payments for another gateway order are ignored ------------------------------------------------
    Case("a captured payment for another gateway order is ignored: the created order stays created",
         order(S.CREATED), webhook(captured(goid=OTHER_GOID)), BEFORE_TIMEOUT, S.CREATED, "awaiting_payment"),
    Case("a captured payment for another gateway order does not trouble a paid order",
         order(S.PAID, granted="pay_1"), webhook(captured("pay_2", goid=OTHER_GOID)), AFTER_TIMEOUT, S.PAID,
         "already_paid"),
    Case("a refund on another gateway order's payment with the granted id does not trouble a paid order",
         order(S.PAID, granted="pay_1"), webhook(pay("pay_1", RS.REFUNDED, refunded=AMOUNT, goid=OTHER_GOID)),
         AFTER_TIMEOUT, S.PAID, "already_paid"),
    Case("an in-flight attempt on another gateway order does not block this order's timeout",
         order(S.PENDING), poll(pay("pay_9", RS.CREATED, goid=OTHER_GOID)), AFTER_TIMEOUT, S.ABANDONED,
         "no_attempt"),
    Case("a mismatching capture on another gateway order does not send this order to review",
         order(S.PENDING), poll(captured("pay_9", amount=1, goid=OTHER_GOID), captured()), BEFORE_TIMEOUT, S.PAID,
         "captured", grant="pay_1"),
    Case("an authorisation on another gateway order is not captured for this one",
         order(S.PENDING, manual_capture=True), webhook(authorized(goid=OTHER_GOID)), BEFORE_TIMEOUT, S.PENDING,
         "awaiting_payment"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_decide(case: Case) -> None:
    decision = decide(case.order, case.evidence, now=case.now, policy=POLICY)

    assert decision.from_state == case.order.state
    assert (decision.to_state, decision.reason) == (case.to, case.reason)
    assert (decision.grant.gateway_payment_id if decision.grant else None) == case.grant
    assert tuple(p.gateway_payment_id for p in decision.capture) == case.capture
    assert sorted(p.gateway_payment_id for p in decision.flagged) == sorted(case.flagged)
    assert decision.changed == (case.to != case.order.state)
    if decision.grant is not None:
        assert decision.grant.status == RS.CAPTURED
        assert (decision.grant.amount_minor, decision.grant.currency) == (AMOUNT, CURRENCY)
    for payment in decision.capture:
        assert payment.status == RS.AUTHORIZED

    after = evolve(case.order, decision)

    assert after.state == case.to
    assert after.granted_payment_id == (case.grant or case.order.granted_payment_id)
    assert after.flagged_payment_ids == case.order.flagged_payment_ids | set(case.flagged)
    assert (after.order_id, after.amount_minor, after.currency, after.gateway_order_id) == (
        case.order.order_id, case.order.amount_minor, case.order.currency, case.order.gateway_order_id)


def test_an_authorisation_left_for_auto_capture_is_checked_within_the_grace() -> None:
    waiting = decide(order(S.CREATED), webhook(authorized(created=FRESH)), now=BEFORE_TIMEOUT, policy=POLICY)
    assert waiting.capture == () and waiting.check_by == BEFORE_TIMEOUT + POLICY.auto_capture_grace
    late = decide(order(S.ABANDONED), webhook(authorized(created=FRESH)), now=BEFORE_TIMEOUT, policy=POLICY)
    assert [p.gateway_payment_id for p in late.capture] == ["pay_1"]  # an abandoned order's is late: captured now


def test_decide_flags_the_same_payment_whatever_the_order_of_payments_in_the_evidence() -> None:
    forwards = decide(order(S.PENDING), poll(captured("pay_1"), captured("pay_2")), now=BEFORE_TIMEOUT, policy=POLICY)
    backwards = decide(order(S.PENDING), poll(captured("pay_2"), captured("pay_1")), now=BEFORE_TIMEOUT, policy=POLICY)
    assert forwards == backwards
    assert forwards.grant is None and [p.gateway_payment_id for p in forwards.flagged] == ["pay_2"]


def test_the_window_closes_abandon_after_creation_or_after_the_latest_attempt() -> None:
    assert window_closes_at(order(), POLICY) == T0 + timedelta(minutes=30)
    assert window_closes_at(order(last_attempt=T0 + timedelta(minutes=7)), POLICY) == T0 + timedelta(minutes=37)
    assert window_closes_at(order(last_attempt=T0 - timedelta(minutes=7)), POLICY) == T0 + timedelta(minutes=30)
    assert window_closes_at(order(), Policy(abandon_after=timedelta(minutes=5))) == T0 + timedelta(minutes=5)


def test_the_late_payment_horizon_counts_from_creation_only() -> None:
    assert horizon_at(order(), POLICY) == T0 + timedelta(days=5)
    assert horizon_at(order(last_attempt=T0 + timedelta(days=1)), POLICY) == T0 + timedelta(days=5)
    assert horizon_at(order(), Policy(late_payment_horizon=timedelta(hours=1))) == T0 + timedelta(hours=1)


def test_a_shorter_policy_window_abandons_sooner() -> None:
    short = Policy(abandon_after=timedelta(minutes=1))
    at = T0 + timedelta(minutes=2)
    assert decide(order(S.CREATED), poll(), now=at, policy=short).to_state == S.ABANDONED
    assert decide(order(S.CREATED), poll(), now=at, policy=POLICY).to_state == S.CREATED


# --- evolve ------------------------------------------------------------------------------------------------

FORBIDDEN_MOVES = [
    pytest.param(S.PENDING, S.CREATED, id="a pending order cannot go back to created"),
    pytest.param(S.PAID, S.CREATED, id="a paid order cannot go back to created"),
    pytest.param(S.PAID, S.PENDING, id="a paid order cannot go back to pending"),
    pytest.param(S.PAID, S.FAILED, id="a paid order cannot become failed"),
    pytest.param(S.PAID, S.ABANDONED, id="a paid order cannot become abandoned"),
    pytest.param(S.FAILED, S.PENDING, id="a failed order cannot reopen as pending"),
    pytest.param(S.FAILED, S.ABANDONED, id="a failed order cannot become abandoned"),
    pytest.param(S.ABANDONED, S.FAILED, id="an abandoned order cannot become failed"),
    pytest.param(S.ABANDONED, S.CREATED, id="an abandoned order cannot reopen as created"),
    pytest.param(S.NEEDS_REVIEW, S.FAILED, id="needs_review cannot be left for failed"),
    pytest.param(S.CLOSED, S.PAID, id="a closed order cannot be paid without a person"),
    pytest.param(S.NEEDS_REVIEW, S.ABANDONED, id="needs_review cannot be left for abandoned by the machine"),
]


@pytest.mark.parametrize(("from_state", "to_state"), FORBIDDEN_MOVES)
def test_evolve_raises_for_a_forbidden_move(from_state: OrderState, to_state: OrderState) -> None:
    before = order(from_state, granted="pay_1" if from_state == S.PAID else None)
    with pytest.raises(IllegalTransition) as raised:
        evolve(before, Decision(from_state, to_state, "test"))
    assert (raised.value.from_state, raised.value.to_state) == (from_state, to_state)
    assert str(from_state) in str(raised.value) and str(to_state) in str(raised.value)


@pytest.mark.parametrize(("to_state", "grant_id"), [
    pytest.param(S.NEEDS_REVIEW, "pay_2", id="a paid order cannot be granted a second, different payment"),
    pytest.param(S.NEEDS_REVIEW, "pay_1", id="a paid order cannot be granted its own payment a second time"),
    pytest.param(S.PAID, "pay_2", id="a paid order staying paid cannot receive a second grant"),
])
def test_evolve_raises_for_a_second_grant(to_state: OrderState, grant_id: str) -> None:
    with pytest.raises(IllegalTransition):
        evolve(order(S.PAID, granted="pay_1"), Decision(S.PAID, to_state, "test", grant=captured(grant_id)))


def test_evolve_raises_for_a_second_grant_on_a_reviewed_credited_order() -> None:
    with pytest.raises(IllegalTransition):
        evolve(order(S.NEEDS_REVIEW, granted="pay_1"), Decision(S.NEEDS_REVIEW, S.NEEDS_REVIEW, "x",
                                                                  grant=captured("pay_2")))


def test_evolve_raises_for_a_grant_on_the_way_into_review() -> None:
    with pytest.raises(IllegalTransition):
        evolve(order(S.PENDING), Decision(S.PENDING, S.NEEDS_REVIEW, "second_captured_payment",
                                          grant=captured("pay_1"), flagged=(captured("pay_2"),)))


def test_evolve_records_the_grant_and_accumulates_flags_without_touching_the_input() -> None:
    before = order(S.PENDING, flagged=frozenset({"pay_0"}))
    decision = Decision(S.PENDING, S.PAID, "captured", grant=captured("pay_1"), flagged=(captured("pay_2"),))
    after = evolve(before, decision)
    assert after.state == S.PAID
    assert after.granted_payment_id == "pay_1"
    assert after.flagged_payment_ids == {"pay_0", "pay_2"}
    assert before.state == S.PENDING and before.granted_payment_id is None and before.flagged_payment_ids == {"pay_0"}


def test_evolve_keeps_the_earlier_grant_when_the_decision_grants_nothing() -> None:
    after = evolve(order(S.PAID, granted="pay_1"), Decision(S.PAID, S.NEEDS_REVIEW, "refunded_after_credit"))
    assert after.granted_payment_id == "pay_1"


# --- the transition table ---------------------------------------------------------------------------------

#: The lifecycle drawn in order_state's docstring, written out independently of ALLOWED.
EXPECTED_MOVES = {
    (S.CREATED, S.PENDING), (S.CREATED, S.PAID), (S.CREATED, S.FAILED), (S.CREATED, S.ABANDONED),
    (S.CREATED, S.NEEDS_REVIEW),
    (S.PENDING, S.PAID), (S.PENDING, S.FAILED), (S.PENDING, S.ABANDONED), (S.PENDING, S.NEEDS_REVIEW),
    (S.FAILED, S.PAID), (S.FAILED, S.NEEDS_REVIEW),
    (S.ABANDONED, S.PAID), (S.ABANDONED, S.NEEDS_REVIEW),
    (S.PAID, S.NEEDS_REVIEW),
    (S.NEEDS_REVIEW, S.PAID), (S.NEEDS_REVIEW, S.CLOSED),  # support decisions only (decide_review)
    (S.CLOSED, S.NEEDS_REVIEW),
}


def test_allowed_is_exactly_the_documented_lifecycle() -> None:
    assert set(ALLOWED) == set(OrderState)
    assert {(a, b) for a, targets in ALLOWED.items() for b in targets} == EXPECTED_MOVES


@pytest.mark.parametrize(("from_state", "to_state"), list(product(OrderState, OrderState)),
                         ids=[f"{a.value} to {b.value}" for a, b in product(OrderState, OrderState)])
def test_check_transition_follows_allowed_for_every_pair(from_state: OrderState, to_state: OrderState) -> None:
    permitted = from_state == to_state or to_state in ALLOWED[from_state]
    assert permitted == ((from_state, to_state) in EXPECTED_MOVES or from_state == to_state)
    if permitted:
        check_transition(from_state, to_state)
    else:
        with pytest.raises(IllegalTransition):
            check_transition(from_state, to_state)


# --- the freshest status wins (stale and replayed snapshots) ------------------------------------------------

@pytest.mark.parametrize(("known", "new", "wins"), [
    pytest.param(pay("p", RS.REFUNDED, refunded=AMOUNT), captured("p"), "known", id="refunded beats a stale captured"),
    pytest.param(captured("p"), authorized("p"), "known", id="captured beats a stale authorised"),
    pytest.param(authorized("p"), failed("p"), "known", id="authorised beats a stale failed"),
    pytest.param(failed("p"), captured("p"), "new", id="failed may still become captured (late authorisation)"),
    pytest.param(captured("p"), pay("p", RS.UNKNOWN), "known", id="an unknown status never undoes what we know"),
    pytest.param(pay("p", RS.REFUNDED, refunded=10), pay("p", RS.REFUNDED, refunded=20), "new",
                 id="a larger refund beats a smaller one"),
    pytest.param(pay("p", RS.REFUNDED, refunded=20), pay("p", RS.REFUNDED, refunded=10), "known",
                 id="a smaller refund never undoes a larger one"),
])
def test_freshest_keeps_the_most_advanced_snapshot(known: RemotePayment, new: RemotePayment, wins: str) -> None:
    assert freshest(known, new) is (known if wins == "known" else new)
    assert freshest(None, new) is new


def test_a_stale_captured_snapshot_after_the_refund_we_know_grants_nothing() -> None:
    """Defect 1: refund.processed applied first, then payment.captured delivered late (or replayed with a
    fresh event id): the service decides on the freshest status of each payment, so nothing is granted."""
    known = pay("pay_1", RS.REFUNDED, refunded=AMOUNT)
    merged = webhook(freshest(known, captured("pay_1")))
    decision = decide(order(S.ABANDONED), merged, now=AFTER_TIMEOUT, policy=POLICY)
    assert decision.grant is None and decision.to_state == S.ABANDONED


# --- credited orders and closed orders ----------------------------------------------------------------------

@pytest.mark.parametrize("state", [S.PAID, S.FAILED, S.ABANDONED, S.CLOSED], ids=lambda s: f"credited and {s.value}")
@pytest.mark.parametrize("evidence", [
    pytest.param(poll(captured("pay_1")), id="its own capture again"),
    pytest.param(poll(captured("pay_1"), captured("pay_2")), id="a second capture"),
    pytest.param(poll(pay("pay_1", RS.REFUNDED, refunded=AMOUNT)), id="its payment refunded"),
    pytest.param(webhook(authorized("pay_3")), id="a new authorisation"),
    pytest.param(MISSING, id="the gateway not knowing the order"),
])
def test_a_credited_order_is_never_granted_again_and_never_raises(state: OrderState, evidence: Evidence) -> None:
    """Defect 2: an order credited once (even one a support decision left in another state before this
    fix) takes any new evidence without a grant, a capture or an illegal move."""
    before = order(state, granted="pay_1")
    decision = decide(before, evidence, now=AFTER_TIMEOUT, policy=POLICY)
    assert decision.grant is None and decision.capture == ()
    assert evolve(before, decision).granted_payment_id == "pay_1"


def test_a_closed_order_sends_new_money_to_review_and_ignores_what_support_already_saw() -> None:
    seen = order(S.CLOSED, flagged=frozenset({"pay_1"}))
    assert decide(seen, poll(captured("pay_1", amount=1)), now=AFTER_TIMEOUT, policy=POLICY).to_state == S.CLOSED
    later = decide(seen, webhook(captured("pay_2")), now=AFTER_TIMEOUT, policy=POLICY)
    assert (later.to_state, later.reason, later.grant) == (S.NEEDS_REVIEW, "money_after_close", None)
    assert [p.gateway_payment_id for p in later.flagged] == ["pay_2"]


def test_a_second_payment_goes_to_review_under_the_review_policy_and_is_refunded_under_the_refund_one() -> None:
    second = webhook(captured("pay_2"))
    reviewed = decide(order(S.PAID, granted="pay_1"), second, now=AFTER_TIMEOUT,
                      policy=replace(POLICY, duplicate_payment="review"))
    assert (reviewed.to_state, reviewed.reason, reviewed.refund) == (S.NEEDS_REVIEW, "second_captured_payment", ())
    refunded = decide(order(S.PAID, granted="pay_1"), second, now=AFTER_TIMEOUT, policy=POLICY)
    assert [p.gateway_payment_id for p in refunded.refund] == ["pay_2"] and refunded.grant is None
    flagged = order(S.PAID, granted="pay_1", flagged=frozenset({"pay_2"}))
    assert decide(flagged, second, now=AFTER_TIMEOUT, policy=POLICY).refund == ()  # refunded once, not per event


# --- support decisions --------------------------------------------------------------------------------------

REVIEW_CASES = [
    pytest.param(order(S.NEEDS_REVIEW), "credit", (captured("pay_2", amount=1), captured("pay_1")),
                 S.PAID, "pay_1", (), id="credit grants the matching capture first"),
    pytest.param(order(S.NEEDS_REVIEW), "credit", (captured("pay_2", amount=1),), S.PAID, "pay_2", (),
                 id="credit grants a mismatching capture when it is the only one (support checked it)"),
    pytest.param(order(S.NEEDS_REVIEW), "close", (captured("pay_1", amount=1),), S.CLOSED, None, (),
                 id="close ends an uncredited order without credit"),
    pytest.param(order(S.NEEDS_REVIEW), "refund", (captured("pay_1", amount=1), authorized("pay_2"),
                                                   failed("pay_3")), S.CLOSED, None, ("pay_1", "pay_2"),
                 id="refund closes it and marks the money held for a refund"),
    pytest.param(order(S.NEEDS_REVIEW, granted="pay_1"), "refund", (captured("pay_1"), captured("pay_2")),
                 S.PAID, None, ("pay_2",), id="refund on a credited order marks only the extra payment"),
    pytest.param(order(S.NEEDS_REVIEW, granted="pay_1"), "close", (pay("pay_1", RS.REFUNDED, refunded=AMOUNT),),
                 S.PAID, None, (), id="close on a credited order keeps its credit: it is paid"),
    pytest.param(order(S.NEEDS_REVIEW, granted="pay_1"), "credit", (captured("pay_1"), captured("pay_2")),
                 S.PAID, None, (), id="credit on a credited order grants nothing more"),
]


@pytest.mark.parametrize(("before", "choice", "payments", "to", "grant", "refund"), REVIEW_CASES)
def test_decide_review(before, choice, payments, to, grant, refund) -> None:
    move = decide_review(before, choice, payments)
    assert (move.to_state, move.reason) == (to, f"review_{choice}")
    assert (move.grant.gateway_payment_id if move.grant else None) == grant
    assert tuple(p.gateway_payment_id for p in move.flagged) == refund
    evolve(before, move)  # the state machine's table accepts every support move


def test_decide_review_refuses_orders_not_in_review_and_credit_without_money() -> None:
    with pytest.raises(IllegalTransition):
        decide_review(order(S.PAID, granted="pay_1"), "close", ())
    with pytest.raises(ValueError, match="no captured payment"):
        decide_review(order(S.NEEDS_REVIEW), "credit", (authorized("pay_1"),))
    with pytest.raises(ValueError, match="decision must be one of"):
        decide_review(order(S.NEEDS_REVIEW), "approve", ())
