"""End to end on the Redis broker: webhooks over HTTP → inbox → real Dramatiq workers → credited once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.runtime import NAMESPACE, REDIS_URL
from tests.support import AUTH, balance, inbox_rows, ledger_count, new_order, order_row
from worker.queues import QUEUES

ROOT = Path(__file__).resolve().parents[2]


def join(broker, timeout_ms=30_000):
    for queue in QUEUES:
        broker.join(queue, timeout=timeout_ms)


def test_the_same_webhooks_sent_three_times_credit_the_order_once_through_the_worker(deps, gateway, simulator, web,
                                                                                      broker, worker):
    simulator.sim.set_knobs(webhook_duplicates=3, shuffle_webhooks=True)
    order = new_order(deps, gateway)
    simulator.sim.pay(order.gateway_order_id, "success")
    assert simulator.sim.wait_for_webhooks(timeout=15)
    join(broker)
    assert order_row(deps, order.id).state == "paid"
    assert ledger_count(deps, order.id) == 1 and balance(deps, gateway) == 5_000
    events = {"razorpay": 3, "payglocal": 1}[gateway.gateway]  # PayGlocal: the browser's callback form
    delivered = [d for d in simulator.sim.delivery_log() if d["outcome"] == "delivered"]
    assert len(delivered) == 3 * events  # every copy acknowledged
    assert {row.status for row in inbox_rows(deps)} == {"processed"} and len(inbox_rows(deps)) == events


def test_a_message_that_breaks_the_contract_goes_to_the_dead_letter_queue_and_the_worker_goes_on(deps, org, broker,
                                                                                                  worker, redis_client,
                                                                                                  actors):
    recheck_order, verify_payment = actors.recheck_order, actors.verify_payment

    verify_payment.send("ord_x", 12345, None)  # wrong types
    recheck_order.send_with_options(kwargs={"order_id": "ord_x", "who": "me"})  # unknown field
    recheck_order.send("ord_missing", "support:dan")  # names no order
    join(broker)
    namespace = NAMESPACE
    dead = redis_client.zcard(f"{namespace}:recon_priority.XQ")
    assert dead == 3


@pytest.mark.e2e
def test_two_worker_processes_from_the_dramatiq_cli_credit_each_order_exactly_once(deps, org, simulator, web, pg_url,
                                                                                    redis_client):
    env = {**os.environ, "RECON_BROKER_URL": REDIS_URL, "RECON_BROKER_NAMESPACE": NAMESPACE,
           "RECON_DATABASE_URL": pg_url, "RECON_API_TOKENS": '{"tests": "test-token-0123456789"}',
           "RECON_RAZORPAY_BASE_URL": simulator.base_url,
           "RECON_RAZORPAY_KEY_ID": simulator.config.key_id, "RECON_RAZORPAY_KEY_SECRET": simulator.config.key_secret,
           "RECON_RAZORPAY_WEBHOOK_SECRET": simulator.config.webhook_secret}
    dramatiq_cli = str(Path(sys.executable).with_name("dramatiq"))
    process = subprocess.Popen([dramatiq_cli, "worker.main:start", "--processes", "2", "--threads", "4"], cwd=ROOT,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        simulator.sim.set_knobs(webhook_duplicates=3, shuffle_webhooks=True)
        orders = [new_order(deps, credits=1_000 * (i + 1)) for i in range(6)]
        with httpx.Client(base_url=web.base_url, timeout=10, headers=AUTH) as client:
            for order in orders:
                paid = simulator.sim.pay(order.gateway_order_id, "success")
                client.post(f"/orders/{order.id}/verify", json={"payment_id": paid["razorpay_payment_id"],
                                                                "signature": paid["razorpay_signature"]})
                client.post(f"/orders/{order.id}/recheck", json={"requested_by": "support:e2e", "wait": False})
        assert simulator.sim.wait_for_webhooks(timeout=20)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(order_row(deps, o.id).state != "paid" for o in orders):
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            time.sleep(0.2)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and inbox_rows(deps, status="pending"):
            time.sleep(0.2)
        assert [order_row(deps, o.id).state for o in orders] == ["paid"] * len(orders)
        assert ledger_count(deps) == len(orders)
        assert balance(deps) == sum(o.credits for o in orders)
        assert inbox_rows(deps, status="pending") == []
    finally:
        process.terminate()
        process.wait(timeout=30)
