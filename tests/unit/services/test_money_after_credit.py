"""Refunds, disputes and reversals over the unit of work, fast: SQLite and the in-memory gateway.

Every test ends by checking the ledger's invariant: the balance is the sum of the ledger's credits."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import func, select, text, update

from db.models import LedgerEntry, Order, Organisation, Refund, SupportAction
from gateways.errors import GatewayTransient
from gateways.port import DisputeStatus, RefundStatus, RemoteStatus
from worker.services import disputes, inbox, intake, orders, poll, refunds
from worker.services.money import RefundRefused, RefundRequest

CREDITS = 5_000


def paid_order(deps, fake, *, plan: str = "payg") -> tuple[Order, str]:
    made = orders.create_order(orders.PurchaseRequest("org-in", "admin-1", plan, True,
                                                      credits=CREDITS if plan == "payg" else None), deps=deps).order
    payment = fake.pay(made.gateway_order_id)
    deliver(deps, fake.webhook(payment))
    return order_row(deps, made.id), payment.gateway_payment_id


def deliver(deps, signed: tuple[bytes, dict[str, str]]) -> None:
    stored = intake.store_webhook("razorpay", *signed, deps=deps)
    assert stored.status == "accepted", stored
    inbox.process_inbox_event(stored.inbox_id, deps=deps)


def order_row(deps, order_id: str) -> Order:
    with deps.sessions() as session:
        return session.get(Order, order_id)


def balance(deps) -> int:
    with deps.sessions() as session:
        return session.get(Organisation, "org-in").credit_balance


def ledger(deps, order_id: str) -> list[tuple[str, str, int, int]]:
    with deps.sessions() as session:
        stmt = select(LedgerEntry).where(LedgerEntry.order_id == order_id).order_by(LedgerEntry.id)
        return [(e.entry, e.kind, e.credits, e.shortfall) for e in session.execute(stmt).scalars()]


def refund_rows(deps, order_id: str) -> list[Refund]:
    with deps.sessions() as session:
        return list(session.execute(select(Refund).where(Refund.order_id == order_id).order_by(Refund.id)).scalars())


def spend(deps, credits: int) -> None:
    with deps.engine.begin() as connection:
        connection.execute(update(Organisation).where(Organisation.id == "org-in")
                           .values(credit_balance=Organisation.credit_balance - credits))


def assert_balance_is_the_ledger_sum(deps, spent: int = 0) -> None:
    with deps.sessions() as session:
        total = session.execute(select(func.coalesce(func.sum(LedgerEntry.credits), 0))).scalar_one()
    assert balance(deps) == total - spent


def ask(deps, order_id: str, **changes) -> refunds.RefundOutcome:
    request = RefundRequest(None, "customer asked", "support:alice")
    return refunds.request_refund(order_id, replace(request, **changes), deps=deps)


# --- refunds started by us -------------------------------------------------------------------------------

def test_a_full_refund_reverses_the_credits_once_when_processed_not_when_pending(deps, fake):
    order, _ = paid_order(deps, fake)
    started = ask(deps, order.id)
    assert (started.state, balance(deps)) == ("pending", CREDITS)  # refund.created: nothing reversed yet
    remote = fake.set_refund_status(started.gateway_refund_id, RefundStatus.PROCESSED)
    deliver(deps, fake.refund_webhook(remote, "refund.processed"))
    deliver(deps, fake.refund_webhook(remote, "refund.processed"))  # a redelivery with a fresh event id
    assert balance(deps) == 0
    assert ledger(deps, order.id) == [("grant", "credits", CREDITS, 0), ("reversal", "refund", -CREDITS, 0)]
    assert order_row(deps, order.id).state == "paid"  # the order stays paid (so does Razorpay's)
    assert refund_rows(deps, order.id)[0].state == "processed"
    assert_balance_is_the_ledger_sum(deps)


def test_a_repeated_request_is_the_same_refund_and_the_gateway_is_asked_once_with_our_key(deps, fake):
    order, _ = paid_order(deps, fake)
    first = ask(deps, order.id, amount_minor=order.amount_minor // 2)
    again = ask(deps, order.id, amount_minor=order.amount_minor // 2)
    assert (again.refund_id, again.repeated, first.repeated) == (first.refund_id, True, False)
    assert len(fake.refunds) == 1
    assert next(iter(fake.refunds.values())).idempotency_key == refund_rows(deps, order.id)[0].idempotency_key
    with deps.sessions() as session:
        audits = session.execute(select(SupportAction).where(SupportAction.action == "refund")).scalars().all()
    assert len(audits) == 1 and audits[0].requested_by == "support:alice"


@pytest.mark.parametrize("changes, code", [
    ({"reason": "  "}, "reason_required"),
    ({"amount_minor": 10**12}, "above_captured"),
    ({"amount_minor": 0}, "above_captured"),
    ({"idempotency_key": "short"}, "bad_idempotency_key"),
])
def test_refunds_the_rules_refuse_are_refused_with_a_code_and_nothing_is_sent(deps, fake, changes, code):
    order, _ = paid_order(deps, fake)
    with pytest.raises(RefundRefused) as refused:
        ask(deps, order.id, **changes)
    assert refused.value.code == code
    assert fake.refunds == {} and refund_rows(deps, order.id) == []


def test_an_unpaid_order_has_nothing_to_refund(deps, fake):
    made = orders.create_order(orders.PurchaseRequest("org-in", "admin-1", "payg", True, credits=CREDITS),
                               deps=deps).order
    with pytest.raises(RefundRefused) as refused:
        ask(deps, made.id)
    assert refused.value.code == "order_not_paid"


def test_only_unspent_credits_are_refunded_unless_support_overrides_and_then_the_shortfall_is_recorded(deps, fake):
    order, _ = paid_order(deps, fake)
    spend(deps, 4_000)  # 1,000 of the 5,000 left
    with pytest.raises(RefundRefused) as refused:
        ask(deps, order.id)
    assert refused.value.code == "credits_spent" and "1000 of the order's are unspent" in refused.value.message
    partial = ask(deps, order.id, amount_minor=order.amount_minor // 5)  # exactly the unspent fifth
    assert partial.state == "pending"
    fake.set_refund_status(partial.gateway_refund_id, RefundStatus.PROCESSED)
    refunds.sync_refunds(order.id, order.granted_payment_id, deps=deps)
    assert balance(deps) == 0
    override = ask(deps, order.id, reason="goodwill: outage on our side", override_spent=True)
    fake.set_refund_status(override.gateway_refund_id, RefundStatus.PROCESSED)
    refunds.sync_refunds(order.id, order.granted_payment_id, deps=deps)
    assert balance(deps) == 0  # never below zero by default: the rest is a shortfall
    assert ledger(deps, order.id)[1:] == [("reversal", "refund", -1_000, 0), ("reversal", "refund", 0, 4_000)]
    assert_balance_is_the_ledger_sum(deps, spent=4_000)


def test_allow_negative_balance_takes_it_all(deps, fake):
    deps.policy = replace(deps.policy, allow_negative_balance=True)
    order, _ = paid_order(deps, fake)
    spend(deps, 4_000)
    done = ask(deps, order.id, override_spent=True)
    fake.set_refund_status(done.gateway_refund_id, RefundStatus.PROCESSED)
    refunds.sync_refunds(order.id, order.granted_payment_id, deps=deps)
    assert balance(deps) == -4_000
    assert ledger(deps, order.id)[-1] == ("reversal", "refund", -CREDITS, 0)


def test_a_failed_refund_reverses_nothing_and_a_stale_pending_after_it_changes_nothing(deps, fake):
    order, _ = paid_order(deps, fake)
    started = ask(deps, order.id)
    pending = fake.refunds[started.gateway_refund_id]
    failed = fake.set_refund_status(started.gateway_refund_id, RefundStatus.FAILED)
    deliver(deps, fake.refund_webhook(failed, "refund.failed"))
    deliver(deps, fake.refund_webhook(pending, "refund.created"))  # older snapshot delivered late
    assert refund_rows(deps, order.id)[0].state == "failed"
    assert balance(deps) == CREDITS and len(ledger(deps, order.id)) == 1
    again = ask(deps, order.id, reason="customer asked again")  # a failed refund frees its amount
    assert again.state == "pending"


def test_a_refund_the_gateway_was_too_busy_for_is_sent_again_by_the_poller_with_the_same_key(deps, fake, monkeypatch):
    order, _ = paid_order(deps, fake)
    original = fake.create_refund

    def busy(*args, **kwargs):
        raise GatewayTransient("409 still in progress")

    monkeypatch.setattr(fake, "create_refund", busy)
    started = ask(deps, order.id)
    assert (started.state, fake.refunds) == ("requested", {})
    monkeypatch.setattr(fake, "create_refund", original)
    checked = refunds.check_refund(started.refund_id, deps=deps)
    assert checked.state == "pending" and len(fake.refunds) == 1
    refunds.check_refund(started.refund_id, deps=deps)
    assert len(fake.refunds) == 1  # in flight: fetched, not created again


def test_a_lost_refund_webhook_is_found_by_the_poller(deps, fake):
    order, _ = paid_order(deps, fake)
    started = ask(deps, order.id)
    fake.set_refund_status(started.gateway_refund_id, RefundStatus.PROCESSED)  # its webhook never arrives
    assert refunds.check_refund(started.refund_id, deps=deps).state == "processed"
    assert balance(deps) == 0 and refund_rows(deps, order.id)[0].next_check_at is None


def test_a_refund_of_a_pro_order_ends_the_pro_term(deps, fake):
    order, _ = paid_order(deps, fake, plan="pro")
    with deps.sessions() as session:
        assert session.get(Organisation, "org-in").plan == "pro"
    done = ask(deps, order.id)
    fake.set_refund_status(done.gateway_refund_id, RefundStatus.PROCESSED)
    refunds.sync_refunds(order.id, order.granted_payment_id, deps=deps)
    with deps.sessions() as session:
        organisation = session.get(Organisation, "org-in")
    assert organisation.plan == "payg" and ledger(deps, order.id)[-1] == ("reversal", "refund", 0, 0)


def test_a_refund_of_a_custom_payment_is_recorded_and_moves_no_credits(deps, fake):
    made = orders.create_order(orders.PurchaseRequest("org-in", "admin-1", "custom", True,
                                                      custom_amount_minor=500_000), deps=deps).order
    deliver(deps, fake.webhook(fake.pay(made.gateway_order_id)))
    before = balance(deps)
    done = ask(deps, made.id)
    fake.set_refund_status(done.gateway_refund_id, RefundStatus.PROCESSED)
    refunds.sync_refunds(made.id, order_row(deps, made.id).granted_payment_id, deps=deps)
    assert [r.state for r in refund_rows(deps, made.id)] == ["processed"]
    assert balance(deps) == before and ledger(deps, made.id) == [("grant", "payment_recorded", 0, 0)]


# --- refunds seen at the gateway -----------------------------------------------------------------------------

def test_a_dashboard_refund_is_recorded_and_reversed(deps, fake):
    order, payment_id = paid_order(deps, fake)
    refund = fake.add_refund(payment_id, order.amount_minor // 2)
    deliver(deps, fake.refund_webhook(refund))
    rows = refund_rows(deps, order.id)
    assert [(r.origin, r.state) for r in rows] == [("gateway", "processed")]
    assert balance(deps) == CREDITS // 2


def test_an_auto_refund_of_an_uncaptured_authorisation_is_recorded_and_reverses_nothing(deps, fake):
    made = orders.create_order(orders.PurchaseRequest("org-in", "admin-1", "payg", True, credits=CREDITS),
                               deps=deps).order
    payment = fake.pay(made.gateway_order_id, RemoteStatus.AUTHORIZED)
    fake.set_status(payment.gateway_payment_id, RemoteStatus.REFUNDED, amount_refunded_minor=payment.amount_minor)
    refund = fake.add_refund(payment.gateway_payment_id, payment_captured=False)
    deliver(deps, fake.refund_webhook(refund))
    assert [(r.origin, r.state) for r in refund_rows(deps, made.id)] == [("auto", "processed")]
    assert balance(deps) == 0 and ledger(deps, made.id) == []


def test_a_second_captured_payment_on_a_paid_order_is_refunded_automatically_and_the_order_stays_paid(deps, fake):
    order, _ = paid_order(deps, fake)
    second = fake.pay(order.gateway_order_id)
    deliver(deps, fake.webhook(second))
    rows = refund_rows(deps, order.id)
    assert [(r.gateway_payment_id, r.origin, r.full) for r in rows] == [(second.gateway_payment_id, "duplicate", True)]
    fake.set_refund_status(rows[0].gateway_refund_id, RefundStatus.PROCESSED)
    refunds.sync_refunds(order.id, second.gateway_payment_id, deps=deps)
    poll.reconcile_order(order.id, deps=deps, source=poll.Source.RECHECK)
    assert order_row(deps, order.id).state == "paid"
    assert balance(deps) == CREDITS  # the duplicate never granted, so its refund takes nothing back
    deliver(deps, fake.webhook(second, event_id="evt_again"))
    assert len(refund_rows(deps, order.id)) == 1  # refunded once


# --- disputes --------------------------------------------------------------------------------------------

def test_a_dispute_holds_the_credits_at_onset_and_a_win_restores_them_once(deps, fake):
    order, payment_id = paid_order(deps, fake)
    opened = fake.dispute(payment_id, respond_by=2_000_000_000, phase="chargeback")
    deliver(deps, fake.dispute_webhook(opened))
    assert balance(deps) == 0
    won = replace(opened, status=DisputeStatus.WON)
    deliver(deps, fake.dispute_webhook(won, "payment.dispute.won"))
    deliver(deps, fake.dispute_webhook(won, "payment.dispute.won"))
    deliver(deps, fake.dispute_webhook(opened))  # stale: a won case reopens only by a later phase
    assert balance(deps) == CREDITS
    reopened = replace(opened, phase="pre_arbitration")
    deliver(deps, fake.dispute_webhook(reopened))
    assert balance(deps) == 0
    lost = replace(reopened, status=DisputeStatus.LOST, amount_deducted_minor=order.amount_minor)
    deliver(deps, fake.dispute_webhook(lost, "payment.dispute.lost"))
    deliver(deps, fake.dispute_webhook(won, "payment.dispute.won"))  # nothing moves after a loss
    assert balance(deps) == 0
    assert [e[:2] for e in ledger(deps, order.id)] == [("grant", "credits"), ("reversal", "dispute"),
                                                       ("restore", "dispute"), ("reversal", "dispute")]
    assert_balance_is_the_ledger_sum(deps)


def test_late_snapshots_of_the_first_round_never_move_a_reopened_case_back(deps, fake):
    # the gateway: opened, won, reopened in pre-arbitration, won again; delivered as onset, second win,
    # first win, reopen. The first win must not take the phase back, or the reopen would hold again.
    _, payment_id = paid_order(deps, fake)
    opened = fake.dispute(payment_id, phase="chargeback")
    first_win = replace(opened, status=DisputeStatus.WON)
    reopened = replace(opened, phase="pre_arbitration")
    second_win = replace(reopened, status=DisputeStatus.WON)
    deliver(deps, fake.dispute_webhook(opened))
    deliver(deps, fake.dispute_webhook(second_win, "payment.dispute.won"))
    deliver(deps, fake.dispute_webhook(first_win, "payment.dispute.won"))
    deliver(deps, fake.dispute_webhook(reopened))
    deliver(deps, fake.dispute_webhook(opened))
    assert balance(deps) == CREDITS
    with deps.sessions() as session:
        assert session.execute(text("SELECT state, phase FROM disputes")).one() == ("won", "pre_arbitration")
    assert_balance_is_the_ledger_sum(deps)


def test_a_dispute_of_spent_credits_records_the_shortfall_and_a_win_cancels_it(deps, fake):
    order, payment_id = paid_order(deps, fake)
    spend(deps, 3_000)
    opened = fake.dispute(payment_id)
    deliver(deps, fake.dispute_webhook(opened))
    assert balance(deps) == 0 and ledger(deps, order.id)[-1] == ("reversal", "dispute", -2_000, 3_000)
    deliver(deps, fake.dispute_webhook(replace(opened, status=DisputeStatus.WON), "payment.dispute.won"))
    assert balance(deps) == 2_000 and ledger(deps, order.id)[-1] == ("restore", "dispute", 2_000, -3_000)
    with deps.sessions() as session:
        assert session.execute(text("SELECT sum(shortfall) FROM ledger_entries")).scalar_one() == 0


def test_a_recorded_chargeback_reverses_once_and_only_where_the_gateway_reports_none(deps, fake):
    order, _ = paid_order(deps, fake)
    with pytest.raises(RefundRefused) as refused:  # Razorpay-like: its own dispute would reverse twice
        disputes.record_chargeback(order.id, amount_minor=None, reason="bank letter", requested_by="s", deps=deps)
    assert refused.value.code == "gateway_reports_disputes"
    fake.reports_disputes = False  # PayGlocal-like: no dispute API
    first = disputes.record_chargeback(order.id, amount_minor=None, reason="bank letter 42", requested_by="support:bo",
                                       deps=deps)
    again = disputes.record_chargeback(order.id, amount_minor=None, reason="bank letter 42", requested_by="support:bo",
                                       deps=deps)
    assert (first.state, first.repeated, again.repeated) == ("lost", False, True)
    assert balance(deps) == 0 and [e[:2] for e in ledger(deps, order.id)][-1] == ("reversal", "chargeback")
    with pytest.raises(RefundRefused):
        disputes.record_chargeback(order.id, amount_minor=None, reason="", requested_by="support:bo", deps=deps)


def test_a_dispute_seen_before_the_credit_holds_the_credits_when_they_are_granted(deps, fake):
    made = orders.create_order(orders.PurchaseRequest("org-in", "admin-1", "payg", True, credits=CREDITS),
                               deps=deps).order
    payment = fake.pay(made.gateway_order_id, RemoteStatus.AUTHORIZED)
    opened = fake.dispute(payment.gateway_payment_id)
    deliver(deps, fake.dispute_webhook(opened))  # Razorpay does not order webhooks: the dispute comes first
    assert balance(deps) == 0
    captured = fake.set_status(payment.gateway_payment_id, RemoteStatus.CAPTURED)
    deliver(deps, fake.webhook(captured))
    assert order_row(deps, made.id).state == "paid" and balance(deps) == 0  # granted, and held at once
    deliver(deps, fake.dispute_webhook(opened, event_id="evt_dispute_again"))
    deliver(deps, fake.dispute_webhook(replace(opened, status=DisputeStatus.WON), "payment.dispute.won"))
    assert balance(deps) == CREDITS
    assert_balance_is_the_ledger_sum(deps)
