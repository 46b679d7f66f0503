"""The defects an adversarial review found (issue "Correctness"), one test each, driven at the HTTP
boundary: the simulator over HTTP, webhooks posted to the web app, never a patched function of ours.

Each test says which defect it pins; each failed on the code before the fix.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest
from dramatiq.brokers.redis import RedisBroker
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from db.models import GatewayPayment, Organisation
from gateways.razorpay.signature import sign
from tests.conftest import settings_for
from tests.runtime import app
from tests.support import AUTH, GATEWAY_ORGS, balance, inbox_rows, ledger_count, new_order, order_row
from worker.clock import FrozenClock
from worker.services.callback import verify_payment
from worker.services.inbox import process_inbox_event
from worker.services.intake import store_webhook
from worker.services.poll import reconcile_order
from worker.services.recheck import recheck_order
from worker.services.review import resolve_review


@pytest.fixture
def clock(deps):
    deps.clock = FrozenClock()
    return deps.clock


def events_of(simulator, gateway_order_id: str, name: str | None = None):
    """The simulator's webhook events about one order (exact bytes and headers), oldest first."""
    found = [e for e in simulator.sim.webhook_events() if gateway_order_id.encode() in e.body]
    return [e for e in found if name is None or e.event == name]


def deliver(deps, event, *, event_id: str | None = None):
    """Post one webhook through intake (as the web app does) and process what it stored."""
    headers = dict(event.headers)
    if event_id is not None:
        headers["X-Razorpay-Event-Id"] = event_id
    stored = store_webhook("razorpay", event.body, headers, deps=deps)
    if stored.enqueue:
        process_inbox_event(stored.inbox_id, deps=deps)
    return stored


def payments(deps, order_id: str) -> dict[str, GatewayPayment]:
    with deps.sessions() as session:
        rows = session.execute(select(GatewayPayment).where(GatewayPayment.order_id == order_id)).scalars()
        return {row.gateway_payment_id: row for row in rows}


# --- 1. a stale snapshot never credits a refunded payment ------------------------------------------------------

def test_defect_1_a_late_captured_webhook_after_the_refund_credits_nothing(deps, org, simulator):
    order = new_order(deps)
    paid = simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    simulator.sim.refund(paid["id"], deliver_webhooks=False)
    refund = events_of(simulator, order.gateway_order_id, "refund.processed")[0]
    deliver(deps, refund)  # Razorpay does not order webhooks: the refund arrives first
    for stale in events_of(simulator, order.gateway_order_id, "payment.captured") + \
            events_of(simulator, order.gateway_order_id, "order.paid"):
        deliver(deps, stale)
    assert ledger_count(deps) == 0 and balance(deps) == 0
    assert payments(deps, order.id)[paid["id"]].status == "refunded"


def test_defect_1_a_poll_that_saw_the_refund_is_not_undone_by_a_stale_webhook(deps, org, simulator, clock):
    order = new_order(deps)
    paid = simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    simulator.sim.refund(paid["id"], deliver_webhooks=False)
    clock.advance(deps.policy.abandon_after + timedelta(minutes=1))
    reconcile_order(order.id, deps=deps)
    assert order_row(deps, order.id).state == "abandoned"
    deliver(deps, events_of(simulator, order.gateway_order_id, "payment.captured")[0])
    assert order_row(deps, order.id).state == "abandoned" and ledger_count(deps) == 0


def test_defect_1_a_signed_body_replayed_with_a_fresh_event_id_is_harmless(deps, org, simulator):
    """``X-Razorpay-Event-Id`` is not covered by the signature: a replay passes intake as a new event."""
    order = new_order(deps)
    paid = simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    captured = events_of(simulator, order.gateway_order_id, "payment.captured")[0]
    deliver(deps, captured)
    assert balance(deps) == 5_000
    simulator.sim.refund(paid["id"], deliver_webhooks=False)
    deliver(deps, events_of(simulator, order.gateway_order_id, "refund.processed")[0])
    assert balance(deps) == 0  # the refund took the credits back (issue 14)
    for n in range(3):
        assert deliver(deps, captured, event_id=f"evt_replayed_{n:08d}").status == "accepted"
    assert ledger_count(deps) == 1 and balance(deps) == 0  # one grant, never a second
    assert order_row(deps, order.id).state == "paid"


# --- 2. review decisions on a credited order --------------------------------------------------------------------

def pay_twice(deps, simulator, order) -> tuple[dict, dict]:
    """The customer paid twice (a second checkout tab): a second captured payment on the credited order."""
    first = simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    reconcile_order(order.id, deps=deps)
    extra = dict(simulator.sim.razorpay.payments[first["id"]], id="pay_ExtraPayment0001", status="captured")
    with simulator.sim.razorpay.lock:
        simulator.sim.razorpay.payments[extra["id"]] = extra
        simulator.sim.razorpay._order_payments[order.gateway_order_id].append(extra["id"])
    return first, extra


@pytest.fixture
def review_duplicates(deps):
    """The duplicate-payment policy that sends a second payment to a person (the default refunds it)."""
    deps.policy = replace(deps.policy, duplicate_payment="review")


@pytest.mark.parametrize("decision", ["close", "refund", "credit"])
def test_defect_2_any_input_after_a_review_decision_on_a_credited_order_is_safe(deps, org, simulator, web, decision,
                                                                               review_duplicates):
    order = new_order(deps)
    paid, _ = pay_twice(deps, simulator, order)
    reconcile_order(order.id, deps=deps)
    assert order_row(deps, order.id).state == "needs_review"
    resolution = resolve_review(order.id, decision, reason="customer keeps the credits", requested_by="support:ann",
                                deps=deps)
    assert resolution.state == "paid" and not resolution.granted  # the credit stands: the state says so
    assert payments(deps, order.id)[paid["id"]].flag_reason != "refund_requested"  # the credited one is not flagged
    outcome = recheck_order(order.id, "support:bob", deps=deps)  # was a 500 (IllegalTransition)
    assert outcome.state == "paid"
    reconcile_order(order.id, deps=deps)
    for event in events_of(simulator, order.gateway_order_id):
        deliver(deps, event, event_id=f"{event.event_id}_again")
    for row in inbox_rows(deps):  # what the simulator posted to the web app itself (the refund's webhooks)
        process_inbox_event(row.id, deps=deps)
    assert {row.status for row in inbox_rows(deps)} <= {"processed"}
    assert ledger_count(deps) == 1 and balance(deps) == 5_000 and order_row(deps, order.id).state == "paid"


def test_defect_2_refund_on_a_credited_order_refunds_only_the_extra_payment(deps, org, simulator, review_duplicates):
    order = new_order(deps)
    first, extra = pay_twice(deps, simulator, order)
    reconcile_order(order.id, deps=deps)
    assert order_row(deps, order.id).state_reason == "second_captured_payment"
    resolution = resolve_review(order.id, "refund", reason="paid twice", requested_by="support:ann", deps=deps)
    flags = {pid: row.flag_reason for pid, row in payments(deps, order.id).items()}
    assert flags == {first["id"]: None, extra["id"]: "refund_requested"}
    assert [(r.origin, r.amount_minor) for r in resolution.refunds] == [("review", order.amount_minor)]
    assert [r["payment_id"] for r in simulator.sim.refunds_of(extra["id"])] == [extra["id"]]
    assert simulator.sim.refunds_of(first["id"]) == [] and balance(deps) == 5_000  # the credit stands
    assert order_row(deps, order.id).state == "paid" and ledger_count(deps) == 1


def test_defect_2_an_uncredited_order_closed_by_support_is_closed_and_takes_new_input(deps, org, simulator, web):
    order = new_order(deps)
    simulator.sim.pay(order.gateway_order_id, "success", amount_minor=order.amount_minor - 100, deliver_webhooks=False)
    reconcile_order(order.id, deps=deps)
    resolve_review(order.id, "close", reason="wrong amount, refunded by hand", requested_by="support:ann", deps=deps)
    assert order_row(deps, order.id).state == "closed" and order_row(deps, order.id).next_check_at is None
    recheck_order(order.id, "support:bob", deps=deps)
    for event in events_of(simulator, order.gateway_order_id):
        deliver(deps, event)
    assert order_row(deps, order.id).state == "closed" and ledger_count(deps) == 0


# --- 3. late authorisations on auto-capture orders --------------------------------------------------------------

def test_defect_3_a_late_authorisation_past_the_auto_capture_window_is_captured_and_credited(deps, org, simulator):
    order = new_order(deps)  # auto-capture, 12-minute window
    attempt = simulator.sim.pay(order.gateway_order_id, "timeout", deliver_webhooks=False)
    late = simulator.sim.late_authorize(attempt["id"], deliver_webhooks=False, minutes_after_creation=40)
    assert late["status"] == "authorized"  # Razorpay leaves it: it would be auto-refunded within days
    for event in events_of(simulator, order.gateway_order_id):
        deliver(deps, event)
    assert simulator.sim.razorpay.payments[attempt["id"]]["status"] == "captured"
    assert order_row(deps, order.id).state == "paid" and ledger_count(deps) == 1


# --- 4. an untouched PayGlocal order ------------------------------------------------------------------------------

def test_defect_4_an_untouched_payglocal_order_is_abandoned_and_never_polled_past_its_horizon(deps, org, simulator,
                                                                                             clock):
    order = new_order(deps, GATEWAY_ORGS["payglocal"])  # the customer never opens the page: CREATED forever
    reconcile_order(order.id, deps=deps)
    assert order_row(deps, order.id).state == "pending"  # a transaction exists, nothing more
    clock.advance(deps.policy.abandon_after + timedelta(minutes=1))
    reconcile_order(order.id, deps=deps)
    stored = order_row(deps, order.id)
    assert (stored.state, stored.state_reason) == ("abandoned", "no_attempt")
    clock._now = order.created_at + deps.policy.late_payment_horizon + timedelta(minutes=1)
    reconcile_order(order.id, deps=deps)
    assert order_row(deps, order.id).next_check_at is None


# --- 6. a NUL byte in a webhook's claimed id ------------------------------------------------------------------------

def test_defect_6_a_webhook_naming_an_id_with_a_nul_byte_is_stored_and_answered_without_5xx(deps, org, web):
    body = json.dumps({"event": "payment.captured", "payload": {"payment": {"entity": {
        "id": "pay_x", "order_id": "order_\u0000evil", "amount": 1, "currency": "INR", "status": "captured"}}}}
    ).encode()
    with httpx.Client(base_url=web.base_url, timeout=10) as client:
        forged = client.post("/webhooks/razorpay", content=body, headers={"Content-Type": "application/json",
                                                                          "X-Razorpay-Signature": "0" * 64})
    assert forged.status_code == 400
    [row] = inbox_rows(deps)
    assert row.status == "rejected" and row.body == body and row.reason.startswith("bad_signature")


def test_defect_6_a_signed_webhook_with_a_nul_byte_in_its_payment_id_is_kept_and_acknowledged(deps, org, simulator,
                                                                                              web):
    order = new_order(deps)
    body = json.dumps({"event": "payment.captured", "payload": {"payment": {"entity": {
        "id": "pay_\u0000x", "order_id": order.gateway_order_id, "amount": order.amount_minor, "currency": "INR",
        "status": "captured"}}}}).encode()
    headers = {"Content-Type": "application/json", "X-Razorpay-Event-Id": "evt_nul_000001",
               "X-Razorpay-Signature": sign(simulator.config.webhook_secret, body)}
    with httpx.Client(base_url=web.base_url, timeout=10) as client:
        response = client.post("/webhooks/razorpay", content=body, headers=headers)
    assert response.status_code == 200 and response.json()["status"] == "rejected"
    assert [row.status for row in inbox_rows(deps)] == ["rejected"] and ledger_count(deps) == 0


# --- 8. needs_review with a credit ------------------------------------------------------------------------------------

def test_defect_8_a_good_capture_next_to_an_odd_one_goes_to_review_without_credit(deps, org, simulator):
    order = new_order(deps)
    simulator.sim.pay(order.gateway_order_id, "timeout", deliver_webhooks=False)
    good = simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    with simulator.sim.razorpay.lock:  # a second attempt for another amount, captured too, seen in the same poll
        odd = dict(simulator.sim.razorpay.payments[good["id"]], id="pay_OddAmount00001", amount=order.amount_minor - 1)
        simulator.sim.razorpay.payments[odd["id"]] = odd
        simulator.sim.razorpay._order_payments[order.gateway_order_id].append(odd["id"])
    reconcile_order(order.id, deps=deps)
    stored = order_row(deps, order.id)
    assert (stored.state, stored.state_reason) == ("needs_review", "amount_or_currency_mismatch")
    assert ledger_count(deps) == 0 and balance(deps) == 0
    resolve_review(order.id, "credit", reason="the right payment is there", requested_by="support:ann", deps=deps)
    assert ledger_count(deps) == 1 and balance(deps) == 5_000
    with deps.sessions() as session:
        [entry] = session.execute(select(GatewayPayment.gateway_payment_id).where(
            GatewayPayment.flag_reason.is_(None), GatewayPayment.order_id == order.id,
            GatewayPayment.status == "captured")).scalars()
    assert entry == good["id"]


# --- 9. Pro for an Enterprise organisation -------------------------------------------------------------------------

def test_defect_9_buying_pro_online_for_an_enterprise_organisation_is_refused(deps, org):
    with deps.sessions.begin() as session:
        session.get(Organisation, "org-in").plan = "enterprise"
    with TestClient(app, headers=AUTH) as client:
        response = client.post("/orders", json={"organisation_id": "org-in", "requested_by": "admin-1", "plan": "pro",
                                                "refund_policy_accepted": True})
    assert response.status_code == 422 and response.json()["error"] == "enterprise_organisation"
    with deps.sessions() as session:
        assert session.get(Organisation, "org-in").plan == "enterprise"


# --- 10. freshness and secrets are intake rules ------------------------------------------------------------------

def test_defect_10_a_stored_webhook_is_applied_after_its_secret_was_rotated_out(deps, org, simulator, pg_url,
                                                                                 web_server):
    from worker.deps import build_deps

    order = new_order(deps)
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    stored = store_webhook("razorpay", *(lambda e: (e.body, e.headers))(
        events_of(simulator, order.gateway_order_id, "payment.captured")[0]), deps=deps)
    settings = settings_for(pg_url, simulator, web_server.base_url)
    rotated = build_deps(settings.model_copy(update={
        "razorpay_webhook_secret": SecretStr("a-new-secret-after-rotation")}))
    try:
        process_inbox_event(stored.inbox_id, deps=rotated)
    finally:
        rotated.engine.dispose()
    assert [row.status for row in inbox_rows(deps)] == ["processed"] and balance(deps) == 5_000


def test_defect_10_a_payglocal_callback_verified_when_stored_is_applied_however_slow_the_queue(deps, org, simulator,
                                                                                               web, pg_url,
                                                                                               web_server):
    from worker.deps import build_deps

    order = new_order(deps, GATEWAY_ORGS["payglocal"])
    simulator.sim.pay(order.gateway_order_id, "success")
    assert simulator.sim.wait_for_webhooks(timeout=10)
    [row] = inbox_rows(deps, status="pending")
    slow = build_deps(settings_for(pg_url, simulator, web_server.base_url, payglocal_callback_max_age_s=0))
    try:  # to this worker the token is far older than 15 minutes: freshness was checked at intake
        process_inbox_event(row.id, deps=slow)
    finally:
        slow.engine.dispose()
    assert order_row(deps, order.id).state == "paid" and balance(deps, GATEWAY_ORGS["payglocal"]) == 5_000


# --- 11. Custom payments below the gateway minimum --------------------------------------------------------------

def test_defect_11_a_custom_payment_below_the_gateway_minimum_is_refused_at_quote_time(deps, org, simulator):
    with TestClient(app, headers=AUTH) as client:
        response = client.post("/orders", json={"organisation_id": "org-in", "requested_by": "admin-1",
                                                "plan": "custom", "custom_amount_minor": 50,
                                                "refund_policy_accepted": True})
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "below_gateway_minimum" and "1.00 INR" in response.json()["message"]
    assert simulator.sim.state()["razorpay"]["orders"] == []
    with deps.sessions() as session:
        assert session.execute(select(Organisation)).scalars().all()  # nothing else changed
    assert order_row(deps, "ord_none") is None


# --- 12. POST /verify with the broker down ------------------------------------------------------------------------

def test_defect_12_a_callback_posted_while_redis_is_down_is_stored_and_answered_202(deps, org, simulator, actors):
    actor = actors.process_inbox_event
    from worker.services.sweep import requeue_stale_inbox

    order = new_order(deps)
    paid = simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    working, actor.broker = actor.broker, RedisBroker(url="redis://127.0.0.1:1/0")  # nothing listens there
    try:
        with TestClient(app, headers=AUTH) as client:
            response = client.post(f"/orders/{order.id}/verify", json={"payment_id": paid["razorpay_payment_id"],
                                                                      "signature": paid["razorpay_signature"]})
    finally:
        actor.broker = working
    assert response.status_code == 202 and response.json()["status"] == "queued"
    [row] = inbox_rows(deps)
    assert (row.kind, row.status, row.gateway_payment_id) == ("callback", "pending", paid["razorpay_payment_id"])
    deps.clock = FrozenClock(row.received_at + timedelta(minutes=2))
    assert requeue_stale_inbox(deps=deps) == [row.id]  # the sweep sends it again once the broker is back
    process_inbox_event(row.id, deps=deps)
    assert order_row(deps, order.id).state == "paid" and balance(deps) == 5_000


def test_a_recheck_asked_without_waiting_while_redis_is_down_answers_503_not_500(deps, org, actors):
    """Found by make chaos (a Redis restart): the recheck could not be queued and the API answered 500."""
    actor = actors.recheck_order
    order = new_order(deps)
    working, actor.broker = actor.broker, RedisBroker(url="redis://127.0.0.1:1/0")  # nothing listens there
    try:
        with TestClient(app, headers=AUTH) as client:
            response = client.post(f"/orders/{order.id}/recheck", json={"requested_by": "support:a", "wait": False})
    finally:
        actor.broker = working
    assert (response.status_code, response.json()["error"], response.headers["retry-after"]) == (
        503, "queue_unavailable", "5")


def test_defect_12_a_callback_with_a_bad_signature_is_kept_and_answered_400(deps, org, simulator):
    order = new_order(deps)
    paid = simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    with TestClient(app, headers=AUTH) as client:
        response = client.post(f"/orders/{order.id}/verify", json={"payment_id": paid["razorpay_payment_id"],
                                                                  "signature": "0" * 64})
    assert response.status_code == 400 and response.json()["status"] == "rejected"
    [row] = inbox_rows(deps)
    assert row.status == "rejected" and row.reason.startswith("bad_signature")


# --- 14. follow-ups run before the row is processed ------------------------------------------------------------------

def test_defect_14_a_capture_that_fails_leaves_the_webhook_pending_and_its_retry_finishes(deps, org, simulator):
    order = new_order(deps)
    attempt = simulator.sim.pay(order.gateway_order_id, "timeout", deliver_webhooks=False)
    simulator.sim.late_authorize(attempt["id"], deliver_webhooks=False)  # past the window: stays authorised
    authorized = events_of(simulator, order.gateway_order_id, "payment.authorized")[0]
    stored = store_webhook("razorpay", authorized.body, authorized.headers, deps=deps)
    simulator.sim.set_knobs(error_rate=1.0)  # the capture request fails
    with pytest.raises(Exception) as failed:
        process_inbox_event(stored.inbox_id, deps=deps)
    assert type(failed.value).__name__ in ("GatewayTransient", "CircuitOpen")
    assert [row.status for row in inbox_rows(deps)] == ["pending"]
    simulator.sim.set_knobs(error_rate=0.0)
    process_inbox_event(stored.inbox_id, deps=deps)  # the message's retry
    assert [row.status for row in inbox_rows(deps)] == ["processed"]
    assert simulator.sim.razorpay.payments[attempt["id"]]["status"] == "captured" and balance(deps) == 5_000


def test_defect_14_a_callback_whose_gateway_check_fails_stays_pending_until_it_is_done(deps, org, simulator):
    order = new_order(deps)
    paid = simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    simulator.sim.set_knobs(error_rate=1.0)
    with pytest.raises(Exception):  # noqa: B017  (whichever error the failed check raises; the inbox row is the point)
        verify_payment(order.id, paid["razorpay_payment_id"], paid["razorpay_signature"], deps=deps)
    assert [row.status for row in inbox_rows(deps)] == ["pending"]
    simulator.sim.set_knobs(error_rate=0.0)
    verify_payment(order.id, paid["razorpay_payment_id"], paid["razorpay_signature"], deps=deps)  # redelivered
    assert [row.status for row in inbox_rows(deps)] == ["processed"] and balance(deps) == 5_000
