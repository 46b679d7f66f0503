"""Gateway metrics keep bounded label sets however many distinct orders and payments are checked
(a label holding an id would grow every worker's memory with every order: issue 13 §3)."""

from __future__ import annotations

import httpx

from gateways.razorpay.client import RazorpayClient
from worker.gateway_metrics import metrics_hooks
from worker.metrics import GATEWAY_LATENCY, GATEWAY_REQUESTS


def _label_sets(metric) -> set[tuple[str, ...]]:
    return set(metric._metrics)  # the children, one per label set, each held for the life of the process


def _answer(request: httpx.Request) -> httpx.Response:
    if request.url.path.endswith("/payments"):
        return httpx.Response(200, json={"entity": "collection", "count": 0, "items": []})
    return httpx.Response(200, json={"id": request.url.path.rsplit("/", 1)[-1], "entity": "payment"})


def test_distinct_orders_and_payments_add_no_label_sets():
    client = RazorpayClient(key_id="rzp_test_x", key_secret="secret", base_url="https://api.example.test",
                            transport=httpx.MockTransport(_answer), event_hooks=metrics_hooks("razorpay"))
    with client:
        client.fetch_order_payments("order_warmup0000001")
        client.fetch_payment("pay_warmup00000001")
        requests, latency = _label_sets(GATEWAY_REQUESTS), _label_sets(GATEWAY_LATENCY)
        for i in range(500):
            client.fetch_order_payments(f"order_{i:014x}")
            client.fetch_payment(f"pay_{i:016x}")
    assert _label_sets(GATEWAY_REQUESTS) == requests
    assert _label_sets(GATEWAY_LATENCY) == latency
    endpoints = {labels[1] for labels in requests if labels[0] == "razorpay"}
    assert {"GET /v1/orders/{id}/payments", "GET /v1/payments/{id}"} <= endpoints
