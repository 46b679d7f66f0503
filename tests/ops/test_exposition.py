"""The scrape-time gauges of refunds, disputes and the credit shortfall, read by the real collector from
Postgres after real refunds and disputes (the simulator's), through the text ``/metrics`` serves."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from db.models import Dispute, Organisation
from ops.exposition import render_metrics
from tests.support import balance, inbox_rows, new_order, order_row


def scrape(deps) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(render_metrics(deps).decode())
            for sample in family.samples}


def value(samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def paid(deps, simulator, org="org-in", *, credit=True):
    from worker.services.poll import reconcile_order

    order = new_order(deps, org)
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    if credit:
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


def test_settlement_gauges_count_rows_per_bucket_credited_payments_not_settled_and_freshness(deps, org, simulator,
                                                                                           tmp_path):
    """Real pulls, an import and matching against the simulator's faults: a row in every bucket they make, zero
    series for the others (and for every configured gateway), the count of credited-not-settled payments as
    :func:`credited_not_settled` finds them, and how old the newest data is."""
    from db.models import SettlementRow
    from ops.exposition import SETTLEMENT_BUCKETS
    from worker.clock import FrozenClock
    from worker.services import settlement_import, settlement_match, settlement_pull
    from worker.services.views import order_detail

    deps.clock = FrozenClock()
    idle = scrape(deps)
    for gateway in ("razorpay", "payglocal"):
        assert all(value(idle, "recon_settlement_rows", gateway=gateway, bucket=b) == 0 for b in SETTLEMENT_BUCKETS)
        assert value(idle, "recon_settlement_credited_not_settled", gateway=gateway) == 0
        assert value(idle, "recon_settlement_last_received_age_seconds", gateway=gateway) is None
        assert value(idle, "recon_settlement_last_settled_age_seconds", gateway=gateway) is None

    good, missing, wrong = paid(deps, simulator), paid(deps, simulator), paid(deps, simulator)
    paid(deps, simulator, credit=False)  # money taken, never credited here
    paid(deps, simulator, "org-us")
    ids = {name: order_detail(o.id, deps=deps)["payments"][0]["payment_id"]
           for name, o in (("good", good), ("missing", missing), ("wrong", wrong))}
    simulator.sim.set_settlement_faults(skip_payment_ids=[ids["missing"]], amount_delta={ids["wrong"]: -100},
                                        unknown_rows=1)
    simulator.sim.settle("razorpay", everything=True, deliver_webhooks=False)
    for day in (0, 1):  # Razorpay's days may be IST: today and tomorrow (UTC)
        settlement_pull.pull_day("razorpay", deps.clock.now().date() + timedelta(days=day), deps=deps)
    pulled = scrape(deps)  # stored, not matched yet
    assert value(pulled, "recon_settlement_rows", gateway="razorpay", bucket="new") == 4
    assert value(pulled, "recon_settlement_rows", gateway="razorpay", bucket="settled_credited") == 0
    settlement_match.match(deps=deps)
    deps.clock.advance(timedelta(hours=2))
    simulator.sim.settle("payglocal", everything=True, deliver_webhooks=False)
    report = tmp_path / "gcc-settlements.csv"
    report.write_text(simulator.sim.payglocal_settlement_report())
    settlement_import.import_report(report, "payglocal", deps=deps, imported_by="finance:test")  # stored matched

    deps.clock.advance(timedelta(hours=1))
    samples = scrape(deps)
    rows = {b: value(samples, "recon_settlement_rows", gateway="razorpay", bucket=b) for b in SETTLEMENT_BUCKETS}
    assert rows == {**dict.fromkeys(SETTLEMENT_BUCKETS, 0), "settled_credited": 1, "amount_mismatch": 1,
                    "settled_not_credited": 1, "unmatched": 1}
    assert value(samples, "recon_settlement_rows", gateway="payglocal", bucket="new") == 0
    assert value(samples, "recon_settlement_rows", gateway="payglocal", bucket="settled_credited") == 1
    assert value(samples, "recon_settlement_rows", gateway="payglocal", bucket="unmatched") == 1
    assert "credited_not_settled" not in SETTLEMENT_BUCKETS  # a gauge of its own: it has no rows
    assert value(samples, "recon_settlement_credited_not_settled", gateway="razorpay") == 0  # not due yet
    assert value(samples, "recon_settlement_credited_not_settled", gateway="payglocal") == 0  # not due yet
    assert value(samples, "recon_settlement_last_received_age_seconds", gateway="razorpay") == 3 * 3600
    assert value(samples, "recon_settlement_last_received_age_seconds", gateway="payglocal") == 3600
    with deps.sessions() as session:
        newest = dict(session.execute(select(SettlementRow.gateway, func.max(SettlementRow.settled_at))
                                      .group_by(SettlementRow.gateway)).all())
    for gateway in ("razorpay", "payglocal"):
        assert value(samples, "recon_settlement_last_settled_age_seconds", gateway=gateway) == max(
            0.0, (deps.clock.now() - newest[gateway]).total_seconds())

    settlement_match.match(deps=deps)
    deps.clock.advance(timedelta(days=7))  # past Razorpay's delay plus the slack: the skipped payment is late
    later = scrape(deps)
    late = settlement_match.credited_not_settled(deps=deps)
    assert [row["payment_id"] for row in late] == [ids["missing"]]
    assert value(later, "recon_settlement_credited_not_settled", gateway="razorpay") == 1
    for gateway in ("razorpay", "payglocal"):
        assert value(later, "recon_settlement_credited_not_settled", gateway=gateway) == len(
            [row for row in late if row["gateway"] == gateway])
    assert value(later, "recon_settlement_rows", gateway="payglocal", bucket="settled_credited") == 1
    assert value(later, "recon_settlement_rows", gateway="payglocal", bucket="unmatched") == 1
    assert value(later, "recon_settlement_rows", gateway="payglocal", bucket="new") == 0
    assert value(later, "recon_settlement_last_received_age_seconds", gateway="razorpay") == 7 * 86_400 + 3 * 3600
