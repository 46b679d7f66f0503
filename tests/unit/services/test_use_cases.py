"""Each use case over the unit of work, fast: SQLite and the in-memory gateway (see conftest)."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select

from db.models import InboxEvent, LedgerEntry, Order, OrderTransition, SupportAction
from gateways.errors import GatewayTransient
from gateways.port import RemoteStatus
from worker.domain.errors import GatewayUnavailable, UnknownOrder
from worker.domain.order_state import IllegalTransition
from worker.services import callback, inbox, intake, orders, poll, recheck, review
from worker.services.organisations import balance


def new_order(deps, *, credits: int = 5_000) -> Order:
    return orders.create_order(orders.PurchaseRequest("org-in", "admin-1", "payg", True, credits=credits),
                               deps=deps).order


def rows(deps, model, **where) -> list:
    with deps.sessions() as session:
        return list(session.execute(select(model).filter_by(**where)).scalars())


def state(deps, order_id: str) -> str:
    with deps.sessions() as session:
        return session.get(Order, order_id).state


@contextmanager
def transactions(deps):
    """Count the database transactions begun inside the block."""
    began: list[int] = []

    def on_begin(_connection) -> None:
        began.append(1)

    event.listen(deps.engine, "begin", on_begin)
    try:
        yield began
    finally:
        event.remove(deps.engine, "begin", on_begin)


def assert_transitions_explain_state(deps, order_id: str) -> None:
    """Every state an order is in was reached by a recorded transition, in order."""
    trail = sorted(rows(deps, OrderTransition, order_id=order_id), key=lambda t: t.id)
    current = "created"
    for transition in trail:
        assert transition.from_state == current, trail
        current = transition.to_state
    assert current == state(deps, order_id)


# --- unit of work -------------------------------------------------------------------------------------

def test_a_unit_of_work_rolls_back_unless_committed(deps):
    order = new_order(deps)
    with deps.unit() as uow:
        uow.order(order.id, lock=True).state_reason = "written, never committed"
        uow.audit("probe", requested_by="test", reason=None, outcome={}, order_id=order.id)
    with pytest.raises(RuntimeError), deps.unit() as uow:
        uow.audit("probe", requested_by="test", reason=None, outcome={}, order_id=order.id)
        raise RuntimeError("a use case failed half way")
    assert rows(deps, SupportAction) == [] and rows(deps, Order)[0].state_reason is None


def test_a_move_the_transition_table_forbids_writes_nothing(deps, fake):
    order = new_order(deps)
    payment = fake.pay(order.gateway_order_id)
    poll.reconcile_order(order.id, deps=deps)
    from worker.domain.order_state import decide_creation_failed

    with deps.unit() as uow, pytest.raises(IllegalTransition):
        paid = uow.order(order.id, lock=True)
        uow.move(paid, decide_creation_failed(uow.snapshot(paid)), source="create")
    assert state(deps, order.id) == "paid"
    assert rows(deps, LedgerEntry)[0].gateway_payment_id == payment.gateway_payment_id


# --- order creation ------------------------------------------------------------------------------------

def test_an_order_starts_in_the_initial_state_with_its_gateway_order(deps, fake):
    order = new_order(deps)
    assert (order.state, order.gateway_order_id) == ("created", next(iter(fake.orders)))
    assert order.next_check_at is not None  # the sweep finds it even if nothing else happens


def test_a_gateway_failure_at_creation_abandons_the_order_through_the_machine(deps, fake, monkeypatch):
    def down(**_kwargs):
        raise GatewayTransient("connection refused")

    monkeypatch.setattr(fake, "create_order", down)
    with pytest.raises(GatewayUnavailable) as raised:
        new_order(deps)
    [transition] = rows(deps, OrderTransition, order_id=raised.value.order_id)
    assert (transition.from_state, transition.to_state, transition.reason, transition.source) == (
        "created", "abandoned", "gateway_error", "create")
    assert rows(deps, Order)[0].next_check_at is None


# --- webhooks: intake, then processing --------------------------------------------------------------------

def test_a_webhook_is_stored_deduped_and_credits_once(deps, fake):
    order = new_order(deps)
    body, headers = fake.webhook(fake.pay(order.gateway_order_id), event_id="evt_1")
    first = intake.store_webhook("razorpay", body, headers, deps=deps)
    again = intake.store_webhook("razorpay", body, headers, deps=deps)
    assert (first.status, again.status, again.inbox_id) == ("accepted", "duplicate", first.inbox_id)
    inbox.process_inbox_event(first.inbox_id, deps=deps)
    assert inbox.process_inbox_event(first.inbox_id, deps=deps) is None  # processed: nothing happens twice
    assert state(deps, order.id) == "paid" and balance("org-in", deps=deps) == 5_000
    assert [r.status for r in rows(deps, InboxEvent)] == ["processed"]
    assert_transitions_explain_state(deps, order.id)


def test_a_forged_webhook_is_kept_with_the_reason_and_changes_nothing(deps, fake):
    order = new_order(deps)
    body, headers = fake.webhook(fake.pay(order.gateway_order_id))
    stored = intake.store_webhook("razorpay", body, {**headers, "x-fake-signature": "forged"}, deps=deps)
    [row] = rows(deps, InboxEvent)
    assert (stored.status, row.status, row.event_id) == ("rejected", "rejected", None)
    assert row.reason.startswith("bad_signature") and row.body == body
    assert state(deps, order.id) == "created" and balance("org-in", deps=deps) == 0


def test_a_webhook_of_the_wrong_media_type_is_refused_with_the_adapters_fact(deps, fake):
    order = new_order(deps)
    body, headers = fake.webhook(fake.pay(order.gateway_order_id))
    stored = intake.store_webhook("razorpay", body, {**headers, "content-type": "text/plain"}, deps=deps)
    assert stored.status == "rejected" and "expected application/json" in stored.reason


def test_a_fresh_authorisation_is_left_to_auto_capture_and_captured_by_a_check_if_it_was_not(deps, fake):
    order = new_order(deps)
    fresh = int(deps.clock.now().timestamp()) - 30
    body, headers = fake.webhook(fake.pay(order.gateway_order_id, RemoteStatus.AUTHORIZED, created_at=fresh),
                                 "payment.authorized")
    inbox.process_inbox_event(intake.store_webhook("razorpay", body, headers, deps=deps).inbox_id, deps=deps)
    assert (fake.captures, state(deps, order.id)) == ([], "pending")  # the gateway is capturing it
    assert rows(deps, Order)[0].next_check_at <= deps.clock.now() + deps.policy.auto_capture_grace
    deps.clock.advance(deps.policy.auto_capture_grace)
    poll.reconcile_order(order.id, deps=deps)  # it did not: we capture
    assert fake.captures and state(deps, order.id) == "paid" and balance("org-in", deps=deps) == 5_000


def test_an_authorised_payment_from_a_webhook_is_captured_then_credited(deps, fake):
    order = new_order(deps)
    body, headers = fake.webhook(fake.pay(order.gateway_order_id, RemoteStatus.AUTHORIZED), "payment.authorized")
    stored = intake.store_webhook("razorpay", body, headers, deps=deps)
    inbox.process_inbox_event(stored.inbox_id, deps=deps)
    assert fake.captures and state(deps, order.id) == "paid" and balance("org-in", deps=deps) == 5_000
    assert [r.status for r in rows(deps, InboxEvent)] == ["processed"]


# --- the checkout callback --------------------------------------------------------------------------------

def test_a_callback_fetches_its_payment_before_crediting(deps, fake):
    order = new_order(deps)
    payment = fake.pay(order.gateway_order_id)
    signature = fake.callback_signature(order.gateway_order_id, payment.gateway_payment_id)
    callback.verify_payment(order.id, payment.gateway_payment_id, signature, deps=deps)
    assert "fetch_payment" in fake.calls and state(deps, order.id) == "paid"
    assert callback.verify_payment(order.id, payment.gateway_payment_id, signature, deps=deps) is None  # duplicate
    assert balance("org-in", deps=deps) == 5_000


def test_a_callback_with_a_bad_signature_is_kept_and_credits_nothing(deps, fake):
    order = new_order(deps)
    payment = fake.pay(order.gateway_order_id)
    assert callback.verify_payment(order.id, payment.gateway_payment_id, "forged", deps=deps) is None
    [row] = rows(deps, InboxEvent)
    assert (row.kind, row.status) == ("callback", "rejected") and state(deps, order.id) == "created"


def test_a_callback_for_an_order_we_do_not_hold_is_refused(deps):
    with pytest.raises(UnknownOrder):
        intake.store_callback("ord_nope", "fake_pay_1", "x", deps=deps)


# --- polls ------------------------------------------------------------------------------------------------

def test_a_poll_credits_a_captured_payment_and_a_gateway_outage_leaves_the_order_for_later(deps, fake, monkeypatch):
    order = new_order(deps)
    fake.pay(order.gateway_order_id)

    def down(_gateway_order_id):
        raise GatewayTransient("503")

    with monkeypatch.context() as patched:
        patched.setattr(fake, "fetch_attempts", down)
        assert poll.reconcile_order(order.id, deps=deps) is None
    assert rows(deps, Order)[0].check_lease_until is None  # released: the next round may try again
    assert poll.reconcile_order(order.id, deps=deps).to_state.value == "paid"
    assert balance("org-in", deps=deps) == 5_000


def test_an_order_the_gateway_does_not_know_goes_to_review(deps, fake):
    order = new_order(deps)
    fake.orders.clear()  # we created it there, and now the gateway says it does not exist: a person looks
    deps.clock.advance(timedelta(hours=1))
    poll.reconcile_order(order.id, deps=deps)
    assert (state(deps, order.id), rows(deps, Order)[0].state_reason) == ("needs_review", "unknown_at_gateway")
    assert_transitions_explain_state(deps, order.id)


def test_a_poll_takes_two_transactions(deps, fake):
    order = new_order(deps)
    fake.pay(order.gateway_order_id)
    with transactions(deps) as began:
        poll.reconcile_order(order.id, deps=deps)
    assert len(began) == 2  # take the lease; decide and end the check


# --- support: recheck and review ----------------------------------------------------------------------------

def test_a_recheck_decides_audits_and_takes_two_transactions(deps, fake):
    order = new_order(deps)
    fake.pay(order.gateway_order_id)
    with transactions(deps) as began:
        outcome = recheck.recheck_order(order.id, "support:ann", reason="ticket 7", deps=deps)
    assert len(began) == 2  # take the lease; decide, end the check and audit together
    assert (outcome.from_state, outcome.state, outcome.reason) == ("created", "paid", "captured")
    [action] = rows(deps, SupportAction)
    assert (action.action, action.requested_by, action.outcome["state"]) == ("recheck", "support:ann", "paid")
    assert fake.calls.count("fetch_attempts") == 1


def test_a_recheck_takes_over_a_check_that_never_ends(deps, fake):
    order = new_order(deps)
    fake.pay(order.gateway_order_id)
    with deps.unit() as uow:  # a check whose worker died holding the lease
        uow.take_lease(uow.order(order.id, lock=True), lease_s=60)
        uow.commit()
    outcome = recheck.recheck_order(order.id, "support:ann", deps=deps, join_wait_s=0.2)
    assert (outcome.state, fake.calls.count("fetch_attempts")) == ("paid", 1)
    assert rows(deps, Order)[0].check_lease_until is None
    assert [a.action for a in rows(deps, SupportAction)] == ["recheck"]


def test_review_decisions_go_through_the_machine_and_are_audited(deps, fake):
    order = new_order(deps)
    fake.pay(order.gateway_order_id, amount_minor=1)  # paid the wrong amount: a person decides
    poll.reconcile_order(order.id, deps=deps)
    assert state(deps, order.id) == "needs_review"
    with pytest.raises(review.NotInReview):
        review.resolve_review(new_order(deps).id, "close", reason="not in review", requested_by="sam", deps=deps)
    done = review.resolve_review(order.id, "close", reason="customer paid 1 paisa", requested_by="sam", deps=deps)
    assert (done.state, done.granted) == ("closed", False) and balance("org-in", deps=deps) == 0
    [action] = rows(deps, SupportAction)
    assert (action.action, action.requested_by, action.reason) == ("review_close", "sam", "customer paid 1 paisa")
    assert_transitions_explain_state(deps, order.id)


def test_every_credit_has_one_ledger_row_whatever_delivers_it(deps, fake):
    order = new_order(deps)
    payment = fake.pay(order.gateway_order_id)
    body, headers = fake.webhook(payment)
    stored = intake.store_webhook("razorpay", body, headers, deps=deps)
    callback.verify_payment(order.id, payment.gateway_payment_id,
                            fake.callback_signature(order.gateway_order_id, payment.gateway_payment_id), deps=deps)
    inbox.process_inbox_event(stored.inbox_id, deps=deps)
    poll.reconcile_order(order.id, deps=deps)
    recheck.recheck_order(order.id, "support:ann", deps=deps)
    with deps.sessions() as session:
        assert session.execute(select(func.count()).select_from(LedgerEntry)).scalar_one() == 1
    assert balance("org-in", deps=deps) == 5_000


def test_webhooks_about_one_payment_that_wait_together_are_applied_in_one_transaction(deps, fake):
    order = new_order(deps)
    fresh = int(deps.clock.now().timestamp())
    authorized = fake.pay(order.gateway_order_id, RemoteStatus.AUTHORIZED, created_at=fresh)
    captured = fake.set_status(authorized.gateway_payment_id, RemoteStatus.CAPTURED)
    first = intake.store_webhook("razorpay", *fake.webhook(authorized, "payment.authorized"), deps=deps)
    second = intake.store_webhook("razorpay", *fake.webhook(captured, "payment.captured"), deps=deps)
    with transactions(deps) as began:
        inbox.process_inbox_event(first.inbox_id, deps=deps)
    assert len(began) == 1 and state(deps, order.id) == "paid" and balance("org-in", deps=deps) == 5_000
    assert [r.status for r in rows(deps, InboxEvent)] == ["processed", "processed"]
    assert inbox.process_inbox_event(second.inbox_id, deps=deps) is None  # its own message finds it done
    assert_transitions_explain_state(deps, order.id)
