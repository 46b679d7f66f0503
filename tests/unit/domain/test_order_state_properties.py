"""Properties of the order state machine over random histories.

An order is generated, then a random sequence of evidence (random sources, payments drawn from a
small id pool so the same payment turns up again with other statuses, amounts and currencies that
are sometimes wrong, payments for other gateway orders, complete polls, rare order-missing answers)
at random, forward-moving times. Each item is folded through ``decide`` and ``evolve`` exactly as
the service layer does, and the invariants are checked on the whole trace.

Within one piece of evidence a payment id appears at most once: that is what the inputs produce
(a webhook or callback carries one payment, a poll lists each attempt once).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from gateways.port import FailureKind, RemotePayment, RemoteStatus
from worker.domain.order_state import (
    ALLOWED,
    IN_FLIGHT_AFTER_WINDOW,
    OPEN_STATES,
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
    matches,
    window_closes_at,
)

S = OrderState
RS = RemoteStatus
POLICY = Policy()
GOID = "order_THIS"
OTHER_GOID = "order_OTHER"
POOL = ("pay_a", "pay_b", "pay_c", "pay_d")
CURRENCIES = ("INR", "USD", "JPY", "KWD")
PROPERTY_SETTINGS = settings(max_examples=300, deadline=None)


# --- strategies --------------------------------------------------------------------------------------------

def orders(states: st.SearchStrategy[OrderState] = st.just(S.CREATED)) -> st.SearchStrategy[OrderSnapshot]:
    return st.builds(
        OrderSnapshot,
        order_id=st.just("ord_prop"),
        state=states,
        plan=st.sampled_from([Plan.PAYG, Plan.PRO, Plan.CUSTOM]),
        amount_minor=st.integers(min_value=1, max_value=10**9),
        currency=st.sampled_from(CURRENCIES),
        gateway_order_id=st.just(GOID),
        created_at=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2027, 1, 1),
                                timezones=st.just(UTC)),
        manual_capture=st.booleans(),
    )


@st.composite
def payments(draw, order: OrderSnapshot, statuses=tuple(RemoteStatus), *, allow_wrong_money: bool = True
             ) -> RemotePayment:
    status = draw(st.sampled_from(statuses + ((RS.FAILED,) * 2 if RS.FAILED in statuses else ())))
    amount, currency = order.amount_minor, order.currency
    if allow_wrong_money and draw(st.integers(0, 4)) == 0:  # ~20 %: wrong amount
        amount = draw(st.integers(min_value=1, max_value=2 * order.amount_minor + 10).filter(lambda a: a != amount))
    if allow_wrong_money and draw(st.integers(0, 9)) == 0:  # ~10 %: wrong currency
        currency = draw(st.sampled_from([c for c in CURRENCIES if c != order.currency]))
    goid = draw(st.sampled_from([GOID] * 8 + [None, OTHER_GOID]))
    refunded = draw(st.integers(min_value=1, max_value=amount)) if status == RS.REFUNDED else 0
    kinds = (None, *FailureKind, FailureKind.DECLINED, FailureKind.DECLINED, FailureKind.DECLINED)
    kind = draw(st.sampled_from(kinds)) if status == RS.FAILED else None  # mostly declined, so orders fail
    return RemotePayment(gateway_payment_id=draw(st.sampled_from(POOL)), gateway_order_id=goid, status=status,
                         amount_minor=amount, currency=currency, amount_refunded_minor=refunded, failure_kind=kind,
                         wire_status=status.value)


@st.composite
def evidence(draw, order: OrderSnapshot, *, clean: bool = False) -> Evidence:
    """Random evidence; ``clean`` leaves out wrong money, refunds and order-missing answers."""
    statuses = tuple(s for s in RemoteStatus if s != RS.REFUNDED) if clean else tuple(RemoteStatus)
    payment = payments(order, statuses, allow_wrong_money=not clean)
    return Evidence(
        source=draw(st.sampled_from(Source)),
        payments=tuple(draw(st.lists(payment, max_size=3, unique_by=lambda p: p.gateway_payment_id))),
        order_missing=not clean and draw(st.integers(0, 24)) == 0,  # rare
        complete=draw(st.booleans()),
    )


ADVANCE = st.one_of(st.integers(0, 25).map(lambda m: timedelta(minutes=m)),
                    st.integers(1, 10).map(lambda d: timedelta(days=d)))


@st.composite
def histories(draw, states: st.SearchStrategy[OrderState] = st.just(S.CREATED), max_steps: int = 12,
              clean: bool = False) -> tuple[OrderSnapshot, list[tuple[Evidence, datetime]]]:
    order = draw(orders(states))
    now = order.created_at + timedelta(minutes=draw(st.integers(0, 45)))
    steps = []
    for item in draw(st.lists(st.tuples(evidence(order, clean=clean), ADVANCE), max_size=max_steps)):
        item_evidence, advance = item
        steps.append((item_evidence, now))
        now += advance
    return order, steps


# --- folding -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    before: OrderSnapshot
    evidence: Evidence
    now: datetime
    decision: Decision
    after: OrderSnapshot


def fold(order: OrderSnapshot, steps: list[tuple[Evidence, datetime]]) -> list[Step]:
    """Apply each item as the service layer would; evolve raises IllegalTransition on a forbidden move.

    Like ``worker.services.apply.apply_evidence``, the first sight of a payment id of this order
    sets ``last_attempt_at`` to now before deciding, so the payment window restarts.
    """
    trace = []
    known: dict[str, RemotePayment] = {}
    for item, now in steps:
        fresh = {p.gateway_payment_id for p in ours(order, item)} - set(known)
        if fresh:
            order = replace(order, last_attempt_at=now)
        for payment in ours(order, item):  # like apply.with_known_payments: the freshest snapshot of each
            known[payment.gateway_payment_id] = freshest(known.get(payment.gateway_payment_id), payment)
        item = replace(item, payments=tuple(known.values()))
        decision = decide(order, item, now=now, policy=POLICY)
        after = evolve(order, decision)
        trace.append(Step(order, item, now, decision, after))
        order = after
    return trace


def final_state(order: OrderSnapshot, trace: list[Step]) -> OrderState:
    return trace[-1].after.state if trace else order.state


def ours(order: OrderSnapshot, item: Evidence) -> list[RemotePayment]:
    return [p for p in item.payments if p.gateway_order_id in (None, order.gateway_order_id)]


def grants(trace: list[Step]) -> list[RemotePayment]:
    return [step.decision.grant for step in trace if step.decision.grant is not None]


# --- invariants --------------------------------------------------------------------------------------------

@PROPERTY_SETTINGS
@given(histories())
def test_every_transition_decide_makes_is_allowed(history) -> None:
    order, steps = history
    for step in fold(order, steps):  # (1) evolve never raises on decide's output
        assert step.decision.from_state == step.before.state
        assert step.decision.to_state == step.before.state or step.decision.to_state in ALLOWED[step.before.state]
        assert step.after.state == step.decision.to_state


@PROPERTY_SETTINGS
@given(histories())
def test_at_most_one_grant_and_it_is_a_capture_of_exactly_this_orders_money(history) -> None:
    order, steps = history
    trace = fold(order, steps)
    granted = grants(trace)
    assert len(granted) <= 1  # (2)
    for payment in granted:
        assert payment.status == RS.CAPTURED
        assert (payment.amount_minor, payment.currency) == (order.amount_minor, order.currency)
        assert payment.gateway_order_id in (None, GOID)
    for step in trace:
        flagged_now = {p.gateway_payment_id for p in step.decision.flagged}
        if step.decision.grant is not None:
            assert step.decision.to_state in (S.PAID, S.NEEDS_REVIEW)
            assert step.before.granted_payment_id is None
            assert step.decision.grant.gateway_payment_id not in flagged_now
        if step.decision.reason == "second_captured_payment":
            assert step.after.granted_payment_id not in flagged_now
    if trace:
        assert trace[-1].after.granted_payment_id == (granted[0].gateway_payment_id if granted else None)


@PROPERTY_SETTINGS
@given(histories())
def test_once_paid_the_order_is_only_ever_paid_or_needs_review(history) -> None:
    order, steps = history
    seen_paid = False
    for step in fold(order, steps):  # (3)
        seen_paid = seen_paid or step.after.state == S.PAID
        if seen_paid:
            assert step.after.state in (S.PAID, S.NEEDS_REVIEW)
        if step.after.state == S.PAID:
            assert step.after.granted_payment_id is not None


@PROPERTY_SETTINGS
@given(histories())
def test_needs_review_is_absorbing(history) -> None:
    order, steps = history
    for step in fold(order, steps):  # (4)
        if step.before.state == S.NEEDS_REVIEW:
            assert step.decision.to_state == S.NEEDS_REVIEW
            assert step.decision.grant is None
            assert step.decision.capture == ()
            assert step.decision.flagged == ()
            assert step.after == step.before


@PROPERTY_SETTINGS
@given(st.one_of(histories(), histories(clean=True)))
def test_a_clean_matching_capture_always_ends_paid_with_exactly_one_grant(history) -> None:
    """(5) Money taken at the right amount, with nothing odd around it, is credited exactly once.

    With two different captured payments the order is paid once and stays paid, the extra capture(s)
    flagged and refunded (the default duplicate-payment policy). Half the histories are drawn clean so
    the premise holds often.
    """
    order, steps = history
    relevant = [p for item, _ in steps for p in ours(order, item)]
    captured_ids = {p.gateway_payment_id for p in relevant if p.status == RS.CAPTURED and matches(order, p)}
    wrong_money = any(p.status in (RS.CAPTURED, RS.AUTHORIZED) and not matches(order, p) for p in relevant)
    refund = any(p.status == RS.REFUNDED for p in relevant)
    missing = any(item.order_missing for item, _ in steps)
    if not captured_ids or wrong_money or refund or missing:
        return
    trace = fold(order, steps)
    granted = grants(trace)
    first = next(step for step in trace if any(p.status == RS.CAPTURED and matches(order, p)
                                               for p in ours(order, step.evidence)))
    if sum(p.status == RS.CAPTURED and matches(order, p) for p in ours(order, first.evidence)) > 1:
        # two captures seen at once before any credit: a person decides, no credit meanwhile
        assert not granted and final_state(order, trace) == S.NEEDS_REVIEW
        return
    assert len(granted) == 1
    assert granted[0].gateway_payment_id in captured_ids
    assert final_state(order, trace) == S.PAID
    refunded = {p.gateway_payment_id for step in trace for p in step.decision.refund}
    assert refunded == captured_ids - {granted[0].gateway_payment_id}  # every duplicate refunded, never the grant
    if len(captured_ids) > 1:
        flagged = trace[-1].after.flagged_payment_ids
        assert flagged and flagged <= captured_ids - {granted[0].gateway_payment_id}


@PROPERTY_SETTINGS
@given(histories())
def test_feeding_the_same_evidence_twice_changes_nothing_the_second_time(history) -> None:
    order, steps = history
    for step in fold(order, steps):  # (6)
        again = decide(step.after, step.evidence, now=step.now, policy=POLICY)
        assert not again.changed, (step.decision, again)
        assert again.grant is None
        assert evolve(step.after, again).state == step.after.state


@PROPERTY_SETTINGS
@given(histories())
def test_captured_money_never_leaves_the_order_open_or_closed(history) -> None:
    """After evidence of money kept for this order, the order is paid or waits for a person."""
    order, steps = history
    for step in fold(order, steps):
        kept = [p for p in ours(order, step.evidence)
                if p.status == RS.CAPTURED or (p.status == RS.REFUNDED and p.amount_refunded_minor < p.amount_minor)]
        if kept or step.evidence.order_missing:
            assert step.after.state in (S.PAID, S.NEEDS_REVIEW)


@PROPERTY_SETTINGS
@given(histories())
def test_an_order_only_times_out_on_a_complete_view_past_the_window_with_nothing_in_flight(history) -> None:
    order, steps = history
    for step in fold(order, steps):
        if step.before.state in OPEN_STATES and step.after.state in (S.FAILED, S.ABANDONED):
            mine = ours(order, step.evidence)
            assert step.evidence.complete
            assert not step.evidence.order_missing
            assert step.now >= window_closes_at(step.before, POLICY) >= order.created_at + POLICY.abandon_after
            assert not any(p.status in IN_FLIGHT_AFTER_WINDOW for p in mine)
            assert not any(p.status == RS.CAPTURED for p in mine)
            if step.after.state == S.FAILED:  # failed means: attempts were made and every one was declined
                tried = [p for p in mine if p.status != RS.CREATED]  # (a still-created one was never completed)
                assert tried and all(p.status == RS.FAILED and p.failure_kind == FailureKind.DECLINED for p in tried)
        if step.after.state == S.CREATED:
            assert step.before.state == S.CREATED


@PROPERTY_SETTINGS
@given(histories())
def test_capture_is_only_requested_for_one_of_this_orders_matching_authorisations_when_unpaid(history) -> None:
    order, steps = history
    for step in fold(order, steps):
        assert len(step.decision.capture) <= 1
        for payment in step.decision.capture:
            assert step.before.granted_payment_id is None and step.before.state not in (S.PAID, S.CLOSED)
            assert payment.status == RS.AUTHORIZED
            assert matches(order, payment)
            assert payment in ours(order, step.evidence)
        if step.decision.capture:
            assert step.decision.grant is None
            assert step.after.state not in (S.PAID, S.NEEDS_REVIEW)


@PROPERTY_SETTINGS
@given(data=st.data(), history=histories(max_steps=6))
def test_the_order_of_payments_inside_one_evidence_does_not_matter(data, history) -> None:
    order, steps = history
    for step in fold(order, steps):
        shuffled = Evidence(step.evidence.source, tuple(data.draw(st.permutations(step.evidence.payments))),
                            order_missing=step.evidence.order_missing, complete=step.evidence.complete)
        other = decide(step.before, shuffled, now=step.now, policy=POLICY)
        assert (other.to_state, other.reason, other.grant) == (step.decision.to_state, step.decision.reason,
                                                               step.decision.grant)
        assert sorted(p.gateway_payment_id for p in other.capture) == sorted(
            p.gateway_payment_id for p in step.decision.capture)
        assert sorted(p.gateway_payment_id for p in other.flagged) == sorted(
            p.gateway_payment_id for p in step.decision.flagged)


# --- (7) permutations of clean webhook histories ---------------------------------------------------------

@st.composite
def clean_webhook_histories(draw):
    """Webhooks only, each with one payment of this order's exact money: captured, authorised or failed."""
    order = draw(orders(st.sampled_from([S.CREATED, S.PENDING, S.FAILED, S.ABANDONED])))
    payment = payments(order, (RS.CAPTURED, RS.AUTHORIZED, RS.FAILED), allow_wrong_money=False)
    items = [Evidence(Source.WEBHOOK, (p,)) for p in draw(st.lists(payment, max_size=7))]
    start = order.created_at + timedelta(minutes=draw(st.integers(0, 45)))
    nows = [start + timedelta(minutes=m) for m in sorted(draw(st.lists(st.integers(0, 10_000), min_size=len(items),
                                                                       max_size=len(items))))]
    return order, items, nows


@PROPERTY_SETTINGS
@given(data=st.data(), history=clean_webhook_histories())
def test_every_order_of_clean_webhooks_ends_in_the_same_state_with_the_same_grants(data, history) -> None:
    order, items, nows = history
    permuted = data.draw(st.permutations(items))
    original = fold(order, list(zip(items, nows, strict=True)))
    shuffled = fold(order, list(zip(permuted, nows, strict=True)))
    assert final_state(order, shuffled) == final_state(order, original)
    assert len(grants(shuffled)) == len(grants(original))
    captured = {p.gateway_payment_id for item in items for p in ours(order, item) if p.status == RS.CAPTURED}
    assert len(grants(original)) == (1 if captured else 0)
