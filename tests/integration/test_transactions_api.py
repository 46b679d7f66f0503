"""Billing & Transactions and POST /orders with an Idempotency-Key, through the real API on Postgres."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from db.models import Order, OrderRequest
from tests.runtime import app
from tests.support import AUTH, new_order, order_row
from worker.services import refunds
from worker.services.money import RefundRequest
from worker.services.poll import reconcile_order

BODY = {"organisation_id": "org-in", "requested_by": "admin-1", "plan": "payg", "credits": 2_000,
        "refund_policy_accepted": True}


@pytest.fixture
def client(deps, org):
    with TestClient(app, headers=AUTH) as test_client:
        yield test_client


def _paid(deps, simulator, credits=5_000):
    order = new_order(deps, "org-in", credits=credits)
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    reconcile_order(order.id, deps=deps)
    return order_row(deps, order.id)


def test_transactions_list_each_order_in_the_customers_words_newest_first(client, deps, simulator):
    paid, partly, whole = _paid(deps, simulator), _paid(deps, simulator), _paid(deps, simulator)
    refunds.request_refund(partly.id, RefundRequest(partly.amount_minor // 5, "a fifth", "support:a"), deps=deps)
    refunds.request_refund(whole.id, RefundRequest(None, "all", "support:a"), deps=deps)
    pending = new_order(deps, "org-in", credits=1_000)
    rows = client.get("/organisations/org-in/transactions").json()["transactions"]
    by_id = {row["order_id"]: row for row in rows}
    assert [row["order_id"] for row in rows] == [pending.id, whole.id, partly.id, paid.id]
    assert [by_id[o.id]["status"] for o in (paid, partly, whole, pending)] == ["Paid", "Partly refunded", "Refunded",
                                                                                "Pending"]
    assert [by_id[o.id]["recheck_offered"] for o in (paid, pending)] == [False, True]
    row = by_id[paid.id]
    assert (row["amount_minor"] + row["tax_minor"], row["total_minor"], row["currency"], row["gateway"]) == (
        paid.amount_minor, paid.amount_minor, "INR", "razorpay")
    only = client.get("/organisations/org-in/transactions", params={"status": ["Refunded", "Partly refunded"]})
    assert {r["order_id"] for r in only.json()["transactions"]} == {partly.id, whole.id}
    assert client.get("/organisations/org-us/transactions").json()["transactions"] == []


def test_pages_walk_every_row_once_in_a_stable_order_and_a_forged_cursor_is_refused(client, deps):
    made = [new_order(deps, "org-in", credits=1_000 + i) for i in range(7)]
    seen, cursor = [], None
    while True:
        page = client.get("/organisations/org-in/transactions",
                          params={"limit": 3, **({"cursor": cursor} if cursor else {})}).json()
        seen += [row["order_id"] for row in page["transactions"]]
        new_order(deps, "org-in", credits=1_500)  # arriving meanwhile: newer, so never on a later page
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [o.id for o in reversed(made)]
    assert client.get("/organisations/org-in/transactions", params={"cursor": "bm90LW91cnM="}).status_code == 422
    first = made[0]
    window = client.get("/organisations/org-in/transactions",
                        params={"from": first.created_at.isoformat(), "to": made[1].created_at.isoformat()})
    assert [r["order_id"] for r in window.json()["transactions"]] == [first.id]


def test_the_ledger_shows_the_balance_and_every_entry(client, deps, simulator):
    order = _paid(deps, simulator)
    refunds.request_refund(order.id, RefundRequest(order.amount_minor // 2, "half", "support:a"), deps=deps)
    ledger = client.get("/organisations/org-in/ledger").json()
    assert (ledger["balance"], ledger["ledger_sum"]) == (2_500, 2_500)
    assert [(e["entry"], e["credits"]) for e in ledger["entries"]] == [("reversal", -2_500), ("grant", 5_000)]
    assert client.get("/organisations/nobody/ledger").status_code == 404


def test_the_same_key_and_body_is_the_same_order_another_body_is_refused(client, deps):
    key = {"Idempotency-Key": "checkout-42-attempt"}
    first = client.post("/orders", json=BODY, headers=key)
    again = client.post("/orders", json=BODY, headers=key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()  # the same order and the same checkout
    other = client.post("/orders", json={**BODY, "credits": 3_000}, headers=key)
    assert other.status_code == 422 and other.json()["error"] == "KeyReused"
    with deps.sessions() as session:
        assert session.execute(select(func.count()).select_from(Order)).scalar_one() == 1
    assert client.post("/orders", json=BODY).status_code == 201  # no key: a new order each time


def test_a_refused_purchase_frees_its_key_and_racing_requests_with_one_key_make_one_order(client, deps):
    key = {"Idempotency-Key": "checkout-43-attempt"}
    assert client.post("/orders", json={**BODY, "credits": 10}, headers=key).status_code == 422  # below minimum
    with deps.sessions() as session:
        assert session.execute(select(func.count()).select_from(OrderRequest)).scalar_one() == 0
    start = threading.Barrier(6)

    def pay(_):
        start.wait(timeout=30)
        return client.post("/orders", json=BODY, headers={"Idempotency-Key": "checkout-44-attempt"})

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(pay, range(6)))
    assert {a.status_code for a in answers} <= {200, 201, 409} and sum(a.status_code == 201 for a in answers) == 1
    assert len({a.json()["order_id"] for a in answers if a.status_code in (200, 201)}) == 1
    with deps.sessions() as session:
        assert session.execute(select(func.count()).select_from(Order)).scalar_one() == 1


def test_verify_can_wait_for_the_outcome_the_dashboards_spinner_shows(client, deps, simulator, broker, worker):
    order = new_order(deps, "org-in", credits=2_000)
    paid = simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    body = {"payment_id": paid["razorpay_payment_id"], "signature": paid["razorpay_signature"], "wait": True}
    answer = client.post(f"/orders/{order.id}/verify", json=body)
    assert answer.status_code == 200, answer.text
    done = answer.json()
    assert (done["status"], done["order"]["state"], done["balance"]) == ("done", "paid", 2_000)
    again = client.post(f"/orders/{order.id}/verify", json=body)  # the same callback: its outcome at once
    assert (again.status_code, again.json()["status"], again.json()["order"]["state"]) == (200, "done", "paid")


def test_verify_answers_202_when_no_worker_finishes_in_time(client, deps, simulator):
    order = new_order(deps, "org-in", credits=2_000)
    paid = simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    answer = client.post(f"/orders/{order.id}/verify", json={"payment_id": paid["razorpay_payment_id"],
                                                             "signature": paid["razorpay_signature"],
                                                             "wait": True, "wait_timeout_s": 0.3})
    assert answer.status_code == 202 and answer.json()["status"] == "queued"
