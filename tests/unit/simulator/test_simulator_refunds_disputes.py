"""The simulator's Razorpay refunds and disputes (after-capture.md §2-3), over real HTTP (uvicorn, port 0)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from simulator import SimulatorError, SimulatorServer
from tests.unit.simulator.support import Receiver, api, get, new_order, plain

RFND_ID = re.compile(r"^rfnd_[A-Za-z0-9]{14}$")
DISP_ID = re.compile(r"^disp_[A-Za-z0-9]{14}$")
KEY = "refund-key_0001"
FULLY_REFUNDED = (400, "The payment has been fully refunded already.")


def paid(server: SimulatorServer, amount: int = 50000) -> dict[str, Any]:
    """A captured payment of ``amount`` paise (its own order)."""
    return server.sim.pay(new_order(server, amount)["id"], "success")


def refund(server: SimulatorServer, payment_id: str, body: dict[str, Any] | None = None,
           key: str | None = None) -> httpx.Response:
    """``POST /v1/payments/{id}/refund``, with ``X-Refund-Idempotency: key`` when given."""
    headers = {"X-Refund-Idempotency": key} if key else {}
    with api(server) as client:
        return client.post(f"/v1/payments/{payment_id}/refund", json=body or {}, headers=headers)


def error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["description"]


def bodies(server: SimulatorServer, receiver: Receiver, prefix: str = "") -> list[dict[str, Any]]:
    """Every webhook received whose event starts with ``prefix``, parsed, in arrival order."""
    assert server.sim.wait_for_webhooks(5)
    found = [json.loads(body) for _, body in receiver.received()]
    return [b for b in found if b["event"].startswith(prefix)]


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def behaviour(server: SimulatorServer, **body: Any) -> dict[str, Any]:
    with plain(server) as control:
        response = control.post("/_sim/refunds/behaviour", json=body)
    assert response.status_code == 200, response.text
    return response.json()


# -- refunds over the API ----------------------------------------------------------------------


def test_a_refund_is_created_once_per_idempotency_key_and_body(server: SimulatorServer, receiver: Receiver) -> None:
    """after-capture.md §2.1-2.2: the refund entity; the same key and body give the same refund, another body
    with the same key 400 "Different request ..."; a malformed key is refused."""
    payment = paid(server)
    body = {"amount": 10000, "speed": "optimum", "notes": {"why": "damaged"}, "receipt": "r-1"}
    first = refund(server, payment["id"], body, KEY)
    assert first.status_code == 200, first.text
    entity = first.json()
    assert RFND_ID.match(entity["id"])
    assert entity | {"id": None, "created_at": None} == {
        "id": None, "entity": "refund", "amount": 10000, "currency": "INR", "payment_id": payment["id"],
        "notes": {"why": "damaged"}, "receipt": "r-1", "acquirer_data": {"arn": None}, "created_at": None,
        "batch_id": None, "status": "processed", "speed_processed": "instant", "speed_requested": "optimum",
    }
    again = refund(server, payment["id"], body, KEY)
    assert again.status_code == 200 and again.json()["id"] == entity["id"]
    assert error(refund(server, payment["id"], {"amount": 20000}, KEY)) == (
        400, "Different request with the same idempotency key has already been processed")
    assert refund(server, payment["id"], body, "short").status_code == 400
    assert refund(server, payment["id"], body, "has spaces in it").status_code == 400
    assert [r["id"] for r in server.sim.refunds_of(payment["id"])] == [entity["id"]]
    listed = get(server, f"/v1/payments/{payment['id']}/refunds").json()
    assert (listed["entity"], listed["count"], listed["items"]) == ("collection", 1, [entity])
    assert get(server, f"/v1/refunds/{entity['id']}").json() == entity
    assert get(server, f"/v1/payments/{payment['id']}/refunds/{entity['id']}").json() == entity
    assert error(get(server, "/v1/refunds/rfnd_AAAAAAAAAAAAAA")) == (400, "The id provided does not exist")
    other = paid(server)
    assert error(get(server, f"/v1/payments/{other['id']}/refunds/{entity['id']}")) == (
        400, "The id provided does not exist")
    assert [b["event"] for b in bodies(server, receiver, "refund.")] == ["refund.created", "refund.processed"]


def test_partials_add_up_to_the_captured_amount_and_no_further(server: SimulatorServer) -> None:
    """after-capture.md §2.1, §2.3, §2.5: partials while their sum ≤ captured; then "fully refunded already"."""
    payment = paid(server)
    assert error(refund(server, payment["id"], {"amount": 60000})) == (
        400, "The refund amount provided is greater than amount captured.")
    assert error(refund(server, payment["id"], {"amount": 99})) == (400, "The amount must be at least INR 1.00")
    assert refund(server, payment["id"], {"amount": 20000}).status_code == 200
    fetched = get(server, f"/v1/payments/{payment['id']}").json()
    assert (fetched["status"], fetched["refund_status"], fetched["amount_refunded"]) == ("captured", "partial", 20000)
    assert error(refund(server, payment["id"], {"amount": 30001})) == (
        400, "The refund amount provided is greater than amount captured.")
    rest = refund(server, payment["id"])  # no amount: all that is left
    assert rest.json()["amount"] == 30000
    fetched = get(server, f"/v1/payments/{payment['id']}").json()
    assert (fetched["status"], fetched["refund_status"], fetched["amount_refunded"], fetched["captured"]) == (
        "refunded", "full", 50000, True)
    assert error(refund(server, payment["id"], {"amount": 100})) == FULLY_REFUNDED
    assert get(server, f"/v1/payments/{payment['id']}/refunds").json()["count"] == 2


def test_only_a_captured_payment_is_refunded(server: SimulatorServer) -> None:
    order = new_order(server, payment={"capture": "manual"})
    held = server.sim.pay(order["id"], "success")
    assert held["status"] == "authorized"
    assert error(refund(server, held["id"])) == (400, "The payment status should be captured for action to be taken")
    assert error(refund(server, "pay_AAAAAAAAAAAAAA")) == (400, "The id provided does not exist")


def test_a_refund_is_pending_until_the_simulated_delay_has_passed(server: SimulatorServer,
                                                                  receiver: Receiver) -> None:
    """after-capture.md §2.2-2.4: pending with refund.created, processed later with refund.processed; only a
    processed refund counts in amount_refunded; a pending one already counts against what is left."""
    assert behaviour(server, processed_after_s=600) == {"processed_after_s": 600, "fail_next": 0,
                                                         "fail_payment_ids": []}
    payment = paid(server)
    created = refund(server, payment["id"]).json()
    assert created["status"] == "pending"
    fetched = get(server, f"/v1/payments/{payment['id']}").json()
    assert (fetched["status"], fetched["amount_refunded"], fetched["refund_status"]) == ("captured", 0, None)
    assert error(refund(server, payment["id"], {"amount": 100})) == FULLY_REFUNDED
    server.sim.advance_clock(601)
    eventually(lambda: get(server, f"/v1/refunds/{created['id']}").json()["status"] == "processed")
    fetched = get(server, f"/v1/payments/{payment['id']}").json()
    assert (fetched["status"], fetched["amount_refunded"], fetched["refund_status"]) == ("refunded", 50000, "full")
    eventually(lambda: len(bodies(server, receiver, "refund.")) == 2)
    was_created, processed = bodies(server, receiver, "refund.")
    for event, status in ((was_created, "pending"), (processed, "processed")):
        assert event["contains"] == ["refund", "payment"] and list(event["payload"]) == ["refund", "payment"]
        assert event["payload"]["refund"]["entity"]["id"] == created["id"]
        assert event["payload"]["refund"]["entity"]["status"] == status
    assert (was_created["event"], processed["event"]) == ("refund.created", "refund.processed")
    assert was_created["payload"]["payment"]["entity"]["amount_refunded"] == 0
    settled = processed["payload"]["payment"]["entity"]
    assert (settled["status"], settled["amount_refunded"], settled["refund_status"], settled["captured"]) == (
        "refunded", 50000, "full", True)


def test_the_failure_knobs_make_refunds_end_failed(server: SimulatorServer, receiver: Receiver) -> None:
    """fail_next: the next refunds end failed (refund.failed), taking nothing back; fail_payment_ids: all of
    that payment's refunds fail."""
    payment = paid(server)
    behaviour(server, fail_next=1)
    failed = refund(server, payment["id"], {"amount": 10000}).json()
    assert failed["status"] == "failed"
    assert get(server, f"/v1/payments/{payment['id']}").json()["amount_refunded"] == 0
    # a failed refund takes nothing back: all of it is still refundable
    assert refund(server, payment["id"], {"amount": 50000}).json()["status"] == "processed"
    other = paid(server)
    assert behaviour(server, fail_payment_ids=[other["id"]])["fail_payment_ids"] == [other["id"]]
    assert [refund(server, other["id"], {"amount": 100}).json()["status"] for _ in range(2)] == ["failed", "failed"]
    events = bodies(server, receiver, "refund.")
    assert [e["event"] for e in events if e["event"] != "refund.created"] == [
        "refund.failed", "refund.processed", "refund.failed", "refund.failed"]
    first_failed = events[1]["payload"]
    assert first_failed["refund"]["entity"]["status"] == "failed"
    assert first_failed["payment"]["entity"]["amount_refunded"] == 0
    with plain(server) as control:
        assert control.post("/_sim/refunds/behaviour", json={"fail_next": -1}).status_code == 400
    server.sim.reset()
    assert server.sim.refund_behaviour() == {"processed_after_s": 0.0, "fail_next": 0, "fail_payment_ids": []}


# -- refunds made elsewhere: the Dashboard, Razorpay itself --------------------------------------


def test_a_dashboard_refund_has_the_api_refunds_lifecycle(server: SimulatorServer, receiver: Receiver) -> None:
    """after-capture.md §0.1: a refund made in the Dashboard is a refund entity with the refund.* events."""
    payment = paid(server)
    with plain(server) as control:
        made = control.post(f"/_sim/razorpay/payments/{payment['id']}/dashboard_refund", json={"amount": 1000})
        failed = control.post(f"/_sim/razorpay/payments/{payment['id']}/dashboard_refund",
                              json={"amount": 1000, "fail": True})
        too_much = control.post(f"/_sim/razorpay/payments/{payment['id']}/dashboard_refund", json={"amount": 49001})
        unknown = control.post("/_sim/razorpay/payments/pay_AAAAAAAAAAAAAA/dashboard_refund", json={})
        listed = control.get(f"/_sim/payments/{payment['id']}/refunds").json()["refunds"]
    assert made.status_code == 200 and (made.json()["status"], made.json()["amount"]) == ("processed", 1000)
    assert failed.json()["status"] == "failed"
    assert (too_much.status_code, unknown.status_code) == (400, 404)
    assert [(r["id"], r["status"]) for r in listed] == [(made.json()["id"], "processed"),
                                                       (failed.json()["id"], "failed")]
    assert get(server, f"/v1/payments/{payment['id']}").json()["amount_refunded"] == 1000
    assert [b["event"] for b in bodies(server, receiver, "refund.")] == [
        "refund.created", "refund.processed", "refund.created", "refund.failed"]
    rest = server.sim.dashboard_refund(payment["id"])
    assert rest["amount"] == 49000 and server.sim.refunds_of(payment["id"])[-1] == rest


def test_a_late_authorisation_on_a_paid_order_is_auto_refunded_uncaptured(server: SimulatorServer,
                                                                          receiver: Receiver) -> None:
    """after-capture.md §0.1, §1.3, §2.4: the late one is refunded at once, a refund entity whose events show
    the payment captured false; pending first when refunds take time."""
    server.sim.refund_behaviour(processed_after_s=60)
    order = new_order(server)
    first = server.sim.pay(order["id"], "timeout")
    server.sim.pay(order["id"], "success")
    late = server.sim.late_authorize(first["id"])
    assert (late["status"], late["captured"], late["amount_refunded"]) == ("authorized", False, 0)
    [pending] = server.sim.refunds_of(first["id"])
    assert (pending["status"], pending["amount"], pending["speed_requested"]) == ("pending", 50000, "normal")
    with api(server) as client:  # being refunded: no capture
        assert client.post(f"/v1/payments/{first['id']}/capture", json={"amount": 50000}).status_code == 400
    server.sim.advance_clock(61)
    eventually(lambda: server.sim.refunds_of(first["id"])[0]["status"] == "processed")
    fetched = get(server, f"/v1/payments/{first['id']}").json()
    assert (fetched["status"], fetched["captured"], fetched["refund_status"]) == ("refunded", False, "full")
    eventually(lambda: len(bodies(server, receiver, "refund.")) == 2)
    events = bodies(server, receiver, "refund.")
    assert [e["event"] for e in events] == ["refund.created", "refund.processed"]
    assert all(e["payload"]["payment"]["entity"]["captured"] is False for e in events)


def test_a_upi_retry_captured_on_a_paid_order_stays_captured(server: SimulatorServer, receiver: Receiver) -> None:
    """A captured duplicate is not auto-refunded (an auto-refund has captured false): ours to refund."""
    order = new_order(server)
    failed = server.sim.pay(order["id"], "decline")
    server.sim.pay(order["id"], "success")
    retried = server.sim.upi_retry(failed["id"])
    assert (retried["status"], retried["captured"], retried["amount_refunded"]) == ("captured", True, 0)
    assert server.sim.refunds_of(failed["id"]) == []
    assert bodies(server, receiver, "refund.") == []


# -- disputes ----------------------------------------------------------------------------------


def test_a_dispute_opens_goes_under_review_and_is_won(server: SimulatorServer, receiver: Receiver) -> None:
    """after-capture.md §3.1-3.3: the dispute entity, payment.dispute.* webhooks with payment and dispute, the
    fetch and list calls; won keeps amount_deducted 0; pre_arbitration reopens a won case."""
    payment = paid(server)
    with plain(server) as control:
        opened = control.post(f"/_sim/razorpay/payments/{payment['id']}/disputes",
                              json={"amount": 39000, "reason_code": "processed_invalid_expired_card",
                                    "respond_in_s": 3600})
        assert opened.status_code == 200, opened.text
        dispute = opened.json()
        assert DISP_ID.match(dispute["id"])
        assert abs(dispute["respond_by"] - dispute["created_at"] - 3600) <= 1
        assert dispute | {"id": None, "created_at": None, "respond_by": None} == {
            "id": None, "entity": "dispute", "payment_id": payment["id"], "amount": 39000, "currency": "INR",
            "amount_deducted": 0, "reason_code": "processed_invalid_expired_card", "respond_by": None,
            "status": "open", "phase": "chargeback", "created_at": None,
            "evidence": {"amount": 39000, "summary": None, "submitted_at": None},
        }
        review = control.post(f"/_sim/razorpay/disputes/{dispute['id']}", json={"status": "under_review"}).json()
        assert review["status"] == "under_review" and review["evidence"]["submitted_at"] is not None
        won = control.post(f"/_sim/razorpay/disputes/{dispute['id']}", json={"status": "won"}).json()
        assert (won["status"], won["amount_deducted"]) == ("won", 0)
        assert control.post(f"/_sim/razorpay/disputes/{dispute['id']}", json={"status": "lost"}).status_code == 409
        again = control.post(f"/_sim/razorpay/disputes/{dispute['id']}", json={"phase": "pre_arbitration"}).json()
        assert (again["status"], again["phase"]) == ("open", "pre_arbitration")
        assert control.get("/_sim/razorpay/disputes", params={"payment_id": payment["id"]}).json()["disputes"] == [
            again]
    assert get(server, f"/v1/disputes/{dispute['id']}").json() == again
    listed = get(server, "/v1/disputes?count=1&skip=0").json()
    assert (listed["entity"], listed["count"], listed["items"]) == ("collection", 1, [again])
    assert get(server, "/v1/disputes?skip=1").json()["items"] == []
    assert error(get(server, "/v1/disputes/disp_AAAAAAAAAAAAAA")) == (400, "The id provided does not exist")
    events = bodies(server, receiver, "payment.dispute.")
    assert [e["event"] for e in events] == ["payment.dispute.created", "payment.dispute.under_review",
                                            "payment.dispute.won", "payment.dispute.created"]
    for event in events:
        assert event["contains"] == ["payment", "dispute"] and list(event["payload"]) == ["payment", "dispute"]
        assert event["payload"]["payment"]["entity"]["id"] == payment["id"]
        assert event["payload"]["dispute"]["entity"]["id"] == dispute["id"]
    assert [e["payload"]["dispute"]["entity"]["status"] for e in events] == ["open", "under_review", "won", "open"]


def test_an_accepted_dispute_is_lost_deducted_and_refunded(server: SimulatorServer, receiver: Receiver) -> None:
    """after-capture.md §3.3-3.4, §0.1: accept moves open -> lost (amount_deducted = amount), and the customer
    is refunded with a refund entity; a lost dispute cannot be accepted again."""
    payment = paid(server)
    dispute = server.sim.open_dispute(payment["id"], amount=20000)
    with api(server) as client:
        accepted = client.post(f"/v1/disputes/{dispute['id']}/accept")
        twice = client.post(f"/v1/disputes/{dispute['id']}/accept")
    assert accepted.status_code == 200, accepted.text
    assert (accepted.json()["status"], accepted.json()["amount_deducted"]) == ("lost", 20000)
    assert error(twice) == (400, "Action not allowed when dispute is in lost status")
    [made] = server.sim.refunds_of(payment["id"])
    assert (made["amount"], made["status"]) == (20000, "processed")
    fetched = get(server, f"/v1/payments/{payment['id']}").json()
    assert (fetched["status"], fetched["amount_refunded"], fetched["captured"]) == ("captured", 20000, True)
    events = [e["event"] for e in bodies(server, receiver) if e["event"].startswith(("payment.dispute.", "refund."))]
    assert events == ["payment.dispute.created", "payment.dispute.lost", "refund.created", "refund.processed"]
    lost = server.sim.move_dispute(server.sim.open_dispute(payment["id"], amount=1000)["id"], status="lost")
    assert (lost["status"], lost["amount_deducted"]) == ("lost", 1000)


def test_a_dispute_past_its_deadline_cannot_be_accepted(server: SimulatorServer, receiver: Receiver) -> None:
    """after-capture.md §3.3: after respond_by, 400 "deadline ... has elapsed"; action_required keeps it open;
    closed is for fraud; moves out of a final status are refused."""
    payment = paid(server)
    dispute = server.sim.open_dispute(payment["id"], respond_in_s=60)
    assert server.sim.move_dispute(dispute["id"], status="action_required")["status"] == "open"
    server.sim.advance_clock(61)
    with api(server) as client:
        late = client.post(f"/v1/disputes/{dispute['id']}/accept")
    assert error(late) == (400, "Action not allowed as deadline to respond has elapsed")
    assert server.sim.disputes_of(payment["id"])[0]["status"] == "open"
    fraud = server.sim.open_dispute(payment["id"], phase="fraud")
    closed = server.sim.move_dispute(fraud["id"], status="closed")
    assert (closed["status"], closed["phase"], closed["amount_deducted"]) == ("closed", "fraud", 0)
    with pytest.raises(SimulatorError):
        server.sim.move_dispute(fraud["id"], status="won")
    with pytest.raises(SimulatorError):
        server.sim.move_dispute(dispute["id"], status="reversed")
    with pytest.raises(SimulatorError):
        server.sim.open_dispute(payment["id"], phase="appeal")
    with pytest.raises(SimulatorError):
        server.sim.open_dispute(server.sim.pay(new_order(server)["id"], "decline")["id"])  # never captured
    events = [e["event"] for e in bodies(server, receiver, "payment.dispute.")]
    assert events == ["payment.dispute.created", "payment.dispute.action_required", "payment.dispute.created",
                      "payment.dispute.closed"]
