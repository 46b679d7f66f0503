"""Webhook intake over HTTP: verify on the raw bytes, store first, dedupe, keep what is rejected."""

from __future__ import annotations

import json

import httpx
import pytest

from gateways.razorpay.signature import sign
from tests.support import inbox_rows, new_order


@pytest.fixture
def post(web):
    with httpx.Client(base_url=web.base_url, timeout=10) as client:
        yield lambda body, **headers: client.post("/webhooks/razorpay", content=body, headers=headers)


def signed_headers(simulator, body: bytes, event_id: str = "evt_test_0001") -> dict[str, str]:
    return {"X-Razorpay-Signature": sign(simulator.config.webhook_secret, body), "X-Razorpay-Event-Id": event_id,
            "Content-Type": "application/json"}


def captured_event(order, payment_id="pay_TestPayment0001", amount=None) -> bytes:
    payment = {"id": payment_id, "entity": "payment", "amount": amount or order.amount_minor, "currency": "INR",
               "status": "captured", "order_id": order.gateway_order_id, "captured": True, "notes": [],
               "error_code": None, "created_at": 1767000000}
    return json.dumps({"entity": "event", "account_id": "acc_Test", "event": "payment.captured",
                       "contains": ["payment"], "payload": {"payment": {"entity": payment}},
                       "created_at": 1767000001}).encode()


def test_a_signed_webhook_is_stored_raw_and_acknowledged_and_a_redelivery_is_a_duplicate(post, deps, org, simulator):
    order = new_order(deps)
    body = captured_event(order)
    first = post(body, **signed_headers(simulator, body))
    again = post(body, **signed_headers(simulator, body))
    assert (first.status_code, first.json()["status"]) == (200, "accepted")
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")
    [row] = inbox_rows(deps)
    assert row.body == body and row.status == "pending" and row.event_id == "evt_test_0001"
    assert "authorization" not in row.headers


@pytest.mark.parametrize("mutate, reason", [
    (lambda body, headers: (body, {**headers, "X-Razorpay-Signature": "0" * 64}), "bad_signature"),
    (lambda body, headers: (body + b" ", headers), "bad_signature"),
    (lambda body, headers: (body, {k: v for k, v in headers.items() if k != "X-Razorpay-Signature"}), "bad_signature"),
], ids=["wrong signature", "signature valid for a different body", "no signature"])
def test_a_webhook_whose_signature_fails_is_kept_with_the_reason_and_answered_400(post, deps, org, simulator, mutate,
                                                                                  reason):
    order = new_order(deps)
    body = captured_event(order)
    sent_body, headers = mutate(body, signed_headers(simulator, body))
    response = post(sent_body, **headers)
    assert response.status_code == 400 and response.json()["status"] == "rejected"
    [row] = inbox_rows(deps)
    assert row.status == "rejected" and row.reason.startswith(reason) and row.body == sent_body
    assert row.event_id is None  # a forgery cannot squat the real event id


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe\x00garbage", b"[]", b'{"entity":"event"}'],
                         ids=["malformed JSON", "not UTF-8", "not an object", "no event type"])
def test_a_correctly_signed_but_unparseable_body_is_kept_as_malformed_and_acknowledged(post, deps, org, simulator,
                                                                                       body):
    """Defect 13: a 4xx would make Razorpay retry the same bytes for a day, then disable the endpoint."""
    response = post(body, **signed_headers(simulator, body))
    assert response.status_code == 200 and response.json()["status"] == "rejected"
    [row] = inbox_rows(deps)
    assert row.status == "rejected" and row.reason.startswith("malformed") and row.body == body


def test_an_oversized_body_is_refused_with_413_and_its_start_kept(post, deps, org, simulator):
    body = b"{" + b" " * (deps.settings.max_body_bytes + 1) + b"}"
    assert post(body, **signed_headers(simulator, body)).status_code == 413
    [row] = inbox_rows(deps)
    assert row.status == "rejected" and row.reason.startswith("oversized") and row.body == body[:len(row.body)]
    assert len(row.body) == deps.settings.max_body_bytes


def test_a_webhook_with_the_wrong_content_type_is_kept_and_answered_415(post, deps, org, simulator):
    order = new_order(deps)
    body = captured_event(order)
    response = post(body, **{**signed_headers(simulator, body), "Content-Type": "text/plain"})
    assert response.status_code == 415
    [row] = inbox_rows(deps)
    assert row.status == "rejected" and row.reason.startswith("unsupported_content_type") and row.body == body


def test_a_replayed_old_event_is_a_duplicate_and_credits_nothing_more(post, deps, org, simulator):
    from tests.support import balance
    from worker.services.inbox import process_inbox_event

    order = new_order(deps)
    body = captured_event(order)
    post(body, **signed_headers(simulator, body))
    [row] = inbox_rows(deps)
    process_inbox_event(row.id, deps=deps)
    assert balance(deps) == 5_000
    replay = post(body, **signed_headers(simulator, body))  # days later, the gateway replays the same event
    assert replay.json()["status"] == "duplicate" and len(inbox_rows(deps)) == 1
    assert balance(deps) == 5_000


def test_a_payglocal_callback_with_a_bad_token_is_kept_with_the_reason(post, web, deps, org, simulator):
    from tests.support import GATEWAY_ORGS

    order = new_order(deps, GATEWAY_ORGS["payglocal"])
    paid = simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    token = paid["x-gl-token"]
    forged = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    with httpx.Client(base_url=web.base_url, timeout=10) as client:
        response = client.post("/webhooks/payglocal", data={"x-gl-token": forged})
    assert response.status_code == 400
    [row] = inbox_rows(deps)
    assert row.status == "rejected" and row.reason.startswith("bad_signature") and row.order_id == order.id


def test_processing_a_webhook_for_an_unknown_order_keeps_it_as_rejected(post, deps, org, simulator):
    from worker.services.inbox import process_inbox_event

    order = new_order(deps)
    body = captured_event(order).replace(order.gateway_order_id.encode(), b"order_NotOurs0000001")
    post(body, **signed_headers(simulator, body))
    [row] = inbox_rows(deps)
    assert process_inbox_event(row.id, deps=deps) is None
    [row] = inbox_rows(deps)
    assert row.status == "rejected" and "unknown order" in row.reason
