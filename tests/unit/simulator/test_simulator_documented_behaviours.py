"""What the gateway documents say and the simulator now models on its own: its codecs against the documents'
test vectors, and the behaviours a comparison with razorpay.md, payglocal.md and after-capture.md found missing."""

from __future__ import annotations

import itertools
import json
import time

import pytest

from simulator import SimulatorError, SimulatorServer
from simulator.payglocal.codec import major_to_minor, minor_to_major
from simulator.razorpay import codec
from tests.unit.simulator.support import Receiver, api, get, new_order, plain, start

# -- codecs against the documents' test vectors ------------------------------------------------


def test_razorpay_signatures_match_the_documented_vectors() -> None:
    """razorpay.md §4 and §5.3 test vectors (checkout: order_id|payment_id with key_secret; webhook: raw body)."""
    assert codec.checkout_signature("EnLs21M47BllR3X8PSFtjtbd", "order_IEIaMR65cu6nz3", "pay_IH4NVgf4Dreq1l") == (
        "0d4e745a1838664ad6c9c9902212a32d627d68e917290b0ad5f08ff4561bc50f"
    )
    assert codec.checkout_signature("key_secret", "fake_order_id", "fake_payment_id") == (
        "b2335e3b0801106b84a7faff035df56ecffde06918c9ddd1f0fafbb37a51cc89"
    )
    assert codec.webhook_signature("123456", b'{"a":1,"b":2,"c":{"d":3}}') == (
        "2fe04e22977002e6c7cb553adab8b460cb9e2a4970d5953cb27a8472752e3bbc"
    )
    body = '{"entity":"event","event":"order.paid","note":"Tea, Earl Grey\u2026 decaf."}'.encode()
    assert codec.webhook_signature("whsec_local_test", body) == (
        "d71d755c3143bbb210639942d9cebddefde5ed76b2a5d5f4be660d240a51374f"
    )


@pytest.mark.parametrize(("value", "currency", "minor"), [
    ("500.00", "INR", 50000), ("10", "INR", 1000), (89, "INR", 8900), (10.5, "USD", 1050), ("1.234", "KWD", 1234),
    ("1000", "KRW", 1000), ("1000.00", "KRW", 1000), ("500", "JPY", 500), ("1.2345", "CLF", 12345),
])
def test_payglocal_amounts_are_major_units_by_iso_4217(value, currency: str, minor: int) -> None:
    """payglocal.md §5: totalAmount is a major-unit decimal (string or number); decimals per ISO 4217."""
    assert major_to_minor(value, currency) == minor
    assert major_to_minor(minor_to_major(minor, currency), currency) == minor


@pytest.mark.parametrize(("value", "currency"), [("10.5", "KRW"), ("1.2345", "KWD"), ("-1", "INR"), ("1e3", "INR"),
                                                 (True, "INR")])
def test_payglocal_amounts_with_too_many_decimals_are_refused(value, currency: str) -> None:
    with pytest.raises(ValueError):
        major_to_minor(value, currency)


# -- Razorpay ------------------------------------------------------------------------------


def test_a_repeated_receipt_creates_a_new_order_unless_unique_receipt_is_asked(server: SimulatorServer) -> None:
    """razorpay.md §2: no unique_receipt -> a new order; unique_receipt -> the same one, never another amount."""
    first = new_order(server, receipt="r-1")
    second = new_order(server, receipt="r-1")
    assert second["id"] != first["id"]
    assert new_order(server, receipt="r-1", unique_receipt=True)["id"] == first["id"]
    with api(server) as client:
        other = client.post(
            "/v1/orders", json={"amount": 777, "currency": "INR", "receipt": "r-1", "unique_receipt": True}
        )
    assert other.status_code == 400 and other.json()["error"]["field"] == "receipt"
    assert get(server, "/v1/orders?receipt=r-1").json()["count"] == 2


def test_a_malformed_id_is_not_a_valid_id(server: SimulatorServer) -> None:
    """razorpay.md §2: a malformed id -> 400 "... is not a valid id"; an unknown one -> "does not exist"."""
    for path, value in (("/v1/orders/pay_Abc", "pay_Abc"), ("/v1/payments/order_x", "order_x"),
                        ("/v1/orders/order_a-b", "order_a-b")):
        response = get(server, path)
        assert response.status_code == 400
        assert response.json()["error"]["description"] == f"{value} is not a valid id"


def test_an_orders_payments_are_listed_oldest_first(server: SimulatorServer) -> None:
    """razorpay.md §2: the failed attempt is listed before the captured one."""
    order = new_order(server)
    failed = server.sim.pay(order["id"], "decline")
    paid = server.sim.pay(order["id"], "success")
    items = get(server, f"/v1/orders/{order['id']}/payments").json()["items"]
    assert [p["id"] for p in items] == [failed["id"], paid["id"]]


def test_a_cancelled_checkout_is_a_failed_payment_caused_by_the_customer(server: SimulatorServer,
                                                                         receiver: Receiver) -> None:
    """razorpay.md §3.3: error_reason payment_cancelled, error_source customer; payment.failed is sent."""
    cancelled = server.sim.pay(new_order(server)["id"], "cancel")
    assert (cancelled["status"], cancelled["error_reason"], cancelled["error_source"]) == (
        "failed",
        "payment_cancelled",
        "customer",
    )
    assert server.sim.wait_for_webhooks(5) and receiver.events() == ["payment.failed"]


def test_a_payment_the_bank_never_answers_stays_created_then_fails_after_ten_minutes(
    server: SimulatorServer, receiver: Receiver
) -> None:
    """razorpay.md §3.4: no bank response -> created; after 10 minutes failed (timeout), with payment.failed."""
    waiting = server.sim.pay(new_order(server)["id"], "no_response")
    assert waiting["status"] == "created" and "razorpay_signature" not in waiting
    server.sim.advance_clock(9 * 60)
    time.sleep(0.2)
    assert get(server, f"/v1/payments/{waiting['id']}").json()["status"] == "created"
    server.sim.advance_clock(61)
    deadline = time.monotonic() + 5
    while get(server, f"/v1/payments/{waiting['id']}").json()["status"] == "created" and time.monotonic() < deadline:
        time.sleep(0.05)
    payment = get(server, f"/v1/payments/{waiting['id']}").json()
    assert (payment["status"], payment["error_reason"]) == ("failed", "payment_timed_out")
    assert server.sim.wait_for_webhooks(5) and receiver.events() == ["payment.failed"]


def test_cash_on_delivery_sends_payment_pending(server: SimulatorServer, receiver: Receiver) -> None:
    """razorpay.md §5.1: payment.pending (COD on Standard Checkout)."""
    pending = server.sim.pay(new_order(server)["id"], "cod")
    assert (pending["status"], pending["method"]) == ("pending", "cod")
    assert server.sim.wait_for_webhooks(5) and receiver.events() == ["payment.pending"]


def test_a_failed_upi_payment_is_captured_on_the_same_id_without_payment_authorized(
    server: SimulatorServer, receiver: Receiver
) -> None:
    """after-capture.md §1.3: payment.failed then payment.captured for one payment (a UPI in-app retry)."""
    order = new_order(server)
    failed = server.sim.pay(order["id"], "decline")
    with plain(server) as control:
        retried = control.post("/_sim/razorpay/upi_retry", json={"gateway_payment_id": failed["id"]}).json()
    assert (retried["id"], retried["status"], retried["method"]) == (failed["id"], "captured", "upi")
    assert get(server, f"/v1/orders/{order['id']}").json()["status"] == "paid"
    assert server.sim.wait_for_webhooks(5)
    assert receiver.events() == ["payment.failed", "payment.captured", "order.paid"]
    with pytest.raises(SimulatorError):
        server.sim.upi_retry(failed["id"])


# -- webhook delivery over a simulated day -----------------------------------------------------------


def test_webhooks_are_retried_for_a_day_then_the_endpoint_is_disabled_until_a_replay() -> None:
    """razorpay.md §5.4: exponential backoff for 24 h; after 24 h of failures the endpoint is disabled; new events
    are not sent to it; a replay re-enables it and sends the unacknowledged events again."""
    dead = Receiver(statuses=[500] * 1000)
    try:
        with start(webhook_url=dead.url, webhook_max_attempts=None, webhook_backoff_s=600, seed=2) as srv:
            srv.sim.pay(new_order(srv)["id"], "decline")
            def disabled() -> bool:
                return [e["disabled"] for e in srv.sim.state()["endpoints"].values()] == [True]

            # A simulated day and a bit, an hour at a time; the sender runs on its own thread, so on a
            # loaded machine it may lag: keep the simulated time moving until it gives up (bounded).
            deadline = time.monotonic() + 60
            for hour in itertools.count():
                if (hour >= 30 and disabled()) or time.monotonic() > deadline:
                    break
                srv.sim.advance_clock(3600)
                time.sleep(0.05)
            assert srv.sim.wait_for_webhooks(5)
            (entry,) = srv.sim.delivery_log()
            assert entry["outcome"] in ("disabled", "failed") and entry["attempts"] > 5
            assert [e["disabled"] for e in srv.sim.state()["endpoints"].values()] == [True]
            srv.sim.pay(new_order(srv)["id"], "decline")
            assert srv.sim.delivery_log()[1]["outcome"] == "disabled"
            sent = len(dead.received())
            dead.statuses.clear()  # the receiver is fixed
            with plain(srv) as control:
                assert control.post("/_sim/webhooks/replay", json={}).json() == {"queued": 2}
            assert srv.sim.wait_for_webhooks(5)
            assert len(dead.received()) == sent + 2
            assert [e["outcome"] for e in srv.sim.delivery_log()[2:]] == ["delivered", "delivered"]
    finally:
        dead.close()


# -- control API and PayGlocal -----------------------------------------------------------------------


def test_control_requests_are_validated_models(server: SimulatorServer) -> None:
    """Unknown fields, wrong types and unknown outcomes are 400s; the clock can be moved forward only."""
    order = new_order(server)
    with plain(server) as control:
        extra = control.post("/_sim/razorpay/pay", json={"gateway_order_id": order["id"], "outcome": "success", "x": 1})
        typed = control.post("/_sim/razorpay/pay", json={"gateway_order_id": order["id"], "outcome": "success",
                                                         "amount_minor": "12"})
        back = control.post("/_sim/clock/advance", json={"seconds": -1})
        ahead = control.post("/_sim/clock/advance", json={"seconds": 3600}).json()
        keys = control.get("/_sim/razorpay/keys").json()
        events = control.get("/_sim/webhooks/events").json()
    assert (extra.status_code, typed.status_code, back.status_code) == (400, 400, 400)
    assert ahead["now"] > time.time() + 3500 and keys["key_id"] == server.config.key_id
    assert events == {"since": 0, "events": []}


def test_a_payglocal_shopper_who_cancels_is_customer_cancelled_and_cod_is_not_offered() -> None:
    """payglocal.md §3: CUSTOMER_CANCELLED; PayGlocal's hosted page has no cash on delivery."""
    with start(seed=4) as srv:
        txn = srv.sim.payglocal.initiate(
            {"merchantTxnId": "t-1", "paymentData": {"totalAmount": "1000", "txnCurrency": "KRW"}}, "http://x"
        )
        assert srv.sim.payglocal.transactions[txn["gid"]]["amount_minor"] == 1000
        with pytest.raises(SimulatorError):
            srv.sim.pay_payglocal(txn["gid"], "cod")
        cancelled = srv.sim.pay_payglocal(txn["gid"], "cancel", deliver_callback=False)
        assert cancelled["data"]["status"] == "CUSTOMER_CANCELLED" and cancelled["data"]["Amount"] == "1000"
        assert json.loads(json.dumps(srv.sim.state()))["payglocal"]["transactions"][0]["status"] == "CUSTOMER_CANCELLED"
