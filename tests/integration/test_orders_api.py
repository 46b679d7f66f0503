"""POST /orders and GET /orders/{id}: the Plan → Credits → Review rules, on Postgres and the simulator."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.runtime import app
from tests.support import AUTH, order_row


@pytest.fixture
def client(deps, org):
    with TestClient(app, headers=AUTH) as test_client:
        yield test_client


def body(**overrides):
    return {"organisation_id": "org-in", "requested_by": "admin-1", "plan": "payg", "credits": 5_000,
            "refund_policy_accepted": True, **overrides}


def test_payg_order_is_priced_in_the_region_currency_with_tax_and_created_at_the_gateway(client, deps, simulator):
    response = client.post("/orders", json=body())
    assert response.status_code == 201, response.text
    order = response.json()
    assert (order["currency"], order["subtotal_minor"], order["tax_minor"], order["amount_minor"]) == (
        "INR", 1_000_000, 180_000, 1_180_000)
    assert order["state"] == "created" and order["gateway"] == "razorpay"
    assert order["payment_button"] == "Pay with Razorpay"
    remote = next(o for o in simulator.sim.state()["razorpay"]["orders"] if o["id"] == order["gateway_order_id"])
    assert remote["receipt"] == order["order_id"] and remote["amount"] == 1_180_000
    assert order["checkout"]["order_id"] == order["gateway_order_id"]
    assert "secret" not in str(order["checkout"]).lower()


@pytest.mark.parametrize("overrides, code", [
    ({"credits": 999}, "below_minimum"),
    ({"credits": 0}, "below_minimum"),
    ({"credits": -5}, "below_minimum"),
    ({"credits": 10**12}, "above_maximum"),
    ({"plan": "enterprise"}, "enterprise_not_purchasable"),
    ({"plan": "gold"}, "unknown_plan"),
    ({"requested_by": "operator-1"}, "not_admin"),
    ({"requested_by": "nobody"}, "unknown_member"),
    ({"refund_policy_accepted": False}, "refund_policy_not_accepted"),
    ({"organisation_id": "org-nope"}, "unknown_organisation"),
    ({"plan": "custom", "credits": None}, "invalid_amount"),
], ids=lambda value: str(value))
def test_purchases_the_product_does_not_allow_are_refused_with_a_clear_error_and_store_nothing(client, deps, overrides,
                                                                                                 code):
    response = client.post("/orders", json=body(**overrides))
    assert response.status_code == 422
    assert response.json()["error"] == code and response.json()["message"]
    with deps.sessions() as session:
        from sqlalchemy import text

        assert session.execute(text("SELECT count(*) FROM orders")).scalar_one() == 0


def test_pro_and_custom_orders_add_no_credits_to_the_order(client):
    pro = client.post("/orders", json=body(plan="pro", credits=None)).json()
    custom = client.post("/orders", json=body(plan="custom", credits=None, custom_amount_minor=150_000)).json()
    assert (pro["credits"], pro["amount_minor"]) == (0, 4_999_900 + 899_982)
    assert (custom["credits"], custom["amount_minor"]) == (0, 177_000)


def test_a_gateway_failure_while_creating_the_order_answers_502_and_keeps_the_order_abandoned(client, deps, simulator):
    simulator.sim.set_knobs(error_rate=1.0)
    response = client.post("/orders", json=body())
    assert response.status_code == 502
    order = order_row(deps, response.json()["order_id"])
    assert (order.state, order.state_reason, order.gateway_order_id) == ("abandoned", "gateway_error", None)


def test_get_order_shows_payments_events_transitions_and_ledger(client, deps, simulator, web):
    created = client.post("/orders", json=body()).json()
    simulator.sim.pay(created["gateway_order_id"], "success")
    simulator.sim.wait_for_webhooks()
    from tests.support import inbox_rows
    from worker.services.inbox import process_inbox_event

    for row in inbox_rows(deps, status="pending"):
        process_inbox_event(row.id, deps=deps)
    detail = client.get(f"/orders/{created['order_id']}").json()
    assert detail["state"] == "paid"
    assert [p["status"] for p in detail["payments"]] == ["captured"]
    assert {e["event_type"] for e in detail["events"]} == {"payment.authorized", "payment.captured", "order.paid"}
    payment_id = detail["payments"][0]["payment_id"]
    [grant] = detail["ledger"]
    assert {key: grant[key] for key in ("entry", "kind", "credits", "shortfall", "money_event_id", "payment_id",
                                        "amount_minor", "currency")} == {
        "entry": "grant", "kind": "credits", "credits": 5_000, "shortfall": 0, "money_event_id": payment_id,
        "payment_id": payment_id, "amount_minor": 1_180_000, "currency": "INR"}
    assert grant["at"] and (detail["refunds"], detail["disputes"]) == ([], [])
    assert client.get("/orders/ord_unknown").status_code == 404


def test_a_recheck_that_waits_answers_with_what_the_gateway_said_and_who_asked(client, deps, simulator):
    created = client.post("/orders", json=body()).json()
    simulator.sim.pay(created["gateway_order_id"], "success", deliver_webhooks=False)
    response = client.post(f"/orders/{created['order_id']}/recheck", json={"requested_by": "support:zoe"})
    assert response.status_code == 200
    outcome = response.json()
    assert (outcome["status"], outcome["from_state"], outcome["state"]) == ("done", "created", "paid")
    assert [p["status"] for p in outcome["gateway_payments"]] == ["captured"]


def test_a_recheck_slower_than_its_time_limit_answers_202_and_still_finishes(client, deps, simulator):
    created = client.post("/orders", json=body()).json()
    simulator.sim.pay(created["gateway_order_id"], "success", deliver_webhooks=False)
    simulator.sim.set_knobs(latency_ms=700)
    response = client.post(f"/orders/{created['order_id']}/recheck",
                           json={"requested_by": "support:zoe", "wait_timeout_s": 0.2})
    assert (response.status_code, response.json()["status"]) == (202, "running")
    import time

    deadline = time.monotonic() + 10
    while order_row(deps, created["order_id"]).state != "paid" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert order_row(deps, created["order_id"]).state == "paid"


def test_a_us_organisation_pays_in_dollars_through_payglocal(client, simulator):
    response = client.post("/orders", json=body(organisation_id="org-us", requested_by="admin-us"))
    assert response.status_code == 201, response.text
    order = response.json()
    assert (order["currency"], order["amount_minor"], order["gateway"]) == ("USD", 15_000, "payglocal")
    assert order["payment_button"] == "Pay with PayGlocal"
    assert order["gateway_order_id"].startswith("gl_") and order["checkout"]["redirect_url"]
