"""Every input (webhook, callback, poll, recheck) ends in the same state machine and the same crediting code."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from db.models import SupportAction
from tests.support import balance, inbox_rows, ledger_count, new_order, order_row
from worker.clock import FrozenClock
from worker.services.callback import verify_payment
from worker.services.inbox import process_inbox_event
from worker.services.poll import reconcile_order
from worker.services.recheck import recheck_order


@pytest.fixture
def clock(deps):
    deps.clock = FrozenClock()
    return deps.clock


def deliver(simulator, deps, web):
    """Let the simulator deliver its webhooks over HTTP, then process what the inbox holds."""
    assert simulator.sim.wait_for_webhooks(timeout=10)
    for row in inbox_rows(deps, status="pending"):
        process_inbox_event(row.id, deps=deps)


def test_a_lost_webhook_is_recovered_by_a_support_recheck_which_is_audited(deps, gateway, simulator):
    order = new_order(deps, gateway)
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    outcome = recheck_order(order.id, "support:alice", reason="customer says charged", deps=deps)
    assert (outcome.from_state, outcome.state, outcome.reason) == ("created", "paid", "captured")
    assert balance(deps, gateway) == 5_000 and ledger_count(deps, order.id) == 1
    with deps.sessions() as session:
        [action] = session.execute(select(SupportAction)).scalars()
    assert (action.requested_by, action.action, action.outcome["state"]) == ("support:alice", "recheck", "paid")


def test_callback_then_webhooks_then_recheck_credit_exactly_once(deps, gateway, simulator, web):
    order = new_order(deps, gateway)
    paid = simulator.sim.pay(order.gateway_order_id, "success")
    verify_payment(order.id, *gateway.callback(paid), deps=deps)
    deliver(simulator, deps, web)
    recheck_order(order.id, "support:bob", deps=deps)
    reconcile_order(order.id, deps=deps)
    assert order_row(deps, order.id).state == "paid"
    assert balance(deps, gateway) == 5_000 and ledger_count(deps) == 1
    assert {row.status for row in inbox_rows(deps)} == {"processed"}


def test_a_callback_with_a_bad_signature_is_kept_and_changes_nothing(deps, gateway, simulator):
    order = new_order(deps, gateway)
    paid = simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    payment_id, signature = gateway.callback(paid)
    forged = signature[:-4] + ("AAAA" if not signature.endswith("AAAA") else "BBBB")
    assert verify_payment(order.id, payment_id, forged, deps=deps) is None
    [row] = inbox_rows(deps)
    assert (row.kind, row.status) == ("callback", "rejected") and row.reason.startswith("bad_signature")
    assert order_row(deps, order.id).state == "created" and balance(deps, gateway) == 0


def test_a_payment_of_a_different_amount_goes_to_review_without_credit(deps, gateway, simulator):
    order = new_order(deps, gateway)
    simulator.sim.pay(order.gateway_order_id, "success", amount_minor=order.amount_minor - 100, deliver_webhooks=False)
    reconcile_order(order.id, deps=deps)
    stored = order_row(deps, order.id)
    assert (stored.state, stored.state_reason) == ("needs_review", "amount_or_currency_mismatch")
    assert ledger_count(deps) == 0 and balance(deps, gateway) == 0


CLOSED_WINDOW_REASON = {"razorpay": "no_attempt", "payglocal": "window_closed"}  # PayGlocal says ABANDONED


def test_declined_then_timeout_marks_failed_and_closed_window_marks_abandoned(deps, gateway, simulator, clock):
    declined, closed, errored = new_order(deps, gateway), new_order(deps, gateway), new_order(deps, gateway)
    simulator.sim.pay(declined.gateway_order_id, "decline", deliver_webhooks=False)
    simulator.sim.pay(closed.gateway_order_id, "close_window")
    simulator.sim.pay(errored.gateway_order_id, "gateway_error", deliver_webhooks=False)
    for order in (declined, closed, errored):
        reconcile_order(order.id, deps=deps)
    assert {order_row(deps, o.id).state for o in (declined, closed, errored)} <= {"created", "pending"}
    clock.advance(deps.policy.abandon_after + timedelta(seconds=1))
    outcome = recheck_order(declined.id, "support:carol", deps=deps)
    assert (outcome.state, outcome.reason) == ("failed", "declined")
    reconcile_order(closed.id, deps=deps)
    reconcile_order(errored.id, deps=deps)
    assert (order_row(deps, closed.id).state, order_row(deps, closed.id).state_reason) == (
        "abandoned", CLOSED_WINDOW_REASON[gateway.gateway])
    assert (order_row(deps, errored.id).state, order_row(deps, errored.id).state_reason) == (
        "abandoned", "gateway_error")


def test_an_abandoned_order_is_paid_and_credited_once_when_the_bank_authorises_late(deps, gateway, simulator, web,
                                                                                   clock):
    order = new_order(deps, gateway)
    attempt = simulator.sim.pay(order.gateway_order_id, "timeout")
    deliver(simulator, deps, web)
    clock.advance(deps.policy.abandon_after + timedelta(minutes=1))
    reconcile_order(order.id, deps=deps)
    assert order_row(deps, order.id).state == "abandoned"
    simulator.sim.late_authorize(gateway.payment_id(attempt))
    deliver(simulator, deps, web)
    if gateway.gateway == "payglocal":  # no browser is left to post a callback: the sweep finds it
        clock.advance(deps.schedule.closed_every)
        reconcile_order(order.id, deps=deps)
    stored = order_row(deps, order.id)
    assert (stored.state, stored.state_reason) == ("paid", "late_payment")
    assert balance(deps, gateway) == 5_000 and ledger_count(deps) == 1


def test_a_late_authorisation_after_another_payment_paid_the_order_is_refunded_and_credited_nothing(
        deps, org, simulator):
    order = new_order(deps)
    first = simulator.sim.pay(order.gateway_order_id, "timeout", deliver_webhooks=False)
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    reconcile_order(order.id, deps=deps)
    simulator.sim.late_authorize(first["id"], deliver_webhooks=False)  # Razorpay refunds it: the order is paid
    reconcile_order(order.id, deps=deps)
    assert order_row(deps, order.id).state == "paid"
    assert ledger_count(deps) == 1 and balance(deps) == 5_000


def test_manual_capture_orders_are_captured_by_us_and_then_credited(deps, org, simulator):
    deps.settings = deps.settings.model_copy(update={"razorpay_manual_capture": True})
    order = new_order(deps)
    simulator.sim.pay(order.gateway_order_id, "authorize_only", deliver_webhooks=False)
    reconcile_order(order.id, deps=deps)
    stored = order_row(deps, order.id)
    assert stored.state == "paid" and stored.manual_capture
    remote = [p for p in simulator.sim.state()["razorpay"]["payments"] if p["order_id"] == order.gateway_order_id]
    assert [p["status"] for p in remote] == ["captured"]
    assert balance(deps) == 5_000


def test_pro_plan_switches_the_organisation_for_a_year_and_adds_no_credits(deps, org, simulator):
    order = new_order(deps, plan="pro")
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    reconcile_order(order.id, deps=deps)
    from db.models import Organisation

    with deps.sessions() as session:
        organisation = session.get(Organisation, org)
    assert organisation.plan == "pro" and organisation.credit_balance == 0
    assert timedelta(days=364) < organisation.plan_expires_at - order_row(deps, order.id).paid_at <= timedelta(days=365)
