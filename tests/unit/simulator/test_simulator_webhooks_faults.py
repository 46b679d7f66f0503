"""The simulator's webhooks (envelope, signature, duplicates, shuffle, drop, retries), its
fault knobs, the ``/_sim/`` control API and the server's lifecycle."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest

from gateways.razorpay.signature import matches_any, sign
from simulator import SimulatorConfig, SimulatorServer
from tests.unit.simulator.support import Receiver, api, get, new_order, plain, start


def pay_and_collect(srv: SimulatorServer, receiver: Receiver, outcome: str = "success") -> list[tuple[Any, bytes]]:
    srv.sim.pay(new_order(srv)["id"], outcome)
    assert srv.sim.wait_for_webhooks(10)
    return receiver.received()


# -- webhooks ------------------------------------------------------------------------------


def test_webhooks_are_signed_over_raw_bytes_with_razorpay_envelope(server: SimulatorServer, receiver: Receiver) -> None:
    received = pay_and_collect(server, receiver)
    assert [json.loads(body)["event"] for _, body in received] == [
        "payment.authorized", "payment.captured", "order.paid"]
    event_ids = set()
    for headers, body in received:
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Razorpay-Signature"] == sign(server.config.webhook_secret, body)
        assert matches_any([server.config.webhook_secret], body, headers["X-Razorpay-Signature"])
        assert not matches_any([server.config.key_secret], body, headers["X-Razorpay-Signature"])
        event_ids.add(headers["X-Razorpay-Event-Id"])
        envelope = json.loads(body)
        assert set(envelope) == {"entity", "account_id", "event", "contains", "payload", "created_at"}
        assert envelope["entity"] == "event" and envelope["account_id"].startswith("acc_")
        assert set(envelope["payload"]) == set(envelope["contains"])
    assert len(event_ids) == 3  # payment.captured and order.paid have different ids
    authorized, captured, paid = (json.loads(body) for _, body in received)
    # payloads are snapshots at event time: the authorized event still says "authorized"
    assert authorized["payload"]["payment"]["entity"]["status"] == "authorized"
    assert captured["payload"]["payment"]["entity"]["status"] == "captured"
    assert paid["contains"] == ["payment", "order"] and paid["payload"]["order"]["entity"]["status"] == "paid"
    log = server.sim.delivery_log()
    assert [(e["outcome"], e["attempts"], e["status_code"]) for e in log] == [("delivered", 1, 200)] * 3


def test_failed_payment_sends_payment_failed(server: SimulatorServer, receiver: Receiver) -> None:
    (_headers, body), = pay_and_collect(server, receiver, "decline")
    entity = json.loads(body)["payload"]["payment"]["entity"]
    assert json.loads(body)["event"] == "payment.failed" and entity["error_reason"] == "payment_failed"


def test_duplicates_share_the_event_id_and_bytes(receiver: Receiver) -> None:
    with start(webhook_url=receiver.url, webhook_duplicates=3) as srv:
        received = pay_and_collect(srv, receiver)
    assert len(received) == 9
    by_id: dict[str, set[bytes]] = {}
    for headers, body in received:
        by_id.setdefault(headers["X-Razorpay-Event-Id"], set()).add(body)
    assert len(by_id) == 3 and all(len(bodies) == 1 for bodies in by_id.values())
    assert [h["X-Razorpay-Event-Id"] for h, _ in received].count(next(iter(by_id))) == 3


def shuffled_order(receiver: Receiver, seed: int) -> list[str]:
    with start(webhook_url=receiver.url, webhook_duplicates=2, shuffle_webhooks=True, seed=seed) as srv:
        before = len(receiver.received())
        pay_and_collect(srv, receiver)
    return receiver.events()[before:]


def test_shuffle_reorders_deliveries_reproducibly_with_a_seed(receiver: Receiver) -> None:
    in_order = ["payment.authorized"] * 2 + ["payment.captured"] * 2 + ["order.paid"] * 2
    first = shuffled_order(receiver, seed=3)
    assert sorted(first) == sorted(in_order) and first != in_order
    assert shuffled_order(receiver, seed=3) == first


def test_drop_and_deliver_false_send_nothing(receiver: Receiver) -> None:
    with start(webhook_url=receiver.url, drop_webhooks=True) as srv:
        pay_and_collect(srv, receiver)
        srv.sim.set_knobs(drop_webhooks=False)
        srv.sim.pay(new_order(srv)["id"], "decline", deliver_webhooks=False)
        assert srv.sim.wait_for_webhooks(5)
        time.sleep(0.2)
        log = srv.sim.delivery_log()
        assert len(srv.sim.webhook_events()) == 4
    assert receiver.received() == []
    assert [e["outcome"] for e in log] == ["lost"] * 4 and all(e["attempts"] == 0 for e in log)


def test_non_2xx_is_retried_with_backoff_then_given_up() -> None:
    flaky, dead = Receiver(statuses=[500, 503]), Receiver(statuses=[500] * 10)
    try:
        with start(webhook_url=flaky.url) as srv:
            srv.sim.pay(new_order(srv)["id"], "decline")
            assert srv.sim.wait_for_webhooks(10)
            (entry,) = srv.sim.delivery_log()
            assert (entry["outcome"], entry["attempts"], entry["status_code"]) == ("delivered", 3, 200)
            assert len({h["X-Razorpay-Event-Id"] for h, _ in flaky.received()}) == 1
            srv.sim.set_knobs(webhook_url=dead.url)
            srv.sim.pay(new_order(srv)["id"], "decline")
            assert srv.sim.wait_for_webhooks(10)
            assert srv.sim.delivery_log()[1] | {"event_id": None} == {
                "event_id": None, "event": "payment.failed", "gateway": "razorpay", "copy": 0,
                "attempts": 5, "status_code": 500, "outcome": "failed", "error": None,
            }
            assert len(dead.received()) == 5
    finally:
        flaky.close()
        dead.close()


def test_connection_errors_are_recorded() -> None:
    closed = Receiver()
    url = closed.url
    closed.close()
    with start(webhook_url=url, webhook_max_attempts=2, webhook_backoff_s=0.01) as srv:
        srv.sim.pay(new_order(srv)["id"], "decline")
        assert srv.sim.wait_for_webhooks(10)
        (entry,) = srv.sim.delivery_log()
    assert (entry["outcome"], entry["attempts"], entry["status_code"]) == ("failed", 2, None)
    assert "ConnectError" in entry["error"]


# -- fault knobs -----------------------------------------------------------------------------


def test_error_rate_one_gives_5xx_some_html() -> None:
    with start(error_rate=1.0, seed=1) as srv:
        with api(srv) as client:
            responses = [client.get("/v1/orders") for _ in range(30)]
        with plain(srv) as control:
            assert control.get("/_sim/state").status_code == 200  # /_sim/ is never affected
    assert {r.status_code for r in responses} <= {500, 502, 503, 504}
    assert len({r.status_code for r in responses}) >= 3
    html = [r for r in responses if r.headers["content-type"].startswith("text/html")]
    assert html and len(html) < len(responses)
    json_errors = [r.json()["error"]["code"] for r in responses if r not in html]
    assert set(json_errors) <= {"SERVER_ERROR", "GATEWAY_ERROR"}


def test_rate_limit_rate_one_gives_429_without_retry_after() -> None:
    with start(rate_limit_rate=1.0) as srv:
        with api(srv) as client:
            response = client.post("/v1/orders", json={"amount": 100, "currency": "INR"})
        assert srv.sim.state()["razorpay"]["orders"] == []
    assert response.status_code == 429 and "retry-after" not in response.headers
    error = response.json()["error"]
    assert (error["code"], error["description"]) == ("BAD_REQUEST_ERROR", "Too many requests")


def test_timeout_rate_answers_late_but_the_effect_happens() -> None:
    with start(timeout_rate=1.0, timeout_sleep_s=4.0) as srv:
        # Read timeout only, and long enough for a busy machine to take the request in: a client gone before
        # the body was read is a request the gateway never got (with 0.3 s it failed once in a full run).
        with api(srv) as client, pytest.raises(httpx.ReadTimeout):
            client.post("/v1/orders", json={"amount": 100, "currency": "INR", "receipt": "t1"},
                        timeout=httpx.Timeout(10.0, read=1.5))
        deadline = time.monotonic() + 10  # the request may still be on its way in on a busy machine
        while not srv.sim.state()["razorpay"]["orders"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [o["receipt"] for o in srv.sim.state()["razorpay"]["orders"]] == ["t1"]
    assert not [t for t in threading.enumerate() if t.name == f"sim-uvicorn-{srv.port}" and t.is_alive()]


def test_latency_applies_to_api_calls() -> None:
    with start(latency_ms=300) as srv:
        began = time.monotonic()
        assert get(srv, "/v1/orders").status_code == 200
        assert time.monotonic() - began >= 0.3


# -- control API and lifecycle ---------------------------------------------------------------


def test_control_api(server: SimulatorServer, receiver: Receiver) -> None:
    order = new_order(server)
    with plain(server) as control:
        paid = control.post("/_sim/razorpay/pay", json={"gateway_order_id": order["id"], "outcome": "timeout"})
        assert paid.status_code == 200 and paid.json()["status"] == "failed"
        late = control.post("/_sim/razorpay/late_authorize", json={"gateway_payment_id": paid.json()["id"]})
        assert late.json()["status"] == "captured"
        refund = control.post("/_sim/razorpay/refund",
                              json={"gateway_payment_id": paid.json()["id"], "amount_minor": 100})
        assert refund.json()["amount"] == 100

        def pay(order_id: str, outcome: str) -> int:
            body = {"gateway_order_id": order_id, "outcome": outcome}
            return control.post("/_sim/razorpay/pay", json=body).status_code

        assert pay(order["id"], "nope") == 400  # unknown outcome
        assert pay("order_x", "success") == 404  # unknown order
        assert pay(order["id"], "success") == 409  # the order is already paid
        assert control.post("/_sim/webhooks/wait", json={"timeout": 5}).json() == {"idle": True}
        state = control.get("/_sim/state").json()
        assert state["webhooks"]["delivered"] == 5 and len(state["razorpay"]["payments"]) == 1
        knobs = control.post("/_sim/knobs", json={"latency_ms": 5, "error_rate": 0.5}).json()["knobs"]
        assert (knobs["latency_ms"], knobs["error_rate"]) == (5, 0.5) and server.config.error_rate == 0.5
        assert control.post("/_sim/knobs", json={"error_rate": 2}).status_code == 400
        assert control.post("/_sim/knobs", json={"key_secret": "x"}).status_code == 400
        assert control.post("/_sim/reset").status_code == 200
        state = control.get("/_sim/state").json()
    assert state["razorpay"] == {"orders": [], "payments": [], "refunds": []} and state["webhooks"]["events"] == 0
    assert len(receiver.received()) == 5


def test_server_lifecycle() -> None:
    with pytest.raises(ValueError):
        SimulatorServer(SimulatorConfig(), host="0.0.0.0")
    before = set(threading.enumerate())
    srv = SimulatorServer(SimulatorConfig(), port=0).start()
    assert srv.port > 0 and srv.base_url == f"http://127.0.0.1:{srv.port}"
    assert httpx.get(f"{srv.base_url}/_sim/health").json() == {"ok": True}
    srv.stop()
    srv.stop()  # idempotent
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{srv.base_url}/_sim/health", timeout=1)
    assert not [t for t in threading.enumerate() if t.name.startswith("sim-") and t not in before]
