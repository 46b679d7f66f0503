"""The scrape-time gauges of refunds, disputes and the credit shortfall, read by the real collector from
Postgres after real refunds and disputes (the simulator's), through the text ``/metrics`` serves."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from db.models import Dispute, Organisation
from ops.exposition import render_metrics
from tests.support import balance, inbox_rows, new_order, order_row


def scrape(deps) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(render_metrics(deps).decode())
            for sample in family.samples}


def value(samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def paid(deps, simulator):
    from worker.services.poll import reconcile_order

    order = new_order(deps)
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    reconcile_order(order.id, deps=deps)
    return order_row(deps, order.id)


def test_money_gauges_show_refunds_in_flight_open_disputes_and_their_deadline_and_the_shortfall(deps, org, simulator,
                                                                                               web):
    from worker.clock import FrozenClock
    from worker.services.inbox import process_inbox_event
    from worker.services.refunds import RefundRequest, request_refund

    deps.clock = FrozenClock()
    disputed, refunding, overridden = paid(deps, simulator), paid(deps, simulator), paid(deps, simulator)
    idle = value(scrape(deps), "recon_dispute_respond_by_seconds", gateway="razorpay")
    assert idle is None  # no open dispute: no deadline

    simulator.sim.refund_behaviour(processed_after_s=30 * 86_400)  # Razorpay keeps it pending
    pending = request_refund(refunding.id, RefundRequest(None, "ticket 1", "sam"), deps=deps)
    assert pending.state == "pending"
    dispute = simulator.sim.open_dispute(disputed.granted_payment_id, respond_in_s=3_600)
    assert dispute["respond_by"] - dispute["created_at"] == 3_600
    assert simulator.sim.wait_for_webhooks()
    for row in inbox_rows(deps, status="pending"):
        process_inbox_event(row.id, deps=deps)
    assert balance(deps) == 10_000  # the dispute holds its 5,000 credits
    with deps.sessions() as session:
        session.get(Organisation, "org-in").credit_balance = 0  # the customer used the rest
        session.commit()
    simulator.sim.refund_behaviour(processed_after_s=0)
    override = request_refund(overridden.id, RefundRequest(None, "ticket 2: goodwill", "sam", override_spent=True),
                              deps=deps)
    assert override.state == "processed"

    deps.clock.advance(timedelta(days=3))
    samples = scrape(deps)
    assert value(samples, "recon_refunds_in_flight", gateway="razorpay", state="pending") == 1
    assert value(samples, "recon_refunds_in_flight", gateway="razorpay", state="requested") == 0
    assert value(samples, "recon_refunds_in_flight", gateway="payglocal", state="pending") == 0
    assert value(samples, "recon_refund_oldest_in_flight_seconds", gateway="razorpay") == 3 * 86_400
    assert value(samples, "recon_refund_oldest_in_flight_seconds", gateway="payglocal") == 0
    assert value(samples, "recon_disputes_open", gateway="razorpay") == 1
    assert value(samples, "recon_disputes_open", gateway="payglocal") == 0
    with deps.sessions() as session:
        respond_by = session.execute(select(Dispute.respond_by)).scalar_one()
    due = value(samples, "recon_dispute_respond_by_seconds", gateway="razorpay")
    assert due == (respond_by - deps.clock.now()).total_seconds() and due < 0  # three days on: passed
    assert value(samples, "recon_dispute_respond_by_seconds", gateway="payglocal") is None
    assert value(samples, "recon_credit_shortfall_credits", gateway="razorpay") == 5_000
    assert value(samples, "recon_credit_shortfall_credits", gateway="payglocal") == 0
    assert value(samples, "recon_refunds_total", gateway="razorpay", state="processed", origin="support") >= 1
