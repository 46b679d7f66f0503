"""A full run's logs (structlog and the standard library) carry no secret, signature, token or
authorization header: every byte of them is captured and searched."""

from __future__ import annotations

import io
import logging

import httpx
import pytest

from gateways.razorpay.signature import sign
from tests.support import AUTH, GATEWAY_ORGS, inbox_rows
from worker.logging import configure_logging


@pytest.fixture
def captured_logs():
    stream = io.StringIO()
    configure_logging(level="DEBUG", json=True, stream=stream)
    yield stream
    configure_logging(level="INFO", json=True)
    logging.getLogger().setLevel(logging.WARNING)


def test_a_full_run_logs_no_secret_signature_or_token(captured_logs, deps, org, simulator, web):
    from worker.services.callback import verify_payment
    from worker.services.inbox import process_inbox_event
    from worker.services.recheck import recheck_order

    secrets = {simulator.config.key_secret, simulator.config.webhook_secret, AUTH["Authorization"].split()[1],
               deps.settings.payglocal_private_key_pem.get_secret_value().splitlines()[1]}
    with httpx.Client(base_url=web.base_url, headers=AUTH, timeout=10) as client:
        for gateway in GATEWAY_ORGS.values():
            order = client.post("/orders", json={"organisation_id": gateway.org, "requested_by": gateway.admin,
                                                 "plan": "payg", "credits": 2_000, "refund_policy_accepted": True})
            assert order.status_code == 201
            order = order.json()
            paid = simulator.sim.pay(order["gateway_order_id"], "success")
            payment_id, signature = gateway.callback(paid)
            secrets.add(signature)
            verify_payment(order["order_id"], payment_id, signature, deps=deps)
            verify_payment(order["order_id"], payment_id, "0" * 64, deps=deps)  # a bad one is logged too
            recheck_order(order["order_id"], "support:logs", deps=deps)
        body = b'{"event":"payment.captured"}'
        forged = sign("not-the-secret", body)
        client.post("/webhooks/razorpay", content=body, headers={"X-Razorpay-Signature": forged,
                                                                 "X-Razorpay-Event-Id": "evt_x",
                                                                 "Content-Type": "application/json"})
        secrets.add(forged)
    assert simulator.sim.wait_for_webhooks()
    for event in simulator.sim.webhook_events():
        secrets.update(v for k, v in event.headers.items() if k.lower() == "x-razorpay-signature")
    for row in inbox_rows(deps, status="pending"):
        process_inbox_event(row.id, deps=deps)
    logs = captured_logs.getvalue()
    assert "order_state_changed" in logs and "webhook_rejected" in logs  # the run was logged
    leaked = sorted(s[:12] + "…" for s in secrets if s and s in logs)
    assert leaked == []
    assert "authorization" not in logs.lower() and "x-gl-token" not in logs.lower()
