"""POST /orders/{id}/refunds and /chargebacks, and the order's refunds, disputes and ledger in GET /orders/{id}:
support's refunds through the real API, the services, Postgres and the simulator's refund endpoints."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from db.models import Organisation, Refund, SupportAction
from tests.runtime import app
from tests.support import AUTH, GATEWAY_ORGS, balance, new_order, order_row
from worker.services.poll import reconcile_order


@pytest.fixture
def client(deps, org):
    with TestClient(app, headers=AUTH) as test_client:
        yield test_client


def paid_order(deps, simulator, org="org-in"):
    order = new_order(deps, org)
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    reconcile_order(order.id, deps=deps)
    assert order_row(deps, order.id).state == "paid"
    return order


def spend(deps, org: str, credits: int) -> None:
    """The customer uses credits (the product does that outside this service)."""
    with deps.sessions() as session:
        session.execute(update(Organisation).where(Organisation.id == org)
                        .values(credit_balance=Organisation.credit_balance - credits))
        session.commit()


def refund_rows(deps) -> list[Refund]:
    with deps.sessions() as session:
        return list(session.execute(select(Refund).order_by(Refund.id)).scalars())


def actions(deps) -> list[SupportAction]:
    with deps.sessions() as session:
        return list(session.execute(select(SupportAction).order_by(SupportAction.id)).scalars())


def test_a_full_refund_is_processed_reverses_the_credits_once_and_a_repeat_is_the_same_refund(client, deps, simulator,
                                                                                            gateway):
    order = paid_order(deps, simulator, gateway.org)
    body = {"reason": "ticket 4711: unused credits", "requested_by": "sam"}
    response = client.post(f"/orders/{order.id}/refunds", json=body)
    assert response.status_code == 201, response.text
    done = response.json()
    assert (done["state"], done["amount_minor"], done["currency"], done["origin"], done["repeated"]) == (
        "processed", order.amount_minor, order.currency, "support", False)
    assert done["gateway_refund_id"] and done["order_id"] == order.id
    assert balance(deps, gateway) == 0 and order_row(deps, order.id).state == "paid"  # a refund leaves it paid

    again = client.post(f"/orders/{order.id}/refunds", json=body)
    assert again.status_code == 200 and again.json() == {**done, "repeated": True}
    assert len(refund_rows(deps)) == 1 and balance(deps, gateway) == 0

    detail = client.get(f"/orders/{order.id}").json()
    [refund] = detail["refunds"]
    assert (refund["state"], refund["gateway_refund_id"], refund["origin"], refund["full"], refund["reason"],
            refund["requested_by"]) == ("processed", done["gateway_refund_id"], "support", True, body["reason"],
                                        "sam (token tests)")
    assert [(e["entry"], e["kind"], e["credits"], e["shortfall"]) for e in detail["ledger"]] == [
        ("grant", "credits", 5_000, 0), ("reversal", "refund", -5_000, 0)]
    [action] = actions(deps)
    assert (action.action, action.requested_by, action.reason) == ("refund", "sam (token tests)", body["reason"])


def test_an_idempotency_key_makes_a_partial_refund_once_and_refuses_another_refund_under_it(client, deps, simulator):
    order = paid_order(deps, simulator)
    half = order.amount_minor // 2
    key = {"Idempotency-Key": "support-4711-partial"}
    body = {"amount_minor": half, "reason": "half of the credits unused", "requested_by": "sam"}
    first = client.post(f"/orders/{order.id}/refunds", json=body, headers=key)
    assert first.status_code == 201, first.text
    assert (first.json()["state"], first.json()["amount_minor"]) == ("processed", half)
    assert balance(deps) == 2_500
    repeat = client.post(f"/orders/{order.id}/refunds", json={**body, "reason": "retry after a timeout"}, headers=key)
    assert repeat.status_code == 200 and repeat.json()["refund_id"] == first.json()["refund_id"]
    assert repeat.json()["repeated"] is True
    other = client.post(f"/orders/{order.id}/refunds", json={**body, "amount_minor": half - 1}, headers=key)
    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused"
    assert len(refund_rows(deps)) == 1 and balance(deps) == 2_500


@pytest.mark.parametrize("case, code", [
    ({"reason": "   "}, "reason_required"),
    ({"reason": ""}, "reason_required"),
    ({"amount_minor": 10**9}, "above_captured"),
    ({"payment_id": "pay_NotThisOrders"}, "unknown_payment"),
    ({"headers": {"Idempotency-Key": "short"}}, "bad_idempotency_key"),
    ({"headers": {"Idempotency-Key": "has spaces in it"}}, "bad_idempotency_key"),
], ids=lambda value: str(value))
def test_refunds_the_rules_do_not_allow_are_refused_with_their_code_and_start_nothing(client, deps, simulator, case,
                                                                                     code):
    order = paid_order(deps, simulator)
    headers = case.pop("headers", {})
    response = client.post(f"/orders/{order.id}/refunds", json={"reason": "ticket 1", "requested_by": "sam", **case},
                           headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code and response.json()["detail"]
    assert refund_rows(deps) == [] and actions(deps) == [] and balance(deps) == 5_000
    assert simulator.sim.refunds_of(order_row(deps, order.id).granted_payment_id) == []


def test_an_unpaid_order_and_a_payment_never_captured_have_nothing_to_refund(client, deps, simulator):
    unpaid = new_order(deps)
    response = client.post(f"/orders/{unpaid.id}/refunds", json={"reason": "ticket 2", "requested_by": "sam"})
    assert (response.status_code, response.json()["code"]) == (422, "order_not_paid")
    declined = new_order(deps)
    payment = simulator.sim.pay(declined.gateway_order_id, "decline", deliver_webhooks=False)
    reconcile_order(declined.id, deps=deps)
    response = client.post(f"/orders/{declined.id}/refunds",
                           json={"reason": "ticket 3", "requested_by": "sam", "payment_id": payment["id"]})
    assert (response.status_code, response.json()["code"]) == (422, "not_captured")
    assert refund_rows(deps) == []


def test_spent_credits_are_refunded_only_with_an_override_and_the_shortfall_is_recorded(client, deps, simulator):
    order = paid_order(deps, simulator)
    spend(deps, "org-in", 4_000)
    body = {"reason": "ticket 5: wants everything back", "requested_by": "sam"}
    refused = client.post(f"/orders/{order.id}/refunds", json=body)
    assert (refused.status_code, refused.json()["code"]) == (422, "credits_spent")
    assert "1000 of the order's are unspent" in refused.json()["detail"]
    unspent = client.post(f"/orders/{order.id}/refunds", json={**body, "amount_minor": order.amount_minor // 5})
    assert unspent.status_code == 201 and unspent.json()["state"] == "processed"
    assert balance(deps) == 0
    override = client.post(f"/orders/{order.id}/refunds",
                           json={**body, "reason": "ticket 5: outage, goodwill approved", "override_spent": True})
    assert override.status_code == 201, override.text
    assert override.json()["amount_minor"] == order.amount_minor - order.amount_minor // 5
    detail = client.get(f"/orders/{order.id}").json()
    assert [(e["entry"], e["credits"], e["shortfall"]) for e in detail["ledger"]] == [
        ("grant", 5_000, 0), ("reversal", -1_000, 0), ("reversal", 0, 4_000)]
    assert [r["override_spent"] for r in detail["refunds"]] == [False, True]
    assert balance(deps) == 0  # never below zero by default


def test_a_refund_the_gateway_refuses_is_failed_and_reverses_nothing(client, deps, simulator):
    order = paid_order(deps, simulator)
    simulator.sim.refund_behaviour(fail_next=1)
    response = client.post(f"/orders/{order.id}/refunds", json={"reason": "ticket 6", "requested_by": "sam"})
    assert response.status_code == 201, response.text
    assert response.json()["state"] == "failed"
    assert balance(deps) == 5_000
    [refund] = client.get(f"/orders/{order.id}").json()["refunds"]
    assert refund["state"] == "failed" and refund["next_check_at"] is None


def test_refunds_and_chargebacks_of_an_unknown_order_are_404(client):
    for path in ("refunds", "chargebacks"):
        response = client.post(f"/orders/ord_unknown/{path}", json={"reason": "ticket 7", "requested_by": "sam"})
        assert (response.status_code, response.json()["error"]) == (404, "unknown_order")


@pytest.mark.parametrize("body", [
    {"requested_by": "sam"},
    {"reason": "x", "requested_by": ""},
    {"reason": "x", "requested_by": "sam", "amount_minor": 0},
    {"reason": "x", "requested_by": "sam", "amount_minor": -5},
    {"reason": "x\x00", "requested_by": "sam"}, {"reason": "x", "requested_by": "sam", "frobnicate": True},
], ids=["no reason", "no requester", "zero", "negative", "NUL", "unknown field"])
def test_malformed_bodies_are_refused_before_the_service(client, deps, simulator, body):
    order = paid_order(deps, simulator)
    for path in ("refunds", "chargebacks"):
        assert client.post(f"/orders/{order.id}/{path}", json=body).status_code == 422
    assert refund_rows(deps) == [] and balance(deps) == 5_000


def test_a_payglocal_chargeback_recorded_by_support_reverses_once_and_shows_as_a_lost_dispute(client, deps, simulator):
    us = GATEWAY_ORGS["payglocal"]
    order = paid_order(deps, simulator, us.org)
    body = {"reason": "GCC case 981: chargeback", "requested_by": "sam"}
    response = client.post(f"/orders/{order.id}/chargebacks", json=body)
    assert response.status_code == 201, response.text
    done = response.json()
    assert (done["state"], done["amount_minor"], done["currency"], done["repeated"]) == (
        "lost", order.amount_minor, "USD", False)
    again = client.post(f"/orders/{order.id}/chargebacks", json=body)
    assert again.status_code == 200 and again.json() == {**done, "repeated": True}
    assert balance(deps, us) == 0
    detail = client.get(f"/orders/{order.id}").json()
    [dispute] = detail["disputes"]
    assert (dispute["dispute_id"], dispute["state"], dispute["phase"], dispute["source"], dispute["held"],
            dispute["requested_by"]) == (done["dispute_id"], "lost", "chargeback", "support", True, "sam (token tests)")
    assert [(e["entry"], e["kind"], e["credits"]) for e in detail["ledger"]] == [
        ("grant", "credits", 5_000), ("reversal", "chargeback", -5_000)]
    assert [a.action for a in actions(deps)] == ["chargeback"]


@pytest.mark.parametrize("case, code", [
    ({"reason": " "}, "reason_required"),
    ({"amount_minor": 10**9}, "above_captured"),
], ids=["blank reason", "above the order"])
def test_chargebacks_the_rules_do_not_allow_are_refused_with_their_code(client, deps, simulator, case, code):
    order = paid_order(deps, simulator, "org-us")
    response = client.post(f"/orders/{order.id}/chargebacks",
                           json={"reason": "GCC case 1", "requested_by": "sam", **case})
    assert (response.status_code, response.json()["code"]) == (422, code)
    unpaid = new_order(deps, "org-us")
    response = client.post(f"/orders/{unpaid.id}/chargebacks", json={"reason": "GCC case 2", "requested_by": "sam"})
    assert (response.status_code, response.json()["code"]) == (422, "order_not_paid")
    assert balance(deps, "org-us") == 5_000 and actions(deps) == []


def test_a_dispute_webhook_for_a_payment_of_an_order_we_do_not_hold_is_kept_rejected_and_reverses_nothing(
        deps, org, simulator, web):
    import json

    import httpx

    from db.models import Dispute
    from gateways.razorpay.signature import sign
    from tests.support import inbox_rows
    from worker.services.inbox import process_inbox_event

    paid_order(deps, simulator)
    payment = {"id": "pay_NotOurs00000001", "entity": "payment", "amount": 39_000, "currency": "INR",
               "status": "captured", "order_id": "order_NotOurs0000001", "captured": True, "notes": [],
               "error_code": None, "created_at": 1767000000}
    dispute = {"id": "disp_NotOurs0000001", "entity": "dispute", "payment_id": payment["id"], "amount": 39_000,
               "currency": "INR", "amount_deducted": 0, "reason_code": "chargeback", "respond_by": 1767600000,
               "status": "open", "phase": "chargeback", "created_at": 1767000100}
    body = json.dumps({"entity": "event", "account_id": "acc_Test", "event": "payment.dispute.created",
                       "contains": ["payment", "dispute"],
                       "payload": {"payment": {"entity": payment}, "dispute": {"entity": dispute}},
                       "created_at": 1767000101}).encode()
    headers = {"X-Razorpay-Signature": sign(simulator.config.webhook_secret, body),
               "X-Razorpay-Event-Id": "evt_dispute_0001", "Content-Type": "application/json"}
    with httpx.Client(base_url=web.base_url, timeout=10) as client:
        response = client.post("/webhooks/razorpay", content=body, headers=headers)
    assert (response.status_code, response.json()["status"]) == (200, "accepted")
    [row] = inbox_rows(deps, event_id="evt_dispute_0001")
    process_inbox_event(row.id, deps=deps)
    [row] = inbox_rows(deps, event_id="evt_dispute_0001")
    assert row.status == "rejected" and row.reason == "unknown order order_NotOurs0000001"
    with deps.sessions() as session:
        assert session.execute(select(Dispute)).scalars().all() == []
    assert balance(deps) == 5_000
