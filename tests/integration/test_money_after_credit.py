"""Refunds and disputes against the simulator on Postgres: what we ask for, what the gateway tells us, races.

Webhooks are taken from the simulator's own log and applied in-process (store, then process), so each
test decides when a webhook arrives, how often, and in which order."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from db.models import LedgerEntry, Refund
from tests.support import GATEWAY_ORGS, balance, new_order, order_row
from worker.domain.order_state import Source
from worker.services import refunds
from worker.services.inbox import process_inbox_event
from worker.services.intake import store_webhook
from worker.services.money import RefundRefused, RefundRequest
from worker.services.poll import reconcile_order

CREDITS = 5_000


class Webhooks:
    """The simulator's webhooks not applied yet, applied on demand."""

    def __init__(self, deps, simulator):
        self.deps, self.sim, self.seen = deps, simulator.sim, len(simulator.sim.webhook_events())

    def wait_for(self, event: str, timeout: float = 10.0) -> None:
        """Until the simulator has generated ``event`` (its timers run on their own thread)."""
        deadline = time.monotonic() + timeout
        while not any(e.event == event for e in self.sim.webhook_events()[self.seen:]):
            assert time.monotonic() < deadline, f"no {event} from the simulator"
            time.sleep(0.02)

    def apply(self, *, twice: bool = False) -> list[str]:
        events = self.sim.webhook_events()
        fresh, self.seen = events[self.seen:], len(events)
        for event in fresh:
            for _ in range(2 if twice else 1):
                stored = store_webhook(event.gateway, event.body, event.headers, deps=self.deps)
                if stored.enqueue:
                    process_inbox_event(stored.inbox_id, deps=self.deps)
        return [e.event for e in fresh]


def paid_order(deps, gateway, simulator):
    order = new_order(deps, gateway, credits=CREDITS)
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    reconcile_order(order.id, deps=deps)
    order = order_row(deps, order.id)
    assert order.state == "paid" and balance(deps, gateway) == CREDITS
    return order


def refund_rows(deps, order_id: str) -> list[Refund]:
    with deps.sessions() as session:
        return list(session.execute(select(Refund).where(Refund.order_id == order_id).order_by(Refund.id)).scalars())


def ledger_sum(deps) -> int:
    with deps.sessions() as session:
        return int(session.execute(select(func.coalesce(func.sum(LedgerEntry.credits), 0))).scalar_one())


def test_two_refund_requests_at_once_refund_once(deps, gateway, simulator):
    order = paid_order(deps, gateway, simulator)
    start = threading.Barrier(8)

    def ask(i: int):
        start.wait(timeout=30)
        reason = "customer asked" if i % 2 else f"customer asked ({i})"  # same request four times, four others
        try:
            return refunds.request_refund(order.id, RefundRequest(None, reason, "support:race"), deps=deps)
        except RefundRefused as exc:
            return exc.code

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(ask, range(8)))
    made = [a for a in answers if not isinstance(a, str)]
    assert {a.refund_id for a in made} == {refund_rows(deps, order.id)[0].id}  # one refund row
    assert sum(not a.repeated for a in made) == 1  # the others are told theirs is a repeat
    assert set(a for a in answers if isinstance(a, str)) <= {"above_captured"}
    assert len(simulator.sim.refunds_of(order.granted_payment_id)) == 1  # and one refund at the gateway


def test_a_razorpay_refund_is_pending_then_processed_by_webhook_and_credits_are_reversed_once(deps, org, simulator):
    order = paid_order(deps, _razorpay(), simulator)
    hooks = Webhooks(deps, simulator)
    simulator.sim.refund_behaviour(processed_after_s=600)  # simulated seconds
    started = refunds.request_refund(order.id, RefundRequest(None, "customer asked", "support:alice"), deps=deps)
    assert started.state == "pending" and started.gateway_refund_id.startswith("rfnd_")
    hooks.apply(twice=True)  # refund.created
    assert balance(deps, _razorpay()) == CREDITS
    simulator.sim.advance_clock(simulator.sim.config.refund_processed_after_s + 1)
    hooks.wait_for("refund.processed")
    assert "refund.processed" in hooks.apply(twice=True)
    assert balance(deps, _razorpay()) == 0 == ledger_sum(deps)
    assert refund_rows(deps, order.id)[0].state == "processed"
    assert order_row(deps, order.id).state == "paid"


def test_a_payglocal_refund_is_sent_for_refund_at_once_and_reversed(deps, org, simulator):
    payglocal = _gateway("payglocal")
    order = paid_order(deps, payglocal, simulator)
    done = refunds.request_refund(order.id, RefundRequest(order.amount_minor // 2, "half back", "support:alice"),
                                  deps=deps)
    assert done.state == "processed" and done.gateway_refund_id != order.granted_payment_id  # a refund gid of its own
    assert balance(deps, payglocal) == CREDITS // 2


def test_a_payglocal_dashboard_refund_of_the_rest_after_one_of_ours_is_found_and_reversed_once(deps, org, simulator):
    payglocal = _gateway("payglocal")
    order = paid_order(deps, payglocal, simulator)
    refunds.request_refund(order.id, RefundRequest(order.amount_minor // 5, "a fifth back", "support:alice"), deps=deps)
    simulator.sim.refund_payglocal(order.granted_payment_id)  # the dashboard refunds the rest; PayGlocal tells nobody
    for _ in range(2):  # a recheck finds it; a second one finds nothing new
        reconcile_order(order.id, deps=deps, source=Source.RECHECK)
    assert [(r.origin, r.state, r.amount_minor) for r in refund_rows(deps, order.id)] == [
        ("support", "processed", order.amount_minor // 5), ("gateway", "processed", order.amount_minor * 4 // 5)]
    assert balance(deps, payglocal) == 0 == ledger_sum(deps)


def test_a_recheck_whose_refund_look_is_rate_limited_still_answers_and_the_next_look_finds_it(deps, org, simulator,
                                                                                              monkeypatch):
    """Found by make chaos: a 429 on the refund look after a recheck's decision answered the recheck with 500."""
    from gateways.errors import GatewayRateLimited
    from worker.services.recheck import recheck_order

    payglocal = _gateway("payglocal")
    order = paid_order(deps, payglocal, simulator)
    simulator.sim.refund_payglocal(order.granted_payment_id)  # the dashboard refunds it all; PayGlocal tells nobody
    guarded = deps.gateway("payglocal")

    def limited(*args, **kwargs):
        raise GatewayRateLimited("HTTP 429: payglocal status: rate limited")

    monkeypatch.setattr(guarded, "fetch_refunds", limited)
    assert recheck_order(order.id, "support:alice", deps=deps).state == "paid"
    assert refund_rows(deps, order.id) == [] and balance(deps, payglocal) == CREDITS
    monkeypatch.undo()
    recheck_order(order.id, "support:alice", deps=deps)
    assert balance(deps, payglocal) == 0 == ledger_sum(deps)


def test_a_payglocal_refund_of_ours_not_yet_answered_is_not_taken_for_a_dashboard_refund(deps, org, simulator):
    """Found by make chaos at 10,000 orders: our refund reached PayGlocal but its answer was late; a callback's
    check meanwhile saw the original refunded and recorded it as a dashboard refund, then ours was processed."""
    from datetime import UTC, datetime

    payglocal = _gateway("payglocal")
    order = paid_order(deps, payglocal, simulator)
    key = "rfslowanswer000000000001"
    with deps.sessions() as session, session.begin():  # our row, sent but not answered yet
        now = datetime.now(UTC)
        session.add(Refund(order_id=order.id, gateway="payglocal", gateway_payment_id=order.granted_payment_id,
                           idempotency_key=key, amount_minor=order.amount_minor, currency=order.currency, full=True,
                           state="requested", origin="support", override_spent=False, reason="all back",
                           requested_by="support:alice", created_at=now, updated_at=now, check_count=0))
    deps.gateway("payglocal").create_refund(order.granted_payment_id, amount_minor=order.amount_minor,
                                            currency=order.currency, full=True, idempotency_key=key, reason="all back")
    reconcile_order(order.id, deps=deps, source=Source.RECHECK)  # sees the original refunded
    assert [(r.origin, r.state) for r in refund_rows(deps, order.id)] == [("support", "requested")]
    refunds.check_refund(refund_rows(deps, order.id)[0].id, deps=deps)  # asks again with our key: the same refund
    reconcile_order(order.id, deps=deps, source=Source.RECHECK)
    assert [(r.origin, r.state) for r in refund_rows(deps, order.id)] == [("support", "processed")]
    assert balance(deps, payglocal) == 0 == ledger_sum(deps)


def test_a_refund_the_gateway_fails_reverses_nothing(deps, org, simulator):
    order = paid_order(deps, _razorpay(), simulator)
    hooks = Webhooks(deps, simulator)
    simulator.sim.refund_behaviour(processed_after_s=0, fail_next=1)
    refunds.request_refund(order.id, RefundRequest(None, "customer asked", "support:alice"), deps=deps)
    hooks.wait_for("refund.failed")
    hooks.apply()
    refunds.check_refund(refund_rows(deps, order.id)[0].id, deps=deps)
    assert refund_rows(deps, order.id)[0].state == "failed"
    assert balance(deps, _razorpay()) == CREDITS


def test_a_dashboard_refund_is_found_by_its_webhook_and_a_lost_one_by_the_poller(deps, org, simulator):
    order = paid_order(deps, _razorpay(), simulator)
    hooks = Webhooks(deps, simulator)
    simulator.sim.refund_behaviour(processed_after_s=0)
    simulator.sim.dashboard_refund(order.granted_payment_id, order.amount_minor // 5)
    simulator.sim.wait_for_webhooks()
    hooks.apply()
    assert [(r.origin, r.state) for r in refund_rows(deps, order.id)] == [("gateway", "processed")]
    assert balance(deps, _razorpay()) == CREDITS - CREDITS // 5
    simulator.sim.dashboard_refund(order.granted_payment_id, order.amount_minor // 5)  # its webhooks get lost
    simulator.sim.wait_for_webhooks()
    hooks.seen = len(simulator.sim.webhook_events())
    refunds.sync_refunds(order.id, order.granted_payment_id, deps=deps)
    assert balance(deps, _razorpay()) == CREDITS - 2 * (CREDITS // 5)


def test_a_dispute_holds_at_onset_restores_on_a_win_and_keeps_the_hold_on_a_loss(deps, org, simulator):
    order = paid_order(deps, _razorpay(), simulator)
    hooks = Webhooks(deps, simulator)
    dispute = simulator.sim.open_dispute(order.granted_payment_id, respond_in_s=3 * 86_400)
    simulator.sim.wait_for_webhooks()
    hooks.apply(twice=True)
    assert balance(deps, _razorpay()) == 0
    simulator.sim.move_dispute(dispute["id"], status="under_review")
    simulator.sim.move_dispute(dispute["id"], status="won")
    simulator.sim.wait_for_webhooks()
    hooks.apply(twice=True)
    assert balance(deps, _razorpay()) == CREDITS
    simulator.sim.move_dispute(dispute["id"], phase="pre_arbitration")
    simulator.sim.move_dispute(dispute["id"], status="lost")
    simulator.sim.wait_for_webhooks()
    hooks.apply(twice=True)
    assert balance(deps, _razorpay()) == 0 == ledger_sum(deps)


def test_a_disputes_announcement_delivered_after_its_under_review_leaves_it_under_review(deps, org, simulator):
    order = paid_order(deps, _razorpay(), simulator)
    hooks = Webhooks(deps, simulator)
    dispute = simulator.sim.open_dispute(order.granted_payment_id, respond_in_s=3 * 86_400)
    simulator.sim.move_dispute(dispute["id"], status="under_review")
    simulator.sim.wait_for_webhooks()
    events = simulator.sim.webhook_events()[hooks.seen:]
    assert [e.event for e in events] == ["payment.dispute.created", "payment.dispute.under_review"]
    for event in reversed(events):  # Razorpay does not order webhooks
        stored = store_webhook(event.gateway, event.body, event.headers, deps=deps)
        process_inbox_event(stored.inbox_id, deps=deps)
    with deps.sessions() as session:
        assert session.execute(text("SELECT state FROM disputes")).scalar_one() == "under_review"
    assert balance(deps, _razorpay()) == 0  # held either way
    simulator.sim.move_dispute(dispute["id"], status="action_required")  # evidence insufficient: open again
    simulator.sim.wait_for_webhooks()
    hooks.seen += len(events)
    hooks.apply()
    with deps.sessions() as session:
        assert session.execute(text("SELECT state FROM disputes")).scalar_one() == "open"


def _gateway(name: str):
    return GATEWAY_ORGS[name]


def _razorpay():
    return GATEWAY_ORGS["razorpay"]


def test_the_ledger_is_append_only_on_postgres(deps, org, simulator):
    order = paid_order(deps, _razorpay(), simulator)
    for statement in ("UPDATE ledger_entries SET credits = credits + 1", "DELETE FROM ledger_entries"):
        with pytest.raises(DBAPIError, match="append-only"), deps.engine.begin() as connection:
            connection.execute(text(statement))
    assert ledger_sum(deps) == CREDITS == balance(deps, _razorpay()) and order.state == "paid"
