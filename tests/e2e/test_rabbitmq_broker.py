"""Broker by URL: the same actors run on RabbitMQ (``amqp://``), the other engine users scale out on."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pika
import pytest

from tests.support import balance, new_order, order_row

AMQP_URL = os.environ.get("RECON_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
ROOT = Path(__file__).resolve().parents[2]

WORKER_SCRIPT = textwrap.dedent("""
    import dramatiq
    from worker.main import build_runtime
    from worker.queues import PRIORITY_QUEUE
    from worker.settings import Settings
    runtime = build_runtime(Settings())
    broker, actors = runtime.broker, runtime.actors
    assert type(broker).__name__ == "RabbitmqBroker", type(broker)
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=100)
    worker.start()
    actors.recheck_order.send(ORDER_ID, "support:rabbit", "checked over RabbitMQ")
    broker.join(PRIORITY_QUEUE, timeout=30_000)
    worker.stop()
    for queue in broker.get_declared_queues():
        broker.channel.queue_delete(queue)
""")


@pytest.fixture(scope="module")
def rabbitmq():
    try:
        pika.BlockingConnection(pika.URLParameters(AMQP_URL)).close()
    except Exception as exc:  # noqa: BLE001  (any connection error means the service is unavailable)
        if os.environ.get("CI"):
            pytest.fail(f"RabbitMQ is required in CI: {exc}")
        pytest.skip(f"RabbitMQ is not reachable: {exc}")
    return AMQP_URL


def test_a_recheck_enqueued_and_processed_over_rabbitmq_credits_the_order(rabbitmq, deps, org, simulator, pg_url):
    order = new_order(deps)
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    env = {**os.environ, "RECON_BROKER_URL": rabbitmq, "RECON_DATABASE_URL": pg_url,
           "RECON_BROKER_NAMESPACE": f"recon-test-{uuid.uuid4().hex[:6]}",
           "RECON_RAZORPAY_BASE_URL": simulator.base_url, "RECON_RAZORPAY_KEY_ID": simulator.config.key_id,
           "RECON_RAZORPAY_KEY_SECRET": simulator.config.key_secret,
           "RECON_RAZORPAY_WEBHOOK_SECRET": simulator.config.webhook_secret}
    script = f"ORDER_ID = {order.id!r}\n" + WORKER_SCRIPT
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert order_row(deps, order.id).state == "paid" and balance(deps) == 5_000
