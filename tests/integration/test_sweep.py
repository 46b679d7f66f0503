"""The sweep: due orders are claimed once, checked at the gateway, abandoned on time, and watched
until the late-payment horizon; every gateway outcome ends in the right state and ledger."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from tests.support import balance, inbox_rows, ledger_count, new_order, order_row
from worker.clock import FrozenClock
from worker.coordination import RedisLeaderLock
from worker.domain.order_state import Source
from worker.services.poll import reconcile_order
from worker.services.sweep import sweep_due_orders


@pytest.fixture
def clock(deps):
    deps.clock = FrozenClock()
    return deps.clock


def sweep_and_check(deps) -> list[str]:
    """One sweep round, with each claimed order checked right away (what the workers do)."""
    claimed = sweep_due_orders(deps=deps)
    for order_id in claimed:
        reconcile_order(order_id, deps=deps)
    return claimed


def test_a_lost_webhook_is_always_recovered_by_the_sweep(deps, gateway, simulator, clock):
    order = new_order(deps, gateway)
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    assert sweep_and_check(deps) == []  # not due yet
    clock.advance(timedelta(seconds=31))
    assert sweep_and_check(deps) == [order.id]
    stored = order_row(deps, order.id)
    assert (stored.state, stored.next_check_at) == ("paid", None)
    assert ledger_count(deps) == 1 and balance(deps, gateway) == 5_000


def test_checks_back_off_then_abandon_at_the_window_then_watch_rarely_until_the_horizon(deps, org, simulator, clock):
    order = new_order(deps)
    created = order_row(deps, order.id).created_at
    gaps = []
    while order_row(deps, order.id).state == "created":
        due = order_row(deps, order.id).next_check_at
        gaps.append(round((due - clock.now()).total_seconds()))
        clock._now = due
        assert sweep_and_check(deps) == [order.id]
    stored = order_row(deps, order.id)
    assert gaps == [30, 60, 120, 300, 900, 390]  # the last step is cut short by the 30-minute window
    assert (stored.state, stored.state_reason) == ("abandoned", "no_attempt")
    assert clock.now() == created + deps.policy.abandon_after
    assert stored.next_check_at - clock.now() == timedelta(hours=6)
    clock._now = created + deps.policy.late_payment_horizon - timedelta(minutes=1)
    sweep_and_check(deps)
    assert order_row(deps, order.id).next_check_at == created + deps.policy.late_payment_horizon
    clock._now = created + deps.policy.late_payment_horizon
    sweep_and_check(deps)
    assert order_row(deps, order.id).next_check_at is None  # past the horizon: only a webhook can finalise it


def test_a_webhook_that_moves_the_order_resets_its_schedule(deps, org, simulator, clock, web):
    from worker.services.inbox import process_inbox_event

    order = new_order(deps)
    for _ in range(3):
        clock._now = order_row(deps, order.id).next_check_at
        sweep_and_check(deps)
    assert order_row(deps, order.id).check_count == 3
    simulator.sim.pay(order.gateway_order_id, "decline")
    assert simulator.sim.wait_for_webhooks()
    for row in inbox_rows(deps, status="pending"):
        process_inbox_event(row.id, deps=deps)
    stored = order_row(deps, order.id)
    assert (stored.state, stored.check_count) == ("pending", 0)
    assert stored.next_check_at == clock.now() + timedelta(seconds=30)


@pytest.mark.parametrize("outcome, manual, final_state, credits", [
    ("success", False, "paid", 5_000),
    ("authorize_only", False, "paid", 5_000),  # left authorised on an auto-capture order (late): we capture
    ("authorize_only", True, "paid", 5_000),   # manual capture: we capture
    ("decline", False, "pending", 0),          # a declined card is never retried by us; open until the window
], ids=["captured", "authorized-auto-capture", "authorized-manual-capture", "all-attempts-failed"])
def test_each_gateway_outcome_on_a_poll(deps, gateway, simulator, clock, outcome, manual, final_state, credits):
    deps.settings = deps.settings.model_copy(update={"razorpay_manual_capture": manual})
    order = new_order(deps, gateway)
    simulator.sim.pay(order.gateway_order_id, outcome, deliver_webhooks=False)
    clock.advance(timedelta(seconds=30))
    sweep_and_check(deps)
    assert order_row(deps, order.id).state == final_state
    assert balance(deps, gateway) == credits and ledger_count(deps) == (1 if credits else 0)


def test_an_order_the_gateway_does_not_know_goes_to_review(deps, org, simulator, clock):
    order = new_order(deps)
    simulator.sim.reset()  # the gateway forgets it
    clock.advance(timedelta(seconds=30))
    sweep_and_check(deps)
    stored = order_row(deps, order.id)
    assert (stored.state, stored.state_reason, stored.next_check_at) == ("needs_review", "unknown_at_gateway", None)


def test_a_refund_a_recheck_finds_after_credit_is_fetched_recorded_and_reversed_once(deps, org, simulator, clock):
    order = new_order(deps)
    paid = simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    reconcile_order(order.id, deps=deps, source=Source.RECHECK)
    simulator.sim.refund(paid["razorpay_payment_id"], deliver_webhooks=False)  # its webhooks never arrive
    reconcile_order(order.id, deps=deps, source=Source.RECHECK)
    reconcile_order(order.id, deps=deps, source=Source.RECHECK)
    stored = order_row(deps, order.id)
    assert stored.state == "paid"  # the order stays paid; the refund has its own lifecycle
    from worker.services.views import order_detail

    detail = order_detail(order.id, deps=deps)
    assert [(r["origin"], r["state"]) for r in detail["refunds"]] == [("gateway", "processed")]
    assert [(e["entry"], e["credits"]) for e in detail["ledger"]] == [("grant", 5_000), ("reversal", -5_000)]
    assert balance(deps) == 0


def test_an_unreachable_gateway_leaves_the_order_untouched_for_the_sweep_to_come_back(deps, gateway, simulator, clock):
    order = new_order(deps, gateway)
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    simulator.sim.set_knobs(error_rate=1.0)
    clock.advance(timedelta(seconds=30))
    assert sweep_and_check(deps) == [order.id]
    stored = order_row(deps, order.id)
    assert (stored.state, stored.check_lease_until) == ("created", None)
    assert stored.next_check_at == clock.now() + timedelta(seconds=deps.settings.check_lease_s)
    simulator.sim.set_knobs(error_rate=0.0)
    clock._now = stored.next_check_at
    assert sweep_and_check(deps) == [order.id]
    assert order_row(deps, order.id).state == "paid"


def test_a_webhook_with_a_bad_signature_naming_our_order_brings_its_check_forward(deps, org, simulator, clock):
    from worker.services.intake import store_webhook

    order = new_order(deps)
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    event = simulator.sim.webhook_events()[-1]
    stored = store_webhook("razorpay", event.body, {**event.headers, "X-Razorpay-Signature": "0" * 64}, deps=deps)
    assert stored.status == "rejected" and order.id in stored.reason
    assert order_row(deps, order.id).next_check_at == clock.now()
    assert sweep_and_check(deps) == [order.id]
    assert order_row(deps, order.id).state == "paid"  # credited from the gateway's answer, not the forged body


def test_two_schedulers_sweeping_at_once_never_claim_the_same_order(deps, org, simulator, clock):
    orders = [new_order(deps, credits=1_000) for _ in range(40)]
    clock.advance(timedelta(seconds=31))
    results: list[list[str]] = [[], []]
    start = threading.Barrier(2)

    def scheduler(slot: int) -> None:
        start.wait()
        for _ in range(5):
            results[slot] += sweep_due_orders(deps=deps)

    threads = [threading.Thread(target=scheduler, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not set(results[0]) & set(results[1])
    assert sorted(results[0] + results[1]) == sorted(o.id for o in orders)


def test_only_one_scheduler_leads_and_another_takes_over_when_the_lock_expires(redis_client):
    key = f"recon-test-leader-{id(redis_client)}"
    first, second = RedisLeaderLock(redis_client, key, ttl_s=0.3), RedisLeaderLock(redis_client, key, ttl_s=0.3)
    try:
        assert first.hold() and not second.hold() and first.hold()
        import time

        time.sleep(0.5)  # the leader stops renewing (it died)
        assert second.hold() and not first.hold()
    finally:
        redis_client.delete(key)


def test_a_webhook_stored_but_never_enqueued_is_processed_by_the_inbox_sweep(deps, org, simulator, clock):
    """The broker was down when the webhook was acknowledged: the inbox row is the truth."""
    from worker.services.inbox import process_inbox_event
    from worker.services.intake import store_webhook
    from worker.services.sweep import requeue_stale_inbox

    order = new_order(deps)
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    event = next(e for e in simulator.sim.webhook_events() if e.event == "payment.captured")
    stored = store_webhook("razorpay", event.body, event.headers, deps=deps)
    assert stored.enqueue  # ...but the enqueue is lost
    assert requeue_stale_inbox(deps=deps) == []  # too fresh: its own enqueue may still be on its way
    clock.advance(timedelta(seconds=61))
    assert requeue_stale_inbox(deps=deps) == [stored.inbox_id]
    assert requeue_stale_inbox(deps=deps) == []  # not again within a minute
    process_inbox_event(stored.inbox_id, deps=deps)
    assert order_row(deps, order.id).state == "paid" and balance(deps) == 5_000


def test_an_order_whose_creation_never_finished_is_closed_by_the_sweep(deps, org, simulator, clock):
    """The process died between storing the order and storing the gateway's answer."""
    from sqlalchemy import update

    from db.models import Order

    order = new_order(deps)
    with deps.sessions.begin() as session:
        session.execute(update(Order).where(Order.id == order.id).values(gateway_order_id=None))
    assert order_row(deps, order.id).next_check_at is not None
    clock.advance(deps.policy.abandon_after + timedelta(seconds=1))
    assert sweep_and_check(deps) == [order.id]
    stored = order_row(deps, order.id)
    assert (stored.state, stored.state_reason) == ("abandoned", "no_attempt")


def test_a_callback_whose_processing_was_interrupted_is_finished_by_the_inbox_sweep(deps, org, simulator, clock):
    """verify_payment stored the callback, then its worker died before asking the gateway."""
    from db.models import InboxEvent
    from worker.services.inbox import process_inbox_event
    from worker.services.sweep import requeue_stale_inbox

    order = new_order(deps)
    paid = simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    with deps.sessions.begin() as session:
        row = InboxEvent(gateway="razorpay", kind="callback", event_id=f"callback:{paid['razorpay_payment_id']}",
                         event_type="checkout.callback", order_id=order.id, headers={}, body=b"{}", status="pending",
                         attempts=1, received_at=clock.now())
        session.add(row)
        session.flush()
        inbox_id = row.id
    clock.advance(timedelta(seconds=61))
    assert requeue_stale_inbox(deps=deps) == [inbox_id]
    process_inbox_event(inbox_id, deps=deps)
    assert order_row(deps, order.id).state == "paid" and balance(deps) == 5_000
    assert [r.status for r in inbox_rows(deps)] == ["processed"]


def test_the_inbox_sweep_backs_off_so_a_slow_queue_is_not_flooded(deps, org, simulator, clock):
    from worker.services.intake import store_webhook
    from worker.services.sweep import requeue_stale_inbox

    order = new_order(deps)
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    event = simulator.sim.webhook_events()[0]
    stored = store_webhook("razorpay", event.body, event.headers, deps=deps)
    requeued_at = []
    for minute in range(1, 17):
        clock._now = order_row(deps, order.id).created_at + timedelta(minutes=minute, seconds=1)
        if requeue_stale_inbox(deps=deps) == [stored.inbox_id]:
            requeued_at.append(minute)
    assert requeued_at == [1, 3, 7, 15]  # gaps of 2, 4, 8 minutes, not one re-enqueue a minute
