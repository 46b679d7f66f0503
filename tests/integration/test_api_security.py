"""Support and billing endpoints need a named bearer token; webhooks need only their signature."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from db.models import Order, SupportAction
from tests.runtime import app
from tests.support import AUTH, new_order, order_row

PROTECTED = [
    ("post", "/orders", {"organisation_id": "org-in", "requested_by": "admin-1", "plan": "payg", "credits": 5_000,
                         "refund_policy_accepted": True}),
    ("get", "/orders/{order_id}", None),
    ("post", "/orders/{order_id}/verify", {"payment_id": "pay_x", "signature": "0" * 64}),
    ("post", "/orders/{order_id}/recheck", {"requested_by": "mallory"}),
    ("post", "/orders/{order_id}/review", {"decision": "credit", "reason": "because", "requested_by": "mallory"}),
    ("post", "/orders/{order_id}/refunds", {"reason": "because", "requested_by": "mallory"}),
    ("post", "/orders/{order_id}/chargebacks", {"reason": "because", "requested_by": "mallory"}),
]


@pytest.fixture
def anonymous(deps, org):
    with TestClient(app) as client:
        yield client


@pytest.mark.parametrize("method, path, body", PROTECTED, ids=[f"{m} {p}" for m, p, _ in PROTECTED])
@pytest.mark.parametrize("headers, status", [
    ({}, 401), ({"Authorization": "Basic dXNlcjpwYXNz"}, 401), ({"Authorization": "Bearer wrong-token"}, 403),
], ids=["no token", "wrong scheme", "unknown token"])
def test_calls_without_a_valid_token_are_refused_and_change_nothing(anonymous, deps, method, path, body, headers,
                                                                    status):
    order = new_order(deps)
    response = getattr(anonymous, method)(path.format(order_id=order.id), headers=headers,
                                          **({"json": body} if body is not None else {}))
    assert response.status_code == status
    with deps.sessions() as session:
        assert session.execute(select(func.count()).select_from(Order)).scalar_one() == 1
        assert session.execute(select(func.count()).select_from(SupportAction)).scalar_one() == 0
    assert order_row(deps, order.id).state == "created"


def test_both_tokens_work_during_a_rotation_and_health_endpoints_are_open(anonymous, deps):
    order = new_order(deps)
    for token in ("test-token-0123456789", "rotating-out-token"):
        assert anonymous.get(f"/orders/{order.id}", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert anonymous.get("/healthz").json() == {"status": "ok"}
    ready = anonymous.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"ready": True, "database": "ok", "broker": "ok"}


def test_an_oversized_request_body_is_refused_with_413(deps, org):
    with TestClient(app, headers=AUTH) as client:
        big = {"organisation_id": "x" * (deps.settings.max_body_bytes + 10)}
        assert client.post("/orders", json=big).status_code == 413


def test_a_review_decision_credits_an_order_in_review_once_with_the_reason_audited(deps, org, simulator):
    from worker.services.poll import reconcile_order

    order = new_order(deps)
    simulator.sim.pay(order.gateway_order_id, "success", amount_minor=order.amount_minor - 1, deliver_webhooks=False)
    reconcile_order(order.id, deps=deps)
    assert order_row(deps, order.id).state == "needs_review"
    with TestClient(app, headers=AUTH) as client:
        no_reason = client.post(f"/orders/{order.id}/review", json={"decision": "credit", "requested_by": "sam"})
        assert no_reason.status_code == 422
        done = client.post(f"/orders/{order.id}/review",
                           json={"decision": "credit", "reason": "customer paid 1 paisa short, accepted",
                                 "requested_by": "sam"})
        assert done.status_code == 200 and done.json()["granted"] is True
        again = client.post(f"/orders/{order.id}/review",
                            json={"decision": "credit", "reason": "double click", "requested_by": "sam"})
        assert again.status_code == 409
    from tests.support import balance, ledger_count

    assert (order_row(deps, order.id).state, balance(deps), ledger_count(deps)) == ("paid", 5_000, 1)
    with deps.sessions() as session:
        [action] = session.execute(select(SupportAction)).scalars()
    assert (action.action, action.reason, action.requested_by) == (
        "review_credit", "customer paid 1 paisa short, accepted", "sam (token tests)")
