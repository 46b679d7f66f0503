"""The gateway simulator's Razorpay API and customer behaviour, over real HTTP (uvicorn, port 0)."""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

import pytest

from gateways.razorpay.signature import checkout_message, sign
from simulator import SimulatorError, SimulatorServer
from tests.unit.simulator.support import Receiver, api, get, new_order, plain, start

ORDER_ID = re.compile(r"^order_[A-Za-z0-9]{14}$")
PAY_ID = re.compile(r"^pay_[A-Za-z0-9]{14}$")


# -- API basics ----------------------------------------------------------------------------


def test_auth_is_required(server: SimulatorServer) -> None:
    url = "/v1/orders?count=1"
    token = base64.b64encode(f"{server.config.key_id}:{server.config.key_secret}".encode()).decode()
    with plain(server) as client:
        missing = client.get(url)
        wrong = client.get(url, auth=(server.config.key_id, "not-the-secret"))
        lower = client.get(url, headers={"Authorization": f"basic {token}"})
    for response in (missing, wrong, lower):
        assert response.status_code == 401
        error = response.json()["error"]
        assert error["code"] == "BAD_REQUEST_ERROR" and error["description"]
    assert get(server, "/v1/orders?count=1").status_code == 200


def test_create_order_shape_notes_and_unique_receipt(server: SimulatorServer) -> None:
    order = new_order(server, receipt="rcpt-1")
    assert ORDER_ID.match(order["id"])
    assert order | {"id": None, "created_at": None} == {
        "id": None, "entity": "order", "amount": 50000, "amount_paid": 0, "amount_due": 50000,
        "currency": "INR", "receipt": "rcpt-1", "offer_id": None, "status": "created", "attempts": 0,
        "notes": [], "created_at": None,
    }
    assert abs(order["created_at"] - time.time()) < 5
    assert new_order(server, notes={"user": "u1"})["notes"] == {"user": "u1"}
    again = new_order(server, amount=50000, receipt="rcpt-1", unique_receipt=True)
    assert again["id"] == order["id"]
    listed = get(server, "/v1/orders?receipt=rcpt-1").json()
    assert listed["entity"] == "collection" and listed["count"] == 1 and listed["items"][0]["id"] == order["id"]
    assert get(server, f"/v1/orders/{order['id']}").json() == order


@pytest.mark.parametrize(
    ("body", "field", "text"),
    [
        ({"currency": "INR"}, "amount", "amount field is required"),
        ({"amount": 100.5, "currency": "INR"}, "amount", "must be an integer"),
        ({"amount": 99, "currency": "INR"}, "amount", "at least INR 1.00"),
        ({"amount": 100}, "currency", "currency field is required"),
        ({"amount": 100, "currency": "INR", "receipt": "x" * 41}, "receipt", "40 characters"),
        ({"amount": 100, "currency": "INR", "payment": {"capture": "later"}}, "payment.capture", "automatic or manual"),
    ],
)
def test_create_order_validation(server: SimulatorServer, body: dict[str, Any], field: str, text: str) -> None:
    with api(server) as client:
        response = client.post("/v1/orders", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "BAD_REQUEST_ERROR" and error["field"] == field and text in error["description"]


def test_unknown_ids_are_400_and_unknown_paths_404(server: SimulatorServer) -> None:
    with api(server) as client:
        responses = [
            client.get("/v1/orders/order_DoesNotExist00"),
            client.get("/v1/orders/order_DoesNotExist00/payments"),
            client.get("/v1/payments/pay_DoesNotExist000"),
            client.post("/v1/payments/pay_DoesNotExist000/capture", json={"amount": 100, "currency": "INR"}),
        ]
        not_found = client.get("/v1/no/such/thing")
    for response in responses:
        assert response.status_code == 400
        error = response.json()["error"]
        assert (error["code"], error["description"]) == ("BAD_REQUEST_ERROR", "The id provided does not exist")
    assert not_found.status_code == 404


# -- customer outcomes ---------------------------------------------------------------------


def test_pay_success_captures_and_pays_the_order(server: SimulatorServer) -> None:
    order = new_order(server)
    result = server.sim.pay(order["id"], "success")
    assert PAY_ID.match(result["id"]) and result["status"] == "captured" and result["captured"] is True
    expected = sign(server.config.key_secret, checkout_message(order["id"], result["id"]))
    assert (result["razorpay_order_id"], result["razorpay_signature"]) == (order["id"], expected)
    payment = get(server, f"/v1/payments/{result['id']}").json()
    assert payment["status"] == "captured" and payment["amount"] == 50000 and payment["order_id"] == order["id"]
    assert "razorpay_signature" not in payment and isinstance(payment["fee"], int)
    fetched = get(server, f"/v1/orders/{order['id']}").json()
    assert (fetched["status"], fetched["amount_paid"], fetched["amount_due"], fetched["attempts"]) == (
        "paid", 50000, 0, 1)
    with pytest.raises(SimulatorError):
        server.sim.pay(order["id"], "success")  # a paid order takes no new payment


def test_decline_and_other_failures_carry_razorpay_error_fields(server: SimulatorServer) -> None:
    order = new_order(server)
    declined = server.sim.pay(order["id"], "decline")
    assert "razorpay_signature" not in declined
    payment = get(server, f"/v1/payments/{declined['id']}").json()
    assert payment["status"] == "failed" and payment["captured"] is False
    assert (payment["error_code"], payment["error_source"], payment["error_step"], payment["error_reason"]) == (
        "BAD_REQUEST_ERROR", "bank", "payment_authorization", "payment_failed")
    assert payment["error_description"] == "Your payment has been declined by the bank"
    gateway = server.sim.pay(order["id"], "gateway_error")
    fields = ("error_code", "error_source", "error_reason")
    assert [gateway[f] for f in fields] == ["GATEWAY_ERROR", "gateway", "payment_failed"]
    timed_out = server.sim.pay(order["id"], "timeout")
    assert [timed_out[f] for f in ("status", *fields)] == [
        "failed", "BAD_REQUEST_ERROR", "internal", "payment_timed_out"]
    assert server.sim.pay(order["id"], "close_window") == {"closed": True}
    fetched = get(server, f"/v1/orders/{order['id']}").json()
    assert (fetched["status"], fetched["attempts"], fetched["amount_paid"]) == ("attempted", 3, 0)
    attempts = get(server, f"/v1/orders/{order['id']}/payments").json()
    assert attempts["count"] == 3 and {p["status"] for p in attempts["items"]} == {"failed"}


def test_close_window_creates_nothing(server: SimulatorServer) -> None:
    order = new_order(server)
    assert server.sim.pay(order["id"], "close_window") == {"closed": True}
    assert get(server, f"/v1/orders/{order['id']}").json()["status"] == "created"
    assert get(server, f"/v1/orders/{order['id']}/payments").json() == {"entity": "collection", "count": 0, "items": []}
    assert server.sim.wait_for_webhooks(5) and server.sim.delivery_log() == []


def test_amount_override_simulates_a_mismatch(server: SimulatorServer) -> None:
    order = new_order(server)
    paid = server.sim.pay(order["id"], "success", amount_minor=100, currency="USD")
    assert (paid["amount"], paid["currency"], paid["status"]) == (100, "USD", "captured")


def test_manual_capture_rules(server: SimulatorServer) -> None:
    order = new_order(server, payment={"capture": "manual"})
    authorized = server.sim.pay(order["id"], "success")
    assert authorized["status"] == "authorized" and authorized["razorpay_signature"]
    with pytest.raises(SimulatorError):
        server.sim.pay(order["id"], "success")  # an authorized payment blocks new ones
    path = f"/v1/payments/{authorized['id']}/capture"
    with api(server) as client:
        wrong = client.post(path, json={"amount": 49999, "currency": "INR"})
        ok = client.post(path, json={"amount": 50000, "currency": "INR"})
        again = client.post(path, json={"amount": 50000, "currency": "INR"})
    assert wrong.status_code == 400 and "equal to the amount authorized" in wrong.json()["error"]["description"]
    assert ok.status_code == 200 and ok.json()["status"] == "captured"
    assert again.status_code == 400 and again.json()["error"]["description"] == "This payment has already been captured"
    assert get(server, f"/v1/orders/{order['id']}").json()["status"] == "paid"

    failed = server.sim.pay(new_order(server)["id"], "decline")
    with api(server) as client:
        not_authorized = client.post(f"/v1/payments/{failed['id']}/capture", json={"amount": 50000, "currency": "INR"})
    assert not_authorized.status_code == 400 and "authorized" in not_authorized.json()["error"]["description"]


def test_authorize_only_leaves_payment_uncaptured_even_with_auto_capture(server: SimulatorServer) -> None:
    order = new_order(server, payment={"capture": "automatic"})
    result = server.sim.pay(order["id"], "authorize_only")
    assert result["status"] == "authorized" and result["captured"] is False
    assert get(server, f"/v1/orders/{order['id']}").json()["status"] == "attempted"


def test_config_auto_capture_off_is_the_default_for_orders_without_capture_setting() -> None:
    with start(auto_capture=False) as srv:
        order = new_order(srv)
        assert srv.sim.pay(order["id"], "success")["status"] == "authorized"


def test_late_authorize_turns_failed_into_captured(server: SimulatorServer, receiver: Receiver) -> None:
    order = new_order(server)
    failed = server.sim.pay(order["id"], "timeout")
    late = server.sim.late_authorize(failed["id"])
    assert late["status"] == "captured" and late["error_code"] is None and late["razorpay_signature"]
    assert get(server, f"/v1/payments/{failed['id']}").json()["status"] == "captured"
    assert get(server, f"/v1/orders/{order['id']}").json()["status"] == "paid"
    assert server.sim.wait_for_webhooks(5)
    assert receiver.events() == ["payment.failed", "payment.authorized", "payment.captured", "order.paid"]
    with pytest.raises(SimulatorError):
        server.sim.late_authorize(failed["id"])


def test_late_authorize_after_another_payment_paid_the_order_is_refunded(server: SimulatorServer) -> None:
    order = new_order(server)
    first = server.sim.pay(order["id"], "timeout")
    server.sim.pay(order["id"], "success")
    late = server.sim.late_authorize(first["id"])
    assert (late["status"], late["refund_status"], late["amount_refunded"]) == ("refunded", "full", 50000)
    fetched = get(server, f"/v1/orders/{order['id']}").json()
    assert (fetched["status"], fetched["amount_paid"], fetched["attempts"]) == ("paid", 50000, 2)


def test_refunds_partial_then_full(server: SimulatorServer, receiver: Receiver) -> None:
    paid = server.sim.pay(new_order(server)["id"], "success")
    refund = server.sim.refund(paid["id"], 20000)
    assert refund["entity"] == "refund" and refund["id"].startswith("rfnd_") and refund["amount"] == 20000
    payment = get(server, f"/v1/payments/{paid['id']}").json()
    assert (payment["status"], payment["refund_status"], payment["amount_refunded"]) == ("captured", "partial", 20000)
    server.sim.refund(paid["id"])
    payment = get(server, f"/v1/payments/{paid['id']}").json()
    assert (payment["status"], payment["refund_status"], payment["amount_refunded"]) == ("refunded", "full", 50000)
    with pytest.raises(SimulatorError):
        server.sim.refund(paid["id"])
    assert server.sim.wait_for_webhooks(5)
    refund_events = [json.loads(body) for _, body in receiver.received() if b'"refund.processed"' in body]
    assert [e["payload"]["refund"]["entity"]["amount"] for e in refund_events] == [20000, 30000]
    assert refund_events[0]["contains"] == ["refund", "payment"]
