"""Order events end to end: the Procfile's worker and scheduler (real processes) deliver them to a receiving
endpoint (:class:`ops.demo_receiver.DemoReceiver`) that verifies each with the ``standardwebhooks`` library,
while the receiver is down for a while and a worker is killed with SIGKILL. Every change must arrive, each
under one id, and each order's in order."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db.models import DeliveryAttempt, EventDelivery, OrderEvent
from ops.demo_receiver import DemoReceiver
from tests.runtime import NAMESPACE, REDIS_URL
from tests.support import new_order, order_row
from worker.services import refunds
from worker.services.money import RefundRequest
from worker.settings import EventEndpoint

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_" + base64.b64encode(b"e2e-billing-backend-secret-key!!").decode()
ORDERS = 8


def _processes(env: dict[str, str]) -> tuple[subprocess.Popen, subprocess.Popen]:
    dramatiq_cli = str(Path(sys.executable).with_name("dramatiq"))
    worker = subprocess.Popen([dramatiq_cli, "worker.main:start", "--processes", "1", "--threads", "4"], cwd=ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    scheduler = subprocess.Popen([str(Path(sys.executable).with_name("recon")), "scheduler"], cwd=ROOT, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return worker, scheduler


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def _until(what, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, message
        time.sleep(0.2)


@pytest.mark.e2e
def test_every_change_reaches_the_billing_backend_once_per_id_in_order_through_an_outage_and_a_killed_worker(
        deps, org, simulator, web, pg_url):
    receiver = DemoReceiver(SECRET)
    receiver.down = True
    endpoint = EventEndpoint(name="billing", url=receiver.url, secrets=[SECRET])
    deps = dataclasses.replace(deps, settings=deps.settings.model_copy(update={"event_endpoints": [endpoint]}))
    env = {**os.environ, "RECON_BROKER_URL": REDIS_URL, "RECON_BROKER_NAMESPACE": NAMESPACE,
           "RECON_DATABASE_URL": pg_url, "RECON_RAZORPAY_BASE_URL": simulator.base_url,
           "RECON_RAZORPAY_KEY_ID": simulator.config.key_id, "RECON_RAZORPAY_KEY_SECRET": simulator.config.key_secret,
           "RECON_RAZORPAY_WEBHOOK_SECRET": simulator.config.webhook_secret, "RECON_SWEEP_INTERVAL_S": "0.5",
           "RECON_EVENT_ENDPOINTS": json.dumps([{"name": "billing", "url": receiver.url, "secrets": [SECRET]}])}
    worker, scheduler = _processes(env)
    try:
        simulator.sim.set_knobs(webhook_duplicates=2, shuffle_webhooks=True)
        orders = [new_order(deps, credits=1_000 * (i + 1)) for i in range(ORDERS)]
        for order in orders:
            simulator.sim.pay(order.gateway_order_id, "success")
        _until(lambda: all(order_row(deps, o.id).state == "paid" for o in orders), 60, "orders not paid")
        for order in orders[::2]:  # support refunds half of the orders, written by this process (its unit fans out)
            refunds.request_refund(order.id, RefundRequest(order.amount_minor // 2, "half back", "support:e2e"),
                                   deps=deps)
        time.sleep(2)  # the receiver has been down: deliveries failed and wait for their retry
        _stop(worker)  # and a worker dies, with whatever it was sending
        receiver.down = False
        _stop(scheduler)
        worker, scheduler = _processes(env)  # restarted, as the Procfile's supervisor would

        def all_delivered() -> bool:
            with deps.sessions() as session:
                states = session.execute(select(EventDelivery.state)).scalars().all()
            return bool(states) and set(states) == {"delivered"}

        _until(all_delivered, 120, "deliveries still pending after the outage")
    finally:
        _stop(worker)
        _stop(scheduler)
        receiver.shutdown()
    with deps.sessions() as session:
        written = session.execute(select(OrderEvent.event_id, OrderEvent.order_id, OrderEvent.sequence)
                                  .where(OrderEvent.order_id.in_([o.id for o in orders]))).all()
        refused_while_down = session.execute(select(func.count()).select_from(DeliveryAttempt)
                                             .where(DeliveryAttempt.status_code == 503)).scalar_one()
    assert refused_while_down > 0 and receiver.refused == 0  # the outage was real; every signature verified
    received = [(event_id, event["data"]["order"]["id"], event["data"]["sequence"], event["type"])
                for event_id, event in receiver.arrivals]
    assert {r[0] for r in received} == {w.event_id for w in written}  # every change delivered
    ids_per_change = {}
    for event_id, order_id, sequence, _ in received:
        ids_per_change.setdefault((order_id, sequence), set()).add(event_id)
    assert all(len(ids) == 1 for ids in ids_per_change.values())  # none twice under another id
    for order in orders:  # in order per order (a repeat of the same id may follow: at least once)
        first_seen = list(dict.fromkeys(seq for _, oid, seq, _ in received if oid == order.id))
        assert first_seen == sorted(first_seen) == list(range(1, len(first_seen) + 1))
    refunded = {oid for _, oid, _, kind in received if kind == "order.partly_refunded"}
    assert refunded == {o.id for o in orders[::2]}
